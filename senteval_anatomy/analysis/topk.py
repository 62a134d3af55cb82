"""The top-k heads representation, with every choice made on dev.

The paper's second demo: rank heads by their single-head score on a task, concatenate the best ``k`` head vectors
(in rank order, best first) into one sentence vector, and probe it like any other representation. It often beats
the last layer, and sometimes the best layer.

What we do differently from the paper (see the project's paper reference, section 4 and 8):

* heads are ranked on the **dev** score of the ranking task (the paper ranked on test until a late commit);
* the reported k is the one with the best **dev** score over the k sweep, and its *test* score is the outcome
  (the paper's "best top-k" was read off the test curve);
* the "best layer" baseline is the layer with the best **dev** score (the paper took the max of test).

Ranking or choosing on test is still possible, to reproduce the paper's tables, with ``by="acc"`` plus
``allow_test_selection=True``; it warns (:class:`~senteval_anatomy.tables.selection.TestSelectionWarning`).

Every representation of one call (each k and each baseline) is evaluated with the same ``params``, so the curve
and its baselines are comparable with each other. The task is loaded once and its features come from the feature
store (encoded once per pooling); each k slices the stored heads in rank order
(:func:`senteval_anatomy.sweeping.views.evaluate_topk`, the code of the sweep's own ``topk`` view) and trains one
probe with the batched trainer, whose numbers equal the engine's. The main job computes the same view inside the
sweep (:func:`senteval_anatomy.sweeping.sweep`, ``topk=True``); this function is for ranking on another table or
task, by test (``by="acc"``), or with the mean-pooled baseline.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..engine.batched import evaluate_many
from ..engine.params import apply_defaults
from ..engine.registry import NO_DEV_TASKS
from ..engine.tasks import load_task
from ..store import FeatureStore
from ..sweeping.units import StoreBatcher
from ..sweeping.views import add_intervals, curve_row, default_ks, evaluate_topk
from ..tables.results import Results
from ..tables.selection import (  # choose_k re-exported: its home is selection
    TestSelectionWarning,
    check_selection,
    choose_k,
)
from ..vocab import CURVE_COLUMNS, INTERVAL_COLUMNS, VIEWS, check_pooling, preset_params, vector_name

__all__ = [
    "CURVE_COLUMNS",
    "INTERVAL_COLUMNS",
    "choose_k",
    "default_ks",
    "default_params",
    "rank_heads",
    "topk_curve",
]

def default_params(task_path: str, results: Results | None = None, **overrides: Any) -> dict[str, Any]:
    """SentEval ``params`` for the top-k evaluation.

    The probe settings are taken from the results table when it records one consistent setting (so the top-k
    numbers are comparable with the single-head numbers they were ranked by); otherwise the paper's settings
    (kfold 5, seed 123, logistic regression with RMSprop). ``overrides`` win over both.
    """
    params = preset_params("paper", task_path=str(task_path))
    if results is not None:
        t = results.table
        for col in ("usepytorch", "kfold", "seed", "classifier"):
            vals = t[col].dropna().astype(str).unique()
            if len(vals) != 1:
                continue
            raw = t[col].dropna().iloc[0]
            if col == "classifier":
                try:
                    clf = json.loads(raw) if isinstance(raw, str) else dict(raw)
                except (TypeError, ValueError):
                    continue
                if isinstance(clf, dict) and "nhid" in clf:
                    params["classifier"] = clf
            elif col == "usepytorch":
                params[col] = str(raw).strip().lower() in ("true", "1")
            else:
                params[col] = int(raw)
    params.update(overrides)
    return params


def rank_heads(
    results: Results,
    task: str,
    *,
    by: str = "devacc",
    model: str | None = None,
    pooling: str | None = None,
    allow_test_selection: bool = False,
) -> list[tuple[int, int]]:
    """All scored heads of ``task`` as ``(layer, head)``, best first by ``by`` (dev unless explicitly allowed)."""
    check_selection(by, allow_test_selection, what="rank_heads")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TestSelectionWarning)
        return results.top_head_ids(task, None, by, model=model, pooling=pooling, allow_test_selection=True)


def _resolve_model(results: Results, encoder: Any, model: str | None) -> str:
    """Which model's rows rank the heads: ``model``, else the encoder's name, else the table's only model."""
    if model is not None:
        if model not in results.models:
            raise ValueError(f"model={model!r} is not in the results table; it has {results.models}")
        return model
    name = getattr(encoder, "name", None)
    if name in results.models:
        return str(name)
    if len(results.models) == 1:
        only = results.models[0]
        nl, nh = results.shape(model=only)
        if (nl, nh) != (encoder.num_layers, encoder.num_heads):
            raise ValueError(
                f"the results table is for {only!r} ({nl} layers x {nh} heads) but the encoder {name!r} has "
                f"{encoder.num_layers} x {encoder.num_heads}; rank heads with a sweep of this encoder"
            )
        warnings.warn(
            f"ranking heads with results of model {only!r} for encoder {name!r} (same shape, different name); "
            "pass model= to silence this",
            stacklevel=3,
        )
        return only
    raise ValueError(
        f"the results table holds {results.models}; pass model= to say which one ranks the heads"
    )


