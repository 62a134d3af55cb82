"""Findings inside the sweep: variants of the same stacked run, and column providers per unit.

With any findings option on, each unit of the sweep (one task x view) trains its probes **once**, under several
:class:`~senteval_anatomy.engine.batched.Variant` s that are slots of the same stacked runs:

* variant 0: the task's own labels and seed -- the plain table's numbers, bit for bit;
* ``seeds - 1`` more probe seeds (``seed + 1``, ...): ``acc_mean`` / ``acc_std``;
* one variant per control kind of :data:`senteval_anatomy.engine.controls.CONTROL_KINDS` (``controls=True``): a label
  function per split; each fills its two columns (``<kind>_control_acc``, ``<kind>_selectivity``). A new kind of
  control is one entry in that registry; this loop does not change.

The untrained twin (``untrained_baseline``) is the same probes on another feature source (the twin's stored
features, encoded with the run's ``batch_size``). MDL and ablation are *column providers*: per unit they add
columns from the unit's embeddings (MDL) or from the model (ablation), without training a probe again. Paired
statistics (Wilson interval, dev rank, McNemar tests with Holm's correction) come from variant 0's test
predictions.

The meaning of every column is in :mod:`senteval_anatomy.analysis.findings`; the schema is
:data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..engine.controls import CONTROL_KINDS, control_tasks, majority_acc
from ..vocab import ABLATION_MODES, CONTROL_KIND_NAMES, FINDINGS_COLUMNS, RESULT_COLUMNS, main_scores
from .identity import key_hash

__all__ = ["FindingsOptions", "TABLE_COLUMNS", "UnitFindings", "paired_columns", "typed"]

#: Every column of ``results.csv``: the result schema, then the findings columns (empty when an option is off).
TABLE_COLUMNS: tuple[str, ...] = (*RESULT_COLUMNS, *FINDINGS_COLUMNS)

_TEXT = ("ablation_measure", "tied_with_best", "tied_with_layer_best", "correction")
_NUMERIC = tuple(c for c in FINDINGS_COLUMNS if c not in _TEXT)


@dataclass(frozen=True)
class FindingsOptions:
    """The findings options of a sweep (all off: the plain table). See :mod:`senteval_anatomy.analysis.findings`."""

    controls: bool = False
    control_seed: int = 0
    untrained_baseline: bool = False
    untrained_seed: int = 0
    seeds: int = 1
    mdl: bool = False
    ablate: bool = False
    ablation_mode: str = "zero"
    ablation_sentences: int = 200
    ablation_ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    lm_model: Any = field(default=None, compare=False)
    alpha: float = 0.05
    top_k: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be a positive int (number of probe seeds), got {self.seeds!r}.")
        if self.ablation_mode not in ABLATION_MODES:
            raise ValueError(f"ablation_mode={self.ablation_mode!r} is not one of {', '.join(ABLATION_MODES)}.")
        object.__setattr__(self, "ablation_ks", tuple(int(k) for k in self.ablation_ks))

    def any(self) -> bool:
        """Whether any option asks for more than the plain table (then every unit gets the findings columns)."""
        return bool(self.controls or self.untrained_baseline or self.seeds > 1 or self.mdl or self.ablate)

    def key(self) -> dict[str, Any]:
        """The options that determine a unit's findings columns, joined to the unit's key."""
        lm = None
        if self.lm_model is not None:
            cfg = getattr(self.lm_model, "config", None)
            lm = {"class": type(self.lm_model).__name__, "name": str(getattr(cfg, "name_or_path", "") or ""),
                  "config": key_hash(cfg.to_dict()) if hasattr(cfg, "to_dict") else None}
        # lazy: start-up time (scipy.stats): light commands import the sweeping package
        from ..engine.stats import CORRECTION

        return {"controls": list(CONTROL_KIND_NAMES) if self.controls else [],
                "control_seed": int(self.control_seed) if self.controls else None, "correction": CORRECTION,
                "untrained_seed": int(self.untrained_seed) if self.untrained_baseline else None,
                "seeds": int(self.seeds), "mdl": bool(self.mdl),
                "ablation": ({"mode": self.ablation_mode, "sentences": int(self.ablation_sentences),
                              "ks": list(self.ablation_ks), "lm_model": lm} if self.ablate else None),
                "alpha": float(self.alpha), "top_k": int(self.top_k), "interval": "wilson"}


def typed(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every column of :data:`TABLE_COLUMNS` in order (missing findings columns empty) and numeric
    findings columns (also after a unit file or CSV round trip)."""
    table = table.copy()
    for c in FINDINGS_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
    for c in _NUMERIC:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    for c in _TEXT:  # text / yes-no: missing is None, so parquet can type it
        has = table[c].notna()
        table[c] = table[c].astype(object).where(has, None) if has.any() else np.nan
    return table[list(TABLE_COLUMNS)]


