"""The local backend: every result unit in this process, one after the other (the reference loop).

Per task: the task (loaded once by the sweep) is embedded from the
:class:`~senteval_anatomy.store.FeatureStore` (every head and layer encoded in one forward pass per batch) through
:class:`~senteval_anatomy.sweeping.units.StoreBatcher`, one chunk of probes at a time
(:func:`~senteval_anatomy.sweeping.units.probe_slices`), and the batched trainer
(:func:`~senteval_anatomy.engine.batched.evaluate_many`) trains all probes of the chunk at once. With findings
options the same call trains the variants (seeds, controls) as slots of the same stacked runs
(:mod:`senteval_anatomy.sweeping.variants`). A ``topk`` unit probes the task's heads concatenated in rank order
(:mod:`senteval_anatomy.sweeping.views`). Each unit is written as soon as it is done.

The ``engine`` and ``senteval`` harnesses run one probe at a time through :func:`harness_engine`, the one place that
says which engine a harness is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pandas as pd

from ...engine import SE
from ...engine.tasks import load_task
from ...interop.compat import senteval_compat
from ...tables.selection import choose_k
from ...vocab import CURVE_COLUMNS, INTERVAL_COLUMNS, VIEWS, main_scores, vector_name
from ..identity import write_unit
from ..variants import UnitFindings, typed
from ..views import add_intervals, curve_row, evaluate_topk
from . import PendingUnit, RunContext

__all__ = ["BACKEND", "LocalBackend", "harness_engine"]


def harness_engine(harness: str, device: Any = "auto") -> tuple[Any, AbstractContextManager]:
    """The ``SE`` class of a harness and the context to run it in: our engine for ``builtin``/``engine``; the
    installed SentEval for ``senteval``, inside :func:`~senteval_anatomy.interop.compat.senteval_compat` (today's stack)."""
    if harness == "senteval":
        try:
            import senteval  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError(
                "harness='senteval' needs facebookresearch/SentEval, which is not installed. It is not on PyPI: "
                "pip install git+https://github.com/facebookresearch/SentEval (or use harness='builtin', whose numbers "
                "match SentEval's; see docs/engine.md)."
            ) from exc

        # the unmodified SentEval on today's stack: getargspec, .cuda() on params.device, STS arrays (docs/compat.md)
        return senteval.engine.SE, senteval_compat(device=device or "auto")

    return SE, nullcontext()


class LocalBackend:
    """Runs units in this process (the contract of :mod:`senteval_anatomy.sweeping.backends`)."""

    def run(self, units: Sequence[PendingUnit], context: RunContext) -> dict[tuple[str, str], Any]:
        from tqdm.auto import tqdm

        ctx = context
        by_task: dict[str, list[PendingUnit]] = {}
        for u in units:
            by_task.setdefault(u.task, []).append(u)
        done: dict[tuple[str, str], Any] = {}
        bar = tqdm(by_task.items(), desc="tasks", unit="task", disable=not ctx.progress or len(by_task) < 1)
        for task_name, task_units in bar:
            bar.set_postfix_str(task_name)
            task = ctx.tasks.get(task_name) or load_task(task_name, ctx.run_params.task_path,
                                                         seed=ctx.run_params.seed)
            ctx.run_params.current_task = task_name
            feats = None
            for u in task_units:
                if ctx.harness != "builtin" and u.view != "topk":
                    df = _one_by_one(ctx, task_name, u)
                else:
                    if feats is None:
                        sentences = list(dict.fromkeys(" ".join(s) for s in task.samples))
                        feats = ctx.store.get(ctx.encoder, sentences, pooling=ctx.pooling, max_length=ctx.limit,
                                              views=VIEWS, batch_size=ctx.batch_size, progress=ctx.progress)
                    df = _topk_unit(ctx, task, feats, u) if u.view == "topk" else _batched(ctx, task, feats, u)
                if u.path is not None:
                    write_unit(u.path, u.key, df)
                done[(u.task, u.view)] = df
        bar.close()
        return done


def _batched(ctx: RunContext, task: Any, feats: Any, u: PendingUnit) -> pd.DataFrame:
    """One (task, view) unit through the batched trainer: its rows, with the findings columns when asked for."""
    # lazy: start-up time (torch): light commands import the sweeping package
    from ...engine.batched import evaluate_many
    from ..units import StoreBatcher, probe_index, probe_slices, result_rows

    params, show = ctx.run_params, ctx.progress
    probes = probe_index(ctx.encoder, u.view)
    fo = ctx.findings if ctx.findings is not None and ctx.findings.any() else None
    results: list[dict] = []
    if fo is None:
        for sl in probe_slices(ctx.encoder, task, u.view, len(probes), ctx.memory_budget_gb):
            emb = task.embed(params, StoreBatcher(feats, u.view, sl))
            results.extend(evaluate_many(task, emb, params, progress=show))
        return result_rows(ctx.encoder, u.key, probes, results, params)
    found = UnitFindings(fo, task, params)
    ufeats = None
    if fo.untrained_baseline:
        # lazy: start-up time (torch): light commands import the sweeping package
        from ...encoders.baselines import untrained_encoder

        twin = _twin(ctx, untrained_encoder, fo.untrained_seed)
        sentences = list(dict.fromkeys(" ".join(s) for s in task.samples))
        ufeats = ctx.store.get(twin, sentences, pooling=ctx.pooling, max_length=ctx.limit, views=VIEWS,
                               batch_size=ctx.batch_size, progress=show)
    for sl in probe_slices(ctx.encoder, task, u.view, len(probes), ctx.memory_budget_gb):
        emb = task.embed(params, StoreBatcher(feats, u.view, sl))
        # one stacked pass per chunk: the task's probes, the extra seeds and the controls are slots of the same runs
        vres = evaluate_many(task, emb, params, progress=show, predictions=found.paired, variants=found.variants)
        results += vres[0]
        found.feed(vres, emb, progress=show)
        del emb, vres
        if ufeats is not None:
            uemb = task.embed(params, StoreBatcher(ufeats, u.view, sl))
            found.untrained_acc += [main_scores(r).acc for r in evaluate_many(task, uemb, params, progress=show)]
            del uemb
    df = result_rows(ctx.encoder, u.key, probes, results, params)
    extra, curve = found.columns(df, probes, u.view, encoder=ctx.encoder, progress=show)
    table = typed(pd.concat([df, extra], axis=1))
    if curve is not None:
        table.attrs["ablation_curves"] = curve.to_dict("records")
    return table


def _twin(ctx: RunContext, make: Any, seed: int) -> Any:
    """The untrained twin of the run's encoder, built once per run (its weights are a function of the seed)."""
    if seed not in ctx.twins:
        ctx.twins[seed] = make(ctx.encoder, seed)
    return ctx.twins[seed]


def _topk_unit(ctx: RunContext, task: Any, feats: Any, u: PendingUnit) -> pd.DataFrame:
    """The ``topk`` unit of a task: one probe per k of the heads ``ranking[:k]`` (rank order), from the store;
    ``selected`` marks the k chosen on dev. With intervals, the dev-chosen best layer is probed with test
    predictions too, for McNemar's test of "top-k beats the best layer"."""
    # lazy: start-up time (torch): light commands import the sweeping package
    from ...engine.batched import evaluate_many
    from ..units import StoreBatcher

    spec = u.key["topk"]
    ranking = [tuple(p) for p in spec["ranking"]]
    intervals = bool(spec.get("intervals"))
    setting = u.key["setting"]
    common = {"model": setting["model"], "task": u.task, "rank_task": spec["rank_task"], "pooling": ctx.pooling}
    rows, predictions = [], {}
    truth = None
    seconds: list[float] = []
    results = evaluate_topk(task, feats, ranking, spec["ks"], ctx.run_params, predictions=intervals, seconds=seconds)
    for k, r, took in zip(spec["ks"], results, seconds, strict=True):
        rows.append(curve_row(**common, kind="topk", k=k, layer=None, name=f"top{k}:{spec['rank_task']}",
                              dim=k * ctx.encoder.head_dim, result=r, seconds=took))
        if intervals and "yhat" in r:
            truth = truth if truth is not None else task.sorted_data()["test"]["y"]
            predictions[len(rows) - 1] = (r["yhat"], truth)
    if intervals and spec.get("best_layer") is not None:
        layer = int(spec["best_layer"])
        start = time.perf_counter()
        emb = task.embed(ctx.run_params, StoreBatcher(feats, "layers", slice(layer + 1, layer + 2)))
        r = evaluate_many(task, emb, ctx.run_params, predictions=True, progress=False)[0]
        rows.append(curve_row(**common, kind="best_layer", k=None, layer=layer, name=vector_name("layers", layer),
                              dim=ctx.encoder.hidden_size, result=r, seconds=time.perf_counter() - start))
        if "yhat" in r:
            truth = truth if truth is not None else task.sorted_data()["test"]["y"]
            predictions[len(rows) - 1] = (r["yhat"], truth)
    columns = list(CURVE_COLUMNS)
    if intervals:
        columns += list(INTERVAL_COLUMNS)
        add_intervals(rows, {i: (p, _arr(t)) for i, (p, t) in predictions.items()})
    frame = pd.DataFrame(rows, columns=columns)
    if frame.loc[frame["kind"] == "topk", "devacc"].notna().any():
        frame.loc[choose_k(frame).name, "selected"] = True
    return frame


def _arr(values: Any) -> Any:
    import numpy as np

    return np.asarray(values)


def _one_by_one(ctx: RunContext, task_name: str, u: PendingUnit) -> pd.DataFrame:
    """One unit through the ``engine`` or ``senteval`` harness: one evaluation per probe, through the adapters."""
    # lazy: start-up time (torch): light commands import the sweeping package
    from tqdm.auto import tqdm

    from ...interop.adapters import HeadAdapter, LayerAdapter
    from ..units import probe_index, result_rows

    params = ctx.run_params
    probes = probe_index(ctx.encoder, u.view)
    engine_cls, running = harness_engine(ctx.harness, params.get("device") or "auto")
    user_params = dict(params)
    results = []
    with running:
        for layer, head in tqdm(probes, desc=f"{task_name} {u.view} ({ctx.harness})", disable=not ctx.progress,
                                leave=False):
            if u.view == "heads":
                adapter: Any = HeadAdapter(ctx.encoder, layer, head, pooling=ctx.pooling, store=ctx.store,
                                           max_length=ctx.limit, batch_size=ctx.batch_size)
            else:
                adapter = LayerAdapter(ctx.encoder, "embeddings" if layer < 0 else layer, pooling=ctx.pooling,
                                       store=ctx.store, max_length=ctx.limit, batch_size=ctx.batch_size)
            se = engine_cls(dict(user_params), adapter.batcher, adapter.prepare)
            results.append(se.eval(task_name))
    return result_rows(ctx.encoder, u.key, probes, results, params)


#: This file's backend (:mod:`senteval_anatomy.sweeping.backends`: one file per backend).
BACKEND = LocalBackend
