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
``<out>/units/<model>__<task>__<view>__<pooling>__<key hash>.json`` as soon as each (model, task, view) finishes,
then merged into ``<out>/results.csv`` and ``<out>/results.parquet``. Each unit carries the full key of what
determines its numbers (:mod:`senteval_anatomy.identity`: data content, model fingerprint and dtype, pooling, max
length, every probe setting, seed, harness, preset, protocol version); a rerun reuses a unit only when that key
matches exactly, and recomputes a damaged or foreign one after naming it. One output folder may hold several
settings; rows tell them apart by their ``setting`` column.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .adapters import HeadAdapter, LayerAdapter
from .backends import check_backend
from .data.sources import check_tasks
from .encoders.encoder import Encoder
from .identity import (
    UnitFileWarning,
    data_hash,
    read_unit,
    select_units,
    setting_fields,
    unit_key,
    unit_path,
    write_unit,
)
from .store import FeatureStore
from .table import write_results_table
from .units import StoreBatcher, probe_index, probe_slices, result_rows
from .vocab import (
    ENCODE_BATCH_SIZE,
    HARNESSES,
    PAPER_PARAMS,
    RESULT_COLUMNS,
    VIEWS,
    ParamError,
    check_count,
    check_pooling,
    check_probe_params,
    check_views,
    plain,
    preset_params,
)

__all__ = ["merge_units", "sweep"]

def merge_units(out_dir: str | Path, run_keys: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Merge the units under ``out_dir/units`` into ``results.csv`` and ``results.parquet`` (atomically).

    The rows of a run's own units (``run_keys``) are the units of exactly those keys; other settings' rows in the
    folder stay (newest unit per setting, task and view); see :func:`~senteval_anatomy.identity.select_units`.
    """
    out = Path(out_dir)
    units = out / "units"
    legacy = sorted(units.glob("*.csv"))
    if legacy:
        warnings.warn(f"{len(legacy)} unit file(s) of an older format in {units} (e.g. {legacy[0].name}) carry no "
                      "result key and are ignored; rerun the sweep to recompute them", UnitFileWarning, stacklevel=2)
    frames = select_units(out, run_keys)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESULT_COLUMNS))
    df = df.sort_values(["model", "setting", "task", "view", "layer", "head"], kind="stable").reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    write_results_table(out, df)
    return df


def sweep(
    encoder: Encoder,
    tasks: Sequence[str] | str,
    *,
    task_path: str | os.PathLike[str],
    views: Sequence[str] | str = VIEWS,
    out_dir: str | os.PathLike[str] | None = None,
    params: Mapping[str, Any] | None = None,
    preset: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    store: FeatureStore | None = None,
    harness: str = "builtin",
    resume: bool = True,
    progress: bool | None = None,
    memory_budget_gb: float = 1.0,
    batch_size: int = ENCODE_BATCH_SIZE,
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
    params : SentEval params (``usepytorch``, ``kfold``, ``seed``, ``classifier``…); they override ``preset``.
    preset : a name of :data:`~senteval_anatomy.vocab.PRESETS` (``paper``, ``senteval-default``, ``prototyping``)
        to start from; default ``paper`` (:data:`~senteval_anatomy.vocab.PAPER_PARAMS`, the reference paper's
        settings). Every row records the preset its settings match (``custom`` when none).
    pooling : ``"cls"``, ``"last"`` or ``"mean"``; default the encoder's.
    harness : ``"builtin"`` (batched probes), ``"engine"`` (one probe at a time through our SE) or ``"senteval"``
        (one run per probe of the installed SentEval).
    memory_budget_gb : how much stacked probe data the batched trainer may hold at once; probes are processed in
        chunks that fit.
    batch_size : sentences per forward pass when encoding (``--batch-size``): speed and memory only.
    backend : ``"local"`` (this process), ``"ray"`` (a Ray cluster: same table, same resume rules; see
        :mod:`senteval_anatomy.backends.ray_backend`) or a configured ``RayBackend``.
    ray_address : the Ray cluster to join with ``backend="ray"``; default ``$RAY_ADDRESS``, else a local cluster.
    """
    from tqdm.auto import tqdm

    from .engine.params import apply_defaults
    from .engine.tasks import load_task

    if harness not in HARNESSES:
        raise ValueError(f"harness={harness!r} is not one of {HARNESSES}.")
    tasks = check_tasks(tasks)
    views = check_views(views)
    batch_size = check_count(batch_size, what="batch_size", why="sentences per forward pass")
    pooling = check_pooling(pooling, encoder)
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"params={params!r}: give a dict of SentEval params, e.g. {{'kfold': 5, 'seed': 1111}}")
    params = plain(params) if params is not None else None
    if preset is None:
        base = dict(PAPER_PARAMS if params is None else params)
    else:
        base = preset_params(preset, **dict(params or {}))
    try:  # the command line's checks: epoch_size=0, max_epoch=0, tenacity=-1, kfold=1 ... are one line
        check_probe_params(base)
    except ParamError as exc:
        raise ValueError(f"params: {exc}") from None
    base["task_path"] = str(task_path)
    run_params = apply_defaults(base)
    limit = encoder.token_limit(max_length)  # max_length checked as load_encoder and --max-length check it
    store = store if store is not None else FeatureStore()
    setting = setting_fields(encoder, params=run_params, pooling=pooling, max_length=limit, harness=harness,
                             cache_dtype=store.dtype, data_path=task_path)
    out = Path(out_dir) if out_dir is not None else None
    show = True if progress is None else progress
    frames: list[pd.DataFrame] = []
    backend = check_backend(backend)
    remote: list[tuple[str, str, Path | None, dict]] = []  # units for the Ray backend, run after planning
    run_keys: list[dict] = []  # this run's units: its rows in results.csv are exactly these keys' units

    task_bar = tqdm(tasks, desc="tasks", unit="task", disable=not show or backend != "local")
    for task_name in task_bar:
        task_bar.set_postfix_str(task_name)
        task = load_task(task_name, run_params.task_path, seed=run_params.seed)
        data = data_hash(task)
        pending = []
        for view in views:
            key = unit_key(setting, task_name, data, view)
            run_keys.append(key)
            unit = unit_path(out, key) if out is not None else None
            if unit is not None and resume and unit.exists():
                done = read_unit(unit, key)  # a damaged or foreign file warns, naming it, and is recomputed
                if done is not None:
                    frames.append(done)
                    continue
            pending.append((view, unit, key))
        if not pending:
            continue
        if backend != "local":
            remote += [(task_name, view, unit, key) for view, unit, key in pending]
            continue
        run_params.current_task = task_name
        for view, unit, key in pending:
            probes = probe_index(encoder, view)
            if harness == "builtin":
                results = _run_batched(encoder, task, view, probes, run_params, pooling, limit, store,
                                       memory_budget_gb, show, batch_size)
            else:
                results = _run_one_by_one(encoder, task_name, view, probes, run_params, pooling, limit, store,
                                          harness, show, batch_size)
            df = result_rows(encoder, key, probes, results, run_params)
            if unit is not None:
                write_unit(unit, key, df)
            frames.append(df)
    task_bar.close()
    if remote:
        from .backends.ray_backend import PendingUnit, RayBackend

        runner = backend if isinstance(backend, RayBackend) else RayBackend(address=ray_address)
        units = [PendingUnit(t, v, u, k) for t, v, u, k in remote]
        done = runner.run(encoder, units, run_params=run_params, pooling=pooling, limit=limit, store=store,
                          memory_budget_gb=memory_budget_gb, progress=show, harness=harness, resume=resume,
                          encode_batch_size=batch_size)
        frames += [done[(u.task, u.view)] for u in units]
    mine = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESULT_COLUMNS))
    if out is not None:
        merge_units(out, run_keys)
    # this call's rows only, in the merged table's order: other settings in the same folder are not mixed in
    return mine.sort_values(["model", "setting", "task", "view", "layer", "head"], kind="stable").reset_index(
        drop=True)


