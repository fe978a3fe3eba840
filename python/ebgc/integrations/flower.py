"""Flower plugin: ebgc-compressed model updates over Flower's Message API (``flwr.app``,
``flwr.serverapp.strategy``; tested with flwr 1.42). One line on each side::

    app = ClientApp(mods=[ebgc_mod(1e-2)])                 # client: compress what it sends
    strategy = EBGCStrategy(FedAvg(...))                    # server: decode before aggregating

What happens:

- The server side (:class:`EBGCStrategy`, or :class:`EBGCServer` in a hand-written loop) adds a
  small ConfigRecord ``"ebgc.control"`` to every instruction: a reference token, what it holds
  of that node's streams (stream id and last sequence number applied, per ArrayRecord key) and
  optional encoder options for that node (``client_options``). A client only compresses when
  the instruction carries it: without the server side, everything stays uncompressed.
- The client mod (:func:`ebgc_mod`) replaces each ArrayRecord of a reply by one ``Array`` of
  ``stype="ebgc"`` holding an ebgc container: floating tensors of more than ``param_cutoff``
  values go into one :class:`ebgc.GradientEncoder` message (one stream per node and record key,
  the encoder state kept in ``context.state``, which Flower keeps for the node between the
  ClientApp processes of a run); a tensor the instruction also carried (same name, shape and
  dtype) is sent as its *update* (reply minus what the client received), within the bound of
  that update (mode "rel": ``error_bound * (max - min)`` of the update, per tensor); the others go
  exactly, as raw bytes with their dtype and shape.
- The server decodes with one :class:`ebgc.GradientDecoder` per node stream and adds the updates
  back to the arrays it sent that node, so the strategy receives plain ArrayRecords (reply minus
  the control record; each array is the reference plus the decoded update, rounded once to its
  dtype). The server's stream state lives in memory: a new EBGCStrategy (a restarted ServerApp)
  simply receives keyframes. A reply that fails to decode becomes an error reply, which strategies
  skip like a failed node, and that node's stream is dropped.
- Downlink (``EBGCStrategy(..., downlink=True)``): the arrays of each instruction go as the
  change from what that node holds (a stream per node; the first message, and any message after
  the node fell out of step, sends the arrays exactly); the client restores them before its
  handler runs.

Keyframes and recovery: acknowledgements, not a schedule. Each instruction says what the server
holds of the node's upload stream; the client continues its stream only when that matches its own
last message, otherwise it starts a new stream (a keyframe): after a server restart, a reply lost
or timed out, a node that missed rounds with a lost reply, or a changed encoder option. A node
that simply is not sampled for some rounds continues its stream. Each reply likewise says what the
client holds of the downlink stream. A decode failure (StreamError, a corrupt payload) drops the
node's stream, so its next reply is a keyframe; that one update is lost (the strategy treats it as
a failure). ``keyframe_interval`` in the encoder options adds periodic keyframes on top.

Bytes on the wire: ebgc containers (ebgc.wire, CRC-sealed) and Flower's own records; nothing is
pickled. Payload layout (version 1): ``"EBFL" | version | u8 flags | varint count | entries |
stream message (length-prefixed, may be empty) | CRC-32C``; an entry is its name, a u8 kind
(0: in the stream message as is, 1: in the stream message as the change from the reference,
2: exact: dtype string, shape, raw bytes).
"""
from __future__ import annotations

import json
import logging
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import Strategy
except ImportError as exc:  # pragma: no cover - exercised only without flwr
    raise ImportError("ebgc.integrations.flower needs Flower's Message API (tested with: pip install flwr==1.42.0)") from exc

from ..errors import EbgcError, FormatError, StreamError
from ..stream import GradientDecoder, GradientEncoder, parse_message, stream_id_text
from ..wire import Reader, Writer

__all__ = ["ebgc_mod", "EBGCMod", "EBGCServer", "EBGCStrategy", "Traffic", "STYPE", "CONTROL", "PAYLOAD",
           "ERROR_CODE"]

