"""The device codec's algorithm, proven on the CPU: the host runner executes the per-lane bodies
that the CUDA kernels run (one lane a thread) over the same grid, lane by lane, and its blobs must
be the CPU codec's byte for byte (context and Huffman coders, and auto's pick among all four,
chunk_log2=GRID_CHUNK_LOG2, no low rank), its reconstructions the CPU's bit for bit, and its
decoder must read every lane-coded blob the CPU writes (any chunk size) to the same bits. Runs
without a GPU; only launch, synchronisation and speed are left for tests/test_cuda.py."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc
from ebgc import _core
from ebgc.errors import EbgcError, FormatError, InvalidArgumentError

from blobfmt import mutated
from strategies import error_bounds, float_arrays, special_values

MODES = _core.VOCABULARY["modes"]
CODERS = _core.VOCABULARY["coders"]
GRID = _core.GRID_CHUNK_LOG2
DTYPES = [np.float32, np.float64, np.float16]


def dtype_name(x: np.ndarray) -> str:
    return "bfloat16" if x.dtype.name == "bfloat16" else x.dtype.name


def buf(a):
    """What _core takes: bfloat16 as its 16-bit integer view."""
    return a if a is None or a.dtype.name != "bfloat16" else a.view(np.uint16)


def cpu_blob(x, eb, mode, coder="context", previous=None, previous2=None, reconstruction=None, chunk_log2=GRID):
    return _core.compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS[coder], 1, chunk_log2=chunk_log2,
                          low_rank=False, previous=buf(previous), previous2=buf(previous2),
                          reconstruction=buf(reconstruction))


def grid_blob(x, eb, mode, coder="context", previous=None, previous2=None, reconstruction=None):
    return _core._grid_compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS[coder], previous=buf(previous),
                                previous2=buf(previous2), reconstruction=buf(reconstruction))


def grid_decode(blob, like, previous=None, previous2=None):
    out = np.empty_like(like)
    _core._grid_decompress_into(_core.inspect(blob), buf(out), previous=buf(previous), previous2=buf(previous2),
                                dtype=dtype_name(like))
    return out


def assert_same_codec(x, eb, mode, coder="context", previous=None, previous2=None):
    """Blob, reconstruction and decode of the host runner equal the CPU codec's."""
    rec_cpu, rec_grid = np.empty_like(x), np.empty_like(x)
    a = cpu_blob(x, eb, mode, coder, previous, previous2, rec_cpu)
    b = grid_blob(x, eb, mode, coder, previous, previous2, rec_grid)
    if coder == "auto" and ebgc.info(b)["coder"] == "bitpack":  # the CPU's pick too, made with the fast mode's chunks
        assert ebgc.info(a)["coder"] == "bitpack"
        a = cpu_blob(x, eb, mode, "bitpack", previous, previous2, rec_cpu, chunk_log2=_core.DEFAULT_CHUNK_LOG2)
    assert a == b, f"grid blob differs: {len(b)} vs CPU {len(a)} bytes"
    assert rec_cpu.tobytes() == rec_grid.tobytes()
    if ebgc.info(a)["coder"] in ("context", "huffman"):
        assert grid_decode(a, x, previous, previous2).tobytes() == rec_cpu.tobytes()
    return a


def gradient_like(rng, n, dtype=np.float32):
    return (rng.standard_normal(n) * rng.exponential(1.0, n)).astype(dtype)


LANE_CODERS = ["context", "huffman"]


@pytest.mark.parametrize("coder", LANE_CODERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 33, 1000, 2**GRID - 1, 2**GRID, 2**GRID + 1, 100_003])
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("rel", 1e-4), ("abs", 1e-3), ("abs", 1e-300)])
def test_grid_blob_is_the_cpu_blob(dtype, n, mode, eb, coder):
    x = gradient_like(np.random.default_rng(n), n, dtype)
    if n > 16:
        x[[2, 5, 11]] = [np.nan, np.inf, np.finfo(dtype).max]
    blob = assert_same_codec(x, eb, mode, coder)
    assert ebgc.info(blob)["coder"] == coder or n == 0


@pytest.mark.parametrize("coder", LANE_CODERS)
def test_bfloat16_grid_blob(coder):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = gradient_like(np.random.default_rng(3), 40_000).astype(ml_dtypes.bfloat16)
    assert_same_codec(x, 1e-2, "rel", coder)


