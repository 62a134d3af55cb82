"""Findings you can trust: every head's probing score with its controls, baseline, uncertainty and utilisation.

:func:`findings_sweep` runs the sweep's own steps (features from the :class:`~senteval_anatomy.store.FeatureStore`,
the task's ``embed``, the batched trainer) and adds, per head / layer, in the same tidy table
(:data:`~senteval_anatomy.vocab.RESULT_COLUMNS` followed by :data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`):

=========================  ========================================================================================
column                     meaning
=========================  ========================================================================================
``acc_low``, ``acc_high``  95% Wilson interval of test accuracy (:func:`senteval_anatomy.stats.accuracy_ci`)
``acc_mean``, ``acc_std``  mean and s.d. of test accuracy over ``n_seeds`` probe seeds (``seed``, ``seed + 1``...)
``majority_acc``           test accuracy of predicting the training majority class (:func:`.controls.majority_acc`)
``<kind>_control_acc``     test accuracy on the ``bow`` / ``permuted`` control task (:mod:`senteval_anatomy.controls`)
``<kind>_selectivity``     ``acc - <kind>_control_acc`` (0 for a probe that learned nothing)
``untrained_acc``          the same head of the same architecture with random weights (:mod:`~.baselines`)
``untrained_gain``         ``acc - untrained_acc``: what training put there
``mdl``, ``compression``   online codelength of the training labels, bits, and ``N log2 K / mdl`` (:mod:`.engine.mdl`)
``ablation_delta``         change of the model's own output when this head alone is ablated (:mod:`.ablation`)
``dev_rank``               rank by dev score within the task and view (1 = selected)
``p_vs_best``              McNemar p-value of this probe's test predictions against the dev-selected best
``p_vs_best_adj``          ``p_vs_best`` corrected (``correction``, Holm) over the ``family_size`` probes of the view
``tied_with_best``         ``p_vs_best_adj >= alpha`` (or the best itself)
``p_vs_next``              McNemar p of rank r against rank r + 1, for the top-k ranks (``top_k``), uncorrected
``p_vs_layer_best``        McNemar p against the dev-best head of the same layer
``p_vs_layer_best_adj``    corrected over every non-layer-best head of the model (``layer_family_size`` tests)
``tied_with_layer_best``   ``p_vs_layer_best_adj >= alpha`` (or the layer best itself): not distinguishable from it
=========================  ========================================================================================

Columns of options that were not requested are NaN. Selection is on dev throughout; test predictions are only used
to say how sure a finding is. Controls, MDL, intervals and paired tests apply to classification tasks (accuracy);
relatedness and STS tasks get NaN there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .encoders.encoder import Encoder
from .identity import key_hash
from .vocab import (
    FINDINGS_COLUMNS,
    PAPER_PARAMS,
    RESULT_COLUMNS,
    VIEWS,
    atomic_write,
    check_pooling,
    check_views,
    main_scores,
)

__all__ = ["FINDINGS_COLUMNS", "ablation_curve_plot", "claims_section", "findings_figures", "findings_report",
           "findings_sweep", "load_findings", "selectivity_heatmap", "tied_heatmap", "topk_claim", "utilisation_plot"]



def _features(encoder: Encoder, task: Any, store: Any, pooling: str, limit: int, params: Any, show: bool) -> Any:
    sentences = list(dict.fromkeys(" ".join(s) for s in task.samples))
    return store.get(encoder, sentences, pooling=pooling, max_length=limit, views=VIEWS,
                     batch_size=int(params.get("encode_batch_size") or 64), progress=show)


def _paired_columns(devacc: np.ndarray, correct: np.ndarray, probes: list[tuple[int, int]], view: str, *,
                    alpha: float, top_k: int) -> pd.DataFrame:
    from .stats import CORRECTION, layer_tests, rank_tests

    ranked = rank_tests(devacc, correct, alpha=alpha, top_k=top_k, correction=CORRECTION)
    out = pd.DataFrame({"acc_low": ranked["acc_low"], "acc_high": ranked["acc_high"], "dev_rank": ranked["rank"],
                        "p_vs_best": ranked["p_vs_best"], "p_vs_best_adj": ranked["p_vs_best_adj"],
                        "tied_with_best": ranked["tied_with_best"], "p_vs_next": ranked["p_vs_next"],
                        "family_size": ranked["family_size"], "correction": CORRECTION})
    if view == "heads":  # layers view: no "layer best"
        layer = layer_tests(devacc, correct, [lay for lay, _ in probes], alpha=alpha, correction=CORRECTION)
        for c in ("p_vs_layer_best", "p_vs_layer_best_adj", "tied_with_layer_best", "layer_family_size"):
            out[c] = layer[c].to_numpy()
    return out


def _options_key(*, controls: bool, control_seed: int, untrained_baseline: bool, untrained_seed: int, seeds: int,
                 mdl: bool, ablate: bool, ablation_mode: str, ablation_sentences: int, ablation_ks: Sequence[int],
                 lm_model: Any, alpha: float, top_k: int) -> dict[str, Any]:
    """The findings options that determine a unit's extra columns (joined to the sweep's unit key)."""
    lm = None
    if lm_model is not None:
        cfg = getattr(lm_model, "config", None)
        lm = {"class": type(lm_model).__name__, "name": str(getattr(cfg, "name_or_path", "") or ""),
              "config": key_hash(cfg.to_dict()) if hasattr(cfg, "to_dict") else None}
    from .stats import CORRECTION
    from .vocab import CONTROL_KIND_NAMES

    return {"controls": list(CONTROL_KIND_NAMES) if controls else [],
            "control_seed": int(control_seed) if controls else None, "correction": CORRECTION,
            "untrained_seed": int(untrained_seed) if untrained_baseline else None, "seeds": int(seeds),
            "mdl": bool(mdl),
            "ablation": ({"mode": ablation_mode, "sentences": int(ablation_sentences),
                          "ks": [int(k) for k in ablation_ks], "lm_model": lm} if ablate else None),
            "alpha": float(alpha), "top_k": int(top_k), "interval": "wilson"}


def findings_sweep(
    encoder: Encoder,
    tasks: Sequence[str] | str,
    *,
    task_path: str | os.PathLike[str],
    views: Sequence[str] | str = ("heads",),
    params: Mapping[str, Any] | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    store: Any = None,
    controls: bool = True,
    control_seed: int = 0,
    untrained_baseline: bool = False,
    untrained_seed: int = 0,
    seeds: int = 1,
    mdl: bool = False,
    ablate: bool = False,
    ablation_mode: str = "zero",
    ablation_sentences: int = 200,
    ablation_ks: Sequence[int] = (1, 2, 4, 8, 16),
    lm_model: Any = None,
    alpha: float = 0.05,
    top_k: int = 5,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    memory_budget_gb: float = 1.0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Sweep ``tasks`` like :func:`~senteval_anatomy.sweeping.sweep` (builtin harness) and add the columns of
    :data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS` (see the module docstring).

    Parameters
    ----------
    controls : also train every probe on the task's control task; the control probes are slots of the same
        stacked runs as the task's probes (:class:`~senteval_anatomy.engine.batched.Variant`).
    untrained_baseline : also sweep the untrained twin of ``encoder`` (``untrained_seed``).
    seeds : number of probe seeds (``params.seed``, ``+1``, ...): ``acc_mean`` / ``acc_std``; the main ``acc``
        stays the one of ``params.seed``. The extra seeds train in the same stacked runs as the task's probes.
    mdl : online-code MDL of every probe (classification tasks).
    ablate : ablate every head alone (``ablation_mode``) on the first ``ablation_sentences`` test sentences of the
        task and record the change of the model's own output (masked-LM / next-token loss with ``lm_model``, else
        the sentence-embedding shift).
        Also the top-k ablation curve per task (:func:`~senteval_anatomy.ablation.topk_ablation_curve`: the
        ``ablation_ks`` heads ranked first on dev ablated together, against random sets of as many heads), kept in
        ``table.attrs["ablation_curves"]`` (records: ``pd.DataFrame(table.attrs["ablation_curves"])``) and written
        to ``out_dir/ablation_curves.csv``.
    out_dir : if given, each finished task x view is written at once as a unit
        ``out_dir/findings/units/<model>__<task>__<view>__<pooling>__<key hash>.json``
        (:mod:`senteval_anatomy.identity`: the sweep's unit key plus every findings option above), and the table
        of this call to ``out_dir/findings.csv``.
    resume : reuse the units in ``out_dir`` whose key matches exactly (a damaged or foreign unit is named and
        recomputed), as the sweep does.
    memory_budget_gb : like the sweep, the embeddings of a task are built and trained one chunk of probes at a
        time (:func:`~senteval_anatomy.units.probe_slices`); only per-probe numbers and the test predictions
        (``[probes, test sentences]``, for the paired tests) are kept across chunks.

    Returns
    -------
    DataFrame
        One row per model x task x view x layer x head, columns ``RESULT_COLUMNS + FINDINGS_COLUMNS``.
    """
    from tqdm.auto import tqdm

    from .ablation import ablation_reference, ablation_scan, topk_ablation_curve
    from .baselines import untrained_encoder
    from .controls import CONTROL_KINDS, control_tasks, majority_acc
    from .engine.batched import Variant, evaluate_many
    from .engine.mdl import mdl_many
    from .engine.params import apply_defaults
    from .engine.tasks import load_task
    from .identity import data_hash, read_unit, setting_fields, unit_key, unit_path, write_unit
    from .stats import correctness
    from .store import FeatureStore
    from .units import StoreBatcher, probe_index, probe_slices, result_rows

    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = list(tasks)
    if not tasks:
        raise ValueError("No tasks given.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int (number of probe seeds), got {seeds!r}.")
    views = check_views(views)
    pooling = check_pooling(pooling, encoder)
    base = dict(PAPER_PARAMS if params is None else params)
    base["task_path"] = str(task_path)
    run_params = apply_defaults(base)
    limit = int(min(encoder.max_length, max_length) if max_length else encoder.max_length)
    store = store if store is not None else FeatureStore()
    show = True if progress is None else bool(progress)
    untrained = None
    setting = setting_fields(encoder, params=run_params, pooling=pooling, max_length=limit, harness="builtin",
                             cache_dtype=store.dtype, data_path=task_path)
    options = _options_key(controls=controls, control_seed=control_seed, untrained_baseline=untrained_baseline,
                           untrained_seed=untrained_seed, seeds=seeds, mdl=mdl, ablate=ablate,
                           ablation_mode=ablation_mode, ablation_sentences=ablation_sentences,
                           ablation_ks=ablation_ks, lm_model=lm_model, alpha=alpha, top_k=top_k)
    out = Path(out_dir) if out_dir is not None else None
    frames = []
    curves = []
    for task_name in tqdm(tasks, desc="findings", unit="task", disable=not show):
        task = load_task(task_name, run_params.task_path, seed=run_params.seed)
        data = data_hash(task)
        pending = []
        for view in views:
            key = {**unit_key(setting, task_name, data, view), "findings": options}
            unit = unit_path(out / "findings", key) if out is not None else None
            if unit is not None and resume and unit.exists():
                done = read_unit(unit, key)  # a damaged or foreign file warns, naming it, and is recomputed
                if done is not None:
                    curves += [pd.DataFrame(done.attrs["ablation_curves"])] if done.attrs.get("ablation_curves") \
                        else []
                    done.attrs.clear()
                    frames.append(done)
                    continue
            pending.append((view, unit, key))
        if not pending:
            continue
        run_params.current_task = task_name
        classification = task.spec.kind in ("classification", "pair_classification")
        paired_ok = classification and task.spec.evaluator in ("split", "kfold") and bool(run_params.usepytorch)
        feats = _features(encoder, task, store, pooling, limit, run_params, show)
        if untrained_baseline and untrained is None:
            untrained = untrained_encoder(encoder, untrained_seed)
        ufeats = _features(untrained, task, store, pooling, limit, run_params, show) if untrained else None
        ctasks = control_tasks(task, control_seed) if controls else {}
        # One stacked pass per probe chunk: the task's probes, the extra seeds and the control probes of every kind
        # (control labels in the task's embedding order) are slots of the same runs.
        variants = [Variant()] + [Variant(seed=int(run_params.seed) + k) for k in range(1, seeds)]
        ordered = task.sorted_data()
        variants += [Variant(labels=ct.labels_for(ordered)) for ct in ctasks.values()]
        for view, unit, key in pending:
            probes = probe_index(encoder, view)
            results: list[dict] = []
            seed_acc: list[list[float]] = [[] for _ in range(seeds - 1)]
            control_acc: dict[str, list[float]] = {k: [] for k in ctasks}
            untrained_acc: list[float] = []
            mdl_rows: list[dict] = []
            correct_parts: list[np.ndarray] = []
            for sl in probe_slices(encoder, task, view, len(probes), memory_budget_gb):
                emb = task.embed(run_params, StoreBatcher(feats, view, sl))
                vres = evaluate_many(task, emb, run_params, progress=show, predictions=paired_ok, variants=variants)
                results += vres[0]
                for k in range(1, seeds):
                    seed_acc[k - 1] += [main_scores(r).acc for r in vres[k]]
                for j, kind in enumerate(ctasks):
                    control_acc[kind] += [float(r["acc"]) for r in vres[seeds + j]]
                if paired_ok:
                    correct_parts.append(correctness(np.stack([r["yhat"] for r in vres[0]]),
                                                     np.asarray(emb["test"]["y"])))
                if mdl and classification:
                    mdl_rows += mdl_many(task, emb, run_params, progress=show)
                del emb, vres
                if ufeats is not None:
                    uemb = task.embed(run_params, StoreBatcher(ufeats, view, sl))
                    untrained_acc += [main_scores(r).acc for r in evaluate_many(task, uemb, run_params,
                                                                                  progress=show)]
                    del uemb
            df = result_rows(encoder, key, probes, results, run_params)
            extra = pd.DataFrame(np.nan, index=df.index, columns=list(FINDINGS_COLUMNS), dtype=object)
            acc = df["acc"].to_numpy(dtype=float)
            if paired_ok:
                paired = _paired_columns(df["devacc"].to_numpy(dtype=float), np.concatenate(correct_parts), probes,
                                         view, alpha=alpha, top_k=top_k)
                for c in paired.columns:
                    extra[c] = paired[c].to_numpy()
            stacked = np.stack([acc] + [np.asarray(a, dtype=float) for a in seed_acc])
            extra["n_seeds"] = seeds
            extra["acc_mean"] = stacked.mean(0)
            extra["acc_std"] = stacked.std(0, ddof=1) if seeds > 1 else np.nan
            if classification:
                extra["majority_acc"] = majority_acc(task)
            for kind, accs in control_acc.items():
                extra[CONTROL_KINDS[kind].acc_column] = accs
                extra[CONTROL_KINDS[kind].selectivity_column] = acc - np.asarray(accs, dtype=float)
            if ufeats is not None:
                extra["untrained_acc"] = untrained_acc
                extra["untrained_gain"] = acc - np.asarray(untrained_acc, dtype=float)
            if mdl_rows:
                extra["mdl"] = [r["mdl"] for r in mdl_rows]
                extra["compression"] = [r["compression"] for r in mdl_rows]
            curve = None
            if ablate and view == "heads":
                test = task.data.get("test") or next(iter(task.data.values()))
                side = test["X"] if "X" in test else test["A"]
                sents = list(dict.fromkeys(" ".join(s) for s in side))[:ablation_sentences]
                reference = ablation_reference(task) if ablation_mode == "mean" else None
                scan = ablation_scan(encoder, sents, mode=ablation_mode, lm_model=lm_model, progress=show,
                                     reference=reference)
                delta = {(int(r.layer), int(r.head)): float(r.delta) for r in scan.itertuples()}
                extra["ablation_delta"] = [delta[p] for p in probes]
                extra["ablation_measure"] = scan["measure"].iloc[0]
                ranked = [probes[i] for i in np.argsort(-df["devacc"].to_numpy(dtype=float), kind="stable")]
                ks = [k for k in ablation_ks if 1 <= k <= len(ranked)]
                if ks:
                    curve = topk_ablation_curve(encoder, sents, ranked, ks, mode=ablation_mode, lm_model=lm_model,
                                                seed=int(run_params.seed), reference=reference)
                    curve.insert(0, "task", task_name)
                    curves.append(curve)
            unit_table = _typed(pd.concat([df, extra], axis=1))
            if unit is not None:
                if curve is not None:
                    unit_table.attrs["ablation_curves"] = curve.to_dict("records")
                write_unit(unit, key, unit_table)
                unit_table.attrs.clear()
            frames.append(unit_table)
    table = _typed(pd.concat(frames, ignore_index=True))
    curve_table = pd.concat(curves, ignore_index=True) if curves else None
    if out is not None:
        atomic_write(out / "findings.csv", lambda p: table.to_csv(p, index=False))
        if curve_table is not None:
            atomic_write(out / "ablation_curves.csv", lambda p: curve_table.to_csv(p, index=False))
    if curve_table is not None:
        # records, not a DataFrame: pandas compares attrs when concatenating, and DataFrames cannot be compared
        table.attrs["ablation_curves"] = curve_table.to_dict("records")
    return table


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """The findings table in column order with numeric findings columns (also after a unit file round trip)."""
    from .controls import CONTROL_KINDS

    numeric = ["acc_low", "acc_high", "acc_mean", "acc_std", "majority_acc", "untrained_acc", "untrained_gain", "mdl",
               "compression", "ablation_delta", "p_vs_best", "p_vs_best_adj", "p_vs_next", "p_vs_layer_best",
               "p_vs_layer_best_adj", "family_size", "layer_family_size"]
    numeric += [c for k in CONTROL_KINDS.values() for c in (k.acc_column, k.selectivity_column)]
    for c in numeric:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    return table[list(RESULT_COLUMNS) + list(FINDINGS_COLUMNS)]


