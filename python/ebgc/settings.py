"""How to code tensors: the user's error bound, mode, coder, low-rank switch and threads, checked
once when they are given (by the native core's own validation) so that a bad setting fails where
it was written, not at the first tensor."""
from __future__ import annotations

import dataclasses
import functools
import numbers
from dataclasses import dataclass
from typing import Any, Optional

from . import _core
from .errors import InvalidArgumentError
from .vocabulary import CODERS, MODES, choice


def threads_of(threads: Optional[int]) -> int:
    """Worker threads: None means every core."""
    if threads is None:
        return int(_core.default_threads())
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise InvalidArgumentError(f"threads must be None or an integer >= 1, not {threads!r}")
    return int(threads)


def max_output_of(max_output: Optional[int]) -> int:
    """A decoder's output limit in bytes (None: no limit, sent to the core as 0)."""
    if max_output is None:
        return 0
    if isinstance(max_output, bool) or not isinstance(max_output, numbers.Integral) or max_output < 1:
        raise InvalidArgumentError(f"max_output must be None or a number of bytes >= 1, not {max_output!r}")
    return int(max_output)


@dataclass(frozen=True)
class Settings:
    error_bound: float
    mode: str
    coder: str
    low_rank: bool
    threads: int

    @property
    def mode_id(self) -> int:
        return MODES[self.mode]

    @property
    def coder_id(self) -> int:
        return CODERS[self.coder]

    def scaled(self, scale: float) -> "Settings":
        """The same settings with the bound times `scale` (a byte budget's looser bound)."""
        return self if scale == 1.0 else dataclasses.replace(self, error_bound=self.error_bound * scale)

    @classmethod
    def make(cls, error_bound: Any, mode: Any = "rel", coder: Any = "auto", low_rank: Any = True,
             threads: Optional[int] = None) -> "Settings":
        """Checked settings; the same arguments give the same (immutable) object, so a call per
        tensor costs a lookup."""
        try:
            return _make(error_bound, mode, coder, bool(low_rank), threads)
        except TypeError:  # unhashable arguments: checked below, uncached
            return _make.__wrapped__(error_bound, mode, coder, bool(low_rank), threads)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True must not pass for 1
def _make(error_bound: Any, mode: Any, coder: Any, low_rank: bool, threads: Optional[int]) -> Settings:
    if isinstance(error_bound, bool) or not isinstance(error_bound, numbers.Real):
        raise InvalidArgumentError(f"error_bound must be a number, not {type(error_bound).__name__}")
    mode_id, coder_id = choice(mode, MODES, "mode"), choice(coder, CODERS, "coder")
    eb = float(error_bound)
    _core.validate_params(eb, mode_id, coder_id, low_rank)
    return Settings(eb, mode.lower(), coder.lower(), low_rank, threads_of(threads))
