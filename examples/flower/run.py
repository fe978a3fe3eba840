"""Run the example as a real Flower deployment on this machine and print the comparison.

    python3 examples/flower/run.py            # raw run, then ebgc run
    python3 run.py --rounds 3 --json results.json

Processes (all over loopback, each its own OS process): one ``flower-superlink --insecure``
(Fleet, Control and ServerApp runtime APIs on one HTTP port; it starts the ServerApp as a
``flwr-serverapp`` subprocess when a run is submitted), two ``flower-supernode --insecure``
(each starts a ``flwr-clientapp`` process per message), and ``flwr run`` to submit the app.
FLWR_HOME is a fresh temporary folder (the CLI's connection config, installed apps); runtime
dependency installation is off (no network needed). Every process is killed at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

APP_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


class Deployment:
    """A SuperLink and `nodes` SuperNodes on loopback; `run()` submits the app and waits."""

    def __init__(self, workdir: Path, nodes: int = 2, env: Optional[Dict[str, str]] = None):
        self.workdir = Path(workdir)
        self.nodes = nodes
        self.procs: List[subprocess.Popen] = []
        self.runs = 0
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.home = self.workdir / "flwr-home"
        self.home.mkdir(exist_ok=True)
        self.port = free_port()
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "local-deployment"\n\n[superlink.local-deployment]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        self.env = dict(os.environ if env is None else env)
        if self.env.get("PYTHONPATH"):  # the processes run in workdir: relative entries would break
            self.env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in self.env["PYTHONPATH"].split(os.pathsep) if p)
        self.env.update(FLWR_HOME=str(self.home), FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
                        PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                        FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2")  # start app processes sooner (default 1 s)

    def _start(self, name: str, args: List[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                                start_new_session=True)  # its own process group: its children die with it
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 30.0) -> None:
        link = self._start("superlink", ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port",
                                         str(self.port), "--disable-runtime-dependency-installation"])
        _wait_port(self.port, link, timeout)
        for i in range(self.nodes):
            self._start(f"supernode-{i}", [
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                "--port", str(free_port()), "--node-config", f"partition-id={i} num-partitions={self.nodes}"])

    def run(self, config: Dict[str, Any], results: Path, timeout: float = 300.0) -> Dict[str, Any]:
        """Submit the app with `config` overrides (``flwr run --stream``, which returns when the run
        ends, with the ServerApp's log) and return the ServerApp's results file."""
        results = Path(results)
        config = dict(config, **{"results-path": str(results)})
        overrides = " ".join(f"{k}={_toml(v)}" for k, v in config.items())
        self.runs += 1
        log_path = self.logs / f"serverapp-{self.runs}.log"
        with open(log_path, "wb") as log:
            cli = subprocess.Popen(["flwr", "run", str(APP_DIR), "local-deployment", "--run-config", overrides,
                                    "--stream"], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                                   start_new_session=True)
        self.procs.append(cli)
        end = time.monotonic() + timeout
        while cli.poll() is None and not results.exists():
            dead = [p.args[0] for p in self.procs[: 1 + self.nodes] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited during the run; logs in {self.logs}")
            if time.monotonic() > end:
                raise TimeoutError(f"no results after {timeout}s; logs in {self.logs}")
            time.sleep(0.1)
        if not results.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError("the run ended without results:\n" + "\n".join(tail))
        return json.loads(results.read_text())

    def _descendants(self) -> List[int]:
        """Process ids below the processes started here (Linux /proc), e.g. the SuperExec that
        the SuperLink and SuperNodes start in sessions of their own, and the app processes."""
        parent: Dict[int, int] = {}
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        found, todo = [], [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            kids = [c for c, pp in parent.items() if pp == pid]
            found += kids
            todo += kids
        return found

    def stop(self) -> None:
        """Every process of the deployment ends: SIGTERM (they shut down cleanly), then SIGKILL
        for what is left, process group by process group."""
        groups = {p.pid for p in self.procs}
        for pid in self._descendants():
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        groups.discard(os.getpgrp())
        for g in sorted(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGTERM)
        end = time.monotonic() + 5
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, end - time.monotonic()))
        for g in sorted(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGKILL)
        end = time.monotonic() + 10  # killed children are reaped by init: wait until they are gone
        for g in sorted(groups):
            while time.monotonic() < end:
                try:
                    os.killpg(g, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.05)


@contextlib.contextmanager
def deployment(workdir: Path, nodes: int = 2, env: Optional[Dict[str, str]] = None) -> Iterator[Deployment]:
    d = Deployment(workdir, nodes, env)
    try:
        d.start()
        yield d
    finally:
        d.stop()


def totals(summary: Dict[str, Any]) -> Dict[str, int]:
    """Byte counts summed over the rounds (the clients' train metrics, summed over clients)."""
    out: Dict[str, int] = {}
    for r in range(1, summary["rounds"] + 1):
        for k, v in summary["history"][str(r)].items():
            if k.endswith("-bytes"):
                out[k] = out.get(k, 0) + int(v)
    return out


def table(raw: Dict[str, Any], comp: Dict[str, Any]) -> str:
    t = totals(comp)
    up = comp["ebgc"]["uplink"]
    assert up["raw_bytes"] == t["raw-bytes"], (up, t)  # the plugin and the clients count the same arrays
    rows = [("raw float32", t["raw-bytes"], raw["final_accuracy"]),
            ("ebgc stream (sent)", up["sent_bytes"], comp["final_accuracy"]),
            ("ebgc one-shot", t["ebgc-oneshot-bytes"], None)]
    if "sz3-bytes" in t:
        rows.append(("SZ3 one-shot (REL)", t["sz3-bytes"], None))
    extra = "".join([", error feedback" if comp.get("error_feedback") else "",
                     f", budget {comp['budget_bytes']} B/message" if comp.get("budget_bytes") else ""])
    lines = [f"client uplink over {comp['rounds']} rounds, 2 clients, REL bound {comp['error_bound']:g}{extra} "
             f"(tensors of <= 1024 values raw)",
             f"{'codec':<22}{'bytes':>12}{'ratio':>9}{'accuracy':>10}"]
    for name, n, acc in rows:
        lines.append(f"{name:<22}{n:>12,}{t['raw-bytes'] / n:>8.1f}x{'' if acc is None else f'{acc:10.3f}'}")
    if comp["ebgc"]["downlink"]["messages"]:
        d = comp["ebgc"]["downlink"]
        lines.append(f"downlink: {d['sent_bytes']:,} bytes sent for {d['raw_bytes']:,} raw")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--error-bound", type=float, default=1e-2)
    ap.add_argument("--downlink", action="store_true", help="compress the server's broadcasts too")
    ap.add_argument("--error-feedback", action="store_true", help="clients keep each update's coding error")
    ap.add_argument("--budget", type=int, default=0, help="bytes per client message (ebgc byte budget)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw baseline run")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and results here")
    ap.add_argument("--json", type=Path, default=None, help="write both runs' summaries here")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ebgc-flower-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base = {"num-server-rounds": args.rounds, "error-bound": args.error_bound, "downlink": args.downlink,
            "error-feedback": args.error_feedback, "budget-bytes": args.budget}
    out = {}
    with deployment(workdir) as d:
        for name, compress in (("raw", False), ("ebgc", True))[args.no_raw:]:
            t0 = time.perf_counter()
            out[name] = d.run(dict(base, compress=compress), workdir / f"{name}.json")
            print(f"{name}: accuracy {out[name]['final_accuracy']:.3f} "
                  f"({time.perf_counter() - t0:.1f}s)", flush=True)
    print(table(out.get("raw", {"final_accuracy": float("nan")}), out["ebgc"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(f"logs: {workdir / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
