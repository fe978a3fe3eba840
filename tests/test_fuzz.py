"""Fuzzing every ebgc parser with mutations whose checksums are recomputed (tests/fuzzing.py).

Each container kind (tensor blobs "EBGC", stream messages "EBGS", saved encoder/decoder states
"EBGT", state dicts "EBSD", APPFL payloads "EBAP") gets every truncation and every single-byte
flip of its small seeds, a fixed-seed batch of random overwrites and splices, and every header
field, count, length, shape and name set to an extreme value; all resealed (nested blobs first),
so that the mutations reach the parsers instead of stopping at a checksum.

The contract: an input decodes into what it declares, or is refused with ebgc.FormatError (or a
subclass) / ebgc.StreamError; never another exception (UnicodeDecodeError, ValueError, TypeError,
RuntimeError, KeyError, MemoryError, InvalidArgumentError...), a crash, a hang (2 s an input), or
a peak-RSS growth over 64 MiB + 64 x the input's size. The inputs run in a worker process
(fuzzing.Worker) under an address-space limit; a failure lists each distinct problem with the
container kind, seed, mutation and the input's bytes.

Also here: a decompression bomb (a 15 KB blob declaring 3 GB whose last chunk is corrupt: refused
without allocating), one GradientDecoder shared by two threads (the same message never accepted
twice), and the max_output= limit (ebgc.OutputLimitError).

The long campaign: tools/fuzz.py. EBGC_FUZZ_TIMEOUT overrides the per-input limit (seconds).
"""

from __future__ import annotations

import contextlib
import os

import ml_dtypes
import numpy as np
import pytest

import ebgc
import fuzzing as F

TIMEOUT = float(os.environ.get("EBGC_FUZZ_TIMEOUT", "2"))
TEST_LIMIT_S = 120.0  # a generous guard on one test's whole batch
MiB = 1024  # in KiB


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def worker():
    kinds = F.KINDS if _have_torch() else tuple(k for k in F.KINDS if k not in F.NEEDS_TORCH)
    with F.Worker(kinds, timeout=TIMEOUT) as w:
        yield w


def _needs(kind: str) -> None:
    if kind in F.NEEDS_TORCH:
        pytest.importorskip("torch")


@contextlib.contextmanager
def _no_untyped_error(what: str):
    """Fail with one line (not a 1000-frame traceback) on anything but FormatError/StreamError."""
    try:
        yield
    except (ebgc.FormatError, ebgc.StreamError):
        raise
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{what}: {type(e).__name__}: {str(e)[:300]}", pytrace=False)


# --------------------------------------------------------------------------------------------------
# The seeds and the resealing themselves
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", F.KINDS)
def test_seeds_decode_and_reseal_is_identity(kind, worker):
    """Every seed decodes; our walker reads it to the end; resealing an intact input changes
    nothing. (If the format changes, this fails first, not the fuzzing silently getting shallow.)"""
    _needs(kind)
    for s in F.seeds(kind):
        out = worker.run(kind, s.data, s.ctx)
        assert out.status == "ok", f"seed {kind}:{s.name} does not decode: {out}"
        lay = F.layout(s.data, kind)
        assert lay.fields and lay.fields[-1].end <= len(s.data), s.name
        assert F.reseal(s.data, kind) == s.data, f"resealing changed the intact seed {kind}:{s.name}"
        body = bytearray(s.data)
        body[-1] ^= 0xFF  # a broken outer checksum (or, in APPFL, the inner state dict's) is repaired
        assert F.reseal(bytes(body), kind) == s.data, s.name


def test_seed_coverage():
    """The blob seeds span every coder, dtype, multi-chunk and low-rank blobs."""
    infos = {s.name: ebgc.info(s.data) for s in F.blob_seeds()}
    assert {h["coder"] for h in infos.values()} >= {"raw", "bitpack", "huffman", "context"}
    assert {h["dtype"] for h in infos.values()} == {"float32", "float64", "float16", "bfloat16"}
    assert any(np.prod(h["shape"]) > 65536 and h["coder"] == "context" for h in infos.values())
    assert any(h["predictor"] == "low-rank" and h["dtype"] == "bfloat16" for h in infos.values())
    assert sum(h["predictor"] == "low-rank" for h in infos.values()) >= 4
    assert all(len(s.data) <= 1024 for s in F.blob_seeds() if "fixture" not in s.name and "bitpack" not in s.name)


