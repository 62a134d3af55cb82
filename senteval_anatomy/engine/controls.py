"""Control tasks for sentence-level SentEval tasks, and selectivity: what a probe's accuracy is *not* evidence of.

A probe that scores well on a task may have read the property from the representation, or may have got there
another way. A control task keeps the task's sentences, splits, evaluator and class proportions and replaces every
label by one the property cannot explain; selectivity = task accuracy - control accuracy. Each kind of control
rules out one other way, and is named for it (:data:`CONTROL_KINDS`):

``bow`` - bag-of-words control
    Every word type ``w`` (lower-cased token) gets a fixed pseudo-random value ``u(w)`` in [0, 1) from a keyed hash
    of ``(seed, w)``; a sentence's *control score* is the mean of ``u`` over its distinct word types (pairs: over the
    types of both sentences), and the label is the score's bin. The label is linear in the sentence's bag of word
    types and carries no syntax, semantics or task label: a probe gets it right exactly as far as the
    representation lets a linear read-out recover *which words the sentence holds* (a word-count model reaches ~80%
    on it). So it asks "is the task just as easy as reading off the words?", not whether the probe memorised (it is
    **not** Hewitt & Liang's word-type control, whose labels are per token). High bow selectivity: the
    representation gives the task's property more readily than the lexical content.

``permuted`` - permuted-label control
    The task's own labels, shuffled within each split (a keyed hash of the sentence orders the rows; the split's
    label multiset is dealt out in that order): the same class counts on every split, no relation to the sentence.
    Nothing is learnable, so the control's test accuracy is the empirical chance level of *this* probe on *this*
    label distribution, with its seed, early stopping and class imbalance (the probe's capacity to fit noise shows
    in its training fit, which SentEval's evaluators do not report; on dev/test it can only cost accuracy).
    Permuted selectivity: the task accuracy above what a probe that learned nothing scores.

Both kinds give **every split exactly the task's class counts** (the rows are ordered by the control's key and the
split's labels dealt out in bins of the task's class sizes, ties broken by the sentence itself): a probe that
learned nothing - one that predicts a constant, e.g. the training majority class - scores the same on the task and
on its control, so its selectivity is exactly 0 (the earlier bow control cut the scores at training-split
quantiles, and its unbalanced test classes gave such probes -5 to -21 points). The cost: a control label is a
function of the sentence *within its split*; the same sentence in two splits can, rarely, fall on different sides
of a cut point.

:func:`majority_acc` is the other reference every accuracy gets: the test share of the training majority class.

Only classification tasks have a control (``relatedness`` and ``sts`` tasks are regressions with no classes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..vocab import CONTROL_KIND_NAMES
from .tasks import Task

__all__ = [
    "CONTROL_KINDS",
    "CONTROL_SUFFIX",
    "ControlKind",
    "ControlTask",
    "bow_labels",
    "control_scores",
    "control_task",
    "control_tasks",
    "majority_acc",
    "permuted_labels",
    "selectivity",
    "type_value",
]

#: Marks a control task in names (results, plots): ``"Tense+bow-control"``.
CONTROL_SUFFIX = "-control"

_SUPPORTED_KINDS = ("classification", "pair_classification")


def type_value(word: str, seed: int) -> float:
    """The fixed pseudo-random value in [0, 1) of word type ``word`` (lower-cased) under ``seed``.

    A keyed BLAKE2b hash, not Python's ``hash`` (salted per process), so values are the same in every process,
    platform and Python version.
    """
    return _keyed(word.lower(), seed)


def _keyed(text: str, seed: int) -> float:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def _types(tokens: Iterable[str]) -> set[str]:
    return {t.lower() for t in tokens}


def control_scores(sentences: Sequence[Sequence[str]], seed: int,
                   others: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Bag-of-words control score of each tokenised sentence: the mean type value over its distinct word types
    (with ``others``, sentence pairs: over the types of both). A sentence with no token scores 0.5."""
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


def _row_keys(rec: Mapping[str, Any]) -> list[str]:
    """One string per row of a split: the sentence (pairs: both sentences), the identity a control label hangs on."""
    if "X" in rec:
        return [" ".join(x) for x in rec["X"]]
    return [" ".join(a) + " ||| " + " ".join(b) for a, b in zip(rec["A"], rec["B"], strict=True)]


