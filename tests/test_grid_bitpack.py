"""The device's fast mode (bit-packing, coder 1), proven on the CPU: the host runner executes the
per-block bodies that the CUDA kernels run (one block a thread, grid/bitpack_block_steps.hpp) over
the same grid (blocks, warp segments, tiles, chunks of 2**DEFAULT_CHUNK_LOG2), block by block, and
its blobs must be the CPU codec's byte for byte (coder bitpack, no low rank), its reconstructions
the CPU's bit for bit, and its decoder must read every bit-packed blob the CPU writes (any chunk
size) to the same bits and refuse exactly the corrupt ones the CPU refuses. Runs without a GPU;
the warp scan, the look-back and the atomics are left for tests/test_cuda.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc
from ebgc import _core
from ebgc.errors import EbgcError, InvalidArgumentError

from blobfmt import mutated
from strategies import error_bounds, float_arrays, special_values

MODES = _core.VOCABULARY["modes"]
CODERS = _core.VOCABULARY["coders"]
CHUNK = _core.DEFAULT_CHUNK_LOG2
DTYPES = [np.float32, np.float64, np.float16]
SIZES = [0, 1, 31, 32, 33, 1023, 1024, 1025, 2**CHUNK - 1, 2**CHUNK, 2**CHUNK + 1, 100_003]


def dtype_name(x: np.ndarray) -> str:
    return "bfloat16" if x.dtype.name == "bfloat16" else x.dtype.name


def buf(a):
    """What _core takes: bfloat16 as its 16-bit integer view."""
    return a if a is None or a.dtype.name != "bfloat16" else a.view(np.uint16)


def cpu_blob(x, eb, mode, chunk_log2=CHUNK, previous=None, reconstruction=None):
    return _core.compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS["bitpack"], 1, chunk_log2=chunk_log2,
                          low_rank=False, previous=buf(previous), reconstruction=buf(reconstruction))


def runner_blob(x, eb, mode, previous=None, reconstruction=None):
    return _core._grid_compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS["bitpack"], previous=buf(previous),
                                reconstruction=buf(reconstruction))


def runner_decode(blob, like, previous=None):
    out = np.empty_like(like)
    _core._grid_decompress_into(_core.inspect(blob), buf(out), dtype=dtype_name(like), previous=buf(previous))
    return out


def cpu_decode(blob, like, previous=None):
    out = np.empty_like(like)
    _core.decompress_into(_core.inspect(blob), buf(out), 1, previous=buf(previous), dtype=dtype_name(like))
    return out


def assert_same_codec(x, eb, mode, previous=None):
    """Blob, reconstruction and decode of the host runner equal the CPU codec's."""
    x = np.ascontiguousarray(x)
    rec_cpu, rec_runner = np.empty_like(x), np.empty_like(x)
    a = cpu_blob(x, eb, mode, previous=previous, reconstruction=rec_cpu)
    b = runner_blob(x, eb, mode, previous=previous, reconstruction=rec_runner)
    assert a == b, f"runner blob differs: {len(b)} vs CPU {len(a)} bytes"
    assert rec_cpu.tobytes() == rec_runner.tobytes()
    decoded = runner_decode(a, x, previous)
    assert decoded.tobytes() == rec_cpu.tobytes()
    assert decoded.tobytes() == cpu_decode(a, x, previous).tobytes()
    return a


def gradient_like(rng, n, dtype=np.float32):
    return (rng.standard_normal(n) * rng.exponential(1.0, n)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("rel", 1e-4), ("rel", 1e-12), ("abs", 1e-3), ("abs", 1e-300)])
def test_runner_blob_is_the_cpu_blob(dtype, n, mode, eb):
    x = gradient_like(np.random.default_rng(n), n, dtype)
    if n > 16:
        x[[2, 5, 11, n - 1]] = [np.nan, np.inf, np.finfo(dtype).max, -np.inf]
    blob = assert_same_codec(x, eb, mode)
    info = ebgc.info(blob)
    assert info["coder"] == "bitpack" and info["predictor"] == "zero"


def test_bfloat16_runner_blob():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for n in (0, 33, 40_000, 2**CHUNK + 1):
        x = gradient_like(np.random.default_rng(n), n).astype(ml_dtypes.bfloat16)
        for mode, eb in (("rel", 1e-2), ("abs", 1e-300)):
            assert_same_codec(x, eb, mode)


