"""The ``ebgc`` command line (ebgc.cli.main) and the benchmark engine behind ``ebgc bench``."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

import ebgc
from ebgc.tools import bench
from ebgc.cli import main


@pytest.fixture
def grad_npy(tmp_path):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((64, 32, 3, 3)) * 1e-3).astype(np.float32)
    path = tmp_path / "grad.npy"
    np.save(path, x)
    return path, x


def _rel_bound(x: np.ndarray, eb: float) -> float:
    x64 = x.astype(np.float64)
    return eb * (x64.max() - x64.min())


@pytest.mark.parametrize("mode", ["rel", "abs"])
def test_compress_decompress_info_round_trip(tmp_path, grad_npy, capsys, mode):
    src, x = grad_npy
    blob_path = tmp_path / "grad.ebgc"
    out_path = tmp_path / "back.npy"
    eb = 1e-2 if mode == "rel" else 1e-5

    assert main(["compress", str(src), str(blob_path), "--error-bound", str(eb), "--mode", mode,
                 "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert "ratio" in said and str(blob_path) in said
    assert blob_path.stat().st_size < x.nbytes

    assert main(["decompress", str(blob_path), str(out_path)]) == 0
    y = np.load(out_path, allow_pickle=False)
    assert y.dtype == x.dtype and y.shape == x.shape
    bound = _rel_bound(x, eb) if mode == "rel" else eb
    assert np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))) <= bound

    capsys.readouterr()
    assert main(["info", str(blob_path)]) == 0
    text = capsys.readouterr().out
    for word in ("format version", "float32", "64 x 32 x 3 x 3", mode, "absolute bound", "coder",
                 "outliers", "ratio"):
        assert word in text

    assert main(["info", str(blob_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dtype"] == "float32"
    assert doc["shape"] == [64, 32, 3, 3]
    assert doc["mode"] == mode
    assert doc["error_bound"] == pytest.approx(eb)
    assert doc["raw_nbytes"] == x.nbytes


def test_compress_coder_option(tmp_path, grad_npy):
    src, _ = grad_npy
    blob_path = tmp_path / "g.ebgc"
    assert main(["compress", str(src), str(blob_path), "-e", "1e-3", "--coder", "bitpack"]) == 0
    assert ebgc.info(blob_path.read_bytes())["coder"] == "bitpack"


def test_bad_blob_exits_1_without_traceback(tmp_path, capsys):
    bad = tmp_path / "junk.ebgc"
    bad.write_bytes(b"this is not an ebgc blob at all" * 4)
    for argv in (["info", str(bad)], ["decompress", str(bad), str(tmp_path / "o.npy")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("ebgc ") and "error" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.npy").exists()


def test_bad_inputs_exit_1(tmp_path, grad_npy, capsys):
    src, _ = grad_npy
    out = str(tmp_path / "o.ebgc")
    not_npy = tmp_path / "text.npy"
    not_npy.write_text("hello")
    ints = tmp_path / "ints.npy"
    np.save(ints, np.arange(2000))
    cases = [
        ["compress", str(tmp_path / "missing.npy"), out, "-e", "1e-2"],  # OSError
        ["compress", str(not_npy), out, "-e", "1e-2"],                   # not a .npy
        ["compress", str(ints), out, "-e", "1e-2"],                      # UnsupportedDTypeError
        ["compress", str(src), out, "-e", "-1"],                         # InvalidArgumentError
        ["info", str(tmp_path / "missing.ebgc")],
        ["bench", str(not_npy), "--out", str(tmp_path / "b"), "--quiet"],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_usage_version_and_demo(capsys):
    assert main(["--version"]) == 0
    assert ebgc.__version__ in capsys.readouterr().out
    assert main([]) == 2
    assert main(["compress"]) == 2  # missing arguments: argparse usage error
    capsys.readouterr()
    assert main(["demo", "--rounds", "0"]) == 2  # usage error: rounds must be >= 1


def test_demo_runs_and_reports(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path / "demo"
    assert main(["demo", "--rounds", "2", "--quiet", "--out", str(out)]) == 0
    assert "ebgc" in capsys.readouterr().out
    rows = json.loads((out / "demo.json").read_text())
    by = {r["method"]: r for r in rows}
    assert by["uncompressed"]["ratio"] == 1 and by["ebgc"]["ratio"] > 5
    assert all(0 <= r["final_accuracy"] <= 1 and len(r["history"]) == 2 for r in rows)


def test_demo_codecs_code_every_tensor_unless_raw_max_says_otherwise():
    from ebgc.tools import demo

    rng = np.random.default_rng(0)
    update = {"w": (rng.standard_normal((16, 64)) * 1e-2).astype(np.float32),   # 1024 values
              "b": (rng.standard_normal(10) * 1e-2).astype(np.float32)}       # too small to pay
    for raw_max in (0, 1024):
        for name, factory in demo._codecs(1e-2, 1, raw_max).items():
            nbytes, out = factory(0)(update)
            assert set(out) == set(update), name
            for k, v in update.items():
                bound = 1e-2 * float(v.max() - v.min())
                assert np.all(np.abs(out[k].astype(np.float64) - v) <= bound), (name, k)
            raw = sum(v.nbytes for v in update.values())
            if name == "uncompressed" or raw_max == 1024:  # both tensors <= raw_max: raw for all
                # (ebgc still sends its message: stream id, sequence, digest, checksum)
                assert raw <= nbytes <= raw + (64 if name == "ebgc" else 0), (name, raw_max)
            else:
                assert nbytes < raw * 0.6, (name, nbytes)  # w is coded, b at worst sent raw


def _tiny_trace(path, rounds=2):
    rng = np.random.default_rng(3)
    arrays = {}
    for r in range(rounds):
        arrays[f"r{r:03d}/c0/conv.weight"] = (rng.standard_normal((8, 4, 3, 3)) * 1e-2).astype(np.float32)
        arrays[f"r{r:03d}/c0/conv.bias"] = (rng.standard_normal(8) * 1e-2).astype(np.float32)  # sent raw
        arrays[f"r{r:03d}/c0/fc.weight"] = (rng.standard_normal((10, 200)) * 1e-2).astype(np.float32)
    np.savez(path, **arrays)
    return arrays


def test_bench_tiny_trace_writes_csv_json_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    trace = tmp_path / "tiny.npz"
    arrays = _tiny_trace(trace)
    out = tmp_path / "bench-out"
    assert main(["bench", str(trace), "--bounds", "1e-2", "1e-3", "--repeats", "1", "--quiet",
                 "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "ebgc" in table and "tiny" in table
    for name in ("bench.csv", "bench.json", "bench.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads((out / "bench.json").read_text())
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["ebgc"] == ebgc.__version__
    rows = doc["results"]
    methods = {r["method"] for r in rows}
    assert {"ebgc", "ebgc-fast", "fp16"} <= methods
    if importlib.util.find_spec("pysz") is not None:
        assert {"SZ3-INTERP_LORENZO", "SZ3-NOPRED", "SZ3-best"} <= methods
    if importlib.util.find_spec("zfpy") is not None:
        assert "ZFP" in methods
    raw = sum(a.nbytes for a in arrays.values())
    for r in rows:
        assert set(bench.RESULT_FIELDS) <= set(r)
        assert r["raw_bytes"] == raw
        assert r["ratio"] == pytest.approx(raw / r["wire_bytes"])
        assert r["bound_mode"] == "rel" and r["bound"] in (1e-2, 1e-3)
    for r in rows:
        if r["family"] == "ebgc":
            assert r["violations"] == 0 and r["max_err_over_bound"] <= 1.0
            assert r["compress_MBps"] > 0 and r["decompress_MBps"] > 0
    fp16 = [r for r in rows if r["method"] == "fp16"]
    # conv.bias (8 values) goes raw; the rest is halved
    small = sum(a.nbytes for k, a in arrays.items() if a.size <= bench.RAW_MAX_ELEMENTS)
    assert all(r["wire_bytes"] == small + (raw - small) // 2 for r in fp16)

    with (out / "bench.csv").open() as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    parsed = list(csv.DictReader(lines))
    assert len(parsed) == len(rows)
    assert {r["method"] for r in parsed} == methods


def test_bench_engine_counts_violations():
    """A method that ignores the bound is reported, not fatal; sizes are summed over messages."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096).astype(np.float32)
    trace = bench.Trace("t", [("r000/c0", [("w", x)]), ("r001/c0", [("w", x * 2), ("b", x[:10])])])

    def sloppy_compress(a, eb, mode):
        return np.zeros_like(a).tobytes()

    def sloppy_decompress(buf, shape, dtype):
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def broken(a, eb, mode):
        raise RuntimeError("boom")

    methods = [
        bench.Method("zeros", "test", sloppy_compress, sloppy_decompress, True),
        bench.Method("broken", "test", broken, sloppy_decompress, True),
    ]
    rows = bench.run_bench([trace], bounds=[1e-2], methods=methods, repeats=1, quiet=True)
    by = {r["method"]: r for r in rows}
    assert by["zeros"]["violations"] == 2 and by["zeros"]["max_err_over_bound"] > 1
    assert by["zeros"]["raw_bytes"] == trace.raw_bytes
    assert by["broken"]["failures"] == 2
    assert by["broken"]["wire_bytes"] == trace.raw_bytes  # failed tensors go raw
    assert by["broken"]["violations"] == 0


