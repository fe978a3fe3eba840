"""The Flower plugin (ebgc.integrations.flower).

Fast tests drive the client mod and the server side in-process with Flower's own Message,
RecordDict and Context objects (per-client stream state, recovery after a lost reply or a server
restart, downlink, a corrupt payload, no pickle). One test runs a real deployment: a SuperLink, two
SuperNodes and the ServerApp, each its own process over loopback (examples/flower/run.py), and
checks what crossed the wire against what the clients encoded.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

import ebgc  # noqa: E402
from ebgc.integrations import flower as fl  # noqa: E402
from conftest import expected_abs_bound  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EB = 1e-2
SHAPES = {"conv.weight": (16, 8, 3, 3), "fc.weight": (10, 200), "fc.bias": (10,), "steps": ()}


@pytest.fixture(autouse=True)
def task_identity():
    """Flower stamps instructions with the running task's identity; set one for in-process use."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items() if k != "steps"}
    out["steps"] = np.array(seed, dtype=np.int64)
    return out


def record(arrays: dict) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def numpy_of(rec: ArrayRecord) -> dict:
    return {k: v.numpy() for k, v in rec.items()}


class Client:
    """One node: a Context kept across rounds (as a SuperNode keeps it) and a train handler that
    moves every float array by a round- and node-dependent step."""

    def __init__(self, node_id: int, mod=None):
        self.node_id = node_id
        self.context = Context(run_id=7, node_id=node_id, node_config={}, state=RecordDict(), run_config={})
        self.mod = mod or fl.ebgc_mod(EB, on_encode=self._record)
        self.encoded, self.received, self.sent = [], [], None
        self.round = 0

    def _record(self, info, context):
        assert context is self.context
        self.encoded.append(info)

    def handler(self, msg: Message, context: Context) -> Message:
        got = numpy_of(msg.content["arrays"])
        self.received.append(got)
        rng = np.random.default_rng(1000 * self.node_id + self.round)
        self.sent = {k: (v + (0.01 * rng.laplace(size=v.shape)).astype(v.dtype) if v.dtype == np.float32 else v + 1)
                     for k, v in got.items()}
        return Message(RecordDict({"arrays": record(self.sent), "metrics": MetricRecord({"num-examples": 10})}),
                       reply_to=msg)

    def __call__(self, msg: Message) -> Message:
        """The mod around the handler; an exception becomes an error reply, as Flower's runtime does."""
        self.round += 1
        try:
            return self.mod(msg, self.context, self.handler)
        except Exception as exc:  # noqa: BLE001
            return Message(Error(2, f"{type(exc).__name__}: {exc}"), reply_to=msg)


def instructions(server, nodes, arrays, server_round=1):
    msgs = [Message(RecordDict({"arrays": record(arrays), "config": ConfigRecord({"lr": 0.1})}), n, "train")
            for n in nodes]
    return server.outgoing(msgs, server_round)


def round_trip(server, clients, arrays, server_round=1):
    out = instructions(server, [c.node_id for c in clients], arrays, server_round)
    by_node = {c.node_id: c for c in clients}
    replies = [by_node[m.metadata.dst_node_id](m) for m in out]
    return server.incoming(replies)


def check_reply(reply: Message, client: Client, reference: dict) -> dict:
    """The decoded reply holds the client's arrays: float updates within the bound of the update,
    the rest exactly, in the client's order; the control record is gone."""
    assert not reply.has_error(), reply.error
    assert fl.CONTROL not in reply.content
    got = numpy_of(reply.content["arrays"])
    assert list(got) == list(client.sent)
    info = client.encoded[-1]
    for name, x in client.sent.items():
        if info["kinds"][name] == 1:  # sent as an update of what the client received
            d = info["tensors"][name]
            np.testing.assert_array_equal(d, x - reference[name])
            err = np.abs((got[name] - reference[name]).astype(np.float64) - d)
            assert err.max() <= expected_abs_bound(d, "rel", EB) * (1 + 1e-6) + 1e-7, name
        else:
            np.testing.assert_array_equal(got[name], x)
            assert got[name].dtype == x.dtype
    return got


