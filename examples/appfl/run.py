"""Run APPFL federations as separate processes over gRPC on loopback and print the comparison.

    PYTHONPATH=/path/to/ebgc/python python3 run.py                    # the full table
    python3 run.py --kinds weights --codecs raw,ebgc --rounds 3      # a part of it
    python3 run.py --json results.json --keep RUN_DIR                 # keep configs and logs
    python3 run.py --keep RUN_DIR --write-only   # configs + the 3 commands; then, when they are done:
    python3 run.py --keep RUN_DIR --report

Three OS processes are started here: one ``server.py`` and two ``client.py``. They talk only
through APPFL's gRPC communicators on loopback. Every scenario (payload kind x codec) is its own
APPFL federation: its own APPFL YAML configurations in the run folder, its own free port, its own
ServerAgent + GRPCServerCommunicator (all served at once by the server process) and its own
ClientAgent + GRPCClientCommunicator in each client process (one scenario after the other), so
the interpreter and library start-up (~5 s of CPU per process) is paid once, not per scenario.

Payload kinds: ``weights`` (APPFL's default: clients send their model weights; APPFL's
FedAvgAggregator, synchronous) and ``updates`` (``send_gradient: True``: clients send previous -
new weights; by default FedAvg of the updates, synchronous, which is the example's
FedAvgGradientAggregator because APPFL 1.12 honours ``send_gradient`` only in its asynchronous
aggregators; ``--updates-aggregator fedbuff`` uses APPFL's FedBuffAggregator, K = 2, constant
staleness, instead, whose interleaving of the two clients varies from run to run).

Codecs: ``raw`` (no compression: APPFL torch.save's the state dict), ``ebgc`` (ebgc's APPFL
plugin, stateful: one ebgc stream per client), ``ebgc-stateless`` (the plugin, each payload on its
own), ``sz3`` (APPFL's SZ3Compressor on pysz, stateless) and ``ebgc-budget`` (the plugin's per-client
byte budget, with error feedback on updates). Every process is killed at the
end, whatever happens. ``--write-only`` writes the configurations and prints the three commands,
to start the processes by hand.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

HERE = Path(__file__).resolve().parent

KINDS = ("weights", "updates")
CODECS = ("raw", "ebgc", "ebgc-stateless", "sz3", "ebgc-budget")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> Dict[str, str]:
    """The environment of the processes: the ebgc this process imports first on PYTHONPATH (an
    installed one, or a build in place), one thread each."""
    import ebgc

    env = dict(os.environ)
    parts = [str(Path(ebgc.__file__).resolve().parents[1])] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"  # APPFL's deprecation chatter stays out of the logs
    return env


def configs(kind: str, codec: str, port: int, workdir: Path, *, rounds: int, error_bound: float,
            budgets: List[Optional[int]], alpha: float, seed: int, lr: float, local_epochs: int,
            updates_aggregator: str = "fedavg") -> Dict[str, dict]:
    """APPFL configurations: {"server.yaml": ..., "client_1.yaml": ..., "client_2.yaml": ...}."""
    uri = f"127.0.0.1:{port}"
    grpc_configs = {"server_uri": uri, "max_message_size": 1048576, "use_ssl": False}
    digits = str(HERE / "digits.py")
    compressor: dict = {"enable_compression": codec != "raw", "error_bounding_mode": "REL",
                        "error_bound": error_bound, "param_cutoff": 1024}
    if codec == "ebgc":
        compressor.update(lossy_compressor="EBGCCompressor", stateful=True)
    elif codec == "ebgc-stateless":
        compressor.update(lossy_compressor="EBGCCompressor", stateful=False)
    elif codec == "ebgc-budget":
        compressor.update(lossy_compressor="EBGCCompressor", stateful=True,
                          max_error_bound=8 * error_bound, error_feedback=kind == "updates")
    elif codec == "sz3":
        compressor.update(lossy_compressor="PySZ3Compressor", lossless_compressor="blosc")
    else:
        compressor.update(lossy_compressor="EBGCCompressor")  # not used: compression is off
    if kind == "weights" or updates_aggregator == "fedavg":
        scheduling = {"scheduler": "SyncScheduler", "scheduler_kwargs": {"same_init_model": True},
                      "aggregator": "FedAvgAggregator" if kind == "weights" else "FedAvgGradientAggregator",
                      "aggregator_kwargs": {"client_weights_mode": "equal"},
                      "num_global_epochs": rounds}
    elif updates_aggregator != "fedbuff":
        raise ValueError(f"unknown aggregator for updates {updates_aggregator!r}")
    else:  # the async scheduler counts every update as a global epoch: `rounds` updates per client
        scheduling = {"scheduler": "AsyncScheduler", "scheduler_kwargs": {"same_init_model": True},
                      "aggregator": "FedBuffAggregator",
                      "aggregator_kwargs": {"client_weights_mode": "equal", "staleness_fn": "constant",
                                            "alpha": 1.0, "K": 2},
                      "num_global_epochs": 2 * rounds}
    server = {
        "client_configs": {
            "train_configs": {
                "trainer": "VanillaTrainer", "mode": "epoch", "num_local_epochs": local_epochs,
                "optim": "SGD", "optim_args": {"lr": lr, "momentum": 0.9},
                "loss_fn": "CrossEntropyLoss", "metric_path": digits, "metric_name": "accuracy",
                "do_validation": False, "do_pre_validation": False, "use_dp": False,
                "send_gradient": kind == "updates",
                "train_batch_size": 32, "val_batch_size": 300, "train_data_shuffle": True,
                "val_data_shuffle": False, "device": "cpu",
            },
            "model_configs": {"model_path": digits, "model_name": "DigitsCNN", "seed": seed},
            "comm_configs": {"compressor_configs": compressor},
        },
        "server_configs": {
            "num_clients": 2, "device": "cpu",
            **scheduling,
            "logging_output_dirname": str(workdir), "logging_output_filename": "server",
            "val_data_configs": {"dataset_path": digits, "dataset_name": "test_data",
                                 "dataset_kwargs": {"num_clients": 2, "alpha": alpha, "seed": seed},
                                 "batch_size": 300},
            "comm_configs": {"grpc_configs": grpc_configs},
        },
    }
    out = {"server.yaml": server}
    for i in range(2):
        client: dict = {
            "client_id": f"Client{i + 1}",
            "train_configs": {"device": "cpu", "logging_output_dirname": str(workdir),
                              "logging_output_filename": "client"},
            "data_configs": {"dataset_path": digits, "dataset_name": "client_data",
                             "dataset_kwargs": {"num_clients": 2, "client_id": i, "alpha": alpha, "seed": seed}},
            "comm_configs": {"grpc_configs": grpc_configs},
        }
        if codec == "ebgc-budget" and budgets[i]:  # per client: survives the merge of the server's
            client["comm_configs"]["compressor_configs"] = {"budget_bytes": int(budgets[i])}
        out[f"client_{i + 1}.yaml"] = client
    return out


def _write_yaml(path: Path, data: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _kill(procs: Iterable[subprocess.Popen]) -> None:
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.wait(timeout=10)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def write_plan(root: Path, scenarios: List[Tuple[str, str]], *, rounds: int = 5, error_bound: float = 1e-2,
               budgets: List[Optional[int]] = (None, None), alpha: float = 1.0, seed: int = 0, lr: float = 0.05,
               local_epochs: int = 2, updates_aggregator: str = "fedavg") -> Path:
    """APPFL configurations of every scenario (kind, codec), each on its own free port, and
    root/plan.json that lists them for server.py and client.py; returns the plan's path."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for kind, codec in scenarios:
        if kind not in KINDS or codec not in CODECS:
            raise ValueError(f"unknown scenario {kind}/{codec}")
        name = f"{kind}-{codec}"
        d = root / name
        d.mkdir(exist_ok=True)
        for fname, data in configs(kind, codec, free_port(), d, rounds=rounds, error_bound=error_bound,
                                   budgets=list(budgets), alpha=alpha, seed=seed, lr=lr,
                                   local_epochs=local_epochs, updates_aggregator=updates_aggregator).items():
            _write_yaml(d / fname, data)
        entries.append({"name": name, "kind": kind, "codec": codec,
                        "server_config": str(d / "server.yaml"), "server_result": str(d / "server.json"),
                        "client_configs": [str(d / "client_1.yaml"), str(d / "client_2.yaml")],
                        "client_results": [str(d / "client_1.json"), str(d / "client_2.json")]})
    plan = root / "plan.json"
    plan.write_text(json.dumps({"seed": seed, "scenarios": entries}, indent=1))
    return plan


