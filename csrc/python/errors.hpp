// Core exceptions -> the Python classes of ebgc.errors, for every native module (_core, _cuda).
#pragma once
#include <pybind11/pybind11.h>

#include <new>

#include "ebgc/common/errors.hpp"

namespace ebgc {

inline void register_error_translator() {
  namespace py = pybind11;
  py::module_ errors = py::module_::import("ebgc.errors");
  auto cls = [&](const char* name) { return py::object(errors.attr(name)).release(); };
  static py::handle format_error = cls("FormatError"), checksum_error = cls("ChecksumError"),
                    version_error = cls("VersionError"), output_limit = cls("OutputLimitError"),
                    invalid_argument = cls("InvalidArgumentError"), cuda_error = cls("CudaError"),
                    out_of_memory = cls("OutOfMemoryError"), ebgc_error = cls("EbgcError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ChecksumError& e) {
      PyErr_SetString(checksum_error.ptr(), e.what());
    } catch (const VersionError& e) {
      PyErr_SetString(version_error.ptr(), e.what());
    } catch (const OutputLimitError& e) {
      PyErr_SetString(output_limit.ptr(), e.what());
    } catch (const FormatError& e) {
      PyErr_SetString(format_error.ptr(), e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(invalid_argument.ptr(), e.what());
    } catch (const CudaError& e) {
      PyErr_SetString(cuda_error.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(ebgc_error.ptr(), e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(out_of_memory.ptr(), "the native core ran out of memory");
    }
  });
}

}  // namespace ebgc
