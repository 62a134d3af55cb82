"""After a sweep: heatmaps, layer curves, the top-k heads representation, paper-style tables and ``report.md``.

This is the report step of the pipeline (:func:`senteval_anatomy.pipeline.run`); it only calls the public
pieces (:class:`~senteval_anatomy.tables.results.Results`, :mod:`~senteval_anatomy.analysis.plots`, :mod:`~senteval_anatomy.analysis.report`,
:mod:`~senteval_anatomy.analysis.findings`). It trains nothing: the top-k curves are the sweep's ``topk`` view (passed in, or
read from the folder's keyed top-k units), the findings are the table's own findings columns.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine import PROBING_TASKS, TASK_NAMES
from ..outdir import (
    ABLATION_CURVES_CSV,
    FIGURES_DIR,
    FINDINGS_FIGURES_DIR,
    REPORT_MD,
    RESULTS_CSV,
    RESULTS_PARQUET,
    TOPK_DIR,
    UNITS_DIR,
)
from ..sweeping.identity import UnitFileWarning, key_hash, read_unit
from ..tables.results import Results
from ..tables.table import load_table, validate_table
from ..vocab import CURVE_COLUMNS, FINDINGS_COLUMNS, slug
from .report import grouped_table, markdown_table, paper_table, probing_table, write_report

__all__ = ["AnalysisReport", "analyse", "load_topk"]


@dataclass
class AnalysisReport:
    """What :func:`analyse` produced: the report file, the summary as text, and the pieces."""

    path: Path
    summary_text: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    curves: pd.DataFrame | None = None


def load_topk(out_dir: str | Path, table: pd.DataFrame) -> pd.DataFrame | None:
    """The top-k curves the sweep wrote in ``out_dir`` (its keyed ``topk`` units) for the setting and data of
    ``table``'s rows, or ``None``: a report never shows a curve of another run."""
    folder = Path(out_dir) / TOPK_DIR / UNITS_DIR
    if not folder.is_dir() or table.empty:
        return None
    mine = set(zip(table["setting"].astype(str), table["task"].astype(str), table["data_hash"].astype(str)))
    frames = []
    for f in sorted(folder.glob("*.json")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitFileWarning)
            curve = read_unit(f, required=CURVE_COLUMNS)
            key = json.loads(f.read_text(encoding="utf-8")).get("key", {}) if curve is not None else {}
        if curve is None or (key_hash(key.get("setting", {}), 16), key.get("task"), key.get("data_hash")) not in mine:
            continue
        frames.append(curve)
    return pd.concat(frames, ignore_index=True) if frames else None