def launch(plan_path: Path, *, timeout: float = 300.0) -> float:
    """Start the server and the two clients (three OS processes), wait for them, kill whatever is
    left in any case; the seconds it took. Raises with the logs' tails when a process fails."""
    root = plan_path.parent
    env = child_env()
    procs: Dict[str, subprocess.Popen] = {}
    logs = []
    t0 = time.monotonic()
    try:
        def start(name: str, script: str, *args: str) -> None:
            f = open(root / f"{name}.log", "w")
            logs.append(f)
            procs[name] = subprocess.Popen([sys.executable, str(HERE / script), "--plan", str(plan_path), *args],
                                           cwd=str(root), env=env, stdout=f, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)

        start("server", "server.py", "--timeout", str(timeout))
        start("client_1", "client.py", "--index", "1")
        start("client_2", "client.py", "--index", "2")
        deadline = t0 + timeout
        while any(p.poll() is None for p in procs.values()):
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            if failed:  # the others would wait for it forever
                raise RuntimeError(f"{failed[0]} exited with {procs[failed[0]].returncode}:\n"
                                   f"{_tail(root / (failed[0] + '.log'))}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the federation is not over after {timeout:.0f}s; server log:\n"
                                   f"{_tail(root / 'server.log')}")
            time.sleep(0.05)
        failed = [n for n, p in procs.items() if p.returncode != 0]
        if failed:
            raise RuntimeError(f"{failed[0]} exited with {procs[failed[0]].returncode}:\n"
                               f"{_tail(root / (failed[0] + '.log'))}")
    finally:
        _kill(procs.values())
        for f in logs:
            f.close()
    return time.monotonic() - t0