def test_bench_ebgc_variants_run_only_when_named():
    """The default set is ebgc + ebgc-fast; the other coders run when named, each with its coder."""
    default = {m.name for m in bench.make_methods((1,)) if m.family == "ebgc"}
    assert default == {"ebgc", "ebgc-fast"}
    assert {m.name for m in bench.make_methods((1,), include=["ebgc"])} == default
    named = bench.make_methods((1, 2), include=["ebgc-context", "ebgc-huffman", "ebgc-nolr@t2"])
    assert [m.name for m in named] == ["ebgc-context", "ebgc-huffman", "ebgc-nolr@t2"]
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 8)) @ rng.standard_normal((8, 64))).astype(np.float32)  # rank 8
    auto = bench.make_methods((1,), include=["ebgc"])[0]
    assert ebgc.info(auto.compress(x, 1e-3, "rel"))["predictor"] == "low-rank"
    expect = {"ebgc-context": ("context", "low-rank"), "ebgc-huffman": ("huffman", "low-rank"),
              "ebgc-nolr@t2": (None, "zero")}
    for m in named:
        blob = m.compress(x, 1e-3, "rel")
        info = ebgc.info(blob)
        coder, predictor = expect[m.name]
        assert info["predictor"] == predictor and coder in (None, info["coder"])
        bound = bench.abs_bound(x, 1e-3, "rel")
        assert bench.check_error(x, m.decompress(blob, x.shape, x.dtype), bound)[1] == 0
    with pytest.raises(bench.BenchError):
        bench.make_methods((1,), include=["no-such-method"])


