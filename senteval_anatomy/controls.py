"""Control tasks for sentence-level SentEval tasks, and selectivity (Hewitt & Liang 2019, adapted).

A probe that scores well on a task may have read the property from the representation, or may have memorised its
way there. Hewitt & Liang's control task keeps the task's inputs and output space but replaces every label by a fixed
random function of something a probe can only *memorise* (there: the word type). Selectivity = task accuracy -
control accuracy: high when the representation makes the property easy and the probe cannot simply memorise.

Adapted to sentences
--------------------
Every word type ``w`` (lower-cased token) gets a fixed pseudo-random value ``u(w)`` in [0, 1) from a keyed hash of
``(seed, w)``. A sentence's *control score* is the mean of ``u`` over its distinct word types (pairs: over the types
of both sentences). The score is cut into the task's classes at the quantiles of the task's own training label
distribution, with the classes assigned to the score bins in a seeded random order. So

* the control label of a sentence is a deterministic function of its set of word types (and the seed): the same
  sentence gets the same control label in every split, file order and run;
* the class proportions are the task's (exactly on the training split up to ties between equal scores,
  approximately on dev/test, which are cut at the training thresholds);
* the label carries no information about syntax, semantics or the task's labels: a probe can only get it right by
  knowing which word types the sentence holds (the control score is *linear* in the sentence's bag of types, so a
  representation that keeps word identity makes it learnable; one that does not, cannot).

Only classification tasks have a control (``relatedness`` and ``sts`` tasks are regressions with no classes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .engine.tasks import Task

__all__ = [
    "CONTROLS",
    "CONTROL_SUFFIX",
    "ControlKind",
    "ControlTask",
    "control_scores",
    "control_task",
    "selectivity",
    "type_value",
]

#: Marks a control task in names (results, plots): ``"Tense+control"``.
CONTROL_SUFFIX = "+control"

_SUPPORTED_KINDS = ("classification", "pair_classification")


def type_value(word: str, seed: int) -> float:
    """The fixed pseudo-random value in [0, 1) of word type ``word`` (lower-cased) under ``seed``.

    A keyed BLAKE2b hash, not Python's ``hash`` (salted per process), so values are the same in every process,
    platform and Python version.
    """
    digest = hashlib.blake2b(word.lower().encode("utf-8"), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def _types(tokens: Iterable[str]) -> set[str]:
    return {t.lower() for t in tokens}


def control_scores(sentences: Sequence[Sequence[str]], seed: int,
                   others: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Control score of each tokenised sentence: the mean type value over its distinct word types (with
    ``others``, sentence pairs: over the types of both). A sentence with no token scores 0.5."""
    cache: dict[str, float] = {}

    def value(w: str) -> float:
        v = cache.get(w)
        if v is None:
            v = cache[w] = type_value(w, seed)
        return v

    out = np.empty(len(sentences), dtype=np.float64)
    for i, tokens in enumerate(sentences):
        types = _types(tokens) if others is None else _types(tokens) | _types(others[i])
        out[i] = float(np.mean([value(w) for w in sorted(types)])) if types else 0.5
    return out


def _split_scores(rec: dict, seed: int) -> np.ndarray:
    if "X" in rec:
        return control_scores(rec["X"], seed)
    return control_scores(rec["A"], seed, rec["B"])


