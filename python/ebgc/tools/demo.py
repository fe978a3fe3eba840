"""``ebgc demo``: federated learning on scikit-learn's digits, uplink uncompressed vs SZ3 vs ebgc.

FedAvg with non-IID clients (Dirichlet split of the 8x8 digits, upsampled to 16x16, no download);
every round each client trains from the global model and sends its update; the server averages
the decoded updates. The same seeds drive every method, so the only difference is the uplink
codec: raw float32, SZ3 (pysz, if installed; its default algorithm at the same absolute bound),
or an ebgc stateful stream per client. Tensors of <= ``raw_max`` values (default 1024, the bench
protocol's per-tensor policy and APPFL's ``param_cutoff``) go raw for every codec. With
``raw_max=0`` every tensor goes through the codec: the ebgc encoder sends a tensor raw where coding
does not pay, and an SZ3 blob larger than the raw tensor is replaced by the raw tensor (counted
without any header). Clients keep the compression error and add it to their next update (error
feedback), for every codec.
The slow-client scenario adds a row: ebgc streams whose every message must fit ``budget`` bytes
(each client's uplink budget per round), the bound loosened as far as that needs (up to 8x).
Needs torch and scikit-learn. Runs on ``threads`` threads (torch's and ebgc's), 1 by default, so
that its time does not depend on what else the machine runs.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

# By default tensors of <= RAW_MAX values go raw for every codec, as in `ebgc bench`
# (bench/PROTOCOL.md); APPFL's param_cutoff is the same size.
from .bench import RAW_MAX_ELEMENTS as RAW_MAX

BUDGET = 6000  # bytes per client and round for the slow-client row: about half the fixed bound's


def digits_split(seed: int, clients: int, alpha: float):
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    x = np.kron(x, np.ones((1, 2, 2), np.float32))[:, None]  # 16x16, one channel
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    test, train = order[:300], order[300:]
    parts: List[List[int]] = [[] for _ in range(clients)]
    for c in range(10):
        idx = train[y[train] == c]
        rng.shuffle(idx)
        share = rng.dirichlet([alpha] * clients)
        cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
        for k, part in enumerate(np.split(idx, cuts)):
            parts[k].extend(part.tolist())
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    return [(t(x[p]), t(y[p])) for p in parts], (t(x[test]), t(y[test]))


def digits_model():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def _codecs(error_bound: float, clients: int, raw_max: int, threads: int = 1,
            budget: Optional[int] = None) -> Dict[str, Callable]:
    """name -> factory of (encode, decode) for one client: update dict -> (bytes, decoded dict)."""
    import ebgc

    def raw(_client):
        def code(update):
            return sum(v.nbytes for v in update.values()), update
        return code

    def ebgc_stateful(client, budget_bytes=None):
        enc = ebgc.GradientEncoder(error_bound, stream_id=f"client{client}", threads=threads,
                                   budget_bytes=budget_bytes, max_error_bound=8 * error_bound if budget_bytes else None)
        dec = ebgc.GradientDecoder(threads=threads)  # the server's side of this client's stream

        def code(update):
            big = {k: v for k, v in update.items() if v.size > raw_max}
            raw_small = sum(v.nbytes for k, v in update.items() if k not in big)
            # the tensors sent raw count against the client's budget too
            msg = enc.encode(big, budget_bytes=max(1, budget_bytes - raw_small) if budget_bytes else None)
            out = dict(update)
            out.update(dec.decode(msg))
            return len(msg) + raw_small, out
        return code

    out: Dict[str, Callable] = {"uncompressed": raw}
    try:
        import pysz

        def sz3(_client):
            def code(update):
                n, out = 0, {}
                for k, v in update.items():
                    if v.size > raw_max:
                        c = pysz.szConfig(v.shape)
                        c.errorBoundMode = pysz.szErrorBoundMode.ABS
                        c.absErrorBound = error_bound * float(v.max() - v.min())
                        buf, _ = pysz.sz.compress(np.ascontiguousarray(v), c)
                        if buf.nbytes < v.nbytes:
                            n += buf.nbytes
                            out[k] = pysz.sz.decompress(buf, v.dtype, v.shape)[0]
                            continue
                    n, out[k] = n + v.nbytes, v
                return n, out
            return code
        out["SZ3"] = sz3
    except ImportError:
        pass
    out["ebgc"] = ebgc_stateful
    if budget:
        out[f"ebgc, budget {budget:,} B"] = lambda client: ebgc_stateful(client, budget)
    return out


def run_demo(*, rounds: int = 12, clients: int = 4, error_bound: float = 2e-2, alpha: float = 0.5,
             local_epochs: int = 2, seed: int = 0, raw_max: int = RAW_MAX, threads: int = 1,
             budget: Optional[int] = None, progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """Run FedAvg once per codec; returns one row per codec with its per-round history.
    raw_max: tensors of at most this many values go raw for every codec (0: none). budget: each
    client's uplink bytes per round for the slow-client row (None: no such row)."""
    import torch

    torch.set_num_threads(threads)
    data, (xt, yt) = digits_split(seed, clients, alpha)
    sizes = np.array([len(y) for _, y in data], dtype=np.float64)
    weights = sizes / sizes.sum()
    rows = []
    for name, factory in _codecs(error_bound, clients, raw_max, threads, budget).items():
        torch.manual_seed(seed)
        model = digits_model()
        codes = [factory(c) for c in range(clients)]
        residual: List[Dict[str, np.ndarray]] = [{} for _ in range(clients)]
        uplink, history, t0 = 0, [], time.perf_counter()
        for r in range(rounds):
            glob = {k: v.detach().clone() for k, v in model.state_dict().items()}
            total = {k: np.zeros(v.shape, np.float32) for k, v in glob.items()}
            for c, (x, y) in enumerate(data):
                model.load_state_dict(glob)
                opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
                g = torch.Generator().manual_seed(seed * 1000 + r * 10 + c)
                for _ in range(local_epochs):
                    perm = torch.randperm(len(y), generator=g)
                    for i in range(0, len(y), 32):
                        b = perm[i : i + 32]
                        opt.zero_grad()
                        torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
                        opt.step()
                update = {k: (v.detach() - glob[k]).numpy().astype(np.float32) for k, v in model.state_dict().items()}
                update = {k: v + residual[c].get(k, 0) for k, v in update.items()}
                nbytes, decoded = codes[c](update)
                residual[c] = {k: update[k] - decoded[k] for k in update}  # error feedback
                uplink += nbytes
                for k in total:
                    total[k] += weights[c] * decoded[k]
            model.load_state_dict({k: glob[k] + torch.from_numpy(total[k]).to(glob[k].dtype) for k in glob})
            with torch.no_grad():
                acc = float((model(xt).argmax(1) == yt).float().mean())
            history.append({"round": r + 1, "accuracy": acc, "uplink_bytes": uplink})
            if progress:
                progress(f"{name}: round {r + 1}/{rounds}, accuracy {acc:.3f}")
        rows.append({"method": name, "final_accuracy": history[-1]["accuracy"], "uplink_bytes": uplink,
                     "seconds": time.perf_counter() - t0, "history": history, "error_bound": error_bound,
                     "raw_max": raw_max, "threads": threads, "budget": budget if "budget" in name else None})
    raw = next(r["uplink_bytes"] for r in rows if r["method"] == "uncompressed")
    for r in rows:
        r["ratio"] = raw / r["uplink_bytes"]
    return rows


def plot_demo(rows: List[Dict[str, Any]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in rows:
        h = r["history"]
        ax.plot([p["uplink_bytes"] / 1e6 for p in h], [p["accuracy"] for p in h], marker="o", ms=3,
                label=f"{r['method']} ({r['ratio']:.1f}x)")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative uplink (MB, log)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"FedAvg on digits, REL bound {rows[0]['error_bound']:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
