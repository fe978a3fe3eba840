"""The test oracle itself: assert_within_bound must reject every kind of wrong reconstruction.

A green suite means little if the checker is lenient; these tests feed it deliberately broken
reconstructions and blobs that lie about their bound.
"""

from __future__ import annotations

import numpy as np
import pytest

import ebgc
from blobfmt import parse
from conftest import assert_within_bound, bits, expected_abs_bound


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def case(request):
    dt = request.param
    x = np.linspace(-2, 2, 64).astype(dt)
    x[5] = np.nan
    x[6] = np.inf
    x[7] = -np.inf
    blob = ebgc.compress(x, 1e-2, mode="rel", coder="huffman")
    y = ebgc.decompress(blob)
    assert_within_bound(x, y, blob)  # the genuine reconstruction passes
    return x, y, blob


def test_rejects_value_outside_bound(case):
    x, y, blob = case
    b = ebgc.info(blob)["abs_bound"]
    y = y.copy()
    y[10] = np.nextafter(x[10] + y.dtype.type(b * 1.01), y.dtype.type(np.inf))
    with pytest.raises(AssertionError, match="bound violated"):
        assert_within_bound(x, y, blob)


def test_rejects_lost_nan(case):
    x, y, blob = case
    y = y.copy()
    y[5] = 0
    with pytest.raises(AssertionError, match="NaN"):
        assert_within_bound(x, y, blob)


def test_rejects_changed_nan_payload(case):
    x, y, blob = case
    y = y.copy()
    u = y.view(np.uint32 if y.dtype == np.float32 else np.uint64)
    u[5] ^= 1  # still a NaN, other payload
    assert np.isnan(y[5])
    with pytest.raises(AssertionError, match="payload"):
        assert_within_bound(x, y, blob)


def test_rejects_changed_infinity(case):
    x, y, blob = case
    y = y.copy()
    y[6] = -np.inf
    with pytest.raises(AssertionError, match="Inf"):
        assert_within_bound(x, y, blob)
    y[6] = np.finfo(y.dtype).max
    with pytest.raises(AssertionError, match="Inf"):
        assert_within_bound(x, y, blob)


def test_rejects_nan_for_finite(case):
    x, y, blob = case
    y = y.copy()
    y[20] = np.nan
    with pytest.raises(AssertionError, match="bound violated"):
        assert_within_bound(x, y, blob)


def test_rejects_wrong_shape_or_dtype(case):
    x, y, blob = case
    with pytest.raises(AssertionError):
        assert_within_bound(x, y.reshape(8, 8), blob)
    with pytest.raises(AssertionError):
        assert_within_bound(x, y.astype(np.float64 if y.dtype == np.float32 else np.float32), blob)


def test_rejects_blob_claiming_a_looser_bound(case):
    x, y, blob = case
    b = parse(blob)
    b.abs_bound *= 2  # rel mode: a lie only the recomputation from x can expose
    liar = b.to_bytes()
    with pytest.raises(AssertionError, match="contract says"):
        assert_within_bound(x, ebgc.decompress(liar), liar)


def test_zero_bound_demands_bit_exactness():
    x = np.full(10, -0.0, np.float32)
    blob = ebgc.compress(x, 1e-3, mode="rel", coder="bitpack")
    y = ebgc.decompress(blob)
    assert_within_bound(x, y, blob)
    y2 = y.copy()
    y2[3] = 0.0  # +0 for -0: |y - x| == 0 but not bit-exact
    with pytest.raises(AssertionError, match="bit-exact"):
        assert_within_bound(x, y2, blob)


def test_expected_abs_bound_formula():
    x = np.array([np.nan, 1.0, -3.0, np.inf], np.float32)
    assert expected_abs_bound(x, "rel", 0.1) == 0.1 * 4.0
    assert expected_abs_bound(x, "abs", 0.1) == 0.1
    assert expected_abs_bound(np.array([np.nan, np.inf]), "rel", 0.1) == 0.0
    assert expected_abs_bound(np.array([2.0, 2.0]), "rel", 0.1) == 0.0
    assert expected_abs_bound(np.zeros(0), "rel", 0.1) == 0.0
    assert expected_abs_bound(np.array([1e308, -1e308]), "rel", 0.5) == float("inf")
    np.testing.assert_array_equal(bits(np.array([1.0], np.float32)), np.array([0x3F800000], np.uint32))
