"""Whole messages in one grid, proven on the CPU: the host runners execute the message kernels'
per-thread bodies over one grid of all of a message's tensors, in the device's thread order, with
one scan of sizes and one of outliers for the whole message:
- fast mode (bitpack): grid/message_grid.hpp over grid/bitpack_block_steps.hpp, tile by tile;
- ratio mode (auto, context, huffman): grid/context_message.hpp over grid/context_lane_steps.hpp
  and grid/huffman_lane_steps.hpp, lane by lane, the host choosing each tensor's coder and tables
  (bit-packed ones through the fast grid).
Each tensor's blob must still be the one the device writes for it alone (the CPU codec's bytes for
bitpack, context and huffman, with no low rank and the device's chunk size) byte for byte, and its
reconstruction the same bits, whatever its neighbours in the message. Runs
without a GPU; the launches, the look-back across rows and the copies are left for
tests/test_cuda.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc
from ebgc import _core
from ebgc.errors import InvalidArgumentError

from strategies import error_bounds, float_arrays, special_values

MODES = _core.VOCABULARY["modes"]
CODERS = _core.VOCABULARY["coders"]
CHUNK = _core.DEFAULT_CHUNK_LOG2
GRID_CHUNK = _core.GRID_CHUNK_LOG2
TILE = 8192  # values of one message tile (256 blocks of 32)


def dtype_name(x: np.ndarray) -> str:
    return "bfloat16" if x.dtype.name == "bfloat16" else x.dtype.name


def buf(a):
    return a if a is None or a.dtype.name != "bfloat16" else a.view(np.uint16)


def cpu_blob(x, eb, mode, coder="bitpack", reconstruction=None):
    """What the device writes for x alone: the CPU codec's bit-packed blob; for the ratio coders the
    single-tensor host runner's (tests/test_grid.py: the CPU codec's bytes, but that the device
    bit-packs with its fast mode's chunks)."""
    if coder == "bitpack":
        return _core.compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS[coder], 1, chunk_log2=CHUNK,
                              low_rank=False, reconstruction=buf(reconstruction))
    return _core._grid_compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS[coder],
                                reconstruction=buf(reconstruction))


def assert_message_is_cpu_blobs(xs, eb, mode, coder="bitpack"):
    """Each blob and reconstruction of the message grid equals the CPU codec's for that tensor alone."""
    xs = [np.ascontiguousarray(x) for x in xs]
    recs = [np.empty_like(x) for x in xs]
    dtype = dtype_name(xs[0]) if xs else "float32"
    blobs = _core._grid_compress_message([buf(x) for x in xs], dtype, eb, MODES[mode], CODERS[coder],
                                         reconstructions=[buf(r) for r in recs])
    assert len(blobs) == len(xs)
    assert_assembled_equal(xs, eb, mode, coder, blobs)
    for k, (x, blob, rec) in enumerate(zip(xs, blobs, recs)):
        rec_cpu = np.empty_like(x)
        expected = cpu_blob(x, eb, mode, coder, reconstruction=rec_cpu)
        assert blob == expected, f"tensor {k} ({x.shape}): {len(blob)} vs CPU {len(expected)} bytes"
        assert rec.tobytes() == rec_cpu.tobytes(), f"tensor {k}: reconstruction differs"
    return blobs


def assert_assembled_equal(xs, eb, mode, coder, blobs, previous=None, previous2=None):
    """The same message with its blobs assembled as in device memory (each front placed next to its
    streams, where they stay, and the checksum computed by parts' terms): the same bytes."""
    assembled = _core._grid_compress_message([buf(x) for x in xs], dtype_name(xs[0]) if xs else "float32", eb,
                                             MODES[mode], CODERS[coder], previous=previous, previous2=previous2,
                                             assemble=True)
    assert assembled == blobs


def gradient_like(rng, n, dtype=np.float32):
    return (rng.standard_normal(n) * rng.exponential(1.0, n)).astype(dtype)


# Sizes around every edge of the message grids: blocks, segments, tiles, lanes, chunks of both.
EDGES = [1, 7, 8, 9, 31, 32, 33, 1023, 1024, 1025, TILE - 1, TILE, TILE + 1, 2**GRID_CHUNK - 1, 2**GRID_CHUNK,
         2**GRID_CHUNK + 1, 2**CHUNK - 1, 2**CHUNK, 2**CHUNK + 1, 100_003]
RATIO = ["auto", "context", "huffman"]
ALL = ["bitpack"] + RATIO


