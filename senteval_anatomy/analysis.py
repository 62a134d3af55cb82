"""After a sweep: heatmaps, layer curves, the top-k heads representation, paper-style tables and ``report.md``.

This is the step both run scripts share; it only calls the public pieces (:class:`~senteval_anatomy.results.Results`,
:mod:`~senteval_anatomy.plots`, :func:`~senteval_anatomy.topk.topk_curve`, :mod:`~senteval_anatomy.report`).
Top-k curves are written per task as soon as they finish (``topk/<task>...csv``), so an interrupted run resumes
without re-evaluating them.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .identity import UnitFileWarning
from .results import Results
from .table import load_table, validate_table
from .vocab import atomic_write, slug

__all__ = ["AnalysisReport", "analyse"]


@dataclass
class AnalysisReport:
    """What :func:`analyse` produced: the report file, the summary as text, and the pieces."""

    path: Path
    summary_text: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    curves: pd.DataFrame | None = None


def _parse_ks(ks: str | Sequence[int] | None) -> list[int] | None:
    if ks is None:
        return None
    if isinstance(ks, str):
        try:
            values = [int(x) for x in ks.split(",")]  # an empty item ("1,,2") is a typo, not a value to skip
        except ValueError as exc:
            raise ValueError(f"--ks {ks!r}: expected comma-separated integers such as 1,2,4,8") from exc
    else:
        values = [int(x) for x in ks]
    if not values or min(values) < 1:
        raise ValueError(f"ks={ks!r}: give positive integers")
    return values


def _curve_file(out: Path, task: str, rank_task: str | None, pooling: str, params: Mapping[str, Any],
                ks: list[int] | None, identity: Sequence[str]) -> Path:
    """A top-k curve's file, named by a hash of everything that determines it: the probe settings, the k values,
    the ranking task, the pooling, and the identity (setting and data hashes) of the rows the heads are ranked on."""
    keep = {k: params.get(k) for k in ("usepytorch", "kfold", "seed", "classifier")}
    blob = json.dumps([keep, ks, rank_task, pooling, list(identity)], sort_keys=True, default=str)
    tag = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out / "topk" / f"{task}__rank-{rank_task or task}__{pooling}__{tag}.csv"


def _read_curve(path: Path) -> pd.DataFrame | None:
    """A finished top-k curve, or None (with a warning naming the file) when it is damaged: it is then recomputed."""
    from .topk import CURVE_COLUMNS

    try:
        curve = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        warnings.warn(f"top-k curve file {path} cannot be read ({exc}); recomputing it", UnitFileWarning,
                      stacklevel=3)
        return None
    missing = [c for c in CURVE_COLUMNS if c not in curve.columns]
    if missing or curve.empty:
        warnings.warn(f"top-k curve file {path} is incomplete (missing {missing or 'rows'}); recomputing it",
                      UnitFileWarning, stacklevel=3)
        return None
    return curve


def analyse(
    table: pd.DataFrame,
    out_dir: str | Path,
    *,
    encoder: Any = None,
    task_path: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    store: Any = None,
    kind: str = "probing",
    topk: bool = False,
    ks: str | Sequence[int] | None = None,
    rank_task: str | None = None,
    pooling: str | None = None,
    progress: bool | None = None,
    data_note: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
    draw_figures: bool = True,
    findings: pd.DataFrame | None = None,
) -> AnalysisReport:
    """Draw the figures, evaluate top-k heads (optional), build the tables and write ``report.md`` in ``out_dir``.

    ``draw_figures=False`` (``--no-plots``) only skips drawing: top-k is still evaluated and the tables and the
    report are still written, so skipping figures never changes which numbers a run produces.

    ``findings``: a :func:`~senteval_anatomy.findings.findings_sweep` table of the same run (default: the
    ``findings.csv`` in ``out_dir``, rows of this setting and data only). With it the report gets the findings
    section (claims re-tested with intervals and controls, top-k against the best layer with intervals), the
    findings figures, and dots on the heatmaps' heads that are not distinguishable from their layer's best.
    """
    from . import plots
    from .report import grouped_table, markdown_table, paper_table, probing_table, write_report
    from .topk import topk_curve

    out = Path(out_dir)
    table = validate_table(table)
    settings = list(dict.fromkeys(table["setting"]))
    if len(settings) > 1:
        return _analyse_settings(
            table, out, encoder=encoder, task_path=task_path, store=store, kind=kind, topk=topk, ks=ks,
            rank_task=rank_task, progress=progress, data_note=data_note, formats=formats,
        )
    figdir = out / "figures"
    res = Results(table)
    if findings is None:
        from .findings import load_findings

        findings = load_findings(out, table)
    tied = _tied(findings, table)
    tasks = _paper_order(dict.fromkeys(table["task"]))
    pooling = pooling or (table["pooling"].iloc[0] if len(table) else None)
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

    curves = None
    if topk and has_heads:
        if encoder is None or task_path is None:
            raise ValueError("topk=True needs the encoder and the task_path")
        k_values = _parse_ks(ks)
        frames = []
        for task in tasks:
            if rank_task is None and not table[(table["task"] == task)]["devacc"].notna().any():
                continue  # STS12-16 have no dev score: nothing honest to rank on
            ranked_on = table[table["task"] == (rank_task or task)]
            identity = [str(table["setting"].iloc[0]), str(table["fingerprint"].iloc[0]),
                        *sorted(ranked_on["data_hash"].dropna().astype(str).unique())]
            if findings is not None:
                identity.append("intervals")  # curves with test predictions: another file
            path = _curve_file(out, task, rank_task, str(pooling), params or {}, k_values, identity)
            if path.exists():
                done = _read_curve(path)
                if done is not None:
                    frames.append(done)
                    continue
            curve = topk_curve(encoder, task, str(task_path), res, ks=k_values, rank_task=rank_task,
                               params=params, store=store, pooling=pooling, progress=progress,
                               intervals=findings is not None)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p, c=curve: c.to_csv(p, index=False))
            frames.append(curve)
        if frames:
            curves = pd.concat(frames, ignore_index=True)
        if frames and draw_figures:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fig = plots.topk_plot(curves)
                plots.save_figure(fig, figdir / "topk", formats)
            figures["Top-k heads (ranked on dev) vs. k, with layer baselines; k chosen on dev is marked"] = (
                figdir / "topk")

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
        from .findings import claims_section, findings_figures

        notes.append(claims_section(findings, curves=curves))
        if draw_figures:
            figures.update(findings_figures(findings, figdir / "findings"))
    report_path = write_report(out, res, {k: v for k, v in figures.items()}, tables,
                               title=f"senteval_anatomy {kind} report", notes="\n\n".join(notes) or None)
    main = next(iter(tables.values()), None)
    summary = markdown_table(main) if main is not None else "(no table: the sweep had only one view)"
    return AnalysisReport(path=report_path, summary_text=summary, tables=tables, figures=figures, curves=curves)


def _tied(findings: pd.DataFrame | None, table: pd.DataFrame) -> dict[str, list[tuple[int, int]]]:
    """Per task, the heads the findings table marks as not distinguishable from their layer's best (tasks with
    paired tests only)."""
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
    from .engine import TASK_NAMES

    rank = {t: i for i, t in enumerate(TASK_NAMES)}
    return sorted(tasks, key=lambda t: (rank.get(t, len(rank)), t))


def _probing_tasks() -> tuple[str, ...]:
    from .engine import PROBING_TASKS

    return tuple(PROBING_TASKS)


def _other_settings(out: Path, setting: str) -> int:
    """How many other settings the folder's ``results.csv`` holds (0 when there is none or it cannot be read)."""
    try:
        folder = load_table(out) if (out / "results.csv").is_file() or (out / "results.parquet").is_file() else None
    except (OSError, ValueError):
        return 0
    return 0 if folder is None else len(set(folder["setting"]) - {setting})


