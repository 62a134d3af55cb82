"""Top-k heads: ranking and k chosen on dev, never on test unless explicitly asked; a tiny end-to-end run."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from senteval_anatomy.analysis.topk import (
    CURVE_COLUMNS,
    choose_k,
    default_ks,
    default_params,
    rank_heads,
    topk_curve,
)
from senteval_anatomy.tables.results import Results, TestSelectionWarning

WORDS = "the cat dog sat on a mat big red blue runs fast slow house tree car green old new man".split()
PARAMS = {"usepytorch": False, "kfold": 3, "seed": 7, "batch_size": 16, "classifier": {"nhid": 0}}


def test_default_ks():
    assert default_ks(144) == [*range(1, 13), 24, 48, 96, 144]
    assert default_ks(8) == list(range(1, 9))
    assert default_ks(12) == list(range(1, 13))
    assert default_ks(13) == [*range(1, 13), 13]
    assert default_ks(1024) == [*range(1, 13), 24, 48, 96, 192, 384, 768, 1024]
    assert default_ks(100, dense_upto=4) == [1, 2, 3, 4, 8, 16, 32, 64, 100]
    with pytest.raises(ValueError, match="positive int"):
        default_ks(0)


def _curve(dev, test, ks):
    return pd.DataFrame({"task": "T", "kind": "topk", "k": ks, "devacc": dev, "acc": test})


def test_choose_k_on_dev_ties_to_smaller_k():
    c = _curve([70.0, 80.0, 80.0, 75.0], [70.0, 71.0, 90.0, 95.0], [1, 2, 4, 8])
    assert int(choose_k(c)["k"]) == 2  # not 8 (best test) and not 4 (same dev, better test)
    with pytest.raises(ValueError, match="TEST"):
        choose_k(c, by="acc")
    with pytest.warns(TestSelectionWarning):
        assert int(choose_k(c, by="acc", allow_test_selection=True)["k"]) == 8
    with pytest.raises(ValueError, match="no top-k row has a 'devacc'"):
        choose_k(_curve([np.nan], [0.5], [1]))


# ------------------------------------------------------------------------------------------------ end to end


def _sentence(rng, n):
    return " ".join(rng.choice(WORDS, size=n)) + " ."


@pytest.fixture(scope="module")
def task_path(tmp_path_factory):
    """A tiny Length task in SentEval's probing format: short (2-3 words) vs long (9-11 words) sentences."""
    root = tmp_path_factory.mktemp("senteval")
    rng = np.random.default_rng(0)
    lines = []
    for split, n in (("tr", 40), ("va", 16), ("te", 16)):
        for i in range(n):
            long = i % 2 == 0
            lines.append(
                # Length bins "0" (long) and "1" (short): labels from the task's fixed set, ids as 'long' < 'short'
                f"{split}\t{'0' if long else '1'}\t{_sentence(rng, rng.integers(9, 12) if long else rng.integers(2, 4))}"
            )
    (root / "probing").mkdir()
    (root / "probing" / "sentence_length.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(root)


def _table(encoder, dev: dict, test: dict, layers_dev=None, layers_test=None) -> pd.DataFrame:
    rows = []
    for (la, h), d in dev.items():
        rows.append(dict(view="heads", layer=la, head=h, devacc=d, acc=test[(la, h)]))
    for la, d in (layers_dev or {}).items():
        rows.append(dict(view="layers", layer=la, head=-1, devacc=d, acc=layers_test[la]))
    df = pd.DataFrame(rows).assign(
        model=encoder.name, task="Length", pooling=encoder.default_pooling, metric="acc", usepytorch=False,
        classifier=json.dumps({"nhid": 0}), kfold=3, seed=7, num_layers=encoder.num_layers,
        num_heads=encoder.num_heads,
    )  # fmt: skip
    return df


@pytest.fixture(scope="module")
def bert(request):
    return request.getfixturevalue("tiny_encoder")("bert")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from senteval_anatomy.store import FeatureStore

    return FeatureStore(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def scores(bert):
    """Single-head scores whose dev and test rankings are opposite; layers: dev prefers block 0, test block 1."""
    heads = [(la, h) for la in range(bert.num_layers) for h in range(bert.num_heads)]
    dev = {p: 50.0 + i for i, p in enumerate(heads)}  # dev: last head best
    test = {p: 90.0 - i for i, p in enumerate(heads)}  # test: first head best
    return dev, test, {0: 80.0, 1: 70.0}, {0: 60.0, 1: 99.0}


def test_topk_curve_ranks_and_chooses_on_dev(bert, task_path, store, scores):
    dev, test, ldev, ltest = scores
    res = Results(_table(bert, dev, test, ldev, ltest))
    curve = topk_curve(
        bert, "Length", task_path, res, ks=[1, 2, 8], params=PARAMS, store=store, progress=False
    )
    assert list(curve.columns) == list(CURVE_COLUMNS)
    expected_rank = sorted(dev, key=lambda p: -dev[p])
    assert curve.attrs["ranking"] == [list(p) for p in expected_rank]
    top = curve[curve["kind"] == "topk"]
    assert list(top["k"]) == [1, 2, 8]
    assert list(top["dim"]) == [bert.head_dim * k for k in (1, 2, 8)]
    assert list(top["name"]) == ["top1:Length", "top2:Length", "top8:Length"]
    assert top["devacc"].between(0, 100).all() and top["acc"].between(0, 100).all()
    kinds = list(curve["kind"])
    assert kinds[-3:] == ["last_layer", "best_layer", "mean_last_layer"]
    base = curve.set_index("kind")
    assert int(base.loc["best_layer", "layer"]) == 0  # dev's pick, not test's block 1
    assert int(base.loc["last_layer", "layer"]) == bert.num_layers - 1
    assert base.loc["mean_last_layer", "pooling"] == "mean"
    assert curve.attrs["best_layer_source"] == "results"
    # exactly one k is selected, the dev-best one
    sel = curve[curve["selected"]]
    assert len(sel) == 1 and int(sel["k"].iloc[0]) == int(choose_k(curve)["k"])

    # k=1 is the dev-best head: the same number as evaluating that head alone through the engine
    from senteval_anatomy.engine import SE
    from senteval_anatomy.interop.adapters import HeadAdapter

    la, h = expected_rank[0]
    one = HeadAdapter(bert, la, h, store=store)
    direct = SE(dict(PARAMS, task_path=task_path), one.batcher, one.prepare).eval("Length")
    assert (direct["devacc"], direct["acc"]) == (top["devacc"].iloc[0], top["acc"].iloc[0])


def test_topk_curve_never_reads_test_scores(bert, task_path, store, scores):
    """Replacing every test score in the table (heads and layers) leaves the whole curve unchanged."""
    dev, test, ldev, ltest = scores
    a = topk_curve(bert, "Length", task_path, Results(_table(bert, dev, test, ldev, ltest)), ks=[1, 3],
                   params=PARAMS, store=store, progress=False)  # fmt: skip
    flipped = {p: 200.0 - v for p, v in test.items()}
    b = topk_curve(bert, "Length", task_path, Results(_table(bert, dev, flipped, ldev, {0: 100.0, 1: 0.0})),
                   ks=[1, 3], params=PARAMS, store=store, progress=False)  # fmt: skip
    cols = [c for c in CURVE_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a.attrs["ranking"] == b.attrs["ranking"]


def test_topk_curve_test_ranking_only_when_asked(bert, task_path, store, scores):
    dev, test, ldev, ltest = scores
    res = Results(_table(bert, dev, test, ldev, ltest))
    with pytest.raises(ValueError, match="allow_test_selection"):
        topk_curve(
            bert, "Length", task_path, res, ks=[1], by="acc", params=PARAMS, store=store, progress=False
        )
    with pytest.warns(TestSelectionWarning):
        c = topk_curve(bert, "Length", task_path, res, ks=[1], by="acc", allow_test_selection=True,
                       params=PARAMS, store=store, progress=False, baselines=False)  # fmt: skip
    assert c.attrs["ranking"][0] == [0, 0]  # the test-best head
    assert set(c["kind"]) == {"topk"}


def test_topk_curve_without_layer_rows_scans_layers_on_dev(bert, task_path, store, scores):
    dev, test, _, _ = scores
    res = Results(_table(bert, dev, test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = topk_curve(bert, "Length", task_path, res, ks=[2], params=PARAMS, store=store, progress=False)
    assert c.attrs["best_layer_source"] == "evaluated"
    scanned = c[c["kind"].isin(["best_layer", "layer"])]
    assert sorted(scanned["layer"]) == list(range(bert.num_layers))
    best = scanned.sort_values(["devacc", "layer"], ascending=[False, True]).iloc[0]
    assert best["kind"] == "best_layer"


def test_rank_task_and_errors(bert, task_path, store, scores):
    dev, test, ldev, ltest = scores
    t = _table(bert, dev, test, ldev, ltest)
    other = t.assign(task="Depth", devacc=t["acc"])  # Depth's dev ranking = Length's test ranking
    res = Results(pd.concat([t, other]))
    assert rank_heads(res, "Depth")[0] == (0, 0)
    c = topk_curve(bert, "Length", task_path, res, ks=[1], rank_task="Depth", params=PARAMS, store=store,
                   progress=False, baselines=False)  # fmt: skip
    assert c.attrs["ranking"][0] == [0, 0] and c["rank_task"].iloc[0] == "Depth"
    with pytest.warns(UserWarning, match="exceed"):
        c = topk_curve(bert, "Length", task_path, res, ks=[1, 99], params=PARAMS, store=store, progress=False,
                       baselines=False)  # fmt: skip
    assert list(c["k"]) == [1]
    other_model = Results(t.assign(model="other", num_layers=5))
    with pytest.raises(ValueError, match="5 layers x 4 heads"):
        topk_curve(bert, "Length", task_path, other_model, params=PARAMS, store=store, progress=False)


def test_default_params_follow_the_table(bert, scores):
    dev, test, _, _ = scores
    res = Results(_table(bert, dev, test))
    p = default_params("/data", res)
    assert (p["usepytorch"], p["kfold"], p["seed"], p["classifier"]) == (False, 3, 7, {"nhid": 0})
    assert default_params("/data", None, seed=1)["seed"] == 1


def test_topk_curve_intervals_keep_the_numbers_and_add_uncertainty(bert, task_path, store, scores):
    """intervals=True: same dev / test numbers as the engine path, plus a bootstrap interval around each test score
    and a McNemar p-value of each row against the dev-chosen best layer (none for that row itself)."""
    from senteval_anatomy.analysis.topk import INTERVAL_COLUMNS

    dev, test, ldev, ltest = scores
    res = Results(_table(bert, dev, test, ldev, ltest))
    params = dict(PARAMS, usepytorch=True, classifier={"nhid": 0, "optim": "adam", "batch_size": 16, "tenacity": 2,
                                                       "epoch_size": 1, "max_epoch": 6})
    kw = dict(ks=[1, 4], params=params, store=store, progress=False)
    plain = topk_curve(bert, "Length", task_path, res, **kw)
    curve = topk_curve(bert, "Length", task_path, res, intervals=True, **kw)
    assert list(curve.columns) == list(CURVE_COLUMNS) + list(INTERVAL_COLUMNS)
    cols = ["kind", "k", "layer", "devacc", "acc", "selected"]
    pd.testing.assert_frame_equal(curve[cols], plain[cols])
    assert ((curve["acc_low"] <= curve["acc"] + 1e-9) & (curve["acc"] <= curve["acc_high"] + 1e-9)).all()
    best = curve["kind"] == "best_layer"
    assert curve.loc[best, "p_vs_best_layer"].isna().all()
    assert curve.loc[~best, "p_vs_best_layer"].between(0, 1).all()


def test_every_k_uses_the_ranking_prefix_in_rank_order(bert, task_path, store, monkeypatch):
    """Issue 17: the heads of every k are ``ranking[:k]`` concatenated in RANK order -- not in (layer, head) order,
    and not the best head followed by the heads after it by position. The ranking is scrambled against the index
    order on purpose; every k's features equal a direct ``HeadsAdapter(ranking[:k])`` batch for batch, and its
    scores equal that adapter run through the engine."""
    import senteval_anatomy.engine.batched as batched
    from senteval_anatomy.engine import SE
    from senteval_anatomy.engine.params import apply_defaults
    from senteval_anatomy.engine.tasks import load_task
    from senteval_anatomy.interop.adapters import HeadsAdapter

    heads = [(la, h) for la in range(bert.num_layers) for h in range(bert.num_heads)]
    order = [5, 2, 7, 0, 3, 6, 1, 4][: len(heads)]  # rank r -> index of its head: neither index nor reverse order
    ranking = [heads[i] for i in order]
    assert ranking != sorted(ranking) and ranking[1] != heads[heads.index(ranking[0]) + 1]
    dev = {p: 90.0 - r for r, p in enumerate(ranking)}
    res = Results(_table(bert, dev, {p: 50.0 for p in heads}))
    seen = []
    real = batched.evaluate_many
    monkeypatch.setattr(batched, "evaluate_many", lambda t, emb, *a, **k: seen.append(emb) or real(t, emb, *a, **k))
    ks = [1, 2, 3, 5]
    curve = topk_curve(bert, "Length", task_path, res, ks=ks, params=PARAMS, store=store, progress=False,
                       baselines=False)
    assert curve.attrs["ranking"] == [list(p) for p in ranking]
    params = apply_defaults(dict(PARAMS, task_path=task_path))
    task = load_task("Length", task_path, seed=params.seed)
    top = curve[curve["kind"] == "topk"].set_index("k")
    for k, emb in zip(ks, seen, strict=True):
        adapter = HeadsAdapter(bert, heads=ranking[:k], store=store)
        expected = task.embed(params, adapter.batcher)
        for split in expected:
            # the adapter encodes in its own batches: same vectors up to float rounding (~1e-8); a wrong head or a
            # wrong order differs by whole feature values
            np.testing.assert_allclose(emb[split]["X"][:, 0], expected[split]["X"], rtol=1e-5, atol=1e-6,
                                       err_msg=f"k={k} {split}")
        if k in (2, 3):
            direct = SE(dict(PARAMS, task_path=task_path), adapter.batcher, adapter.prepare).eval("Length")
            assert (direct["devacc"], direct["acc"]) == (top.loc[k, "devacc"], top.loc[k, "acc"]), k


def test_sweep_topk_view_ranks_on_dev_from_the_store(bert, task_path, store, tmp_path):
    """The sweep's own top-k view: ranked on the heads unit's dev scores (the rule of Results.top_heads), the
    paper's k (heads per layer) always there, one keyed unit per task, and the same numbers as topk_curve on the
    same ranking; a rerun reuses the unit."""
    from senteval_anatomy.sweeping import sweep

    params = dict(PARAMS, usepytorch=True, kfold=2)
    table = sweep(bert, ["Length"], task_path=task_path, params=params, store=store, out_dir=tmp_path,
                  progress=False, topk=True, ks=[1, 2])
    curve = pd.DataFrame(table.attrs["topk_curves"])
    ranking = Results(table).top_head_ids("Length")
    units = list((tmp_path / "topk" / "units").glob("*.json"))
    assert len(units) == 1
    key = json.loads(units[0].read_text())["key"]
    assert key["topk"]["ranking"] == [list(p) for p in ranking] and key["topk"]["ks"] == sorted({1, 2, bert.num_heads})
    top = curve[curve["kind"] == "topk"]
    assert list(top["k"]) == sorted({1, 2, bert.num_heads}) and top["selected"].sum() == 1
    assert {"last_layer", "best_layer"} <= set(curve["kind"])
    again = topk_curve(bert, "Length", task_path, Results(table), ks=list(top["k"]), params=params, store=store,
                       progress=False, baselines=False)
    pd.testing.assert_frame_equal(top[["k", "devacc", "acc"]].reset_index(drop=True),
                                  again[again["kind"] == "topk"][["k", "devacc", "acc"]].reset_index(drop=True),
                                  check_dtype=False)
    stamp = units[0].stat().st_mtime_ns
    sweep(bert, ["Length"], task_path=task_path, params=params, store=store, out_dir=tmp_path, progress=False,
          topk=True, ks=[1, 2])
    assert units[0].stat().st_mtime_ns == stamp


def test_topk_view_trains_its_ks_in_parallel_with_the_numbers_of_one_at_a_time(bert, task_path, store, tmp_path):
    """On a multi-core CPU the top-k view trains its k values in parallel threads (one probe each, too few to
    share a stacked run); every k's scores equal the same k trained alone, and each row keeps its own time."""
    import torch

    from senteval_anatomy.engine.chunks import chunk_workers
    from senteval_anatomy.sweeping import sweep

    params = dict(PARAMS, usepytorch=True, kfold=2)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert chunk_workers(torch.device("cpu"), 1) == 3
        table = sweep(bert, ["Length"], task_path=task_path, params=params, store=store, out_dir=tmp_path,
                      progress=False, topk=True, ks=[1, 2, 3, 5, 8])
    finally:
        torch.set_num_threads(before)
    curve = pd.DataFrame(table.attrs["topk_curves"])
    top = curve[curve["kind"] == "topk"].reset_index(drop=True)
    assert len(top) >= 5 and (top["seconds"] > 0).all()
    alone = topk_curve(bert, "Length", task_path, Results(table), ks=list(top["k"]), params=params, store=store,
                       progress=False, baselines=False)
    pd.testing.assert_frame_equal(top[["k", "devacc", "acc"]],
                                  alone[alone["kind"] == "topk"][["k", "devacc", "acc"]].reset_index(drop=True),
                                  check_dtype=False)