def _flag(col: pd.Series) -> pd.Series:
    """A boolean column as bools, also after a CSV round trip (``"True"`` / ``"False"`` / empty)."""
    return col.astype(str).str.lower() == "true"


def _best(rows: pd.DataFrame) -> pd.Series:
    """The dev-selected row (first maximum of ``devacc``)."""
    return rows.loc[rows["devacc"].astype(float).idxmax()]


def claims_section(table: pd.DataFrame, *, alpha: float = 0.05, curves: pd.DataFrame | None = None) -> str:
    """Markdown: per task, the dev-selected head with its interval, selectivity, untrained baseline, whether it is
    distinguishable from the next best and what ablating it does; then the paper's claims re-tested (layers; top
    heads across tasks; top-k against the best layer, from ``curves`` = top-k curves with intervals)."""
    from .controls import CONTROL_KINDS
    from .stats import CORRECTIONS

    heads = table[table["view"] == "heads"]
    method = CORRECTIONS.get(str(heads["correction"].dropna().iloc[0]) if heads["correction"].notna().any()
                             else "", "no correction")
    lines = ["## Findings with controls, baselines and intervals", "",
             "Per task, the head selected on **dev**; test accuracy with its 95% Wilson interval; majority = the "
             "test accuracy of always predicting the training majority class.", "",
             "Selectivity = accuracy - control accuracy, against each control; both controls have the task's class "
             "counts on every split, so a probe that learned nothing has selectivity 0:", ""]
    lines += [f"- **{k.title}** (`{k.selectivity_column}`): rules out {k.rules_out}." for k in CONTROL_KINDS.values()]
    lines += ["", "The claim \"the head holds the property\" uses the permuted-label selectivity (is it above what "
              "learning nothing scores?); the claim \"it holds more than its words\" uses the bag-of-words "
              "selectivity. Gain = accuracy - the same head of the untrained model. \"Separable from #2\" = the "
              f"second head on dev differs from the best by McNemar on test, with p corrected by {method} over the "
              f"family of all heads compared with the best (family size m), at alpha = {alpha}; ablation = change of "
              "the model's own output when that head alone is ablated (and its rank among all heads, 1 = largest).",
              ""]
    rows = []
    for task, t in heads.groupby("task", sort=False):
        b = _best(t)
        second = t[t["dev_rank"] == 2]
        p2 = float(second.iloc[0]["p_vs_best_adj"]) if len(second) and pd.notna(second.iloc[0]["p_vs_best_adj"]) \
            else np.nan
        abl_rank = np.nan
        if t["ablation_delta"].notna().any():
            abl_rank = int((t["ablation_delta"] > b["ablation_delta"]).sum() + 1)
        row = {
            "task": task, "head": f"L{int(b['layer'])}H{int(b['head'])}", "acc": b["acc"],
            "95% CI": f"[{b['acc_low']:.1f}, {b['acc_high']:.1f}]" if pd.notna(b["acc_low"]) else "n/a",
            "majority": b["majority_acc"], "seed s.d.": b["acc_std"]}
        for k in CONTROL_KINDS.values():
            row[f"{k.name} sel."] = b[k.selectivity_column]
        row.update({
            "untrained": b["untrained_acc"], "gain": b["untrained_gain"],
            "#2": (f"L{int(second.iloc[0]['layer'])}H{int(second.iloc[0]['head'])} {second.iloc[0]['acc']:.1f}"
                   if len(second) else "n/a"),
            "separable from #2": ("n/a" if np.isnan(p2) else f"{'yes' if p2 < alpha else 'no'} "
                                  f"(p adj={p2:.2g}, m={int(b['family_size'])})"),
            "ablation": b["ablation_delta"], "ablation rank": abl_rank,
        })
        rows.append(row)
    from .report import markdown_table

    lines += [markdown_table(pd.DataFrame(rows), floatfmt=".3g"), ""]
    # Claim: surface / syntactic tasks peak low, semantic tasks high - with the set of layers that hold a head
    # statistically tied with the task's best.
    lines += ["### Claim: surface and syntactic information sits in lower layers, semantic in higher ones", "",
              "For each task: the layer of the dev-selected head, and every layer holding a head not separable from "
              f"it (McNemar on test, p corrected by {method} over the m heads compared with the best, tied at "
              f"adjusted p >= {alpha}). A claim about *the* layer of a task holds only if that set is narrow.", ""]
    claim_rows = []
    for task, t in heads.groupby("task", sort=False):
        b = _best(t)
        tied = t[_flag(t["tied_with_best"]) | (t["dev_rank"] == 1)]
        layers = sorted(int(v) for v in tied["layer"].unique())
        claim_rows.append({"task": task, "best layer": int(b["layer"]),
                           "layers with a tied head": ", ".join(map(str, layers)) if len(tied) else "n/a",
                           "tied heads": len(tied), "heads": len(t),
                           "family size m": int(b["family_size"]) if pd.notna(b["family_size"]) else "n/a"})
    lines += [markdown_table(pd.DataFrame(claim_rows)), ""]
    # Claim: top heads transfer across tasks - is the dev-best head of one task tied with the best of another?
    tasks = list(heads["task"].unique())
    if len(tasks) > 1:
        lines += ["### Claim: the top heads of one task are top heads of other tasks", "",
                  "Row task's dev-selected head, evaluated in the column task: its test accuracy there, and whether "
                  "it is statistically tied with the column task's own dev-selected head (McNemar, corrected by "
                  f"{method} within the column task, adjusted p >= {alpha}).",
                  ""]
        cells = []
        for a in tasks:
            ba = _best(heads[heads["task"] == a])
            row: dict[str, Any] = {"best head of": f"{a} (L{int(ba['layer'])}H{int(ba['head'])})"}
            for b in tasks:
                tb = heads[(heads["task"] == b) & (heads["layer"] == ba["layer"]) & (heads["head"] == ba["head"])]
                if tb.empty or a == b:
                    row[b] = "-"
                    continue
                r = tb.iloc[0]
                tied = r["dev_rank"] == 1 or bool(_flag(tb["tied_with_best"]).iloc[0])
                row[b] = f"{r['acc']:.1f} ({'tied' if tied else 'worse'})"
            cells.append(row)
        lines += [markdown_table(pd.DataFrame(cells)), ""]
    lines += topk_claim(curves, alpha=alpha)
    return "\n".join(lines)


