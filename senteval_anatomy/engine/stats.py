"""Uncertainty of probing results: seed spread, intervals that cover, paired tests and many heads tested fairly.

Why: on a test set of a few hundred or a few thousand sentences, a one-point gap between two heads is often noise,
a probe's accuracy moves with its seed, and with 72-144 heads per model some gaps look real by chance alone. The
tools, all on numbers a sweep already has:

* :func:`seed_summary` - mean, standard deviation and count per cell of a results table over probe seeds;
* :func:`wilson_interval` / :func:`accuracy_ci` - the Wilson score interval of one accuracy (a binomial
  proportion). Not the percentile bootstrap: that one under-covers at the ends (a true 95% accuracy was covered only
  ~88% of the time at n = 75) and collapses to a zero-width ``[100, 100]`` when every answer is right. Wilson's
  interval is never zero-width and its coverage is within a point or two of nominal for the sizes SentEval has
  (``tests/test_stats.py::test_interval_coverage_simulated``);
* :func:`mcnemar` and :func:`paired_bootstrap` - is probe A better than probe B on the same test sentences? Paired
  tests use the per-sentence agreement, so they detect gaps far smaller than the two marginal intervals suggest.
  The paired bootstrap's interval is BCa (bias-corrected and accelerated; Efron 1987), its p-value is never below
  ``1 / (B + 1)``;
* :func:`adjust_pvalues` - Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) over a family of
  tests; :func:`rank_tests` uses it over every head of the model: "tied with the best" and "distinguishable from
  #2" are claims about the whole family, not about one pair picked after looking.

Selection stays on dev (the paper's protocol): the "best" probe is the best by ``devacc``; test predictions are only
used to measure how sure we are about it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm

__all__ = [
    "ALPHA",
    "CORRECTION",
    "CORRECTIONS",
    "N_BOOTSTRAP",
    "accuracy_ci",
    "adjust_pvalues",
    "bca_interval",
    "correctness",
    "layer_tests",
    "mcnemar",
    "paired_bootstrap",
    "rank_tests",
    "resample_counts",
    "seed_summary",
    "wilson_interval",
]

#: Default significance level of every test and 1 - coverage of every interval.
ALPHA = 0.05
#: Default number of bootstrap resamples.
N_BOOTSTRAP = 1000
#: Multiple-comparison corrections :func:`adjust_pvalues` knows, with what each controls (for reports).
CORRECTIONS: dict[str, str] = {
    "holm": "Holm (family-wise error rate)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
}
#: The correction findings use: Holm. A tie set is a claim that *none* of the other heads is separable from the
#: best; the family-wise error rate is the error rate of that claim (BH's FDR would be of the individual rejections).
CORRECTION = "holm"


def correctness(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sentence correctness ``yhat == y`` as bool, for one probe ``[n]`` or many ``[P, n]``."""
    yhat = np.asarray(yhat)
    y = np.asarray(y)
    if yhat.shape[-1] != y.shape[-1]:
        raise ValueError(f"predictions cover {yhat.shape[-1]} sentences but there are {y.shape[-1]} labels.")
    return yhat == y


def seed_summary(df: pd.DataFrame, value: str = "acc", seed_column: str = "seed",
                 by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; NaN for one seed) and number of seeds of ``value`` per cell.

    ``by`` defaults to every column except the seed, the value and the other per-run scores, i.e. a cell is one
    (model, task, view, layer, head, settings...) and rows differing only in their seed are aggregated.
    """
    if seed_column not in df.columns or value not in df.columns:
        raise KeyError(f"seed_summary needs columns {seed_column!r} and {value!r}; the table has {list(df.columns)}.")
    if by is None:
        per_run = {seed_column, value, "devacc", "acc", "f1"}
        by = [c for c in df.columns if c not in per_run]
    by = list(by)
    grouped = df.groupby(by, dropna=False, sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{value}_mean", "std": f"{value}_std", "count": "n_seeds"})


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")


def wilson_interval(k: np.ndarray | int, n: np.ndarray | int, *, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score ``1 - alpha`` interval of a binomial proportion ``k / n`` (as fractions in [0, 1]), vectorised.

    The interval inverts the score test, so it stays inside [0, 1] and has positive width for every ``k`` including
    0 and ``n`` (upper bound 1 at ``k = n``, lower bound ``n / (n + z^2)``).
    """
    _check_alpha(alpha)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval needs 0 <= k <= n and n > 0.")
    z = float(norm.ppf(1 - alpha / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 / k = n the bound is exactly 0 / 1 (the formula gives it up to rounding)
    return (np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0)),
            np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0)))


