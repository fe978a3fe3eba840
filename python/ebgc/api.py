"""One-shot API: compress one array into a self-describing blob, and back."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from . import _core, arrays, budget, cuda
from .errors import ArgumentTypeError, CudaError, InvalidArgumentError, OutputLimitError
from .settings import Settings, max_output_of, threads_of
from .vocabulary import CODERS, MODES, dtype_from_name, dtype_name

__all__ = ["compress", "compress_many", "decompress", "info", "CODERS", "MODES"]


def compress(
    data: Any,
    error_bound: float,
    *,
    mode: str = "rel",
    coder: str = "auto",
    threads: Optional[int] = None,
    stream: Any = None,
    low_rank: bool = True,
    budget_bytes: Optional[int] = None,
    max_error_bound: Optional[float] = None,
    device_blob: bool = False,
) -> Any:
    """Compress a float32/float64/float16/bfloat16 array so that every value comes back within the
    bound. 16-bit data is verified in its own precision: the bound holds for the values
    decompress() returns in the input's dtype. bfloat16 numpy arrays use ml_dtypes' dtype; torch
    bfloat16 tensors are accepted directly.

    mode="rel": the absolute bound is ``error_bound * (max - min)`` over the finite values;
    mode="abs": it is ``error_bound``. NaN and +-Inf come back exactly; an array whose finite range
    is zero (or that has no finite value) comes back exactly.

    coder: "auto" picks, per array, the smallest of "context" (context-modelled rANS, best
    ratio), "huffman", "bitpack" (fastest) and "raw".

    low_rank: a matrix (2-D array) may be predicted by a low-rank approximation whose factors
    travel in the header, where that makes it smaller: linear layers' updates are low-rank, and
    this often halves them. False skips the factorization (faster). Not used by "bitpack".

    threads: worker threads (default: all cores). The GIL is released while compressing.
    Input of any layout is read in place (a strided view is gathered once by the core).

    GPU arrays (torch CUDA tensors, cupy, ``__cuda_array_interface__``, CUDA DLPack) are compressed
    by the CUDA backend into the same format: the context coder, Huffman, bit-packing and raw run on
    the device ("auto" picks among all four there, as the CPU does); matrices the low-rank fit may
    take are coded on the host after one copy. stream: the CUDA stream to
    work on (None: the array's framework's current stream; an integer cudaStream_t, or a torch/cupy
    stream). Ignored for host arrays. Many arrays of one message: :func:`compress_many`.

    device_blob (device arrays only): return the blob in the array's device memory, as a 1-D uint8
    torch tensor (torch input) or cupy array, assembled there: only its front (header, outliers,
    tables, chunk directory) is written by the host, its coded streams never leave the GPU, and its
    checksum is computed there. Ready on `stream`; e.g. for an NCCL collective. decompress() takes
    it as it is, on any GPU or, as bytes, on any host.

    budget_bytes: make the blob no larger than this by loosening the bound, up to max_error_bound
    (default: 64 x error_bound; same mode). The bound used is in the blob (``info(blob)``); a
    blob still over the budget at max_error_bound is returned as it is (check ``len(blob)``).
    """
    s = Settings.make(error_bound, mode, coder, low_rank, threads)
    limit, max_scale = budget.check_budget(budget_bytes, s.error_bound, max_error_bound)
    if limit is None:
        return compress_with(data, s, stream=stream, device_blob=device_blob)

    def attempt(scale: float):
        blob = compress_with(data, s.scaled(scale), stream=stream, device_blob=device_blob)
        return len(blob), blob

    return budget.fit(attempt, limit, max_scale).payload


def compress_many(
    data: Sequence[Any],
    error_bound: float,
    *,
    mode: str = "rel",
    coder: str = "auto",
    threads: Optional[int] = None,
    stream: Any = None,
    low_rank: bool = True,
    device_blob: bool = False,
) -> List[Any]:
    """:func:`compress` of every array of `data` (one message: a model's gradients or weights),
    blob k equal to ``compress(data[k], ...)``'s. On a GPU the device arrays of each device and
    dtype are coded together, as one grid ("auto", "context", "huffman" and "bitpack"): a fixed
    number of kernel launches and a few waits for the whole message instead of a few per array,
    which is what makes messages of many small tensors fast. Host arrays, and what the GPU leaves to the
    host (matrices for the low-rank fit), are coded one by one. device_blob: every blob
    in its array's device memory, as :func:`compress` (device arrays only).
    """
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise ArgumentTypeError("data must be a sequence (list or tuple) of arrays")
    return compress_many_with(list(data), Settings.make(error_bound, mode, coder, low_rank, threads), stream=stream,
                              device_blobs=device_blob)


def compress_many_with(data: List[Any], s: Settings, *, stream: Any = None,
                       reconstructions: Optional[List[Any]] = None, previous: Optional[List[Any]] = None,
                       previous2: Optional[List[Any]] = None, device_blobs: bool = False) -> List[Any]:
    """compress_with of each array (reconstructions, previous, previous2: one array or None each),
    the device arrays through the CUDA backend's message grids."""
    def term(terms: Optional[List[Any]], k: int) -> Any:
        return None if terms is None else terms[k]

    def pick(terms: Optional[List[Any]], keys: List[int]) -> Optional[List[Any]]:
        return None if terms is None else [terms[k] for k in keys]

    blobs: List[Any] = [None] * len(data)
    on_device = [k for k, x in enumerate(data) if not isinstance(x, np.ndarray) and arrays.is_device(x)]
    if device_blobs:
        _check_device_blob(len(on_device) == len(data))
    if on_device and cuda.available():
        coded = cuda.compress_many([data[k] for k in on_device], s, stream, pick(reconstructions, on_device),
                                   pick(previous, on_device), pick(previous2, on_device), device_blobs)
        for k, blob in zip(on_device, coded):
            blobs[k] = blob
    for k, x in enumerate(data):
        if blobs[k] is None:
            blobs[k] = compress_with(x, s, stream=stream, reconstruction=term(reconstructions, k),
                                     previous=term(previous, k), previous2=term(previous2, k))
    return blobs


def _check_device_blob(on_device: bool) -> None:
    if not on_device:
        raise InvalidArgumentError("device_blob=True is for device arrays (the blob goes to their GPU's memory)")
    if not cuda.available():
        raise CudaError("device_blob=True needs the CUDA backend and a CUDA device (ebgc.HAS_CUDA is False)")


def compress_with(data: Any, s: Settings, *, stream: Any = None, previous: Any = None, previous2: Any = None,
                  reconstruction: Any = None, device_blob: bool = False) -> Any:
    """One array through the native front door with checked settings; previous / previous2 /
    reconstruction: the stream codec's terms (stream.py), on the same side as the data (device
    arrays for a device array, which is then coded on its GPU). device_blob: the blob in the
    array's device memory (compress())."""
    on_device = not isinstance(data, np.ndarray) and arrays.is_device(data)
    if device_blob:
        _check_device_blob(on_device)
    if on_device:
        if cuda.available():
            return cuda.compress(data, s, stream, previous, previous2, reconstruction, device_blob)
        if previous is not None or reconstruction is not None:
            raise InvalidArgumentError("a device array in a stream needs the CUDA backend (ebgc.HAS_CUDA is False)")
        data = arrays.to_host(data)
    arr = arrays.host_array(data)
    name = dtype_name(arr.dtype)
    return _core.compress(arrays.core_buffer(arr), name, s.error_bound, s.mode_id, s.coder_id, s.threads,
                          low_rank=s.low_rank, previous=arrays.core_buffer(previous),
                          previous2=arrays.core_buffer(previous2), reconstruction=arrays.core_buffer(reconstruction))


def blob_bytes(blob: Any) -> Any:
    """A blob's bytes as the native modules read them."""
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    if isinstance(blob, np.ndarray) and blob.dtype == np.uint8:
        return np.ascontiguousarray(blob)
    raise ArgumentTypeError(f"blob must be bytes, bytearray, memoryview or a uint8 array, not {type(blob).__name__}")


def inspect(blob: Any, *, max_output: Optional[int] = None, threads: int = 1, for_decoding: bool = True) -> Any:
    """The blob parsed and validated once (a ``_core.Blob``): decoders take it instead of the bytes."""
    return _core.inspect(blob_bytes(blob), max_output=max_output_of(max_output), threads=threads,
                         for_decoding=for_decoding)


def _decompress_device_blob(blob: Any, out: Any, nthreads: int, device: Any, stream: Any, limit: int) -> Any:
    """decompress() of a blob in device memory: decoded where it is, its streams never on the host."""
    if not cuda.available():  # ebgc built without its backend, or no device: through the host
        if arrays._module_of(blob) == "torch":
            host = blob.detach().cpu().numpy().tobytes()
        elif hasattr(blob, "get"):  # cupy
            host = blob.get().tobytes()
        else:
            raise CudaError("a blob in device memory needs the CUDA backend (ebgc.HAS_CUDA is False)")
        return decompress(host, out=out, threads=nthreads, device=device, stream=stream, max_output=limit or None)
    if out is not None and not arrays.is_device(out):
        raise InvalidArgumentError("a blob in device memory decodes into a CUDA array (out=) or device=")
    parsed = cuda.inspect_device(blob, limit, stream)
    blob_device = arrays.device_blob(blob, cuda._cuda.device_of).device
    if out is None:
        out = arrays.empty_device(tuple(parsed[0].shape), parsed[0].dtype, device or f"cuda:{blob_device}")
    return cuda.decompress_device_blob(parsed, out, nthreads, stream)


def info(blob: Any) -> dict:
    """Validate a blob (checksum included) and describe its header; for a stream message
    (:class:`ebgc.GradientEncoder`), its header and every tensor's: ``{"kind": "stream message",
    "sequence": ..., "tensors": {name: {"abs_bound": ..., ...}}, ...}``."""
    if bytes(memoryview(blob_bytes(blob))[:4]) == b"EBGS":
        from .stream import message_info

        return message_info(blob)
    h = inspect(blob, for_decoding=False).info()
    h["ratio"] = h["raw_nbytes"] / h["nbytes"] if h["nbytes"] else float("nan")
    return h


def empty_host(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A new output array; an allocation that fails is the blob's problem, told as such."""
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError) as exc:
        raise OutputLimitError(f"cannot allocate the output of {shape} {dtype} values ({exc})") from None


def decompress(blob: Any, *, out: Any = None, threads: Optional[int] = None, device: Any = None,
               stream: Any = None, max_output: Optional[int] = None) -> Any:
    """Decode a blob made by :func:`compress`; returns an array of the original shape and dtype.

    out: an optional C-contiguous, writeable numpy array of the blob's dtype and element count,
    filled in place and returned; or a CUDA array (torch, cupy, ``__cuda_array_interface__``),
    decoded into on its device. Invalid blobs raise FormatError (ChecksumError, VersionError), and
    are refused before anything is written or allocated for them.

    max_output: refuse (OutputLimitError) a blob that decodes to more than this many bytes, for
    services that take blobs from strangers.

    device: "cuda" / "cuda:N" decodes on the GPU into a new cupy array (a torch tensor for
    bfloat16, or where cupy is missing). GPU decoding is asynchronous on `stream` (None: the
    current stream of the output's framework).

    blob may also be a contiguous 1-D uint8 CUDA array (e.g. received over NCCL): it is decoded
    on its GPU (into `out`, or a new array there), and only its front (header, outliers, tables,
    chunk directory) and checksum are copied to the host.
    """
    nthreads = threads_of(threads)
    limit = max_output_of(max_output)
    if not isinstance(blob, (bytes, bytearray, memoryview, np.ndarray)) and arrays.is_device(blob):
        return _decompress_device_blob(blob, out, nthreads, device, stream, limit)
    buf = blob_bytes(blob)
    out_on_device = out is not None and arrays.is_device(out)
    if out_on_device or (device is not None and str(device) != "cpu"):
        if not cuda.available():
            raise CudaError(f"decoding to {device or 'a CUDA array'} needs the CUDA backend and a CUDA device "
                            "(ebgc.HAS_CUDA is False)")
        if out is not None and not out_on_device:
            raise InvalidArgumentError("pass either out= or device=, not both")
        parsed = cuda.inspect(buf, limit, nthreads)
        if out is None:
            out = arrays.empty_device(tuple(parsed.shape), parsed.dtype, device)
        return cuda.decompress_into(parsed, out, nthreads, stream)
    parsed = _core.inspect(buf, max_output=limit, threads=nthreads)
    dtype, shape = dtype_from_name(parsed.dtype), tuple(parsed.shape)
    out = empty_host(shape, dtype) if out is None else arrays.checked_out(out, dtype, shape)
    _core.decompress_into(parsed, arrays.core_buffer(out), nthreads, dtype=parsed.dtype)
    return out
