"""Batched probes must give, for every probe, what the engine gives for that probe alone.

Every test compares :func:`evaluate_many` (or a lower-level batched piece) against the engine's solo path
(``Task.evaluate`` / ``evaluators.*`` / ``TorchProbe``) on small synthetic features whose probes differ in
difficulty, so that they early-stop at different epochs and choose different weight decays. Classification results
must be identical; correlations are compared to 1e-6 where the module docstring explains why they may differ in the
last bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from senteval_anatomy.engine import evaluators as ev
from senteval_anatomy.engine.batched import evaluate_many, kfold_eval_many, split_eval_many
from senteval_anatomy.engine.chunks import CHUNK_BYTES, default_max_probes
from senteval_anatomy.engine.probes import OPTIMIZER_NAMES, TorchProbe
from senteval_anatomy.engine.protocol import PYTORCH_L2_GRID
from senteval_anatomy.engine.registry import get_task
from senteval_anatomy.engine.stacked import BatchedMLP
from senteval_anatomy.engine.tasks import Task

# Short training so that the solo references stay cheap; tenacity 1 makes probes stop at visibly different epochs.
FAST = {"nhid": 0, "optim": "rmsprop", "batch_size": 32, "tenacity": 1, "epoch_size": 1, "max_epoch": 40}
PARAMS = {"seed": 5, "kfold": 3, "classifier": FAST, "device": "cpu"}
SIGNAL = (0.05, 0.4, 0.9, 2.0)  # per-probe class separation: from chance to easy


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _classes(n: int, n_classes: int, d: int, seed: int = 0, signal=SIGNAL):
    rs = np.random.RandomState(seed)
    y = rs.randint(0, n_classes, n)
    centers = rs.randn(n_classes, d)
    X = np.stack([centers[y] * s + rs.randn(n, d) for s in signal], axis=1).astype(np.float32)
    return X, y  # X: [n, P, d]


def _pairs(n: int, n_classes: int, d: int, seed: int = 0, signal=SIGNAL):
    rs = np.random.RandomState(seed)
    y = rs.randint(0, n_classes, n)
    centers = rs.randn(n_classes, d)
    A = rs.randn(n, len(signal), d).astype(np.float32)
    B = np.stack([A[:, p] + centers[y] * s + 0.5 * rs.randn(n, d) for p, s in enumerate(signal)], axis=1)
    return A, B.astype(np.float32), y


def _task(name: str, label_names=None) -> Task:
    return Task(get_task(name), {}, [], seed=1111, label_names=label_names)


def _solo(task: Task, embeddings, params) -> list[dict]:
    """The engine on each probe's own [n, d] features."""
    n_probes = next(iter(embeddings.values()))["A" if "A" in next(iter(embeddings.values())) else "X"].shape[1]
    return [task.evaluate({s: {k: (np.ascontiguousarray(v[:, p]) if k in ("X", "A", "B") else v)
                               for k, v in rec.items()} for s, rec in embeddings.items()}, params)
            for p in range(n_probes)]


def _split_embeddings(X, y, sizes):
    a, b = sizes
    return {"train": {"X": X[:a], "y": y[:a]}, "dev": {"X": X[a:b], "y": y[a:b]}, "test": {"X": X[b:], "y": y[b:]}}


def _assert_same(batched, solo):
    assert len(batched) == len(solo)
    for i, (b, s) in enumerate(zip(batched, solo, strict=True)):
        assert b.keys() == s.keys(), f"probe {i}: keys {list(b)} != {list(s)}"
        for k in s:
            if isinstance(s[k], np.ndarray):
                np.testing.assert_array_equal(b[k], s[k], err_msg=f"probe {i} key {k}")
            else:
                assert b[k] == s[k], f"probe {i} key {k}: batched {b[k]!r} != solo {s[k]!r}"


# ------------------------------------------------------------------------------------------------------------------
# Trainer level
# ------------------------------------------------------------------------------------------------------------------


