#!/usr/bin/env python3
"""Estimate the ratio a Huffman-speed coder could reach on the shared traces (issue #2's speed target).

Report: docs/research/fast-coder-limits.md.  Usage:

    python docs/research/fast_coder_estimates.py ../shared/data/fl-resnet-digits.npz ../shared/data/fl-vgg-digits.npz

Model (no low-rank prediction; zero predictor as ebgc's one-shot coder):
  * ab = eb * (max - min) of the tensor (REL), codes q = round(x / 2ab);
  * symbol = magnitude class of |q| (exact below 16, then 4 per octave, as ebgc's symbolize.hpp),
    raw bits = the class's low bits + one sign bit per nonzero code (a prefix code cannot spend
    less than a bit on a binary event, so sign contexts cannot pay here);
  * each variant's symbols are coded by ebgc's Huffman stage (``_core.huffman_encode``: canonical,
    12-bit limit, 4 bits a symbol of table), a code per context built from the tensor's own
    counts; 64 bytes of header a tensor;
  * tensors of <= 1024 values are sent raw (4 bytes a value), as the bench protocol says.
Variants:
  context   one symbol at a time, context = the previous symbol's class (16 buckets, log2 spaced)
  groups    G consecutive symbols as one joint symbol when all classes are <= K, else an escape
            followed by the G symbols; context = the previous group's class sum
  zeroblk   a bit per block of B values (all codes zero or not); nonzero blocks as "context"
"""
from __future__ import annotations

import argparse
import numpy as np

from ebgc import _core

BUCKETS = 16
CLASSES = 128  # magnitude classes: 16 exact + 4 per octave up to 2^31, rounded up


def coded_bits(symbols: np.ndarray, contexts: np.ndarray, alphabet: int) -> float:
    """Bits of ebgc's own canonical Huffman stage (12-bit limit, its length table included), one
    code per context."""
    return 8.0 * sum(len(_core.huffman_encode(symbols[contexts == c].astype(np.uint16), alphabet))
                     for c in np.unique(contexts))


def classes(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.abs(q)
    e = np.floor(np.log2(np.maximum(m, 1))).astype(np.int64)
    big = m >= 16
    cls = np.where(big, 16 + (e - 4) * 4 + ((m >> np.maximum(e - 2, 0)) & 3), m)
    raw = np.where(big, e - 2, 0) + (m > 0)  # low bits + sign
    return cls, raw


def bucket(previous: np.ndarray) -> np.ndarray:
    return np.minimum(np.floor(np.log2(previous + 1) * 2).astype(np.int64), BUCKETS - 1)


def tensor_bits(q: np.ndarray, variant: str, g: int, k: int, b: int) -> float:
    cls, raw = classes(q)
    bits = float(raw.sum())
    if variant == "context":
        return bits + coded_bits(cls, bucket(np.concatenate([[0], cls[:-1]])), CLASSES)
    if variant == "groups":
        groups = np.concatenate([cls, np.zeros((-len(cls)) % g, np.int64)]).reshape(-1, g)
        sums = groups.sum(1)
        ctx = bucket(np.concatenate([[0], sums[:-1]]))
        small = (groups <= k).all(1)
        joint = np.where(small, (groups * (k + 1) ** np.arange(g)).sum(1), (k + 1) ** g)  # last: escape
        bits += coded_bits(joint, ctx, (k + 1) ** g + 1)
        escaped = groups[~small]
        return bits + coded_bits(escaped.ravel(), np.repeat(ctx[~small], g), CLASSES)
    if variant == "zeroblk":
        blocks = np.concatenate([cls, np.zeros((-len(cls)) % b, np.int64)]).reshape(-1, b)
        live = blocks.any(1)
        rest = blocks[live].ravel()
        return bits + len(live) + coded_bits(rest, bucket(np.concatenate([[0], rest[:-1]])), CLASSES)
    raise ValueError(variant)


def ratio(path: str, rel: float, variant: str, g: int, k: int, b: int) -> float:
    z = np.load(path)
    raw = wire = 0.0
    for name in z.files:
        x = z[name].astype(np.float64).ravel()
        raw += z[name].nbytes
        if x.size <= 1024:
            wire += z[name].nbytes
            continue
        q = np.round(x / (2 * rel * (x.max() - x.min()))).astype(np.int64)
        wire += tensor_bits(q, variant, g, k, b) / 8 + 64
    return raw / wire


VARIANTS = [("context", 1, 0, 0), ("groups", 4, 2, 0), ("groups", 2, 3, 0), ("zeroblk", 1, 0, 16),
            ("zeroblk", 1, 0, 64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--bounds", type=float, nargs="+", default=[1e-2, 1e-3])
    args = ap.parse_args()
    cols = [(t, eb) for t in args.traces for eb in args.bounds]
    print("| variant | " + " | ".join(f"{t.rsplit('/', 1)[-1]} {eb:g}" for t, eb in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for variant, g, k, b in VARIANTS:
        label = {"context": "context", "groups": f"groups of {g} (classes <= {k})",
                 "zeroblk": f"zero blocks of {b} + context"}[variant]
        print(f"| {label} | " + " | ".join(f"{ratio(t, eb, variant, g, k, b):.2f}" for t, eb in cols) + " |",
              flush=True)


if __name__ == "__main__":
    main()
