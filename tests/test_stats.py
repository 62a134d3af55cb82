"""Uncertainty: seed aggregation, bootstrap intervals and paired tests on data with a known answer; the batched
trainer's test predictions that feed them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from senteval_anatomy.engine.batched import evaluate_many
from senteval_anatomy.engine.registry import get_task
from senteval_anatomy.engine.stacked import BatchedMLP
from senteval_anatomy.engine.stats import (
    accuracy_ci,
    adjust_pvalues,
    correctness,
    layer_tests,
    mcnemar,
    paired_bootstrap,
    rank_tests,
    resample_counts,
    seed_summary,
    wilson_interval,
)
from senteval_anatomy.engine.tasks import Task


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


def test_accuracy_interval_known_answer_and_never_zero_width():
    """n = 400 sentences, 320 right: acc 80, Wilson 95% interval = [75.80, 83.62] (by hand: centre
    (0.8 + z^2/800) / (1 + z^2/400), half z / (1 + z^2/400) * sqrt(0.16/400 + z^2/640000))."""
    correct = np.zeros(400, dtype=bool)
    correct[:320] = True
    acc, lo, hi = accuracy_ci(correct)
    assert acc == 80.0 and lo == pytest.approx(75.795, abs=0.01) and hi == pytest.approx(83.624, abs=0.01)
    # All right or all wrong: a real interval, not [100, 100] (lower bound n / (n + z^2) at k = n).
    accs, los, his = accuracy_ci(np.stack([np.ones(75, bool), np.zeros(75, bool), correct[:75]]))
    assert his[0] == 100.0 and los[0] == pytest.approx(100 * 75 / (75 + 1.959964**2), abs=1e-3)
    assert los[1] == 0.0 and his[1] > 0.0
    assert (his - los > 0).all()
    lo1, hi1 = wilson_interval(np.arange(76), 75)
    assert (hi1 - lo1 > 0).all() and (lo1 <= np.arange(76) / 75).all() and (np.arange(76) / 75 <= hi1).all()


@pytest.mark.parametrize("n", [75, 1000])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.97, 1.0])
def test_interval_coverage_simulated(n, p):
    """Nominal 95% lands in [93%, 97%] (20,000 simulated test sets; Monte-Carlo s.e. 0.15 point).

    What Wilson's interval promises (Brown, Cai & DasGupta 2001) is coverage close to nominal on average over a
    small neighbourhood of p: on an exact p the binomial lattice makes coverage jump (exactly at n = 75, p = 0.97 it
    is 97.5%, conservative; at p = 0.965 it is 92%). So the accuracy of each simulated probe is drawn from
    [p - 0.01, p + 0.01]. At p = 1.0 (every answer right) no two-sided method promises 95%: the interval must
    still hold 1 (it does, always) and have positive width. The percentile bootstrap failed this test (88% at
    n = 75, p ~ 0.95; a zero-width [100, 100] at p = 1)."""
    rs = np.random.default_rng(n * 100 + int(100 * p))
    sims = 20_000
    truth = np.full(sims, 1.0) if p == 1.0 else np.clip(rs.uniform(p - 0.01, p + 0.01, sims), 0, 1)
    k = rs.binomial(n, truth)
    correct = np.arange(n)[None, :] < k[:, None]  # the per-sentence correctness accuracy_ci reads, as the findings do
    acc, lo, hi = accuracy_ci(correct)
    np.testing.assert_allclose(acc, 100 * k / n)
    coverage = np.mean((lo <= 100 * truth) & (100 * truth <= hi))
    assert (hi - lo > 0).all()
    if p == 1.0:
        assert coverage == 1.0
    else:
        assert 0.93 <= coverage <= 0.97, coverage


def test_paired_bootstrap_bounds_are_bca_quantiles_of_its_own_resamples():
    """The interval's bounds are the quantiles of the very resamples (rebuilt with resample_counts) at the BCa
    levels, and those levels are computed by hand here: z0 from the share below the estimate, a from the
    jackknife. A bound at the 5% / 95% (or plain 2.5% / 97.5%) quantiles fails this."""
    from scipy.stats import norm

    rs = np.random.RandomState(7)
    n, n_boot, seed = 120, 2000, 3
    a = rs.rand(n) < 0.8
    b = rs.rand(n) < 0.6
    r = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
    d = a.astype(float) - b.astype(float)
    boot = 100 * (resample_counts(n, n_boot, seed) @ d) / n
    est = 100 * d.mean()
    z0 = norm.ppf((np.sum(boot < est) + 0.5 * np.sum(boot == est)) / n_boot)
    jack = 100 * (d.sum() - d) / (n - 1)
    u = jack.mean() - jack
    acc = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    levels = [norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z))) for z in norm.ppf([0.025, 0.975])]
    assert r["q_low"] == pytest.approx(levels[0]) and r["q_high"] == pytest.approx(levels[1])
    assert r["low"] == pytest.approx(np.quantile(boot, levels[0]))
    assert r["high"] == pytest.approx(np.quantile(boot, levels[1]))
    # A 95% interval is wider than a 90% one of the same resamples.
    assert r["low"] < np.quantile(boot, 0.05) and r["high"] > np.quantile(boot, 0.95)
    assert r["diff"] == pytest.approx(est) and r["low"] < est < r["high"]


def test_paired_bootstrap_p_floor_and_degenerate_differences():
    a = np.ones(300, dtype=bool)
    b = a.copy()
    b[:60] = False  # A better on 60 sentences, never worse: every resample is > 0
    r = paired_bootstrap(a, b, n_boot=500)
    assert r["p"] == pytest.approx(2 / 501)  # (1 + 0) / (B + 1), two-sided; never 0
    assert r["p"] >= 1 / 501
    same = paired_bootstrap(a, a, n_boot=500)  # never disagree: difference 0, but not a zero-width interval
    assert same["diff"] == 0.0 and same["p"] == 1.0 and same["low"] < 0 < same["high"]
    flip = paired_bootstrap(a, ~a, n_boot=500)  # A right on every sentence, B wrong on every one
    assert flip["diff"] == 100.0 and flip["low"] < 100.0 and flip["high"] == 100.0 and 0 < flip["p"] < 1e-6


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


def test_adjust_pvalues_holm_and_bh_by_hand():
    """Holm and Benjamini-Hochberg against hand computations (statsmodels' multipletests definitions) and
    scipy.stats.false_discovery_control; NaN is outside the family."""
    from scipy.stats import false_discovery_control

    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    m = 5
    # Holm: sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> x5, x4, x3, x2, x1 = .025, .04, .09, .08, .5 -> running max
    holm = adjust_pvalues(p, "holm")
    np.testing.assert_allclose(holm, [0.04, 0.09, 0.09, 0.025, np.nan, 0.5])
    # BH: m p / rank = .025, .025, .05, .05, .5 -> running min from the top
    bh = adjust_pvalues(p, "bh")
    np.testing.assert_allclose(bh, [0.025, 0.05, 0.05, 0.025, np.nan, 0.5])
    ok = ~np.isnan(p)
    np.testing.assert_allclose(bh[ok], false_discovery_control(p[ok], method="bh"))
    rs = np.random.RandomState(0)
    q = rs.rand(71) ** 3
    np.testing.assert_allclose(adjust_pvalues(q, "bh"), false_discovery_control(q, method="bh"))
    order = np.argsort(q)
    hand = np.maximum.accumulate(np.minimum(1, (71 - np.arange(71)) * q[order]))
    np.testing.assert_allclose(adjust_pvalues(q, "holm")[order], hand)
    assert (adjust_pvalues(q, "holm") >= adjust_pvalues(q, "bh") - 1e-12).all() and m == ok.sum()
    with pytest.raises(ValueError, match="not one of"):
        adjust_pvalues(q, "bonferonni")


def test_corrected_ties_are_wider_than_raw_ones():
    """72 heads, all of them as good as the best: uncorrected, a few come out 'distinguishable' by chance; over
    the family of 71 tests with Holm, none does, and the family size is reported."""
    rs = np.random.RandomState(6)  # a draw where 3 raw tests come out below 0.05 (chance alone)
    n, P = 1000, 72
    correct = rs.rand(P, n) < 0.8
    correct[-1] = rs.rand(n) < 0.6  # one head really is worse: the correction still finds it
    dev = np.linspace(90, 80, P)
    out = rank_tests(dev, correct)
    assert (out["family_size"] == P - 1).all()
    assert out["tied_with_best"][:-1].all() and not out["tied_with_best"].iloc[-1]
    assert (out["p_vs_best"][:-1] < 0.05).sum() >= 1  # the raw tests would have split the tie set
    lay = layer_tests(dev, correct, np.repeat(np.arange(6), 12))
    assert (lay["layer_family_size"] == 6 * 11).all()
    assert lay["tied_with_layer_best"][:-1].all() and not lay["tied_with_layer_best"].iloc[-1]
    assert (lay["p_vs_layer_best"][:-1] < 0.05).sum() >= 1


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
