"""Reproduce Jo & Myaeng (ACL 2020) and compare with the numbers its code released.

``python -m senteval_anatomy.experiments.reproduce [--models bert-base-uncased,gpt2,...] [--task-path DIR] [--dry-run]
[--paper-selection] [--out DIR]``

For each model it runs the paper's experiments with the paper's settings (the ``paper`` preset: logistic probe,
RMSprop, probe batch 256, tenacity 3, epoch size 2, kfold 5, seed 123):

* every attention head and every layer on the 10 probing tasks and on SST5, TREC, SICKEntailment and MRPC, through
  :func:`senteval_anatomy.sweeping.sweep`;
* the top-k heads representation on SST5, TREC, SICKEntailment and MRPC (:func:`senteval_anatomy.analysis.topk.topk_curve`),
  heads ranked and k chosen on dev;

then puts our numbers beside the released ones (shipped in ``senteval_anatomy/reference/``, see its ``SOURCE.md``):
per task the best head, the best layer, the last layer, the top-k representation at the paper's k and at the best k,
each with dev, test and the differences, plus per model and task the Spearman rank correlation between our per-head
scores and the paper's (the heatmaps).

Selection is on dev on both sides (primary). The paper's own tables chose on test in places: its best k was read from
heads ranked on **test** accuracy (the only top-k curve it released), its MLP tables picked hyper-parameters on test.
Those numbers are labelled where they appear. ``--paper-selection`` re-does the comparison the paper's way (best head,
best layer, ranking and k chosen on test, on both sides): labelled, with a warning, never the default.

Where the paper's method differs from ours (positions read for GPT models, ELECTRA's masking, ...) see
``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import resolve_task_path
from ..data.sources import check_tasks, expand_tasks
from ..encoders.architectures import UnsupportedModelError
from ..engine import TASK_NAMES
from ..engine.registry import PROBING_TASKS as ENGINE_PROBING_TASKS
from ..engine.registry import get_task
from ..finetune.grid import main as finetune_grid
from ..pipeline import run as run_plan
from ..store import FeatureStore
from ..sweeping.plan import make_plan, parse_ks  # parse_ks: the one --ks parser (vocab.check_whole_list)
from ..sweeping.views import default_ks
from ..tables.results import Results, TestSelectionWarning
from ..vocab import (
    PAPER_DOWNSTREAM_TASKS,
    POOLINGS,
    VIEWS,
    OneLineParser,
    atomic_write,
    check_pooling,
    check_whole_list,
    names_list,
    path_arg,
    preset_params,
    print_error,
    slug,
)

__all__ = [
    "REFERENCE_FILE",
    "REFERENCE_COLUMNS",
    "PROBING_TASKS",
    "TOPK_TASKS",
    "TEST_SELECTED",
    "ModelRun",
    "load_reference",
    "reference_models",
    "reference_results",
    "compare",
    "dry_run",
    "paper_dev_ties",
    "reproduce",
    "main",
]

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
#: The paper's released per-head, per-layer and top-k numbers (see ``reference/SOURCE.md``).
REFERENCE_FILE = REFERENCE_DIR / "jo_myaeng_2020.csv.gz"
REFERENCE_COLUMNS = ("model", "experiment", "task", "layer", "head", "k", "metric", "dev", "test", "flags")

#: The paper's probing tasks (SentEval's 10, in its order).
PROBING_TASKS = ENGINE_PROBING_TASKS
#: The downstream tasks on which the paper evaluated the top-k heads representation.
TOPK_TASKS = PAPER_DOWNSTREAM_TASKS

#: Reference experiments whose numbers involve a choice made on test, and what it was.
TEST_SELECTED = {
    "topk_test_ranked": "heads ranked by single-head TEST accuracy (the paper's top-k curves)",
}

QUANTITIES = ("best_head", "best_layer", "last_layer", "top_k", "best_k")

COMPARISON_COLUMNS = (
    "model", "reference_model", "task", "quantity", "selection", "ours_at", "ours_dev", "ours_test", "paper_at",
    "paper_dev", "paper_test", "diff_dev", "diff_test", "paper_selected_on", "note",
)
CORRELATION_COLUMNS = ("model", "reference_model", "task", "n_heads", "spearman_test", "spearman_dev", "note")


# --------------------------------------------------------------------------------------------------- reference data
@functools.lru_cache(maxsize=1)
def _reference_frame() -> pd.DataFrame:
    df = pd.read_csv(REFERENCE_FILE, dtype={"flags": str}, keep_default_na=True)
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise RuntimeError(f"{REFERENCE_FILE} lacks columns {missing}: the package data is damaged; reinstall.")
    df["flags"] = df["flags"].fillna("")
    return df


def load_reference() -> pd.DataFrame:
    """The released numbers as one table (a copy): columns :data:`REFERENCE_COLUMNS`.

    ``experiment`` is ``head`` (one attention head's context vector), ``layer_linear`` (a block's output),
    ``topk_dev_ranked`` (k best heads ranked on dev; only the paper's k), ``topk_test_ranked`` (ranked on test, every
    k). ``dev``/``test`` are accuracies in % or Pearson r (``metric``). ``layer`` is the 0-based block
    (-1 = embeddings), ``head`` the 0-based head. ``flags`` are the caveats of ``SOURCE.md``.
    """
    return _reference_frame().copy()


def reference_models() -> list[str]:
    """Models with released numbers."""
    return sorted(_reference_frame()["model"].unique())


def _check_reference_model(name: str) -> str:
    models = reference_models()
    if name not in models:
        raise ValueError(f"no released numbers for {name!r}; the paper's models are {', '.join(models)} "
                         f"(map another model onto one with MODEL=REFERENCE or --reference-model)")
    return name


def reference_shape(model: str) -> tuple[int, int]:
    """(layers, heads per layer) of a reference model, from its head grid."""
    df = _reference_frame()
    heads = df[(df["model"] == _check_reference_model(model)) & (df["experiment"] == "head")]
    return int(heads["layer"].max()) + 1, int(heads["head"].max()) + 1


def reference_results(model: str, *, pooling: str) -> Results:
    """The paper's head and layer numbers of ``model`` as a :class:`Results`, so that the same selection rules
    (dev, ties to the lower layer then head) pick on both sides. ``pooling`` is only the label the rows carry (the
    pooling of the run they are compared with); the paper's positions are in ``docs/reproduce.md``."""
    df = _reference_frame()
    nl, nh = reference_shape(model)
    rows = df[(df["model"] == model) & df["experiment"].isin(["head", "layer_linear"])]
    table = pd.DataFrame({
        "model": model,
        "task": rows["task"].to_numpy(),
        "view": np.where(rows["experiment"] == "head", "heads", "layers"),
        "layer": rows["layer"].astype(int).to_numpy(),
        "head": np.where(rows["experiment"] == "head", rows["head"].fillna(-1), -1).astype(int),
        "pooling": pooling,
        "metric": rows["metric"].to_numpy(),
        "devacc": rows["dev"].astype(float).to_numpy(),
        "acc": rows["test"].astype(float).to_numpy(),
        "num_layers": nl,
        "num_heads": nh,
    })
    return Results(table, model=model, pooling=pooling)


