"""ServerApp: FedAvg over the SuperNodes, evaluated centrally on held-out digits; with
``compress = true`` the strategy is wrapped in EBGCStrategy (one line)."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from ebgc.integrations.flower import EBGCStrategy

from . import task

app = ServerApp()


def _sum_bytes(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Train metrics: byte and example counts summed over the clients, the rest averaged by examples."""
    metrics = [next(iter(r.metric_records.values())) for r in records]
    total = sum(float(m[weight_key]) for m in metrics)
    out = MetricRecord()
    for key in metrics[0]:
        if key.endswith("-bytes") or key == weight_key:
            out[key] = int(sum(int(m[key]) for m in metrics))
        else:
            out[key] = float(sum(float(m[key]) * float(m[weight_key]) for m in metrics) / total)
    return out


def _audit(folder: str):
    def on_decode(info: dict) -> None:
        stem = os.path.join(folder, f"server-{info['node_id']}-{info['stream_id'].hex()}-{info['sequence']}")
        np.savez(stem + ".npz", **info["tensors"])
    return on_decode


@app.main()
def main(grid: Grid, context: Context) -> None:
    torch.set_num_threads(1)
    cfg = context.run_config
    seed, rounds = int(cfg["seed"]), int(cfg["num-server-rounds"])
    xt, yt = task.held_out(seed, 2, float(cfg["alpha"]))
    history = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = task.model(seed)
        net.load_state_dict(arrays.to_torch_state_dict())
        acc = task.accuracy(net, xt, yt)
        history[server_round] = {"accuracy": acc}
        return MetricRecord({"accuracy": acc})

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2,
                      train_metrics_aggr_fn=_sum_bytes)
    if cfg["compress"]:
        audit = str(cfg["audit-dir"])
        # Encoder options for every client, sent with each instruction (a function of the node id
        # and round may return per-node options instead).
        options = {"error_bound": float(cfg["error-bound"]), "error_feedback": bool(cfg["error-feedback"])}
        if int(cfg["budget-bytes"]) > 0:
            options.update(budget_bytes=int(cfg["budget-bytes"]), max_error_bound=8 * float(cfg["error-bound"]))
        strategy = EBGCStrategy(strategy, client_options=options, downlink=bool(cfg["downlink"]),
                                on_decode=_audit(audit) if audit else None)
    t0 = time.perf_counter()
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(task.model(seed).state_dict()),
                            num_rounds=rounds, train_config=ConfigRecord({"lr": float(cfg["lr"])}),
                            evaluate_fn=evaluate)
    seconds = time.perf_counter() - t0
    for r, m in result.train_metrics_clientapp.items():
        history.setdefault(r, {}).update(dict(m))
    summary = {
        "compress": bool(cfg["compress"]), "downlink": bool(cfg["downlink"]), "rounds": rounds,
        "error_bound": float(cfg["error-bound"]), "error_feedback": bool(cfg["error-feedback"]),
        "budget_bytes": int(cfg["budget-bytes"]), "seconds": seconds,
        "final_accuracy": history[rounds]["accuracy"], "history": {str(k): v for k, v in sorted(history.items())},
        "ebgc": strategy.server.summary() if cfg["compress"] else None,
    }
    path = str(cfg["results-path"])
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(summary, f, indent=1, default=str)
        os.replace(path + ".tmp", path)