def analyse(
    table: pd.DataFrame,
    out_dir: str | Path,
    *,
    curves: pd.DataFrame | None = None,
    ablation_curves: pd.DataFrame | None = None,
    kind: str = "probing",
    data_note: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
    draw_figures: bool = True,
) -> AnalysisReport:
    """Draw the figures, build the tables and write ``report.md`` in ``out_dir``.

    ``curves``: the sweep's top-k view (:class:`~senteval_anatomy.sweeping.SweepOutput`); default: the folder's
    keyed top-k units of this table's setting and data (:func:`load_topk`). ``draw_figures=False``
    (``--no-plots``) only skips drawing, findings figures included: the tables and the report are still written.

    When the table has findings columns (controls, seeds, untrained twin, MDL, ablation, paired tests), the report
    gets the findings section (claims re-tested with intervals and controls, top-k against the best layer with
    intervals), the findings figures, and dots on the heatmaps' heads that are not distinguishable from their
    layer's best. ``ablation_curves``: the sweep's top-k ablation curves (default: the folder's
    ``ablation_curves.csv``).
    """
    # lazy: start-up time (matplotlib): the pipeline imports this module, and reproduce --help the pipeline
    from . import plots

    out = Path(out_dir)
    table = validate_table(table)
    settings = list(dict.fromkeys(table["setting"]))
    if len(settings) > 1:
        return _analyse_settings(table, out, kind=kind, data_note=data_note, formats=formats,
                                 draw_figures=draw_figures)
    figdir = out / FIGURES_DIR
    res = Results(table)
    findings = _findings(table)
    if curves is None:
        curves = load_topk(out, table)
    if findings is not None and ablation_curves is None and (out / ABLATION_CURVES_CSV).is_file():
        ablation_curves = pd.read_csv(out / ABLATION_CURVES_CSV)
        ablation_curves = ablation_curves[ablation_curves["task"].isin(set(table["task"]))]
    tied = _tied(findings, table)
    tasks = _paper_order(dict.fromkeys(table["task"]))
    figures: dict[str, Path] = {}
    has_heads = bool((table["view"] == "heads").any())
    has_layers = bool((table["view"] == "layers").any())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if has_heads and draw_figures:
            fig = plots.heatmap_grid(res, tasks, sort=True, tied=tied or None)
            plots.save_figure(fig, figdir / "heads_sorted_grid", formats)
            caption = "Every head, sorted within each layer (colour = test score; red box = head chosen on dev"
            caption += f"; {plots.TIED_NOTE})" if tied else ")"
            figures[caption] = figdir / "heads_sorted_grid"
            fig = plots.heatmap_grid(res, tasks, sort=False)
            plots.save_figure(fig, figdir / "heads_unsorted_grid", formats)
            figures["Every head at its index (unsorted)"] = figdir / "heads_unsorted_grid"
            for task in tasks:
                fig = plots.heatmap(res, task, sort=True, tied=tied.get(task))
                plots.save_figure(fig, figdir / f"heatmap_{task}", formats)
        if has_layers and draw_figures:
            fig = plots.layer_curves(res, tasks)
            plots.save_figure(fig, figdir / "layer_curves", formats)
            figures["Score by layer (solid: test, dashed: dev), mean head and dev-chosen best head per layer"] = (
                figdir / "layer_curves")

    if curves is not None and draw_figures:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fig = plots.topk_plot(curves)
            plots.save_figure(fig, figdir / TOPK_DIR, formats)
        figures["Top-k heads (ranked on dev) vs. k, with layer baselines; k chosen on dev is marked"] = (
            figdir / TOPK_DIR)

    tables: dict[str, pd.DataFrame] = {}
    probing = [t for t in tasks if t in _probing_tasks()]
    others = [t for t in tasks if t not in probing]
    if has_heads and has_layers:
        if probing:
            t = probing_table(res, curves)
            tables["Probing tasks: last layer / best layer / best head / top-k (all chosen on dev; test scores)"] = t
            tables["Probing tasks by group (surface / syntactic / semantic)"] = grouped_table(t)
        if others:
            tables["Downstream tasks: last layer / best layer / best head / top-k (chosen on dev; test scores)"] = (
                paper_table(res, curves, tasks=others))
    if has_heads:
        tables["Where the 10 best heads (ranked on dev) sit: lower / middle / upper thirds of the layers"] = (
            res.thirds_table())
    if curves is not None:
        tables["Top-k curves"] = curves
    notes = []
    if data_note:
        notes.append(f"Data: {data_note}.")
    others = _other_settings(out, settings[0] if settings else "")
    if others:
        notes.append(f"This folder also holds results of {others} other run setting(s) (results.csv, column "
                     "`setting`); this report covers only the one above. `analyse(load_table(folder), folder)` "
                     "reports every setting, each in `settings/<setting>/`.")
    if kind == "probing":
        notes.append("Surface and syntactic properties are expected in lower layers and semantic ones higher "
                     "(Jo & Myaeng, 2020); the thirds table below says whether that holds here.")
    if findings is not None:
        # lazy: start-up time (matplotlib): the pipeline imports this module, and reproduce --help the pipeline
        from .findings import claims_section, findings_figures

        notes.append(claims_section(findings, curves=curves))
        if draw_figures:
            figures.update(findings_figures(findings, figdir / FINDINGS_FIGURES_DIR, curves=ablation_curves))
    report_path = write_report(out, res, {k: v for k, v in figures.items()}, tables,
                               title=f"senteval_anatomy {kind} report", notes="\n\n".join(notes) or None)
    main = next(iter(tables.values()), None)
    summary = markdown_table(main) if main is not None else "(no table: the sweep had only one view)"
    return AnalysisReport(path=report_path, summary_text=summary, tables=tables, figures=figures, curves=curves)


