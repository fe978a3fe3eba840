// Error types of the ebgc core. The core never prints: every failure is one of these exceptions,
// which csrc/bind.cpp maps onto the Python classes of ebgc.errors.
#pragma once
#include <stdexcept>
#include <string>

namespace ebgc {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The byte string is not a valid ebgc blob (foreign, truncated, corrupted, inconsistent).
struct FormatError : Error {
  using Error::Error;
};
struct ChecksumError : FormatError {
  using FormatError::FormatError;
};
struct VersionError : FormatError {
  using FormatError::FormatError;
};
// A blob that would decode to more than the caller allows (max_output), or than can be allocated.
struct OutputLimitError : FormatError {
  using FormatError::FormatError;
};
// A caller-supplied argument is out of its domain (bound, mode, coder, sizes of out=).
struct InvalidArgument : Error {
  using Error::Error;
};

// A CUDA runtime call failed (no device, out of device memory, a kernel fault).
struct CudaError : Error {
  using Error::Error;
};

[[noreturn]] inline void fail_format(const std::string& what) { throw FormatError(what); }
inline void require_format(bool ok, const char* what) {
  if (!ok) throw FormatError(what);
}

}  // namespace ebgc
