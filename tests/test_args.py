"""Bad arguments are refused with the documented error types, and good ones of odd types accepted."""

from __future__ import annotations

import numpy as np
import pytest

import ebgc
from conftest import CODERS, assert_within_bound

X = np.linspace(-1, 1, 50, dtype=np.float32)


@pytest.fixture(scope="module")
def blob():
    return ebgc.compress(X, 1e-3)


# --------------------------------------------------------------------------------------------------
# error_bound
# --------------------------------------------------------------------------------------------------

BAD_BOUNDS = [
    -1.0, -1e-8, 0, 0.0, -0.0, float("nan"), float("inf"), float("-inf"), -float("nan"),
    np.float32("nan"), np.float64(0.0), np.float64(-3.0), np.float32("inf"),
    "0.1", "abc", None, [0.1], (0.1,), {}, 1e-3j, complex(1, 0), np.array([0.1, 0.2]), b"0.1",
]


@pytest.mark.parametrize("mode", ["abs", "rel"])
@pytest.mark.parametrize("eb", BAD_BOUNDS, ids=repr)
def test_bad_error_bound(eb, mode):
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(X, eb, mode=mode)


@pytest.mark.parametrize("eb", BAD_BOUNDS, ids=repr)
def test_bad_error_bound_on_empty_input(eb):
    # validation does not depend on there being data to compress
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(np.zeros(0, np.float64), eb)


@pytest.mark.parametrize("eb", [1, 3, np.float32(1e-3), np.float64(2.5e-2), np.int64(2), 5e-324, 1e300], ids=repr)
def test_unusual_but_valid_bounds(eb):
    for mode in ("abs", "rel"):
        blob = ebgc.compress(X, eb, mode=mode)
        info = assert_within_bound(X, ebgc.decompress(blob), blob)
        assert info["error_bound"] == float(eb)


def test_error_bound_is_keyword_or_positional():
    a = ebgc.compress(X, 1e-3, mode="abs")
    b = ebgc.compress(X, error_bound=1e-3, mode="abs")
    assert a == b
    with pytest.raises(TypeError):
        ebgc.compress(X, 1e-3, "abs")  # mode is keyword-only
    with pytest.raises(TypeError):
        ebgc.compress(X)  # error_bound is required


# --------------------------------------------------------------------------------------------------
# mode / coder / threads
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["", "absolute", "relative", "pw_rel", " abs", "abs\x00"])
def test_unknown_mode(mode):
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(X, 1e-3, mode=mode)


@pytest.mark.parametrize("mode", ["ABS", "Rel", "REL"])
def test_names_are_case_insensitive(mode):
    """Frameworks spell modes their way (APPFL: "REL"); the blob says the canonical name."""
    assert ebgc.info(ebgc.compress(X, 1e-3, mode=mode))["mode"] == mode.lower()
    assert ebgc.info(ebgc.compress(X, 1e-3, coder="BitPack"))["coder"] == "bitpack"


@pytest.mark.parametrize("mode", [None, 0, 1, b"abs", ["abs"]], ids=repr)
def test_non_string_mode(mode):
    with pytest.raises((ebgc.InvalidArgumentError, TypeError)):
        ebgc.compress(X, 1e-3, mode=mode)


@pytest.mark.parametrize("coder", ["", "rans", "zstd", "lz4", "none", "bitpack "])
def test_unknown_coder(coder):
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(X, 1e-3, coder=coder)


@pytest.mark.parametrize("coder", [None, 0, -1, 3, b"auto"], ids=repr)
def test_non_string_coder(coder):
    with pytest.raises((ebgc.InvalidArgumentError, TypeError)):
        ebgc.compress(X, 1e-3, coder=coder)


BAD_THREADS = [0, -1, -100, "x", "2", 1.5, 2.0, float("nan"), [2], False, None.__class__]


@pytest.mark.parametrize("threads", BAD_THREADS, ids=repr)
def test_bad_threads_compress(threads):
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(X, 1e-3, threads=threads)


@pytest.mark.parametrize("threads", BAD_THREADS, ids=repr)
def test_bad_threads_decompress(threads, blob):
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.decompress(blob, threads=threads)


