"""Hostile blobs: truncated, bit-flipped, random, foreign, or crafted with a valid checksum.

decompress() and info() must answer every invalid blob with ebgc.FormatError (or a subclass):
never a crash, a hang, a huge allocation or another exception type. Blobs whose payload was
altered and then re-sealed with a correct CRC may happen to decode; then the result must at least
be an array of the declared shape and dtype.
"""

from __future__ import annotations

import functools
import math
import struct
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ebgc
from ebgc.vocabulary import dtype_from_name
from blobfmt import DTYPE_NAMES, Blob, chunk_directory, directory_offset, parse, reseal, seal, varint
from conftest import CODERS

# --------------------------------------------------------------------------------------------------
# Sample blobs
# --------------------------------------------------------------------------------------------------


def _input(case: str) -> tuple[np.ndarray, float, str]:
    rng = np.random.default_rng(2024)
    if case == "f32_rel_1d":
        return rng.standard_normal(100).astype(np.float32), 1e-2, "rel"
    if case == "f64_abs_2d":
        return (rng.standard_normal((6, 9)) * 3).astype(np.float64), 1e-3, "abs"
    if case == "outliers":
        x = rng.standard_normal(64).astype(np.float32)
        x[[3, 10, 11, 40]] = [np.nan, np.inf, -np.inf, np.nan]
        x[20] = 1e30
        return x, 1e-3, "abs"
    if case == "f16_outliers":  # 16-bit: verified in float16, raw 2-byte outliers
        x = (rng.standard_normal(90) * 100).astype(np.float16)
        x[[2, 7, 50]] = [np.nan, np.inf, 65504]
        return x, 1e-3, "rel"
    if case == "bf16_3d":
        x = (rng.standard_normal((4, 3, 3)) * 1e-3).astype(dtype_from_name("bfloat16"))
        x[0, 0, 0] = np.nan
        return x, 1e-2, "rel"
    if case == "multichunk_sparse":  # 70000 values > one 2^16 chunk, still a small blob
        x = np.zeros(70000, np.float64)
        idx = rng.choice(x.size, 40, replace=False)
        x[idx] = rng.standard_normal(40)
        x[[5, 66000]] = [np.nan, -np.inf]
        return x, 1e-3, "rel"
    raise ValueError(case)


CASES = ["f32_rel_1d", "f64_abs_2d", "outliers", "f16_outliers", "bf16_3d"]
BLOB_IDS = [f"{c}-{k}" for c in CASES for k in CODERS] + [
    f"multichunk_sparse-{k}" for k in ("context", "huffman", "bitpack")
] + ["empty-raw", "scalar-auto"]


@functools.lru_cache(maxsize=None)
def sample(blob_id: str) -> tuple[bytes, np.ndarray]:
    case, coder = blob_id.rsplit("-", 1)
    if case == "empty":
        x, eb, mode = np.zeros((3, 0, 2), np.float32), 1e-2, "rel"
    elif case == "scalar":
        x, eb, mode = np.array(2.5, np.float64), 1e-2, "abs"
    else:
        x, eb, mode = _input(case)
    blob = ebgc.compress(x, eb, mode=mode, coder=coder)
    return blob, x