def _bin_labels(thresholds: np.ndarray, bin_classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The control class of each score: its bin between the cut points, mapped through the seeded bin order."""
    return np.asarray(bin_classes)[np.searchsorted(thresholds, scores, side="right")].astype(np.int64)


class ControlTask(Task):
    """The control version of a loaded classification task: same spec, sentences, splits and evaluator; labels
    replaced by the control labels (see the module docstring).

    Attributes
    ----------
    source : Task
        The task it controls.
    control_seed : int
        Seed of the type values and of the class-to-bin assignment.
    thresholds : np.ndarray
        The ``n_classes - 1`` score cut points (from the training split).
    bin_classes : np.ndarray
        ``bin_classes[b]`` is the class of score bin ``b``.
    """

    source: Task
    control_seed: int
    thresholds: np.ndarray
    bin_classes: np.ndarray

    @property
    def control_name(self) -> str:
        """The name results use for this control: ``"<task>+control"``."""
        return self.spec.name + CONTROL_SUFFIX

    def labels_for(self, records: dict) -> dict[str, np.ndarray]:
        """Control labels of every split of ``records`` (``{split: {"X": [tokens...]}}`` or pairs ``"A"`` /
        ``"B"``), in the records' own order. Control labels are a function of each sentence's word types, so this
        gives the control labels of the source task's rows in the order its embeddings have
        (``task.sorted_data()``): a task's probes and its control probes can then share one set of features and
        train together (:class:`~senteval_anatomy.engine.batched.Variant`)."""
        return {split: _bin_labels(self.thresholds, self.bin_classes, _split_scores(rec, self.control_seed))
                for split, rec in records.items()}

    def __repr__(self) -> str:
        return f"ControlTask({self.name!r}, seed={self.control_seed})"


def control_task(task: Task, seed: int = 0) -> ControlTask:
    """The control task of ``task`` (from :func:`~senteval_anatomy.engine.tasks.load_task`).

    Parameters
    ----------
    task : Task
        A loaded classification or pair-classification task.
    seed : int
        Control seed: another seed draws another control task of the same kind.

    Raises
    ------
    ValueError
        For regression tasks (relatedness, STS), which have no classes to control.
    """
    spec = task.spec
    if spec.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"{spec.name} is a {spec.kind} task; control tasks exist for classification tasks only "
                         f"(kinds {', '.join(_SUPPORTED_KINDS)}). Leave {spec.name} out of the controls.")
    n_classes = task.n_classes
    if not n_classes or n_classes < 2:
        raise ValueError(f"{spec.name}: a control task needs at least 2 classes, the task has {n_classes}.")
    fit_split = "train" if "train" in task.data else next(iter(task.data))
    y_fit = np.asarray(task.data[fit_split]["y"], dtype=np.int64)
    # Class proportions of the task's training labels -> score quantiles at which the bins are cut.
    counts = np.bincount(y_fit, minlength=n_classes).astype(np.float64)
    rng = np.random.RandomState(int(seed) % 2**32)
    bin_classes = rng.permutation(n_classes)
    cum = np.cumsum(counts[bin_classes])[:-1] / counts.sum()
    fit_scores = _split_scores(task.data[fit_split], seed)
    thresholds = np.quantile(fit_scores, cum, method="inverted_cdf") if len(cum) else np.zeros(0)
    data: dict[str, dict] = {}
    for split, rec in task.data.items():
        labels = _bin_labels(thresholds, bin_classes, _split_scores(rec, seed))
        new = dict(rec)
        new["y"] = [int(v) for v in labels]
        data[split] = new
    names = [f"control-{k}" for k in range(n_classes)]
    out = ControlTask(spec, data, task.samples, seed=task.seed, task_path=task.task_path, label_names=names)
    out.n_classes = n_classes
    out.source = task
    out.control_seed = int(seed)
    out.thresholds = np.asarray(thresholds, dtype=np.float64)
    out.bin_classes = bin_classes
    return out


def selectivity(task_acc: float | np.ndarray, control_acc: float | np.ndarray) -> float | np.ndarray:
    """Selectivity (Hewitt & Liang 2019): task accuracy minus control-task accuracy, in accuracy points."""
    return np.subtract(task_acc, control_acc)


@dataclass(frozen=True)
class ControlKind:
    """One kind of control as the sweep runs it: a label function and the result columns it fills.

    ``labels(task, seed)`` gives the control labels of every split of ``task`` in the order of
    ``task.sorted_data()`` (the order of the task's embeddings), so the control probes are slots of the same stacked
    run as the task's probes (:class:`~senteval_anatomy.engine.batched.Variant`). ``columns`` names the result
    columns (:data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`): the control accuracy, then the task accuracy minus it.
    """

    labels: Callable[[Task, int], Mapping[str, np.ndarray]]
    columns: tuple[str, str]


#: Every control the sweep's ``controls=True`` (``--controls``) runs, by name. A new control is one entry here
#: (and its two columns in :data:`~senteval_anatomy.vocab.FINDINGS_COLUMNS`); the sweep's loop does not change.
CONTROLS: dict[str, ControlKind] = {
    "control": ControlKind(labels=lambda task, seed: control_task(task, seed).labels_for(task.sorted_data()),
                           columns=("control_acc", "selectivity")),
}
