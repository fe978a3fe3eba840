"""The decoder's guard against blobs that expand far (docs/FORMAT.md, "Limits a reader enforces"):
a blob of more than 64 values per byte has its streams checked before its output is allocated.
Both paths must give the encoder's own reconstruction, bit for bit; max_output refuses before
anything is decoded."""
from __future__ import annotations

import numpy as np
import pytest

import ebgc
from ebgc import _core
from blobfmt import chunk_directory, parse
from conftest import bits


def sparse(p: float, n: int = 300_000, seed: int = 0) -> np.ndarray:
    """Mostly zeros: the context coder's best case, and what a bomb imitates."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n, np.float32)
    hit = rng.random(n) < p
    x[hit] = rng.standard_normal(int(hit.sum()))
    return x


def encoded(x: np.ndarray, chunk_log2: int = 16):
    rec = np.empty_like(x)
    blob = _core.compress(x, "float32", 1e-3, 0, 4, 2, chunk_log2=chunk_log2, reconstruction=rec)
    return blob, rec


# which path: fraction of nonzeros
CASES = {"unchecked": 0.01, "checked": 0.001}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_path_decodes_the_encoders_values(case, threads):
    blob, rec = encoded(sparse(CASES[case]))
    values_per_byte = rec.size / len(blob)
    assert (values_per_byte > 64) == (case == "checked"), values_per_byte
    y = ebgc.decompress(blob, threads=threads)
    np.testing.assert_array_equal(bits(y), bits(rec))
    unchecked = _core.inspect(blob, for_decoding=False)  # the same decode without the check
    out = np.empty_like(rec)
    _core.decompress_into(unchecked, out, threads)
    np.testing.assert_array_equal(bits(out), bits(rec))


def test_a_corrupt_chunk_is_refused_by_the_check():
    """The last chunk's stream A corrupted, CRC resealed: refused by inspect(), before any output."""
    blob, _ = encoded(sparse(0.001, n=1 << 20), chunk_log2=14)
    b = parse(blob)
    _, lens, streams = chunk_directory(b)
    assert len(lens) == 64 and lens[-1][0] > 48
    last = streams + sum(la + lb for la, lb in lens[:-1])
    payload = bytearray(b.payload)
    for i in range(last + 40, last + lens[-1][0]):  # the last chunk's rANS words
        payload[i] ^= 0x5A
    b.payload = bytes(payload)
    bad = b.to_bytes()
    with pytest.raises(ebgc.FormatError):
        _core.inspect(bad)
    with pytest.raises(ebgc.FormatError):
        ebgc.decompress(bad)


def test_max_output():
    blob, rec = encoded(sparse(0.01))
    with pytest.raises(ebgc.OutputLimitError, match="max_output"):
        ebgc.decompress(blob, max_output=rec.nbytes - 1)
    assert isinstance(ebgc.OutputLimitError("x"), ebgc.FormatError)
    np.testing.assert_array_equal(bits(ebgc.decompress(blob, max_output=rec.nbytes)), bits(rec))
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ebgc.InvalidArgumentError):
            ebgc.decompress(blob, max_output=bad)
