"""Stateful streams: round-after-round model updates from one sender.

A :class:`GradientEncoder` turns each whole-model update (a mapping of names to arrays) into one
message; a :class:`GradientDecoder` turns messages back into arrays. Tensors seen before in the
same stream are predicted from their previous *reconstruction*, which both sides hold bit for
bit, so encoder and decoder share nothing but bytes. Every message carries the stream id, a
sequence number, a keyframe flag and a digest of the state it was predicted from: a decoder that
is out of step raises :class:`~ebgc.StreamError` instead of returning wrong data.

Message layout: docs/FORMAT.md, "Stream messages".
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from . import _core
from .api import (BFLOAT16, CODERS, MODES, _as_dtype, _as_host_array, _choice, _core_view, _error_bound,
                  _threads, dtype_from_name)
from .errors import FormatError, InvalidArgumentError, StreamError

MESSAGE_MAGIC = b"EBGS"
STATE_MAGIC = b"EBGT"
MESSAGE_VERSION = 1
_KEYFRAME = 1
_NO_LOW_RANK = 0x80  # in a saved encoder's history byte (older states: low rank on)
_MAX_NAME = 1024
_MAX_STREAM_ID = 64
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.float16): 3, BFLOAT16: 4}
_DTYPE_OF = {v: k for k, v in _DTYPES.items()}


# ---- little byte helpers (the message container is plain bytes; blobs inside are ebgc blobs) ----
def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


class _Reader:
    def __init__(self, data: memoryview, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, field_name: str) -> memoryview:
        if n < 0 or n > len(self.data) - self.pos:
            raise FormatError(f"truncated {self.what}: {field_name} runs past the end")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def u32(self, field_name: str) -> int:
        return struct.unpack("<I", self.take(4, field_name))[0]

    def varint(self, field_name: str) -> int:
        v = shift = 0
        for _ in range(10):
            b = self.u8(field_name)
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
        raise FormatError(f"malformed varint in {self.what} ({field_name})")

    def blob(self, field_name: str, limit: Optional[int] = None) -> memoryview:
        n = self.varint(field_name)
        if limit is not None and n > limit:
            raise FormatError(f"{field_name} longer than {limit} bytes in {self.what}")
        return self.take(n, field_name)


def _sealed(body: bytearray) -> bytes:
    body += struct.pack("<I", _core.crc32c(body))
    return bytes(body)


def _check_sealed(data: Any, magic: bytes, what: str) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes-like, not {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) < 4 or bytes(view[:4]) != magic:
        raise FormatError(f"not an ebgc {what} (bad magic bytes)")
    if len(view) < 6:
        raise FormatError(f"truncated {what}")
    if view[4] != MESSAGE_VERSION:
        from .errors import VersionError

        raise VersionError(f"unsupported {what} version {view[4]}")
    if len(view) < 10 or _core.crc32c(view[:-4]) != struct.unpack("<I", view[-4:])[0]:
        from .errors import ChecksumError

        raise ChecksumError(f"{what} checksum mismatch (truncated or corrupted)")
    return view[:-4]


def _open_state(data: Any, kind: int, what: str) -> "_Reader":
    """A reader past the header of a saved state of `kind` (0 encoder, 1 decoder)."""
    r = _Reader(_check_sealed(data, STATE_MAGIC, what), what)
    r.take(6, "header")
    if r.data[5] != kind:
        raise FormatError(f"these bytes are not a saved {what}")
    return r


# ---- per-stream state -----------------------------------------------------------------------
@dataclass
class _StreamState:
    seq: int = -1                     # last sequence number applied
    digest: int = 0                   # digest of the reconstructions after that message
    tensors: Dict[str, np.ndarray] = field(default_factory=dict)  # last reconstruction per name
    older: Dict[str, np.ndarray] = field(default_factory=dict)    # the one before, if any

    def history(self, name: str, x: np.ndarray):
        """(last, second-last) reconstructions of `name` usable to predict x, or Nones."""
        last = self.tensors.get(name)
        if last is None or last.dtype != x.dtype or last.shape != x.shape:
            return None, None  # new tensor, shape or dtype: it starts over
        older = self.older.get(name)
        if older is not None and (older.dtype != x.dtype or older.shape != x.shape):
            older = None
        return last, older

    def advance(self, seq: int, updates: Dict[str, np.ndarray], keyframe: bool) -> "_StreamState":
        """The state after a message: `updates` become the last reconstructions."""
        tensors = {} if keyframe else dict(self.tensors)
        older = {} if keyframe else dict(self.older)
        for name, rec in updates.items():
            if name in tensors:
                older[name] = tensors[name]
            else:
                older.pop(name, None)
            tensors[name] = rec
        st = _StreamState(seq=seq, tensors=tensors, older=older)
        st.digest = st.compute_digest()
        return st

    def compute_digest(self) -> int:
        crc = 0
        for tag, table in ((b"L", self.tensors), (b"O", self.older)):
            for name in sorted(table):
                t = table[name]
                crc = _core.crc32c(tag + name.encode(), crc)
                crc = _core.crc32c(struct.pack("<B", _DTYPES[t.dtype]) + b"".join(_varint(d) for d in t.shape), crc)
                crc = _core.crc32c(t.reshape(-1).view(np.uint8), crc)
        return crc

    def write(self, out: bytearray) -> None:
        out += _varint(self.seq + 1) + struct.pack("<I", self.digest)
        for table in (self.tensors, self.older):
            out += _varint(len(table))
            for name, t in table.items():
                nb = name.encode()
                out += _varint(len(nb)) + nb + bytes([_DTYPES[t.dtype], t.ndim])
                out += b"".join(_varint(d) for d in t.shape)
                out += memoryview(_core_view(np.ascontiguousarray(t))).cast("B")

    @classmethod
    def read(cls, r: _Reader) -> "_StreamState":
        st = cls(seq=r.varint("sequence") - 1, digest=r.u32("digest"))
        for table in (st.tensors, st.older):
            for _ in range(r.varint("tensor count")):
                name = bytes(r.blob("name", _MAX_NAME)).decode("utf-8", "strict")
                dtype = _DTYPE_OF.get(r.u8("dtype"))
                if dtype is None:
                    raise FormatError("unknown dtype in saved state")
                shape = tuple(r.varint("shape") for _ in range(r.u8("ndim")))
                n = int(np.prod(shape, dtype=object))
                raw = r.take(n * dtype.itemsize, "tensor data")  # bounded by the bytes present
                table[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if st.compute_digest() != st.digest:
            raise FormatError("saved state does not match its digest")
        return st


def _stream_id_bytes(stream_id: Any) -> bytes:
    if stream_id is None:
        return os.urandom(16)
    b = stream_id.encode() if isinstance(stream_id, str) else bytes(stream_id)
    if not 1 <= len(b) <= _MAX_STREAM_ID:
        raise InvalidArgumentError(f"stream_id must be 1..{_MAX_STREAM_ID} bytes")
    return b


class GradientEncoder:
    """Encodes one stream of whole-model updates, message after message.

    error_bound, mode, coder, threads: as :func:`ebgc.compress`, per tensor.
    stream_id: str or bytes naming the stream (default: 16 random bytes).
    keyframe_interval: send a keyframe (no temporal prediction) every N messages (None: only the
    first message and on request).
    history: how many earlier reconstructions a tensor may be predicted from (0: none, every
    message coded one-shot; 1: the last one, scaled; 2: a blend of the last two). The predictor is
    chosen per tensor; the decoder needs no setting.
    low_rank: matrices may be predicted by a low-rank approximation instead (see
    :func:`ebgc.compress`), where that codes smaller than the predictors above.
    """

    def __init__(
        self,
        error_bound: float,
        *,
        mode: str = "rel",
        coder: str = "auto",
        stream_id: Any = None,
        keyframe_interval: Optional[int] = None,
        history: int = 2,
        threads: Optional[int] = None,
        low_rank: bool = True,
    ):
        self.error_bound = _error_bound(error_bound)
        self.mode = mode
        self._mode = _choice(mode, MODES, "mode")
        self.coder = coder
        self._coder = _choice(coder, CODERS, "coder")
        self._threads = _threads(threads)
        if keyframe_interval is not None and (
            isinstance(keyframe_interval, bool) or not isinstance(keyframe_interval, int) or keyframe_interval < 1
        ):
            raise InvalidArgumentError("keyframe_interval must be None or an integer >= 1")
        self.keyframe_interval = keyframe_interval
        if history not in (0, 1, 2) or isinstance(history, bool):
            raise InvalidArgumentError("history must be 0, 1 or 2")
        self.history = history
        self.low_rank = bool(low_rank)
        self.stream_id = _stream_id_bytes(stream_id)
        self._state = _StreamState()

    @property
    def sequence(self) -> int:
        """Sequence number the next message will carry."""
        return self._state.seq + 1

    def encode(self, tensors: Mapping[str, Any], *, keyframe: bool = False) -> bytes:
        """One message holding every tensor of `tensors` (name -> float32/float64 array)."""
        if not isinstance(tensors, Mapping):
            raise TypeError("tensors must be a mapping of names to arrays")
        st = self._state
        seq = st.seq + 1
        key = keyframe or seq == 0 or (self.keyframe_interval is not None and seq % self.keyframe_interval == 0)
        body = bytearray(MESSAGE_MAGIC + bytes([MESSAGE_VERSION, _KEYFRAME if key else 0]))
        body += bytes([len(self.stream_id)]) + self.stream_id + _varint(seq)
        body += struct.pack("<I", 0 if key else st.digest) + _varint(len(tensors))
        updates: Dict[str, np.ndarray] = {}
        for name, data in tensors.items():
            if not isinstance(name, str) or not 0 < len(name.encode()) <= _MAX_NAME:
                raise InvalidArgumentError(f"tensor names must be non-empty str of <= {_MAX_NAME} bytes")
            x = _as_host_array(data)
            last, older = (None, None) if key or not self.history else st.history(name, x)
            if self.history < 2:
                older = None
            rec = np.empty(x.shape, x.dtype)  # receives exactly what the decoder will hold
            blob = _core.compress(_core_view(x), list(x.shape), self.error_bound, self._mode, self._coder,
                                  self._threads, _core.DEFAULT_CHUNK_LOG2, _core_view(last), _core_view(rec),
                                  _core_view(older), as_dtype=_as_dtype(x),
                                  low_rank=self.low_rank)
            updates[name] = rec
            nb = name.encode()
            body += _varint(len(nb)) + nb + _varint(len(blob)) + blob
        self._state = st.advance(seq, updates, key)
        return _sealed(body)

    def save(self) -> bytes:
        """The encoder's whole state as bytes (settings, sequence, reconstructions)."""
        out = bytearray(STATE_MAGIC + bytes([MESSAGE_VERSION, 0]))
        settings = self.history | (0 if self.low_rank else _NO_LOW_RANK)
        out += struct.pack("<d", self.error_bound) + bytes([self._mode, self._coder & 0xFF, settings])
        out += _varint(self.keyframe_interval or 0) + bytes([len(self.stream_id)]) + self.stream_id
        self._state.write(out)
        return _sealed(out)

    @classmethod
    def load(cls, data: Any, *, threads: Optional[int] = None) -> "GradientEncoder":
        """An encoder restored from :meth:`save`; it continues the same stream."""
        r = _open_state(data, 0, "encoder state")
        eb = struct.unpack("<d", r.take(8, "error bound"))[0]
        mode_id, coder_id, settings = r.u8("mode"), r.u8("coder"), r.u8("history")
        history, low_rank = settings & ~_NO_LOW_RANK, not settings & _NO_LOW_RANK
        if history > 2:
            raise FormatError("bad history in encoder state")
        mode = next((k for k, v in MODES.items() if v == mode_id), None)
        coder_id = 4 if coder_id == 3 else coder_id  # states saved when "context" wrote coder 3
        coder = next((k for k, v in CODERS.items() if (v & 0xFF) == coder_id), None)
        if mode is None or coder is None:
            raise FormatError("bad settings in encoder state")
        interval = r.varint("keyframe interval") or None
        sid = bytes(r.take(r.u8("stream id length"), "stream id"))
        enc = cls(eb, mode=mode, coder=coder, stream_id=sid, keyframe_interval=interval,
                  history=history, threads=threads, low_rank=low_rank)
        enc._state = _StreamState.read(r)
        return enc