@pytest.mark.parametrize("coder", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("rel", 1e-4), ("abs", 1e-3), ("abs", 1e-300)])
def test_message_of_every_edge_size(coder, dtype, mode, eb):
    rng = np.random.default_rng(1)
    xs = [gradient_like(rng, n, dtype) * 10.0 ** (k % 5 - 2) for k, n in enumerate(EDGES)]
    for x in xs[4:]:
        x[[3, 5, x.size - 1]] = [np.nan, np.inf, -np.inf]
    blobs = assert_message_is_cpu_blobs(xs, eb, mode, coder)
    if coder != "auto":
        assert {ebgc.info(b)["coder"] for b in blobs} == {coder}


def test_auto_message_mixes_coders():
    # constant, tiny, noise and smooth tensors in one message: the host picks a coder per tensor
    rng = np.random.default_rng(9)
    xs = [np.full(5000, 3.0, np.float32), gradient_like(rng, 3), rng.standard_normal(200_000).astype(np.float32),
          np.linspace(0, 1, 70_000, dtype=np.float32), rng.integers(-2**20, 2**20, 50_000).astype(np.float32),
          rng.uniform(-1, 1, 5000).astype(np.float32), gradient_like(rng, 50_000)]
    picked = set()
    for mode, eb in (("rel", 1e-2), ("abs", 1e-7), ("rel", 1e-7)):
        blobs = assert_message_is_cpu_blobs(xs, eb, mode, "auto")
        picked |= {ebgc.info(b)["coder"] for b in blobs}
    assert {"context", "huffman", "raw"} <= picked, picked


@pytest.mark.parametrize("coder", ALL)
def test_shapes_and_empty_tensors_keep_their_place(coder):
    rng = np.random.default_rng(2)
    xs = [np.zeros((0, 3), np.float32), gradient_like(rng, 600).reshape(20, 30), np.zeros(0, np.float32),
          gradient_like(rng, 3 * 3 * 64 * 64).reshape(64, 64, 3, 3), np.full(5, 7.0, np.float32),
          np.zeros((4, 0), np.float32)]
    blobs = assert_message_is_cpu_blobs(xs, 1e-3, "rel", coder)
    for x, b in zip(xs, blobs):
        assert tuple(ebgc.info(b)["shape"]) == x.shape
        assert ebgc.decompress(b).shape == x.shape


def test_no_tensors_and_only_empty_tensors():
    assert _core._grid_compress_message([], "float32", 1e-3, MODES["rel"], CODERS["auto"]) == []
    assert_message_is_cpu_blobs([np.zeros(0, np.float64), np.zeros((2, 0), np.float64)], 1e-3, "abs")


@pytest.mark.parametrize("coder", ALL)
def test_many_small_tensors_one_grid(coder):
    # a resnet-like message: biases and norms of a few values between conv kernels
    rng = np.random.default_rng(3)
    sizes = [int(s) for s in rng.choice([1, 3, 64, 128, 576, 9408, 36_864, 147_456], 120)]
    assert_message_is_cpu_blobs([gradient_like(rng, n) for n in sizes], 1e-2, "rel", coder)


