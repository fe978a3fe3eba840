"""``ebgc bench --gpu``: the CUDA backend's throughput, by CUDA events, beside a device-to-device
copy of the same bytes (what the GPU's memory can do at best).

Two workloads (../shared/bench/PROTOCOL.md):
- 1 GiB of float32 gradient values (a trace's tensors, tiled): device time of compress (range,
  fused quantize + pack, outlier gather; the blob's streams stay in device memory) and decompress
  (from a blob already in device memory), median of ``repeats`` runs each.
- the trace's real tensors, one message: the same device times per tensor, and the wall time of
  the whole message through the public API (``ebgc.compress`` of each CUDA tensor, blob bytes on
  the host) beside one pinned device-to-host copy of the raw message.
Needs torch with CUDA (the GPU machine's stack).
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .. import api, cuda
from ..errors import CudaError
from ..vocabulary import MODES

GIB = 1 << 30


def _median(v: list[float]) -> float:
    return float(statistics.median(v))


def _gbps(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9 if ms > 0 else float("nan")


def _device_row(name: str, x: Any, bound: float, mode: str, repeats: int) -> dict:
    import torch

    scratch = torch.empty_like(x)
    handle = int(torch.cuda.current_stream().cuda_stream)
    t = cuda._cuda.benchmark_bitpack(int(x.data_ptr()), "float32", int(x.numel()), MODES[mode], bound,
                                     int(scratch.data_ptr()), repeats, handle)
    nbytes = x.numel() * 4
    c, d, copy = _median(t["compress_ms"]), _median(t["decompress_ms"]), _median(t["copy_ms"])
    return {"workload": name, "values": int(x.numel()), "bound": bound, "bound_mode": mode,
            "ratio": nbytes / t["compressed_bytes"], "compress_ms": c, "decompress_ms": d, "copy_ms": copy,
            "compress_GBps": _gbps(nbytes, c), "decompress_GBps": _gbps(nbytes, d), "copy_GBps": _gbps(nbytes, copy),
            "runs": repeats}


def _message_row(name: str, tensors: list, bound: float, mode: str, repeats: int) -> dict:
    """Whole message through the public API vs one pinned device-to-host copy of its raw bytes."""
    import torch

    flat = torch.cat([t.reshape(-1) for t in tensors])
    pinned = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
    api_ms, copy_ms, sizes = [], [], 0
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        sizes = sum(len(api.compress(t, bound, mode=mode)) for t in tensors)
        api_ms.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pinned.copy_(flat, non_blocking=True)
        torch.cuda.synchronize()
        copy_ms.append((time.perf_counter() - t0) * 1e3)
    nbytes = flat.numel() * 4
    return {"workload": name, "tensors": len(tensors), "values": int(flat.numel()), "bound": bound,
            "bound_mode": mode, "ratio": nbytes / sizes, "api_compress_to_host_ms": _median(api_ms),
            "pinned_d2h_copy_ms": _median(copy_ms), "runs": repeats}


def run_gpu_bench(traces: list, bounds: list[float], mode: str, repeats: int = 20, gib: float = 1.0) -> dict:
    if not cuda.available():
        raise CudaError("ebgc bench --gpu needs the CUDA backend and a GPU (ebgc.HAS_CUDA is False)")
    import torch

    rows: list[dict] = []
    for trace in traces:
        _, first = trace.messages[0]
        tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).cuda() for _, a in first]
        pool = torch.cat([t.reshape(-1) for t in tensors])
        n_big = int(gib * GIB) // 4
        big = pool.repeat(-(-n_big // pool.numel()))[:n_big].contiguous()
        for bound in bounds:
            rows.append(_device_row(f"{trace.name} tiled to {gib:g} GiB", big, bound, mode, repeats))
            for (tname, _), t in zip(first, tensors):
                row = _device_row(f"{trace.name}/{tname}", t.reshape(-1), bound, mode, repeats)
                rows.append(row)
            rows.append(_message_row(f"{trace.name} message ({len(tensors)} tensors)", tensors, bound, mode,
                                     repeats))
        del big
    props = torch.cuda.get_device_properties(0)
    return {"gpu": cuda._cuda.device_name(0), "gpu_memory_GiB": props.total_memory / GIB,
            "torch": torch.__version__, "rows": rows}
