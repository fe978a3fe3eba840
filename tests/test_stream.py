"""Stateful streams: GradientEncoder / GradientDecoder."""
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc


def rel_bound(x, eb):
    f = x[np.isfinite(x)].astype(np.float64)
    return 0.0 if f.size == 0 or f.max() == f.min() else eb * (float(f.max()) - float(f.min()))


def check(x, y, eb, mode="rel"):
    ab = rel_bound(x, eb) if mode == "rel" else eb
    assert y.shape == x.shape and y.dtype == x.dtype
    nan = np.isnan(x)
    assert np.array_equal(np.isnan(y), nan)
    fin = np.isfinite(x)
    assert np.array_equal(y[~fin & ~nan], x[~fin & ~nan])
    err = np.abs(y[fin].astype(np.float64) - x[fin].astype(np.float64))
    assert err.size == 0 or err.max() <= ab, (err.max(), ab)


def rounds(n, shape=(16, 8, 3, 3), seed=0, drift=0.9):
    """Correlated updates: each round partly repeats the last, like real FL updates."""
    rng = np.random.default_rng(seed)
    g = rng.laplace(size=shape).astype(np.float32)
    for _ in range(n):
        g = (drift * g + (1 - drift) * rng.laplace(size=shape)).astype(np.float32)
        yield {"conv.weight": g.copy(), "fc.weight": (g.reshape(shape[0], -1)[:, :50] * 2).copy()}


def test_roundtrip_and_prediction_pays():
    enc, dec = ebgc.GradientEncoder(1e-2), ebgc.GradientDecoder()
    one_shot = stateful = 0
    for msg in rounds(6, shape=(64, 32, 3, 3)):
        blob = enc.encode(msg)
        out = dec.decode(blob)
        assert set(out) == set(msg)
        for k in msg:
            check(msg[k], out[k], 1e-2)
        stateful += len(blob)
        one_shot += sum(len(ebgc.compress(v, 1e-2)) for v in msg.values())
    assert stateful < one_shot  # correlated rounds: temporal prediction must win


# (128, 64, 3, 3): over 2^16 values, so the blends are fitted and scored on a sample of blocks
@pytest.mark.parametrize("shape", [(64, 64, 3, 3), (128, 64, 3, 3)])
def test_later_messages_use_prediction(shape):
    enc, dec = ebgc.GradientEncoder(1e-3, mode="abs"), ebgc.GradientDecoder()
    msgs = list(rounds(3, shape=shape, drift=0.99))
    blobs = [enc.encode(m) for m in msgs]
    for b in blobs:
        dec.decode(b)
    from ebgc.stream import parse_message

    kinds = [ebgc.info(blob)["predictor"] for _, blob in parse_message(blobs[2]).tensors]
    assert "scaled-previous" in kinds
    assert all(ebgc.info(b)["predictor"] == "zero" for _, b in parse_message(blobs[0]).tensors)


@pytest.mark.parametrize("history, allowed", [(0, {"zero"}), (1, {"zero", "scaled-previous"}),
                                              (2, {"zero", "scaled-previous", "blend-two-previous"})])
def test_history_limits_the_predictors(history, allowed):
    from ebgc.stream import parse_message

    enc, dec = ebgc.GradientEncoder(1e-3, history=history), ebgc.GradientDecoder()
    seen = set()
    for m in rounds(5, shape=(64, 64, 3, 3), drift=0.97):
        blob = enc.encode(m)
        dec.decode(blob)
        seen |= {ebgc.info(b)["predictor"] for _, b in parse_message(blob).tensors}
    assert seen <= allowed
    assert history == 0 or len(seen) > 1  # correlated rounds: prediction is used


