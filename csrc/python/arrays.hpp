// Python buffers as the core's tensor views (request.hpp), and core vectors back as numpy arrays.
// Python's array adapter (ebgc/arrays.py) hands over a buffer and the dtype's name: bfloat16 has
// no buffer format, so it arrives as a 16-bit integer view.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "ebgc/common/errors.hpp"
#include "ebgc/format/vocabulary.hpp"
#include "ebgc/request.hpp"

namespace ebgc {
namespace py_arrays {

namespace py = pybind11;

// The buffer's element format without a byte-order prefix that means this (little-endian) host;
// an explicitly big-endian format is refused.
inline std::string native_format(const std::string& f) {
  if (!f.empty() && (f[0] == '>' || f[0] == '!')) throw InvalidArgument("big-endian data: byte-swap it to little-endian first");
  return !f.empty() && (f[0] == '<' || f[0] == '=' || f[0] == '@') ? f.substr(1) : f;
}

// The dtype of a buffer: `name` (a dtype name; "" to infer it from the buffer's format), checked
// against the buffer's element format and size.
inline DType buffer_dtype(const py::buffer_info& info, const std::string& name) {
  const std::string f = native_format(info.format);
  auto is = [&](const char* formats, py::ssize_t size) {
    return info.itemsize == size && f.size() == 1 && std::string(formats).find(f[0]) != std::string::npos;
  };
  if (name.empty() || name == "float32" || name == "float64" || name == "float16") {
    if (is("f", 4) && (name.empty() || name == "float32")) return DType::Float32;
    if (is("d", 8) && (name.empty() || name == "float64")) return DType::Float64;
    if (is("e", 2) && (name.empty() || name == "float16")) return DType::Float16;
  } else if (name == "bfloat16") {
    if (is("Hh", 2)) return DType::BFloat16;  // its bits, as numpy and torch hand them over
  } else {
    throw InvalidArgument("unknown dtype " + name);
  }
  throw py::type_error("ebgc compresses float32, float64, float16 or bfloat16 data");
}

// A view of a buffer (any strides) as the front door takes it.
inline TensorView view_of(const py::buffer_info& info, DType dtype) {
  TensorView v;
  v.data = info.ptr;
  v.dtype = dtype;
  for (py::ssize_t d = 0; d < info.ndim; ++d) {
    v.shape.push_back(uint64_t(info.shape[d]));
    v.strides.push_back(int64_t(info.strides[d]));
  }
  return v;
}

// A C-contiguous buffer of the same dtype and size as `like` (a previous reconstruction, an
// output), or null for None.
inline void* companion(const py::object& obj, const TensorView& like, const std::string& dtype, bool writable,
                       const char* what, py::buffer_info& keep) {
  if (obj.is_none()) return nullptr;
  keep = py::reinterpret_borrow<py::buffer>(obj).request(writable);
  TensorView v = view_of(keep, buffer_dtype(keep, dtype));
  if (v.dtype != like.dtype || v.elements() != like.elements())
    throw InvalidArgument(std::string(what) + " must have the dtype and size of the data");
  if (!v.contiguous()) throw InvalidArgument(std::string(what) + " must be C-contiguous");
  return keep.ptr;
}

template <class T>
py::array_t<T> vector_to_array(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({py::ssize_t(heap->size())}, {py::ssize_t(sizeof(T))}, heap->data(), owner);
}

inline py::bytes to_bytes(const std::vector<uint8_t>& v) { return py::bytes(reinterpret_cast<const char*>(v.data()), v.size()); }

// A bytes object of `size` bytes written in place by the core (an allocator for the front door's
// compress); takes the GIL, which the caller has released.
struct BytesResult {
  py::object blob;
  uint8_t* allocate(size_t size) {
    py::gil_scoped_acquire gil;
    blob = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, py::ssize_t(size)));
    if (!blob) {
      PyErr_Clear();
      throw std::bad_alloc();
    }
    return reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(blob.ptr()));
  }
  py::bytes release() { return py::reinterpret_steal<py::bytes>(blob.release()); }
};

}  // namespace py_arrays
}  // namespace ebgc
