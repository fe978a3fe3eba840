"""Device arrays through the CUDA backend (``ebgc._cuda``), without a copy to the host.

Where the work runs is the native plan's decision (csrc/include/ebgc/plan.hpp): bit-packing with
zero prediction runs on the GPU ("auto" means bit-packing there); the other coders, the low-rank
fit and stream prediction are staged through pinned host memory and done by the CPU codec. Blobs
are the same bytes wherever they were made.

Streams: ``stream=None`` uses the producer's current stream (torch's or cupy's), else an integer
``cudaStream_t``, a ``torch.cuda.Stream`` or a ``cupy.cuda.Stream``. Decompression is asynchronous on
that stream; compression waits for its own work there (the blob's size is needed on the host).
"""
from __future__ import annotations

from typing import Any

from .arrays import DeviceArray, device_array, stream_handle
from .errors import CudaError, InvalidArgumentError
from .settings import Settings

try:
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:  # built without a CUDA compiler
    _cuda = None


def available() -> bool:
    """True if the CUDA backend was built and sees at least one device."""
    return _cuda is not None and _cuda.device_count() > 0


def _backend():
    if not available():
        raise CudaError("this ebgc was built without its CUDA backend, or no CUDA device is visible "
                        "(ebgc.HAS_CUDA is False); pass host arrays instead")
    return _cuda


def _device_array(obj: Any, writable: bool = False) -> DeviceArray:
    return device_array(obj, writable=writable, device_of=_backend().device_of)


def _stream_for(stream: Any, arr: DeviceArray) -> int:
    if stream is None and arr.framework == "cai":
        return arr.stream
    return stream_handle(stream, arr.framework, arr.device)


def compress(data: Any, settings: Settings, stream: Any) -> bytes:
    """ebgc.compress for a device array."""
    backend = _backend()
    arr = _device_array(data)
    return backend.compress(arr.ptr, list(arr.shape), arr.dtype, settings.error_bound, settings.mode_id,
                            settings.coder_id, settings.threads, _stream_for(stream, arr), low_rank=settings.low_rank)


def inspect(buf: Any, max_output: int, threads: int) -> Any:
    """The blob parsed once by the backend, for a decode into device memory."""
    return _backend().inspect(buf, max_output=max_output, threads=threads)


def decompress_into(blob: Any, out: Any, threads: int, stream: Any) -> Any:
    """Decode an inspected blob into the device array `out` (asynchronously on the stream)."""
    arr = _device_array(out, writable=True)
    if arr.dtype != blob.dtype:
        raise InvalidArgumentError(f"out has dtype {arr.dtype}, the blob holds {blob.dtype}")
    if arr.size != blob.size:
        raise InvalidArgumentError(f"out has {arr.size} elements, the blob holds {blob.size}")
    _backend().decompress_into(blob, arr.ptr, threads, _stream_for(stream, arr))
    return out