@pytest.mark.parametrize("coder", LANE_CODERS)
def test_large_codes_use_every_symbol_class(coder):
    # codes up to 2^29 in magnitude: every symbol class and its raw bits (Huffman: codes up to the
    # 12-bit limit, lengths repaired)
    rng = np.random.default_rng(4)
    x = (np.sign(rng.standard_normal(50_000)) * 2.0 ** rng.uniform(0, 29, 50_000)).astype(np.float64)
    assert_same_codec(x, 0.5, "abs", coder)


def test_huffman_lanes_of_one_symbol_and_skewed_tables():
    # one used symbol (a 1-bit code), two symbols, and a geometric spread whose optimal code is
    # longer than 12 bits: lane boundaries fall inside words at every offset
    rng = np.random.default_rng(14)
    for x in (np.zeros(70_001, np.float32), np.where(rng.random(40_000) < 0.999, 0.0, 1.0).astype(np.float32),
              (2.0 ** -rng.geometric(0.35, 90_000) * np.sign(rng.standard_normal(90_000))).astype(np.float32)):
        for n in (x.size, 2049, 2048 * 8 + 3):
            assert_same_codec(np.ascontiguousarray(x[:n]), 1e-6, "abs", "huffman")


@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (300, 257), (40_000,)])
def test_sign_contexts_of_kernels_and_rows(shape):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) + np.sign(rng.standard_normal(shape[:1] + (1,) * (len(shape) - 1)))).astype(np.float32)
    assert_same_codec(x, 1e-2, "rel")


@pytest.mark.parametrize("coder", LANE_CODERS)
def test_stream_blends_match(coder):
    rng = np.random.default_rng(6)
    p1 = rng.standard_normal(70_000).astype(np.float32)
    p2 = (0.9 * p1 + 0.1 * rng.standard_normal(p1.size)).astype(np.float32)
    x = (1.1 * p1 - 0.2 * p2 + 0.01 * rng.standard_normal(p1.size)).astype(np.float32)
    blob = assert_same_codec(x, 1e-3, "rel", coder, previous=p1, previous2=p2)
    assert ebgc.info(blob)["predictor"] == "blend-two-previous"
    blob = assert_same_codec(x, 1e-3, "rel", coder, previous=p1)
    assert ebgc.info(blob)["predictor"] == "scaled-previous"


def test_sample_trace_tensors_and_stream():
    z = np.load(files("ebgc") / "data" / "sample.npz")
    names = sorted(z.keys())
    rounds = sorted({k.split("/")[0] for k in names})
    previous: dict = {}
    for r in rounds[:3]:
        for key in [k for k in names if k.startswith(r + "/")]:
            x = np.ascontiguousarray(z[key])
            tensor = key.split("/", 1)[1]
            for mode, eb in (("rel", 1e-2), ("rel", 1e-3)):
                assert_same_codec(x, eb, mode, previous=previous.get(tensor))
            previous[tensor] = x


@pytest.mark.parametrize("coder", ["auto", "raw", "bitpack"])
def test_grid_auto_picks_as_the_cpu_codec(coder):
    """"auto" on the grid is the CPU codec's pick among all four coders for the same chunks (its
    blob, but for bit-packing, which the device does with its fast mode's chunks)."""
    rng = np.random.default_rng(7)
    picked = set()
    for x in (gradient_like(rng, 50_000), rng.uniform(-1, 1, 5000).astype(np.float32), np.zeros(3000, np.float32),
              np.where(rng.random(60_000) < 0.97, 0.0, rng.standard_normal(60_000)).astype(np.float32),
              rng.integers(-3, 4, 60_000).astype(np.float32)):
        b = grid_blob(x, 1e-2, "rel", coder)
        got = ebgc.info(b)["coder"]
        picked.add(got)
        assert np.array_equal(ebgc.decompress(b), grid_decode(b, x), equal_nan=True)
        if got == "bitpack":
            assert b == cpu_blob(x, 1e-2, "rel", "bitpack", chunk_log2=_core.DEFAULT_CHUNK_LOG2)
        else:
            assert b == cpu_blob(x, 1e-2, "rel", coder, chunk_log2=GRID)
    if coder == "auto":
        assert {"huffman", "context"} <= picked, picked


