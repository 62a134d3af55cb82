"""Evaluators of the built-in engine, on features (no sentences, no batcher): SentEval's ``SplitClassifier``,
``KFoldClassifier``, ``InnerKFoldClassifier`` (``senteval/tools/validation.py``), the relatedness protocol of
SICK-R / STS-B (``senteval/sick.py`` + ``tools/relatedness.py``) and the unsupervised STS12-16 protocol
(``senteval/sts.py``).

The rules they apply around the probes (grids, rounding, selection, folds, refit split, correlations) are those of
:mod:`senteval_anatomy.engine.protocol`, which the batched trainer uses too. In short: each grid value gets a score
rounded to 2 decimals; the chosen value is ``regs[np.argmax(scores)]``, so ties go to the first (smallest) value;
``devacc`` is that best grid score, not the score of the refit model.

Every function returns a plain dict of Python scalars / numpy arrays.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .probes import RELATEDNESS_NCLASSES, RelatednessRegressor, make_probe
from .protocol import (
    INNER_KFOLD_RANDOM_STATE,
    VALIDATION_SPLIT,
    cv_score,
    mean_score,
    reg_grid,
    relatedness_scores,
    select_reg,
    split_score,
    stratified_kfold,
)

logger = logging.getLogger(__name__)

__all__ = [
    "split_eval",
    "kfold_eval",
    "innerkfold_eval",
    "encode_relatedness_labels",
    "relatedness_eval",
    "Correlation",
    "cosine",
    "default_similarity",
    "sts_eval",
]


def split_eval(X_train, y_train, X_dev, y_dev, X_test, y_test, *, nclasses: int, seed: int = 1111,
               usepytorch: bool = True, classifier: Mapping[str, Any] | None = None, device: Any = "auto",
               noreg: bool = False) -> dict[str, Any]:
    """SentEval's ``SplitClassifier``: grid on dev (early stopping on dev), refit with the chosen value, test.

    Returns
    -------
    dict
        ``devacc`` (best grid score, %), ``acc`` (test accuracy of the refit model, %), ``reg`` (chosen value),
        ``regs`` and ``dev_scores`` (the grid and its rounded dev scores).
    """
    regs = reg_grid("split", usepytorch, noreg)
    kw = dict(inputdim=np.shape(X_train)[1], nclasses=nclasses, seed=seed, classifier=classifier, device=device)
    scores = []
    for reg in regs:
        clf = make_probe(usepytorch, reg, **kw)
        clf.fit(X_train, y_train, validation_data=(X_dev, y_dev))
        scores.append(split_score(clf.score(X_dev, y_dev)))
    logger.info("split grid: %s", list(zip(regs, scores)))
    optreg, devacc = select_reg(scores, regs)
    clf = make_probe(usepytorch, optreg, **kw)
    clf.fit(X_train, y_train, validation_data=(X_dev, y_dev))
    acc = split_score(clf.score(X_test, y_test))
    return {"devacc": float(devacc), "acc": float(acc), "reg": optreg, "regs": list(regs),
            "dev_scores": [float(s) for s in scores]}


def kfold_eval(X_train, y_train, X_test, y_test, *, nclasses: int, kfold: int = 5, seed: int = 1111,
               usepytorch: bool = True, classifier: Mapping[str, Any] | None = None,
               device: Any = "auto") -> dict[str, Any]:
    """SentEval's ``KFoldClassifier``: ``StratifiedKFold(kfold, shuffle=True, random_state=seed)`` on train for each
    grid value (the PyTorch probe early-stops on the held-out fold itself), dev = best mean CV accuracy, final model
    refit on all of train (PyTorch: with a 5% validation split for early stopping), scored on test.

    Returns
    -------
    dict
        ``devacc``, ``acc``, ``yhat`` (test predictions, int, shape (n_test,)), ``reg``, ``regs``, ``dev_scores``.
    """
    X_train, y_train = np.asarray(X_train), np.asarray(y_train)
    regs = reg_grid("kfold", usepytorch)
    kw = dict(inputdim=X_train.shape[1], nclasses=nclasses, seed=seed, classifier=classifier, device=device)
    skf = stratified_kfold(kfold, seed)
    scores = []
    for reg in regs:
        scanscores = []
        for train_idx, test_idx in skf.split(X_train, y_train):
            clf = make_probe(usepytorch, reg, **kw)
            clf.fit(X_train[train_idx], y_train[train_idx],
                    validation_data=(X_train[test_idx], y_train[test_idx]))
            scanscores.append(clf.score(X_train[test_idx], y_train[test_idx]))
        scores.append(cv_score(scanscores))
    logger.info("kfold grid: %s", list(zip(regs, scores)))
    optreg, devacc = select_reg(scores, regs)
    clf = make_probe(usepytorch, optreg, **kw)
    clf.fit(X_train, y_train, validation_split=VALIDATION_SPLIT)
    yhat = np.asarray(clf.predict(X_test)).reshape(-1)
    acc = split_score(clf.score(X_test, y_test))
    return {"devacc": float(devacc), "acc": float(acc), "yhat": yhat, "reg": optreg, "regs": list(regs),
            "dev_scores": [float(s) for s in scores]}


def innerkfold_eval(X, y, *, nclasses: int, kfold: int = 5, seed: int = 1111, usepytorch: bool = True,
                    classifier: Mapping[str, Any] | None = None, device: Any = "auto") -> dict[str, Any]:
    """SentEval's ``InnerKFoldClassifier`` (CR, MR, MPQA, SUBJ): nested cross-validation on one pool.

    Outer and inner folds are ``StratifiedKFold(kfold, shuffle=True, random_state=1111)`` (SentEval ignores
    ``seed`` here; ``seed`` still seeds the probes). For each outer fold: inner CV per grid value, choose the best
    rounded inner mean, refit on the outer train (PyTorch: 5% validation split), score the outer test fold.
    ``devacc`` = mean of the per-fold best inner scores, ``acc`` = mean of the outer test accuracies (both
    NumPy-rounded to 2 decimals).

    Returns
    -------
    dict
        ``devacc``, ``acc``, ``fold_devacc``, ``fold_acc``, ``fold_reg`` (per outer fold), ``regs``.
    """
    X, y = np.asarray(X), np.asarray(y)
    regs = reg_grid("innerkfold", usepytorch)
    kw = dict(inputdim=X.shape[1], nclasses=nclasses, seed=seed, classifier=classifier, device=device)
    skf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    innerskf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    devresults, testresults, fold_regs = [], [], []
    for train_idx, test_idx in skf.split(X, y):
        X_train, X_test = X[train_idx], X[test_idx]
        y_train, y_test = y[train_idx], y[test_idx]
        scores = []
        for reg in regs:
            regscores = []
            for in_train, in_test in innerskf.split(X_train, y_train):
                clf = make_probe(usepytorch, reg, **kw)
                clf.fit(X_train[in_train], y_train[in_train],
                        validation_data=(X_train[in_test], y_train[in_test]))
                regscores.append(clf.score(X_train[in_test], y_train[in_test]))
            scores.append(cv_score(regscores))
        optreg, best = select_reg(scores, regs)
        devresults.append(best)
        fold_regs.append(optreg)
        clf = make_probe(usepytorch, optreg, **kw)
        clf.fit(X_train, y_train, validation_split=VALIDATION_SPLIT)
        testresults.append(split_score(clf.score(X_test, y_test)))
    return {"devacc": float(mean_score(devresults)), "acc": float(mean_score(testresults)),
            "fold_devacc": [float(v) for v in devresults], "fold_acc": [float(v) for v in testresults],
            "fold_reg": fold_regs, "regs": list(regs)}


# --------------------------------------------------------------------------------------------------------------
# Relatedness (SICK-R, STS-B)
# --------------------------------------------------------------------------------------------------------------


def encode_relatedness_labels(labels, nclass: int = RELATEDNESS_NCLASSES) -> np.ndarray:
    """Tai et al.'s 5-bin target distribution (SentEval's ``encode_labels``), float32 of shape (n, nclass).

    With ``f = floor(y)``: 0-based bin ``f`` gets ``y - f`` and bin ``f - 1`` gets ``f - y + 1``. So ``y = 5``
    puts all mass on the last bin, ``y = 3.3`` gives 0.7 / 0.3 on bins 3 / 4 (1-based), and scores in [0, 1) (STS-B)
    only put ``y`` on bin 1, which makes ``y = 0`` an all-zero target (SentEval's quirk, kept).

    >>> encode_relatedness_labels([3.3, 5.0, 0.0]).astype(float).round(2).tolist()
    [[0.0, 0.0, 0.7, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    Y = np.zeros((len(labels), nclass)).astype("float32")
    for j, y in enumerate(labels):
        for i in range(nclass):
            if i + 1 == np.floor(y) + 1:
                Y[j, i] = y - np.floor(y)
            if i + 1 == np.floor(y):
                Y[j, i] = np.floor(y) - y + 1
    return Y


def relatedness_eval(X_train, y_train, X_dev, y_dev, X_test, y_test, *, seed: int = 1111,
                     device: Any = "auto") -> dict[str, Any]:
    """SICK-R / STS-B protocol on pair features and raw scores (SentEval's ``SICKRelatednessEval.run`` after the
    embedding step): train :class:`~senteval_anatomy.engine.probes.RelatednessRegressor` on 5-bin targets with
    early stopping on dev Pearson, predict ``yhat`` on test.

    Returns
    -------
    dict
        ``devpearson``, ``pearson``, ``spearman`` (NaN read as 0), ``mse``, ``yhat`` (np.ndarray).
    """
    reg = RelatednessRegressor(np.shape(X_train)[1], seed=seed, device=device)
    reg.fit(X_train, encode_relatedness_labels(y_train), X_dev, list(y_dev))
    return relatedness_scores(reg.best_score_, reg.predict(X_test), y_test)


# --------------------------------------------------------------------------------------------------------------
# STS12-16 (unsupervised)
# --------------------------------------------------------------------------------------------------------------


class Correlation(NamedTuple):
    """A correlation and its p-value. Indexes like SentEval's scipy results (``r[0]``, ``r[1]``), has scipy's
    ``statistic`` / ``pvalue`` attributes, and serialises to JSON as ``[r, p]``."""

    statistic: float
    pvalue: float


def cosine(u, v) -> float:
    """SentEval's ``utils.cosine``: ``u.v / (|u| |v|)``."""
    return np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))


def default_similarity(s1, s2) -> float:
    """SentEval's default STS similarity: ``nan_to_num(cosine(nan_to_num(s1), nan_to_num(s2)))``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(cosine(np.nan_to_num(s1), np.nan_to_num(s2)))


def _correlation(fn, a, b) -> Correlation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fn(a, b)
    return Correlation(float(res[0]), float(res[1]))


def sts_eval(datasets: Mapping[str, tuple[Any, Any, Sequence[float]]],
             similarity: Callable[[Any, Any], float] | None = None) -> dict[str, Any]:
    """SentEval's ``STSEval.run`` after embedding.

    Parameters
    ----------
    datasets : mapping name -> (A, B, gold)
        Per sub-dataset, in SentEval's order: embeddings ``A`` and ``B`` of shape (n, d) (row ``k`` of each is pair
        ``k``) and the ``n`` gold scores.
    similarity : callable, optional
        ``f(u, v) -> float`` (``params.similarity``); default :func:`default_similarity`.

    Returns
    -------
    dict
        Per sub-dataset ``{'pearson': Correlation, 'spearman': Correlation, 'nsamples': n}``, plus
        ``'all': {'pearson': {'mean', 'wmean'}, 'spearman': {'mean', 'wmean'}}`` (wmean weighted by ``nsamples``).
    """
    from scipy.stats import pearsonr, spearmanr

    sim = similarity if similarity is not None else default_similarity
    results: dict[str, Any] = {}
    for name, (A, B, gold) in datasets.items():
        if len(A) != len(B) or len(A) != len(gold):
            raise ValueError(f"STS {name}: {len(A)} A rows, {len(B)} B rows and {len(gold)} gold scores differ.")
        sys_scores = [sim(A[k], B[k]) for k in range(len(A))]
        results[name] = {
            "pearson": _correlation(pearsonr, sys_scores, list(gold)),
            "spearman": _correlation(spearmanr, sys_scores, list(gold)),
            "nsamples": len(sys_scores),
        }
    weights = [results[d]["nsamples"] for d in results]
    prs = np.array([results[d]["pearson"][0] for d in results])
    sps = np.array([results[d]["spearman"][0] for d in results])
    results["all"] = {
        "pearson": {"mean": float(np.average(prs)), "wmean": float(np.average(prs, weights=weights))},
        "spearman": {"mean": float(np.average(sps)), "wmean": float(np.average(sps, weights=weights))},
    }
    return results
