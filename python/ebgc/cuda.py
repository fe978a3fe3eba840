"""Device arrays through the CUDA backend (``ebgc._cuda``), without a copy to the host.

Where the work runs is the native plan's decision (csrc/include/ebgc/plan.hpp): the context
coder's lanes, Huffman on the same lanes, bit-packing and raw run on the GPU, with zero or stream
(blend) prediction ("auto" picks among those four there). Matrices the low-rank fit may take
(low_rank on, a ratio coder) are staged through pinned host memory and done by the CPU codec. A
device blob is the CPU codec's blob with the device's chunk size, and decodes anywhere.

Whole messages (``compress_many``) are coded as one grid per device and dtype. Blobs can stay in
device memory both ways: assembled there (``device_blob``: only each blob's front, i.e. header,
outliers, tables and chunk directory, goes up; the checksum is computed on the device) and decoded
from there (``inspect_device``: only the front and checksum come down).

Streams: ``stream=None`` uses the producer's current stream (torch's or cupy's), else an integer
``cudaStream_t``, a ``torch.cuda.Stream`` or a ``cupy.cuda.Stream``. Decompression of raw and
bit-packed blobs is asynchronous on that stream, of context blobs it waits for the GPU's check of
the streams; compression waits for its own work there (the blob's size is needed on the host).
"""
from __future__ import annotations

from typing import Any, Callable

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


def _blob_allocator(arrs: list, kept: dict) -> Callable[[int, int], int]:
    """allocate(k, size) for the backend: a uint8 array on array k's device, in its framework (a
    torch tensor for torch input, else cupy), kept in kept[k] for the caller."""
    def allocate(k: int, size: int) -> int:
        kept[k], ptr = arrays.empty_bytes(size, arrs[k].device, arrs[k].framework)
        return ptr

    return allocate


def compress(data: Any, settings: Settings, stream: Any, previous: Any = None, previous2: Any = None,
             reconstruction: Any = None, device_blob: bool = False) -> Any:
    """ebgc.compress for a device array; previous, previous2: the stream's last reconstructions
    (device arrays of x's dtype and size); reconstruction: a device array that receives what the
    decoder will return. device_blob: the blob is assembled in the array's device memory (its
    streams never leave it) and returned as a uint8 device array, ready on `stream`."""
    backend = _backend()
    arr = _device_array(data)
    terms = (_ptr(previous, arr, "previous"), _ptr(previous2, arr, "previous2"),
             _ptr(reconstruction, arr, "reconstruction", writable=True))
    kept: dict = {}
    blob = backend.compress(arr.ptr, list(arr.shape), arr.dtype, settings.error_bound, settings.mode_id,
                            settings.coder_id, settings.threads, _stream_for(stream, arr), low_rank=settings.low_rank,
                            previous=terms[0], previous2=terms[1], reconstruction=terms[2],
                            allocate_device=_blob_allocator([arr], kept) if device_blob else None)
    return kept[0] if device_blob else blob


def compress_many(data: Any, settings: Settings, stream: Any, reconstructions: Any = None, previous: Any = None,
                  previous2: Any = None, device_blobs: bool = False) -> list:
    """One blob per device array of the sequence `data` (one message), each equal to what
    :func:`compress` writes for it alone with the same stream terms. With "bitpack", "context",
    "huffman" or "auto" the arrays of each device and dtype are coded as one grid, their stream
    predictors fitted at once: a fixed number of kernel launches and a few host waits for the whole
    message (the plan's host work, the low-rank fit, still goes tensor by tensor).
    reconstructions, previous, previous2: sequences of device arrays (or None), one per array: where
    each reconstruction goes (not overlapping the array or its previous ones) and the stream's last
    reconstructions. device_blobs: each blob assembled in its array's device memory, as
    :func:`compress` with device_blob."""
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
    kept: dict = {}
    blobs = backend.compress_many([a.ptr for a in arrs], [list(a.shape) for a in arrs], [a.dtype for a in arrs],
                                  settings.error_bound, settings.mode_id, settings.coder_id, settings.threads,
                                  _stream_for(stream, arrs[0]), low_rank=settings.low_rank, reconstructions=recs,
                                  previous=p1, previous2=p2,
                                  allocate_device=_blob_allocator(arrs, kept) if device_blobs else None)
    return [kept[k] for k in range(len(arrs))] if device_blobs else blobs


def crc32c(data: Any, seed: int = 0) -> int:
    """crc32c of a device array's bytes (the value ebgc._core.crc32c gives for the same bytes)."""
    arr = _device_array(data)
    nbytes = arr.size * DTYPES[arr.dtype].itemsize
    return _backend().crc32c(arr.ptr, nbytes, seed, _stream_for(None, arr)) if nbytes else seed


def _byte_crc32c(blob: Any, seed: int = 0) -> int:
    """crc32c of a uint8 device array's bytes, computed on its device."""
    arr = arrays.device_blob(blob, _backend().device_of)
    return _backend().crc32c(arr.ptr, arr.size, seed, _stream_for(None, arr)) if arr.size else seed


def _to_host_bytes(blob: Any) -> bytes:
    return bytes(blob.get()) if hasattr(blob, "get") else bytes(blob.cpu().numpy())


class DeviceBytes:
    """A sealed container in device memory (a uint8 CUDA array) as wire.FetchingReader reads it:
    small windows copied to the host, the checksum computed on the device, parts left in place."""

    def __init__(self, data: Any):
        self.data = data
        self.size = arrays.device_blob(data, _backend().device_of).size

    def fetch(self, begin: int, end: int) -> bytes:
        return _to_host_bytes(self.data[begin:end]) if end > begin else b""

    def crc32c(self, end: int) -> int:
        return _byte_crc32c(self.data[:end])

    def part(self, begin: int, end: int) -> Any:
        return self.data[begin:end]


def seal_pieces(pieces: list) -> Any:
    """A sealed container assembled in device memory: `pieces` (host bytes, and uint8 device
    arrays on one device, in order: wire.Writer.pieces) placed into one new uint8 array of the
    first device piece's framework, then their CRC-32C, computed on the device, appended: the
    framing goes up in one copy, one kernel places every piece, one checksums the body, on the
    first device piece's framework's current stream; no device piece comes to the host and the
    host does not wait."""
    backend = _backend()
    devices = [arrays.device_blob(p, backend.device_of) for p in pieces if not isinstance(p, bytes)]
    first = devices[0]
    if any(d.device != first.device for d in devices if d.size):
        raise InvalidArgumentError("the pieces of a message in device memory must be on one device")
    out, ptr = arrays.empty_bytes(sum(len(p) for p in pieces) + 4, first.device, first.framework)
    table, placed = [], iter(devices)
    for piece in pieces:
        if isinstance(piece, bytes):
            table.append(piece)
        else:
            d = next(placed)
            table.append((d.ptr, d.size))
    backend.seal_pieces(ptr, table, _stream_for(None, first))
    return out


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


def parsed_blob(inspected: Any) -> Any:
    """The parse (shape, dtype, output_nbytes, predictor_terms) of a blob from :func:`inspect` or
    :func:`inspect_device`."""
    return inspected[0] if isinstance(inspected, tuple) else inspected


def decode_inspected(inspected: Any, out: Any, threads: int, stream: Any, previous: Any = None,
                     previous2: Any = None) -> Any:
    """Decode a blob from :func:`inspect` (host bytes) or :func:`inspect_device` into `out`."""
    decode = decompress_device_blob if isinstance(inspected, tuple) else decompress_into
    return decode(inspected, out, threads, stream, previous, previous2)


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