def _run_batched(encoder, task, view, probes, params, pooling, limit, store, budget_gb, show, batch_size) -> list[dict]:
    from .engine.batched import evaluate_many

    sentences = list(dict.fromkeys(" ".join(s) for s in task.samples))
    feats = store.get(encoder, sentences, pooling=pooling, max_length=limit, views=VIEWS,
                      batch_size=batch_size, progress=show)
    results: list[dict] = []
    for sl in probe_slices(encoder, task, view, len(probes), budget_gb):
        batcher = StoreBatcher(feats, view, sl)
        emb = task.embed(params, batcher)
        results.extend(evaluate_many(task, emb, params, progress=show))
    return results


def _run_one_by_one(encoder, task_name, view, probes, params, pooling, limit, store, harness, show,
                    batch_size) -> list[dict]:
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
        from .compat import senteval_compat

        engine_cls = senteval.engine.SE
        # the unmodified SentEval on today's stack: getargspec, .cuda() on params.device, STS arrays (docs/compat.md)
        context: Any = senteval_compat(device=params.get("device") or "auto")
    else:
        from contextlib import nullcontext

        from .engine import SE as engine_cls

        context = nullcontext()
    user_params = dict(params)
    results = []
    with context:
        for layer, head in tqdm(probes, desc=f"{task_name} {view} ({harness})", disable=not show, leave=False):
            if view == "heads":
                adapter: Any = HeadAdapter(encoder, layer, head, pooling=pooling, store=store, max_length=limit,
                                           batch_size=batch_size)
            else:
                adapter = LayerAdapter(encoder, "embeddings" if layer < 0 else layer, pooling=pooling, store=store,
                                       max_length=limit, batch_size=batch_size)
            se = engine_cls(dict(user_params), adapter.batcher, adapter.prepare)
            results.append(se.eval(task_name))
    return results
