"""Paper-style tables and a ``report.md`` that links the figures and the tables.

The paper's comparison table has, per task, *last layer / best layer / top-k heads (gain %)*. Ours adds the best
single head, and every column except "last layer" is **selected on dev** and reported on test: best layer by dev,
best head by dev, k by dev (the paper selected all three on test). Probing tasks are grouped as in the reference
notebooks: surface (Length, WordContent), syntactic (Depth, TopConstituents, BigramShift) and semantic (Tense,
SubjNumber, ObjNumber, OddManOut, CoordinationInversion).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__
from ..engine.registry import PROBING_GROUPS, PROBING_TASKS
from ..outdir import REPORT_MD
from ..tables.results import Results
from ..vocab import atomic_write, slug

__all__ = ["grouped_table", "markdown_table", "paper_table", "probing_table", "task_group", "write_report"]

_FIGURE_EXTS = (".png", ".svg", ".pdf")


def task_group(task: str) -> str:
    """``surface`` / ``syntactic`` / ``semantic`` for probing tasks, ``downstream`` otherwise."""
    for group, tasks in PROBING_GROUPS.items():
        if task in tasks:
            return group
    return "downstream"


def paper_table(
    results: Results,
    topk: pd.DataFrame | None = None,
    *,
    tasks: Sequence[str] | None = None,
    model: str | None = None,
    pooling: str | None = None,
) -> pd.DataFrame:
    """Per task: last layer, best layer, best head and top-k, with top-k's gain over the best layer.

    All selections use dev; the numbers are test scores. ``topk`` is :func:`senteval_anatomy.analysis.topk.topk_curve`'s
    output (tasks concatenated); without it the top-k columns are NaN.

    Columns: ``task``, ``group``, ``metric``, ``last_layer_test``, ``best_layer``, ``best_layer_test``,
    ``best_head`` (``"layer,head"``), ``best_head_test``, ``topk_k``, ``topk_test`` (k chosen on dev),
    ``topk_paper_k``, ``topk_paper_test`` (the paper's k: heads per layer), ``gain_pts`` (dev-chosen top-k minus
    best layer, in points) and ``gain_pct`` (relative gain in %, the paper's number in parentheses).
    """
    s = results.summary(tasks, model=model, pooling=pooling, topk=topk)
    out = pd.DataFrame(
        {"task": s["task"], "group": [task_group(t) for t in s["task"]], "metric": s["metric"]}
    )
    for col in (
        "last_layer_test",
        "best_layer",
        "best_layer_test",
        "best_head",
        "best_head_test",
        "topk_k",
        "topk_test",
        "topk_paper_k",
        "topk_paper_test",
    ):
        out[col] = s[col] if col in s.columns else math.nan
    out["gain_pts"] = out["topk_test"] - out["best_layer_test"]
    out["gain_pct"] = 100.0 * out["gain_pts"] / out["best_layer_test"].abs()
    for col in ("best_layer", "topk_k", "topk_paper_k"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return out


def probing_table(
    results: Results,
    topk: pd.DataFrame | None = None,
    *,
    model: str | None = None,
    pooling: str | None = None,
) -> pd.DataFrame:
    """:func:`paper_table` for the probing tasks present, in the paper's order (grouped surface/syntactic/semantic)."""
    tasks = [t for t in PROBING_TASKS if t in results.tasks]
    if not tasks:
        raise ValueError(f"no probing task in the results (tasks: {results.tasks})")
    return paper_table(results, topk, tasks=tasks, model=model, pooling=pooling)


def grouped_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each numeric test column per group (surface / syntactic / semantic), as the reference notebooks.

    ``n_tasks`` says how many tasks entered each mean, so a group averaged over an incomplete sweep shows it.
    """
    if "task" not in table.columns:
        raise ValueError("grouped_table: the table needs a 'task' column (pass paper_table()'s output)")
    t = table.copy()
    if "group" not in t.columns:
        t["group"] = [task_group(x) for x in t["task"]]
    cols = [
        c for c in ("last_layer_test", "best_layer_test", "best_head_test", "topk_test", "topk_paper_test")
        if c in t.columns
    ]
    order = [g for g in (*PROBING_GROUPS, "downstream") if g in set(t["group"])]
    rows = []
    for g in order:
        sub = t[t["group"] == g]
        row: dict[str, Any] = {"group": g, "n_tasks": int(len(sub)), "tasks": ", ".join(sub["task"])}
        for c in cols:
            row[c] = float(pd.to_numeric(sub[c], errors="coerce").mean())
        if "topk_test" in row and "best_layer_test" in row:
            row["gain_pts"] = row["topk_test"] - row["best_layer_test"]
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------------------


def _cell(v: Any, floatfmt: str) -> str:
    if v is None or v is pd.NA:
        return "–"
    if isinstance(v, float):
        return "–" if math.isnan(v) else format(v, floatfmt)
    text = str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, *, floatfmt: str = ".2f", index: bool = False) -> str:
    """A GitHub-flavoured markdown table (NaN shown as an en dash); no extra dependency needed."""
    frame = df.reset_index() if index else df
    header = [str(c) for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        for c in frame.columns
    ]
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in row) + " |")
    return "\n".join(lines)


def _rel(path: Path, out_dir: Path) -> str:
    """Link target relative to the report, with forward slashes (markdown on every OS)."""
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def write_report(
    out_dir: str | os.PathLike[str],
    results: Results | None,
    figures: Mapping[str, str | os.PathLike[str] | Sequence[str | os.PathLike[str]]] | None = None,
    tables: Mapping[str, pd.DataFrame | str | os.PathLike[str]] | None = None,
    *,
    title: str = "senteval_anatomy report",
    notes: str | None = None,
) -> Path:
    """Write ``out_dir/report.md``: run settings, the tables (inline and as CSV) and the figures, atomically.

    Parameters
    ----------
    out_dir : path
        Folder of the report; created if needed. Links are relative to it, so the folder can be moved or
        published as a whole.
    results : Results or None
        Summarised in a "Run" section (models, tasks, settings, missing cells).
    figures : mapping caption -> path or paths
        Image files (PNG shown inline, other formats linked). A path without suffix means "every saved format".
    tables : mapping title -> DataFrame or CSV path
        DataFrames are written to ``out_dir/tables/<slug>.csv`` and rendered inline; CSV paths are read, rendered
        and linked.
    notes : str, optional
        Free markdown appended after the run section.

    Returns
    -------
    Path
        The report file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = [f"# {title}", ""]
    lines.append(
        "All selections (best layer, best head, top-k heads and k) were made on **dev** scores; the numbers "
        "reported are **test** scores of the selected representations. Accuracies are in %, relatedness tasks "
        "report Pearson r."
    )
    lines.append("")

    if results is not None:
        lines += _run_section(results)
    if notes:
        lines += [notes.strip(), ""]

    if tables:
        lines += ["## Tables", ""]
        tdir = out / "tables"
        for caption, table in tables.items():
            if isinstance(table, pd.DataFrame):
                csv = tdir / f"{slug(caption, default='table')}.csv"
                atomic_write(csv, lambda tmp, t=table: t.to_csv(tmp, index=False))
                df = table
            else:
                csv = Path(table)
                if not csv.is_file():
                    raise FileNotFoundError(f"write_report: table {caption!r}: {csv} does not exist")
                df = pd.read_csv(csv)
            lines += [f"### {caption}", "", markdown_table(df), "", f"[CSV]({_rel(csv, out)})", ""]

    if figures:
        lines += ["## Figures", ""]
        for caption, spec in figures.items():
            paths = _figure_paths(spec, caption)
            lines += [f"### {caption}", ""]
            shown = next((p for p in paths if p.suffix.lower() == ".png"), None) or next(
                (p for p in paths if p.suffix.lower() == ".svg"), None
            )
            if shown is not None:
                lines += [f"![{caption}]({_rel(shown, out)})", ""]
            links = " · ".join(f"[{p.suffix.lstrip('.').upper()}]({_rel(p, out)})" for p in paths)
            lines += [links, ""]

    lines += ["---", f"Written by senteval_anatomy {__version__}.", ""]
    target = out / REPORT_MD
    text = "\n".join(lines)
    atomic_write(target, text)
    return target


def _figure_paths(spec: Any, caption: str) -> list[Path]:
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.suffix.lower() in _FIGURE_EXTS:
            found = [p] if p.is_file() else []
        else:  # a stem: every saved format
            found = [p.with_name(p.name + ext) for ext in _FIGURE_EXTS if p.with_name(p.name + ext).is_file()]
        if not found:
            raise FileNotFoundError(
                f"write_report: figure {caption!r}: {p} does not exist (save it first, e.g. with plots.save_figure)"
            )
        paths += found
    return paths


def _run_section(results: Results) -> list[str]:
    t = results.table
    lines = ["## Run", ""]
    lines.append(f"* Models: {', '.join(results.models)}")
    lines.append(f"* Tasks: {', '.join(results.tasks)}")
    lines.append(f"* Poolings: {', '.join(results.poolings)}")
    prov = results.provenance().drop(columns=["fingerprint"])
    lines += ["", markdown_table(prov), ""]
    # missing cells, per model / task / view: an interrupted sweep must be visible in the report
    miss_rows = []
    for (model, task, pooling, _setting), sub in t.groupby(["model", "task", "pooling", "setting"], sort=True):
        nl = int(sub["num_layers"].iloc[0])
        nh = sub["num_heads"].iloc[0]
        heads = sub[(sub["view"] == "heads") & sub["acc"].notna()]
        layers = sub[(sub["view"] == "layers") & sub["acc"].notna() & (sub["layer"] >= 0)]
        exp_heads = nl * int(nh) if not pd.isna(nh) and (sub["view"] == "heads").any() else 0
        exp_layers = nl if (sub["view"] == "layers").any() else 0
        if len(heads) < exp_heads or len(layers) < exp_layers:
            miss_rows.append(
                {
                    "model": model,
                    "task": task,
                    "pooling": pooling,
                    "heads scored": f"{len(heads)}/{exp_heads}",
                    "layers scored": f"{len(layers)}/{exp_layers}",
                }
            )
    if miss_rows:
        lines += [
            "**Incomplete sweep** — these cells have no score:",
            "",
            markdown_table(pd.DataFrame(miss_rows)),
            "",
        ]
    return lines
