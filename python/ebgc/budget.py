"""Byte budgets: the loosest bound a message or blob needs to fit a size, found by encoding.

The size of an encoding falls about linearly in the log of the bound (each halving of the bound
costs about a bit per coded value), so the search interpolates log(size) against log(bound)
between a bound that is over the budget and one that fits (regula falsi), and stops once a fit
is within a few percent of the budget. It needs 2-4 encodings on the shared traces.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, Tuple, TypeVar

from .errors import InvalidArgumentError

T = TypeVar("T")

DEFAULT_MAX_SCALE = 64.0  # without max_error_bound, the bound may grow this much
_CLOSE_ENOUGH = 0.97      # a fit this close to the budget ends the search
_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Fit(Generic[T]):
    payload: T
    scale: float          # the bound used / the bound asked for
    nbytes: int
    within_budget: bool   # False: even the loosest bound allowed is over the budget
    attempts: int         # encodings it took


def check_budget(budget_bytes: Any, error_bound: float, max_error_bound: Any) -> Tuple[Optional[int], float]:
    """(budget, largest scale of the bound) of a user's budget_bytes / max_error_bound."""
    if budget_bytes is None:
        if max_error_bound is not None:
            raise InvalidArgumentError("max_error_bound needs budget_bytes")
        return None, 1.0
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, numbers.Integral) or budget_bytes < 1:
        raise InvalidArgumentError(f"budget_bytes must be None or an integer >= 1, not {budget_bytes!r}")
    if max_error_bound is None:
        return int(budget_bytes), DEFAULT_MAX_SCALE
    if isinstance(max_error_bound, bool) or not isinstance(max_error_bound, numbers.Real) or \
            not math.isfinite(max_error_bound) or max_error_bound < error_bound:
        raise InvalidArgumentError(f"max_error_bound must be a finite number >= error_bound, not {max_error_bound!r}")
    return int(budget_bytes), float(max_error_bound) / error_bound


def fit(encode_at: Callable[[float], Tuple[int, T]], budget: Optional[int], max_scale: float) -> Fit[T]:
    """The encoding at the smallest scale of the bound (1..max_scale) whose size fits `budget`;
    encode_at(scale) -> (size, payload). Without a budget: scale 1."""
    size, payload = encode_at(1.0)
    if budget is None or size <= budget:
        return Fit(payload, 1.0, size, True, 1)
    if max_scale <= 1.0:
        return Fit(payload, 1.0, size, False, 1)
    hi_size, hi_payload = encode_at(max_scale)
    attempts = 2
    if hi_size > budget:
        return Fit(hi_payload, max_scale, hi_size, False, attempts)
    lo, lo_size, hi = 1.0, size, max_scale  # lo is over the budget, hi fits
    best = Fit(hi_payload, hi, hi_size, True, attempts)
    target = math.log(budget * (1 + _CLOSE_ENOUGH) / 2)
    while attempts < _MAX_ATTEMPTS and best.nbytes < _CLOSE_ENOUGH * budget:
        span = math.log(lo_size) - math.log(hi_size)
        t = (math.log(lo_size) - target) / span if span > 0 else 0.5
        t = min(max(t, 0.1), 0.9)  # keep inside the bracket, so it always shrinks
        scale = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        size, payload = encode_at(scale)
        attempts += 1
        if size <= budget:
            hi, hi_size = scale, size
            best = Fit(payload, scale, size, True, attempts)
        else:
            lo, lo_size = scale, size
    return Fit(best.payload, best.scale, best.nbytes, True, attempts)
