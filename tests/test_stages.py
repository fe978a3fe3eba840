"""Each native stage of ebgc._core on its own: entropy coders, bit-packing, quantizer.

Stage decoders get no checksum to lean on, so for damaged input the contract is: a FormatError, or
(when the damage happens to decode) an array of the requested length and dtype, never a crash.
Plainly insufficient input (empty data for a non-zero count, absurd counts) must be a FormatError.
"""

from __future__ import annotations

import time

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ebgc
from ebgc import _core
from strategies import elements, error_bounds

MAX_CODE = 2**30 - 1


def _decode_or_format_error(decode, data, count, dtype):
    """Damaged input: FormatError, or a well-formed array of `count` elements."""
    try:
        out = decode(data, count)
    except ebgc.FormatError:
        return None
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == (count,)
    return out


def _damage_all(encoded: bytes, decode, count, dtype, *, max_positions=400):
    """Every truncation and (up to max_positions) single-byte flips; returns #FormatErrors."""
    t0 = time.perf_counter()
    errors = 0
    for k in range(len(encoded)):
        if _decode_or_format_error(decode, encoded[:k], count, dtype) is None:
            errors += 1
    step = max(1, len(encoded) // max_positions)
    for i in range(0, len(encoded), step):
        for mask in (0xFF, 0x01, 0x80):
            b = bytearray(encoded)
            b[i] ^= mask
            if _decode_or_format_error(decode, bytes(b), count, dtype) is None:
                errors += 1
    assert time.perf_counter() - t0 < 30, "damaged stage input took too long to reject"
    return errors


# ==================================================================================================
# Huffman
# ==================================================================================================

def _huff_rt(symbols, alphabet_size):
    symbols = np.asarray(symbols, dtype=np.uint16)
    enc = _core.huffman_encode(symbols, alphabet_size)
    assert isinstance(enc, bytes)
    dec = _core.huffman_decode(enc, len(symbols))
    assert isinstance(dec, np.ndarray) and dec.dtype == np.uint16 and dec.shape == symbols.shape
    np.testing.assert_array_equal(dec, symbols)
    return enc


@pytest.mark.parametrize("alphabet_size", [1, 2, 300, 4096])
def test_huffman_empty(alphabet_size):
    _huff_rt([], alphabet_size)


@pytest.mark.parametrize("alphabet_size", [1, 8, 4096])
def test_huffman_one_symbol_repeated(alphabet_size):
    s = alphabet_size - 1
    enc = _huff_rt([s] * 10000, alphabet_size)
    # at most 1 bit per symbol plus the 4-bit-per-symbol table
    assert len(enc) <= 10000 // 8 + alphabet_size // 2 + 64


def test_huffman_single_value():
    _huff_rt([0], 1)
    _huff_rt([4095], 4096)


@pytest.mark.parametrize("p", [0.5, 0.01, 0.999])
def test_huffman_two_symbols(p):
    rng = np.random.default_rng(1)
    s = np.where(rng.random(5000) < p, 3, 9)
    _huff_rt(s, 10)


def test_huffman_all_4096_symbols():
    rng = np.random.default_rng(2)
    s = rng.permutation(np.tile(np.arange(4096), 3))
    enc = _huff_rt(s, 4096)
    assert len(enc) <= len(s) * 12 // 8 + 4096 // 2 + 64


def test_huffman_skewed_all_4096():
    rng = np.random.default_rng(3)
    s = np.minimum(rng.geometric(0.05, size=50000) - 1, 4095)
    s[:4096] = np.arange(4096)  # every symbol used at least once
    _huff_rt(rng.permutation(s), 4096)


@pytest.mark.parametrize("nsym", [14, 20, 26])
def test_huffman_fibonacci_forces_length_limit(nsym):
    # Fibonacci counts give an optimal Huffman code of depth nsym-1 > 12: the limiter must act.
    fib = [1, 1]
    while len(fib) < nsym:
        fib.append(fib[-1] + fib[-2])
    s = np.repeat(np.arange(nsym), fib)
    s = np.random.default_rng(nsym).permutation(s)
    enc = _huff_rt(s, nsym)
    # length-limited code is still decent: below 12 bits/symbol and close to the entropy
    p = np.array(fib, float) / sum(fib)
    entropy_bits = -(p * np.log2(p)).sum() * len(s)
    assert len(enc) * 8 <= entropy_bits * 1.15 + 8 * 64


def test_huffman_geometric_deep_tree():
    # powers of two: the optimal code has one leaf per depth, 20 deep (limited to 12)
    counts = [2**k for k in range(0, 20)][::-1]
    s = np.repeat(np.arange(len(counts)), counts)
    _huff_rt(np.random.default_rng(0).permutation(s), 4096)


@given(
    alphabet_size=st.integers(1, 4096),
    data=st.data(),
)
def test_huffman_hypothesis(alphabet_size, data):
    n = data.draw(st.integers(0, 3000), label="n")
    hi = data.draw(st.integers(0, alphabet_size - 1), label="max_symbol")
    s = data.draw(
        hnp.arrays(np.uint16, n, elements=st.integers(0, hi)) if n < 200
        else st.integers(0, 2**32 - 1).map(
            lambda seed: np.random.default_rng(seed).integers(0, hi + 1, size=n).astype(np.uint16)),
        label="symbols",
    )
    _huff_rt(s, alphabet_size)


@pytest.mark.parametrize("bad", [
    dict(symbols=[5], alphabet_size=4),
    dict(symbols=[0, 1], alphabet_size=0),
    dict(symbols=[0], alphabet_size=4097),
    dict(symbols=[4096], alphabet_size=4096),
])
def test_huffman_encode_rejects_out_of_alphabet(bad):
    with pytest.raises(ValueError):
        _core.huffman_encode(np.asarray(bad["symbols"], np.uint16), bad["alphabet_size"])


def _huff_sample():
    rng = np.random.default_rng(5)
    s = np.minimum(rng.geometric(0.2, size=3000) - 1, 199).astype(np.uint16)
    return _core.huffman_encode(s, 200), s


def test_huffman_damaged_never_crashes():
    enc, s = _huff_sample()
    _damage_all(enc, _core.huffman_decode, len(s), np.uint16)


def test_huffman_insufficient_input():
    enc, s = _huff_sample()
    with pytest.raises(ebgc.FormatError):
        _core.huffman_decode(b"", 10)
    with pytest.raises(ebgc.FormatError):
        _core.huffman_decode(enc, len(s) + 100000)
    t0 = time.perf_counter()
    with pytest.raises(ebgc.FormatError):
        _core.huffman_decode(enc, 2**40)
    assert time.perf_counter() - t0 < 2


@given(data=st.binary(max_size=600), count=st.integers(0, 5000))
def test_huffman_random_bytes(data, count):
    _decode_or_format_error(_core.huffman_decode, data, count, np.uint16)


# ==================================================================================================
# Bit-packing
# ==================================================================================================

def _bp_rt(values):
    values = np.asarray(values, dtype=np.uint32)
    enc = _core.bitpack_encode(values)
    assert isinstance(enc, bytes)
    dec = _core.bitpack_decode(enc, len(values))
    assert isinstance(dec, np.ndarray) and dec.dtype == np.uint32 and dec.shape == values.shape
    np.testing.assert_array_equal(dec, values)
    return enc


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 1000, 100001])
def test_bitpack_zeros(n):
    enc = _bp_rt(np.zeros(n, np.uint32))
    assert len(enc) <= -(-n // 32) + 64  # zero blocks eliminated: no payload, at most a byte each


@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 63, 64, 65, 1001])
@pytest.mark.parametrize("width", range(0, 33))
def test_bitpack_every_width(width, n):
    rng = np.random.default_rng(width * 1000 + n)
    hi = (1 << width) - 1
    v = rng.integers(0, hi, size=n, endpoint=True, dtype=np.uint64).astype(np.uint32)
    if n:
        v[rng.integers(0, n)] = hi  # the width is actually reached
    enc = _bp_rt(v)
    blocks = -(-n // 32)
    assert len(enc) <= blocks * (4 * width + 8) + 64


def test_bitpack_all_ones_and_extremes():
    _bp_rt(np.full(100, 0xFFFFFFFF, np.uint32))
    _bp_rt([0xFFFFFFFF, 0, 1, 0x80000000, 0x7FFFFFFF])
    v = np.zeros(32 * 20, np.uint32)
    v[32 * 7 + 5] = 0xFFFFFFFF  # one wide value in one block, zero blocks around it
    v[32 * 19 + 31] = 1
    _bp_rt(v)


def test_bitpack_mixed_blocks():
    rng = np.random.default_rng(8)
    parts = []
    for w in rng.integers(0, 33, size=200):
        hi = (1 << int(w)) - 1
        parts.append(rng.integers(0, hi, size=32, endpoint=True, dtype=np.uint64).astype(np.uint32))
    _bp_rt(np.concatenate(parts)[:-13])


@given(hnp.arrays(np.uint32, st.integers(0, 700), elements=st.integers(0, 2**32 - 1)
                  | st.sampled_from([0, 1, 2**31, 2**32 - 1]).map(int)))
def test_bitpack_hypothesis(v):
    _bp_rt(v)


def _bp_sample():
    rng = np.random.default_rng(6)
    v = (rng.geometric(0.1, size=1000) - 1).astype(np.uint32)
    v[100:300] = 0
    return _core.bitpack_encode(v), v


def test_bitpack_damaged_never_crashes():
    enc, v = _bp_sample()
    _damage_all(enc, _core.bitpack_decode, len(v), np.uint32)


def test_bitpack_insufficient_input():
    enc, v = _bp_sample()
    with pytest.raises(ebgc.FormatError):
        _core.bitpack_decode(b"", 1000)
    t0 = time.perf_counter()
    with pytest.raises(ebgc.FormatError):
        _core.bitpack_decode(enc, 2**40)
    assert time.perf_counter() - t0 < 2


@given(data=st.binary(max_size=600), count=st.integers(0, 5000))
def test_bitpack_random_bytes(data, count):
    _decode_or_format_error(_core.bitpack_decode, data, count, np.uint32)


# ==================================================================================================
# Context-modelled rANS
# ==================================================================================================

def _ctx_rt(codes, period=1):
    codes = np.asarray(codes, dtype=np.int32)
    enc = _core.context_encode(codes, period)
    assert isinstance(enc, bytes)
    dec = _core.context_decode(enc, len(codes))
    assert isinstance(dec, np.ndarray) and dec.dtype == np.int32 and dec.shape == codes.shape
    np.testing.assert_array_equal(dec, codes)
    return enc


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 200001])
def test_context_zeros(n):
    enc = _ctx_rt(np.zeros(n, np.int32))
    assert len(enc) <= n // 50 + 256


