#!/usr/bin/env python3
"""Bytes that cross PCIe when DDP payloads stay in GPU memory, counted on the CPU.

No GPU is used: the device's blobs are written by its host runner (``_core._grid_compress_message``,
one grid per message, the ratio coder "auto" without low rank, as the GPU codes them), assembled
as on the device (``assemble=True``; the same bytes). For each trace's first message (client 0) and
its first rounds as one stream (the CPU stream codec's messages, whose framing is the GPU's):

- fronts: what the host writes of each blob (header, outliers, tables, chunk directory) and what a
  receiver copies to the host (``_core._parse_front_check``: the device parse's own count);
- framing: what a GPU decoder fetches of a stream message (``wire.FetchingReader``'s windows);
- before: the coded bytes' trips through the host when blobs were assembled there (sender: streams
  down, blob up; stateful receiver: message down, streams up again).

    PYTHONPATH=python python bench/pcie_bytes.py traces/resnet.npz traces/vgg.npz --bounds 1e-2 1e-3 \\
        --out bench/results/device-blob-speed-2026-12-05
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

import ebgc
from ebgc import _core

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from fuzzing import HostWindowSource, read_message_fetching  # noqa: E402

REL = _core.VOCABULARY["modes"]["rel"]
AUTO = _core.VOCABULARY["coders"]["auto"]


def rounds_of(path: str, client: str = "c0") -> list:
    data = np.load(path)
    by_round: dict = {}
    for key in data.files:
        r, c, name = key.split("/", 2)
        if c == client:
            by_round.setdefault(r, {})[name] = np.ascontiguousarray(data[key], dtype=np.float32)
    return [by_round[r] for r in sorted(by_round)]


def measure(path: str, bound: float, n_rounds: int) -> dict:
    rounds = rounds_of(path)
    first = list(rounds[0].values())
    blobs = _core._grid_compress_message(first, "float32", bound, REL, AUTO, assemble=True)
    fronts = sum(_core._parse_front_check(b, 64)[1] for b in blobs)
    blob_bytes = sum(len(b) for b in blobs)
    enc = ebgc.GradientEncoder(bound, low_rank=False)
    msg_bytes = fetched = 0
    for tensors in rounds[:n_rounds]:
        message = enc.encode(tensors)
        source = HostWindowSource(message)
        _, parts = read_message_fetching(message, source)
        msg_bytes += len(message)
        fetched += source.fetched + sum(_core._parse_front_check(bytes(b), 64)[1] for _, b in parts)
    n = min(n_rounds, len(rounds))
    return {"trace": os.path.basename(path), "bound": bound, "tensors": len(first),
            "raw_bytes": int(sum(x.nbytes for x in first)), "blob_bytes": blob_bytes, "front_bytes": fronts,
            "oneshot_sender_before": 2 * blob_bytes, "oneshot_sender_now": fronts,
            "stream_messages": n, "message_bytes": msg_bytes // n,
            "stream_receiver_before": 2 * msg_bytes // n, "stream_receiver_now": fetched // n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--bounds", type=float, nargs="+", default=[1e-2, 1e-3])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="bench/out/pcie-bytes")
    args = ap.parse_args()
    rows = [measure(t, b, args.rounds) for t in args.traces for b in args.bounds]
    os.makedirs(args.out, exist_ok=True)
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.platform(), "ebgc": ebgc.__version__,
            "command": " ".join(["python", "bench/pcie_bytes.py"] + sys.argv[1:])}
    with open(os.path.join(args.out, "pcie_bytes.json"), "w") as f:
        json.dump({**meta, "rows": rows}, f, indent=1)
    lines = [f"# Coded bytes over PCIe per DDP payload ({meta['date']})", "", f"`{meta['command']}`", "",
             "| trace | REL | tensors | raw KB | blobs KB | one-shot sender before / now KB | "
             "stream message KB | stream receiver before / now KB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['trace']} | {r['bound']:g} | {r['tensors']} | {r['raw_bytes'] / 1e3:.0f} | "
                     f"{r['blob_bytes'] / 1e3:.1f} | {r['oneshot_sender_before'] / 1e3:.1f} / "
                     f"{r['oneshot_sender_now'] / 1e3:.2f} | {r['message_bytes'] / 1e3:.1f} | "
                     f"{r['stream_receiver_before'] / 1e3:.1f} / {r['stream_receiver_now'] / 1e3:.2f} |")
    with open(os.path.join(args.out, "pcie_bytes.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