# Every optimizer SentEval's get_optimizer accepts (sgd needs a learning rate); each keeps per-element state that the
# stacked trainer must keep per slot, through compaction when slots stop. Plus SentEval's nhid > 0 MLP with dropout.
OPTIMIZER_CONFIGS = [dict(FAST, optim="sgd,lr=0.1" if name == "sgd" else name) for name in OPTIMIZER_NAMES] + [
    {"nhid": 6, "dropout": 0.2, "optim": "adam,lr=0.01", "batch_size": 25, "tenacity": 2, "epoch_size": 1,
     "max_epoch": 30}]


@pytest.mark.parametrize("config", OPTIMIZER_CONFIGS, ids=[c["optim"] + ("-mlp" if c["nhid"] else "")
                                                           for c in OPTIMIZER_CONFIGS])
def test_stacked_probes_equal_solo_probes(config):
    """Each (probe, weight decay) slot ends exactly where a solo TorchProbe ends: same best validation accuracy,
    same stopping epoch, same predictions; slots stop at different epochs (per-slot early stopping)."""
    X, y = _classes(150, 3, 8)
    n_probes = X.shape[1]
    slot_probe = np.tile(np.arange(n_probes), len(PYTORCH_L2_GRID))
    slot_reg = np.repeat(PYTORCH_L2_GRID, n_probes)
    Xt, yt = torch.from_numpy(X.transpose(1, 0, 2).copy()), torch.from_numpy(y)
    tr, va = np.arange(100), np.arange(100, 150)
    bm = BatchedMLP(8, 3, slot_probe, slot_reg, n_probes=n_probes, seed=7, config=config, device="cpu")
    bm.fit(Xt, yt, tr, val_rows=va)
    pred = bm.predict(Xt, np.arange(150))
    assert len(set(bm.n_epochs_.tolist())) > 1, "probes of different difficulty should stop at different epochs"
    for s in range(len(slot_probe)):
        p = slot_probe[s]
        solo = TorchProbe(8, 3, l2reg=slot_reg[s], seed=7, config=config, device="cpu")
        solo.fit(X[tr, p], y[tr], validation_data=(X[va, p], y[va]))
        assert solo.best_score_ == bm.best_score_[s]
        assert solo.n_epochs_ == bm.n_epochs_[s]
        np.testing.assert_array_equal(solo.predict(X[:, p]), pred[s])


def test_validation_split_draw_equals_solo():
    """``validation_split`` (the refit of KFold / InnerKFold) holds out the same rows as the solo probe."""
    X, y = _classes(120, 2, 5, seed=3)
    Xt, yt = torch.from_numpy(X.transpose(1, 0, 2).copy()), torch.from_numpy(y)
    regs = np.array([1e-5, 1e-2, 1e-3, 1e-4])  # one per probe, as after a grid search
    bm = BatchedMLP(5, 2, np.arange(4), regs, n_probes=4, seed=2, config=FAST, device="cpu")
    bm.fit(Xt, yt, np.arange(120), validation_split=0.1)
    for p in range(4):
        solo = TorchProbe(5, 2, l2reg=regs[p], seed=2, config=FAST, device="cpu").fit(X[:, p], y, validation_split=0.1)
        assert solo.best_score_ == bm.best_score_[p]
        np.testing.assert_array_equal(solo.predict(X[:, p]), bm.predict(Xt, np.arange(120))[p])


# ------------------------------------------------------------------------------------------------------------------
# Evaluators, task level
# ------------------------------------------------------------------------------------------------------------------


