"""The one array adapter: every array ebgc is given, host or device, becomes what the native
modules take, and every result goes back in the caller's kind.

Host: numpy arrays (any strides, any byte order numpy spells for little-endian; big-endian data is
byte-swapped into a copy), torch CPU tensors (bfloat16 included), anything with ``__dlpack__`` on
the CPU, and buffer-protocol objects. They are read in place: a strided view travels with its
strides and the core copies it once (the front door's gather).

Device: torch CUDA tensors, cupy arrays, ``__cuda_array_interface__`` objects and CUDA DLPack
producers (read through torch or cupy) become a :class:`DeviceArray` (pointer, shape, dtype,
device, stream) for ``ebgc._cuda``, zero-copy; a non-contiguous input is made contiguous on the
device, a non-contiguous output is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from .errors import ArgumentTypeError, CudaError, InvalidArgumentError, UnsupportedDTypeError
from .vocabulary import BFLOAT16, DTYPES, MAX_ELEMENTS, SUPPORTED, dtype_name

_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged
_DTYPE_ERROR = f"ebgc compresses {SUPPORTED} data"


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


# ---- host ---------------------------------------------------------------------------------------

def is_device(obj: Any) -> bool:
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


def _torch_dtype_name(t: Any) -> str:
    return str(t.dtype).replace("torch.", "")


def _from_torch_cpu(t: Any) -> np.ndarray:
    """numpy cannot take bfloat16 through DLPack or the buffer protocol: read the bits as int16."""
    import torch

    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def host_array(data: Any) -> np.ndarray:
    """A numpy view of a host array of a supported dtype (copied only to byte-swap big-endian data)."""
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    elif _module_of(data) == "torch":
        name = _torch_dtype_name(data)
        if name not in DTYPES:
            raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {name}")
        arr = _from_torch_cpu(data)
    elif hasattr(data, "__dlpack__"):
        try:
            arr = np.from_dlpack(data)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"cannot read {type(data).__name__} through DLPack on the CPU ({exc}); "
                "GPU arrays need the CUDA backend") from exc
    else:
        try:
            memoryview(data)
        except TypeError:
            raise UnsupportedDTypeError(
                f"expected a {SUPPORTED} array (numpy, torch, DLPack or buffer protocol), "
                f"got {type(data).__name__}") from None
        arr = np.asarray(data)
    if arr.size > MAX_ELEMENTS:  # before any copy: a broadcast view can claim terabytes
        raise InvalidArgumentError(f"array of {arr.size} values is over the format's limit of 2**40")
    if not dtype_name(arr.dtype) and arr.dtype.kind == "f" and dtype_name(arr.dtype.newbyteorder("=")):
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian: a byte-swapped copy
    if not dtype_name(arr.dtype):
        raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {arr.dtype}")
    return arr


def core_buffer(arr: Optional[np.ndarray]) -> Any:
    """What ebgc._core reads of a host array: the array, or for bfloat16 (which has no buffer
    format) its 16-bit integer view."""
    return arr.view(np.uint16) if arr is not None and arr.dtype == BFLOAT16 else arr


def to_host(data: Any) -> np.ndarray:
    """A host copy of a device array (for work the plan runs on the host without the CUDA backend,
    or for stream encoders where there is no CUDA backend)."""
    if _module_of(data) == "torch":
        return host_array(data.detach().cpu())
    if hasattr(data, "get"):  # cupy
        return host_array(data.get())
    raise InvalidArgumentError(
        f"{type(data).__name__} lives in CUDA memory and this ebgc has no CUDA backend; copy it to the host first")


def any_to_host(data: Any) -> np.ndarray:
    """A host array of any array, copying device memory to the host."""
    return to_host(data) if is_device(data) else host_array(data)


def checked_out(out: Any, dtype: np.dtype, shape: Tuple[int, ...]) -> np.ndarray:
    """A caller's host output array for a blob of this dtype and shape."""
    if not isinstance(out, np.ndarray):
        raise InvalidArgumentError(f"out must be a numpy array, not {type(out).__name__}")
    if out.dtype != dtype:
        raise InvalidArgumentError(f"out has dtype {out.dtype}, the blob holds {dtype}")
    if out.size != math.prod(shape):
        raise InvalidArgumentError(f"out has {out.size} elements, the blob holds {math.prod(shape)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidArgumentError("out must be C-contiguous and writeable")
    return out


def to_torch(arr: np.ndarray) -> Any:
    """A CPU tensor sharing arr's memory (bfloat16 included, which torch.from_numpy refuses)."""
    import torch

    if arr.dtype == BFLOAT16:
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr)


# ---- device -------------------------------------------------------------------------------------

@dataclass
class DeviceArray:
    """A C-contiguous device array as the CUDA backend sees it; `owner` keeps the memory alive."""

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


def _refuse_strided(writable: bool) -> None:
    if writable:
        raise InvalidArgumentError("out must be a C-contiguous CUDA array")


def _from_torch(t: Any, writable: bool) -> DeviceArray:
    name = _torch_dtype_name(t)
    if name not in DTYPES:
        raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {name}")
    t = t.detach()
    if not t.is_contiguous():
        _refuse_strided(writable)
        t = t.contiguous()
    return DeviceArray(int(t.data_ptr()), tuple(t.shape), name, int(t.device.index), 0, t, "torch")


