#!/usr/bin/env python3
"""SHA-256 digests of everything ebgc writes, so that two builds can be compared byte for byte.

Compresses a set of inputs under a fixed grid of settings with the ebgc that Python imports
(select the build with PYTHONPATH) and writes a JSON manifest; ``--check`` recomputes and compares
with a manifest written earlier, ``--compare`` compares two manifests. Only the public API of
ebgc is used (``ebgc.compress``, ``ebgc.decompress``, ``ebgc.GradientEncoder``,
``ebgc.GradientDecoder``), except for the optional ``chunk_log2`` fixture cases (see below).

    # baseline, committed as tests/fixtures/blob_digests.json (checked by tests/test_byte_identity.py)
    PYTHONPATH=/work/baseline/python python tools/blob_digests.py --sample --fixtures \\
        --out tests/fixtures/blob_digests.json
    # a real trace (per-message and per-tensor digests of the whole grid)
    PYTHONPATH=... python tools/blob_digests.py --trace ../shared/data/fl-vgg-digits.npz --out d.json
    # after a change: recompute with the new build, compare, list the first mismatches
    PYTHONPATH=python python tools/blob_digests.py --sample --fixtures --check tests/fixtures/blob_digests.json
    python tools/blob_digests.py --compare old.json new.json

Inputs (``--trace`` / ``--sample`` / ``--fixtures``)
  * a trace ``.npz``, keys ``r{round}/c{client}/{tensor}``: a *message* is one round of one client
    (sorted by round, then client; tensors in file order). ``--max-messages N`` keeps the first N.
  * ``--sample``: the trace shipped with ebgc (``importlib.resources.files("ebgc")/data/sample.npz``).
  * ``--fixtures``: the inputs of the committed format fixtures, rebuilt by
    ``tests/fixtures/make_fixtures.py`` (checked against the SHA-256 of each input recorded in its
    manifest.json), as one message ``cases`` whose tensors are named after the cases.

Grid (every tensor, small ones included; threads=1 unless said)
  one-shot ``ebgc.compress`` then ``ebgc.decompress`` (same thread count):
  * coders auto, raw, bitpack, huffman, context x {rel 1e-2, rel 1e-3, abs 1e-3}
  * auto, rel 1e-2, low_rank=False                                        (``-nolr``)
  * auto x {rel 1e-2, rel 1e-3, abs 1e-3} with threads=2                  (``-t2``)
  * float32 inputs only: their float64, float16 and bfloat16 casts, auto rel 1e-2 (``-f64`` ...)
  * fixture inputs also: their own case settings (``case``, through ebgc.compress; the
    ``chunk_log2`` knob of five cases is not public, so ``case`` uses the default chunking there,
    and those five are also digested through ``ebgc._core.compress`` with their chunk_log2, as
    ``fixtures-private/case-chunked``, when that module is there)
  stateful, per client stream over its rounds in order, GradientEncoder(stream_id=b"digests",
  coder auto, threads=1, every tensor of the message) and a separate GradientDecoder:
  * history 2 and history 1 x {rel 1e-2, rel 1e-3}; history 2, rel 1e-2 also with threads=2

Manifest (JSON, keys sorted)
  * ``digests``: one full SHA-256 per entry. ``--digest-level message`` (default):
      ``blob/<source>/<setting>/<message>``   the message's blobs (name, length, bytes of each);
                                              for stateful settings, the message's bytes
      ``recon/<source>/<setting>/<message>``  what decompress / the decoder returned (name,
                                              dtype, shape, bytes of each)
    ``--digest-level setting``: ``blob/<source>/<setting>`` and ``recon/...``, each a SHA-256 over
    the message digests above in order (the compact form of the committed test manifest).
    Settings are named like ``context-rel1e-03``, ``auto-rel1e-02-t2``, ``auto-rel1e-02-bf16``,
    ``stateful-h2-rel1e-02``.
  * ``bytes``: total output bytes per ``<source>/<setting>`` (and per message at message level).
  * ``tensors``, to point at the tensor behind a mismatch: the first 16 hex digits of each
    tensor's SHA-256 (of its blob, or of its reconstruction), space-separated in the order of
    ``names[<source>/<message>]``; stateful messages are split into their tensor blobs by the
    documented container layout. ``--tensor-level setting`` (default): per
    ``<kind>/<source>/<setting>/<message>``; ``all``: per ``<kind>/<source>/<message>``, of a
    digest over every setting (small: a mismatching setting and a mismatching tensor together
    locate the difference); ``none``.
  * ``meta``: versions, paths, date (not compared).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.util
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

MANIFEST_FORMAT = "ebgc-blob-digests/1"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES_DIR = REPO / "tests" / "fixtures"
TENSOR_HEX = 16
STREAM_ID = b"digests"

CODERS = ("auto", "raw", "bitpack", "huffman", "context")
BOUNDS = (("rel", 1e-2), ("rel", 1e-3), ("abs", 1e-3))
CASTS = ("float64", "float16", "bfloat16")
CAST_TAG = {"float64": "f64", "float16": "f16", "bfloat16": "bf16"}
STATEFUL = (  # (history, mode, bound, threads)
    (2, "rel", 1e-2, 1), (2, "rel", 1e-3, 1), (1, "rel", 1e-2, 1), (1, "rel", 1e-3, 1), (2, "rel", 1e-2, 2),
)

Message = Tuple[str, List[Tuple[str, np.ndarray]]]  # (message id, [(tensor name, array)])


# --------------------------------------------------------------------------------------------
# settings


def bound_tag(mode: str, eb: float) -> str:
    return f"{mode}{eb:.0e}"  # rel1e-02


def oneshot_settings() -> List[dict]:
    """The one-shot grid: dicts of name, coder, mode, eb, threads, low_rank, cast, f32_only."""
    out = []

    def add(coder, mode, eb, threads=1, low_rank=True, cast=None):
        name = f"{coder}-{bound_tag(mode, eb)}"
        name += "" if threads == 1 else f"-t{threads}"
        name += "" if low_rank else "-nolr"
        name += "" if cast is None else f"-{CAST_TAG[cast]}"
        out.append(dict(name=name, coder=coder, mode=mode, eb=eb, threads=threads, low_rank=low_rank,
                        cast=cast))

    for coder in CODERS:
        for mode, eb in BOUNDS:
            add(coder, mode, eb)
    add("auto", "rel", 1e-2, low_rank=False)
    for mode, eb in BOUNDS:
        add("auto", mode, eb, threads=2)
    for cast in CASTS:
        add("auto", "rel", 1e-2, cast=cast)
    return out


def stateful_settings() -> List[dict]:
    return [dict(name=f"stateful-h{h}-{bound_tag(mode, eb)}" + ("" if t == 1 else f"-t{t}"),
                 history=h, mode=mode, eb=eb, threads=t) for h, mode, eb, t in STATEFUL]


# --------------------------------------------------------------------------------------------
# inputs


_KEY = re.compile(r"^r(\d+)/c(\d+)/(.+)$")


def load_npz_messages(path: os.PathLike, max_messages: Optional[int] = None) -> List[Message]:
    """Messages of a trace: keys r{round}/c{client}/{tensor} grouped by round and client, sorted
    by (round, client) as numbers; tensors in the order of the file. Other keys are grouped by
    what precedes their last '/' (or all together), after the r/c messages."""
    groups: Dict[str, list] = {}
    order: Dict[str, tuple] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            m = _KEY.match(key)
            if m:
                msg, name, sort = f"r{m.group(1)}/c{m.group(2)}", m.group(3), (0, int(m.group(1)), int(m.group(2)), "")
            elif "/" in key:
                msg, name = key.rsplit("/", 1)
                sort = (1, 0, 0, msg)
            else:
                msg, name, sort = "all", key, (1, 0, 0, "all")
            order.setdefault(msg, sort)
            groups.setdefault(msg, []).append((name, np.ascontiguousarray(z[key])))
    msgs = [(m, groups[m]) for m in sorted(groups, key=lambda k: order[k])]
    return msgs[:max_messages] if max_messages is not None else msgs


def client_of(msg_id: str) -> str:
    m = re.match(r"^r\d+/(c\d+)$", msg_id)
    return m.group(1) if m else msg_id


def sample_npz() -> Path:
    from importlib.resources import files

    res = files("ebgc") / "data" / "sample.npz"
    if not res.is_file():
        raise FileNotFoundError(f"the shipped sample is missing ({res})")
    return Path(str(res))


def _bf16() -> np.dtype:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _dtype_by_name(name: str) -> np.dtype:
    return _bf16() if name == "bfloat16" else np.dtype(name)


def load_fixture_maker(fixtures_dir: Path = DEFAULT_FIXTURES_DIR):
    """tests/fixtures/make_fixtures.py as a module; its dtype_of (which reaches into ebgc's
    modules) is replaced by one that needs only ml_dtypes."""
    spec = importlib.util.spec_from_file_location("ebgc_make_fixtures_for_digests",
                                                  Path(fixtures_dir) / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.dtype_of = _dtype_by_name
    return mod


def fixture_inputs(fixtures_dir: Path = DEFAULT_FIXTURES_DIR) -> Tuple[List[Message], List[dict]]:
    """([("cases", [(case name, regenerated input), ...])], cases): the fixture inputs as one
    message, so that a mismatch is located by the per-tensor digests."""
    maker = load_fixture_maker(fixtures_dir)
    frozen = {}
    manifest = Path(fixtures_dir) / "manifest.json"
    if manifest.exists():
        frozen = {c["name"]: c.get("input_sha256") for c in json.loads(manifest.read_text())["cases"]}
    tensors, cases = [], []
    for case in maker.CASES:
        x = maker.make_input(case)
        want = frozen.get(case["name"])
        if want is not None and maker.sha256(x) != want:
            raise RuntimeError(f"fixture input {case['name']} regenerated to different bytes than "
                               f"manifest.json records: digests would not be comparable")
        tensors.append((case["name"], x))
        cases.append(case)
    return [("cases", tensors)], cases


# --------------------------------------------------------------------------------------------
# hashing


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def hash_blobs(parts: Iterable[Tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, blob in parts:
        nb = name.encode()
        h.update(_u32(len(nb)) + nb + _u64(len(blob)))
        h.update(blob)
    return h.hexdigest()


def hash_arrays(parts: Iterable[Tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, a in parts:
        a = np.asarray(a)
        nb, dt = name.encode(), a.dtype.name.encode()
        h.update(_u32(len(nb)) + nb + _u32(len(dt)) + dt + _u32(a.ndim) + b"".join(_u64(d) for d in a.shape))
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes())
    return h.hexdigest()


def short(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:TENSOR_HEX]


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    v = shift = 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7


def split_message(msg: bytes) -> Optional[List[Tuple[str, bytes]]]:
    """The (name, blob) parts of a stream message (docs/FORMAT.md, "Stream messages"), or None
    if it does not parse (then only the whole message is digested)."""
    try:
        if msg[:4] != b"EBGS":
            return None
        pos = 6
        n = msg[pos]
        pos += 1 + n
        _, pos = _varint(msg, pos)  # sequence
        pos += 4  # state digest
        count, pos = _varint(msg, pos)
        parts = []
        for _ in range(count):
            ln, pos = _varint(msg, pos)
            name = msg[pos:pos + ln].decode("utf-8", "replace")
            pos += ln
            lb, pos = _varint(msg, pos)
            parts.append((name, msg[pos:pos + lb]))
            pos += lb
        return parts if pos == len(msg) - 4 else None
    except IndexError:
        return None


# --------------------------------------------------------------------------------------------
# computing a manifest


class Recorder:
    """Collects per-message and per-tensor SHA-256 digests; `result` aggregates them to the
    levels asked for (see the module docstring)."""

    def __init__(self):
        # (kind, source, setting, msg) -> digest, kind "blob" / "recon"; insertion order = run order
        self.messages: Dict[Tuple[str, str, str, str], str] = {}
        self.msg_bytes: Dict[Tuple[str, str, str], int] = {}
        # (kind, source, setting, msg) -> [(tensor name, full digest)]
        self.tensor: Dict[Tuple[str, str, str, str], List[Tuple[str, str]]] = {}

    def message(self, source: str, setting: str, msg_id: str, parts: Optional[Sequence[Tuple[str, bytes]]],
                recon: Sequence[Tuple[str, np.ndarray]], whole: Optional[bytes] = None) -> None:
        """Record one message: its blobs (or the whole stream message, split into `parts` when it
        parses) and its reconstructions."""
        self.messages["blob", source, setting, msg_id] = (hashlib.sha256(whole).hexdigest() if whole is not None
                                                          else hash_blobs(parts))
        self.messages["recon", source, setting, msg_id] = hash_arrays(recon)
        self.msg_bytes[source, setting, msg_id] = len(whole) if whole is not None else sum(len(b) for _, b in parts)
        if parts is not None:
            self.tensor["blob", source, setting, msg_id] = [(n, hashlib.sha256(b).hexdigest()) for n, b in parts]
        self.tensor["recon", source, setting, msg_id] = [(n, hash_arrays([(n, y)])) for n, y in recon]

    def result(self, digest_level: str = "message", tensor_level: str = "setting") -> dict:
        """{"digests", "bytes", "names", "tensors"} at the given levels:
        digest_level "message": one digest per (kind, source, setting, message);
                     "setting": one per (kind, source, setting), over its messages' digests in order.
        tensor_level "setting": per (kind, source, setting, message), TENSOR_HEX hex digits of each
                     tensor's digest, space-separated, in the order of names[source/message];
                     "all": per (kind, source, message), TENSOR_HEX hex digits per tensor of a digest
                     over that tensor's digests under every setting;  "none": no tensor digests."""
        digests: Dict[str, str] = {}
        grouped: Dict[str, Any] = {}
        for (kind, source, setting, msg), d in self.messages.items():
            if digest_level == "message":
                digests[f"{kind}/{source}/{setting}/{msg}"] = d
            else:
                h = grouped.setdefault(f"{kind}/{source}/{setting}", hashlib.sha256())
                h.update(msg.encode() + b"\0" + d.encode() + b"\n")
        digests.update({k: h.hexdigest() for k, h in grouped.items()})
        nbytes: Dict[str, int] = {}
        for (source, setting, msg), n in self.msg_bytes.items():
            if digest_level == "message":
                nbytes[f"{source}/{setting}/{msg}"] = n
            nbytes[f"{source}/{setting}"] = nbytes.get(f"{source}/{setting}", 0) + n
        names: Dict[str, List[str]] = {}
        for (kind, source, setting, msg), parts in self.tensor.items():
            names.setdefault(f"{source}/{msg}", [n for n, _ in parts])
        tensors: Dict[str, Any] = {}
        if tensor_level == "setting":
            for (kind, source, setting, msg), parts in self.tensor.items():
                tensors[f"{kind}/{source}/{setting}/{msg}"] = _tensor_string(parts, names[f"{source}/{msg}"])
        elif tensor_level == "all":
            acc: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
            for (kind, source, setting, msg), parts in self.tensor.items():
                per = acc.setdefault((kind, source, msg), {})
                for n, d in parts:
                    per.setdefault(n, hashlib.sha256()).update(setting.encode() + b"\0" + d.encode() + b"\n")
            for (kind, source, msg), per in acc.items():
                order = names[f"{source}/{msg}"]
                parts = [(n, per[n].hexdigest()) for n in order if n in per]
                tensors[f"{kind}/{source}/{msg}"] = _tensor_string(parts, order)
        elif tensor_level != "none":
            raise ValueError(f"tensor_level {tensor_level!r}")
        return dict(digests=digests, bytes=nbytes, names=names if tensor_level != "none" else {},
                    tensors=tensors)


