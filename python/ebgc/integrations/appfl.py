"""APPFL compressor plugin: ``EBGCCompressor`` implements APPFL's ``BaseCompressor``.

    import ebgc.integrations.appfl as ebgc_appfl
    ebgc_appfl.register()   # appfl.misc.utils.get_appfl_compressor("EBGCCompressor", cfg) finds it

Config keys (all optional): ``error_bound`` (1e-2), ``error_bounding_mode`` ("REL" or "ABS"),
``param_cutoff`` (tensors with at most this many values go exact, 1024), ``stateful`` (False:
True keeps one ebgc stream per compressor instance, i.e. per client; the server's instance keeps
one decoder state per client stream). Models may be flat or nested dicts of tensors, batched as a
list or dict. The bytes are ebgc containers only: nothing is pickled.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Union

import torch

from ..errors import FormatError
from ..stream import GradientDecoder, GradientEncoder, _Reader, _varint
from ..torch import compress_state_dict, decompress_state_dict

try:  # the base class when APPFL is installed; the plugin still imports without it
    from appfl.compressor.base_compressor import BaseCompressor
except ImportError:  # pragma: no cover - exercised only without appfl
    BaseCompressor = object  # type: ignore[assignment,misc]

_MAGIC, _VERSION = b"EBAP", 1
_FLAT, _LIST, _DICT = 0, 1, 2
_STREAM_NONE = b""


def _cfg(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    getter = getattr(config, "get", None)
    return getter(key, default) if getter else getattr(config, key, default)


class EBGCCompressor(BaseCompressor):
    def __init__(self, compressor_config: Any = None):
        self.error_bound = float(_cfg(compressor_config, "error_bound", 1e-2))
        self.mode = str(_cfg(compressor_config, "error_bounding_mode", "REL")).lower()
        self.cutoff = int(_cfg(compressor_config, "param_cutoff", 1024))
        self.stateful = bool(_cfg(compressor_config, "stateful", False))
        self._encoder = GradientEncoder(self.error_bound, mode=self.mode) if self.stateful else None
        self._decoder = GradientDecoder()

    # -- encoding -------------------------------------------------------------------------------
    def _flat(self, model: Dict[str, torch.Tensor]) -> bytes:
        big = {k: v for k, v in model.items() if isinstance(v, torch.Tensor) and v.dtype in
               (torch.float32, torch.float64) and v.numel() > self.cutoff}
        if self._encoder is not None and big:
            message = self._encoder.encode({k: v.detach().cpu() for k, v in big.items()})
            rest = OrderedDict((k, v) for k, v in model.items() if k not in big)
            order = b"".join(_varint(len(k.encode())) + k.encode() for k in model)
            return (_varint(len(message)) + message + _varint(len(model)) + order +
                    compress_state_dict(rest, self.error_bound, mode=self.mode))
        sd = compress_state_dict(model, self.error_bound, mode=self.mode, min_elements=self.cutoff + 1)
        return _varint(0) + sd

    def _encode(self, model: Any, batched: bool) -> bytes:
        if batched and isinstance(model, list):
            parts = [self._encode(m, False) for m in model]
            return bytes([_LIST]) + _varint(len(parts)) + b"".join(_varint(len(p)) + p for p in parts)
        nested = isinstance(model, dict) and model and not isinstance(next(iter(model.values())), torch.Tensor)
        if nested:
            out = bytearray([_DICT]) + _varint(len(model))
            for k, m in model.items():
                p = self._encode(m, False)
                out += _varint(len(k.encode())) + k.encode() + _varint(len(p)) + p
            return bytes(out)
        return bytes([_FLAT]) + self._flat(model)

    def compress_model(self, model: Union[dict, OrderedDict, List[Union[dict, OrderedDict]]],
                       batched: bool = False) -> bytes:
        return _MAGIC + bytes([_VERSION]) + self._encode(model, batched)

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self, r: _Reader) -> Any:
        kind = r.u8("kind")
        if kind == _LIST:
            return [self._decode(_Reader(r.blob("model"), "appfl payload")) for _ in range(r.varint("count"))]
        if kind == _DICT:
            out = OrderedDict()
            for _ in range(r.varint("count")):
                name = bytes(r.blob("name")).decode("utf-8")
                out[name] = self._decode(_Reader(r.blob("model"), "appfl payload"))
            return out
        if kind != _FLAT:
            raise FormatError("unknown part in an ebgc APPFL payload")
        message = r.blob("stream message")
        if not len(message):
            return OrderedDict(decompress_state_dict(r.take(len(r.data) - r.pos, "state dict")))
        streamed = {k: torch.from_numpy(v) for k, v in self._decoder.decode(bytes(message)).items()}
        order = [bytes(r.blob("name")).decode("utf-8") for _ in range(r.varint("count"))]
        rest = decompress_state_dict(r.take(len(r.data) - r.pos, "state dict"))
        return OrderedDict((k, streamed[k] if k in streamed else rest[k]) for k in order)

    def decompress_model(self, compressed_model: bytes, model: Any = None, batched: bool = False) -> Any:
        view = memoryview(compressed_model).cast("B")
        if len(view) < 6 or bytes(view[:4]) != _MAGIC or view[4] != _VERSION:
            raise FormatError("not an ebgc APPFL payload")
        r = _Reader(view, "appfl payload")
        r.take(5, "header")
        out = self._decode(r)
        if r.pos != len(view):
            raise FormatError("trailing bytes in an ebgc APPFL payload")
        return out


def register() -> None:
    """Make ``EBGCCompressor`` findable by APPFL's ``get_appfl_compressor`` (which looks names up
    in ``appfl.compressor``)."""
    import appfl.compressor

    appfl.compressor.EBGCCompressor = EBGCCompressor
