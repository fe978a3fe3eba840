"""Stateful streams: round-after-round model updates from one sender.

A :class:`GradientEncoder` turns each whole-model update (a mapping of names to arrays) into one
message; a :class:`GradientDecoder` turns messages back into arrays. Tensors seen before in the
same stream are predicted from their previous *reconstruction*, which both sides hold bit for
bit, so encoder and decoder share nothing but bytes. Every message carries the stream id, a
sequence number, a keyframe flag and a digest of the state it was predicted from: a decoder that
is out of step raises :class:`~ebgc.StreamError` instead of returning wrong data.

Encoders and decoders are safe to share between threads: each message is encoded or decoded, and
the state advanced, under the object's lock (so two threads can never both apply one message).

Layouts: docs/FORMAT.md, "Stream messages"; containers are read and written by ebgc.wire.
"""
from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from . import _core, api, arrays, budget, cuda, placement
from .errors import ArgumentTypeError, CudaError, FormatError, InvalidArgumentError, OutputLimitError, StreamError
from .settings import Settings, max_output_of, threads_of
from .vocabulary import CODER_NAMES, CODERS, DTYPE_BY_CODE, DTYPE_CODES, DTYPES, MODES, dtype_from_name, dtype_name
from .wire import MAX_NAME, FetchingReader, Reader, Writer, varint
from ._legacy import saved_coder_id

MESSAGE_MAGIC = b"EBGS"
STATE_MAGIC = b"EBGT"
MESSAGE_VERSION = 1
STATE_VERSION = 2  # 1: the state digest covered the reconstructions only (still read)
_KEYFRAME = 1
_NO_LOW_RANK = 0x80     # in a saved encoder's history byte (older states: low rank on)
_ERROR_FEEDBACK = 0x40  # in a saved encoder's history byte (version 2)
MAX_STREAM_ID = 64
MAX_SEQUENCE = 1 << 63  # sequence numbers below it (a saved state stores sequence + 1 in 64 bits)
_ENCODER, _DECODER = 0, 1


def stream_id_text(sid: bytes) -> str:
    """A stream id for messages: its text where it is printable UTF-8, else hex."""
    try:
        text = sid.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return sid.hex()


# ---- per-stream state -----------------------------------------------------------------------
@dataclass
class _StreamState:
    seq: int = -1                     # last sequence number applied
    digest: int = 0                   # digest of the reconstructions after that message
    tensors: Dict[str, np.ndarray] = field(default_factory=dict)  # last reconstruction per name
    older: Dict[str, np.ndarray] = field(default_factory=dict)    # the one before, if any

    def history(self, name: str, x: Any):
        """(last, second-last) reconstructions of `name` usable to predict x, or Nones, on x's side
        (host or device: the state follows a tensor that changes sides)."""
        last = self.tensors.get(name)
        if last is None or not placement.same_kind(last, x):
            return None, None  # new tensor, shape or dtype: it starts over
        older = self.older.get(name)
        if older is not None and not placement.same_kind(older, x):
            older = None
        return placement.moved(last, x), placement.moved(older, x)

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
        """CRC-32C chained over the reconstructions (docs/FORMAT.md): what a message names as the
        state it was predicted from."""
        crc = 0
        for tag, table in ((b"L", self.tensors), (b"O", self.older)):
            for name in sorted(table):
                t = table[name]
                dtype, shape = (dtype_name(t.dtype), t.shape) if type(t) is np.ndarray else placement.meta(t)
                crc = _core.crc32c(tag + name.encode(), crc)
                crc = _core.crc32c(struct.pack("<B", DTYPE_CODES[dtype]) + b"".join(varint(d) for d in shape), crc)
                crc = placement.crc32c(t, crc)  # where the values live
        return crc

    def seal(self, settings: bytes) -> int:
        """The saved state's digest (version 2): the reconstructions' digest bound to the sequence
        number and the owner's settings."""
        return _core.crc32c(settings + varint(self.seq + 1) + struct.pack("<I", self.digest))

    def write(self, w: Writer, settings: bytes) -> None:
        w.varint(self.seq + 1).u32(self.seal(settings))
        _write_tensors(w, self.tensors)
        _write_tensors(w, self.older)

    @classmethod
    def read(cls, r: Reader, settings: bytes) -> "_StreamState":
        st = cls(seq=r.varint("sequence") - 1)
        if st.seq >= MAX_SEQUENCE:
            raise FormatError("saved state sequence number out of range")
        stored = r.u32("digest")
        st.tensors = _read_tensors(r, "reconstruction")
        st.older = _read_tensors(r, "reconstruction")
        st.digest = st.compute_digest()
        expected = st.digest if r.version == 1 else st.seal(settings)
        if stored != expected:
            raise FormatError("saved state does not match its digest")
        return st