def test_check_error_is_nan_safe():
    x = np.array([1.0, np.nan, np.inf, -2.0], dtype=np.float32)
    assert bench.check_error(x, x.copy(), 0.0) == (0.0, 0)
    err, over = bench.check_error(x, np.array([1.0, 0.0, np.inf, -2.0], np.float32), 0.1)
    assert err == float("inf") and over == 1
    err, over = bench.check_error(x[[0, 3]], np.array([1.05, np.nan], np.float32), 0.1)
    assert err == float("inf") and over == 1
    assert bench.abs_bound(x, 0.5, "rel") == pytest.approx(1.5)


def test_shipped_sample_loads():
    with bench.sample_path() as p:
        tr = bench.load_trace(p, name="sample")
    assert len(tr.messages) >= 3
    first = tr.messages[0][1]
    assert all(a.dtype == np.float32 for _, a in first)
    assert any(a.ndim == 4 for _, a in first)  # conv weights keep OIHW
    assert sum(a.size for _, a in first) > 50_000


def test_info_on_a_stream_message(tmp_path, capsys):
    rng = np.random.default_rng(5)
    enc = ebgc.GradientEncoder(1e-2, stream_id="c9")
    g = rng.laplace(size=(32, 16, 3, 3)).astype(np.float32)
    enc.encode({"conv": g})
    p = tmp_path / "m1.bin"
    p.write_bytes(enc.encode({"conv": g * 0.9}))
    assert main(["info", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "stream message" and doc["sequence"] == 1 and not doc["keyframe"]
    assert doc["stream_id"] == "c9" and doc["tensors"][0]["name"] == "conv"  # a text id shows as text
    assert main(["info", str(p)]) == 0
    assert "stream message" in capsys.readouterr().out


def test_bench_stateful_tiny_trace(tmp_path, capsys):
    rng = np.random.default_rng(6)
    g = rng.laplace(size=(16, 8, 3, 3)).astype(np.float32)
    arrays = {}
    for r in range(3):
        g = (0.9 * g + 0.1 * rng.laplace(size=g.shape)).astype(np.float32)
        arrays[f"r{r:03d}/c0/conv"] = g
        arrays[f"r{r:03d}/c0/bias"] = g[:, 0, 0, 0].copy()
    trace = tmp_path / "t.npz"
    np.savez(trace, **arrays)
    out = tmp_path / "out"
    assert main(["bench", str(trace), "--stateful", "--repeats", "1", "--quiet", "--out", str(out)]) == 0
    doc = json.loads((out / "stateful.json").read_text())
    methods = {r["method"] for r in doc["results"]}
    assert {"ebgc", "ebgc-stateful", "ebgc-stateful-h0", "ebgc-stateful-h1", "ebgc-stateful-nolr",
            "ebgc-stateful-h0-nolr"} <= methods
    assert all(r["violations"] == 0 for r in doc["results"])
    assert (out / "stateful.png").stat().st_size > 0


def test_sixteen_bit_blobs_decompress_to_npy(tmp_path, capsys):
    import ml_dtypes

    x = np.random.default_rng(5).standard_normal((30, 7)).astype(np.float16)
    np.save(tmp_path / "h.npy", x)
    assert main(["compress", str(tmp_path / "h.npy"), str(tmp_path / "h.ebgc"), "--error-bound", "1e-2"]) == 0
    assert main(["decompress", str(tmp_path / "h.ebgc"), str(tmp_path / "h2.npy")]) == 0
    y = np.load(tmp_path / "h2.npy")
    assert y.dtype == np.float16 and y.shape == x.shape
    # bfloat16 (no .npy dtype) comes out as the exact float32 values of the reconstruction
    b = ebgc.compress(x.astype(np.float32).astype(ml_dtypes.bfloat16), 1e-2)
    (tmp_path / "b.ebgc").write_bytes(b)
    assert main(["decompress", str(tmp_path / "b.ebgc"), str(tmp_path / "b.npy")]) == 0
    assert "bfloat16" in capsys.readouterr().out
    z = np.load(tmp_path / "b.npy")
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, ebgc.decompress(b).astype(np.float32))


def test_decompress_stream_messages(tmp_path, capsys):
    """A keyframe decodes alone; a predicted message needs its stream from the last keyframe, in
    order, and the error says so."""
    enc = ebgc.GradientEncoder(1e-2, stream_id="client-3")
    rounds = [{"w": np.random.default_rng(t).standard_normal((100, 50)).astype(np.float32)} for t in range(3)]
    paths = []
    for t, m in enumerate(rounds):
        paths.append(tmp_path / f"m{t}.ebgs")
        paths[-1].write_bytes(enc.encode(m))
    assert main(["decompress", str(paths[0]), str(tmp_path / "m0.npz")]) == 0
    assert np.load(tmp_path / "m0.npz")["w"].shape == (100, 50)
    assert main(["decompress", str(paths[2]), str(tmp_path / "m2.npz")]) == 1
    assert "give them all, in order" in capsys.readouterr().err
    assert main(["decompress", *map(str, paths), str(tmp_path / "all.npz")]) == 0
    ref = ebgc.GradientDecoder()
    for p in paths:
        last = ref.decode(p.read_bytes())
    np.testing.assert_array_equal(np.load(tmp_path / "all.npz")["w"], last["w"])
    assert main(["decompress", *map(str, paths), str(tmp_path / "all.npy")]) == 1  # several tensors: .npz


def test_bench_refuses_a_file_that_is_not_a_trace(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(bytes(range(256)) * 4)
    assert main(["bench", str(junk), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "not a trace" in err and "pickle" not in err


def test_bench_methods_are_listed(capsys):
    assert main(["bench", "--methods", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"ebgc", "ebgc-fast", "ebgc-nolr", "ebgc-context", "ebgc-huffman", "fp16"} <= set(names)
    assert main(["bench", "--methods", "no-such-method", "--quiet"]) == 1
    assert "ebgc-huffman" in capsys.readouterr().err  # the error names what exists
