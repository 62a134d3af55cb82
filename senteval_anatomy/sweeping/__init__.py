"""Sweep every head and every layer of a model over SentEval tasks, at close to the cost of one forward pass.

This package is the run layer: :mod:`.plan` (the validated settings), :mod:`.units` (what one result unit
computes), :mod:`.variants` (findings as variants of the stacked run and column providers), :mod:`.views` (the top-k
heads view) and :mod:`.backends` (where units run: ``local``, ``ray``; one contract). The pipeline that runs a plan
and then the report, :func:`senteval_anatomy.pipeline.run`, sits above this package and the analysis.
:func:`sweep` is the one unit loop's coordinator: it plans the units of a run, reuses the finished ones, hands the
rest to the backend, then computes each task's top-k view from the store.

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
determines its numbers (:mod:`senteval_anatomy.sweeping.identity`: data content, model fingerprint and dtype, pooling, max
length, every probe setting, seed, harness, preset, protocol version); a rerun reuses a unit only when that key
matches exactly, and recomputes a damaged or foreign one after naming it. One output folder may hold several
settings; rows tell them apart by their ``setting`` column.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..engine.params import apply_defaults
from ..engine.tasks import load_task
from ..outdir import ABLATION_CURVES_CSV, TOPK_CSV, TOPK_DIR, UNITS_DIR
from ..store import FeatureStore
from ..tables.results import Results
from ..tables.table import write_results_table
from ..vocab import CURVE_COLUMNS, ENCODE_BATCH_SIZE, VIEWS, atomic_write, check_pooling
from .backends import PendingUnit, RunContext, get_backend
from .backends.local import LocalBackend
from .identity import (
    UnitFileWarning,
    data_hash,
    read_unit,
    select_units,
    setting_fields,
    unit_key,
    unit_path,
)
from .plan import Plan, make_plan
from .variants import TABLE_COLUMNS, FindingsOptions, typed
from .views import rank_on_dev, topk_ks

if TYPE_CHECKING:  # torch stays out of light commands (the CLI's parser lists the backends of this package)
    from ..encoders.encoder import Encoder

__all__ = ["SweepOutput", "execute", "merge_units", "sweep"]

_ORDER = ["model", "setting", "task", "view", "layer", "head"]


def merge_units(out_dir: str | os.PathLike[str], run_keys: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Merge the units under ``out_dir/units`` into ``results.csv`` and ``results.parquet`` (atomically).

    The rows of a run's own units (``run_keys``) are the units of exactly those keys; other settings' rows in the
    folder stay (newest unit per setting, task and view); see :func:`~senteval_anatomy.sweeping.identity.select_units`.
    Every row has every column of :data:`~.variants.TABLE_COLUMNS` (findings columns empty when off).
    """
    out = Path(out_dir)
    units = out / UNITS_DIR
    legacy = sorted(units.glob("*.csv"))
    if legacy:
        warnings.warn(f"{len(legacy)} unit file(s) of an older format in {units} (e.g. {legacy[0].name}) carry no "
                      "result key and are ignored; rerun the sweep to recompute them", UnitFileWarning, stacklevel=2)
    df = _table(select_units(out, run_keys))
    out.mkdir(parents=True, exist_ok=True)
    write_results_table(out, df)
    return df


def _table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [typed(f) for f in frames]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TABLE_COLUMNS))
    return df.sort_values(_ORDER, kind="stable").reset_index(drop=True)