def _tensor_string(parts: Sequence[Tuple[str, str]], order: Sequence[str]) -> Any:
    """One string of short digests when the tensors are those of `order` in that order (a JSON
    list would take a line per tensor), else a list of "name:digest"."""
    if [n for n, _ in parts] == list(order):
        return " ".join(d[:TENSOR_HEX] for _, d in parts)
    return [f"{n}:{d[:TENSOR_HEX]}" for n, d in parts]


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # NaN payloads, values past float16's range
        return x.astype(_dtype_by_name(dtype))


def run_oneshot(rec: Recorder, ebgc, source: str, messages: Sequence[Message],
                settings: Sequence[dict]) -> None:
    for s in settings:
        for msg_id, tensors in messages:
            parts, recon = [], []
            for name, x in tensors:
                if s["cast"] is not None:
                    if x.dtype != np.float32:
                        continue
                    x = _cast(x, s["cast"])
                blob = ebgc.compress(x, s["eb"], mode=s["mode"], coder=s["coder"], threads=s["threads"],
                                     low_rank=s["low_rank"])
                parts.append((name, blob))
                recon.append((name, ebgc.decompress(blob, threads=s["threads"])))
            if parts:
                rec.message(source, s["name"], msg_id, parts, recon)


def run_fixture_cases(rec: Recorder, ebgc, messages: Sequence[Message], cases: Sequence[dict],
                      private: bool) -> List[str]:
    """Each fixture input with its own case settings; returns notes on what was skipped."""
    notes = []
    [(msg_id, tensors)] = messages
    parts, recon, chunked = [], [], []
    for (name, x), case in zip(tensors, cases):
        blob = ebgc.compress(x, case["error_bound"], mode=case["mode"], coder=case["coder"], threads=1)
        parts.append((name, blob))
        recon.append((name, ebgc.decompress(blob, threads=1)))
        if "chunk_log2" in case:
            chunked.append((name, x, case))
    rec.message("fixtures", "case", msg_id, parts, recon)
    if not private or not chunked:
        return notes
    core = getattr(ebgc, "_core", None)
    if core is None or not hasattr(core, "compress"):
        return [f"fixtures-private: no ebgc._core.compress, {len(chunked)} chunk_log2 cases skipped"]
    parts, recon = [], []
    for name, x, case in chunked:
        # the knob make_fixtures.py uses (not public API): same call, same arguments
        if hasattr(core, "VOCABULARY"):  # the front door's binding: buffer and dtype name
            buf = x.view(np.uint16) if x.dtype.name == "bfloat16" else np.ascontiguousarray(x)
            blob = core.compress(buf, x.dtype.name, case["error_bound"], ebgc.MODES[case["mode"]],
                                 ebgc.CODERS[case["coder"]], 1, chunk_log2=case["chunk_log2"])
        else:  # builds before it
            blob = core.compress(x, list(x.shape), case["error_bound"], ebgc.MODES[case["mode"]],
                                 ebgc.CODERS[case["coder"]], 1, case["chunk_log2"])
        parts.append((name, blob))
        recon.append((name, ebgc.decompress(blob, threads=1)))
    rec.message("fixtures-private", "case-chunked", msg_id, parts, recon)
    return notes


