"""Shared helpers and Hypothesis profiles for the ebgc test suite.

The one property every test leans on is `assert_within_bound`: it checks a reconstruction against
its input with the semantics of the contract, and it recomputes the absolute bound from the input
independently of what the blob claims, so a blob that promises a looser bound than the one asked
for fails as surely as a value outside the bound.

Hypothesis profiles: "ci" (default), "dev" (quick), "thorough" (slow, for local bug hunting).
Pick one with HYPOTHESIS_PROFILE=<name>.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import ebgc

# --------------------------------------------------------------------------------------------------
# Hypothesis profiles
# --------------------------------------------------------------------------------------------------

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# --------------------------------------------------------------------------------------------------
# Constants shared by the test modules
# --------------------------------------------------------------------------------------------------

CODERS = ("auto", "huffman", "context", "bitpack", "raw")
CONCRETE_CODERS = ("huffman", "context", "bitpack", "raw")
MODES = ("abs", "rel")
DTYPES = (np.float32, np.float64)

_UINT_OF_SIZE = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bit patterns of a float array (same shape, C order)."""
    a = np.ascontiguousarray(a)
    return a.view(_UINT_OF_SIZE[a.dtype.itemsize])


def expected_abs_bound(x: np.ndarray, mode: str, error_bound: float) -> float:
    """The absolute bound the contract promises for input x, computed independently of ebgc.

    abs: error_bound.  rel: float(error_bound) * (float(max) - float(min)) over the finite values of x,
    in float64 (it may overflow to +inf, which is then the promised bound); 0 when x has no finite
    value or max == min.
    """
    if mode == "abs":
        return float(error_bound)
    assert mode == "rel", mode
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        return 0.0
    return float(error_bound) * (hi - lo)


def assert_within_bound(x, y, blob, *, nan_payload: bool = True) -> dict:
    """Assert that y (the decompressed array) reconstructs x (the original input) within the bound.

    * shape and dtype of y are those of x; y is C-contiguous;
    * info(blob)["abs_bound"] equals the bound recomputed from x, mode and error_bound;
    * NaN -> NaN (same bits when nan_payload), +-Inf -> the same infinity;
    * every finite x: |y - x| <= abs_bound, measured in float64;
    * abs_bound == 0: y is bitwise x everywhere (sign of zero included) except NaN payloads.

    Returns the info dict for further checks.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    info = ebgc.info(blob)
    assert y.shape == x.shape, (y.shape, x.shape)
    assert y.dtype == x.dtype, (y.dtype, x.dtype)
    assert y.flags.c_contiguous
    assert tuple(info["shape"]) == x.shape
    assert info["dtype"] == x.dtype.name

    bound = info["abs_bound"]
    want = expected_abs_bound(x, info["mode"], info["error_bound"])
    assert bound == want, f"blob claims abs_bound={bound!r}, contract says {want!r}"
    if info["mode"] == "abs":
        assert bound == info["error_bound"]

    xf = np.ascontiguousarray(x).reshape(-1)
    yf = np.ascontiguousarray(y).reshape(-1)

    with np.errstate(invalid="ignore"):  # bfloat16 (ml_dtypes) warns on signalling NaN patterns
        nan, ynan = np.isnan(xf), np.isnan(yf)
    bad = np.flatnonzero(nan & ~ynan)
    assert bad.size == 0, f"NaN not restored at flat indices {bad[:10]}: got {yf[bad[:10]]}"
    if nan_payload:
        bad = np.flatnonzero(nan & (bits(xf) != bits(yf)))
        assert bad.size == 0, (
            f"NaN payload changed at flat indices {bad[:10]}: "
            f"{[hex(int(v)) for v in bits(xf)[bad[:10]]]} -> {[hex(int(v)) for v in bits(yf)[bad[:10]]]}"
        )

    with np.errstate(invalid="ignore"):
        inf = np.isinf(xf)
        bad = np.flatnonzero(inf & (yf != xf))
    assert bad.size == 0, f"Inf not restored at flat indices {bad[:10]}: {xf[bad[:10]]} -> {yf[bad[:10]]}"

    fin = ~(nan | inf)
    x64 = xf[fin].astype(np.float64)
    y64 = yf[fin].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(y64 - x64)
    ok = err <= bound  # False for NaN errors
    if not ok.all():
        idx = np.flatnonzero(fin)[~ok]
        j = np.flatnonzero(~ok)[:10]
        raise AssertionError(
            f"bound violated at {idx.size} element(s), abs_bound={bound!r}: "
            f"flat idx {idx[:10]}, x={xf[idx[:10]]!r}, y={yf[idx[:10]]!r}, err={err[j]!r}"
        )

    if bound == 0:
        same = bits(xf) == bits(yf)
        bad = np.flatnonzero(~nan & ~same)
        assert bad.size == 0, f"abs_bound == 0 but not bit-exact at flat indices {bad[:10]}"
    return info


def roundtrip(x, error_bound, *, mode="rel", coder="auto", threads=None):
    """compress + decompress + assert_within_bound; returns (blob, y, info)."""
    x = np.asarray(x)
    blob = ebgc.compress(x, error_bound, mode=mode, coder=coder, threads=threads)
    assert isinstance(blob, bytes)
    y = ebgc.decompress(blob, threads=threads)
    assert isinstance(y, np.ndarray)
    info = assert_within_bound(x, y, blob)
    # an explicit coder is honoured, except that an empty tensor has nothing to code
    assert coder == "auto" or info["coder"] == coder, (coder, info["coder"])
    assert info["coder"] in CONCRETE_CODERS
    assert info["nbytes"] == len(blob)
    return blob, y, info


def pytest_collection_modifyitems(config, items):
    """Tests marked @pytest.mark.cuda run only where ebgc found a CUDA device."""
    if ebgc.HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="no CUDA device (ebgc.HAS_CUDA is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
