"""Feeding the stacked trainers: feature sources (``[n, P, f]`` arrays or ``(A, B)`` pairs), probe chunks under a
memory budget (:data:`CHUNK_BYTES`), the slot grid of a weight-decay search, and one run per SentEval evaluator over
a chunk (split, k-fold, inner k-fold, relatedness) for every (label set, seed) variant (:func:`run_chunks`); plus
the probe-by-probe path (:func:`per_probe`) for what cannot be stacked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from . import evaluators as ev
from .params import resolve_device
from .probes import RELATEDNESS_NCLASSES
from .protocol import (
    INNER_KFOLD_RANDOM_STATE,
    VALIDATION_SPLIT,
    cv_score,
    mean_score,
    pair_features,
    reg_grid,
    relatedness_scores,
    select_reg,
    split_score,
    stratified_kfold,
)
from .stacked import DEFAULT_CPU_THREADS, BatchedMLP, BatchedRelatedness, check_num_threads, torch_threads

__all__ = [
    "CHUNK_BYTES",
    "Progress",
    "Source",
    "as_array",
    "check_sources",
    "default_max_probes",
    "per_probe",
    "probe_chunks",
    "probe_features",
    "run_chunks",
    "run_parallel",
    "source_shape",
    "unwrap",
    "MIN_PARALLEL_CHUNK",
    "chunk_workers",
    "work_items",
    "variant_labels",
]

#: Default memory budget of one probe chunk: the stacked float32 features ``[probes, rows, features]`` of all
#: splits of a task stay under this many bytes (transient per-split numpy copies come on top).
CHUNK_BYTES = 1 << 30

#: A feature source for one split: a ``[n, P, f]`` array, or an ``(A, B)`` pair of ``[n, P, d]`` arrays whose
#: SentEval pair features ``[|A - B|, A * B]`` are built chunk by chunk.
Source = Any


def as_array(a: Any) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def source_shape(src: Source, what: str) -> tuple[int, int, int]:
    """``(n_rows, n_probes, n_features)`` of a source, with a clear error for wrong shapes."""
    if isinstance(src, tuple):
        a, b = src
        if np.ndim(a) != 3 or np.shape(a) != np.shape(b):
            raise ValueError(
                f"{what}: A and B must both have shape [n, P, d] (P probes), got {np.shape(a)} and {np.shape(b)}. "
                "Reshape per-head features [n, L, H, d] to [n, L*H, d] first."
            )
        n, p, d = np.shape(a)
        return n, p, 2 * d
    if np.ndim(src) != 3:
        raise ValueError(
            f"{what}: expected an array of shape [n, P, d] (P probes), got shape {np.shape(src)}. "
            "Reshape per-head features [n, L, H, d] to [n, L*H, d] first; a single probe is [n, 1, d]."
        )
    n, p, f = np.shape(src)
    return n, p, f


def check_sources(sources: Sequence[Source], names: Sequence[str]) -> tuple[list[int], int, int]:
    shapes = [source_shape(s, w) for s, w in zip(sources, names, strict=True)]
    n_probes = {s[1] for s in shapes}
    widths = {s[2] for s in shapes}
    if len(n_probes) != 1 or len(widths) != 1:
        raise ValueError(
            "every split must have the same number of probes and features, got "
            + ", ".join(f"{w}: {s[1]} probes x {s[2]} features" for w, s in zip(names, shapes, strict=True))
        )
    return [s[0] for s in shapes], n_probes.pop(), widths.pop()


def _chunk_tensor(sources: Sequence[Source], p0: int, p1: int, device: torch.device) -> torch.Tensor:
    """Stack probes ``p0:p1`` of every split into one float32 tensor ``[p1 - p0, sum(n), f]`` on ``device``.

    Pair features are built in the embeddings' own dtype by the engine's ``pair_features`` and only then cast to
    float32, exactly as a solo run (features in numpy, probe casts with ``.float()``); the cast rounds the same way
    in numpy and torch.
    """
    sizes, _, width = check_sources(sources, [f"split {i}" for i in range(len(sources))])
    out = np.empty((p1 - p0, sum(sizes), width), dtype=np.float32)
    off = 0
    for src, n in zip(sources, sizes, strict=True):
        if isinstance(src, tuple):
            part = pair_features(as_array(src[0][:, p0:p1]), as_array(src[1][:, p0:p1]))
        else:
            part = as_array(src[:, p0:p1])
        out[:, off : off + n] = part.transpose(1, 0, 2)
        off += n
    return torch.from_numpy(out).to(device)


def default_max_probes(n_rows: int, n_features: int, budget: int = CHUNK_BYTES) -> int:
    """Largest probe chunk whose stacked float32 features (``n_rows x n_features`` per probe) fit in ``budget``."""
    return max(1, budget // max(1, 4 * n_rows * n_features))


def probe_chunks(n_probes: int, n_rows: int, width: int, max_probes: int | None) -> list[tuple[int, int]]:
    if max_probes is None:
        max_probes = default_max_probes(n_rows, width)
    if int(max_probes) < 1:
        raise ValueError(f"max_probes must be a positive integer (probes trained together), got {max_probes!r}.")
    step = int(max_probes)
    return [(p0, min(n_probes, p0 + step)) for p0 in range(0, n_probes, step)]


class Progress:
    """A tqdm bar over training runs (one per chunk x fold x grid fit), or nothing."""

    def __init__(self, total: int, desc: str, enabled: bool | None):
        self.bar = None
        if enabled is False or total <= 0:
            return
        # enabled=None: tqdm decides (shown on a terminal, silent in logs and CI).
        self.bar = tqdm(total=total, desc=desc, unit="fit", disable=None if enabled is None else False, leave=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _grid_slots(n_probes: int, regs: Sequence[float], n_variants: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots of a grid search over ``n_variants`` (label set, seed) variants: slot ``(v * R + r) * n_probes + p``
    is probe ``p`` with ``regs[r]`` in variant ``v``. Returns ``(slot_probe, slot_reg, slot_variant)``."""
    n_regs = len(regs)
    return (np.tile(np.arange(n_probes), n_variants * n_regs),
            np.tile(np.repeat(np.asarray(regs, dtype=np.float64), n_probes), n_variants),
            np.repeat(np.arange(n_variants), n_regs * n_probes))