def _deal(order_key: np.ndarray, row_keys: list[str], y: np.ndarray, class_order: np.ndarray) -> np.ndarray:
    """Labels with exactly the class counts of ``y``: rows sorted by ``(order_key, row key)``, the first
    ``count[class_order[0]]`` rows get ``class_order[0]``, the next ones ``class_order[1]``, and so on."""
    counts = np.bincount(y, minlength=len(class_order))
    dealt = np.repeat(class_order, counts[class_order])
    order = sorted(range(len(y)), key=lambda i: (order_key[i], row_keys[i]))
    out = np.empty(len(y), dtype=np.int64)
    out[np.asarray(order, dtype=np.int64)] = dealt
    return out


def _class_order(n_classes: int, seed: int) -> np.ndarray:
    return np.random.RandomState(int(seed) % 2**32).permutation(n_classes)


def bow_labels(task: Task, seed: int) -> dict[str, np.ndarray]:
    """Bag-of-words control labels of every split of ``task`` (file order): rows ordered by their control score
    (:func:`control_scores`), cut into bins of the split's class counts, bins mapped to classes in a seeded order."""
    n_classes = _n_classes(task)
    order = _class_order(n_classes, seed)
    out = {}
    for split, rec in task.data.items():
        scores = control_scores(rec["X"], seed) if "X" in rec else control_scores(rec["A"], seed, rec["B"])
        out[split] = _deal(scores, _row_keys(rec), np.asarray(rec["y"], dtype=np.int64), order)
    return out


def permuted_labels(task: Task, seed: int) -> dict[str, np.ndarray]:
    """Permuted-label control labels of every split of ``task`` (file order): the split's own labels dealt out to
    its rows in the order of a keyed hash of each sentence, i.e. shuffled within the split, same class counts."""
    n_classes = _n_classes(task)
    out = {}
    for split, rec in task.data.items():
        keys = _row_keys(rec)
        out[split] = _deal(np.array([_keyed(k, seed) for k in keys]), keys, np.asarray(rec["y"], dtype=np.int64),
                           np.arange(n_classes))
    return out


@dataclass(frozen=True)
class ControlKind:
    """One kind of control task: its name (column prefix, :data:`~senteval_anatomy.vocab.CONTROL_KIND_NAMES`), what
    it is called in reports, what a selectivity against it can rule out, and its label function
    ``labels(task, seed) -> {split: int labels in task.data order}``."""

    name: str
    title: str
    rules_out: str
    labels: Callable[[Task, int], dict[str, np.ndarray]]

    @property
    def acc_column(self) -> str:
        """Results column of the control's test accuracy."""
        return f"{self.name}_control_acc"

    @property
    def selectivity_column(self) -> str:
        """Results column of ``acc - control acc``."""
        return f"{self.name}_selectivity"


#: Every kind of control, by name. A pipeline that runs controls takes any of them the same way:
#: ``control_task(task, seed, kind).labels_for(records)`` gives a variant's labels in the records' order.
CONTROL_KINDS: dict[str, ControlKind] = {k.name: k for k in (
    ControlKind("bow", "bag-of-words control",
                "reading off which words the sentence holds as the explanation of the accuracy",
                bow_labels),
    ControlKind("permuted", "permuted-label control",
                "chance: what a probe that learned nothing scores on these class proportions",
                permuted_labels),
)}
assert tuple(CONTROL_KINDS) == CONTROL_KIND_NAMES, "vocab.CONTROL_KIND_NAMES names the registry's kinds, in order"


