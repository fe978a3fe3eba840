"""PyTorch helpers: tensors, state dicts and a DDP communication hook. Import as
``import ebgc.torch``; needs torch.

Floating tensors may be float32, float64, float16 or bfloat16; 16-bit ones are compressed in
their own precision (the bound holds for the values returned in that dtype). CPU tensors are read
in place; CUDA tensors are compressed and decompressed on their GPU by the CUDA backend (where
``ebgc.HAS_CUDA``; otherwise through host memory), and results go back to the device they came from.

- :func:`compress` / :func:`decompress`: one tensor <-> one blob (the one-shot format).
- :func:`compress_state_dict` / :func:`decompress_state_dict`: a whole state dict as one byte
  string. Floating tensors are compressed within the bound; every other entry (integers,
  booleans, small tensors) is stored exactly, as raw bytes with its dtype named. Names, shapes,
  dtypes are kept.
- :class:`HookState` + :func:`allreduce_hook`: ``model.register_comm_hook(state, allreduce_hook)``
  compresses each gradient bucket (one-shot, or ``stateful=True``: one GradientEncoder stream per
  rank and bucket, every rank decoding every stream), all-gathers the sizes and then the payloads,
  decompresses and averages them. Bytes sent are counted in the state; error feedback optional.
"""
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist

from . import _core
from . import api
from . import cuda
from .api import BFLOAT16
from .errors import FormatError, InvalidArgumentError
from .stream import GradientDecoder, GradientEncoder, _Reader, _varint

_SD_MAGIC = b"EBSD"
_SD_VERSION = 1
_COMPRESSED, _EXACT = 0, 1


# Exact entries are stored as raw bytes with their dtype named: no Python objects on the wire.
_EXACT_DTYPES = {
    torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
    torch.float64: "float64", torch.int8: "int8", torch.uint8: "uint8", torch.int16: "int16",
    torch.int32: "int32", torch.int64: "int64", torch.bool: "bool",
}
_DTYPE_BY_NAME = {v: k for k, v in _EXACT_DTYPES.items()}


_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def to_torch(arr: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing arr's memory (bfloat16 included, which torch.from_numpy refuses)."""
    if arr.dtype == BFLOAT16:
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr)


