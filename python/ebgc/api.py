"""One-shot API: compress one array into a self-describing blob, and back."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import ml_dtypes
import numpy as np

from . import _core
from . import cuda
from .errors import InvalidArgumentError, UnsupportedDTypeError

MODES = {"abs": 0, "rel": 1}
# "context" writes the lane layout (coder 4); blobs of its first layout (coder 3) still decode.
CODERS = {"auto": -1, "raw": 0, "bitpack": 1, "huffman": 2, "context": 4}
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16)
_FLOAT_NAMES = ("float32", "float64", "float16", "bfloat16", "float", "double", "half")
_MAX_ELEMENTS = 2**40
_DTYPE_ERROR = "ebgc compresses float32, float64, float16 or bfloat16 data"


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of a blob's dtype name (bfloat16 is ml_dtypes')."""
    return BFLOAT16 if name == "bfloat16" else np.dtype(name)


def _core_view(arr: Optional[np.ndarray]):
    """What _core takes for a float array: bfloat16 has no buffer format, so it goes as its 16 bits."""
    return arr.view(np.uint16) if arr is not None and arr.dtype == BFLOAT16 else arr


def _as_dtype(arr: np.ndarray) -> str:
    return "bfloat16" if arr.dtype == BFLOAT16 else ""


def _from_torch_bfloat16(data: Any) -> np.ndarray:
    """numpy cannot take bfloat16 through DLPack: read the bits as int16 and relabel them."""
    import torch

    return np.from_dlpack(data.view(torch.int16)).view(BFLOAT16)


def _as_host_array(data: Any) -> np.ndarray:
    """A numpy view of `data` (numpy, DLPack or buffer-protocol CPU arrays), copied only if the
    layout is not C-contiguous native-endian."""
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    elif hasattr(data, "__dlpack__"):
        dtype_name = str(getattr(data, "dtype", "")).replace("torch.", "")
        if dtype_name and dtype_name not in _FLOAT_NAMES:
            raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {dtype_name}")
        try:
            if dtype_name == "bfloat16" and type(data).__module__.startswith("torch"):
                arr = _from_torch_bfloat16(data)
            else:
                arr = np.from_dlpack(data)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"cannot read {type(data).__name__} through DLPack on the CPU ({exc}); "
                "GPU arrays need the CUDA backend, tensors that require grad need .detach()"
            ) from exc
    else:
        try:
            memoryview(data)
        except TypeError:
            raise UnsupportedDTypeError(
                f"expected a float32/float64/float16/bfloat16 array (numpy, DLPack or buffer protocol), "
                f"got {type(data).__name__}"
            ) from None
        arr = np.asarray(data)
    if arr.dtype not in _FLOATS and arr.dtype.newbyteorder("=") not in _FLOATS:
        raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {arr.dtype}")
    if arr.size > _MAX_ELEMENTS:  # before any copy: a broadcast view can claim terabytes
        raise InvalidArgumentError(f"array of {arr.size} values is over the format's limit of 2**40")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # (keeps 0-d arrays 0-d only when not called on them)
    return arr


def _to_host(data: Any) -> Any:
    """A host copy of a device array, for builds without the CUDA backend."""
    if type(data).__module__.startswith("torch"):
        return data.detach().cpu()
    if hasattr(data, "get"):  # cupy
        return data.get()
    raise InvalidArgumentError(
        f"{type(data).__name__} lives in CUDA memory and this ebgc has no CUDA backend; copy it to the host first")


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return int(_core.default_threads())
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise InvalidArgumentError(f"threads must be None or an integer >= 1, not {threads!r}")
    return int(threads)


def _error_bound(error_bound: Any) -> float:
    if isinstance(error_bound, bool) or not isinstance(error_bound, numbers.Real):
        raise InvalidArgumentError(f"error_bound must be a number, not {type(error_bound).__name__}")
    eb = float(error_bound)
    if not (math.isfinite(eb) and eb > 0):
        raise InvalidArgumentError(f"error_bound must be finite and > 0, not {error_bound!r}")
    return eb


def _choice(value: Any, table: dict, what: str) -> int:
    if not isinstance(value, str) or value not in table:
        raise InvalidArgumentError(f"unknown {what} {value!r}; expected one of {sorted(table)}")
    return table[value]


