"""zarr: chunked float arrays through ebgc in both zarr formats, in memory and on disk.

* zarr v3: ``ebgc.integrations.zarr.EBGCCodec`` as the array's serializer (codec name "ebgc",
  found through the ``zarr.codecs`` entry point or registered on import);
* zarr v2: the numcodecs codec ``ebgc.integrations.numcodecs.EBGC`` as the compressor.

Every value is checked against the bound recomputed here, chunk by chunk, from the chunk zarr
actually hands the codec: a partial edge chunk is padded with the array's fill value first, so in
rel mode its range (and bound) is that of the data *and* the fill value (see `padded_chunk`).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

import numcodecs  # noqa: E402  (a dependency of zarr)
from zarr.core.buffer import default_buffer_prototype  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

import ebgc  # noqa: E402
from conftest import assert_within_bound, bits, expected_abs_bound  # noqa: E402
from ebgc.integrations.numcodecs import EBGC  # noqa: E402
from ebgc.integrations.zarr import CODEC_NAME, EBGCCodec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPE, CHUNKS = (37, 23), (10, 8)  # 4 x 3 chunks; the last row and column of chunks are partial
EB = 1e-3
FLOATS = [np.float32, np.float64, np.float16]


# ---- helpers ------------------------------------------------------------------------------------

def make_data(shape, dtype, seed=0):
    """Laplace values around 10 (so a fill value of 0 lies outside the data's range), with NaN and
    +-Inf in a full chunk and in the last, partial, chunk."""
    x = (np.random.default_rng(seed).laplace(size=shape) + 10.0).astype(dtype)
    flat = x.reshape(-1)
    flat[[3, 50, flat.size - 1]] = [np.nan, np.inf, -np.inf]
    x[-2, -3] = np.nan
    return x


def chunk_regions(shape, chunks):
    """(chunk index, region of the array it covers) for every chunk of a regular grid."""
    grid = [range(math.ceil(s / c)) for s, c in zip(shape, chunks)]
    for idx in itertools.product(*grid):
        yield idx, tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))


def padded_chunk(x, region, chunks, fill_value):
    """The chunk as the codec sees it. zarr encodes whole chunks: it pads a partial edge chunk with
    the array's fill value before encoding it (zarr.core.codec_pipeline._merge_chunk_array). In rel
    mode the bound is error_bound x (max - min) of *this* array's finite values, so a finite fill
    value outside the data's range widens an edge chunk's bound; NaN padding does not (not finite).
    Built here independently of zarr; the blob's own bound must agree with it."""
    out = np.full(chunks, fill_value, dtype=x.dtype)
    out[tuple(slice(0, r.stop - r.start) for r in region)] = x[region]
    return native(out)  # ebgc decodes big-endian data to native order


def native(a):
    """a's values in native byte order (bits() reads raw bytes)."""
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("="))


def assert_values_within(x, y, bound):
    """y reconstructs x within the absolute bound: NaN (bits) and +-Inf exact, finite values within
    `bound` in float64, and bit-exact where the bound is 0."""
    x, y = native(x), native(y)
    assert x.shape == y.shape
    with np.errstate(invalid="ignore"):
        nan, inf = np.isnan(x), np.isinf(x)
        assert np.array_equal(nan, np.isnan(y))
        assert np.array_equal(bits(x)[nan], bits(y)[nan])
        assert np.array_equal(x[inf], y[inf])
    fin = ~(nan | inf)
    err = np.abs(y[fin].astype(np.float64) - x[fin].astype(np.float64))
    assert np.all(err <= bound), f"max error {err.max()!r} over the bound {bound!r}"
    if bound == 0:
        assert np.array_equal(bits(x)[fin], bits(y)[fin])


def raw(store, key: str) -> bytes:
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    assert buf is not None, key
    return buf.to_bytes()