def _analyse_settings(
    table: pd.DataFrame,
    out: Path,
    *,
    encoder: Any,
    task_path: str | Path | None,
    store: Any,
    kind: str,
    topk: bool,
    ks: str | Sequence[int] | None,
    rank_task: str | None,
    progress: bool | None,
    data_note: str | None,
    formats: Sequence[str],
) -> AnalysisReport:
    """Several run settings in one table: one full report per setting in ``settings/<setting>/`` and an index.

    Top-k heads are evaluated only for the settings the given encoder computed (same fingerprint), with the probe
    settings recorded in that setting's rows, so that no curve mixes two settings.
    """
    from .findings import load_findings
    from .report import markdown_table, write_report

    res = Results(table)
    overview = res.settings()
    fingerprint = encoder.fingerprint() if encoder is not None else None
    links, curves = [], []
    for setting in overview["setting"]:
        sub = table[table["setting"] == setting]
        target = out / "settings" / slug(setting, default="unkeyed")
        own = topk and fingerprint is not None and str(sub["fingerprint"].iloc[0]) == fingerprint
        rep = analyse(
            sub, target, encoder=encoder if own else None, task_path=task_path if own else None, params=None,
            store=store, kind=kind, topk=own, ks=ks, rank_task=rank_task, pooling=str(sub["pooling"].iloc[0]),
            progress=progress, data_note=data_note, formats=formats, findings=load_findings(out, sub),
        )
        links.append(f"[report]({(target / 'report.md').relative_to(out).as_posix()})")
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