def _positions(n: int, limit: int = 600) -> list[int]:
    """Every index below n when n is small; else the first 256 (header, outlier list, tables, chunk
    directory; fewer when limit is small), the last 64 and an even spread in between. For tests that re-seal in Python."""
    if n <= limit:
        return list(range(n))
    head, tail = min(256, limit // 2), min(64, limit // 8)
    mid = np.linspace(head, n - tail, limit - head - tail, endpoint=False).astype(int).tolist()
    return sorted(set(range(head)) | set(mid) | set(range(n - tail, n)))


def _expect_format_error(blob, **kw):
    with pytest.raises(ebgc.FormatError):
        ebgc.decompress(blob, **kw)


def _decode_or_format_error(blob, shape, dtype, threads=None):
    try:
        y = ebgc.decompress(blob, threads=threads)
    except ebgc.FormatError:
        return None
    assert isinstance(y, np.ndarray)
    assert y.shape == tuple(shape) and y.dtype == np.dtype(dtype)
    return y


@pytest.mark.parametrize("blob_id", BLOB_IDS)
def test_sample_is_valid(blob_id):
    blob, x = sample(blob_id)
    y = ebgc.decompress(blob)
    assert y.shape == x.shape
    b = parse(blob)  # our independent reader agrees with the writer
    assert b.to_bytes() == blob
    assert b.version == ebgc.FORMAT_VERSION == 1


# --------------------------------------------------------------------------------------------------
# Truncations and byte flips (the checksum must catch all of them)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("blob_id", BLOB_IDS)
def test_every_truncation(blob_id):
    blob, x = sample(blob_id)
    t0 = time.perf_counter()
    for k in range(len(blob)):
        cut = blob[:k]
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(cut)
        with pytest.raises(ebgc.FormatError):
            ebgc.info(cut)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("mask", [0xFF, 0x01, 0x80])
@pytest.mark.parametrize("blob_id", BLOB_IDS)
def test_every_byte_flip(blob_id, mask):
    blob, x = sample(blob_id)
    t0 = time.perf_counter()
    for i in range(len(blob)):
        b = bytearray(blob)
        b[i] ^= mask
        b = bytes(b)
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(b)
        with pytest.raises(ebgc.FormatError):
            ebgc.info(b)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("blob_id", ["f32_rel_1d-huffman", "outliers-context", "f64_abs_2d-bitpack"])
def test_flip_with_out(blob_id):
    blob, x = sample(blob_id)
    for i in range(len(blob)):
        b = bytearray(blob)
        b[i] ^= 0x10
        out = np.empty(x.shape, x.dtype)
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(bytes(b), out=out)


@pytest.mark.parametrize("blob_id", ["f32_rel_1d-context", "outliers-huffman", "empty-raw"])
def test_extension_detected(blob_id):
    blob, x = sample(blob_id)
    for tail in (b"\x00", b"\x00" * 4, blob[-4:], b"EBGC"):
        _expect_format_error(blob + tail)
        # trailing bytes with a re-sealed checksum: the payload size no longer matches
        _expect_format_error(seal(blob[:-4] + tail))
    _expect_format_error(blob + blob)


def test_checksum_error_type():
    blob, _ = sample("f32_rel_1d-huffman")
    b = bytearray(blob)
    b[len(b) // 2] ^= 0x04
    with pytest.raises(ebgc.ChecksumError):
        ebgc.decompress(bytes(b))
    b = bytearray(blob)
    b[-1] ^= 0x01  # the stored checksum itself
    with pytest.raises(ebgc.ChecksumError):
        ebgc.decompress(bytes(b))


# --------------------------------------------------------------------------------------------------
# Payload damage behind a valid checksum: exercises every decoder's own validation
# --------------------------------------------------------------------------------------------------

def _declared(blob: bytes):
    """(shape, dtype) that a consistent blob declares, or None when our reader finds it malformed."""
    try:
        b = parse(blob)
    except (AssertionError, IndexError, struct.error):
        return None
    if b.dtype not in DTYPE_NAMES or b.version != 1:
        return None
    return tuple(b.shape), dtype_from_name(DTYPE_NAMES[b.dtype])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("blob_id", BLOB_IDS)
def test_resealed_flips_never_crash(blob_id, threads):
    blob, x = sample(blob_id)
    t0 = time.perf_counter()
    body = blob[:-4]
    for i in _positions(len(body)):
        if i < 4:
            continue  # keep the magic: it is not what is tested here
        for mask in (0xFF, 0x01):
            b = bytearray(body)
            b[i] ^= mask
            b = seal(bytes(b))
            want = _declared(b)
            if want is None:
                with pytest.raises(ebgc.FormatError):
                    ebgc.decompress(b, threads=threads)
                continue
            shape, dtype = want
            if math.prod(shape) * np.dtype(dtype).itemsize > 2**28:
                continue  # declares a huge tensor: covered by the crafted-header tests
            _decode_or_format_error(b, shape, dtype, threads)
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("blob_id", [b for b in BLOB_IDS if not b.startswith(("empty", "scalar"))])
def test_resealed_payload_truncations(blob_id):
    blob, x = sample(blob_id)
    b = parse(blob)
    for k in _positions(len(b.payload), 300):
        c = Blob(**{**b.__dict__, "payload": b.payload[:k]})
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(c.to_bytes())
        # the payload size field still claims the full length
        c = Blob(**{**b.__dict__, "payload": b.payload[:k], "payload_size": len(b.payload)})
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(c.to_bytes())


@pytest.mark.parametrize("coder_blob", ["f32_rel_1d-context", "f32_rel_1d-huffman", "f32_rel_1d-bitpack",
                                        "outliers-context", "multichunk_sparse-huffman"])
@given(payload=st.binary(max_size=400), threads=st.sampled_from([1, 2]))
def test_resealed_random_payload(coder_blob, payload, threads):
    blob, x = sample(coder_blob)
    b = parse(blob)
    c = Blob(**{**b.__dict__, "payload": payload})
    _decode_or_format_error(c.to_bytes(), x.shape, x.dtype, threads)


@pytest.mark.parametrize("coder_blob", ["f32_rel_1d-context", "outliers-huffman", "multichunk_sparse-context",
                                        "f64_abs_2d-bitpack"])
@given(data=st.data())
def test_resealed_mutated_payload(coder_blob, data):
    blob, x = sample(coder_blob)
    b = parse(blob)
    p = bytearray(b.payload)
    for _ in range(data.draw(st.integers(1, 8), label="n_mutations")):
        i = data.draw(st.integers(0, len(p) - 1), label="pos")
        p[i] = data.draw(st.integers(0, 255), label="byte")
    c = Blob(**{**b.__dict__, "payload": bytes(p)})
    _decode_or_format_error(c.to_bytes(), x.shape, x.dtype, data.draw(st.sampled_from([1, 2])))


# --------------------------------------------------------------------------------------------------
# Random and foreign bytes
# --------------------------------------------------------------------------------------------------

@given(st.binary(max_size=2048))
def test_random_bytes(data):
    for b in (data, bytearray(data), np.frombuffer(data, np.uint8)):
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(b)
        with pytest.raises(ebgc.FormatError):
            ebgc.info(b)


@given(k=st.integers(0, 40), tail=st.binary(max_size=300), fix_crc=st.booleans())
def test_valid_prefix_random_tail(k, tail, fix_crc):
    blob, x = sample("outliers-context")
    b = blob[: min(k, len(blob) - 1)] + tail
    if fix_crc and len(b) >= 4:
        b = reseal(b)
    if b == blob:
        return
    _decode_or_format_error(b, x.shape, x.dtype)


@pytest.mark.parametrize("data", [
    b"", b"E", b"EB", b"EBG", b"EBGC", b"EBGC\x01", b"EBGC\x01\x00", b"\x00" * 64, b"\xff" * 64,
    b"EBGC" + b"\x00" * 60, b"EBGC\x01" + b"\xff" * 60, b"PK\x03\x04" + b"\x00" * 40,
    b"\x93NUMPY" + b"\x00" * 40,
])
def test_foreign_bytes(data):
    _expect_format_error(data)
    with pytest.raises(ebgc.FormatError):
        ebgc.info(data)
    _expect_format_error(seal(data))


def test_wrong_magic_even_with_valid_checksum():
    blob, _ = sample("f32_rel_1d-huffman")
    for magic in (b"EBGD", b"ebgc", b"\x00BGC", b"CGBE"):
        b = reseal(magic + blob[4:])
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(b)
        with pytest.raises(ebgc.FormatError):
            ebgc.info(b)


@pytest.mark.parametrize("version", [0, 2, 99, 255])
@pytest.mark.parametrize("resealed", [True, False])
def test_unsupported_version(version, resealed):
    blob, _ = sample("f32_rel_1d-context")
    b = bytearray(blob)
    b[4] = version
    b = reseal(bytes(b)) if resealed else bytes(b)
    if resealed:
        with pytest.raises(ebgc.VersionError):
            ebgc.decompress(b)
        with pytest.raises(ebgc.VersionError):
            ebgc.info(b)
    else:
        _expect_format_error(b)


def test_version_99_minimal_blob():
    # magic + version 99 and nothing that a v1 reader would understand
    b = seal(b"EBGC" + bytes([99]) + b"\x00" * 40)
    with pytest.raises(ebgc.VersionError):
        ebgc.decompress(b)


# --------------------------------------------------------------------------------------------------
# Crafted headers with a valid checksum
# --------------------------------------------------------------------------------------------------

def _template(coder="context", dtype=1) -> Blob:
    blob, _ = sample("f32_rel_1d-" + coder)
    b = parse(blob)
    b.dtype = dtype
    return b


def _quick_format_error(blob: bytes, limit_s: float = 2.0, *, header_level: bool = True):
    """decompress refuses the blob quickly; info too when the fault is in the header itself
    (info describes the header and need not decode a garbage payload)."""
    t0 = time.perf_counter()
    with pytest.raises(ebgc.FormatError):
        ebgc.decompress(blob)
    if header_level:
        with pytest.raises(ebgc.FormatError):
            ebgc.info(blob)
    for threads in (1, 2):
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(blob, threads=threads)
    assert time.perf_counter() - t0 < limit_s, "rejecting a crafted header took too long"


ABSURD_SHAPES = {
    "2^62": [2**62],
    "2^63": [2**63],
    "2^64-1": [2**64 - 1],
    "2^40+1": [2**40 + 1],
    "2^31x2^31": [2**31, 2**31],
    "2^32x2^32_wraps_to_0": [2**32, 2**32],  # the uint64 product is 0 (mod 2^64)
    "2^40x2^40_wraps_to_0": [2**40, 2**40],
    "2^32x2^32x0": [2**32, 2**32, 0],  # size 0, but numpy cannot represent it: refuse or decode
    "0x2^40x2^40": [0, 2**40, 2**40],  # likewise
    "2^21^3": [2**21, 2**21, 2**21],
    "16x2^4": [16] * 16,
    "17_dims": [1] * 17,
}


@pytest.mark.parametrize("coder", ["raw", "bitpack", "huffman", "context"])
@pytest.mark.parametrize("shape", list(ABSURD_SHAPES), ids=list(ABSURD_SHAPES))
def test_absurd_shape(shape, coder):
    dims = ABSURD_SHAPES[shape]
    b = _template(coder)
    b.shape = dims
    blob = b.to_bytes()
    if 0 in dims:
        # an honestly empty tensor may decode (shape kept); otherwise FormatError
        try:
            y = ebgc.decompress(blob)
        except ebgc.FormatError:
            return
        assert y.size == 0 and y.shape == tuple(dims)
        return
    _quick_format_error(blob)


@pytest.mark.parametrize("n_log2", [30, 34, 36])
def test_context_header_declaring_huge_tensor(n_log2):
    # Just enough payload bytes for the header's size plausibility check of a context blob with
    # the largest chunks (2^20 values), but a payload that is garbage (zeros): FORMAT.md has the
    # reader check the payload's structure before it allocates the output, so this must be a
    # quick FormatError, not a 4-256 GiB allocation (or a MemoryError).
    chunks = 2 ** (n_log2 - 20)
    b = _template("context")
    b.chunk_log2 = 20
    b.shape = [2**n_log2]
    b.payload = b"\x00" * (10 * chunks + 16)
    _quick_format_error(b.to_bytes(), limit_s=5.0, header_level=False)


@pytest.mark.parametrize("eb", [1e-2, 1e-4])  # few raw bits (lazy refills) / many (eager refills)
def test_context_raw_bits_cut_short(eb):
    """A context blob whose last chunk's raw-bit stream lost its last bytes (directory and
    checksum consistent) is refused, in both of the decoder's raw-bit loops."""
    rng = np.random.default_rng(8)
    x = rng.laplace(size=70000).astype(np.float32)  # two chunks
    blob = ebgc.compress(x, eb, mode="rel", coder="context")
    b = parse(blob)
    assert b.coder == 4
    start, lens, streams = chunk_directory(b)
    n_last = x.size - (len(lens) - 1) * (1 << b.chunk_log2)
    la, lb = lens[-1]
    assert (8 * lb >= n_last) == (eb < 1e-3)  # the case each parameter is for

    def rebuilt(cut):
        directory = b"".join(varint(a) + varint(c) for a, c in lens[:-1] + [(la, lb - cut)])
        body = b.payload[streams:len(b.payload) - cut]
        return Blob(**{**b.__dict__, "payload": b.payload[:start] + directory + body}).to_bytes()

    np.testing.assert_array_equal(ebgc.decompress(rebuilt(0)), ebgc.decompress(blob))
    for cut in (1, 2, 7, 8, 9):
        if cut <= lb:
            with pytest.raises(ebgc.FormatError):
                ebgc.decompress(rebuilt(cut))


@pytest.mark.parametrize("fault", ["short_chunk", "long_chunk", "trailing_byte", "missing_entry"])
@pytest.mark.parametrize("n_log2", [30, 36])
def test_huge_tensor_with_bad_chunk_directory(n_log2, fault):
    # Valid outliers and context tables, and a chunk directory for 2^(n_log2-20) chunks of 2^20
    # values that is wrong in one place. The directory is structure: it is checked before the
    # output (4 or 256 GiB) would be allocated, so this is a quick FormatError.
    b = _template("context")
    prefix = b.payload[: directory_offset(b)]
    chunks = 2 ** (n_log2 - 20)
    lens = [(8, 0)] * chunks
    streams = b"\x00\x00\x01\x00" * 2 * chunks  # both rANS states = 2^16, no words
    if fault == "short_chunk":
        lens[-1] = (7, 0)
        streams = streams[:-1]
    elif fault == "long_chunk":
        lens[-1] = (8, 1 << 40)
    elif fault == "trailing_byte":
        streams += b"\x00"
    elif fault == "missing_entry":
        lens = lens[:-1]
        streams += b"\x00" * 2  # keep payload_size plausible
    directory = b"".join(varint(a) + varint(c) for a, c in lens)
    b.chunk_log2 = 20
    b.shape = [2**n_log2]
    b.payload = prefix + directory + streams
    _quick_format_error(b.to_bytes(), limit_s=5.0)


@pytest.mark.parametrize("coder, n", [("raw", 2**30), ("bitpack", 2**30), ("huffman", 2**30),
                                      ("context", 2**30), ("raw", 5), ("bitpack", 10**6)])
def test_header_declaring_more_than_payload_holds(coder, n):
    b = _template(coder)
    b.shape = [n]
    _quick_format_error(b.to_bytes())


FIELD_TAMPERING = {
    "flags=1": dict(flags=1),
    "flags=255": dict(flags=255),
    "dtype=0": dict(dtype=0),
    "dtype=5": dict(dtype=5),  # (3, 4: float16, bfloat16)
    "dtype=255": dict(dtype=255),
    "mode=2": dict(mode=2),
    "mode=255": dict(mode=255),
    "predictor=200": dict(predictor=200),  # (ids 0, 1, ... may be taken by real predictors)
    "predictor=255": dict(predictor=255),
    "coder=5": dict(coder=5),  # the first id no coder has
    "coder=255": dict(coder=255),
    "chunk_log2=0": dict(chunk_log2=0),
    "chunk_log2=9": dict(chunk_log2=9),
    "chunk_log2=21": dict(chunk_log2=21),
    "chunk_log2=25": dict(chunk_log2=25),
    "chunk_log2=64": dict(chunk_log2=64),
    "chunk_log2=255": dict(chunk_log2=255),
    "ndim=255": dict(ndim=255),
    "ndim=2_one_dim": dict(ndim=2),
    "ndim=0_one_dim": dict(ndim=0),
    "eb=0": dict(error_bound=0.0),
    "eb=-1": dict(error_bound=-1.0),
    "eb=nan": dict(error_bound=float("nan")),
    "eb=inf": dict(error_bound=float("inf")),
    "abs=-1": dict(abs_bound=-1.0),
    "abs=nan": dict(abs_bound=float("nan")),
    "abs=-inf": dict(abs_bound=float("-inf")),
    "abs_mode_abs_ne_eb": dict(mode=0, abs_bound=123.0),
    "payload_size+1": dict(payload_size=-1),  # placeholder, set below
    "payload_size-1": dict(payload_size=-2),
    "payload_size=2^63": dict(payload_size=2**63),
}


@pytest.mark.parametrize("coder", ["raw", "bitpack", "huffman", "context"])
@pytest.mark.parametrize("field", list(FIELD_TAMPERING), ids=list(FIELD_TAMPERING))
def test_tampered_header_field(field, coder):
    b = _template(coder)
    changes = dict(FIELD_TAMPERING[field])
    if changes.get("payload_size") == -1:
        changes["payload_size"] = len(b.payload) + 1
    elif changes.get("payload_size") == -2:
        changes["payload_size"] = len(b.payload) - 1
    for k, v in changes.items():
        setattr(b, k, v)
    _quick_format_error(b.to_bytes())


def test_dtype_swap_raw_refused():
    # a raw float32 payload relabelled float64: the payload size no longer fits the shape
    b = _template("raw", dtype=2)
    _quick_format_error(b.to_bytes())


@given(data=st.data())
def test_fuzz_header_fields(data):
    # Random values in every header field of a valid blob, re-sealed: FormatError or a decode of
    # exactly the declared shape and dtype, never anything else.
    coder = data.draw(st.sampled_from(["raw", "bitpack", "huffman", "context"]), label="coder")
    b = _template(coder)
    byte = st.integers(0, 255)
    for name in ("flags", "dtype", "mode", "predictor", "coder", "chunk_log2"):
        if data.draw(st.booleans(), label=f"touch {name}"):
            setattr(b, name, data.draw(byte, label=name))
    if data.draw(st.booleans(), label="touch shape"):
        b.shape = data.draw(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 200), max_size=5), label="shape")
    if data.draw(st.booleans(), label="touch bounds"):
        f = st.floats(allow_nan=True, allow_infinity=True)
        b.error_bound = data.draw(f, label="eb")
        b.abs_bound = data.draw(f, label="abs")
    blob = b.to_bytes()
    t0 = time.perf_counter()
    try:
        y = ebgc.decompress(blob)
    except ebgc.FormatError:
        pass
    else:
        assert y.shape == tuple(b.shape)
        assert y.dtype == dtype_from_name(DTYPE_NAMES[b.dtype])
        assert b.flags == 0 and b.version == 1
        assert math.prod(b.shape) * y.itemsize <= 64 * len(blob) + 1024
    assert time.perf_counter() - t0 < 2
