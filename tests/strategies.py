"""Hypothesis strategies and deterministic adversarial inputs shared by the test modules."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MODES = ("abs", "rel")


def special_values(dtype) -> list[float]:
    """Values that break naive quantizers: extremes, denormals, signed zeros, non-finite values."""
    fi = np.finfo(dtype)
    big = 3e38 if np.dtype(dtype) == np.float32 else 1e308
    sub = float(fi.smallest_subnormal)
    return [
        0.0, -0.0, 1.0, -1.0,
        float("nan"), float("inf"), float("-inf"),
        big, -big, float(fi.max), -float(fi.max),
        float(fi.tiny), -float(fi.tiny), sub, -sub, 3 * sub, float(fi.tiny) - sub,
        1e-30, -1e-30, 1e30, -1e30,
        float(fi.eps), 1.0 + float(fi.eps),
    ]


def elements(dtype):
    """Any float of the dtype's width (NaN, Inf, subnormals included), mixed with special values."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    return st.one_of(
        st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from(special_values(dtype)),
        # mixed scales: 1e-30 next to 1e30
        st.builds(lambda m, e: m * 10.0**e, st.floats(-10, 10, width=width), st.integers(-30, 30)),
    )


def float_arrays(dtype, *, max_dims=4, max_side=6, min_dims=0):
    """Arrays of any float dtype. 16-bit dtypes (float16, bfloat16) are drawn as arbitrary bit
    patterns, which reach every NaN payload, Inf, subnormal and extreme of the format."""
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)
    if np.dtype(dtype).itemsize == 2:
        return hnp.arrays(np.uint16, shapes).map(lambda raw: raw.view(dtype))
    return hnp.arrays(np.dtype(dtype), shapes, elements=elements(dtype))


def error_bounds():
    """Bounds spread over the decades 1e-8 .. 1e3 (mantissa in [1, 10))."""
    return st.builds(
        lambda m, e: float(m * 10.0**e),
        st.floats(1.0, 9.99),
        st.integers(-8, 2),
    ) | st.sampled_from([1e-8, 1e-3, 1e-2, 0.5, 1.0, 1e3])


def modes():
    return st.sampled_from(MODES)


# --------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------

def _views_for(ndim: int):
    v = [("identity", lambda a: a)]
    if ndim >= 1:
        v += [
            ("step2", lambda a: a[::2]),
            ("reversed", lambda a: a[::-1]),
            ("last_step3", lambda a: a[..., ::3]),
            ("last_reversed", lambda a: a[..., ::-1]),
            ("offset", lambda a: a[1:]),
        ]
    if ndim >= 2:
        v += [
            ("transpose", lambda a: a.T),
            ("cols_step3", lambda a: a[:, ::3]),
            ("swap01", lambda a: np.swapaxes(a, 0, 1)),
            ("rev_T", lambda a: a[::-1, ::2].T),
        ]
    if ndim >= 3:
        v += [("moveaxis", lambda a: np.moveaxis(a, -1, 0)[:, ::2])]
    return v


def views_of(ndim: int):
    return st.sampled_from(_views_for(ndim))


def all_views(ndim: int):
    return _views_for(ndim)


# --------------------------------------------------------------------------------------------------
# Deterministic adversarial inputs
# --------------------------------------------------------------------------------------------------

ADVERSARIAL_KINDS = (
    "gaussian",
    "laplace_rows",
    "mixed_scales",
    "denormals",
    "extremes",
    "extremes_and_small",
    "constant",
    "constant_with_nan",
    "all_nan",
    "all_inf",
    "nan_inf_sprinkled",
    "big_offset_small_noise",
    "integers",
    "signed_zeros",
    "half_steps",
    "sparse",
    "nan_payloads",
    "tiny_range",
    "huge_offset_f64",
)