def _streams(seeds: Sequence[int], rows: Sequence[tuple[np.ndarray, ...]]
             ) -> tuple[np.ndarray, list[int], list[tuple[np.ndarray, ...]]]:
    """Group variants into trainer streams: variants with the same seed and the same row sets draw the same
    initial weights and mini-batches, so they share one stream (one gather per step). Returns the stream of every
    variant, the seed of every stream and its row sets."""
    keys: dict[tuple, int] = {}
    of_variant, stream_seeds, stream_rows = [], [], []
    for sd, rs in zip(seeds, rows, strict=True):
        key = (int(sd), *(np.asarray(r, dtype=np.int64).tobytes() for r in rs))
        if key not in keys:
            keys[key] = len(stream_seeds)
            stream_seeds.append(int(sd))
            stream_rows.append(rs)
        of_variant.append(keys[key])
    return np.asarray(of_variant, dtype=np.int64), stream_seeds, stream_rows


def _mlp(X, nclasses, slot_probe, slot_reg, slot_variant, seeds, variant_rows, *, classifier, device) -> tuple:
    """A :class:`BatchedMLP` whose slot ``s`` trains on label set ``slot_variant[s]`` with that variant's seed, and
    each stream's row sets (``variant_rows[v]``: tuples of row arrays, deduplicated into streams)."""
    var_stream, stream_seeds, stream_rows = _streams(seeds, variant_rows)
    bm = BatchedMLP(X.shape[2], nclasses, slot_probe, slot_reg, n_probes=X.shape[0], seed=stream_seeds[0],
                    config=classifier, device=device, slot_stream=var_stream[slot_variant], stream_seeds=stream_seeds,
                    slot_labels=slot_variant if len(seeds) > 1 else None)
    return bm, stream_rows