class UnitFindings:
    """The findings of one unit, gathered chunk by chunk of probes: the variants to train, then the columns.

    ``feed(vres, emb, ...)`` takes each chunk's results (one list per variant) and its embeddings;
    ``columns(df, probes, view)`` returns the findings columns of the unit's rows ``df``.
    """

    def __init__(self, options: FindingsOptions, task: Any, params: Any) -> None:
        # lazy: start-up time (torch): light commands import the sweeping package
        from ..engine.batched import Variant

        self.options, self.task, self.params = options, task, params
        self.classification = task.spec.kind in ("classification", "pair_classification")
        self.paired = (self.classification and task.spec.evaluator in ("split", "kfold")
                       and bool(params.usepytorch))
        ctasks = control_tasks(task, options.control_seed) if options.controls else {}
        self.controls = [(name, CONTROL_KINDS[name]) for name in ctasks]
        ordered = task.sorted_data()  # control labels in the order of the task's embeddings
        self.variants = ([Variant()] + [Variant(seed=int(params.seed) + k) for k in range(1, options.seeds)]
                         + [Variant(labels=ct.labels_for(ordered)) for ct in ctasks.values()])
        self.seed_acc: list[list[float]] = [[] for _ in range(options.seeds - 1)]
        self.control_acc: list[list[float]] = [[] for _ in self.controls]
        self.untrained_acc: list[float] = []
        self.mdl_rows: list[dict] = []
        self.correct: list[np.ndarray] = []

    def feed(self, vres: Sequence[list[dict]], emb: Any, *, progress: bool) -> None:
        """One chunk of probes: variant results (``vres[0]`` is the task's own), and the chunk's embeddings for
        the column providers that read them (MDL, test labels of the paired tests)."""
        # lazy: start-up time (torch, scipy.stats): light commands import the sweeping package
        from ..engine.mdl import mdl_many
        from ..engine.stats import correctness

        n_seeds = self.options.seeds
        for k in range(1, n_seeds):
            self.seed_acc[k - 1] += [main_scores(r).acc for r in vres[k]]
        for j in range(len(self.controls)):
            self.control_acc[j] += [float(r["acc"]) for r in vres[n_seeds + j]]
        if self.paired:
            self.correct.append(correctness(np.stack([r["yhat"] for r in vres[0]]), np.asarray(emb["test"]["y"])))
        if self.options.mdl and self.classification:
            self.mdl_rows += mdl_many(self.task, emb, self.params, progress=progress)

    def columns(self, df: pd.DataFrame, probes: list[tuple[int, int]], view: str, *, encoder: Any,
                progress: bool) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The findings columns of the unit's rows ``df`` (aligned with ``probes``) and, with ``ablate`` on the
        heads view, the unit's top-k ablation curve."""
        o = self.options
        extra = pd.DataFrame(np.nan, index=df.index, columns=list(FINDINGS_COLUMNS), dtype=object)
        acc = df["acc"].to_numpy(dtype=float)
        if self.paired:
            paired = paired_columns(df["devacc"].to_numpy(dtype=float), np.concatenate(self.correct), probes,
                                    view, alpha=o.alpha, top_k=o.top_k)
            for c in paired.columns:
                extra[c] = paired[c].to_numpy()
        stacked = np.stack([acc] + [np.asarray(a, dtype=float) for a in self.seed_acc])
        extra["n_seeds"] = o.seeds
        extra["acc_mean"] = stacked.mean(0)
        extra["acc_std"] = stacked.std(0, ddof=1) if o.seeds > 1 else np.nan
        if self.classification:
            extra["majority_acc"] = majority_acc(self.task)
            extra["majority_selectivity"] = acc - extra["majority_acc"].to_numpy(dtype=float)
        for (_, kind), values in zip(self.controls, self.control_acc, strict=True):
            extra[kind.acc_column] = values
            extra[kind.selectivity_column] = acc - np.asarray(values, dtype=float)
        if self.untrained_acc:
            extra["untrained_acc"] = self.untrained_acc
            extra["untrained_gain"] = acc - np.asarray(self.untrained_acc, dtype=float)
        if self.mdl_rows:
            extra["mdl"] = [r["mdl"] for r in self.mdl_rows]
            extra["compression"] = [r["compression"] for r in self.mdl_rows]
        curve = None
        if o.ablate and view == "heads":
            curve = self._ablation(extra, df, probes, encoder, progress)
        return extra, curve

    def _ablation(self, extra: pd.DataFrame, df: pd.DataFrame, probes: list[tuple[int, int]], encoder: Any,
                  progress: bool) -> pd.DataFrame | None:
        """Column provider: each head ablated alone on the task's first test sentences; and the top-k ablation
        curve (heads ranked on dev)."""
        # lazy: start-up time (torch): light commands import the sweeping package
        from ..encoders.ablation import ablation_reference, ablation_scan, topk_ablation_curve

        o, task = self.options, self.task
        test = task.data.get("test") or next(iter(task.data.values()))
        side = test["X"] if "X" in test else test["A"]
        sents = list(dict.fromkeys(" ".join(s) for s in side))[:o.ablation_sentences]
        reference = ablation_reference(task) if o.ablation_mode == "mean" else None
        scan = ablation_scan(encoder, sents, mode=o.ablation_mode, lm_model=o.lm_model, progress=progress,
                             reference=reference)
        delta = {(int(r.layer), int(r.head)): float(r.delta) for r in scan.itertuples()}
        extra["ablation_delta"] = [delta[p] for p in probes]
        extra["ablation_measure"] = scan["measure"].iloc[0]
        ranked = [probes[i] for i in np.argsort(-df["devacc"].to_numpy(dtype=float), kind="stable")]
        ks = [k for k in o.ablation_ks if 1 <= k <= len(ranked)]
        if not ks:
            return None
        curve = topk_ablation_curve(encoder, sents, ranked, ks, mode=o.ablation_mode, lm_model=o.lm_model,
                                    seed=int(self.params.seed), reference=reference)
        curve.insert(0, "task", task.spec.name)
        return curve


