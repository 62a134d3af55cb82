"""senteval_anatomy: every attention head and every layer of a transformer as a SentEval sentence encoder.

>>> from senteval_anatomy import load_encoder, HeadAdapter        # doctest: +SKIP
>>> enc = load_encoder("minilm")                                 # bundled all-MiniLM-L6-v2, offline
>>> adapter = HeadAdapter(enc, layer=3, head=7)
>>> SE(params, adapter.batcher, adapter.prepare).eval(["TREC"])  # SentEval's engine, or ours

``sweep`` is always the function (its module is :mod:`senteval_anatomy.sweeping`). The shared vocabulary (views,
poolings, vector names, presets, the result schema) lives in :mod:`senteval_anatomy.vocab`.

Names are imported lazily so that light commands (``python -m senteval_anatomy.store list``,
``python -m senteval_anatomy.data check``) start without loading torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__

_EXPORTS = {
    "ARCHITECTURES": "encoders.architectures",
    "Encoder": "encoders.encoder",
    "UnsupportedModelError": "encoders.architectures",
    "load_encoder": "encoders.loading",
    "Features": "encoders.encoding",
    "encode": "encoders.encoding",
    "iter_encode": "encoders.encoding",
    "FeatureStore": "store",
    "HeadAdapter": "interop.adapters",
    "HeadsAdapter": "interop.adapters",
    "LayerAdapter": "interop.adapters",
    "sweep": "sweeping",
    "analyse": "analysis.analyse",
    "Results": "tables.results",
    "PAPER_PARAMS": "vocab",
    "PRESETS": "vocab",
    "vector_name": "vocab",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'senteval_anatomy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
