"""What the example's server and client processes share: stand-ins for APPFL's import-only extras,
the compressors they register with APPFL, and the pickle tripwires that audit the wire.

Stand-ins. ``appfl.agent`` imports ``wandb`` (logging, used only with ``wandb_configs``), ``piq``
and ``seaborn`` (data-readiness metrics and plots, used only with ``data_readiness_configs``) at
module level. None of them is used by this example's configurations. ``piq`` needs torchvision,
which pip would install with a CUDA build of torch replacing the CPU one (about 3 GB); ``wandb``
is a 20 MB wheel with an OpenTelemetry stack; ``seaborn`` needs pandas. So where one of the three
is not installed, :func:`install_stand_ins` puts a module in its place that fails loudly if
anything touches it (``wandb.run`` reads ``None``, which is what APPFL checks when wandb is off).
Where the real package is installed, it is used.

Compressors and an aggregator (:func:`register`): ``EBGCCompressor`` is ebgc's APPFL plugin (its
per-client byte budget: config keys ``budget_bytes``, ``max_error_bound``, ``error_feedback``);
``PySZ3Compressor`` is
APPFL's own ``SZ3Compressor`` (same policy, same pickled container) on the ``pysz`` wheel's SZ3
instead of the ``libSZ3c.so`` that APPFL's ``install.sh`` builds from a git clone;
``FedAvgGradientAggregator`` is APPFL's FedAvgAggregator for clients that send updates.
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import pickle
import sys
import threading
import types
from typing import Any, Dict, Iterator, List

STAND_IN_MODULES = ("wandb", "piq", "seaborn")


def install_stand_ins() -> List[str]:
    """Stand-ins for those of STAND_IN_MODULES that are not installed; returns their names."""
    installed = []
    for name in STAND_IN_MODULES:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        mod = types.ModuleType(name, f"stand-in: {name} is not installed (see examples/appfl/support.py)")
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)

        def missing(attr: str, _name: str = name) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise RuntimeError(f"{_name} is not installed; this example replaced it with a stand-in "
                               f"because its configuration never uses it (asked for {_name}.{attr})")

        if name == "wandb":
            mod.run = None  # appfl.agent.client reads it to see whether wandb is active
        mod.__getattr__ = missing  # type: ignore[attr-defined]
        sys.modules[name] = mod
        installed.append(name)
    return installed


# -- compressors --------------------------------------------------------------------------------

def register() -> None:
    """Make the example's compressors and aggregator findable by name (appfl.misc.utils'
    get_appfl_compressor and get_appfl_aggregator look them up in appfl.compressor and
    appfl.algorithm.aggregator)."""
    import appfl.compressor

    import ebgc.integrations.appfl as ebgc_appfl

    ebgc_appfl.register()
    appfl.compressor.PySZ3Compressor = _pysz3_compressor()
    import appfl.algorithm.aggregator

    appfl.algorithm.aggregator.FedAvgGradientAggregator = _gradient_aggregator()


def _gradient_aggregator():
    """FedAvg for clients that send updates (``send_gradient: True``: previous - new weights):
    the global model moves by minus the weighted mean of the updates, which is FedAvg of the
    weights the clients reached. APPFL 1.12's synchronous FedAvgAggregator treats every upload as
    weights; the ``gradient_based`` flag the ServerAgent derives from ``send_gradient`` is read
    only by its asynchronous aggregators (FedAsync, FedBuff, FedCompass). Registered by name so
    that the ServerAgent passes it the model, as for APPFL's own aggregators."""
    from appfl.algorithm.aggregator import FedAvgAggregator

    class FedAvgGradientAggregator(FedAvgAggregator):
        def compute_steps(self, local_models):
            if not self.aggregator_configs.get("gradient_based", False):
                return super().compute_steps(local_models)
            torch = _torch()
            total = sum(self.client_sample_size.get(cid, 0) for cid in local_models) \
                if hasattr(self, "client_sample_size") else 0
            with torch.no_grad():
                for name in self.global_state:
                    if (self.named_parameters is not None and name not in self.named_parameters) or \
                            self.global_state[name].dtype in (torch.int64, torch.int32):
                        continue  # buffers: averaged as sent, by FedAvgAggregator.aggregate
                    self.step[name] = torch.zeros_like(self.global_state[name])
                for cid, update in local_models.items():
                    if self.client_weights_mode == "sample_size" and total > 0:
                        weight = self.client_sample_size.get(cid, 0) / total
                    else:
                        weight = 1.0 / len(local_models)
                    for name in self.step:
                        self.step[name] -= weight * update[name].to(self.step[name].dtype)

    return FedAvgGradientAggregator


