"""Batched SentEval probes: train the probes of every head / layer of one task at once.

Evaluating one head at a time through SentEval's classifiers costs seconds per head, and a sweep has 72-1,024 heads
times many tasks. :func:`evaluate_many` takes the embeddings of one task for P probes (``[n, P, d]`` arrays in the
layout of :meth:`Task.embed <senteval_anatomy.engine.tasks.Task.embed>`) and returns, for every probe, the result
dict that ``Task.evaluate`` returns for that probe alone: same keys, same rounding, same numbers (see "How close"
below).

>>> from senteval_anatomy.engine import load_task                             # doctest: +SKIP
>>> from senteval_anatomy.engine.batched import evaluate_many                  # doctest: +SKIP
>>> task = load_task("TREC", task_path, seed=123)                             # doctest: +SKIP
>>> emb = task.embed(params, batcher)  # a batcher returning [batch, L*H, d]  # doctest: +SKIP
>>> results = evaluate_many(task, emb, params)  # one result dict per head    # doctest: +SKIP

How it works
------------
* A *slot* is one (probe, weight decay) pair. A grid search stacks all of them: 4 weight decays x P probes train as
  one model with weights ``[S, out, in]`` and batched matmuls (:class:`~senteval_anatomy.engine.stacked.BatchedMLP`;
  :class:`~senteval_anatomy.engine.stacked.BatchedRelatedness` for SICK-R / STS-B).
* Every solo probe of a task starts from the same weights (``torch.manual_seed(seed)`` then ``nn.Linear`` init,
  a pure function of seed and shapes) and draws the same validation split and the same mini-batches from
  ``np.random.RandomState(seed)``. So one module build and one ``rng`` serve every slot, and every slot sees the
  rows its solo run sees. With ``nhid > 0`` the dropout masks are also the same in every solo run (same generator,
  same shapes), so one mask per step serves all slots.
* Variants (:class:`Variant`) of the same seed (a task's probes and its control probes) train on the same rows:
  their slots of one weight decay are whole blocks of the chunk's probes in order, and each block multiplies the
  mini-batch features as they are (:class:`~senteval_anatomy.engine.kernels.StackedLinear`), with no gathered
  ``[blocks * P, rows, d]`` copy; the per-slot matmuls are unchanged, so are the numbers. Variants of other seeds
  with the same numbers of rows (a *cohort*, :class:`~senteval_anatomy.engine.slots.SlotStack`) draw their own
  mini-batches, gathered side by side in one ``index_select`` per step, and join the same groups: one forward, one
  loss and one optimizer group per weight decay for all seeds, each block reading its own seed's rows.
* Loss: the *sum over slots of each slot's mean loss*, so each slot's gradient is exactly its solo gradient.
  Weight decay differs per slot: slots with the same value form one optimizer param group, and torch's own
  optimizer (built by the engine's :func:`~senteval_anatomy.engine.probes.parse_optimizer`) applies it to weights
  and biases. All SentEval optimizers are elementwise, so stacked parameters get per-slot independent updates.
* Each slot has its own early stopping (the engine's :class:`~senteval_anatomy.engine.probes.EarlyStopping`:
  cumulative tenacity on validation accuracy, ``epoch_size`` epochs per validation, ``max_epoch``) and its own best
  snapshot. A slot that stops is removed from the live stack together with its optimizer state, so compute
  follows the number of running probes.
* SplitClassifier refits the chosen weight decay with the same seed on the same data, which replays the grid run
  of that value; the grid snapshot *is* the refit model, so it is not trained twice. KFold and InnerKFold refit on
  a different training set (5% validation split) and are trained, each probe with its own chosen value.
* STS12-16 need no training: a vectorised cosine (:func:`cosine_many`) feeds the engine's own ``sts_eval``.
* ``usepytorch=False`` (sklearn) and a custom STS ``similarity`` cannot be stacked: those run the engine's
  ``Task.evaluate`` probe by probe (optionally in parallel with ``n_jobs``), so they are the engine's numbers.
* Speed on CPU: training runs on one torch thread by default
  (:data:`~senteval_anatomy.engine.stacked.DEFAULT_CPU_THREADS`), and the slots' cross-entropy uses a
  ``[slots, classes, rows]`` layout whose log-softmax kernel is ~15x faster than the solo ``[rows, classes]`` one
  and, where :func:`~senteval_anatomy.engine.kernels.fast_ce_ok` verifies it, bit-identical to it.

How close to solo runs, and why
-------------------------------
* **CPU, classification**: identical ``devacc`` / ``acc`` / ``f1`` / predictions in every comparison we ran (all
  evaluators, all eight optimizers, ``nhid`` 0 and > 0 with dropout). Each slot runs the solo probe's operations in
  the same order; elementwise kernels give the same result wherever an element sits in a tensor; the weight
  gradient is computed as ``grad.T @ x`` like ``nn.Linear``'s backward
  (:class:`~senteval_anatomy.engine.kernels.StackedLinear`, not autograd's ``x.T @ grad``), which makes the
  stacked and solo matmuls the same sums. BLAS may still pick a different kernel for a batched matmul than for a
  single one (it depends on shapes, memory alignment and thread count; with several threads even the solo result
  depends on the thread count), and then a weight differs in its last bit. An accuracy only changes if such a
  difference flips a prediction that sits on an exact tie or an early-stopping decision that is decided by one
  sample; we have not seen it happen.
* **CPU, relatedness**: bit-identical in most shapes; where BLAS rounds differently, the hundreds of epochs carry
  the last-bit difference to ~1e-7 relative on ``devpearson`` / ``pearson`` / ``spearman`` / ``mse``.
* **STS12-16**: the engine computes each cosine with ``np.dot`` in the embeddings' dtype; :func:`cosine_many` uses
  float64, so correlations agree to ~1e-7 (float32 rounding of the engine's cosines).
* **CUDA**: cuBLAS batched and single GEMMs are different kernels, so expect float-rounding-level differences from
  the start; like above they reach an accuracy only through near-ties, and a correlation at ~1e-6.
* ``usepytorch=False`` and custom similarities: exact (the engine itself runs).

Memory
------
Probes are processed in chunks of ``max_probes``. The default keeps one chunk's stacked float32 features (``[probes,
rows of all splits, features]``; pair tasks have ``2d`` features) under
:data:`~senteval_anatomy.engine.chunks.CHUNK_BYTES` (1 GiB); the per-split numpy slices used to fill it and the
probe parameters (``4 x (d + 1) x classes`` floats per probe and grid value, times ~5 for gradients, optimizer state
and snapshots) come on top. Chunking never changes the results: slots never interact.

Where the parts live
--------------------
This module holds the evaluator-level functions (``*_eval_many``, :func:`cosine_many`) and the task level
(:func:`evaluate_many`, :class:`Variant`). Below it: :mod:`~senteval_anatomy.engine.chunks` (feature sources, probe
chunks, one run per evaluator over a chunk), :mod:`~senteval_anatomy.engine.stacked` (the stacked trainers) and
:mod:`~senteval_anatomy.engine.kernels` (their matmul and cross-entropy kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import evaluators as ev
from .chunks import (
    CHUNK_BYTES,
    Source,
    as_array,
    check_sources,
    per_probe,
    probe_chunks,
    probe_features,
    run_chunks,
    source_shape,
    unwrap,
    variant_labels,
)
from .protocol import check_similarity, evaluation_params, evaluator_call, result_dict
from .stacked import DEFAULT_CPU_THREADS

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_CPU_THREADS",
    "Variant",
    "cosine_many",
    "evaluate_many",
    "innerkfold_eval_many",
    "kfold_eval_many",
    "relatedness_eval_many",
    "resolve_threads",
    "split_eval_many",
    "sts_eval_many",
]


def split_eval_many(X_train: Source, y_train, X_dev: Source, y_dev, X_test: Source, y_test, *, nclasses: int,
                    seed: int | Sequence[int] = 1111, usepytorch: bool = True,
                    classifier: dict[str, Any] | None = None, device: Any = "auto", noreg: bool = False,
                    max_probes: int | None = None, progress: bool | None = None, n_jobs: int | None = None,
                    num_threads: int | None = DEFAULT_CPU_THREADS, predictions: bool = False) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.split_eval` for P probes at once.

    ``X_*`` are ``[n, P, f]`` arrays (or ``(A, B)`` pairs of ``[n, P, d]`` arrays for pair features). Returns P
    dicts with the keys of ``split_eval`` (``devacc``, ``acc``, ``reg``, ``regs``, ``dev_scores``); with
    ``predictions=True`` (pytorch probes) also ``yhat``, the chosen probe's test predictions.

    Variants: ``y_*`` of shape ``[V, n]`` (V label sets, e.g. a task and its control task) and / or ``seed`` a
    sequence of V seeds train every (label set, seed) variant of every probe in the same stacked run; the result
    is then V lists of P dicts, list ``v`` equal to a call with ``y_*[v]`` and ``seed[v]``.
    """
    sources = [X_train, X_dev, X_test]
    _, n_probes, _ = check_sources(sources, ["X_train", "X_dev", "X_test"])
    (Ytr, Ydv, Yte), seeds, multi = variant_labels([y_train, y_dev, y_test], seed)
    if not usepytorch:
        return unwrap([per_probe(lambda p, v=v: ev.split_eval(
            probe_features(X_train, p), Ytr[v], probe_features(X_dev, p), Ydv[v], probe_features(X_test, p),
            Yte[v], nclasses=nclasses, seed=seeds[v], usepytorch=False, noreg=noreg), n_probes, n_jobs, "split",
            progress) for v in range(len(seeds))], multi)
    labels = np.concatenate([Ytr, Ydv, Yte], axis=1).astype(np.int64)
    return unwrap(run_chunks("split", sources, labels, seeds=seeds, max_probes=max_probes, progress=progress,
                               desc="split probes", device=device, num_threads=num_threads, nclasses=nclasses,
                               classifier=classifier, noreg=noreg, predictions=predictions), multi)


