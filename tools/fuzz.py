#!/usr/bin/env python3
"""The long fuzzing campaign against every ebgc parser (tests/test_fuzz.py is its fast subset).

    python tools/fuzz.py --minutes 30 [--targets blob,message,state,statedict,appfl] [--out DIR]
                         [--engine atheris|random] [--timeout 2] [--mem-mib 3072] [--no-extras]

Targets and mutations are those of tests/fuzzing.py: one-shot blobs (info + decompress), stream
messages (GradientDecoder.decode), saved encoder/decoder states (load + one use), state dicts
(ebgc.torch.decompress_state_dict) and APPFL payloads (EBGCCompressor.decompress_model); every
mutation is followed by resealing the checksums (nested ones first) and state digests.

Engines. "atheris" (coverage-guided, where `pip install atheris` worked): each target runs in a
child process under libFuzzer, whose custom mutator is either libFuzzer's own mutation or one of
ours, resealed; every input is tried with each decoding context of the target (a fresh decoder,
or one holding the stream's earlier messages). Coverage is that of ebgc's Python code (the
native core is not built with coverage instrumentation). "random": a loop of stacked random
mutations of the seeds, run in a fuzzing.Worker child. Either way the child has an address-space
limit (RLIMIT_AS = its size + --mem-mib), inputs over --timeout seconds count as hangs, and
crashes are recorded and the child restarted for the time left.

Counted per target: inputs (runs: inputs x decoding contexts), decoded, typed errors (by type),
untyped errors (type, message, where, count, a few reproducers), other ebgc errors (e.g.
InvalidArgumentError from a parser), wrong results, crashes, hangs, the slowest run, the largest
peak-RSS growth of one run and the peak RSS. Written to --out (default bench/results/fuzz-<date>/):
summary.json (with machine, versions, date, git commits), summary.md (tables), and
<target>/reproducers.json. Then (unless --no-extras) the decompression bomb and the
shared-decoder race of tests/test_fuzz.py are measured and added.

Reproducers: <target>/reproducers.json maps an id (referred to from summary.json) to the input
(hex), its context (hex: the saved decoder state, the next message, or the APPFL payload decoded
first; see fuzzing.Seed) and what happened. `python tools/fuzz.py --replay <that file>` runs them
again. libFuzzer's own artifacts (crash-*, timeout-*, oom-*) are raw inputs in <target>/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MAX_REPRO_PER_SIGNATURE, MAX_REPRO_FILES = 2, 60  # per target


# ------------------------------------------------------------------------------------------------
# Tally: the counts of one target (in the engine's process), saved as JSON
# ------------------------------------------------------------------------------------------------

class Tally:
    """Counts of one target, with reproducers: {sha1 prefix: {status, label, outcome, data, ctx (hex)}}."""

    def __init__(self, target: str):
        self.target = target
        self.d = {"inputs": 0, "executions": 0, "decoded": 0, "typed": {}, "untyped": {}, "misfiled": {},
                  "bad_result": {}, "crashes": [], "hangs": [], "slowest": {"seconds": 0.0},
                  "max_input_rss_growth_mib": 0.0, "peak_rss_mib": 0.0, "reproducers": {}}

    def add(self, res: dict, data: bytes, ctx: bytes, label: str = "") -> None:
        import fuzzing as F

        d = self.d
        d["executions"] += 1
        status = res["status"]
        if status == "ok":
            d["decoded"] += 1
        elif status == "typed":
            d["typed"][res["error"]] = d["typed"].get(res["error"], 0) + 1
        elif status in ("crash", "hang"):
            d["crashes" if status == "crash" else "hangs"].append(
                {"message": res.get("message", "")[:300], "reproducer": self.keep(data, ctx, res, label)})
        else:  # untyped, misfiled, bad_result, memory
            table = d.setdefault(status, {})
            sig = F.signature(F.Outcome(**{k: res.get(k, "") for k in ("status", "error", "message", "where", "origin")}))
            e = table.setdefault(sig, {"count": 0, "type": res.get("error", ""), "message": res.get("message", "")[:300],
                                       "where": res.get("where", ""), "origin": res.get("origin", ""), "reproducers": []})
            e["count"] += 1
            if len(e["reproducers"]) < MAX_REPRO_PER_SIGNATURE and len(d["reproducers"]) < MAX_REPRO_FILES:
                e["reproducers"].append(self.keep(data, ctx, res, label))
        if res.get("seconds", 0) > d["slowest"]["seconds"]:
            d["slowest"] = {"seconds": res["seconds"], "status": status, "error": res.get("error", ""),
                            "bytes": len(data), "reproducer": self.keep(data, ctx, res, label, slowest=True)}
        d["max_input_rss_growth_mib"] = max(d["max_input_rss_growth_mib"], res.get("rss_growth_kib", 0) / 1024)
        d["peak_rss_mib"] = max(d["peak_rss_mib"], res.get("peak_rss_kib", 0) / 1024)

    def keep(self, data: bytes, ctx: bytes, res: dict, label: str, slowest: bool = False) -> str:
        import hashlib

        key = "slowest" if slowest else hashlib.sha1(data + b"|" + ctx).hexdigest()[:12]
        self.d["reproducers"][key] = {"target": self.target, "label": label,
                                      "outcome": {k: v for k, v in res.items() if k != "peak_rss_kib"},
                                      "data": data.hex(), "ctx": ctx.hex()}
        return key

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.d, indent=1))


def merge(parts: list) -> dict:
    """The tallies of successive children of one target, added up."""
    out = json.loads(json.dumps(parts[0]))
    for p in parts[1:]:
        for k in ("inputs", "executions", "decoded"):
            out[k] += p[k]
        for e, n in p["typed"].items():
            out["typed"][e] = out["typed"].get(e, 0) + n
        for k in ("untyped", "misfiled", "bad_result", "memory"):
            for sig, e in p.get(k, {}).items():
                t = out.setdefault(k, {}).setdefault(sig, {**e, "count": 0, "reproducers": []})
                t["count"] += e["count"]
                t["reproducers"] = (t["reproducers"] + e["reproducers"])[:MAX_REPRO_PER_SIGNATURE]
        out["crashes"] += p["crashes"]
        out["hangs"] += p["hangs"]
        slowest = p["reproducers"].pop("slowest", None)
        if p["slowest"]["seconds"] > out["slowest"]["seconds"]:
            out["slowest"] = p["slowest"]
            out["reproducers"]["slowest"] = slowest
        out["reproducers"].update(p["reproducers"])
        for k in ("max_input_rss_growth_mib", "peak_rss_mib"):
            out[k] = max(out[k], p[k])
    return out


def replay(path: Path, timeout: float) -> None:
    """Run every reproducer of a <target>/reproducers.json again (in a worker) and print the outcome."""
    import fuzzing as F

    repros = json.loads(path.read_text())
    kinds = sorted({r["target"] for r in repros.values()})
    with F.Worker(kinds, timeout=timeout) as w:
        for key, r in repros.items():
            o = w.run(r["target"], bytes.fromhex(r["data"]), bytes.fromhex(r["ctx"]))
            was = r["outcome"]
            print(f"{key} [{r['target']}] was: {was['status']} {was.get('error', '')}: {was.get('message', '')[:80]}\n"
                  f"{' ' * 13}now: {o}"[:400])


# ------------------------------------------------------------------------------------------------
# Engines
# ------------------------------------------------------------------------------------------------

def contexts(target: str) -> list:
    """The decoding contexts an atheris input is tried with (its seeds' distinct contexts)."""
    import fuzzing as F

    seen = []
    for s in F.seeds(target):
        if s.ctx not in seen:
            seen.append(s.ctx)
    return seen or [b""]


def run_random(target: str, seconds: float, out: Path, args) -> dict:
    """Stacked random mutations of the seeds, each input run in a fuzzing.Worker child."""
    import numpy as np
    import fuzzing as F

    tally = Tally(target)
    pool = F.seeds(target)
    rng = np.random.default_rng([args.seed, F.KINDS.index(target)])
    deadline = time.monotonic() + seconds
    with F.Worker((target,), timeout=args.timeout, mem_cap_mib=args.mem_mib) as w:
        while time.monotonic() < deadline:
            s = pool[int(rng.integers(len(pool)))]
            data = F.mutate(s.data, target, rng, pool)
            o = w.run(target, data, s.ctx)
            tally.d["inputs"] += 1
            tally.add({**o.__dict__, "rss_growth_kib": o.rss_growth_kib, "peak_rss_kib": o.peak_rss_kib},
                      data, s.ctx, f"mutation of seed {s.name}")
        tally.d["worker_restarts"] = w.restarts
    return tally.d


def atheris_child(args) -> None:
    """One libFuzzer run of one target (in a child process); writes its tally to args.stats."""
    import atheris

    with atheris.instrument_imports(include=["ebgc"]):
        import ebgc  # noqa: F401
        if args.target in ("statedict", "appfl"):
            import ebgc.torch  # noqa: F401
            import ebgc.integrations.appfl  # noqa: F401
    import numpy as np
    import fuzzing as F

    out = Path(args.out)
    tally = Tally(args.target)
    pool = F.seeds(args.target)
    ctxs = contexts(args.target)
    F.execute(args.target, pool[0].data, pool[0].ctx)  # warm up
    F.limit_address_space(args.mem_mib)
    t_end = time.monotonic() + args.seconds
    last_dump = [time.monotonic()]

    def test_one(data: bytes) -> None:
        tally.d["inputs"] += 1
        for ctx in ctxs:
            tally.add(F.execute(args.target, data, ctx), data, ctx, "atheris input")
        now = time.monotonic()
        if now - last_dump[0] > 1.0 or now > t_end:
            last_dump[0] = now
            tally.dump(Path(args.stats))
            if now > t_end:
                sys.stderr.flush()
                os._exit(0)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        r = rng.random()
        if r < 0.2:  # back to a seed now and then: where the Python code gives libFuzzer no coverage
            data = pool[int(rng.integers(len(pool)))].data  # signal (blobs), its corpus shrinks to a few
        if r > 0.7:  # libFuzzer's own byte-level mutation, resealed
            return F.reseal(atheris.Mutate(data, max_size), args.target)
        return F.mutate(data, args.target, rng, pool, max_size)

    corpus = Path(args.corpus)  # shared by the successive children of one target
    if not any(corpus.iterdir()):
        for i, s in enumerate(pool):
            (corpus / f"seed-{i:02d}").write_bytes(s.data)
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={int(args.seconds) + 30}",
                   f"-timeout={max(1, int(round(args.timeout)))}", f"-rss_limit_mb={args.mem_mib}",
                   f"-artifact_prefix={out}/", "-max_len=65536", "-print_final_stats=1"],
                  test_one, custom_mutator=mutator)
    atheris.Fuzz()


