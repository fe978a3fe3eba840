"""The tool commands of the ``ebgc`` CLI: ``bench`` (ebgc against its peers on gradient traces)
and ``demo`` (federated learning with ebgc on the uplink). Registered by ebgc.cli."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..cli import CliError, positive_float, positive_int, thread_count
from ..vocabulary import MODES


def _bench_stateful(args: argparse.Namespace, traces, out_console, err_console) -> int:
    from . import bench, bench_stateful

    rows = bench_stateful.run_stateful(traces, args.bounds, args.mode, repeats=args.repeats,
                                       quiet=args.quiet, console=err_console)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = bench.machine_info()
    config = {"traces": [t.path or t.name for t in traces], "bound_mode": args.mode,
              "bounds": list(args.bounds), "repeats": args.repeats, "stateful": True,
              "raw_max_elements": bench.RAW_MAX_ELEMENTS}
    bench.write_csv(rows, out / "stateful.csv", machine, config)
    bench.write_json(rows, out / "stateful.json", machine, config)
    try:
        bench_stateful.plot_rounds(rows, out / "stateful.png")
    except ImportError as exc:
        err_console.print(f"note: no plot ({exc})", highlight=False)
    out_console.print(bench.results_table(rows, title="ebgc bench --stateful (threads 1)"))
    out_console.print("Ablation rows (ratio only, not timed: their MB/s are nan): " + "; ".join(
        f"{name}: {detail}" for name, _, detail in bench_stateful.ABLATION), highlight=False)
    for r in rows:
        if r["method"] != "ebgc-stateful":
            continue
        sz = [x for x in rows if x["trace"] == r["trace"] and x["bound"] == r["bound"] and x["method"] == "SZ3-best"]
        vs = f", x{r['ratio'] / sz[0]['ratio']:.3f} SZ3-best" if sz else ""
        out_console.print(f"{r['trace']} {r['bound_mode']} {r['bound']:g}: stateful {r['ratio']:.3f}, "
                          f"one-shot {r['one_shot_ratio']:.3f}{vs}", highlight=False)
    return 0


def _bench_gpu(args: argparse.Namespace, traces, out_console) -> int:
    import json

    from rich.table import Table

    from . import bench, bench_gpu

    repeats = max(args.repeats, 20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = bench.machine_info()

    def save(result: dict) -> None:  # after every trace and bound: a run cut short keeps its rows
        (out / "gpu.json").write_text(json.dumps({**result, "machine": machine}, indent=1))

    result = bench_gpu.run_gpu_bench(traces, args.bounds, args.mode, repeats=repeats, on_rows=save)
    save(result)
    table = Table(title=f"ebgc bench --gpu - {result['gpu']} (median of {repeats}, CUDA events)")
    for col in ("workload", "bound", "ratio", "compress GB/s", "decompress GB/s", "d2d copy GB/s"):
        table.add_column(col)
    for r in result["rows"]:
        if "cpu_stream_ratio" in r:  # a stream coded on the device
            table.add_row(r["workload"], f"{r['bound']:g}", f"{r['ratio']:.2f} ({r['ratio_vs_cpu']:.3f}x CPU stream)",
                          f"{r['encode_GBps']:.1f} (encode, wall)", "", "")
        elif "cpu_ratio" in r:  # ratio mode through the public API
            table.add_row(r["workload"], f"{r['bound']:g}", f"{r['ratio']:.2f} ({r['ratio_vs_cpu']:.3f}x CPU)",
                          f"{r['compress_GBps']:.0f} (wall)", f"{r['decompress_GBps']:.0f} (wall)", "")
        elif "compress_GBps" in r:
            table.add_row(r["workload"], f"{r['bound']:g}", f"{r['ratio']:.2f}", f"{r['compress_GBps']:.0f}",
                          f"{r['decompress_GBps']:.0f}", f"{r['copy_GBps']:.0f}")
        elif "decompress_from_device_blob_ms" in r:  # a blob made in and decoded from device memory
            table.add_row(r["workload"], f"{r['bound']:g}", f"{r['ratio']:.2f}",
                          f"{r['to_device_GBps']:.0f} (wall; to host bytes {r['compress_to_host_bytes_ms']:.2f} ms)",
                          f"{r['from_device_GBps']:.0f} (wall; from host bytes "
                          f"{r['decompress_from_host_bytes_ms']:.2f} ms)", "")
        else:  # a whole message: tensor by tensor and as one grid to host bytes, as one grid to device memory
            table.add_row(r["workload"], f"{r['bound']:g}", f"{r['ratio']:.2f}",
                          f"{r['api_compress_to_host_ms']:.3f} ms per tensor, "
                          f"{r['compress_many_to_host_ms']:.3f} ms as one grid, "
                          f"{r['compress_many_to_device_ms']:.3f} ms to device memory",
                          "", f"pinned D2H {r['pinned_d2h_copy_ms']:.3f} ms")
    out_console.print(table)
    out_console.print(f"wrote {out / 'gpu.json'}", highlight=False)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import bench

    out_console = Console(width=None if sys.stdout.isatty() else 140)
    err_console = Console(stderr=True)
    threads = args.threads or [1]
    if args.methods and [m.lower() for m in args.methods] == ["list"]:
        print("\n".join(bench.method_names(threads)))
        return 0
    methods = bench.make_methods(threads, include=args.methods)
    families = {m.family for m in methods}
    if not args.quiet and args.methods is None:
        missing = [peer for peer, fam in (("pysz (SZ3)", "SZ3"), ("zfpy (ZFP)", "ZFP"))
                   if fam not in families]
        if missing:
            err_console.print(f"note: {', '.join(missing)} not installed; those peers are skipped",
                              highlight=False)

    with contextlib.ExitStack() as stack:
        if args.traces:
            traces = [bench.load_trace(p) for p in args.traces]
        else:
            sample = stack.enter_context(bench.sample_path())
            traces = [bench.load_trace(sample, name="sample")]
            traces[0].path = "ebgc/data/sample.npz (shipped sample)"
    names = [t.name for t in traces]
    if len(set(names)) != len(names):  # same stem twice: keep them apart
        for i, t in enumerate(traces):
            t.name = f"{t.name}#{i}"

    if args.stateful:
        return _bench_stateful(args, traces, out_console, err_console)
    if args.gpu:
        return _bench_gpu(args, traces, out_console)
    rows = bench.run_bench(traces, bounds=args.bounds, mode=args.mode, methods=methods,
                           repeats=args.repeats, quiet=args.quiet, console=err_console)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = bench.machine_info()
    config = {
        "traces": [t.path or t.name for t in traces],
        "bound_mode": args.mode,
        "bounds": list(args.bounds),
        "repeats": args.repeats,
        "ebgc_threads": ["all" if t is None else t for t in threads],
        "methods": [m.name for m in methods],
        "raw_max_elements": bench.RAW_MAX_ELEMENTS,
    }
    csv_path = bench.write_csv(rows, out / "bench.csv", machine, config)
    json_path = bench.write_json(rows, out / "bench.json", machine, config)
    png_path: Path | None = out / "bench.png"
    try:
        bench.plot_results(rows, png_path)
    except ImportError as exc:
        err_console.print(f"note: no plot ({exc})", highlight=False)
        png_path = None

    title = (f"ebgc bench - {machine['cpu']}, ebgc threads "
             f"{', '.join(str(t) for t in config['ebgc_threads'])}, median of {args.repeats}")
    out_console.print(bench.results_table(rows, title=title))
    summ = bench.summarize(rows)
    for p in summ["per_trace_bound"]:
        out_console.print(f"{p['trace']} {p['bound_mode']} {p['bound']:g}: ebgc {p['ebgc_ratio']:.2f} "
                          f"vs {p['sz3_best']} {p['sz3_best_ratio']:.2f} -> "
                          f"x{p['ebgc_over_sz3_best']:.3f}", highlight=False)
    if summ["geomean_ebgc_over_sz3_best"] is not None:
        out_console.print(f"geometric mean ebgc / SZ3-best: {summ['geomean_ebgc_over_sz3_best']:.3f}",
                          highlight=False)
    written = [str(csv_path), str(json_path)] + ([str(png_path)] if png_path else [])
    out_console.print(f"wrote {', '.join(written)}", highlight=False)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise CliError(f"ebgc demo needs torch and scikit-learn ({exc}); "
                       "pip install torch==2.13.0 scikit-learn") from None
    from rich.console import Console
    from rich.table import Table

    from . import demo

    console = Console(stderr=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with console.status("training", spinner="dots") as status:
        rows = demo.run_demo(rounds=args.rounds, clients=args.clients, error_bound=args.error_bound,
                             raw_max=args.raw_max, threads=args.threads, budget=args.budget or None,
                             progress=None if args.quiet else status.update)
    table = Table(title=f"FedAvg on digits: {args.clients} non-IID clients, {args.rounds} rounds, "
                        f"REL bound {args.error_bound:g}")
    for col in ("uplink codec", "test accuracy", "uplink bytes", "fewer bytes than raw", "seconds"):
        table.add_column(col, justify="left" if col == "uplink codec" else "right")
    for r in rows:
        table.add_row(r["method"], f"{r['final_accuracy']:.3f}", f"{r['uplink_bytes']:,}",
                      f"{r['ratio']:.1f}x", f"{r['seconds']:.0f}")
    Console().print(table)
    (out / "demo.json").write_text(json.dumps(rows, indent=1))
    try:
        demo.plot_demo(rows, out / "demo.png")
        print(f"wrote {out / 'demo.json'} and {out / 'demo.png'}")
    except ImportError:
        print(f"wrote {out / 'demo.json'} (no plot: matplotlib missing)")
    return 0


def add_commands(sub) -> None:
    """Adds ``bench`` and ``demo`` to the CLI's subparsers."""
    b = sub.add_parser(
        "bench", help="benchmark ebgc against SZ3 / ZFP / fp16 on gradient traces",
        description="Benchmark ebgc against its peers (SZ3 via pysz, ZFP via zfpy, fp16 cast) "
                    "on gradient traces (.npz, keys r???/c?/param). Without a trace, the shipped "
                    "sample of real federated-learning updates is used. Writes DIR/bench.csv, "
                    "DIR/bench.json and DIR/bench.png.")
    b.add_argument("traces", nargs="*", metavar="TRACE.npz")
    b.add_argument("--bounds", type=positive_float, nargs="+", default=[1e-2, 1e-3],
                   metavar="EB", help="error bounds (default 1e-2 1e-3)")
    b.add_argument("--mode", choices=sorted(MODES), default="rel", help="bound mode (default rel)")
    b.add_argument("--repeats", type=positive_int, default=3,
                   help="timed passes; the median is reported (default 3)")
    b.add_argument("--threads", type=thread_count, nargs="+", default=None, metavar="N",
                   help="ebgc thread settings to time, e.g. '1 all' (default 1; peers run on one)")
    b.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help="only these methods or families. Families: ebgc SZ3 ZFP. Methods: ebgc, ebgc-fast "
                        "(bitpack), ebgc-nolr (no low-rank prediction), ebgc-context, ebgc-huffman (the last "
                        "three run only when named), SZ3-INTERP_LORENZO, SZ3-LORENZO_REG, SZ3-NOPRED, ZFP, "
                        "ZFP-1d, fp16 (the peers where pysz / zfpy are installed); a suffix @tN or @tall "
                        "names a --threads setting. 'list' prints what this machine has."),
    b.add_argument("--out", default="ebgc-bench", metavar="DIR",
                   help="output directory (default ./ebgc-bench)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    b.add_argument("--stateful", action="store_true",
                   help="benchmark the stateful codec (messages in order, separate decoder) "
                        "against ebgc one-shot and SZ3; writes stateful.{csv,json,png}")
    b.add_argument("--gpu", action="store_true",
                   help="benchmark the CUDA backend (device GB/s by CUDA events beside a device copy, "
                        "1 GiB and per tensor; >= 20 runs); writes gpu.json")
    b.set_defaults(func=_cmd_bench)

    from .demo import BUDGET as demo_budget, RAW_MAX  # the module needs torch only when it runs

    dm = sub.add_parser("demo", help="federated learning on digits: uncompressed vs SZ3 vs ebgc",
                        description="FedAvg on scikit-learn's digits (CPU torch), non-IID clients; the "
                                    "uplink goes raw, through SZ3 (if pysz is installed) and through "
                                    "ebgc streams. Prints a table; writes DIR/demo.json and DIR/demo.png.")
    dm.add_argument("--rounds", type=positive_int, default=12, help="FedAvg rounds (default 12)")
    dm.add_argument("--clients", type=positive_int, default=4, help="clients (default 4)")
    dm.add_argument("--error-bound", type=positive_float, default=2e-2, help="REL bound (default 2e-2)")
    dm.add_argument("--raw-max", type=int, default=RAW_MAX, metavar="N",
                    help=f"send tensors of <= N values raw for every codec (default {RAW_MAX}, the "
                         "bench protocol's policy; 0: every tensor through the codec)")
    dm.add_argument("--budget", type=int, default=demo_budget, metavar="BYTES",
                    help=f"slow-client row: each client's uplink bytes per round (default {demo_budget:,}, about "
                         "half of what the fixed bound sends; 0: no such row)")
    dm.add_argument("--threads", type=positive_int, default=1, metavar="N",
                    help="threads for training and coding (default 1: the run takes the same time however "
                         "busy the machine is)")
    dm.add_argument("--out", default="ebgc-demo", metavar="DIR", help="output directory (default ./ebgc-demo)")
    dm.add_argument("-q", "--quiet", action="store_true", help="no progress")
    dm.set_defaults(func=_cmd_demo)