def _write_tensors(w: Writer, table: Mapping[str, np.ndarray]) -> None:
    """A table of named arrays: varint count, then per array its name, u8 dtype, shape, values."""
    w.varint(len(table))
    for name, t in table.items():
        t = placement.to_host(t)
        w.name(name).u8(DTYPE_CODES[dtype_name(t.dtype)]).shape(t.shape).array(arrays.core_buffer(t))


def _read_tensors(r: Reader, what: str) -> Dict[str, np.ndarray]:
    table: Dict[str, np.ndarray] = {}
    for _ in range(r.count(f"{what} count", 3)):
        name = r.name(f"{what} name")
        dtype = DTYPE_BY_CODE.get(r.u8("dtype"))
        if dtype is None:
            raise FormatError("unknown dtype in saved state")
        table[name] = r.array(dtype, r.shape(), f"{what} data")
    return table


def _decode_device(device: Any) -> Any:
    """None for the host, else the device as arrays.empty_device takes it (checked)."""
    if device is None or str(device) == "cpu":
        return None
    arrays.parse_device(device)
    if not cuda.available():
        raise CudaError(f"decoding to {device} needs the CUDA backend and a CUDA device (ebgc.HAS_CUDA is False)")
    return device


def _stream_id_bytes(stream_id: Any) -> bytes:
    if stream_id is None:
        return os.urandom(16)
    b = stream_id.encode() if isinstance(stream_id, str) else bytes(stream_id)
    if not 1 <= len(b) <= MAX_STREAM_ID:
        raise InvalidArgumentError(f"stream_id must be 1..{MAX_STREAM_ID} bytes")
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
    budget_bytes: make each message no larger than this by loosening every tensor's bound by the
    same factor, up to max_error_bound (default: 64 x error_bound; same mode). A message still over
    the budget at max_error_bound is sent as it is; :attr:`last_report` says which, and the bound
    used travels in each tensor's blob.
    error_feedback: add each tensor's coding error to its next value before coding it. Use it for
    streams of updates that the receiver sums (a looser bound's error would otherwise accumulate
    in the model), not for streams of weights.

    Tensors given as CUDA arrays (torch, cupy) are coded on their GPU when ebgc.HAS_CUDA: the
    prediction, quantization and coding run there and their reconstructions stay there; only the
    message comes back to the host (or, ``encode(..., device_message=True)``, not even that: the
    message is assembled in GPU memory). The messages decode on either side
    (:class:`GradientDecoder`), and a tensor may change sides between messages.
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
        budget_bytes: Optional[int] = None,
        max_error_bound: Optional[float] = None,
        error_feedback: bool = False,
    ):
        self._settings = Settings.make(error_bound, mode, coder, low_rank, threads)
        self.budget_bytes, self._max_scale = budget.check_budget(budget_bytes, self._settings.error_bound,
                                                                  max_error_bound)
        self.error_feedback = bool(error_feedback)
        self._residuals: Dict[str, np.ndarray] = {}
        self.last_report: Optional[MessageReport] = None
        if keyframe_interval is not None and (
            isinstance(keyframe_interval, bool) or not isinstance(keyframe_interval, int) or keyframe_interval < 1
        ):
            raise InvalidArgumentError("keyframe_interval must be None or an integer >= 1")
        self.keyframe_interval = keyframe_interval
        if history not in (0, 1, 2) or isinstance(history, bool):
            raise InvalidArgumentError("history must be 0, 1 or 2")
        self.history = history
        self.stream_id = _stream_id_bytes(stream_id)
        self._state = _StreamState()
        self._lock = threading.Lock()

    error_bound = property(lambda self: self._settings.error_bound)
    mode = property(lambda self: self._settings.mode)
    coder = property(lambda self: self._settings.coder)
    low_rank = property(lambda self: self._settings.low_rank)
    max_error_bound = property(lambda self: self._settings.error_bound * self._max_scale if self.budget_bytes else None)

    @property
    def sequence(self) -> int:
        """Sequence number the next message will carry."""
        return self._state.seq + 1

    def encode(self, tensors: Mapping[str, Any], *, keyframe: bool = False, budget_bytes: Optional[int] = None,
               device_message: bool = False) -> Any:
        """One message holding every tensor of `tensors` (name -> float array). budget_bytes: this
        message's budget, in place of the encoder's (up to its max_error_bound). device_message
        (CUDA arrays only): the message as a uint8 array in their GPU's memory (torch for torch
        tensors, else cupy), each blob assembled there and framed there, its checksum computed
        there: its coded bytes never come to the host (e.g. for NCCL). A message of no tensors is
        bytes."""
        if not isinstance(tensors, Mapping):
            raise ArgumentTypeError("tensors must be a mapping of names to arrays")
        limit, max_scale = self.budget_bytes, self._max_scale
        if budget_bytes is not None:
            limit, max_scale = budget.check_budget(budget_bytes, self._settings.error_bound, self.max_error_bound)
        with self._lock:
            st = self._state
            seq = st.seq + 1
            key = keyframe or seq == 0 or (self.keyframe_interval is not None and seq % self.keyframe_interval == 0)
            inputs = []
            for name, data in tensors.items():
                if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME:
                    raise InvalidArgumentError(f"tensor names must be non-empty str of <= {MAX_NAME} bytes")
                x = self._with_feedback(name, self._placed(data))
                if device_message and not (arrays.is_device(x) and cuda.available()):
                    raise InvalidArgumentError("device_message=True needs CUDA arrays and the CUDA backend")
                last, older = (None, None) if key or not self.history else st.history(name, x)
                inputs.append((name, x, last, older if self.history == 2 else None))

            def attempt(scale: float):
                settings = self._settings.scaled(scale)
                w = Writer(MESSAGE_MAGIC, MESSAGE_VERSION).u8(_KEYFRAME if key else 0).short_bytes(self.stream_id)
                w.varint(seq).u32(0 if key else st.digest).varint(len(inputs))
                # Each reconstruction receives exactly what the decoder will hold. The whole
                # message goes through one call: one grid per device and dtype on the GPU.
                recs = [placement.empty_like(x) for _, x, _, _ in inputs]
                blobs = api.compress_many_with([x for _, x, _, _ in inputs], settings, reconstructions=recs,
                                               previous=[last for _, _, last, _ in inputs],
                                               previous2=[older for _, _, _, older in inputs],
                                               device_blobs=device_message and bool(inputs))
                updates: Dict[str, np.ndarray] = {}
                for (name, _, _, _), blob, rec in zip(inputs, blobs, recs):
                    updates[name] = rec
                    w.name(name)
                    w.part(blob) if device_message else w.blob(blob)
                message = cuda.seal_pieces(w.pieces()) if device_message and inputs else w.seal()
                return len(message), (message, updates)

            result = budget.fit(attempt, limit, max_scale)
            message, updates = result.payload
            self._state = st.advance(seq, updates, key)
            if self.error_feedback:
                for name, x, _, _ in inputs:
                    self._residuals[name] = placement.coding_error(x, updates[name])
            self.last_report = MessageReport(seq, result.nbytes, sum(_nbytes(x) for _, x, _, _ in inputs),
                                             self._settings.error_bound * result.scale, result.scale,
                                             result.within_budget, result.attempts)
            return message

    @staticmethod
    def _placed(data: Any) -> Any:
        """A tensor where it will be coded: on its GPU (torch or cupy) with the CUDA backend, else
        on the host."""
        if arrays.is_device(data) and cuda.available():
            return placement.framework_array(data)
        return arrays.any_to_host(data)

    def _with_feedback(self, name: str, x: Any) -> Any:
        """x plus the error the last message made of `name` (error feedback), in x's dtype."""
        return placement.plus_feedback(x, self._residuals.get(name) if self.error_feedback else None)

    def _settings_bytes(self) -> bytes:
        s = self._settings
        flags = self.history | (0 if s.low_rank else _NO_LOW_RANK) | (_ERROR_FEEDBACK if self.error_feedback else 0)
        w = Writer().f64(s.error_bound).u8(s.mode_id).u8(s.coder_id & 0xFF).u8(flags)
        w.varint(self.keyframe_interval or 0).short_bytes(self.stream_id)
        return bytes(w.varint(self.budget_bytes or 0).f64(self.max_error_bound or 0.0).buf)

    def save(self) -> bytes:
        """The encoder's whole state as bytes (settings, sequence, reconstructions)."""
        with self._lock:
            settings = self._settings_bytes()
            w = Writer(STATE_MAGIC, STATE_VERSION).u8(_ENCODER).raw(settings)
            self._state.write(w, settings)
            _write_tensors(w, self._residuals)
            return w.seal()

    @classmethod
    def load(cls, data: Any, *, threads: Optional[int] = None) -> "GradientEncoder":
        """An encoder restored from :meth:`save`; it continues the same stream."""
        r = Reader.open(data, STATE_MAGIC, (1, STATE_VERSION), "encoder state")
        if r.u8("kind") != _ENCODER:
            raise FormatError("these bytes are not a saved encoder state")
        start = r.pos
        eb = r.f64("error bound")
        mode_id, coder_id, flags = r.u8("mode"), r.u8("coder"), r.u8("history")
        history, low_rank = flags & 3, not flags & _NO_LOW_RANK
        coder_id = saved_coder_id(coder_id)
        if history > 2 or flags & ~(3 | _NO_LOW_RANK | _ERROR_FEEDBACK) or mode_id not in MODES.values() or \
                coder_id not in {v & 0xFF for v in CODERS.values()}:
            raise FormatError("bad settings in encoder state")
        interval = r.varint("keyframe interval") or None
        sid = r.short_bytes("stream id", MAX_STREAM_ID)
        budget_bytes, max_bound = (r.varint("budget") or None, r.f64("max error bound") or None) if r.version >= 2 else (None, None)
        settings = bytes(r.data[start : r.pos])
        try:
            enc = cls(eb, mode=_name(MODES, mode_id), coder=_name(CODERS, coder_id, 0xFF), stream_id=sid,
                      keyframe_interval=interval, history=history, threads=threads, low_rank=low_rank,
                      budget_bytes=budget_bytes, max_error_bound=max_bound, error_feedback=bool(flags & _ERROR_FEEDBACK))
        except InvalidArgumentError as exc:
            raise FormatError(f"bad settings in encoder state ({exc})") from None
        enc._state = _StreamState.read(r, settings)
        if r.version >= 2:
            enc._residuals = _read_tensors(r, "residual")
        r.end()
        return enc


