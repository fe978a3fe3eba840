"""Round trips: shapes, dtypes, out=, threads, input immutability, foreign inputs, info()."""

from __future__ import annotations

import array
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import ebgc
from conftest import CODERS, DTYPES, assert_within_bound, bits, roundtrip
from strategies import adversarial, gradient_like

DT_IDS = ["f32", "f64"]

SHAPES = [
    (),
    (0,),
    (3, 0, 2),
    (0, 0),
    (1,),
    (1, 1, 1, 1),
    (5,),
    (17, 3),
    (64, 32, 3, 3),  # OIHW conv weight gradient
    (2, 3, 4, 5),
    (1 << 20,),
]


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shape_and_dtype_restored(shape, dtype, coder):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    x = np.asarray(x, dtype=dtype)  # 0-d stays an ndarray
    for mode in ("rel", "abs"):
        blob, y, info = roundtrip(x, 1e-3, mode=mode, coder=coder)
        assert type(y) is np.ndarray
        assert y.shape == shape and y.dtype == np.dtype(dtype)
        assert info["shape"] == shape and isinstance(info["shape"], tuple)
        assert y.flags.c_contiguous and y.flags.writeable


def test_big_1d_multichunk():
    x = gradient_like((3, 1_000_003), np.float32, seed=1).reshape(-1)
    roundtrip(x, 1e-3, mode="rel", coder="auto")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_decompress_returns_owned_array(dtype):
    x = np.linspace(-1, 1, 1000, dtype=dtype)
    blob = ebgc.compress(x, 1e-3)
    y1 = ebgc.decompress(blob)
    y2 = ebgc.decompress(blob)
    assert not np.shares_memory(y1, y2)
    y1[:] = 99
    np.testing.assert_array_equal(bits(y2), bits(ebgc.decompress(blob)))


# --------------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [(), (0,), (100,), (7, 9), (4, 3, 3, 3)], ids=str)
def test_out_filled_in_place(shape, dtype, coder):
    rng = np.random.default_rng(3)
    x = np.asarray(rng.standard_normal(shape), dtype=dtype)
    blob = ebgc.compress(x, 1e-2, mode="rel", coder=coder)
    ref = ebgc.decompress(blob)
    out = np.full(shape, np.nan, dtype=dtype)
    res = ebgc.decompress(blob, out=out)
    assert res is out
    np.testing.assert_array_equal(bits(out), bits(ref))
    assert_within_bound(x, out, blob)


def test_out_same_size_flat():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = ebgc.compress(x, 1e-3)
    ref = ebgc.decompress(blob)
    out = np.empty(24, np.float32)
    res = ebgc.decompress(blob, out=out)
    assert res is out
    np.testing.assert_array_equal(out, ref.reshape(-1))