def put(store, key: str, data: bytes) -> None:
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def check_array(x, y, *, chunks, fill_value, mode, error_bound, blob_of=None):
    """Check the read-back array y against x, chunk by chunk, with the bound of each padded chunk.
    blob_of(chunk index) -> the stored blob: then the blob itself is checked too (its claimed bound
    is the one recomputed from the padded chunk, and it decodes to what zarr returned).
    Returns [(bound of the padded chunk, bound of the chunk's data alone, chunk is partial)]."""
    assert y.shape == x.shape and y.dtype == x.dtype
    out = []
    for idx, region in chunk_regions(x.shape, chunks):
        padded = padded_chunk(x, region, chunks, fill_value)
        bound = expected_abs_bound(padded, mode, error_bound)
        assert_values_within(x[region], y[region], bound)
        if blob_of is not None:
            blob = blob_of(idx)
            decoded = ebgc.decompress(blob)
            info = assert_within_bound(padded, decoded, blob)  # recomputes the bound from `padded`
            assert info["abs_bound"] == bound and info["mode"] == mode
            valid = tuple(slice(0, r.stop - r.start) for r in region)
            np.testing.assert_array_equal(bits(decoded[valid]), bits(native(y[region])))
        partial = any(r.stop - r.start < c for r, c in zip(region, chunks))
        out.append((bound, expected_abs_bound(x[region], mode, error_bound), partial))
    return out


def make_store(where, tmp_path):
    if where == "memory":
        return zarr.storage.MemoryStore()
    return zarr.storage.LocalStore(tmp_path / "a.zarr")


def reopen(where, store, tmp_path):
    if where == "memory":
        return zarr.open_array(store, mode="r")
    return zarr.open_array(str(tmp_path / "a.zarr"), mode="r")  # a new store object, from disk


def create(store, fmt, dtype, fill_value, *, mode="rel", error_bound=EB, shape=SHAPE, chunks=CHUNKS, **kw):
    if fmt == 3:
        return zarr.create_array(store, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
                                 serializer=EBGCCodec(error_bound, mode=mode), compressors=None, **kw)
    return zarr.create_array(store, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
                             compressors=EBGC(error_bound, mode=mode), filters=None, zarr_format=2, **kw)


def expected_codec_json(fmt, error_bound=EB, mode="rel"):
    config = {"error_bound": error_bound, "mode": mode, "coder": "auto", "threads": None}
    return {"name": "ebgc", "configuration": config} if fmt == 3 else {"id": "ebgc", **config}


@pytest.fixture(autouse=True, scope="module")
def numcodecs_knows_ebgc():
    """zarr format 2 metadata names its compressor by numcodecs id ("ebgc"), which numcodecs finds
    through the ``numcodecs.codecs`` entry point of an *installed* ebgc. The ebgc under test may be
    an in-tree build on PYTHONPATH with no (or another build's) metadata: register the codec for
    these tests only where no entry point offers it, and leave numcodecs' registry as found."""
    from numcodecs.registry import codec_registry, entries

    if "ebgc" in codec_registry or "ebgc" in entries:
        yield
        return
    numcodecs.register_codec(EBGC)
    yield
    codec_registry.pop("ebgc", None)


# ---- both formats, every float dtype, memory and disk -------------------------------------------

@pytest.mark.parametrize("fill_value", [0.0, np.nan], ids=["fill0", "fillnan"])
@pytest.mark.parametrize("where", ["memory", "disk"])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("fmt", [3, 2], ids=["v3", "v2"])
def test_chunked_round_trip(fmt, dtype, where, fill_value, tmp_path):
    x = make_data(SHAPE, dtype)
    store = make_store(where, tmp_path)
    a = create(store, fmt, dtype, fill_value)
    a[...] = x  # every chunk written once, whole (partial writes would re-encode decoded data)
    y = a[...]
    meta = a.metadata

    bounds = check_array(x, y, chunks=CHUNKS, fill_value=fill_value, mode="rel", error_bound=EB,
                         blob_of=lambda idx: raw(store, meta.encode_chunk_key(idx)))
    # The padding subtlety is exercised: a fill value of 0 outside the data widens every partial
    # chunk's bound; NaN padding leaves each chunk the bound of its own data.
    partial = [(padded, own) for padded, own, is_partial in bounds if is_partial]
    full = [(padded, own) for padded, own, is_partial in bounds if not is_partial]
    assert len(partial) == 6 and len(full) == 6
    assert all(padded == own for padded, own in full)
    if np.isnan(fill_value):
        assert all(padded == own for padded, own in partial)
    else:
        assert all(padded > own for padded, own in partial)

    # The array's JSON metadata names the codec with its configuration.
    if fmt == 3:
        doc = json.loads(raw(store, "zarr.json"))
        assert doc["codecs"] == [expected_codec_json(3)]
    else:
        doc = json.loads(raw(store, ".zarray"))
        assert doc["compressor"] == expected_codec_json(2) and doc["filters"] is None
        assert np.dtype(doc["dtype"]) == np.dtype(dtype).newbyteorder("<")

    # Reopened (from disk: a new store), it reads the same values with the same codec.
    b = reopen(where, store, tmp_path)
    assert b.metadata.zarr_format == fmt
    if fmt == 3:
        assert b.serializer == EBGCCodec(EB)
    else:
        assert b.compressors == (EBGC(EB),)
    z = b[...]
    assert z.dtype == x.dtype
    np.testing.assert_array_equal(bits(z), bits(y))
    np.testing.assert_array_equal(bits(b[5:33, 3:20]), bits(y[5:33, 3:20]))  # a region across chunks


