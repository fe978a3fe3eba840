"""Typed errors. Every error ebgc raises on purpose derives from EbgcError.

The native core raises the same classes: ebgc._core registers them at import time
(see csrc/bind.cpp), so a corrupted blob gives FormatError whichever layer notices it.
"""


class EbgcError(Exception):
    """Base class of every error raised by ebgc."""


class InvalidArgumentError(EbgcError, ValueError):
    """A bad argument: negative/NaN/zero bound, unknown mode or coder, bad thread count, bad out=."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type: a blob that is not bytes-like, tensors that are not a mapping."""


class UnsupportedDTypeError(EbgcError, TypeError):
    """The array's dtype is not a supported floating type (float32, float64, float16, bfloat16)."""


class FormatError(EbgcError, ValueError):
    """The byte string is not a valid ebgc blob: foreign, truncated or corrupted."""


class ChecksumError(FormatError):
    """The blob's checksum does not match its bytes (corruption in transit or storage)."""


class VersionError(FormatError):
    """The blob was written in a format version this ebgc cannot read."""


class OutputLimitError(FormatError):
    """The blob or message would decode to more bytes than the caller's ``max_output``, or than
    can be allocated: refused before anything is decoded."""


class OutOfMemoryError(EbgcError, MemoryError):
    """The native core could not allocate what the work needs."""


class CudaError(EbgcError, RuntimeError):
    """A CUDA call failed: no usable device, device memory exhausted, or a kernel fault."""


class StreamError(EbgcError):
    """A stateful stream message arrived out of step (lost, repeated, reordered, foreign stream)."""