@dataclass(frozen=True)
class MessageInfo:
    stream_id: bytes
    sequence: int
    keyframe: bool
    state_digest: int
    tensors: Tuple[Tuple[str, bytes], ...]  # (name, ebgc blob)


def parse_message(message: Any) -> MessageInfo:
    """Validate a message's container (checksum, lengths) and list its parts."""
    r = _Reader(_check_sealed(message, MESSAGE_MAGIC, "stream message"), "stream message")
    r.take(5, "header")
    flags = r.u8("flags")
    if flags & ~_KEYFRAME:
        raise FormatError("unknown message flags")
    n = r.u8("stream id length")
    if not 1 <= n <= _MAX_STREAM_ID:
        raise FormatError("bad stream id length")
    sid = bytes(r.take(n, "stream id"))
    seq = r.varint("sequence")
    digest = r.u32("state digest")
    count = r.varint("tensor count")
    if count > len(r.data) - r.pos:  # every tensor takes at least two bytes
        raise FormatError("tensor count larger than the message")
    parts = []
    for _ in range(count):
        name = bytes(r.blob("tensor name", _MAX_NAME)).decode("utf-8", "replace")
        parts.append((name, bytes(r.blob("tensor blob"))))
    if r.pos != len(r.data):
        raise FormatError("trailing bytes in stream message")
    return MessageInfo(sid, seq, bool(flags & _KEYFRAME), digest, tuple(parts))