@pytest.mark.parametrize("fmt", [3, 2], ids=["v3", "v2"])
def test_abs_mode_bound_is_the_same_for_every_chunk(fmt):
    x = make_data(SHAPE, np.float64, seed=1)
    store = zarr.storage.MemoryStore()
    a = create(store, fmt, np.float64, 0.0, mode="abs", error_bound=0.05)
    a[...] = x
    bounds = check_array(x, a[...], chunks=CHUNKS, fill_value=0.0, mode="abs", error_bound=0.05,
                         blob_of=lambda idx: raw(store, a.metadata.encode_chunk_key(idx)))
    assert {padded for padded, _, _ in bounds} == {0.05}


def test_v3_sharded_array():
    """EBGCCodec as the inner serializer of zarr's sharding codec (chunks inside shards)."""
    x = make_data((45, 30), np.float32, seed=2)
    a = zarr.create_array(zarr.storage.MemoryStore(), shape=x.shape, chunks=(10, 8), shards=(20, 16),
                          dtype=np.float32, fill_value=0.0, serializer=EBGCCodec(EB), compressors=None)
    a[...] = x
    doc = json.loads(raw(a.store, "zarr.json"))
    assert doc["codecs"][0]["name"] == "sharding_indexed"
    assert doc["codecs"][0]["configuration"]["codecs"] == [expected_codec_json(3)]
    check_array(x, a[...], chunks=(10, 8), fill_value=0.0, mode="rel", error_bound=EB)


def test_v3_big_endian_array():
    """A '>f4' array: the codec codes a byte-swapped copy and gives zarr back its byte order."""
    x = make_data(SHAPE, np.dtype(">f4"), seed=3)
    store = zarr.storage.MemoryStore()
    a = create(store, 3, x.dtype, np.nan)
    a[...] = x
    y = a[...]
    assert y.dtype == np.dtype(">f4")
    check_array(x, y, chunks=CHUNKS, fill_value=np.nan, mode="rel", error_bound=EB,
                blob_of=lambda idx: raw(store, a.metadata.encode_chunk_key(idx)))


def test_v2_big_endian_array_is_refused_not_corrupted():
    """A blob decodes in native order, and zarr 2 would read those bytes as the big-endian dtype:
    the numcodecs codec refuses such chunks instead of storing what would come back as garbage."""
    x = make_data(SHAPE, np.dtype(">f4"), seed=4)
    a = create(zarr.storage.MemoryStore(), 2, x.dtype, 0.0)
    with pytest.raises(ebgc.UnsupportedDTypeError, match="big-endian"):
        a[...] = x


