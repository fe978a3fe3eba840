"""``ebgc bench --gpu``: the CUDA backend's throughput, by CUDA events, beside a device-to-device
copy of the same bytes (what the GPU's memory can do at best).

Workloads (../shared/bench/PROTOCOL.md):
- 1 GiB of float32 gradient values (a trace's tensors, tiled), fast mode: device time of compress
  (range, fused quantize + pack, outlier gather; the blob's streams stay in device memory) and
  decompress (from a blob already in device memory), median of ``repeats`` runs each.
- the same 1 GiB in ratio mode (the context coder's lanes): wall time of the public API, blob on
  the host (``ebgc.compress`` of the CUDA tensor) and back (``ebgc.decompress`` into a CUDA
  tensor), and its ratio beside the CPU codec's ``auto`` blob of the same values.
- the same data's blob decoded from device memory (as NCCL delivers it) beside from host bytes;
- the trace's real tensors, one message: the same device times per tensor, and the wall time of
  the whole message through the public API (``ebgc.compress`` of each CUDA tensor, and
  ``ebgc.compress_many`` of all of them, which codes them as one grid; blob bytes on
  the host) beside one pinned device-to-host copy of the raw message.
- the trace's rounds as a stream: ``GradientEncoder.encode`` of CUDA tensors (state on the
  device) beside the CPU stream codec: bytes and wall time per message.
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


def _device_blob_row(name: str, x: Any, bound: float, mode: str, repeats: int, coder: str) -> dict:
    """Blobs in device memory (as NCCL sends and delivers them): compressed into device memory
    beside compressed to host bytes, and decoded from device memory beside from host bytes."""
    import torch

    blob = api.compress(x, bound, mode=mode, coder=coder)
    on_device = api.compress(x, bound, mode=mode, coder=coder, device_blob=True)
    if bytes(on_device.cpu().numpy()) != blob:
        raise RuntimeError("the blob assembled in device memory differs from the host blob")
    out = torch.empty_like(x)
    to_host = _wall_ms(lambda: api.compress(x, bound, mode=mode, coder=coder), repeats)
    to_device = _wall_ms(lambda: api.compress(x, bound, mode=mode, coder=coder, device_blob=True), repeats)
    from_host = _wall_ms(lambda: api.decompress(blob, out=out), repeats)
    from_device = _wall_ms(lambda: api.decompress(on_device, out=out), repeats)
    nbytes = x.numel() * x.element_size()
    return {"workload": f"{name}, {coder}", "values": int(x.numel()), "bound": bound, "bound_mode": mode,
            "ratio": nbytes / len(blob), "compress_to_host_bytes_ms": to_host, "compress_to_device_blob_ms": to_device,
            "to_device_GBps": _gbps(nbytes, to_device), "decompress_from_host_bytes_ms": from_host,
            "decompress_from_device_blob_ms": from_device, "from_device_GBps": _gbps(nbytes, from_device),
            "runs": repeats}


def _message_row(name: str, tensors: list, bound: float, mode: str, repeats: int, coder: str = "auto") -> dict:
    """Whole message through the public API vs one pinned device-to-host copy of its raw bytes."""
    import torch

    flat = torch.cat([t.reshape(-1) for t in tensors])
    pinned = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
    api_ms, many_ms, device_ms, copy_ms, sizes = [], [], [], [], 0
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        sizes = sum(len(api.compress(t, bound, mode=mode, coder=coder)) for t in tensors)
        api_ms.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        many = api.compress_many(tensors, bound, mode=mode, coder=coder)  # one grid in fast mode
        many_ms.append((time.perf_counter() - t0) * 1e3)
        if sum(len(b) for b in many) != sizes:
            raise RuntimeError("compress_many wrote other blobs than compress")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        api.compress_many(tensors, bound, mode=mode, coder=coder, device_blob=True)  # blobs stay on the GPU
        torch.cuda.synchronize()
        device_ms.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pinned.copy_(flat, non_blocking=True)
        torch.cuda.synchronize()
        copy_ms.append((time.perf_counter() - t0) * 1e3)
    nbytes = flat.numel() * 4
    return {"workload": f"{name}, {coder}", "tensors": len(tensors), "values": int(flat.numel()), "bound": bound,
            "bound_mode": mode, "ratio": nbytes / sizes, "api_compress_to_host_ms": _median(api_ms),
            "compress_many_to_host_ms": _median(many_ms), "compress_many_to_device_ms": _median(device_ms),
            "pinned_d2h_copy_ms": _median(copy_ms), "runs": repeats}


def _wall_ms(f, repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return _median(times)


def _ratio_row(name: str, x: Any, bound: float, mode: str, repeats: int, coder: str = "auto") -> dict:
    """Ratio mode through the public API, beside the CPU's blob of the same values and coder."""
    import torch

    blob = api.compress(x, bound, mode=mode, coder=coder)
    out = torch.empty_like(x)
    c = _wall_ms(lambda: api.compress(x, bound, mode=mode, coder=coder), repeats)
    d = _wall_ms(lambda: api.decompress(blob, out=out), repeats)
    host = x.cpu().numpy()
    cpu_blob = api.compress(host, bound, mode=mode, coder=coder)
    back = out.cpu().numpy()
    err = float(np.max(np.abs(back.astype(np.float64) - host))) if host.size else 0.0
    abs_bound = api.info(blob)["abs_bound"]
    nbytes = x.numel() * 4
    return {"workload": name, "values": int(x.numel()), "bound": bound, "bound_mode": mode,
            "coder": api.info(blob)["coder"], "ratio": nbytes / len(blob), "cpu_ratio": nbytes / len(cpu_blob),
            "ratio_vs_cpu": len(cpu_blob) / len(blob), "max_error_over_bound": err / abs_bound if abs_bound else 0.0,
            "api_compress_ms": c, "api_decompress_ms": d, "compress_GBps": _gbps(nbytes, c),
            "decompress_GBps": _gbps(nbytes, d), "runs": repeats}