def test_crc_matches_an_independent_implementation():
    from blobfmt import crc32c

    for data in (b"", b"123456789", bytes(range(256)) * 3):
        assert F.crc32c(data) == crc32c(data)
        assert F.crc32c(data, 0x1234) == crc32c(data, 0x1234)


# --------------------------------------------------------------------------------------------------
# The fuzzing proper
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", F.FAMILIES)
@pytest.mark.parametrize("kind", F.KINDS)
def test_fuzz(kind, family, worker):
    """Every input of one mutation family of one container kind: decoded as declared, or refused
    with FormatError/StreamError; no other exception, crash, hang or large allocation."""
    _needs(kind)
    res = F.run_cases(worker, F.cases(kind, family), total_limit=TEST_LIMIT_S)
    assert res.n > 0
    if res.bad:
        pytest.fail(f"{kind} / {family}: " + F.report(res.bad, res.n), pytrace=False)
    assert not res.stopped, f"{kind} / {family}: {res.stopped} (hang guard)"
    refused = res.count("typed")
    assert refused > 0, f"no input was refused: {res.counts}"
    if family != "truncate":  # the mutations must get past the checksums to mean anything
        assert res.count("typed ChecksumError") <= 0.05 * res.n, f"resealing failed: {res.counts}"


# --------------------------------------------------------------------------------------------------
# A decompression bomb: a 15 KB blob declaring 3 GB, corrupt in its last chunk
# --------------------------------------------------------------------------------------------------

def test_bomb_construction():
    """The bomb's technique (coder 4, 2^20-value chunks of zeros, 39 bytes a chunk) makes valid
    blobs: three chunks decode to 3 x 2^20 zeros; with the last chunk corrupted, FormatError."""
    y = ebgc.decompress(F.make_bomb(3, corrupt_last=False))
    assert y.shape == (3 << 20,) and y.dtype == np.float64 and not y.any()
    with pytest.raises(ebgc.FormatError):
        ebgc.decompress(F.make_bomb(3))
    bomb = F.make_bomb()
    assert len(bomb) < 16 << 10
    assert bomb[4:12] == bytes([1, 0, 2, 0, 0, 4, 20, 1])  # v1, float64, abs, zero predictor, coder 4, 2^20


@pytest.mark.parametrize("via", ["decompress", "GradientDecoder.decode", "decompress(max_output)",
                                 "GradientDecoder(max_output)"])
def test_decompression_bomb(via):
    """Refused with FormatError, and the refusing process's peak RSS grows by less than 64 MiB
    (ebgc <= the refactor allocates the 2.8 GiB output and fills it before finding the corrupt
    last chunk). Runs in a child process capped at 4 GiB more address space."""
    bomb = F.make_bomb()
    kind, data, ctx = {
        "decompress": ("blob", bomb, b""),
        "GradientDecoder.decode": ("message", F.wrap_in_message(bomb), b""),
        "decompress(max_output)": ("blob_max_output", bomb, str(1 << 20).encode()),
        "GradientDecoder(max_output)": ("message_max_output", F.wrap_in_message(bomb), str(1 << 20).encode()),
    }[via]
    with F.Worker(("blob", "message"), timeout=120, mem_cap_mib=4096) as w:
        out = w.run(kind, data, ctx)
    growth = out.rss_growth_kib / MiB
    if out.status not in ("typed", "memory") or not out.format_error:
        pytest.fail(f"bomb via {via}: {out}", pytrace=False)
    if growth >= 64:
        pytest.fail(f"bomb via {via}: refused ({out.error}) after {out.seconds:.1f} s, but the peak RSS grew by "
                    f"{growth:.0f} MiB (limit 64 MiB) for a {len(data)}-byte input", pytrace=False)
    if "max_output" in via and out.error != "OutputLimitError":
        pytest.fail(f"bomb via {via}: {out}", pytrace=False)


