#!/usr/bin/env python3
"""ebgc inside zarr, both formats: a trace's updates of one tensor, round after round, stored as one
chunked array (a chunk per round), in zarr 3 (ebgc's serializer codec) and zarr 2 (ebgc's numcodecs
codec), against zarr's default lossless compressor. Reports the stored bytes, the ratio and the
worst error of any value over its chunk's bound (REL: error_bound x (max - min) of that chunk).

    python bench/zarr_store.py traces/vgg.npz --tensor 2.weight --out bench/results/zarr-2026-12-05.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import tempfile
from pathlib import Path

import numpy as np
import zarr

import ebgc
from ebgc.integrations.numcodecs import EBGC
from ebgc.integrations.zarr import EBGCCodec


def stored_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def worst_over_bound(x: np.ndarray, y: np.ndarray, eb: float) -> float:
    worst = 0.0
    for k in range(x.shape[0]):  # one chunk per round
        a, b = x[k].astype(np.float64), y[k].astype(np.float64)
        bound = eb * (a.max() - a.min())
        worst = max(worst, float(np.abs(b - a).max() / bound) if bound > 0 else float(np.abs(b - a).max() > 0))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--tensor", default="2.weight", help="default: the vgg trace's 512 x 512 linear layer")
    ap.add_argument("--bounds", type=float, nargs="+", default=[1e-2, 1e-3])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    z = np.load(a.trace)
    keys = sorted(k for k in z.files if re.match(rf"^r\d+/c0/{re.escape(a.tensor)}$", k))
    x = np.stack([z[k] for k in keys]).astype(np.float32)
    chunks = (1,) + x.shape[1:]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def store(name, fmt, **codec):
            path = Path(tmp) / name
            arr = zarr.create_array(store=str(path), shape=x.shape, chunks=chunks, dtype="float32",
                                    zarr_format=fmt, fill_value=float("nan"), **codec)
            arr[...] = x
            y = zarr.open_array(str(path), mode="r")[...]
            return stored_bytes(path), y

        n, _ = store("lossless-v3", 3)
        rows.append(dict(format=3, codec="zarr default (zstd, lossless)", bound=None, stored_bytes=n))
        for eb in a.bounds:
            for fmt, codec in ((3, dict(serializer=EBGCCodec(eb), compressors=None)),
                               (2, dict(compressors=EBGC(eb)))):
                n, y = store(f"ebgc-v{fmt}-{eb:g}", fmt, **codec)
                rows.append(dict(format=fmt, codec="ebgc", bound=eb, stored_bytes=n,
                                 worst_error_over_bound=worst_over_bound(x, y, eb)))
    for r in rows:
        r["ratio"] = x.nbytes / r["stored_bytes"]
    meta = dict(date=datetime.date.today().isoformat(), machine=platform.machine(), python=platform.python_version(),
                zarr=zarr.__version__, ebgc=ebgc.__version__, trace=a.trace, tensor=a.tensor, shape=list(x.shape),
                chunks=list(chunks), raw_bytes=int(x.nbytes),
                command=f"python bench/zarr_store.py {a.trace} --tensor {a.tensor} --out {a.out}")
    Path(a.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    for r in rows:
        print(f"zarr {r['format']}  {r['codec']:32s} bound {r['bound']!s:6s} {r['stored_bytes']:>10,} B  "
              f"{r['ratio']:6.2f}x  worst err/bound {r.get('worst_error_over_bound', 0):.3f}")


if __name__ == "__main__":
    main()
