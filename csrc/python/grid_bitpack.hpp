// The host runner of the device's bit-packing kernels (grid/bitpack_host_runner.hpp) as test hooks
// of ebgc._core, for the tests that compare its bytes with the CPU codec's
// (tests/test_grid_bitpack.py). C-contiguous host buffers only.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "arrays.hpp"
#include "blob.hpp"
#include "ebgc/grid/bitpack_host_runner.hpp"

namespace ebgc {
namespace py_grid_bitpack {

namespace py = pybind11;

namespace {  // (included by bind.cpp only)

py::bytes compress_buffer(py::buffer data, const std::string& dtype, double error_bound, int mode, py::object previous,
                          py::object previous2, py::object reconstruction) {
  const py::buffer_info info = data.request();
  const TensorView x = py_arrays::view_of(info, py_arrays::buffer_dtype(info, dtype));
  if (!x.contiguous()) throw InvalidArgument("the grid runner takes C-contiguous arrays");
  if (mode != int(BoundMode::Abs) && mode != int(BoundMode::Rel)) throw InvalidArgument("mode must be abs or rel");
  Params p;
  p.mode = BoundMode(uint8_t(mode));
  p.error_bound = error_bound;
  p.coder = int(Coder::Bitpack);
  p.low_rank = false;
  validate(x, p, Execution());
  py::buffer_info keep[3];
  const void* prev[2] = {py_arrays::companion(previous, x, dtype, false, "previous", keep[0]),
                         py_arrays::companion(previous2, x, dtype, false, "previous2", keep[1])};
  if (!prev[0] && prev[1]) throw InvalidArgument("previous2 needs previous");
  void* rec = py_arrays::companion(reconstruction, x, dtype, true, "reconstruction", keep[2]);
  py_arrays::BytesResult result;
  {
    py::gil_scoped_release nogil;
    with_storage_type(x.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* previous_t[2] = {static_cast<const T*>(prev[0]), static_cast<const T*>(prev[1])};
      grid_bitpack_compress(static_cast<const T*>(x.data), x.shape, p, previous_t, static_cast<T*>(rec),
                            [&](size_t size) { return result.allocate(size); });
    });
  }
  return result.release();
}

void decompress_buffer(const py_blob::Blob& blob, py::buffer out, const std::string& dtype, py::object previous,
                       py::object previous2) {
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
    grid_bitpack_decode(blob.parsed, static_cast<T*>(view.data), previous_t);
  });
}

}  // namespace

inline void define(py::module_& m) {
  m.def("_grid_bitpack_compress", &compress_buffer, py::arg("data"), py::arg("dtype"), py::arg("error_bound"),
        py::arg("mode"), py::arg("previous") = py::none(), py::arg("previous2") = py::none(),
        py::arg("reconstruction") = py::none(),
        "Test hook: the device's bit-packing kernels run on the host, block by block (its blob equals\n"
        "the CPU codec's with coder bitpack, chunk_log2=DEFAULT_CHUNK_LOG2 and low_rank=False).");
  m.def("_grid_bitpack_decompress_into", &decompress_buffer, py::arg("blob"), py::arg("out"), py::arg("dtype") = "",
        py::arg("previous") = py::none(), py::arg("previous2") = py::none(),
        "Test hook: the device's bit-packing decoder run on the host, block by block (bit-packed blobs\n"
        "of any chunk size).");
}

}  // namespace py_grid_bitpack
}  // namespace ebgc
