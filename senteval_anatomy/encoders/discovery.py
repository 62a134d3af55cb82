"""Finding where a model type that :data:`~senteval_anatomy.encoders.architectures.ARCHITECTURES` does not cover keeps
its heads: search the module tree for candidate layouts, keep the first one :func:`~senteval_anatomy.encoders.layout.
verify_layout` proves on a probe sentence.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import torch

from .architectures import SPEC_HELP, ArchSpec, UnsupportedModelError
from .layout import PROBE_SENTENCE, ModelLayout, verify_layout
from .readers import base_module, config_head_dim, config_int, dims, get_module, in_features, out_features

__all__ = ["discover_spec"]

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
        L = config_int(config, "num_hidden_layers", "num_layers", "n_layer", "n_layers")
        H = config_int(config, "num_attention_heads", "num_heads", "n_head", "n_heads")
        D = config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    except UnsupportedModelError as exc:
        tried.append(str(exc))
        return []
    d = config_head_dim(config)
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
                width = in_features(mod)
            except UnsupportedModelError:
                continue
            if width != (H * d if d else width) or width % H or out_features(mod) != D:
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
                if "attention" in type(get_module(block, cand)).__name__.lower():
                    attn_path = cand
                    break
            if not attn_path:
                tried.append(f"{list_path}.0.{o_path}: no enclosing attention module")
                continue
            attn_mod = get_module(block, attn_path)
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
            root = base_module(model, spec.base, model_type) if spec.base else model
            L, H, d, D = dims(root, spec, model_type)
        except Exception as exc:  # noqa: BLE001 - a candidate that does not fit is a finding, not a crash
            tried.append(f"{spec.blocks} / {spec.o_proj}: {exc}")
            continue
        probe = ModelLayout(
            model=root, tokenizer=tokenizer, spec=spec, model_type=model_type, num_layers=L,
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
        + SPEC_HELP
    )

