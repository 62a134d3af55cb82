"""The encoder: a loaded transformer with its tokenizer, sizes, layout and identity (:class:`Encoder`), and how a model
you built becomes one (:meth:`Encoder.from_model`; names and paths go through
:func:`~senteval_anatomy.encoders.loading.load_encoder`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..vocab import ParamError, is_whole, read_head, read_layer, resolve_device
from .architectures import ARCHITECTURES, SPEC_HELP, ArchSpec, UnsupportedModelError
from .discovery import discover_spec
from .layout import ModelLayout, verify_layout
from .readers import (
    VOLATILE_CONFIG_KEYS,
    base_module,
    check_tokenizer,
    dims,
    max_positions,
    prepare_tokenizer,
    strip_head,
    tokenizer_digest,
)

__all__ = ["Encoder", "check_head", "check_heads", "check_layer", "check_max_length"]

# Model types whose discovered layout was already announced in this process (one warning per type).
_WARNED: set[str] = set()


def check_max_length(max_length: Any, tokenizer: Any) -> int:
    """``max_length`` (tokens, special tokens included) as an int, or a one-line :class:`ParamError` naming it.

    Why here: the least useful limit depends on the tokenizer ([CLS] and [SEP] count against it, and at least one
    word of each sentence must be left), and every entry point (``load_encoder``, ``Encoder.from_model``,
    ``encode``, the adapters, the store, ``sweep``, ``--max-length``) asks this one function. NumPy integers are
    accepted; ``True``, ``2.5`` and strings are not.
    """
    try:
        special = int(tokenizer.num_special_tokens_to_add(pair=False))
    except (AttributeError, NotImplementedError, TypeError):
        special = 0
    least = max(2, special + 1)
    if not is_whole(max_length):
        raise ParamError("max_length", max_length, "give a whole number of tokens (special tokens included), "
                                                   "e.g. 128")
    if max_length < least:
        raise ParamError("max_length", max_length, f"too small; it counts special tokens too (this tokenizer adds "
                         f"{special}, so every sentence would keep {max(0, max_length - special)} words): give at "
                         f"least {least}, e.g. 128")
    return int(max_length)


@dataclass(eq=False)
class Encoder(ModelLayout):
    """A loaded transformer, its tokenizer and the facts needed to read every head and layer.

    Build it with :func:`~senteval_anatomy.encoders.loading.load_encoder` (names and paths) or
    :meth:`Encoder.from_model` (a model you built). Module access by layer (``block``, ``o_proj``, ``attn``) comes
    from :class:`~senteval_anatomy.encoders.layout.ModelLayout`.

    Attributes
    ----------
    name : str
        What the user asked for (``"minilm"``, a hub id or a path); used in results and cache manifests.
    num_layers, num_heads, head_dim, hidden_size : int
        ``L``, ``H``, ``d`` (read from the config or from the output projection's width, never as hidden / heads) and
        ``D``.
    max_length : int
        Longest input in tokens, special tokens included; longer sentences are truncated and counted.
    default_pooling : str
        ``"cls"`` for encoders, ``"last"`` for causal decoders.
    revision : str or None
        Hub revision; part of the fingerprint.
    layout : str
        Where the layout came from: ``"table:<model_type>"``, ``"user"`` / ``"user:<file>"`` or ``"discovered"``.
    """

    name: str
    revision: str | None = None
    layout: str = ""
    _fp_cache: tuple[Any, str] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        name: str | None = None,
        device: str | torch.device | None = "auto",
        max_length: int | None = None,
        revision: str | None = None,
        spec: ArchSpec | None = None,
        layout: str | None = None,
    ) -> Encoder:
        """Wrap an already built Hugging Face model (e.g. random weights from a config) and its tokenizer.

        The layout comes from ``spec`` when given (``layout`` then names where it came from, e.g. the JSON file),
        else from :data:`ARCHITECTURES`, else it is discovered from the model's structure (with a warning). Every
        layout is validated on a probe sentence before the encoder is returned (:func:`verify_layout`).
        """
        config = model.config
        model_type = str(getattr(config, "model_type", None) or type(model).__name__)
        if spec is not None:
            layout = layout or "user"
        elif model_type in ARCHITECTURES:
            spec, layout = ARCHITECTURES[model_type], f"table:{model_type}"
        else:
            layout = "discovered"
        dev = resolve_device(device)
        check_tokenizer(model, tokenizer, name or model_type)
        if spec is None:
            model = strip_head(model, None)
            model.to(dev)
            model.eval()
            prepare_tokenizer(tokenizer)
            spec = discover_spec(model, tokenizer)
            if spec.base:
                model = base_module(model, spec.base)
                spec = replace(spec, base="")
            if model_type not in _WARNED:
                _WARNED.add(model_type)
                warnings.warn(
                    f"{model_type!r} is not in senteval_anatomy's table of architectures; its layout was discovered "
                    f"and validated on a probe sentence (blocks={spec.blocks!r}, o_proj={spec.o_proj!r}, "
                    f"attn={spec.attn!r}). Results record layout='discovered'. Run "
                    "`python -m senteval_anatomy.encoders --check PATH` for the full self-check.",
                    stacklevel=2,
                )
        else:
            model = strip_head(model, spec)
            if spec.base:
                model = base_module(model, spec.base, model_type)
        model.to(dev)
        model.eval()
        prepare_tokenizer(tokenizer)
        num_layers, num_heads, head_dim, hidden_size = dims(model, spec, model_type)
        limit = max_positions(config, spec, tokenizer)
        if max_length is not None:
            max_length = check_max_length(max_length, tokenizer)
            limit = min(limit, max_length) if limit else max_length
        encoder = cls(
            name=name or getattr(config, "_name_or_path", "") or model_type,
            model=model,
            tokenizer=tokenizer,
            spec=spec,
            model_type=model_type,
            num_layers=num_layers,
            num_heads=num_heads,
            head_dim=int(head_dim),
            hidden_size=hidden_size,
            max_length=int(limit),
            device=dev,
            revision=revision,
            layout=layout,
        )
        report = verify_layout(encoder)
        if not report.ok:
            raise UnsupportedModelError(
                f"{model_type}: the layout ({layout}) failed validation on a probe sentence:\n  "
                + "\n  ".join(report.problems)
                + "\n"
                + SPEC_HELP
            )
        if report.causal != spec.causal:
            # e.g. a BERT built with is_decoder=True: the table's pooling would read a token that sees nothing.
            pooling = "last" if report.causal else ("cls" if spec.default_pooling == "cls" else "mean")
            warnings.warn(
                f"{model_type}: this model attends {'causally' if report.causal else 'bidirectionally'}, unlike the "
                f"{layout} layout; default pooling is {pooling!r}.",
                stacklevel=2,
            )
            encoder.spec = replace(spec, causal=report.causal, default_pooling=pooling)
        return encoder

    # ------------------------------------------------------------------ inputs
    def token_limit(self, max_length: int | None = None) -> int:
        """The tokens a sentence keeps: the encoder's limit, or ``max_length`` when given and smaller. The one home
        of this rule (features, store and sweep ask here); ``max_length`` is checked as :func:`check_max_length`
        checks it, so ``encode``, the adapters and the store refuse what ``load_encoder`` and ``--max-length``
        refuse."""
        if max_length is None:
            return int(self.max_length)
        return int(min(self.max_length, check_max_length(max_length, self.tokenizer)))

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """A sha256 over the weights, the tokenizer, the config and the revision.

        Two encoders with equal fingerprints give equal features, so the feature store keys entries on it. Hashing the
        weights costs about a second per GB; it is recomputed only when a parameter changed (tracked by each tensor's
        in-place version counter).
        """
        state = self.model.state_dict(keep_vars=True)
        marker = tuple((k, v.data_ptr(), v._version, tuple(v.shape)) for k, v in state.items())
        if self._fp_cache is not None and self._fp_cache[0] == marker:
            return self._fp_cache[1]
        h = hashlib.sha256()
        h.update(self.model_type.encode())
        config = {k: v for k, v in self.model.config.to_dict().items() if k not in VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        h.update(str(self.revision).encode())
        h.update(tokenizer_digest(self.tokenizer).encode())
        if not self.layout.startswith("table:"):
            # A user's or a discovered layout may hook another module than the table would: other features.
            h.update(json.dumps(self.spec.to_dict(), sort_keys=True).encode())
        for key in sorted(state):
            t = state[key].detach()
            h.update(key.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        digest = h.hexdigest()
        self._fp_cache = (marker, digest)
        return digest

    def __repr__(self) -> str:
        return (
            f"Encoder({self.name!r}, {self.model_type}, layers={self.num_layers}, heads={self.num_heads}, "
            f"head_dim={self.head_dim}, hidden={self.hidden_size}, device={self.device}, layout={self.layout})"
        )


def check_layer(encoder: Encoder, layer: int, what: str = "layer") -> int:
    """A block index as every entry point reads it (:func:`~senteval_anatomy.vocab.read_layer`: NumPy integers
    accepted, ``True``/``2.5``/``None`` refused in one line), in range for ``encoder`` (negative counts from the
    end), returned as 0..L-1."""
    value = read_layer(layer, what=what, embeddings=False)
    L = encoder.num_layers
    if not -L <= value < L:
        raise ParamError(what, layer, f"out of range: {encoder.name} has {L} layers (0..{L - 1}, or -1 for the last)")
    return int(value) % L


def check_head(encoder: Encoder, head: int, what: str = "head") -> int:
    """A head index as every entry point reads it (:func:`~senteval_anatomy.vocab.read_head`), in range for
    ``encoder``."""
    value = read_head(head, what=what)
    H = encoder.num_heads
    if value >= H:
        raise ParamError(what, head, f"out of range: {encoder.name} has {H} heads per layer (0..{H - 1})")
    return value


def check_heads(encoder: Encoder, heads: Any) -> list[tuple[int, int]]:
    """``(layer, head)`` pairs as every entry point reads them (the adapters, ablation): a list/tuple of pairs or a
    NumPy ``[k, 2]`` array, each pair checked by :func:`check_layer`/:func:`check_head`, each head once in the order
    given (a head named twice, or as ``-1`` and ``L-1``, is used once, as repeated tasks are)."""
    if isinstance(heads, np.ndarray):  # a NumPy [k, 2] array reads like the list of pairs it holds
        heads = heads.tolist()
    if isinstance(heads, (str, bytes)) or not isinstance(heads, Iterable):
        raise ParamError("heads", heads, "give a list of (layer, head) pairs, e.g. [(3, 7), (5, 1)]")
    pairs = list(heads)
    if not pairs:
        raise ParamError("heads", heads, "give at least one (layer, head) pair")
    checked: list[tuple[int, int]] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, np.ndarray):
            pair = pair.tolist()
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ParamError(f"heads[{i}]", pair, "not a (layer, head) pair, e.g. (3, 7)")
        one = (check_layer(encoder, pair[0], f"heads[{i}] layer"), check_head(encoder, pair[1], f"heads[{i}] head"))
        if one not in checked:
            checked.append(one)
    return checked
