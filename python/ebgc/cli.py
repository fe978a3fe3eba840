"""The ``ebgc`` command line: compress / decompress / info / bench / demo.

    ebgc compress IN.npy OUT.ebgc --error-bound 1e-2 [--mode rel] [--coder auto] [--threads N]
    ebgc decompress IN.ebgc OUT.npy [--threads N]
    ebgc info IN.ebgc [--json]
    ebgc bench [TRACE.npz ...] [--bounds 1e-2 1e-3] [--mode rel] [--repeats 3] [--threads 1] [--gpu]
               [--methods NAME ...] [--out DIR] [--quiet]
    ebgc demo [--rounds 12] [--clients 4] [--error-bound 2e-2] [--raw-max 1024] [--out DIR]

Exit codes: 0 success, 1 an error ebgc or the file system reported (one line on stderr, no
traceback), 2 bad usage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import EbgcError
from .vocabulary import CODERS, MODES

__all__ = ["main"]



class CliError(Exception):
    """A user-facing problem found by the CLI itself (bad input file, bad option value)."""


def thread_count(value: str) -> int | None:
    """``N`` (>= 1) or ``all`` (all cores; ``0`` means the same)."""
    v = value.strip().lower()
    if v in ("all", "0"):
        return None
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a thread count or 'all', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"thread count must be >= 1 (or 'all'), got {n}")
    return n


def positive_float(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (f > 0 and math.isfinite(f)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {value!r}")
    return f


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def _load_npy(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise CliError(f"{path}: is an .npz archive; 'ebgc compress' takes one array in a .npy file")
    if magic != b"\x93NUMPY":
        raise CliError(f"{path}: not a .npy file")
    try:
        obj = np.load(path, allow_pickle=False)
    except (OSError, EbgcError):
        raise
    except Exception as exc:  # ValueError (pickled / not npy), EOFError, BadZipFile ...
        raise CliError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(obj, np.ndarray):
        with contextlib.suppress(Exception):
            obj.close()
        raise CliError(f"{path}: is an .npz archive; 'ebgc compress' takes one array in a .npy file")
    return obj


def _fmt_bytes(n: int) -> str:
    return f"{n:,} bytes"


def _fmt_shape(shape: Sequence[int]) -> str:
    shape = tuple(shape)
    if not shape:
        return "scalar"
    return " x ".join(str(int(s)) for s in shape)


def _ratio(raw: int, wire: int) -> str:
    return f"{raw / wire:.2f}x" if wire else "n/a"


# --------------------------------------------------------------------------------------------
# subcommands


def _cmd_compress(args: argparse.Namespace) -> int:
    import ebgc

    x = _load_npy(args.input)
    blob = ebgc.compress(x, args.error_bound, mode=args.mode, coder=args.coder, threads=args.threads)
    Path(args.output).write_bytes(blob)
    info = ebgc.info(blob)
    raw = int(info.get("raw_nbytes", x.nbytes))
    print(f"{args.input} -> {args.output}: {_fmt_bytes(raw)} -> {_fmt_bytes(len(blob))} "
          f"(ratio {_ratio(raw, len(blob))})")
    print(f"  {info.get('dtype', x.dtype)} [{_fmt_shape(info.get('shape', x.shape))}], "
          f"{info.get('mode', args.mode)} bound {args.error_bound:g} "
          f"(absolute {float(info.get('abs_bound', float('nan'))):.6g}), "
          f"coder {info.get('coder', args.coder)}, {int(info.get('n_outliers', 0)):,} outliers")
    return 0


def _save_npy(path: str, arr: np.ndarray) -> str:
    """Writes arr to a .npy file; bfloat16 (which .npy cannot hold) as float32, which holds every
    value exactly. Returns a note for the user."""
    note = ""
    if arr.dtype.name == "bfloat16":
        arr, note = arr.astype(np.float32), " (bfloat16 values, stored exactly as float32: .npy has no bfloat16)"
    with open(path, "wb") as f:
        np.save(f, np.asarray(arr), allow_pickle=False)
    return note


def _decompress_messages(args: argparse.Namespace, blobs: list) -> int:
    """Stream messages, in order, through one decoder; writes the last one's tensors to an .npz."""
    import ebgc

    if not args.output.endswith(".npz"):
        raise CliError("stream messages hold several tensors: the output must be an .npz file")
    dec = ebgc.GradientDecoder(threads=args.threads)
    for path, blob in blobs:
        if blob[:4] != b"EBGS":
            raise CliError(f"{path}: not a stream message (give one-shot blobs one at a time)")
        try:
            tensors = dec.decode(blob)
        except ebgc.StreamError as exc:
            raise CliError(f"{path}: {exc}. A predicted message decodes only after every message of its "
                           "stream since the last keyframe: give them all, in order "
                           "(ebgc decompress MSG0 MSG1 ... OUT.npz)") from None
    arrays = {k: (v.astype(np.float32) if v.dtype.name == "bfloat16" else v) for k, v in tensors.items()}
    np.savez(args.output, **arrays)
    raw = sum(v.nbytes for v in tensors.values())
    print(f"{blobs[-1][0]} -> {args.output}: {len(tensors)} tensors, {_fmt_bytes(len(blobs[-1][1]))} -> "
          f"{_fmt_bytes(raw)} (message {ebgc.info(blobs[-1][1])['sequence']} of its stream)")
    return 0