def topk_claim(curves: pd.DataFrame | None, *, alpha: float = 0.05) -> list[str]:
    """Markdown lines: "top-k heads beat the best layer" re-tested per task, from top-k curves computed with
    intervals (:func:`senteval_anatomy.topk.topk_curve`, ``intervals=True``): the k chosen on dev and the layer
    chosen on dev, each test score with its bootstrap interval, and McNemar's p of the two."""
    from .report import markdown_table
    from .topk import INTERVAL_COLUMNS

    head = ["### Claim: the top-k heads beat the best layer", ""]
    if curves is None or not set(INTERVAL_COLUMNS) <= set(curves.columns):
        return head + ["Not re-tested: it needs the top-k curves with test predictions (`analyse(..., topk=True)` "
                       "with a findings table, or `topk_curve(..., intervals=True)`).", ""]
    rows = []
    for task, c in curves.groupby("task", sort=False):
        sel = c[c["selected"].astype(str).str.lower() == "true"]
        layer = c[c["kind"] == "best_layer"]
        if sel.empty or layer.empty or pd.isna(sel.iloc[0]["p_vs_best_layer"]):
            continue
        s_, b_ = sel.iloc[0], layer.iloc[0]
        p = float(s_["p_vs_best_layer"])
        diff = float(s_["acc"]) - float(b_["acc"])
        verdict = ("not separable" if p >= alpha else "holds" if diff > 0 else "reversed: the layer is better")
        rows.append({"task": task, "k (dev)": int(s_["k"]),
                     "top-k": f"{s_['acc']:.1f} [{s_['acc_low']:.1f}, {s_['acc_high']:.1f}]",
                     "best layer (dev)": f"L{int(b_['layer'])} {b_['acc']:.1f} [{b_['acc_low']:.1f}, "
                                         f"{b_['acc_high']:.1f}]",
                     "difference": round(diff, 2), "McNemar p": f"{p:.2g}", "claim": verdict})
    if not rows:
        return head + ["Not re-tested: no task has test predictions for both its top-k and its best layer "
                       "(relatedness, STS and inner-k-fold tasks have none).", ""]
    return head + ["k and the layer are chosen on dev; test accuracy with its 95% bootstrap interval; the claim "
                   f"holds for a task only if the top-k representation is better and McNemar p < {alpha}.", "",
                   markdown_table(pd.DataFrame(rows)), ""]