@pytest.mark.parametrize("case", ["lost", "repeated", "reordered", "no_keyframe", "foreign_digest"])
def test_desync_is_detected(case):
    enc = ebgc.GradientEncoder(1e-2, stream_id="client-7")
    blobs = [enc.encode(m) for m in rounds(4)]
    dec = ebgc.GradientDecoder()
    if case == "no_keyframe":
        with pytest.raises(ebgc.StreamError, match="before any keyframe"):
            dec.decode(blobs[1])
        return
    dec.decode(blobs[0])
    dec.decode(blobs[1])
    state = dec.save()
    if case == "lost":
        with pytest.raises(ebgc.StreamError, match="lost"):
            dec.decode(blobs[3])
    elif case == "repeated":
        with pytest.raises(ebgc.StreamError, match="repeated"):
            dec.decode(blobs[1])
    elif case == "reordered":
        with pytest.raises(ebgc.StreamError, match="reordered"):
            dec.decode(blobs[0])
    else:
        # same stream id and sequence, but predicted from another history
        other = ebgc.GradientEncoder(1e-2, stream_id="client-7")
        other_blobs = [other.encode(m) for m in rounds(3, seed=99)]
        with pytest.raises(ebgc.StreamError, match="digest"):
            dec.decode(other_blobs[2])
    # the failed message changed nothing: the right next message still decodes
    assert dec.save() == state
    out = dec.decode(blobs[2])
    assert set(out) == {"conv.weight", "fc.weight"}


def test_keyframes_resynchronize():
    enc = ebgc.GradientEncoder(1e-2, keyframe_interval=3)
    blobs = [enc.encode(m) for m in rounds(7)]
    from ebgc.stream import parse_message

    assert [parse_message(b).keyframe for b in blobs] == [True, False, False, True, False, False, True]
    dec = ebgc.GradientDecoder()
    dec.decode(blobs[0])
    # messages 1..2 lost: the keyframe at 3 resynchronizes
    dec.decode(blobs[3])
    dec.decode(blobs[4])
    forced = enc.encode(next(rounds(1)), keyframe=True)
    assert parse_message(forced).keyframe
    dec.decode(forced)


def test_new_shape_and_new_tensor_start_over():
    enc, dec = ebgc.GradientEncoder(1e-2), ebgc.GradientDecoder()
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 40)).astype(np.float32)
    dec.decode(enc.encode({"w": a}))
    b = rng.normal(size=(20, 80)).astype(np.float32)  # same name, new shape
    c = rng.normal(size=(5000,)).astype(np.float64)    # new tensor, float64
    out = dec.decode(enc.encode({"w": b, "extra": c}))
    check(b, out["w"], 1e-2)
    check(c, out["extra"], 1e-2)


def test_many_streams_one_decoder():
    encs = [ebgc.GradientEncoder(1e-2, stream_id=f"c{i}") for i in range(3)]
    gens = [rounds(3, seed=i) for i in range(3)]
    dec = ebgc.GradientDecoder()
    for _ in range(3):
        for e, g in zip(encs, gens):
            m = next(g)
            out = dec.decode(e.encode(m))
            check(m["conv.weight"], out["conv.weight"], 1e-2)
    assert len(list(dec.streams())) == 3


def test_state_save_restore_round_trip():
    msgs = list(rounds(5))
    enc, dec = ebgc.GradientEncoder(1e-2, mode="abs", stream_id=b"\x01\x02"), ebgc.GradientDecoder()
    for m in msgs[:2]:
        dec.decode(enc.encode(m))
    enc2 = ebgc.GradientEncoder.load(enc.save())
    dec2 = ebgc.GradientDecoder.load(dec.save())
    assert enc2.save() == enc.save() and dec2.save() == dec.save()
    b1, b2 = enc.encode(msgs[2]), enc2.encode(msgs[2])
    assert b1 == b2  # a restored encoder continues the same stream, byte for byte
    o1, o2 = dec.decode(b1), dec2.decode(b2)
    for k in o1:
        assert np.array_equal(o1[k], o2[k])