class GradientDecoder:
    """Decodes the messages of any number of streams (one state per stream id)."""

    def __init__(self, *, threads: Optional[int] = None):
        self._threads = _threads(threads)
        self._streams: Dict[bytes, _StreamState] = {}

    def streams(self) -> Iterator[bytes]:
        return iter(self._streams)

    def decode(self, message: Any) -> Dict[str, np.ndarray]:
        """The tensors of one message. Raises StreamError, with the reason, if the message does
        not follow the last one applied for its stream; the decoder's state is then unchanged."""
        m = parse_message(message)
        sid = m.stream_id.hex()
        st = self._streams.get(m.stream_id)
        if not m.keyframe:
            if st is None:
                raise StreamError(f"stream {sid}: message {m.sequence} before any keyframe "
                                  "(missed the first message, or the decoder restarted)")
            if m.sequence == st.seq:
                raise StreamError(f"stream {sid}: message {m.sequence} repeated")
            if m.sequence < st.seq:
                raise StreamError(f"stream {sid}: message {m.sequence} arrived after {st.seq} (reordered)")
            if m.sequence > st.seq + 1:
                raise StreamError(f"stream {sid}: message {m.sequence} arrived but {st.seq + 1} was "
                                  f"expected ({m.sequence - st.seq - 1} lost)")
            if m.state_digest != st.digest:
                raise StreamError(f"stream {sid}: message {m.sequence} was predicted from a state this "
                                  "decoder does not hold (digest mismatch)")
        elif st is not None and m.sequence <= st.seq:
            raise StreamError(f"stream {sid}: keyframe {m.sequence} arrived after message {st.seq} (reordered or repeated)")
        base = _StreamState() if m.keyframe else st
        out: Dict[str, np.ndarray] = {}
        for name, blob in m.tensors:
            h = _core.header(blob)
            rec = np.empty(tuple(h["shape"]), dtype_from_name(h["dtype"]))
            terms = len(h["predictor_coefficients"])
            last, older = base.history(name, rec)
            if terms > (last is not None) + (older is not None):
                raise StreamError(f"stream {sid}: tensor {name!r} is predicted from earlier "
                                  "reconstructions this decoder does not hold")
            _core.decompress_into(blob, _core_view(rec), self._threads, _core_view(last) if terms else None,
                                  _core_view(older) if terms == 2 else None, as_dtype=_as_dtype(rec),
                                  verify_checksum=False)  # header() just checked it
            out[name] = rec
        # only now: a message that fails anywhere above changes nothing
        self._streams[m.stream_id] = base.advance(m.sequence, out, m.keyframe)
        return {k: v.copy() for k, v in out.items()}

    def save(self) -> bytes:
        """Every stream's state as bytes."""
        out = bytearray(STATE_MAGIC + bytes([MESSAGE_VERSION, 1])) + _varint(len(self._streams))
        for sid, st in self._streams.items():
            out += bytes([len(sid)]) + sid
            st.write(out)
        return _sealed(out)

    @classmethod
    def load(cls, data: Any, *, threads: Optional[int] = None) -> "GradientDecoder":
        r = _open_state(data, 1, "decoder state")
        dec = cls(threads=threads)
        for _ in range(r.varint("stream count")):
            sid = bytes(r.take(r.u8("stream id length"), "stream id"))
            dec._streams[sid] = _StreamState.read(r)
        return dec
