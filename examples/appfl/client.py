"""An APPFL client process: APPFL's ClientAgent over APPFL's gRPC client communicator.

    python client.py --plan RUN/plan.json --index 1

For every federation (scenario) of the plan in turn, APPFL's examples/grpc/run_client.py: a
ClientAgent made from the scenario's client_<index>.yaml, a GRPCClientCommunicator to the
scenario's server, the configuration from the server (the compressor is made from it), the
initial global model, the sample size reported, then train, ``get_parameters`` (compressed by the
configured compressor) and ``update_global_model`` until the server says DONE, then
``close_connection``. Recorded for the comparison: the size of every payload the compressor made,
whether anything was pickled while it was made, and ebgc's report of each stream message (bound
used, within budget). Torch's generator is reseeded per scenario, so every scenario starts the
same whatever ran before it in this process.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support  # noqa: E402

STAND_INS = support.install_stand_ins()

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from appfl.agent import ClientAgent  # noqa: E402
from appfl.comm.grpc import GRPCClientCommunicator  # noqa: E402


def instrument(agent: ClientAgent, tripwire: support.PickleTripwire, sent: list) -> None:
    """Record every payload agent.compressor makes (size, pickling, ebgc's message report)."""
    comp = agent.compressor
    if comp is None:
        return
    compress = comp.compress_model

    def compress_model(model, *args, **kwargs):
        with tripwire.armed() as hits:
            blob = compress(model, *args, **kwargs)
        entry = {"nbytes": len(blob), "head": bytes(blob[:4]).hex(), "pickle_calls": dict(hits),
                 "float_nbytes": sum(v.numel() * v.element_size() for v in model.values()
                                     if isinstance(v, torch.Tensor))}
        report = getattr(getattr(comp, "_encoder", None), "last_report", None)
        if report is not None:
            entry["ebgc"] = {"sequence": report.sequence, "message_nbytes": report.nbytes,
                             "error_bound": report.error_bound, "bound_scale": report.bound_scale,
                             "within_budget": report.within_budget}
        sent.append(entry)
        return blob

    comp.compress_model = compress_model


def run_scenario(sc: dict, index: int, seed: int, tripwire: support.PickleTripwire) -> dict:
    torch.manual_seed(seed)
    cfg = OmegaConf.load(sc["client_configs"][index - 1])
    agent = ClientAgent(client_agent_config=cfg)
    communicator = GRPCClientCommunicator(client_id=agent.get_id(), logger=agent.logger,
                                          **OmegaConf.to_container(cfg.comm_configs.grpc_configs, resolve=True))
    t0 = time.time()
    agent.load_config(communicator.get_configuration())
    sent: list = []
    instrument(agent, tripwire, sent)
    gc.freeze()  # APPFL calls gc.collect() several times a round: let it skip what exists by now
    agent.load_parameters(communicator.get_global_model(init_model=True))
    communicator.invoke_custom_action(action="set_sample_size", sample_size=agent.get_sample_size())
    rounds = 0
    while True:
        agent.train()
        local_model = agent.get_parameters()
        metadata = {}
        if isinstance(local_model, tuple):
            local_model, metadata = local_model
        new_global_model, metadata = communicator.update_global_model(local_model, **metadata)
        rounds += 1
        if metadata["status"] == "DONE":
            break
        agent.load_parameters(new_global_model)
    communicator.invoke_custom_action(action="close_connection")
    return {"scenario": sc["name"], "client": agent.get_id(), "pid": os.getpid(), "rounds": rounds,
            "seconds": time.time() - t0, "stand_ins": STAND_INS,
            "compressor": type(agent.compressor).__name__ if agent.compressor else None,
            "budget_bytes": getattr(agent.compressor, "budget_bytes", None), "sent": sent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="plan.json written by run.py")
    ap.add_argument("--index", type=int, required=True, help="which client of each scenario: 1 or 2")
    args = ap.parse_args()

    try:
        run_plan(json.loads(Path(args.plan).read_text()), args.index)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # gRPC's threads can hold a failing interpreter's shutdown forever


def run_plan(plan: dict, index: int) -> None:
    torch.set_num_threads(1)
    support.register()
    tripwire = support.PickleTripwire()
    for sc in plan["scenarios"]:
        result = run_scenario(sc, index, plan["seed"] * 100 + index, tripwire)
        out = sc["client_results"][index - 1]
        tmp = Path(out + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
        print(f"{sc['name']}: done, {result['rounds']} uploads", flush=True)


if __name__ == "__main__":
    sys.exit(main())
