"""Seeds, structure-aware mutators and a sandboxed runner for fuzzing every ebgc parser.

Used by tests/test_fuzz.py (fast, fixed-seed batches) and tools/fuzz.py (the long campaign).

Every ebgc container but APPFL's ends with a CRC-32C over the bytes before it, and several nest
sealed containers (a tensor blob inside a stream message, inside a state dict, inside an APPFL
payload). A mutation that does not recompute those checksums stops at the first checksum check;
so every mutation here is followed by `reseal`, which walks the mutated bytes as the parser would
(`layout`), recomputes each nested container's CRC innermost first, then the outer one, and
for saved states also the state digest (the loader verifies it after reading every tensor).

Containers (docs/FORMAT.md), by target name:
    blob       "EBGC" one-shot tensor blob   ebgc.info / ebgc.decompress
    message    "EBGS" stream message         GradientDecoder().decode (fresh, or loaded from a state)
    state      "EBGT" saved encoder/decoder  GradientEncoder.load / GradientDecoder.load (+ one use)
    statedict  "EBSD" state dict             ebgc.torch.decompress_state_dict
    appfl      "EBAP" APPFL payload          EBGCCompressor.decompress_model (no outer CRC)

Mutation families: "truncate" (every cut, raw and resealed), "flip" (every byte xor 0xFF, 0x01,
0x80), "overwrite" (1-8 random bytes), "splice" (a prefix of one seed + a suffix of another) and
"extreme" (each header field, count, length and name rewritten to an extreme value; the lengths
of the containers around it are kept consistent).

The contract (checked by `execute`, in a child process: see `Worker`): every input is either
decoded into what it declares, or refused with ebgc.FormatError / ebgc.StreamError; never another
exception, a crash, a hang, or a peak-RSS growth over a small multiple of the input's size plus
64 MiB. A target that refuses an input must also leave the decoder it was given unchanged.

Run as a script, this file is the worker process (`python tests/fuzzing.py --worker ...`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import ml_dtypes
import numpy as np

import ebgc

# Only the public API is used (ebgc.*, ebgc.torch, ebgc.integrations.*), and ebgc._core.crc32c.
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # blobfmt sits beside this file (tools/fuzz.py imports it from elsewhere)
    sys.path.insert(0, str(HERE))
from blobfmt import varint  # noqa: E402

KINDS = ("blob", "message", "state", "statedict", "appfl")
FAMILIES = ("truncate", "flip", "overwrite", "splice", "extreme")
NEEDS_TORCH = ("statedict", "appfl")
SMALL = 800  # seeds up to this size get every truncation and every byte flip

DTYPE_ITEMSIZE = {1: 4, 2: 8, 3: 2, 4: 2}  # wire dtype codes of blobs and saved states
SD_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1,
               "int16": 2, "int32": 4, "int64": 8, "bool": 1}


def crc32c(data, seed: int = 0) -> int:
    return ebgc._core.crc32c(bytes(data), seed)


def dtype_from_name(name: str) -> np.dtype:
    return BFLOAT16 if name == "bfloat16" else np.dtype(name)


# ================================================================================================
# Layout: a lenient walk of the bytes as the parsers read them
# ================================================================================================

@dataclass
class Field:
    path: str       # e.g. "tensor[1].blob.shape[0]"
    start: int
    end: int
    type: str       # u8, varint, u32, f32, f64, lbytes (a length varint and its bytes), area
    value: object = None


@dataclass
class ShapeSite:
    """ndim byte + dims of a tensor header, and (saved states, state dicts) the raw data after it."""
    path: str
    ndim_at: int
    dims_end: int
    itemsize: int = 0
    data_len_at: Optional[int] = None  # state dicts: the data's length varint
    data_end: Optional[int] = None     # end of the raw data (None: a blob header, no data)


@dataclass
class StateDigest:
    """Where a saved stream state's digest is and what it covers. Version 1 stores the digest of
    the reconstructions; version 2 a seal: CRC-32C of the owner's settings bytes, varint
    (sequence + 1) and that digest."""
    digest_at: int
    sequence_plus_1: int
    settings: tuple  # (start, end) of the settings bytes: an encoder's, or a decoder stream's id
    tensors: list = field(default_factory=list)  # (tag, name bytes, dtype code, shape, raw start, raw end)
    complete: bool = False


@dataclass
class Layout:
    fields: list = field(default_factory=list)
    spans: list = field(default_factory=list)     # sealed regions (start, end), innermost first
    regions: list = field(default_factory=list)   # length-prefixed regions (len_at, len_end, start, end)
    shapes: list = field(default_factory=list)
    states: list = field(default_factory=list)
    complete: bool = False

    def describe(self, offset: int) -> str:
        """The innermost field (or region) holding byte `offset`."""
        best = None
        for f in self.fields:
            if f.start <= offset < f.end and (best is None or f.end - f.start <= best.end - best.start):
                best = f
        if best is not None:
            return best.path
        for s, e in self.spans:
            if s <= offset < e:
                return "crc" if offset >= e - 4 else "?"
        return "?"


class _Stop(Exception):
    """The walk ran past the bytes available (a truncated or damaged input)."""


class _Walker:
    def __init__(self, data: bytes, lay: Layout):
        self.d, self.lay, self.pos, self.end = data, lay, 0, len(data)

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise _Stop

    def _field(self, name, start, typ, value=None):
        if name is not None:
            self.lay.fields.append(Field(name, start, self.pos, typ, value))

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def area(self, name: str, n: int) -> None:
        start = self.pos
        self.skip(n)
        self._field(name, start, "area")

    def u8(self, name):
        self.need(1)
        v = self.d[self.pos]
        self.pos += 1
        self._field(name, self.pos - 1, "u8", v)
        return v

    def u32(self, name):
        self.need(4)
        v = struct.unpack_from("<I", self.d, self.pos)[0]
        self.pos += 4
        self._field(name, self.pos - 4, "u32", v)
        return v

    def f32(self, name):
        self.need(4)
        self.pos += 4
        self._field(name, self.pos - 4, "f32")

    def f64(self, name):
        self.need(8)
        self.pos += 8
        self._field(name, self.pos - 8, "f64")

    def varint(self, name):
        start, v = self.pos, 0
        for i in range(10):
            self.need(1)
            b = self.d[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                self._field(name, start, "varint", v)
                return v
        raise _Stop  # over-long varint

    def lbytes(self, name):
        """A varint length and that many bytes; returns (start, end) of the bytes."""
        len_at = self.pos
        n = self.varint(None)
        start = self.pos
        self.skip(n)
        self._field(name, len_at, "lbytes", bytes(self.d[start:self.pos]))
        return start, self.pos

    def nested(self, name, walk: Callable, start: int, end: int, *, sealed: bool, len_at=None):
        """Walk [start, end) with `walk`; record it as a sealed span (after its children) and as a
        length-prefixed region."""
        if len_at is not None:
            self.lay.regions.append((len_at, start, start, end))
        saved = self.pos, self.end
        self.pos, self.end = start, end
        try:
            walk(self, name)
        except _Stop:
            pass
        finally:
            self.pos, self.end = saved
            if sealed and end - start >= 4:
                self.lay.spans.append((start, end))
        self.pos = max(self.pos, end)

    def lnested(self, name, walk: Callable, *, sealed: bool):
        len_at = self.pos
        start, end = self.lbytes(None)
        self.nested(name, walk, start, end, sealed=sealed, len_at=len_at)


def _walk_blob(w: _Walker, path: str) -> None:
    """docs/FORMAT.md, "Layout" and "Payload of the other coders"; w.end is the end of the blob."""
    p = path + "."
    w.end -= 4  # the CRC
    w.area(p + "magic", 4)
    for name in ("version", "flags", "dtype", "mode"):
        w.u8(p + name)
    predictor, coder = w.u8(p + "predictor"), w.u8(p + "coder")
    chunk_log2 = w.u8(p + "chunk_log2")
    dtype = w.d[w.pos - 4]
    ndim_at = w.pos
    ndim = w.u8(p + "ndim")
    dims = [w.varint(f"{p}shape[{i}]") for i in range(ndim)]
    w.lay.shapes.append(ShapeSite(p + "shape", ndim_at, w.pos))
    n = math.prod(dims)
    w.f64(p + "error_bound")
    w.f64(p + "abs_bound")
    if predictor in (1, 2):
        for k in range(predictor):
            w.f64(f"{p}coefficient[{k}]")
    elif predictor in (3, 4):
        rows = dims[0] if dims else 0
        sides = rows + (n // rows if rows else 0)
        rank = w.u8(p + "rank")
        if predictor == 4:
            total = 0
            for k in range(rank):
                total += w.u8(f"{p}width[{k}]")
                w.f32(f"{p}scale_a[{k}]")
                w.f32(f"{p}scale_b[{k}]")
            w.area(p + "factors", (total * sides + 7) // 8)
        else:
            for k in range(rank):
                w.f32(f"{p}scale_a[{k}]")
                w.f32(f"{p}scale_b[{k}]")
            w.area(p + "factors", 2 * rank * sides)
    w.varint(p + "payload_size")
    if coder not in (1, 2, 3, 4):
        w.area(p + "payload", w.end - w.pos)
        return
    count = w.varint(p + "outliers.count")
    for i in range(count):
        w.varint(f"{p}outliers.index[{i}]" if i < 2 else None)
    w.area(p + "outliers.values", count * DTYPE_ITEMSIZE.get(dtype, 4))
    if coder == 2:
        alphabet = w.varint(p + "huffman.alphabet")
        w.area(p + "huffman.lengths", (alphabet + 1) // 2)
    elif coder in (3, 4):
        w.u8(p + "context.groups")
        w.area(p + "context.group_map", 8)
        nbytes = w.varint(p + "context.nbytes")
        w.area(p + "context.tables", nbytes)
        w.varint(p + "context.sign_period")
        w.area(p + "context.sign_freqs", 14)
    chunks = -(-n // (1 << min(chunk_log2, 64))) if chunk_log2 else n
    for c in range(chunks):  # each entry takes >= 2 bytes: this ends with the bytes
        named = c < 2 or c == chunks - 1
        w.varint(f"{p}chunk[{c}].len_a" if named else None)
        w.varint(f"{p}chunk[{c}].len_b" if named else None)
    w.area(p + "chunk_streams", w.end - w.pos)


def _walk_message(w: _Walker, path: str) -> None:
    """docs/FORMAT.md, "Stream messages"."""
    p = path + "." if path else ""
    w.end -= 4
    w.area(p + "magic", 4)
    w.u8(p + "version")
    w.u8(p + "flags")
    n = w.u8(p + "stream_id_length")
    w.area(p + "stream_id", n)
    w.varint(p + "sequence")
    w.u32(p + "state_digest")
    count = w.varint(p + "tensor_count")
    for i in range(count):
        w.lbytes(f"{p}tensor[{i}].name")
        w.lnested(f"{p}tensor[{i}].blob", _walk_blob, sealed=True)


def _walk_tensors(w: _Walker, p: str, table: str, st: "StateDigest | None", tag: bytes) -> None:
    """A table of named arrays: varint count, then name, u8 dtype, u8 ndim, dims, values."""
    count = w.varint(f"{p}{table}.count")
    for i in range(count):
        q = f"{p}{table}[{i}]."
        s, e = w.lbytes(q + "name")
        dtype = w.u8(q + "dtype")
        ndim_at = w.pos
        ndim = w.u8(q + "ndim")
        dims = [w.varint(f"{q}shape[{j}]") for j in range(ndim)]
        dims_end = w.pos
        size = math.prod(dims) * DTYPE_ITEMSIZE.get(dtype, 0)
        if dtype not in DTYPE_ITEMSIZE:
            raise _Stop
        w.area(q + "values", size)
        w.lay.shapes.append(ShapeSite(q + "shape", ndim_at, dims_end, DTYPE_ITEMSIZE[dtype], None, w.pos))
        if st is not None:
            st.tensors.append((tag, bytes(w.d[s:e]), dtype, tuple(dims), w.pos - size, w.pos))


def _walk_stream_state(w: _Walker, p: str, settings: tuple) -> None:
    st = StateDigest(0, w.varint(p + "sequence+1"), settings)
    st.digest_at = w.pos
    w.lay.states.append(st)
    w.u32(p + "digest")
    for tag in (b"L", b"O"):
        _walk_tensors(w, p, "last" if tag == b"L" else "older", st, tag)
    st.complete = True


def _walk_state(w: _Walker, path: str) -> None:
    """docs/FORMAT.md, "Saved state" (version 2: an encoder's settings end with its byte budget and
    largest bound, and its residuals follow the state)."""
    w.end -= 4
    w.area("magic", 4)
    version = w.u8("version")
    kind = w.u8("kind")
    if kind == 0:
        w.f64("error_bound")
        w.u8("mode")
        w.u8("coder")
        w.u8("history")
        w.varint("keyframe_interval")
        w.area("stream_id", w.u8("stream_id_length"))
        if version >= 2:
            w.varint("budget_bytes")
            w.f64("max_error_bound")
        _walk_stream_state(w, "", (6, w.pos))
        if version >= 2:
            _walk_tensors(w, "", "residual", None, b"")
    else:
        for i in range(w.varint("stream_count")):
            n = w.u8(f"stream[{i}].id_length")
            w.area(f"stream[{i}].id", n)
            _walk_stream_state(w, f"stream[{i}].", (w.pos - n, w.pos))


def _walk_statedict(w: _Walker, path: str) -> None:
    """python/ebgc/torch.py: "EBSD" | u8 version | varint count | entries | CRC."""
    p = path + "." if path else ""
    w.end -= 4
    w.area(p + "magic", 4)
    w.u8(p + "version")
    for i in range(w.varint(p + "entry_count")):
        q = f"{p}entry[{i}]."
        w.lbytes(q + "name")
        kind = w.u8(q + "kind")
        if kind == 0:
            w.lnested(q + "blob", _walk_blob, sealed=True)
        elif kind == 1:
            s, e = w.lbytes(q + "dtype")
            ndim_at = w.pos
            ndim = w.u8(q + "ndim")
            for j in range(ndim):
                w.varint(f"{q}shape[{j}]")
            dims_end = w.pos
            s2, e2 = w.lbytes(q + "data")
            itemsize = SD_ITEMSIZE.get(bytes(w.d[s:e]).decode("latin-1"), 1)
            w.lay.shapes.append(ShapeSite(q + "shape", ndim_at, dims_end, itemsize, dims_end, e2))
        else:
            raise _Stop


def _walk_appfl_part(w: _Walker, path: str) -> None:
    """python/ebgc/integrations/appfl.py: u8 kind (0 flat, 1 list, 2 dict) and its content."""
    p = path + "." if path else ""
    kind = w.u8(p + "kind")
    if kind == 1:
        for i in range(w.varint(p + "count")):
            w.lnested(f"{p}item[{i}]", _walk_appfl_part, sealed=False)
    elif kind == 2:
        for i in range(w.varint(p + "count")):
            w.lbytes(f"{p}key[{i}]")
            w.lnested(f"{p}value[{i}]", _walk_appfl_part, sealed=False)
    elif kind == 0:
        len_at = w.pos
        s, e = w.lbytes(None)
        if e > s:
            w.nested(p + "message", _walk_message, s, e, sealed=True, len_at=len_at)
            for i in range(w.varint(p + "order_count")):
                w.lbytes(f"{p}order[{i}]")
        w.nested(p + "statedict", _walk_statedict, w.pos, w.end, sealed=True)


def _walk_appfl(w: _Walker, path: str) -> None:
    """Version 1 has no checksum; version 2 ends with a CRC-32C of every byte before it."""
    w.area("magic", 4)
    version = w.u8("version")
    if version == 1:
        _walk_appfl_part(w, "")
        return
    try:
        w.end -= 4
        _walk_appfl_part(w, "")
    finally:
        w.lay.spans.append((0, len(w.d)))  # after the nested ones


_WALKS = {"blob": _walk_blob, "message": _walk_message, "state": _walk_state,
          "statedict": _walk_statedict, "appfl": _walk_appfl}
_OUTER_CRC = {"blob": True, "message": True, "state": True, "statedict": True, "appfl": False}  # appfl v1


def has_outer_crc(data: bytes, kind: str) -> bool:
    return _OUTER_CRC[kind] or (kind == "appfl" and data[4:5] not in (b"", b"\x01"))


def layout(data: bytes, kind: str) -> Layout:
    """What a parser of `kind` would find in `data`, as far as it makes sense."""
    lay = Layout()
    w = _Walker(bytes(data), lay)
    w.nested("" if kind != "blob" else "blob", _WALKS[kind], 0, len(data), sealed=_OUTER_CRC[kind])
    if kind == "blob":  # name blob fields plainly at the top level
        for f in lay.fields:
            f.path = f.path[len("blob."):] if f.path.startswith("blob.") else f.path
        for s in lay.shapes:
            s.path = s.path[len("blob."):]
    lay.complete = True
    return lay


def _walk_safely(data: bytes, kind: str) -> Layout:
    try:
        return layout(data, kind)
    except (RecursionError, OverflowError, MemoryError, ValueError):
        return Layout()


def _state_digest(st: StateDigest, data: bytes) -> Optional[int]:
    """What the loader expects in the digest field: the reconstructions' digest (stream.py
    _StreamState.compute_digest), in version 2 sealed with the settings and sequence number."""
    tables: dict = {b"L": {}, b"O": {}}
    try:
        for tag, name, dtype, shape, s, e in st.tensors:
            tables[tag][name.decode("utf-8")] = (dtype, shape, data[s:e])
    except UnicodeDecodeError:
        return None
    crc = 0
    for tag in (b"L", b"O"):
        for name in sorted(tables[tag]):
            dtype, shape, raw = tables[tag][name]
            crc = crc32c(tag + name.encode(), crc)
            crc = crc32c(bytes([dtype]) + b"".join(varint(d) for d in shape), crc)
            crc = crc32c(raw, crc)
    if data[4:5] != b"\x01":
        s, e = st.settings
        crc = crc32c(data[s:e] + varint(st.sequence_plus_1) + struct.pack("<I", crc))
    return crc


def reseal(data: bytes, kind: str, *, digests: bool = True) -> bytes:
    """Recompute every checksum the parser of `kind` will find in `data` (nested ones first) and,
    with digests, the digest of every saved stream state that reads to its end."""
    lay = _walk_safely(data, kind)
    b = bytearray(data)
    if digests:
        for st in lay.states:
            if st.complete:
                d = _state_digest(st, bytes(b))
                if d is not None:
                    b[st.digest_at:st.digest_at + 4] = struct.pack("<I", d)
    for s, e in lay.spans:
        if 4 <= e - s and e <= len(b):
            b[e - 4:e] = struct.pack("<I", crc32c(b[s:e - 4]))
    return bytes(b)


def replace(data: bytes, lay: Layout, start: int, end: int, new: bytes) -> bytes:
    """data with [start, end) replaced by `new`, the length prefix of every region around it
    adjusted to match (innermost first, so that earlier offsets stay valid)."""
    out = data[:start] + new + data[end:]
    delta = len(new) - (end - start)
    around = [r for r in lay.regions if r[2] <= start and end <= r[3] and not (r[2] == start == end)]
    for len_at, _, s, e in sorted(around, key=lambda r: -r[0]):
        if delta == 0:
            break
        old = varint(e - s)
        new_len = varint(e - s + delta)
        if out[len_at:len_at + len(old)] != old:
            break  # not the varint we parsed: give up keeping lengths
        out = out[:len_at] + new_len + out[len_at + len(old):]
        delta += len(new_len) - len(old)
    return out


# ================================================================================================
# Seeds
# ================================================================================================

@dataclass(frozen=True)
class Seed:
    kind: str
    name: str
    data: bytes
    ctx: bytes = b""   # message: saved decoder state to decode with; state: the next message;
                       # appfl: the payload the server's compressor decodes first (round 1)


def _sample(shape, dtype, seed, *, specials=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float64)
    if specials and x.size >= 12:
        x.reshape(-1)[[1, 5, 9]] = [np.nan, np.inf, 4e4]  # outliers
    return x.astype(dtype)


def low_rank_matrix(rows=64, cols=64, rank=1, seed=0, dtype=np.float32, noise=0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
    return (x + noise * rng.standard_normal((rows, cols))).astype(dtype)


def _sparse(n, dtype, seed, k=40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n, dtype)
    x[rng.choice(n, k, replace=False)] = rng.standard_normal(k)
    return x


@functools.lru_cache(maxsize=None)
def blob_seeds() -> tuple:
    out = []
    dtypes = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": BFLOAT16}
    for i, (dn, dt) in enumerate(dtypes.items()):
        for j, coder in enumerate(("raw", "bitpack", "huffman", "context")):
            mode = ("abs", "rel")[(i + j) % 2]
            shape = ((5, 8), (2, 4, 5), (40,), (4, 10))[j]
            x = _sample(shape, dt, 10 * i + j)
            out.append(Seed("blob", f"{dn}-{coder}-{mode}", ebgc.compress(x, 1e-2, mode=mode, coder=coder)))
    # more than one chunk: 70000 values (> 2^16) sparse, and 2^10-value chunks
    out.append(Seed("blob", "multichunk-context", ebgc.compress(_sparse(70000, np.float64, 1), 1e-3, coder="context")))
    out.append(Seed("blob", "multichunk-bitpack", ebgc.compress(_sparse(66000, np.float32, 2), 1e-3, coder="bitpack")))
    # low-rank predictor (header factors)
    for name, x, coder in (("lowrank-f32-context", low_rank_matrix(64, 64, 1, 0), "context"),
                           ("lowrank-f64-r2-context", low_rank_matrix(32, 128, 2, 1, np.float64), "context"),
                           ("lowrank-bf16-context", low_rank_matrix(64, 64, 1, 2, BFLOAT16), "context"),
                           ("lowrank-f32-huffman", low_rank_matrix(64, 64, 1, 3), "huffman")):
        blob = ebgc.compress(x, 1e-2, coder=coder)
        assert ebgc.info(blob)["predictor"] == "low-rank", name
        out.append(Seed("blob", name, blob))
    # stream-predicted tensors of a message (decoded here with a stand-in history)
    _, msgs = _stream(3)
    for name, blob in message_tensors(msgs[2]):
        out.append(Seed("blob", f"stream-{name}-{ebgc.info(blob)['predictor']}", blob))
    out.append(Seed("blob", "empty-raw", ebgc.compress(np.zeros((3, 0, 2), np.float32), 1e-2)))
    out.append(Seed("blob", "scalar-f64", ebgc.compress(np.array(2.5), 1e-2, mode="abs")))
    # layouts only older encoders wrote (still decoded): serial context coder, int16 factors
    # and 2^10-value chunks (the encoder's chunk size is not public)
    for fixture in ("f16_rel_context_specials", "f64_abs_context_lanes_short", "f32_rel_lowrank_context",
                    "f32_oihw_rel_context_lanes_chunked", "f64_abs_huffman_chunked",
                    "f16_abs_lowrank_packed_specials_chunked"):
        out.append(Seed("blob", "fixture-" + fixture, (HERE / "fixtures" / f"{fixture}.ebgc").read_bytes()))
    return tuple(out)


def _stream(n_messages, *, seed=0, coder="auto"):
    """Messages of one stream whose tensors get scaled-previous and blend predictors."""
    rng = np.random.default_rng(seed)
    w0, dw = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    b0 = rng.standard_normal(24)
    enc = ebgc.GradientEncoder(1e-3, stream_id="fuzz", history=2, coder=coder)
    msgs = []
    for i in range(n_messages):
        b = b0 + 0.001 * rng.standard_normal(24)
        msgs.append(enc.encode({"w": w0 + i * dw, "b": b}))
    return enc, msgs


@functools.lru_cache(maxsize=None)
def message_seeds() -> tuple:
    out = []
    for coder in ("auto", "context"):
        _, msgs = _stream(3, coder=coder)
        dec = ebgc.GradientDecoder()
        for i, m in enumerate(msgs):
            ctx = dec.save() if i else b""
            out.append(Seed("message", f"{coder}-msg{i}", m, ctx))
            dec.decode(m)
    enc = ebgc.GradientEncoder(1e-2, stream_id=b"\x00\xff", coder="huffman")  # 16-bit tensors, 2-D, 0-d
    m = enc.encode({"h": _sample((6, 7), np.float16, 5), "g": _sample((30,), BFLOAT16, 6), "s": np.float32(1.5)})
    out.append(Seed("message", "f16-bf16-msg0", m))
    return tuple(out)


def _tiny_update(step: int) -> dict:
    rng = np.random.default_rng(100 + step)
    return {"w": (np.arange(16, dtype=np.float32) + 0.01 * step).reshape(4, 4),
            "b": rng.standard_normal(4), "h": np.linspace(0, 1, 8).astype(np.float16),
            "g": np.linspace(-1, 1, 8).astype(BFLOAT16)}


def state_update() -> dict:
    """What an encoder restored from a state seed encodes next."""
    return _tiny_update(3)


@functools.lru_cache(maxsize=None)
def state_seeds() -> tuple:
    enc = ebgc.GradientEncoder(1e-2, stream_id="st", history=2, keyframe_interval=5)
    other = ebgc.GradientEncoder(1e-3, stream_id=b"\x01\x02", mode="abs", coder="context", low_rank=False)
    dec = ebgc.GradientDecoder()
    out = [Seed("state", "encoder-new", enc.save()), Seed("state", "decoder-new", dec.save())]
    for step in range(2):
        dec.decode(enc.encode(_tiny_update(step)))
    dec.decode(other.encode({"v": np.float64(3.0)}))
    nxt = enc.encode(_tiny_update(2))
    out += [Seed("state", "encoder-2", enc.save()), Seed("state", "encoder-other", other.save()),
            Seed("state", "decoder-2streams", dec.save(), nxt)]
    return tuple(out)


@functools.lru_cache(maxsize=None)
def statedict_seeds() -> tuple:
    import torch
    import ebgc.torch as et

    g = torch.Generator().manual_seed(0)
    sd = {"fc.weight": torch.randn(6, 8, generator=g), "fc.bias": torch.randn(4, generator=g),
          "steps": torch.tensor([7, -1, 2**40], dtype=torch.int64), "mask": torch.tensor([True, False, True]),
          "half": torch.randn(20, generator=g).to(torch.bfloat16), "empty": torch.zeros(0, 3)}
    out = [Seed("statedict", "mixed", et.compress_state_dict(sd, 1e-2, min_elements=20))]
    out.append(Seed("statedict", "all-exact", et.compress_state_dict(
        {"x": torch.arange(5, dtype=torch.int16), "y": torch.ones(2, 2, dtype=torch.float64)}, 1e-2)))
    out.append(Seed("statedict", "empty", et.compress_state_dict({}, 1e-2)))
    return tuple(out)


APPFL_CFG = {"error_bound": 1e-2, "param_cutoff": 8}


def _appfl_model(step: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(step)
    return {"fc.weight": torch.randn(4, 6, generator=g), "fc.bias": torch.randn(3, generator=g),
            "bn.num_batches_tracked": torch.tensor(step, dtype=torch.int64)}


@functools.lru_cache(maxsize=None)
def appfl_seeds() -> tuple:
    from ebgc.integrations.appfl import EBGCCompressor

    plain = EBGCCompressor(APPFL_CFG)
    out = [Seed("appfl", "flat", plain.compress_model(_appfl_model(0))),
           Seed("appfl", "batched-list", plain.compress_model([_appfl_model(1), _appfl_model(2)], batched=True)),
           Seed("appfl", "nested-dict", plain.compress_model({"a": _appfl_model(3), "b": {"c": _appfl_model(4)}}))]
    client = EBGCCompressor({**APPFL_CFG, "stateful": True})
    r1 = client.compress_model(_appfl_model(5))
    out.append(Seed("appfl", "stateful-round1", r1))
    r2 = client.compress_model(_appfl_model(6))
    out.append(Seed("appfl", "stateful-round2", r2, r1))
    return tuple(out)


def seeds(kind: str) -> tuple:
    return {"blob": blob_seeds, "message": message_seeds, "state": state_seeds,
            "statedict": statedict_seeds, "appfl": appfl_seeds}[kind]()


# ================================================================================================
# Mutations
# ================================================================================================

VARINTS = (0, 1, 2**32, 2**40, 2**62, 2**64 - 1)
VARINT_OVERFLOWS = (2**64, 2**70 - 1, 2**70)  # 10 bytes with bits past 64; 11 bytes
U8S = (0, 1, 2, 4, 5, 33, 65, 128, 255)
NDIMS = (0, 1, 16, 17, 32, 33, 64, 65, 255)
CHUNK_LOG2S = (0, 9, 10, 16, 20, 21, 255)
U32S = (0, 1, 0xFFFFFFFF)
F64S = (0.0, -0.0, -1.0, 5e-324, 1e300, math.inf, -math.inf, math.nan)
F32S = (0.0, -1.0, 1e-45, 3e38, math.inf, math.nan)
NAMES = (b"", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80abc", b"a" * 1025, b"\x00", "\u00fc".encode())
DTYPE_NAMES = (b"float128", b"object", b"complex64", b"uint64", b"int64\x00", b"\xff", b"", b"bool", b"bfloat16")
SHAPES = ((), (0,), (1,) * 17, (1,) * 33, (1,) * 65, (2**62,), (2**63,), (2**64 - 1,), (0, 2**62, 2**62),
          (2**32, 2**32), (2**40,), (2**40 + 1,), (2**21,) * 3, (2**31, 2**31, 0), (2**63, 0), (2**64 - 1, 0))


@dataclass(frozen=True)
class Case:
    kind: str
    label: str
    data: bytes
    ctx: bytes = b""


def _f64(v):
    return struct.pack("<d", v)


def field_values(f: Field) -> list:
    """(label, new bytes for the field) pairs of the extreme values of one field."""
    leaf = f.path.rsplit(".", 1)[-1]
    if f.type == "u8":
        vals = NDIMS if leaf == "ndim" else CHUNK_LOG2S if leaf == "chunk_log2" else U8S
        return [(str(v), bytes([v])) for v in vals if v != f.value]
    if f.type == "varint":
        return [(f"{v:#x}" if v > 1 else str(v), varint(v)) for v in VARINTS + VARINT_OVERFLOWS if v != f.value]
    if f.type == "u32":
        return [(f"{v:#x}", struct.pack("<I", v)) for v in U32S]
    if f.type == "f64":
        return [(repr(v), _f64(v)) for v in F64S]
    if f.type == "f32":
        return [(repr(v), struct.pack("<f", v)) for v in F32S]
    if f.type == "lbytes":
        vals = DTYPE_NAMES if leaf == "dtype" else NAMES
        return [(repr(v if len(v) < 16 else v[:8] + b"..."), varint(len(v)) + v) for v in vals if v != f.value]
    return []


def _shape_rewrite(data: bytes, lay: Layout, site: ShapeSite, shape: tuple) -> bytes:
    """A tensor header with `shape` (ndim and dims), and for states/state dicts raw data of the
    matching size where that is small."""
    head = bytes([len(shape)]) + b"".join(varint(d) for d in shape)
    if site.data_end is None:
        return replace(data, lay, site.ndim_at, site.dims_end, head)
    nbytes = math.prod(shape) * site.itemsize
    if site.data_len_at is None:  # saved state: the values follow the dims
        old = data[site.dims_end:site.data_end]
        raw = bytes(nbytes) if nbytes <= 1 << 16 else old
        return replace(data, lay, site.ndim_at, site.data_end, head + raw)
    raw = bytes(nbytes) if nbytes <= 1 << 16 else b""
    return replace(data, lay, site.ndim_at, site.data_end, head + varint(len(raw)) + raw)


def extreme_mutations(data: bytes, kind: str) -> Iterator[tuple]:
    """(label, mutated bytes, resealed) for every extreme value of every field and shape."""
    lay = layout(data, kind)
    for f in lay.fields:
        for label, new in field_values(f):
            out = replace(data, lay, f.start, f.end, new)
            yield f"set {f.path} = {label}", reseal(out, kind, digests=not f.path.endswith("digest"))
    for site in lay.shapes:
        for shape in SHAPES:
            shown = f"(1,)*{len(shape)}" if len(shape) > 3 and set(shape) == {1} else str(shape)
            yield f"set {site.path} = {shown}", reseal(_shape_rewrite(data, lay, site, shape), kind)


def flip(data: bytes, kind: str, i: int, mask: int) -> bytes:
    b = bytearray(data)
    b[i] ^= mask
    return reseal(bytes(b), kind)


def overwrite(data: bytes, kind: str, rng: np.random.Generator) -> tuple:
    """(label, resealed bytes, first offset written) of 1-8 random bytes, contiguous or not."""
    b = bytearray(data)
    k = int(rng.integers(1, 9))
    if rng.random() < 0.5:
        i = int(rng.integers(0, max(1, len(b) - k + 1)))
        pos = list(range(i, min(i + k, len(b))))
    else:
        pos = sorted(set(int(p) for p in rng.integers(0, len(b), k)))
    for p in pos:
        b[p] = int(rng.integers(0, 256))
    digests = bool(rng.random() < 0.8)
    label = f"overwrite {k} byte(s) at {pos[:8]}{'' if digests else ' (state digest not fixed)'}"
    return label, reseal(bytes(b), kind, digests=digests), pos[0] if pos else 0


def splice(a: bytes, b: bytes, kind: str, rng: np.random.Generator) -> tuple:
    i, j = int(rng.integers(0, len(a) + 1)), int(rng.integers(0, len(b) + 1))
    return f"splice [:{i}] + other[{j}:]", reseal(a[:i] + b[j:], kind)


def mutate(data: bytes, kind: str, rng: np.random.Generator, pool: tuple, max_size: int = 1 << 16) -> bytes:
    """One random structure-aware mutation (a few stacked), resealed: for the long campaign."""
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if not data or r < 0.05:
            data = pool[int(rng.integers(len(pool)))].data
        elif r < 0.15:
            data = reseal(data[:int(rng.integers(0, len(data)))], kind)
        elif r < 0.4:
            mask = int(rng.choice([0xFF, 0x01, 0x80, 1 << int(rng.integers(8))]))
            data = flip(data, kind, int(rng.integers(len(data))), mask)
        elif r < 0.6:
            data = overwrite(data, kind, rng)[1]
        elif r < 0.7:
            other = pool[int(rng.integers(len(pool)))].data
            data = splice(data, other, kind, rng)[1]
        else:
            data = random_extreme(data, kind, rng)
    return data[:max_size]


def random_extreme(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One of extreme_mutations(data, kind), chosen without making them all."""
    lay = _walk_safely(data, kind)
    sites = [f for f in lay.fields if field_values(f)] + lay.shapes
    if not sites:
        return data
    site = sites[int(rng.integers(len(sites)))]
    if isinstance(site, ShapeSite):
        return reseal(_shape_rewrite(data, lay, site, SHAPES[int(rng.integers(len(SHAPES)))]), kind)
    values = field_values(site)
    new = values[int(rng.integers(len(values)))][1]
    return reseal(replace(data, lay, site.start, site.end, new), kind, digests=not site.path.endswith("digest"))


