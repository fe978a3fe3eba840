"""Committed format-v1 blobs still decode to the same bits, within the bound of their inputs.

The blobs and their expected reconstructions were written once by tests/fixtures/make_fixtures.py;
they are never regenerated to make this test pass (a failure here means v1 compatibility broke).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import ebgc
from ebgc.vocabulary import dtype_from_name
from conftest import assert_within_bound, bits

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _load_maker():
    spec = importlib.util.spec_from_file_location("ebgc_make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MAKER = _load_maker()
CASE_NAMES = [c["name"] for c in MAKER.CASES]


def load_expected(name: str, case: dict) -> np.ndarray:
    """The committed reconstruction (16-bit ones are stored as their uint16 bit patterns)."""
    y = np.load(FIXTURES / f"{name}.npy", allow_pickle=False)
    return y.view(dtype_from_name(case["dtype"])) if case["dtype"] in ("float16", "bfloat16") else y


@pytest.fixture(scope="module")
def manifest():
    path = FIXTURES / "manifest.json"
    assert path.exists(), "tests/fixtures/manifest.json is missing: the v1 fixtures were not committed"
    m = json.loads(path.read_text())
    assert m["format_version"] == 1
    return {c["name"]: c for c in m["cases"]}


def test_fixtures_are_small():
    total = sum(p.stat().st_size for p in FIXTURES.iterdir() if p.suffix in (".ebgc", ".npy", ".json"))
    assert total < 256 * 1024, f"fixtures take {total} bytes"


def test_manifest_matches_cases(manifest):
    assert sorted(manifest) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_decodes_bit_exactly(name, manifest):
    case = manifest[name]
    blob = (FIXTURES / f"{name}.ebgc").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == case["blob_sha256"], "fixture blob was modified"
    expected = load_expected(name, case)

    info = ebgc.info(blob)
    assert info["format_version"] == 1
    assert info["dtype"] == case["dtype"]
    assert info["shape"] == tuple(case["shape"])
    assert info["mode"] == case["mode"]
    assert info["error_bound"] == case["error_bound"]
    assert info["abs_bound"] == case["abs_bound"]
    assert info["coder"] == case["stored_coder"]
    assert info["nbytes"] == len(blob)

    for threads in (1, 2):
        y = ebgc.decompress(blob, threads=threads)
        assert y.dtype == expected.dtype and y.shape == expected.shape
        np.testing.assert_array_equal(bits(y), bits(expected))
    out = np.empty(expected.shape, expected.dtype)
    assert ebgc.decompress(blob, out=out) is out
    np.testing.assert_array_equal(bits(out), bits(expected))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_within_bound_of_regenerated_input(name, manifest):
    case = manifest[name]
    x = MAKER.make_input(case)
    assert MAKER.sha256(x) == case["input_sha256"], (
        "the regenerated input differs from the one the fixture was made from "
        "(numpy's PCG64 stream or float arithmetic changed?)")
    blob = (FIXTURES / f"{name}.ebgc").read_bytes()
    y = load_expected(name, case)
    assert_within_bound(x, y, blob)
    assert_within_bound(x, ebgc.decompress(blob), blob)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_damage_detected(name):
    blob = (FIXTURES / f"{name}.ebgc").read_bytes()
    for i in range(0, len(blob), max(1, len(blob) // 64)):
        b = bytearray(blob)
        b[i] ^= 0x20
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(bytes(b))