def test_context_extremes():
    _ctx_rt([MAX_CODE, -MAX_CODE, 0, 1, -1, MAX_CODE, MAX_CODE, -MAX_CODE])
    _ctx_rt([MAX_CODE])
    _ctx_rt([-MAX_CODE])
    _ctx_rt(np.full(1000, -MAX_CODE))


def test_context_long_zero_runs():
    rng = np.random.default_rng(9)
    c = np.zeros(300000, np.int32)
    idx = rng.choice(c.size, size=300, replace=False)
    c[idx] = rng.integers(-MAX_CODE, MAX_CODE, size=300, endpoint=True)
    enc = _ctx_rt(c)
    assert len(enc) < 300000 // 8


@pytest.mark.parametrize("scale", [1, 3, 30, 1000, 2**20, 2**29])
def test_context_laplacian(scale):
    rng = np.random.default_rng(scale)
    c = np.clip(np.round(rng.laplace(scale=scale, size=50000)), -MAX_CODE, MAX_CODE).astype(np.int32)
    _ctx_rt(c)


def test_context_uniform_full_range():
    rng = np.random.default_rng(10)
    _ctx_rt(rng.integers(-MAX_CODE, MAX_CODE, size=20000, endpoint=True, dtype=np.int32))


@given(hnp.arrays(np.int32, st.integers(0, 2000),
                  elements=st.integers(-MAX_CODE, MAX_CODE) | st.integers(-3, 3)
                  | st.sampled_from([MAX_CODE, -MAX_CODE, MAX_CODE - 1, 2**29, -(2**29), 15, 16, -16, 0])))