def adversarial(kind: str, n: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """A 1-D array of n values of the given kind (deterministic for a given rng state). 16-bit
    dtypes get the float32 array rounded to them (overflow to Inf is part of the test)."""
    dt = np.dtype(dtype)
    if dt.itemsize == 2:
        with np.errstate(over="ignore", invalid="ignore"):
            return adversarial(kind, n, np.float32, rng).astype(dt)
    fi = np.finfo(dt)
    big = 3e38 if dt == np.float32 else 1e308
    if kind == "gaussian":
        x = rng.standard_normal(n)
    elif kind == "laplace_rows":
        rows = max(1, n // 64)
        scales = 10.0 ** rng.uniform(-6, 0, size=rows)
        x = rng.laplace(size=n) * np.repeat(scales, -(-n // rows))[:n]
    elif kind == "mixed_scales":
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 31, size=n)
    elif kind == "denormals":
        k = rng.integers(-50, 50, size=n)
        x = (k * float(fi.smallest_subnormal)).astype(dt)
    elif kind == "extremes":
        x = rng.choice([big, -big, float(fi.max), -float(fi.max), 0.0], size=n)
    elif kind == "extremes_and_small":
        x = rng.standard_normal(n)
        x[rng.random(n) < 0.1] = big
        x[rng.random(n) < 0.1] = -big
        x[rng.random(n) < 0.05] = float(fi.smallest_subnormal)
    elif kind == "constant":
        x = np.full(n, 0.123456789)
    elif kind == "constant_with_nan":
        x = np.full(n, -7.25)
        x[rng.random(n) < 0.2] = np.nan
        x[rng.random(n) < 0.1] = np.inf
    elif kind == "all_nan":
        x = np.full(n, np.nan)
    elif kind == "all_inf":
        x = rng.choice([np.inf, -np.inf], size=n)
    elif kind == "nan_inf_sprinkled":
        x = rng.standard_normal(n)
        r = rng.random(n)
        x[r < 0.03] = np.nan
        x[(r >= 0.03) & (r < 0.06)] = np.inf
        x[(r >= 0.06) & (r < 0.09)] = -np.inf
    elif kind == "big_offset_small_noise":
        # large magnitude, tiny spread: the float grid of the dtype is coarse relative to the bound
        x = 1e6 + rng.standard_normal(n) * 1e-3
    elif kind == "integers":
        x = rng.integers(-1000, 1000, size=n).astype(np.float64)
    elif kind == "signed_zeros":
        x = rng.choice([0.0, -0.0], size=n)
        if n:
            x[0] = 1.0  # give the range a width so the rel bound is not 0
    elif kind == "half_steps":
        # values lying exactly on quantization-bin edges for a bound of 1e-3 (step 2e-3)
        x = (rng.integers(-10000, 10000, size=n) + 0.5) * 2e-3
    elif kind == "sparse":
        x = np.zeros(n)
        m = rng.random(n) < 0.01
        x[m] = rng.standard_normal(int(m.sum()))
    elif kind == "nan_payloads":
        x = rng.standard_normal(n).astype(dt)
        u = x.view(np.uint32 if dt == np.float32 else np.uint64)
        if dt == np.float32:
            payloads = np.array([0x7FC00001, 0xFFC12345, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF], np.uint32)
        else:
            payloads = np.array(
                [0x7FF8000000000001, 0xFFF8123456789ABC, 0x7FF0000000000001, 0x7FF7FFFFFFFFFFFF,
                 0xFFFFFFFFFFFFFFFF], np.uint64)
        idx = rng.random(n) < 0.05
        u[idx] = rng.choice(payloads, size=int(idx.sum()))
        return x
    elif kind == "tiny_range":
        # the rel bound becomes tiny (down to subnormal for float64): steps near the underflow
        x = rng.integers(-1000, 1000, size=n) * float(fi.smallest_subnormal) * 7
    elif kind == "huge_offset_f64":
        # |x| ~ 1e15 with a spread ~ 1: the float64 grid (0.125) is coarse relative to small bounds
        x = 1e15 + rng.standard_normal(n)
    else:  # pragma: no cover
        raise ValueError(kind)
    with np.errstate(over="ignore"):
        return np.asarray(x).astype(dt)


def gradient_like(shape=(200, 1000), dtype=np.float32, seed=0) -> np.ndarray:
    """Laplace noise with a per-row scale spread over 4 decades, like a layer's gradient."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-4, 0, size=(shape[0], 1))
    return (rng.laplace(size=shape) * scales).astype(dtype)
