"""float16 and bfloat16: the 16-bit storage stage, and the bound verified in the data's own dtype.

Every test compares against an independent reference: numpy's float16 conversion (which rounds
float64 directly, to nearest even) or exact rational arithmetic, and `assert_within_bound`, which
measures the error of the returned 16-bit values in float64.
"""
from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ebgc
from ebgc import _core
from conftest import CODERS, assert_within_bound, bits, roundtrip
from strategies import ADVERSARIAL_KINDS, adversarial, error_bounds, modes

NARROW = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
ALL_BITS = np.arange(1 << 16, dtype=np.uint16)


# ---- the storage stage --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NARROW)
def test_widen_is_exact_and_narrow_inverts_it(name):
    wide = _core.widen_bits(ALL_BITS, name)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(wide, ALL_BITS.view(NARROW[name]).astype(np.float64))
    nan = np.isnan(wide)
    mantissa_bits = 10 if name == "float16" else 7
    assert nan.sum() == 2 * ((1 << mantissa_bits) - 1)  # every pattern with exponent all ones, m != 0
    back = _core.narrow_bits(wide, name)
    np.testing.assert_array_equal(back[~nan], ALL_BITS[~nan])
    assert np.isnan(_core.widen_bits(back[nan], name)).all()


def _doubles(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-45, 40, n)
    edges = [0.0, -0.0, 65504.0, 65519.999, 65520.0, -65520.0, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001,
             3 * 2.0**-26, 1e300, -1e300, np.inf, -np.inf, 3.3895313892515355e38, 3.39e38, 1e-45, 5e-324]
    return np.concatenate([x, edges])


def test_float16_rounding_matches_numpy():
    x = _doubles(200_000, 1)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(_core.narrow_bits(x, "float16"), want)


def test_bfloat16_rounding_is_nearest_even_exactly():
    # Exact reference: the two neighbouring bfloat16 values around v, compared as rationals.
    pos = np.arange(0x7F80, dtype=np.uint16)  # +0 .. largest finite, increasing
    grid = _core.widen_bits(pos, "bfloat16")
    x = _doubles(3000, 2)
    x = x[np.isfinite(x)]
    got = _core.narrow_bits(x, "bfloat16")
    top = grid[-1] + (grid[-1] - grid[-2]) / 2  # halfway to the next power: rounds to Inf
    for v, g in zip(x, got):
        a = abs(float(v))
        if a >= top:
            assert g & 0x7FFF == 0x7F80, v
            continue
        k = int(np.searchsorted(grid, a, side="right")) - 1
        # past the largest finite value the next pattern (0x7F80) stands for 2^128
        lo, hi = Fraction(float(grid[k])), Fraction(float(grid[k + 1])) if k + 1 < len(grid) else Fraction(2**128)
        fa = Fraction(a)
        if fa == lo or fa - lo < hi - fa or (fa - lo == hi - fa and k % 2 == 0):
            want = k
        else:
            want = k + 1
        assert int(g) & 0x7FFF == want, (v, hex(int(g)), hex(want))
        assert (int(g) >> 15) == (np.signbit(v)), v


# ---- the bound, in the data's own dtype ----------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("name", NARROW)
@given(data=st.data())
def test_bound_on_any_bit_patterns(name, coder, data):
    # Arbitrary 16-bit patterns: every NaN payload, Inf, subnormal and extreme is reachable.
    raw = data.draw(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)),
                    label="bits")
    x = raw.view(NARROW[name])
    roundtrip(x, data.draw(error_bounds(), label="eb"), mode=data.draw(modes(), label="mode"), coder=coder)


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("name", NARROW)
@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
def test_bound_adversarial(kind, name, coder):
    x = adversarial(kind, 2001, NARROW[name], np.random.default_rng(7))
    for eb in (1e-6, 1e-3, 1e-2, 0.3):
        for mode in ("abs", "rel"):
            roundtrip(x, eb, mode=mode, coder=coder)


@pytest.mark.parametrize("name", NARROW)
@pytest.mark.parametrize("eb", [1e-2, 1e-3, 1e-4])
def test_gradient_like_compresses_and_holds(name, eb):
    rng = np.random.default_rng(3)
    x = (rng.laplace(size=(64, 32, 3, 3)) * 10.0 ** rng.uniform(-4, -1, (64, 1, 1, 1))).astype(NARROW[name])
    blob, y, info = roundtrip(x, eb)
    assert info["dtype"] == name and y.dtype == NARROW[name]
    if eb >= 1e-3:
        assert len(blob) < x.nbytes / 1.5, (name, eb, x.nbytes / len(blob))


@pytest.mark.parametrize("name", NARROW)
def test_non_contiguous_views_and_out(name):
    base = np.random.default_rng(4).standard_normal((40, 30)).astype(NARROW[name])
    x = base[::-2, ::3].T
    blob, y, _ = roundtrip(x, 1e-3)
    out = np.empty(x.shape, NARROW[name])
    assert ebgc.decompress(blob, out=out) is out
    np.testing.assert_array_equal(bits(out), bits(y))
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.decompress(blob, out=np.empty(x.shape, np.float32))
    other = "bfloat16" if name == "float16" else "float16"
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.decompress(blob, out=np.empty(x.shape, NARROW[other]))


def test_core_rejects_mislabelled_buffers():
    x = np.zeros(8, np.float32)
    with pytest.raises(TypeError):
        _core.compress(x, "bfloat16", 1e-2, 1, -1, 1)  # 4-byte items are not bfloat16
    with pytest.raises(TypeError):
        _core.compress(x, "float64", 1e-2, 1, -1, 1)  # nor float64
    with pytest.raises(ebgc.InvalidArgumentError):
        _core.compress(x, "int8", 1e-2, 1, -1, 1)
    with pytest.raises(ebgc.InvalidArgumentError):  # explicitly big-endian bytes
        _core.compress(memoryview(x.astype(">f4")), "float32", 1e-2, 1, -1, 1)
    blob = _core.inspect(ebgc.compress(np.zeros(8, np.float16), 1e-2))
    with pytest.raises(ebgc.InvalidArgumentError):  # a bfloat16 view cannot receive a float16 blob
        _core.decompress_into(blob, np.zeros(8, np.uint16), 1, dtype="bfloat16")