def _host(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t if t.device.type == "cpu" else t.cpu()


def compress(t: torch.Tensor, error_bound: float, *, mode: str = "rel", coder: str = "auto",
             threads: Optional[int] = None) -> bytes:
    """:func:`ebgc.compress` for a torch tensor (CPU: read in place; CUDA: on its GPU with the
    CUDA backend, else through host memory)."""
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentError(f"expected a torch.Tensor, got {type(t).__name__}")
    t = t.detach()
    return api.compress(t if t.is_cuda and cuda.available() else _host(t), error_bound, mode=mode, coder=coder,
                        threads=threads)


def decompress(blob: Any, *, device: Any = None, threads: Optional[int] = None) -> torch.Tensor:
    """The tensor of a blob, in its original dtype and shape, on `device` (default CPU). A CUDA
    device decodes on the GPU (asynchronously on the current stream) with the CUDA backend."""
    if device is not None and torch.device(device).type == "cuda" and cuda.available():
        h = _core.header(api._blob_buffer(blob), verify_checksum=False)  # checked in full by the decode
        out = torch.empty(tuple(h["shape"]), dtype=getattr(torch, h["dtype"]), device=device)
        return api.decompress(blob, out=out, threads=threads)
    out = to_torch(api.decompress(blob, threads=threads))
    return out if device is None else out.to(device)


def compress_state_dict(sd: Mapping[str, torch.Tensor], error_bound: float, *, mode: str = "rel",
                        coder: str = "auto", min_elements: int = 1025) -> bytes:
    """One byte string for a whole state dict (e.g. a model update). Floating tensors of at least
    `min_elements` values are compressed within the bound (16-bit ones in their own precision);
    the rest exactly. CUDA tensors are copied to the host first."""
    body = bytearray(_SD_MAGIC + bytes([_SD_VERSION])) + _varint(len(sd))
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise InvalidArgumentError(f"entry {name!r} is not a tensor")
        t = _host(t)
        nb = name.encode()
        body += _varint(len(nb)) + nb
        if t.dtype in _FLOATING and t.numel() >= min_elements:
            blob = api.compress(t, error_bound, mode=mode, coder=coder)
            body += bytes([_COMPRESSED]) + _varint(len(blob)) + blob
        else:
            if t.dtype not in _EXACT_DTYPES:
                raise InvalidArgumentError(f"entry {name!r} has unsupported dtype {t.dtype}")
            dname = _EXACT_DTYPES[t.dtype].encode()
            raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            body += bytes([_EXACT]) + _varint(len(dname)) + dname + bytes([t.dim()])
            body += b"".join(_varint(d) for d in t.shape) + _varint(len(raw)) + raw
    body += struct.pack("<I", _core.crc32c(body))
    return bytes(body)


def decompress_state_dict(blob: Any) -> Dict[str, torch.Tensor]:
    """The state dict of :func:`compress_state_dict` (CPU tensors, original names/shapes/dtypes)."""
    view = memoryview(blob).cast("B")
    if len(view) < 9 or bytes(view[:4]) != _SD_MAGIC:
        raise FormatError("not an ebgc state dict blob")
    if view[4] != _SD_VERSION:
        from .errors import VersionError

        raise VersionError(f"unsupported state dict blob version {view[4]}")
    if _core.crc32c(view[:-4]) != struct.unpack("<I", view[-4:])[0]:
        from .errors import ChecksumError

        raise ChecksumError("state dict blob checksum mismatch")
    r = _Reader(view[:-4], "state dict blob")
    r.take(5, "header")
    out: Dict[str, torch.Tensor] = {}
    for _ in range(r.varint("entry count")):
        name = bytes(r.blob("name")).decode("utf-8")
        kind = r.u8("entry kind")
        if kind == _COMPRESSED:
            out[name] = to_torch(api.decompress(r.blob("tensor blob")))
        elif kind == _EXACT:
            dtype = _DTYPE_BY_NAME.get(bytes(r.blob("dtype")).decode("ascii", "replace"))
            if dtype is None:
                raise FormatError("unknown dtype in state dict blob")
            shape = [r.varint("shape") for _ in range(r.u8("ndim"))]
            raw = r.blob("tensor data")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(np.prod(shape, dtype=object)) * itemsize:
                raise FormatError(f"entry {name!r}: data size does not match its shape")
            if len(raw):
                out[name] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
            else:
                out[name] = torch.empty(shape, dtype=dtype)
        else:
            raise FormatError("unknown entry kind in state dict blob")
    if r.pos != len(r.data):
        raise FormatError("trailing bytes in state dict blob")
    return out


@dataclass
class HookState:
    """State of :func:`allreduce_hook`. error_feedback adds each bucket's compression error to the
    next step's gradient (compensates the bias of lossy compression). bytes_sent counts this
    rank's payloads; raw_bytes what plain allreduce would have sent."""

    error_bound: float
    mode: str = "rel"
    coder: str = "auto"
    error_feedback: bool = True
    stateful: bool = False  # each bucket a GradientEncoder stream, predicted from earlier steps
    process_group: Optional[Any] = None
    bytes_sent: int = 0
    raw_bytes: int = 0
    residuals: Dict[int, torch.Tensor] = field(default_factory=dict)
    encoders: Dict[int, GradientEncoder] = field(default_factory=dict)
    decoder: GradientDecoder = field(default_factory=GradientDecoder)

    def _encode(self, index: int, x: torch.Tensor) -> bytes:
        if not self.stateful:
            return api.compress(x, self.error_bound, mode=self.mode, coder=self.coder)
        enc = self.encoders.get(index)
        if enc is None:
            sid = f"rank{dist.get_rank(self.process_group)}/bucket{index}"
            enc = self.encoders[index] = GradientEncoder(self.error_bound, mode=self.mode, coder=self.coder,
                                                         stream_id=sid)
        return enc.encode({"grad": x})

    def _decode(self, payload: Any, device: torch.device) -> torch.Tensor:
        if not self.stateful:
            return decompress(payload, device=device)  # decoded on the GPU for a CUDA device
        return to_torch(self.decoder.decode(bytes(payload))["grad"]).to(device)


def allreduce_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: average the bucket's gradients across ranks, each rank sending its
    bucket ebgc-compressed. Register with ``model.register_comm_hook(state, allreduce_hook)``.

    CUDA buckets stay on the GPU (compressed and decoded by the CUDA backend; only the compressed
    bytes cross to the host) unless the backend is missing or the hook is stateful, whose codec runs
    on the host. Payloads travel as CPU tensors, or as CUDA tensors with the NCCL backend."""
    group = state.process_group
    world = dist.get_world_size(group)
    buf = bucket.buffer()
    on_device = buf.is_cuda and cuda.available() and not state.stateful
    grad = buf if on_device else _host(buf)
    # 16-bit buckets are sent in their own dtype; the error feedback is kept in float32, so it
    # also carries the rounding of (gradient + residual) back to 16 bits.
    work = grad if grad.dtype in (torch.float32, torch.float64) else grad.to(torch.float32)
    residual = state.residuals.get(bucket.index()) if state.error_feedback else None
    if residual is not None and residual.shape == work.shape:  # DDP may rebuild buckets after step 1
        work = work + residual
    x = work.to(grad.dtype)
    payload = state._encode(bucket.index(), x)
    state.bytes_sent += len(payload)
    state.raw_bytes += grad.numel() * grad.element_size()

    comm = buf.device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    size = torch.tensor([len(payload)], dtype=torch.int64, device=comm)
    sizes = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    lengths = [int(s.item()) for s in sizes]
    mine = torch.zeros(max(lengths), dtype=torch.uint8)
    mine[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    gathered = [torch.empty(max(lengths), dtype=torch.uint8, device=comm) for _ in range(world)]
    dist.all_gather(gathered, mine.to(comm), group=group)
    total = torch.zeros_like(work)
    me = dist.get_rank(group)
    for rank, (n, g) in enumerate(zip(lengths, gathered)):
        blob = g[:n].cpu().numpy()
        rec = state._decode(blob, work.device).to(work.dtype)  # every stream, ours too, keeps its order
        if rank == me and state.error_feedback:
            state.residuals[bucket.index()] = work - rec
        total += rec
    buf.copy_((total / world).to(buf.dtype))
    fut: torch.futures.Future = torch.futures.Future()
    fut.set_result(buf)
    return fut