# --------------------------------------------------------------------------------------------------
# One decoder, two threads, the same next message
# --------------------------------------------------------------------------------------------------

def test_shared_decoder_never_accepts_a_message_twice():
    """Two threads released by one barrier decode the same next message with one GradientDecoder:
    one applies it, the other gets StreamError (repeated). 140 trials; the message takes a few
    milliseconds to decode, with the GIL released, so that the threads overlap."""
    r = F.race_trials(140)
    assert r["other_errors"] == 0, f"errors other than StreamError: {r['examples']}"
    assert r["double_accepts"] == 0, (f"the same message was accepted by both threads in {r['double_accepts']} of "
                                      f"{r['trials']} trials (the stream applied one update twice)")


# --------------------------------------------------------------------------------------------------
# max_output=: refuse a blob or message that declares more output than the caller allows
# --------------------------------------------------------------------------------------------------

def _output_limit_error():
    cls = getattr(ebgc, "OutputLimitError", None)
    assert cls is not None, "ebgc.OutputLimitError does not exist"
    return cls


def test_output_limit_error_is_a_format_error():
    assert issubclass(_output_limit_error(), ebgc.FormatError)


_LIMIT_CASES = [(np.float32, "context", (30, 40)), (np.float64, "raw", (7, 11)),
                (ml_dtypes.bfloat16, "huffman", (500,)), (np.float16, "bitpack", (3, 4, 5))]


@pytest.mark.parametrize("dtype,coder,shape", _LIMIT_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_decompress_max_output(dtype, coder, shape):
    limit_error = _output_limit_error()
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    blob = ebgc.compress(x, 1e-2, coder=coder)
    want = ebgc.decompress(blob)
    for limit in (x.nbytes, x.nbytes + 1, 1 << 40):
        np.testing.assert_array_equal(ebgc.decompress(blob, max_output=limit), want)
    for limit in (x.nbytes - 1, x.size, 1):
        with pytest.raises(limit_error):
            ebgc.decompress(blob, max_output=limit)
    lowrank = ebgc.compress(F.low_rank_matrix(64, 64), 1e-2)
    with pytest.raises(limit_error):
        ebgc.decompress(lowrank, max_output=64 * 64 * 4 - 1)
    assert ebgc.decompress(lowrank, max_output=64 * 64 * 4).shape == (64, 64)


def _two_tensor_message():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal((20, 25))
    enc = ebgc.GradientEncoder(1e-2, stream_id="limit")
    return enc, enc.encode({"a": a, "b": b}), a.nbytes, b.nbytes


def test_gradient_decoder_max_output():
    limit_error = _output_limit_error()
    enc, msg, na, nb = _two_tensor_message()
    out = ebgc.GradientDecoder(max_output=na + nb).decode(msg)
    assert out["a"].nbytes == na and out["b"].nbytes == nb
    dec = ebgc.GradientDecoder(max_output=min(na, nb) - 1)  # each tensor alone is over the limit
    with pytest.raises(limit_error):
        dec.decode(msg)
    assert list(dec.streams()) == []  # refused before anything was applied


def test_gradient_decoder_max_output_counts_the_whole_message():
    """The limit is on the message's output: two tensors within it one by one, over it together."""
    limit_error = _output_limit_error()
    enc, msg, na, nb = _two_tensor_message()
    dec = ebgc.GradientDecoder(max_output=na + nb - 1)
    with pytest.raises(limit_error):
        dec.decode(msg)
    assert list(dec.streams()) == []


def test_numcodecs_max_output():
    pytest.importorskip("numcodecs")
    from ebgc.integrations.numcodecs import EBGC

    limit_error = _output_limit_error()
    x = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)
    encoded = EBGC(1e-3).encode(x)
    np.testing.assert_array_equal(EBGC(1e-3, max_output=x.nbytes).decode(encoded), EBGC(1e-3).decode(encoded))
    with pytest.raises(limit_error):
        EBGC(1e-3, max_output=x.nbytes - 1).decode(encoded)


# --------------------------------------------------------------------------------------------------
# Problems the fuzzing found beyond the known ones: minimal reproducers
# --------------------------------------------------------------------------------------------------

