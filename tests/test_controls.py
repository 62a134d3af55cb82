"""Control tasks: deterministic, balanced as the task, learnable only by memorising word types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from senteval_anatomy.engine.controls import (
    CONTROL_KINDS,
    control_scores,
    control_task,
    control_tasks,
    majority_acc,
    selectivity,
    type_value,
)
from senteval_anatomy.engine.registry import get_task
from senteval_anatomy.engine.tasks import Task, load_task

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "senteval-data"

VOCAB = [f"w{i}" for i in range(60)]
PARAMS = {"seed": 5, "usepytorch": False}  # the engine's logistic regression: fast on a busy 2-core machine


def _synthetic_task(n: int = 900, seed: int = 0) -> Task:
    """A 3-class 'task' whose label is the sentence length bucket (3-4, 5-6, 7-8 tokens) of random word strings."""
    rs = np.random.RandomState(seed)
    sents, labels = [], []
    for _ in range(n):
        length = int(rs.randint(3, 9))
        sents.append([VOCAB[j] for j in rs.randint(0, len(VOCAB), size=length)])
        labels.append((length - 3) // 2)
    a, b = int(0.6 * n), int(0.8 * n)
    data = {"train": {"X": sents[:a], "y": labels[:a]}, "dev": {"X": sents[a:b], "y": labels[a:b]},
            "test": {"X": sents[b:], "y": labels[b:]}}
    return Task(get_task("Length"), data, sents, seed=1111, label_names=["short", "medium", "long"])


def _bow(batch):
    """Bag of distinct word types, normalised: the control score is a linear function of it."""
    out = np.zeros((len(batch), len(VOCAB)), dtype=np.float32)
    for i, tokens in enumerate(batch):
        types = sorted(set(tokens))
        for t in types:
            out[i, int(t[1:])] = 10.0 / len(types)  # x10: a scale the regularisation grid fits easily
    return out


def _length(batch):
    """One-hot sentence length: everything about the task, nothing about word identity."""
    out = np.zeros((len(batch), 10), dtype=np.float32)
    for i, tokens in enumerate(batch):
        out[i, len(tokens)] = 1.0
    return out


def _acc(task, featurise):
    return task.evaluate(task.embed(PARAMS, lambda p, batch: featurise(batch)), PARAMS)["acc"]


def test_type_values_are_fixed_and_seeded():
    assert type_value("Cat", 0) == type_value("cat", 0)  # word types are lower-cased
    assert type_value("cat", 0) != type_value("cat", 1)
    assert 0.0 <= type_value("cat", 0) < 1.0
    s = control_scores([["a", "b", "a"], ["b", "A"]], seed=3)
    assert s[0] == s[1] == pytest.approx((type_value("a", 3) + type_value("b", 3)) / 2)


def _by_sentence(records, labels):
    """{split: {sentence: sorted labels}}: control labels compared sentence by sentence, whatever the row order."""
    out = {}
    for split, rec in records.items():
        d: dict = {}
        for x, y in zip(rec["X"], labels[split], strict=True):
            d.setdefault(tuple(x), []).append(int(y))
        out[split] = {k: sorted(v) for k, v in d.items()}
    return out


@pytest.mark.parametrize("kind", sorted(CONTROL_KINDS))
def test_control_labels_deterministic_and_balanced_as_task(kind):
    task = _synthetic_task()
    c1, c2, c3 = control_task(task, 0, kind), control_task(task, 0, kind), control_task(task, 1, kind)
    for split in task.data:
        assert c1.data[split]["y"] == c2.data[split]["y"]
        assert c1.data[split]["X"] is task.data[split]["X"]
        # Exactly the task's class counts on every split: a constant probe scores the same on task and control.
        np.testing.assert_array_equal(np.bincount(c1.data[split]["y"], minlength=3),
                                      np.bincount(task.data[split]["y"], minlength=3))
    assert c1.data["train"]["y"] != c3.data["train"]["y"]
    # A function of the sentences of the split, not of their order.
    reordered = Task(task.spec, {s: {"X": rec["X"][::-1], "y": rec["y"][::-1]} for s, rec in task.data.items()},
                     task.samples, label_names=task.label_names)
    c4 = control_task(reordered, 0, kind)
    assert _by_sentence(reordered.data, {s: r["y"] for s, r in c4.data.items()}) == \
        _by_sentence(task.data, {s: r["y"] for s, r in c1.data.items()})
    assert c1.n_classes == task.n_classes == 3 and c1.kind is CONTROL_KINDS[kind]
    assert c1.control_name == f"Length+{kind}-control"
    # Independent of the task's labels (chance agreement ~ sum p_k^2 ~ 0.33, not 1).
    agree = np.mean(np.asarray(c1.data["train"]["y"]) == np.asarray(task.data["train"]["y"]))
    assert agree < 0.5


@pytest.mark.parametrize("kind", sorted(CONTROL_KINDS))
def test_labels_for_the_embedding_order_are_the_control_tasks_own(kind):
    """The findings path trains control probes as variants of the task's run with ``labels_for(task.sorted_data())``
    (rows in the embeddings' order): those labels must be the control task's, sentence by sentence - a labels_for
    that reads the records' own (real) labels fails here."""
    task = _synthetic_task()
    ctrl = control_task(task, 0, kind)
    ordered = task.sorted_data()
    got = ctrl.labels_for(ordered)
    assert _by_sentence(ordered, got) == _by_sentence(task.data, {s: r["y"] for s, r in ctrl.data.items()})
    real = {s: np.asarray(r["y"]) for s, r in ordered.items()}
    assert np.mean(got["train"] == real["train"]) < 0.5
    with pytest.raises(KeyError, match="not in the task"):
        ctrl.labels_for({"test": {"X": [["never", "seen"]], "y": [0]}})


def test_a_probe_that_learned_nothing_has_zero_selectivity():
    """Known answer: a constant prediction (the training majority) scores exactly majority_acc on the task and on
    every control, so its selectivity is 0 (the old training-quantile cut points gave such probes -5 to -21)."""
    rs = np.random.RandomState(2)
    task = _synthetic_task()
    for split in task.data:  # unbalanced: 70% class 0
        n = len(task.data[split]["y"])
        task.data[split]["y"] = [int(v) for v in np.where(rs.rand(n) < 0.7, 0, rs.randint(1, 3, n))]
    maj = majority_acc(task)
    assert maj == pytest.approx(100 * np.mean(np.asarray(task.data["test"]["y"]) == 0))
    for ctrl in control_tasks(task, seed=4).values():
        control_const = 100 * np.mean(np.asarray(ctrl.data["test"]["y"]) == 0)
        assert selectivity(maj, control_const) == 0.0


def test_permuted_control_is_not_learnable():
    """Known answer: on the permuted-label control, features that carry the task (length) and features that carry
    the words both score near the control's chance."""
    task = _synthetic_task()
    ctrl = control_task(task, seed=0, kind="permuted")
    majority = 100 * np.bincount(ctrl.data["test"]["y"]).max() / len(ctrl.data["test"]["y"])
    for feats in (_length, _bow):
        assert _acc(ctrl, feats) < majority + 10
    assert _acc(task, _length) - _acc(ctrl, _length) > 50  # permuted selectivity of the right features: high


def test_control_learnable_only_by_memorising_word_types():
    """Known answer: word-identity features learn the control but not the task; length features the reverse."""
    task = _synthetic_task()
    ctrl = control_task(task, seed=0)
    majority = 100 * np.bincount(ctrl.data["test"]["y"]).max() / len(ctrl.data["test"]["y"])
    assert _acc(task, _length) == 100.0
    assert _acc(ctrl, _length) < majority + 8  # no word identity: chance
    assert _acc(ctrl, _bow) > 75  # word identity: memorisable
    assert _acc(task, _bow) < 50
    sel_len = selectivity(_acc(task, _length), _acc(ctrl, _length))
    sel_bow = selectivity(_acc(task, _bow), _acc(ctrl, _bow))
    assert sel_len > 50 > 0 > sel_bow


def test_control_rejects_regression_tasks():
    rel = Task(get_task("SICKRelatedness"), {"train": {"A": [["a"]], "B": [["b"]], "y": [3.0]}}, [])
    with pytest.raises(ValueError, match="classification tasks only"):
        control_task(rel)


@pytest.mark.skipif(not (SHARED_DATA / "probing" / "past_present.txt").is_file(), reason="shared data absent")
def test_control_of_a_real_probing_task():
    task = load_task("Tense", SHARED_DATA)
    for kind, ctrl in control_tasks(task, seed=0).items():
        for split in ("train", "dev", "test"):
            np.testing.assert_array_equal(np.bincount(ctrl.data[split]["y"], minlength=2),
                                          np.bincount(task.data[split]["y"], minlength=2))
        assert ctrl.samples is task.samples and ctrl.name == "Tense" and ctrl.control_name == f"Tense+{kind}-control"