def run_stateful(rec: Recorder, ebgc, source: str, messages: Sequence[Message],
                 settings: Sequence[dict]) -> None:
    streams: Dict[str, List[Message]] = {}
    for msg_id, tensors in messages:
        streams.setdefault(client_of(msg_id), []).append((msg_id, tensors))
    for s in settings:
        for _, msgs in sorted(streams.items()):
            enc = ebgc.GradientEncoder(s["eb"], mode=s["mode"], coder="auto", stream_id=STREAM_ID,
                                       history=s["history"], threads=s["threads"])
            dec = ebgc.GradientDecoder(threads=s["threads"])
            for msg_id, tensors in msgs:
                msg = bytes(enc.encode({name: x for name, x in tensors}))
                out = dec.decode(msg)
                rec.message(source, s["name"], msg_id, split_message(msg),
                            [(name, out[name]) for name, _ in tensors], whole=msg)


def _git_commit(path: Path) -> Optional[str]:
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def compute(traces: Sequence[os.PathLike] = (), *, sample: bool = False, fixtures: bool = False,
            fixtures_dir: Path = DEFAULT_FIXTURES_DIR, max_messages: Optional[int] = None,
            digest_level: str = "message", tensor_level: str = "setting", private: bool = True,
            stateful: bool = True,
            settings_filter: Optional[Callable[[dict], bool]] = None,
            log: Callable[[str], None] = lambda s: None) -> dict:
    """The manifest of the ebgc that `import ebgc` finds, for the given inputs."""
    import ebgc

    keep = settings_filter or (lambda s: True)
    one = [s for s in oneshot_settings() if keep(s)]
    st = [s for s in stateful_settings() if keep(s)]
    rec = Recorder()
    sources: Dict[str, dict] = {}
    notes: List[str] = []
    inputs: List[Tuple[str, Path]] = []
    if sample:
        inputs.append(("sample", sample_npz()))
    for p in traces:
        inputs.append((Path(p).stem, Path(p)))
    for source, path in inputs:
        if source in sources:
            raise ValueError(f"two inputs are both called {source!r}")
        t0 = time.perf_counter()
        msgs = load_npz_messages(path, max_messages)
        sources[source] = dict(path=str(path), messages=len(msgs), tensors=sum(len(t) for _, t in msgs),
                               raw_bytes=sum(x.nbytes for _, t in msgs for _, x in t))
        run_oneshot(rec, ebgc, source, msgs, one)
        if stateful:
            run_stateful(rec, ebgc, source, msgs, st)
        log(f"{source}: {len(msgs)} messages, {time.perf_counter() - t0:.1f} s")
    if fixtures:
        t0 = time.perf_counter()
        msgs, cases = fixture_inputs(fixtures_dir)
        sources["fixtures"] = dict(path=str(Path(fixtures_dir) / "make_fixtures.py"), messages=len(msgs),
                                   tensors=len(cases), raw_bytes=sum(x.nbytes for _, t in msgs for _, x in t))
        notes += run_fixture_cases(rec, ebgc, msgs, cases, private)
        run_oneshot(rec, ebgc, "fixtures", msgs, one)
        log(f"fixtures: {len(cases)} cases, {time.perf_counter() - t0:.1f} s")
    import ml_dtypes

    ebgc_dir = Path(ebgc.__file__).resolve().parent
    return {
        "format": MANIFEST_FORMAT,
        "meta": {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ebgc_version": getattr(ebgc, "__version__", None),
            "ebgc_format_version": getattr(ebgc, "FORMAT_VERSION", None),
            "ebgc_path": str(ebgc_dir),
            "ebgc_git_commit": _git_commit(ebgc_dir),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "ml_dtypes": ml_dtypes.__version__,
            "machine": platform.machine(),
            "notes": notes,
        },
        "config": {
            "sources": sources,
            "max_messages": max_messages,
            "oneshot_settings": [s["name"] for s in one],
            "stateful_settings": [s["name"] for s in st],
            "stream_id": STREAM_ID.decode(),
            "digest_level": digest_level,
            "tensor_level": tensor_level,
            "tensor_digest_hex": TENSOR_HEX,
        },
        **rec.result(digest_level, tensor_level),
    }