# ---- unit tests: mod and server side, in-process ---------------------------------------------
def test_one_stream_per_client_continued_across_rounds():
    server = fl.EBGCServer()
    a, b = Client(11), Client(12)
    arrays = weights(0)
    for rnd in range(1, 4):
        replies = round_trip(server, [a, b], arrays, rnd)
        for reply, c in zip(replies, (a, b)):
            assert reply.metadata.src_node_id == c.node_id
            check_reply(reply, c, arrays)
            assert c.received[-1].keys() == arrays.keys()  # the handler never sees ebgc's records
        arrays = {k: v + 0.001 for k, v in arrays.items()}
    for c in (a, b):
        seqs = [(i["stream_id"], i["sequence"], i["keyframe"]) for i in c.encoded]
        assert [s[1:] for s in seqs] == [(0, True), (1, False), (2, False)]
        assert len({s[0] for s in seqs}) == 1 and seqs[0][0].startswith(f"flwr/{c.node_id}/".encode())
    assert a.encoded[0]["stream_id"] != b.encoded[0]["stream_id"]
    assert set(a.encoded[0]["kinds"].values()) == {1, 2}  # updates, and small/integer arrays exact
    up = server.uplink
    assert up.messages == 6 and up.keyframes == 2
    assert up.sent_bytes * 3 < up.raw_bytes
    assert server.traffic(11).messages == 3 and server.traffic(11).sent_bytes == sum(i["sent_bytes"] for i in a.encoded)


def test_without_the_server_side_replies_go_plain():
    c = Client(5)
    msg = Message(RecordDict({"arrays": record(weights(1))}), 5, "train")
    reply = c(msg)
    assert fl.CONTROL not in reply.content and not c.encoded
    assert all(arr.stype != fl.STYPE for arr in reply.content["arrays"].values())
    server = fl.EBGCServer()  # a server that does enable it accepts plain replies too
    got = numpy_of(server.incoming([reply])[0].content["arrays"])
    assert all(np.array_equal(got[k], c.sent[k]) for k in got)
    assert server.uplink.raw_bytes == server.uplink.sent_bytes > 0


def test_a_node_that_skips_rounds_continues_its_stream():
    server = fl.EBGCServer()
    a, b = Client(1), Client(2)
    arrays = weights(0)
    round_trip(server, [a, b], arrays, 1)
    round_trip(server, [a], arrays, 2)          # node 2 not sampled
    replies = round_trip(server, [a, b], arrays, 3)
    check_reply(replies[1], b, arrays)
    assert [(i["sequence"], i["keyframe"]) for i in b.encoded] == [(0, True), (1, False)]


def test_a_lost_reply_makes_the_client_start_a_new_stream():
    server = fl.EBGCServer()
    a = Client(3)
    arrays = weights(0)
    round_trip(server, [a], arrays, 1)
    a(instructions(server, [3], arrays, 2)[0])  # encoded, but the reply never reaches the server
    replies = round_trip(server, [a], arrays, 3)
    check_reply(replies[0], a, arrays)
    first, lost, fresh = a.encoded
    assert fresh["keyframe"] and fresh["sequence"] == 0 and fresh["stream_id"] != first["stream_id"]
    replies = round_trip(server, [a], arrays, 4)  # and the new stream continues
    check_reply(replies[0], a, arrays)
    assert not a.encoded[-1]["keyframe"] and a.encoded[-1]["stream_id"] == fresh["stream_id"]


def test_a_restarted_server_gets_a_keyframe():
    a = Client(4)
    arrays = weights(0)
    round_trip(fl.EBGCServer(), [a], arrays, 1)
    round_trip(fl.EBGCServer(), [a], arrays, 2)  # a new server object: no state for node 4
    assert a.encoded[-1]["keyframe"]
    server = fl.EBGCServer()
    # a client that ignores the acknowledgement (here: its state restored) is refused, not misread
    msg = instructions(server, [4], arrays, 3)[0]
    msg.content["ebgc.control"]["up.arrays"] = a.encoded[-1]["stream_id"]
    msg.content["ebgc.control"]["upseq.arrays"] = a.encoded[-1]["sequence"]
    reply = server.incoming([a(msg)])[0]
    assert reply.has_error() and reply.error.code == fl.ERROR_CODE and "StreamError" in reply.error.reason
    assert server.failures == 1
    replies = round_trip(server, [a], arrays, 4)  # the stream was dropped: the next reply is a keyframe
    check_reply(replies[0], a, arrays)
    assert a.encoded[-1]["keyframe"]


