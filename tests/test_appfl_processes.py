"""APPFL as separate processes: an APPFL server and two APPFL clients, each its own OS process,
talking through APPFL's own gRPC communicators on loopback, with ebgc's APPFL plugin (stateful:
one ebgc stream per client) as the compressor, on both payloads APPFL sends: model weights
(its default) and updates (``send_gradient: True``), FedAvg over both (synchronous, so every run
is the same). Each against the same federation uncompressed. The processes and their
configurations are examples/appfl: run.py starts them (one server process serving the four
federations on four free ports, two client processes running them in turn), kills them in any
case, and collects what server and clients recorded. ~15-25 s."""
import importlib.util
import time
from pathlib import Path

import pytest

pytest.importorskip("appfl")
pytest.importorskip("grpc")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "appfl"
KINDS = ("weights", "updates")
ROUNDS = 5  # uploads per client and federation
EBAP = b"EBAP".hex()  # ebgc's APPFL payload magic
ZIP = b"PK\x03\x04".hex()  # what APPFL's torch.save of an uncompressed state dict starts with


def _example():
    spec = importlib.util.spec_from_file_location("ebgc_appfl_example_run", EXAMPLE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    run = _example()
    t0 = time.monotonic()
    out = run.run([(k, c) for k in KINDS for c in ("raw", "ebgc")], tmp_path_factory.mktemp("appfl"),
                  rounds=ROUNDS, timeout=240)
    by = {(r["kind"], r["codec"]): r for r in out}
    by["seconds"] = time.monotonic() - t0
    print("\n" + run.table(out) + f"\n({by['seconds']:.1f} s)")
    return by


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("codec", ["raw", "ebgc"])
def test_federation_completes_across_processes(results, kind, codec):
    r = results[kind, codec]
    assert r["finished"]
    assert r["global_epochs"] == ROUNDS
    # synchronous: every client uploads every round, and the server applies every upload
    assert r["client_uploads"] == {"Client1": ROUNDS, "Client2": ROUNDS}
    assert {k: len(v) for k, v in r["server_received"].items()} == {"Client1": ROUNDS, "Client2": ROUNDS}
    assert r["applied_messages"] == 2 * ROUNDS
    assert r["test_accuracy"] >= 0.9, r["test_accuracy"]


@pytest.mark.parametrize("kind", KINDS)
def test_ebgc_is_stateful_per_client(results, kind):
    r = results[kind, "ebgc"]
    assert r["compressor"] == "EBGCCompressor"
    # what each client's compressor made is what arrived, byte count for byte count, at the server
    assert r["server_received"] == r["client_sent"]
    for client, reports in r["ebgc_reports"].items():
        # one stream per client for the whole federation: message 0 (keyframe), 1, 2, ...
        assert [rep["sequence"] for rep in reports] == list(range(len(reports))), client
        assert all(rep["bound_scale"] == 1.0 for rep in reports)
    # one server-side compressor, one decoder state per client stream
    assert r["server_ebgc_streams"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_ebgc_bytes_far_fewer_than_raw(results, kind):
    raw, eb = results[kind, "raw"], results[kind, "ebgc"]
    assert eb["float32_model_nbytes"] == 47_530 * 4  # the model's values, as float32
    assert raw["bytes_per_message"] > eb["float32_model_nbytes"]  # raw: those, torch.save'd
    assert eb["bytes_per_message"] * 5 < raw["bytes_per_message"], (eb["bytes_per_message"], raw["bytes_per_message"])
    assert eb["uplink_bytes"] * 5 < raw["uplink_bytes"] * eb["messages"] / raw["messages"]


@pytest.mark.parametrize("kind", KINDS)
def test_ebgc_accuracy_close_to_uncompressed(results, kind):
    raw, eb = results[kind, "raw"]["test_accuracy"], results[kind, "ebgc"]["test_accuracy"]
    assert abs(eb - raw) <= 0.04, (eb, raw)  # 12 of the 300 test images


def test_updates_and_weights_reach_the_same_model_uncompressed(results):
    # FedAvg of the updates is FedAvg of the weights: a check that updates are applied as such
    acc = [results[k, "raw"]["test_accuracy"] for k in KINDS]
    assert abs(acc[0] - acc[1]) <= 0.02, acc


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_pickled_by_ebgc(results, kind):
    eb, raw = results[kind, "ebgc"], results[kind, "raw"]
    assert eb["heads"] == [EBAP]
    assert eb["client_pickle_calls_in_compress"] == {}  # compress_model pickled nothing
    assert eb["server_pickle_calls_in_global_update"] == {}  # nor did the server unpickle anything
    # the tripwire is live: uncompressed, APPFL's own payload is a torch.save zip the server unpickles
    assert raw["heads"] == [ZIP]
    assert raw["server_pickle_calls_in_global_update"].get("torch.load", 0) == raw["applied_messages"]