def run_atheris(target: str, seconds: float, out: Path, args) -> dict:
    """Children running atheris until the time is spent; a crash or a hang ends one child (its
    input saved by libFuzzer), the next one continues."""
    parts, run = [], 0
    deadline = time.monotonic() + seconds
    out.mkdir(parents=True, exist_ok=True)
    corpus = tempfile.TemporaryDirectory(prefix=f"ebgc-fuzz-{target}-")
    while deadline - time.monotonic() > 5:
        left = deadline - time.monotonic()
        stats = out / f".stats-{run}.json"
        log = out / f".libfuzzer-{run}.log"
        before = set(out.glob("*-*"))
        with open(log, "wb") as f:
            try:
                p = subprocess.run([sys.executable, __file__, "--child", "--target", target, "--seconds", str(left),
                                    "--out", str(out), "--stats", str(stats), "--timeout", str(args.timeout),
                                    "--mem-mib", str(args.mem_mib), "--corpus", corpus.name],
                                   stdout=f, stderr=subprocess.STDOUT,
                                   timeout=left + 120)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = "killed (no progress)"
        if stats.exists():
            try:
                parts.append(json.loads(stats.read_text()))
            except json.JSONDecodeError:  # killed while writing it: its last second is lost
                pass
            stats.unlink()
        new = sorted(set(out.glob("*-*")) - before)
        artifacts = [a.name for a in new if a.name.split("-")[0] in ("crash", "timeout", "oom", "leak", "slow")]
        if rc != 0 or artifacts:
            tail = log.read_bytes()[-1500:].decode("utf-8", "replace")
            kind = "hangs" if any(a.startswith("timeout") for a in artifacts) else "crashes"
            if not parts:
                parts.append(Tally(target).d)
            parts[-1][kind].append({"exit": rc, "artifacts": [f"{target}/{a}" for a in artifacts], "log_tail": tail})
        cov = [line for line in log.read_text("utf-8", "replace").splitlines() if " cov: " in line]
        if cov and parts:  # libFuzzer's last progress line: Python-code coverage of ebgc, corpus size
            parts[-1]["libfuzzer"] = " ".join(cov[-1].split()[:9])
        log.unlink()
        run += 1
        if rc != 0 and not artifacts and not parts[-1]["inputs"]:
            break  # the child fails to start: do not loop
    corpus.cleanup()
    d = merge(parts) if parts else Tally(target).d
    d["libfuzzer"] = [p.get("libfuzzer", "") for p in parts]
    d["children"] = run
    return d


