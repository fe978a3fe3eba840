#!/usr/bin/env python3
"""Same-run speed comparison of two builds of ebgc (e.g. before and after a refactoring).

    python bench/compare_builds.py --a /work/baseline/python --b python \\
        --trace ../shared/data/fl-resnet-digits.npz --trace ../shared/data/fl-vgg-digits.npz \\
        --bounds 1e-2 1e-3 --repeats 5 --out bench/out/compare

Each build is a directory that holds the importable package (``<dir>/ebgc/__init__.py`` with its
native module built in place). The two native modules cannot share a process, so every
measurement is a child process of this script with ``PYTHONPATH=<dir>``; the children run one at a
time, A and B alternately, for ``--repeats`` rounds (``--order abba``, the default, swaps the pair
every other round, A B B A A B ..., so that a slow drift of the machine weighs on both builds alike;
``--order abab`` keeps A first).

A child loads the traces, then for every trace and bound runs one untimed warm-up pass (it also
records the bytes and a SHA-256 of everything written) and ``--passes`` timed passes, each timing,
message after message, with the benchmark protocol's policy (tensors of <= 1024 values sent raw,
every other tensor through ebgc with coder "auto", threads=1, bound mode ``--mode``):
  * ``oneshot-compress`` / ``oneshot-decompress``: ebgc.compress / ebgc.decompress of each tensor;
  * ``stateful-encode`` / ``stateful-decode``: one GradientEncoder (history 2) over the messages in
    order, and a separate GradientDecoder fed the message bytes.
Throughput = uncompressed bytes of the trace (every tensor, small ones included; 1 MB = 10^6 B)
/ seconds of the path summed over the messages; the child reports the median over its passes.

The parent reports per (trace, bound, path): the median over rounds of A and of B, B/A (of those
medians), the spread (min and max over rounds of each build, and of the per-round ratio B/A), and
whether the bytes written (total and SHA-256) are identical between the builds and across rounds.
Written to ``<out>/<name>.json`` and ``<out>/<name>.md`` with the machine, the date and each build's
git commit. Compare speeds only within one run; run it once with ``--a`` = ``--b`` to see how much
B/A moves on this machine when nothing changed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

RAW_MAX_ELEMENTS = 1024  # the protocol's policy: tensors of at most this many values go raw
PATHS = ("oneshot-compress", "oneshot-decompress", "stateful-encode", "stateful-decode")
KIND_OF = {"oneshot-compress": "oneshot", "oneshot-decompress": "oneshot",
           "stateful-encode": "stateful", "stateful-decode": "stateful"}

Message = Tuple[str, List[Tuple[str, np.ndarray]]]


# --------------------------------------------------------------------------------------------
# child: time one build


def _load_script(name: str, path: Path):
    """A sibling script as a module (neither build's ebgc is imported by the parent)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (its dataclasses look themselves up there)
    spec.loader.exec_module(mod)
    return mod


_ROOT = Path(__file__).resolve().parents[1]
# The trace grouping of tools/blob_digests.py, and the machine description of ebgc bench (a
# standalone file: it imports ebgc only inside its functions).
load_messages = _load_script("blob_digests", _ROOT / "tools" / "blob_digests.py").load_npz_messages
cpu_model = _load_script("ebgc_bench_tool", _ROOT / "python" / "ebgc" / "tools" / "bench.py")._cpu_model


def _oneshot(ebgc, msgs: Sequence[Message], eb: float, mode: str, keep: bool):
    """(compress s, decompress s, payloads of every message if keep)."""
    perf = time.perf_counter
    ct = dt = 0.0
    kept = []
    for _, tensors in msgs:
        t0 = perf()
        payloads = [x.tobytes() if x.size <= RAW_MAX_ELEMENTS else
                    ebgc.compress(x, eb, mode=mode, coder="auto", threads=1) for _, x in tensors]
        t1 = perf()
        outs = [np.frombuffer(p, dtype=x.dtype).reshape(x.shape) if x.size <= RAW_MAX_ELEMENTS else
                ebgc.decompress(p, threads=1) for (_, x), p in zip(tensors, payloads)]
        t2 = perf()
        ct += t1 - t0
        dt += t2 - t1
        del outs
        if keep:
            kept.append(payloads)
    return ct, dt, kept


def _stateful(ebgc, msgs: Sequence[Message], eb: float, mode: str, stream_id: bytes, keep: bool):
    """(encode s, decode s, [(message bytes, raw small tensors' bytes)] if keep)."""
    perf = time.perf_counter
    enc = ebgc.GradientEncoder(eb, mode=mode, coder="auto", stream_id=stream_id, history=2, threads=1)
    dec = ebgc.GradientDecoder(threads=1)
    et = dt = 0.0
    kept = []
    for _, tensors in msgs:
        t0 = perf()
        big = {k: x for k, x in tensors if x.size > RAW_MAX_ELEMENTS}
        small = [x.tobytes() for _, x in tensors if x.size <= RAW_MAX_ELEMENTS]
        msg = enc.encode(big)
        t1 = perf()
        out = dec.decode(msg)
        smalls = [np.frombuffer(p, dtype=x.dtype).reshape(x.shape)
                  for p, (_, x) in zip(small, [t for t in tensors if t[1].size <= RAW_MAX_ELEMENTS])]
        t2 = perf()
        et += t1 - t0
        dt += t2 - t1
        del out, smalls
        if keep:
            kept.append((msg, small))
    return et, dt, kept


def _digest_oneshot(kept) -> Tuple[int, str]:
    h, n = hashlib.sha256(), 0
    for payloads in kept:
        for p in payloads:
            h.update(len(p).to_bytes(8, "little"))
            h.update(p)
            n += len(p)
    return n, h.hexdigest()


def _digest_stateful(kept) -> Tuple[int, str]:
    h, n = hashlib.sha256(), 0
    for msg, small in kept:
        for p in [msg, *small]:
            h.update(len(p).to_bytes(8, "little"))
            h.update(p)
            n += len(p)
    return n, h.hexdigest()


def child_main(args) -> int:
    import ebgc

    pkg = Path(ebgc.__file__).resolve().parent
    if args.expect_dir and Path(args.expect_dir).resolve() not in pkg.parents:
        print(f"ebgc imported from {pkg}, not from {args.expect_dir}", file=sys.stderr)
        return 2
    result = {
        "ebgc_path": str(pkg),
        "ebgc_version": getattr(ebgc, "__version__", None),
        "native_modules": {str(p.relative_to(pkg)): hashlib.sha256(p.read_bytes()).hexdigest()
                           for p in sorted(pkg.rglob("*.so"))},
        "pid": os.getpid(),
        "runs": [],
    }
    t_start = time.perf_counter()
    for path in args.trace:
        msgs = load_messages(path, args.max_messages)
        name = Path(path).stem
        raw = sum(x.nbytes for _, t in msgs for _, x in t)
        sid = name.encode()[:64] or b"trace"
        for eb in args.bounds:
            # warm-up, also the bytes written
            _, _, kept = _oneshot(ebgc, msgs, eb, args.mode, True)
            one_bytes, one_sha = _digest_oneshot(kept)
            _, _, kept = _stateful(ebgc, msgs, eb, args.mode, sid, True)
            st_bytes, st_sha = _digest_stateful(kept)
            del kept
            secs: Dict[str, List[float]] = {p: [] for p in PATHS}
            for _ in range(args.passes):
                gc.collect()
                gc.disable()
                try:
                    ct, dt, _ = _oneshot(ebgc, msgs, eb, args.mode, False)
                    et, sdt, _ = _stateful(ebgc, msgs, eb, args.mode, sid, False)
                finally:
                    gc.enable()
                for p, s in zip(PATHS, (ct, dt, et, sdt)):
                    secs[p].append(s)
            result["runs"].append({
                "trace": name, "bound": eb, "mode": args.mode, "messages": len(msgs),
                "tensors": sum(len(t) for _, t in msgs), "raw_bytes": raw,
                "bytes": {"oneshot": one_bytes, "stateful": st_bytes},
                "sha256": {"oneshot": one_sha, "stateful": st_sha},
                "seconds": secs,
                "MBps": {p: raw / statistics.median(s) / 1e6 for p, s in secs.items()},
            })
    result["wall_s"] = time.perf_counter() - t_start
    Path(args.child_out).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# parent


def git_info(d: Path) -> dict:
    def git(*a):
        try:
            r = subprocess.run(["git", "-C", str(d), *a], capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "describe": git("log", "-1", "--format=%h %s"),
            "modified_tracked_files": None if status is None else len(status.splitlines())}


def run_child(build: Path, args, tag: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        pp = os.environ.get("PYTHONPATH")  # the build first; the check in the child makes sure
        env = dict(os.environ, PYTHONPATH=str(build) + (os.pathsep + pp if pp else ""))
        env.pop("PYTHONSTARTUP", None)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--child-out", str(out),
               "--expect-dir", str(build), "--bounds", *map(repr, args.bounds), "--mode", args.mode,
               "--passes", str(args.passes), "--trace", *args.trace]
        if args.max_messages:
            cmd += ["--max-messages", str(args.max_messages)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"child for build {tag} ({build}) failed (rc {r.returncode}):\n{r.stdout}{r.stderr}")
        res = json.loads(out.read_text())
        res["process_s"] = time.perf_counter() - t0
        return res


def _geomean(xs: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else math.nan


def summarize(children: Dict[str, List[dict]]) -> Tuple[List[dict], dict]:
    rows = []
    first = children["A"][0]["runs"]
    for i, run in enumerate(first):
        per = {b: [c["runs"][i] for c in children[b]] for b in ("A", "B")}
        for b in ("A", "B"):
            for r in per[b]:
                assert (r["trace"], r["bound"]) == (run["trace"], run["bound"])
        for path in PATHS:
            kind = KIND_OF[path]
            a = [r["MBps"][path] for r in per["A"]]
            bb = [r["MBps"][path] for r in per["B"]]
            paired = [y / x for x, y in zip(a, bb)]
            outs = {b: {(r["bytes"][kind], r["sha256"][kind]) for r in per[b]} for b in ("A", "B")}
            rows.append({
                "trace": run["trace"], "bound": run["bound"], "mode": run["mode"], "path": path,
                "raw_bytes": run["raw_bytes"], "messages": run["messages"],
                "A_MBps": statistics.median(a), "A_min": min(a), "A_max": max(a),
                "B_MBps": statistics.median(bb), "B_min": min(bb), "B_max": max(bb),
                "B_over_A": statistics.median(bb) / statistics.median(a),
                "ratio_round_min": min(paired), "ratio_round_max": max(paired),
                "ratio_round_median": statistics.median(paired),
                "A_rounds": a, "B_rounds": bb,
                "A_bytes": sorted(n for n, _ in outs["A"]), "B_bytes": sorted(n for n, _ in outs["B"]),
                "bytes_identical": len(outs["A"]) == 1 and outs["A"] == outs["B"],
            })
    summary = {}
    for path in PATHS:
        rs = [r for r in rows if r["path"] == path]
        summary[path] = {
            "geomean_B_over_A": _geomean([r["B_over_A"] for r in rs]),
            "worst_round_ratio_min": min(r["ratio_round_min"] for r in rs),
            "worst_round_ratio_max": max(r["ratio_round_max"] for r in rs),
        }
    summary["all"] = {
        "geomean_B_over_A": _geomean([r["B_over_A"] for r in rows]),
        "B_over_A_min": min(r["B_over_A"] for r in rows),
        "B_over_A_max": max(r["B_over_A"] for r in rows),
        "round_ratio_min": min(r["ratio_round_min"] for r in rows),
        "round_ratio_max": max(r["ratio_round_max"] for r in rows),
        "bytes_identical": all(r["bytes_identical"] for r in rows),
    }
    return rows, summary


def markdown(report: dict) -> str:
    m, cfg, s = report["machine"], report["config"], report["summary"]
    lines = [f"# ebgc build comparison: {report['name']}", "",
             f"- date: {report['date']}",
             f"- machine: {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable), {m['platform']}, "
             f"Python {m['python']}, numpy {m['numpy']}"]
    for b in ("A", "B"):
        info = report["builds"][b]
        g = info["git"]
        dirty = g.get("modified_tracked_files")
        lines.append(f"- build {b}: `{info['dir']}` at `{g.get('commit')}`"
                     + (f" (+{dirty} modified tracked files)" if dirty else "")
                     + f"; native modules {', '.join(f'{k} {v[:12]}' for k, v in info['native_modules'].items())}")
    lines += [f"- {cfg['repeats']} rounds (order {cfg['order']}: {' '.join(report['sequence'])}), each child "
              f"1 warm-up + {cfg['passes']} timed passes (child median); bound mode {cfg['mode']}, coder auto, "
              f"threads=1, tensors <= {RAW_MAX_ELEMENTS} values raw"
              + (f", first {cfg['max_messages']} messages of each trace" if cfg["max_messages"] else ""),
              f"- wall time {report['wall_s']:.0f} s", "",
              "MB/s = uncompressed MB (10^6 B) per second; A, B: median over rounds [min-max]; "
              "B/A: ratio of the medians; per round: min-max of B/A paired by round.", "",
              "| trace | bound | path | A MB/s | B MB/s | B/A | B/A per round | bytes identical |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        ident = "yes" if r["bytes_identical"] else f"**NO** ({r['A_bytes']} vs {r['B_bytes']})"
        lines.append(f"| {r['trace']} | {r['mode']} {r['bound']:g} | {r['path']} | "
                     f"{r['A_MBps']:.1f} [{r['A_min']:.1f}-{r['A_max']:.1f}] | "
                     f"{r['B_MBps']:.1f} [{r['B_min']:.1f}-{r['B_max']:.1f}] | {r['B_over_A']:.3f} | "
                     f"{r['ratio_round_min']:.3f}-{r['ratio_round_max']:.3f} | {ident} |")
    lines += ["", "| path | geomean B/A | per-round B/A, min-max over rows |", "|---|---|---|"]
    for p in PATHS:
        lines.append(f"| {p} | {s[p]['geomean_B_over_A']:.3f} | "
                     f"{s[p]['worst_round_ratio_min']:.3f}-{s[p]['worst_round_ratio_max']:.3f} |")
    a = s["all"]
    lines += ["", f"All rows: geomean B/A {a['geomean_B_over_A']:.3f}, B/A of medians "
                  f"{a['B_over_A_min']:.3f}-{a['B_over_A_max']:.3f}, per-round B/A "
                  f"{a['round_ratio_min']:.3f}-{a['round_ratio_max']:.3f}; bytes identical: "
                  f"{'yes' if a['bytes_identical'] else 'NO'}.", ""]
    return "\n".join(lines)


def parent_main(args) -> int:
    t0 = time.perf_counter()
    builds = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for tag, d in builds.items():
        if not (d / "ebgc" / "__init__.py").is_file():
            raise SystemExit(f"--{tag.lower()} {d}: no ebgc/__init__.py there")
    args.trace = [str(Path(t).resolve()) for t in args.trace]
    children: Dict[str, List[dict]] = {"A": [], "B": []}
    sequence = []
    for rnd in range(args.repeats):
        order = ("A", "B") if args.order == "abab" or rnd % 2 == 0 else ("B", "A")
        for tag in order:
            res = run_child(builds[tag], args, tag)
            children[tag].append(res)
            sequence.append(tag)
            if not args.quiet:
                mb = statistics.median(r["MBps"]["oneshot-compress"] for r in res["runs"])
                print(f"round {rnd + 1}/{args.repeats} {tag}: {res['process_s']:.1f} s "
                      f"(median one-shot compress {mb:.1f} MB/s)", file=sys.stderr, flush=True)
    rows, summary = summarize(children)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    report = {
        "name": args.name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
                    "platform": platform.platform(), "python": platform.python_version(),
                    "numpy": np.__version__, "hostname": platform.node()},
        "config": {"traces": args.trace, "bounds": args.bounds, "mode": args.mode, "repeats": args.repeats,
                   "passes": args.passes, "order": args.order, "max_messages": args.max_messages,
                   "raw_max_elements": RAW_MAX_ELEMENTS, "coder": "auto", "threads": 1,
                   "stateful": "GradientEncoder(history=2) / GradientDecoder, tensors <= 1024 values raw"},
        "builds": {tag: {"dir": str(d), "git": git_info(d),
                         "ebgc_path": children[tag][0]["ebgc_path"],
                         "ebgc_version": children[tag][0]["ebgc_version"],
                         "native_modules": children[tag][0]["native_modules"]} for tag, d in builds.items()},
        "sequence": sequence,
        "summary": summary,
        "rows": rows,
        "children": {tag: [{k: v for k, v in c.items() if k != "native_modules"} for c in cs]
                     for tag, cs in children.items()},
    }
    report["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    (out / f"{args.name}.md").write_text(md)
    print(md)
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.md')}", file=sys.stderr)
    return 0 if summary["all"]["bytes_identical"] else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", help="build A: the directory holding its ebgc package (e.g. /work/baseline/python)")
    ap.add_argument("--b", help="build B: likewise")
    ap.add_argument("--trace", nargs="+", action="extend", default=[], required=True, metavar="PATH.npz")
    ap.add_argument("--bounds", nargs="+", type=float, default=[1e-2, 1e-3])
    ap.add_argument("--mode", choices=("rel", "abs"), default="rel")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; each runs one A child and one B child")
    ap.add_argument("--passes", type=int, default=5, help="timed passes inside each child (median kept)")
    ap.add_argument("--order", choices=("abba", "abab"), default="abba")
    ap.add_argument("--max-messages", type=int, default=None, help="only the first N messages of each trace")
    ap.add_argument("--out", default="bench/out/compare-builds")
    ap.add_argument("--name", default="compare", help="file name stem of the results")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--expect-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    if not (args.a and args.b):
        ap.error("--a and --b are required")
    if args.repeats < 1 or args.passes < 1:
        ap.error("--repeats and --passes must be >= 1")
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
