"""Benchmark engine: ebgc against its peers on real gradient traces.

Importable, no command-line parsing (``ebgc bench`` in :mod:`ebgc.cli` is the front end).
The protocol (see ``bench/README.md``):

* A *trace* is an ``.npz`` of float tensors keyed ``r{round:03d}/c{client}/{param}``.  A *message*
  is every tensor of one round of one client (keys grouped by their ``r???/c?`` prefix), i.e. one
  whole-model update as a client would send it.
* Ratio = raw bytes of all tensors / bytes on the wire, summed over the whole trace.  Tensors with
  ``<= 1024`` elements are sent raw (their ``nbytes`` count on the wire) by every method.
* Bounds: ``rel`` (absolute bound = eb * (max - min) of the tensor's finite values, as SZ3's REL)
  or ``abs``.  Peers get exactly the same absolute bound, computed by this module.
* Every reconstruction is checked in float64 (NaN/Inf-safe): the worst ``max|x - y| / bound`` and
  the number of tensors (and values) over the bound are reported.  Peers that violate or fail are
  reported, never fatal.
* Throughput = uncompressed bytes of the trace / seconds spent encoding (decoding) all its
  messages, median over ``repeats`` timed passes after one untimed warm-up/verification pass.
  Methods are interleaved message by message inside each pass (with a rotating order), so a noisy
  machine slows every method alike.

Main entry points: :func:`load_trace`, :func:`sample_path`, :func:`make_methods`,
:func:`run_bench`, :func:`summarize`, :func:`machine_info`, :func:`write_csv`,
:func:`write_json`, :func:`plot_results`, :func:`results_table`.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "RAW_MAX_ELEMENTS",
    "DEFAULT_BOUNDS",
    "SZ3_ALGORITHMS",
    "RESULT_FIELDS",
    "BenchError",
    "Trace",
    "Method",
    "load_trace",
    "sample_path",
    "abs_bound",
    "check_error",
    "make_methods",
    "run_bench",
    "summarize",
    "machine_info",
    "write_csv",
    "write_json",
    "plot_results",
    "results_table",
]

#: Tensors with at most this many elements are sent raw by every method.
RAW_MAX_ELEMENTS = 1024
DEFAULT_BOUNDS = (1e-2, 1e-3)
#: SZ3 algorithms benchmarked through pysz (names of ``pysz.szAlgorithm`` members).
SZ3_ALGORITHMS = ("INTERP_LORENZO", "INTERP", "LORENZO_REG", "NOPRED")

#: The documented columns of a result row (rows carry a few more, see :func:`run_bench`).
RESULT_FIELDS = (
    "trace", "bound_mode", "bound", "method", "ratio", "raw_bytes", "wire_bytes",
    "max_err_over_bound", "violations", "compress_MBps", "decompress_MBps",
)
EXTRA_FIELDS = (
    "family", "threads", "detail", "violating_values", "failures", "messages", "tensors",
    "repeats", "compress_s", "decompress_s",
)

_MSG_KEY = re.compile(r"^(r\d+/c\d+)/(.+)$")


class BenchError(ValueError):
    """A trace that cannot be benchmarked (unreadable, empty, non-float data) or a bad option."""


# --------------------------------------------------------------------------------------------
# traces


@dataclass
class Trace:
    """A named sequence of messages; each message is a list of (tensor name, array)."""

    name: str
    messages: list[tuple[str, list[tuple[str, np.ndarray]]]]
    path: str = ""

    @property
    def raw_bytes(self) -> int:
        return sum(a.nbytes for _, tensors in self.messages for _, a in tensors)

    @property
    def n_tensors(self) -> int:
        return sum(len(t) for _, t in self.messages)


def _msg_sort_key(msg_id: str):
    m = re.match(r"^r(\d+)/c(\d+)$", msg_id)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), msg_id)
    return (1, 0, 0, msg_id)


def _check_array(key: str, a: np.ndarray) -> np.ndarray:
    if a.dtype not in (np.float32, np.float64):
        raise BenchError(f"tensor {key!r} has dtype {a.dtype}; traces must hold float32/float64 arrays")
    return np.ascontiguousarray(a)


def load_trace(path: str | os.PathLike, name: str | None = None) -> Trace:
    """Load a trace from an ``.npz`` (keys ``r???/c?/param`` form messages) or a single ``.npy``.

    Keys without the ``r???/c?/`` prefix are grouped by everything before their last ``/``; keys
    with no ``/`` at all form one message called ``all``.
    """
    p = Path(path)
    tname = name or p.stem
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic[:4] != b"PK\x03\x04" and magic != b"\x93NUMPY":
        raise BenchError(f"{p}: not a trace (a .npz archive of float arrays, or one .npy array)")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # not an npy/npz, pickled, truncated
        raise BenchError(f"{p}: not a readable .npy/.npz file ({exc})") from exc
    except OSError:
        raise
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise BenchError(f"{p}: not a readable .npy/.npz file ({exc})") from exc
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    if isinstance(loaded, np.ndarray):
        groups["all"] = [(tname, _check_array(tname, loaded))]
    else:
        with loaded:
            try:
                for key in loaded.files:
                    arr = loaded[key]
                    m = _MSG_KEY.match(key)
                    if m:
                        msg, tensor = m.group(1), m.group(2)
                    elif "/" in key:
                        msg, tensor = key.rsplit("/", 1)
                    else:
                        msg, tensor = "all", key
                    groups.setdefault(msg, []).append((tensor, _check_array(key, arr)))
            except BenchError:
                raise
            except (ValueError, EOFError, OSError) as exc:
                raise BenchError(f"{p}: cannot read array ({exc})") from exc
            except Exception as exc:
                raise BenchError(f"{p}: cannot read array ({exc})") from exc
    if not groups:
        raise BenchError(f"{p}: the trace holds no arrays")
    messages = [(m, groups[m]) for m in sorted(groups, key=_msg_sort_key)]
    return Trace(name=tname, messages=messages, path=str(p))


@contextlib.contextmanager
def sample_path():
    """Context manager yielding a filesystem path of the shipped sample ``ebgc/data/sample.npz``."""
    try:
        from importlib.resources import as_file, files

        res = files("ebgc.data").joinpath("sample.npz")
        if res.is_file():
            with as_file(res) as p:
                yield Path(p)
            return
    except (ImportError, ModuleNotFoundError, FileNotFoundError, TypeError, AttributeError):
        pass
    p = Path(__file__).resolve().parent / "data" / "sample.npz"
    if not p.is_file():
        raise FileNotFoundError(f"the shipped sample trace is missing ({p})")
    yield p


# --------------------------------------------------------------------------------------------
# bounds and error checks


def abs_bound(x: np.ndarray, eb: float, mode: str) -> float:
    """Absolute bound for ``x``: ``eb`` (abs) or ``eb * (max - min)`` of the finite values (rel)."""
    if mode == "abs":
        return float(eb)
    if mode != "rel":
        raise BenchError(f"unknown bound mode {mode!r} (use 'rel' or 'abs')")
    if x.size == 0:
        return 0.0
    lo, hi = x.min(), x.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        fin = x[np.isfinite(x)]
        if fin.size == 0:
            return 0.0
        lo, hi = fin.min(), fin.max()
    return float(eb) * (float(hi) - float(lo))


def check_error(x: np.ndarray, y: Any, bound: float) -> tuple[float, int]:
    """Return (max |x - y| in float64, number of values over ``bound``).

    NaN must come back as NaN and +-Inf as the same infinity; anything else at those positions,
    a NaN/Inf produced from a finite value, or a wrong shape counts as an infinite error.
    """
    y = np.asarray(y)
    if y.shape != x.shape:
        if y.size != x.size:
            return math.inf, int(x.size)
        y = y.reshape(x.shape)
    x64 = x.astype(np.float64, copy=False)
    y64 = y.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(x64 - y64)
    finite_x = np.isfinite(x64)
    if finite_x.all():
        bad = ~np.isfinite(d)
        n_bad = int(bad.sum())
        if n_bad:
            d = np.where(bad, 0.0, d)
        err = float(d.max()) if d.size else 0.0
        over = int((d > bound).sum()) + n_bad
        return (math.inf if n_bad else err), over
    # non-finite inputs: NaN <-> NaN, Inf <-> same Inf
    xn, yn = x64[~finite_x], y64[~finite_x]
    same = (np.isnan(xn) & np.isnan(yn)) | (xn == yn)
    n_bad = int((~same).sum())
    df = d[finite_x]
    bad_f = ~np.isfinite(df)
    n_bad += int(bad_f.sum())
    df = np.where(bad_f, 0.0, df)
    err = float(df.max()) if df.size else 0.0
    over = int((df > bound).sum()) + n_bad
    return (math.inf if n_bad else err), over


def _err_over_bound(err: float, bound: float) -> float:
    if bound > 0:
        return err / bound
    return 0.0 if err == 0 else math.inf


# --------------------------------------------------------------------------------------------
# methods


@dataclass
class Method:
    """One codec under test.

    ``compress(x, eb, mode)`` -> payload (bytes-like); it must work out the absolute bound itself
    (via :func:`abs_bound` for peers), so that this work is timed like ebgc's.
    ``decompress(payload, shape, dtype)`` -> array.
    """

    name: str
    family: str
    compress: Callable[[np.ndarray, float, str], Any]
    decompress: Callable[[Any, tuple, np.dtype], np.ndarray]
    error_bounded: bool = True
    threads: Any = 1
    detail: str = ""
    by_default: bool = True  # False: runs only when named in ``include`` / ``--methods``


# ebgc's settings under test: name, coder, low_rank, run by default. The others place each coder on
# the ratio / speed curve when named (``--methods ebgc-context ebgc-huffman``).
EBGC_VARIANTS = (
    ("ebgc", "auto", True, True),
    ("ebgc-fast", "bitpack", True, True),
    ("ebgc-nolr", "auto", False, False),
    ("ebgc-context", "context", True, False),
    ("ebgc-huffman", "huffman", True, False),
)


def _ebgc_methods(threads: Sequence[int | None]) -> list[Method]:
    import ebgc

    out: list[Method] = []
    for i, t in enumerate(threads):
        suffix = "" if i == 0 else ("@tall" if t is None else f"@t{t}")
        tlabel = "all" if t is None else int(t)
        for name, coder, low_rank, by_default in EBGC_VARIANTS:
            def comp(x, eb, mode, _c=coder, _t=t, _lr=low_rank):
                return ebgc.compress(x, eb, mode=mode, coder=_c, threads=_t, low_rank=_lr)

            def decomp(blob, shape, dtype, _t=t):
                return ebgc.decompress(blob, threads=_t)

            detail = f"coder={coder}" + ("" if low_rank else " low_rank=False")
            out.append(Method(name + suffix, "ebgc", comp, decomp, True, tlabel, detail, by_default))
    return out


def _sz3_methods() -> list[Method]:
    try:
        import pysz
    except ImportError:
        return []
    out = []
    for algo_name in SZ3_ALGORITHMS:
        algo = getattr(pysz.szAlgorithm, algo_name, None)
        if algo is None:
            continue

        def comp(x, eb, mode, _algo=algo):
            ab = abs_bound(x, eb, mode)
            cfg = pysz.szConfig(x.shape)
            cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
            cfg.absErrorBound = ab
            cfg.cmprAlgo = _algo
            if hasattr(cfg, "openmp"):
                cfg.openmp = False
            buf, _ = pysz.sz.compress(np.ascontiguousarray(x), cfg)
            return buf

        def decomp(buf, shape, dtype):
            y, _ = pysz.sz.decompress(buf, dtype, shape)
            return y

        out.append(Method(f"SZ3-{algo_name}", "SZ3", comp, decomp, True, 1, f"pysz ABS, {algo_name}"))
    return out


def _zfp_shape(shape: tuple) -> tuple:
    if len(shape) <= 3:
        return shape
    return (shape[0], shape[1], int(np.prod(shape[2:])))


def _zfp_methods() -> list[Method]:
    try:
        import zfpy
    except ImportError:
        return []

    def comp(x, eb, mode):
        ab = abs_bound(x, eb, mode)
        return zfpy.compress_numpy(np.ascontiguousarray(x).reshape(_zfp_shape(x.shape)), tolerance=ab)

    def decomp(buf, shape, dtype):
        return zfpy.decompress_numpy(buf).reshape(shape)

    def comp1(x, eb, mode):
        ab = abs_bound(x, eb, mode)
        return zfpy.compress_numpy(np.ascontiguousarray(x).reshape(-1), tolerance=ab)

    return [
        Method("ZFP", "ZFP", comp, decomp, True, 1, "accuracy mode, <=3-D (O, I, H*W)"),
        Method("ZFP-1d", "ZFP", comp1, decomp, True, 1, "accuracy mode, flattened"),
    ]


def _fp16_method() -> Method:
    def comp(x, eb, mode):
        return x.astype(np.float16).tobytes()

    def decomp(buf, shape, dtype):
        return np.frombuffer(buf, dtype=np.float16).astype(dtype).reshape(shape)

    return Method("fp16", "reference", comp, decomp, False, 1, "cast, not error-bounded")


def make_methods(threads: Sequence[int | None] = (1,), include: Iterable[str] | None = None) -> list[Method]:
    """The methods available here: ebgc (+ebgc-fast) per thread setting, SZ3 algorithms and ZFP
    when pysz / zfpy import, and the fp16 cast.  ``include`` filters by name or family
    (case-insensitive; "SZ3" selects every SZ3 algorithm). The other ebgc settings of
    :data:`EBGC_VARIANTS` (ebgc-nolr, ebgc-context, ebgc-huffman) run only when named."""
    if not threads:
        threads = (1,)
    methods = _ebgc_methods(threads) + _sz3_methods() + _zfp_methods() + [_fp16_method()]
    if include is None:
        return [m for m in methods if m.by_default]
    want = {s.lower() for s in include}
    # A family name selects its default members; a method's own name selects it in any case.
    known = {m.name.lower() for m in methods} | {m.family.lower() for m in methods}
    unknown = sorted(want - known)
    if unknown:
        raise BenchError(f"unknown method {', '.join(unknown)}; this machine has: {', '.join(method_names(threads))}")
    return [m for m in methods if m.name.lower() in want or (m.by_default and m.family.lower() in want)]


def method_names(threads: Sequence[int | None] = (1,)) -> list[str]:
    """Every method and family name ``--methods`` accepts here (peers only where they import)."""
    methods = _ebgc_methods(threads) + _sz3_methods() + _zfp_methods() + [_fp16_method()]
    families = sorted({m.family for m in methods} - {"reference"})
    return list(dict.fromkeys(families + [m.name for m in methods]))


# --------------------------------------------------------------------------------------------
# the run


def _nbytes(payload: Any) -> int:
    if isinstance(payload, (bytes, bytearray)):
        return len(payload)
    return memoryview(payload).nbytes


@dataclass
class _Acc:
    wire: int = 0
    worst: float = 0.0
    violations: int = 0
    violating_values: int = 0
    failures: int = 0
    ctimes: list = field(default_factory=list)
    dtimes: list = field(default_factory=list)


def _encode_message(m: Method, tensors, eb, mode, failures: list | None):
    payloads = []
    for key, x in tensors:
        if x.size <= RAW_MAX_ELEMENTS:
            payloads.append(x.tobytes())
            continue
        try:
            payloads.append(m.compress(x, eb, mode))
        except Exception as exc:  # a peer that cannot do this tensor: it goes raw, reported
            if failures is None:
                raise
            failures.append((key, f"compress: {type(exc).__name__}: {exc}"))
            payloads.append(None)
    return payloads


def _decode_message(m: Method, tensors, payloads, failures: list | None):
    outs = []
    for (key, x), p in zip(tensors, payloads):
        if x.size <= RAW_MAX_ELEMENTS or p is None:
            outs.append(None if p is None else np.frombuffer(p, dtype=x.dtype).reshape(x.shape))
            continue
        try:
            outs.append(m.decompress(p, x.shape, x.dtype))
        except Exception as exc:
            if failures is None:
                raise
            failures.append((key, f"decompress: {type(exc).__name__}: {exc}"))
            outs.append(False)
    return outs


def _verify_pass(m: Method, trace: Trace, eb: float, mode: str, acc: _Acc, log: list) -> None:
    for _, tensors in trace.messages:
        fails: list = []
        payloads = _encode_message(m, tensors, eb, mode, fails)
        outs = _decode_message(m, tensors, payloads, fails)
        for (key, x), p, y in zip(tensors, payloads, outs):
            if p is None:  # compress failed: the tensor goes raw
                acc.wire += x.nbytes
                acc.failures += 1
                continue
            acc.wire += _nbytes(p)
            if y is False:  # decompress failed: nothing usable came back
                acc.failures += 1
                acc.violations += 1
                acc.violating_values += int(x.size)
                acc.worst = math.inf
                continue
            bound = abs_bound(x, eb, mode)
            err, over = check_error(x, y, bound)
            acc.worst = max(acc.worst, _err_over_bound(err, bound))
            if over:
                acc.violations += 1
                acc.violating_values += over
        log.extend(fails)


def run_bench(
    traces: Sequence[Trace | str | os.PathLike],
    bounds: Sequence[float] = DEFAULT_BOUNDS,
    mode: str = "rel",
    *,
    methods: Sequence[Method] | None = None,
    repeats: int = 3,
    threads: Sequence[int | None] = (1,),
    quiet: bool = False,
    console: Any = None,
) -> list[dict]:
    """Run the benchmark; return one dict per (trace, bound, method), plus an ``SZ3-best`` row per
    (trace, bound) when SZ3 ran.

    Each row has :data:`RESULT_FIELDS` plus ``family, threads, detail, violating_values, failures,
    messages, tensors, repeats, compress_s, decompress_s`` (median seconds for the whole trace).
    ``violations`` counts tensors with some value over the bound; ``failures`` counts tensors a
    method could not encode (sent raw instead) or decode.
    """
    if mode not in ("rel", "abs"):
        raise BenchError(f"unknown bound mode {mode!r} (use 'rel' or 'abs')")
    bounds = [float(b) for b in bounds]
    if not bounds or any(not (b > 0 and math.isfinite(b)) for b in bounds):
        raise BenchError(f"bounds must be positive finite numbers, got {bounds}")
    if repeats < 1:
        raise BenchError("repeats must be >= 1")
    loaded = [t if isinstance(t, Trace) else load_trace(t) for t in traces]
    if not loaded:
        raise BenchError("no trace to benchmark")
    if methods is None:
        methods = make_methods(threads)
    methods = list(methods)
    if not methods:
        raise BenchError("no method to benchmark")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if console is None:
        console = Console(stderr=True)
    disable = quiet or not console.is_terminal
    total = sum(len(t.messages) for t in loaded) * len(bounds) * (repeats + 1)
    rows: list[dict] = []
    fail_log: list = []
    progress = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=disable, transient=True,
    )
    with progress:
        task = progress.add_task("bench", total=total)
        for trace in loaded:
            raw = trace.raw_bytes
            for eb in bounds:
                accs = {m.name: _Acc() for m in methods}
                label = f"{trace.name} {mode} {eb:g}"
                # pass 0: warm-up, sizes, verification (untimed)
                progress.update(task, description=f"{label} verify")
                for m in methods:
                    _verify_pass(m, trace, eb, mode, accs[m.name], fail_log)
                    progress.advance(task, len(trace.messages) / len(methods))
                # timed passes, methods interleaved per message, order rotating
                for rep in range(repeats):
                    progress.update(task, description=f"{label} pass {rep + 1}/{repeats}")
                    ct = {m.name: 0.0 for m in methods}
                    dt = {m.name: 0.0 for m in methods}
                    for i, (_, tensors) in enumerate(trace.messages):
                        k = (rep + i) % len(methods)
                        for m in methods[k:] + methods[:k]:
                            t0 = time.perf_counter()
                            payloads = _encode_message(m, tensors, eb, mode, [])
                            t1 = time.perf_counter()
                            _decode_message(m, tensors, payloads, [])
                            t2 = time.perf_counter()
                            ct[m.name] += t1 - t0
                            dt[m.name] += t2 - t1
                            del payloads
                        progress.advance(task, 1)
                    for m in methods:
                        accs[m.name].ctimes.append(ct[m.name])
                        accs[m.name].dtimes.append(dt[m.name])
                group = []
                for m in methods:
                    a = accs[m.name]
                    cs = statistics.median(a.ctimes)
                    ds = statistics.median(a.dtimes)
                    group.append({
                        "trace": trace.name,
                        "bound_mode": mode,
                        "bound": eb,
                        "method": m.name,
                        "ratio": raw / a.wire if a.wire else math.inf,
                        "raw_bytes": raw,
                        "wire_bytes": a.wire,
                        "max_err_over_bound": a.worst,
                        "violations": a.violations,
                        "compress_MBps": raw / cs / 1e6 if cs > 0 else math.inf,
                        "decompress_MBps": raw / ds / 1e6 if ds > 0 else math.inf,
                        "family": m.family,
                        "threads": m.threads,
                        "detail": m.detail,
                        "violating_values": a.violating_values,
                        "failures": a.failures,
                        "messages": len(trace.messages),
                        "tensors": trace.n_tensors,
                        "repeats": repeats,
                        "compress_s": cs,
                        "decompress_s": ds,
                    })
                sz = [r for r in group if r["family"] == "SZ3"]
                if sz:
                    best = max(sz, key=lambda r: r["ratio"])
                    row = dict(best)
                    row["method"] = "SZ3-best"
                    row["detail"] = f"best SZ3 algorithm here: {best['method']}"
                    idx = max(i for i, r in enumerate(group) if r["family"] == "SZ3")
                    group.insert(idx + 1, row)
                rows.extend(group)
    if fail_log and not quiet:
        shown = fail_log[:5]
        for key, why in shown:
            console.print(f"[yellow]warning:[/] {key}: {why}", highlight=False)
        if len(fail_log) > len(shown):
            console.print(f"[yellow]warning:[/] ... {len(fail_log) - len(shown)} more failures", highlight=False)
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    """Per (trace, bound): ebgc / SZ3-best ratio; and their geometric mean over all of them."""
    pairs = {}
    for r in rows:
        key = (r["trace"], r["bound_mode"], r["bound"])
        pairs.setdefault(key, {})[r["method"]] = r
    per = []
    for (trace, bmode, bound), d in pairs.items():
        if "ebgc" in d and "SZ3-best" in d and d["SZ3-best"]["ratio"] > 0:
            per.append({
                "trace": trace, "bound_mode": bmode, "bound": bound,
                "ebgc_ratio": d["ebgc"]["ratio"], "sz3_best_ratio": d["SZ3-best"]["ratio"],
                "sz3_best": d["SZ3-best"]["detail"].rsplit(": ", 1)[-1],
                "ebgc_over_sz3_best": d["ebgc"]["ratio"] / d["SZ3-best"]["ratio"],
            })
    geo = None
    vals = [p["ebgc_over_sz3_best"] for p in per if p["ebgc_over_sz3_best"] > 0
            and math.isfinite(p["ebgc_over_sz3_best"])]
    if vals:
        geo = math.exp(sum(math.log(v) for v in vals) / len(vals))
    return {"per_trace_bound": per, "geomean_ebgc_over_sz3_best": geo}


# --------------------------------------------------------------------------------------------
# machine info and output files


def _version(dist: str, module: str | None = None) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        pass
    if module:
        try:
            mod = __import__(module)
            return getattr(mod, "__version__", None)
        except Exception:
            return None
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict:
    """Machine, versions and date, for the header of the result files."""
    try:
        import ebgc

        ebgc_version = getattr(ebgc, "__version__", None)
    except Exception:
        ebgc_version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ebgc": ebgc_version,
        "pysz": _version("pysz"),
        "zfpy": _version("zfpy", "zfpy"),
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else ("inf" if f > 0 else "-inf" if f < 0 else "nan")
    return v


def write_json(rows: Sequence[dict], path: str | os.PathLike, machine: dict | None = None,
               config: dict | None = None) -> Path:
    """``{"machine": ..., "config": ..., "summary": ..., "results": [...]}``; non-finite numbers
    are written as the strings "inf" / "nan"."""
    doc = {
        "machine": machine if machine is not None else machine_info(),
        "config": config or {},
        "summary": summarize(rows),
        "results": list(rows),
    }
    p = Path(path)
    p.write_text(json.dumps(_jsonable(doc), indent=2) + "\n", encoding="utf-8")
    return p


def write_csv(rows: Sequence[dict], path: str | os.PathLike, machine: dict | None = None,
              config: dict | None = None) -> Path:
    """CSV of the rows, preceded by ``# key: value`` comment lines (machine info and config)."""
    machine = machine if machine is not None else machine_info()
    p = Path(path)
    cols = list(RESULT_FIELDS) + [c for c in EXTRA_FIELDS]
    extra = sorted({k for r in rows for k in r} - set(cols))
    cols += extra
    with p.open("w", newline="", encoding="utf-8") as f:
        f.write("# ebgc bench results\n")
        for k, v in machine.items():
            f.write(f"# {k}: {v}\n")
        for k, v in (config or {}).items():
            f.write(f"# {k}: {v}\n")
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) and math.isfinite(v) else v)
                        for k, v in r.items()})
    return p