def test_a_replayed_reply_is_refused_and_the_stream_recovers():
    server = fl.EBGCServer()
    a = Client(6)
    arrays = weights(0)
    round_trip(server, [a], arrays, 1)
    msg = instructions(server, [6], arrays, 2)[0]
    reply = a(msg)
    saved = reply.content["arrays"]["ebgc.payload"].data
    assert not server.incoming([reply])[0].has_error()
    again = Message(RecordDict({"arrays": fl._payload_record(saved), "metrics": MetricRecord({"num-examples": 1}),
                                fl.CONTROL: ConfigRecord({"v": 1, "token": 999})}), reply_to=msg)
    with pytest.raises(ebgc.StreamError, match="repeated"):
        server.decode_reply(again)
    replies = round_trip(server, [a], arrays, 3)
    check_reply(replies[0], a, arrays)
    assert a.encoded[-1]["keyframe"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "stream"])
def test_a_corrupt_payload_is_an_ebgc_error(damage):
    server = fl.EBGCServer()
    a = Client(8)
    msg = instructions(server, [8], weights(0), 1)[0]
    reply = a(msg)
    data = bytearray(reply.content["arrays"]["ebgc.payload"].data)
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "foreign":
        data = bytearray(pickle.dumps({"w": 1}))
    else:  # a valid container whose stream message is damaged (and resealed)
        entries, message = fl._read_payload(bytes(data))
        message = bytearray(message)
        message[-6] ^= 0x01
        data = bytearray(fl._write_payload(entries, bytes(message)))
    reply.content["arrays"] = fl._payload_record(bytes(data))
    with pytest.raises(ebgc.FormatError):
        server.decode_reply(reply)
    out = server.incoming([a(instructions(server, [8], weights(0), 2)[0])])  # and the node recovers
    assert not out[0].has_error()


def test_payload_parser_past_the_checksum():
    """Every truncation and byte flip of a payload, and random overwrites, with the CRC recomputed so
    that they reach the parser: only ebgc errors (FormatError, StreamError), never another kind."""
    import struct

    from ebgc import _core

    server = fl.EBGCServer()
    a = Client(11)
    reply = a(instructions(server, [11], weights(0), 1)[0])
    good = bytes(reply.content["arrays"]["ebgc.payload"].data)

    def reseal(body: bytes) -> bytes:
        return body + struct.pack("<I", _core.crc32c(body))

    body = good[:-4]
    rng = np.random.default_rng(0)
    mutants = [reseal(body[:k]) for k in range(len(body))]
    mutants += [reseal(body[:i] + bytes([body[i] ^ m]) + body[i + 1:]) for i in range(min(len(body), 400))
                for m in (0x01, 0x80, 0xFF)]
    for _ in range(300):
        b = bytearray(body)
        for i in rng.integers(5, len(b), 3):
            b[i] = int(rng.integers(256))
        mutants.append(reseal(bytes(b)))
    for m in mutants:
        try:
            entries, message = fl._read_payload(m)
        except ebgc.FormatError:
            continue
        probe = fl.EBGCServer()
        try:
            probe.decode_reply(Message(RecordDict({"arrays": fl._payload_record(m), "metrics": MetricRecord({"num-examples": 1}),
                                                   fl.CONTROL: reply.content[fl.CONTROL]}), reply_to=reply))
        except (ebgc.FormatError, ebgc.StreamError):
            pass


def test_incoming_turns_a_bad_reply_into_an_error_reply():
    server = fl.EBGCServer()
    a = Client(9)
    reply = a(instructions(server, [9], weights(0), 1)[0])
    reply.content["arrays"] = fl._payload_record(b"EBFL\x01garbage")
    out = server.incoming([reply])
    assert out[0].has_error() and out[0].error.code == fl.ERROR_CODE
    assert out[0].metadata.src_node_id == 9