def selectivity_heatmap(table: pd.DataFrame, task: str, *, model: str | None = None, kind: str = "bow") -> Any:
    """The paper's head heatmap (layers x heads, heads sorted within each layer, dev-best outlined) coloured by
    the selectivity against control ``kind`` (:data:`senteval_anatomy.controls.CONTROL_KINDS`) instead of accuracy,
    drawn by :func:`senteval_anatomy.plots.heatmap`."""
    from .controls import CONTROL_KINDS
    from .plots import heatmap
    from .results import Results

    ck = CONTROL_KINDS[kind]
    rows = table[(table["task"] == task) & (table["view"] == "heads")]
    if rows.empty or rows[ck.selectivity_column].isna().all():
        raise ValueError(f"no {ck.title} selectivity for task {task!r}: run findings_sweep(..., controls=True) on "
                         "it.")
    shown = rows.copy()
    shown["acc"] = shown[ck.selectivity_column]  # the heatmap colours 'acc'; selection (red box) reads devacc
    fig = heatmap(Results(shown[list(RESULT_COLUMNS)], model=model), task,
                  title=f"{task}: selectivity vs the {ck.title} (points)")
    fig.axes[-1].set_ylabel("selectivity (points)")
    return fig


def tied_heatmap(table: pd.DataFrame, task: str, *, model: str | None = None) -> Any:
    """The accuracy heatmap of one task (heads in index order, so a cell is one head) with a dot on every head that
    is not distinguishable from the dev-best head of its layer (McNemar on test, Holm-corrected over all heads): how much the within-layer
    ordering of the paper's sorted heatmap can be trusted. The main report's sorted heatmaps carry the same dots
    (:func:`senteval_anatomy.plots.heatmap`, ``tied``)."""
    from .plots import heatmap, tied_cells
    from .results import Results

    tied = tied_cells(table, task)
    if tied is None:
        raise ValueError(f"no paired tests for task {task!r}: findings_sweep computes them for classification tasks "
                         "with the split or k-fold evaluator and PyTorch probes.")
    rows = table[(table["task"] == task) & (table["view"] == "heads")]
    return heatmap(Results(rows[list(RESULT_COLUMNS)], model=model), task, sort=False, annotate=False, tied=tied,
                   title=f"{task}: test accuracy")


