"""Throughput and memory of the one-shot codec on a 64 MiB float32 gradient input.

    python bench/speed_memory.py [TRACE.npz] [--out bench/results/speed-memory.json]

The input is the trace's tensors concatenated and tiled to 64 MiB (real gradient values, one
REL bound over the whole array, as one big tensor would be sent). Per ../shared/bench/PROTOCOL.md:
ebgc and pysz are timed in the same process, interleaved, median of 5 after a warm-up;
throughput = uncompressed bytes / second. Peak extra memory of compress is measured in a fresh
child process as the growth of its peak RSS over the input already in memory.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import ebgc

MIB = 1 << 20


def load_input(trace: str, nbytes: int = 64 * MIB) -> np.ndarray:
    d = np.load(trace)
    flat = np.concatenate([d[k].ravel() for k in d.files]).astype(np.float32)
    reps = -(-nbytes // flat.nbytes)
    return np.tile(flat, reps)[: nbytes // 4].copy()


def sz3(algo: str):
    import pysz

    def comp(x, eb):
        c = pysz.szConfig(x.shape)
        c.errorBoundMode = pysz.szErrorBoundMode.REL
        c.relErrorBound = eb
        c.cmprAlgo = getattr(pysz.szAlgorithm, algo)
        return pysz.sz.compress(x, c)[0]

    def dec(b, x):
        return pysz.sz.decompress(b, np.float32, x.shape)[0]

    return comp, dec


def methods():
    out = {}
    for threads in (1, 2):
        for coder in ("auto", "bitpack"):
            name = f"ebgc-{coder}@{threads}t"
            out[name] = (
                lambda x, eb, c=coder, t=threads: ebgc.compress(x, eb, coder=c, threads=t),
                lambda b, x, t=threads: ebgc.decompress(b, threads=t),
            )
    try:
        for algo in ("INTERP_LORENZO", "NOPRED"):
            out[f"SZ3-{algo}@1t"] = sz3(algo)
    except ImportError:
        pass
    return out


def peak_memory(x: np.ndarray, coder: str) -> float:
    """Peak RSS growth of one compress call over the input already in memory, as a multiple of
    the input size, measured in a fresh child process that only reads the input first."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.bin")
        x.tofile(path)
        code = (  # readinto: the input lands in memory with no temporary copy
            "import numpy as np, ebgc\n"
            "def status(key):\n"
            "    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
            f"x = np.empty({x.size}, np.float32)\n"
            f"f = open({path!r}, 'rb'); f.readinto(x); f.close()\n"
            # reset the peak (VmHWM), which otherwise keeps the forking parent's size
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "base = status('VmRSS')\n"
            f"b = ebgc.compress(x, 1e-2, coder={coder!r})\n"
            "print(base, status('VmHWM'))\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = map(int, r.stdout.split())
    return (peak - base) * 1024 / x.nbytes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace", nargs="?", default="../shared/data/fl-resnet-digits.npz")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/speed-memory.json")
    a = ap.parse_args()
    x = load_input(a.trace)
    ms = methods()
    rows = []
    for eb in (1e-2, 1e-3):
        blobs = {n: c(x, eb) for n, (c, d) in ms.items()}  # warm-up
        for n, (c, d) in ms.items():
            y = d(blobs[n], x)
            ab = eb * float(x.max() - x.min())
            assert float(np.abs(y.astype(np.float64) - x).max()) <= ab, n
        tc = {n: [] for n in ms}
        td = {n: [] for n in ms}
        for _ in range(a.repeats):
            for n, (c, d) in ms.items():  # interleaved
                t = time.perf_counter()
                blobs[n] = c(x, eb)
                tc[n].append(time.perf_counter() - t)
                t = time.perf_counter()
                d(blobs[n], x)
                td[n].append(time.perf_counter() - t)
        for n in ms:
            nbytes = len(blobs[n]) if isinstance(blobs[n], bytes) else blobs[n].nbytes
            rows.append(dict(method=n, rel=eb, ratio=x.nbytes / nbytes,
                             compress_MBps=x.nbytes / statistics.median(tc[n]) / 1e6,
                             decompress_MBps=x.nbytes / statistics.median(td[n]) / 1e6))
    mem = {c: peak_memory(x, c) for c in ("auto", "huffman", "context", "bitpack")}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), python=platform.python_version()),
        versions=dict(ebgc=ebgc.__version__, numpy=np.__version__),
        input=dict(trace=os.path.basename(a.trace), nbytes=x.nbytes, dtype="float32"),
        repeats=a.repeats, rows=rows, peak_extra_memory_over_input=mem,
    )
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'method':<22}{'rel':>7}{'ratio':>8}{'comp MB/s':>11}{'dec MB/s':>10}")
    for r in rows:
        print(f"{r['method']:<22}{r['rel']:>7g}{r['ratio']:>8.2f}{r['compress_MBps']:>11.0f}{r['decompress_MBps']:>10.0f}")
    print("peak extra memory / input:", {k: round(v, 3) for k, v in mem.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