# ------------------------------------------------------------------------------------------------
# Extras: the bomb and the race of tests/test_fuzz.py
# ------------------------------------------------------------------------------------------------

def extras() -> dict:
    import fuzzing as F

    res = {}
    bomb = F.make_bomb()
    for via, kind, data in (("decompress", "blob", bomb), ("GradientDecoder.decode", "message", F.wrap_in_message(bomb))):
        with F.Worker(("blob", "message"), timeout=120, mem_cap_mib=4096) as w:
            o = w.run(kind, data)
        res[f"bomb via {via}"] = {"input_bytes": len(data), "declared_output_bytes": (F.BOMB_CHUNKS << 20) * 8,
                                  "status": o.status, "error": o.error, "message": o.message[:200],
                                  "seconds": round(o.seconds, 3), "peak_rss_growth_mib": round(o.rss_growth_kib / 1024, 1)}
    t = time.perf_counter()
    res["race"] = {**F.race_trials(140), "seconds": round(time.perf_counter() - t, 2)}
    return res


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------

def _git(path: Path) -> dict:
    def g(*a):
        try:
            return subprocess.run(["git", "-C", str(path), *a], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"path": str(path), "commit": g("rev-parse", "HEAD"), "dirty": bool(g("status", "--porcelain", "--", "."))}