# --------------------------------------------------------------------------------------------
# comparing


def compare(a: dict, b: dict, *, only: Optional[Callable[[str], bool]] = None, limit: int = 20) -> dict:
    """Entries of a and b that differ: {"mismatch": [...], "only_a": [...], "only_b": [...],
    "compared": n, "lines": a readable report of the first `limit`, with the tensors to blame}."""
    keep = only or (lambda k: True)
    da = {k: v for k, v in a["digests"].items() if keep(k)}
    db = {k: v for k, v in b["digests"].items() if keep(k)}
    mismatch = sorted(k for k in da.keys() & db.keys() if da[k] != db[k])
    only_a = sorted(da.keys() - db.keys())
    only_b = sorted(db.keys() - da.keys())
    lines = []
    for k in mismatch[:limit]:
        line = f"MISMATCH {k}"
        key = k.split("/", 1)[1]
        ba, bb = a["bytes"].get(key), b["bytes"].get(key)
        if ba is not None and bb is not None:
            line += f"  bytes {ba} -> {bb}" if ba != bb else f"  bytes {ba} (same)"
        bad = blame(a, b, k)
        if bad:
            line += f"  tensors: {', '.join(bad[:8])}" + (f" (+{len(bad) - 8})" if len(bad) > 8 else "")
        lines.append(line)
    lines += [f"MISSING in new: {k}" for k in only_a[:limit]]
    lines += [f"EXTRA in new: {k}" for k in only_b[:limit]]
    return dict(mismatch=mismatch, only_a=only_a, only_b=only_b, lines=lines,
                compared=len(da.keys() & db.keys()))