def _nbytes(x: Any) -> int:
    dtype, shape = placement.meta(x)
    return int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize


def _name(table: Mapping[str, int], value: int, mask: int = -1) -> str:
    return next(k for k, v in table.items() if v & mask == value)


@dataclass(frozen=True)
class MessageReport:
    """What the last :meth:`GradientEncoder.encode` did."""

    sequence: int
    nbytes: int
    raw_nbytes: int
    error_bound: float      # the bound every tensor was coded at
    bound_scale: float      # error_bound / the encoder's error_bound (> 1: loosened for the budget)
    within_budget: bool     # False: over budget_bytes even at max_error_bound (sent anyway)
    attempts: int           # encodings it took


@dataclass(frozen=True)
class MessageInfo:
    stream_id: bytes
    sequence: int
    keyframe: bool
    state_digest: int
    tensors: Tuple[Tuple[str, bytes], ...]  # (name, ebgc blob)


def _read_message(message: Any) -> Tuple[MessageInfo, Tuple[Tuple[str, Any], ...]]:
    """The message's header and (name, blob) parts: views of host bytes, or, for a message in
    device memory, parts of it (fetched only in small windows, checksummed on the device)."""
    if _in_device_memory(message):
        return read_message_from(FetchingReader.open(cuda.DeviceBytes(message), MESSAGE_MAGIC, (MESSAGE_VERSION,),
                                                     "stream message"))
    return read_message_from(Reader.open(message, MESSAGE_MAGIC, (MESSAGE_VERSION,), "stream message"))