def _cmd_decompress(args: argparse.Namespace) -> int:
    import ebgc

    inputs = [args.input] + list(args.more[:-1])
    args.output = args.more[-1] if args.more else args.output
    blobs = [(p, Path(p).read_bytes()) for p in inputs]
    if blobs[0][1][:4] == b"EBGS" or len(blobs) > 1:
        return _decompress_messages(args, blobs)
    blob = blobs[0][1]
    arr = ebgc.decompress(blob, threads=args.threads)
    note = _save_npy(args.output, arr)
    print(f"{args.input} -> {args.output}: {arr.dtype} [{_fmt_shape(arr.shape)}], "
          f"{_fmt_bytes(len(blob))} -> {_fmt_bytes(arr.nbytes)}{note}")
    return 0


_INFO_ORDER = ("format_version", "dtype", "shape", "mode", "error_bound", "abs_bound", "coder",
               "n_outliers", "nbytes", "raw_nbytes")


def _info_message(args: argparse.Namespace, data: bytes) -> int:
    """`ebgc info` on a stream message (GradientEncoder output): its header and tensors."""
    import ebgc

    doc = ebgc.info(data)
    tensors = [{"name": name, "dtype": h["dtype"], "shape": list(h["shape"]), "coder": h["coder"],
                "predictor": h["predictor"], "error_bound": h["error_bound"], "abs_bound": h["abs_bound"],
                "nbytes": h["nbytes"], "raw_nbytes": h["raw_nbytes"]} for name, h in doc["tensors"].items()]
    doc = dict(doc, file=args.input, tensors=tensors)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{args.input}: stream message, {_fmt_bytes(len(data))}, ratio {_ratio(doc['raw_nbytes'], len(data))}")
    print(f"  stream {doc['stream_id']}  sequence {doc['sequence']}  {'keyframe' if doc['keyframe'] else 'predicted'}"
          f"  state digest {doc['state_digest']:08x}")
    for t in tensors:
        print(f"  {t['name']}: {t['dtype']} {_fmt_shape(tuple(t['shape']))}  {t['coder']}/{t['predictor']}"
              f"  bound {t['error_bound']:g} (absolute {t['abs_bound']:.4g})"
              f"  {_fmt_bytes(t['nbytes'])} (ratio {_ratio(t['raw_nbytes'], t['nbytes'])})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import ebgc

    blob = Path(args.input).read_bytes()
    if blob[:4] == b"EBGS":
        return _info_message(args, blob)
    info = dict(ebgc.info(blob))
    nbytes = int(info.get("nbytes", len(blob)))
    raw = info.get("raw_nbytes")
    if args.json:
        doc: dict[str, Any] = {"file": args.input, "file_bytes": len(blob)}
        for k, v in info.items():
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, np.generic):
                v = v.item()
            doc[k] = v
        if raw is not None and nbytes:
            doc["ratio"] = int(raw) / nbytes
        print(json.dumps(doc, indent=2, default=str))
        return 0
    shape = tuple(info.get("shape", ()))
    n_values = int(np.prod(shape)) if shape else 1
    mode = info.get("mode", "?")
    lines = [
        ("file", f"{args.input} ({_fmt_bytes(len(blob))})"),
        ("format version", str(info.get("format_version", "?"))),
        ("dtype", str(info.get("dtype", "?"))),
        ("shape", f"{_fmt_shape(shape)} ({n_values:,} values)"),
        ("bound mode", {"rel": "rel (eb x (max - min) of the finite values)",
                        "abs": "abs (|x - x'| <= eb)"}.get(mode, str(mode))),
        ("requested bound", f"{float(info.get('error_bound', float('nan'))):g}"),
        ("absolute bound", f"{float(info.get('abs_bound', float('nan'))):.6g}"),
        ("coder", str(info.get("coder", "?"))),
        ("outliers", f"{int(info.get('n_outliers', 0)):,} (stored exactly)"),
        ("compressed size", _fmt_bytes(nbytes)),
    ]
    if raw is not None:
        lines.append(("uncompressed size", _fmt_bytes(int(raw))))
        lines.append(("ratio", _ratio(int(raw), nbytes)))
    extra_labels = {"predictor": "predictor", "chunk_elements": "chunk size (values)",
                    "payload_nbytes": "payload size"}
    for k, v in info.items():  # what else the core reports
        if k in _INFO_ORDER or k == "ratio":
            continue
        if k.endswith("nbytes") and isinstance(v, (int, np.integer)):
            v = _fmt_bytes(int(v))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            v = f"{int(v):,}"
        lines.insert(-3 if raw is not None else len(lines), (extra_labels.get(k, k.replace("_", " ")), str(v)))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}} : {v}")
    return 0