def accuracy_ci(correct: np.ndarray, *, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy (in points, 0-100) and its Wilson ``1 - alpha`` interval, for one probe ``[n]`` or many ``[P, n]``
    (per-sentence correctness on the same ``n`` test sentences).

    Returns
    -------
    acc, low, high : arrays of shape ``()`` or ``[P]``
    """
    c = np.asarray(correct, dtype=np.float64)
    single = c.ndim == 1
    c2 = c[None] if single else c
    if c2.ndim != 2 or c2.shape[1] == 0:
        raise ValueError(f"correct must be [n] or [P, n] with n > 0, got shape {c.shape}.")
    n = c2.shape[1]
    k = c2.sum(1)
    low, high = wilson_interval(k, n, alpha=alpha)
    acc, low, high = 100 * k / n, 100 * low, 100 * high
    if single:
        return acc[0], low[0], high[0]
    return acc, low, high


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement: ``[n_boot, n]``.
    Public so a check can rebuild the very resamples a bootstrap used."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def bca_interval(boot: np.ndarray, estimate: float, jackknife: np.ndarray, *,
                 alpha: float = ALPHA) -> tuple[float, float, float, float]:
    """BCa bootstrap interval (Efron 1987) from resampled statistics ``boot`` ``[B]``, the full-sample ``estimate``
    and the leave-one-out statistics ``jackknife`` ``[n]``.

    Returns ``(low, high, q_low, q_high)``: the bounds are the ``q_low`` / ``q_high`` quantiles of ``boot`` itself
    (``np.quantile``, linear), the levels moved from ``alpha / 2`` and ``1 - alpha / 2`` by the bias correction
    ``z0`` (share of resamples below the estimate, ties counted half) and the acceleration ``a`` (jackknife
    skewness). For a symmetric, unbiased statistic they are the plain percentile levels.
    """
    _check_alpha(alpha)
    boot = np.asarray(boot, dtype=np.float64)
    b = len(boot)
    share = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / b
    share = min(max(share, 1.0 / (b + 1)), b / (b + 1.0))  # finite z0 when every resample is on one side
    z0 = float(norm.ppf(share))
    u = np.mean(jackknife) - np.asarray(jackknife, dtype=np.float64)
    den = 6.0 * float(np.sum(u * u)) ** 1.5
    a = float(np.sum(u**3)) / den if den > 0 else 0.0
    qs = []
    for z in (norm.ppf(alpha / 2), norm.ppf(1 - alpha / 2)):
        qs.append(float(norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    low, high = (float(np.quantile(boot, q)) for q in qs)
    return low, high, qs[0], qs[1]


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: are probes A and B equally accurate on the same sentences?

    Only discordant sentences count (A right and B wrong: ``b``; the reverse: ``c``); under the null each is a fair
    coin, so the p-value is the two-sided binomial test of ``b`` out of ``b + c``. 1.0 when they never disagree;
    never 0 (at least ``2 * 0.5 ** (b + c)``).
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be 1-D and the same length, got {a.shape} and {b_.shape}.")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = N_BOOTSTRAP,
                     alpha: float = ALPHA, seed: int = 0) -> dict[str, float]:
    """Accuracy difference A - B (points) with its paired BCa bootstrap interval and a two-sided p-value.

    The resamples are :func:`resample_counts` ``(n, n_boot, seed)``; ``low`` / ``high`` are their quantiles at the
    BCa levels ``q_low`` / ``q_high`` (returned too). ``p`` = twice the smaller of ``(1 + #{diff* <= 0}) / (B + 1)``
    and ``(1 + #{diff* >= 0}) / (B + 1)``, capped at 1: B resamples cannot show a p below ``1 / (B + 1)``.

    When the two probes never disagree, or the difference is the same on every sentence, every resample gives the
    same difference and a bootstrap interval would have zero width; the interval is then built from Wilson
    intervals of the two discordance rates (A right / B wrong and the reverse), which is never zero-width.
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be 1-D, non-empty and the same length, got {a.shape}, "
                         f"{b.shape}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}.")
    d = a - b
    n = len(d)
    diff = 100 * float(d.mean())
    if np.all(d == d[0]):
        nb, nc = int(np.sum(d > 0)), int(np.sum(d < 0))
        (b_lo, c_lo), (b_hi, c_hi) = wilson_interval(np.array([nb, nc]), n, alpha=alpha)
        p = 1.0 if nb == nc else float(binomtest(max(nb, nc), nb + nc, 0.5).pvalue)
        return {"diff": diff, "low": 100 * float(b_lo - c_hi), "high": 100 * float(b_hi - c_lo), "p": p,
                "q_low": np.nan, "q_high": np.nan}
    boot = 100 * (resample_counts(n, n_boot, seed) @ d) / n
    jack = 100 * (d.sum() - d) / (n - 1) if n > 1 else np.array([diff])
    low, high, q_low, q_high = bca_interval(boot, diff, jack, alpha=alpha)
    below = (1 + int(np.sum(boot <= 0))) / (n_boot + 1)
    above = (1 + int(np.sum(boot >= 0))) / (n_boot + 1)
    return {"diff": diff, "low": low, "high": high, "p": min(1.0, 2 * min(below, above)), "q_low": q_low,
            "q_high": q_high}


def adjust_pvalues(p: Sequence[float] | np.ndarray, method: str = CORRECTION) -> np.ndarray:
    """Multiple-comparison adjusted p-values over one family (NaN entries are not in the family and stay NaN).

    ``"holm"``: step-down Holm, ``p~(i) = max_{j <= i} min(1, (m - j + 1) p(j))`` over the sorted p-values; a test
    rejected at ``p~ < alpha`` keeps the family-wise error rate at ``alpha``. ``"bh"``: Benjamini-Hochberg step-up,
    ``p~(i) = min_{j >= i} min(1, m p(j) / j)``; rejections at ``p~ < q`` keep the false discovery rate at ``q``
    (independent or positively dependent tests). ``m`` = the number of non-NaN p-values (the family size).
    """
    if method not in CORRECTIONS:
        raise ValueError(f"method={method!r} is not one of {sorted(CORRECTIONS)}.")
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    vals = p[ok]
    if np.any((vals < 0) | (vals > 1)):
        raise ValueError("p-values must be in [0, 1].")
    order = np.argsort(vals, kind="stable")
    ranked = vals[order]
    i = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - i + 1) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / i)[::-1])[::-1]
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def rank_tests(devacc: Sequence[float], correct: np.ndarray, *, alpha: float = ALPHA, top_k: int = 5,
               correction: str = CORRECTION) -> pd.DataFrame:
    """Dev ranking of P probes, tested on their test predictions, corrected for testing all of them.

    Parameters
    ----------
    devacc : P dev scores (the selection criterion; ties keep the input order).
    correct : bool ``[P, n]`` per-sentence test correctness.
    top_k : ranks 1..top_k are tested against the next rank (uncorrected; a description of the ranking).
    correction : ``"holm"`` or ``"bh"`` (:func:`adjust_pvalues`), over the family of the P - 1 comparisons of every
        probe with the dev-best one.

    Returns
    -------
    DataFrame, one row per probe (input order): ``rank`` (1 = best on dev), ``acc``, ``acc_low``, ``acc_high``
    (Wilson interval), ``p_vs_best`` (McNemar against the dev-best probe; NaN for the best itself), ``p_vs_best_adj``
    (corrected over the family), ``tied_with_best`` (the best itself, or ``p_vs_best_adj >= alpha``),
    ``distinguishable_from_best`` (``p_vs_best_adj < alpha``), ``p_vs_next`` (McNemar of rank r against rank r + 1,
    for r <= top_k; NaN otherwise), ``distinguishable_from_next`` (raw), ``family_size`` (P - 1). "The best is
    distinguishable from #2" is rank 2's ``distinguishable_from_best``: a claim within the same corrected family.
    """
    c = np.asarray(correct, dtype=bool)
    dev = np.asarray(devacc, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != len(dev):
        raise ValueError(f"correct must be [P, n] with P = len(devacc) = {len(dev)}, got shape {c.shape}.")
    order = np.argsort(-dev, kind="stable")
    rank = np.empty(len(dev), dtype=np.int64)
    rank[order] = np.arange(1, len(dev) + 1)
    acc, low, high = accuracy_ci(c, alpha=alpha)
    best = order[0]
    p_best = np.array([np.nan if i == best else mcnemar(c[best], c[i]) for i in range(len(dev))])
    p_adj = adjust_pvalues(p_best, correction)
    p_next = np.full(len(dev), np.nan)
    for r in range(min(top_k, len(dev) - 1)):
        p_next[order[r]] = mcnemar(c[order[r]], c[order[r + 1]])
    tied = np.where(np.isnan(p_adj), True, p_adj >= alpha)
    return pd.DataFrame({
        "rank": rank, "devacc": dev, "acc": acc, "acc_low": low, "acc_high": high,
        "p_vs_best": p_best, "p_vs_best_adj": p_adj, "tied_with_best": tied, "distinguishable_from_best": ~tied,
        "p_vs_next": p_next, "distinguishable_from_next": p_next < alpha, "family_size": len(dev) - 1,
    })


def layer_tests(devacc: Sequence[float], correct: np.ndarray, layers: Sequence[int], *, alpha: float = ALPHA,
                correction: str = CORRECTION) -> pd.DataFrame:
    """Every head against the dev-best head of its own layer, corrected over the whole model.

    The family is every head that is not its layer's best (``L * (H - 1)`` tests for a full grid): the heatmap's
    "not distinguishable from its layer's best" marks are read across all layers at once, so they are corrected
    across all of them.

    Returns
    -------
    DataFrame, one row per probe (input order): ``p_vs_layer_best`` (McNemar; NaN for a layer best),
    ``p_vs_layer_best_adj``, ``tied_with_layer_best`` (a layer best, or ``p_vs_layer_best_adj >= alpha``),
    ``layer_family_size``.
    """
    c = np.asarray(correct, dtype=bool)
    dev = np.asarray(devacc, dtype=np.float64)
    lay = np.asarray(layers)
    if c.ndim != 2 or c.shape[0] != len(dev) or len(lay) != len(dev):
        raise ValueError(f"correct must be [P, n] and layers P long with P = len(devacc) = {len(dev)}; got "
                         f"{c.shape} and {len(lay)} layers.")
    p = np.full(len(dev), np.nan)
    for layer in np.unique(lay):
        idx = np.flatnonzero(lay == layer)
        best = idx[np.argmax(dev[idx])]  # first maximum: ties keep head order, as the sweep's selection
        for i in idx:
            if i != best:
                p[i] = mcnemar(c[best], c[i])
    adj = adjust_pvalues(p, correction)
    return pd.DataFrame({"p_vs_layer_best": p, "p_vs_layer_best_adj": adj,
                         "tied_with_layer_best": np.where(np.isnan(adj), True, adj >= alpha),
                         "layer_family_size": int(np.sum(~np.isnan(p)))})
