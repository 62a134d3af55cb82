"""Uncertainty: seed aggregation, bootstrap intervals and paired tests on data with a known answer; the batched
trainer's test predictions that feed them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from senteval_anatomy.engine.batched import BatchedMLP, evaluate_many
from senteval_anatomy.engine.tasks import Task, get_task
from senteval_anatomy.stats import (
    bootstrap_ci,
    correctness,
    mcnemar,
    paired_bootstrap,
    rank_tests,
    seed_summary,
)


def test_seed_summary_known_values():
    df = pd.DataFrame({"task": ["T"] * 6, "layer": [0, 0, 0, 1, 1, 1], "seed": [1, 2, 3] * 2,
                       "acc": [70.0, 72.0, 74.0, 50.0, 50.0, 50.0], "devacc": [1.0] * 6})
    out = seed_summary(df).set_index("layer")
    assert out.loc[0, "acc_mean"] == 72.0 and out.loc[0, "acc_std"] == pytest.approx(2.0)
    assert out.loc[1, "acc_std"] == 0.0 and (out["n_seeds"] == 3).all()
    one = seed_summary(df[df.seed == 1])
    assert one["acc_std"].isna().all()  # one seed: no spread to report, not a fake 0
    with pytest.raises(KeyError, match="seed"):
        seed_summary(df.drop(columns="seed"))


def test_bootstrap_interval_known_answer():
    """n = 400 sentences, 320 right: acc 80, 95% interval ~ 80 +- 1.96 * sqrt(.8 * .2 / 400) = 80 +- 3.92."""
    correct = np.zeros(400, dtype=bool)
    correct[:320] = True
    acc, lo, hi = bootstrap_ci(correct, n_boot=4000, seed=1)
    assert acc == 80.0 and lo < 80 < hi
    assert (hi - lo) / 2 == pytest.approx(3.92, abs=0.4)
    # Same resamples for every probe: a constant probe has a zero-width interval, identical probes identical ones.
    accs, los, his = bootstrap_ci(np.stack([correct, correct, np.ones(400, bool)]), n_boot=500)
    assert los[0] == los[1] and his[0] == his[1] and los[2] == his[2] == 100.0


def test_bootstrap_coverage():
    """Over 300 simulated test sets of 200 sentences from a 70%-accurate probe, ~95% of intervals hold 70."""
    rs = np.random.RandomState(0)
    sims = rs.rand(300, 200) < 0.7
    _, lo, hi = bootstrap_ci(sims, n_boot=1000, seed=2)
    coverage = np.mean((lo <= 70) & (70 <= hi))
    assert 0.90 <= coverage <= 0.99


def test_mcnemar_and_paired_bootstrap_known_answers():
    a = np.ones(300, dtype=bool)
    b = a.copy()
    b[:10] = False  # A right and B wrong on 10 sentences, never the reverse
    assert mcnemar(a, b) == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, a) == 1.0
    b2 = a.copy()
    b2[:5] = False
    a2 = a.copy()
    a2[5:10] = False  # 5 discordant each way: no evidence
    assert mcnemar(a2, b2) == 1.0
    r = paired_bootstrap(a, b, n_boot=2000)
    assert r["diff"] == pytest.approx(100 * 10 / 300) and r["low"] > 0 and r["p"] < 0.01
    assert paired_bootstrap(a, a)["p"] == 1.0


def test_rank_tests_separates_a_clear_winner_from_ties():
    rs = np.random.RandomState(3)
    n = 1000
    truth_best = rs.rand(n) < 0.9
    twin = truth_best.copy()
    twin[rs.choice(n, 6, replace=False)] ^= True  # within noise of the best
    weak = rs.rand(n) < 0.6
    correct = np.stack([weak, truth_best, twin])
    out = rank_tests([60.0, 90.0, 89.5], correct, top_k=2)
    assert list(out["rank"]) == [3, 1, 2]
    assert not out.loc[2, "distinguishable_from_best"] and out.loc[0, "distinguishable_from_best"]
    assert not out.loc[1, "distinguishable_from_next"]  # rank 1 vs rank 2: the twin
    assert out.loc[2, "distinguishable_from_next"]  # rank 2 vs rank 3: the weak probe
    assert np.isnan(out.loc[1, "p_vs_best"])


def test_evaluate_many_returns_test_predictions_that_score_acc():
    rs = np.random.RandomState(0)
    n, d, P = 150, 6, 3
    y = rs.randint(0, 3, n)
    X = rs.randn(n, P, d).astype(np.float32)
    X[:, 0, 0] += 2.0 * y  # probe 0 sees the label
    emb = {"train": {"X": X[:90], "y": y[:90]}, "dev": {"X": X[90:120], "y": y[90:120]},
           "test": {"X": X[120:], "y": y[120:]}}
    task = Task(get_task("Tense"), {}, [], label_names=["a", "b", "c"])
    params = {"seed": 1, "device": "cpu", "classifier": {"nhid": 0, "optim": "adam", "tenacity": 2, "epoch_size": 2}}
    plain = evaluate_many(task, emb, params)
    withp = evaluate_many(task, emb, params, predictions=True)
    for r, q in zip(plain, withp, strict=True):
        assert set(q) == set(r) | {"yhat"}
        assert {k: q[k] for k in r} == r  # predictions change nothing else
        assert round(100 * correctness(q["yhat"], y[120:]).mean(), 2) == q["acc"]
    # predict_log_proba is a distribution whose argmax is predict
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(1, 0, 2)))
    yt = torch.from_numpy(y)
    bm = BatchedMLP(d, 3, np.arange(P), np.zeros(P), n_probes=P, seed=1, config=params["classifier"], device="cpu")
    bm.fit(Xt, yt, np.arange(90), val_rows=np.arange(90, 120))
    lp = bm.predict_log_proba(Xt, np.arange(120, 150))
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(lp.argmax(-1), bm.predict(Xt, np.arange(120, 150)))