def _bad_outs(shape, dtype):
    n = int(np.prod(shape))
    other = np.float64 if np.dtype(dtype) == np.float32 else np.float32
    ro = np.empty(shape, dtype)
    ro.flags.writeable = False
    fortran = np.empty(shape, dtype, order="F")
    return {
        "wrong_dtype": np.empty(shape, other),
        "int_dtype": np.empty(shape, np.int32 if np.dtype(dtype) == np.float32 else np.int64),
        "too_small": np.empty(n - 1, dtype),
        "too_big": np.empty(n + 1, dtype),
        "wrong_size_same_ndim": np.empty((shape[0] + 1,) + tuple(shape[1:]), dtype),
        "non_contiguous": np.empty(2 * n, dtype)[::2].reshape(-1),
        "reversed": np.empty(n, dtype)[::-1],
        "fortran": fortran,
        "read_only": ro,
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize(
    "which",
    ["wrong_dtype", "int_dtype", "too_small", "too_big", "wrong_size_same_ndim",
     "non_contiguous", "reversed", "fortran", "read_only"],
)
def test_out_rejected(which, dtype):
    shape = (6, 5)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    blob = ebgc.compress(x, 1e-3)
    out = _bad_outs(shape, dtype)[which]
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.decompress(blob, out=out)


@pytest.mark.parametrize("out", [[0.0] * 10, "abc", 3.0, b"\x00" * 40], ids=["list", "str", "float", "bytes"])
def test_out_not_an_array(out):
    blob = ebgc.compress(np.zeros(10, np.float32), 1e-3)
    with pytest.raises((ebgc.InvalidArgumentError, TypeError)):
        ebgc.decompress(blob, out=out)


# --------------------------------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_threads_do_not_change_reconstruction(dtype, coder):
    x = gradient_like((64, 20000), dtype, seed=5)  # 1.28M values: several chunks
    x.reshape(-1)[::997] = np.nan
    blobs = {t: ebgc.compress(x, 1e-3, mode="rel", coder=coder, threads=t) for t in (1, 2, None)}
    recs = []
    for t, blob in blobs.items():
        for dt in (1, 2, None):
            y = ebgc.decompress(blob, threads=dt)
            assert_within_bound(x, y, blob)
            recs.append(y)
    for y in recs[1:]:
        np.testing.assert_array_equal(bits(y), bits(recs[0]))


def test_concurrent_calls_from_python_threads():
    # The GIL is released in the core: simultaneous calls must not interfere.
    xs = [gradient_like((20, 5000), np.float32 if i % 2 else np.float64, seed=i) for i in range(8)]
    jobs = [(x, c) for x in xs for c in ("huffman", "context", "bitpack")]
    seq = [ebgc.compress(x, 1e-3, coder=c, threads=1) for x, c in jobs]

    def work(job):
        x, c = job
        blob = ebgc.compress(x, 1e-3, coder=c, threads=2)
        return blob, ebgc.decompress(blob, threads=2)

    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(work, jobs * 2))
    for (x, c), (blob, y), ref in zip(jobs * 2, results, seq * 2):
        assert_within_bound(x, y, blob)
        np.testing.assert_array_equal(bits(y), bits(ebgc.decompress(ref)))


@pytest.mark.parametrize("coder", CODERS)
def test_compress_is_deterministic(coder):
    x = gradient_like((50, 1000), np.float32, seed=9)
    a = ebgc.compress(x, 1e-3, coder=coder, threads=2)
    b = ebgc.compress(x, 1e-3, coder=coder, threads=2)
    assert a == b


# --------------------------------------------------------------------------------------------------
# The input is never modified
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_input_not_modified(dtype, coder):
    rng = np.random.default_rng(2)
    base = adversarial("nan_payloads", 4000, dtype, rng).reshape(40, 100)
    base[3, 3] = np.inf
    base[5, 5] = -0.0
    before = base.copy()
    for x in (base, base[:, ::3], base[::-1], base.T):
        for mode in ("abs", "rel"):
            ebgc.compress(x, 1e-2, mode=mode, coder=coder)
    np.testing.assert_array_equal(bits(base), bits(before))


@pytest.mark.parametrize("ndim", [16, 17, 32])
def test_many_dimensions(ndim):
    # FORMAT.md allows 16 dimensions; more must be refused as an argument error, never mangled
    x = np.arange(2.0**3, dtype=np.float32).reshape((2, 2, 2) + (1,) * (ndim - 3))
    try:
        blob = ebgc.compress(x, 1e-3)
    except ebgc.InvalidArgumentError:
        assert ndim > 16
        return
    assert ndim <= 16
    assert_within_bound(x, ebgc.decompress(blob), blob)


def test_broadcast_view_input():
    x = np.broadcast_to(np.linspace(-1, 1, 64, dtype=np.float32), (100, 64))
    assert x.strides[0] == 0
    roundtrip(x, 1e-3, mode="rel", coder="huffman")
    roundtrip(x, 1e-3, mode="abs", coder="context")


def test_more_elements_than_the_format_allows():
    # A zero-stride view can claim 2^41 elements without memory behind it. The format caps a
    # tensor at 2^40 values: refuse it as an argument error, before trying to copy 8 TiB.
    x = np.broadcast_to(np.float32(1), (2**41,))
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress(x, 1e-3)


def test_read_only_input_accepted():
    x = np.linspace(0, 1, 100, dtype=np.float32)
    x.flags.writeable = False
    roundtrip(x, 1e-3)


