"""ClientApp: local training on this node's partition; replies ebgc-compressed by the mod.

The mod is always installed; it compresses only when the server enabled ebgc (EBGCStrategy), so
the same ClientApp serves the raw baseline and the compressed run.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ebgc.integrations.flower import ebgc_mod

from . import task


def _audit(info: dict, context: Context) -> None:
    """Record what the mod gave the encoder (tests check the server's reconstructions against it)."""
    folder = str(context.run_config.get("audit-dir", ""))
    if not folder:
        return
    stem = os.path.join(folder, f"client-{info['node_id']}-{info['stream_id'].hex()}-{info['sequence']}")
    np.savez(stem + ".npz", **info["tensors"])
    with open(stem + ".payload", "wb") as f:
        f.write(info["payload"])
    meta = {k: info[k] for k in ("node_id", "record", "sequence", "keyframe", "kinds", "options", "raw_bytes",
                                 "sent_bytes")}
    with open(stem + ".json", "w") as f:
        json.dump(meta, f)


app = ClientApp(mods=[ebgc_mod(1e-2, on_encode=_audit)])


@app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    cfg, node = context.run_config, context.node_config
    seed, server_round = int(cfg["seed"]), int(msg.content["config"]["server-round"])
    pid, parts = int(node["partition-id"]), int(node["num-partitions"])
    x, y = task.partition(pid, parts, seed, float(cfg["alpha"]))

    received = msg.content["arrays"].to_torch_state_dict()
    net = task.model(seed)
    net.load_state_dict(received)
    loss = task.train(net, x, y, epochs=int(cfg["local-epochs"]), lr=float(msg.content["config"]["lr"]),
                      seed=seed * 1000 + server_round * 10 + pid)
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # What this update would cost raw, one-shot SZ3 and one-shot ebgc (the mod sends the stream).
    update = {k: (weights[k] - received[k]).numpy() for k in weights}
    sizes = task.codec_bytes(update, float(cfg["error-bound"]))
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(y), **sizes})
    return Message(RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics}), reply_to=msg)
