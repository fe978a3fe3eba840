"""Device arrays: the codec on CUDA memory, without a copy to the host.

Accepted inputs are torch CUDA tensors, cupy arrays, anything with ``__cuda_array_interface__``
and CUDA DLPack producers (read through torch or cupy). Their memory is handed to ``ebgc._cuda``
as a pointer (zero-copy; a non-contiguous view is first made contiguous on the device).

Streams: ``stream=None`` uses the producer's current stream (torch's or cupy's), else an integer
``cudaStream_t``, a ``torch.cuda.Stream`` or a ``cupy.cuda.Stream``. Decompression is asynchronous on
that stream; compression waits for its own work there (the blob's size is needed on the host).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from .errors import CudaError, InvalidArgumentError, UnsupportedDTypeError

try:
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:  # built without a CUDA compiler
    _cuda = None

_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged
_FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
_TYPESTR = {"<f4": "float32", "<f8": "float64", "<f2": "float16"}


def available() -> bool:
    """True if the CUDA backend was built and sees at least one device."""
    return _cuda is not None and _cuda.device_count() > 0


@dataclass
class DeviceArray:
    """A C-contiguous device array as the backend sees it; `owner` keeps the memory alive."""

    ptr: int
    shape: tuple
    dtype: str
    device: int
    stream: int
    owner: Any
    framework: str  # "torch", "cupy" or "cai"

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def is_device_array(obj: Any) -> bool:
    """Does `obj` live in CUDA memory (torch CUDA tensor, cupy array, CAI or CUDA DLPack)?"""
    if _module_of(obj) == "torch":
        return bool(getattr(obj, "is_cuda", False))
    if hasattr(obj, "__cuda_array_interface__"):
        return True
    dev = getattr(obj, "__dlpack_device__", None)
    if dev is not None:
        try:
            return tuple(dev())[0] in _DLPACK_CUDA
        except Exception:  # noqa: BLE001 - a producer that cannot say is not a CUDA array
            return False
    return False


def stream_handle(stream: Any, framework: str, device: int) -> int:
    """The integer cudaStream_t of `stream` (None: the framework's current stream)."""
    if stream is None:
        if framework == "torch":
            import torch

            return int(torch.cuda.current_stream(device).cuda_stream)
        if framework == "cupy":
            import cupy

            return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, bool):
        raise InvalidArgumentError("stream must be None, an integer handle, or a torch/cupy stream")
    if isinstance(stream, int):
        if stream < 0:
            raise InvalidArgumentError("a stream handle is a non-negative integer")
        return stream
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise InvalidArgumentError(f"unrecognised stream object {type(stream).__name__}")


def _contiguous_or_refuse(writable: bool) -> None:
    if writable:
        raise InvalidArgumentError("out must be a C-contiguous CUDA array")


def _from_torch(t: Any, writable: bool = False) -> DeviceArray:
    name = str(t.dtype).replace("torch.", "")
    if name not in _FLOAT_DTYPES:
        raise UnsupportedDTypeError(f"ebgc compresses float32, float64, float16 or bfloat16 data, not {name}")
    t = t.detach()
    if not t.is_contiguous():
        _contiguous_or_refuse(writable)
        t = t.contiguous()
    return DeviceArray(int(t.data_ptr()), tuple(t.shape), name, int(t.device.index), 0, t, "torch")


def _from_cupy(a: Any, writable: bool = False) -> DeviceArray:
    import cupy

    name = str(a.dtype)
    if name not in _FLOAT_DTYPES:
        raise UnsupportedDTypeError(f"ebgc compresses float32, float64, float16 or bfloat16 data, not {name}")
    if not a.flags.c_contiguous:
        _contiguous_or_refuse(writable)
        a = cupy.ascontiguousarray(a)
    return DeviceArray(int(a.data.ptr), tuple(a.shape), name, int(a.device.id), 0, a, "cupy")