def _findings(table: pd.DataFrame) -> pd.DataFrame | None:
    """The table itself when any of its rows carries findings columns (a sweep with a findings option), else
    ``None``: findings live in ``results.csv``, no second table."""
    cols = [c for c in FINDINGS_COLUMNS if c in table.columns]
    if not cols or not table[cols].notna().any().any():
        return None
    return table


def _tied(findings: pd.DataFrame | None, table: pd.DataFrame) -> dict[str, list[tuple[int, int]]]:
    """Per task, the heads the findings table marks as not distinguishable from their layer's best (tasks with
    paired tests only)."""
    # lazy: start-up time (matplotlib): the pipeline imports this module, and reproduce --help the pipeline
    from .plots import tied_cells

    if findings is None:
        return {}
    out = {}
    for task in dict.fromkeys(table["task"]):
        cells = tied_cells(findings, task)
        if cells is not None:
            out[task] = cells
    return out


def _paper_order(tasks: Any) -> list[str]:
    """Tasks in SentEval's order (the probing tasks as in the paper's tables), unknown names last."""
    rank = {t: i for i, t in enumerate(TASK_NAMES)}
    return sorted(tasks, key=lambda t: (rank.get(t, len(rank)), t))


def _probing_tasks() -> tuple[str, ...]:
    return tuple(PROBING_TASKS)


def _other_settings(out: Path, setting: str) -> int:
    """How many other settings the folder's ``results.csv`` holds (0 when there is none or it cannot be read)."""
    try:
        folder = load_table(out) if (out / RESULTS_CSV).is_file() or (out / RESULTS_PARQUET).is_file() else None
    except (OSError, ValueError):
        return 0
    return 0 if folder is None else len(set(folder["setting"]) - {setting})


def _analyse_settings(
    table: pd.DataFrame,
    out: Path,
    *,
    kind: str,
    data_note: str | None,
    formats: Sequence[str],
    draw_figures: bool,
) -> AnalysisReport:
    """Several run settings in one table: one full report per setting in ``settings/<setting>/`` and an index.

    Each setting's report shows that setting's own top-k units (:func:`load_topk`), so that no curve mixes two
    settings.
    """
    res = Results(table)
    overview = res.settings()
    links, curves = [], []
    for setting in overview["setting"]:
        sub = table[table["setting"] == setting]
        target = out / "settings" / slug(setting, default="unkeyed")
        rep = analyse(sub, target, curves=load_topk(out, sub), kind=kind, data_note=data_note, formats=formats,
                      draw_figures=draw_figures)
        links.append(f"[report]({(target / REPORT_MD).relative_to(out).as_posix()})")
        if rep.curves is not None:
            curves.append(rep.curves.assign(setting=setting))
    overview.insert(0, "report", links)
    notes = ("This folder holds several run settings (models, poolings, seeds, presets, data folders or dtypes). "
             "Each has its own report, figures and tables below `settings/`; numbers of different settings are "
             "never mixed in one table or figure.")
    title = f"senteval_anatomy {kind} report ({len(overview)} run settings)"
    path = write_report(out, None, {}, {"Run settings": overview}, title=title, notes=notes)
    return AnalysisReport(path=path, summary_text=markdown_table(overview.drop(columns=["report"])),
                          tables={"Run settings": overview}, figures={},
                          curves=pd.concat(curves, ignore_index=True) if curves else None)