def run(scenarios: List[Tuple[str, str]], root: Path, *, timeout: float = 300.0, **settings) -> List[dict]:
    """Write the plan, launch the processes, and summarize every scenario."""
    for attempt in range(3):
        plan = write_plan(root, scenarios, **settings)
        try:
            wall = launch(plan, timeout=timeout)
            break
        except RuntimeError as exc:  # a port taken between free_port() and the bind: new ports
            if attempt == 2 or "failed to bind" not in str(exc).lower():
                raise
    out = collect(plan)
    for r in out:
        r["run_wall_s"] = round(wall, 2)
    return out


def collect(plan: Path) -> List[dict]:
    """Every scenario's summary, from what the processes wrote."""
    out = []
    for sc in json.loads(plan.read_text())["scenarios"]:
        srv = json.loads(Path(sc["server_result"]).read_text())
        cli = [json.loads(Path(p).read_text()) for p in sc["client_results"]]
        out.append(summarize(sc["kind"], sc["codec"], srv, cli))
    return out


def _merge_counts(dicts: Iterable[dict]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for d in dicts:
        for k, n in d.items():
            out[k] = out.get(k, 0) + n
    return out


def summarize(kind: str, codec: str, srv: dict, cli: List[dict]) -> dict:
    """One scenario's numbers, from the server's and the clients' records."""
    ups = srv["uploads"]
    sizes = [u["nbytes"] for u in ups]
    per_client = {c["client"]: [u["nbytes"] for u in ups if u["client"] == c["client"]] for c in cli}
    sent = [s for c in cli for s in c["sent"]]
    return {
        "kind": kind, "codec": codec, "finished": srv["finished"],
        "test_accuracy": srv.get("test_accuracy"), "test_loss": srv.get("test_loss"),
        "messages": len(sizes), "applied_messages": sum(u["applied"] for u in ups), "uplink_bytes": sum(sizes),
        "bytes_per_message": sum(sizes) / max(1, len(sizes)),
        "first_message_bytes": {k: v[0] for k, v in per_client.items() if v},
        "later_message_mean_bytes": {k: round(sum(v[1:]) / (len(v) - 1)) for k, v in per_client.items() if len(v) > 1},
        "heads": sorted({u["head"] for u in ups}),
        "server_received": per_client,
        "client_sent": {c["client"]: [s["nbytes"] for s in c["sent"]] for c in cli},
        "client_pickle_calls_in_compress": _merge_counts(s["pickle_calls"] for s in sent),
        "server_pickle_calls_in_global_update": _merge_counts(u["pickle_calls"] for u in ups),
        "float32_model_nbytes": sent[0]["float_nbytes"] if sent else None,
        "budgets": {c["client"]: c.get("budget_bytes") for c in cli},
        "ebgc_reports": {c["client"]: [s.get("ebgc") for s in c["sent"]] for c in cli},
        "global_epochs": srv["global_epochs"], "compressor": srv["compressor"],
        "server_ebgc_streams": srv.get("ebgc_streams"),
        "stand_ins": sorted(set(srv["stand_ins"]).union(*(c["stand_ins"] for c in cli))),
        "client_uploads": {c["client"]: c["rounds"] for c in cli},
    }


def table(results: List[dict]) -> str:
    raw = {r["kind"]: r for r in results if r["codec"] == "raw"}
    lines = [f"{'payload':8} {'codec':14} {'msgs':>4} {'bytes/msg':>10} {'uplink total':>12} {'x fewer':>8} "
             f"{'accuracy':>8} {'vs raw':>7}"]
    for r in results:
        base = raw.get(r["kind"])
        ratio = f"{base['bytes_per_message'] / r['bytes_per_message']:.1f}x" if base else "-"
        dacc = f"{r['test_accuracy'] - base['test_accuracy']:+.3f}" if base else "-"
        lines.append(f"{r['kind']:8} {r['codec']:14} {r['messages']:>4} {r['bytes_per_message']:>10.0f} "
                     f"{r['uplink_bytes']:>12} {ratio:>8} {r['test_accuracy']:>8.3f} {dacc:>7}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="weights,updates", help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--codecs", default=",".join(CODECS), help=f"comma-separated, of {', '.join(CODECS)}")
    ap.add_argument("--rounds", type=int, default=5, help="uploads per client")
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--error-bound", type=float, default=1e-2, help="REL bound of ebgc and SZ3")
    ap.add_argument("--budget", default="10000,0", help="ebgc-budget: bytes per payload of client 1,2 (0: none)")
    ap.add_argument("--updates-aggregator", choices=("fedavg", "fedbuff"), default="fedavg",
                    help="updates: FedAvg of the updates (synchronous) or APPFL's FedBuff (asynchronous, K=2)")
    ap.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration of the split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    ap.add_argument("--keep", help="run folder to keep (configs, logs, JSON); default: a temporary one")
    ap.add_argument("--write-only", action="store_true",
                    help="write the configurations and plan into --keep and print the commands to run by hand")
    ap.add_argument("--report", action="store_true",
                    help="print the table of the run in --keep (e.g. one started by hand after --write-only)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    scenarios = [(k, c) for k in args.kinds.split(",") if k for c in args.codecs.split(",") if c]
    for k, c in scenarios:
        if k not in KINDS:
            ap.error(f"unknown payload kind {k!r}")
        if c not in CODECS:
            ap.error(f"unknown codec {c!r}")
    settings = dict(rounds=args.rounds, error_bound=args.error_bound, alpha=args.alpha, seed=args.seed,
                    lr=args.lr, local_epochs=args.local_epochs, updates_aggregator=args.updates_aggregator,
                    budgets=[int(b) or None for b in args.budget.split(",")])
    if args.report:
        if not args.keep:
            ap.error("--report needs --keep DIR")
        results = collect(Path(args.keep).resolve() / "plan.json")
        print(table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0
    if args.write_only:
        if not args.keep:
            ap.error("--write-only needs --keep DIR")
        plan = write_plan(Path(args.keep).resolve(), scenarios, **settings)
        env = f"PYTHONPATH={child_env()['PYTHONPATH']}"
        print(f"{env} {sys.executable} {HERE / 'server.py'} --plan {plan}")
        for i in (1, 2):
            print(f"{env} {sys.executable} {HERE / 'client.py'} --plan {plan} --index {i}")
        return 0
    with contextlib.ExitStack() as stack:
        root = (Path(args.keep).resolve() if args.keep else
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ebgc-appfl-"))))
        results = run(scenarios, root, timeout=args.timeout, **settings)
    print(table(results))
    print(f"\n{len(scenarios)} federations; server and clients: 3 processes, {results[0]['run_wall_s']:.1f} s in all")
    if results[0]["stand_ins"]:
        print(f"stand-ins for APPFL's unused import-only extras: {', '.join(results[0]['stand_ins'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