def test_encoder_and_decoder_in_separate_processes(tmp_path):
    """Encoder and decoder share nothing but bytes: the decoder runs in another interpreter."""
    msgs = list(rounds(4))
    enc = ebgc.GradientEncoder(1e-2)
    for i, m in enumerate(msgs):
        (tmp_path / f"m{i}.bin").write_bytes(enc.encode(m))
        np.savez(tmp_path / f"x{i}.npz", **m)
    script = textwrap.dedent(f"""
        import numpy as np, ebgc, pathlib
        p = pathlib.Path({str(tmp_path)!r})
        dec = ebgc.GradientDecoder()
        for i in range(4):
            out = dec.decode((p / f"m{{i}}.bin").read_bytes())
            x = np.load(p / f"x{{i}}.npz")
            for k in x.files:
                f = x[k][np.isfinite(x[k])].astype(np.float64)
                ab = 1e-2 * (f.max() - f.min())
                assert np.abs(out[k].astype(np.float64) - x[k]).max() <= ab
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_hostile_messages():
    enc = ebgc.GradientEncoder(1e-2)
    blobs = [enc.encode(m) for m in rounds(2)]
    dec = ebgc.GradientDecoder()
    dec.decode(blobs[0])
    b = blobs[1]
    for n in range(0, len(b), max(1, len(b) // 200)):
        with pytest.raises(ebgc.FormatError):
            dec.decode(b[:n])
    for i in range(0, len(b), max(1, len(b) // 300)):
        bad = bytearray(b)
        bad[i] ^= 0x55
        with pytest.raises((ebgc.FormatError, ebgc.StreamError)):
            dec.decode(bytes(bad))
    with pytest.raises(ebgc.FormatError):
        dec.decode(b"EBGS" + bytes(40))
    with pytest.raises(TypeError):
        dec.decode(12345)
    dec.decode(b)  # none of that disturbed the stream
    with pytest.raises(ebgc.FormatError):
        ebgc.GradientDecoder.load(b"EBGT" + bytes(20))


def test_bad_arguments():
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientEncoder(-1)
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientEncoder(1e-2, mode="psnr")
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientEncoder(1e-2, keyframe_interval=0)
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientEncoder(1e-2, history=3)
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientEncoder(1e-2, stream_id="x" * 65)
    enc = ebgc.GradientEncoder(1e-2)
    with pytest.raises(TypeError):
        enc.encode([np.zeros(3, np.float32)])
    with pytest.raises(ebgc.UnsupportedDTypeError):
        enc.encode({"a": np.zeros(3, np.int32)})
    with pytest.raises(ebgc.InvalidArgumentError):
        enc.encode({"": np.zeros(3, np.float32)})
    # a predicted blob cannot be decoded without its stream
    enc.encode({"a": np.arange(5000, dtype=np.float32)})
    from ebgc.stream import parse_message

    blob = parse_message(enc.encode({"a": np.arange(5000, dtype=np.float32) * 1.01})).tensors[0][1]
    if ebgc.info(blob)["predictor"] != "zero":
        with pytest.raises(ebgc.InvalidArgumentError):
            ebgc.decompress(blob)


special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 3e38, -3e38, 1.0])


@st.composite
def streams(draw):
    n_rounds = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(1,), (7,), (33, 5), (2, 3, 3, 3), (1100,), (0,)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, ml_dtypes.bfloat16]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    g = rng.normal(size=shape) * 10.0 ** draw(st.integers(-6, 3))
    for _ in range(n_rounds):
        kind = draw(st.sampled_from(["drift", "zero", "special", "constant", "fresh"]))
        if kind == "drift":
            with np.errstate(all="ignore"):  # g may hold Inf/NaN from an earlier round
                g = 0.8 * g + 0.2 * rng.normal(size=shape) * (np.abs(g).mean() + 1e-30 if g.size else 1)
        elif kind == "zero":
            g = np.zeros(shape)
        elif kind == "constant":
            g = np.full(shape, draw(special))
        elif kind == "fresh":
            g = rng.normal(size=shape)
        with np.errstate(all="ignore"):
            x = g.astype(dtype)
        if kind == "special" and x.size:
            idx = rng.integers(0, x.size, size=max(1, x.size // 5))
            with np.errstate(over="ignore"):  # 3e38 overflows float16/bfloat16 to Inf: fine
                x.reshape(-1)[idx] = [draw(special) for _ in idx]
        out.append(x)
    return out


@settings(max_examples=60, deadline=None)
@given(xs=streams(), eb=st.sampled_from([1e-1, 1e-2, 1e-3, 1e-5]), mode=st.sampled_from(["rel", "abs"]),
       coder=st.sampled_from(["auto", "context", "bitpack", "huffman"]))
def test_bound_holds_on_every_message(xs, eb, mode, coder):
    enc, dec = ebgc.GradientEncoder(eb, mode=mode, coder=coder), ebgc.GradientDecoder()
    for x in xs:
        with np.errstate(all="ignore"):
            out = dec.decode(enc.encode({"t": x}))
        check(x, out["t"], eb, mode)


# ---- messages held in device memory: framed from parts, read by fetching windows -----------------

def _stream_messages():
    rng = np.random.default_rng(61)
    enc = ebgc.GradientEncoder(1e-3)
    tensors = {"conv": rng.standard_normal((64, 32, 3, 3)).astype(np.float32), "big": rng.standard_normal(300_000),
               "tiny": np.ones(3, np.float16), "empty": np.zeros(0, np.float32)}
    for _ in range(3):
        tensors = {k: v * 1.01 + (0.01 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in tensors.items()}
        yield enc.encode(tensors)


def test_a_message_framed_around_parts_is_the_sealed_message():
    """The writer's pieces (host framing around blobs left elsewhere) put together with their
    checksum, as the GPU assembles a message in its memory, are the message seal() writes."""
    from ebgc import _core
    from ebgc.wire import Writer

    blobs = [ebgc.compress(np.linspace(0, 1, n, dtype=np.float32), 1e-3) for n in (5, 70_000, 0)]

    def framed(parts: bool) -> Writer:
        w = Writer(b"EBGS", 1).u8(0).varint(len(blobs))
        for k, b in enumerate(blobs):
            w.name(f"t{k}")
            w.part(b) if parts else w.blob(b)
        return w

    with_parts = framed(True)
    pieces = with_parts.pieces()
    assert pieces[1::2] == blobs and all(isinstance(p, bytes) for p in pieces[::2])
    body = b"".join(pieces)
    assert body + _core.crc32c(body).to_bytes(4, "little") == framed(False).seal()
    # the GPU's steps (one copy job a blob with the framing before it, one checksum job over the
    # body), run in host memory: also with framing pieces empty and blobs side by side
    assert _core._seal_pieces_on_host([(p, k % 2 == 1) for k, p in enumerate(pieces)]) == framed(False).seal()
    for pieces in ([(b"", False), (b"x" * 9000, True), (b"", False), (b"y" * 5, True), (b"", False)],
                   [(b"head", False)], [(b"a" * 4096, True), (b"b" * 4097, True), (b"tail", False)], []):
        body = b"".join(p for p, _ in pieces)
        assert _core._seal_pieces_on_host(pieces) == body + _core.crc32c(body).to_bytes(4, "little")
    with pytest.raises(ebgc.InvalidArgumentError, match="sealed where"):
        with_parts.seal()


def test_a_message_in_device_memory_is_read_from_small_windows():
    """The parse of a message held in device memory (wire.FetchingReader) gives the host parse's
    fields and blobs while fetching only the framing; it refuses what the host parse refuses."""
    from fuzzing import HostWindowSource, read_message_fetching
    from ebgc import stream

    for message in _stream_messages():
        source = HostWindowSource(message)
        assert read_message_fetching(message, source) == stream._read_message(message)
        # the head, the checksum and a window where the framing continues after a blob: not the blobs
        assert source.fetched <= 9 + 4 * 4096 and source.fetched < len(message) / 7
        for bad, error in ((message[:-1], ebgc.ChecksumError), (message[:7], ebgc.FormatError),
                           (b"EBGX" + message[4:], ebgc.FormatError), (message[:4] + b"\x09" + message[5:], ebgc.VersionError),
                           (message[:100] + bytes([message[100] ^ 1]) + message[101:], ebgc.ChecksumError)):
            with pytest.raises(error):
                stream._read_message(bad)
            with pytest.raises(error):
                read_message_fetching(bad)


def test_device_message_needs_cuda_arrays():
    with pytest.raises(ebgc.InvalidArgumentError, match="device_message"):
        ebgc.GradientEncoder(1e-3).encode({"x": np.ones(10, np.float32)}, device_message=True)