def compress(
    data: Any,
    error_bound: float,
    *,
    mode: str = "rel",
    coder: str = "auto",
    threads: Optional[int] = None,
    stream: Any = None,
    low_rank: bool = True,
) -> bytes:
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
    Contiguous input is read in place; other layouts are copied once.

    GPU arrays (torch CUDA tensors, cupy, ``__cuda_array_interface__``, CUDA DLPack) are compressed
    on their device, zero-copy, into the same format (bit-identical to the CPU's "bitpack" blob);
    there "auto" means "bitpack", and "huffman"/"context" are coded on the host after one copy.
    stream: the CUDA stream to work on (None: the array's framework's current stream; an integer
    cudaStream_t, or a torch/cupy stream). Ignored for host arrays.
    """
    eb = _error_bound(error_bound)
    mode_id = _choice(mode, MODES, "mode")
    coder_id = _choice(coder, CODERS, "coder")
    nthreads = _threads(threads)
    if cuda.is_device_array(data):
        if cuda.available():
            return cuda.compress(data, eb, mode_id, coder_id, nthreads, stream, bool(low_rank))
        data = _to_host(data)
    arr = _as_host_array(data)
    return _core.compress(_core_view(arr), list(arr.shape), eb, mode_id, coder_id, nthreads,
                          as_dtype=_as_dtype(arr), low_rank=bool(low_rank))


def _blob_buffer(blob: Any):
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    if isinstance(blob, np.ndarray) and blob.dtype == np.uint8:
        return np.ascontiguousarray(blob)
    raise TypeError(f"blob must be bytes, bytearray, memoryview or a uint8 array, not {type(blob).__name__}")


def info(blob: Any) -> dict:
    """Validate a blob (checksum included) and describe its header."""
    h = dict(_core.header(_blob_buffer(blob)))
    h["ratio"] = h["raw_nbytes"] / h["nbytes"] if h["nbytes"] else float("nan")
    return h


def decompress(blob: Any, *, out: Any = None, threads: Optional[int] = None, device: Any = None,
               stream: Any = None) -> Any:
    """Decode a blob made by :func:`compress`; returns an array of the original shape and dtype.

    out: an optional C-contiguous, writeable numpy array of the blob's dtype and element count,
    filled in place and returned; or a CUDA array (torch, cupy, ``__cuda_array_interface__``),
    decoded into on its device. Invalid blobs raise FormatError (ChecksumError, VersionError), and
    are refused before anything is written.

    device: "cuda" / "cuda:N" decodes on the GPU into a new cupy array (a torch tensor for
    bfloat16, or where cupy is missing). GPU decoding is asynchronous on `stream` (None: the
    current stream of the output's framework).
    """
    buf = _blob_buffer(blob)
    nthreads = _threads(threads)
    on_gpu = (out is not None and cuda.is_device_array(out)) or (device is not None and str(device) != "cpu")
    # validates before anything is allocated; the GPU path's backend checks the CRC itself (once)
    h = _core.header(buf, verify_checksum=not on_gpu)
    dtype = dtype_from_name(h["dtype"])
    shape = tuple(h["shape"])
    if out is not None and cuda.is_device_array(out):
        return cuda.decompress_into(buf, out, h, nthreads, stream)
    if on_gpu:
        if not cuda.available():
            from .errors import CudaError

            raise CudaError("device=%r needs the CUDA backend and a CUDA device (ebgc.HAS_CUDA is False)" % (device,))
        if out is not None:
            raise InvalidArgumentError("pass either out= or device=, not both")
        return cuda.decompress_into(buf, cuda.empty(shape, h["dtype"], device), h, nthreads, stream)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise InvalidArgumentError(f"out must be a numpy array, not {type(out).__name__}")
        if out.dtype != dtype:
            raise InvalidArgumentError(f"out has dtype {out.dtype}, the blob holds {dtype}")
        if out.size != math.prod(shape):
            raise InvalidArgumentError(f"out has {out.size} elements, the blob holds {math.prod(shape)}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise InvalidArgumentError("out must be C-contiguous and writeable")
    # header() above checked the CRC of this same buffer: a second pass over the blob (0.6 ms a
    # 6 MB blob, on the decoder's serial path) would find nothing new.
    _core.decompress_into(buf, _core_view(out), nthreads, as_dtype=_as_dtype(out), verify_checksum=False)
    return out