def _split_tensors(t: Any) -> List[Tuple[Optional[str], str]]:
    if isinstance(t, str):
        return [(None, d) for d in t.split()]
    return [tuple(x.rsplit(":", 1)) for x in t]


def blame(a: dict, b: dict, digest_key: str) -> List[str]:
    """Names of the tensors whose digests differ between a and b under a mismatching digest
    entry (kind/source/setting[/message]); with tensor_level "all", the tensors of that source
    whose digest over all settings differs."""
    if a["config"].get("tensor_level") != b["config"].get("tensor_level"):
        return []
    kind, source, rest = digest_key.split("/", 2)
    if a["config"].get("tensor_level") == "all":
        keys = [k for k in a["tensors"] if k.startswith(f"{kind}/{source}/")]
    else:
        keys = [k for k in a["tensors"] if k == digest_key or k.startswith(digest_key + "/")]
    out = []
    for k in keys:
        ta, tb = a["tensors"].get(k), b["tensors"].get(k)
        if ta is None or tb is None:
            continue
        msg = k.split("/", 2)[2] if a["config"].get("tensor_level") == "all" else k[len(f"{kind}/{source}/"):].split("/", 1)[1]
        order = a["names"].get(f"{source}/{msg}", [])
        pa, pb = _split_tensors(ta), _split_tensors(tb)
        for i, ((na, x), (_, y)) in enumerate(zip(pa, pb)):
            if x != y:
                name = na or (order[i] if i < len(order) else f"#{i}")
                out.append(f"{msg}/{name}" if msg not in ("cases",) else name)
        if len(pa) != len(pb):
            out.append(f"({msg}: tensor count {len(pa)} -> {len(pb)})")
    return out


