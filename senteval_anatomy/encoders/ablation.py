"""Head ablation: does the model *use* what a probe finds in a head? (Michel et al. 2019, one head at a time.)

A head is ablated by a forward pre-hook on its block's attention output projection
(:func:`~senteval_anatomy.encoders.hooks.on_heads`, which reads and replaces W_O's input however the model
passes it), the module whose input holds the ``H`` head contexts side by side (the one
:mod:`senteval_anatomy.encoders.encoding` reads heads from; found through the encoder's
:class:`~senteval_anatomy.encoders.architectures.ArchSpec`). The hook replaces the head's ``d`` columns by
zeros (``mode="zero"``) or by the head's mean context over a *reference* set of sentences (``mode="mean"``,
which keeps the scale the next layers expect). The reference is the task's **training** sentences
(:func:`ablation_reference`), never the sentences the ablation is measured on: a mean taken over the evaluated
sentences would carry information about exactly those sentences into the ablated model (with few sentences,
the mean of one sentence's own context is that context), and would shrink the measured effect. Nothing
upstream of the projection changes; transformers v5 removed ``head_mask``, and the hook works with every
attention implementation.

What changes is measured on the model's own output:

* ``"mlm"``: masked-LM loss (nats per masked token) of a model with an MLM head built on the encoder's weights
  (``BertForMaskedLM`` and friends, passed as ``lm_model``);
* ``"clm"``: next-token loss (nats per predicted token) of a causal LM head (``GPT2LMHeadModel``...);
* ``"embedding"``: for models without an LM head (the bundled all-MiniLM-L6-v2 is a sentence-transformers encoder
  whose output *is* the mean-pooled last layer): ``1 - cosine`` between the sentence embedding with and without the
  ablation, averaged over sentences.

The masking of the MLM loss is a fixed function of the seed, so the loss with and without an ablation is computed on
the very same masked positions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..vocab import ABLATION_MODES, ENCODE_BATCH_SIZE
from .encoder import Encoder, check_heads
from .encoding import encode, tokenize
from .hooks import HookSet, on_heads

__all__ = ["MEASURES", "ablate_heads", "ablation_reference", "ablation_scan", "head_means",
           "model_score", "topk_ablation_curve"]

#: Most training sentences :func:`ablation_reference` averages over for ``mode="mean"``.
REFERENCE_SENTENCES = 1000

MEASURES = ("mlm", "clm", "embedding")
#: Share of real (non-special) tokens masked for the masked-LM loss (BERT's rate).
MLM_MASK_RATE = 0.15


def head_means(encoder: Encoder, sentences: Sequence[str], *, batch_size: int = ENCODE_BATCH_SIZE,
               max_length: int | None = None) -> np.ndarray:
    """Mean context of every head over ``sentences`` (token mean within a sentence, then over sentences):
    float32 ``[L, H, d]``, the replacement of ``mode="mean"``."""
    feats = encode(encoder, sentences, pooling="mean", views="heads", batch_size=batch_size, max_length=max_length,
                   progress=False)
    assert feats.heads is not None
    return feats.heads.mean(0)


def ablation_reference(task: Any, limit: int = REFERENCE_SENTENCES) -> list[str]:
    """The sentences whose mean head contexts ``mode="mean"`` substitutes: the first ``limit`` distinct sentences of
    ``task``'s training split (``train``; the first split for tasks without one), pairs' both sides. Never test
    sentences, which the ablation is measured on."""
    rec = task.data.get("train") or next(iter(task.data.values()))
    sides = [rec["X"]] if "X" in rec else [rec["A"], rec["B"]]
    return list(dict.fromkeys(" ".join(s) for side in sides for s in side))[:int(limit)]


def _means(encoder: Encoder, mode: str, reference: Sequence[str] | None, sentences: Sequence[str],
           batch_size: int) -> np.ndarray | None:
    if mode != "mean":
        return None
    if not reference:
        raise ValueError("mode='mean' needs reference= sentences to take the head means over (the task's training "
                         "sentences, ablation_reference(task)), never the evaluated ones.")
    if set(reference) == set(sentences):
        raise ValueError("mode='mean': reference= are the very sentences the ablation is measured on; take the "
                         "means over other (training) sentences, ablation_reference(task).")
    return head_means(encoder, reference, batch_size=batch_size)


def _check_heads(encoder: Encoder, heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The heads as the adapters read them (one validator: encoders.encoder.check_heads)."""
    return check_heads(encoder, heads)


