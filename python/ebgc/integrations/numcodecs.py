"""numcodecs codec ``EBGC`` (codec_id "ebgc"): ebgc inside zarr and anything else that speaks
numcodecs. Registered through the ``numcodecs.codecs`` entry point, so after ``pip install ebgc``
``numcodecs.get_codec({"id": "ebgc", "error_bound": 1e-3})`` finds it without an import.

Each encoded chunk is one self-describing ebgc blob (format v1): dtype and shape travel with it,
and every value comes back within the bound. Lossy: use it as a compressor for float data only.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray_like, ndarray_copy

from ..api import compress_with, decompress
from ..errors import UnsupportedDTypeError
from ..settings import Settings, max_output_of


class EBGC(Codec):
    """Error-bounded lossy codec for float32/float64/float16/bfloat16 arrays.

    error_bound, mode ("rel": error_bound x (max - min) of each chunk; "abs": error_bound),
    coder ("auto", "context", "huffman", "bitpack", "raw") and threads (None: all cores) are those
    of :func:`ebgc.compress`. In rel mode the bound is computed per encoded chunk. max_output
    (bytes): refuse to decode a chunk that would be larger, for stores written by strangers.
    """

    codec_id = "ebgc"

    def __init__(self, error_bound: float = 1e-3, mode: str = "rel", coder: str = "auto",
                 threads: Optional[int] = None, max_output: Optional[int] = None):
        self._settings = Settings.make(error_bound, mode, coder, True, threads)  # refuse bad settings now
        max_output_of(max_output)
        self.error_bound, self.mode, self.coder = self._settings.error_bound, self._settings.mode, self._settings.coder
        self.threads, self.max_output = threads, max_output

    def encode(self, buf: Any) -> bytes:
        arr = np.asarray(ensure_ndarray_like(buf))  # keeps dtype and shape; raw bytes arrive as uint8 and are refused
        if not arr.dtype.isnative:  # blobs decode in native order, which zarr 2 would read as this dtype
            raise UnsupportedDTypeError(f"ebgc stores {arr.dtype.newbyteorder('=')} values; a big-endian "
                                        f"{arr.dtype} chunk would decode to other bytes: use a little-endian dtype")
        return compress_with(arr, self._settings)

    def decode(self, buf: Any, out: Any = None) -> Any:
        blob = ensure_contiguous_ndarray(buf).view(np.uint8).reshape(-1)
        arr = decompress(blob, threads=self._settings.threads, max_output=self.max_output)
        return arr if out is None else ndarray_copy(arr, out)

    def get_config(self) -> dict:
        config = {"id": self.codec_id, "error_bound": self.error_bound, "mode": self.mode,
                  "coder": self.coder, "threads": self.threads}
        if self.max_output is not None:
            config["max_output"] = self.max_output
        return config

    def __repr__(self) -> str:
        return (f"EBGC(error_bound={self.error_bound!r}, mode={self.mode!r}, coder={self.coder!r}, "
                f"threads={self.threads!r}, max_output={self.max_output!r})")
