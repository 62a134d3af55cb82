"""A test fixture: random tables in the sweep's format (kept out of the package: it is never a result)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from senteval_anatomy.tables.table import validate_table


def synthetic_table(
    num_layers: int = 12,
    num_heads: int = 12,
    tasks: Sequence[str] = ("Length", "Tense"),
    *,
    model: str = "synthetic",
    pooling: str = "cls",
    seed: int = 0,
    missing: float = 0.0,
    metric: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A random table in the sweep's format, for testing the queries and the figures -- never a result.

    Each task gets a peak layer; head scores fall off with distance from it plus noise, so heatmaps and curves
    have the structure real sweeps show. ``missing`` is the fraction of cells dropped (an interrupted sweep).
    Relatedness-like tasks (``metric={"STSBenchmark": "pearson"}``) get scores in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for ti, task in enumerate(tasks):
        met = (metric or {}).get(task, "acc")
        peak = rng.uniform(0, num_layers - 1)
        lo, hi = (20.0 + 10 * (ti % 3), 90.0 - 5 * (ti % 4)) if met == "acc" else (0.05, 0.7)

        def score(
            layer: float, spread: float, lo: float = lo, hi: float = hi, peak: float = peak, met: str = met
        ) -> float:
            base = math.exp(-(((layer - peak) / max(num_layers / 3, 1.0)) ** 2))
            return float(np.clip(lo + (hi - lo) * base * spread, -1 if met == "pearson" else 0, 100))

        for layer in range(num_layers):
            for head in range(num_heads):
                spread = float(rng.beta(2, 2))
                dev = score(layer, spread)
                test = dev + float(rng.normal(0, 0.01 * (hi - lo)))
                rows.append(
                    dict(
                        view="heads",
                        layer=layer,
                        head=head,
                        devacc=round(dev, 4),
                        acc=round(test, 4),
                        task=task,
                        metric=met,
                    )
                )
        for layer in range(-1, num_layers):
            dev = score(max(layer, 0), 1.0) if layer >= 0 else lo + 0.3 * (hi - lo)
            rows.append(
                dict(
                    view="layers",
                    layer=layer,
                    head=-1,
                    devacc=round(dev, 4),
                    acc=round(dev + float(rng.normal(0, 0.01 * (hi - lo))), 4),
                    task=task,
                    metric=met,
                )
            )
    df = pd.DataFrame(rows)
    if missing > 0:
        df = df[rng.random(len(df)) >= missing]
    df = df.assign(
        model=model,
        fingerprint=f"synthetic-{seed}",
        pooling=pooling,
        name=None,
        ndev=100,
        ntest=100,
        f1=np.nan,
        harness="builtin",
        usepytorch=False,
        classifier=json.dumps({"nhid": 0}),
        kfold=5,
        seed=seed,
        num_layers=num_layers,
        num_heads=num_heads,
        package_version="synthetic",
    )
    return validate_table(df)
