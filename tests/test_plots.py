"""Figures (panels, labels, orientation, readability, saved files) and the markdown report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import AxesImage
from PIL import Image
from synthetic import synthetic_table

from senteval_anatomy.analysis.plots import (
    heatmap,
    heatmap_grid,
    layer_curves,
    panel_axes,
    save_figure,
    topk_plot,
)
from senteval_anatomy.analysis.report import (
    grouped_table,
    markdown_table,
    paper_table,
    probing_table,
    write_report,
)
from senteval_anatomy.tables.results import Results

TASKS = ["Length", "WordContent", "Tense"]


@pytest.fixture(scope="module")
def res() -> Results:
    t = synthetic_table(
        6, 12, [*TASKS, "STSBenchmark"], metric={"STSBenchmark": "pearson"}, missing=0.05, seed=1
    )
    return Results(t)


def _image(ax) -> AxesImage:
    (im,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    return im


def test_heatmap_orientation_sorting_and_labels(res):
    fig = heatmap(res, "Length")
    (ax,) = panel_axes(fig)
    assert ax.get_ylabel() == "layer"
    assert "best on the left" in ax.get_xlabel()
    im = _image(ax)
    assert im.origin == "lower"  # layer 0 at the bottom
    data = np.ma.filled(im.get_array().astype(float), np.nan)
    assert data.shape == (6, 12)
    mat = res.matrix("Length")
    for layer in range(6):  # each row is that layer's scores, best first, missing cells last
        row = data[layer]
        finite = row[np.isfinite(row)]
        assert np.all(np.diff(finite) <= 0)
        assert np.isnan(row[len(finite) :]).all()
        assert sorted(finite) == sorted(mat.loc[layer].dropna())
    cbar = [a for a in fig.axes if a is not ax]
    assert len(cbar) == 1 and cbar[0].get_ylabel() == "test accuracy (%)"
    assert "missing cells in grey" in ax.get_title()


def test_unsorted_heatmap_keeps_head_indices_and_marks_dev_best(res):
    fig = heatmap(res, "Tense", sort=False, value="devacc")
    (ax,) = panel_axes(fig)
    assert ax.get_xlabel() == "head"
    data = np.ma.filled(_image(ax).get_array().astype(float), np.nan)
    np.testing.assert_array_equal(data, res.matrix("Tense", value="devacc").to_numpy())
    best = res.best_head("Tense")
    (box,) = [p for p in ax.patches]
    assert box.get_xy() == (best.head - 0.5, best.layer - 0.5)
    assert [a for a in fig.axes if a is not ax][0].get_ylabel() == "dev accuracy (%)"


def test_grid_panels_and_files(res, tmp_path):
    fig = heatmap_grid(res, TASKS, ncols=2)
    panels = panel_axes(fig)
    assert [ax.get_label() for ax in panels] == TASKS  # 3 panels in a 2x2 grid: the spare axes is removed
    assert len(fig.axes) == 3 + 1  # one shared colour bar
    assert [ax.get_ylabel() for ax in panels] == ["layer", "", "layer"]
    paths = save_figure(fig, tmp_path / "grid")
    assert [p.name for p in paths] == ["grid.png", "grid.svg"]
    svg = paths[1].read_text()
    assert sorted(re.findall(r'id="panel:([A-Za-z]+)"', svg)) == sorted(TASKS)  # readable back from the file
    with Image.open(paths[0]) as img:
        assert img.size[0] > 600 and img.size[1] > 300
    assert (paths[0].stat().st_mode & 0o777) != 0o600  # normal permissions, not mkstemp's


def test_grid_never_mixes_accuracy_and_pearson_on_one_scale(res):
    fig = heatmap_grid(res)
    assert len(panel_axes(fig)) == 4
    bars = sorted(a.get_ylabel() for a in fig.axes if not str(a.get_gid() or "").startswith("panel:"))
    assert bars == ["test Pearson r (STSBenchmark)", "test accuracy (%) (3 tasks)"]
    fig = heatmap_grid(res, shared_scale=False)
    assert len(fig.axes) == 8  # a bar per panel


@pytest.mark.parametrize(("nl", "nh"), [(6, 12), (24, 16), (48, 64)])
def test_heatmap_ticks_stay_readable(nl, nh):
    r = Results(synthetic_table(nl, nh, ["Depth"], seed=nl))
    for sort in (True, False):
        (ax,) = panel_axes(heatmap(r, "Depth", sort=sort, annotate=False))
        yt = [int(t) for t in ax.get_yticks()]
        assert len(yt) <= 12 and yt[0] == 0 and yt[-1] == nl - 1
        xlabels = [t.get_text() for t in ax.get_xticklabels()]
        assert len(xlabels) <= 12
        assert xlabels[-1] == (str(nh) if sort else str(nh - 1))  # last rank is 1-based, last head 0-based
        assert xlabels[0] == ("1" if sort else "0")


def test_layer_curves_panels(res):
    fig = layer_curves(res, TASKS)
    panels = panel_axes(fig)
    assert [ax.get_title() for ax in panels] == TASKS
    assert panels[0].get_ylabel() == "accuracy (%)"
    assert panels[0].get_xticklabels()[0].get_text() == "emb"
    # layer line: x = -1 (embeddings) .. 5, test scores of the layer view
    xs, ys = panels[0].get_lines()[0].get_data()
    assert list(xs) == list(range(-1, 6))
    np.testing.assert_allclose(ys, res.layer_scores("Length")["acc"].to_numpy())
    (star,) = [ln for ln in panels[0].get_lines() if ln.get_marker() == "*"]
    assert star.get_xdata()[0] == res.best_layer("Length").layer


def test_topk_plot_marks_dev_choice_and_baselines():
    curve = pd.DataFrame({
        "task": "SST5", "rank_task": "SST5", "metric": "acc",
        "kind": ["topk"] * 5 + ["last_layer", "best_layer", "mean_last_layer"],
        "k": [1, 2, 4, 8, 12, None, None, None], "layer": [None] * 5 + [11, 8, 11],
        "devacc": [40.0, 44.0, 46.0, 45.0, 45.5, 41.0, 44.0, 42.0],
        "acc": [39.0, 43.0, 44.0, 47.0, 46.0, 40.0, 43.0, 41.0],
    })  # fmt: skip
    fig = topk_plot(curve)
    (ax,) = panel_axes(fig)
    assert ax.get_xlabel() == "k (top heads, ranked on dev)" and ax.get_ylabel() == "accuracy (%)"
    (star,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (4, 44.0)  # dev-best k, not test-best k=8
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"last layer (test)", "best layer chosen on dev (test)", "last layer, mean pooling (test)"} <= set(
        labels
    )
    assert [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() in ("-", "--", ":")][-3:] == [
        40.0,
        43.0,
        41.0,
    ]  # baselines drawn at their test scores
    assert "layer 8" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "12"]
    with pytest.raises(ValueError, match="lacks column"):
        topk_plot(curve.drop(columns=["kind"]))


# ------------------------------------------------------------------------------------------------ report


def test_paper_and_grouped_tables(res):
    curve = pd.DataFrame({"task": "Length", "kind": ["topk", "topk"], "k": [1, 2], "devacc": [60.0, 70.0],
                          "acc": [61.0, 69.0]})  # fmt: skip
    t = probing_table(res, curve)
    assert list(t["task"]) == TASKS
    row = t.set_index("task").loc["Length"]
    assert (row["topk_k"], row["topk_test"]) == (2, 69.0)
    assert row["gain_pts"] == pytest.approx(69.0 - row["best_layer_test"])
    assert row["gain_pct"] == pytest.approx(100 * row["gain_pts"] / row["best_layer_test"])
    assert row["best_layer"] == res.best_layer("Length").layer
    g = grouped_table(t).set_index("group")
    assert list(g.index) == ["surface", "semantic"] and g.loc["surface", "n_tasks"] == 2
    assert g.loc["semantic", "best_layer_test"] == pytest.approx(res.best_layer("Tense").acc)
    assert paper_table(res, tasks=["STSBenchmark"])["group"].tolist() == ["downstream"]


def test_markdown_table_escapes_and_dashes():
    md = markdown_table(pd.DataFrame({"a": ["x|y", "z"], "b": [1.234, np.nan]}))
    assert md.splitlines() == ["| a | b |", "|---|---:|", "| x\\|y | 1.23 |", "| z | – |"]


def test_write_report_links_images_and_tables(res, tmp_path):
    out = tmp_path / "out"
    figs = save_figure(heatmap(res, "Length"), out / "figures" / "heatmap_Length")
    table = probing_table(res)
    path = write_report(
        out, res, {"Length heads": out / "figures" / "heatmap_Length"}, {"Probing summary": table}
    )
    assert path == out / "report.md" and path.is_file()
    text = path.read_text()
    assert "![Length heads](figures/heatmap_Length.png)" in text
    assert "[SVG](figures/heatmap_Length.svg)" in text
    assert "[CSV](tables/probing-summary.csv)" in text
    back = pd.read_csv(out / "tables" / "probing-summary.csv")
    assert list(back["task"]) == TASKS
    assert "| task | group | metric |" in text
    assert "Incomplete sweep" in text  # the synthetic table has missing cells
    assert "**dev**" in text
    assert all(p.is_file() for p in figs)
    assert str(tmp_path) not in text  # links are relative: the folder can move
    with pytest.raises(FileNotFoundError, match="save it first"):
        write_report(out, None, {"nope": out / "missing.png"}, None)


def test_heatmap_marks_tied_heads_where_sorting_put_them(res):
    """``tied``: a dot on each listed head, in the column the within-layer sort gave that head (sorted and unsorted
    views agree on which cell it is), and the legend says what a dot means; the grid passes each task its own."""
    from matplotlib.collections import PathCollection

    from senteval_anatomy.analysis.plots import TIED_NOTE

    mat = res.matrix("Tense")
    layer = 2
    row = mat.loc[layer]
    head = int(row.dropna().sort_values(ascending=False).index[3])  # 4th best of its layer
    for sort, col in ((True, 3), (False, head)):
        fig = heatmap(res, "Tense", sort=sort, tied=[(layer, head)])
        (ax,) = panel_axes(fig)
        (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        np.testing.assert_allclose(dots.get_offsets(), [[col + 0.3, layer - 0.3]])
        assert TIED_NOTE in " ".join(ax.get_title().split())
    (ax,) = panel_axes(heatmap(res, "Tense"))
    assert not [c for c in ax.collections if isinstance(c, PathCollection)] and TIED_NOTE not in ax.get_title()
    grid = heatmap_grid(res, TASKS, tied={"Tense": [(layer, head)]})
    dotted = [ax.get_label() for ax in panel_axes(grid) if any(isinstance(c, PathCollection) for c in ax.collections)]
    assert dotted == ["Tense"]


@pytest.mark.parametrize("heads", [12, 4])
def test_heatmap_title_and_notes_fit_in_the_figure(heads):
    """The legend lines under a heatmap's title (red box, tie dots, missing cells) are read in the saved PNG: none
    may run past the figure's edges (the tie note did, on MiniLM's 6 x 12 grid: '...Holm over all he')."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    t = synthetic_table(6, heads, ["Tense"], missing=0.05, seed=2)
    fig = heatmap(Results(t), "Tense", tied=[(0, 0), (1, 1)])
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = panel_axes(fig)
    box = ax.title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 + 0.5, (box, fig.bbox)
    assert "Holm over all heads" in " ".join(ax.get_title().split())
