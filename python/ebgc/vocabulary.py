"""The names of the format, taken from the native core's tables (format/vocabulary.hpp), never
copied by hand: modes, coders, dtypes and limits, and the conversion of a user's names to them."""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping

import ml_dtypes
import numpy as np

from . import _core
from .errors import InvalidArgumentError

_V = _core.VOCABULARY

MODES: Dict[str, int] = dict(_V["modes"])
"""Bound modes by name: ``abs`` and ``rel``."""
CODERS: Dict[str, int] = dict(_V["coders"])
"""Coders an encoder may be asked for, by name (``auto`` lets it pick the smallest)."""
CODER_NAMES: Dict[int, str] = dict(_V["decoded_coders"])
"""Every coder id a decoder reads, with its name."""
LIMITS: Dict[str, int] = dict(_V["limits"])
MAX_ELEMENTS: int = LIMITS["max_elements"]

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_NUMPY = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64), "float16": np.dtype(np.float16),
          "bfloat16": BFLOAT16}
DTYPES: Dict[str, np.dtype] = {name: _NUMPY[name] for name in _V["dtypes"]}
"""The numpy dtype of every dtype name the format knows."""
DTYPE_CODES: Dict[str, int] = {name: d["code"] for name, d in _V["dtypes"].items()}
DTYPE_BY_CODE: Dict[int, np.dtype] = {code: DTYPES[name] for name, code in DTYPE_CODES.items()}
SUPPORTED = "float32, float64, float16 or bfloat16"


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of a blob's dtype name (bfloat16 is ml_dtypes')."""
    return DTYPES[name]


@functools.lru_cache(maxsize=64)
def _dtype_name(dt: np.dtype) -> str:
    if dt.byteorder not in ("=", "|") and not dt.isnative:
        return ""
    for name, d in DTYPES.items():
        if dt == d or dt.newbyteorder("=") == d:
            return name
    return ""


def dtype_name(dtype: Any) -> str:
    """The format's name of a numpy dtype ("" if it is not one of the format's), whatever byte
    order numpy spells for a little-endian one."""
    return _dtype_name(np.dtype(dtype))


def choice(value: Any, table: Mapping[str, int], what: str) -> int:
    """The id of a user's name in `table` (case-insensitive: "REL" is "rel")."""
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise InvalidArgumentError(f"unknown {what} {value!r}; expected one of {sorted(table)}")