def cases(kind: str, family: str, *, n_random: int = 150, rng_seed: int = 2026) -> Iterator[Case]:
    """The inputs of one mutation family for one container kind (deterministic)."""
    pool = seeds(kind)
    rng = np.random.default_rng([rng_seed, KINDS.index(kind), FAMILIES.index(family)])
    for s in pool:
        tag = f"{kind}:{s.name}"
        small = len(s.data) <= SMALL
        if family == "truncate" and small:
            lay = layout(s.data, kind)
            for k in range(len(s.data)):
                if has_outer_crc(s.data, kind):
                    yield Case(kind, f"{tag} cut to {k} bytes", s.data[:k], s.ctx)
                    yield Case(kind, f"{tag} cut to {k} bytes + CRC [{lay.describe(k)}]",
                               reseal(s.data[:k] + b"\0\0\0\0", kind), s.ctx)
                else:
                    yield Case(kind, f"{tag} cut to {k} bytes [{lay.describe(k)}]", reseal(s.data[:k], kind), s.ctx)
        elif family == "flip" and small:
            lay = layout(s.data, kind)
            last = len(s.data) - (4 if has_outer_crc(s.data, kind) else 0)
            for mask in (0xFF, 0x01, 0x80):
                for i in range(last):
                    yield Case(kind, f"{tag} byte {i} ^= {mask:#04x} [{lay.describe(i)}]",
                               flip(s.data, kind, i, mask), s.ctx)
        elif family == "overwrite":
            lay = layout(s.data, kind)
            for _ in range(n_random if small else n_random // 3):
                label, data, at = overwrite(s.data, kind, rng)
                yield Case(kind, f"{tag} {label} [{lay.describe(at)}]", data, s.ctx)
        elif family == "splice":
            for _ in range(n_random // 3):
                other = pool[int(rng.integers(len(pool)))]
                label, data = splice(s.data, other.data, kind, rng)
                yield Case(kind, f"{tag} {label.replace('other', other.name)}", data, s.ctx)
        elif family == "extreme":
            for label, data in extreme_mutations(s.data, kind):
                yield Case(kind, f"{tag} {label}", data, s.ctx)


# ================================================================================================
# Targets: what one input is fed to (runs in the worker process)
# ================================================================================================

_STAGE = ["?"]


def _stage(name: str) -> None:
    _STAGE[0] = name


def allowed_errors() -> tuple:
    return (ebgc.FormatError, ebgc.StreamError)


def _check_blob_result(y, h) -> Optional[str]:
    if not isinstance(y, np.ndarray):
        return f"decompress returned {type(y).__name__}"
    if y.shape != tuple(h["shape"]) or y.dtype != dtype_from_name(h["dtype"]):
        return f"decoded {y.dtype}{y.shape}, the header declares {h['dtype']}{tuple(h['shape'])}"
    return None


def _u16(a):
    """What _core takes for an array: bfloat16 as its 16-bit integer view."""
    return a if a is None or a.dtype != BFLOAT16 else a.view(np.uint16)


def _history(h: dict) -> tuple:
    """A stand-in for a stream-predicted blob's last reconstructions (its stream is unknown here):
    fixed values of its dtype and shape, so that both decoders can run it."""
    if h.get("predictor") not in STREAM_PREDICTORS:
        return None, None
    n = int(np.prod(h["shape"], dtype=np.int64))
    ramp = (np.arange(n) % 7 - 3).astype(np.float32).reshape(tuple(h["shape"]))
    return ramp.astype(dtype_from_name(h["dtype"])), (0.5 * ramp).astype(dtype_from_name(h["dtype"]))


STREAM_PREDICTORS = ("scaled-previous", "blend-two-previous")


def _cpu_decode(data: bytes, h: dict):
    """A blob decoded by the CPU decoder: ebgc.decompress, or for a stream-predicted blob (which
    decompress refuses with InvalidArgumentError: it needs its stream) the core's decoder with
    the stand-in history."""
    if h is None or h.get("predictor") not in STREAM_PREDICTORS:  # (info() of a message has none)
        return ebgc.decompress(data)
    from ebgc import _core

    parsed = _core.inspect(data)
    p1, p2 = _history(h)
    out = np.empty(tuple(h["shape"]), dtype_from_name(h["dtype"]))
    _core.decompress_into(parsed, _u16(out), 1, previous=_u16(p1), previous2=_u16(p2), dtype=h["dtype"])
    return out


def _device_decode(data: bytes):
    """The GPU decoder's steps run on the host (the host runner of csrc/include/ebgc/grid/) for a
    blob the GPU decodes itself (plan.hpp: raw, bit-packed, Huffman, context lanes, any predictor;
    a stream-predicted one with the stand-in history); None for the others."""
    from ebgc import _core

    parsed = _core.inspect(data)
    if _core._decompress_where_device(parsed) != "device":  # the plan's decision
        return None
    h = parsed.info()
    p1, p2 = _history(h)
    out = np.empty(tuple(h["shape"]), dtype_from_name(h["dtype"]))
    _core._grid_decompress_into(parsed, _u16(out), dtype=h["dtype"], previous=_u16(p1), previous2=_u16(p2))
    return out


def _front_parse_disagrees(data: bytes) -> Optional[str]:
    """The parse of a blob held in device memory (from its front, csrc/include/ebgc/format/front.hpp)
    must accept exactly what the full parse accepts, with the same result."""
    from ebgc import _core

    _stage("the front parse of a blob in device memory")
    try:
        _core._parse_front_check(data, 64)
    except ebgc.InvalidArgumentError as e:
        return f"the front parse disagrees with the full parse: {e}"
    return None


class HostWindowSource:
    """wire.FetchingReader's source over host bytes: how a message held in device memory is read
    (windows fetched, the checksum computed where the bytes are, parts left in place), with the
    bytes it fetched counted."""

    def __init__(self, data: bytes):
        self.data, self.size, self.fetched = bytes(data), len(data), 0

    def fetch(self, begin: int, end: int) -> bytes:
        self.fetched += end - begin
        return self.data[begin:end]

    def crc32c(self, end: int) -> int:
        return crc32c(self.data[:end])

    def part(self, begin: int, end: int) -> bytes:
        return self.data[begin:end]


def read_message_fetching(data: bytes, source: Optional[HostWindowSource] = None):
    """stream's message parse as it runs over a message in device memory."""
    from ebgc import stream
    from ebgc.wire import FetchingReader

    reader = FetchingReader.open(source or HostWindowSource(data), stream.MESSAGE_MAGIC, (stream.MESSAGE_VERSION,),
                                 "stream message")
    return stream.read_message_from(reader)


def _fetching_parse_disagrees(data: bytes) -> Optional[str]:
    """The parse of a message held in device memory must accept exactly what the host's parse
    accepts (the same error type otherwise), with the same fields and blobs."""
    from ebgc import stream

    def outcome(parse):
        try:
            m, parts = parse(data)
            return m, tuple((name, bytes(blob)) for name, blob in parts)
        except allowed_errors() as e:
            return type(e)

    _stage("the parse of a message in device memory")
    host, fetching = outcome(stream._read_message), outcome(read_message_fetching)
    return None if host == fetching else f"the fetching parse gives {fetching!r}, the host's {host!r}"


def target_blob(data: bytes, ctx: bytes) -> Optional[str]:
    problem = _front_parse_disagrees(data)
    if problem:
        return problem
    _stage("info")
    try:
        h = ebgc.info(data)
    except allowed_errors():
        h = None
    _stage("decompress")
    try:
        y = _cpu_decode(data, h)
    except allowed_errors():
        _stage("the GPU decoder's steps on a blob the CPU refused")
        try:
            if _device_decode(data) is not None:
                return "the GPU decoder's steps accepted a blob the CPU decoder refused"
        except allowed_errors():
            pass
        raise
    if h is None:
        return "info() refused a blob that decompress() decoded"
    problem = _check_blob_result(y, h)
    if problem:
        return problem
    _stage("the GPU decoder's steps on a blob the CPU decoded")
    try:
        z = _device_decode(data)
    except allowed_errors() as e:
        return f"the GPU decoder's steps refused a blob the CPU decoded: {type(e).__name__}: {e}"
    if z is not None and z.tobytes() != y.tobytes():
        return "the GPU decoder's steps decoded other bits than the CPU decoder"
    return None


def _decoder(ctx: bytes):
    _stage("load context state")
    return ebgc.GradientDecoder.load(ctx) if ctx else ebgc.GradientDecoder()


def message_tensors(message: bytes) -> list:
    """[(name, blob)] of a stream message that decoded (docs/FORMAT.md, "Stream messages")."""
    lay = layout(message, "message")
    names = [f.value.decode("utf-8", "replace") for f in lay.fields if f.path.endswith(".name")]
    blobs = [message[s:e] for s, e in lay.spans[:-1]]
    return list(zip(names, blobs))


def _check_decoded(out, message: bytes) -> Optional[str]:
    expected = {}
    for name, blob in message_tensors(message):
        expected[name] = ebgc.info(blob)
    if not isinstance(out, dict) or set(out) != set(expected):
        return f"decode returned {sorted(out) if isinstance(out, dict) else type(out).__name__}"
    for name, y in out.items():
        problem = _check_blob_result(y, expected[name])
        if problem:
            return f"tensor {name!r}: {problem}"
    return None


def target_message(data: bytes, ctx: bytes) -> Optional[str]:
    problem = _fetching_parse_disagrees(data)
    if problem:
        return problem
    dec = _decoder(ctx)
    before = dec.save()
    _stage("GradientDecoder.decode")
    try:
        out = dec.decode(data)
    except allowed_errors() as e:
        if dec.save() != before:
            return f"decoder state changed although decode raised {type(e).__name__}: {e}"
        raise
    problem = _check_decoded(out, data)
    if problem:
        return problem
    _stage("GradientDecoder.save() after decode")
    saved = dec.save()
    _stage("GradientDecoder.load(save()) after decode")
    try:
        ebgc.GradientDecoder.load(saved)
    except allowed_errors() as e:
        return f"the state after this message does not load back: {type(e).__name__}: {e}"
    return None


def target_blob_max_output(data: bytes, ctx: bytes) -> Optional[str]:
    """ebgc.decompress(data, max_output=int(ctx)) (the refactor's keyword)."""
    _stage("decompress(max_output=...)")
    y = ebgc.decompress(data, max_output=int(ctx))
    return None if y.nbytes <= int(ctx) else f"decoded {y.nbytes} bytes over max_output={int(ctx)}"


def target_message_max_output(data: bytes, ctx: bytes) -> Optional[str]:
    """GradientDecoder(max_output=int(ctx)).decode(data) (the refactor's keyword)."""
    _stage("GradientDecoder(max_output=...)")
    dec = ebgc.GradientDecoder(max_output=int(ctx))
    _stage("GradientDecoder(max_output=...).decode")
    out = dec.decode(data)
    total = sum(v.nbytes for v in out.values())
    return None if total <= int(ctx) else f"decoded {total} bytes over max_output={int(ctx)}"


def target_state(data: bytes, ctx: bytes) -> Optional[str]:
    errors = []
    for cls in (ebgc.GradientEncoder, ebgc.GradientDecoder):
        _stage(f"{cls.__name__}.load")
        try:
            obj = cls.load(data)
        except allowed_errors() as e:
            errors.append(e)
            continue
        _stage(f"{cls.__name__}.save() after load")
        saved = obj.save()
        _stage(f"{cls.__name__}.load(save())")
        try:
            cls.load(saved)
        except allowed_errors() as e:
            return f"{cls.__name__}: a loaded state does not load back after save(): {type(e).__name__}: {e}"
        if cls is ebgc.GradientEncoder:
            _stage("GradientEncoder.encode after load")
            obj.encode(state_update())
        elif ctx:
            _stage("GradientDecoder.decode after load")
            try:
                out = obj.decode(ctx)
            except allowed_errors():
                if obj.save() != saved:
                    return "decoder state changed although decode raised"
                continue
            problem = _check_decoded(out, ctx)
            if problem:
                return problem
    if len(errors) == 2:
        raise errors[0] if data[5:6] != b"\x01" else errors[1]
    return None


def _check_tensors(obj, where="") -> Optional[str]:
    """Every leaf of nested dicts (str keys) and lists is a torch tensor (no recursion: the
    nesting depth is the input's)."""
    import torch

    todo = [(obj, where)]
    while todo:
        o, w = todo.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if not isinstance(k, str):
                    return f"{w}: key {k!r} is not a str"
                todo.append((v, f"{w}[{k!r}]"))
        elif isinstance(o, list):
            todo += [(v, f"{w}[{i}]") for i, v in enumerate(o)]
        elif not isinstance(o, torch.Tensor):
            return f"{w}: {type(o).__name__} where a tensor was expected"
    return None


def target_statedict(data: bytes, ctx: bytes) -> Optional[str]:
    import ebgc.torch as et

    _stage("decompress_state_dict")
    sd = et.decompress_state_dict(data)
    if not isinstance(sd, dict):
        return f"decompress_state_dict returned {type(sd).__name__}"
    return _check_tensors(sd, "state dict")


def target_appfl(data: bytes, ctx: bytes) -> Optional[str]:
    from ebgc.integrations.appfl import EBGCCompressor

    comp = EBGCCompressor(APPFL_CFG)
    if ctx:
        _stage("decompress_model of the context payload")
        comp.decompress_model(ctx)
    _stage("EBGCCompressor.decompress_model")
    out = comp.decompress_model(data)
    return _check_tensors(out, "model")


TARGETS = {"blob": target_blob, "message": target_message, "state": target_state,
           "statedict": target_statedict, "appfl": target_appfl,
           "blob_max_output": target_blob_max_output, "message_max_output": target_message_max_output}
TARGET_NAMES = tuple(TARGETS)  # the worker protocol sends an index into this


def _type_name(e: BaseException) -> str:
    t = type(e)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM, and ru_maxrss with it) to the current RSS: Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _origin(tb) -> str:
    """file:line of the innermost traceback frame inside ebgc (else the innermost one)."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename + ":" + str(tb.tb_lineno))
        tb = tb.tb_next
    for f in reversed(frames):
        if "/ebgc/" in f:
            return f.split("/ebgc/", 1)[1]
    return frames[-1].rsplit("/", 1)[-1] if frames else "?"


def execute(kind: str, data: bytes, ctx: bytes = b"") -> dict:
    """Run one input through its target; classify the result. Never raises (but may crash)."""
    import resource

    _stage("?")
    # Peak RSS growth: with the peak reset to the current RSS before the input, VmHWM after it is
    # this input's peak (ru_maxrss too, except that it also keeps the peaks of exited threads).
    # Without the reset, ru_maxrss sees only growth above the process's earlier peak: rss_gap_kib.
    rss0 = _rss_kib()
    resettable = _reset_peak()
    peak0 = _hwm_kib() if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = {"status": "ok", "error": "", "message": "", "where": "", "origin": "", "format_error": False}
    try:
        problem = TARGETS[kind](data, ctx)
        if problem:
            res.update(status="bad_result", message=problem, where=_STAGE[0])
    except allowed_errors() as e:
        res.update(status="typed", error=type(e).__name__, message=str(e)[:200], where=_STAGE[0],
                   format_error=isinstance(e, ebgc.FormatError))
    except ebgc.EbgcError as e:  # an ebgc error, but not one that says "bad bytes"
        res.update(status="misfiled", error=_type_name(e), message=str(e)[:300], where=_STAGE[0],
                   origin=_origin(e.__traceback__))
    except Exception as e:  # noqa: BLE001 - the point is to catch every other type
        res.update(status="untyped", error=_type_name(e), message=str(e)[:300], where=_STAGE[0],
                   origin=_origin(e.__traceback__))
    res["seconds"] = time.perf_counter() - t0
    peak1 = _hwm_kib() if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res["rss_growth_kib"] = max(0, peak1 - rss0) if resettable or peak1 > peak0 else 0
    res["rss_gap_kib"] = 0 if resettable else peak0 - rss0
    res["peak_rss_kib"] = peak1  # the process's peak RSS during this input
    return res


# ================================================================================================
# Worker: a child process that runs inputs, so that crashes, hangs and allocations are contained
# ================================================================================================

@dataclass
class Outcome:
    status: str  # ok, typed, untyped, misfiled (another EbgcError), bad_result, crash, hang, memory
    error: str = ""
    message: str = ""
    where: str = ""
    origin: str = ""
    seconds: float = 0.0
    rss_growth_kib: int = 0
    peak_rss_kib: int = 0
    format_error: bool = False  # refused with ebgc.FormatError or a subclass

    @property
    def bad(self) -> bool:
        return self.status not in ("ok", "typed")

    def __str__(self):
        s = f"{self.status}"
        if self.error:
            s += f" {self.error}"
        if self.message:
            s += f": {self.message}"
        if self.where:
            s += f" (in {self.where}{', ' + self.origin if self.origin else ''})"
        return s


def memory_limit_kib(n_input: int, allowance_mib: int = 64, multiple: int = 64) -> int:
    """Peak RSS growth an input of n bytes may cause: `multiple` x its size + a fixed allowance."""
    return allowance_mib * 1024 + multiple * n_input // 1024


class Worker:
    """A child process (`python tests/fuzzing.py --worker`) that runs inputs one at a time under an
    address-space limit; the parent enforces a per-input time limit and restarts it after a crash,
    a hang or a memory violation. It imports the ebgc the parent imported (same directory first
    on its PYTHONPATH)."""

    def __init__(self, kinds=KINDS, *, timeout: float = 2.0, mem_cap_mib: int = 2048,
                 allowance_mib: int = 64, start_timeout: float = 120.0):
        self.kinds = tuple(kinds)
        self.timeout, self.mem_cap_mib, self.allowance_mib = timeout, mem_cap_mib, allowance_mib
        self.start_timeout = start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        here = str(Path(ebgc.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", ",".join(self.kinds), str(self.mem_cap_mib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0, env=env)
        self._buf = b""
        line = self._readline(self.start_timeout)
        if line != b"ready":
            tail = self._stderr_tail()
            self.close()
            raise RuntimeError(f"fuzz worker did not start: {line!r}\n{tail}")

    def _readline(self, timeout: float) -> Optional[bytes]:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return b""
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _stderr_tail(self, n: int = 1500) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")[-n:]
        except (OSError, ValueError):
            return ""

    def _restart(self, kill: bool = False) -> None:
        if kill and self.proc is not None:
            self.proc.kill()
        self.close()
        self.restarts += 1
        self._start()

    def run(self, kind: str, data: bytes, ctx: bytes = b"", *, timeout: Optional[float] = None) -> Outcome:
        try:
            self.proc.stdin.write(struct.pack("<BII", TARGET_NAMES.index(kind), len(data), len(ctx)) + data + ctx)
            line = self._readline(timeout or self.timeout)
        except BrokenPipeError:
            line = b""
        if line is None:  # over the time limit
            self._restart(kill=True)
            return Outcome("hang", message=f"no answer within {timeout or self.timeout:g} s")
        if not line:
            rc = self.proc.wait()
            sig = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
            out = Outcome("crash", message=f"worker died ({sig}); stderr: ...{self._stderr_tail(600)}")
            self._restart()
            return out
        res = json.loads(line)
        out = Outcome(**{k: res[k] for k in Outcome.__dataclass_fields__ if k in res})
        limit = memory_limit_kib(len(data) + len(ctx), self.allowance_mib)
        if res["rss_growth_kib"] > limit:
            out = Outcome("memory", out.error, f"peak RSS grew {res['rss_growth_kib'] / 1024:.0f} MiB "
                          f"(limit {limit / 1024:.0f} MiB) before: {out}", out.where, out.origin, out.seconds,
                          res["rss_growth_kib"], res["peak_rss_kib"], out.format_error)
        if out.status == "memory" or res["rss_gap_kib"] > limit // 2:
            self._restart()  # a fresh peak, so that the next input's growth is measurable again
        return out

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self._stderr.close()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def limit_address_space(extra_mib: int) -> None:
    """RLIMIT_AS = what the process maps now + extra_mib (0: no limit)."""
    import resource

    if extra_mib <= 0:
        return
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = vm + extra_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _worker_main(kinds: list, mem_cap_mib: int) -> None:
    import faulthandler

    faulthandler.enable()
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the protocol
    if any(k in NEEDS_TORCH for k in kinds):
        import ebgc.torch  # noqa: F401
        if "appfl" in kinds:
            import ebgc.integrations.appfl  # noqa: F401
    execute("blob", b"")  # warm up the code paths once
    limit_address_space(mem_cap_mib)
    proto.write(b"ready\n")
    stdin = sys.stdin.buffer

    def read(n):
        b = b""
        while len(b) < n:
            chunk = stdin.read(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    while True:
        try:
            k, n1, n2 = struct.unpack("<BII", read(9))
            data, ctx = read(n1), read(n2)
        except EOFError:
            return
        proto.write(json.dumps(execute(TARGET_NAMES[k], data, ctx)).encode() + b"\n")


# ================================================================================================
# Running batches, reporting failures
# ================================================================================================

@dataclass
class BatchResult:
    n: int = 0
    counts: dict = field(default_factory=dict)  # "ok", "typed ChecksumError", "untyped KeyError", ...
    bad: list = field(default_factory=list)     # [(case, outcome)] of the contract violations
    seconds: float = 0.0
    slowest: tuple = (0.0, "")                  # (seconds, label)
    max_rss_growth_kib: int = 0
    stopped: str = ""                           # why the batch stopped early, if it did

    def count(self, key: str) -> int:
        return sum(v for k, v in self.counts.items() if k == key or k.startswith(key + " "))


def run_cases(worker: Worker, batch, *, total_limit: float = 300.0) -> BatchResult:
    """Run every case of `batch` (stopping after total_limit seconds) and tally the outcomes."""
    res = BatchResult()
    t0 = time.perf_counter()
    for case in batch:
        out = worker.run(case.kind, case.data, case.ctx)
        res.n += 1
        key = f"{out.status} {out.error}".strip()
        res.counts[key] = res.counts.get(key, 0) + 1
        if out.bad:
            res.bad.append((case, out))
        if out.seconds > res.slowest[0]:
            res.slowest = (out.seconds, case.label)
        res.max_rss_growth_kib = max(res.max_rss_growth_kib, out.rss_growth_kib)
        if time.perf_counter() - t0 > total_limit:
            res.stopped = f"stopped after {total_limit:g} s and {res.n} inputs"
            break
    res.seconds = time.perf_counter() - t0
    return res


def signature(out: Outcome) -> str:
    """What tells two failures apart: status, type, where, and the message without its numbers
    and quoted values (KeyError's message is the key: left out)."""
    import re

    msg = "" if out.error == "KeyError" else out.message
    msg = re.sub(r"[\[(][\d, ]+(?:[\])]|$)", "(...)", msg)  # shapes and size lists
    msg = re.sub(r"'[^']*'|0x[0-9a-f]+|\d+", "N", msg)[:90]
    return f"{out.status} {out.error} in {out.where}{' (' + out.origin + ')' if out.origin else ''}: {msg}"


def report(bad: list, n: int, *, examples: int = 12) -> str:
    """Violations grouped by kind of failure; the first (shortest) input of each group in full."""
    groups: dict = {}
    for case, out in bad:
        groups.setdefault(signature(out), []).append((case, out))
    lines = [f"{len(bad)} of {n} inputs broke the contract, {len(groups)} distinct failure(s):"]
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:examples]:
        case, out = min(items, key=lambda co: len(co[0].data))
        lines.append(f"- {len(items)} x {sig}")
        lines.append(f"    e.g. {case.label}: {out}")
        shown = case.data.hex() if len(case.data) <= 1024 else case.data[:1024].hex() + "..."
        lines.append(f"    input ({len(case.data)} bytes): {shown}")
        if case.ctx:
            lines.append(f"    with context of {len(case.ctx)} bytes (the seed's)")
    return "\n".join(lines)


# ================================================================================================
# Crafted inputs: the decompression bomb and the shared-decoder race
# ================================================================================================

BOMB_CHUNKS = 358  # x 2^20 float64 values = 3.0 GB (2.8 GiB) declared by a ~15 KB blob


def make_bomb(chunks: int = BOMB_CHUNKS, *, corrupt_last: bool = True) -> bytes:
    """A context-coder blob (coder 4) with 2^20-value chunks declaring `chunks` x 8 MiB of float64.

    Made from a real context blob of zeros: its coder tables give symbol 0 probability 1, so a
    chunk of zeros, whatever its length, is 39 bytes (8 lane states of 2^16, 7 word counts of 0),
    above the 34 bytes per chunk the reader's plausibility check asks for. Its chunk_log2 is
    rewritten to 20, the shape to chunks x 2^20, and the chunk directory and streams repeated so
    that they stay consistent with the payload: every check before the allocation passes. The
    last chunk's first lane state is corrupted, so the blob is invalid (FormatError), but only
    the last chunk says so."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from blobfmt import Blob, chunk_directory, parse  # noqa: E402

    b = parse(ebgc.compress(np.zeros(2 << 16, np.float64), 1.0, mode="abs", coder="context"))
    assert b.coder == 4, b.coder
    start, lens, streams = chunk_directory(b)
    b.chunk_log2 = 20
    la, lb = lens[0]
    chunk = b.payload[streams:streams + la + lb]
    last = bytearray(chunk)
    if corrupt_last:
        last[0] ^= 1  # lane 0's final state is no longer 2^16
    directory = b"".join(varint(la) + varint(lb) for _ in range(chunks))
    payload = b.payload[:start] + directory + chunk * (chunks - 1) + bytes(last)
    return Blob(**{**b.__dict__, "shape": [chunks << 20], "payload": payload}).to_bytes()


def wrap_in_message(blob: bytes, name: str = "grad", stream_id: bytes = b"bomb") -> bytes:
    """A keyframe stream message (sequence 0) holding one tensor blob."""
    body = (b"EBGS" + bytes([1, 1, len(stream_id)]) + stream_id + varint(0) + struct.pack("<I", 0) + varint(1)
            + varint(len(name)) + name.encode() + varint(len(blob)) + blob)
    return body + struct.pack("<I", crc32c(body))


def race_stream(n_values: int = 1 << 18) -> tuple:
    """(saved decoder state after message 0, message 1) of a stream whose message 1 takes a few
    milliseconds to decode (the decoder releases the GIL meanwhile)."""
    rng = np.random.default_rng(7)
    x = rng.laplace(size=n_values).astype(np.float32)
    enc = ebgc.GradientEncoder(1e-4, stream_id="race", coder="context")
    dec = ebgc.GradientDecoder()
    dec.decode(enc.encode({"g": x}))
    return dec.save(), enc.encode({"g": x + 0.01 * rng.laplace(size=n_values).astype(np.float32)})


def race_trials(trials: int = 140, n_values: int = 1 << 18) -> dict:
    """Two threads decode the same next message with one shared decoder, released by one barrier.
    Counts trials where both accepted it (the stream would then apply one update twice)."""
    state, msg = race_stream(n_values)
    both = errors = 0
    others: list = []
    for _ in range(trials):
        dec = ebgc.GradientDecoder.load(state)
        barrier = threading.Barrier(2)
        results = []

        def go():
            barrier.wait()
            try:
                dec.decode(msg)
                results.append("ok")
            except ebgc.StreamError:
                results.append("refused")
            except Exception as e:  # noqa: BLE001
                results.append(f"{type(e).__name__}: {e}")

        ts = [threading.Thread(target=go) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        both += results.count("ok") == 2
        bad = [r for r in results if r not in ("ok", "refused")]
        errors += bool(bad)
        others += bad[:1]
    return {"trials": trials, "double_accepts": both, "other_errors": errors, "examples": others[:3]}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        _worker_main([k for k in sys.argv[2].split(",") if k], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        print(__doc__)