STYPE = "ebgc"              # Array.stype of an ebgc payload
CONTROL = "ebgc.control"    # RecordDict key of the control ConfigRecord (instructions and replies)
PAYLOAD = "ebgc.payload"    # key of the one Array in a compressed ArrayRecord
ERROR_CODE = 0x6562         # Error.code of a reply the server could not decode
PROTOCOL = 1
_MAGIC, _VERSION = b"EBFL", 1
_ABS, _DELTA, _EXACT = 0, 1, 2
_STATE = "ebgc.state"       # context.state keys (client side)
_HELD = "ebgc.held."
_EXACT_KINDS = "biuf"       # dtypes an exact entry may have (no objects, strings or records)
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_log = logging.getLogger("flwr")

OptionsSpec = Union[None, Mapping[str, Any], Callable[[int, Optional[int]], Optional[Mapping[str, Any]]]]


# ---- payload container ------------------------------------------------------------------------
@dataclass
class _Entry:
    name: str
    kind: int
    exact: Optional[np.ndarray] = None


def _streamable(x: np.ndarray, cutoff: int) -> bool:
    return x.dtype in _FLOATS and x.size > cutoff


def _write_payload(entries: List[_Entry], message: bytes) -> bytes:
    w = Writer(_MAGIC, _VERSION).u8(0).varint(len(entries))
    for e in entries:
        w.name(e.name).u8(e.kind)
        if e.kind == _EXACT:
            a = np.ascontiguousarray(e.exact)
            w.blob(a.dtype.str.encode()).shape(a.shape).array(a)
    return w.blob(message).seal()


def _read_payload(data: Any) -> Tuple[List[_Entry], memoryview]:
    r = Reader.open(data, _MAGIC, (_VERSION,), "Flower payload")
    if r.u8("flags"):
        raise FormatError("unknown flags in an ebgc Flower payload")
    entries, seen = [], set()
    for _ in range(r.count("entry count", 3)):
        name = r.name("entry name")
        if name in seen:
            raise FormatError(f"entry {name!r} twice in an ebgc Flower payload")
        seen.add(name)
        kind = r.u8("entry kind")
        if kind == _EXACT:
            spec = r.text(r.blob("dtype", 8), "dtype")
            try:
                dtype = np.dtype(spec)
            except TypeError:
                dtype = None
            if dtype is None or dtype.kind not in _EXACT_KINDS or dtype.str != spec:
                raise FormatError(f"unsupported dtype {spec!r} in an ebgc Flower payload")
            entries.append(_Entry(name, kind, r.array(dtype, r.shape(), "exact entry")))
        elif kind in (_ABS, _DELTA):
            entries.append(_Entry(name, kind))
        else:
            raise FormatError("unknown entry kind in an ebgc Flower payload")
    message = r.blob("stream message")
    r.end()
    return entries, message


def _payload_of(record: Any) -> Optional[bytes]:
    """The ebgc payload of a compressed ArrayRecord, else None."""
    if isinstance(record, ArrayRecord) and len(record) == 1 and PAYLOAD in record:
        arr = record[PAYLOAD]
        if arr.stype == STYPE:
            return arr.data
    return None


def _payload_record(payload: bytes) -> ArrayRecord:
    return ArrayRecord({PAYLOAD: Array(dtype="uint8", shape=(len(payload),), stype=STYPE, data=payload)})


def _numpy_record(record: ArrayRecord) -> Optional["OrderedDict[str, np.ndarray]"]:
    """Every array of a record as numpy, or None when one is not a numpy-serialized Array."""
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for name, arr in record.items():
        try:
            out[name] = arr.numpy()
        except (TypeError, ValueError):
            return None
    return out


def _float_arrays(record: ArrayRecord) -> Dict[str, np.ndarray]:
    """The floating arrays of a record (the references updates are computed from)."""
    arrays = _numpy_record(record) or {}
    return {k: v for k, v in arrays.items() if v.dtype in _FLOATS}


def _restore(entries: List[_Entry], decoded: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
             what: str) -> "OrderedDict[str, np.ndarray]":
    """The arrays of a payload from its entries, the stream message's tensors and the reference."""
    out: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for e in entries:
        if e.kind == _EXACT:
            out[e.name] = e.exact
            continue
        d = decoded.get(e.name)
        if d is None:
            raise FormatError(f"{what}: entry {e.name!r} is not in the stream message")
        if e.kind == _DELTA:
            r = ref.get(e.name)
            if r is None or r.shape != d.shape or r.dtype != d.dtype:
                raise StreamError(f"{what}: entry {e.name!r} is an update of an array this side does not hold")
            d = r + d
        out[e.name] = d
    extra = set(decoded) - {e.name for e in entries}
    if extra:
        raise FormatError(f"{what}: stream message holds tensors no entry names ({sorted(extra)[0]!r})")
    return out