def test_context_hypothesis(codes):
    _ctx_rt(codes)


@pytest.mark.parametrize("period", [1, 9, 300])
@pytest.mark.parametrize("where", [0, 1, 255, 256, 511, 4097])
@pytest.mark.parametrize("large", [16, -16, 17, MAX_CODE, -MAX_CODE])
def test_context_small_and_large_runs(period, where, large):
    """The symbol pass takes runs of 256 codes that are all below 16 in magnitude through a loop
    without raw bits, and other runs through the general one: one large code at a run's edge,
    with lanes and kernels crossing runs, must come back exactly in both."""
    rng = np.random.default_rng(where)
    c = rng.integers(-15, 15, size=9000, endpoint=True).astype(np.int32)
    c[where] = large
    _ctx_rt(c, period)


@pytest.mark.parametrize("vector", [True, False])
def test_context_codes_at_every_power_of_two(vector):
    """The encoder's vectorized symbolize takes each code's exponent from a float conversion,
    which rounds up next to powers of two above 2^24: codes 2^e - 2 .. 2^e + 2 of every exponent,
    both signs, through either build of the loop."""
    edges = [(1 << e) + d for e in range(1, 31) for d in (-2, -1, 0, 1, 2)]
    c = np.array([v for v in edges if v <= MAX_CODE], np.int64)
    c = np.concatenate([c, -c, [0, MAX_CODE, -MAX_CODE]]).astype(np.int32)
    c = np.repeat(c, 3)  # runs long enough for the general loop
    was = _core._vector_paths(vector)
    try:
        _ctx_rt(c)
        _ctx_rt(c, 9)
    finally:
        _core._vector_paths(was)