@dataclass
class SweepOutput:
    """What one sweep produced: the table of its own rows (every column), the top-k curves of its tasks (``None``
    without the top-k view) and the top-k ablation curves (``--ablate``)."""

    table: pd.DataFrame
    topk: pd.DataFrame | None = None
    ablation_curves: pd.DataFrame | None = None


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
    topk: bool = False,
    ks: str | Sequence[int] | None = None,
    rank_task: str | None = None,
    findings: FindingsOptions | Mapping[str, Any] | None = None,
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
    batch_size : sentences per forward pass when encoding (``--batch-size``; also the untrained twin's): speed and
        memory only.
    backend : a name of :data:`~senteval_anatomy.sweeping.backends.BACKENDS` (``"local"``: this process,
        ``"ray"``: a Ray cluster, same table and resume rules) or a configured backend such as ``RayBackend(...)``.
    topk : also compute each task's top-k heads view (heads ranked on the task's dev scores, or ``rank_task``'s;
        k values ``ks``, default 1..12 then doubling, plus the paper's k = heads per layer) from the store; the
        curves are in ``table.attrs["topk_curves"]`` (records) and ``out_dir/topk.csv``.
    findings : :class:`~senteval_anatomy.sweeping.variants.FindingsOptions` (or its fields as a mapping):
        controls, seeds, the untrained twin, MDL, ablation; their columns fill the table's findings columns
        (:data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`; empty when off). Each probe trains once.

    Returns
    -------
    DataFrame
        This call's rows (other settings in the same folder are not mixed in), every column of
        :data:`~senteval_anatomy.sweeping.variants.TABLE_COLUMNS`.
    """
    plan = make_plan(tasks, task_path=task_path, params=params, preset=preset, views=views, ks=ks,
                     findings=findings, pooling=pooling, max_length=max_length, harness=harness, backend=backend,
                     batch_size=batch_size, memory_budget_gb=memory_budget_gb, out=out_dir, resume=resume,
                     progress=True if progress is None else bool(progress), topk=topk, rank_task=rank_task,
                     report=False)
    result = execute(encoder, plan, store)
    table = result.table
    if result.topk is not None:
        table.attrs["topk_curves"] = result.topk.to_dict("records")
    if result.ablation_curves is not None:
        table.attrs["ablation_curves"] = result.ablation_curves.to_dict("records")
    return table


def execute(encoder: Encoder, plan: Plan, store: FeatureStore | None = None) -> SweepOutput:
    """Run the units of ``plan`` (the sweep of :func:`sweep`, and the first step of the pipeline)."""
    run_params = apply_defaults(dict(plan.params))
    pooling = check_pooling(plan.pooling, encoder)
    limit = encoder.token_limit(plan.max_length)
    store = store if store is not None else FeatureStore()
    setting = setting_fields(encoder, params=run_params, pooling=pooling, max_length=limit, harness=plan.harness,
                             cache_dtype=store.dtype, data_path=plan.task_path)
    out = plan.out
    fo = plan.findings
    extra_key = {"findings": fo.key()} if fo.any() else {}
    views = plan.views if not (fo.ablate and "heads" not in plan.views) else (*plan.views, "heads")
    backend = get_backend(plan.backend)
    tasks: dict[str, Any] = {}
    data: dict[str, str] = {}
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    pending: list[PendingUnit] = []
    run_keys: list[dict] = []  # this run's units: its rows in results.csv are exactly these keys' units
    for task_name in plan.tasks:
        task = tasks[task_name] = load_task(task_name, run_params.task_path, seed=run_params.seed)
        data[task_name] = data_hash(task)
        for view in views:
            key = {**unit_key(setting, task_name, data[task_name], view), **extra_key}
            run_keys.append(key)
            unit = unit_path(out, key) if out is not None else None
            done = _resume(unit, key, plan.resume)
            if done is not None:
                frames[(task_name, view)] = done
            else:
                pending.append(PendingUnit(task_name, view, unit, key))
    context = RunContext(encoder=encoder, run_params=run_params, pooling=pooling, limit=limit, store=store,
                         harness=plan.harness, memory_budget_gb=plan.memory_budget_gb, batch_size=plan.batch_size,
                         progress=plan.progress, resume=plan.resume, findings=fo, tasks=tasks)
    if pending:
        frames.update(backend.run(pending, context))
    ablation = [pd.DataFrame(df.attrs["ablation_curves"]) for df in frames.values() if df.attrs.get("ablation_curves")]
    for df in frames.values():
        df.attrs.clear()
    table = _table([frames[(t, v)] for t in plan.tasks for v in views])
    curves = _topk_view(plan, context, setting, data, frames, out) if plan.topk and "heads" in views else None
    ablation_curves = pd.concat(ablation, ignore_index=True) if ablation else None
    if out is not None:
        merge_units(out, run_keys)
        if curves is not None:
            atomic_write(out / TOPK_CSV, lambda p: curves.to_csv(p, index=False))
        if ablation_curves is not None:
            atomic_write(out / ABLATION_CURVES_CSV, lambda p: ablation_curves.to_csv(p, index=False))
    return SweepOutput(table=table, topk=curves, ablation_curves=ablation_curves)


def _resume(unit: Path | None, key: Mapping[str, Any], resume: bool) -> pd.DataFrame | None:
    """The finished unit of ``key`` (a damaged or foreign file warns, naming it, and is recomputed)."""
    if unit is None or not resume or not unit.exists():
        return None
    return read_unit(unit, key)


def _topk_view(plan: Plan, context: RunContext, setting: Mapping[str, Any], data: Mapping[str, str],
               frames: Mapping[tuple[str, str], pd.DataFrame], out: Path | None) -> pd.DataFrame | None:
    """The top-k heads view of every task: one more keyed unit per task (``out/topk/units``), computed by the
    local backend from the stored heads, ranked on dev; then the curve with the layer baselines read from the
    task's own layer rows (no probe trained again)."""
    encoder = context.encoder
    intervals = plan.findings.any()
    pending, baselines = [], {}
    for task in plan.tasks if plan.topk_tasks is None else [t for t in plan.tasks if t in plan.topk_tasks]:
        rank_task = plan.rank_task or task
        heads = frames.get((rank_task, "heads"))
        if heads is None or heads.empty:
            continue
        ranking = rank_on_dev(heads)
        if not ranking:
            continue  # no dev score (STS12-16): nothing honest to rank on
        ks = topk_ks(len(ranking), plan.ks, paper_k=encoder.num_heads)
        layers = frames.get((task, "layers"))
        best = last = None
        if layers is not None and not layers.empty:
            res = Results(layers)
            last = res.last_layer(task)
            try:
                best = res.best_layer(task)
            except ValueError:
                best = None
        baselines[task] = (last, best)
        spec = {"ranking": [list(p) for p in ranking], "ks": ks, "rank_task": rank_task,
                "rank_data_hash": data[rank_task], "intervals": intervals,
                "best_layer": best.layer if (best is not None and intervals) else None,
                "interval": "wilson" if intervals else None}
        key = {**unit_key(setting, task, data[task], "topk"), "topk": spec}
        unit = unit_path(out / TOPK_DIR, key) if out is not None else None
        done = _resume_curve(unit, key, plan.resume)
        pending.append((PendingUnit(task, "topk", unit, key), done))
    todo = [u for u, done in pending if done is None]
    computed = LocalBackend().run(todo, context) if todo else {}
    curves = []
    for u, done in pending:
        curve = done if done is not None else computed[(u.task, "topk")]
        last, best = baselines[u.task]
        extra = []
        for kind, pick in (("last_layer", last), ("best_layer", best)):
            if pick is None or (kind == "best_layer" and (curve["kind"] == "best_layer").any()):
                continue
            extra.append({"model": setting["model"], "task": u.task, "rank_task": u.key["topk"]["rank_task"],
                          "pooling": context.pooling, "kind": kind, "k": None, "layer": pick.layer,
                          "name": pick.name, "dim": encoder.hidden_size, "metric": curve["metric"].iloc[0],
                          "devacc": pick.devacc, "acc": pick.acc, "by": "devacc", "selected": False, "seconds": 0.0})
        curves.append(pd.concat([curve, pd.DataFrame(extra)], ignore_index=True) if extra else curve)
    if not curves:
        return None
    frame = pd.concat(curves, ignore_index=True)
    frame["k"] = pd.to_numeric(frame["k"], errors="coerce").astype("Int64")
    frame["layer"] = pd.to_numeric(frame["layer"], errors="coerce").astype("Int64")
    frame["selected"] = frame["selected"].astype(str).str.lower() == "true"
    return frame[[c for c in frame.columns if c in CURVE_COLUMNS] + [c for c in frame.columns
                                                                      if c not in CURVE_COLUMNS]]


def _resume_curve(unit: Path | None, key: Mapping[str, Any], resume: bool) -> pd.DataFrame | None:
    if unit is None or not resume or not unit.exists():
        return None
    return read_unit(unit, key, required=CURVE_COLUMNS)