def _to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _new_stream_id(node_id: int) -> str:
    return f"flwr/{node_id}/{secrets.token_hex(6)}"


def _same(a: Any, b: Any) -> bool:
    """An encoder's setting equals an option as given ("REL" is "rel"; floats up to rounding)."""
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _option_items(options: Mapping[str, Any]) -> Dict[str, Any]:
    bad = {"stream_id"} & set(options)
    if bad:
        raise ValueError("stream ids are chosen by the Flower plugin (one stream per node and record)")
    return {k: v for k, v in options.items() if v is not None}


@dataclass
class Traffic:
    """Bytes counted on one side: raw (the arrays uncompressed, in their dtype) and sent (ebgc
    payloads, plus arrays sent plainly); messages and keyframes."""

    raw_bytes: int = 0
    sent_bytes: int = 0
    messages: int = 0
    keyframes: int = 0

    def add(self, raw: int, sent: int, keyframe: bool = False) -> None:
        self.raw_bytes += raw
        self.sent_bytes += sent
        self.messages += 1
        self.keyframes += bool(keyframe)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.sent_bytes if self.sent_bytes else float("nan")

    def as_dict(self) -> Dict[str, Any]:
        return {"raw_bytes": self.raw_bytes, "sent_bytes": self.sent_bytes, "messages": self.messages,
                "keyframes": self.keyframes}


