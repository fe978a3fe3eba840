#!/usr/bin/env python3
"""Accuracy against uplink bytes for the `ebgc demo` task, over bounds and seeds.

The demo's target compares ebgc and SZ3 "at equal accuracy". One run's final accuracy moves by
about a point between seeds (300 test images), so this sweeps the REL bound for both codecs over
several seeds and reports, per bound, the mean accuracy and bytes of each; equal-accuracy
comparisons are then read off the table rather than off one noisy run.

    python bench/demo_sweep.py --out bench/results/demo-sweep-2026-11-23.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from ebgc.tools import demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bounds", default="4e-2,2e-2,1e-2,5e-3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--raw-max", type=int, default=demo.RAW_MAX,
                    help="tensors of <= N values go raw for every codec (0: every tensor coded)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    bounds = [float(b) for b in args.bounds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        for eb in bounds:
            for r in demo.run_demo(error_bound=eb, seed=seed, raw_max=args.raw_max):
                if r["method"] == "uncompressed" and eb != bounds[0]:
                    continue  # does not depend on the bound
                h = r["history"]
                rows.append(dict(seed=seed, error_bound=None if r["method"] == "uncompressed" else eb,
                                 method=r["method"], final_accuracy=r["final_accuracy"],
                                 last3_accuracy=float(np.mean([p["accuracy"] for p in h[-3:]])),
                                 uplink_bytes=r["uplink_bytes"], ratio=r["ratio"]))
                print(rows[-1], flush=True)
    summary = []
    for method in ("uncompressed", "SZ3", "ebgc"):
        for eb in ([None] if method == "uncompressed" else bounds):
            sel = [r for r in rows if r["method"] == method and r["error_bound"] == eb]
            if sel:
                summary.append(dict(method=method, error_bound=eb,
                                    mean_final_accuracy=float(np.mean([r["final_accuracy"] for r in sel])),
                                    mean_last3_accuracy=float(np.mean([r["last3_accuracy"] for r in sel])),
                                    mean_uplink_bytes=float(np.mean([r["uplink_bytes"] for r in sel])),
                                    mean_ratio=float(np.mean([r["ratio"] for r in sel]))))
    meta = dict(date=time.strftime("%Y-%m-%d"), machine=platform.processor() or platform.machine(),
                python=platform.python_version(), command="python bench/demo_sweep.py " +
                f"--bounds {args.bounds} --seeds {args.seeds} --raw-max {args.raw_max}")
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, summary=summary, runs=rows), f, indent=1)
    print(f"{'method':12s} {'REL':>7s} {'final acc':>9s} {'last-3 acc':>10s} {'bytes':>10s} {'ratio':>6s}")
    for s in summary:
        eb = "-" if s["error_bound"] is None else f"{s['error_bound']:g}"
        print(f"{s['method']:12s} {eb:>7s} {s['mean_final_accuracy']:9.3f} {s['mean_last3_accuracy']:10.3f} "
              f"{s['mean_uplink_bytes']:10.0f} {s['mean_ratio']:6.1f}")


if __name__ == "__main__":
    main()