# ---- corrupted and foreign chunks ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", [3, 2], ids=["v3", "v2"])
def test_corrupted_chunk_is_a_format_error(fmt):
    x = make_data(SHAPE, np.float32, seed=5)
    store = zarr.storage.MemoryStore()
    a = create(store, fmt, np.float32, np.nan)
    a[...] = x
    key = a.metadata.encode_chunk_key((1, 1))
    good = raw(store, key)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    for bad in (bytes(flipped), good[: len(good) // 2]):
        put(store, key, bad)
        with pytest.raises(ebgc.FormatError):
            a[...]
        with pytest.raises(ebgc.FormatError):
            a[10:20, 8:16]
        np.testing.assert_array_equal(bits(a[:10, :8]), bits(zarr.open_array(store, mode="r")[:10, :8]))
    put(store, key, good)
    check_array(x, a[...], chunks=CHUNKS, fill_value=np.nan, mode="rel", error_bound=EB)


def test_v3_foreign_blob_in_a_chunk_is_refused():
    """A valid ebgc blob that is not this chunk (other shape, other dtype, larger than the chunk)
    is a FormatError, never reshaped or reinterpreted into the array."""
    store = zarr.storage.MemoryStore()
    a = create(store, 3, np.float32, np.nan)
    a[...] = make_data(SHAPE, np.float32, seed=6)
    key = a.metadata.encode_chunk_key((0, 0))
    vals = np.arange(80.0).reshape(CHUNKS)
    foreign = [
        ebgc.compress(vals.astype(np.float32).reshape(8, 10), EB),  # same size, other shape
        ebgc.compress(vals.astype(np.float16), EB),  # same shape, other dtype
        ebgc.compress(vals.astype(np.float64), EB),  # decodes to more bytes than the chunk
        ebgc.compress(np.ones(10**5, np.float32), EB),  # a tiny blob of a large array
    ]
    for blob in foreign:
        put(store, key, blob)
        with pytest.raises(ebgc.FormatError):
            a[:10, :8]
    put(store, key, ebgc.compress(np.ones(10**5, np.float32), EB))
    with pytest.raises(ebgc.OutputLimitError):  # refused before its output is allocated
        a[:10, :8]


def test_v3_max_output_refuses_larger_chunks():
    store = zarr.storage.MemoryStore()
    a = zarr.create_array(store, shape=SHAPE, chunks=CHUNKS, dtype=np.float32, fill_value=np.nan,
                          serializer=EBGCCodec(EB, max_output=64), compressors=None)
    assert json.loads(raw(store, "zarr.json"))["codecs"][0]["configuration"]["max_output"] == 64
    a[...] = make_data(SHAPE, np.float32)  # encoding is not limited
    with pytest.raises(ebgc.OutputLimitError):
        a[...]  # a chunk is 10 x 8 x 4 = 320 bytes


# ---- the codec: configuration, refusals, registration -------------------------------------------

def test_codec_configuration_round_trip():
    c = EBGCCodec(2e-3, mode="ABS", coder="Huffman", threads=np.int64(2))
    d = c.to_dict()
    assert d == {"name": "ebgc", "configuration": {"error_bound": 2e-3, "mode": "abs", "coder": "huffman",
                                                    "threads": 2}}
    assert json.loads(json.dumps(d)) == d and type(d["configuration"]["threads"]) is int
    again = EBGCCodec.from_dict(d)
    assert again == c and hash(again) == hash(c) and again.to_dict() == d
    assert pickle.loads(pickle.dumps(c)) == c
    assert EBGCCodec.from_dict({"name": "ebgc"}) == EBGCCodec()  # configuration optional: defaults
    assert EBGCCodec().to_dict()["configuration"] == {"error_bound": 1e-3, "mode": "rel", "coder": "auto",
                                                      "threads": None}
    assert EBGCCodec(1e-3, max_output=1000).to_dict()["configuration"]["max_output"] == 1000
    assert EBGCCodec(1e-3) != EBGCCodec(1e-2)
    assert "error_bound=0.002" in repr(c)


def test_codec_refuses_bad_configuration_when_made():
    for kw in (dict(error_bound=-1.0), dict(error_bound=float("nan")), dict(error_bound="1e-3"),
               dict(mode="pw_rel"), dict(coder="zstd"), dict(threads=0), dict(threads=True),
               dict(max_output=0), dict(max_output=1.5)):
        with pytest.raises(ebgc.InvalidArgumentError):
            EBGCCodec(**kw)
    with pytest.raises(ebgc.InvalidArgumentError):
        EBGCCodec.from_dict({"name": "ebgc", "configuration": {"error_bound": 1e-3, "level": 3}})
    with pytest.raises(ebgc.InvalidArgumentError):
        EBGCCodec.from_dict({"name": "ebgc", "configuration": {"mode": "rel", "error_bound": 0}})
    with pytest.raises(ValueError):
        EBGCCodec.from_dict({"name": "numcodecs.ebgc", "configuration": {}})


@pytest.mark.parametrize("dtype", ["int32", "uint8", "complex64", "bool"])
def test_codec_refuses_non_float_arrays(dtype):
    with pytest.raises(ebgc.UnsupportedDTypeError):
        zarr.create_array(zarr.storage.MemoryStore(), shape=(10,), chunks=(5,), dtype=dtype,
                          serializer=EBGCCodec(), compressors=None)
    codec = EBGCCodec()
    with pytest.raises(ebgc.UnsupportedDTypeError):
        codec.validate(shape=(10,), dtype=zarr.dtype.parse_dtype(dtype, zarr_format=3), chunk_grid=None)


def test_registered_in_zarr_without_clashing_with_numcodecs():
    assert zarr.registry.get_codec_class(CODEC_NAME) is EBGCCodec
    spec = {"name": "ebgc", "configuration": {"error_bound": 1e-4, "mode": "abs"}}
    assert zarr.registry._parse_array_bytes_codec(spec) == EBGCCodec(1e-4, mode="abs")
    # zarr keeps numcodecs codecs under "numcodecs.<id>"; numcodecs' own "ebgc" is the v2 codec
    with pytest.raises(KeyError):
        zarr.registry.get_codec_class("numcodecs.ebgc")
    assert type(numcodecs.get_codec({"id": "ebgc"})) is EBGC
    # v3 names the codec in the serializer slot only: zarr refuses it as a compressor, by type
    with pytest.raises(TypeError):
        zarr.create_array(zarr.storage.MemoryStore(), shape=(10,), chunks=(5,), dtype="float32",
                          compressors=[EBGCCodec()])


def _declared_entry_point() -> str:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["entry-points"]["zarr.codecs"]["ebgc"]


def test_entry_point_is_declared_and_loads_the_codec():
    from importlib.metadata import EntryPoint

    value = _declared_entry_point()
    assert value == "ebgc.integrations.zarr:EBGCCodec"
    ep = EntryPoint(name="ebgc", value=value, group="zarr.codecs")
    assert ep.load() is EBGCCodec
    registry = zarr.registry.Registry()  # what zarr does with each "zarr.codecs" entry point
    registry.lazy_load_list.append(ep)
    registry.lazy_load()
    assert list(registry.values()) == [EBGCCodec]


def test_entry_point_opens_a_store_in_a_fresh_process(tmp_path):
    """A process that never imports ebgc.integrations.zarr reads a v3 ebgc array: zarr finds the
    codec through the entry point declared in pyproject.toml (installed here as the metadata of a
    stand-in distribution, since the ebgc under test is not pip-installed)."""
    x = make_data(SHAPE, np.float32, seed=7)
    a = create(zarr.storage.LocalStore(tmp_path / "a.zarr"), 3, np.float32, np.nan)
    a[...] = x
    np.save(tmp_path / "y.npy", a[...])

    site = tmp_path / "site"
    dist = site / "ebgc_zarr_entry_point_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ebgc-zarr-entry-point-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[zarr.codecs]\nebgc = {_declared_entry_point()}\n")
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import zarr
        assert "ebgc.integrations.zarr" not in sys.modules
        a = zarr.open_array(sys.argv[1], mode="r")
        y = a[...]
        assert "ebgc.integrations.zarr" in sys.modules, "not loaded through the entry point"
        assert type(a.serializer).__name__ == "EBGCCodec"
        want = np.load(sys.argv[2])
        assert y.dtype == want.dtype and y.tobytes() == want.tobytes()
        print("ok")
    """)
    ebgc_root = Path(ebgc.__file__).resolve().parents[1]  # the ebgc under test, not an installed one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ebgc_root)]))
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.zarr"), str(tmp_path / "y.npy")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


# ---- byte order at the front door ---------------------------------------------------------------

def test_explicit_little_endian_dtype_is_accepted():
    x = np.ones(1000, np.dtype("f4").newbyteorder("<"))
    blob = ebgc.compress(x, 1e-3)
    y = ebgc.decompress(blob)
    assert y.dtype == np.float32 and np.array_equal(y, x)
    z = np.random.default_rng(8).standard_normal(1000).astype("<f4")
    assert ebgc.compress(z, 1e-3) == ebgc.compress(z.astype(np.float32), 1e-3)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_big_endian_input_round_trips_within_bound(dtype):
    x = make_data((64, 33), dtype, seed=9)
    x_be = x.astype(np.dtype(dtype).newbyteorder(">"))
    before = x_be.tobytes()
    blob = ebgc.compress(x_be, 1e-3)
    assert x_be.tobytes() == before  # swapped into a copy, the input untouched
    assert blob == ebgc.compress(x, 1e-3)  # the same blob as the native-order values
    y = ebgc.decompress(blob)
    assert y.dtype == np.dtype(dtype)  # decoded in native order
    assert_within_bound(x, y, blob)
    blob_strided = ebgc.compress(x_be[::2, ::-3], 1e-3)  # a strided big-endian view
    assert_within_bound(x[::2, ::-3], ebgc.decompress(blob_strided), blob_strided)
