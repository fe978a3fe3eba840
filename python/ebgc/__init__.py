"""ebgc — error-bounded lossy compression for neural-network gradients.

    >>> import numpy as np, ebgc
    >>> g = np.random.default_rng(0).laplace(size=100_000).astype(np.float32)
    >>> blob = ebgc.compress(g, 1e-2)            # |g - g'| <= 1e-2 * (max - min)
    >>> g2 = ebgc.decompress(blob)
    >>> bool(np.all(np.abs(g2 - g) <= ebgc.info(blob)["abs_bound"]))
    True
"""
from .errors import (
    ArgumentTypeError,
    ChecksumError,
    CudaError,
    EbgcError,
    FormatError,
    InvalidArgumentError,
    OutOfMemoryError,
    OutputLimitError,
    StreamError,
    UnsupportedDTypeError,
    VersionError,
)
from . import _core
from .api import compress, compress_many, decompress, info
from .stream import GradientDecoder, GradientEncoder
from .vocabulary import CODERS, MODES

__version__ = "0.1.0"
FORMAT_VERSION: int = _core.FORMAT_VERSION

try:  # the CUDA backend is optional at build time and at run time
    from . import _cuda  # type: ignore[attr-defined]  # noqa: F401

    HAS_CUDA = bool(_cuda.device_count() > 0)
except ImportError:
    HAS_CUDA = False

__all__ = [
    "compress",
    "compress_many",
    "decompress",
    "info",
    "GradientEncoder",
    "GradientDecoder",
    "CODERS",
    "MODES",
    "HAS_CUDA",
    "FORMAT_VERSION",
    "EbgcError",
    "FormatError",
    "ChecksumError",
    "CudaError",
    "VersionError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "UnsupportedDTypeError",
    "OutputLimitError",
    "OutOfMemoryError",
    "StreamError",
]