def test_encoder_options_pass_through_and_a_change_starts_a_new_stream():
    server = fl.EBGCServer(client_options=lambda node, rnd: {"error_bound": 1e-2 if rnd < 3 else 2e-2})
    a = Client(10, fl.ebgc_mod(1e-3, encoder_options={"keyframe_interval": 2, "coder": "huffman"}))
    a.mod.on_encode = a._record
    arrays = weights(0)
    for rnd in range(1, 6):
        round_trip(server, [a], arrays, rnd)
    got = [(i["sequence"], i["keyframe"], i["options"]["error_bound"]) for i in a.encoded]
    assert got == [(0, True, 1e-2), (1, False, 1e-2), (0, True, 2e-2), (1, False, 2e-2), (2, True, 2e-2)]
    assert all(i["options"]["coder"] == "huffman" for i in a.encoded)
    with pytest.raises(ValueError):
        fl.ebgc_mod(1e-2, encoder_options={"stream_id": "mine"})
    with pytest.raises(ebgc.InvalidArgumentError):
        fl.ebgc_mod(-1.0)


def test_budget_options_reach_the_encoder():
    server = fl.EBGCServer(client_options={"budget_bytes": 1500, "max_error_bound": 0.2})
    a = Client(13)
    arrays = weights(0)
    for rnd in range(1, 4):
        replies = round_trip(server, [a], arrays, rnd)
        assert not replies[0].has_error()
    assert [i["keyframe"] for i in a.encoded] == [True, False, False]  # the options survive save/load
    assert all(i["sent_bytes"] < 1500 + 200 for i in a.encoded)


def test_downlink_streams_per_node():
    server = fl.EBGCServer(downlink=True, downlink_error_bound=1e-2)
    a, b = Client(21), Client(22)
    arrays = weights(0)
    for rnd in range(1, 5):
        out = instructions(server, [21, 22], arrays, rnd)
        for m in out:
            assert m.content["arrays"]["ebgc.payload"].stype == fl.STYPE
        replies = server.incoming([(a if m.metadata.dst_node_id == 21 else b)(m) for m in out])
        for c, reply in zip((a, b), replies):
            held = c.received[-1]
            for k, v in arrays.items():
                if rnd == 1 or v.size <= 1024:
                    np.testing.assert_array_equal(held[k], v)  # first message, and small arrays: exact
                else:  # the change from what the node held, within the bound of that change
                    change = v - c.received[-2][k]
                    assert np.abs(held[k].astype(np.float64) - v).max() <= expected_abs_bound(change, "rel", 1e-2) + 1e-6
            check_reply(reply, c, held)  # updates are taken from what the node holds
        arrays = {k: v + np.float32(0.01) * np.sin(np.arange(v.size, dtype=np.float32) + rnd).reshape(v.shape).astype(v.dtype)
                  if v.dtype == np.float32 else v for k, v in arrays.items()}
    down = server.downlink_traffic
    assert down.messages == 8 and down.keyframes == 2 and down.sent_bytes < down.raw_bytes
    # a node that lost its downlink state answers with an error; the server then sends it a keyframe
    b.context.state = RecordDict()
    out = server.incoming([b(m) for m in instructions(server, [22], arrays, 5)])
    assert out[0].has_error()
    out = server.incoming([b(m) for m in instructions(server, [22], arrays, 6)])
    assert not out[0].has_error()
    np.testing.assert_array_equal(b.received[-1]["fc.weight"], arrays["fc.weight"])


def test_strategy_wrapper_around_fedavg():
    class Grid:
        def get_node_ids(self):
            return [31, 32]

    strategy = fl.EBGCStrategy(FedAvg(fraction_evaluate=0.0))
    assert strategy.fraction_train == 1.0  # the wrapped strategy's attributes show through
    clients = {31: Client(31), 32: Client(32)}
    arrays = weights(0)
    msgs = list(strategy.configure_train(1, record(arrays), ConfigRecord(), Grid()))
    assert {m.metadata.dst_node_id for m in msgs} == {31, 32}
    assert all(isinstance(m.content[fl.CONTROL], ConfigRecord) for m in msgs)
    replies = [clients[m.metadata.dst_node_id](m) for m in msgs]
    agg, metrics = strategy.aggregate_train(1, replies)
    mean = {k: (clients[31].sent[k].astype(np.float64) + clients[32].sent[k]) / 2 for k in arrays}
    for k, v in numpy_of(agg).items():
        bound = max(expected_abs_bound(c.sent[k] - arrays[k], "rel", EB) for c in clients.values()) if v.size > 1024 else 0
        assert np.abs(v - mean[k]).max() <= bound + 1e-6, k
    assert metrics["ebgc-sent-bytes"] == strategy.server.uplink.sent_bytes < metrics["ebgc-raw-bytes"]
    assert strategy.history[1]["uplink"]["messages"] == 2


