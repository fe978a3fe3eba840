// The only pybind11 file of ebgc._core: the front door (ebgc/ebgc.hpp) for Python buffers. The
// GIL is released around native work, and core exceptions become the classes of ebgc.errors.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ebgc/ebgc.hpp"
#include "ebgc/format/front.hpp"
#include "ebgc/grid/crc32c_parts.hpp"
#include "ebgc/grid/host_runner.hpp"
#include "ebgc/grid/context_message_runner.hpp"
#include "python/arrays.hpp"
#include "python/blob.hpp"
#include "python/errors.hpp"
#include "python/stages.hpp"

namespace py = pybind11;
using namespace ebgc;

namespace {

Params params_of(double error_bound, int mode, int coder, bool low_rank, unsigned chunk_log2) {
  Params p;
  p.mode = BoundMode(uint8_t(mode));
  if (mode != int(BoundMode::Abs) && mode != int(BoundMode::Rel)) throw InvalidArgument("mode must be abs or rel");
  p.error_bound = error_bound;
  p.coder = coder;
  p.low_rank = low_rank;
  p.chunk_log2 = chunk_log2;
  return p;
}

void validate_params(double error_bound, int mode, int coder, bool low_rank, unsigned chunk_log2) {
  validate(params_of(error_bound, mode, coder, low_rank, chunk_log2));
}

py::bytes compress_buffer(py::buffer data, const std::string& dtype, double error_bound, int mode, int coder, unsigned threads,
                   unsigned chunk_log2, bool low_rank, py::object previous, py::object previous2,
                   py::object reconstruction) {
  const py::buffer_info info = data.request();
  const TensorView x = py_arrays::view_of(info, py_arrays::buffer_dtype(info, dtype));
  const Params p = params_of(error_bound, mode, coder, low_rank, chunk_log2);
  Execution e;
  e.threads = threads;
  py::buffer_info keep[3];
  StreamTerms stream;
  stream.previous[0] = py_arrays::companion(previous, x, dtype, false, "previous", keep[0]);
  stream.previous[1] = py_arrays::companion(previous2, x, dtype, false, "previous2", keep[1]);
  stream.reconstruction = py_arrays::companion(reconstruction, x, dtype, true, "reconstruction", keep[2]);
  py_arrays::BytesResult result;
  {
    py::gil_scoped_release nogil;
    ebgc::compress(x, p, e, stream, [&](size_t size) { return result.allocate(size); });
  }
  return result.release();
}

void decompress_buffer(const py_blob::Blob& blob, py::buffer out, unsigned threads, py::object previous,
                     py::object previous2, const std::string& dtype) {
  const py::buffer_info o = out.request(true);
  const TensorView view = py_arrays::view_of(o, py_arrays::buffer_dtype(o, dtype));
  Execution e;
  e.threads = threads;
  py::buffer_info keep[2];
  const void* prev[2] = {py_arrays::companion(previous, view, dtype, false, "previous", keep[0]),
                         py_arrays::companion(previous2, view, dtype, false, "previous2", keep[1])};
  py::gil_scoped_release nogil;
  ebgc::decompress(blob.parsed, view, e, prev);
}

// The host runner of the device codec (grid/host_runner.hpp), for the tests that compare its bytes
// with the CPU codec's. C-contiguous host buffers only.
py::bytes grid_compress_buffer(py::buffer data, const std::string& dtype, double error_bound, int mode, int coder,
                               py::object previous, py::object previous2, py::object reconstruction) {
  const py::buffer_info info = data.request();
  const TensorView x = py_arrays::view_of(info, py_arrays::buffer_dtype(info, dtype));
  if (!x.contiguous()) throw InvalidArgument("the grid runner takes C-contiguous arrays");
  Params p = params_of(error_bound, mode, coder, false, kGridChunkLog2);
  validate(x, p, Execution());
  py::buffer_info keep[3];
  const void* prev[2] = {py_arrays::companion(previous, x, dtype, false, "previous", keep[0]),
                         py_arrays::companion(previous2, x, dtype, false, "previous2", keep[1])};
  void* rec = py_arrays::companion(reconstruction, x, dtype, true, "reconstruction", keep[2]);
  py_arrays::BytesResult result;
  {
    py::gil_scoped_release nogil;
    with_storage_type(x.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* previous_t[2] = {static_cast<const T*>(prev[0]), static_cast<const T*>(prev[1])};
      grid_compress(static_cast<const T*>(x.data), x.shape, p, previous_t, static_cast<T*>(rec),
                    [&](size_t size) { return result.allocate(size); });
    });
  }
  return result.release();
}

