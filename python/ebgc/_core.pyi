"""Type stub of ebgc._core, the native core (csrc/bind.cpp). Use the wrappers in ebgc.api."""
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

FORMAT_VERSION: int
DEFAULT_CHUNK_LOG2: int

def default_threads() -> int: ...
def compress(
    data: Any,
    shape: Sequence[int],
    error_bound: float,
    mode: int,
    coder: int,
    threads: int,
    chunk_log2: int = ...,
    previous: Any = None,
    reconstruction: Any = None,
    previous2: Any = None,
    as_dtype: str = "",
    low_rank: bool = True,
) -> bytes:
    """Compress a C-contiguous float32/float64 buffer; mode 0=abs 1=rel; coder -1=auto,
    0=raw, 1=bitpack, 2=huffman, 3=context."""
def decompress_into(blob: Any, out: Any, threads: int, previous: Any = None, previous2: Any = None,
                    as_dtype: str = "", verify_checksum: bool = True) -> None:
    """Decode a blob into a C-contiguous writable float buffer of the right size and dtype."""
def crc32c(data: Any, seed: int = 0) -> int: ...
def header(blob: Any) -> dict[str, Any]:
    """Validate a blob (checksum and payload structure) and return its header."""
def huffman_encode(symbols: npt.ArrayLike, alphabet_size: int) -> bytes: ...
def huffman_decode(data: Any, count: int) -> npt.NDArray[np.uint16]: ...
def bitpack_encode(values: npt.ArrayLike) -> bytes: ...
def bitpack_decode(data: Any, count: int) -> npt.NDArray[np.uint32]: ...
def context_encode(codes: npt.ArrayLike, sign_period: int = 1) -> bytes: ...
def context_decode(data: Any, count: int) -> npt.NDArray[np.int32]: ...
def _vector_paths(enable: Optional[bool] = None) -> bool: ...
def _rans_encode_step(x: npt.ArrayLike, freq: npt.ArrayLike, start: npt.ArrayLike) -> npt.NDArray[np.uint32]: ...
def quantize(x: Any, abs_bound: float) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint64]]: ...
def dequantize(codes: npt.ArrayLike, abs_bound: float, dtype: str) -> npt.NDArray[np.floating]: ...
def narrow_bits(x: npt.ArrayLike, dtype: str) -> npt.NDArray[np.uint16]:
    """float64 values rounded to nearest even float16/bfloat16, as their 16 bits."""
def widen_bits(bits: npt.ArrayLike, dtype: str) -> npt.NDArray[np.float64]:
    """float16/bfloat16 bits as float64 (exact)."""
