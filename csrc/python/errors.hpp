// Core exceptions -> the Python classes of ebgc.errors, for every native module (_core, _cuda).
#pragma once
#include <pybind11/pybind11.h>

#include "ebgc/errors.hpp"

namespace ebgc {

inline void register_error_translator() {
  namespace py = pybind11;
  py::module_ errors = py::module_::import("ebgc.errors");
  static py::handle format_error = py::object(errors.attr("FormatError")).release();
  static py::handle checksum_error = py::object(errors.attr("ChecksumError")).release();
  static py::handle version_error = py::object(errors.attr("VersionError")).release();
  static py::handle invalid_argument = py::object(errors.attr("InvalidArgumentError")).release();
  static py::handle cuda_error = py::object(errors.attr("CudaError")).release();
  static py::handle ebgc_error = py::object(errors.attr("EbgcError")).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ChecksumError& e) {
      PyErr_SetString(checksum_error.ptr(), e.what());
    } catch (const VersionError& e) {
      PyErr_SetString(version_error.ptr(), e.what());
    } catch (const FormatError& e) {
      PyErr_SetString(format_error.ptr(), e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(invalid_argument.ptr(), e.what());
    } catch (const CudaError& e) {
      PyErr_SetString(cuda_error.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(ebgc_error.ptr(), e.what());
    }
  });
}

}  // namespace ebgc