def _stream_row(trace: Any, bound: float, mode: str) -> dict:
    """The trace's messages as a stream coded on the device, beside the CPU stream codec."""
    import torch

    from ..stream import GradientDecoder, GradientEncoder

    gpu, cpu, dec = GradientEncoder(bound, mode=mode), GradientEncoder(bound, mode=mode), GradientDecoder()
    gpu_bytes = cpu_bytes = raw = 0
    ms = []
    worst = 0.0
    for _, tensors in trace.messages:
        host = {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in tensors}
        dev = {n: torch.from_numpy(a).cuda() for n, a in host.items()}
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        msg = gpu.encode(dev)
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) * 1e3)
        gpu_bytes += len(msg)
        cpu_bytes += len(cpu.encode(host))
        raw += sum(a.nbytes for a in host.values())
        got, info = dec.decode(msg), api.info(msg)["tensors"]
        for n, a in host.items():
            b = info[n]["abs_bound"]
            if b:
                worst = max(worst, float(np.max(np.abs(got[n].astype(np.float64) - a))) / b)
    return {"workload": f"{trace.name} stream ({len(trace.messages)} messages)", "bound": bound, "bound_mode": mode,
            "ratio": raw / gpu_bytes, "cpu_stream_ratio": raw / cpu_bytes, "ratio_vs_cpu": cpu_bytes / gpu_bytes,
            "max_error_over_bound": worst, "encode_ms_per_message": _median(ms),
            "encode_GBps": _gbps(raw // len(trace.messages), _median(ms))}


def run_gpu_bench(traces: list, bounds: list[float], mode: str, repeats: int = 20, gib: float = 1.0,
                  on_rows: Any = None) -> dict:
    """on_rows(result so far): called after every trace and bound, so that a run cut short by a
    time limit keeps what it measured."""
    if not cuda.available():
        raise CudaError("ebgc bench --gpu needs the CUDA backend and a GPU (ebgc.HAS_CUDA is False)")
    import torch

    rows: list[dict] = []
    props = torch.cuda.get_device_properties(0)
    result = {"gpu": cuda._cuda.device_name(0), "gpu_memory_GiB": props.total_memory / GIB,
              "torch": torch.__version__, "rows": rows}
    for trace in traces:
        _, first = trace.messages[0]
        tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).cuda() for _, a in first]
        pool = torch.cat([t.reshape(-1) for t in tensors])
        n_big = int(gib * GIB) // 4
        big = pool.repeat(-(-n_big // pool.numel()))[:n_big].contiguous()
        for bound in bounds:
            rows.append(_device_row(f"{trace.name} tiled to {gib:g} GiB", big, bound, mode, repeats))
            rows.append(_ratio_row(f"{trace.name} tiled to {gib:g} GiB, ratio mode", big, bound, mode, repeats))
            rows.append(_ratio_row(f"{trace.name} tiled to {gib:g} GiB, huffman", big, bound, mode, max(3, repeats // 4),
                                   "huffman"))
            rows.append(_stream_row(trace, bound, mode))
            for coder in ("auto", "bitpack"):
                rows.append(_device_blob_row(f"{trace.name} tiled to {gib:g} GiB, blob in device memory", big, bound,
                                             mode, repeats, coder))
            for (tname, _), t in zip(first, tensors):
                row = _device_row(f"{trace.name}/{tname}", t.reshape(-1), bound, mode, repeats)
                rows.append(row)
            # the message, and a whole-model message of >= 25 M values (the message's tensors repeated)
            model = tensors * -(-25_000_000 // pool.numel())
            for coder in ("auto", "bitpack"):
                rows.append(_message_row(f"{trace.name} message ({len(tensors)} tensors)", tensors, bound, mode,
                                         repeats, coder))
                rows.append(_message_row(f"{trace.name} message repeated to {len(model)} tensors", model, bound, mode,
                                         max(3, repeats // 4), coder))
            if on_rows is not None:
                on_rows(result)
        del big
    return result