def test_split_task_equals_solo_and_regs_are_chosen_per_probe():
    X, y = _classes(240, 5, 8, seed=0)
    emb = _split_embeddings(X, y, (150, 195))
    task = _task("SST5")
    _assert_same(evaluate_many(task, emb, PARAMS), _solo(task, emb, PARAMS))
    # Evaluator level: the chosen weight decay and the whole rounded grid match per probe, and differ across probes.
    kw = dict(nclasses=5, seed=5, classifier=FAST, device="cpu")
    many = split_eval_many(X[:150], y[:150], X[150:195], y[150:195], X[195:], y[195:], **kw)
    for p, r in enumerate(many):
        solo = ev.split_eval(X[:150, p], y[:150], X[150:195, p], y[150:195], X[195:, p], y[195:], **kw)
        assert r == solo
    assert len({r["reg"] for r in many}) > 1, "test data should make probes choose different weight decays"


def test_pair_split_task_builds_pair_features_per_probe():
    """SICKEntailment: [|u - v|, u * v] of each probe's own A and B."""
    A, B, y = _pairs(200, 3, 6, seed=2)
    emb = {s: {"A": A[i:j], "B": B[i:j], "y": y[i:j]} for s, i, j in
           (("train", 0, 120), ("dev", 120, 160), ("test", 160, 200))}
    task = _task("SICKEntailment")
    _assert_same(evaluate_many(task, emb, PARAMS), _solo(task, emb, PARAMS))


def test_kfold_tasks_equal_solo():
    """TREC (6 classes) and MRPC (pairs, f1): StratifiedKFold grid, refit with a 5% split, test predictions."""
    X, y = _classes(200, 6, 8, seed=4)
    emb = {"train": {"X": X[:160], "y": y[:160]}, "test": {"X": X[160:], "y": y[160:]}}
    task = _task("TREC")
    _assert_same(evaluate_many(task, emb, PARAMS), _solo(task, emb, PARAMS))

    A, B, y = _pairs(160, 2, 5, seed=5)
    emb = {"train": {"A": A[:120], "B": B[:120], "y": y[:120]}, "test": {"A": A[120:], "B": B[120:], "y": y[120:]}}
    task = _task("MRPC")
    out = evaluate_many(task, emb, PARAMS)
    _assert_same(out, _solo(task, emb, PARAMS))
    assert all("f1" in r for r in out)


def test_kfold_yhat_equals_solo():
    X, y = _classes(150, 3, 6, seed=6)
    kw = dict(nclasses=3, kfold=3, seed=9, classifier=FAST, device="cpu")
    many = kfold_eval_many(X[:120], y[:120], X[120:], y[120:], **kw)
    for p, r in enumerate(many):
        solo = ev.kfold_eval(X[:120, p], y[:120], X[120:, p], y[120:], **kw)
        np.testing.assert_array_equal(r.pop("yhat"), solo.pop("yhat"))
        assert r == solo


def test_innerkfold_task_equals_solo():
    X, y = _classes(90, 2, 4, seed=7)
    emb = {"all": {"X": X, "y": y}}
    task = _task("CR")
    _assert_same(evaluate_many(task, emb, PARAMS), _solo(task, emb, PARAMS))


def test_relatedness_task_equals_solo():
    """SICK-R: each probe's own Linear+Softmax regression, rounds of 50 epochs, dev-Pearson early stopping."""
    rs = np.random.RandomState(8)
    n, d = 150, 6
    A = rs.randn(n, 3, d).astype(np.float32)
    B = np.stack([A[:, p] + s * rs.randn(n, d) for p, s in enumerate((0.2, 1.0, 3.0))], axis=1).astype(np.float32)
    score = np.clip(5 - np.abs(A[:, 0] - B[:, 0]).mean(1) * 3, 1, 5)
    emb = {s: {"A": A[i:j], "B": B[i:j], "y": score[i:j]} for s, i, j in
           (("train", 0, 64), ("dev", 64, 110), ("test", 110, 150))}
    task = _task("SICKRelatedness")
    params = {"seed": 3, "device": "cpu"}
    batched, solo = evaluate_many(task, emb, params), _solo(task, emb, params)
    for b, s in zip(batched, solo, strict=True):
        assert b.keys() == s.keys()
        # Float metrics: usually bit-identical on CPU, but BLAS may round a stacked matmul differently from the solo
        # one in the last bit for some shapes / memory alignments, and hundreds of epochs carry that to ~1e-7 -
        # 1e-6 relative (module docstring). 1e-5 is far below any difference that matters.
        for k in ("devpearson", "pearson", "spearman", "mse"):
            assert b[k] == pytest.approx(s[k], rel=1e-5, abs=1e-7), k
        np.testing.assert_allclose(b["yhat"], s["yhat"], rtol=1e-5)
        assert (b["ndev"], b["ntest"]) == (s["ndev"], s["ntest"])
    assert len({round(r["devpearson"], 6) for r in batched}) == 3