def read_message_from(r: Reader) -> Tuple[MessageInfo, Tuple[Tuple[str, Any], ...]]:
    """A message's fields from a reader opened past its magic and version."""
    flags = r.u8("flags")
    if flags & ~_KEYFRAME:
        raise FormatError("unknown message flags")
    sid = r.short_bytes("stream id", MAX_STREAM_ID)
    seq = r.varint("sequence")
    if seq >= MAX_SEQUENCE:
        raise FormatError("stream message sequence number out of range")
    digest = r.u32("state digest")
    parts = tuple((r.name("tensor name"), r.payload("tensor blob")) for _ in range(r.count("tensor count", 2)))
    r.end()
    return MessageInfo(sid, seq, bool(flags & _KEYFRAME), digest, ()), parts


def _in_device_memory(message: Any) -> bool:
    return not isinstance(message, (bytes, bytearray, memoryview, np.ndarray)) and arrays.is_device(message)


def _host_message(message: Any) -> Any:
    return cuda._to_host_bytes(message) if _in_device_memory(message) else message


def parse_message(message: Any) -> MessageInfo:
    """Validate a message's container (checksum, lengths, names) and list its parts."""
    m, parts = _read_message(_host_message(message))
    return MessageInfo(m.stream_id, m.sequence, m.keyframe, m.state_digest,
                       tuple((name, bytes(blob)) for name, blob in parts))


