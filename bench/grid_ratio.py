#!/usr/bin/env python3
"""How much the GPU codec's blobs weigh against the CPU codec's, measured on the CPU only.

No GPU is used. The GPU (device) codec's exact encoder is available on the host as a test hook,
the "host runner" ``_core._grid_compress`` (context or Huffman lanes in chunks of 2**GRID_CHUNK_LOG2 values,
no low-rank predictor, stream blend prediction from previous/previous2, ``reconstruction=``
receives what the decoder will return). The device plan (csrc/include/ebgc/plan.hpp,
compress_where) sends matrices that the low-rank predictor may take (2-D, low_rank on, ratio
coder) to the CPU codec instead; ``_core._compress_where_device`` says which. So a device blob is
emulated as:

    plan == "device":  _core._grid_compress(x, ..., coder auto, previous, previous2)
    plan == "host":    _core.compress(x, ..., coder auto, chunk_log2=16, low_rank=True, previous, previous2)

and compared with the CPU codec's blob of the same values (``_core.compress``, auto, default chunk,
low_rank on). Every figure is a sum of blob sizes (tensor blobs only, no message container),
per trace and REL bound:

  one-shot  every message (keys grouped by r???/c?), every tensor coded alone:
              device           plan as above                   vs  cpu (low_rank on)
              runner_all       every tensor through the runner  vs  cpu_lr0 (low_rank off)
              cpu_lr0_c14      CPU codec, low_rank off, chunk 2**14 (the runner's chunk size),
                               which splits runner_all vs cpu_lr0 into the chunk-size cost
                               (cpu_lr0_c14 / cpu_lr0) and what remains in the device encoder
                               (runner_all / cpu_lr0_c14: what differs in the coder choice,
                               i.e. bit-packing in the fast mode's chunks)
  stream    client 0's rounds as one stream, history 2 as ebgc.GradientEncoder does it (message 0
            a keyframe with no prediction, message 1 predicted from the last reconstruction,
            later ones from the last two), each tensor's history kept separately; the same five
            variants, with the reference ebgc.GradientEncoder(eb, mode="rel") whose tensor blobs
            (ebgc.info(message)["tensors"][name]["nbytes"]) must equal the "cpu" emulation.

Every reconstruction is checked against its bound (max |rec - x| <= info(blob)["abs_bound"]) and
decoded again (runner blobs with _grid_decompress_into, CPU blobs with decompress_into) to check
that the decoder returns exactly the captured reconstruction.

    PYTHONPATH=... python bench/grid_ratio.py TRACE.npz [...] --bounds 1e-2 1e-3 --out DIR
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

import ebgc
from ebgc import _core
from ebgc.stream import parse_message

REL = _core.VOCABULARY["modes"]["rel"]
AUTO = _core.VOCABULARY["coders"]["auto"]
GRID = _core.GRID_CHUNK_LOG2
DEFAULT_CHUNK = _core.DEFAULT_CHUNK_LOG2
KEY = re.compile(r"^r(\d+)/c(\d+)/(.+)$")
VARIANTS = ("device", "cpu", "runner_all", "cpu_lr0", "cpu_lr0_c14")


def load_trace(path):
    """{(round, client): {name: float array}} in round order, names in file order."""
    z = np.load(path)
    msgs = collections.OrderedDict()
    for k in z.files:
        m = KEY.match(k)
        if not m:
            raise SystemExit(f"{path}: key {k!r} is not r{{round}}/c{{client}}/{{name}}")
        msgs.setdefault((int(m.group(1)), int(m.group(2))), collections.OrderedDict())[m.group(3)] = \
            np.ascontiguousarray(z[k])
    return collections.OrderedDict(sorted(msgs.items()))


def coder_fns(eb, threads):
    """variant -> f(x, previous, previous2, reconstruction) -> (blob, 'runner' | 'cpu')."""
    def runner(x, p, p2, rec):
        return _core._grid_compress(x, x.dtype.name, eb, REL, AUTO, previous=p, previous2=p2, reconstruction=rec)

    def cpu(chunk, low_rank):
        def f(x, p, p2, rec):
            return _core.compress(x, x.dtype.name, eb, REL, AUTO, threads, chunk_log2=chunk, low_rank=low_rank,
                                  previous=p, previous2=p2, reconstruction=rec)
        return f

    cpu_lr1 = cpu(DEFAULT_CHUNK, True)

    def device(x, p, p2, rec):
        if _core._compress_where_device(AUTO, shape=list(x.shape), low_rank=True) == "host":
            return cpu_lr1(x, p, p2, rec), "cpu"
        return runner(x, p, p2, rec), "runner"

    return {
        "device": device,
        "cpu": lambda *a: (cpu_lr1(*a), "cpu"),
        "runner_all": lambda *a: (runner(*a), "runner"),
        "cpu_lr0": lambda *a: (cpu(DEFAULT_CHUNK, False)(*a), "cpu"),
        "cpu_lr0_c14": lambda *a: (cpu(GRID, False)(*a), "cpu"),
    }


class Tally:
    """Sums and checks for one variant."""

    def __init__(self):
        self.nbytes = 0
        self.per_message = []
        self.coders = collections.Counter()
        self.predictors = collections.Counter()
        self.max_err_over_bound = 0.0
        self.bound_violations = 0
        self.decode_mismatches = 0
        self.host_planned = 0
        self.seconds = 0.0

    def as_dict(self):
        return {"nbytes": self.nbytes, "per_message_nbytes": self.per_message, "coders": dict(self.coders),
                "predictors": dict(self.predictors), "max_err_over_bound": self.max_err_over_bound,
                "bound_violations": self.bound_violations, "decode_mismatches": self.decode_mismatches,
                "tensors_via_cpu_codec": self.host_planned, "encode_seconds": round(self.seconds, 3)}


def code_one(fn, tally, x, p, p2, threads, verify):
    rec = np.empty_like(x)
    t = time.perf_counter()
    blob, who = fn(x, p, p2, rec)
    tally.seconds += time.perf_counter() - t
    h = ebgc.info(blob)
    tally.coders[h["coder"]] += 1
    tally.predictors[h["predictor"]] += 1
    if who == "cpu":
        tally.host_planned += 1
    if verify:
        finite = np.isfinite(x)
        err = float(np.max(np.abs(rec[finite].astype(np.float64) - x[finite].astype(np.float64)), initial=0.0))
        bound = h["abs_bound"]
        if bound > 0:
            tally.max_err_over_bound = max(tally.max_err_over_bound, err / bound)
        if err > bound:
            tally.bound_violations += 1
        out = np.empty_like(x)
        b = _core.inspect(blob, for_decoding=True)
        if who == "runner":
            _core._grid_decompress_into(b, out, previous=p, previous2=p2)
        else:
            _core.decompress_into(b, out, threads, previous=p, previous2=p2)
        if out.tobytes() != rec.tobytes():
            tally.decode_mismatches += 1
    return blob, rec


def one_shot(msgs, eb, threads, verify):
    fns = coder_fns(eb, threads)
    tallies = {v: Tally() for v in VARIANTS}
    for (r, c), tensors in msgs.items():
        for v in VARIANTS:
            t = tallies[v]
            size = 0
            for x in tensors.values():
                blob, _ = code_one(fns[v], t, x, None, None, threads, verify)
                size += len(blob)
            t.nbytes += size
            t.per_message.append(size)
    return tallies


def stream(rounds, eb, threads, verify, stream_id="x"):
    """rounds: [{name: array}] of one client. Returns (tallies, reference dict)."""
    fns = coder_fns(eb, threads)
    tallies = {v: Tally() for v in VARIANTS}
    history = {v: {} for v in VARIANTS}  # name -> (last, older)
    enc = ebgc.GradientEncoder(eb, mode="rel", stream_id=stream_id, threads=threads)
    ref = {"message_nbytes": 0, "tensor_blob_nbytes": 0, "per_message_tensor_nbytes": [],
           "blobs_equal_to_cpu_emulation": 0, "blobs_compared": 0, "encode_seconds": 0.0}
    for seq, tensors in enumerate(rounds):
        t0 = time.perf_counter()
        message = enc.encode(tensors)
        ref["encode_seconds"] += time.perf_counter() - t0
        info = ebgc.info(message)
        sizes = {name: info["tensors"][name]["nbytes"] for name in tensors}
        ref["message_nbytes"] += len(message)
        ref["tensor_blob_nbytes"] += sum(sizes.values())
        ref["per_message_tensor_nbytes"].append(sum(sizes.values()))
        ref_blobs = dict(parse_message(message).tensors)
        for v in VARIANTS:
            t = tallies[v]
            size = 0
            for name, x in tensors.items():
                last, older = history[v].get(name, (None, None))
                if seq == 0:
                    last = older = None
                blob, rec = code_one(fns[v], t, x, last, older, threads, verify)
                size += len(blob)
                history[v][name] = (rec, last)
                if v == "cpu":
                    ref["blobs_compared"] += 1
                    ref["blobs_equal_to_cpu_emulation"] += int(bytes(blob) == bytes(ref_blobs[name]))
            t.nbytes += size
            t.per_message.append(size)
    ref["encode_seconds"] = round(ref["encode_seconds"], 3)
    return tallies, ref


def ratio(a, b):
    return a / b if b else float("nan")


def summarize(raw, tallies):
    n = {v: tallies[v].nbytes for v in VARIANTS}
    pm = lambda a, b: [ratio(x, y) for x, y in zip(tallies[a].per_message, tallies[b].per_message)]
    dev_cpu = pm("device", "cpu")
    return {
        "raw_nbytes": raw, "nbytes": n,
        "ratio_raw_over_bytes": {v: ratio(raw, n[v]) for v in VARIANTS},
        "device_over_cpu": ratio(n["device"], n["cpu"]),
        "device_over_cpu_per_message_min_max": [min(dev_cpu), max(dev_cpu)],
        "runner_all_over_cpu_lr0": ratio(n["runner_all"], n["cpu_lr0"]),
        "chunk_cost_cpu_lr0_c14_over_cpu_lr0": ratio(n["cpu_lr0_c14"], n["cpu_lr0"]),
        "device_encoder_rest_runner_all_over_cpu_lr0_c14": ratio(n["runner_all"], n["cpu_lr0_c14"]),
        "low_rank_gain_cpu_lr0_over_cpu": ratio(n["cpu_lr0"], n["cpu"]),
        "variants": {v: tallies[v].as_dict() for v in VARIANTS},
    }


def machine():
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model or platform.processor(), "python": sys.version.split()[0],
            "numpy": np.__version__, "ebgc": getattr(ebgc, "__version__", "?"), "ebgc_path": os.path.dirname(ebgc.__file__),
            "grid_chunk_log2": GRID, "default_chunk_log2": DEFAULT_CHUNK,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def pct(x):
    return f"{(x - 1) * 100:+.2f}%"


def tables(results):
    lines = ["## One-shot (all messages; tensor blobs summed)", "",
             "| trace | REL | raw MB | CPU bytes | device bytes | CPU ratio | device ratio | device/CPU | per-message device/CPU min..max | via CPU codec |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["one_shot"]
        n = s["nbytes"]
        lo, hi = s["device_over_cpu_per_message_min_max"]
        lines.append(f"| {r['trace_name']} | {r['bound']:g} | {s['raw_nbytes'] / 1e6:.1f} | {n['cpu']:,} | {n['device']:,} | "
                     f"{s['ratio_raw_over_bytes']['cpu']:.2f} | {s['ratio_raw_over_bytes']['device']:.2f} | "
                     f"{s['device_over_cpu']:.4f} ({pct(s['device_over_cpu'])}) | {lo:.4f}..{hi:.4f} | "
                     f"{s['variants']['device']['tensors_via_cpu_codec']} tensors |")
    lines += ["", "## One-shot, low_rank off everywhere (every tensor through the runner vs CPU low_rank=False)", "",
              "| trace | REL | CPU lr0 bytes | CPU lr0 chunk 2^14 bytes | runner bytes | runner/CPU lr0 | chunk cost (c14/c16) | rest (runner/c14) | low-rank gain (CPU lr0/CPU) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["one_shot"]
        n = s["nbytes"]
        lines.append(f"| {r['trace_name']} | {r['bound']:g} | {n['cpu_lr0']:,} | {n['cpu_lr0_c14']:,} | {n['runner_all']:,} | "
                     f"{s['runner_all_over_cpu_lr0']:.4f} ({pct(s['runner_all_over_cpu_lr0'])}) | "
                     f"{pct(s['chunk_cost_cpu_lr0_c14_over_cpu_lr0'])} | {pct(s['device_encoder_rest_runner_all_over_cpu_lr0_c14'])} | "
                     f"{pct(s['low_rank_gain_cpu_lr0_over_cpu'])} |")
    lines += ["", "## Stream (client 0, all rounds; tensor blobs summed)", "",
              "| trace | REL | raw MB | GradientEncoder blobs | device blobs | CPU ratio | device ratio | device/CPU | runner_all/CPU lr0 | chunk cost | rest | max err/bound | bound viol. | decode mism. | encoder blobs == CPU emulation |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["stream"]
        n = s["nbytes"]
        ref = s["reference"]
        worst = max(v["max_err_over_bound"] for v in s["variants"].values())
        viol = sum(v["bound_violations"] for v in s["variants"].values())
        mism = sum(v["decode_mismatches"] for v in s["variants"].values())
        raw = s["raw_nbytes"]
        lines.append(f"| {r['trace_name']} | {r['bound']:g} | {raw / 1e6:.1f} | {ref['tensor_blob_nbytes']:,} | {n['device']:,} | "
                     f"{ratio(raw, ref['tensor_blob_nbytes']):.2f} | {s['ratio_raw_over_bytes']['device']:.2f} | "
                     f"{ratio(n['device'], ref['tensor_blob_nbytes']):.4f} ({pct(ratio(n['device'], ref['tensor_blob_nbytes']))}) | "
                     f"{s['runner_all_over_cpu_lr0']:.4f} | {pct(s['chunk_cost_cpu_lr0_c14_over_cpu_lr0'])} | "
                     f"{pct(s['device_encoder_rest_runner_all_over_cpu_lr0_c14'])} | {worst:.9f} | {viol} | {mism} | "
                     f"{ref['blobs_equal_to_cpu_emulation']}/{ref['blobs_compared']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+", help=".npz traces, keys r{round}/c{client}/{name}")
    ap.add_argument("--bounds", type=float, nargs="+", default=[1e-2, 1e-3], help="REL bounds (default 1e-2 1e-3)")
    ap.add_argument("--out", required=True, help="output folder (results.json, tables.md)")
    ap.add_argument("--threads", type=int, default=2, help="CPU codec threads (sizes do not depend on it)")
    ap.add_argument("--no-one-shot", action="store_true")
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--no-verify", action="store_true", help="skip the bound and decode checks")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    out = {"machine": machine(), "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "results": []}
    for path in args.traces:
        msgs = load_trace(path)
        name = os.path.basename(path)
        clients = sorted({c for _, c in msgs})
        rounds0 = [t for (r, c), t in msgs.items() if c == clients[0]]
        for eb in args.bounds:
            res = {"trace": path, "trace_name": name, "bound": eb, "mode": "rel", "messages": len(msgs)}
            t0 = time.perf_counter()
            if not args.no_one_shot:
                raw = sum(x.nbytes for t in msgs.values() for x in t.values())
                res["one_shot"] = summarize(raw, one_shot(msgs, eb, args.threads, not args.no_verify))
                res["one_shot"]["bound_violations"] = sum(v["bound_violations"] for v in res["one_shot"]["variants"].values())
                res["one_shot"]["decode_mismatches"] = sum(v["decode_mismatches"] for v in res["one_shot"]["variants"].values())
            if not args.no_stream:
                raw = sum(x.nbytes for t in rounds0 for x in t.values())
                tallies, ref = stream(rounds0, eb, args.threads, not args.no_verify)
                res["stream"] = summarize(raw, tallies)
                res["stream"]["client"] = clients[0]
                res["stream"]["rounds"] = len(rounds0)
                res["stream"]["reference"] = ref
                res["stream"]["device_over_encoder"] = ratio(tallies["device"].nbytes, ref["tensor_blob_nbytes"])
            res["seconds"] = round(time.perf_counter() - t0, 1)
            out["results"].append(res)
            print(f"{name} REL {eb:g}: {res['seconds']} s", file=sys.stderr, flush=True)
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump(out, f, indent=1)
    md = tables([r for r in out["results"] if "one_shot" in r and "stream" in r] or out["results"])
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