# --------------------------------------------------------------------------------------------------
# Foreign inputs: torch tensors (DLPack), buffer-protocol objects
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tdtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "flipped", "zero_d", "empty"])
def test_torch_cpu_tensor(tdtype, layout):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    t = torch.randn(48, 30, generator=g, dtype=getattr(torch, tdtype))
    if layout == "transposed":
        t = t.t()
    elif layout == "strided":
        t = t[::2, ::3]
    elif layout == "flipped":
        t = t.flip(0)
    elif layout == "zero_d":
        t = t[3, 4]
    elif layout == "empty":
        t = t[:0]
    x = t.numpy().copy()  # flip() copies; everything else is a view: .numpy() keeps strides
    for coder in CODERS:
        blob = ebgc.compress(t, 1e-3, mode="rel", coder=coder)
        y = ebgc.decompress(blob)
        assert y.shape == tuple(t.shape)
        assert y.dtype == np.dtype(tdtype)
        assert_within_bound(x, y, blob)


def test_torch_non_contiguous_matches_numpy():
    torch = pytest.importorskip("torch")
    t = torch.arange(600, dtype=torch.float32).reshape(20, 30).sin()[:, ::4].t()
    assert not t.is_contiguous()
    a = ebgc.compress(t, 1e-3, coder="huffman")
    b = ebgc.compress(np.ascontiguousarray(t.numpy()), 1e-3, coder="huffman")
    np.testing.assert_array_equal(bits(ebgc.decompress(a)), bits(ebgc.decompress(b)))


@pytest.mark.parametrize("tdtype", ["int32", "int64", "bool", "complex64", "uint8"])
def test_torch_unsupported_dtypes(tdtype):
    torch = pytest.importorskip("torch")
    t = torch.zeros(10, dtype=getattr(torch, tdtype))
    with pytest.raises(ebgc.UnsupportedDTypeError):
        ebgc.compress(t, 1e-3)


def test_array_module_buffer():
    a32 = array.array("f", [0.0, 1.5, -2.25, 3.0])
    a64 = array.array("d", [0.0, 1.5, -2.25, 3.0, 1e300])
    for a, dt in ((a32, np.float32), (a64, np.float64)):
        blob = ebgc.compress(a, 1e-3, mode="rel")
        y = ebgc.decompress(blob)
        assert y.dtype == dt and y.shape == (len(a),)
        assert_within_bound(np.frombuffer(a, dt), y, blob)


def test_memoryview_of_float_array():
    x = np.linspace(-5, 5, 77, dtype=np.float64).reshape(7, 11)
    blob = ebgc.compress(memoryview(x), 1e-3, mode="abs")
    y = ebgc.decompress(blob)
    assert y.shape == (7, 11)
    assert_within_bound(x, y, blob)


# --------------------------------------------------------------------------------------------------
# Blob inputs to decompress / info
# --------------------------------------------------------------------------------------------------

def _blob_variants(blob: bytes):
    big = bytearray(b"\xAA" * 7 + blob + b"\x55" * 5)
    return {
        "bytes": blob,
        "bytearray": bytearray(blob),
        "memoryview": memoryview(blob),
        "memoryview_slice": memoryview(big)[7 : 7 + len(blob)],
        "uint8": np.frombuffer(blob, np.uint8),
        "uint8_copy": np.frombuffer(blob, np.uint8).copy(),
        "uint8_offset": np.frombuffer(bytes(big), np.uint8)[7 : 7 + len(blob)],
    }


@pytest.mark.parametrize(
    "kind", ["bytes", "bytearray", "memoryview", "memoryview_slice", "uint8", "uint8_copy", "uint8_offset"]
)
def test_blob_input_types(kind):
    x = adversarial("nan_inf_sprinkled", 3000, np.float32, np.random.default_rng(1)).reshape(30, 100)
    blob = ebgc.compress(x, 1e-3)
    ref = ebgc.decompress(blob)
    b = _blob_variants(blob)[kind]
    y = ebgc.decompress(b)
    np.testing.assert_array_equal(bits(y), bits(ref))
    assert ebgc.info(b) == ebgc.info(blob)


# --------------------------------------------------------------------------------------------------
# info()
# --------------------------------------------------------------------------------------------------

