"""Data, model, training and the byte counts of the comparison codecs.

The data and model are those of ``ebgc demo`` (ebgc.tools.demo): scikit-learn's 8x8 digits
upsampled to 16x16 (no download), split across the clients by a Dirichlet draw per class
(non-IID), 300 images held out for the server's test; a small CNN.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np
import torch

from ebgc.tools.demo import digits_model as _model, digits_split as _data

PARAM_CUTOFF = 1024  # tensors of at most this many values go raw, for every codec


def model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _model()


def partition(pid: int, parts: int, seed: int, alpha: float) -> Tuple[torch.Tensor, torch.Tensor]:
    clients, _ = _data(seed, parts, alpha)
    return clients[pid]


def held_out(seed: int, parts: int, alpha: float) -> Tuple[torch.Tensor, torch.Tensor]:
    return _data(seed, parts, alpha)[1]


def train(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, seed: int) -> float:
    """Local SGD (momentum 0.9, batches of 32, an order fixed by `seed`); the mean loss."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    losses = []
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 32):
            b = perm[i : i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[b]), y[b])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def codec_bytes(update: Mapping[str, np.ndarray], error_bound: float) -> Dict[str, int]:
    """What one update costs sent raw (float32), one-shot SZ3 (pysz, REL at the same bound) and
    one-shot ebgc, tensors of <= PARAM_CUTOFF values raw for each; measured on the very update
    the client sends (the stateful ebgc stream's own bytes are counted by the plugin)."""
    import ebgc

    raw = sum(int(v.nbytes) for v in update.values())
    out = {"raw-bytes": raw, "ebgc-oneshot-bytes": 0}
    for v in update.values():
        big = v.dtype in (np.float32, np.float64) and v.size > PARAM_CUTOFF
        out["ebgc-oneshot-bytes"] += len(ebgc.compress(v, error_bound)) if big else int(v.nbytes)
    try:
        import pysz
    except ImportError:
        return out
    out["sz3-bytes"] = 0
    for v in update.values():
        if v.dtype in (np.float32, np.float64) and v.size > PARAM_CUTOFF:
            cfg = pysz.szConfig(v.shape)
            cfg.errorBoundMode = pysz.szErrorBoundMode.REL
            cfg.relErrorBound = error_bound
            buf, _ = pysz.sz.compress(np.ascontiguousarray(v), cfg)
            out["sz3-bytes"] += int(buf.nbytes)
        else:
            out["sz3-bytes"] += int(v.nbytes)
    return out