# ---- client side --------------------------------------------------------------------------------
class EBGCMod:
    """Client mod (see :func:`ebgc_mod`)."""

    def __init__(self, error_bound: float = 1e-2, *, encoder_options: Optional[Mapping[str, Any]] = None,
                 param_cutoff: int = 1024, records: Optional[Collection[str]] = None,
                 on_encode: Optional[Callable[[Dict[str, Any], Context], None]] = None):
        self.options = _option_items({"error_bound": error_bound, **(encoder_options or {})})
        GradientEncoder(**self.options)  # refuse bad options where they are written
        self.param_cutoff = int(param_cutoff)
        self.records = None if records is None else frozenset(records)
        self.on_encode = on_encode
        self._warned = False

    # Flower calls mods as mod(message, context, call_next)
    def __call__(self, msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        control = msg.content.get(CONTROL) if msg.has_content() else None
        if not isinstance(control, ConfigRecord) or control.get("v") != PROTOCOL:
            if not self._warned and msg.has_content():
                self._warned = True
                _log.warning("ebgc_mod: the server did not enable ebgc (EBGCStrategy/EBGCServer); "
                             "replies go uncompressed")
            return call_next(msg, context)
        del msg.content[CONTROL]
        state = context.state.get(_STATE)
        state = ConfigRecord(dict(state)) if isinstance(state, ConfigRecord) else ConfigRecord()
        acks: Dict[str, Any] = {}
        references = {}
        for key, record in list(msg.content.array_records.items()):
            payload = _payload_of(record)
            if payload is not None:  # downlink: restore the arrays before the handler sees them
                arrays, acks[key] = self._downlink(key, payload, state, context)
                msg.content[key] = _to_record(arrays)
                references[key] = {k: v for k, v in arrays.items() if v.dtype in _FLOATS}
            else:
                references[key] = _float_arrays(record)
        context.state[_STATE] = state  # what this node holds of the downlink, before the handler runs

        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        options = dict(self.options)
        options.update({k[4:]: v for k, v in control.items() if k.startswith("opt.")})
        for key, record in list(reply.content.array_records.items()):
            if (self.records is not None and key not in self.records) or _payload_of(record) is not None:
                continue
            payload = self._encode(context, key, record, references.get(key, {}), options, control, state)
            if payload is not None:
                reply.content[key] = _payload_record(payload)
        answer = ConfigRecord({"v": PROTOCOL, "token": control.get("token", 0)})
        for key, (sid, seq) in acks.items():
            answer[f"down.{key}"], answer[f"downseq.{key}"] = sid, seq
        reply.content[CONTROL] = answer
        context.state[_STATE] = state
        return reply

    def _downlink(self, key: str, payload: bytes, state: ConfigRecord, context: Context):
        entries, message = _read_payload(payload)
        info = parse_message(message)
        saved = state.get(f"down.{key}")
        if info.keyframe:
            decoder = GradientDecoder()
        elif isinstance(saved, bytes):
            decoder = GradientDecoder.load(saved)
        else:
            raise StreamError(f"downlink {stream_id_text(info.stream_id)}: message {info.sequence} before any "
                              "keyframe (this node's state was lost)")
        decoded = decoder.decode(message)
        held_record = context.state.get(_HELD + key)
        held = _numpy_record(held_record) if isinstance(held_record, ArrayRecord) and not info.keyframe else {}
        arrays = _restore(entries, decoded, held or {}, "downlink")
        state[f"down.{key}"] = decoder.save()
        context.state[_HELD + key] = _to_record(arrays)
        return arrays, (info.stream_id, info.sequence)

    def _encode(self, context: Context, key: str, record: ArrayRecord, ref: Mapping[str, np.ndarray],
                options: Dict[str, Any], control: ConfigRecord, state: ConfigRecord) -> Optional[bytes]:
        node_id = int(context.node_id)
        arrays = _numpy_record(record)
        if arrays is None or not any(_streamable(v, self.param_cutoff) for v in arrays.values()):
            return None  # nothing to gain (or arrays this plugin cannot read): sent as they are
        if any(v.dtype.kind not in _EXACT_KINDS for v in arrays.values()):
            return None
        encoder = self._encoder(node_id, key, options, control, state)
        entries, stream = [], {}
        for name, x in arrays.items():
            if not _streamable(x, self.param_cutoff):
                entries.append(_Entry(name, _EXACT, x))
                continue
            r = ref.get(name)
            if r is not None and r.shape == x.shape and r.dtype == x.dtype:
                entries.append(_Entry(name, _DELTA))
                stream[name] = x - r
            else:
                entries.append(_Entry(name, _ABS))
                stream[name] = x
        message = encoder.encode(stream)
        payload = _write_payload(entries, message)
        state[f"up.{key}"] = encoder.save()
        if self.on_encode is not None:
            info = parse_message(message)
            self.on_encode({"node_id": node_id, "record": key, "stream_id": info.stream_id,
                            "sequence": info.sequence, "keyframe": info.keyframe, "tensors": stream,
                            "kinds": {e.name: e.kind for e in entries}, "options": dict(options),
                            "raw_bytes": sum(v.nbytes for v in arrays.values()), "sent_bytes": len(payload),
                            "payload": payload}, context)
        return payload

    def _encoder(self, node_id: int, key: str, options: Dict[str, Any], control: ConfigRecord,
                 state: ConfigRecord) -> GradientEncoder:
        """This node's encoder for `key`: the saved one when the server holds its last message
        and the options are unchanged, else a new stream (its first message is a keyframe)."""
        spec = json.dumps(options, sort_keys=True, default=str)
        saved = state.get(f"up.{key}")
        if isinstance(saved, bytes) and state.get(f"upopts.{key}") == spec:
            enc = GradientEncoder.load(saved, threads=options.get("threads"))
            held_sid, held_seq = control.get(f"up.{key}"), control.get(f"upseq.{key}")
            restored = all(_same(getattr(enc, k, v), v) for k, v in options.items() if k != "threads")
            if not restored:
                _log.warning("ebgc_mod: GradientEncoder.load did not restore every encoder option; "
                             "starting a new stream")
            elif held_sid == enc.stream_id and held_seq == enc.sequence - 1:
                return enc
        state[f"upopts.{key}"] = spec
        return GradientEncoder(**options, stream_id=_new_stream_id(node_id))


def ebgc_mod(error_bound: float = 1e-2, *, encoder_options: Optional[Mapping[str, Any]] = None,
             param_cutoff: int = 1024, records: Optional[Collection[str]] = None,
             on_encode: Optional[Callable[[Dict[str, Any], Context], None]] = None) -> EBGCMod:
    """A Flower client mod that sends the ArrayRecords of replies ebgc-compressed:
    ``ClientApp(mods=[ebgc_mod(1e-2)])``.

    error_bound, encoder_options: :class:`ebgc.GradientEncoder`'s arguments (``mode`` "rel" by
    default: the bound is ``error_bound * (max - min)`` of each tensor's update); the server may
    override them per node (``EBGCStrategy(client_options=...)``); a changed option starts a new
    stream. param_cutoff: tensors of at most this many values go exactly (as APPFL's plugin).
    records: the reply's ArrayRecord keys to compress (None: all). on_encode: called as
    ``on_encode(info, context)`` for each payload, info a dict (node, stream id, sequence, keyframe,
    the tensors given to the encoder, raw and sent bytes, the payload).
    """
    return EBGCMod(error_bound, encoder_options=encoder_options, param_cutoff=param_cutoff, records=records,
                   on_encode=on_encode)


# ---- server side --------------------------------------------------------------------------------
@dataclass
class _UpStream:
    stream_id: bytes
    decoder: GradientDecoder
    sequence: int = -1


@dataclass
class _DownStream:
    encoder: GradientEncoder
    mirror: GradientDecoder          # decodes what was sent: the reconstruction the node will hold
    held: Dict[str, np.ndarray]      # the arrays the node holds after the last message
    expect: Tuple[bytes, int] = (b"", -1)
    synced: bool = False             # the node acknowledged `expect`


@dataclass
class _Node:
    up: Dict[str, _UpStream] = field(default_factory=dict)
    down: Dict[str, _DownStream] = field(default_factory=dict)
    pending: "OrderedDict[int, Dict[str, Dict[str, np.ndarray]]]" = field(default_factory=OrderedDict)
    traffic: Traffic = field(default_factory=Traffic)


class EBGCServer:
    """The server side of the protocol, for any loop over a Flower Grid:
    ``grid.send_and_receive(server.outgoing(messages))`` then ``server.incoming(replies)``.

    client_options: encoder options sent to the nodes (a mapping, or ``f(node_id, server_round)``
    returning one): the hook for per-node settings such as a byte budget. downlink: send the
    instructions' ArrayRecords as ebgc streams too, within ``downlink_error_bound`` (mode and
    the rest in ``downlink_options``) of each change. max_output: refuse a payload that would
    decode to more bytes (see :class:`ebgc.GradientDecoder`). max_pending: instructions per node
    whose references are kept for the replies. on_decode: called with a dict per decoded payload.
    """

    def __init__(self, *, client_options: OptionsSpec = None, downlink: bool = False,
                 downlink_error_bound: float = 1e-2, downlink_options: Optional[Mapping[str, Any]] = None,
                 param_cutoff: int = 1024, max_output: Optional[int] = None, max_pending: int = 4,
                 on_decode: Optional[Callable[[Dict[str, Any]], None]] = None):
        self.client_options = client_options
        self.downlink = bool(downlink)
        self.downlink_options = _option_items({"error_bound": downlink_error_bound, **(downlink_options or {})})
        if self.downlink:
            GradientEncoder(**self.downlink_options)
        self.param_cutoff = int(param_cutoff)
        self.max_output = max_output
        self.max_pending = int(max_pending)
        self.on_decode = on_decode
        self.uplink = Traffic()
        self.downlink_traffic = Traffic()
        self.control_bytes = 0
        self.failures = 0
        self._nodes: Dict[int, _Node] = {}
        self._token = 0

    def node(self, node_id: int) -> _Node:
        return self._nodes.setdefault(int(node_id), _Node())

    def traffic(self, node_id: int) -> Traffic:
        """Uplink bytes counted for one node."""
        return self.node(node_id).traffic

    # -- instructions ------------------------------------------------------------------------------
    def outgoing(self, messages: Iterable[Message], server_round: Optional[int] = None) -> List[Message]:
        """The instructions with the control record added (and, with downlink, their arrays
        compressed per node)."""
        out, refs_cache = [], {}
        for m in messages:
            if not m.has_content():
                out.append(m)
                continue
            node_id = m.metadata.dst_node_id
            node = self.node(node_id)
            self._token += 1
            content = RecordDict(dict(m.content.items()))
            refs: Dict[str, Dict[str, np.ndarray]] = {}
            for key, record in m.content.array_records.items():
                if self.downlink and _payload_of(record) is None:
                    arrays = refs_cache.get(id(record))
                    if arrays is None:
                        arrays = refs_cache[id(record)] = _numpy_record(record)
                    if arrays is not None and all(v.dtype.kind in _EXACT_KINDS for v in arrays.values()):
                        payload, held = self._down_encode(node_id, node, key, arrays)
                        content[key] = _payload_record(payload)
                        refs[key] = {k: v for k, v in held.items() if v.dtype in _FLOATS}
                        continue
                if ("f", id(record)) not in refs_cache:
                    refs_cache[("f", id(record))] = _float_arrays(record)
                refs[key] = refs_cache[("f", id(record))]
            node.pending[self._token] = refs
            while len(node.pending) > self.max_pending:
                node.pending.popitem(last=False)
            control = ConfigRecord({"v": PROTOCOL, "token": self._token})
            for key, st in node.up.items():
                control[f"up.{key}"], control[f"upseq.{key}"] = st.stream_id, st.sequence
            options = self.client_options
            if callable(options):
                options = options(int(node_id), server_round)
            for k, v in _option_items(options or {}).items():
                control[f"opt.{k}"] = v
            content[CONTROL] = control
            self.control_bytes += control.count_bytes()
            md = m.metadata
            out.append(Message(content, dst_node_id=md.dst_node_id, message_type=md.message_type, ttl=md.ttl,
                               group_id=md.group_id))
        return out

    def _down_encode(self, node_id: int, node: _Node, key: str, arrays: Mapping[str, np.ndarray]):
        st = node.down.get(key)
        entries, stream = [], {}
        if st is None or not st.synced:  # a new stream: its keyframe carries every array exactly
            enc = GradientEncoder(**self.downlink_options, stream_id=_new_stream_id(node_id))
            st = node.down[key] = _DownStream(enc, GradientDecoder(), {})
            entries = [_Entry(n, _EXACT, v) for n, v in arrays.items()]
        else:
            for name, x in arrays.items():
                h = st.held.get(name)
                if _streamable(x, self.param_cutoff) and h is not None and h.shape == x.shape and h.dtype == x.dtype:
                    entries.append(_Entry(name, _DELTA))
                    stream[name] = x - h
                else:
                    entries.append(_Entry(name, _EXACT, x))
        message = st.encoder.encode(stream)
        decoded = st.mirror.decode(message)
        st.held = dict(_restore(entries, decoded, st.held, "downlink"))
        st.expect, st.synced = (st.encoder.stream_id, st.encoder.sequence - 1), False
        payload = _write_payload(entries, message)
        self.downlink_traffic.add(sum(v.nbytes for v in arrays.values()), len(payload), st.expect[1] == 0)
        return payload, st.held

    # -- replies -----------------------------------------------------------------------------------
    def incoming(self, replies: Iterable[Message]) -> List[Message]:
        """The replies as the strategy expects them: payloads decoded, control records removed.
        A reply that cannot be decoded becomes an error reply (and the node's stream is dropped,
        so that its next reply starts a new one)."""
        out = []
        for r in replies:
            try:
                out.append(self.decode_reply(r))
            except EbgcError as exc:
                self.failures += 1
                _log.warning("ebgc: reply from node %s dropped: %s: %s", r.metadata.src_node_id,
                             type(exc).__name__, exc)
                out.append(Message(error=Error(ERROR_CODE, f"ebgc: {type(exc).__name__}: {exc}"),
                                   metadata=r.metadata))
        return out

    def decode_reply(self, reply: Message) -> Message:
        """One reply decoded in place (raises an EbgcError where it cannot be)."""
        node_id = reply.metadata.src_node_id
        node = self.node(node_id)
        if reply.has_error():
            for st in node.down.values():
                st.synced = False
            return reply
        control = reply.content.get(CONTROL)
        if isinstance(control, ConfigRecord):
            del reply.content[CONTROL]
            self.control_bytes += control.count_bytes()
        else:
            control = ConfigRecord()
        for key, st in node.down.items():
            st.synced = (control.get(f"down.{key}"), control.get(f"downseq.{key}")) == st.expect
        refs = node.pending.pop(control.get("token"), None) if "token" in control else None
        for key, record in list(reply.content.array_records.items()):
            payload = _payload_of(record)
            if payload is None:
                arrays = _numpy_record(record)
                n = sum(v.nbytes for v in arrays.values()) if arrays else record.count_bytes()
                node.traffic.add(n, n)
                self.uplink.add(n, n)
                continue
            try:
                arrays, info, decoded = self._up_decode(node_id, node, key, payload, refs)
            except EbgcError:
                node.up.pop(key, None)
                raise
            raw = sum(v.nbytes for v in arrays.values())
            keyframe = bool(info and info.keyframe)
            node.traffic.add(raw, len(payload), keyframe)
            self.uplink.add(raw, len(payload), keyframe)
            reply.content[key] = _to_record(arrays)
            if self.on_decode is not None:
                self.on_decode({"node_id": node_id, "record": key, "stream_id": info.stream_id if info else None,
                                "sequence": info.sequence if info else None, "keyframe": keyframe,
                                "tensors": decoded, "raw_bytes": raw, "sent_bytes": len(payload)})
        return reply

    def _up_decode(self, node_id: int, node: _Node, key: str, payload: bytes, refs):
        entries, message = _read_payload(payload)
        decoded, info = {}, None
        if len(message):
            info = parse_message(message)
            st = node.up.get(key)
            if st is None or st.stream_id != info.stream_id:
                if not info.keyframe:
                    raise StreamError(f"node {node_id}: message {info.sequence} of stream "
                                      f"{stream_id_text(info.stream_id)}, which this server does not hold")
                st = node.up[key] = _UpStream(info.stream_id, GradientDecoder(max_output=self.max_output))
            decoded = st.decoder.decode(message)
            st.sequence = info.sequence
        if refs is None and any(e.kind == _DELTA for e in entries):
            raise StreamError(f"node {node_id}: a reply to an instruction this server no longer holds")
        arrays = _restore(entries, decoded, (refs or {}).get(key, {}), f"node {node_id}")
        return arrays, info, decoded

    def summary(self) -> Dict[str, Any]:
        return {"uplink": self.uplink.as_dict(), "downlink": self.downlink_traffic.as_dict(),
                "control_bytes": self.control_bytes, "failures": self.failures,
                "nodes": {n: s.traffic.as_dict() for n, s in self._nodes.items()}}


class EBGCStrategy(Strategy):
    """A strategy that receives ebgc-compressed replies: ``EBGCStrategy(FedAvg(...))``.

    Wraps any message-based strategy: instructions get the control record (and, with downlink,
    compressed arrays); replies are decoded before the wrapped strategy aggregates them. Keyword
    arguments are :class:`EBGCServer`'s. Bytes are counted in ``self.server`` (``.uplink``,
    ``.downlink_traffic``, per node) and, per round, in ``self.history`` and in the aggregated
    train MetricRecord (keys ``ebgc-raw-bytes``, ``ebgc-sent-bytes``, cumulative).
    """

    def __init__(self, strategy: Strategy, **server_options: Any):
        self.strategy = strategy
        self.server = server_options.pop("server", None) or EBGCServer(**server_options)
        self.history: Dict[int, Dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:  # the wrapped strategy's other attributes
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any):
        return self.server.outgoing(self.strategy.configure_train(server_round, arrays, config, grid), server_round)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = self.server.incoming(replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        up = self.server.uplink
        self.history[server_round] = {"uplink": up.as_dict(), "downlink": self.server.downlink_traffic.as_dict()}
        _log.info("\t└──> ebgc uplink: %d bytes sent for %d raw (%.1fx), %d keyframes in %d messages",
                  up.sent_bytes, up.raw_bytes, up.ratio, up.keyframes, up.messages)
        if metrics is not None:
            metrics = MetricRecord(dict(metrics))
            metrics["ebgc-raw-bytes"], metrics["ebgc-sent-bytes"] = up.raw_bytes, up.sent_bytes
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any):
        return self.server.outgoing(self.strategy.configure_evaluate(server_round, arrays, config, grid),
                                    server_round)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        return self.strategy.aggregate_evaluate(server_round, self.server.incoming(replies))

    def summary(self) -> None:
        self.strategy.summary()
        _log.info("\t└──> ebgc: uplink decoded per node stream%s",
                  f"; downlink within {self.server.downlink_options}" if self.server.downlink else "")
