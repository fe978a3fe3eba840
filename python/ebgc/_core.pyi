"""Type stub of ebgc._core, the native core (csrc/bind.cpp). Use the wrappers in ebgc.api."""
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

VOCABULARY: dict[str, Any]
FORMAT_VERSION: int
DEFAULT_CHUNK_LOG2: int
GRID_CHUNK_LOG2: int

class Blob:
    """A blob parsed and validated by inspect(); decoders take it instead of bytes."""

    shape: tuple[int, ...]
    dtype: str
    size: int
    output_nbytes: int
    predictor_terms: int
    def info(self) -> dict[str, Any]: ...

def default_threads() -> int: ...
def validate_params(error_bound: float, mode: int, coder: int, low_rank: bool = True,
                    chunk_log2: int = ...) -> None: ...
def compress(
    data: Any,
    dtype: str,
    error_bound: float,
    mode: int,
    coder: int,
    threads: int,
    chunk_log2: int = ...,
    low_rank: bool = True,
    previous: Any = None,
    previous2: Any = None,
    reconstruction: Any = None,
) -> bytes:
    """Compress a float buffer of dtype `dtype` (any strides); mode and coder are ids of VOCABULARY."""
def inspect(blob: Any, verify_checksum: bool = True, max_output: int = 0, for_decoding: bool = True,
            threads: int = 1) -> Blob: ...
def decompress_into(blob: Blob, out: Any, threads: int, previous: Any = None, previous2: Any = None,
                    dtype: str = "") -> None:
    """Decode an inspected Blob into a C-contiguous writable buffer of its dtype and size."""
def crc32c(data: Any, seed: int = 0) -> int: ...
def _compress_where_device(coder: int, shape: Sequence[int] = ..., low_rank: bool = True) -> str: ...
def _grid_compress(data: Any, dtype: str, error_bound: float, mode: int, coder: int, previous: Any = None,
                   previous2: Any = None, reconstruction: Any = None) -> bytes:
    """The device codec's encoder run on the host, lane by lane (test hook)."""
def _grid_decompress_into(blob: Blob, out: Any, previous: Any = None, previous2: Any = None,
                          dtype: str = "") -> None: ...
def _grid_bitpack_compress(data: Any, dtype: str, error_bound: float, mode: int, previous: Any = None,
                           previous2: Any = None, reconstruction: Any = None) -> bytes: ...
def _grid_bitpack_decompress_into(blob: Blob, out: Any, dtype: str = "", previous: Any = None,
                                  previous2: Any = None) -> None: ...
def _crc32c_by_parts(data: Any, seed: int = 0, part_bytes: int = 16384, terms: bool = False) -> int: ...
def _decompress_where_device(blob: Blob) -> str: ...
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