def test_nothing_is_pickled(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("dumps", "loads", "dump", "load"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Pickler", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    server = fl.EBGCServer(downlink=True)
    a = Client(41)
    for rnd in range(1, 3):
        replies = round_trip(server, [a], weights(rnd), rnd)
        assert not replies[0].has_error()
    payload = a.encoded[-1]["payload"]
    assert payload[:4] == b"EBFL" and b"\x80\x04\x95" not in payload[:8]
    entries, message = fl._read_payload(payload)  # CRC-checked ebgc container around a stream message
    assert ebgc.stream.parse_message(bytes(message)).stream_id == a.encoded[-1]["stream_id"]


# ---- a real deployment: SuperLink, two SuperNodes, ServerApp, each its own process ------------
def _example_runner():
    spec = importlib.util.spec_from_file_location("ebgc_flower_run", ROOT / "examples" / "flower" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_federation(tmp_path):
    run = _example_runner()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(ebgc.__file__).resolve().parents[1])] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    audit = tmp_path / "audit"
    audit.mkdir()
    t0 = time.monotonic()
    with run.deployment(tmp_path, nodes=2, env=env) as d:
        summary = d.run({"num-server-rounds": 2, "compress": True, "error-bound": EB, "audit-dir": str(audit)},
                        tmp_path / "results.json", timeout=120)
        groups = [p.pid for p in d.procs]
    assert time.monotonic() - t0 < 120
    for pgid in groups:  # every process of the deployment is gone (app processes included: same groups)
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert "Traceback" not in logs

    # training ran, and learned
    hist = summary["history"]
    assert summary["final_accuracy"] > max(0.3, hist["0"]["accuracy"] + 0.15), hist
    # the clients sent far fewer bytes than their arrays' raw size; the counts agree
    up = summary["ebgc"]["uplink"]
    assert up["messages"] == 4 and up["keyframes"] == 2 and summary["ebgc"]["failures"] == 0
    assert up["sent_bytes"] * 4 < up["raw_bytes"]
    assert up["raw_bytes"] == sum(int(hist[r]["raw-bytes"]) for r in ("1", "2"))

    # every update the server decoded is within the bound of what the client encoded
    clients = sorted(audit.glob("client-*.json"))
    assert len(clients) == 4
    decoder = ebgc.GradientDecoder()
    for meta_path in clients:
        meta = json.loads(meta_path.read_text())
        stem = str(meta_path)[: -len(".json")]
        with np.load(stem + ".npz", allow_pickle=False) as f:
            sent = dict(f)
        with np.load(str(audit / Path(stem).name.replace("client-", "server-", 1)) + ".npz", allow_pickle=False) as f:
            decoded = dict(f)
        assert sent.keys() == decoded.keys() and len(sent) == 3  # the three tensors of > 1024 values
        for name, x in sent.items():
            assert np.abs(decoded[name].astype(np.float64) - x).max() <= expected_abs_bound(x, "rel", EB), name
        # the bytes on the wire are ebgc's: a sealed container around a stream message, no pickle
        payload = Path(stem + ".payload").read_bytes()
        assert len(payload) == meta["sent_bytes"] and payload[:4] == b"EBFL"
        entries, message = fl._read_payload(payload)
        assert {e.name for e in entries if e.kind == 2} == {k for k in meta["kinds"] if meta["kinds"][k] == 2}
    for node in {json.loads(p.read_text())["node_id"] for p in clients}:  # an independent decoder agrees
        for meta_path in sorted(audit.glob(f"client-{node}-*.json"), key=lambda p: json.loads(p.read_text())["sequence"]):
            stem = str(meta_path)[: -len(".json")]
            _, message = fl._read_payload(Path(stem + ".payload").read_bytes())
            with np.load(str(audit / Path(stem).name.replace("client-", "server-", 1)) + ".npz") as f:
                for name, y in decoder.decode(bytes(message)).items():
                    np.testing.assert_array_equal(y, f[name])
