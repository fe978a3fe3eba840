// ebgc._cuda: the CUDA backend for Python. Device arrays arrive as raw pointers (python/ebgc/arrays.py
// reads them from DLPack / __cuda_array_interface__ / torch), streams as integer handles. Blobs are
// inspected here once (the same front door as ebgc._core, module-local Blob) and decoded from that.
// The GIL is released around all device work.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../csrc/python/arrays.hpp"
#include "../csrc/python/blob.hpp"
#include "../csrc/python/errors.hpp"
#include "backend.hpp"

namespace py = pybind11;
using namespace ebgc;

namespace {

DType dtype_named(const std::string& name) {
  for (const DTypeInfo& d : kDTypes)
    if (name == d.name) return d.id;
  throw InvalidArgument("ebgc compresses float32, float64, float16 or bfloat16 data, not " + name);
}

TensorView device_view(uintptr_t ptr, DType dtype, std::vector<uint64_t> shape) {
  TensorView v;
  v.data = reinterpret_cast<void*>(ptr);
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.device = Device::Cuda;
  return v;
}

// A request's parameters and execution as the front door takes them.
Params request_params(double error_bound, int mode, int coder, bool low_rank) {
  if (mode != int(BoundMode::Abs) && mode != int(BoundMode::Rel)) throw InvalidArgument("mode must be abs or rel");
  Params p;
  p.mode = BoundMode(mode);
  p.error_bound = error_bound;
  p.coder = coder;
  p.low_rank = low_rank;
  return p;
}
Execution execution(unsigned threads, uintptr_t stream) {
  Execution e;
  e.threads = threads;
  e.cuda_stream = stream;
  return e;
}

// A Python allocator of device memory for blobs: allocate(tensor, size) -> device pointer (an int);
// called with the GIL taken back.
MessageAllocator device_allocator(const py::object& allocate) {
  return [&allocate](size_t k, size_t size) {
    py::gil_scoped_acquire gil;
    return reinterpret_cast<uint8_t*>(allocate(k, size).cast<uintptr_t>());
  };
}

py::object compress_device(uintptr_t x, std::vector<uint64_t> shape, const std::string& dtype, double error_bound, int mode,
                           int coder, unsigned threads, uintptr_t stream, bool low_rank, uintptr_t previous,
                           uintptr_t previous2, uintptr_t reconstruction, const py::object& allocate_device) {
  const TensorView view = device_view(x, dtype_named(dtype), std::move(shape));
  const Params p = request_params(error_bound, mode, coder, low_rank);
  const Execution e = execution(threads, stream);
  StreamTerms terms;
  terms.previous[0] = reinterpret_cast<const void*>(previous);
  terms.previous[1] = reinterpret_cast<const void*>(previous2);
  terms.reconstruction = reinterpret_cast<void*>(reconstruction);
  py_arrays::BytesResult result;  // the blob is written straight into the bytes object returned
  const bool device_blob = !allocate_device.is_none();
  const MessageAllocator to_device = device_blob ? device_allocator(allocate_device) : MessageAllocator();
  {
    py::gil_scoped_release nogil;
    gpu::compress(view, p, e, terms, [&](size_t size) { return device_blob ? to_device(0, size) : result.allocate(size); },
                  device_blob);
  }
  if (device_blob) return py::none();
  return result.release();
}

py::list compress_many_device(const std::vector<uintptr_t>& xs, const std::vector<std::vector<uint64_t>>& shapes,
                              const std::vector<std::string>& dtypes, double error_bound, int mode, int coder,
                              unsigned threads, uintptr_t stream, bool low_rank,
                              const std::vector<uintptr_t>& reconstructions, const std::vector<uintptr_t>& previous,
                              const std::vector<uintptr_t>& previous2, const py::object& allocate_device) {
  const size_t count = xs.size();
  if (shapes.size() != count || dtypes.size() != count)
    throw InvalidArgument("one shape and dtype per tensor");
  for (const auto* list : {&reconstructions, &previous, &previous2})
    if (!list->empty() && list->size() != count) throw InvalidArgument("one stream term (or 0) per tensor in each list");
  const Params p = request_params(error_bound, mode, coder, low_rank);
  const Execution e = execution(threads, stream);
  std::vector<TensorView> views(count);
  std::vector<StreamTerms> terms(count);
  auto at = [](const std::vector<uintptr_t>& list, size_t k) { return list.empty() ? 0 : list[k]; };
  for (size_t k = 0; k < count; ++k) {
    views[k] = device_view(xs[k], dtype_named(dtypes[k]), shapes[k]);
    terms[k].reconstruction = reinterpret_cast<void*>(at(reconstructions, k));
    terms[k].previous[0] = reinterpret_cast<const void*>(at(previous, k));
    terms[k].previous[1] = reinterpret_cast<const void*>(at(previous2, k));
  }
  std::vector<py_arrays::BytesResult> results(count);
  const bool device_blobs = !allocate_device.is_none();
  const MessageAllocator to_device = device_blobs ? device_allocator(allocate_device) : MessageAllocator();
  {
    py::gil_scoped_release nogil;
    gpu::compress_many(views, p, e, terms, [&](size_t k, size_t size) {
      return device_blobs ? to_device(k, size) : results[k].allocate(size);
    }, device_blobs);
  }
  py::list out;
  if (device_blobs) return out;
  for (auto& r : results) out.append(r.release());
  return out;
}

void decompress_device(const py_blob::Blob& blob, uintptr_t out, unsigned threads, uintptr_t stream, uintptr_t previous,
                       uintptr_t previous2) {
  const Header& h = blob.parsed.header;
  const TensorView view = device_view(out, h.dtype, h.shape);
  const Execution e = execution(threads, stream);
  const void* prev[2] = {reinterpret_cast<const void*>(previous), reinterpret_cast<const void*>(previous2)};
  py::gil_scoped_release nogil;
  gpu::decompress(blob.parsed, view, e, prev);
}

std::shared_ptr<gpu::DeviceBlob> inspect_device(uintptr_t blob, uint64_t size, uint64_t max_output, uintptr_t stream) {
  py::gil_scoped_release nogil;
  return gpu::inspect_device(reinterpret_cast<const void*>(blob), size, max_output, stream);
}

void decompress_device_blob(const gpu::DeviceBlob& blob, uintptr_t out, unsigned threads, uintptr_t stream,
                            uintptr_t previous, uintptr_t previous2) {
  const Header& h = blob.front.pb.header;
  const TensorView view = device_view(out, h.dtype, h.shape);
  const Execution e = execution(threads, stream);
  const void* prev[2] = {reinterpret_cast<const void*>(previous), reinterpret_cast<const void*>(previous2)};
  py::gil_scoped_release nogil;
  gpu::decompress_device_blob(blob, view, e, prev);
}

py::dict benchmark(uintptr_t x, const std::string& dtype, uint64_t n, int mode, double error_bound, uintptr_t scratch,
                   unsigned repeats, uintptr_t stream) {
  gpu::Timings t;
  {
    py::gil_scoped_release nogil;
    t = gpu::benchmark_bitpack(reinterpret_cast<const void*>(x), dtype_named(dtype), n, BoundMode(mode ? 1 : 0),
                               error_bound, reinterpret_cast<void*>(scratch), repeats, stream);
  }
  py::dict d;
  d["compress_ms"] = t.compress_ms;
  d["decompress_ms"] = t.decompress_ms;
  d["copy_ms"] = t.copy_ms;
  d["compressed_bytes"] = t.compressed_bytes;
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "ebgc CUDA backend: the codec on device arrays (same format as ebgc._core)";
  register_error_translator();
  m.def("device_count", &gpu::device_count, "CUDA devices visible (0 without a driver or device).");
  m.def("device_name", &gpu::device_name, py::arg("device"));
  m.def("device_of", [](uintptr_t p) { return gpu::device_of(reinterpret_cast<const void*>(p)); }, py::arg("pointer"),
        "The device that owns a device pointer (InvalidArgumentError for host memory).");
  m.def("compress", &compress_device, py::arg("data"), py::arg("shape"), py::arg("dtype"), py::arg("error_bound"),
        py::arg("mode"), py::arg("coder"), py::arg("threads"), py::arg("stream") = 0, py::arg("low_rank") = true,
        py::arg("previous") = 0, py::arg("previous2") = 0, py::arg("reconstruction") = 0,
        py::arg("allocate_device") = py::none(),
        "Compress a C-contiguous device array (pointer) into a blob; where each stage runs is the plan's\n"
        "(context and Huffman lanes, bit-packing and raw on the GPU, with zero or stream prediction; the\n"
        "low-rank fit of matrices on the host after one copy). previous, previous2, reconstruction: device pointers (0: none) of the\n"
        "stream's last reconstructions and of where the new one goes. allocate_device(0, size) -> device\n"
        "pointer: the blob is assembled in that memory (on the array's device; only its front crosses\n"
        "to the device, enqueued on `stream`) and None is returned; else the blob as bytes.");
  m.def("compress_many", &compress_many_device, py::arg("data"), py::arg("shapes"), py::arg("dtypes"),
        py::arg("error_bound"), py::arg("mode"), py::arg("coder"), py::arg("threads"), py::arg("stream") = 0,
        py::arg("low_rank") = true, py::arg("reconstructions") = std::vector<uintptr_t>(),
        py::arg("previous") = std::vector<uintptr_t>(), py::arg("previous2") = std::vector<uintptr_t>(),
        py::arg("allocate_device") = py::none(),
        "Compress the C-contiguous device arrays (pointers) of one message into one blob each, blob k\n"
        "equal to compress()'s for array k with the same stream terms. Bit-packing and the ratio coders\n"
        "code all arrays of a device and dtype as one grid, their stream predictors fitted at once: a\n"
        "fixed number of launches and a few host waits for the whole message. reconstructions,\n"
        "previous, previous2: device pointers (0: none), one per array, or empty lists.\n"
        "allocate_device(k, size) -> device pointer: blob k assembled there, as compress(); returns [].");
  py_blob::define(m);
  m.def("decompress_into", &decompress_device, py::arg("blob"), py::arg("out"), py::arg("threads"), py::arg("stream") = 0,
        py::arg("previous") = 0, py::arg("previous2") = 0,
        "Decode an inspected Blob into a C-contiguous device array (pointer) on `stream`; previous,\n"
        "previous2: device pointers of the stream's reconstructions (blend-predicted blobs).");
  py::class_<gpu::DeviceBlob, std::shared_ptr<gpu::DeviceBlob>>(
      m, "DeviceBlob", "A blob in device memory, parsed from its front and checksummed on the device.")
      .def_property_readonly("shape", [](const gpu::DeviceBlob& b) { return py_blob::shape_of(b.front.pb.header); })
      .def_property_readonly("dtype", [](const gpu::DeviceBlob& b) { return std::string(dtype_name(b.front.pb.header.dtype)); })
      .def_property_readonly("size", [](const gpu::DeviceBlob& b) { return b.front.pb.header.elements(); })
      .def_property_readonly("output_nbytes", [](const gpu::DeviceBlob& b) { return b.front.pb.output_bytes(); })
      .def_property_readonly("predictor_terms",
                             [](const gpu::DeviceBlob& b) { return predictor_terms(b.front.pb.header.predictor); })
      .def_property_readonly("host_bytes", [](const gpu::DeviceBlob& b) { return uint64_t(b.front.fetched + kChecksumSize); },
                             "Bytes of the blob copied to the host (its front and checksum, or all of it).");
  m.def("inspect_device", &inspect_device, py::arg("blob"), py::arg("nbytes"), py::arg("max_output") = 0,
        py::arg("stream") = 0,
        "Parse a blob held in device memory (pointer, bytes) from its front, verifying its checksum on the\n"
        "device; the chunk streams are not copied to the host.");
  m.def("decompress_device_blob", &decompress_device_blob, py::arg("blob"), py::arg("out"), py::arg("threads"),
        py::arg("stream") = 0, py::arg("previous") = 0, py::arg("previous2") = 0,
        "Decode a DeviceBlob into a C-contiguous device array (pointer) on the blob's device.");
  m.def("crc32c", [](uintptr_t data, uint64_t bytes, uint32_t seed, uintptr_t stream) {
          py::gil_scoped_release nogil;
          return gpu::crc32c(reinterpret_cast<const void*>(data), bytes, seed, stream);
        }, py::arg("data"), py::arg("nbytes"), py::arg("seed") = 0, py::arg("stream") = 0,
        "CRC-32C of device memory (pointer, bytes), the value ebgc._core.crc32c gives for the same bytes.");
  m.def("seal_pieces", [](uintptr_t out, const py::list& pieces, uintptr_t stream) {
          std::vector<std::string> keep;  // the framing, kept until its upload is staged
          keep.reserve(pieces.size());
          std::vector<SealPiece> parts;
          for (const py::handle& piece : pieces) {
            if (py::isinstance<py::bytes>(piece)) {
              keep.push_back(std::string(piece.cast<py::bytes>()));
              parts.push_back({reinterpret_cast<const uint8_t*>(keep.back().data()), keep.back().size(), false});
            } else {
              const auto device = piece.cast<std::pair<uintptr_t, uint64_t>>();
              parts.push_back({reinterpret_cast<const uint8_t*>(device.first), device.second, true});
            }
          }
          py::gil_scoped_release nogil;
          gpu::seal_pieces(reinterpret_cast<uint8_t*>(out), parts, stream);
        }, py::arg("out"), py::arg("pieces"), py::arg("stream") = 0,
        "Seal a container in device memory: `pieces` in order, bytes (framing, from the host) or\n"
        "(pointer, nbytes) of device memory on out's device; out (a device pointer) receives their\n"
        "bytes and then their CRC-32C (4 bytes, little-endian), computed on the device. Enqueued on\n"
        "`stream`; the device pieces and out must stay alive until it has run.");
  m.def("benchmark_bitpack", &benchmark, py::arg("data"), py::arg("dtype"), py::arg("n"), py::arg("mode"),
        py::arg("error_bound"), py::arg("scratch"), py::arg("repeats"), py::arg("stream") = 0,
        "Device time (ms, CUDA events) of compress, decompress and a device-to-device copy.");
}