def _paper_topk(model: str, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dev-ranked rows, test-ranked rows) of the paper's top-k for ``model`` on ``task``."""
    df = _reference_frame()
    sel = df[(df["model"] == model) & (df["task"] == task)]
    dev = sel[sel["experiment"] == "topk_dev_ranked"].sort_values("k")
    test = sel[sel["experiment"] == "topk_test_ranked"].sort_values("k")
    return dev, test


def paper_k(model: str) -> int:
    """The k of the paper's dev-ranked top-k runs for ``model`` (12, or 16 for bert-large); else heads per layer."""
    df = _reference_frame()
    ks = df[(df["model"] == model) & (df["experiment"] == "topk_dev_ranked")]["k"].dropna().unique()
    return int(ks[0]) if len(ks) == 1 else reference_shape(model)[1]


# ------------------------------------------------------------------------------------------------------- comparing
@dataclass
class ModelRun:
    """What one model's run produced: its sweep table, its top-k curves per task, and the names involved."""

    model: str
    reference_model: str
    results: Results
    topk: dict[str, pd.DataFrame]
    topk_test_ranked: dict[str, pd.DataFrame] | None = None


def _fmt_head(layer: Any, head: Any) -> str:
    return f"{int(layer)},{int(head)}"


def _best_k(rows: pd.DataFrame, dev_col: str, test_col: str, by_test: bool) -> pd.Series | None:
    """The row with the best dev (or test) score, ties to the smaller k."""
    col = test_col if by_test else dev_col
    rows = rows[rows[col].notna()]
    if rows.empty:
        return None
    return rows.sort_values([col, "k"], ascending=[False, True], kind="mergesort").iloc[0]


