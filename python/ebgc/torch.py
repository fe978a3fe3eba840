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
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist

from . import api, cuda
from .arrays import to_torch
from .errors import FormatError, InvalidArgumentError
from .settings import Settings
from .stream import GradientDecoder, GradientEncoder
from .wire import Reader, Writer

__all__ = ["compress", "decompress", "compress_state_dict", "decompress_state_dict", "HookState", "allreduce_hook",
           "to_torch"]

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


def _host(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t if t.device.type == "cpu" else t.cpu()


def compress(t: torch.Tensor, error_bound: float, *, mode: str = "rel", coder: str = "auto",
             threads: Optional[int] = None) -> bytes:
    """:func:`ebgc.compress` for a torch tensor (CPU: read in place; CUDA: by the CUDA backend,
    else through host memory)."""
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentError(f"expected a torch.Tensor, got {type(t).__name__}")
    return api.compress(t.detach(), error_bound, mode=mode, coder=coder, threads=threads)


def decompress(blob: Any, *, device: Any = None, threads: Optional[int] = None,
               max_output: Optional[int] = None) -> torch.Tensor:
    """The tensor of a blob, in its original dtype and shape, on `device` (default CPU). A CUDA
    device decodes on the GPU (asynchronously on the current stream) with the CUDA backend."""
    if device is not None and torch.device(device).type == "cuda" and cuda.available():
        return _as_torch(api.decompress(blob, device=torch.device(device), threads=threads, max_output=max_output))
    out = to_torch(api.decompress(blob, threads=threads, max_output=max_output))
    return out if device is None else out.to(device)


def _as_torch(arr: Any) -> torch.Tensor:
    return arr if isinstance(arr, torch.Tensor) else torch.from_dlpack(arr)


def compress_state_dict(sd: Mapping[str, torch.Tensor], error_bound: float, *, mode: str = "rel",
                        coder: str = "auto", min_elements: int = 1025) -> bytes:
    """One byte string for a whole state dict (e.g. a model update). Floating tensors of at least
    `min_elements` values are compressed within the bound (16-bit ones in their own precision);
    the rest exactly. CUDA tensors are compressed on their GPU with the CUDA backend (in fast mode,
    coder="bitpack", all of them as one grid: see :func:`ebgc.compress_many`), else on the host."""
    settings = Settings.make(error_bound, mode, coder)
    entries = []
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise InvalidArgumentError(f"entry {name!r} is not a tensor")
        entries.append((name, t.detach()))
    lossy = [k for k, (_, t) in enumerate(entries) if t.dtype in _FLOATING and t.numel() >= min_elements]
    blobs = dict(zip(lossy, api.compress_many_with([_for_codec(entries[k][1]) for k in lossy], settings)))
    w = Writer(_SD_MAGIC, _SD_VERSION).varint(len(entries))
    for k, (name, t) in enumerate(entries):
        w.name(name)
        if k in blobs:
            w.u8(_COMPRESSED).blob(blobs[k])
            continue
        if t.dtype not in _EXACT_DTYPES:
            raise InvalidArgumentError(f"entry {name!r} has unsupported dtype {t.dtype}")
        t = _host(t)
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        w.u8(_EXACT).blob(_EXACT_DTYPES[t.dtype].encode()).shape(t.shape).blob(raw)
    return w.seal()


def _for_codec(t: torch.Tensor) -> torch.Tensor:
    """A tensor where the codec reads it: CUDA tensors on their GPU (C-contiguous) when the CUDA
    backend is there, everything else on the host."""
    if t.device.type == "cuda" and cuda.available():
        return t.contiguous()
    return _host(t)


def _exact_tensor(r: Reader, name: str) -> torch.Tensor:
    dtype = _DTYPE_BY_NAME.get(r.text(r.blob("dtype", 16), "dtype"))
    if dtype is None:
        raise FormatError("unknown dtype in state dict blob")
    shape = r.shape()
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = r.blob("tensor data")
    if len(raw) != int(np.prod(shape, dtype=object)) * itemsize:
        raise FormatError(f"entry {name!r}: data size does not match its shape")
    if not len(raw):
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def decompress_state_dict(blob: Any, *, max_output: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """The state dict of :func:`compress_state_dict` (CPU tensors, original names/shapes/dtypes).
    max_output limits each compressed entry's output (bytes)."""
    r = Reader.open(blob, _SD_MAGIC, (_SD_VERSION,), "state dict blob")
    out: Dict[str, torch.Tensor] = {}
    for _ in range(r.count("entry count", 3)):
        name = r.name("entry name")
        kind = r.u8("entry kind")
        if kind == _COMPRESSED:
            out[name] = to_torch(api.decompress(r.blob("tensor blob"), max_output=max_output))
        elif kind == _EXACT:
            out[name] = _exact_tensor(r, name)
        else:
            raise FormatError("unknown entry kind in state dict blob")
    r.end()
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

    def __post_init__(self) -> None:
        # Checked here, where the state is made, not inside DDP's first backward pass.
        self._settings = Settings.make(self.error_bound, self.mode, self.coder)
        self.mode, self.coder = self._settings.mode, self._settings.coder

    def _encode(self, index: int, x: torch.Tensor, on_device: bool) -> Any:
        """The bucket's payload: bytes, or (on_device) a uint8 tensor in x's GPU memory, assembled
        there: its coded bytes do not cross PCIe."""
        if not self.stateful:
            return api.compress_with(x, self._settings, device_blob=on_device)
        enc = self.encoders.get(index)
        if enc is None:
            sid = f"rank{dist.get_rank(self.process_group)}/bucket{index}"
            enc = self.encoders[index] = GradientEncoder(self.error_bound, mode=self.mode, coder=self.coder,
                                                         stream_id=sid)
        return enc.encode({"grad": x}, device_message=on_device)

    def _decode(self, payload: torch.Tensor, device: torch.device) -> torch.Tensor:
        """payload: one rank's gathered bytes (a CPU tensor, or a CUDA tensor over NCCL)."""
        if not self.stateful:
            if payload.is_cuda and device.type == "cuda" and cuda.available():
                # decoded where it arrived: only the blob's front and checksum go to the host
                return _as_torch(api.decompress(payload, device=device))
            return decompress(payload.cpu().numpy(), device=device)  # decoded on the GPU for a CUDA device
        if device.type == "cuda" and cuda.available():  # the streams' state stays on the GPU
            # a message in device memory is read where it is (its framing, fronts and checksums
            # come to the host)
            message = payload if payload.is_cuda else bytes(payload.numpy())
            return torch.as_tensor(self.decoder.decode(message, device=device)["grad"], device=device)
        return to_torch(self.decoder.decode(bytes(payload.cpu().numpy()))["grad"]).to(device)


def allreduce_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: average the bucket's gradients across ranks, each rank sending its
    bucket ebgc-compressed. Register with ``model.register_comm_hook(state, allreduce_hook)``.
    The bucket is compressed in the hook; the exchange and the decoding run asynchronously, so they
    overlap the rest of the backward pass (DDP waits for the returned future).

    CUDA buckets are compressed and decoded on their GPU with the CUDA backend, one-shot and
    stateful (the streams' reconstructions stay on the device). Payloads travel as CPU tensors, or
    as CUDA tensors with the NCCL backend. With NCCL, one-shot payloads are decoded where they
    arrive: only each blob's front (header, outliers, tables, chunk directory) and checksum are
    copied to the host; each rank's own payload is assembled in its GPU's memory (only the blob's
    front and the message framing are written by the host), stateful messages too: with NCCL the
    compressed bytes never cross PCIe."""
    group = state.process_group
    world = dist.get_world_size(group)
    buf = bucket.buffer()
    grad = buf.detach()
    # 16-bit buckets are sent in their own dtype; the error feedback is kept in float32, so it
    # also carries the rounding of (gradient + residual) back to 16 bits.
    work = grad if grad.dtype in (torch.float32, torch.float64) else grad.to(torch.float32)
    residual = state.residuals.get(bucket.index()) if state.error_feedback else None
    if residual is not None and residual.shape == work.shape:  # DDP may rebuild buckets after step 1
        work = work + residual
    x = work.to(grad.dtype)
    comm = buf.device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    payload = state._encode(bucket.index(), x, comm.type == "cuda" and x.is_cuda and cuda.available())
    state.bytes_sent += len(payload)
    state.raw_bytes += grad.numel() * grad.element_size()

    me = dist.get_rank(group)
    # Two all-gathers, sizes then payloads, both issued here, in the order DDP calls the hook, so
    # every rank issues its collectives in the same order (a collective issued from a callback can
    # overtake another bucket's on one rank and not on the other). Only the small one is waited
    # for; the payloads' exchange and their decoding run while the rest of backward does.
    size = torch.tensor([len(payload)], dtype=torch.int64, device=comm)
    sizes = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    lengths = [int(n.item()) for n in sizes]
    mine = torch.zeros(max(lengths), dtype=torch.uint8, device=comm)
    mine[: len(payload)] = (payload if isinstance(payload, torch.Tensor)
                            else torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(comm))
    gathered = [torch.empty(max(lengths), dtype=torch.uint8, device=comm) for _ in range(world)]
    exchanged = dist.all_gather(gathered, mine, group=group, async_op=True).get_future()

    def average(_: torch.futures.Future) -> torch.Tensor:
        total = torch.zeros_like(work)
        for rank, (n, g) in enumerate(zip(lengths, gathered)):
            rec = state._decode(g[:n], work.device).to(work.dtype)  # every stream keeps its order
            if rank == me and state.error_feedback:
                state.residuals[bucket.index()] = work - rec
            total += rec
        buf.copy_((total / world).to(buf.dtype))
        return buf

    return exchanged.then(average)
