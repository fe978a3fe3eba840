"""zarr v3 codec ``EBGCCodec`` (codec name "ebgc"): ebgc as the serializer of a zarr v3 array.

    >>> import zarr
    >>> from ebgc.integrations.zarr import EBGCCodec
    >>> a = zarr.create_array(store={}, shape=(1000, 300), chunks=(256, 128), dtype="float32",
    ...                       serializer=EBGCCodec(error_bound=1e-3), compressors=None, fill_value=float("nan"))

The array's metadata (zarr.json) names it ``{"name": "ebgc", "configuration": {"error_bound": ...,
"mode": ..., "coder": ..., "threads": ...}}``. zarr finds the class through the ``zarr.codecs``
entry point (``ebgc = "ebgc.integrations.zarr:EBGCCodec"``, after ``pip install ebgc[zarr]``), and
importing this module registers it too (``zarr.registry.register_codec``), so a store written with
it opens in any process where either holds.

Why an array-to-bytes codec (a *serializer*, the ``serializer=`` slot, in place of zarr's
``bytes`` codec), not a compressor or a filter:

* ebgc codes typed float values: it needs the chunk's dtype and shape. A bytes-to-bytes codec
  (``compressors=``) gets the ``bytes`` codec's output, raw bytes of no dtype; an array-to-array
  codec (``filters=``) must yield an array whose shape and dtype zarr can tell before encoding
  (``resolve_metadata``), which a variable-length blob is not.
* An ebgc blob is a self-describing byte string (dtype, shape, bound, checksum), which is exactly
  what a serializer produces; zarr's own lossy float codecs (``numcodecs.zfpy``,
  ``numcodecs.pcodec``) sit in the same slot. Compressors may still follow it (rarely worth it:
  the blob is entropy-coded already, and checksummed).

Name: "ebgc", an unprefixed extension name. zarr keeps numcodecs codecs wrapped for v3 under
"numcodecs.<id>" (``zarr.codecs.numcodecs``), so "ebgc" does not clash with them, nor with the
numcodecs codec :class:`ebgc.integrations.numcodecs.EBGC` (codec_id "ebgc" in numcodecs' own
registry), which stays the codec for zarr format 2 arrays (``compressors=EBGC(...)``).

Lossy, with these caveats (zarr's chunking, not ebgc's):

* mode "rel" bounds each *chunk* by ``error_bound x (max - min)`` of that chunk's finite values,
  and zarr pads a partial edge chunk with the array's fill value before encoding it. A fill value
  outside the data's range (the default 0.0 for data far from 0) widens the range of edge chunks
  and so loosens their bound; ``fill_value=float("nan")`` (not finite: it never counts) or a value
  inside the data's range keeps the bound of every chunk that of its own data.
* Writing part of a chunk makes zarr decode the stored (lossy) chunk, merge, and encode it again:
  errors of successive partial writes add up. Write whole chunks (or the whole array) at once.
* A chunk whose values all equal the fill value is not stored (zarr's ``write_empty_chunks``).
"""
from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional

import numpy as np

try:
    from zarr.abc.codec import ArrayBytesCodec
    from zarr.core.common import parse_named_configuration
    from zarr.registry import register_codec
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"ebgc.integrations.zarr needs zarr >= 3.1 (pip install 'ebgc[zarr]'): {exc}") from exc

from ..api import compress_with, decompress
from ..errors import FormatError, InvalidArgumentError, OutputLimitError, UnsupportedDTypeError
from ..settings import Settings, max_output_of
from ..vocabulary import SUPPORTED, dtype_name

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.dtype.wrapper import ZDType

__all__ = ["CODEC_NAME", "EBGCCodec"]

CODEC_NAME = "ebgc"
_CONFIG_KEYS = ("error_bound", "mode", "coder", "threads", "max_output")


def _format_dtype(dtype: np.dtype) -> str:
    """The ebgc dtype name of an array's numpy dtype ("" if ebgc cannot code it); big-endian
    floats count (the encoder codes a byte-swapped copy, the decoder swaps back)."""
    return dtype_name(dtype) or (dtype_name(dtype.newbyteorder("=")) if dtype.byteorder == ">" else "")


def _checked_dtype(dtype: np.dtype) -> str:
    name = _format_dtype(dtype)
    if not name:
        raise UnsupportedDTypeError(f"the ebgc zarr codec compresses {SUPPORTED} data, not {dtype}")
    return name


def _json_int(value: Optional[int]) -> Optional[int]:
    return None if value is None else int(value)


