"""Sweep every head and every layer of a model over SentEval tasks, at close to the cost of one forward pass.

For each task: the task's sentences are encoded once into the :class:`~senteval_anatomy.store.FeatureStore`
(every head and layer in one forward pass per batch); the task's own ``embed`` step, the one the engine uses, then
reads all probes' vectors from the store through one batcher; and the batched trainer
(:func:`senteval_anatomy.engine.batched.evaluate_many`) trains the probes of all heads (or all layers) at once, each
with SentEval's semantics.

Harnesses
---------
``"builtin"`` (default)
    the batched trainer above.
``"engine"``
    one evaluation per head/layer through our drop-in ``SE`` and the adapters: the reference method, slow, kept to
    check the batched one and for the speed benchmark.
``"senteval"``
    one run of the real, installed SentEval per head/layer through the adapters — for users who must report numbers
    from SentEval itself.

Results go to one tidy table (one row per model × task × view × layer × head), written as units
``<out>/units/<model>__<task>__<view>__<pooling>__<settings>.csv`` as soon as each (model, task, view) finishes, then
merged into ``<out>/results.csv`` and ``<out>/results.parquet``. A rerun skips the units already on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .adapters import HeadAdapter, LayerAdapter
from .backends import check_backend
from .models import Encoder
from .store import FeatureStore, StoredFeatures
from .vocab import (
    HARNESSES,
    PAPER_PARAMS,
    RESULT_COLUMNS,
    VIEWS,
    atomic_write,
    check_pooling,
    check_views,
    main_scores,
    slug,
    vector_name,
)

__all__ = ["merge_units", "sweep"]

def _settings_hash(params: Mapping[str, Any], pooling: str, harness: str, max_length: int) -> str:
    keep = {k: params.get(k) for k in ("usepytorch", "kfold", "seed", "classifier")}
    blob = json.dumps([keep, pooling, harness, max_length], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def merge_units(out_dir: str | Path) -> pd.DataFrame:
    """Merge every finished unit under ``out_dir/units`` into ``results.csv`` and ``results.parquet`` (atomically)."""
    out = Path(out_dir)
    files = sorted((out / "units").glob("*.csv"))
    frames = [pd.read_csv(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESULT_COLUMNS))
    df = df.sort_values(["model", "task", "view", "layer", "head"], kind="stable").reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", lambda p: df.to_csv(p, index=False))
    atomic_write(out / "results.parquet", lambda p: df.to_parquet(p, index=False))
    return df


def _probe_index(encoder: Encoder, view: str) -> list[tuple[int, int]]:
    """(layer, head) of each probe in the order of the flattened feature axis."""
    if view == "heads":
        return [(lay, h) for lay in range(encoder.num_layers) for h in range(encoder.num_heads)]
    return [(lay - 1, -1) for lay in range(encoder.num_layers + 1)]  # -1 = embeddings, then blocks 0..L-1


class _StoreBatcher:
    """A SentEval batcher returning ``[len(batch), n_probes, d]``: a chunk of probes' vectors from the store.

    ``Task.embed`` stacks such 3-D batches as they are, which is the layout ``evaluate_many`` takes.
    """

    def __init__(self, feats: StoredFeatures, view: str, probes: slice) -> None:
        self.feats = feats
        self.view = view
        self.probes = probes

    def __call__(self, params: Any, batch: Sequence[Sequence[str]]) -> np.ndarray:
        rows = self.feats.rows([" ".join(tokens) for tokens in batch])
        if self.view == "heads":
            arr = np.asarray(self.feats.heads[rows])
            arr = arr.reshape(arr.shape[0], -1, arr.shape[-1])[:, self.probes]
        else:
            arr = np.asarray(self.feats.layers[rows])[:, self.probes]
        return np.ascontiguousarray(arr, dtype=np.float32)


def _chunk_size(n_sentences: int, n_probes: int, dim: int, pair: bool, budget_bytes: float) -> int:
    per_probe = n_sentences * dim * 4 * (2 if pair else 1) * 2  # float32, sorted copy + pair features
    return max(1, min(n_probes, int(budget_bytes // max(per_probe, 1))))


def sweep(
    encoder: Encoder,
    tasks: Sequence[str] | str,
    *,
    task_path: str | os.PathLike[str],
    views: Sequence[str] | str = VIEWS,
    out_dir: str | os.PathLike[str] | None = None,
    params: Mapping[str, Any] | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    store: FeatureStore | None = None,
    harness: str = "builtin",
    resume: bool = True,
    progress: bool | None = None,
    memory_budget_gb: float = 1.0,
    backend: Any = "local",
    ray_address: str | None = None,
) -> pd.DataFrame:
    """Evaluate every head and/or every layer of ``encoder`` on ``tasks``; return the tidy results table.

    Parameters
    ----------
    encoder : Encoder
    tasks : list of SentEval task names (or one comma-separated string)
    task_path : SentEval data folder (holding ``probing/`` and ``downstream/``)
    views : a subset of :data:`~senteval_anatomy.vocab.VIEWS`, as a sequence or a string such as ``"heads,layers"``
    out_dir : folder for the results table and its per-unit files; with ``resume=True`` finished units are skipped.
        ``None`` keeps everything in memory.
    params : SentEval params (``usepytorch``, ``kfold``, ``seed``, ``classifier``…); defaults to
        :data:`PAPER_PARAMS`, the settings of the reference paper.
    pooling : ``"cls"``, ``"last"`` or ``"mean"``; default the encoder's.
    harness : ``"builtin"`` (batched probes), ``"engine"`` (one probe at a time through our SE) or ``"senteval"``
        (one run per probe of the installed SentEval).
    memory_budget_gb : how much stacked probe data the batched trainer may hold at once; probes are processed in
        chunks that fit.
    backend : ``"local"`` (this process), ``"ray"`` (a Ray cluster: same table, same resume rules; see
        :mod:`senteval_anatomy.backends.ray_backend`) or a configured ``RayBackend``.
    ray_address : the Ray cluster to join with ``backend="ray"``; default ``$RAY_ADDRESS``, else a local cluster.
    """
    from tqdm.auto import tqdm

    from .engine import TASK_NAMES
    from .engine.params import apply_defaults
    from .engine.tasks import load_task

    if harness not in HARNESSES:
        raise ValueError(f"harness={harness!r} is not one of {HARNESSES}.")
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = list(tasks)
    if not tasks:
        raise ValueError("No tasks given.")
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise ValueError(f"Unknown task(s) {unknown}; valid names: {', '.join(TASK_NAMES)}.")
    views = check_views(views)
    pooling = check_pooling(pooling, encoder)
    base = dict(PAPER_PARAMS if params is None else params)
    base["task_path"] = str(task_path)
    run_params = apply_defaults(base)
    limit = int(min(encoder.max_length, max_length) if max_length else encoder.max_length)
    store = store if store is not None else FeatureStore()
    settings = _settings_hash(run_params, pooling, harness, limit)
    out = Path(out_dir) if out_dir is not None else None
    fingerprint = encoder.fingerprint()
    show = True if progress is None else progress
    frames: list[pd.DataFrame] = []
    backend = check_backend(backend)

    def unit_file(task_name: str, view: str) -> Path | None:
        """The file of one result unit (None: results stay in memory)."""
        if out is None:
            return None
        return out / "units" / f"{slug(encoder.name, default='model')}__{task_name}__{view}__{pooling}__{settings}.csv"

    if backend != "local":
        from .backends.ray_backend import PendingUnit, RayBackend

        runner = backend if isinstance(backend, RayBackend) else RayBackend(address=ray_address)
        pending_units = []
        for task_name in tasks:
            for view in views:
                unit = unit_file(task_name, view)
                if unit is not None and resume and unit.exists():
                    frames.append(pd.read_csv(unit))
                else:
                    pending_units.append(PendingUnit(task_name, view, unit))
        done = runner.run(encoder, pending_units, run_params=run_params, pooling=pooling, limit=limit, store=store,
                          memory_budget_gb=memory_budget_gb, progress=show, harness=harness, resume=resume,
                          encode_batch_size=int(run_params.get("encode_batch_size") or 64))
        frames += [done[(u.task, u.view)] for u in pending_units]

    task_bar = tqdm(tasks if backend == "local" else [], desc="tasks", unit="task", disable=not show)
    for task_name in task_bar:
        task_bar.set_postfix_str(task_name)
        pending = []
        for view in views:
            unit = unit_file(task_name, view)
            if unit is not None and resume and unit.exists():
                frames.append(pd.read_csv(unit))
                continue
            pending.append((view, unit))
        if not pending:
            continue
        task = load_task(task_name, run_params.task_path, seed=run_params.seed)
        run_params.current_task = task_name
        for view, unit in pending:
            probes = _probe_index(encoder, view)
            if harness == "builtin":
                results = _run_batched(encoder, task, view, probes, run_params, pooling, limit, store,
                                       memory_budget_gb, show)
            else:
                results = _run_one_by_one(encoder, task_name, view, probes, run_params, pooling, limit, store,
                                          harness, show)
            df = _rows(encoder, fingerprint, task_name, view, probes, results, run_params, pooling, harness)
            if unit is not None:
                atomic_write(unit, lambda p, df=df: df.to_csv(p, index=False))
            frames.append(df)
    task_bar.close()
    if out is not None:
        merged = merge_units(out)
        keep = set(tasks)
        return merged[(merged["task"].isin(keep)) & (merged["fingerprint"] == fingerprint)
                      & (merged["view"].isin(views)) & (merged["pooling"] == pooling)].reset_index(drop=True)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESULT_COLUMNS))


def _run_batched(encoder, task, view, probes, params, pooling, limit, store, budget_gb, show) -> list[dict]:
    from .engine.batched import evaluate_many

    sentences = list(dict.fromkeys(" ".join(s) for s in task.samples))
    feats = store.get(encoder, sentences, pooling=pooling, max_length=limit, views=VIEWS,
                      batch_size=int(params.get("encode_batch_size") or 64), progress=show)
    dim = encoder.head_dim if view == "heads" else encoder.hidden_size
    pair = task.spec.kind in ("pair_classification", "relatedness", "sts")
    chunk = _chunk_size(len(task.samples), len(probes), dim, pair, budget_gb * 1024**3)
    results: list[dict] = []
    for start in range(0, len(probes), chunk):
        sl = slice(start, min(start + chunk, len(probes)))
        batcher = _StoreBatcher(feats, view, sl)
        emb = task.embed(params, batcher)
        results.extend(evaluate_many(task, emb, params, progress=show))
    return results


def _run_one_by_one(encoder, task_name, view, probes, params, pooling, limit, store, harness, show) -> list[dict]:
    from tqdm.auto import tqdm

    if harness == "senteval":
        try:
            import senteval  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError(
                "harness='senteval' needs facebookresearch/SentEval, which is not installed. It is not on PyPI: "
                "pip install git+https://github.com/facebookresearch/SentEval (or use harness='builtin', whose numbers "
                "match SentEval's; see docs/engine.md)."
            ) from exc
        engine_cls = senteval.engine.SE
        user_params = dict(params)
    else:
        from .engine import SE as engine_cls

        user_params = dict(params)
    results = []
    for layer, head in tqdm(probes, desc=f"{task_name} {view} ({harness})", disable=not show, leave=False):
        if view == "heads":
            adapter: Any = HeadAdapter(encoder, layer, head, pooling=pooling, store=store, max_length=limit)
        else:
            adapter = LayerAdapter(encoder, "embeddings" if layer < 0 else layer, pooling=pooling, store=store,
                                   max_length=limit)
        se = engine_cls(dict(user_params), adapter.batcher, adapter.prepare)
        results.append(se.eval(task_name))
    return results


def _rows(encoder, fingerprint, task_name, view, probes, results, params, pooling, harness) -> pd.DataFrame:
    rows = []
    classifier = json.dumps(dict(params.classifier or {}), sort_keys=True)
    for (layer, head), result in zip(probes, results):
        metric, dev, test, ndev, ntest, f1 = main_scores(result)
        rows.append({
            "model": encoder.name, "fingerprint": fingerprint, "task": task_name, "view": view,
            "layer": layer, "head": head, "name": vector_name(view, layer, head), "pooling": pooling,
            "metric": metric, "devacc": dev, "acc": test, "ndev": ndev, "ntest": ntest, "f1": f1,
            "harness": harness, "usepytorch": bool(params.usepytorch), "classifier": classifier,
            "kfold": params.kfold, "seed": params.seed, "num_layers": encoder.num_layers,
            "num_heads": encoder.num_heads, "package_version": __version__,
        })
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