# --------------------------------------------------------------------------------------------
# parser and entry point


def _build_parser() -> argparse.ArgumentParser:
    try:
        from . import __version__ as version
    except ImportError:
        version = "unknown"
    p = argparse.ArgumentParser(
        prog="ebgc",
        description="Error-bounded lossy compression for neural-network gradients.",
    )
    p.add_argument("--version", action="version", version=f"ebgc {version}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compress", help="compress one array (.npy) into an .ebgc blob",
                       description="Compress one float32/float64/float16 array from a .npy file.")
    c.add_argument("input", metavar="IN.npy")
    c.add_argument("output", metavar="OUT.ebgc")
    c.add_argument("-e", "--error-bound", type=float, required=True,
                   help="error bound: relative to max - min (rel) or absolute (abs)")
    c.add_argument("--mode", choices=sorted(MODES), default="rel", help="bound mode (default rel)")
    c.add_argument("--coder", choices=sorted(CODERS), default="auto", help="entropy coder (default auto)")
    c.add_argument("--threads", type=thread_count, default=None, metavar="N",
                   help="worker threads, or 'all' (default all cores)")
    c.set_defaults(func=_cmd_compress)

    d = sub.add_parser("decompress", help="decompress an .ebgc blob (or stream messages) into .npy (.npz)",
                       description="Decompress an .ebgc blob into a .npy file; or stream messages (GradientEncoder "
                                   "output), given in order from the stream's last keyframe, into an .npz file of "
                                   "the last message's tensors.")
    d.add_argument("input", metavar="IN")
    d.add_argument("more", nargs="*", metavar="[IN ...] OUT", help="more stream messages, then the output")
    d.add_argument("output", nargs="?", default=None, help=argparse.SUPPRESS)
    d.add_argument("--threads", type=thread_count, default=None, metavar="N",
                   help="worker threads, or 'all' (default all cores)")
    d.set_defaults(func=_cmd_decompress)

    i = sub.add_parser("info", help="describe an .ebgc blob (header only)",
                       description="Print what an .ebgc blob's header says.")
    i.add_argument("input", metavar="IN.ebgc")
    i.add_argument("--json", action="store_true", help="print the header as JSON")
    i.set_defaults(func=_cmd_info)

    from .tools.commands import add_commands  # bench and demo

    add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 error, 2 usage)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from .tools.bench import BenchError

    try:
        return int(args.func(args))
    except (EbgcError, CliError, BenchError) as exc:
        print(f"ebgc {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"ebgc {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ebgc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