def test_rans_encoder_step_is_exact_for_every_frequency():
    """The encoder's quotient (a multiply-high by a 64-bit reciprocal, no correction step) against
    exact integer arithmetic, for every frequency of the 12-bit scale and the states where a
    quotient could be off by one: both ends of the renormalized range and around multiples of
    the frequency."""
    scale = 4096
    xs, fs, ss = [], [], []
    for f in range(1, scale + 1):
        top = (f << 20) - 1  # the largest state the step sees (after renormalization)
        q_top = top // f
        cand = {1, 2**16, 2**16 + 1, top, top - 1, q_top * f, q_top * f - 1, (q_top - 1) * f + f - 1,
                (1 << 31) // f * f - 1, (1 << 31) // f * f}
        cand = [x for x in cand if 1 <= x <= top]
        xs += cand
        fs += [f] * len(cand)
        ss += [(f * 7) % (scale - f + 1)] * len(cand)
    rng = np.random.default_rng(4)
    f_rand = rng.integers(1, scale, size=200000, endpoint=True)
    xs += list(rng.integers(1, f_rand.astype(np.uint64) << 20))
    fs += list(f_rand)
    ss += list(rng.integers(0, scale - f_rand, endpoint=True))
    x, f, s = (np.array(v, np.uint64) for v in (xs, fs, ss))
    got = _core._rans_encode_step(x.astype(np.uint32), f.astype(np.uint32), s.astype(np.uint32))
    want = (x // f) * scale + x % f + s
    np.testing.assert_array_equal(got.astype(np.uint64), want)
    with pytest.raises(ValueError):
        _core._rans_encode_step([1 << 20], [1], [0])  # not renormalized
    with pytest.raises(ValueError):
        _core._rans_encode_step([5], [0], [0])


@pytest.mark.parametrize("bad", [2**30, -(2**30), 2**31 - 1, -(2**31)])
def test_context_out_of_range_code_rejected_or_exact(bad):
    codes = np.array([0, 1, bad, -1], np.int32)
    try:
        enc = _core.context_encode(codes)
    except ValueError:
        return
    np.testing.assert_array_equal(_core.context_decode(enc, len(codes)), codes)


def _ctx_sample():
    rng = np.random.default_rng(11)
    c = np.round(rng.laplace(scale=4, size=3000)).astype(np.int32)
    c[500:1500] = 0
    c[7] = 2**29 + 12345
    c[8] = -(2**29)
    return _core.context_encode(c), c


def test_context_damaged_never_crashes():
    enc, c = _ctx_sample()
    _damage_all(enc, _core.context_decode, len(c), np.int32)


def test_context_insufficient_input():
    enc, c = _ctx_sample()
    with pytest.raises(ebgc.FormatError):
        _core.context_decode(b"", 1000)
    t0 = time.perf_counter()
    with pytest.raises(ebgc.FormatError):
        _core.context_decode(enc, 2**40)
    assert time.perf_counter() - t0 < 2


@given(data=st.binary(max_size=600), count=st.integers(0, 5000))
def test_context_random_bytes(data, count):
    _decode_or_format_error(_core.context_decode, data, count, np.int32)


# ==================================================================================================
# Quantizer
# ==================================================================================================

def _check_quantize(x, abs_bound):
    x = np.ascontiguousarray(x)
    codes, outliers = _core.quantize(x, abs_bound)
    assert codes.dtype == np.int32 and codes.shape == x.shape
    assert outliers.dtype == np.uint64 and outliers.ndim == 1
    o = outliers.astype(np.int64)
    assert (o >= 0).all() and (o < x.size).all()
    assert np.unique(o).size == o.size, "duplicate outlier indices"
    assert (np.abs(codes.astype(np.int64)) <= MAX_CODE).all(), "code outside (-2^30, 2^30)"
    nonfinite = np.flatnonzero(~np.isfinite(x))
    assert np.isin(nonfinite, o).all(), "a NaN/Inf is not an outlier"
    y = _core.dequantize(codes, abs_bound, x.dtype.name)
    assert y.dtype == x.dtype and y.shape == x.shape
    keep = np.ones(x.size, bool)
    keep[o] = False
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(y[keep].astype(np.float64) - x[keep].astype(np.float64))
    bad = ~(err <= abs_bound)
    assert not bad.any(), (
        f"non-outlier outside bound {abs_bound!r}: x={x[keep][bad][:5]!r} y={y[keep][bad][:5]!r}")
    return codes, o


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@given(data=st.data())
def test_quantize_property(dtype, data):
    x = data.draw(hnp.arrays(np.dtype(dtype), st.integers(0, 300), elements=elements(dtype)), label="x")
    b = data.draw(error_bounds() | st.sampled_from([1e-300, 1e300, 5e-324]), label="abs_bound")
    _check_quantize(x, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("abs_bound", [1e-8, 1e-4, 1e-2, 0.5, 1.0, 1e3])
def test_quantize_gaussian_few_outliers(dtype, abs_bound):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(100000) * 10).astype(dtype)
    x[::1000] = np.nan
    x[1::1000] = np.inf
    codes, o = _check_quantize(x, abs_bound)
    if abs_bound >= 1e-4:
        # Only the non-finite values and rare rounding edges should need to be outliers. In float32
        # a value on a bin edge can have no code within the bound at all (both neighbours' float32
        # reconstructions miss by a fraction of an ulp): 130 of these 100,000 values at 1e-4
        # (measured), none in float64. Allowance: 0.25%.
        assert o.size <= 200 + x.size // 400


def test_quantize_codes_near_limit():
    # |x / (2 eb)| right at and past 2^30: the quantizer must fall back to outliers, not wrap
    b = 0.5
    x = np.array([(2**30 - 2) * 1.0, (2**30 - 1) * 1.0, 2.0**30, 2.0**31, -(2.0**30), -(2**30 - 2) * 1.0,
                  1e15, -1e15], np.float64)
    _check_quantize(x, b)


def test_quantize_float32_coarse_grid():
    # float32 spacing around 1e6 is 0.0625: a 1e-3 bound can only be met by exact values
    x = (1e6 + np.arange(-50, 50) * 0.0625).astype(np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf))])
    _check_quantize(x, 1e-3)


