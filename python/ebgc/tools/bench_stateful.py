"""Benchmark of the stateful codec (``ebgc bench --stateful``).

Per trace and bound: the messages go in order through a GradientEncoder and, as bytes only, a
separate GradientDecoder (two machines would run it so); every value of every message is checked
against its bound. Beside it, in the same run: ebgc one-shot and every SZ3 algorithm (through
:func:`ebgc.tools.bench.run_bench`). Tensors with <= 1024 values are sent raw by every method alike.
Results: rows like ``run_bench``'s plus the ratio of each message, and a plot of ratio over rounds.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import bench
from ..stream import GradientDecoder, GradientEncoder


def _stateful_pass(trace: bench.Trace, eb: float, mode: str, verify: bool, history: int = 2,
                   low_rank: bool = True) -> dict:
    enc = GradientEncoder(eb, mode=mode, stream_id=trace.name.encode()[:64] or b"trace", history=history,
                          threads=1, low_rank=low_rank)
    dec = GradientDecoder(threads=1)
    per_message, wire, ct, dt = [], 0, 0.0, 0.0
    worst, violations = 0.0, 0
    for _, tensors in trace.messages:
        big = {k: x for k, x in tensors if x.size > bench.RAW_MAX_ELEMENTS}
        raw_small = sum(x.nbytes for _, x in tensors if x.size <= bench.RAW_MAX_ELEMENTS)
        t0 = time.perf_counter()
        msg = enc.encode(big)
        t1 = time.perf_counter()
        out = dec.decode(bytes(msg))
        t2 = time.perf_counter()
        ct, dt = ct + t1 - t0, dt + t2 - t1
        size = len(msg) + raw_small
        wire += size
        per_message.append(sum(x.nbytes for _, x in tensors) / size)
        if verify:
            for k, x in big.items():
                bound = bench.abs_bound(x, eb, mode)
                err, over = bench.check_error(x, out[k], bound)
                worst = max(worst, bench._err_over_bound(err, bound))
                violations += bool(over)
    return dict(wire=wire, per_message=per_message, ct=ct, dt=dt, worst=worst, violations=violations)


# (method, encoder settings, what it leaves out) for the ablation rows
ABLATION = [
    ("ebgc-stateful-h0-nolr", dict(history=0, low_rank=False), "no prediction at all"),
    ("ebgc-stateful-h0", dict(history=0), "low-rank only (no temporal prediction)"),
    ("ebgc-stateful-h1", dict(history=1), "low-rank or last reconstruction, scaled"),
    ("ebgc-stateful-nolr", dict(history=2, low_rank=False), "temporal only (no low-rank predictor)"),
]


def run_stateful(traces: Sequence[bench.Trace], bounds: Sequence[float], mode: str = "rel", *,
                 repeats: int = 3, quiet: bool = True, console: Any = None) -> list[dict]:
    peers = [m for m in bench.make_methods((1,)) if m.name == "ebgc" or m.family == "SZ3"]
    rows = bench.run_bench(traces, bounds, mode, methods=peers, repeats=repeats, quiet=quiet,
                           console=console)
    out = []
    for trace in traces:
        raw = trace.raw_bytes
        for eb in bounds:
            first = _stateful_pass(trace, eb, mode, verify=True)
            timed = [_stateful_pass(trace, eb, mode, verify=False) for _ in range(repeats)]
            cs = statistics.median(t["ct"] for t in timed)
            ds = statistics.median(t["dt"] for t in timed)
            group = [r for r in rows if r["trace"] == trace.name and r["bound"] == eb]
            one_shot = next(r for r in group if r["method"] == "ebgc")
            out.extend(group)
            # ablation: what each predictor adds (history 0 = every message one-shot, in messages)
            for name, kw, detail in ABLATION:
                ab = _stateful_pass(trace, eb, mode, verify=True, **kw)
                out.append({
                    "trace": trace.name, "bound_mode": mode, "bound": eb, "method": name,
                    "ratio": raw / ab["wire"], "raw_bytes": raw, "wire_bytes": ab["wire"],
                    "max_err_over_bound": ab["worst"], "violations": ab["violations"],
                    "compress_MBps": math.nan, "decompress_MBps": math.nan, "family": "ebgc",
                    "threads": 1, "detail": detail, "messages": len(trace.messages), "repeats": 0,
                })
            out.append({
                "trace": trace.name, "bound_mode": mode, "bound": eb, "method": "ebgc-stateful",
                "ratio": raw / first["wire"], "raw_bytes": raw, "wire_bytes": first["wire"],
                "max_err_over_bound": first["worst"], "violations": first["violations"],
                "compress_MBps": raw / cs / 1e6 if cs > 0 else math.inf,
                "decompress_MBps": raw / ds / 1e6 if ds > 0 else math.inf,
                "family": "ebgc", "threads": 1, "detail": "GradientEncoder (history 2), messages in order",
                "per_message_ratio": first["per_message"], "one_shot_ratio": one_shot["ratio"],
                "messages": len(trace.messages), "repeats": repeats,
            })
    return out


def plot_rounds(rows: Sequence[dict], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = [r for r in rows if r["method"] == "ebgc-stateful"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in st:
        label = f"{r['trace']} {r['bound_mode']} {r['bound']:g}"
        line, = ax.plot(range(len(r["per_message_ratio"])), r["per_message_ratio"], marker="o", ms=3,
                        label=f"{label} stateful")
        sz = [x for x in rows if x["trace"] == r["trace"] and x["bound"] == r["bound"] and x["method"] == "SZ3-best"]
        ax.axhline(r["one_shot_ratio"], color=line.get_color(), ls="--", lw=1)
        if sz:
            ax.axhline(sz[0]["ratio"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("message (round)")
    ax.set_ylabel("ratio of the message")
    ax.set_title("ebgc stateful per message (dashed: ebgc one-shot, dotted: SZ3-best, whole trace)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