def _from_interface(obj: Any, writable: bool = False) -> DeviceArray:
    cai = obj.__cuda_array_interface__
    if writable and cai["data"][1]:
        raise InvalidArgumentError("out is read-only")
    typestr = cai.get("typestr", "")
    if typestr not in _TYPESTR:
        raise UnsupportedDTypeError(f"ebgc compresses float32, float64 or float16 device data, not {typestr!r}")
    shape = tuple(int(d) for d in cai["shape"])
    strides = cai.get("strides")
    itemsize = int(typestr[2:])
    if strides is not None:
        expect = itemsize
        for d, s in zip(reversed(shape), reversed(tuple(strides))):
            if d > 1 and s != expect:
                raise InvalidArgumentError("__cuda_array_interface__ arrays must be C-contiguous")
            expect *= d
    ptr = int(cai["data"][0])
    device = _cuda.device_of(ptr) if ptr and math.prod(shape) else 0
    # The producer's stream (protocol v3; 1 and 2 are the legacy and per-thread default handles).
    stream = int(cai.get("stream") or 0)
    return DeviceArray(ptr, shape, _TYPESTR[typestr], device, stream, obj, "cai")


def device_array(obj: Any, *, writable: bool = False) -> DeviceArray:
    """Describe a CUDA array for the backend. A non-contiguous input is copied on the device; a
    non-contiguous output (writable=True) is refused."""
    module = _module_of(obj)
    if module == "torch":
        return _from_torch(obj, writable)
    if module == "cupy":
        return _from_cupy(obj, writable)
    if hasattr(obj, "__cuda_array_interface__"):
        return _from_interface(obj, writable)
    try:  # a DLPack-only producer (jax, ...): view it through torch, else cupy
        import torch

        return _from_torch(torch.from_dlpack(obj), writable)
    except ImportError:
        import cupy

        return _from_cupy(cupy.from_dlpack(obj), writable)


def _stream_for(stream: Any, arr: DeviceArray) -> int:
    if stream is None and arr.framework == "cai":
        return arr.stream
    return stream_handle(stream, arr.framework, arr.device)


def _backend():
    if not available():
        raise CudaError("this ebgc was built without its CUDA backend, or no CUDA device is visible "
                        "(ebgc.HAS_CUDA is False); pass host arrays instead")
    return _cuda


def compress(data: Any, error_bound: float, mode_id: int, coder_id: int, threads: int, stream: Any,
             low_rank: bool = True) -> bytes:
    """ebgc.compress for a device array. coder "auto" is bit-packing on the GPU; "huffman" and
    "context" are coded by the CPU codec after one device-to-host copy (low rank included)."""
    backend = _backend()
    arr = device_array(data)
    if arr.size > 2**40:
        raise InvalidArgumentError(f"array of {arr.size} values is over the format's limit of 2**40")
    coder = 1 if coder_id == -1 else coder_id
    handle = _stream_for(stream, arr)
    return backend.compress(arr.ptr, list(arr.shape), arr.dtype, error_bound, mode_id, coder, threads, handle,
                            low_rank=low_rank)


def _parse_device(device: Any) -> int:
    text = str(device)
    if text == "cuda":
        return -1  # the current device
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    if hasattr(device, "type") and getattr(device, "type") == "cuda":  # torch.device
        return -1 if device.index is None else int(device.index)
    raise InvalidArgumentError(f"device must be 'cuda', 'cuda:N' or a torch CUDA device, not {device!r}")


def empty(shape: tuple, dtype: str, device: Any) -> Any:
    """A new device array for a blob's values: cupy where it can hold the dtype, else torch."""
    index = _parse_device(device)
    if dtype != "bfloat16":
        try:
            import cupy

            if index < 0:
                return cupy.empty(shape, dtype=dtype)
            with cupy.cuda.Device(index):
                return cupy.empty(shape, dtype=dtype)
        except ImportError:
            pass
    try:
        import torch
    except ImportError:
        raise UnsupportedDTypeError(
            f"decompressing {dtype} to the GPU needs cupy{'' if dtype != 'bfloat16' else ' (not for bfloat16)'} "
            "or torch; or pass out= a CUDA array") from None
    dev = torch.device("cuda") if index < 0 else torch.device("cuda", index)
    return torch.empty(shape, dtype=getattr(torch, dtype), device=dev)


def decompress_into(blob: Any, out: Any, header: dict, threads: int, stream: Any) -> Any:
    """Decode `blob` into the device array `out` (asynchronously on the stream); returns out."""
    backend = _backend()
    arr = device_array(out, writable=True)
    if arr.dtype != header["dtype"]:
        raise InvalidArgumentError(f"out has dtype {arr.dtype}, the blob holds {header['dtype']}")
    n = math.prod(header["shape"])
    if arr.size != n:
        raise InvalidArgumentError(f"out has {arr.size} elements, the blob holds {n}")
    handle = _stream_for(stream, arr)
    backend.decompress_into(blob, arr.ptr, arr.dtype, n, threads, handle)
    return out