def paired_columns(devacc: np.ndarray, correct: np.ndarray, probes: list[tuple[int, int]], view: str, *,
                   alpha: float, top_k: int) -> pd.DataFrame:
    """Column provider from variant 0's test predictions: Wilson interval, dev rank, McNemar against the dev best
    (Holm-corrected over the view), the next rank and (heads) the dev best of the same layer."""
    # lazy: start-up time (scipy.stats): light commands import the sweeping package
    from ..engine.stats import CORRECTION, layer_tests, rank_tests

    ranked = rank_tests(devacc, correct, alpha=alpha, top_k=top_k, correction=CORRECTION)
    out = pd.DataFrame({"acc_low": ranked["acc_low"], "acc_high": ranked["acc_high"], "dev_rank": ranked["rank"],
                        "p_vs_best": ranked["p_vs_best"], "p_vs_best_adj": ranked["p_vs_best_adj"],
                        "tied_with_best": ranked["tied_with_best"], "p_vs_next": ranked["p_vs_next"],
                        "family_size": ranked["family_size"], "correction": CORRECTION})
    if view == "heads":  # layers view: no "layer best"
        layer = layer_tests(devacc, correct, [lay for lay, _ in probes], alpha=alpha, correction=CORRECTION)
        for c in ("p_vs_layer_best", "p_vs_layer_best_adj", "tied_with_layer_best", "layer_family_size"):
            out[c] = layer[c].to_numpy()
    return out