@pytest.mark.parametrize("threads", [1, 2, 3, 16, 1000, np.int64(2)], ids=repr)
def test_good_threads(threads, blob):
    b = ebgc.compress(X, 1e-3, threads=threads)
    y = ebgc.decompress(b, threads=threads)
    assert_within_bound(X, y, b)
    np.testing.assert_array_equal(ebgc.decompress(blob, threads=threads), ebgc.decompress(blob))


@pytest.mark.parametrize("coder", CODERS)
def test_every_documented_coder_accepted(coder):
    b = ebgc.compress(X, 1e-3, coder=coder)
    assert_within_bound(X, ebgc.decompress(b), b)


# --------------------------------------------------------------------------------------------------
# dtypes and non-array inputs
# --------------------------------------------------------------------------------------------------

UNSUPPORTED = [
    np.longdouble, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.bool_, np.complex64, np.complex128, object, "U3", "S4", "datetime64[s]",
    "timedelta64[ms]", np.dtype([("a", np.float32), ("b", np.float32)]),
]


@pytest.mark.parametrize("dtype", UNSUPPORTED, ids=str)
@pytest.mark.parametrize("shape", [(10,), (), (0,), (2, 3)], ids=str)
def test_unsupported_dtype(dtype, shape):
    x = np.zeros(shape, dtype=dtype)
    if x.dtype == np.longdouble and np.finfo(np.longdouble).bits == 64:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(ebgc.UnsupportedDTypeError):
        ebgc.compress(x, 1e-3)


def test_unsupported_dtype_is_type_error():
    with pytest.raises(TypeError):
        ebgc.compress(np.arange(10), 1e-3)


def test_object_array_of_floats_refused():
    x = np.array([1.0, 2.0, np.float32(3)], dtype=object)
    with pytest.raises(ebgc.UnsupportedDTypeError):
        ebgc.compress(x, 1e-3)


def test_big_endian_floats():
    # non-native byte order: either accepted (values preserved within bound) or refused as dtype
    for dt in (">f4", ">f8"):
        x = np.linspace(-3, 3, 40).astype(dt)
        try:
            b = ebgc.compress(x, 1e-3)
        except ebgc.UnsupportedDTypeError:
            continue
        y = ebgc.decompress(b)
        assert y.dtype == x.dtype.newbyteorder("=")
        assert_within_bound(x.astype(x.dtype.newbyteorder("=")), y, b)


class _Opaque:
    pass


@pytest.mark.parametrize(
    "data",
    [None, 1.0, 3, "abc", [1.0, 2.0], (1.0,), {"a": 1.0}, {1.0}, _Opaque(), range(3), b"abcd", bytearray(8)],
    ids=lambda d: type(d).__name__,
)
def test_non_array_inputs(data):
    with pytest.raises(TypeError):  # UnsupportedDTypeError is a TypeError
        ebgc.compress(data, 1e-3)


# --------------------------------------------------------------------------------------------------
# decompress / info argument types
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [123, 1.5, None, "EBGC", ["E", "B"], object(), {"a": 1}],
                         ids=lambda d: type(d).__name__)
def test_decompress_non_bytes(bad):
    with pytest.raises(TypeError):
        ebgc.decompress(bad)
    with pytest.raises(TypeError):
        ebgc.info(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int8, np.uint16])
def test_decompress_non_uint8_array(dtype, blob):
    a = np.frombuffer(blob[: len(blob) // 4 * 4], np.uint8).view(np.uint8).astype(dtype)
    with pytest.raises((TypeError, ebgc.FormatError)):
        ebgc.decompress(a)


def test_decompress_2d_uint8(blob):
    a = np.frombuffer(blob, np.uint8).reshape(1, -1)
    try:
        y = ebgc.decompress(a)
    except (TypeError, ebgc.FormatError):
        return
    np.testing.assert_array_equal(y, ebgc.decompress(blob))


def test_decompress_keyword_only(blob):
    with pytest.raises(TypeError):
        ebgc.decompress(blob, None)
    with pytest.raises(TypeError):
        ebgc.decompress(blob, badkw=1)