@dataclass(frozen=True)
class EBGCCodec(ArrayBytesCodec):
    """Error-bounded lossy zarr v3 serializer for float32/float64/float16 arrays (and bfloat16,
    where a zarr data type maps to ml_dtypes' bfloat16).

    error_bound, mode ("rel": ``error_bound x (max - min)`` of each chunk's finite values; "abs":
    ``error_bound``), coder ("auto", "context", "huffman", "bitpack", "raw") and threads (None: all
    cores, per chunk; zarr codes several chunks at a time) are those of :func:`ebgc.compress`.
    max_output (bytes): refuse to decode a chunk blob that would be larger. Whatever it is, a blob
    that would decode to more than the array's chunk is refused (a cheap guard against hostile
    stores), as is one of another dtype or shape than the chunk's (:class:`ebgc.FormatError`).

    Every setting is checked here (:class:`ebgc.InvalidArgumentError`), so that a bad
    configuration fails where it is written, not at the first chunk.
    """

    is_fixed_size = False

    error_bound: float
    mode: str
    coder: str
    threads: Optional[int]
    max_output: Optional[int]

    def __init__(self, error_bound: float = 1e-3, mode: str = "rel", coder: str = "auto",
                 threads: Optional[int] = None, max_output: Optional[int] = None) -> None:
        settings = Settings.make(error_bound, mode, coder, True, threads)  # refuses bad settings now
        max_output_of(max_output)
        object.__setattr__(self, "error_bound", settings.error_bound)
        object.__setattr__(self, "mode", settings.mode)
        object.__setattr__(self, "coder", settings.coder)
        object.__setattr__(self, "threads", _json_int(threads))
        object.__setattr__(self, "max_output", _json_int(max_output))
        object.__setattr__(self, "_settings", settings)  # not a field: not in eq, hash or the JSON

    # ---- metadata -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Self":
        _, config = parse_named_configuration(data, CODEC_NAME, require_configuration=False)
        config = dict(config or {})
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise InvalidArgumentError(
                f"unknown ebgc codec configuration key(s) {unknown}; expected some of {list(_CONFIG_KEYS)}")
        return cls(**config)

    def to_dict(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"error_bound": self.error_bound, "mode": self.mode, "coder": self.coder,
                                  "threads": self.threads}
        if self.max_output is not None:
            config["max_output"] = self.max_output
        return {"name": CODEC_NAME, "configuration": config}

    def evolve_from_array_spec(self, array_spec: "ArraySpec") -> "Self":
        """Nothing to infer from the array: the configuration is complete as given, and each blob
        carries its own dtype and shape. The dtype is checked here already (an early, clear error
        when the array is made), and again by :meth:`validate`."""
        _checked_dtype(array_spec.dtype.to_native_dtype())
        return self

    def validate(self, *, shape: tuple, dtype: "ZDType[Any, Any]", chunk_grid: "ChunkGrid") -> None:
        """zarr asks when it makes or opens an array: refuse a dtype ebgc does not code."""
        _checked_dtype(dtype.to_native_dtype())

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: "ArraySpec") -> int:
        raise NotImplementedError  # variable-sized output

    # ---- chunks ---------------------------------------------------------------------------------

    def _encode_sync(self, chunk_array: "NDBuffer", chunk_spec: "ArraySpec") -> "Buffer":
        data = chunk_array.as_ndarray_like()  # numpy, or cupy for zarr's GPU buffers (coded on the device)
        _checked_dtype(np.dtype(data.dtype))
        blob = compress_with(data, self._settings)
        return chunk_spec.prototype.buffer.from_bytes(blob)

    def _decode_sync(self, chunk_bytes: "Buffer", chunk_spec: "ArraySpec") -> "NDBuffer":
        want = chunk_spec.dtype.to_native_dtype()
        name = _checked_dtype(want)
        shape = tuple(chunk_spec.shape)
        chunk_nbytes = max(1, math.prod(shape) * want.itemsize)
        limit = chunk_nbytes if self.max_output is None else min(chunk_nbytes, self.max_output)
        blob = chunk_bytes.as_numpy_array().view(np.uint8).reshape(-1)
        try:
            arr = decompress(blob, threads=self._settings.threads, max_output=limit)
        except OutputLimitError as exc:
            if limit < chunk_nbytes:  # the caller's own limit
                raise
            raise OutputLimitError(
                f"ebgc chunk blob is larger than the array's chunk of {shape} {want} ({exc})") from None
        if tuple(arr.shape) != shape or dtype_name(arr.dtype) != name:
            raise FormatError(
                f"ebgc chunk blob holds {tuple(arr.shape)} {arr.dtype} values; the array's chunk is {shape} {want}")
        if arr.dtype != want:  # a big-endian array: back to its byte order
            arr = arr.astype(want)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(arr)

    async def _encode_single(self, chunk_array: "NDBuffer", chunk_spec: "ArraySpec") -> "Buffer":
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)  # the core frees the GIL

    async def _decode_single(self, chunk_bytes: "Buffer", chunk_spec: "ArraySpec") -> "NDBuffer":
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)


register_codec(CODEC_NAME, EBGCCodec)