def _from_cupy(a: Any, writable: bool) -> DeviceArray:
    import cupy

    name = dtype_name(a.dtype)
    if not name:
        raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {a.dtype}")
    if not a.flags.c_contiguous:
        _refuse_strided(writable)
        a = cupy.ascontiguousarray(a)
    return DeviceArray(int(a.data.ptr), tuple(a.shape), name, int(a.device.id), 0, a, "cupy")


def _from_interface(obj: Any, writable: bool, device_of) -> DeviceArray:
    cai = obj.__cuda_array_interface__
    if writable and cai["data"][1]:
        raise InvalidArgumentError("out is read-only")
    typestr = cai.get("typestr", "")
    try:
        name = dtype_name(np.dtype(typestr))
    except TypeError:
        name = ""
    if not name:
        raise UnsupportedDTypeError(f"{_DTYPE_ERROR}, not {typestr!r}")
    shape = tuple(int(d) for d in cai["shape"])
    strides = cai.get("strides")
    itemsize = DTYPES[name].itemsize
    if strides is not None:
        expect = itemsize
        for d, s in zip(reversed(shape), reversed(tuple(strides))):
            if d > 1 and s != expect:
                raise InvalidArgumentError("__cuda_array_interface__ arrays must be C-contiguous")
            expect *= d
    ptr = int(cai["data"][0])
    device = device_of(ptr) if ptr and math.prod(shape) else 0
    # The producer's stream (protocol v3; 1 and 2 are the legacy and per-thread default handles).
    stream = int(cai.get("stream") or 0)
    return DeviceArray(ptr, shape, name, device, stream, obj, "cai")


def device_blob(obj: Any, device_of) -> DeviceArray:
    """A blob held in CUDA memory: a C-contiguous 1-D uint8 device array (torch, cupy or
    ``__cuda_array_interface__``), described for the backend (shape: its byte count)."""
    module = _module_of(obj)
    if module == "torch":
        import torch

        if obj.dtype != torch.uint8 or obj.dim() != 1 or not obj.is_contiguous():
            raise ArgumentTypeError("a blob in device memory must be a contiguous 1-D uint8 tensor")
        return DeviceArray(int(obj.data_ptr()), (int(obj.numel()),), "uint8", int(obj.device.index), 0, obj, "torch")
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise ArgumentTypeError(f"blob must be bytes or a uint8 CUDA array, not {type(obj).__name__}")
    shape, strides = tuple(int(d) for d in cai["shape"]), cai.get("strides")
    if np.dtype(cai.get("typestr", "")) != np.uint8 or len(shape) != 1 or (strides is not None and strides[0] != 1):
        raise ArgumentTypeError("a blob in device memory must be a contiguous 1-D uint8 array")
    ptr = int(cai["data"][0])
    device = device_of(ptr) if ptr and shape[0] else 0
    return DeviceArray(ptr, shape, "uint8", device, int(cai.get("stream") or 0), obj,
                       "cupy" if module == "cupy" else "cai")


def device_array(obj: Any, *, writable: bool = False, device_of=None) -> DeviceArray:
    """Describe a CUDA array for the backend (device_of: the backend's pointer -> device query)."""
    module = _module_of(obj)
    if module == "torch":
        return _from_torch(obj, writable)
    if module == "cupy":
        return _from_cupy(obj, writable)
    if hasattr(obj, "__cuda_array_interface__"):
        return _from_interface(obj, writable, device_of)
    try:  # a DLPack-only producer (jax, ...): view it through torch, else cupy
        import torch

        return _from_torch(torch.from_dlpack(obj), writable)
    except ImportError:
        import cupy

        return _from_cupy(cupy.from_dlpack(obj), writable)


def empty_bytes(size: int, device: int, framework: str) -> Tuple[Any, int]:
    """A new uint8 device array of `size` bytes on CUDA device `device`, for a blob assembled there,
    and its pointer: a torch tensor for a torch input (framework "torch"), else cupy (torch where
    cupy is missing)."""
    if framework != "torch":
        try:
            import cupy

            with cupy.cuda.Device(device):
                a = cupy.empty(size, dtype=np.uint8)
            return a, int(a.data.ptr)
        except ImportError:
            pass
    try:
        import torch
    except ImportError:
        raise CudaError("a blob in device memory is returned as a cupy array or torch tensor: install one") from None
    t = torch.empty(size, dtype=torch.uint8, device=torch.device("cuda", device))
    return t, int(t.data_ptr())


def parse_device(device: Any) -> int:
    """The index of 'cuda' / 'cuda:N' / a torch CUDA device (-1: the current device)."""
    text = str(device)
    if text == "cuda":
        return -1
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    if getattr(device, "type", None) == "cuda":  # torch.device
        return -1 if device.index is None else int(device.index)
    raise InvalidArgumentError(f"device must be 'cuda', 'cuda:N' or a torch CUDA device, not {device!r}")


def empty_device(shape: tuple, dtype: str, device: Any) -> Any:
    """A new device array for a blob's values: cupy where it can hold the dtype, else torch."""
    index = parse_device(device)
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
