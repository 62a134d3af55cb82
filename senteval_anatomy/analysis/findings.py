"""Findings you can trust: every head's probing score with its controls, baseline, uncertainty and utilisation.

The sweep computes them (:func:`senteval_anatomy.sweeping.sweep` with ``findings=``; ``--controls``, ``--seeds``,
``--untrained-baseline``, ``--mdl``, ``--ablate``): the controls and the extra seeds are variants of the same stacked
run as the task's probes, so each probe trains once (:mod:`senteval_anatomy.sweeping.variants`). They are columns of
the one tidy table, ``results.csv`` (:data:`~senteval_anatomy.vocab.RESULT_COLUMNS` followed by
:data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`, empty when an option is off). This module turns them into the
report's claims section and figures:

=========================  ========================================================================================
column                     meaning
=========================  ========================================================================================
``acc_low``, ``acc_high``  95% Wilson interval of test accuracy (:func:`senteval_anatomy.engine.stats.accuracy_ci`)
``acc_mean``, ``acc_std``  mean and s.d. of test accuracy over ``n_seeds`` probe seeds (``seed``, ``seed + 1``...)
``majority_acc``           test accuracy of predicting the training majority class (:func:`.controls.majority_acc`)
``majority_selectivity``   ``acc - majority_acc``: the accuracy above always predicting the majority class
``<kind>_control_acc``     test accuracy on the ``bow`` / ``permuted`` control task (:mod:`senteval_anatomy.engine.controls`)
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine.controls import CONTROL_KINDS
from ..engine.stats import CORRECTIONS
from ..tables.results import Results
from ..vocab import (
    FINDINGS_COLUMNS,
    INTERVAL_COLUMNS,
    RESULT_COLUMNS,
)
from .plots import heatmap, save_figure, tied_cells
from .report import markdown_table

__all__ = ["FINDINGS_COLUMNS", "ablation_curve_plot", "claims_section", "findings_figures", "selectivity_heatmap",
           "tied_heatmap", "topk_claim", "utilisation_plot"]



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
    heads = table[table["view"] == "heads"]
    method = CORRECTIONS.get(str(heads["correction"].dropna().iloc[0]) if heads["correction"].notna().any()
                             else "", "no correction")
    lines = ["## Findings with controls, baselines and intervals", "",
             "Per task, the head selected on **dev**; test accuracy with its 95% Wilson interval; majority = the "
             "test accuracy of always predicting the training majority class.", "",
             "Selectivity = accuracy - control accuracy, against each control; both controls have the task's class "
             "counts on every split, so a constant probe has selectivity exactly 0 and one that learned nothing 0 in "
             "expectation. A selectivity has no interval (the control is one probe on the same test set): read it "
             "against the accuracy's interval; a control accuracy inside that interval is no evidence of a gap:", ""]
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
    intervals (:func:`senteval_anatomy.analysis.topk.topk_curve`, ``intervals=True``): the k chosen on dev and the layer
    chosen on dev, each test score with its 95% Wilson interval, and McNemar's p of the two."""
    head = ["### Claim: the top-k heads beat the best layer", ""]
    if curves is None or not set(INTERVAL_COLUMNS) <= set(curves.columns):
        return head + ["Not re-tested: it needs the top-k view with test predictions (the sweep's top-k view with "
                       "a findings option on, or `topk_curve(..., intervals=True)`).", ""]
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
    return head + ["k and the layer are chosen on dev; test accuracy with its 95% Wilson interval; the claim "
                   f"holds for a task only if the top-k representation is better and McNemar p < {alpha}.", "",
                   markdown_table(pd.DataFrame(rows)), ""]


def selectivity_heatmap(table: pd.DataFrame, task: str, *, model: str | None = None, kind: str = "bow") -> Any:
    """The paper's head heatmap (layers x heads, heads sorted within each layer, dev-best outlined) coloured by
    the selectivity against control ``kind`` (:data:`senteval_anatomy.engine.controls.CONTROL_KINDS`) instead of accuracy,
    drawn by :func:`senteval_anatomy.analysis.plots.heatmap`."""
    ck = CONTROL_KINDS[kind]
    rows = table[(table["task"] == task) & (table["view"] == "heads")]
    if rows.empty or rows[ck.selectivity_column].isna().all():
        raise ValueError(f"no {ck.title} selectivity for task {task!r}: run the sweep with --controls on "
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
    (:func:`senteval_anatomy.analysis.plots.heatmap`, ``tied``)."""
    tied = tied_cells(table, task)
    if tied is None:
        raise ValueError(f"no paired tests for task {task!r}: the sweep's findings options compute them for classification tasks "
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
        raise ValueError(f"no ablation results for task {task!r}: run the sweep with --ablate on it.")
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
    caption, for :func:`senteval_anatomy.analysis.report.write_report`."""
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