def message_info(message: Any) -> dict:
    """A message's header and, per tensor, its blob's header (``ebgc.info`` of a stream message)."""
    message = _host_message(message)
    m, parts = _read_message(message)
    tensors = {name: api.info(blob) for name, blob in parts}
    raw = sum(t["raw_nbytes"] for t in tensors.values())
    nbytes = len(memoryview(message))
    return {"kind": "stream message", "format_version": MESSAGE_VERSION, "stream_id": stream_id_text(m.stream_id),
            "sequence": m.sequence, "keyframe": m.keyframe, "state_digest": m.state_digest, "nbytes": nbytes,
            "raw_nbytes": raw, "ratio": raw / nbytes if nbytes else float("nan"), "tensors": tensors}


class GradientDecoder:
    """Decodes the messages of any number of streams (one state per stream id).

    max_output: refuse (OutputLimitError) a message whose tensors decode to more than this many
    bytes, before decoding any of them: for services that take messages from strangers.
    device: where tensors are decoded and returned, and their reconstructions kept: None or "cpu"
    (numpy arrays), or "cuda" / "cuda:N" / a torch CUDA device (device arrays: cupy, or torch where
    cupy is missing or for bfloat16; needs ebgc.HAS_CUDA). :meth:`decode` may name another device
    for one message: the state follows.
    """

    def __init__(self, *, threads: Optional[int] = None, max_output: Optional[int] = None, device: Any = None):
        self._threads = threads_of(threads)
        self._max_output = max_output_of(max_output)
        self._device = _decode_device(device)
        self._streams: Dict[bytes, _StreamState] = {}
        self._lock = threading.Lock()

    def streams(self) -> Iterator[bytes]:
        return iter(list(self._streams))

    def forget(self, stream_id: Any) -> None:
        """Drops a stream's state (its next message must be a keyframe); no error if unknown."""
        with self._lock:
            self._streams.pop(_stream_id_bytes(stream_id), None)

    def _check_order(self, m: MessageInfo, st: Optional[_StreamState]) -> None:
        sid = stream_id_text(m.stream_id)
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

    def decode(self, message: Any, *, device: Any = None) -> Dict[str, Any]:
        """The tensors of one message. Raises StreamError, with the reason, if the message does
        not follow the last one applied for its stream; the decoder's state is then unchanged.
        device: for this message, in place of the decoder's device."""
        target = self._device if device is None else _decode_device(device)
        # A message in device memory decoded on a GPU stays there: only its framing, each blob's
        # front and the checksums come to the host.
        m, parts = _read_message(message if target is not None else _host_message(message))
        # Every blob parsed and checked once, and the message's size limited, before any decoding.
        limit = self._max_output or None
        if target is None:
            blobs = [(name, api.inspect(blob, max_output=limit, threads=self._threads)) for name, blob in parts]
        else:
            blobs = [(name, cuda.inspect_device(blob, max_output_of(limit)) if _in_device_memory(blob)
                      else cuda.inspect(api.blob_bytes(blob), max_output_of(limit), self._threads))
                     for name, blob in parts]
        total = sum(cuda.parsed_blob(b).output_nbytes for _, b in blobs)
        if self._max_output and total > self._max_output:
            raise OutputLimitError(f"the message decodes to {total} bytes, over max_output={self._max_output}")
        with self._lock:  # the order check and the state update are one step
            st = self._streams.get(m.stream_id)
            self._check_order(m, st)
            base = _StreamState() if m.keyframe else st
            out: Dict[str, Any] = {}
            for name, inspected in blobs:
                blob = cuda.parsed_blob(inspected)
                if target is None:
                    rec = api.empty_host(tuple(blob.shape), dtype_from_name(blob.dtype))
                else:
                    rec = arrays.empty_device(tuple(blob.shape), blob.dtype, target)
                last, older = base.history(name, rec)
                terms = blob.predictor_terms
                if terms > (last is not None) + (older is not None):
                    raise StreamError(f"stream {stream_id_text(m.stream_id)}: tensor {name!r} is predicted from "
                                      "earlier reconstructions this decoder does not hold")
                if target is None:
                    _core.decompress_into(blob, arrays.core_buffer(rec), self._threads,
                                          arrays.core_buffer(last) if terms else None,
                                          arrays.core_buffer(older) if terms == 2 else None, dtype=blob.dtype)
                else:
                    cuda.decode_inspected(inspected, rec, self._threads, None, last if terms else None,
                                          older if terms == 2 else None)
                out[name] = rec
            # only now: a message that fails anywhere above changes nothing
            self._streams[m.stream_id] = base.advance(m.sequence, out, m.keyframe)
        return {k: placement.copy(v) for k, v in out.items()}

    def save(self) -> bytes:
        """Every stream's state as bytes."""
        with self._lock:
            w = Writer(STATE_MAGIC, STATE_VERSION).u8(_DECODER).varint(len(self._streams))
            for sid, st in self._streams.items():
                w.short_bytes(sid)
                st.write(w, sid)
            return w.seal()

    @classmethod
    def load(cls, data: Any, *, threads: Optional[int] = None, max_output: Optional[int] = None,
             device: Any = None) -> "GradientDecoder":
        r = Reader.open(data, STATE_MAGIC, (1, STATE_VERSION), "decoder state")
        if r.u8("kind") != _DECODER:
            raise FormatError("these bytes are not a saved decoder state")
        dec = cls(threads=threads, max_output=max_output, device=device)
        for _ in range(r.count("stream count", 7)):
            sid = r.short_bytes("stream id", MAX_STREAM_ID)
            dec._streams[sid] = _StreamState.read(r, sid)
        r.end()
        return dec