def _split_chunk(X, Y, rows, *, seeds, nclasses, classifier, device, noreg, bar,
                 predictions=False) -> list[list[dict[str, Any]]]:
    tr, dv, te = rows
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("split", True, noreg)
    slot_probe, slot_reg, slot_var = _grid_slots(n_probes, regs, n_var)
    bm, _ = _mlp(X, nclasses, slot_probe, slot_reg, slot_var, seeds, [()] * n_var, classifier=classifier,
                 device=device)
    bm.fit(X, Y, tr, val_rows=dv)
    bar.update()
    dev_acc = bm.score(X, Y, dv).tolist()  # Python floats, as TorchProbe.score returns
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_var)]
    chosen = []
    for v in range(n_var):
        for p in range(n_probes):
            scores = [split_score(dev_acc[(v * len(regs) + r) * n_probes + p]) for r in range(len(regs))]
            optreg, devacc = select_reg(scores, regs)
            chosen.append((v * len(regs) + list(regs).index(optreg)) * n_probes + p)
            out[v].append({"devacc": float(devacc), "reg": optreg, "regs": list(regs),
                           "dev_scores": [float(s) for s in scores]})
    # SplitClassifier refits the chosen value with the same seed on the same data, which replays the grid run of
    # that value exactly (training is a pure function of seed, data and reg); its snapshot is the refit model.
    test_acc = bm.score(X, Y, te, slots=np.asarray(chosen)).tolist()
    yhat = bm.predict(X, te, slots=np.asarray(chosen)) if predictions else None
    for v in range(n_var):
        for p in range(n_probes):
            i = v * n_probes + p
            out[v][p]["acc"] = float(split_score(test_acc[i]))
            if yhat is not None:
                out[v][p]["yhat"] = yhat[i]
    return out


def _cv_grid(X, Y, folds, regs, *, seeds, nclasses, classifier, device, bar) -> list[list[float]]:
    """Per slot (grid layout, see :func:`_grid_slots`), the list of held-out fold accuracies; ``folds[v]`` are
    variant ``v``'s ``(train_rows, test_rows)`` (every variant has as many folds; fold ``i`` of all variants trains
    in one stacked run)."""
    n_probes, n_var = X.shape[0], len(seeds)
    slot_probe, slot_reg, slot_var = _grid_slots(n_probes, regs, n_var)
    scans: list[list[float]] = [[] for _ in range(len(slot_probe))]
    for i in range(len(folds[0])):
        bm, srows = _mlp(X, nclasses, slot_probe, slot_reg, slot_var, seeds, [folds[v][i] for v in range(n_var)],
                         classifier=classifier, device=device)
        bm.fit(X, Y, [r[0] for r in srows], val_rows=[r[1] for r in srows])
        for s, acc in enumerate(bm.score(X, Y, [r[1] for r in srows]).tolist()):
            scans[s].append(acc)
        bar.update()
    return scans


def _select_cv(scans, regs, n_probes, n_variants=1):
    """Per variant and probe: SentEval's rounded mean CV scores, the chosen value and the best score."""
    out = []
    for v in range(n_variants):
        sel = []
        for p in range(n_probes):
            scores = [cv_score(scans[(v * len(regs) + r) * n_probes + p]) for r in range(len(regs))]
            optreg, best = select_reg(scores, regs)
            sel.append((scores, optreg, best))
        out.append(sel)
    return out


def _refit(X, Y, train_rows, optregs, *, seeds, nclasses, classifier, device, bar, test_rows=None):
    """Final fit of every probe of every variant with its own chosen value (``optregs[v][p]``) on
    ``train_rows[v]``, early-stopping on a 5% validation split. Returns the trainer and each stream's row sets
    (``(train, test)`` when ``test_rows`` is given)."""
    n_probes, n_var = X.shape[0], len(seeds)
    slot_probe = np.tile(np.arange(n_probes), n_var)
    slot_var = np.repeat(np.arange(n_var), n_probes)
    regs = np.asarray(optregs, dtype=np.float64).reshape(-1)
    rows = [(train_rows[v],) if test_rows is None else (train_rows[v], test_rows[v]) for v in range(n_var)]
    bm, srows = _mlp(X, nclasses, slot_probe, regs, slot_var, seeds, rows, classifier=classifier, device=device)
    bm.fit(X, Y, [r[0] for r in srows], validation_split=VALIDATION_SPLIT)
    bar.update()
    return bm, srows


