"""Device arrays through the CUDA backend (``ebgc._cuda``), without a copy to the host.

Where the work runs is the native plan's decision (csrc/include/ebgc/plan.hpp): the context
coder's lanes, bit-packing and raw run on the GPU, with zero or stream (blend) prediction ("auto"
picks among those three there). Huffman, and matrices the low-rank fit may take (low_rank on, a
ratio coder), are staged through pinned host memory and done by the CPU codec. A device blob is
the CPU codec's blob with the device's chunk size, and decodes anywhere.

Whole messages (``compress_many``) are coded as one grid per device and dtype; blobs held in
device memory (``inspect_device``) are decoded without copying their streams to the host.

Streams: ``stream=None`` uses the producer's current stream (torch's or cupy's), else an integer
``cudaStream_t``, a ``torch.cuda.Stream`` or a ``cupy.cuda.Stream``. Decompression of raw and
bit-packed blobs is asynchronous on that stream, of context blobs it waits for the GPU's check of
the streams; compression waits for its own work there (the blob's size is needed on the host).
"""
from __future__ import annotations

from typing import Any

from . import arrays
from .arrays import DeviceArray, device_array, stream_handle
from .errors import CudaError, FormatError, InvalidArgumentError
from .settings import Settings
from .vocabulary import DTYPES

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


def _ptr(obj: Any, like: DeviceArray, what: str, writable: bool = False) -> int:
    """The pointer of a stream term, which must match x in dtype, size and device."""
    if obj is None:
        return 0
    arr = _device_array(obj, writable=writable)
    if arr.framework == "torch" and not obj.is_contiguous():
        raise InvalidArgumentError(f"{what} must be C-contiguous")
    if (arr.dtype, arr.size, arr.device) != (like.dtype, like.size, like.device):
        raise InvalidArgumentError(f"{what} must have x's dtype, size and device")
    return arr.ptr


def compress(data: Any, settings: Settings, stream: Any, previous: Any = None, previous2: Any = None,
             reconstruction: Any = None) -> bytes:
    """ebgc.compress for a device array; previous, previous2: the stream's last reconstructions
    (device arrays of x's dtype and size); reconstruction: a device array that receives what the
    decoder will return."""
    backend = _backend()
    arr = _device_array(data)
    terms = (_ptr(previous, arr, "previous"), _ptr(previous2, arr, "previous2"),
             _ptr(reconstruction, arr, "reconstruction", writable=True))
    return backend.compress(arr.ptr, list(arr.shape), arr.dtype, settings.error_bound, settings.mode_id,
                            settings.coder_id, settings.threads, _stream_for(stream, arr), low_rank=settings.low_rank,
                            previous=terms[0], previous2=terms[1], reconstruction=terms[2])


def compress_many(data: Any, settings: Settings, stream: Any, reconstructions: Any = None, previous: Any = None,
                  previous2: Any = None) -> list:
    """One blob per device array of the sequence `data` (one message), each equal to what
    :func:`compress` writes for it alone with the same stream terms. With "bitpack", "context" or
    "auto" the arrays of each device and dtype are coded as one grid, their stream predictors
    fitted at once: a fixed number of kernel launches and a few host waits for the whole message
    (the plan's host work, Huffman and the low-rank fit, still goes tensor by tensor).
    reconstructions, previous, previous2: sequences of device arrays (or None), one per array: where
    each reconstruction goes (not overlapping the array or its previous ones) and the stream's last
    reconstructions."""
    backend = _backend()
    arrs = [_device_array(x) for x in data]

    def pointers(terms: Any, what: str, writable: bool = False) -> list:
        if terms is None:
            return []
        if len(terms) != len(arrs):
            raise InvalidArgumentError(f"one {what} (or None) per array")
        return [_ptr(t, a, what, writable=writable) for t, a in zip(terms, arrs)]

    recs = pointers(reconstructions, "reconstruction", writable=True)
    p1, p2 = pointers(previous, "previous"), pointers(previous2, "previous2")
    if not arrs:
        return []
    return backend.compress_many([a.ptr for a in arrs], [list(a.shape) for a in arrs], [a.dtype for a in arrs],
                                 settings.error_bound, settings.mode_id, settings.coder_id, settings.threads,
                                 _stream_for(stream, arrs[0]), low_rank=settings.low_rank, reconstructions=recs,
                                 previous=p1, previous2=p2)


def crc32c(data: Any, seed: int = 0) -> int:
    """crc32c of a device array's bytes (the value ebgc._core.crc32c gives for the same bytes)."""
    arr = _device_array(data)
    nbytes = arr.size * DTYPES[arr.dtype].itemsize
    return _backend().crc32c(arr.ptr, nbytes, seed, _stream_for(None, arr)) if nbytes else seed


def inspect(buf: Any, max_output: int, threads: int) -> Any:
    """The blob parsed once by the backend, for a decode into device memory."""
    return _backend().inspect(buf, max_output=max_output, threads=threads)


def inspect_device(blob: Any, max_output: int, stream: Any = None) -> Any:
    """A blob held in device memory (a contiguous uint8 CUDA array) parsed from its front, its
    checksum verified on the device; its chunk streams are not copied to the host."""
    backend = _backend()
    arr = arrays.device_blob(blob, backend.device_of)
    if not arr.size:
        raise FormatError("not an ebgc blob (bad magic bytes)")
    parsed = backend.inspect_device(arr.ptr, arr.size, max_output=max_output, stream=_stream_for(stream, arr))
    parsed_owner = (parsed, arr.owner)  # the decode reads the blob's memory again
    return parsed_owner


def decompress_device_blob(parsed: Any, out: Any, threads: int, stream: Any, previous: Any = None,
                           previous2: Any = None) -> Any:
    """Decode a blob inspected by :func:`inspect_device` into the device array `out`."""
    blob, _owner = parsed
    arr = _device_array(out, writable=True)
    if arr.dtype != blob.dtype:
        raise InvalidArgumentError(f"out has dtype {arr.dtype}, the blob holds {blob.dtype}")
    if arr.size != blob.size:
        raise InvalidArgumentError(f"out has {arr.size} elements, the blob holds {blob.size}")
    _backend().decompress_device_blob(blob, arr.ptr, threads, _stream_for(stream, arr),
                                      previous=_ptr(previous, arr, "previous"), previous2=_ptr(previous2, arr, "previous2"))
    return out


def decompress_into(blob: Any, out: Any, threads: int, stream: Any, previous: Any = None, previous2: Any = None) -> Any:
    """Decode an inspected blob into the device array `out` on the stream; previous, previous2:
    the stream's reconstructions on the device (blend-predicted blobs)."""
    arr = _device_array(out, writable=True)
    if arr.dtype != blob.dtype:
        raise InvalidArgumentError(f"out has dtype {arr.dtype}, the blob holds {blob.dtype}")
    if arr.size != blob.size:
        raise InvalidArgumentError(f"out has {arr.size} elements, the blob holds {blob.size}")
    _backend().decompress_into(blob, arr.ptr, threads, _stream_for(stream, arr), previous=_ptr(previous, arr, "previous"),
                               previous2=_ptr(previous2, arr, "previous2"))
    return out