def test_sts_equals_solo():
    """STS12: vectorised float64 cosine vs the engine's per-row float32 np.dot: same up to float32 rounding; a
    custom similarity runs through the engine per probe (exact)."""
    rs = np.random.RandomState(9)
    task = _task("STS12")
    emb = {}
    for k, name in enumerate(task.spec.splits):
        A = rs.randn(40, 3, 6).astype(np.float32)
        emb[name] = {"A": A, "B": (A + (k + 1) * rs.randn(40, 3, 6)).astype(np.float32), "gold": rs.rand(40) * 5}
    emb[task.spec.splits[0]]["A"][0, 1] = 0.0  # zero vector: cosine NaN -> 0, as in SentEval
    batched, solo = evaluate_many(task, emb, {}), _solo(task, emb, {})
    for b, s in zip(batched, solo, strict=True):
        assert b.keys() == s.keys()
        for name in task.spec.splits:
            assert b[name]["nsamples"] == s[name]["nsamples"]
            assert b[name]["pearson"][0] == pytest.approx(s[name]["pearson"][0], abs=1e-6)
            assert b[name]["spearman"][0] == pytest.approx(s[name]["spearman"][0], abs=1e-6)
        assert b["all"]["pearson"]["mean"] == pytest.approx(s["all"]["pearson"]["mean"], abs=1e-6)

    params = {"similarity": lambda u, v: float(np.dot(u, v))}
    _assert_same(evaluate_many(task, emb, params), _solo(task, emb, params))


def test_sklearn_path_is_the_engine_per_probe():
    X, y = _classes(120, 2, 5, seed=10)
    emb = _split_embeddings(X, y, (70, 95))
    task = _task("SST2")
    params = {"usepytorch": False, "seed": 4}
    _assert_same(evaluate_many(task, emb, params), _solo(task, emb, params))


def test_wordcontent_forces_linear_probe_like_the_engine():
    """SentEval trains WordContent with a linear probe whatever ``nhid`` says; other probing tasks use the MLP."""
    X, y = _classes(150, 3, 6, seed=11, signal=(0.3, 1.0))
    emb = _split_embeddings(X, y, (90, 120))
    names = ["a", "b", "c"]
    params = dict(PARAMS, classifier=dict(FAST, nhid=4, dropout=0.1))
    linear = dict(PARAMS, classifier=dict(FAST, nhid=0, dropout=0.1))
    wc = evaluate_many(_task("WordContent", label_names=names), emb, params)
    _assert_same(wc, _solo(_task("WordContent", label_names=names), emb, params))
    _assert_same(wc, evaluate_many(_task("WordContent", label_names=names), emb, linear))
    assert evaluate_many(_task("Depth", label_names=names), emb, params) != wc, "nhid=4 should change the numbers"


