"""Reading a Hugging Face model, its config and its tokenizer: module paths, sizes (``L``, ``H``, ``d``, ``D``), the
longest usable input, the tokenizer's digest, and one switch that keeps transformers quiet while we read.

Every function here looks at a model or a tokenizer and changes nothing but the tokenizer's padding settings
(:func:`prepare_tokenizer`); :class:`~senteval_anatomy.encoders.encoder.Encoder` and layout discovery build on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from .architectures import ArchSpec, UnsupportedModelError

__all__ = [
    "DTYPES",
    "VOLATILE_CONFIG_KEYS",
    "base_module",
    "check_tokenizer",
    "config_attr",
    "config_head_dim",
    "config_int",
    "dims",
    "get_module",
    "get_path",
    "in_features",
    "max_positions",
    "out_features",
    "prepare_tokenizer",
    "quiet_transformers",
    "resolve_dtype",
    "strip_head",
    "tokenizer_digest",
]

#: Weight dtypes :func:`~senteval_anatomy.encoders.loading.load_encoder` accepts, by name (short aliases included).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                                  "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}

def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


# Config entries that say where or with what a model was saved, not what it computes.
VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "architectures", "transformers_version", "_commit_hash", "dtype", "torch_dtype"})


def in_features(module: torch.nn.Module) -> int:
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


def out_features(module: torch.nn.Module) -> int | None:
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[1])
    out = getattr(module, "out_features", None)
    return int(out) if isinstance(out, int) else None


def base_module(model: torch.nn.Module, base: str, model_type: str = "") -> torch.nn.Module:
    """The module at ``base`` (an encoder-decoder's encoder), carrying the model's config.

    Some encoders (FSMT's) hold no ``config`` of their own; everything downstream (sizes, fingerprint, limits)
    reads the model's, so it is attached to the sub-module as a plain attribute.
    """
    root = get_path(model, base, "base", model_type or str(getattr(model.config, "model_type", "")))
    if getattr(root, "config", None) is None:
        root.config = model.config
    return root


def get_path(root: torch.nn.Module, path: str, what: str, model_type: str) -> torch.nn.Module:
    """``get_module`` with an error that names the layout field and lists what exists at the failing step."""
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


def config_attr(config: Any, name: str) -> Any:
    """``getattr(config, name, None)``, also None where transformers refuses a model-wide value (configs whose
    heads or widths vary per layer raise their own error for the global attribute)."""
    try:
        return getattr(config, name, None)
    except Exception:  # noqa: BLE001 - e.g. transformers' AmbiguousGlobalPerLayerAttributeError
        return None


def config_int(config: Any, *names: str) -> int:
    for name in names:
        value = config_attr(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise UnsupportedModelError(
        f"{getattr(config, 'model_type', 'this model')}: the config has none of {', '.join(names)}; cannot tell the "
        "model's size."
    )


def config_head_dim(config: Any) -> int | None:
    """The width of one head's context (what W_O reads per head) as the config states it, or None.

    Multi-head latent attention (DeepSeek-V2/V3, MiniCPM3, GLM-4-MoE-Lite, …) gives queries and keys another width
    (``qk_nope_head_dim + qk_rope_head_dim``; ``head_dim`` is only the rotary part there) than values
    (``v_head_dim``); the contexts W_O reads have the value width.
    """
    for name in ("v_head_dim", "head_dim", "d_kv"):
        value = config_attr(config, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def dims(model: torch.nn.Module, spec: ArchSpec, model_type: str) -> tuple[int, int, int, int]:
    """``(L, H, d, D)`` of ``model`` under ``spec``; ``d`` from the config or from W_O's width, never D / H."""
    config = model.config
    blocks = get_path(model, spec.blocks, "blocks", model_type)
    if not isinstance(blocks, (torch.nn.ModuleList, torch.nn.Sequential)) or len(blocks) == 0:
        raise UnsupportedModelError(
            f"{model_type}: blocks={spec.blocks!r} is a {type(blocks).__name__}, not a non-empty ModuleList of "
            "transformer blocks."
        )
    if spec.shared_blocks:
        num_layers = config_int(config, "num_hidden_layers", "num_layers", "n_layer")
        inner = getattr(config, "inner_group_num", 1)
        if inner != 1:
            raise UnsupportedModelError(
                f"{model_type}: inner_group_num={inner}; only one layer per shared group is supported (as in every "
                "released ALBERT checkpoint)."
            )
    else:
        num_layers = len(blocks)
    num_heads = config_int(config, "num_attention_heads", "num_heads", "n_head", "n_heads")
    o_proj = get_path(blocks[0], spec.o_proj, "o_proj", model_type)
    get_path(blocks[0], spec.attn, "attn", model_type)
    widths = {in_features(o_proj)}
    for i, block in enumerate(blocks):
        # Hybrid models (linear-attention, state-space or MLP-only layers between attention layers) have no such
        # module in some blocks: their layers have no softmax heads to read.
        for what, path in (("o_proj", spec.o_proj), ("attn", spec.attn)):
            try:
                module = get_module(block, path)
            except (AttributeError, IndexError, TypeError, KeyError):
                raise UnsupportedModelError(
                    f"{model_type}: block {i} ({type(block).__name__}) has no {what}={path!r} although block 0 "
                    f"has: not every layer of this model is softmax attention (a hybrid of attention and "
                    "linear-attention / state-space layers?), so there are no heads to read in every layer."
                ) from None
            if what == "o_proj":
                widths.add(in_features(module))
    if len(widths) > 1:
        raise UnsupportedModelError(
            f"{model_type}: the output projection {spec.o_proj!r} takes {sorted(widths)} features in different "
            "layers; layers with different head counts or widths are not supported."
        )
    o_in = in_features(o_proj)
    head_dim = config_head_dim(config) or o_in // num_heads
    if num_heads * int(head_dim) != o_in:
        raise UnsupportedModelError(
            f"{model_type}: {num_heads} heads × head_dim {head_dim} = {num_heads * head_dim}, but the output "
            f"projection {spec.o_proj!r} takes {o_in} features; the config and the weights disagree (or o_proj "
            "is not the attention output projection)."
        )
    hidden_size = config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    return num_layers, num_heads, int(head_dim), hidden_size


def strip_head(model: torch.nn.Module, spec: ArchSpec | None) -> torch.nn.Module:
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
            get_module(candidate, path)
            return candidate
        except (AttributeError, IndexError, TypeError):
            continue
    return model  # the caller's get_path names the missing step


def prepare_tokenizer(tokenizer: Any) -> None:
    if getattr(tokenizer, "pad_token", None) is None:
        # Decoders such as GPT-2 ship without a pad token. Its id never matters: padding is masked out and
        # pooling reads real tokens only.
        for candidate in ("eos_token", "unk_token", "bos_token"):
            if getattr(tokenizer, candidate, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, candidate)
                break
    # Right padding keeps absolute / rotary positions of real tokens identical to an unpadded run.
    tokenizer.padding_side = "right"


def check_tokenizer(model: torch.nn.Module, tokenizer: Any, name: str) -> None:
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


def max_positions(config: Any, spec: ArchSpec, tokenizer: Any) -> int:
    limits = []
    mpe = config_attr(config, "max_position_embeddings") or config_attr(config, "n_positions")
    if mpe:
        limits.append(int(mpe) - spec.position_offset)
    tml = getattr(tokenizer, "model_max_length", None)
    if tml and tml < 1_000_000:
        limits.append(int(tml))
    return min(limits) if limits else 512


def tokenizer_digest(tokenizer: Any) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()


@contextlib.contextmanager
def quiet_transformers(*, progress_bars: bool = True) -> Iterator[None]:
    """Silence transformers' log (errors still show) and Python warnings inside the block, then restore both.

    Loading a model or tokenizing a long list makes transformers warn about things we handle ourselves (unused
    weights of a task head, sequences longer than the model's limit, which we truncate and count). With
    ``progress_bars=False`` its weight-loading bar is hidden as well: one bar per run is noise, our own bars show the
    real work.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        if not progress_bars:
            hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars and not progress_bars:
                hf_logging.enable_progress_bar()