def dump(manifest: dict, path: os.PathLike) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", nargs="+", action="extend", default=[], metavar="PATH.npz",
                    help="trace(s) to digest (repeatable)")
    ap.add_argument("--sample", action="store_true", help="the sample trace shipped with ebgc")
    ap.add_argument("--fixtures", action="store_true", help="the inputs of tests/fixtures/make_fixtures.py")
    ap.add_argument("--fixtures-dir", type=Path, default=DEFAULT_FIXTURES_DIR)
    ap.add_argument("--max-messages", type=int, default=None, help="only the first N messages of each trace")
    ap.add_argument("--digest-level", choices=("message", "setting"), default="message",
                    help="one full digest per message and setting (default), or per setting")
    ap.add_argument("--tensor-level", choices=("setting", "all", "none"), default="setting",
                    help="short per-tensor digests: per setting (default), over all settings, or none")
    ap.add_argument("--no-private", action="store_true",
                    help="skip the chunk_log2 fixture cases (they need ebgc._core)")
    ap.add_argument("--out", type=Path, help="write the manifest here")
    ap.add_argument("--check", type=Path, metavar="OLD.json",
                    help="recompute the inputs and settings of OLD.json and compare (exit 1 on a difference)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.json", "NEW.json"),
                    help="compare two manifests, compute nothing")
    ap.add_argument("--limit", type=int, default=20, help="mismatches to list")
    args = ap.parse_args(argv)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        return _report(compare(a, b, limit=args.limit), a, b)
    old = json.loads(args.check.read_text()) if args.check else None
    traces, sample, fixtures, max_messages = args.trace, args.sample, args.fixtures, args.max_messages
    if old is not None and not (traces or sample or fixtures):  # take the inputs from the manifest
        cfg = old["config"]
        sample = "sample" in cfg["sources"]
        fixtures = "fixtures" in cfg["sources"]
        traces = [v["path"] for k, v in cfg["sources"].items() if k not in ("sample", "fixtures")]
        max_messages = cfg["max_messages"]
    if not (traces or sample or fixtures):
        ap.error("nothing to digest: give --trace, --sample and/or --fixtures")
    if not (args.out or old is not None):
        ap.error("give --out and/or --check")
    t0 = time.perf_counter()
    levels = dict(digest_level=args.digest_level, tensor_level=args.tensor_level)
    if old is not None:  # the same levels as the manifest compared with
        levels = dict(digest_level=old["config"]["digest_level"], tensor_level=old["config"]["tensor_level"])
    new = compute(traces, sample=sample, fixtures=fixtures, fixtures_dir=args.fixtures_dir,
                  max_messages=max_messages, private=not args.no_private, log=log, **levels)
    log(f"{len(new['digests'])} digests in {time.perf_counter() - t0:.1f} s "
        f"(ebgc from {new['meta']['ebgc_path']})")
    for n in new["meta"]["notes"]:
        log(f"note: {n}")
    if args.out:
        dump(new, args.out)
        log(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    if old is not None:
        return _report(compare(old, new, limit=args.limit), old, new)
    return 0


def _report(r: dict, a: dict, b: dict) -> int:
    for line in r["lines"]:
        print(line)
    bad = len(r["mismatch"]) + len(r["only_a"]) + len(r["only_b"])
    print(f"{r['compared']} entries compared: {len(r['mismatch'])} differ, {len(r['only_a'])} missing, "
          f"{len(r['only_b'])} extra" + ("" if bad else " -- byte-identical"))
    if bad:
        tot = sorted({k for k in a["bytes"].keys() & b["bytes"].keys()
                      if k.count("/") == 1 and a["bytes"][k] != b["bytes"][k]})
        for k in tot[:20]:
            print(f"  total bytes {k}: {a['bytes'][k]} -> {b['bytes'][k]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
