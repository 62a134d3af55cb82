"""Figures: the paper's per-task head heatmap, a grid of tasks, layer-wise curves and the top-k curve.

All figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: that needs no GUI
backend (PNG goes through Agg, SVG through the SVG backend), leaves the user's pyplot state and backend alone, and
frees memory when the figure is dropped -- a sweep over 48 layers x 64 heads x 10 tasks makes many figures.

Readability rules (checked on 6x12, 24x16 and 48x64 grids):

* sizes scale with the grid within bounds, so 4 heads are not a sliver and 64 heads are not a wall;
* ticks are thinned to at most ~12 per axis, always including the first and the last layer/head;
* missing cells (an interrupted sweep) are drawn in light grey and counted in the title, never as a low score;
* the colour scale is labelled with what it shows (test/dev, accuracy in % or Pearson r) and shared across panels
  of the same metric in a grid, so colours compare across tasks;
* the head chosen on **dev** is outlined, because that is the head a user would actually pick.

Every panel axes carries ``gid = "panel:<task>"`` (also written into SVG files) so tests and scripts can find the
panels of a saved figure.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ..tables.results import Results
from ..tables.selection import choose_k
from ..vocab import atomic_write

__all__ = [
    "TIED_NOTE",
    "heatmap",
    "heatmap_grid",
    "layer_curves",
    "topk_plot",
    "save_figure",
    "panel_axes",
    "tied_cells",
    "FORMATS",
]

FORMATS: tuple[str, ...] = ("png", "svg")
_MISSING_COLOR = "#d9d9d9"


# --------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------


_STEPS = (2, 4, 5, 8, 10, 16, 20, 25, 50, 100)


def _close_end(ticks: list[int], last: int, step: int) -> list[int]:
    """End a tick list at ``last``: replace the final tick when it would sit too close to crowd its label."""
    gap = last - ticks[-1]
    if gap == 0:
        return ticks
    if gap * 2 < step or gap < 2:
        return [*ticks[:-1], last]
    return [*ticks, last]


def _ticks(n: int, max_ticks: int = 12) -> list[int]:
    """Tick positions among 0..n-1, thinned to a round step; always shows 0 and the last index.

    A step that lands exactly on n-1 is preferred (16 heads: 0, 5, 10, 15) so the last index needs no extra tick.
    """
    if n <= max_ticks:
        return list(range(n))
    fits = [s for s in _STEPS if math.ceil(n / s) <= max_ticks - 1]
    step = next((s for s in fits if (n - 1) % s == 0 and (n - 1) // s >= 3), fits[0])
    return _close_end(list(range(0, n, step)), n - 1, step)


def _rank_ticks(n: int, max_ticks: int = 12) -> tuple[list[int], list[str]]:
    """Positions and 1-based labels for within-layer ranks: 1, then round multiples (4, 8, ...), then n."""
    if n <= max_ticks:
        return list(range(n)), [str(r + 1) for r in range(n)]
    fits = [s for s in _STEPS[1:] if math.ceil(n / s) <= max_ticks - 1]
    step = next((s for s in fits if n % s == 0), fits[0])
    ranks = _close_end([1, *range(step, n + 1, step)], n, step)
    return [r - 1 for r in ranks], [str(r) for r in ranks]


def _legend_cols(fig: Figure, n_entries: int, entry_inches: float = 2.6) -> int:
    """Legend columns that fit the figure width (a clipped legend is unreadable)."""
    return max(1, min(n_entries, int(fig.get_figwidth() // entry_inches)))


def _score_label(metric: str, value: str) -> str:
    split = "test" if value == "acc" else "dev"
    return f"{split} Pearson r" if metric == "pearson" else f"{split} accuracy (%)"


def _axis_label(metric: str) -> str:
    return "Pearson r" if metric == "pearson" else "accuracy (%)"


def panel_axes(fig: Figure) -> list[Axes]:
    """The panel axes of a figure made here (colour bars and legends excluded), in drawing order."""
    return [ax for ax in fig.axes if str(ax.get_gid() or "").startswith("panel:")]


def _sorted_order(values: np.ndarray) -> np.ndarray:
    """Per-row column order that sorts best-first with missing cells (NaN) last; stable for ties."""
    keyed = np.where(np.isnan(values), np.inf, -values)
    return np.argsort(keyed, axis=1, kind="stable")


def _norm_for(mats: Sequence[np.ndarray], vmin: float | None, vmax: float | None) -> Normalize:
    finite = np.concatenate([m[np.isfinite(m)] for m in mats]) if mats else np.array([])
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-6
    return Normalize(vmin=lo, vmax=hi)


def _heatmap_size(num_layers: int, num_heads: int) -> tuple[float, float]:
    """Inches for one heatmap panel (without colour bar)."""
    w = float(np.clip(1.6 + 0.22 * num_heads, 3.2, 10.5))
    h = float(np.clip(1.3 + 0.2 * num_layers, 2.8, 9.5))
    return w, h


# --------------------------------------------------------------------------------------------------------------
# heatmaps
# --------------------------------------------------------------------------------------------------------------


def _draw_heatmap(
    ax: Axes,
    res: Results,
    task: str,
    *,
    sort: bool,
    value: str,
    model: str | None,
    pooling: str | None,
    norm: Normalize,
    cmap: str,
    annotate: bool,
    mark_best: bool,
    compact: bool,
    tied: Iterable[tuple[int, int]] | None = None,
) -> Any:
    mat = res.matrix(task, value=value, model=model, pooling=pooling)
    vals = mat.to_numpy(dtype=float)
    nl, nh = vals.shape
    order = _sorted_order(vals) if sort else np.tile(np.arange(nh), (nl, 1))
    shown = np.take_along_axis(vals, order, axis=1)
    cm = colormaps[cmap].with_extremes(bad=_MISSING_COLOR)
    # origin="lower": layer 0 at the bottom, as the network is usually drawn (input below, output above)
    im = ax.imshow(
        np.ma.masked_invalid(shown),
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        cmap=cm,
        norm=norm,
    )
    ax.set_gid(f"panel:{task}")
    ax.set_yticks(_ticks(nl))
    ax.set_xticks(_ticks(nh))
    if sort:
        pos, labels = _rank_ticks(nh)  # ranks are 1-based for readers
        ax.set_xticks(pos)
        ax.set_xticklabels(labels)
        ax.set_xlabel("head rank within layer (best on the left)" if not compact else "head rank in layer")
    else:
        ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.tick_params(labelsize=7 if compact else 8, length=2)
    n_missing = int(np.isnan(vals).sum())
    title = task if n_missing == 0 else f"{task} ({n_missing} missing)"
    ax.set_title(title, fontsize=9 if compact else 10)
    ax.set_label(task)

    if annotate:
        fs = 6 if nh > 8 else 7
        for i in range(nl):
            for j in range(nh):
                v = shown[i, j]
                if np.isfinite(v):
                    lum = np.dot(cm(norm(v))[:3], (0.299, 0.587, 0.114))
                    txt = f"{v:.2f}" if res.metric(task) == "pearson" else f"{v:.0f}"
                    ax.text(
                        j,
                        i,
                        txt,
                        ha="center",
                        va="center",
                        fontsize=fs,
                        color="black" if lum > 0.5 else "white",
                    )

    if mark_best:
        try:
            best = res.best_head(task, model=model, pooling=pooling)  # chosen on dev, always
        except ValueError:
            best = None
        if best is not None:
            col = int(np.flatnonzero(order[best.layer] == best.head)[0])
            ax.add_patch(
                Rectangle(
                    (col - 0.5, best.layer - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="red",
                    linewidth=1.6 if not compact else 1.1,
                )
            )
    if tied is not None:
        # a dot on every head not distinguishable from the best of its layer, wherever sorting put it
        cells = [(int(la), int(hd)) for la, hd in tied if 0 <= int(la) < nl and 0 <= int(hd) < nh]
        if cells:
            cols = [int(np.flatnonzero(order[la] == hd)[0]) for la, hd in cells]
            ax.scatter(np.asarray(cols) + 0.3, np.asarray([la for la, _ in cells]) - 0.3, s=10 if not compact else 5,
                       c="black", edgecolors="white", linewidths=0.5, zorder=3)
    return im


#: Legend of the dots :func:`heatmap` draws with ``tied``.
TIED_NOTE = "dot = not distinguishable from its layer's best head (McNemar on test, Holm over all heads)"


def tied_cells(findings: pd.DataFrame, task: str) -> list[tuple[int, int]] | None:
    """The ``(layer, head)`` of every head of ``task`` that a findings table
    (the sweep with a findings option) marks ``tied_with_layer_best``, i.e. whose McNemar p against
    its layer's dev-best head, corrected over every head of the model (:func:`senteval_anatomy.engine.stats.layer_tests`,
    Holm), is at least alpha; ``None`` when it has no paired tests for the task (nothing to mark, as opposed to
    nothing tied)."""
    rows = findings[(findings["task"] == task) & (findings["view"] == "heads")] if "task" in findings else findings[:0]
    if rows.empty or "tied_with_layer_best" not in rows or rows["tied_with_layer_best"].isna().all():
        return None
    flag = rows["tied_with_layer_best"].astype(str).str.lower() == "true"
    return [(int(la), int(hd)) for la, hd in zip(rows.loc[flag, "layer"], rows.loc[flag, "head"], strict=True)]


def heatmap(
    results: Results,
    task: str,
    *,
    sort: bool = True,
    value: str = "acc",
    model: str | None = None,
    pooling: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
    mark_best: bool = True,
    title: str | None = None,
    tied: Iterable[tuple[int, int]] | None = None,
) -> Figure:
    """The paper's head heatmap for one task: y = layer (lowest at the bottom), x = heads, colour = score.

    Parameters
    ----------
    results : Results
    task : str
    sort : bool, default=True
        Sort heads by score within each layer, best on the left (the paper's figure). ``False`` keeps head
        indices, so the same head can be followed across tasks.
    value : {"acc", "devacc"}, default="acc"
        Which score the colours show (test, as the paper; or dev). Display only: nothing is selected with it.
    vmin, vmax : float, optional
        Colour scale limits (default: the data range), e.g. to match another figure.
    annotate : bool, optional
        Print the score in each cell; by default only when cells are large enough (<= 16 x 16 heads).
    mark_best : bool, default=True
        Outline the best head chosen on dev in red.
    tied : iterable of (layer, head), optional
        Heads not distinguishable from the best head of their layer (e.g. :func:`tied_cells` of a findings table:
        McNemar p >= alpha on test); each gets a dot, so a reader sees how much of the within-layer order is noise.
    """
    mat = results.matrix(task, value=value, model=model, pooling=pooling)
    nl, nh = mat.shape
    w, h = _heatmap_size(nl, nh)
    fig = Figure(figsize=(w + 1.2, h + 0.6), layout="constrained")
    ax = fig.add_subplot()
    norm = _norm_for([mat.to_numpy(dtype=float)], vmin, vmax)
    annotate = (nl <= 16 and nh <= 16) if annotate is None else annotate
    im = _draw_heatmap(
        ax,
        results,
        task,
        sort=sort,
        value=value,
        model=model,
        pooling=pooling,
        norm=norm,
        cmap=cmap,
        annotate=annotate,
        mark_best=mark_best,
        compact=False,
        tied=tied,
    )
    metric = results.metric(task)
    cbar = fig.colorbar(im, ax=ax, fraction=0.06, pad=0.02)
    cbar.set_label(_score_label(metric, value))
    m, p = results.resolve(task, model=model, pooling=pooling)
    n_missing = int(mat.isna().to_numpy().sum())
    if title is None:
        title = f"{task}: {m}, {p} pooling"
    notes = []
    if mark_best:
        notes.append("red box = best head chosen on dev")
    if tied is not None:
        notes.append(TIED_NOTE)
    if n_missing:
        notes.append(f"{n_missing} missing cells in grey")
    # one note per line, each wrapped to the axes' width: a 10 pt character is ~6 pt wide, and a longer line runs
    # past the figure's edges in the saved PNG (the tie note did on a 6 x 12 grid)
    width = max(24, int(w * 72 / 6.2))
    ax.set_title(title + "".join("\n" + textwrap.fill(note, width) for note in notes), fontsize=10)
    return fig


def heatmap_grid(
    results: Results,
    tasks: Sequence[str] | None = None,
    *,
    sort: bool = True,
    value: str = "acc",
    model: str | None = None,
    pooling: str | None = None,
    ncols: int | None = None,
    shared_scale: bool = True,
    cmap: str = "viridis",
    mark_best: bool = True,
    title: str | None = None,
    tied: Mapping[str, Iterable[tuple[int, int]]] | None = None,
) -> Figure:
    """Heatmaps of several tasks in one figure (one panel per task).

    ``tied`` maps a task to its heads not distinguishable from their layer's best (dots, as in :func:`heatmap`).

    ``shared_scale=True`` gives all panels of the same metric one colour scale and one colour bar, so a colour
    means the same score everywhere (accuracy and Pearson r are never mixed on one scale). ``False`` gives each
    panel its own scale and colour bar, which shows the structure inside low-accuracy tasks (WordContent) better.
    """
    tasks = list(tasks) if tasks is not None else results.tasks_with("heads")
    if not tasks:
        raise ValueError("heatmap_grid needs at least one task with 'heads' rows")
    mats = {
        t: results.matrix(t, value=value, model=model, pooling=pooling).to_numpy(dtype=float) for t in tasks
    }
    metrics = {t: results.metric(t) for t in tasks}
    nl, nh = next(iter(mats.values())).shape
    n = len(tasks)
    ncols = ncols or min(n, 5 if nh <= 16 else 3)
    nrows = math.ceil(n / ncols)
    pw, ph = _heatmap_size(nl, nh)
    scale = 1.0 if n == 1 else (0.62 if nl * nh <= 24 * 16 else 0.5)
    pw = max(pw * scale, 2.6) / scale  # narrow grids (4 heads) still need room for the task name
    extra = 0.9 if shared_scale else 0.9 * ncols
    fig = Figure(figsize=(ncols * pw * scale + extra + 0.4, nrows * ph * scale + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    norms: dict[str, Normalize] = {}
    if shared_scale:
        for met in set(metrics.values()):
            norms[met] = _norm_for([mats[t] for t in tasks if metrics[t] == met], None, None)
    ims: dict[str, tuple[Any, list[Axes]]] = {}
    for i, task in enumerate(tasks):
        ax = axes[i // ncols][i % ncols]
        norm = norms[metrics[task]] if shared_scale else _norm_for([mats[task]], None, None)
        im = _draw_heatmap(
            ax,
            results,
            task,
            sort=sort,
            value=value,
            model=model,
            pooling=pooling,
            norm=norm,
            cmap=cmap,
            annotate=False,
            mark_best=mark_best,
            compact=True,
            tied=None if tied is None else tied.get(task),
        )
        # label only the outer axes; inner ones keep their ticks
        if i % ncols:
            ax.set_ylabel("")
        if i // ncols < nrows - 1 and i + ncols < n:
            ax.set_xlabel("")
        if shared_scale:
            ims.setdefault(metrics[task], (im, []))[1].append(ax)
        else:
            cb = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.02)
            cb.set_label(_score_label(metrics[task], value), fontsize=7)
            cb.ax.tick_params(labelsize=6)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].remove()
    panels = [ax for row in axes for ax in row if ax.get_gid()]
    for met in sorted(ims, key=lambda x: x == "acc"):  # the last bar added sits outermost: accuracy there
        im, axs = ims[met]
        # every bar spans all panels: attaching it to a subset would make constrained layout shift one column
        cb = fig.colorbar(
            im,
            ax=panels,
            fraction=0.025 if len(ims) == 1 else 0.018,
            pad=0.012,
            shrink=0.8 if nrows > 2 else 1.0,
        )
        names = [str(ax.get_label()) for ax in axs]
        note = (
            ""
            if len(ims) == 1
            else (f" ({', '.join(names)})" if len(names) <= 2 else f" ({len(names)} tasks)")
        )
        cb.set_label(_score_label(met, value) + note)
    if title is None:
        m, p = results.resolve(tasks[0], model=model, pooling=pooling)
        order = "sorted within layer" if sort else "by head index"
        title = f"{m} ({p} pooling): heads {order}"
        if mark_best:
            title += "; red box = best head chosen on dev"
        if any(np.isnan(mat).any() for mat in mats.values()):
            title += "; grey = missing cell"
    fig.suptitle(title, fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------------------------
# layer-wise curves
# --------------------------------------------------------------------------------------------------------------


def layer_curves(
    results: Results,
    tasks: Sequence[str] | None = None,
    *,
    model: str | None = None,
    pooling: str | None = None,
    ncols: int | None = None,
    include_embeddings: bool = True,
    show_heads: bool = True,
    title: str | None = None,
) -> Figure:
    """Per-task panels of score versus layer.

    Each panel shows the layer view's test score (solid) and dev score (dashed), the mean head of each layer, and
    the test score of each layer's best head chosen on dev (dotted) -- an honest "heads vs. layers" comparison.
    The layer chosen on dev is starred. The embeddings output, when present, is plotted at x = -1 ("emb").
    """
    tasks = (
        list(tasks) if tasks is not None else results.tasks_with("layers") or results.tasks_with("heads")
    )
    if not tasks:
        raise ValueError("layer_curves needs at least one task")
    n = len(tasks)
    ncols = ncols or min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(3.4 * ncols + 0.3, 6.0), 2.7 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    nl_max = 0
    for i, task in enumerate(tasks):
        ax = axes[i // ncols][i % ncols]
        ax.set_gid(f"panel:{task}")
        metric = results.metric(task)
        m, p = results.resolve(task, model=model, pooling=pooling)
        rows = results.table[results.table["task"] == task]
        has_layers = ((rows["view"] == "layers") & (rows["model"] == m) & (rows["pooling"] == p)).any()
        has_heads = ((rows["view"] == "heads") & (rows["model"] == m) & (rows["pooling"] == p)).any()
        nl, _ = results.shape(model=m) if has_heads else (int(rows["num_layers"].iloc[0]), 0)
        nl_max = max(nl_max, nl)
        if has_layers:
            ls = results.layer_scores(task, model=m, pooling=p, include_embeddings=include_embeddings)
            x = ls.index.to_numpy()
            ax.plot(x, ls["acc"], "-o", color="C0", ms=3, lw=1.6)
            ax.plot(x, ls["devacc"], "--", color="C0", lw=1, alpha=0.7)
            try:
                best = results.best_layer(task, model=m, pooling=p, include_embeddings=include_embeddings)
                ax.plot([best.layer], [best.acc], "*", color="C3", ms=11, zorder=5)
            except ValueError:
                pass
        if has_heads and show_heads:
            dev = results.matrix(task, value="devacc", model=m, pooling=p)
            test = results.matrix(task, value="acc", model=m, pooling=p)
            ax.plot(test.index, test.mean(axis=1), "-", color="C2", lw=1.2)
            picked = []
            for layer in dev.index:
                row = dev.loc[layer]
                picked.append(test.loc[layer, row.idxmax()] if row.notna().any() else np.nan)
            ax.plot(dev.index, picked, ":", color="C1", lw=1.6, marker=".", ms=4)
        ax.set_title(task, fontsize=10)
        ax.set_label(task)
        ticks = _ticks(nl, 8)
        if include_embeddings and has_layers:
            # "emb" sits at x=-1; next to a 0 label it would collide once ticks are thinned
            ticks = [-1, *(t for t in ticks if t != 0 or len(ticks) == nl)]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["emb" if t == -1 else str(t) for t in ticks])
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.5)
        ax.set_xlabel("layer" if i // ncols == nrows - 1 or i + ncols >= n else "")
        ax.set_ylabel(_axis_label(metric) if i % ncols == 0 or metric != results.metric(tasks[i - 1]) else "")
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].remove()
    handles = [
        Line2D([], [], color="C0", marker="o", ms=3, label="layer (test)"),
        Line2D([], [], color="C0", ls="--", label="layer (dev)"),
        Line2D([], [], color="C3", marker="*", ls="", ms=10, label="best layer chosen on dev"),
    ]
    if show_heads:
        handles += [
            Line2D([], [], color="C1", ls=":", marker=".", label="layer's best head on dev (test)"),
            Line2D([], [], color="C2", label="mean head of layer (test)"),
        ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=_legend_cols(fig, len(handles)),
        fontsize=8,
        frameon=False,
    )
    if title is None:
        m, p = results.resolve(tasks[0], model=model, pooling=pooling)
        title = f"{m} ({p} pooling): score by layer"
    fig.suptitle(title, fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------------------------
# top-k curve
# --------------------------------------------------------------------------------------------------------------


def _k_ticks(ks: np.ndarray) -> list[int]:
    """Ticks for a k sweep on a log axis: 1, 2, 4, 8, 12 (the paper's k), every k beyond the dense part, the ends."""
    ks = np.unique(ks.astype(int))
    ticks = {int(ks.min()), int(ks.max())} | {int(k) for k in ks if k in (1, 2, 4, 8, 12) or k > 12}
    out = sorted(ticks)
    if len(out) > 10:  # very long custom sweeps: powers of two and the ends
        out = [t for t in out if t & (t - 1) == 0 or t in (int(ks.min()), int(ks.max()))]
    return out


_BASELINE_STYLE = {
    "last_layer": dict(color="0.35", ls="-", label="last layer (test)"),
    "best_layer": dict(color="C3", ls="--", label="best layer chosen on dev (test)"),
    "mean_last_layer": dict(color="C4", ls=":", label="last layer, mean pooling (test)"),
}


def topk_plot(
    curve: pd.DataFrame,
    tasks: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    title: str | None = None,
) -> Figure:
    """Score versus k for the top-k heads representation, with the layer baselines drawn in.

    ``curve`` is what :func:`senteval_anatomy.analysis.topk.topk_curve` returns (several tasks may be concatenated). The
    x axis is logarithmic because the default k sweep is 1..12 then doubling. The k chosen on dev is marked;
    baselines are horizontal lines at their test scores.
    """
    required = {"task", "kind", "k", "devacc", "acc"}
    missing = required - set(curve.columns)
    if missing:
        raise ValueError(
            f"topk_plot: the curve frame lacks column(s) {sorted(missing)}; pass topk_curve()'s output"
        )
    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(curve["task"]))
    if not tasks:
        raise ValueError("topk_plot: the curve frame is empty")
    n = len(tasks)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(4.2 * ncols + 0.3, 6.0), 3.1 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    metrics: list[str] = []
    for i, task in enumerate(tasks):
        ax = axes[i // ncols][i % ncols]
        ax.set_gid(f"panel:{task}")
        ax.set_label(task)
        sub = curve[curve["task"] == task]
        top = sub[sub["kind"] == "topk"].sort_values("k")
        ref = top if not top.empty else sub
        metric = str(ref["metric"].iloc[0]) if "metric" in ref.columns and len(ref) else "acc"
        metrics.append(metric)
        if not top.empty:
            ks = top["k"].astype(int).to_numpy()
            ax.plot(ks, top["acc"], "-o", color="C0", ms=3.5, lw=1.6)
            ax.plot(ks, top["devacc"], "--", color="C0", lw=1, alpha=0.7)
            if top["devacc"].notna().any():
                pick = choose_k(sub)
                pk, pv = int(pick["k"]), float(pick["acc"])
                ax.plot([pk], [pv], "*", color="C3", ms=12, zorder=5)
                at_right = pk == int(ks.max()) and len(ks) > 1
                ax.annotate(
                    f"k={pk}",
                    (pk, pv),
                    textcoords="offset points",
                    xytext=(-6 if at_right else 6, 6),
                    ha="right" if at_right else "left",
                    fontsize=7,
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(_k_ticks(ks))
            ax.set_xticklabels([str(t) for t in _k_ticks(ks)])
            ax.minorticks_off()
        for kind, style in _BASELINE_STYLE.items():
            b = sub[sub["kind"] == kind]
            if b.empty or not np.isfinite(b["acc"].iloc[0]):
                continue
            y = float(b["acc"].iloc[0])
            ax.axhline(y, color=style["color"], ls=style["ls"], lw=1.2)
            if kind == "best_layer" and "layer" in b.columns and pd.notna(b["layer"].iloc[0]):
                # which layer dev picked differs per task: written on the line, not in the shared legend
                ax.annotate(
                    f"layer {int(b['layer'].iloc[0])}",
                    (0.01, y),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(0, 2),
                    fontsize=7,
                    color=style["color"],
                )
        rank_task = str(ref["rank_task"].iloc[0]) if "rank_task" in ref.columns and len(ref) else task
        ax.set_title(task if rank_task == task else f"{task} (heads ranked on {rank_task})", fontsize=10)
        last_row = i // ncols == nrows - 1 or i + ncols >= n
        ax.set_xlabel("k (top heads, ranked on dev)" if last_row else "")
        ax.set_ylabel(_axis_label(metric) if i % ncols == 0 or metric != metrics[i - 1] else "")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.5)
    handles = [
        Line2D([], [], color="C0", marker="o", ms=3.5, label="top-k heads (test)"),
        Line2D([], [], color="C0", ls="--", alpha=0.7, label="top-k heads (dev)"),
        Line2D([], [], color="C3", marker="*", ls="", ms=10, label="k chosen on dev (its test score)"),
        *(
            Line2D([], [], color=st["color"], ls=st["ls"], label=st["label"])
            for st in _BASELINE_STYLE.values()
        ),
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=_legend_cols(fig, len(handles)),
        fontsize=8,
        frameon=False,
    )
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].remove()
    if title is not None:
        fig.suptitle(title, fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------------------


def save_figure(
    fig: Figure, path: str | os.PathLike[str], formats: Sequence[str] = FORMATS, *, dpi: int = 150
) -> list[Path]:
    """Save ``fig`` once per format next to ``path`` (its suffix is replaced), atomically; return the paths.

    Why atomic: report pages and notebooks may read the images while a long sweep re-draws them.
    """
    base = Path(path)
    if base.suffix.lower().lstrip(".") in ("png", "svg", "pdf"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for fmt in formats:
        fmt = fmt.lower().lstrip(".")
        if fmt not in ("png", "svg", "pdf"):
            raise ValueError(f"save_figure: unsupported format {fmt!r}; use png, svg or pdf")
        target = base.with_name(f"{base.name}.{fmt}")
        # SVG metadata without a date, so re-drawing unchanged results gives an identical file
        meta = {"Date": None} if fmt == "svg" else None
        atomic_write(
            target, lambda tmp, fmt=fmt, meta=meta: fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
        )
        out.append(target)
    return out
