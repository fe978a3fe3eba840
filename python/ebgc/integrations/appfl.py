"""APPFL compressor plugin: ``EBGCCompressor`` implements APPFL's ``BaseCompressor``.

    import ebgc.integrations.appfl as ebgc_appfl
    ebgc_appfl.register()   # appfl.misc.utils.get_appfl_compressor("EBGCCompressor", cfg) finds it

Config keys (all optional): ``error_bound`` (1e-2), ``error_bounding_mode`` ("REL" or "ABS"),
``param_cutoff`` (tensors with at most this many values go exact, 1024), ``stateful`` (False:
True keeps one ebgc stream per compressor instance, i.e. per client; the server's instance keeps
one decoder state per client stream). Stateful only, for the client's side: ``budget_bytes``
(each model's payload at most this many bytes: the stream's bound is loosened by one factor until
it fits, up to ``max_error_bound``, default 64 x error_bound; a payload that does not fit even
then is sent as it is, and :attr:`last_report` says so) and ``error_feedback`` (False: True
carries each tensor's coding error into its next value; for updates, ``send_gradient``, not for
weights). In a client's own ``comm_configs.compressor_configs`` they survive APPFL's merge of the
server's client configuration, so each client can have its own budget. Models may be flat or
nested dicts of tensors, batched as a list or dict. The bytes are ebgc containers only
(ebgc.wire): nothing is pickled.

Payload (version 2; version 1, the same without the CRC, is still read): "EBAP" | version | part
| CRC-32C. A part is u8 kind then: flat: a length-prefixed stream message (empty when not
stateful), and then, after a message, the count and names of the model's entries in order; then
the state dict of the remaining entries (ebgc.torch). list: count, then length-prefixed parts.
dict: count, then per entry its name and a length-prefixed part.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Union

import torch

from ..arrays import to_torch
from ..errors import FormatError, InvalidArgumentError
from ..settings import Settings
from ..stream import GradientDecoder, GradientEncoder
from ..torch import compress_state_dict, decompress_state_dict
from ..wire import Reader, Writer

try:  # the base class when APPFL is installed; the plugin still imports without it
    from appfl.compressor.base_compressor import BaseCompressor
except ImportError:  # pragma: no cover - exercised only without appfl
    BaseCompressor = object  # type: ignore[assignment,misc]

_MAGIC, _VERSION = b"EBAP", 2
_FLAT, _LIST, _DICT = 0, 1, 2
_MAX_DEPTH = 16  # nested lists and dicts of models: deeper payloads are refused, not recursed into
_HEADER = 16  # magic, version, kind, the message's length, CRC: room a budget leaves besides the message


def _cfg(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    getter = getattr(config, "get", None)
    return getter(key, default) if getter else getattr(config, key, default)


class EBGCCompressor(BaseCompressor):
    def __init__(self, compressor_config: Any = None):
        settings = Settings.make(_cfg(compressor_config, "error_bound", 1e-2),
                                 str(_cfg(compressor_config, "error_bounding_mode", "REL")))
        self.error_bound, self.mode = settings.error_bound, settings.mode
        self.cutoff = int(_cfg(compressor_config, "param_cutoff", 1024))
        self.stateful = bool(_cfg(compressor_config, "stateful", False))
        budget = _cfg(compressor_config, "budget_bytes", None)
        max_error_bound = _cfg(compressor_config, "max_error_bound", None)
        error_feedback = bool(_cfg(compressor_config, "error_feedback", False))
        if (budget or error_feedback) and not self.stateful:
            raise InvalidArgumentError("budget_bytes and error_feedback need stateful=True")
        self.budget_bytes = int(budget) if budget else None
        self._encoder = GradientEncoder(
            self.error_bound, mode=self.mode, budget_bytes=self.budget_bytes,
            max_error_bound=float(max_error_bound) if max_error_bound is not None and self.budget_bytes else None,
            error_feedback=error_feedback) if self.stateful else None
        self._decoder = GradientDecoder()

    @property
    def last_report(self):
        """ebgc.stream.MessageReport of the last model's stream message (its bytes, the bound used,
        whether it met budget_bytes), or None."""
        return self._encoder.last_report if self._encoder is not None else None

    # -- encoding -------------------------------------------------------------------------------
    def _flat(self, model: Dict[str, torch.Tensor], w: Writer) -> None:
        big = {k: v for k, v in model.items() if isinstance(v, torch.Tensor) and v.dtype in
               (torch.float32, torch.float64) and v.numel() > self.cutoff}
        if self._encoder is not None and big:
            names = Writer().varint(len(model))
            for k in model:
                names.name(k)
            rest = compress_state_dict(OrderedDict((k, v) for k, v in model.items() if k not in big),
                                       self.error_bound, mode=self.mode)
            # the exact entries and the names count against the budget too
            budget = max(1, self.budget_bytes - len(names.buf) - len(rest) - _HEADER) if self.budget_bytes else None
            w.blob(self._encoder.encode({k: v.detach().cpu() for k, v in big.items()}, budget_bytes=budget))
            w.raw(bytes(names.buf)).raw(rest)
            return
        w.blob(b"").raw(compress_state_dict(model, self.error_bound, mode=self.mode, min_elements=self.cutoff + 1))

    def _encode(self, model: Any, batched: bool, w: Writer) -> None:
        if batched and isinstance(model, list):
            w.u8(_LIST).varint(len(model))
            for m in model:
                w.blob(self._part(m))
            return
        nested = isinstance(model, dict) and model and not isinstance(next(iter(model.values())), torch.Tensor)
        if nested:
            w.u8(_DICT).varint(len(model))
            for k, m in model.items():
                w.name(k).blob(self._part(m))
            return
        w.u8(_FLAT)
        self._flat(model, w)

    def _part(self, model: Any) -> bytes:
        w = Writer()
        self._encode(model, False, w)
        return bytes(w.buf)

    def compress_model(self, model: Union[dict, OrderedDict, List[Union[dict, OrderedDict]]],
                       batched: bool = False) -> bytes:
        w = Writer(_MAGIC, _VERSION)
        self._encode(model, batched, w)
        return w.seal()

    # -- decoding -------------------------------------------------------------------------------
    def _decode(self, r: Reader, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise FormatError(f"an ebgc APPFL payload nests models more than {_MAX_DEPTH} deep")
        kind = r.u8("kind")
        if kind == _LIST:
            return [self._decode(r.sub("model"), depth + 1) for _ in range(r.count("count"))]
        if kind == _DICT:
            out = OrderedDict()
            for _ in range(r.count("count", 2)):
                name = r.name("name")
                out[name] = self._decode(r.sub("model"), depth + 1)
            return out
        if kind != _FLAT:
            raise FormatError("unknown part in an ebgc APPFL payload")
        message = r.blob("stream message")
        if not len(message):
            return OrderedDict(decompress_state_dict(r.rest()))
        streamed = {k: to_torch(v) for k, v in self._decoder.decode(message).items()}
        order = [r.name("name") for _ in range(r.count("count"))]
        rest = decompress_state_dict(r.rest())
        missing = [k for k in order if k not in streamed and k not in rest]
        if missing:
            raise FormatError(f"entry {missing[0]!r} of an ebgc APPFL payload is missing")
        return OrderedDict((k, streamed[k] if k in streamed else rest[k]) for k in order)

    def decompress_model(self, compressed_model: bytes, model: Any = None, batched: bool = False) -> Any:
        r = Reader.open(compressed_model, _MAGIC, (1, _VERSION), "APPFL payload", unsealed=(1,))
        out = self._decode(r)
        r.end()
        return out


def register() -> None:
    """Make ``EBGCCompressor`` findable by APPFL's ``get_appfl_compressor`` (which looks names up
    in ``appfl.compressor``)."""
    import appfl.compressor

    appfl.compressor.EBGCCompressor = EBGCCompressor