def kfold_eval_many(X_train: Source, y_train, X_test: Source, y_test, *, nclasses: int, kfold: int = 5,
                    seed: int | Sequence[int] = 1111, usepytorch: bool = True,
                    classifier: dict[str, Any] | None = None, device: Any = "auto", max_probes: int | None = None,
                    progress: bool | None = None, n_jobs: int | None = None,
                    num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.kfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``yhat``, ``reg``, ``regs``, ``dev_scores``). Variants (``[V, n]`` labels, V seeds) as in
    :func:`split_eval_many`: each variant has its own folds (drawn from its labels and seed)."""
    sources = [X_train, X_test]
    _, n_probes, _ = check_sources(sources, ["X_train", "X_test"])
    (Ytr, Yte), seeds, multi = variant_labels([y_train, y_test], seed)
    if not usepytorch:
        return unwrap([per_probe(lambda p, v=v: ev.kfold_eval(
            probe_features(X_train, p), Ytr[v], probe_features(X_test, p), Yte[v], nclasses=nclasses,
            kfold=kfold, seed=seeds[v], usepytorch=False), n_probes, n_jobs, "kfold", progress)
            for v in range(len(seeds))], multi)
    labels = np.concatenate([Ytr, Yte], axis=1).astype(np.int64)
    return unwrap(run_chunks("kfold", sources, labels, seeds=seeds, max_probes=max_probes, progress=progress,
                               desc="kfold probes", device=device, num_threads=num_threads, nclasses=nclasses,
                               kfold=kfold, classifier=classifier), multi)


def innerkfold_eval_many(X: Source, y, *, nclasses: int, kfold: int = 5, seed: int | Sequence[int] = 1111,
                         usepytorch: bool = True, classifier: dict[str, Any] | None = None, device: Any = "auto",
                         max_probes: int | None = None, progress: bool | None = None,
                         n_jobs: int | None = None,
                         num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.innerkfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``fold_devacc``, ``fold_acc``, ``fold_reg``, ``regs``). Variants as in :func:`split_eval_many`."""
    _, n_probes, _ = check_sources([X], ["X"])
    (Y,), seeds, multi = variant_labels([y], seed)
    if not usepytorch:
        return unwrap([per_probe(lambda p, v=v: ev.innerkfold_eval(
            probe_features(X, p), Y[v], nclasses=nclasses, kfold=kfold, seed=seeds[v], usepytorch=False),
            n_probes, n_jobs, "innerkfold", progress) for v in range(len(seeds))], multi)
    return unwrap(run_chunks("innerkfold", [X], Y.astype(np.int64), seeds=seeds, max_probes=max_probes,
                               progress=progress, desc="innerkfold probes", device=device, num_threads=num_threads,
                               nclasses=nclasses, kfold=kfold, classifier=classifier), multi)


