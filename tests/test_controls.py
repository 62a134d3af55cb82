"""Control tasks: deterministic, balanced as the task, learnable only by memorising word types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from senteval_anatomy.controls import control_scores, control_task, selectivity, type_value
from senteval_anatomy.engine.tasks import Task, get_task, load_task

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


def test_control_labels_deterministic_and_balanced_as_task():
    task = _synthetic_task()
    c1, c2, c3 = control_task(task, seed=0), control_task(task, seed=0), control_task(task, seed=1)
    for split in task.data:
        assert c1.data[split]["y"] == c2.data[split]["y"]
        assert c1.data[split]["X"] is task.data[split]["X"]
    assert c1.data["train"]["y"] != c3.data["train"]["y"]
    # A function of the sentence only: the same sentence has the same label whatever its split or neighbours.
    reordered = Task(task.spec, {s: {"X": rec["X"][::-1], "y": rec["y"][::-1]} for s, rec in task.data.items()},
                     task.samples, label_names=task.label_names)
    c4 = control_task(reordered, seed=0)
    assert c4.data["test"]["y"] == c1.data["test"]["y"][::-1]
    label_of = {}
    for rec in c1.data.values():
        for x, y in zip(rec["X"], rec["y"], strict=True):
            assert label_of.setdefault(tuple(sorted(set(x))), y) == y
    # Balanced as the task: exact on train (up to ties), close on dev / test.
    for split in ("train", "dev", "test"):
        want = np.bincount(task.data[split]["y"], minlength=3) / len(task.data[split]["y"])
        got = np.bincount(c1.data[split]["y"], minlength=3) / len(c1.data[split]["y"])
        assert np.abs(got - want).max() < (0.005 if split == "train" else 0.08), (split, got, want)
    assert c1.n_classes == task.n_classes == 3
    # Independent of the task's labels (chance agreement ~ sum p_k^2 ~ 0.33, not 1).
    agree = np.mean(np.asarray(c1.data["train"]["y"]) == np.asarray(task.data["train"]["y"]))
    assert agree < 0.5


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
    ctrl = control_task(task, seed=0)
    for split in ("train", "dev", "test"):
        want = np.bincount(task.data[split]["y"], minlength=2) / len(task.data[split]["y"])
        got = np.bincount(ctrl.data[split]["y"], minlength=2) / len(ctrl.data[split]["y"])
        # dev/test are cut at the training thresholds: close up to sampling noise (3.5 binomial s.d.)
        assert np.abs(got - want).max() < 3.5 * np.sqrt(0.25 / len(ctrl.data[split]["y"])), (split, got, want)
    assert ctrl.samples is task.samples and ctrl.name == "Tense" and ctrl.control_name == "Tense+control"
