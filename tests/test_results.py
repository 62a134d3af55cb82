"""Results queries on a small handmade table: ties, missing cells, two models, two poolings, dev-only selection."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from synthetic import synthetic_table

from senteval_anatomy.tables.results import (
    COLUMNS,
    Results,
    ResultsTableError,
    TestSelectionWarning,
    load_table,
    thirds_of,
    validate_table,
)


def _row(model, task, view, layer, head, dev, test, *, pooling="cls", metric="acc", nl=3, nh=3):
    return {
        "model": model, "fingerprint": f"fp-{model}", "task": task, "view": view, "layer": layer, "head": head,
        "name": None, "pooling": pooling, "metric": metric, "devacc": dev, "acc": test, "ndev": 10, "ntest": 10,
        "f1": np.nan, "harness": "builtin", "usepytorch": False, "classifier": json.dumps({"nhid": 0}),
        "kfold": 5, "seed": 123, "num_layers": nl, "num_heads": nh, "package_version": "0.1.0",
    }  # fmt: skip


# "Length" for model A (3 layers x 3 heads), dev and test deliberately disagree on the ranking:
#   dev:  (1,2)=80 ties (2,0)=80 ; (0,1)=70 ; ...   test: (0,0) is the test-best head (99) but dev-worst.
A_HEADS = {
    (0, 0): (50.0, 99.0),
    (0, 1): (70.0, 60.0),
    (0, 2): (65.0, 64.0),
    (1, 0): (60.0, 61.0),
    (1, 1): (np.nan, 75.0),  # missing dev score: a cell the sweep did not finish
    (1, 2): (80.0, 70.0),
    (2, 0): (80.0, 72.0),
    # (2, 1) absent entirely: an interrupted sweep
    (2, 2): (55.0, 56.0),
}
#   layers: dev picks block 0 (tie with block 2 -> lower wins), test would pick block 1; embeddings best on dev
A_LAYERS = {-1: (90.0, 50.0), 0: (75.0, 70.0), 1: (74.0, 88.0), 2: (75.0, 71.0)}


@pytest.fixture()
def table() -> pd.DataFrame:
    rows = [_row("A", "Length", "heads", la, h, d, t) for (la, h), (d, t) in A_HEADS.items()]
    rows += [_row("A", "Length", "layers", la, -1, d, t) for la, (d, t) in A_LAYERS.items()]
    # a relatedness task (Pearson) for A
    rows += [_row("A", "STSBenchmark", "heads", la, h, 0.1 * (la + h), 0.1 * (la + h) + 0.01, metric="pearson")
             for la in range(3) for h in range(3)]  # fmt: skip
    rows += [
        _row("A", "STSBenchmark", "layers", la, -1, 0.2 + 0.1 * la, 0.25, metric="pearson") for la in range(3)
    ]
    # the same model with mean pooling: every head 1 point better than cls
    rows += [_row("A", "Length", "heads", la, h, d + 1, t + 1, pooling="mean")
             for (la, h), (d, t) in A_HEADS.items()]  # fmt: skip
    rows += [
        _row("A", "Length", "layers", la, -1, d + 1, t + 1, pooling="mean") for la, (d, t) in A_LAYERS.items()
    ]
    # a second model, B: 2 layers x 2 heads, Length only
    rows += [_row("B", "Length", "heads", la, h, 40 + 10 * la + h, 41 + 10 * la + h, nl=2, nh=2)
             for la in range(2) for h in range(2)]  # fmt: skip
    rows += [_row("B", "Length", "layers", la, -1, 60 + la, 62 + la, nl=2, nh=2) for la in range(-1, 2)]
    return pd.DataFrame(rows)


@pytest.fixture()
def res(table) -> Results:
    return Results(table, model="A", pooling="cls")


# ---------------------------------------------------------------------------------------------- validation


def test_validate_names_missing_columns(table):
    with pytest.raises(ResultsTableError, match=r"missing column\(s\) pooling, devacc"):
        validate_table(table.drop(columns=["devacc", "pooling"]))


def test_validate_fills_provenance_and_names(table):
    t = validate_table(table.drop(columns=["classifier", "package_version", "name"]))
    assert list(t.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert t["classifier"].isna().all()
    assert t.loc[(t["view"] == "heads") & (t["layer"] == 1) & (t["head"] == 2), "name"].iloc[0] == (
        "blocks.1.attn.head.2"
    )
    assert set(t.loc[t["view"] == "layers", "name"]) >= {"embeddings", "blocks.2.hook_resid_post"}


def test_validate_reports_csv_line_of_bad_value(table, tmp_path):
    table.loc[3, "view"] = "head"
    path = tmp_path / "r.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ResultsTableError, match=r"unknown value\(s\) \['head'\] at lines 5") as err:
        load_table(path)
    assert str(path) in str(err.value)


def test_validate_rejects_duplicates_and_inconsistent_rows(table):
    with pytest.raises(ResultsTableError, match="sharing a"):
        validate_table(pd.concat([table, table.iloc[[0]]]))
    bad = table.copy()
    bad.loc[0, "head"] = -1  # a heads row without a head
    with pytest.raises(ResultsTableError, match="'heads' rows"):
        validate_table(bad)
    bad = table.copy()
    bad["acc"] = bad["acc"].astype(object)
    bad.loc[0, "acc"] = "n/a"
    with pytest.raises(ResultsTableError, match="'acc' must be numeric"):
        validate_table(bad)


# ---------------------------------------------------------------------------------------------- matrix


def test_matrix_layers_by_heads_with_missing_cells(res):
    m = res.matrix("Length")
    assert m.shape == (3, 3)
    assert list(m.index) == [0, 1, 2] and list(m.columns) == [0, 1, 2]
    assert m.loc[0, 0] == 99.0 and m.loc[1, 2] == 70.0
    assert math.isnan(m.loc[2, 1])  # absent row -> NaN, the grid keeps its shape
    dev = res.matrix("Length", value="devacc")
    assert math.isnan(dev.loc[1, 1]) and dev.loc[2, 0] == 80.0


def test_sorted_matrix_is_best_first_with_missing_last(res):
    s = res.matrix("Length", sort=True)
    assert list(s.loc[0]) == [99.0, 64.0, 60.0]
    assert list(s.loc[2, [0, 1]]) == [72.0, 56.0] and math.isnan(s.loc[2, 2])


# ---------------------------------------------------------------------------------------------- selections


def test_top_heads_rank_on_dev_with_ties_to_lower_layer(res):
    top = res.top_heads("Length", 3)
    # (1,2) and (2,0) tie at dev 80: the lower layer wins; the test-best head (0,0) is nowhere near the top
    assert list(zip(top["layer"], top["head"], strict=True)) == [(1, 2), (2, 0), (0, 1)]
    assert list(top["rank"]) == [1, 2, 3]
    all_heads = res.top_heads("Length")
    assert len(all_heads) == 7  # 9 cells - 1 absent - 1 without a dev score
    assert (1, 1) not in set(zip(all_heads["layer"], all_heads["head"], strict=True))


def test_selection_ignores_test_scores(table):
    """Scrambling every test score must not change a single selection."""
    before = Results(table, model="A", pooling="cls")
    scrambled = table.copy()
    scrambled["acc"] = np.random.default_rng(0).permutation(scrambled["acc"].to_numpy())
    after = Results(scrambled, model="A", pooling="cls")
    assert before.top_head_ids("Length") == after.top_head_ids("Length")
    assert before.best_layer("Length").layer == after.best_layer("Length").layer
    assert before.best_head("Length").name == after.best_head("Length").name
    assert before.thirds("Length", k=4) == after.thirds("Length", k=4)


def test_test_selection_requires_opt_in_and_warns(res):
    with pytest.raises(ValueError, match="TEST score"):
        res.top_heads("Length", 2, by="acc")
    with pytest.raises(ValueError, match="allow_test_selection"):
        res.best_layer("Length", by="acc")
    with pytest.warns(TestSelectionWarning):
        top = res.top_heads("Length", 1, by="acc", allow_test_selection=True)
    assert (int(top["layer"][0]), int(top["head"][0])) == (0, 0)  # the paper's (biased) pick
    with pytest.raises(ValueError, match="'devacc'"):
        res.top_heads("Length", 1, by="f1")


def test_best_layer_dev_chosen_excluding_embeddings_by_default(res):
    best = res.best_layer("Length")
    assert (best.layer, best.devacc, best.acc) == (0, 75.0, 70.0)  # tie 0 vs 2 on dev -> lower layer
    assert res.best_layer("Length", include_embeddings=True).layer == -1
    last = res.last_layer("Length")
    assert (last.layer, last.acc, last.name) == (2, 71.0, "blocks.2.hook_resid_post")
    head = res.best_head("Length")
    assert (head.layer, head.head, head.acc) == (1, 2, 70.0)


def test_queries_refuse_ambiguity_and_accept_choice(table):
    r = Results(table)
    with pytest.raises(ValueError, match=r"several models \['A', 'B'\]; pass model="):
        r.matrix("Length")
    with pytest.raises(ValueError, match="several poolings"):
        r.matrix("Length", model="A")
    assert r.matrix("Length", model="B").shape == (2, 2)
    assert r.best_layer("Length", model="B").layer == 1
    with pytest.raises(KeyError, match="'Depth' is not in the results"):
        r.matrix("Depth", model="A")


def test_thirds(res):
    assert [(n, list(r)) for n, r in thirds_of(12)] == [
        ("lower", [0, 1, 2, 3]), ("middle", [4, 5, 6, 7]), ("upper", [8, 9, 10, 11]),
    ]  # fmt: skip
    assert [len(r) for _, r in thirds_of(48)] == [16, 16, 16]
    # top-4 on dev: (1,2), (2,0), (0,1), (0,2) -> lower 2, middle 1, upper 1
    assert res.thirds("Length", k=4) == {"lower": 2, "middle": 1, "upper": 1}
    tab = res.thirds_table(["Length"], k=4)
    assert tab.loc[0, "split"] == "2/1/1" and tab.loc[0, "best_head_layer"] == 1


def test_thirds_default_k_counts_every_head_of_a_small_model_without_warning(res):
    """The paper's top 10 on a model with fewer scored heads (every report of a tiny model): all of them, no warning
    on stderr; an explicit k above that still warns."""
    nl, nh = res.shape()
    assert nl * nh < 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scored = len(res.top_heads("Length", None))
        assert sum(res.thirds("Length").values()) == scored < 10
        tab = res.thirds_table(["Length"])
    assert len(tab.loc[0, "top_layers"].split(",")) == scored
    with pytest.warns(UserWarning, match="heads are scored"):
        res.thirds("Length", k=10)


# ---------------------------------------------------------------------------------------------- summaries


def test_summary_per_task(res):
    s = res.summary().set_index("task")
    assert list(s.index) == ["Length", "STSBenchmark"]
    row = s.loc["Length"]
    assert (row["last_layer_test"], row["best_layer"], row["best_layer_test"]) == (71.0, 0, 70.0)
    assert row["best_head"] == "1,2" and row["best_head_test"] == 70.0
    assert row["heads_scored"] == 8  # test scores present (the dev-less cell has a test score)
    assert row["best_head_minus_best_layer"] == 0.0
    assert s.loc["STSBenchmark", "metric"] == "pearson"
    assert s.loc["STSBenchmark", "best_head"] == "2,2"


def test_summary_reads_topk_choice_made_on_dev(res):
    curve = pd.DataFrame({
        "task": "Length", "kind": ["topk", "topk", "topk", "best_layer"], "k": [1, 2, 4, pd.NA],
        "devacc": [80.0, 85.0, 85.0, 75.0], "acc": [70.0, 72.0, 95.0, 70.0],
    })  # fmt: skip
    s = res.summary(["Length"], topk=curve).iloc[0]
    # dev tie between k=2 and k=4 -> smaller k; k=4's better test score is not looked at
    assert (s["topk_k"], s["topk_test"]) == (2, 72.0)
    assert s["gain_vs_best_layer"] == 2.0


def test_compare_two_models_and_two_poolings(table):
    r = Results(table)
    c = r.compare("A", "B", on="model", pooling="cls").set_index("task")
    assert list(c.index) == ["Length"]
    assert c.loc["Length", "best_layer_test[A]"] == 70.0 and c.loc["Length", "best_layer_test[B]"] == 63.0
    assert c.loc["Length", "best_layer_test[B-A]"] == -7.0
    p = r.compare("cls", "mean", on="pooling", model="A").set_index("task")
    assert p.loc["Length", "best_head_test[mean-cls]"] == 1.0
    diff = r.matrix_diff("Length", "cls", "mean", on="pooling", model="A")
    assert np.nanmax(np.abs(diff.to_numpy() - 1.0)) == 0.0
    with pytest.raises(ValueError, match="same layers x heads grid"):
        r.matrix_diff("Length", "A", "B", on="model", pooling="cls")


# ---------------------------------------------------------------------------------------------- I/O


def test_csv_and_parquet_round_trip(res, tmp_path):
    for name in ("r.csv", "r.parquet"):
        path = res.save(tmp_path / name)
        back = Results.load(path, model="A", pooling="cls")
        pd.testing.assert_frame_equal(back.matrix("Length"), res.matrix("Length"))
        assert back.top_head_ids("Length") == res.top_head_ids("Length")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        res.save(tmp_path / "r.xlsx")
    sweep_dir = tmp_path / "sweep"
    res.save(sweep_dir / "results.parquet")
    assert Results.load(sweep_dir, model="A", pooling="cls").top_head_ids("Length") == res.top_head_ids("Length")


def test_reference_json_export_layout_and_round_trip(table, tmp_path):
    r = Results(table)
    with pytest.raises(ValueError, match="several poolings|poolings"):
        r.to_reference_json(tmp_path)
    files = r.to_reference_json(tmp_path, pooling="cls")
    assert sorted(f.name for f in files) == ["A_Length.json", "A_STSBenchmark.json", "B_Length.json"]
    data = json.loads((tmp_path / "A_Length.json").read_text())
    assert data["1_2_head"]["devacc"] == 80.0 and data["1_2_head"]["acc"] == 70.0
    assert data["2_-1_fc"] == {"devacc": 75.0, "acc": 71.0, "ndev": 10, "ntest": 10}
    assert (
        "2_1_head" not in data and "-1_-1_fc" not in data
    )  # absent cell, embeddings (never in the reference)
    sts = json.loads((tmp_path / "A_STSBenchmark.json").read_text())
    assert sts["0_0_head"]["pearson"] == pytest.approx(0.01)
    back = Results.from_reference_json(tmp_path)
    assert back.models == ["A", "B"]
    pd.testing.assert_frame_equal(
        back.matrix("Length", model="A"), r.matrix("Length", model="A", pooling="cls")
    )
    assert back.metric("STSBenchmark") == "pearson"


def test_synthetic_table_is_valid_and_sized():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = synthetic_table(6, 12, ["Length", "Tense"], missing=0.1, seed=3)
    r = Results(t)
    assert r.matrix("Tense").shape == (6, 12)
    assert r.matrix("Tense").isna().to_numpy().any()