INFO_KEYS = {
    "format_version", "dtype", "shape", "mode", "error_bound", "abs_bound", "coder",
    "n_outliers", "nbytes", "raw_nbytes",
}


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("mode", ["abs", "rel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_info_fields(dtype, mode, coder):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 20, 3)).astype(dtype) * 4
    x[0, 0, 0] = np.nan
    x[1, 1, 1] = np.inf
    x[2, 2, 2] = -np.inf
    eb = 0.0123
    blob = ebgc.compress(x, eb, mode=mode, coder=coder)
    info = ebgc.info(blob)
    assert INFO_KEYS <= set(info)
    assert info["format_version"] == 1 == ebgc.FORMAT_VERSION
    assert type(info["format_version"]) is int
    assert info["dtype"] == np.dtype(dtype).name
    assert info["shape"] == (10, 20, 3) and type(info["shape"]) is tuple
    assert all(type(d) is int for d in info["shape"])
    assert info["mode"] == mode
    assert type(info["error_bound"]) is float and info["error_bound"] == eb
    assert type(info["abs_bound"]) is float
    finite = x[np.isfinite(x)]
    want = eb if mode == "abs" else eb * (float(finite.max()) - float(finite.min()))
    assert info["abs_bound"] == want
    if coder == "auto":
        assert info["coder"] in CODERS and info["coder"] != "auto"
    else:
        assert info["coder"] == coder
    assert type(info["n_outliers"]) is int and 0 <= info["n_outliers"] <= x.size
    if info["coder"] != "raw":  # raw stores every value verbatim: nothing is an outlier there
        assert info["n_outliers"] >= 3  # NaN, +Inf, -Inf at least
    assert type(info["nbytes"]) is int and info["nbytes"] == len(blob)
    assert type(info["raw_nbytes"]) is int and info["raw_nbytes"] == x.nbytes


def test_info_accepts_all_blob_types():
    blob = ebgc.compress(np.ones(5, np.float64), 0.5, mode="abs")
    ref = ebgc.info(blob)
    for b in _blob_variants(blob).values():
        assert ebgc.info(b) == ref


def test_info_empty_and_scalar():
    for x in (np.zeros((3, 0, 2), np.float32), np.array(1.0, np.float64)):
        blob = ebgc.compress(x, 1e-3)
        info = ebgc.info(blob)
        assert info["shape"] == x.shape
        assert info["raw_nbytes"] == x.nbytes
        assert 0 <= info["n_outliers"] <= x.size
        assert info["abs_bound"] == 0.0  # rel: no range


def test_module_attributes():
    assert ebgc.FORMAT_VERSION == 1
    assert isinstance(ebgc.HAS_CUDA, bool)
    assert isinstance(ebgc.__version__, str) and ebgc.__version__
    assert issubclass(ebgc.InvalidArgumentError, ebgc.EbgcError)
    assert issubclass(ebgc.InvalidArgumentError, ValueError)
    assert issubclass(ebgc.UnsupportedDTypeError, ebgc.EbgcError)
    assert issubclass(ebgc.UnsupportedDTypeError, TypeError)
    assert issubclass(ebgc.FormatError, ebgc.EbgcError)
    assert issubclass(ebgc.FormatError, ValueError)
    assert issubclass(ebgc.ChecksumError, ebgc.FormatError)
    assert issubclass(ebgc.VersionError, ebgc.FormatError)
    assert issubclass(ebgc.StreamError, ebgc.EbgcError)


# ---- many arrays of one message ----------------------------------------------------------------

@pytest.mark.parametrize("coder", ["auto", "bitpack", "context"])
def test_compress_many_is_compress_of_each(coder):
    xs = [gradient_like((1, n), seed=n).ravel() for n in (0, 1, 1000, 70_000)]
    xs += [np.random.default_rng(8).standard_normal((40, 30)), np.ones((3, 0), np.float32)]
    blobs = ebgc.compress_many(xs, 1e-3, coder=coder)
    assert blobs == [ebgc.compress(x, 1e-3, coder=coder) for x in xs]
    assert ebgc.compress_many(tuple(xs[:2]), 1e-2, mode="abs") == [ebgc.compress(x, 1e-2, mode="abs") for x in xs[:2]]
    assert ebgc.compress_many([], 1e-3) == []


def test_compress_many_refuses_what_compress_refuses():
    with pytest.raises(ebgc.ArgumentTypeError):
        ebgc.compress_many(np.zeros(10), 1e-3)  # an array is not a sequence of arrays
    with pytest.raises(ebgc.ArgumentTypeError):
        ebgc.compress_many(b"abc", 1e-3)
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.compress_many([np.zeros(10)], -1.0)
    with pytest.raises(ebgc.UnsupportedDTypeError):
        ebgc.compress_many([np.zeros(10), np.zeros(10, np.int32)], 1e-3)
