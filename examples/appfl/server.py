"""The APPFL server process: APPFL's ServerAgent behind APPFL's gRPC server communicator.

    python server.py --plan RUN/plan.json

For every federation (scenario) of the plan, as APPFL's examples/grpc/run_server.py: a
ServerAgent made from the scenario's server.yaml, a GRPCServerCommunicator, and ``serve`` on the
scenario's loopback port (each in its own thread, all at once). Plus what the comparison needs:
every local model that reaches ``ServerAgent.global_update`` is recorded (its size in bytes,
exactly as the gRPC stream reassembled it, and its first bytes) and any pickling or unpickling
while the server handles it is counted; when the last client has closed its connection the
server validates the global model on the held-out test set and writes the scenario's
server.json. The process exits once every scenario is over (rather than after serve()'s 10 s
farewell sleep: the clients have had their last answer by then).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support  # noqa: E402

STAND_INS = support.install_stand_ins()

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from appfl.agent import ServerAgent  # noqa: E402
from appfl.comm.grpc import GRPCServerCommunicator, serve  # noqa: E402


class RecordingServerAgent(ServerAgent):
    """ServerAgent that records what the clients upload and says when the federation is over."""

    tripwire: support.PickleTripwire

    def __init__(self, *args, tripwire: support.PickleTripwire, **kwargs):
        self.uploads = []
        self.finished = threading.Event()
        self.tripwire = tripwire
        self._record_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def global_update(self, client_id, local_model, blocking=False, **kwargs):
        if not isinstance(local_model, (bytes, bytearray)):
            return super().global_update(client_id, local_model, blocking=blocking, **kwargs)
        entry = {"client": str(client_id), "nbytes": len(local_model), "head": bytes(local_model[:4]).hex(),
                 "applied": not self.training_finished(), "t": time.time()}
        with self.tripwire.armed() as hits:  # counts this thread's (un)pickling while decoding
            out = super().global_update(client_id, local_model, blocking=False, **kwargs)
        entry["pickle_calls"] = dict(hits)
        with self._record_lock:
            self.uploads.append(entry)
        # blocking=True is what the communicator asked for; wait outside the tripwire
        return out.result() if blocking and hasattr(out, "result") else out

    def server_terminated(self):
        done = super().server_terminated()
        if done:
            self.finished.set()
        return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="plan.json written by run.py")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = ap.parse_args()
    try:
        ok = serve_plan(json.loads(Path(args.plan).read_text()), args.timeout)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        ok = False
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.5)  # let the last close_connection answers leave
    os._exit(0 if ok else 3)  # the serving threads are not joined


def serve_plan(plan: dict, timeout: float) -> bool:
    """Serve every scenario of the plan; True when all of them finished."""
    torch.set_num_threads(1)
    support.register()
    tripwire = support.PickleTripwire()
    servers = []
    for sc in plan["scenarios"]:
        cfg = OmegaConf.load(sc["server_config"])
        agent = RecordingServerAgent(server_agent_config=cfg, tripwire=tripwire)
        grpc_configs = OmegaConf.to_container(cfg.server_configs.comm_configs.grpc_configs, resolve=True)
        communicator = GRPCServerCommunicator(agent, logger=agent.logger, **grpc_configs)
        failure: list = []

        def serving(communicator=communicator, grpc_configs=grpc_configs, agent=agent, failure=failure):
            try:
                serve(communicator, **grpc_configs)
            except BaseException:  # noqa: BLE001 - reported in the scenario's JSON
                failure.append(traceback.format_exc())
                print(failure[-1], file=sys.stderr, flush=True)
                agent.finished.set()

        threading.Thread(target=serving, name=f"serve-{sc['name']}", daemon=True).start()
        servers.append((sc, agent, failure))
        print(f"{sc['name']}: serving on {grpc_configs['server_uri']}", flush=True)

    gc.freeze()  # APPFL calls gc.collect() several times a round: let it skip what exists by now
    deadline = time.monotonic() + timeout
    ok = True
    pending = list(servers)
    while pending:  # write each scenario's result as soon as it is over
        for item in list(pending):
            sc, agent, failure = item
            if not agent.finished.wait(0.05):
                continue
            pending.remove(item)
            finished = not failure
            ok &= finished
            result = {"scenario": sc["name"], "finished": finished, "error": failure[0] if failure else None,
                      "pid": os.getpid(), "stand_ins": STAND_INS, "uploads": agent.uploads,
                      "global_epochs": agent.scheduler.get_num_global_epochs(),
                      "compressor": type(agent.compressor).__name__ if agent.compressor is not None else None,
                      # ebgc: the one server-side compressor keeps a decoder state per client stream
                      "ebgc_streams": len(list(agent.compressor._decoder.streams()))
                      if hasattr(getattr(agent.compressor, "_decoder", None), "streams") else None}
            if finished:
                loss, acc = agent.server_validate()
                result.update(test_loss=float(loss), test_accuracy=float(acc))
            tmp = Path(sc["server_result"] + ".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            os.replace(tmp, sc["server_result"])
            print(f"{sc['name']}: over, accuracy {result.get('test_accuracy')}", flush=True)
        if pending and time.monotonic() > deadline:
            print(f"timeout: {[sc['name'] for sc, _, _ in pending]} not over", file=sys.stderr, flush=True)
            ok = False
            break
    return ok


if __name__ == "__main__":
    sys.exit(main())
