"""Where a stream's tensors live: host memory (numpy) or a CUDA device (torch or cupy arrays).

Stream encoders and decoders keep each tensor's last reconstructions where the tensor is coded:
a tensor given on the GPU is predicted, quantized and coded there, its reconstruction stays
there, and only the blob crosses to the host. A stream may change sides between messages (the
reconstructions are the same bits on both): the state then follows, one copy per tensor. This
module is the one place that moves, allocates, copies and checksums those tensors.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _core, arrays, cuda
from .errors import InvalidArgumentError
from .vocabulary import DTYPES, dtype_name


def on_device(t: Any) -> bool:
    return not isinstance(t, np.ndarray) and arrays.is_device(t)


def framework_array(x: Any) -> Any:
    """A device input as a torch tensor or cupy array (zero-copy), so that the stream can allocate
    and compute alike; host inputs as numpy arrays."""
    if not arrays.is_device(x):
        return arrays.host_array(x)
    if arrays._module_of(x) in ("torch", "cupy"):
        return x
    try:
        import cupy

        return cupy.asarray(x)
    except ImportError:
        import torch

        return torch.as_tensor(x, device="cuda")


def device_index(t: Any) -> Optional[int]:
    """None for host arrays, else the CUDA device index."""
    if not on_device(t):
        return None
    if arrays._module_of(t) == "torch":
        return int(t.device.index)
    return int(t.device.id)


def same_kind(a: Any, b: Any) -> bool:
    """Same dtype and shape (host arrays compared directly: this is on every stream message's path)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return a.dtype == b.dtype and a.shape == b.shape
    return meta(a) == meta(b)


def meta(t: Any) -> Tuple[str, Tuple[int, ...]]:
    """(dtype name, shape) of a host or device array."""
    if isinstance(t, np.ndarray):
        return dtype_name(t.dtype), tuple(t.shape)
    if arrays._module_of(t) == "torch":
        return arrays._torch_dtype_name(t), tuple(t.shape)
    return dtype_name(t.dtype), tuple(t.shape)


def empty_like(x: Any) -> Any:
    """A new C-contiguous array of x's dtype and shape, on x's side (and framework)."""
    if isinstance(x, np.ndarray):
        return np.empty(x.shape, x.dtype)
    if arrays._module_of(x) == "torch":
        import torch

        return torch.empty(x.shape, dtype=x.dtype, device=x.device)
    import cupy

    with cupy.cuda.Device(x.device.id):
        return cupy.empty(x.shape, x.dtype)


def empty(shape: Tuple[int, ...], dtype: str, device: Optional[int]) -> Any:
    """A new array on the host (device None) or on CUDA device `device`."""
    if device is None:
        return np.empty(shape, DTYPES[dtype])
    return arrays.empty_device(shape, dtype, f"cuda:{device}")


def moved(t: Any, like: Any) -> Any:
    """t (a reconstruction) on the side of `like`: itself if it is there, else a copy."""
    if t is None or (type(t) is np.ndarray and type(like) is np.ndarray):
        return t
    target = device_index(like)
    if device_index(t) == target and (target is None or arrays._module_of(t) == arrays._module_of(like)):
        return t
    host = to_host(t)
    if target is None:
        return host
    if arrays._module_of(like) == "torch":
        return arrays.to_torch(np.ascontiguousarray(host)).to(like.device)
    import cupy

    with cupy.cuda.Device(target):
        return cupy.asarray(host)


def to_host(t: Any) -> np.ndarray:
    return t if isinstance(t, np.ndarray) else arrays.to_host(t)


def copy(t: Any) -> Any:
    if type(t) is np.ndarray:
        return t.copy()
    return t.clone() if arrays._module_of(t) == "torch" else t.copy()


def crc32c(t: Any, seed: int) -> int:
    """crc32c of the array's bytes, computed where it lives (the same value on either side)."""
    if type(t) is np.ndarray:
        return _core.crc32c(t.reshape(-1).view(np.uint8), seed)
    if on_device(t):
        return cuda.crc32c(t, seed)
    return _core.crc32c(np.ascontiguousarray(t).reshape(-1).view(np.uint8), seed)


def feedback_dtype(t: Any) -> str:
    """Error feedback is kept in float64 for float64 data, float32 otherwise (16-bit data's rounding
    included)."""
    return "float64" if meta(t)[0] == "float64" else "float32"


def _as(t: Any, dtype: str) -> Any:
    if isinstance(t, np.ndarray) or arrays._module_of(t) != "torch":
        return t.astype(DTYPES[dtype] if isinstance(t, np.ndarray) else dtype)
    import torch

    return t.to(getattr(torch, dtype))


def plus_feedback(x: Any, residual: Any) -> Any:
    """x plus the last coding error of its tensor, in x's dtype."""
    if residual is None or meta(residual)[1] != meta(x)[1]:
        return x
    residual = moved(residual, x)
    return _as(_as(x, feedback_dtype(x)) + residual, meta(x)[0])


def coding_error(x: Any, reconstruction: Any) -> Any:
    """x - its reconstruction, in the feedback dtype, on x's side."""
    f = feedback_dtype(x)
    if not isinstance(x, np.ndarray) and arrays._module_of(x) not in ("torch", "cupy"):
        raise InvalidArgumentError("error feedback needs host, torch or cupy arrays")
    return _as(x, f) - _as(moved(reconstruction, x), f)