@pytest.mark.parametrize("chunk_log2", [10, 12, 16, 20])
def test_grid_decoder_reads_cpu_blobs_of_any_chunk_size(chunk_log2):
    x = gradient_like(np.random.default_rng(chunk_log2), 150_001, np.float32)
    blob = cpu_blob(x, 1e-3, "rel", chunk_log2=chunk_log2)
    assert grid_decode(blob, x).tobytes() == ebgc.decompress(blob).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_grid_decoder_reads_low_rank_blobs(dtype):
    """Low-rank blobs (the context coder's; bit-packing has no low rank) decode on the device: the
    factors' product per value (LowRankView, the operation order of the CPU's fill) gives the CPU
    decoder's bits, whatever the chunk size, with outliers and non-finite values in the matrix."""
    coder = "context"
    rng = np.random.default_rng(21)
    for rows, cols, rank in ((200, 300, 3), (64, 1000, 1), (513, 129, 6)):
        x = (rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
             + 0.01 * rng.standard_normal((rows, cols))).astype(dtype)
        x[3, 5], x[rows - 1, cols - 1] = np.nan, np.inf
        for chunk_log2 in (10, 14, 16):
            blob = _core.compress(x, x.dtype.name, 1e-3, MODES["rel"], CODERS[coder], 1, chunk_log2=chunk_log2)
            assert ebgc.info(blob)["predictor"] == "low-rank", (rows, cols, chunk_log2)
            assert _core._decompress_where_device(_core.inspect(blob)) == "device"
            assert grid_decode(blob, x).tobytes() == ebgc.decompress(blob).tobytes(), (rows, cols, chunk_log2)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([np.float32, np.float64]).flatmap(lambda d: float_arrays(d, max_dims=3, max_side=40)),
       error_bounds(), st.sampled_from(["abs", "rel"]), st.sampled_from(["auto"] + LANE_CODERS))
def test_grid_property_adversarial(x, eb, mode, coder):
    x = np.ascontiguousarray(x)
    assert_same_codec(x, eb, mode, coder)


@pytest.mark.parametrize("coder", LANE_CODERS)
def test_grid_special_values(coder):
    for dtype in (np.float32, np.float64):
        x = np.array(special_values(dtype) * 50, dtype=dtype)
        for mode, eb in (("abs", 1e-3), ("rel", 1e-2), ("abs", 1e-300)):
            assert_same_codec(x, eb, mode, coder)


@pytest.mark.parametrize("coder", LANE_CODERS)
def test_grid_decoder_refuses_corrupt_streams_like_the_cpu(coder):
    """Mutations past the checksum (CRC recomputed): the grid decoder refuses exactly the blobs the
    CPU decoder refuses, with a typed error, and decodes the others to the CPU's bits."""
    rng = np.random.default_rng(8)
    x = gradient_like(rng, 40_000)
    blob = cpu_blob(x, 1e-5, "rel", coder)  # many raw bits: mutations there decode (to the CPU's values)
    tail = len(blob) - 4
    agree = refused = 0
    for at in rng.integers(tail - 9000, tail, 300):
        bad = mutated(blob, int(at), int(rng.integers(0, 256)))
        try:
            parsed = _core.inspect(bad)
            want = np.empty_like(x)
            _core.decompress_into(parsed, want, 1)
        except EbgcError:
            with pytest.raises(EbgcError):
                grid_decode(bad, x)
            refused += 1
            continue
        assert grid_decode(bad, x).tobytes() == want.tobytes()
        agree += 1
    assert refused > 0 and agree > 0


def test_grid_decoder_reads_every_blob_the_plan_gives_the_device():
    """Every stored blob layout (tests/fixtures: older encoders' too) that the plan decodes on the
    device, the grid decoder reads to the CPU's bits; the one it leaves to the host (the serial
    context layout) it refuses with a typed error."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    refused = 0
    for path in sorted((Path(__file__).parent / "fixtures").glob("*.ebgc")):
        blob = path.read_bytes()
        want = ebgc.decompress(blob)
        like = np.empty(want.shape, ml_dtypes.bfloat16 if want.dtype.name == "bfloat16" else want.dtype)
        if _core._decompress_where_device(_core.inspect(blob)) == "device":
            assert grid_decode(blob, like).tobytes() == want.tobytes(), path.name
        else:
            with pytest.raises(InvalidArgumentError):
                grid_decode(blob, like)
            refused += 1
    assert refused >= 1
