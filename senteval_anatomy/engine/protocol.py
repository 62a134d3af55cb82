"""SentEval's evaluation protocol, written once: what the solo engine (:meth:`Task.evaluate
<senteval_anatomy.engine.tasks.Task.evaluate>`) and the batched trainer (:func:`~senteval_anatomy.engine.batched.
evaluate_many`) must both do around the probes, so that they cannot drift apart.

* **Grids** (:func:`reg_grid`): PyTorch weight decay ``10**t, t = -5..-2`` for every classifier evaluator;
  ``LogisticRegression`` ``C = 2**t`` with ``t = -2..3`` (split, innerkfold) or ``-1..5`` (kfold).
* **Scores and rounding**: a single accuracy becomes :func:`split_score` ``round(100 * acc, 2)`` (Python's
  ``round``), a cross-validated grid value :func:`cv_score` ``round(100 * np.mean(accs), 2)`` and a mean over outer
  folds :func:`mean_score` ``round(np.mean(scores), 2)`` (NumPy's ``round``): SentEval's own expressions, which
  differ on ties such as ``2.675``.
* **Selection** (:func:`select_reg`): ``regs[np.argmax(scores)]``, ties to the first (smallest) value; ``devacc`` is
  the best grid score, not the refit model's.
* **Folds** (:func:`stratified_kfold`): ``StratifiedKFold(k, shuffle=True, random_state)`` with ``random_state =
  seed`` for KFold and :data:`INNER_KFOLD_RANDOM_STATE` (1111, ``seed`` ignored) for InnerKFold; the final
  PyTorch model of KFold / InnerKFold is refit with a :data:`VALIDATION_SPLIT` (5 %) early-stopping split.
* **Per task**: pair features ``[|u - v|, u * v]`` (:func:`pair_features`), WordContent's forced linear probe
  (:func:`task_classifier`), which arrays feed which evaluator argument (:func:`evaluator_call`), MRPC's F1 and the
  final result dict of each task family (:func:`result_dict`), correlations read as 0 when NaN
  (:func:`correlation_or_zero`).

For CR, MR, MPQA and SUBJ SentEval has no dev split: their ``devacc`` is the mean best *inner cross-validation*
score (nested CV on one pool), not an accuracy on held-out dev data.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .params import apply_defaults, dotdict

__all__ = [
    "PYTORCH_L2_GRID",
    "SKLEARN_C_GRIDS",
    "NOREG_L2",
    "VALIDATION_SPLIT",
    "INNER_KFOLD_RANDOM_STATE",
    "reg_grid",
    "split_score",
    "cv_score",
    "mean_score",
    "select_reg",
    "stratified_kfold",
    "pair_features",
    "task_classifier",
    "evaluation_params",
    "check_similarity",
    "EvaluatorCall",
    "evaluator_call",
    "mrpc_f1",
    "correlation_or_zero",
    "pearson_or_zero",
    "relatedness_scores",
    "result_dict",
]

# --------------------------------------------------------------------------------------------------------------
# Grids and constants (computed the way SentEval computes them, so that the floats are identical)
# --------------------------------------------------------------------------------------------------------------

#: weight_decay grid of every PyTorch classifier evaluator: ``[10**t for t in range(-5, -1)]``.
PYTORCH_L2_GRID: tuple[float, ...] = tuple(10**t for t in range(-5, -1))

#: ``C`` grids of ``LogisticRegression`` per evaluator (``usepytorch=False``).
SKLEARN_C_GRIDS: dict[str, tuple[float, ...]] = {
    "split": tuple(2**t for t in range(-2, 4, 1)),  # 0.25 ... 8
    "kfold": tuple(2**t for t in range(-1, 6, 1)),  # 0.5 ... 32
    "innerkfold": tuple(2**t for t in range(-2, 4, 1)),  # 0.25 ... 8
}

#: SplitClassifier's ``noreg`` grids (SNLI only in SentEval; not reachable from ``params``).
NOREG_L2 = {"pytorch": (1e-9,), "sklearn": (1e9,)}

#: Fraction held out for early stopping when a final model is refit on a whole training pool (KFold, InnerKFold).
VALIDATION_SPLIT = 0.05

#: InnerKFoldClassifier's outer and inner ``StratifiedKFold`` random_state: hard-coded in SentEval, ``seed`` ignored.
INNER_KFOLD_RANDOM_STATE = 1111


def reg_grid(evaluator: str, usepytorch: bool, noreg: bool = False) -> tuple[float, ...]:
    """The regularisation grid of an evaluator (``'split'``, ``'kfold'`` or ``'innerkfold'``) and back end:
    weight decays for PyTorch, ``C`` values for scikit-learn; ``noreg`` (split only) gives SentEval's one-value grid.

    >>> reg_grid("kfold", usepytorch=False)
    (0.5, 1, 2, 4, 8, 16, 32)
    """
    if evaluator not in SKLEARN_C_GRIDS:
        raise ValueError(f"unknown evaluator {evaluator!r}; expected one of {sorted(SKLEARN_C_GRIDS)}")
    if noreg:
        return NOREG_L2["pytorch" if usepytorch else "sklearn"]
    return PYTORCH_L2_GRID if usepytorch else SKLEARN_C_GRIDS[evaluator]


# --------------------------------------------------------------------------------------------------------------
# Scores, rounding, selection, folds
# --------------------------------------------------------------------------------------------------------------


def split_score(accuracy: float) -> float:
    """``round(100 * accuracy, 2)`` with Python's ``round`` (SentEval's score of one fitted probe on one set).

    >>> split_score(0.8125)
    81.25
    """
    return round(100 * accuracy, 2)


def cv_score(fold_accuracies: Sequence[float]) -> float:
    """``round(100 * np.mean(fold_accuracies), 2)``: NumPy's ``round`` of a float64 (a grid value's CV score)."""
    return round(100 * np.mean(fold_accuracies), 2)


def mean_score(scores: Sequence[float]) -> float:
    """``round(np.mean(scores), 2)`` (NumPy's ``round``): InnerKFold's mean over outer folds.

    NumPy's ``round`` differs from Python's on ties (``round(2.675, 2)`` is 2.67):

    >>> float(mean_score([2.675]))
    2.68
    """
    return round(np.mean(scores), 2)


def select_reg(scores: Sequence[float], regs: Sequence[float]) -> tuple[float, float]:
    """``(regs[argmax], max)`` with ``np.argmax``: on equal (rounded) scores the first value wins.

    >>> select_reg([80.0, 81.5, 81.5], [1e-5, 1e-4, 1e-3])
    (0.0001, 81.5)
    """
    i = int(np.argmax(scores))
    return regs[i], scores[i]


def stratified_kfold(k: int, random_state: int):
    """SentEval's folds: ``StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)``."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)


# --------------------------------------------------------------------------------------------------------------
# Per-task rules
# --------------------------------------------------------------------------------------------------------------


def pair_features(u, v) -> np.ndarray:
    """SentEval's pair features ``[|u - v|, u * v]`` (concatenated on the last axis: shape [n, 2d])."""
    u, v = np.asarray(u), np.asarray(v)
    return np.c_[np.abs(u - v), u * v]


def task_classifier(spec: Any, classifier: Mapping[str, Any]) -> Mapping[str, Any]:
    """The probe config a task trains with: a task whose spec has ``force_linear`` (WordContent) trains a linear
    probe (``nhid = 0``, on a deep copy, so the caller's ``params.classifier`` is untouched); every other task uses
    ``classifier`` as given."""
    if spec.force_linear and (classifier.get("nhid") or 0) > 0:
        forced = copy.deepcopy(dict(classifier))
        forced["nhid"] = 0
        return forced
    return classifier


def evaluation_params(params: Mapping[str, Any] | None, task_seed: int) -> tuple[dotdict, int]:
    """``(params with SentEval's defaults, seed)`` for evaluating a task: the seed is ``params['seed']`` when set,
    else the seed the task was loaded with."""
    raw = params if params is not None else {}
    seed = raw["seed"] if "seed" in raw and raw["seed"] is not None else task_seed
    return apply_defaults(raw), seed


def check_similarity(similarity: Any) -> Callable | None:
    """``params.similarity`` for STS12-16: ``None`` (the default cosine) or a callable ``f(u, v) -> float``."""
    if similarity is not None and not callable(similarity):
        raise ValueError(f"params.similarity must be a callable f(u, v) -> float, got {similarity!r}.")
    return similarity


@dataclass(frozen=True)
class EvaluatorCall:
    """Which evaluator a task runs and with what: ``args`` are the feature / label arrays in the evaluator's
    positional order, ``kwargs`` the settings taken from ``params``. The solo engine passes them to
    ``evaluators.<evaluator>_eval``, the batched path to ``batched.<evaluator>_eval_many``."""

    evaluator: str
    args: tuple
    kwargs: dict[str, Any] = field(default_factory=dict)


def evaluator_call(spec: Any, embeddings: Mapping[str, Mapping[str, Any]], params: dotdict, seed: int,
                   n_classes: int | None, features: Callable[[Mapping[str, Any]], Any]) -> EvaluatorCall:
    """The evaluator call of a classification or relatedness task (not STS).

    Parameters
    ----------
    spec : TaskSpec
    embeddings : the layout of ``Task.embed``
    params : params after :func:`evaluation_params`
    features : turns one split's record (``{"X", "y"}`` or ``{"A", "B", "y"}``) into what the evaluator takes as
        features: the solo engine builds :func:`pair_features`, the batched path passes ``(A, B)`` on.
    """
    def split(name: str) -> tuple[Any, Any]:
        return features(embeddings[name]), embeddings[name]["y"]

    if spec.evaluator == "relatedness":
        return EvaluatorCall("relatedness", (*split("train"), *split("dev"), *split("test")),
                             {"seed": seed, "device": params.device})
    kw: dict[str, Any] = {"nclasses": n_classes, "seed": seed, "usepytorch": bool(params.usepytorch),
                          "classifier": task_classifier(spec, params.classifier), "device": params.device}
    if spec.evaluator == "split":
        return EvaluatorCall("split", (*split("train"), *split("dev"), *split("test")), kw)
    if spec.evaluator == "kfold":
        return EvaluatorCall("kfold", (*split("train"), *split("test")), dict(kw, kfold=params.kfold))
    if spec.evaluator == "innerkfold":
        return EvaluatorCall("innerkfold", split("all"), dict(kw, kfold=params.kfold))
    raise ValueError(f"{spec.name}: no evaluator call for {spec.evaluator!r}")


def mrpc_f1(y_test, yhat) -> float:
    """MRPC's extra score: ``round(100 * f1_score(y_test, yhat), 2)`` of the refit model's test predictions."""
    from sklearn.metrics import f1_score

    return float(round(100 * f1_score(y_test, yhat), 2))


def correlation_or_zero(fn: Callable, a, b) -> float:
    """``fn(a, b)[0]`` (a scipy correlation) as a float, with NaN (a constant input) read as 0, as SentEval does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fn(a, b)[0]
    return 0.0 if r != r else float(r)


def pearson_or_zero(a, b) -> float:
    """Pearson's r with NaN read as 0: the relatedness early-stopping score and test score."""
    from scipy.stats import pearsonr

    return correlation_or_zero(pearsonr, a, b)


def relatedness_scores(devpearson: float, yhat: np.ndarray, y_test) -> dict[str, Any]:
    """SICK-R / STS-B scores of a trained regression: ``devpearson`` (its best dev Pearson), test ``pearson`` and
    ``spearman`` (NaN read as 0) and ``mse`` of ``yhat`` against the raw test scores, and ``yhat`` itself."""
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_squared_error

    y_test = list(y_test)
    return {
        "devpearson": float(devpearson),
        "pearson": pearson_or_zero(yhat, y_test),
        "spearman": correlation_or_zero(spearmanr, yhat, y_test),
        "mse": float(mean_squared_error(yhat, y_test)),
        "yhat": yhat,
    }


def _n_rows(rec: Mapping[str, Any]) -> int:
    return len(rec["X"] if "X" in rec else rec["A"])


def result_dict(spec: Any, r: Mapping[str, Any], embeddings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """SentEval's result dict of a task, from its evaluator's output ``r`` (one probe) and the embeddings.

    ======================  ========================================================================================
    task family             keys
    ======================  ========================================================================================
    split (SST, SICK-E,     ``devacc`` (best dev grid score), ``acc``, ``ndev``, ``ntest`` (dev / test rows)
    probing)
    kfold (TREC, MRPC)      ``devacc`` (best CV score on train), ``acc``, MRPC also ``f1``; ``ndev`` = train rows,
                            ``ntest``
    innerkfold (CR, MR,     ``devacc`` (mean best *inner-CV* score: there is no dev split), ``acc``; ``ndev`` =
    MPQA, SUBJ)             ``ntest`` = pool size
    relatedness (SICK-R,    ``devpearson``, ``pearson``, ``spearman``, ``mse``, ``yhat``, ``ndev``, ``ntest``
    STS-B)
    sts (STS12-16)          the evaluator's dict as it is
    ======================  ========================================================================================
    """
    ev = spec.evaluator
    if ev == "sts":
        return dict(r)
    if ev == "split":
        return {"devacc": r["devacc"], "acc": r["acc"], "ndev": _n_rows(embeddings["dev"]),
                "ntest": _n_rows(embeddings["test"])}
    if ev == "kfold":
        out = {"devacc": r["devacc"], "acc": r["acc"]}
        if spec.extra_f1:
            out["f1"] = mrpc_f1(embeddings["test"]["y"], r["yhat"])
        out.update(ndev=_n_rows(embeddings["train"]), ntest=_n_rows(embeddings["test"]))
        return out
    if ev == "innerkfold":
        n = _n_rows(embeddings["all"])
        return {"devacc": r["devacc"], "acc": r["acc"], "ndev": n, "ntest": n}
    if ev == "relatedness":
        return {"devpearson": r["devpearson"], "pearson": r["pearson"], "spearman": r["spearman"], "mse": r["mse"],
                "yhat": r["yhat"], "ndev": _n_rows(embeddings["dev"]), "ntest": _n_rows(embeddings["test"])}
    raise ValueError(f"{spec.name}: no result dict for evaluator {spec.evaluator!r}")