def test_crc32c_matches_the_reference_at_every_length_and_seed():
    """Hardware (SSE4.2) and table CRC-32C must agree with the plain-Python reference."""
    import blobfmt

    rng = np.random.default_rng(11)
    assert _core.crc32c(b"123456789") == 0xE3069283  # the standard check value
    for n in list(range(0, 33)) + [1000, 4097]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _core.crc32c(data) == blobfmt.crc32c(data)
        head, tail = data[: n // 3], data[n // 3:]
        assert _core.crc32c(tail, seed=_core.crc32c(head)) == blobfmt.crc32c(data)



@pytest.mark.parametrize("terms", [False, True])
def test_crc32c_by_parts_as_the_gpu_computes_it(terms):
    """The GPU's checksums: raw CRCs of parts chained on the host (the stream digest), or every
    part's term on its own, XOR-combined (a blob it assembles in its memory): crc32c's value at every
    length around the part size, any seed."""
    rng = np.random.default_rng(12)
    for part in (1, 7, 64, 4096):
        for n in sorted({0, 1, part - 1, part, part + 1, 2 * part, 3 * part + 5, 10_000}):
            data = rng.integers(0, 256, max(n, 0), dtype=np.uint8).tobytes()
            for seed in (0, 0xFFFFFFFF, int(rng.integers(0, 2**32))):
                assert _core._crc32c_by_parts(data, seed, part, terms) == _core.crc32c(data, seed=seed), (part, n, seed)


# ---- the AVX2 paths (lane decoder, quantizer) compute exactly what the scalar paths compute -------
@pytest.fixture
def scalar_lanes():
    """Runs a test body with the vector loop off, and restores the setting."""
    was = _core._vector_paths(False)
    yield
    _core._vector_paths(was)


def _lane_cases():
    rng = np.random.default_rng(31)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 1000, 4097, 70001):
        for scale in (0.5, 4, 300, 2**20):
            codes = np.clip(np.round(rng.laplace(scale=scale, size=n)), -MAX_CODE, MAX_CODE).astype(np.int32)
            for period in (1, 9, 25):
                yield codes, period