@pytest.mark.parametrize("name,n_classes,n_train", [("TopConstituents", 20, 300), ("WordContent", 1000, 1200)])
def test_many_classes_equal_solo(name, n_classes, n_train):
    """TopConstituents (20 classes) and WordContent (1,000 classes in SentEval's data) have more classes than one
    SIMD vector holds, so the stacked loss takes the solo formulation instead of the fast layout: same results."""
    from senteval_anatomy.engine.kernels import fast_ce_ok

    n = n_train + 160
    X, y = _classes(n, n_classes, 8, seed=13, signal=(0.5, 3.0))
    emb = _split_embeddings(X, y, (n_train, n_train + 80))
    task = _task(name, label_names=[f"c{k}" for k in range(n_classes)])
    params = dict(PARAMS, classifier=dict(FAST, max_epoch=6))
    batched = evaluate_many(task, emb, params)
    _assert_same(batched, _solo(task, emb, params))
    assert not fast_ce_ok(n_classes, 64), "this test is meant for the many-class loss path"
    assert batched[0]["acc"] < batched[1]["acc"], "the probes should differ, or the comparison proves little"


# ------------------------------------------------------------------------------------------------------------------
# Chunking, determinism, errors
# ------------------------------------------------------------------------------------------------------------------


def test_chunking_and_determinism():
    """Results do not depend on how many probes train together, and two runs are identical."""
    A, B, y = _pairs(160, 2, 5, seed=12)
    emb = {"train": {"A": A[:120], "B": B[:120], "y": y[:120]}, "test": {"A": A[120:], "B": B[120:], "y": y[120:]}}
    task = _task("MRPC")
    whole = evaluate_many(task, emb, PARAMS)
    _assert_same(evaluate_many(task, emb, PARAMS, max_probes=3), whole)
    _assert_same(evaluate_many(task, emb, PARAMS, max_probes=1), whole)
    _assert_same(evaluate_many(task, emb, PARAMS), whole)


def test_default_chunk_fits_budget():
    n_rows, width = 70_000, 128
    k = default_max_probes(n_rows, width)
    assert k * n_rows * width * 4 <= CHUNK_BYTES < (k + 1) * n_rows * width * 4
    assert default_max_probes(10**9, 10**4) == 1  # never zero


def test_errors_name_the_problem():
    X, y = _classes(60, 2, 4)
    task = _task("SST2")
    emb = _split_embeddings(X[:, 0], y, (30, 45))  # 2-D: a single probe's features
    with pytest.raises(ValueError, match=r"\[n, P, d\]"):
        evaluate_many(task, emb, PARAMS)
    emb = _split_embeddings(X, y, (30, 45))
    emb["test"]["X"] = emb["test"]["X"][:, :2]
    with pytest.raises(ValueError, match="number of probes"):
        evaluate_many(task, emb, PARAMS)
    with pytest.raises(ValueError, match="max_probes"):
        evaluate_many(task, _split_embeddings(X, y, (30, 45)), PARAMS, max_probes=0)
    with pytest.raises(KeyError, match="dev"):
        evaluate_many(task, {"train": emb["train"], "test": emb["test"]}, PARAMS)


# ------------------------------------------------------------------------------------------------------------------
# Variants: other label sets (control tasks) and other seeds as slots of the same stacked run
# ------------------------------------------------------------------------------------------------------------------