def _group_label(r: dict) -> str:
    return f"{r['trace']}\n{r['bound_mode']} {r['bound']:g}"


def plot_results(rows: Sequence[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """PNG with (top) ratio per method as grouped bars per trace/bound and (bottom) ratio versus
    compress throughput, one point per method and trace/bound."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups: list[str] = []
    methods: list[str] = []
    for r in rows:
        g = _group_label(r)
        if g not in groups:
            groups.append(g)
        if r["method"] not in methods:
            methods.append(r["method"])
    lookup = {(_group_label(r), r["method"]): r for r in rows}
    cmap = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
    colors = {m: cmap(i % cmap.N) for i, m in enumerate(methods)}

    width_in = max(8.0, 1.0 + 0.35 * len(methods) * len(groups))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(min(width_in, 30.0), 10.0))
    n = len(methods)
    bar_w = 0.8 / max(n, 1)
    xs = np.arange(len(groups))
    for j, m in enumerate(methods):
        vals = [lookup[(g, m)]["ratio"] if (g, m) in lookup else np.nan for g in groups]
        viol = [lookup[(g, m)]["violations"] if (g, m) in lookup else 0 for g in groups]
        pos = xs - 0.4 + bar_w * (j + 0.5)
        bars = ax1.bar(pos, vals, bar_w, label=m, color=colors[m], edgecolor="black", linewidth=0.4)
        for b, v in zip(bars, viol):
            if v:
                b.set_hatch("//")
    ax1.set_xticks(xs)
    ax1.set_xticklabels(groups, fontsize=8)
    ax1.set_ylabel("compression ratio (raw / wire)")
    ax1.set_title(title or "ebgc bench: whole-trace ratio (hatched = bound violated)")
    ax1.grid(axis="y", alpha=0.3)
    top = max((r["ratio"] for r in rows if math.isfinite(r["ratio"])), default=1.0)
    ax1.set_ylim(0, top * 1.3)
    ax1.legend(fontsize=7, ncol=min(n, 5), loc="upper center")

    markers = "os^Dv<>Pp*hX"
    bound_keys: list[str] = []
    for r in rows:
        bk = f"{r['bound_mode']} {r['bound']:g}"
        if bk not in bound_keys:
            bound_keys.append(bk)
    for r in rows:
        bk = f"{r['bound_mode']} {r['bound']:g}"
        x = r["compress_MBps"]
        if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0):
            continue
        ax2.scatter(x, r["ratio"], color=colors[r["method"]],
                    marker=markers[bound_keys.index(bk) % len(markers)], s=40,
                    edgecolors="black", linewidths=0.4)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[m], marker="o", linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="white", markeredgecolor="black", marker=markers[i % len(markers)],
                       linestyle="", label=bk) for i, bk in enumerate(bound_keys)]
    ax2.legend(handles=handles, fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax2.set_xscale("log")
    ax2.set_xlabel("compress throughput (MB/s, uncompressed bytes)")
    ax2.set_ylabel("compression ratio")
    ax2.set_title("ratio vs compress speed")
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def _fmt(v: Any, spec: str) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else "nan"
    return format(v, spec)


def results_table(rows: Sequence[dict], title: str | None = None):
    """A rich Table of the rows; the best ratio of each trace/bound among the methods that kept
    the bound is bold green, violations are red."""
    from rich.table import Table

    show_fail = any(r.get("failures") for r in rows)
    table = Table(title=title, show_lines=False)
    table.add_column("trace")
    table.add_column("bound")
    table.add_column("method")
    table.add_column("ratio", justify="right")
    table.add_column("max err/bound", justify="right")
    table.add_column("violations", justify="right")
    if show_fail:
        table.add_column("failures", justify="right")
    table.add_column("compress MB/s", justify="right")
    table.add_column("decompress MB/s", justify="right")
    best: dict = {}
    for r in rows:
        if r["violations"] or r.get("failures"):
            continue
        k = (r["trace"], r["bound_mode"], r["bound"])
        if r["ratio"] > best.get(k, -1.0):
            best[k] = r["ratio"]
    prev = None
    for r in rows:
        k = (r["trace"], r["bound_mode"], r["bound"])
        if prev is not None and k != prev:
            table.add_section()
        prev = k
        ratio = _fmt(r["ratio"], ".2f")
        if k in best and r["ratio"] == best[k]:
            ratio = f"[bold green]{ratio}[/]"
        method = r["method"]
        if r["method"] == "SZ3-best":
            method = f"SZ3-best ({r['detail'].rsplit(': SZ3-', 1)[-1]})"
        viol = str(r["violations"])
        if r["violations"]:
            viol = f"[red]{viol}[/]"
        cells = [r["trace"], f"{r['bound_mode']} {r['bound']:g}", method, ratio,
                 _fmt(r["max_err_over_bound"], ".3f"), viol]
        if show_fail:
            cells.append(str(r.get("failures", 0)))
        cells += [_fmt(r["compress_MBps"], ".1f"), _fmt(r["decompress_MBps"], ".1f")]
        table.add_row(*cells)
    return table
