#!/usr/bin/env python3
"""DDP communication hook on CPU: time per training step and final loss, plain allreduce vs the
ebgc hook (one-shot and stateful, error feedback on), 2 gloo processes on this machine.

    python bench/ddp_overhead.py --out bench/results/ddp-overhead-2026-11-23.json

The model is a small CNN (about 0.6 M parameters, so the gradient is a few MB per step) trained
on a fixed synthetic regression task; every variant sees the same data and initial weights.
Step time is the median over the timed steps (after warm-up) on rank 0, forward + backward +
communication + optimizer step.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _run(rank, world, init, kind, steps, warmup, bound, out):
    import ebgc.torch as et

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    ddp = torch.nn.parallel.DistributedDataParallel(_model())
    state = None
    if kind != "plain":
        state = et.HookState(error_bound=bound, error_feedback=True, stateful=kind == "ebgc-stateful")
        ddp.register_comm_hook(state, et.allreduce_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.02, momentum=0.9)
    teacher = _model()
    for p in teacher.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(100 + rank)
    losses, times = [], []
    for step in range(warmup + steps):
        x = torch.randn(32, 3, 32, 32, generator=g)
        y = teacher(x)
        t0 = time.perf_counter()
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    if rank == 0:
        res = dict(kind=kind, median_step_s=statistics.median(times), final_loss=statistics.mean(losses[-10:]),
                   first_loss=losses[0], params=sum(p.numel() for p in ddp.parameters()))
        if state is not None:
            res.update(bytes_sent=state.bytes_sent, raw_bytes=state.raw_bytes)
        Path(out).write_text(json.dumps(res))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--error-bound", type=float, default=1e-2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("plain", "ebgc", "ebgc-stateful"):
            out = Path(tmp) / f"{kind}.json"
            mp.spawn(_run, args=(2, f"file://{tmp}/{kind}.store", kind, args.steps, args.warmup,
                                 args.error_bound, str(out)), nprocs=2, join=True)
            rows.append(json.loads(out.read_text()))
            print(rows[-1], flush=True)
    plain = rows[0]["median_step_s"]
    for r in rows:
        r["overhead_vs_plain_s"] = r["median_step_s"] - plain
        if "raw_bytes" in r:
            r["fewer_bytes"] = r["raw_bytes"] / r["bytes_sent"]
    meta = dict(date=time.strftime("%Y-%m-%d"), machine=platform.processor() or platform.machine(),
                torch=torch.__version__, python=platform.python_version(), world=2, backend="gloo",
                threads_per_rank=1, error_bound=args.error_bound, mode="rel", steps=args.steps,
                command=" ".join(["python", "bench/ddp_overhead.py"] + sys.argv[1:]))
    Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    print(f"{'variant':14s} {'step ms':>8s} {'overhead ms':>11s} {'final loss':>10s} {'fewer bytes':>11s}")
    for r in rows:
        fb = f"{r['fewer_bytes']:.1f}x" if "fewer_bytes" in r else "1x"
        print(f"{r['kind']:14s} {1e3 * r['median_step_s']:8.1f} {1e3 * r['overhead_vs_plain_s']:11.1f} "
              f"{r['final_loss']:10.4f} {fb:>11s}")


if __name__ == "__main__":
    main()