def _relabel(y: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Another label set of the same rows (like a control task: a fixed function unrelated to the features)."""
    return np.random.RandomState(seed).randint(0, n_classes, len(y))


@pytest.mark.parametrize("config", [FAST, OPTIMIZER_CONFIGS[-1]], ids=["linear", "mlp-dropout"])
def test_stacked_label_sets_and_seeds_equal_solo_probes(config):
    """One BatchedMLP carrying 2 label sets x 3 seeds x 4 probes x 2 weight decays: every slot ends where a solo
    TorchProbe with that seed, trained on that label set, ends (its own init, mini-batches, dropout masks)."""
    X, y = _classes(150, 3, 8, seed=1)
    Y = np.stack([y, _relabel(y, 3, 9)])
    n_probes, regs, seeds = X.shape[1], [1e-5, 1e-2], [7, 8, 11]
    slot_probe = np.tile(np.arange(n_probes), len(regs) * len(seeds) * 2)
    slot_reg = np.tile(np.repeat(regs, n_probes), len(seeds) * 2)
    slot_labels = np.repeat([0, 1], len(regs) * n_probes * len(seeds))
    slot_stream = np.tile(np.repeat(np.arange(len(seeds)), len(regs) * n_probes), 2)
    Xt = torch.from_numpy(X.transpose(1, 0, 2).copy())
    tr, va = np.arange(100), np.arange(100, 150)
    torch.manual_seed(123)
    bm = BatchedMLP(8, 3, slot_probe, slot_reg, n_probes=n_probes, config=config, device="cpu",
                    slot_stream=slot_stream, stream_seeds=seeds, slot_labels=slot_labels)
    bm.fit(Xt, torch.from_numpy(Y), tr, val_rows=va)
    pred = bm.predict(Xt, np.arange(150))
    test_acc = bm.score(Xt, torch.from_numpy(Y), np.arange(100, 150))
    assert len({bm.best_score_[s] for s in range(len(slot_probe))}) > 3
    for s in range(len(slot_probe)):
        p, lab, sd = slot_probe[s], slot_labels[s], seeds[slot_stream[s]]
        solo = TorchProbe(8, 3, l2reg=slot_reg[s], seed=sd, config=config, device="cpu")
        solo.fit(X[tr, p], Y[lab, tr], validation_data=(X[va, p], Y[lab, va]))
        assert solo.best_score_ == bm.best_score_[s], f"slot {s}"
        assert solo.n_epochs_ == bm.n_epochs_[s], f"slot {s}"
        np.testing.assert_array_equal(solo.predict(X[:, p]), pred[s])
        assert solo.score(X[va, p], Y[lab, va]) == test_acc[s]


@pytest.mark.parametrize("optim", ["rmsprop", "rprop"])
def test_seeds_with_the_same_schedule_and_every_weight_decay_train_as_one_group(optim):
    """Streams (seeds) with as many training and validation rows share every step, and with an optimizer whose
    weight decay is torch's coupled L2 (rmsprop) the stack adds each slot's decay itself: one param group for every
    seed and weight decay (one forward, one loss per step). Streams of other sizes form their own groups; an
    optimizer without that decay (rprop) keeps a group per weight decay. Every layout ends where the solo probes
    end."""
    config = dict(FAST, optim=optim)
    X, y = _classes(150, 3, 8, seed=2)
    Xt, yt = torch.from_numpy(X.transpose(1, 0, 2).copy()), torch.from_numpy(y)
    n_probes, regs, seeds = X.shape[1], [1e-5, 1e-2], [7, 8, 11]
    slot_probe = np.tile(np.arange(n_probes), len(regs) * len(seeds))
    slot_reg = np.tile(np.repeat(regs, n_probes), len(seeds))
    slot_stream = np.repeat(np.arange(len(seeds)), len(regs) * n_probes)
    same = ([np.arange(100)] * 3, [np.arange(100, 150)] * 3)
    ragged = ([np.arange(100), np.arange(90), np.arange(100)], [np.arange(100, 150)] * 3)
    per_cohort = 1 if optim == "rmsprop" else len(regs)
    for (tr, va), groups in ((same, per_cohort), (ragged, 2 * per_cohort)):
        bm = BatchedMLP(8, 3, slot_probe, slot_reg, n_probes=n_probes, config=config, device="cpu",
                        slot_stream=slot_stream, stream_seeds=seeds)
        bm.fit(Xt, yt, tr, val_rows=va)
        assert bm.n_groups_ == groups
        for s in range(len(slot_probe)):
            k, p = slot_stream[s], slot_probe[s]
            solo = TorchProbe(8, 3, l2reg=slot_reg[s], seed=seeds[k], config=config, device="cpu")
            solo.fit(X[tr[k], p], y[tr[k]], validation_data=(X[va[k], p], y[va[k]]))
            assert (solo.best_score_, solo.n_epochs_) == (bm.best_score_[s], bm.n_epochs_[s]), f"slot {s}"


@pytest.mark.parametrize("config", [FAST, OPTIMIZER_CONFIGS[-1]], ids=["linear", "mlp-dropout"])
def test_label_sets_sharing_rows_train_as_blocks_like_each_label_set_alone(config):
    """A task's probes and two control label sets on the same seed (same rows) train as in-order blocks of probes
    that read the features without a gather: every slot's scores, epochs, predictions and (linear probe) best
    weights equal, bit for bit, a BatchedMLP trained on that label set alone (the plain sweep's run for the task's
    own labels)."""
    X, y = _classes(150, 3, 8, seed=1)
    Y = np.stack([y, _relabel(y, 3, 9), _relabel(y, 3, 10)])
    n_probes, regs, n_sets = X.shape[1], [1e-5, 1e-2], 3
    Xt = torch.from_numpy(X.transpose(1, 0, 2).copy())
    tr, va, te = np.arange(100), np.arange(100, 125), np.arange(125, 150)
    alone_probe, alone_reg = np.tile(np.arange(n_probes), len(regs)), np.repeat(regs, n_probes)
    torch.manual_seed(123)
    bm = BatchedMLP(8, 3, np.tile(alone_probe, n_sets), np.tile(alone_reg, n_sets), n_probes=n_probes,
                    config=config, device="cpu", slot_labels=np.repeat(np.arange(n_sets), len(alone_probe)))
    assert [g.full for g in bm._stack.groups] == [n_sets * len(regs)], "the label sets should form in-order blocks"
    bm.fit(Xt, torch.from_numpy(Y), tr, val_rows=va)
    pred = bm.predict(Xt, te)
    acc = bm.score(Xt, torch.from_numpy(Y), te)
    assert len(set(acc.tolist())) > 3
    n = len(alone_probe)
    for v in range(n_sets):
        torch.manual_seed(123)
        alone = BatchedMLP(8, 3, alone_probe, alone_reg, n_probes=n_probes, config=config, device="cpu")
        alone.fit(Xt, torch.from_numpy(Y[v]), tr, val_rows=va)
        if not config["nhid"]:  # the MLP's second layer is a bmm over 3x the slots: same outcomes, maybe not bits
            for best, ref in zip(bm._stack.best, alone._stack.best, strict=True):
                assert torch.equal(best[v * n : (v + 1) * n], ref), f"label set {v}: best weights differ"
        np.testing.assert_array_equal(bm.best_score_[v * n : (v + 1) * n], alone.best_score_)
        np.testing.assert_array_equal(bm.n_epochs_[v * n : (v + 1) * n], alone.n_epochs_)
        np.testing.assert_array_equal(pred[v * n : (v + 1) * n], alone.predict(Xt, te))
        np.testing.assert_array_equal(acc[v * n : (v + 1) * n], alone.score(Xt, torch.from_numpy(Y[v]), te))


def _variants(task_y: dict, n_classes: int):
    from senteval_anatomy.engine.batched import Variant

    control = {s: _relabel(y, n_classes, 3 + i) for i, (s, y) in enumerate(sorted(task_y.items()))}
    return [Variant(), Variant(labels=control), Variant(seed=6), Variant(labels=control, seed=6)], control


@pytest.mark.parametrize("name", ["SST5", "TREC", "CR", "TopConstituents"])
def test_evaluate_many_variants_equal_solo(name):
    """Task + control labels x 2 seeds in one pass of evaluate_many: each variant's results equal the engine's solo
    results with those labels and that seed (split, kfold with per-variant folds, innerkfold), test predictions too.
    TopConstituents (20 classes) takes the many-class loss path with a label set per slot."""
    n_classes = {"SST5": 5, "TREC": 6, "CR": 2, "TopConstituents": 20}[name]
    X, y = _classes(150 if name != "CR" else 90, n_classes, 6, seed=4)
    if name in ("SST5", "TopConstituents"):
        emb = _split_embeddings(X, y, (90, 120))
    elif name == "TREC":
        emb = {"train": {"X": X[:120], "y": y[:120]}, "test": {"X": X[120:], "y": y[120:]}}
    else:
        emb = {"all": {"X": X, "y": y}}
    task = _task(name, label_names=[f"c{k}" for k in range(n_classes)]) if name == "TopConstituents" else _task(name)
    variants, control = _variants({s: r["y"] for s, r in emb.items()}, n_classes)
    many = evaluate_many(task, emb, PARAMS, variants=variants, predictions=True)
    assert len(many) == len(variants)
    for v, rv in zip(variants, many, strict=True):
        e = emb if v.labels is None else {s: dict(r, y=control[s]) for s, r in emb.items()}
        params = PARAMS if v.seed is None else dict(PARAMS, seed=v.seed)
        solo = _solo(task, e, params)
        if name != "CR":
            for r, ref in zip(rv, evaluate_many(task, e, params, predictions=True), strict=True):
                np.testing.assert_array_equal(r.pop("yhat"), ref["yhat"])
        _assert_same(rv, solo)
    assert [r["acc"] for r in many[0]] != [r["acc"] for r in many[1]], "control labels should change the scores"


MLP_DROPOUT = {"nhid": 6, "dropout": 0.2, "optim": "adam,lr=0.01", "batch_size": 25, "tenacity": 2, "epoch_size": 1,
               "max_epoch": 30}


def test_chunks_in_parallel_threads_equal_one_chunk_at_a_time():
    """With several cores, probe chunks train in parallel threads (chunks.chunk_workers); each trainer seeds torch's
    global generator and draws its dropout masks under the RNG lock, so every result (a task, its control labels,
    two seeds; an MLP with dropout) equals the run of one chunk at a time, bit for bit, run after run."""
    from senteval_anatomy.engine.chunks import chunk_workers, work_items

    X, y = _classes(150, 3, 6, seed=4, signal=SIGNAL * 6)  # 24 probes: room for 3 parallel chunks of 8
    emb = _split_embeddings(X, y, (90, 120))
    task = _task("SST5")
    variants, _ = _variants({s: r["y"] for s, r in emb.items()}, 3)
    params = dict(PARAMS, classifier=MLP_DROPOUT)
    alone = evaluate_many(task, emb, params, variants=variants, max_probes=1, predictions=True)  # one thread
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert chunk_workers(torch.device("cpu"), 1) == 3
        for _ in range(3):
            together = evaluate_many(task, emb, params, variants=variants, max_probes=1, predictions=True)
            for rv, ref in zip(together, alone, strict=True):
                for r, s in zip(rv, ref, strict=True):
                    np.testing.assert_array_equal(r.pop("yhat"), s["yhat"])
                _assert_same(rv, [{k: v for k, v in s.items() if k != "yhat"} for s in ref])
        assert [len(vs) for *_, vs in work_items(24, 150, 6, None, len(variants), 3)] == [4] * 3  # 3 chunks of 8
        assert [vs for *_, vs in work_items(4, 150, 6, None, len(variants), 3)] == [[0, 1], [2], [3]]  # few probes
        for n_probes in (24, 4):  # probe chunks of 8 in parallel; 4 probes: the variants split across the workers
            few = {s: dict(r, X=r["X"][:, :n_probes]) for s, r in emb.items()}
            default = evaluate_many(task, few, params, variants=variants, predictions=True)
            for rv, ref in zip(default, alone, strict=True):
                assert [r["acc"] for r in rv] == [r["acc"] for r in ref[:n_probes]]
                assert [r["devacc"] for r in rv] == [r["devacc"] for r in ref[:n_probes]]
                for r, s in zip(rv, ref, strict=False):
                    np.testing.assert_array_equal(r["yhat"], s["yhat"])
    finally:
        torch.set_num_threads(before)