@contextlib.contextmanager
def ablate_heads(encoder: Encoder, heads: Iterable[tuple[int, int]], *, mode: str = "zero",
                 means: np.ndarray | None = None) -> Iterator[None]:
    """Inside the block, every forward pass of ``encoder.model`` runs with the ``(layer, head)`` pairs in ``heads``
    ablated (see the module docstring); the hooks are removed on exit, also on error.

    ``means`` (``[L, H, d]``, from :func:`head_means`) is required for ``mode="mean"``. The hooks run before any
    other pre-hook of the projection (``prepend=True``), so feature capture sees the ablated heads.
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode={mode!r} is not one of {ABLATION_MODES}.")
    heads = _check_heads(encoder, heads)
    if mode == "mean":
        if means is None:
            raise ValueError("mode='mean' needs means=head_means(encoder, sentences) (the replacement contexts).")
        means = np.asarray(means)
        want = (encoder.num_layers, encoder.num_heads, encoder.head_dim)
        if means.shape != want:
            raise ValueError(f"means has shape {means.shape}, expected {want} (layers, heads, head_dim).")
    d = encoder.head_dim
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    with HookSet() as hooks:
        for layer, hs in by_layer.items():

            def edit(x: torch.Tensor, layer: int = layer, hs: list[int] = hs) -> torch.Tensor:
                x = x.clone()
                for h in hs:
                    if mode == "zero":
                        x[..., h * d : (h + 1) * d] = 0
                    else:
                        x[..., h * d : (h + 1) * d] = torch.as_tensor(means[layer, h], dtype=x.dtype,
                                                                      device=x.device)
                return x

            hooks.add(on_heads(encoder.o_proj(layer), edit, prepend=True))
        yield


def _padded(encoder: Encoder, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    pad = encoder.tokenizer.pad_token_id
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), 0 if pad is None else int(pad), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return input_ids, mask


def _check_lm(encoder: Encoder, lm_model: torch.nn.Module) -> None:
    base = getattr(lm_model, getattr(lm_model, "base_model_prefix", ""), None)
    if base is not encoder.model:
        raise ValueError("lm_model must be built on the encoder's own base model (e.g. "
                         "Encoder.from_model(BertForMaskedLM...) keeps the LM model's base model); otherwise the "
                         "ablation hooks would not reach it.")


def model_score(encoder: Encoder, sentences: Sequence[str], *, measure: str, lm_model: torch.nn.Module | None = None,
                reference: np.ndarray | None = None, batch_size: int = 32, seed: int = 0,
                max_length: int | None = None) -> tuple[float, np.ndarray | None]:
    """The model's own output on ``sentences`` under whatever ablation is active.

    Returns ``(score, embeddings)``: for ``"mlm"`` / ``"clm"`` the mean loss in nats per predicted token (and
    ``None``); for ``"embedding"`` the mean ``1 - cosine`` to ``reference`` (0.0 when ``reference`` is ``None``)
    and the mean-pooled last-layer sentence embeddings ``[n, D]``.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r} is not one of {MEASURES}.")
    if measure == "embedding":
        feats = encode(encoder, sentences, pooling="mean", views="layers", batch_size=batch_size,
                       max_length=max_length, progress=False)
        assert feats.layers is not None
        emb = feats.layers[:, -1].astype(np.float64)
        if reference is None:
            return 0.0, emb
        cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
        return float(np.mean(1.0 - cos)), emb
    if lm_model is None:
        raise ValueError(f"measure={measure!r} needs lm_model (a model with an LM head on the encoder's base model); "
                         "use measure='embedding' for encoders without one.")
    _check_lm(encoder, lm_model)
    ids, _ = tokenize(encoder, list(sentences), max_length)
    tok = encoder.tokenizer
    rng = np.random.RandomState(seed)
    special = set(tok.all_special_ids)
    total, count = 0.0, 0
    lm_model.eval()
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            input_ids, mask = _padded(encoder, chunk)
            if measure == "mlm":
                if tok.mask_token_id is None:
                    raise ValueError(f"{encoder.name}'s tokenizer has no mask token: no masked-LM loss.")
                labels = torch.full_like(input_ids, -100)
                for i, x in enumerate(chunk):
                    real = [j for j, t in enumerate(x) if t not in special]
                    if not real:
                        continue
                    k = max(1, int(round(MLM_MASK_RATE * len(real))))
                    pos = rng.choice(real, size=k, replace=False)
                    labels[i, pos] = input_ids[i, pos]
                    input_ids[i, pos] = tok.mask_token_id
                logits = lm_model(input_ids=input_ids.to(encoder.device), attention_mask=mask.to(encoder.device)).logits
                target = labels.to(logits.device)
            else:
                logits = lm_model(input_ids=input_ids.to(encoder.device), attention_mask=mask.to(encoder.device)).logits
                logits = logits[:, :-1]
                target = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100).to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((target != -100).sum())
    if count == 0:
        raise ValueError("no token to predict: the sentences are empty or too short.")
    return total / count, None


