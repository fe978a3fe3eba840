"""The sacred property: every reconstructed value lies within the promised bound.

NaN stays NaN (same bits), +-Inf stays the same infinity, every finite value moves by at most
abs_bound (abs: error_bound; rel: error_bound * (max - min) of the finite values, in float64), and a
zero bound means a bit-exact reconstruction.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc
from conftest import CODERS, DTYPES, assert_within_bound, roundtrip
from strategies import (
    ADVERSARIAL_KINDS,
    adversarial,
    all_views,
    error_bounds,
    float_arrays,
    gradient_like,
    modes,
    views_of,
)

DT_IDS = ["f32", "f64"]


# --------------------------------------------------------------------------------------------------
# Hypothesis: arbitrary floats, arbitrary shapes (0-D .. 4-D), every coder, both modes
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@given(data=st.data())
def test_bound_arbitrary_arrays(dtype, coder, data):
    x = data.draw(float_arrays(dtype), label="x")
    eb = data.draw(error_bounds(), label="error_bound")
    mode = data.draw(modes(), label="mode")
    roundtrip(x, eb, mode=mode, coder=coder)


def _rel_bound_reference(x, eb):
    """REL's absolute bound as the format defines it: eb x (max - min) over the finite values, in
    double, +0 for a zero range or no finite value."""
    with np.errstate(invalid="ignore"):  # ml_dtypes raise 'invalid' on a bfloat16 signaling NaN
        finite = x[np.isfinite(x)].astype(np.float64)
    if finite.size == 0:
        return 0.0
    b = eb * (float(finite.max()) - float(finite.min()))
    return 0.0 if b == 0 else b


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16],
                         ids=["f32", "f64", "f16", "bf16"])
@given(data=st.data())
def test_rel_range_skips_only_non_finite_values(dtype, data):
    """The finite range (a vectorized reduction over the values' order keys) against numpy, on
    arbitrary bit patterns: NaN payloads, +-Inf, signed zeros, subnormals, extremes. Sizes past
    a chunk (2^16 values) exercise the per-chunk ranges and their merge."""
    x = data.draw(float_arrays(dtype, max_dims=2, max_side=40), label="x")
    if data.draw(st.booleans(), label="large"):
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        big = rng.standard_normal(70001).astype(dtype)
        picks = x.ravel()
        if picks.size:
            big[rng.integers(0, big.size, size=picks.size)] = picks
        x = big
    eb = data.draw(error_bounds(), label="error_bound")
    blob = ebgc.compress(x, eb, mode="rel", coder="bitpack")
    assert ebgc.info(blob)["abs_bound"] == _rel_bound_reference(x, eb)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@given(data=st.data())
def test_bound_non_contiguous_views(dtype, data):
    base = data.draw(float_arrays(dtype, min_dims=1, max_dims=4, max_side=7), label="base")
    name, view = data.draw(views_of(base.ndim), label="view")
    x = view(base)
    eb = data.draw(error_bounds(), label="error_bound")
    mode = data.draw(modes(), label="mode")
    coder = data.draw(st.sampled_from(CODERS), label="coder")
    before = base.copy()
    blob, y, _ = roundtrip(x, eb, mode=mode, coder=coder)
    np.testing.assert_array_equal(base.view(np.uint8), before.view(np.uint8))  # input untouched
    # The view's values are what is compressed: a C-contiguous copy reconstructs identically.
    blob_c = ebgc.compress(np.ascontiguousarray(x), eb, mode=mode, coder=coder)
    y_c = ebgc.decompress(blob_c)
    np.testing.assert_array_equal(y.view(np.uint8), y_c.view(np.uint8))


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@given(
    kind=st.sampled_from(ADVERSARIAL_KINDS),
    n=st.sampled_from([1, 2, 3, 31, 32, 33, 63, 65, 255, 257, 1023, 1025, 4095, 4097])
    | st.integers(0, 5000),
    seed=st.integers(0, 2**32 - 1),
    eb=error_bounds(),
    mode=modes(),
)
def test_bound_adversarial_mixes(dtype, coder, kind, n, seed, eb, mode):
    x = adversarial(kind, n, dtype, np.random.default_rng(seed))
    roundtrip(x, eb, mode=mode, coder=coder)


# --------------------------------------------------------------------------------------------------
# Deterministic: every adversarial kind x coder x mode x dtype at a few fixed bounds
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["abs", "rel"])
@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
def test_bound_adversarial_fixed(kind, dtype, coder, mode):
    rng = np.random.default_rng(12345)
    x = adversarial(kind, 3001, dtype, rng)
    for eb in (1e-8, 1e-5, 1e-3, 1e-1, 1e3):
        roundtrip(x, eb, mode=mode, coder=coder)


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n", [0, 1, 2, 31, 33, 1023, 65535, 65536, 65537, 100003, 131073])
def test_bound_odd_sizes(n, dtype, coder):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, size=n)).astype(dtype)
    roundtrip(x, 1e-3, mode="rel", coder=coder)
    roundtrip(x, 1e-4, mode="abs", coder=coder)


@pytest.mark.parametrize("mode", ["abs", "rel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("exponent", range(-8, 4))
def test_bound_every_decade(exponent, dtype, mode):
    rng = np.random.default_rng(exponent + 100)
    x = (rng.standard_normal(5000) * 10.0 ** rng.uniform(-10, 10, size=5000)).astype(dtype)
    for coder in CODERS:
        roundtrip(x, 10.0**exponent, mode=mode, coder=coder)
        roundtrip(x, 3.7 * 10.0**exponent, mode=mode, coder=coder)


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_bound_every_view(ndim, dtype, coder):
    rng = np.random.default_rng(ndim)
    shape = (7, 6, 5, 4)[:ndim]
    base = adversarial("nan_inf_sprinkled", int(np.prod(shape)), dtype, rng).reshape(shape)
    for name, view in all_views(ndim):
        x = view(base)
        for mode in ("abs", "rel"):
            roundtrip(x, 1e-2, mode=mode, coder=coder)


# --------------------------------------------------------------------------------------------------
# Exactness: a zero absolute bound (rel mode with no finite range) must be bit-exact
# --------------------------------------------------------------------------------------------------

EXACT_CASES = {
    "constant": lambda dt: np.full(1000, 3.14159, dt),
    "constant_neg_zero": lambda dt: np.full(100, -0.0, dt),
    "constant_denormal": lambda dt: np.full(50, np.finfo(dt).smallest_subnormal, dt),
    "constant_max": lambda dt: np.full(33, np.finfo(dt).max, dt),
    "constant_with_nan_inf": lambda dt: np.array([2.5, np.nan, 2.5, np.inf, -np.inf, 2.5], dt),
    "all_nan": lambda dt: np.full(10, np.nan, dt),
    "all_inf": lambda dt: np.array([np.inf, -np.inf, np.inf], dt),
    "one_element": lambda dt: np.array([1.2345e-7], dt),
    "zero_d": lambda dt: np.array(-42.125, dt),
    "empty": lambda dt: np.zeros(0, dt),
    "zeros_mixed_sign": lambda dt: np.array([0.0, -0.0, 0.0, -0.0], dt),
}


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", sorted(EXACT_CASES))
def test_rel_zero_range_is_exact(case, dtype, coder):
    x = EXACT_CASES[case](dtype)
    for eb in (1e-8, 1e-2, 1.0, 1e3):
        blob, y, info = roundtrip(x, eb, mode="rel", coder=coder)
        assert info["abs_bound"] == 0.0  # assert_within_bound then demanded bit-exactness


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nonfinite_never_enter_the_range(dtype, coder):
    # rel range is over finite values only: 1e30 next to NaN/Inf must not inflate or poison it
    x = np.array([0.0, 1.0, np.nan, np.inf, -np.inf, 0.5, 0.25], dtype)
    blob, y, info = roundtrip(x, 1e-3, mode="rel", coder=coder)
    assert info["abs_bound"] == 1e-3


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nan_payloads_preserved(dtype, coder):
    x = adversarial("nan_payloads", 2000, dtype, np.random.default_rng(7))
    for mode, eb in (("rel", 1e-2), ("abs", 1e-3), ("abs", 1e3)):
        roundtrip(x, eb, mode=mode, coder=coder)


@pytest.mark.parametrize("coder", CODERS)
def test_float64_range_overflow(coder):
    # max - min overflows float64 to +inf: the promised bound is +inf (contract formula); values,
    # NaN and Inf must still come back sane.
    x = np.array([1e308, -1e308, 0.0, 1.0, np.nan, np.inf, 5e-324], np.float64)
    blob, y, info = roundtrip(x, 1e-3, mode="rel", coder=coder)
    assert info["abs_bound"] == float("inf")
    assert np.isfinite(y[[0, 1, 2, 3, 6]]).all()


@pytest.mark.parametrize("coder", CODERS)
def test_float32_near_max_no_overflow(coder):
    # a huge relative bound on float32 extremes: reconstructions must not overflow to +-inf
    x = np.array([3e38, -3e38, 3.4e38, -3.4e38, 0.0, 1.0, 1e-45], np.float32)
    for eb in (0.1, 0.5, 1.0, 1e3):
        roundtrip(x, eb, mode="rel", coder=coder)
        roundtrip(x, eb * 1e38, mode="abs", coder=coder)


# --------------------------------------------------------------------------------------------------
# Realistic gradient
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("eb", [1e-2, 1e-3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_gradient_like(dtype, eb, coder):
    x = gradient_like((200, 1000), dtype, seed=3)
    blob, y, info = roundtrip(x, eb, mode="rel", coder=coder)
    assert info["raw_nbytes"] == x.nbytes
    if coder == "raw":
        return
    assert len(blob) < x.nbytes  # every entropy coder beats raw storage on this input


def test_gradient_like_ratio_auto():
    x = gradient_like((200, 1000), np.float32, seed=3)
    blob, y, info = roundtrip(x, 1e-2, mode="rel", coder="auto")
    ratio = x.nbytes / len(blob)
    assert ratio > 3, f"compression ratio {ratio:.2f} <= 3 at rel 1e-2"


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("eb", [1e-2, 1e-3])
def test_auto_is_smallest(dtype, eb):
    x = gradient_like((100, 500), dtype, seed=11)
    auto = ebgc.compress(x, eb, mode="rel", coder="auto")
    sizes = {c: len(ebgc.compress(x, eb, mode="rel", coder=c)) for c in CODERS if c != "auto"}
    assert len(auto) <= min(sizes.values()), (len(auto), sizes)
    assert_within_bound(x, ebgc.decompress(auto), auto)