def test_vector_and_scalar_lane_decoders_agree():
    if not _core._vector_paths():
        pytest.skip("this CPU has no AVX2: only the scalar loop exists here")
    blobs = [(_core.context_encode(c, p), c) for c, p in _lane_cases()]
    vector = [_core.context_decode(b, len(c)) for b, c in blobs]
    was = _core._vector_paths(False)
    try:
        scalar = [_core.context_decode(b, len(c)) for b, c in blobs]
    finally:
        _core._vector_paths(was)
    for (b, c), v, s in zip(blobs, vector, scalar):
        np.testing.assert_array_equal(v, c)
        np.testing.assert_array_equal(s, c)


@pytest.mark.parametrize("coder", ["context", "auto"])
def test_scalar_lane_decoder_round_trip(scalar_lanes, coder):
    rng = np.random.default_rng(32)
    x = (rng.laplace(size=(64, 16, 3, 3)) * 1e-3).astype(np.float32)
    blob = ebgc.compress(x, 1e-2, coder=coder)
    y = ebgc.decompress(blob)
    assert np.max(np.abs(y.astype(np.float64) - x)) <= ebgc.info(blob)["abs_bound"]


def test_vector_and_scalar_quantizers_agree():
    """The quantizer's AVX2 build gives the same codes, outliers and reconstructions (hence the
    same blobs and stream messages) as its default build, on every dtype and adversarial kind."""
    if not _core._vector_paths():
        pytest.skip("this CPU has no AVX2: only the scalar path exists here")
    from strategies import ADVERSARIAL_KINDS, adversarial

    def blobs():
        out = []
        for dtype in (np.float32, np.float64, np.float16, ml_dtypes.bfloat16):
            for kind in ADVERSARIAL_KINDS:
                x = adversarial(kind, 1001, dtype, np.random.default_rng(5))
                for coder in ("bitpack", "huffman", "context"):
                    out.append(ebgc.compress(x, 1e-3, mode="rel", coder=coder))
                out.append(ebgc.compress(x, 1e-6, mode="abs", coder="context"))
        enc = ebgc.GradientEncoder(1e-2, stream_id=b"s")  # predicted messages: the blend path
        rng = np.random.default_rng(6)
        base = rng.laplace(size=(32, 8, 3, 3)).astype(np.float32)
        for _ in range(3):
            out.append(enc.encode({"w": base + 0.3 * rng.laplace(size=base.shape).astype(np.float32)}))
        return out

    vector = blobs()
    was = _core._vector_paths(False)
    try:
        scalar = blobs()
    finally:
        _core._vector_paths(was)
    assert vector == scalar
