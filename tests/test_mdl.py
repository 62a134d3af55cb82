"""Online-code MDL: the codelength arithmetic by hand, block ends, and the batched pipeline's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from senteval_anatomy.engine import Task, get_task
from senteval_anatomy.engine.mdl import block_ends, mdl_many, online_codelength

PARAMS = {"seed": 2, "device": "cpu",
          "classifier": {"nhid": 0, "optim": "adam", "batch_size": 32, "tenacity": 2, "epoch_size": 2}}


def test_online_codelength_by_hand():
    """K = 4, first block of 2 labels: 2 * log2(4) = 4 bits. Block 2 gets p = 1/2, 1/4 (1 + 2 bits); block 3 gets
    p = 1, 1/2, 1/2, 1/8 (0 + 1 + 1 + 3 bits). Total 12 bits; uniform code 8 * 2 = 16 bits; compression 4/3."""
    blocks = [np.log2([0.5, 0.25]), np.log2([1.0, 0.5, 0.5, 0.125])]
    assert online_codelength(2, 4, blocks) == pytest.approx(12.0)
    assert 8 * math.log2(4) / online_codelength(2, 4, blocks) == pytest.approx(4 / 3)


def test_block_ends():
    assert block_ends(10000) == [20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10000]
    assert block_ends(100, min_first=20) == [20, 25, 50, 100]
    assert block_ends(15, min_first=20) == [15]
    with pytest.raises(ValueError, match="end at 1.0"):
        block_ends(100, fractions=(0.1, 0.5))


def _task_and_embeddings(n=240, seed=0):
    rs = np.random.RandomState(seed)
    y = rs.randint(0, 2, n)
    X = rs.randn(n, 3, 4).astype(np.float32)
    X[:, 0, 0] += 4.0 * (2 * y - 1)  # probe 0: the label, almost separable
    X[:, 1, 0] += 0.5 * (2 * y - 1)  # probe 1: a weak signal; probe 2: noise
    emb = {"train": {"X": X[:200], "y": y[:200]}, "dev": {"X": X[200:220], "y": y[200:220]},
           "test": {"X": X[220:], "y": y[220:]}}
    return Task(get_task("Tense"), {}, [], label_names=["PAST", "PRES"]), emb


def test_mdl_orders_probes_by_how_easily_they_give_the_label():
    task, emb = _task_and_embeddings()
    out = mdl_many(task, emb, PARAMS, progress=False)
    mdl = [r["mdl"] for r in out]
    assert out[0]["uniform"] == pytest.approx(200.0) and out[0]["n"] == 200
    assert mdl[0] < mdl[1] < mdl[2]
    assert out[0]["compression"] > 1.8  # an easy code: about half the uniform one (first block alone: 20 bits)
    assert mdl[0] > 20.0  # never below the uniformly coded first block
    assert 0.8 < out[2]["compression"] < 1.15  # noise compresses nothing (a probe can even overfit: < 1)


def test_mdl_batched_equals_each_probe_alone():
    task, emb = _task_and_embeddings(seed=1)
    together = [r["mdl"] for r in mdl_many(task, emb, PARAMS, progress=False)]
    for p in range(3):
        alone = {s: {"X": rec["X"][:, p : p + 1], "y": rec["y"]} for s, rec in emb.items()}
        assert mdl_many(task, alone, PARAMS, progress=False)[0]["mdl"] == pytest.approx(together[p], rel=1e-6)


def test_mdl_rejects_regression():
    task = Task(get_task("SICKRelatedness"), {}, [])
    with pytest.raises(ValueError, match="classification"):
        mdl_many(task, {}, PARAMS)


def test_mdl_of_random_features_is_below_one():
    """Known answer for the docs' claim: features that carry nothing about the labels compress *worse* than the
    uniform code (each block's probe fits noise), so a useless representation scores below 1, not 1."""
    rs = np.random.RandomState(0)
    n, d = 1000, 32
    y = rs.randint(0, 2, n)
    emb = {"train": {"X": rs.randn(n, 4, d).astype(np.float32), "y": y}}
    task = Task(get_task("Tense"), {}, [], label_names=["PAST", "PRES"])
    params = {"seed": 2, "device": "cpu",
              "classifier": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}}
    comp = np.array([r["compression"] for r in mdl_many(task, emb, params, progress=False)])
    assert (comp < 1.0).all() and (comp > 0.5).all(), comp