def compare(run: ModelRun, *, paper_selection: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our numbers beside the paper's for one model: (comparison rows, head-heatmap rank correlations).

    With ``paper_selection`` every choice (best head, best layer, head ranking of the top-k, best k) is made on test,
    on both sides, as the paper's tables did: optimistic numbers, labelled ``selection = "test (paper's way)"``.
    """
    from scipy.stats import spearmanr

    ours = run.results
    ref = run.reference_model
    pooling = ours.table["pooling"].iloc[0]
    paper = reference_results(ref, pooling=pooling)
    by = "acc" if paper_selection else "devacc"
    selection = "test (paper's way)" if paper_selection else "dev"
    rows: list[dict[str, Any]] = []
    corr: list[dict[str, Any]] = []
    tasks = [t for t in ours.tasks if t in set(paper.tasks)]

    def add(task: str, quantity: str, o_at: str, o_dev: float, o_test: float, p_at: str, p_dev: float,
            p_test: float, selected_on: str, note: str = "") -> None:
        rows.append({
            "model": run.model, "reference_model": ref, "task": task, "quantity": quantity, "selection": selection,
            "ours_at": o_at, "ours_dev": o_dev, "ours_test": o_test, "paper_at": p_at, "paper_dev": p_dev,
            "paper_test": p_test, "diff_dev": o_dev - p_dev, "diff_test": o_test - p_test,
            "paper_selected_on": selected_on, "note": note,
        })

    nan = math.nan
    with warnings.catch_warnings():
        if paper_selection:
            warnings.simplefilter("ignore", TestSelectionWarning)  # warned once, by the caller
        for task in tasks:
            has_heads = {"heads"} <= set(ours.table.loc[ours.table["task"] == task, "view"])
            has_layers = {"layers"} <= set(ours.table.loc[ours.table["task"] == task, "view"])
            p_heads = not paper.table[(paper.table["task"] == task) & (paper.table["view"] == "heads")].empty
            p_layers = not paper.table[(paper.table["task"] == task) & (paper.table["view"] == "layers")].empty
            if has_heads and p_heads:
                o = ours.best_head(task, by, allow_test_selection=paper_selection)
                p = paper.best_head(task, by, allow_test_selection=paper_selection)
                add(task, "best_head", _fmt_head(o.layer, o.head), o.devacc, o.acc, _fmt_head(p.layer, p.head),
                    p.devacc, p.acc, "test" if paper_selection else "dev")
                corr.append(_correlation(run, task, ours, paper, spearmanr))
            if has_layers and p_layers:
                o = ours.best_layer(task, by, allow_test_selection=paper_selection)
                p = paper.best_layer(task, by, allow_test_selection=paper_selection)
                add(task, "best_layer", str(o.layer), o.devacc, o.acc, str(p.layer), p.devacc, p.acc,
                    "test" if paper_selection else "dev")
                o, p = ours.last_layer(task), paper.last_layer(task)
                note = "" if not math.isnan(p.acc) else "the paper released no score for its last block"
                add(task, "last_layer", str(o.layer), o.devacc, o.acc, str(p.layer), p.devacc, p.acc, "fixed", note)
            _compare_topk(run, task, paper_selection, add, nan)
    comparison = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return comparison, pd.DataFrame(corr, columns=list(CORRELATION_COLUMNS))


def _correlation(run: ModelRun, task: str, ours: Results, paper: Results, spearmanr: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": run.model, "reference_model": run.reference_model, "task": task, "n_heads": 0,
                           "spearman_test": math.nan, "spearman_dev": math.nan, "note": ""}
    if ours.shape() != paper.shape():
        out["note"] = f"shapes differ: ours {ours.shape()}, paper {paper.shape()}"
        return out
    for value, key in (("acc", "spearman_test"), ("devacc", "spearman_dev")):
        a = ours.matrix(task, value=value).to_numpy().ravel()
        b = paper.matrix(task, value=value).to_numpy().ravel()
        ok = ~(np.isnan(a) | np.isnan(b))
        out["n_heads"] = int(ok.sum())
        if ok.sum() >= 3:
            out[key] = float(spearmanr(a[ok], b[ok]).statistic)
    return out


def _compare_topk(run: ModelRun, task: str, paper_selection: bool, add: Any, nan: float) -> None:
    curve = run.topk.get(task)
    if curve is None:
        return
    ref = run.reference_model
    p_dev_rows, p_test_rows = _paper_topk(ref, task)
    k_paper = paper_k(ref)
    flags = set(";".join(pd.concat([p_dev_rows, p_test_rows])["flags"]).split(";")) - {""}
    contaminated = "ranking_pool_included_hidden_slices" in flags
    extra = "; the paper's ranking pool also held hidden-state slices" if contaminated else ""
    ours_curve = run.topk_test_ranked.get(task) if paper_selection and run.topk_test_ranked else curve
    top = ours_curve[ours_curve["kind"] == "topk"]
    # top-k at the paper's k
    o_row = top[top["k"] == k_paper]
    o_dev, o_test = (float(o_row["devacc"].iloc[0]), float(o_row["acc"].iloc[0])) if len(o_row) else (nan, nan)
    if paper_selection:
        p_row = p_test_rows[p_test_rows["k"] == k_paper]
        on = "test (heads ranked on test)"
    else:
        p_row = p_dev_rows[p_dev_rows["k"] == k_paper]
        on = "dev (heads ranked on dev)"
    p_dev, p_test = (float(p_row["dev"].iloc[0]), float(p_row["test"].iloc[0])) if len(p_row) else (nan, nan)
    note = "" if len(p_row) else f"the paper released no {'test' if paper_selection else 'dev'}-ranked top-{k_paper}"
    if not len(o_row):
        note = (note + "; " if note else "") + f"k={k_paper} not in our k sweep"
    add(task, "top_k", f"k={k_paper}", o_dev, o_test, f"k={k_paper}", p_dev, p_test, on, note + extra)
    # best k: ours on dev (or test), the paper's from its only full curve (heads ranked on test)
    o_best = _best_k(top, "devacc", "acc", paper_selection)
    p_best = _best_k(p_test_rows, "dev", "test", paper_selection)
    add(task, "best_k",
        f"k={int(o_best['k'])}" if o_best is not None else "", float(o_best["devacc"]) if o_best is not None else nan,
        float(o_best["acc"]) if o_best is not None else nan,
        f"k={int(p_best['k'])}" if p_best is not None else "", float(p_best["dev"]) if p_best is not None else nan,
        float(p_best["test"]) if p_best is not None else nan,
        "test (heads ranked on test, k on test)" if paper_selection else "test (heads ranked on test), k on dev",
        ("" if p_best is not None else "the paper released no top-k curve for this task") + extra)


# -------------------------------------------------------------------------------------------------------- printing
def _cell(at: str, dev: float, test: float) -> str:
    if not at or (math.isnan(dev) and math.isnan(test)):
        return "n/a"
    fmt = "{:.4f}" if max(abs(dev) if not math.isnan(dev) else 0, abs(test) if not math.isnan(test) else 0) <= 1.0 \
        else "{:.2f}"
    return f"{at} ({fmt.format(dev) if not math.isnan(dev) else '-'} / {fmt.format(test)})"


def _diff(x: float) -> str:
    return "" if math.isnan(x) else (f"{x:+.2f}" if abs(x) > 1.5 or x == 0 else f"{x:+.4f}")


def render(comparison: pd.DataFrame, correlations: pd.DataFrame) -> str:
    """The comparison as Markdown: per model one table, rows = task x quantity, ours / paper / difference."""
    out: list[str] = []
    for (model, ref, sel), part in comparison.groupby(["model", "reference_model", "selection"], sort=False):
        out.append(f"### {model} vs the paper's {ref} (selection: {sel})\n")
        if sel != "dev":
            out.append("**Selected on TEST, as the paper's tables were: optimistic, not held-out results.**\n")
        out.append("| task | quantity | ours: at (dev / test) | paper: at (dev / test) | Δ dev | Δ test | paper "
                   "selected on | note |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in part.itertuples():
            out.append(f"| {r.task} | {r.quantity} | {_cell(r.ours_at, r.ours_dev, r.ours_test)} | "
                       f"{_cell(r.paper_at, r.paper_dev, r.paper_test)} | {_diff(r.diff_dev)} | {_diff(r.diff_test)} "
                       f"| {r.paper_selected_on} | {r.note} |")
        cp = correlations[(correlations["model"] == model) & (correlations["reference_model"] == ref)]
        if len(cp) and sel == "dev":
            out.append("\nSpearman rank correlation of the per-head scores (our heatmap vs the paper's):\n")
            out.append("| task | heads | ρ test | ρ dev | note |")
            out.append("|---|---|---|---|---|")
            for r in cp.itertuples():
                rho_t = "" if math.isnan(r.spearman_test) else f"{r.spearman_test:.3f}"
                rho_d = "" if math.isnan(r.spearman_dev) else f"{r.spearman_dev:.3f}"
                out.append(f"| {r.task} | {r.n_heads} | {rho_t} | {rho_d} | {r.note} |")
        out.append("")
    out.append("`paper selected on`: where a released number involved a choice made on test it says so "
               "(the paper's top-k curves ranked heads on test accuracy; see docs/reproduce.md).")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------- planning
@dataclass
class _Plan:
    model: str
    reference: str
    tasks: list[str]
    topk_tasks: list[str]
    pooling: str | None


def _parse_models(spec: str, reference_model: str | None) -> list[tuple[str, str]]:
    """``--models``: names read as every list of names is (:func:`~senteval_anatomy.vocab.names_list`: commas, each
    once), each optionally ``MODEL=REFERENCE``."""
    out = []
    for item in names_list(spec, what="--models", example="--models bert-base-uncased,gpt2"):
        model, _, ref = (part.strip() for part in item.partition("="))
        if not model:
            raise ValueError(f"--models {spec!r}: {item!r} names no model before '='; give MODEL=REFERENCE")
        ref = ref or reference_model or model
        _check_reference_model(ref)
        if (model, ref) not in out:
            out.append((model, ref))
    return out


def _check_arguments(tasks: Any, ks: Any, pooling: Any) -> tuple[list[str], list[int] | None, str | None]:
    """``reproduce()``'s tasks, ks and pooling read by the shared checks (one line naming the argument; NumPy values
    accepted; repeats removed), before any model is loaded."""
    return (check_tasks(tasks), None if ks is None else check_whole_list(ks, what="ks"),
            None if pooling is None else check_pooling(pooling))


def _shape_of(model: str) -> tuple[int, int, int, int]:
    """(layers, heads, head_dim, hidden) for planning, from the model's own config (offline: bundled, a folder, or
    the local Hugging Face cache); a model whose config cannot be read is a ``ValueError`` naming it (exit 2)."""
    # lazy: start-up time (torch, transformers): `reproduce --help` answers without them
    from ..encoders.loading import config_shape

    try:
        return config_shape(model)
    except UnsupportedModelError as exc:
        raise ValueError(f"--models {exc}") from None


def _task_sentences(task: str) -> int:
    spec = get_task(task)
    n = sum((spec.sizes or {}).values())
    return n * (2 if spec.pair else 1)


#: Rough throughputs assumed by --dry-run (one recent GPU, base-size model, fp32): labelled as assumptions.
ASSUMED_SENTENCES_PER_S = 1500.0
ASSUMED_PROBE_SECONDS_PER_TASK = {"heads": 120.0, "layers": 20.0}
ASSUMED_SECONDS_PER_TOPK_RUN = 30.0


def dry_run(plans: Sequence[_Plan], ks: Sequence[int] | None, paper_selection: bool) -> str:
    """What would run, expected time and disk (from stated assumptions), and the paper's numbers it compares with."""
    lines = ["# Dry run: nothing is encoded or trained\n"]
    total_s = 0.0
    total_bytes = 0.0
    shapes = [_shape_of(plan.model) for plan in plans]  # every model read before anything is printed
    for plan, (nl, nh, dh, hidden) in zip(plans, shapes):
        scale = max(1.0, (nl * hidden) / (12 * 768))
        n_sent = sum(_task_sentences(t) for t in plan.tasks)
        store_bytes = n_sent * (nl * nh * dh + (nl + 1) * hidden) * 4
        k_list = sorted(set(ks or default_ks(nl * nh)) | {paper_k(plan.reference)})
        n_topk = len(k_list) * len(plan.topk_tasks) * (2 if paper_selection else 1)
        seconds = (n_sent / ASSUMED_SENTENCES_PER_S * scale
                   + len(plan.tasks) * sum(ASSUMED_PROBE_SECONDS_PER_TASK.values()) * scale
                   + n_topk * ASSUMED_SECONDS_PER_TOPK_RUN * scale)
        total_s += seconds
        total_bytes += store_bytes
        lines += [
            f"## {plan.model} (compared with the paper's {plan.reference}; pooling "
            f"{plan.pooling or 'the model default'})",
            f"- every head ({nl} x {nh} = {nl * nh}) and every layer ({nl} blocks + embeddings) on "
            f"{len(plan.tasks)} tasks: {', '.join(plan.tasks)}",
            f"- top-k heads (ranked and k chosen on dev) on {', '.join(plan.topk_tasks) or 'no task'}: "
            f"k in {k_list}" + (" (and again ranked on test, --paper-selection)" if paper_selection else ""),
            f"- sentences to encode (SentEval's full data): about {n_sent:,}",
            f"- feature cache: about {store_bytes / 1e9:.1f} GB (float32; --cache-dtype float16 halves it)",
            f"- time: about {seconds / 3600:.1f} h on one recent GPU (ASSUMED {ASSUMED_SENTENCES_PER_S:.0f} "
            "sentences/s for a base model, scaled by depth x width; CPU: expect 10-50x more)",
            "",
        ]
    lines.append(f"**Total: about {total_s / 3600:.1f} h, {total_bytes / 1e9:.1f} GB of feature cache.**\n")
    lines.append("## The paper's numbers these runs are compared with (dev-selected)\n")
    for plan in plans:
        lines.append(_reference_summary(plan.reference, plan.tasks, plan.topk_tasks))
    return "\n".join(lines)