@pytest.mark.parametrize("coder", ALL)
def test_outliers_in_every_tensor_and_tile(coder):
    rng = np.random.default_rng(4)
    xs = []
    for n in (150_001, 7, 9000, 70_000):
        x = gradient_like(rng, n)
        x[rng.integers(0, n, max(1, n // 8))] = np.nan
        x[::97] = np.inf
        xs.append(x)
    assert_message_is_cpu_blobs(xs, 1e-2, "rel", coder)
    assert_message_is_cpu_blobs(xs, 1e-300, "abs", coder)  # every value an outlier


@pytest.mark.parametrize("coder", ALL)
def test_constant_and_all_nonfinite_tensors(coder):
    xs = [np.full(3000, 2.5, np.float64), np.full(100, np.nan, np.float64), np.array([np.inf, -np.inf, 0.0]),
          np.zeros(40_000, np.float64)]
    for mode, eb in (("rel", 1e-3), ("abs", 1e-3)):
        assert_message_is_cpu_blobs(xs, eb, mode, coder)


@pytest.mark.parametrize("coder", ALL)
def test_bfloat16_message(coder):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(5)
    xs = [gradient_like(rng, n).astype(ml_dtypes.bfloat16) for n in (33, 40_000, 2**CHUNK + 1)]
    assert_message_is_cpu_blobs(xs, 1e-2, "rel", coder)


@pytest.mark.parametrize("coder", ALL)
def test_special_values_message(coder):
    for dtype in (np.float32, np.float64, np.float16):
        with np.errstate(over="ignore"):
            x = np.array(special_values(dtype) * 40, dtype=dtype)
        assert_message_is_cpu_blobs([x, x[::-1].copy(), x[:7].copy()], 1e-2, "rel", coder)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([np.float32, np.float64, np.float16]).flatmap(
           lambda d: st.lists(float_arrays(d, max_dims=3, max_side=40), min_size=1, max_size=6)),
       error_bounds(), st.sampled_from(["abs", "rel"]), st.sampled_from(ALL))
def test_message_property_adversarial(xs, eb, mode, coder):
    assert_message_is_cpu_blobs(xs, eb, mode, coder)


def test_refuses_bad_messages():
    x = np.zeros(10, np.float32)
    with pytest.raises(TypeError):  # a message grid holds one dtype (the buffer is not the dtype named)
        _core._grid_compress_message([x, np.zeros(10, np.float64)], "float32", 1e-3, MODES["rel"], CODERS["auto"])
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress_message([x], "float32", -1.0, MODES["rel"], CODERS["bitpack"])
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress_message([x], "float32", 1e-3, MODES["rel"], CODERS["bitpack"], reconstructions=[])
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress_message([x], "float32", 1e-3, MODES["rel"], CODERS["raw"])
    with pytest.raises(InvalidArgumentError):
        _core._grid_compress_message([np.zeros((4, 4), np.float32)[:, ::2]], "float32", 1e-3, MODES["rel"],
                                     CODERS["context"])


# ---- stream messages: each tensor predicted from its stream's last reconstructions ---------------

def runner_blob(x, eb, mode, coder, previous=None, previous2=None, reconstruction=None):
    """The device's single-tensor blob (the host runner), stream terms included."""
    return _core._grid_compress(buf(x), dtype_name(x), eb, MODES[mode], CODERS[coder], previous=buf(previous),
                                previous2=buf(previous2), reconstruction=buf(reconstruction))


def assert_stream_message(xs, eb, mode, coder, previous, previous2):
    recs = [np.empty_like(x) for x in xs]
    blobs = _core._grid_compress_message([buf(x) for x in xs], dtype_name(xs[0]), eb, MODES[mode], CODERS[coder],
                                         reconstructions=[buf(r) for r in recs],
                                         previous=[buf(p) for p in previous], previous2=[buf(p) for p in previous2])
    assert_assembled_equal(xs, eb, mode, coder, blobs, [buf(p) for p in previous], [buf(p) for p in previous2])
    for k, (x, blob, rec) in enumerate(zip(xs, blobs, recs)):
        rec_alone = np.empty_like(x)
        alone = runner_blob(x, eb, mode, coder, previous[k], previous2[k], rec_alone)
        assert blob == alone, f"tensor {k} ({x.shape}): {len(blob)} vs alone {len(alone)} bytes"
        assert rec.tobytes() == rec_alone.tobytes()
    return blobs, recs


@pytest.mark.parametrize("coder", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_stream_rounds_predict_every_tensor_as_alone(coder, dtype):
    """Four rounds of a message whose tensors drift: from round 2 on the blend is fitted for every
    tensor at once, and each blob (predictor, coefficients, codes) is the one it gets alone."""
    rng = np.random.default_rng(12)
    shapes = [(64, 32, 3, 3), (1000,), (3,), (2**GRID_CHUNK + 5,), (300, 200), (40_000,)]
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    history = []
    predictors = set()
    for _ in range(4):
        xs = [(1.03 * x + 0.02 * rng.standard_normal(x.shape)).astype(dtype) for x in xs]
        p1 = [h for h in history[0]] if history else [None] * len(xs)
        p2 = [h for h in history[1]] if len(history) > 1 else [None] * len(xs)
        blobs, recs = assert_stream_message(xs, 1e-3, "rel", coder, p1, p2)
        predictors |= {ebgc.info(b)["predictor"] for b in blobs}
        history = [recs] + history[:1]
    assert {"scaled-previous", "blend-two-previous"} & predictors


def test_stream_message_mixes_predicted_and_new_tensors():
    # tensors with and without a previous reconstruction in one message; abs and rel bounds
    rng = np.random.default_rng(13)
    xs = [rng.standard_normal(n).astype(np.float32) for n in (5000, 70_000, 17, 9000)]
    p1 = [(x + 0.01 * rng.standard_normal(x.size)).astype(np.float32) for x in xs]
    p1[1] = None
    p1[3] = np.full(9000, np.nan, np.float32)  # a useless previous: zero prediction wins
    p2 = [None, None, (xs[2] * 0.5).astype(np.float32), None]
    for coder in ALL:
        for mode, eb in (("rel", 1e-2), ("abs", 1e-4)):
            assert_stream_message(xs, eb, mode, coder, p1, p2)