def utilisation_plot(table: pd.DataFrame, task: str) -> Any:
    """One point per head: probing accuracy (x) against the change of the model's output when the head alone is
    ablated (y), coloured by layer; the dev-selected head is circled. Does the model use what the probe finds?"""
    from matplotlib.figure import Figure

    rows = table[(table["task"] == task) & (table["view"] == "heads")]
    if rows.empty or rows["ablation_delta"].isna().all():
        raise ValueError(f"no ablation results for task {task!r}: run findings_sweep(..., ablate=True) on it.")
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.add_subplot()
    sc = ax.scatter(rows["acc"], rows["ablation_delta"], c=rows["layer"], cmap="viridis", s=18)
    b = _best(rows)
    ax.scatter([b["acc"]], [b["ablation_delta"]], s=120, facecolors="none", edgecolors="red", linewidths=1.5,
               label=f"best on dev (L{int(b['layer'])}H{int(b['head'])})")
    measure = str(rows["ablation_measure"].dropna().iloc[0])
    ax.set_xlabel("probing accuracy (test, %)")
    ax.set_ylabel({"mlm": "masked-LM loss increase (nats)", "clm": "next-token loss increase (nats)",
                   "embedding": "sentence-embedding shift (1 - cos)"}.get(measure, measure))
    ax.set_title(f"{task}: probing accuracy vs. ablation effect per head", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.colorbar(sc, ax=ax, label="layer")
    return fig


def ablation_curve_plot(curves: pd.DataFrame, task: str) -> Any:
    """Top-k ablation curve of one task: the change of the model's output when the k heads ranked first on dev are
    ablated together, against random sets of k heads (mean +- s.d. over draws)."""
    from matplotlib.figure import Figure

    c = curves[curves["task"] == task]
    if c.empty:
        raise ValueError(f"no ablation curve for task {task!r}.")
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    top, rnd = c[c["kind"] == "top"], c[c["kind"] == "random"]
    ax.plot(top["k"], top["delta"], "o-", color="tab:red", label="top-k heads (ranked on dev)")
    ax.errorbar(rnd["k"], rnd["delta"], yerr=rnd["delta_sd"].fillna(0), fmt="s--", color="tab:gray", capsize=3,
                label="k random heads")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(top["k"]), [str(k) for k in top["k"]])
    ax.set_xlabel("heads ablated together (k)")
    measure = str(c["measure"].iloc[0])
    ax.set_ylabel({"mlm": "masked-LM loss increase", "clm": "next-token loss increase",
                   "embedding": "embedding shift (1 - cos)"}.get(measure, measure))
    ax.set_title(f"{task}: ablating the top-k heads vs random heads", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def findings_figures(table: pd.DataFrame, figdir: str | os.PathLike[str], *,
                     curves: pd.DataFrame | None = None) -> dict[str, list[Path]]:
    """Save the findings figures of every task there is data for under ``figdir`` (tied heads, selectivity,
    utilisation, top-k ablation; ``curves`` defaults to ``table.attrs["ablation_curves"]``) and return them by
    caption, for :func:`senteval_anatomy.report.write_report`."""
    from .controls import CONTROL_KINDS
    from .plots import save_figure

    figdir = Path(figdir)
    if curves is None and table.attrs.get("ablation_curves"):
        curves = pd.DataFrame(table.attrs["ablation_curves"])
    figures: dict[str, list[Path]] = {}
    for task in table.loc[table["view"] == "heads", "task"].unique():
        rows = table[(table["task"] == task) & (table["view"] == "heads")]
        if rows["tied_with_layer_best"].notna().any():
            figures[f"{task}: heads tied with their layer's best"] = save_figure(tied_heatmap(table, task),
                                                                              figdir / f"tied_{task}")
        for kind, ck in CONTROL_KINDS.items():
            if rows[ck.selectivity_column].notna().any():
                figures[f"{task}: selectivity per head vs the {ck.title}"] = save_figure(
                    selectivity_heatmap(table, task, kind=kind), figdir / f"selectivity_{kind}_{task}")
        if rows["ablation_delta"].notna().any():
            figures[f"{task}: probing accuracy vs. ablation"] = save_figure(utilisation_plot(table, task),
                                                                            figdir / f"utilisation_{task}")
        if curves is not None and (curves["task"] == task).any():
            figures[f"{task}: top-k ablation"] = save_figure(ablation_curve_plot(curves, task),
                                                             figdir / f"ablation_topk_{task}")
    return figures


def findings_report(table: pd.DataFrame, out_dir: str | os.PathLike[str], *, alpha: float = 0.05,
                    curves: pd.DataFrame | None = None) -> Path:
    """Write ``out_dir/findings/report.md``: the claims section and the findings figures
    (:func:`findings_figures`). The main report (:func:`senteval_anatomy.analysis.analyse`) carries the same
    section and figures when it is given, or finds, the findings table."""
    from .report import write_report

    out = Path(out_dir) / "findings"
    figures = findings_figures(table, out / "figures", curves=curves)
    return write_report(out, None, figures=figures, title="Findings: controls, baselines, uncertainty, utilisation",
                        notes=claims_section(table, alpha=alpha))


def load_findings(out_dir: str | os.PathLike[str], table: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The findings table written by :func:`findings_sweep` in ``out_dir`` (``findings.csv``, with
    ``ablation_curves.csv`` in ``attrs``), or ``None`` when there is none. With ``table`` (a sweep's results), only
    the rows of the same setting and of the same data (task, data hash) are kept, so a report never mixes findings
    of another run into its own numbers."""
    out = Path(out_dir)
    path = out / "findings.csv"
    if not path.is_file():
        return None
    found = pd.read_csv(path)
    missing = [c for c in FINDINGS_COLUMNS if c not in found.columns]
    if missing:  # written by an older version (e.g. one control, uncorrected ties): not read as if it were current
        import warnings

        warnings.warn(f"{path} lacks the findings columns {missing[:4]}{'...' if len(missing) > 4 else ''} (written "
                      "by an older version); the report leaves its findings out. Rerun with the findings options "
                      "to refresh it.", stacklevel=2)
        return None
    if table is not None and len(table):
        keys = set(zip(table["setting"].astype(str), table["task"].astype(str), table["data_hash"].astype(str),
                       strict=True))
        mine = [(s, t, d) in keys for s, t, d in zip(found["setting"].astype(str), found["task"].astype(str),
                                                      found["data_hash"].astype(str), strict=True)]
        found = found[np.asarray(mine, dtype=bool)].reset_index(drop=True)
    if found.empty:
        return None
    curves = out / "ablation_curves.csv"
    if curves.is_file():
        c = pd.read_csv(curves)
        c = c[c["task"].isin(set(found["task"]))]
        if len(c):
            found.attrs["ablation_curves"] = c.to_dict("records")
    return found