def paper_dev_ties(ref: str, task: str, view: str = "heads") -> pd.DataFrame:
    """Rows of the paper's ``view`` (``"heads"`` or ``"layers"``) of ``task`` whose dev score equals the best one:
    more than one row means the paper's own "best head" (or layer) is a tie on dev, broken only by the order rule
    (lower layer, then head), while the tied rows' test scores differ (bert-base SICKEntailment: L0H4 and L7H1 at
    dev 75.2, test 71.75 and 68.99). Columns ``layer``, ``head``, ``devacc``, ``acc``, in selection order."""
    rows = reference_results(ref, pooling="cls").table
    rows = rows[(rows["task"] == task) & (rows["view"] == view) & rows["devacc"].notna()]
    if rows.empty:
        return rows[["layer", "head", "devacc", "acc"]]
    top = rows[rows["devacc"] == rows["devacc"].max()]
    return top.sort_values(["layer", "head"], kind="mergesort")[["layer", "head", "devacc", "acc"]]


def _tie_note(ties: pd.DataFrame, view: str) -> str:
    """`` (tied on dev with 7,1: test 68.99)`` for a tie at the top of the paper's numbers; empty otherwise."""
    if len(ties) < 2:
        return ""
    others = ties.iloc[1:]
    at = [_fmt_head(r.layer, r.head) if view == "heads" else str(int(r.layer)) for r in others.itertuples()]
    return " **tied on dev** with " + ", ".join(f"{a} (test {r.acc:.2f})" for a, r in
                                                zip(at, others.itertuples(), strict=True))


