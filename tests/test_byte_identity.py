"""ebgc still writes the very same bytes: every blob and every reconstruction of the shipped sample
trace and of the fixture inputs, under the whole settings grid of tools/blob_digests.py (every
coder; rel and abs bounds; float32 input and its float64 / float16 / bfloat16 casts, plus the
fixtures' own float64 / float16 / bfloat16 inputs; low_rank on and off; threads 1 and 2; the
stateful GradientEncoder / GradientDecoder messages with history 2 and 1), against the SHA-256
digests recorded in tests/fixtures/blob_digests.json.

A failure means the output changed. If the change is intended (a format or coder change, not a
refactoring), regenerate the manifest and say so in the commit:

    python tools/blob_digests.py --sample --fixtures --digest-level setting --tensor-level all \\
        --out tests/fixtures/blob_digests.json

Only ebgc's public API is used (through the tool); the fixture cases that need the private
chunk_log2 knob (``fixtures-private/...``) are left to ``tools/blob_digests.py --check``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import ebgc  # noqa: F401  (the build under test: the one this interpreter imports)

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "fixtures" / "blob_digests.json"
SHOW = 20  # mismatching entries listed in a failure


def _load_tool():
    spec = importlib.util.spec_from_file_location("ebgc_blob_digests", ROOT / "tools" / "blob_digests.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOOL = _load_tool()


def _public(key: str) -> bool:
    return "/fixtures-private/" not in key and not key.startswith("fixtures-private/")


@pytest.fixture(scope="module")
def expected() -> dict:
    assert MANIFEST.exists(), f"{MANIFEST} is missing"
    m = json.loads(MANIFEST.read_text())
    assert m["format"] == TOOL.MANIFEST_FORMAT
    return m


@pytest.fixture(scope="module")
def actual(expected) -> dict:
    cfg = expected["config"]
    return TOOL.compute(sample="sample" in cfg["sources"], fixtures="fixtures" in cfg["sources"],
                        max_messages=cfg["max_messages"], digest_level=cfg["digest_level"],
                        tensor_level=cfg["tensor_level"], private=False)


def test_manifest_covers_the_grid(expected):
    """The committed manifest was written with the tool's current grid, and the grid covers what
    the byte-identity check promises."""
    cfg = expected["config"]
    one, st = cfg["oneshot_settings"], cfg["stateful_settings"]
    assert one == [s["name"] for s in TOOL.oneshot_settings()], "grid changed: regenerate the manifest"
    assert st == [s["name"] for s in TOOL.stateful_settings()], "grid changed: regenerate the manifest"
    assert {"sample", "fixtures"} <= set(cfg["sources"])
    for coder in ("auto", "raw", "bitpack", "huffman", "context"):
        for bound in ("rel1e-02", "rel1e-03", "abs1e-03"):
            assert f"{coder}-{bound}" in one
    assert {"auto-rel1e-02-nolr", "auto-rel1e-02-t2", "auto-rel1e-02-f64", "auto-rel1e-02-f16",
            "auto-rel1e-02-bf16"} <= set(one)
    assert {"stateful-h2-rel1e-02", "stateful-h1-rel1e-02", "stateful-h2-rel1e-02-t2"} <= set(st)
    keys = expected["digests"]
    for source in ("sample", "fixtures"):
        for s in one:
            assert any(k.startswith(f"blob/{source}/{s}") for k in keys), (source, s)
    for s in st:
        assert any(k.startswith(f"blob/sample/{s}") for k in keys), s
    # the fixture inputs bring the native 16-bit and float64 dtypes (the sample is float32 only)
    names = expected["names"]["fixtures/cases"]
    assert any(n.startswith("f64") for n in names) and any(n.startswith("f16") for n in names)
    assert any(n.startswith("bf16") for n in names) and any("lowrank" in n for n in names)


def test_threads_do_not_change_the_output(actual):
    d = actual["digests"]
    pairs = [(k, k.replace("-t2", "")) for k in d if "-t2" in k]
    assert pairs
    bad = [k for k, k1 in pairs if d[k] != d[k1]]
    assert not bad, f"threads=2 differs from threads=1: {bad[:SHOW]}"


def test_low_rank_setting_is_used(actual):
    """low_rank=False must reach the codec: on the fixtures' matrices it changes the output."""
    b = actual["bytes"]
    assert b["fixtures/auto-rel1e-02-nolr"] != b["fixtures/auto-rel1e-02"]


GROUPS = {
    "sample-oneshot": lambda k: k.split("/")[1] == "sample" and "/stateful-" not in k,
    "sample-stateful": lambda k: k.split("/")[1] == "sample" and "/stateful-" in k,
    "fixtures-grid": lambda k: k.split("/")[1] == "fixtures" and "/case" not in k,
    "fixtures-case": lambda k: k.split("/")[1] == "fixtures" and "/case" in k,
}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_bytes_are_identical(group, expected, actual):
    keep = GROUPS[group]
    r = TOOL.compare(expected, actual, only=lambda k: _public(k) and keep(k), limit=SHOW)
    assert r["compared"] > 0, f"no entries of {group} in {MANIFEST.name}"
    n_bad = len(r["mismatch"]) + len(r["only_a"]) + len(r["only_b"])
    if n_bad:
        pytest.fail(
            f"{group}: {len(r['mismatch'])} of {r['compared']} digests differ from {MANIFEST.name}, "
            f"{len(r['only_a'])} missing, {len(r['only_b'])} extra; first ones:\n" + "\n".join(r["lines"]),
            pytrace=False,
        )