def _kfold_chunk(X, Y, rows, *, seeds, nclasses, kfold, classifier, device, bar) -> list[list[dict[str, Any]]]:
    tr, te = rows
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("kfold", True)
    y_np = Y.cpu().numpy()
    # StratifiedKFold draws folds from the labels, the seed and the sample count only, so a placeholder X gives the
    # same folds; each variant (labels, seed) has its own.
    folds = [[(tr[a], tr[b]) for a, b in stratified_kfold(kfold, seeds[v]).split(np.zeros((len(tr), 1)), y_np[v, tr])]
             for v in range(n_var)]
    scans = _cv_grid(X, Y, folds, regs, seeds=seeds, nclasses=nclasses, classifier=classifier, device=device,
                     bar=bar)
    sel = _select_cv(scans, regs, n_probes, n_var)
    bm, _ = _refit(X, Y, [tr] * n_var, [[s[1] for s in sel_v] for sel_v in sel], seeds=seeds, nclasses=nclasses,
                   classifier=classifier, device=device, bar=bar)
    yhat = bm.predict(X, te)
    test_acc = bm.score(X, Y, te).tolist()
    return [[{"devacc": float(best), "acc": float(split_score(test_acc[v * n_probes + p])),
              "yhat": yhat[v * n_probes + p], "reg": optreg, "regs": list(regs),
              "dev_scores": [float(s) for s in scores]}
             for p, (scores, optreg, best) in enumerate(sel[v])] for v in range(n_var)]


def _innerkfold_chunk(X, Y, *, seeds, nclasses, kfold, classifier, device, bar) -> list[list[dict[str, Any]]]:
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("innerkfold", True)
    y_np = Y.cpu().numpy()
    skf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    innerskf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    outer = [list(skf.split(np.zeros((Y.shape[1], 1)), y_np[v])) for v in range(n_var)]
    devresults = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    testresults = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    fold_regs = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    for i in range(len(outer[0])):
        train_idx = [outer[v][i][0] for v in range(n_var)]
        test_idx = [outer[v][i][1] for v in range(n_var)]
        inner = [[(train_idx[v][a], train_idx[v][b])
                  for a, b in innerskf.split(np.zeros((len(train_idx[v]), 1)), y_np[v, train_idx[v]])]
                 for v in range(n_var)]
        scans = _cv_grid(X, Y, inner, regs, seeds=seeds, nclasses=nclasses, classifier=classifier, device=device,
                         bar=bar)
        sel = _select_cv(scans, regs, n_probes, n_var)
        for v in range(n_var):
            for p, (_, optreg, best) in enumerate(sel[v]):
                devresults[v][p].append(best)
                fold_regs[v][p].append(optreg)
        bm, srows = _refit(X, Y, train_idx, [[s[1] for s in sel_v] for sel_v in sel], seeds=seeds,
                           nclasses=nclasses, classifier=classifier, device=device, bar=bar, test_rows=test_idx)
        for s, acc in enumerate(bm.score(X, Y, [r[1] for r in srows]).tolist()):
            testresults[s // n_probes][s % n_probes].append(split_score(acc))
    return [[{"devacc": float(mean_score(devresults[v][p])), "acc": float(mean_score(testresults[v][p])),
              "fold_devacc": [float(x) for x in devresults[v][p]], "fold_acc": [float(x) for x in testresults[v][p]],
              "fold_reg": fold_regs[v][p], "regs": list(regs)} for p in range(n_probes)] for v in range(n_var)]


def _relatedness_chunk(X, rows, y_train, y_dev, y_test, *, seeds, device, bar) -> list[list[dict[str, Any]]]:
    tr, dv, te = rows
    n_probes = X.shape[0]
    Y = torch.zeros(X.shape[1], RELATEDNESS_NCLASSES, dtype=torch.float32)
    Y[torch.as_tensor(tr)] = torch.from_numpy(ev.encode_relatedness_labels(y_train))
    out = []
    for seed in seeds:
        reg = BatchedRelatedness(X.shape[2], np.arange(n_probes), n_probes=n_probes, seed=seed, device=device)
        reg.fit(X, Y.to(X.device), tr, dv, np.asarray(list(y_dev), dtype=np.float64))
        bar.update()
        yhat = reg.predict(X, te)
        out.append([relatedness_scores(reg.best_score_[p], yhat[p], y_test) for p in range(n_probes)])
    return out


def _offsets(sizes: Sequence[int]) -> list[np.ndarray]:
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in range(len(sizes))]