class ControlTask(Task):
    """The control version of a loaded classification task: same spec, sentences, splits and evaluator; labels
    replaced by the control's (see the module docstring).

    Attributes
    ----------
    source : Task
        The task it controls.
    kind : ControlKind
    control_seed : int
    """

    source: Task
    kind: ControlKind
    control_seed: int

    @property
    def control_name(self) -> str:
        """The name results use for this control: ``"<task>+<kind>-control"``."""
        return f"{self.spec.name}+{self.kind.name}{CONTROL_SUFFIX}"

    def labels_for(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """This control's labels for the rows of ``records`` (``{split: {"X": [tokens...], ...}}`` or pairs
        ``"A"`` / ``"B"``; the source task's rows in any order, e.g. ``task.sorted_data()``, the order its
        embeddings have), looked up by sentence in this control task's own data - never derived from the records'
        labels. So a task's probes and its control probes can share one set of features and train together
        (:class:`~senteval_anatomy.engine.batched.Variant`) with exactly the control task's labels.

        Raises
        ------
        KeyError
            A split or a sentence that is not in this control task.
        """
        out = {}
        for split, rec in records.items():
            if split not in self.data:
                raise KeyError(f"split {split!r} is not in control task {self.control_name}.")
            pool: dict[str, list[int]] = {}
            own = self.data[split]
            for k, y in zip(_row_keys(own), own["y"], strict=True):
                pool.setdefault(k, []).append(int(y))
            for v in pool.values():
                v.sort(reverse=True)  # duplicates of a sentence: their labels dealt in a fixed order
            labels = []
            for k in _row_keys(rec):
                if not pool.get(k):
                    raise KeyError(f"{self.control_name}: a {split} sentence of the records is not in the task "
                                   f"({k[:60]!r}); labels_for takes the source task's own rows.")
                labels.append(pool[k].pop())
            out[split] = np.asarray(labels, dtype=np.int64)
        return out

    def __repr__(self) -> str:
        return f"ControlTask({self.name!r}, kind={self.kind.name!r}, seed={self.control_seed})"


def _n_classes(task: Task) -> int:
    spec = task.spec
    if spec.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"{spec.name} is a {spec.kind} task; control tasks exist for classification tasks only "
                         f"(kinds {', '.join(_SUPPORTED_KINDS)}). Leave {spec.name} out of the controls.")
    n_classes = task.n_classes
    if not n_classes or n_classes < 2:
        raise ValueError(f"{spec.name}: a control task needs at least 2 classes, the task has {n_classes}.")
    return int(n_classes)


def control_task(task: Task, seed: int = 0, kind: str = "bow") -> ControlTask:
    """The control task of ``task`` (from :func:`~senteval_anatomy.engine.tasks.load_task`).

    Parameters
    ----------
    task : Task
        A loaded classification or pair-classification task.
    seed : int
        Control seed: another seed draws another control task of the same kind.
    kind : str
        A key of :data:`CONTROL_KINDS` (``"bow"`` or ``"permuted"``).

    Raises
    ------
    ValueError
        For regression tasks (relatedness, STS), which have no classes to control, and for an unknown kind.
    """
    if kind not in CONTROL_KINDS:
        raise ValueError(f"unknown control kind {kind!r}; the kinds are {', '.join(CONTROL_KINDS)}.")
    n_classes = _n_classes(task)
    ck = CONTROL_KINDS[kind]
    labels = ck.labels(task, int(seed))
    data: dict[str, dict] = {}
    for split, rec in task.data.items():
        new = dict(rec)
        new["y"] = [int(v) for v in labels[split]]
        data[split] = new
    names = [f"{kind}-control-{k}" for k in range(n_classes)]
    out = ControlTask(task.spec, data, task.samples, seed=task.seed, task_path=task.task_path, label_names=names)
    out.n_classes = n_classes
    out.source = task
    out.kind = ck
    out.control_seed = int(seed)
    return out


def control_tasks(task: Task, seed: int = 0, kinds: Sequence[str] | None = None) -> dict[str, ControlTask]:
    """Every control (``kinds``, default all of :data:`CONTROL_KINDS`) of a classification task, by kind; ``{}``
    for a task without classes (relatedness, STS), which has no control."""
    if task.spec.kind not in _SUPPORTED_KINDS:
        return {}
    return {k: control_task(task, seed, k) for k in (CONTROL_KIND_NAMES if kinds is None else kinds)}


def majority_acc(task: Task) -> float:
    """Test accuracy (points) of the probe that learned nothing and predicts the training majority class (ties: the
    smaller class id): the floor every accuracy of the task is read against. NaN without classes or a test split."""
    if task.spec.kind not in _SUPPORTED_KINDS:
        return float("nan")
    fit = task.data.get("train") or next(iter(task.data.values()))
    test = task.data.get("test")
    if not test or not len(test["y"]):
        return float("nan")
    major = int(np.argmax(np.bincount(np.asarray(fit["y"], dtype=np.int64))))
    return 100.0 * float(np.mean(np.asarray(test["y"], dtype=np.int64) == major))


def selectivity(task_acc: float | np.ndarray, control_acc: float | np.ndarray) -> float | np.ndarray:
    """Selectivity: task accuracy minus control-task accuracy, in accuracy points. Both controls have the task's
    class counts on every split, so a constant (majority) probe has selectivity exactly 0: the difference is
    chance-corrected without a further term."""
    return np.subtract(task_acc, control_acc)
