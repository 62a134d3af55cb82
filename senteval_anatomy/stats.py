"""Uncertainty of probing results: seed spread, bootstrap intervals and paired tests between heads.

Why: on a test set of a few hundred or a few thousand sentences, a one-point gap between two heads is often noise,
and a probe's accuracy moves with its seed. Three tools, all on numbers a sweep already has:

* :func:`seed_summary` - mean, standard deviation and count per cell of a results table over probe seeds;
* :func:`bootstrap_ci` - percentile bootstrap interval of test accuracy from per-sentence correctness, for many
  probes at once with the *same* resamples (so intervals of heads evaluated on the same sentences are comparable);
* :func:`mcnemar` and :func:`paired_bootstrap` - is probe A better than probe B on the same test sentences? Paired
  tests use the per-sentence agreement, so they detect gaps far smaller than the two marginal intervals suggest;
* :func:`rank_tests` - the dev-selected ranking (best head, top-k) with each rank tested against the next, and every
  probe tested against the best: which cells are distinguishable from the best at all.

Selection stays on dev (the paper's protocol): the "best" probe is the best by ``devacc``; test predictions are only
used to measure how sure we are about it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA",
    "N_BOOTSTRAP",
    "bootstrap_ci",
    "correctness",
    "mcnemar",
    "paired_bootstrap",
    "rank_tests",
    "seed_summary",
]

#: Default significance level of every test and 1 - coverage of every interval.
ALPHA = 0.05
#: Default number of bootstrap resamples.
N_BOOTSTRAP = 1000


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


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement: ``[n_boot, n]``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def bootstrap_ci(correct: np.ndarray, *, n_boot: int = N_BOOTSTRAP, alpha: float = ALPHA,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy (in points, 0-100) and its percentile bootstrap ``1 - alpha`` interval.

    Parameters
    ----------
    correct : bool array ``[n]`` or ``[P, n]``
        Per-sentence correctness of one or P probes on the same ``n`` test sentences. All probes see the same
        resamples.

    Returns
    -------
    acc, low, high : arrays of shape ``()`` or ``[P]``
    """
    c = np.asarray(correct, dtype=np.float64)
    single = c.ndim == 1
    c2 = c[None] if single else c
    if c2.ndim != 2 or c2.shape[1] == 0:
        raise ValueError(f"correct must be [n] or [P, n] with n > 0, got shape {c.shape}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    n = c2.shape[1]
    counts = _resample_counts(n, n_boot, seed)
    boot = counts @ c2.T / n  # [n_boot, P]
    acc = 100 * c2.mean(1)
    low, high = (100 * np.quantile(boot, q, axis=0) for q in (alpha / 2, 1 - alpha / 2))
    if single:
        return acc[0], low[0], high[0]
    return acc, low, high


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: are probes A and B equally accurate on the same sentences?

    Only discordant sentences count (A right and B wrong: ``b``; the reverse: ``c``); under the null each is a fair
    coin, so the p-value is the two-sided binomial test of ``b`` out of ``b + c``. 1.0 when they never disagree.
    """
    from scipy.stats import binomtest

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
    """Accuracy difference A - B (points) with its paired percentile bootstrap interval and a two-sided p-value
    (twice the smaller share of resampled differences on either side of 0, capped at 1)."""
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be 1-D, non-empty and the same length, got {a.shape}, "
                         f"{b.shape}.")
    d = a - b
    n = len(d)
    boot = 100 * (_resample_counts(n, n_boot, seed) @ d) / n
    diff = 100 * float(d.mean())
    if not d.any():
        return {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    p = min(1.0, 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
    return {"diff": diff, "low": float(np.quantile(boot, alpha / 2)), "high": float(np.quantile(boot, 1 - alpha / 2)),
            "p": p}


def rank_tests(devacc: Sequence[float], correct: np.ndarray, *, alpha: float = ALPHA, top_k: int = 5,
               n_boot: int = N_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """Dev ranking of P probes, tested on their test predictions.

    Parameters
    ----------
    devacc : P dev scores (the selection criterion; ties keep the input order).
    correct : bool ``[P, n]`` per-sentence test correctness.
    top_k : ranks 1..top_k are tested against the next rank.

    Returns
    -------
    DataFrame, one row per probe (input order): ``rank`` (1 = best on dev), ``acc``, ``acc_low``, ``acc_high``
    (bootstrap interval), ``p_vs_best`` (McNemar against the dev-best probe; NaN for the best itself),
    ``distinguishable_from_best`` (p < alpha), ``p_vs_next`` (McNemar of rank r against rank r + 1, for
    r <= top_k; NaN otherwise) and ``distinguishable_from_next``.
    """
    c = np.asarray(correct, dtype=bool)
    dev = np.asarray(devacc, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != len(dev):
        raise ValueError(f"correct must be [P, n] with P = len(devacc) = {len(dev)}, got shape {c.shape}.")
    order = np.argsort(-dev, kind="stable")
    rank = np.empty(len(dev), dtype=np.int64)
    rank[order] = np.arange(1, len(dev) + 1)
    acc, low, high = bootstrap_ci(c, n_boot=n_boot, alpha=alpha, seed=seed)
    best = order[0]
    p_best = np.array([np.nan if i == best else mcnemar(c[best], c[i]) for i in range(len(dev))])
    p_next = np.full(len(dev), np.nan)
    for r in range(min(top_k, len(dev) - 1)):
        p_next[order[r]] = mcnemar(c[order[r]], c[order[r + 1]])
    return pd.DataFrame({
        "rank": rank, "devacc": dev, "acc": acc, "acc_low": low, "acc_high": high,
        "p_vs_best": p_best, "distinguishable_from_best": p_best < alpha,
        "p_vs_next": p_next, "distinguishable_from_next": p_next < alpha,
    })