void grid_decompress_buffer(const py_blob::Blob& blob, py::buffer out, py::object previous, py::object previous2,
                            const std::string& dtype) {
  const py::buffer_info o = out.request(true);
  const TensorView view = py_arrays::view_of(o, py_arrays::buffer_dtype(o, dtype));
  if (!view.contiguous() || view.dtype != blob.parsed.header.dtype || view.elements() != blob.parsed.header.elements())
    throw InvalidArgument("out must be C-contiguous, of the blob's dtype and size");
  py::buffer_info keep[2];
  const void* prev[2] = {py_arrays::companion(previous, view, dtype, false, "previous", keep[0]),
                         py_arrays::companion(previous2, view, dtype, false, "previous2", keep[1])};
  py::gil_scoped_release nogil;
  with_storage_type(view.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* previous_t[2] = {static_cast<const T*>(prev[0]), static_cast<const T*>(prev[1])};
    grid_decode_any(blob.parsed, static_cast<T*>(view.data), previous_t);
  });
}

// The host runners of whole messages (grid/message_host_runner.hpp for bit-packing,
// grid/context_message_runner.hpp for auto, context and Huffman): one blob per array, all coded as one
// message grid. Arrays of one dtype, C-contiguous; reconstructions, previous, previous2: lists
// with one array or None per array (or None).
py::list grid_compress_message(const py::list& arrays, const std::string& dtype, double error_bound, int mode, int coder,
                               const py::object& reconstructions, const py::object& previous,
                               const py::object& previous2, bool assemble) {
  if (coder != int(Coder::Bitpack) && coder != int(Coder::Context) && coder != int(Coder::Huffman) && coder != kCoderAuto)
    throw InvalidArgument("a message grid codes with bitpack, context, huffman or auto");
  const size_t count = arrays.size();
  for (const py::object* list : {&reconstructions, &previous, &previous2})
    if (!list->is_none() && py::len(*list) != count) throw InvalidArgument("one entry per array in each list");
  const Params p = params_of(error_bound, mode, coder, false, coder == int(Coder::Bitpack) ? kDefaultChunkLog2 : kGridChunkLog2);
  std::vector<py::buffer_info> keep(count), keep_terms(3 * count);
  std::vector<TensorView> views(count);
  std::vector<void*> terms(3 * count, nullptr);  // reconstruction, previous, previous2 of each array
  auto term = [&](const py::object& list, size_t k) {
    return list.is_none() ? py::object(py::none()) : py::object(py::reinterpret_borrow<py::list>(list)[k]);
  };
  for (size_t k = 0; k < count; ++k) {
    keep[k] = py::reinterpret_borrow<py::buffer>(arrays[k]).request();
    views[k] = py_arrays::view_of(keep[k], py_arrays::buffer_dtype(keep[k], dtype));
    if (!views[k].contiguous()) throw InvalidArgument("the grid runner takes C-contiguous arrays");
    if (k && views[k].dtype != views[0].dtype) throw InvalidArgument("a message grid holds arrays of one dtype");
    validate(views[k], p, Execution());
    terms[3 * k] = py_arrays::companion(term(reconstructions, k), views[k], dtype, true, "reconstruction", keep_terms[3 * k]);
    terms[3 * k + 1] = py_arrays::companion(term(previous, k), views[k], dtype, false, "previous", keep_terms[3 * k + 1]);
    terms[3 * k + 2] = py_arrays::companion(term(previous2, k), views[k], dtype, false, "previous2", keep_terms[3 * k + 2]);
  }
  std::vector<py_arrays::BytesResult> results(count);
  if (count) {
    py::gil_scoped_release nogil;
    with_storage_type(views[0].dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      MessageInputs<T> in;
      for (size_t k = 0; k < count; ++k)
        in.add(static_cast<const T*>(views[k].data), views[k].shape, static_cast<T*>(terms[3 * k]),
               static_cast<const T*>(terms[3 * k + 1]), static_cast<const T*>(terms[3 * k + 2]));
      BlobAssembly assembly;
      CodedBlobSink sink = CodedBlobSink::host([&](size_t k, size_t size) { return results[k].allocate(size); });
      if (assemble) {  // as the device assembles blobs in its memory
        sink.assembly = &assembly;
        sink.assemble = assemble_on_host;
      }
      if (p.coder == int(Coder::Bitpack)) grid_bitpack_encode_message(in, p, sink);
      else grid_context_encode_message(in, p, sink);
    });
  }
  py::list out;
  for (auto& r : results) out.append(r.release());
  return out;
}