def relatedness_eval_many(X_train: Source, y_train, X_dev: Source, y_dev, X_test: Source, y_test, *,
                          seed: int | Sequence[int] = 1111, device: Any = "auto", max_probes: int | None = None,
                          progress: bool | None = None,
                          num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.relatedness_eval` for P probes at once (P dicts:
    ``devpearson``, ``pearson``, ``spearman``, ``mse``, ``yhat``). A sequence of seeds gives one list per seed
    (one stacked run each: relatedness has no control labels)."""
    multi = isinstance(seed, (list, tuple, np.ndarray))
    seeds = [int(s) for s in seed] if multi else [int(seed)]
    return unwrap(run_chunks("relatedness", [X_train, X_dev, X_test], None, seeds=seeds, max_probes=max_probes,
                               progress=progress, desc="relatedness probes", device=device,
                               num_threads=num_threads, y_train=np.asarray(y_train), y_dev=np.asarray(y_dev),
                               y_test=np.asarray(y_test)), multi)


def cosine_many(A: Any, B: Any) -> np.ndarray:
    """SentEval's default STS similarity ``nan_to_num(cosine(nan_to_num(u), nan_to_num(v)))`` of every row and
    probe of ``A``, ``B`` ``[n, P, d]``, as float64 of shape ``[P, n]``.

    Computed in float64 with vectorised sums. The engine computes each row with ``np.dot`` in the embeddings' dtype,
    so for float32 embeddings the two differ by float32 rounding (~1e-7 relative per score).
    """
    A = np.nan_to_num(as_array(A)).astype(np.float64, copy=False)
    B = np.nan_to_num(as_array(B)).astype(np.float64, copy=False)
    dot = np.einsum("npd,npd->pn", A, B)
    norms = np.sqrt(np.einsum("npd,npd->pn", A, A)) * np.sqrt(np.einsum("npd,npd->pn", B, B))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(dot / norms)


def sts_eval_many(datasets: dict[str, tuple[Any, Any, Sequence[float]]],
                  similarity: Callable[[Any, Any], float] | None = None, *, max_probes: int | None = None,
                  progress: bool | None = None, n_jobs: int | None = None) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.sts_eval` for P probes: ``datasets`` maps each sub-dataset to
    ``(A, B, gold)`` with ``A``, ``B`` of shape ``[n, P, d]``.

    The default cosine is vectorised (:func:`cosine_many`); the correlations and the ``all`` summary are the
    engine's own code, fed with those scores. A custom ``similarity`` cannot be vectorised and runs per probe
    through the engine (exact).
    """
    names = list(datasets)
    shapes = [source_shape((datasets[d][0], datasets[d][1]), f"STS {d}") for d in names]
    n_probes = {s[1] for s in shapes}
    if len(n_probes) != 1:
        raise ValueError("every STS sub-dataset must have the same number of probes, got "
                         + ", ".join(f"{d}: {s[1]}" for d, s in zip(names, shapes, strict=True)))
    P = n_probes.pop()
    if similarity is not None:
        return per_probe(lambda p: ev.sts_eval(
            {d: (as_array(datasets[d][0][:, p]), as_array(datasets[d][1][:, p]), datasets[d][2]) for d in names},
            similarity), P, n_jobs, "sts", progress)
    n_rows = sum(s[0] for s in shapes)
    results: list[dict[str, Any]] = []
    for p0, p1 in probe_chunks(P, n_rows, 2 * shapes[0][2], max_probes):  # float64 A and B
        scores = {d: cosine_many(datasets[d][0][:, p0:p1], datasets[d][1][:, p0:p1]) for d in names}
        for k in range(p1 - p0):
            # The engine's sts_eval with a pass-through similarity: same correlations, same 'all' summary.
            results.append(ev.sts_eval({d: (scores[d][k], scores[d][k], datasets[d][2]) for d in names},
                                       lambda a, b: a))
    return results


#: The batched counterpart of each SentEval evaluator a task names (``evaluator_call(...).evaluator``).
_EVALUATORS: dict[str, Callable[..., list[Any]]] = {
    "split": split_eval_many,
    "kfold": kfold_eval_many,
    "innerkfold": innerkfold_eval_many,
    "relatedness": relatedness_eval_many,
}

#: Positions of the label arguments of the stackable evaluators' calls: variants stack their labels there.
_LABEL_ARGS: dict[str, tuple[int, ...]] = {"split": (1, 3, 5), "kfold": (1, 3), "innerkfold": (1,)}


# ----------------------------------------------------------------------------------------------------------------
# Task level
# ----------------------------------------------------------------------------------------------------------------


def _slice_embeddings(embeddings: Any, p: int) -> dict[str, dict[str, Any]]:
    return {split: {k: (np.ascontiguousarray(as_array(v[:, p])) if k in ("X", "A", "B") else v)
                    for k, v in rec.items()} for split, rec in embeddings.items()}


def _n_probes(embeddings: Any, splits: Sequence[str], task_name: str) -> int:
    counts = {}
    for split in splits:
        if split not in embeddings:
            raise KeyError(f"{task_name}: embeddings has no split {split!r} (has {sorted(embeddings)}); "
                           "pass what Task.embed returns, with [n, P, d] arrays.")
        for k in ("X", "A", "B"):
            if k in embeddings[split]:
                shape = np.shape(embeddings[split][k])
                if len(shape) != 3:
                    raise ValueError(
                        f"{task_name}: embeddings[{split!r}][{k!r}] has shape {shape}; evaluate_many needs [n, P, d] "
                        "(P probes). Reshape per-head features [n, L, H, d] to [n, L*H, d]; for one probe use "
                        "Task.evaluate."
                    )
                counts[f"{split}.{k}"] = shape[1]
    if len(set(counts.values())) != 1:
        raise ValueError(f"{task_name}: the number of probes differs between arrays: {counts}")
    return next(iter(counts.values()))


@dataclass(frozen=True)
class Variant:
    """One (label set, seed) version of a task's probes for :func:`evaluate_many`'s ``variants``.

    ``labels`` maps each split of the embeddings to labels in the order of ``embeddings[split]["y"]`` (``None``:
    the task's own labels), e.g. a control task's labels; ``seed`` replaces ``params.seed`` (``None``: keep it).
    """

    labels: Mapping[str, Any] | None = None
    seed: int | None = None


def _with_labels(embeddings: Any, labels: Mapping[str, Any] | None, task_name: str) -> Any:
    """``embeddings`` with each split's ``y`` replaced by ``labels[split]`` (checked: same length, integers)."""
    if labels is None:
        return embeddings
    out = {}
    for split, rec in embeddings.items():
        rec = dict(rec)
        if split in labels:
            y = np.asarray(labels[split])
            if y.shape != np.shape(rec.get("y")):
                raise ValueError(f"{task_name}: variant labels for split {split!r} have shape {y.shape}, the "
                                 f"embeddings' labels {np.shape(rec.get('y'))}; give one label per row, in the "
                                 "embeddings' order.")
            rec["y"] = y.astype(np.int64)
        out[split] = rec
    return out


def evaluate_many(task: Any, embeddings: Any, params: Any, *, max_probes: int | None = None,
                  progress: bool | None = None, device: Any = None, n_jobs: int | None = None,
                  num_threads: int | None | str = "auto", predictions: bool = False,
                  variants: Sequence[Variant] | None = None) -> list[Any]:
    """Evaluate P probes of one task at once; result ``i`` equals ``task.evaluate`` on probe ``i``'s features.

    Parameters
    ----------
    task : Task
        From :func:`~senteval_anatomy.engine.tasks.load_task`.
    embeddings : dict
        The layout of :meth:`Task.embed <senteval_anatomy.engine.tasks.Task.embed>`, but every ``X`` / ``A`` /
        ``B`` array has shape ``[n, P, d]`` (e.g. heads ``[n, L, H, d]`` reshaped to ``[n, L*H, d]``). numpy arrays,
        memmaps and CPU tensors are read chunk by chunk.
    params : mapping
        SentEval params, read as ``Task.evaluate`` reads them (``seed``, ``usepytorch``, ``classifier``, ``kfold``,
        ``device``, ``similarity``).
    max_probes : int, optional
        Probes trained together. Default: as many as keep the chunk's stacked float32 features (all splits,
        ``[probes, rows, features]``) under :data:`CHUNK_BYTES` (1 GiB). Results do not depend on it.
    progress : bool, optional
        tqdm bar over training runs; default: shown on a terminal only.
    device : str or torch.device, optional
        Where the stacked probes train; default ``params.device`` (``'auto'``: CUDA when available).
    n_jobs : int, optional
        Parallel jobs (joblib) for the paths that run probe by probe: ``usepytorch=False`` (sklearn) and a custom
        STS ``similarity``.
    num_threads : int, None or ``"auto"``
        Torch / BLAS threads while the stacked probes train on CPU (restored afterwards); ``None`` keeps the
        process setting. ``"auto"``: ``params.probe_threads`` when set (the engine's key for the same thing), else
        :data:`DEFAULT_CPU_THREADS` (1). Results do not depend on it in our tests; speed does, see
        :data:`DEFAULT_CPU_THREADS`.
    predictions : bool
        Also return each probe's test predictions as ``yhat`` (int64, in the order of ``embeddings['test']``) for
        the pytorch classification evaluators ``split`` and ``kfold`` (per-sentence correctness for bootstrap
        intervals and paired tests). Off by default: the result dicts then equal ``task.evaluate``'s.

    variants : sequence of Variant, optional
        Train every probe under each (label set, seed) :class:`Variant` (a task's labels and its control task's,
        several probe seeds...). For the pytorch classification evaluators all variants are slots of the same
        stacked runs (one pass over the features, one mini-batch gather per step for all seeds); other evaluators run one pass
        per variant. Result ``[v][i]`` equals ``task.evaluate`` on probe ``i``'s features with variant ``v``'s
        labels and seed.

    Returns
    -------
    list of dict
        One SentEval result dict per probe, with exactly the keys and rounding of ``task.evaluate``; with
        ``variants``, one such list per variant.
    """
    spec = task.spec
    p, seed = evaluation_params(params, task.seed)
    raw = params if params is not None else {}
    if variants is not None:
        return _evaluate_variants(task, embeddings, params, list(variants), max_probes=max_probes,
                                  progress=progress, device=device, n_jobs=n_jobs, num_threads=num_threads,
                                  predictions=predictions)
    dev = p.device if device is None else device
    n_probes = _n_probes(embeddings, spec.splits, spec.name)
    desc = f"{spec.name}: {n_probes} probes"

    def pytorch_free(fn_p: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
        return per_probe(fn_p, n_probes, n_jobs, desc, progress)

    if spec.evaluator == "sts":
        if check_similarity(p.similarity) is not None:
            return pytorch_free(lambda i: task.evaluate(_slice_embeddings(embeddings, i), raw))
        datasets = {d: (embeddings[d]["A"], embeddings[d]["B"], embeddings[d]["gold"]) for d in spec.splits}
        return [result_dict(spec, r, embeddings) for r in sts_eval_many(datasets, max_probes=max_probes,
                                                                         progress=progress)]

    if not p.usepytorch and spec.evaluator != "relatedness":
        return pytorch_free(lambda i: task.evaluate(_slice_embeddings(embeddings, i), raw))

    threads = resolve_threads(num_threads, p)
    call = evaluator_call(spec, embeddings, p, seed, task.n_classes, _features)
    rs = _EVALUATORS[call.evaluator](*call.args, **dict(call.kwargs, device=dev), max_probes=max_probes,
                                     progress=progress, num_threads=threads,
                                     **_predictions_kw(predictions, call.evaluator))
    return _results(spec, rs, embeddings, predictions, call.evaluator)


def _evaluate_variants(task: Any, embeddings: Any, params: Any, variants: list[Variant], **kw: Any) -> list[Any]:
    """:func:`evaluate_many` with ``variants``: one stacked pass for the pytorch classification evaluators, one
    pass per variant otherwise."""
    spec = task.spec
    if not variants:
        raise ValueError("variants is empty; pass None for the task's own labels and seed.")
    for v in variants:
        if not isinstance(v, Variant):
            raise TypeError(f"variants must hold Variant objects, got {type(v).__name__}.")
        if v.labels is not None and spec.kind not in ("classification", "pair_classification"):
            raise ValueError(f"{spec.name} is a {spec.kind} task: variant labels apply to classification tasks only.")
    raw = dict(params) if params is not None else {}
    p, seed = evaluation_params(params, task.seed)
    seeds = [seed if v.seed is None else int(v.seed) for v in variants]
    embs = [_with_labels(embeddings, v.labels, spec.name) for v in variants]
    stackable = spec.evaluator in ("split", "kfold", "innerkfold") and bool(p.usepytorch)
    if not stackable:
        return [evaluate_many(task, e, {**raw, "seed": sd}, **kw) for e, sd in zip(embs, seeds, strict=True)]
    dev = p.device if kw["device"] is None else kw["device"]
    threads = resolve_threads(kw["num_threads"], p)
    calls = [evaluator_call(spec, e, p, sd, task.n_classes, _features) for e, sd in zip(embs, seeds, strict=True)]
    call = calls[0]
    args = list(call.args)
    for i in _LABEL_ARGS[call.evaluator]:
        args[i] = np.stack([np.asarray(c.args[i]) for c in calls])
    rs = _EVALUATORS[call.evaluator](*args, **dict(call.kwargs, device=dev, seed=seeds), max_probes=kw["max_probes"],
                                     progress=kw["progress"], num_threads=threads,
                                     **_predictions_kw(kw["predictions"], call.evaluator))
    return [_results(spec, rv, e, kw["predictions"], call.evaluator) for e, rv in zip(embs, rs, strict=True)]


def _features(rec: Any) -> Source:
    """The feature source of one split record of ``Task.embed``'s output: ``X``, or the pair ``(A, B)``."""
    return rec["X"] if "X" in rec else (rec["A"], rec["B"])


def resolve_threads(num_threads: int | None | str, p: Any) -> int | None:
    """``evaluate_many``'s ``num_threads``, with ``"auto"`` resolved: ``params.probe_threads`` when set, else
    :data:`~senteval_anatomy.engine.stacked.DEFAULT_CPU_THREADS`."""
    if isinstance(num_threads, str):
        if num_threads != "auto":
            raise ValueError(f"num_threads must be a positive int, None or 'auto', got {num_threads!r}.")
        return p.get("probe_threads") if p.get("probe_threads") is not None else DEFAULT_CPU_THREADS
    return num_threads


def _predictions_kw(predictions: bool, evaluator: str) -> dict[str, Any]:
    """``split_eval_many`` returns test predictions only when asked; ``kfold_eval_many`` always does."""
    return {"predictions": True} if predictions and evaluator == "split" else {}


def _results(spec: Any, rs: list[dict[str, Any]], embeddings: Any, predictions: bool,
             evaluator: str) -> list[dict[str, Any]]:
    """Task-level result dicts (``Task.evaluate``'s keys and rounding), plus ``yhat`` when predictions were asked
    for and the evaluator gives them."""
    out = [result_dict(spec, r, embeddings) for r in rs]
    if predictions and evaluator in ("split", "kfold"):
        for o, r in zip(out, rs, strict=True):
            o["yhat"] = r["yhat"]
    return out
