"""The self-check of one model (:func:`self_check`), run by ``senteval-anatomy models --check MODEL``
(:mod:`.command`): the W_O identity through the attention module, the pooling against the attention direction, padding
invariance of the hooked heads and block outputs, finite features.
"""

from __future__ import annotations

import torch

from .encoder import Encoder
from .hooks import HookSet, on_heads, on_output
from .layout import verify_layout

__all__ = ["self_check"]


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
    with HookSet() as hooks, torch.inference_mode():
        for m in {id(encoder.o_proj(i)): encoder.o_proj(i) for i in range(encoder.num_layers)}.values():
            hooks.add(on_heads(m, lambda x: heads.append(x.detach().float().clone())))
        hooks.add(on_output(encoder.block(encoder.num_layers - 1),
                            lambda out: finals.append(out.detach().float().clone())))
        encoder.model(input_ids=ids.to(encoder.device), attention_mask=mask.to(encoder.device))
    stacked = torch.stack(heads)  # [L, batch, pos, H·d]
    return [(stacked[:, i, : len(r)].cpu(), finals[-1][i, : len(r)].cpu()) for i, r in enumerate(rows)]


def self_check(encoder: Encoder) -> list[tuple[str, bool, str]]:
    """The checks ``python -m senteval_anatomy.encoders --check`` runs: ``(name, passed, detail)`` per check.

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
