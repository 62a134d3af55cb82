"""The top-k heads view: heads ranked on dev, concatenated in rank order, probed from the feature store.

The sweep computes it as one more result unit per task (view ``topk``), after the task's heads unit: the ranking is
that unit's dev scores (:func:`rank_on_dev`, the rule of :meth:`Results.top_heads
<senteval_anatomy.tables.results.Results.top_heads>`), the vectors are the stored heads (no re-encoding, no re-parsing of
the task's files), and each k is one probe of the batched trainer (:func:`~senteval_anatomy.engine.batched.evaluate_many`),
whose numbers equal the engine's. :func:`senteval_anatomy.analysis.topk.topk_curve` evaluates its curves with the same
:func:`evaluate_topk`.

The representation of k is ``ranking[:k]`` in **rank order**: the best head first, then the second best, ... (not in
(layer, head) order, and never "the best head and the heads after it" by position).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..vocab import INTERVAL_COLUMNS, main_scores

__all__ = ["HeadsBatcher", "add_intervals", "curve_row", "default_ks", "evaluate_topk", "rank_on_dev", "topk_ks"]


class HeadsBatcher:
    """A SentEval batcher returning ``[len(batch), 1, k * d]``: the stored vectors of ``heads`` concatenated in the
    order given (rank order for top-k), as one probe's features for :func:`~senteval_anatomy.engine.batched.evaluate_many`.

    ``feats`` is a :class:`~senteval_anatomy.store.StoredFeatures` (``rows()`` and ``heads`` ``[n, L, H, d]``).
    """

    def __init__(self, feats: Any, heads: Sequence[tuple[int, int]]) -> None:
        self.feats = feats
        self.layers = np.array([int(lay) for lay, _ in heads], dtype=np.int64)
        self.heads = np.array([int(h) for _, h in heads], dtype=np.int64)

    def __call__(self, params: Any, batch: Sequence[Sequence[str]]) -> np.ndarray:
        rows = self.feats.rows([" ".join(tokens) for tokens in batch])
        arr = np.asarray(self.feats.heads[rows])[:, self.layers, self.heads, :]  # [n, k, d], in the given order
        return np.ascontiguousarray(arr.reshape(arr.shape[0], 1, -1), dtype=np.float32)


def rank_on_dev(head_rows: pd.DataFrame) -> list[tuple[int, int]]:
    """Every head with a dev score, best first: dev score descending, ties to the lower (layer, head) -- the rule of
    :meth:`~senteval_anatomy.tables.results.Results.top_heads`. Never reads test scores."""
    df = head_rows[head_rows["devacc"].notna()]
    ranked = df.sort_values(["devacc", "layer", "head"], ascending=[False, True, True], kind="mergesort")
    return [(int(a), int(b)) for a, b in zip(ranked["layer"], ranked["head"], strict=True)]


def default_ks(n_heads_total: int, *, dense_upto: int = 12) -> list[int]:
    """The k sweep: 1..``dense_upto`` one by one, then doubling, then all heads.

    For BERT-base (144 heads): 1..12, 24, 48, 96, 144. For 8 heads: 1..8.

    Why: the curve changes fastest for small k, where the paper's tables live (k = heads per layer); beyond that
    doubling shows the trend at a cost logarithmic in the number of heads, and "all heads" is the natural end point.
    """
    if (
        isinstance(n_heads_total, bool)
        or not isinstance(n_heads_total, (int, np.integer))
        or n_heads_total < 1
    ):
        raise ValueError(f"n_heads_total must be a positive int, got {n_heads_total!r}")
    if dense_upto < 1:
        raise ValueError(f"dense_upto must be >= 1, got {dense_upto}")
    n = int(n_heads_total)
    ks = list(range(1, min(dense_upto, n) + 1))
    k = ks[-1]
    while k * 2 < n:
        k *= 2
        ks.append(k)
    if ks[-1] != n:
        ks.append(n)
    return ks


def topk_ks(n_ranked: int, ks: Sequence[int] | None, paper_k: int | None = None) -> list[int]:
    """The k values of a top-k view: ``ks`` (default :func:`default_ks`) plus the paper's k (heads per layer),
    sorted, at most the number of ranked heads."""
    values = set(int(k) for k in (ks if ks is not None else default_ks(n_ranked)))
    if paper_k is not None:
        values.add(int(paper_k))
    return sorted(k for k in values if 1 <= k <= n_ranked)


def evaluate_topk(task: Any, feats: Any, ranking: Sequence[tuple[int, int]], ks: Sequence[int], params: Any, *,
                  predictions: bool = False, progress: bool = False,
                  seconds: list[float] | None = None) -> list[dict[str, Any]]:
    """One SentEval result dict per k: the probe of ``ranking[:k]`` (rank order) trained on ``task``'s stored
    features. ``task`` is loaded once; ``params`` are the run's (``apply_defaults``'d) params. With
    ``predictions`` the dicts carry ``yhat`` where the evaluator gives test predictions; ``seconds``, when given,
    gets each k's wall time appended, in the order of ``ks``.

    Each k is one probe, too few to share a stacked run's cores, so on a multi-core CPU the k values train in
    parallel threads (as many as :func:`~senteval_anatomy.engine.chunks.chunk_workers` allows, the widest first),
    under one thread setting held for all of them; every k gets exactly the result it gets alone."""
    # lazy: start-up time (torch): light commands import the sweeping package
    from ..engine.batched import evaluate_many, resolve_threads
    from ..engine.chunks import chunk_workers, run_parallel
    from ..engine.params import resolve_device

    def one(k: int) -> tuple[dict[str, Any], float]:
        start = time.perf_counter()
        emb = task.embed(params, HeadsBatcher(feats, list(ranking[:k])))
        # num_threads=None: the thread setting run_parallel holds for every k
        r = evaluate_many(task, emb, params, predictions=predictions, progress=progress, num_threads=None)
        return r[0], time.perf_counter() - start

    threads = resolve_threads("auto", params)
    device = resolve_device(params.get("device", "auto") if params is not None else "auto")
    order = sorted(range(len(ks)), key=lambda i: -int(ks[i]))  # the widest probes take longest: start them first
    done = dict(zip(order, run_parallel(lambda i: one(ks[i]), order, workers=chunk_workers(device, threads),
                                        num_threads=threads, device=device), strict=True))
    pairs = [done[i] for i in range(len(ks))]
    if seconds is not None:
        seconds += [t for _, t in pairs]
    return [r for r, _ in pairs]


def add_intervals(rows: list[dict[str, Any]], predictions: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Fill :data:`~senteval_anatomy.vocab.INTERVAL_COLUMNS` in curve ``rows`` from their test predictions (Wilson
    interval; McNemar against the row of kind ``best_layer``, chosen on dev)."""
    # lazy: start-up time (scipy.stats): light commands import the sweeping package
    from ..engine.stats import accuracy_ci, correctness, mcnemar

    for r in rows:
        r.update({c: math.nan for c in INTERVAL_COLUMNS})
    if not predictions:
        return
    idx = sorted(predictions)
    correct = np.stack([correctness(predictions[i][0], predictions[i][1]) for i in idx])
    _, low, high = accuracy_ci(correct)
    for j, i in enumerate(idx):
        rows[i]["acc_low"], rows[i]["acc_high"] = float(low[j]), float(high[j])
    best = next((j for j, i in enumerate(idx) if rows[i]["kind"] == "best_layer"), None)  # chosen on dev
    if best is None:
        return
    for j, i in enumerate(idx):
        if j != best:
            rows[i]["p_vs_best_layer"] = mcnemar(correct[best], correct[j])


def curve_row(*, model: str, task: str, rank_task: str, pooling: str, kind: str, k: int | None, layer: int | None,
              name: str, dim: int, result: Mapping[str, Any], by: str = "devacc", seconds: float = 0.0) -> dict:
    """One row of a top-k curve (:data:`~senteval_anatomy.vocab.CURVE_COLUMNS`) from a SentEval result dict."""
    return {"model": model, "task": task, "rank_task": rank_task, "pooling": pooling, "kind": kind, "k": k,
            "layer": layer, "name": name, "dim": int(dim), **main_scores(result)._asdict(), "by": by,
            "selected": False, "seconds": round(float(seconds), 3)}
