"""A blob in device memory is parsed from its front (csrc/include/ebgc/format/front.hpp): the host
copies in the header, outliers, tables and chunk directory, and the checksum, but not the chunk
streams, which the GPU decodes where they are. The parse is the one reader's (parse_blob) over a
zero-filled buffer of the blob's size; these tests run it on the CPU against the full parse:
the same result for every coder and layout, a copy of little more than the front, and the same
verdict (accept or a typed refusal) on every mutation of the front, CRC resealed or not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebgc
from ebgc import _core

from blobfmt import header_length
from strategies import float_arrays


def blobs_of_every_layout():
    rng = np.random.default_rng(3)
    x = (rng.laplace(size=300_001) * 1e-2).astype(np.float32)
    x[::997] = np.nan
    out = {}
    for coder in ("raw", "bitpack", "huffman", "context", "auto"):
        out[coder] = ebgc.compress(x, 1e-3, coder=coder)
    out["low rank"] = ebgc.compress(rng.standard_normal((300, 40)) @ rng.standard_normal((40, 200)), 1e-3)
    out["small chunks"] = _core.compress(x, "float32", 1e-3, 1, _core.VOCABULARY["coders"]["context"], 1,
                                         chunk_log2=10)
    out["empty"] = ebgc.compress(np.zeros((0, 3), np.float32), 1e-3)
    out["one value"] = ebgc.compress(np.ones(1), 1e-3)
    out["all outliers"] = ebgc.compress(np.full(50_000, np.inf, np.float32), 1e-3, coder="bitpack")
    return out


BLOBS = blobs_of_every_layout()


def set_byte(blob: bytes, at: int, value: int) -> bytes:
    b = bytearray(blob)
    b[at] = value
    return bytes(b)


def reseal(blob: bytes) -> bytes:
    """The blob with its checksum recomputed (the native CRC: these blobs are large)."""
    return blob[:-4] + _core.crc32c(blob[:-4]).to_bytes(4, "little")


@pytest.mark.parametrize("name", list(BLOBS))
@pytest.mark.parametrize("first", [1, 13, 4096, 1 << 16])
def test_front_parse_is_the_full_parse(name, first):
    blob = BLOBS[name]
    accepted, copied = _core._parse_front_check(blob, first)
    assert accepted
    assert copied <= len(blob)


def test_front_parse_copies_the_front_not_the_streams():
    for name in ("bitpack", "context", "auto", "huffman"):
        blob = BLOBS[name]
        _, copied = _core._parse_front_check(blob, 4096)
        assert copied < len(blob) / 4, (name, copied, len(blob))


@pytest.mark.parametrize("name", ["bitpack", "context", "small chunks", "low rank", "all outliers"])
def test_front_parse_refuses_what_the_full_parse_refuses(name):
    """Every byte of the front (and a little past it) flipped, resealed or not: the front parse
    accepts exactly what the full parse accepts, with the same result, or refuses with a typed
    error."""
    blob = BLOBS[name]
    end = min(len(blob) - 4, header_length(blob) + 300)
    for at in range(0, end, max(1, end // 100)):
        for value in (0x00, 0xFF, blob[at] ^ 0x01, blob[at] ^ 0x80):
            m = set_byte(blob, at, value)
            for candidate in (m, reseal(m)):
                for first in (1, 4096):
                    _core._parse_front_check(candidate, first)  # raises only if the two parses disagree


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.float32, np.float64, np.float16]).flatmap(lambda d: float_arrays(d, max_dims=2, max_side=300)),
       st.sampled_from(["raw", "bitpack", "huffman", "context", "auto"]), st.integers(1, 5000),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_front_parse_property(x, coder, first, flips):
    blob = ebgc.compress(x, 1e-3, coder=coder)
    for at, value in flips:
        blob = reseal(set_byte(blob, at % (len(blob) - 4), value))
    _core._parse_front_check(blob, first)


def test_truncated_and_tiny_blobs():
    blob = BLOBS["context"]
    for size in (0, 1, 4, 8, 9, 12, 40, 100, len(blob) // 2, len(blob) - 1):
        accepted, _ = _core._parse_front_check(blob[:size], 64)
        assert not accepted
