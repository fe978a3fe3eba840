"""The low-rank predictor: matrices predicted by factors sent in the header, written as predictor
4 (each component's entries at their own width) and still read as predictor 3 (int16 entries).

It must pay where updates are low-rank, keep the bound on any input it is tried on (NaN, Inf,
huge values, denormals, constant and zero matrices), give the same bytes whatever the thread
count or vector path, work in streams, and refuse crafted factor fields with a typed error.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ebgc
from ebgc import _core
from blobfmt import parse, reseal
from conftest import assert_within_bound
from strategies import special_values


def low_rank(rows, cols, rank=3, noise=0.01, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
    return (x + noise * rng.standard_normal((rows, cols))).astype(dtype)


def predictor(blob):
    h = ebgc.info(blob)
    return h["predictor"], h["predictor_rank"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("rel", 1e-3), ("abs", 1e-3)])
def test_low_rank_pays_and_keeps_the_bound(dtype, mode, eb):
    x = low_rank(96, 200, dtype=dtype)
    blob = ebgc.compress(x, eb, mode=mode)
    plain = ebgc.compress(x, eb, mode=mode, low_rank=False)
    assert predictor(blob)[0] == "low-rank" and 1 <= predictor(blob)[1] <= 20
    assert predictor(plain) == ("zero", 0)
    assert len(blob) < 0.7 * len(plain)
    assert_within_bound(x, ebgc.decompress(blob), blob)


def test_noise_and_other_shapes_stay_zero_predicted():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((128, 128)).astype(np.float32)
    assert predictor(ebgc.compress(noise, 1e-2))[0] == "zero"  # nothing to gain: not chosen
    lr = low_rank(64, 64)
    for shaped in (lr.reshape(-1), lr.reshape(64, 8, 8), lr[:20]):  # 1-D, conv-like, too small
        assert predictor(ebgc.compress(shaped, 1e-2))[0] == "zero"
    assert predictor(ebgc.compress(lr, 1e-2, coder="bitpack"))[0] == "zero"  # the fast mode


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_16_bit_matrices(dtype_name):
    from ebgc.vocabulary import dtype_from_name

    x = low_rank(64, 96, dtype=np.float32).astype(dtype_from_name(dtype_name))
    blob = ebgc.compress(x, 1e-2)
    assert predictor(blob)[0] == "low-rank"
    assert_within_bound(x, ebgc.decompress(blob), blob)


def test_same_bytes_for_any_thread_count_and_vector_path():
    x = low_rank(300, 700, rank=5, seed=3)  # several row parts in the factorization, 4 chunks
    one = ebgc.compress(x, 1e-3, threads=1)
    assert predictor(one)[0] == "low-rank"
    assert ebgc.compress(x, 1e-3, threads=2) == one
    assert ebgc.compress(x, 1e-3, threads=3) == one
    was = _core._vector_paths(False)
    try:
        scalar = ebgc.compress(x, 1e-3, threads=1)
        scalar_out = ebgc.decompress(one)
    finally:
        _core._vector_paths(was)
    assert scalar == one
    assert np.array_equal(scalar_out.view(np.uint32), ebgc.decompress(one).view(np.uint32))


@st.composite
def low_rank_matrices(draw):
    """Eligible matrices (>= 24 x 24, >= 4096 values): a few outer products, noise of any
    relative size, scaled anywhere from denormal to near-overflow, with special values placed."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rows = draw(st.integers(24, 90))
    cols = draw(st.integers(max(24, -(-4096 // rows)), 200))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rank = draw(st.integers(0, 6))
    x = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols)) if rank else np.zeros((rows, cols))
    x = x + draw(st.sampled_from([0.0, 1e-3, 0.1, 1.0])) * rng.standard_normal((rows, cols))
    scale = draw(st.sampled_from([1e-40, 1e-30, 1e-6, 1.0, 1e6, 1e30, 3e37]))
    with np.errstate(over="ignore"):
        x = (x * scale).astype(dtype)
    specials = special_values(dtype)
    for _ in range(draw(st.integers(0, 8))):
        x[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] = draw(st.sampled_from(specials))
    return x


@given(x=low_rank_matrices(), eb=st.sampled_from([1e-1, 1e-2, 1e-3, 1e-5]), mode=st.sampled_from(["abs", "rel"]),
       coder=st.sampled_from(["auto", "context", "huffman"]))
def test_bound_on_adversarial_matrices(x, eb, mode, coder):
    blob = ebgc.compress(x, eb, mode=mode, coder=coder)
    assert_within_bound(x, ebgc.decompress(blob), blob)


def test_streams_use_it_and_decode_elsewhere():
    enc = ebgc.GradientEncoder(1e-2, stream_id="lr")
    dec = ebgc.GradientDecoder()
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal((80, 2)), rng.standard_normal((2, 150))
    for r in range(4):
        # a fresh low-rank update each round: the previous round predicts little, the factors a lot
        x = ((u * rng.standard_normal(2)) @ v + 0.01 * rng.standard_normal((80, 150))).astype(np.float32)
        u = u + rng.standard_normal(u.shape)
        msg = enc.encode({"fc.weight": x})
        parts = dict(ebgc.stream.parse_message(msg).tensors)
        assert predictor(parts["fc.weight"])[0] == "low-rank"
        out = dec.decode(msg)["fc.weight"]
        assert_within_bound(x, out, parts["fc.weight"])


def test_encoder_state_keeps_the_setting():
    enc = ebgc.GradientEncoder(1e-2, low_rank=False)
    enc.encode({"w": low_rank(64, 100)})
    again = ebgc.GradientEncoder.load(enc.save())
    assert again.low_rank is False and again.history == 2
    blob = dict(ebgc.stream.parse_message(again.encode({"w": low_rank(64, 100, seed=9)})).tensors)["w"]
    assert predictor(blob)[0] != "low-rank"
    assert ebgc.GradientEncoder.load(ebgc.GradientEncoder(1e-2).save()).low_rank is True


# ---- crafted factor fields: a typed error, never a crash or a large allocation -----------------
@pytest.fixture(scope="module")
def sample_blob():
    blob = ebgc.compress(low_rank(32, 160), 1e-2)
    assert predictor(blob)[0] == "low-rank" and parse(blob).predictor == 4
    return blob


def _with_factors(blob, data=None, shape=None, predictor_id=None, coder=None):
    b = parse(blob)
    if data is not None:
        b.predictor_data = data
    if shape is not None:
        b.shape = shape
    if predictor_id is not None:
        b.predictor = predictor_id
    if coder is not None:
        b.coder = coder
    return b.to_bytes()


def _refused(blob, cases):
    for what, d in cases.items():
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(_with_factors(blob, data=d))
            pytest.fail(what)


def test_crafted_packed_factor_fields_are_refused(sample_blob):
    b = parse(sample_blob)
    data = b.predictor_data
    rank = data[0]
    width = data[1]
    _refused(sample_blob, {
        "rank 0": bytes([0]) + data[1:],
        "rank 33": bytes([33]) + data[1:],
        "rank beyond the factors": bytes([rank + 1]) + data[1:],
        "width 0": data[:1] + bytes([0]) + data[2:],
        "width 1": data[:1] + bytes([1]) + data[2:],
        "width 17": data[:1] + bytes([17]) + data[2:],
        "width 255": data[:1] + bytes([255]) + data[2:],
        "width beyond the factors": data[:1] + bytes([width + 1]) + data[2:],
        "narrower than sent": data[:1] + bytes([width - 1]) + data[2:],
        "factors cut short": data[:-1],
        "one byte more": data + b"\0",
        "component headers cut short": data[:1 + 9 * rank - 1],
        "no factors": b"",
        "NaN scale": data[:2] + struct.pack("<f", float("nan")) + data[6:],
        "Inf scale": data[:6] + struct.pack("<f", float("inf")) + data[10:],
    })
    with pytest.raises(ebgc.FormatError):  # a vector cannot carry factors
        ebgc.decompress(_with_factors(sample_blob, shape=[b.shape[0] * b.shape[1]]))
    with pytest.raises(ebgc.FormatError):  # nor can a raw blob
        ebgc.decompress(_with_factors(sample_blob, coder=0))
    with pytest.raises(ebgc.FormatError):  # factors behind a predictor that has none
        ebgc.decompress(_with_factors(sample_blob, predictor_id=0))
    with pytest.raises(ebgc.FormatError):  # packed factors read as the int16 layout
        ebgc.decompress(_with_factors(sample_blob, predictor_id=3))
    with pytest.raises(ebgc.FormatError):  # no predictor 5
        ebgc.decompress(_with_factors(sample_blob, predictor_id=5))


def test_crafted_int16_factor_fields_are_refused(fixture_blob_int16):
    blob = fixture_blob_int16
    data = parse(blob).predictor_data
    rank = data[0]
    _refused(blob, {
        "rank 0": bytes([0]) + data[1:],
        "rank 33": bytes([33]) + data[1:],
        "rank beyond the factors": bytes([rank + 1]) + data[1:],
        "factors cut short": data[:-2],
        "no factors": b"",
        "NaN scale": data[:1] + struct.pack("<f", float("nan")) + data[5:],
        "Inf scale": data[:5] + struct.pack("<f", float("inf")) + data[9:],
    })


@pytest.fixture(scope="module")
def fixture_blob_int16():
    """A committed v1 blob of predictor 3 (int16 factors), which the encoder no longer writes."""
    from pathlib import Path

    blob = (Path(__file__).parent / "fixtures" / "f32_rel_lowrank_context.ebgc").read_bytes()
    assert parse(blob).predictor == 3
    return blob


@st.composite
def packed_factor_fields(draw):
    """Predictor 4 factor fields for the 32 x 160 sample: a rank, per component a width (valid or
    not) and two scales, then the packed entries, whose length is right, short or long."""
    rank = draw(st.integers(0, 34))
    head = bytearray([rank])
    total = 0
    for _ in range(rank):
        w = draw(st.sampled_from([0, 1, 2, 3, 7, 12, 16, 17, 255]))
        total += w
        scale = draw(st.sampled_from([0.0, 1e-30, 1.0, 3e38, float("nan"), float("inf")]))
        head += bytes([w]) + struct.pack("<ff", scale, draw(st.sampled_from([1.0, -1e-3, float("-inf")])))
    size = (total * (32 + 160) + 7) // 8 + draw(st.sampled_from([0, 0, -1, 1, -50]))
    return bytes(head) + draw(st.binary(min_size=max(0, size), max_size=max(0, size)))


@given(data=packed_factor_fields())
def test_any_packed_factor_field_decodes_or_is_refused(sample_blob, data):
    try:
        out = ebgc.decompress(_with_factors(sample_blob, data=data))
    except ebgc.FormatError:
        return
    assert out.shape == (32, 160) and out.dtype == np.float32


def test_packed_factors_are_narrower_than_int16():
    x = low_rank(64, 512, rank=4, noise=0.3, seed=4)
    b = parse(ebgc.compress(x, 1e-2))
    assert b.predictor == 4
    rank = b.predictor_data[0]
    widths = [b.predictor_data[1 + 9 * k] for k in range(rank)]
    assert all(2 <= w < 16 for w in widths), widths
    assert len(b.predictor_data) < 0.7 * (1 + rank * (8 + 2 * (64 + 512)))


def test_huge_declared_matrix_allocates_nothing(sample_blob):
    # 2^20 x 2^20 needs 2^22 bytes of factors per component: refused before anything is read
    with pytest.raises(ebgc.FormatError):
        ebgc.decompress(_with_factors(sample_blob, shape=[1 << 20, 1 << 20]))


def test_every_truncation_and_flip_is_typed(sample_blob):
    for cut in range(0, len(sample_blob), 7):
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(sample_blob[:cut])
    hdr = len(sample_blob) - len(parse(sample_blob).payload) - 4
    for pos in range(12, hdr, 3):  # header and factors, re-sealed: decodes or refuses, no crash
        flipped = bytearray(sample_blob)
        flipped[pos] ^= 0x5A
        try:
            out = ebgc.decompress(reseal(bytes(flipped)))
        except ebgc.FormatError:
            continue
        assert out.dtype == np.float32
