"""The APPFL plugin, against the real appfl package (installed without its heavy extras)."""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("appfl.compressor")
omegaconf = pytest.importorskip("omegaconf")

import ebgc  # noqa: E402
import ebgc.integrations.appfl as ebgc_appfl  # noqa: E402


def model_params(seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict([
        ("conv.weight", torch.randn(32, 16, 3, 3, generator=g) * scale),
        ("conv.bias", torch.randn(32, generator=g)),
        ("fc.weight", torch.randn(10, 512, generator=g) * scale),
        ("bn.num_batches_tracked", torch.tensor(7)),
    ])


def within(a, b, eb):
    x = a.double().numpy()
    return np.abs(b.double().numpy() - x).max() <= eb * (x.max() - x.min())


@pytest.mark.parametrize("stateful", [False, True])
def test_found_by_appfl_and_round_trips(stateful):
    from appfl.misc.utils import get_appfl_compressor

    ebgc_appfl.register()
    cfg = omegaconf.OmegaConf.create({"error_bound": 1e-2, "error_bounding_mode": "REL",
                                      "param_cutoff": 1024, "stateful": stateful})
    client = get_appfl_compressor("EBGCCompressor", cfg)
    server = get_appfl_compressor("EBGCCompressor", cfg)
    assert isinstance(client, ebgc_appfl.EBGCCompressor)
    from appfl.compressor.base_compressor import BaseCompressor

    assert isinstance(client, BaseCompressor)
    for rnd in range(3):
        params = model_params(rnd)
        blob = client.compress_model(params)
        assert isinstance(blob, bytes) and len(blob) < sum(v.numel() * 4 for v in params.values()) / 3
        out = server.decompress_model(blob, params)
        assert list(out) == list(params)
        for k, v in params.items():
            if v.numel() > 1024:
                assert within(v, out[k], 1e-2), k
            else:
                assert torch.equal(out[k], v), k


def test_batched_and_nested():
    comp = ebgc_appfl.EBGCCompressor({"error_bound": 1e-3})
    batch = [model_params(1), model_params(2)]
    out = comp.decompress_model(comp.compress_model(batch, batched=True), batch[0], batched=True)
    assert len(out) == 2 and all(within(a["fc.weight"], b["fc.weight"], 1e-3) for a, b in zip(batch, out))
    nested = OrderedDict([("client1", model_params(3)), ("client2", model_params(4))])
    out = comp.decompress_model(comp.compress_model(nested), None)
    assert list(out) == ["client1", "client2"] and within(nested["client2"]["conv.weight"], out["client2"]["conv.weight"], 1e-3)


def test_hostile_payloads():
    comp = ebgc_appfl.EBGCCompressor({"error_bound": 1e-2})
    blob = comp.compress_model(model_params(5))
    for n in range(0, len(blob), max(1, len(blob) // 50)):
        with pytest.raises(ebgc.FormatError):
            comp.decompress_model(blob[:n], None)
    with pytest.raises(ebgc.FormatError):
        comp.decompress_model(b"EBAP\x01\x07", None)


def test_a_client_budget_holds_after_the_first_payload():
    """budget_bytes (stateful): the whole payload, exact entries and names included, stays within
    the budget once the stream is running; last_report says what was done."""
    client = ebgc_appfl.EBGCCompressor({"error_bound": 1e-2, "stateful": True, "budget_bytes": 12_000,
                                        "max_error_bound": 0.3})
    server = ebgc_appfl.EBGCCompressor({"error_bound": 1e-2, "stateful": True})
    for rnd in range(4):
        params = model_params(rnd)
        blob = client.compress_model(params)
        assert len(blob) <= 12_000 and client.last_report.within_budget
        out = server.decompress_model(blob, params)
        bound = client.last_report.error_bound
        assert within(params["fc.weight"], out["fc.weight"], bound) and torch.equal(out["conv.bias"], params["conv.bias"])
    import pytest as _pytest

    with _pytest.raises(ebgc.InvalidArgumentError):
        ebgc_appfl.EBGCCompressor({"budget_bytes": 1000})  # needs stateful