def ablation_scan(encoder: Encoder, sentences: Sequence[str], *, heads: Iterable[tuple[int, int]] | None = None,
                  mode: str = "zero", measure: str | None = None, lm_model: torch.nn.Module | None = None,
                  seed: int = 0, batch_size: int = 32, progress: bool | None = None,
                  reference: Sequence[str] | None = None) -> pd.DataFrame:
    """Ablate each head alone and measure the change of the model's output on ``sentences``.

    ``mode="mean"`` needs ``reference``: the sentences the head means are taken over (:func:`ablation_reference`,
    training sentences; not ``sentences`` themselves).

    ``measure`` defaults to ``"mlm"`` / ``"clm"`` when ``lm_model`` is given (by the encoder's causality), else
    ``"embedding"``. Returns one row per head: ``layer``, ``head``, ``mode``, ``measure``, ``baseline`` (score
    without ablation), ``ablated``, ``delta`` (ablated - baseline: loss increase, or embedding shift).
    """
    from tqdm.auto import tqdm

    if measure is None:
        measure = "embedding" if lm_model is None else ("clm" if encoder.spec.causal else "mlm")
    heads = _check_heads(encoder, heads if heads is not None else
                         [(lay, h) for lay in range(encoder.num_layers) for h in range(encoder.num_heads)])
    means = _means(encoder, mode, reference, sentences, batch_size)
    kw = dict(measure=measure, lm_model=lm_model, batch_size=batch_size, seed=seed)
    base, ref = model_score(encoder, sentences, **kw)
    rows = []
    for layer, head in tqdm(heads, desc=f"ablation ({mode}, {measure})", disable=None if progress is None
                            else not progress, leave=False):
        with ablate_heads(encoder, [(layer, head)], mode=mode, means=means):
            score, _ = model_score(encoder, sentences, reference=ref, **kw)
        rows.append({"layer": layer, "head": head, "mode": mode, "measure": measure, "baseline": base,
                     "ablated": score, "delta": score - base})
    return pd.DataFrame(rows)


def topk_ablation_curve(encoder: Encoder, sentences: Sequence[str], ranked_heads: Sequence[tuple[int, int]],
                        ks: Sequence[int], *, mode: str = "zero", measure: str | None = None,
                        lm_model: torch.nn.Module | None = None, n_random: int = 3, seed: int = 0,
                        batch_size: int = 32, reference: Sequence[str] | None = None) -> pd.DataFrame:
    """Ablate the top ``k`` heads of ``ranked_heads`` together, for each ``k`` in ``ks``, and, as the reference,
    ``n_random`` random sets of ``k`` heads (drawn with ``np.random.RandomState(seed)``). ``reference``: as in
    :func:`ablation_scan`.

    Returns one row per (k, kind): ``k``, ``kind`` (``"top"`` or ``"random"``), ``delta`` (mean change of the
    model's output over the random draws for ``"random"``), ``delta_sd`` (s.d. over the draws; NaN for
    ``"top"``), ``measure``. If the heads a probe ranks first matter more to the model than random ones, the
    ``top`` curve lies above the ``random`` one.
    """
    ranked = _check_heads(encoder, ranked_heads)
    all_heads = [(lay, h) for lay in range(encoder.num_layers) for h in range(encoder.num_heads)]
    if measure is None:
        measure = "embedding" if lm_model is None else ("clm" if encoder.spec.causal else "mlm")
    means = _means(encoder, mode, reference, sentences, batch_size)
    kw = dict(measure=measure, lm_model=lm_model, batch_size=batch_size, seed=seed)
    base, ref = model_score(encoder, sentences, **kw)
    rng = np.random.RandomState(seed)

    def effect(heads: list[tuple[int, int]]) -> float:
        with ablate_heads(encoder, heads, mode=mode, means=means):
            return model_score(encoder, sentences, reference=ref, **kw)[0] - base

    rows = []
    for k in ks:
        k = int(k)
        if not 1 <= k <= len(ranked):
            raise ValueError(f"k={k} is outside 1..{len(ranked)} (the number of ranked heads).")
        rows.append({"k": k, "kind": "top", "delta": effect(ranked[:k]), "delta_sd": np.nan, "measure": measure})
        draws = [effect([all_heads[i] for i in rng.choice(len(all_heads), size=k, replace=False)])
                 for _ in range(n_random)]
        rows.append({"k": k, "kind": "random", "delta": float(np.mean(draws)),
                     "delta_sd": float(np.std(draws, ddof=1)) if n_random > 1 else np.nan, "measure": measure})
    return pd.DataFrame(rows)