def _cfg(config: Any, key: str, default: Any) -> Any:
    getter = getattr(config, "get", None)
    return getter(key, default) if getter else getattr(config, key, default)


def _torch():
    import torch

    return torch


def _pysz3_compressor():
    import numpy as np
    from appfl.compressor import SZ3Compressor

    class PySZ3Compressor(SZ3Compressor):
        """APPFL's SZ3Compressor, its two SZ3 calls on the pysz wheel (``pip install pysz``)."""

        def _compress(self, ori_data):
            import pysz

            cfg = pysz.szConfig(ori_data.shape)
            mode = str(self.cfg.error_bounding_mode).upper()
            if mode == "ABS":
                cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
                cfg.absErrorBound = float(self.cfg.error_bound)
            elif mode == "REL":
                cfg.errorBoundMode = pysz.szErrorBoundMode.REL
                cfg.relErrorBound = float(self.cfg.error_bound)
            else:
                raise NotImplementedError(f"PySZ3Compressor: error_bounding_mode {mode}")
            buf, _ = pysz.sz.compress(np.ascontiguousarray(ori_data), cfg)
            return buf.tobytes()

        def _decompress(self, cmp_data, ori_shape, ori_dtype):
            import pysz

            out, _ = pysz.sz.decompress(np.frombuffer(cmp_data, dtype=np.uint8), ori_dtype, tuple(ori_shape))
            return out

    return PySZ3Compressor


# -- pickle tripwires ---------------------------------------------------------------------------

class PickleTripwire:
    """Counts pickling and unpickling (pickle.dump(s), pickle.Pickler, torch.save; pickle.load(s),
    pickle.Unpickler, torch.load) done by a thread inside ``with tripwire.armed() as hits:``;
    ``hits`` maps what was called to how often. The patched functions call the originals."""

    def __init__(self) -> None:
        import torch

        self._local = threading.local()
        targets = [(pickle, "dumps"), (pickle, "dump"), (pickle, "loads"), (pickle, "load"),
                   (pickle, "Pickler"), (pickle, "Unpickler"), (torch, "save"), (torch, "load")]
        for mod, name in targets:
            fn = getattr(mod, name)
            if getattr(fn, "_tripwire", False):
                continue  # already patched (a second tripwire in the process)
            label = f"{mod.__name__}.{name}"
            if isinstance(fn, type):
                patched = type(name, (fn,), {"__init__": self._counting_init(label, fn.__init__), "_tripwire": True})
            else:
                patched = self._counting(label, fn)
                patched._tripwire = True  # type: ignore[attr-defined]
            setattr(mod, name, patched)

    @staticmethod
    def _hit(label: str) -> None:
        for hits in getattr(_ARMED, "stack", ()):
            hits[label] = hits.get(label, 0) + 1

    def _counting(self, label, fn):
        def wrapper(*args, **kwargs):
            self._hit(label)
            return fn(*args, **kwargs)
        return wrapper

    def _counting_init(self, label, init):
        hit = self._hit

        def __init__(obj, *args, **kwargs):
            hit(label)
            init(obj, *args, **kwargs)
        return __init__

    @contextlib.contextmanager
    def armed(self) -> Iterator[Dict[str, int]]:
        hits: Dict[str, int] = {}
        stack = getattr(_ARMED, "stack", None)
        if stack is None:
            stack = _ARMED.stack = []
        stack.append(hits)
        try:
            yield hits
        finally:
            stack.remove(hits)


_ARMED = threading.local()
