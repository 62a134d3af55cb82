"""Test scores over seeds: mean and s.d. per readout, and paired comparisons between readouts on the same seeds.

Why paired: two readouts fine-tuned with the same seed share the classifier's initial draw only partly, but they share
the data order, the dev slice and the test set; the seed-to-seed spread of fine-tuning is often larger than the
difference between readouts, so only the per-seed differences say whether one readout is better.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

__all__ = ["paired_table", "summary_table"]

_GROUP = ["model", "task", "readout"]


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and s.d. (ddof 1) of dev and test scores per model × task × readout, with the seeds used."""
    if rows.empty:
        return pd.DataFrame(columns=[*_GROUP, "representation", "metric", "n_seeds", "seeds", "dev_mean",
                                     "test_mean", "test_sd"])
    out = []
    for keys, g in rows.groupby(_GROUP, sort=False):
        g = g.sort_values("seed")
        test = g["acc"].to_numpy(dtype=float)
        out.append({
            **dict(zip(_GROUP, keys)),
            "representation": ";".join(sorted(set(g["representation"].astype(str)))),
            "metric": g["metric"].iloc[0],
            "n_seeds": len(g),
            "seeds": ",".join(str(int(s)) for s in g["seed"]),
            "dev_mean": float(g["devacc"].mean()),
            "dev_sd": float(g["devacc"].std(ddof=1)) if len(g) > 1 else float("nan"),
            "test_mean": float(test.mean()),
            "test_sd": float(test.std(ddof=1)) if len(g) > 1 else float("nan"),
            "seconds_per_epoch": float(g["seconds_per_epoch"].mean()),
            "dev_source": g["dev_source"].iloc[0],
        })
    return pd.DataFrame(out)


def paired_table(rows: pd.DataFrame) -> pd.DataFrame:
    """For each pair of readouts of one model × task: the per-seed test differences (b − a) on their common seeds,
    mean, s.d., how often b won, and a paired t-test p-value (two-sided; NaN below 2 seeds)."""
    from scipy.stats import ttest_rel

    out = []
    for (model, task), g in rows.groupby(["model", "task"], sort=False):
        reads = list(dict.fromkeys(g["readout"]))
        for a, b in itertools.combinations(reads, 2):
            A = g[g["readout"] == a].set_index("seed")["acc"]
            B = g[g["readout"] == b].set_index("seed")["acc"]
            seeds = sorted(set(A.index) & set(B.index))
            if not seeds:
                continue
            d = np.array([B[s] - A[s] for s in seeds], dtype=float)
            p = float("nan")
            if len(seeds) >= 2 and np.std(d) > 0:
                p = float(ttest_rel(B[seeds].to_numpy(float), A[seeds].to_numpy(float)).pvalue)
            out.append({
                "model": model, "task": task, "a": a, "b": b, "n_seeds": len(seeds),
                "seeds": ",".join(str(int(s)) for s in seeds),
                "mean_diff": float(d.mean()),
                "sd_diff": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
                "b_wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
                "p_paired_t": p if not math.isnan(p) else float("nan"),
            })
    return pd.DataFrame(out, columns=["model", "task", "a", "b", "n_seeds", "seeds", "mean_diff", "sd_diff",
                                      "b_wins", "ties", "p_paired_t"])