// The front parse of a device blob (format/front.hpp), run over a host buffer: whether it accepts
// exactly what the full parse (without the checksum) accepts, with the same result; returns
// (accepted, bytes it copied). Disagreement is an InvalidArgument (a test failure).
py::tuple parse_front_check(py::buffer data, size_t first) {
  py::buffer_info keep;
  const auto v = py_blob::byte_view(data, keep);
  const uint8_t* blob = v.first;
  const size_t size = v.second;
  ParsedBlob full;
  bool full_ok = true, front_ok = true;
  try {
    full = parse_blob(blob, size, false);
  } catch (const FormatError&) {
    full_ok = false;
  }
  FrontParse f;
  size_t copied = 0;
  try {
    f = parse_blob_front(size, [&](size_t b, size_t e, uint8_t* dst) {
      if (e > b) std::memcpy(dst, blob + b, e - b), copied += e - b;
    }, first);
  } catch (const FormatError&) {
    front_ok = false;
  }
  if (full_ok != front_ok) throw InvalidArgument("the front parse and the full parse disagree on acceptance");
  if (full_ok) {
    const ParsedBlob& a = full;
    const ParsedBlob& b = f.pb;
    const uint8_t* base = f.bytes.get();
    const size_t elem = dtype_size(a.header.dtype), count = a.outlier_index.size();
    ByteWriter ha, hb;
    a.header.write(ha);
    b.header.write(hb);
    const bool same = ha.buf == hb.buf && a.outlier_index == b.outlier_index && a.len_a == b.len_a &&
                      a.len_b == b.len_b && a.offset == b.offset &&
                      (a.streams ? size_t(a.streams - blob) : 0) == (b.streams ? size_t(b.streams - base) : 0) &&
                      (a.raw_values ? size_t(a.raw_values - blob) : 0) == (b.raw_values ? size_t(b.raw_values - base) : 0) &&
                      (count == 0 || std::memcmp(a.outlier_values, b.outlier_values, count * elem) == 0) &&
                      f.payload_offset() <= f.fetched;
    if (!same) throw InvalidArgument("the front parse differs from the full parse");
  }
  return py::make_tuple(front_ok, copied);
}