def test_wide_codes_and_every_width():
    # widths 0..32 over the blocks: zero blocks, then codes of growing magnitude up to 2^29
    rng = np.random.default_rng(4)
    n = 2**CHUNK * 2 + 777
    scale = 2.0 ** (np.arange(n) // 32 % 31)
    x = (np.sign(rng.standard_normal(n)) * rng.uniform(0, 1, n) * scale).astype(np.float64)
    x[:32 * 5] = 0.0
    assert_same_codec(x, 0.5, "abs")


def test_chunk_boundaries_and_unaligned_short_chunk():
    # several whole chunks and a short last one whose packed data sits at an unaligned address
    rng = np.random.default_rng(5)
    for n in (3 * 2**CHUNK, 3 * 2**CHUNK + 1, 3 * 2**CHUNK + 32 * 7 + 5):
        x = gradient_like(rng, n)
        assert_same_codec(x, 1e-3, "rel")


def test_stream_blend_matches():
    rng = np.random.default_rng(6)
    p1 = rng.standard_normal(70_000).astype(np.float32)
    x = (1.1 * p1 + 0.01 * rng.standard_normal(p1.size)).astype(np.float32)
    blob = assert_same_codec(x, 1e-3, "rel", previous=p1)
    assert ebgc.info(blob)["predictor"] == "scaled-previous"


def test_many_outliers_cross_tiles():
    # outliers in every tile and every lane: the gather's ranks across blocks, tiles and chunks
    rng = np.random.default_rng(7)
    x = gradient_like(rng, 150_001)
    x[rng.integers(0, x.size, 20_000)] = np.nan
    x[::97] = np.inf
    assert_same_codec(x, 1e-2, "rel")
    assert_same_codec(x, 1e-300, "abs")  # codes out of range: every value is an outlier


@pytest.mark.parametrize("chunk_log2", [10, 11, 12, 13, 16, 20])
def test_runner_decoder_reads_cpu_blobs_of_any_chunk_size(chunk_log2):
    x = gradient_like(np.random.default_rng(chunk_log2), 150_001)
    x[::1001] = np.nan
    blob = cpu_blob(x, 1e-3, "rel", chunk_log2=chunk_log2)
    assert runner_decode(blob, x).tobytes() == cpu_decode(blob, x).tobytes()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([np.float32, np.float64, np.float16]).flatmap(lambda d: float_arrays(d, max_dims=3, max_side=40)),
       error_bounds(), st.sampled_from(["abs", "rel"]))
def test_runner_property_adversarial(x, eb, mode):
    assert_same_codec(x, eb, mode)


def test_runner_special_values():
    for dtype in (np.float32, np.float64, np.float16):
        with np.errstate(over="ignore"):  # float16: the float32 extremes become Inf
            x = np.array(special_values(dtype) * 50, dtype=dtype)
        for mode, eb in (("abs", 1e-3), ("rel", 1e-2), ("abs", 1e-300), ("rel", 1e-300), ("abs", 1e300)):
            assert_same_codec(x, eb, mode)


@pytest.mark.parametrize("n", [40_000, 2**CHUNK + 3000])
def test_runner_decoder_refuses_corrupt_streams_like_the_cpu(n):
    """Mutations anywhere past the header's first bytes (CRC recomputed): the runner's decoder
    refuses exactly the blobs the CPU decoder refuses, with a typed error, and decodes the others
    to the CPU's bits."""
    rng = np.random.default_rng(n)
    x = gradient_like(rng, n)
    x[::500] = np.nan  # outliers: mutations of their indices and values too
    blob = cpu_blob(x, 1e-3, "rel")
    tail = len(blob) - 4
    agree = refused = 0
    for at in np.concatenate([rng.integers(8, tail, 200), rng.integers(tail - 3000, tail, 200)]):
        bad = mutated(blob, int(at), int(rng.integers(0, 256)))
        try:
            parsed = _core.inspect(bad)
        except EbgcError:
            continue  # refused before any decoder runs
        info = ebgc.info(bad)
        if info["coder"] != "bitpack" or info["dtype"] != "float32" or info["shape"] != (n,):
            continue  # a header mutation that names another coder or dtype: not this decoder's blob
        want = np.empty(n, np.float32)
        try:
            _core.decompress_into(parsed, want, 1)
        except EbgcError as e:
            with pytest.raises(type(e)):
                _core._grid_decompress_into(parsed, np.empty(n, np.float32))
            refused += 1
            continue
        got = np.empty(n, np.float32)
        _core._grid_decompress_into(parsed, got)
        assert got.tobytes() == want.tobytes()
        agree += 1
    assert refused > 0 and agree > 0


def test_runner_refuses_bad_requests():
    x = gradient_like(np.random.default_rng(10), 100)
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress(x, "float32", 1e-2, 7, CODERS["bitpack"])
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress(x[::2], "float32", 1e-2, MODES["abs"], CODERS["bitpack"])