#: Fewest probes per chunk when the probes are split for parallel chunks: smaller chunks would spend their steps on
#: per-call overhead (and on the interpreter lock the threads share) rather than on the matmuls.
MIN_PARALLEL_CHUNK = 8


def chunk_workers(device: torch.device, num_threads: int | None) -> int:
    """Trainers run at once: on CPU, as many as the process's torch threads (``torch.get_num_threads()``: the cores
    it may use, ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` where set, as under Ray) hold with ``num_threads``
    threads each (``None``: the process setting, so one at a time); on CUDA one (the device runs the slots in
    parallel already)."""
    check_num_threads(num_threads)
    if device.type != "cpu" or num_threads is None:
        return 1
    return max(1, torch.get_num_threads() // int(num_threads))


def work_items(n_probes: int, n_rows: int, width: int, max_probes: int | None, n_variants: int,
               workers: int) -> list[tuple[int, int, list[int]]]:
    """``(p0, p1, variants)``: the trainers of one run, each on probes ``p0:p1`` for some of the variants.

    Probe chunks stay under the memory budget shared by the ``workers`` trainers in flight; with several workers
    and no ``max_probes``, the probes are split into up to ``workers`` chunks of at least :data:`MIN_PARALLEL_CHUNK`
    probes; when that leaves workers idle (few probes, e.g. a model's layers), the variants are split across them."""
    if max_probes is None:
        split = max(1, min(workers, n_probes // MIN_PARALLEL_CHUNK))
        max_probes = min(default_max_probes(n_rows, width, CHUNK_BYTES // workers), -(-n_probes // split))
    chunks = probe_chunks(n_probes, n_rows, width, max_probes)
    groups = min(n_variants, max(1, workers // len(chunks)))
    parts = [part.tolist() for part in np.array_split(np.arange(n_variants), groups)]
    return [(p0, p1, vs) for p0, p1 in chunks for vs in parts]


def run_parallel(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int, num_threads: int | None,
                 device: torch.device) -> list[Any]:
    """``[fn(item) for item in items]``, in up to ``workers`` threads when there are several items, with
    ``num_threads`` torch threads held for all of them (see :func:`torch_threads`). One setting for the whole pool:
    a setting per call would be restored by one thread under the feet of the others. ``fn`` must be thread-safe
    (the trainers are: each draws from torch's global generator under
    :data:`~senteval_anatomy.engine.stacked.GLOBAL_RNG_LOCK`)."""
    with torch_threads(num_threads, device):
        if workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="probes") as pool:
                return list(pool.map(fn, items))
        return [fn(item) for item in items]


def run_chunks(kind: str, sources: Sequence[Source], labels: np.ndarray | None, *, seeds: Sequence[int],
                max_probes: int | None, progress: bool | None, desc: str, device: Any,
                num_threads: int | None = DEFAULT_CPU_THREADS, **kw: Any) -> list[list[dict[str, Any]]]:
    """Chunk the probes, stack each chunk's features once, run the batched evaluator ``kind`` on it (with
    ``num_threads`` torch threads on CPU, see :data:`DEFAULT_CPU_THREADS`) for every variant: ``labels`` is
    ``[V, N]`` (one label set per variant), ``seeds`` one seed per variant. Returns V lists of P results.

    On a CPU with several cores, :func:`chunk_workers` trainers run at once, each in its own thread on its own
    core (the ops of a training step are small, so one trainer cannot use several cores well; several trainers
    can), on the :func:`work_items` (probe chunks, and variant groups when the probes are few). Slots never
    interact, and each trainer seeds and draws from torch's global generator under
    :data:`~senteval_anatomy.engine.stacked.GLOBAL_RNG_LOCK`, so the results are those of one trainer at a time."""
    names = [f"split {i}" for i in range(len(sources))]
    sizes, n_probes, width = check_sources(sources, names)
    dev = resolve_device(device)
    workers = chunk_workers(dev, num_threads)
    items = work_items(n_probes, sum(sizes), width, max_probes, len(seeds), workers)
    k = int(kw.get("kfold") or 0)
    fits = {"split": 1, "kfold": k + 1, "innerkfold": k * (k + 1), "relatedness": 1}[kind]  # per trainer
    bar = Progress(sum(fits * (len(vs) if kind == "relatedness" else 1) for _, _, vs in items), desc, progress)
    rows = _offsets(sizes)
    y = None if labels is None else torch.as_tensor(np.asarray(labels), device=dev)

    def one(item: tuple[int, int, list[int]]) -> list[list[dict[str, Any]]]:
        p0, p1, vs = item
        X = _chunk_tensor(sources, p0, p1, dev)
        ys = None if y is None else y[vs]
        sds = [seeds[v] for v in vs]
        if kind == "split":
            return _split_chunk(X, ys, rows, seeds=sds, device=dev, bar=bar, **kw)
        if kind == "kfold":
            return _kfold_chunk(X, ys, rows, seeds=sds, device=dev, bar=bar, **kw)
        if kind == "innerkfold":
            return _innerkfold_chunk(X, ys, seeds=sds, device=dev, bar=bar, **kw)
        return _relatedness_chunk(X, rows, seeds=sds, device=dev, bar=bar, **kw)

    results: list[list[dict[str, Any]]] = [[] for _ in seeds]
    try:
        parts = run_parallel(one, items, workers=workers, num_threads=num_threads, device=dev)
        for (_, _, vs), part in zip(items, parts, strict=True):  # probe chunks in order; each variant once per chunk
            for v, res in zip(vs, part, strict=True):
                results[v] += res
    finally:
        bar.close()
    return results


def variant_labels(ys: Sequence[Any], seed: int | Sequence[int]) -> tuple[list[np.ndarray], list[int], bool]:
    """Normalise the label arguments of a ``*_eval_many`` function: each of ``ys`` is one label vector ``[n]`` or
    V label sets ``[V, n]``; ``seed`` one int or V seeds. Returns the ``[V, n]`` label matrices, the V seeds and
    whether the caller asked for variants (then results are V lists of P dicts)."""
    arrays = [np.asarray(y) for y in ys]
    multi = isinstance(seed, (list, tuple, np.ndarray)) or any(a.ndim == 2 for a in arrays)
    n_var = max([a.shape[0] for a in arrays if a.ndim == 2] + [len(seed) if isinstance(
        seed, (list, tuple, np.ndarray)) else 1])
    seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple, np.ndarray)) else [int(seed)] * n_var
    mats = [a if a.ndim == 2 else np.broadcast_to(a, (n_var, len(a))) for a in arrays]
    if len(seeds) != n_var or any(m.shape[0] != n_var for m in mats):
        raise ValueError(f"variants: {len(seeds)} seed(s) and label sets of {[m.shape[0] for m in mats]} rows; give "
                         "one seed per label set (or a single seed / a single label vector for all).")
    return mats, seeds, multi


def unwrap(results: list[list[dict[str, Any]]], multi: bool) -> Any:
    return results if multi else results[0]


def probe_features(src: Source, p: int) -> np.ndarray:
    """Probe ``p``'s own 2-D features of one split (contiguous, as a solo run would receive them)."""
    if isinstance(src, tuple):
        return pair_features(np.ascontiguousarray(as_array(src[0][:, p])),
                             np.ascontiguousarray(as_array(src[1][:, p])))
    return np.ascontiguousarray(as_array(src[:, p]))


def per_probe(fn: Callable[[int], dict[str, Any]], n_probes: int, n_jobs: int | None, desc: str,
               progress: bool | None) -> list[dict[str, Any]]:
    """Run ``fn(p)`` for every probe: the exact solo path (sklearn probes, custom STS similarity)."""
    if n_jobs is not None and n_jobs != 1:
        return list(Parallel(n_jobs=n_jobs)(delayed(fn)(p) for p in range(n_probes)))
    bar = Progress(n_probes, desc, progress)
    out = []
    try:
        for p in range(n_probes):
            out.append(fn(p))
            bar.update()
    finally:
        bar.close()
    return out