// Where the plan runs a device tensor's work (tests of the planning seam; the CUDA backend asks
// the same functions itself).
std::string compress_where_device(int coder, std::vector<uint64_t> shape, bool low_rank) {
  TensorView x;
  x.device = Device::Cuda;
  x.shape = std::move(shape);
  Params p;
  p.coder = coder;
  p.low_rank = low_rank;
  return compress_where(x, p) == Where::Device ? "device" : "host";
}
std::string decompress_where_device(const py_blob::Blob& blob) {
  return decompress_where(blob.parsed.header, true) == Where::Device ? "device" : "host";
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ebgc native core: the codec's front door and its single stages";
  register_error_translator();

  m.attr("VOCABULARY") = py_blob::vocabulary();
  m.attr("FORMAT_VERSION") = int(kFormatVersion);
  m.attr("DEFAULT_CHUNK_LOG2") = kDefaultChunkLog2;
  m.def("default_threads", &default_threads, "Number of hardware threads.");
  m.def("validate_params", &validate_params, py::arg("error_bound"), py::arg("mode"), py::arg("coder"),
        py::arg("low_rank") = true, py::arg("chunk_log2") = kDefaultChunkLog2,
        "Check coding parameters as compress() will (InvalidArgumentError if they cannot be used).");
  m.def("compress", &compress_buffer, py::arg("data"), py::arg("dtype"), py::arg("error_bound"), py::arg("mode"),
        py::arg("coder"), py::arg("threads"), py::arg("chunk_log2") = kDefaultChunkLog2, py::arg("low_rank") = true,
        py::arg("previous") = py::none(), py::arg("previous2") = py::none(), py::arg("reconstruction") = py::none(),
        "Compress a float buffer of dtype `dtype` (any strides; bfloat16 as its 16-bit integer view);\n"
        "mode and coder are ids of VOCABULARY. previous (the stream's last reconstruction) and\n"
        "previous2 (the one before): predict from a least-squares blend of them where that pays.\n"
        "reconstruction: a writable buffer that receives what decompression will return.");
  py_blob::define(m);
  m.def("decompress_into", &decompress_buffer, py::arg("blob"), py::arg("out"), py::arg("threads"),
        py::arg("previous") = py::none(), py::arg("previous2") = py::none(), py::arg("dtype") = "",
        "Decode an inspected Blob into a C-contiguous writable buffer of its dtype and size; previous\n"
        "may be out itself (decoding in place over the last reconstruction).");
  m.def("crc32c", [](py::buffer data, uint32_t seed) {
          py::buffer_info keep;
          const auto v = py_blob::byte_view(data, keep);
          return crc32c(v.first, v.second, seed);
        }, py::arg("data"), py::arg("seed") = 0, "CRC-32C (Castagnoli) of a bytes-like object.");
  m.def("_compress_where_device", &compress_where_device, py::arg("coder"), py::arg("shape") = std::vector<uint64_t>{1000},
        py::arg("low_rank") = true,
        "Test hook: 'device' or 'host', where the plan runs the compression of a device array.");
  m.def("_decompress_where_device", &decompress_where_device, py::arg("blob"),
        "Test hook: 'device' or 'host', where the plan decodes an inspected blob for a device output.");
  m.def("_grid_compress", &grid_compress_buffer, py::arg("data"), py::arg("dtype"), py::arg("error_bound"),
        py::arg("mode"), py::arg("coder"), py::arg("previous") = py::none(), py::arg("previous2") = py::none(),
        py::arg("reconstruction") = py::none(),
        "Test hook: the device codec's encoder run on the host, lane by lane and block by block (its blob\n"
        "equals the CPU codec's with low_rank=False and the device's chunk size: GRID_CHUNK_LOG2 for the\n"
        "context coder, DEFAULT_CHUNK_LOG2 for bit-packing).");
  m.def("_grid_decompress_into", &grid_decompress_buffer, py::arg("blob"), py::arg("out"),
        py::arg("previous") = py::none(), py::arg("previous2") = py::none(), py::arg("dtype") = "",
        "Test hook: the device codec's decoder run on the host (context, bit-packed and raw blobs).");
  m.def("_grid_compress_message", &grid_compress_message, py::arg("arrays"), py::arg("dtype"), py::arg("error_bound"),
        py::arg("mode"), py::arg("coder"), py::arg("reconstructions") = py::none(), py::arg("previous") = py::none(),
        py::arg("previous2") = py::none(), py::arg("assemble") = false,
        "Test hook: the device's whole-message encoders run on the host over one grid of all the arrays\n"
        "(one blob each, equal to the CPU codec's with no low rank and the device's chunk size:\n"
        "DEFAULT_CHUNK_LOG2 for bitpack, GRID_CHUNK_LOG2 for context and auto). assemble: the blobs\n"
        "assembled as in device memory (fronts placed next to the streams, checksums by parts' terms).");
  m.def("_parse_front_check", &parse_front_check, py::arg("blob"), py::arg("first") = 1 << 16,
        "Test hook: parse a blob from its front as the CUDA backend parses a device blob; (accepted,\n"
        "bytes copied), refusing (InvalidArgumentError) if that disagrees with the full parse.");
  m.attr("GRID_CHUNK_LOG2") = kGridChunkLog2;
  m.def("_crc32c_by_parts", [](py::buffer data, uint32_t seed, uint64_t part_bytes, bool terms) {
          if (part_bytes < 1) throw InvalidArgument("part_bytes must be >= 1");
          py::buffer_info keep;
          const auto v = py_blob::byte_view(data, keep);
          return terms ? crc32c_by_terms(v.first, v.second, seed, part_bytes) : crc32c_by_parts(v.first, v.second, seed, part_bytes);
        }, py::arg("data"), py::arg("seed") = 0, py::arg("part_bytes") = 1 << 14, py::arg("terms") = false,
        "Test hook: crc32c computed as the GPU does: raw CRCs of parts chained on the host (the stream\n"
        "digest), or, terms=True, every part's term on its own, combined by XOR (a blob it assembles).");
  m.def("_seal_pieces_on_host", [](const py::list& pieces) {
          std::vector<std::string> keep;
          keep.reserve(pieces.size());
          std::vector<SealPiece> parts;
          for (const py::handle& piece : pieces) {
            const auto pair = piece.cast<std::pair<py::bytes, bool>>();
            keep.push_back(std::string(pair.first));
            parts.push_back({reinterpret_cast<const uint8_t*>(keep.back().data()), keep.back().size(), pair.second});
          }
          uint64_t body = 0;
          for (const SealPiece& p : parts) body += p.size;
          std::string out(size_t(body + kChecksumSize), '\0');
          const SealJobs jobs(parts, reinterpret_cast<uint8_t*>(out.data()));
          seal_on_host(jobs);
          return py::bytes(out);
        }, py::arg("pieces"),
        "Test hook: a container sealed from its pieces ((bytes, stays) pairs: framing on the host, blobs\n"
        "where the assembly runs) by the steps the GPU runs for a message in its memory: body + CRC-32C.");
  py_stages::define(m);
}