def environment() -> dict:
    import numpy as np
    import ebgc

    env = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count()},
           "python": platform.python_version(), "numpy": np.__version__,
           "ebgc": {"version": getattr(ebgc, "__version__", "?"), "path": str(Path(ebgc.__file__).parent),
                    "git": _git(Path(ebgc.__file__).parent)},
           "fuzzer_git": _git(ROOT)}
    try:
        env["machine"]["cpu_model"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                           if l.startswith("model name"))
        env["machine"]["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (OSError, StopIteration, ValueError):
        pass
    from importlib import metadata

    for mod in ("torch", "atheris", "appfl", "hypothesis"):
        try:
            env[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            env[mod] = None
    return env


def markdown(summary: dict) -> str:
    rows = ["| target | inputs | runs | decoded | typed errors | untyped errors (by type) | other ebgc errors "
            "| wrong results | crashes | hangs | worst time | max RSS growth / run | peak RSS |",
            "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for t, d in summary["targets"].items():
        by_type: dict = {}
        for e in d.get("untyped", {}).values():
            by_type[e["type"]] = by_type.get(e["type"], 0) + e["count"]
        misfiled: dict = {}
        for e in d.get("misfiled", {}).values():
            misfiled[e["type"].rsplit(".", 1)[-1]] = misfiled.get(e["type"].rsplit(".", 1)[-1], 0) + e["count"]
        fmt = lambda m: ", ".join(f"{k} {v}" for k, v in sorted(m.items(), key=lambda kv: -kv[1])) or "0"  # noqa: E731
        rows.append(f"| {t} | {d['inputs']} | {d['executions']} | {d['decoded']} | {sum(d['typed'].values())} | "
                    f"{fmt(by_type)} | {fmt(misfiled)} | {sum(e['count'] for e in d.get('bad_result', {}).values())} | "
                    f"{len(d['crashes'])} | {len(d['hangs'])} | {d['slowest']['seconds'] * 1e3:.1f} ms | "
                    f"{d['max_input_rss_growth_mib']:.1f} MiB | {d['peak_rss_mib']:.0f} MiB |")
    lines = [f"# ebgc fuzzing, {summary['env']['date'][:10]}", "",
             f"Engine {summary['engine']}, {summary['minutes']:g} min over {len(summary['targets'])} target(s); "
             f"ebgc {summary['env']['ebgc']['path']} at {summary['env']['ebgc']['git']['commit'][:10]}"
             f"{' (dirty)' if summary['env']['ebgc']['git']['dirty'] else ''}.", ""] + rows
    for t, d in summary["targets"].items():
        problems = [(k, e) for k in ("untyped", "misfiled", "bad_result", "memory") for e in d.get(k, {}).values()]
        for k, table in (("crash", d["crashes"]), ("hang", d["hangs"])):
            problems += [(k, {"count": 1, "type": "", "where": "", "origin": "",
                              "message": c.get("log_tail", c.get("message", ""))[-150:],
                              "reproducers": c.get("artifacts", [c.get("reproducer", "")])}) for c in table]
        if problems:
            lines += ["", f"## {t}: distinct problems", ""]
        for k, e in sorted(problems, key=lambda ke: -ke[1]["count"]):
            example = e["reproducers"][0] if e["reproducers"] else "-"
            lines.append(f"- {e['count']} x {k} {e['type']} in {e['where']} ({e['origin']}): "
                         f"{' '.join(e['message'].split())[:150]} (reproducer `{example}`)")
    if summary.get("extras"):
        x = summary["extras"]
        lines += ["", "## Bomb and race", "", "| check | result |", "|---|---|"]
        for k, v in x.items():
            if k.startswith("bomb"):
                lines.append(f"| {k} ({v['input_bytes']} B declaring {v['declared_output_bytes'] / 1e9:.1f} GB) | "
                             f"{v['status']} {v['error']} after {v['seconds']:.1f} s, peak RSS growth "
                             f"{v['peak_rss_growth_mib']:.0f} MiB |")
        if "race" in x:
            lines.append(f"| race: two threads, one decoder, same message | accepted twice in "
                         f"{x['race']['double_accepts']} of {x['race']['trials']} trials |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="total, shared equally by the targets")
    ap.add_argument("--targets", default="blob,message,state,statedict,appfl")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--engine", choices=["auto", "atheris", "random"], default="auto")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds an input may take before it is a hang")
    ap.add_argument("--mem-mib", type=int, default=3072, help="address space a child may add (RLIMIT_AS)")
    ap.add_argument("--seed", type=int, default=0, help="random engine's seed")
    ap.add_argument("--no-extras", action="store_true", help="skip the bomb and race measurements")
    ap.add_argument("--replay", type=Path, help="run the inputs of a <target>/reproducers.json again, and exit")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--stats", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return atheris_child(args)
    if args.replay:
        return replay(args.replay, args.timeout)

    import fuzzing as F

    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in F.KINDS:
            ap.error(f"unknown target {t!r}; choose from {','.join(F.KINDS)}")
    engine = args.engine
    note = ""
    if engine in ("auto", "atheris"):
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            if args.engine == "atheris":
                ap.error("atheris is not installed (pip install atheris); use --engine random")
            engine, note = "random", " (atheris not installed)"
    out = args.out or ROOT / "bench" / "results" / f"fuzz-{dt.date.today().isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    per_target = args.minutes * 60 / len(targets)
    summary = {"engine": engine + note, "minutes": args.minutes, "timeout_s": args.timeout,
               "mem_limit_mib": args.mem_mib, "command": " ".join(sys.argv), "env": environment(), "targets": {}}
    for t in targets:
        print(f"[fuzz] {t}: {per_target:.0f} s with {engine}", flush=True)
        t0 = time.monotonic()
        if (out / t).exists():
            shutil.rmtree(out / t)
        run = run_atheris if engine == "atheris" else run_random
        d = run(t, per_target, out / t, args)
        d["seconds"] = round(time.monotonic() - t0, 1)
        repros = d.pop("reproducers")
        if repros:
            (out / t).mkdir(parents=True, exist_ok=True)
            (out / t / "reproducers.json").write_text(json.dumps(repros, indent=1))
        summary["targets"][t] = d
        n_untyped = sum(e["count"] for e in d.get("untyped", {}).values())
        print(f"[fuzz] {t}: {d['inputs']} inputs, {sum(d['typed'].values())} typed errors, {n_untyped} untyped, "
              f"{len(d['crashes'])} crashes, {len(d['hangs'])} hangs", flush=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if not args.no_extras:
        print("[fuzz] bomb and race", flush=True)
        summary["extras"] = extras()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary))
    print(f"[fuzz] wrote {out}/summary.json and summary.md")


if __name__ == "__main__":
    main()
