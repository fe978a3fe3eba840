"""The numcodecs codec: registry lookup through the entry point, config round trip, the bound,
`out=`, and refusals."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import ebgc
from conftest import assert_within_bound, bits

try:
    import numcodecs
except ImportError:
    pytest.skip("numcodecs is not installed", allow_module_level=True)
except ValueError as exc:  # numcodecs <= 0.16 cannot parse zfpy's "1.0.1.post0" version at import
    pytest.skip(f"numcodecs fails to import here ({exc})", allow_module_level=True)

from ebgc.integrations.numcodecs import EBGC  # noqa: E402

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]


def test_found_through_the_entry_point_without_import():
    codec = numcodecs.get_codec({"id": "ebgc", "error_bound": 1e-4, "mode": "abs"})
    assert type(codec).__name__ == "EBGC" and codec.codec_id == "ebgc"
    assert codec.get_config() == {"id": "ebgc", "error_bound": 1e-4, "mode": "abs", "coder": "auto",
                                  "threads": None}


def test_config_round_trip():
    c = EBGC(2e-3, mode="rel", coder="huffman", threads=2)
    again = numcodecs.get_codec(c.get_config())
    assert again == c and again.get_config() == c.get_config()
    assert EBGC.from_config({"error_bound": 0.5, "mode": "abs"}).get_config()["error_bound"] == 0.5
    assert "error_bound=0.002" in repr(c)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["rel", "abs"])
def test_round_trip_within_bound(dtype, mode):
    rng = np.random.default_rng(0)
    x = (rng.laplace(size=(32, 16, 3, 3)) * 1e-2).astype(dtype)
    x.reshape(-1)[[5, 9]] = [np.nan, np.inf]
    codec = EBGC(1e-3, mode=mode)
    blob = codec.encode(x)
    assert len(blob) < x.nbytes
    y = codec.decode(blob)
    assert_within_bound(x, y, blob)
    out = np.empty_like(x)
    assert codec.decode(np.frombuffer(blob, np.uint8), out=out) is out  # any bytes-like input
    np.testing.assert_array_equal(bits(out), bits(y))


def test_non_contiguous_chunk():
    x = np.random.default_rng(1).standard_normal((40, 50)).astype(np.float32)[::3, ::-2]
    codec = EBGC(1e-3)
    blob = codec.encode(x)
    assert_within_bound(x, codec.decode(blob), blob)


def test_refusals():
    with pytest.raises(ebgc.InvalidArgumentError):
        EBGC(-1.0)
    with pytest.raises(ebgc.InvalidArgumentError):
        EBGC(1e-3, mode="pw_rel")
    with pytest.raises(ebgc.InvalidArgumentError):
        EBGC(1e-3, coder="zstd")
    with pytest.raises(ebgc.UnsupportedDTypeError):
        EBGC().encode(np.arange(10))
    with pytest.raises(ebgc.UnsupportedDTypeError):
        EBGC().encode(b"raw bytes have no float dtype")
    blob = bytearray(EBGC().encode(np.ones(100, np.float32) * np.arange(100)))
    blob[20] ^= 1
    with pytest.raises(ebgc.FormatError):
        EBGC().decode(bytes(blob))