def _reference_summary(ref: str, tasks: Sequence[str], topk_tasks: Sequence[str]) -> str:
    paper = reference_results(ref, pooling="cls")
    k = paper_k(ref)
    out = [f"### {ref}\n", f"| task | best head L,H (dev / test) | best layer (dev / test) | last layer (dev / test) "
           f"| top-{k} dev-ranked (dev / test) | best k [heads ranked on TEST] (dev / test) |", "|---|---|---|---|---|---|"]
    for task in tasks:
        if task not in paper.tasks:
            out.append(f"| {task} | n/a | n/a | n/a | n/a | n/a |")
            continue
        try:
            h = paper.best_head(task)
            head = _cell(_fmt_head(h.layer, h.head), h.devacc, h.acc) + _tie_note(paper_dev_ties(ref, task), "heads")
        except ValueError:
            head = "n/a"
        try:
            b, last = paper.best_layer(task), paper.last_layer(task)
            layer = _cell(str(b.layer), b.devacc, b.acc) + _tie_note(paper_dev_ties(ref, task, "layers"), "layers")
            last_s = _cell(str(last.layer), last.devacc, last.acc)
        except ValueError:
            layer = last_s = "n/a"
        dev_rows, test_rows = _paper_topk(ref, task)
        kr = dev_rows[dev_rows["k"] == k]
        top = _cell(f"k={k}", float(kr["dev"].iloc[0]), float(kr["test"].iloc[0])) if len(kr) else "n/a"
        bk = _best_k(test_rows, "dev", "test", False) if task in topk_tasks else None
        best = _cell(f"k={int(bk['k'])}", float(bk["dev"]), float(bk["test"])) if bk is not None else "n/a"
        out.append(f"| {task} | {head} | {layer} | {last_s} | {top} | {best} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------- running
def reproduce(
    models: Sequence[tuple[str, str]],
    *,
    task_path: str | Path,
    out_dir: str | Path,
    tasks: Sequence[str] | None = None,
    topk_tasks: Sequence[str] | None = None,
    ks: Sequence[int] | None = None,
    paper_selection: bool = False,
    pooling: str | None = None,
    device: str = "auto",
    cache_dtype: str = "float32",
    progress: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the paper's experiments for each ``(model, reference_model)`` and compare; returns (comparison,
    correlations) and writes them, with every run's tables, under ``out_dir`` (a rerun resumes)."""
    # lazy: start-up time (torch, transformers): `reproduce --help` answers without them
    from ..analysis.topk import topk_curve
    from ..encoders.loading import load_encoder

    out = Path(out_dir)
    tasks = list(tasks or (*PROBING_TASKS, *TOPK_TASKS))
    topk_tasks = [t for t in (topk_tasks if topk_tasks is not None else TOPK_TASKS) if t in tasks]
    tasks, ks, pooling = _check_arguments(tasks, ks, pooling)  # as sweep() and the command line read them
    comparisons, correlations = [], []
    store = FeatureStore(dtype=cache_dtype)
    for model, ref in models:
        try:
            encoder = load_encoder(model, device=device)
        except OSError as exc:
            raise ValueError(f"cannot load model {model!r} ({exc}); the first run needs the network (or a warm "
                             "Hugging Face cache), or pass a local folder saved with save_pretrained") from exc
        where = out / slug(encoder.name, default="model")
        params = preset_params("paper", device=device)
        k_list = sorted(set(ks or default_ks(encoder.num_layers * encoder.num_heads)) | {paper_k(ref)})
        k_list = [k for k in k_list if k <= encoder.num_layers * encoder.num_heads]
        # the one pipeline: the sweep and its keyed top-k view (heads ranked and k chosen on dev), no report
        plan = make_plan(tasks, task_path=task_path, params=params, views=VIEWS, ks=k_list, pooling=pooling,
                         out=where / "sweep", progress=progress is not False, topk=bool(topk_tasks),
                         topk_tasks=topk_tasks, report=False)
        done = run_plan(plan, encoder, store)
        results = Results(done.table)
        curves: dict[str, pd.DataFrame] = {}
        if done.topk is not None:
            curves = {t: c.reset_index(drop=True) for t, c in done.topk.groupby("task", sort=False)}
        test_curves: dict[str, pd.DataFrame] = {}
        if paper_selection:  # the paper's way, ranked on TEST: only on request, never cached as a dev result
            for task in topk_tasks:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TestSelectionWarning)
                    test_curves[task] = topk_curve(encoder, task, str(task_path), results, ks=k_list, by="acc",
                                                   params={**params, "task_path": str(task_path)}, store=store,
                                                   pooling=pooling, progress=progress, allow_test_selection=True,
                                                   model=encoder.name, baselines=False)
        run = ModelRun(encoder.name, ref, results, curves, test_curves if paper_selection else None)
        c, r = compare(run, paper_selection=False)
        comparisons.append(c)
        correlations.append(r)
        if paper_selection:
            c2, _ = compare(run, paper_selection=True)
            comparisons.append(c2)
    comparison = pd.concat(comparisons, ignore_index=True)
    correlation = pd.concat(correlations, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "comparison.csv", lambda p: comparison.to_csv(p, index=False))
    atomic_write(out / "correlations.csv", lambda p: correlation.to_csv(p, index=False))
    text = render(comparison, correlation)
    atomic_write(out / "comparison.md", text)
    return comparison, correlation


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog or "python -m senteval_anatomy.experiments.reproduce",
        description="Run Jo & Myaeng (2020)'s experiments with its settings and compare with its released numbers.",
    )
    p.add_argument("--models", default="bert-base-uncased",
                   help="comma-separated Hub ids or local folders, each optionally MODEL=REFERENCE to compare with "
                        f"another model's released numbers (released: {', '.join(reference_models())})")
    p.add_argument("--reference-model", default=None,
                   help="the released model every --models entry without '=REFERENCE' is compared with")
    p.add_argument("--task-path", type=path_arg, default=None, help="SentEval data folder (probing/, downstream/); default: "
                   "$SENTEVAL_ANATOMY_DATA, else the downloaded data")
    p.add_argument("--tasks", nargs="+", action="extend", metavar="T", default=None,
                   help="subset of the paper's tasks, separated by commas or spaces, as in every command (names in any "
                        f"case, or groups such as probing; default: all {len(PROBING_TASKS)} probing tasks and "
                        f"{', '.join(TOPK_TASKS)})")
    p.add_argument("--ks", default=None, help="top-k values, comma-separated (default: 1..12, then doubling, all "
                   "heads; the paper's k is always added)")
    p.add_argument("--out", type=path_arg, default="reproduce", help="output folder (resumable)")
    p.add_argument("--pooling", type=str.lower, default=None, choices=POOLINGS,
                   help="token pooling (default: the model's: first token for encoders, last token for decoders); "
                        "one-past-last is the paper's GPT position, for exact reproduction (docs/reproduce.md)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--cache-dtype", default="float32", choices=("float32", "float16"),
                   help="feature cache precision (float16 halves the disk; about 3 significant digits)")
    p.add_argument("--paper-selection", action="store_true",
                   help="also compare the paper's way: best head/layer, head ranking and k chosen on TEST (biased)")
    p.add_argument("--dry-run", action="store_true", help="list what would run, time and disk, and the paper's numbers")
    p.add_argument("--finetune", action="store_true",
                   help="the paper's fine-tuning grid instead (senteval_anatomy.finetune.grid; its own --help)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _resolve_task_path(arg: str | None) -> Path:
    """The data folder (``--task-path``, ``$SENTEVAL_ANATOMY_DATA``, downloaded data, else the demo data), said aloud."""
    try:
        path, origin = resolve_task_path(arg)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    print(f"data: {path} ({origin})", file=sys.stderr)
    if "synthetic" in origin:
        print("warning: the demo data is not SentEval's: the comparison with the paper's numbers is meaningless on "
              "it. Get the data with `python -m senteval_anatomy.data download`.", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command line entry point; returns the exit status. ``prog``: the name usage lines show."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--finetune" in argv:  # the fine-tuning grid has its own options (senteval_anatomy.finetune.grid)
        return finetune_grid([a for a in argv if a != "--finetune"], prog=f"{prog or 'reproduce'} --finetune")
    args = _parser(prog).parse_args(argv)
    try:
        models = _parse_models(args.models, args.reference_model)
        tasks = expand_tasks([",".join(args.tasks)]) if args.tasks else [*PROBING_TASKS, *TOPK_TASKS]
        bad = [t for t in tasks if t not in TASK_NAMES]
        if bad:
            raise ValueError(f"--tasks: unknown task(s) {bad}; the paper's are {', '.join(PROBING_TASKS + TOPK_TASKS)}")
        ks = parse_ks(args.ks, what="--ks")
        topk_tasks = [t for t in TOPK_TASKS if t in tasks]
        if args.dry_run:
            plans = [_Plan(m, r, tasks, topk_tasks, args.pooling) for m, r in models]
            print(dry_run(plans, ks, args.paper_selection))
            return 0
        task_path = _resolve_task_path(args.task_path)
    except ValueError as exc:
        print_error(exc)
        return 2
    if args.paper_selection:
        warnings.warn("--paper-selection chooses heads, layers, rankings and k on TEST scores, as the paper did; "
                      "those rows are optimistic and must not be reported as held-out results.",
                      TestSelectionWarning, stacklevel=1)
    try:
        comparison, correlation = reproduce(models, task_path=task_path, out_dir=args.out, tasks=tasks,
                                            topk_tasks=topk_tasks, ks=ks, paper_selection=args.paper_selection,
                                            pooling=args.pooling, device=args.device, cache_dtype=args.cache_dtype,
                                            progress=False if args.quiet else None)
    except ValueError as exc:  # bad model, data folder or setting: one line, what to do (DataError included)
        print_error(exc)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    print(render(comparison, correlation))
    print(f"written: {Path(args.out) / 'comparison.csv'}, correlations.csv, comparison.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