def topk_curve(
    encoder: Any,
    task: str,
    task_path: str,
    results: Results,
    *,
    ks: Sequence[int] | None = None,
    rank_task: str | None = None,
    by: str = "devacc",
    params: Mapping[str, Any] | None = None,
    store: Any = None,
    pooling: str | None = None,
    progress: bool | None = None,
    allow_test_selection: bool = False,
    model: str | None = None,
    baselines: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    intervals: bool = False,
) -> pd.DataFrame:
    """Evaluate the top-k heads representation of ``task`` for each k, plus layer baselines.

    Parameters
    ----------
    encoder : Encoder
        From :func:`senteval_anatomy.load_encoder`.
    task : str
        The task T whose test set is evaluated (any SentEval task name the engine knows).
    task_path : str
        SentEval data root (holding ``probing/`` and ``downstream/``).
    results : Results
        Single-head scores; heads are ranked on ``rank_task``'s rows of this table.
    ks : sequence of int, optional
        The k values; default :func:`default_ks` of the number of ranked heads.
    rank_task : str, optional
        Rank heads on this task's dev scores instead of T's (e.g. heads found on a probing task, used downstream).
    by : {"devacc", "acc"}
        Ranking score; ``"acc"`` (test) needs ``allow_test_selection=True`` and warns.
    params : mapping, optional
        SentEval params; default :func:`default_params` (settings of the table when consistent).
    store : FeatureStore, optional
        Where features are cached (default: the process-wide store).
    pooling : str, optional
        Token pooling of the heads and of the layer baselines (default: the encoder's). Heads are ranked on the
        table's rows with this pooling.
    progress : bool, optional
        Show a progress bar (default: when attached to a terminal).
    baselines : bool, default=True
        Also evaluate the last layer, the best layer chosen on dev and the mean-pooled last layer.
    on_row : callable, optional
        Called with each finished row (for logging or incremental saving of long sweeps).
    intervals : bool, default=False
        Also keep every row's test predictions and add :data:`INTERVAL_COLUMNS` (Wilson interval, McNemar
        against the best layer), so that "top-k beats the best layer" can be stated with its uncertainty. The
        rows are then evaluated by the batched trainer with one probe
        (:func:`~senteval_anatomy.engine.batched.evaluate_many`, ``predictions=True``), whose numbers equal the
        engine's; tasks without per-sentence test predictions (relatedness, STS, inner k-fold, sklearn probes) get
        NaN there.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CURVE_COLUMNS`. ``kind`` is ``topk`` (one row per k), ``last_layer``, ``best_layer`` or
        ``mean_last_layer`` (plus ``layer`` rows for every block when the table had no layer rows for ``task`` and
        the best layer had to be found by evaluating them all). ``selected`` marks the k chosen on dev; its ``acc`` is the outcome to report.
    """
    check_selection(by, allow_test_selection, what="topk_curve head ranking")
    rank_task = rank_task or task
    pooling = check_pooling(pooling, encoder)
    model_name = _resolve_model(results, encoder, model)
    if pooling not in set(results.table.loc[results.table["model"] == model_name, "pooling"]):
        raise ValueError(
            f"the results table has no {pooling!r}-pooled rows for {model_name!r} (it has "
            f"{sorted(set(results.table.loc[results.table['model'] == model_name, 'pooling']))}); pass pooling="
        )
    ranking = rank_heads(
        results,
        rank_task,
        by=by,
        model=model_name,
        pooling=pooling,
        allow_test_selection=allow_test_selection,
    )
    n_total = encoder.num_layers * encoder.num_heads
    if len(ranking) < n_total:
        warnings.warn(
            f"{rank_task}: only {len(ranking)} of {n_total} heads have a {by} score (missing cells); ranking those",
            stacklevel=2,
        )
    if ks is None:
        ks = default_ks(len(ranking))
    ks_checked = sorted({int(k) for k in ks})
    if not ks_checked or ks_checked[0] < 1:
        raise ValueError(f"ks must be positive ints, got {list(ks)}")
    too_big = [k for k in ks_checked if k > len(ranking)]
    if too_big:
        warnings.warn(f"ks {too_big} exceed the {len(ranking)} ranked heads; they are dropped", stacklevel=2)
        ks_checked = [k for k in ks_checked if k <= len(ranking)]
        if not ks_checked:
            raise ValueError(f"no k in {list(ks)} is <= the number of ranked heads ({len(ranking)})")

    run_params = dict(params) if params is not None else default_params(task_path, results)
    run_params["task_path"] = str(run_params.get("task_path") or task_path)
    if task in NO_DEV_TASKS:
        warnings.warn(f"{task} has no dev split: k cannot be chosen on dev for it", stacklevel=2)

    # Best layer of T, chosen on dev: from the table if it has T's layer rows, else by evaluating every layer.
    best_layer: int | None = None
    best_from_table = False
    if baselines:
        try:
            best_layer = results.best_layer(task, model=model_name, pooling=pooling).layer
            best_from_table = True
        except (KeyError, ValueError):
            best_layer = None

    jobs: list[tuple[str, int | None, int | None, str]] = [("topk", k, None, pooling) for k in ks_checked]
    if baselines:
        jobs.append(("last_layer", None, encoder.num_layers - 1, pooling))
        if best_layer is not None:
            jobs.append(("best_layer", None, best_layer, pooling))
        else:
            jobs += [("layer_scan", None, layer, pooling) for layer in range(encoder.num_layers)]
        jobs.append(("mean_last_layer", None, encoder.num_layers - 1, "mean"))

    from tqdm.auto import tqdm

    params_obj = apply_defaults(dict(run_params))
    params_obj.current_task = task
    t = load_task(task, params_obj.task_path, seed=params_obj.seed)  # parsed once for every row of the curve
    store = store if store is not None else FeatureStore()
    sentences = list(dict.fromkeys(" ".join(s) for s in t.samples))
    feats: dict[str, Any] = {}

    def features(pool: str) -> Any:
        if pool not in feats:
            feats[pool] = store.get(encoder, sentences, pooling=pool, views=VIEWS, progress=bool(progress))
        return feats[pool]

    rows: list[dict[str, Any]] = []
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row index -> (test predictions, test labels)
    bar = tqdm(
        jobs, desc=f"top-k {task}", disable=(not progress) if progress is not None else None, leave=False
    )
    for kind, k, layer, pool in bar:
        bar.set_postfix_str(f"{kind} k={k}" if k is not None else f"{kind} layer={layer}")
        start = time.perf_counter()
        if kind == "topk":
            assert k is not None
            result = evaluate_topk(t, features(pool), ranking, [k], params_obj, predictions=intervals)[0]
            name, dim = f"top{k}:{rank_task}", k * encoder.head_dim
        else:
            assert layer is not None
            emb = t.embed(params_obj, StoreBatcher(features(pool), "layers", slice(layer + 1, layer + 2)))
            result = evaluate_many(t, emb, params_obj, predictions=intervals, progress=False)[0]
            name, dim = vector_name("layers", layer), encoder.hidden_size
        if intervals and "yhat" in result:
            predictions[len(rows)] = (np.asarray(result["yhat"]), np.asarray(t.sorted_data()["test"]["y"]))
        row = curve_row(model=model_name, task=task, rank_task=rank_task, pooling=pool, kind=kind, k=k, layer=layer,
                        name=name, dim=dim, result=result, by=by, seconds=time.perf_counter() - start)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    scan = [r for r in rows if r["kind"] == "layer_scan"]
    if scan:
        # choose the best layer on dev among the evaluated ones (ties: lower layer), keep only that row
        good = [r for r in scan if not math.isnan(r["devacc"])]
        if good:
            pick = max(good, key=lambda r: (r["devacc"], -r["layer"]))
            pick["kind"] = "best_layer"
        for r in scan:  # the others stay, as plain layer rows: they were paid for
            if r["kind"] == "layer_scan":
                r["kind"] = "layer"
    columns = list(CURVE_COLUMNS)
    if intervals:
        columns += list(INTERVAL_COLUMNS)
        add_intervals(rows, predictions)
    frame = pd.DataFrame(rows, columns=columns)
    frame["k"] = frame["k"].astype("Int64")
    frame["layer"] = frame["layer"].astype("Int64")
    frame["ndev"] = pd.to_numeric(frame["ndev"], errors="coerce").astype("Int64")
    frame["ntest"] = pd.to_numeric(frame["ntest"], errors="coerce").astype("Int64")
    frame["selected"] = frame["selected"].astype(bool)
    if frame["devacc"][frame["kind"] == "topk"].notna().any():
        pick = choose_k(frame)
        frame.loc[pick.name, "selected"] = True
    frame.attrs["best_layer_source"] = "results" if best_from_table else "evaluated"
    frame.attrs["ranking"] = [list(p) for p in ranking]
    return frame
