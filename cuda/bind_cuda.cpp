// ebgc._cuda: the CUDA backend for Python. Device arrays arrive as raw pointers (python/ebgc/cuda.py
// reads them from DLPack / __cuda_array_interface__ / torch), streams as integer handles. The GIL
// is released around all device work.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../csrc/py_errors.hpp"
#include "backend.hpp"

namespace py = pybind11;
using namespace ebgc;

namespace {

DType dtype_named(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "float64") return DType::Float64;
  if (name == "float16") return DType::Float16;
  if (name == "bfloat16") return DType::BFloat16;
  throw InvalidArgument("ebgc compresses float32, float64, float16 or bfloat16 data, not " + name);
}

const void* pointer(uintptr_t p) { return reinterpret_cast<const void*>(p); }

py::bytes compress(uintptr_t x, std::vector<uint64_t> shape, const std::string& dtype, double error_bound, int mode,
                   int coder, unsigned threads, uintptr_t stream, uintptr_t previous, uintptr_t previous2,
                   std::vector<double> coef, uintptr_t reconstruction, bool low_rank) {
  if (mode != 0 && mode != 1) throw InvalidArgument("mode must be abs or rel");
  gpu::EncodeRequest r;
  r.x = pointer(x);
  r.dtype = dtype_named(dtype);
  r.shape = std::move(shape);
  r.mode = BoundMode(mode);
  r.error_bound = error_bound;
  r.coder = coder;
  r.host_threads = std::max(1u, threads);
  r.stream = stream;
  r.previous[0] = pointer(previous);
  r.previous[1] = pointer(previous2);
  r.terms = previous2 ? 2 : previous ? 1 : 0;
  if (coef.size() < r.terms) throw InvalidArgument("one coefficient per previous reconstruction");
  for (unsigned k = 0; k < r.terms; ++k) r.coef[k] = coef[k];
  r.reconstruction = reinterpret_cast<void*>(reconstruction);
  r.low_rank = low_rank;
  py::object blob;  // the blob is written straight into the bytes object returned
  {
    py::gil_scoped_release nogil;
    gpu::compress(r, [&](size_t size) {
      py::gil_scoped_acquire gil;
      blob = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, py::ssize_t(size)));
      if (!blob) {
        PyErr_Clear();
        throw std::bad_alloc();
      }
      return reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(blob.ptr()));
    });
  }
  return py::reinterpret_steal<py::bytes>(blob.release());
}

void decompress_into(py::buffer blob, uintptr_t out, const std::string& dtype, uint64_t out_elems, unsigned threads,
                     uintptr_t stream, uintptr_t previous, uintptr_t previous2) {
  py::buffer_info b = blob.request();
  if (b.ndim > 1 || (b.ndim == 1 && b.shape[0] > 1 && b.strides[0] != b.itemsize))
    throw py::type_error("blob must be a contiguous bytes-like object");
  gpu::DecodeRequest r;
  r.blob = static_cast<const uint8_t*>(b.ptr);
  r.size = size_t(b.size * b.itemsize);
  r.out = reinterpret_cast<void*>(out);
  r.dtype = dtype_named(dtype);
  r.out_elems = out_elems;
  r.previous[0] = pointer(previous);
  r.previous[1] = pointer(previous2);
  r.host_threads = std::max(1u, threads);
  r.stream = stream;
  py::gil_scoped_release nogil;
  gpu::decompress(r);
}

py::dict benchmark(uintptr_t x, const std::string& dtype, uint64_t n, int mode, double error_bound, uintptr_t scratch,
                   unsigned repeats, uintptr_t stream) {
  gpu::Timings t;
  {
    py::gil_scoped_release nogil;
    t = gpu::benchmark_bitpack(pointer(x), dtype_named(dtype), n, BoundMode(mode ? 1 : 0), error_bound,
                               reinterpret_cast<void*>(scratch), repeats, stream);
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
  m.def("device_of", [](uintptr_t p) { return gpu::device_of(pointer(p)); }, py::arg("pointer"),
        "The device that owns a device pointer (InvalidArgumentError for host memory).");
  m.def("compress", &compress, py::arg("data"), py::arg("shape"), py::arg("dtype"), py::arg("error_bound"),
        py::arg("mode"), py::arg("coder"), py::arg("threads"), py::arg("stream") = 0, py::arg("previous") = 0,
        py::arg("previous2") = 0, py::arg("coef") = std::vector<double>(), py::arg("reconstruction") = 0,
        py::arg("low_rank") = true,
        "Compress a C-contiguous device array (pointer) into a blob. coder 1 (bitpack) runs on the GPU;\n"
        "the other coders copy the data to the host and use the CPU codec (low_rank: as ebgc._core).");
  m.def("decompress_into", &decompress_into, py::arg("blob"), py::arg("out"), py::arg("dtype"), py::arg("out_elems"),
        py::arg("threads"), py::arg("stream") = 0, py::arg("previous") = 0, py::arg("previous2") = 0,
        "Decode a host blob into a C-contiguous device array (pointer), asynchronously on `stream`.");
  m.def("benchmark_bitpack", &benchmark, py::arg("data"), py::arg("dtype"), py::arg("n"), py::arg("mode"),
        py::arg("error_bound"), py::arg("scratch"), py::arg("repeats"), py::arg("stream") = 0,
        "Device time (ms, CUDA events) of compress, decompress and a device-to-device copy.");
}