def _appfl_flat(message: bytes, order: list, rest: dict) -> bytes:
    """An APPFL payload holding one flat model: a stream message, the key order, the other entries."""
    import ebgc.torch as et

    keys = b"".join(F.varint(len(k.encode())) + k.encode() for k in order)
    return (b"EBAP\x01\x00" + F.varint(len(message)) + message + F.varint(len(order)) + keys
            + et.compress_state_dict(rest, 1e-2))


def test_regression_appfl_order_naming_a_missing_tensor():
    """The key order names a tensor that neither the message nor the state dict holds (KeyError)."""
    pytest.importorskip("torch")
    from ebgc.integrations.appfl import EBGCCompressor

    msg = ebgc.GradientEncoder(1e-2, stream_id="a").encode({"w": np.ones(16, np.float32)})
    with pytest.raises(ebgc.FormatError), _no_untyped_error("key order naming a missing tensor"):
        EBGCCompressor({}).decompress_model(_appfl_flat(msg, ["w", "missing"], {}))


def test_regression_appfl_bfloat16_tensor_in_the_stream_message():
    """A valid stream message holding a bfloat16 tensor: decoded (as torch.bfloat16), or refused
    with FormatError; not a TypeError from torch.from_numpy."""
    torch = pytest.importorskip("torch")
    from ebgc.integrations.appfl import EBGCCompressor

    x = np.linspace(-1, 1, 16).astype(ml_dtypes.bfloat16)
    msg = ebgc.GradientEncoder(1e-2, stream_id="a").encode({"w": x})
    try:
        with _no_untyped_error("bfloat16 tensor in the message"):
            out = EBGCCompressor({}).decompress_model(_appfl_flat(msg, ["w"], {}))
    except ebgc.FormatError:
        return
    assert out["w"].dtype == torch.bfloat16 and out["w"].shape == (16,)


def test_regression_appfl_deeply_nested_payload():
    """1100 nested lists in 4.4 KB (APPFL payloads have no checksum): decoded or FormatError, not
    RecursionError."""
    pytest.importorskip("torch")
    from ebgc.integrations.appfl import EBGCCompressor

    inner = b"\x01\x00"  # an empty list
    for _ in range(1100):
        inner = b"\x01\x01" + F.varint(len(inner)) + inner
    try:
        with _no_untyped_error(f"{len(inner) + 5}-byte payload of nested lists"):
            EBGCCompressor({}).decompress_model(b"EBAP\x01" + inner)
    except ebgc.FormatError:
        pass


@pytest.mark.parametrize("cls", ["GradientEncoder", "GradientDecoder"])
def test_regression_save_after_an_empty_tensor(cls):
    """A stream that carried an empty tensor (shape (0, 3)) can be saved and loaded (save() raised
    TypeError: memoryview: cannot cast view with zeros in shape or strides)."""
    enc = ebgc.GradientEncoder(1e-2, stream_id="e")
    msg = enc.encode({"e": np.zeros((0, 3), np.float32), "x": np.ones(4, np.float32)})
    obj = enc
    if cls == "GradientDecoder":
        obj = ebgc.GradientDecoder()
        obj.decode(msg)
    with _no_untyped_error(f"{cls}.save() after an empty tensor"):
        saved = obj.save()
    assert type(obj).load(saved).save() == saved


def test_regression_sequence_number_past_64_bits():
    """A keyframe whose sequence varint is 10 bytes with bits past 2^64 (2^70 - 1): refused, or
    accepted with a state that saves and loads back (save() wrote an 11-byte varint that load()
    refuses)."""
    seed = F.message_seeds()[0]
    lay = F.layout(seed.data, "message")
    f = next(f for f in lay.fields if f.path == "sequence")
    msg = F.reseal(F.replace(seed.data, lay, f.start, f.end, F.varint(2**70 - 1)), "message")
    dec = ebgc.GradientDecoder()
    try:
        dec.decode(msg)
    except ebgc.FormatError:
        return
    try:
        ebgc.GradientDecoder.load(dec.save())
    except ebgc.FormatError as e:
        pytest.fail(f"a decoder accepted sequence 2^70 - 1, and its saved state does not load: {e}", pytrace=False)
