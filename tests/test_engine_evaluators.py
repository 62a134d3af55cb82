"""Evaluators and probes of the built-in engine on synthetic features with known answers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from senteval_anatomy.engine import evaluators as ev
from senteval_anatomy.engine import protocol
from senteval_anatomy.engine.probes import (
    CLASSIFIER_DEFAULTS,
    EarlyStopping,
    RelatednessRegressor,
    SklearnProbe,
    TorchProbe,
    classifier_config,
    parse_optimizer,
)
from senteval_anatomy.engine.protocol import PYTORCH_L2_GRID, SKLEARN_C_GRIDS

FAST = {"nhid": 0, "optim": "adam", "batch_size": 32, "tenacity": 2, "epoch_size": 1, "max_epoch": 6}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def blobs(n, d=6, nclasses=2, sep=4.0, seed=0, shuffle_labels=False):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % nclasses
    centers = rng.randn(nclasses, d) * sep
    X = centers[y] + rng.randn(n, d)
    if shuffle_labels:
        y = rng.permutation(y)
    return X.astype(np.float32), y.astype(np.int64)


# ------------------------------------------------------------------------------------------------------------------
# Constants and parsing
# ------------------------------------------------------------------------------------------------------------------


def test_grids_are_sentevals():
    assert PYTORCH_L2_GRID == (1e-5, 1e-4, 1e-3, 1e-2)
    assert SKLEARN_C_GRIDS["split"] == (0.25, 0.5, 1, 2, 4, 8)
    assert SKLEARN_C_GRIDS["innerkfold"] == (0.25, 0.5, 1, 2, 4, 8)
    assert SKLEARN_C_GRIDS["kfold"] == (0.5, 1, 2, 4, 8, 16, 32)
    assert CLASSIFIER_DEFAULTS == {"optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4,
                                   "max_epoch": 200, "dropout": 0.0}


def test_parse_optimizer():
    assert parse_optimizer("adam") == (torch.optim.Adam, {})
    assert parse_optimizer("rmsprop") == (torch.optim.RMSprop, {})
    assert parse_optimizer("sgd,lr=0.1") == (torch.optim.SGD, {"lr": 0.1})
    assert parse_optimizer("adagrad,lr=0.1,lr_decay=0.05") == (torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.05})
    assert parse_optimizer("adam,lr=1e-3")[1] == {"lr": 0.001}
    with pytest.raises(ValueError, match="needs a learning rate"):
        parse_optimizer("sgd")
    with pytest.raises(ValueError, match="Unknown optimization method"):
        parse_optimizer("lbfgs")
    with pytest.raises(ValueError, match="Unexpected parameters"):
        parse_optimizer("adam,momentum=0.9")
    with pytest.raises(ValueError, match="number"):
        parse_optimizer("adam,lr=fast")


def test_classifier_config_keeps_present_keys():
    cfg = classifier_config({"nhid": 50, "optim": "rmsprop", "dropout": 0.1})
    assert cfg == {"nhid": 50, "optim": "rmsprop", "batch_size": 64, "tenacity": 5, "epoch_size": 4,
                   "max_epoch": 200, "dropout": 0.1}
    with pytest.raises(ValueError, match="nhid"):
        classifier_config({"optim": "adam"})


# ------------------------------------------------------------------------------------------------------------------
# Early stopping: the cumulative tenacity rule
# ------------------------------------------------------------------------------------------------------------------


def test_tenacity_counter_is_cumulative():
    es = EarlyStopping(tenacity=2)
    scores = [0.5, 0.6, 0.55, 0.7, 0.65, 0.6, 0.9]
    improved = []
    for s in scores:
        improved.append(es.step(s))
        if es.stop:
            break
    # non-improving at 0.55 (count 0 -> 1), 0.65 (1 -> 2), 0.6 (2 >= 2: stop). A consecutive counter would go on.
    assert improved == [True, True, False, True, False, False]
    assert es.best == 0.7 and es.count == 3


def test_equal_score_is_not_an_improvement():
    es = EarlyStopping(tenacity=0)
    assert es.step(0.5) is True
    assert es.step(0.5) is False and es.stop


@pytest.mark.parametrize("tenacity,scores,n_val", [
    (0, [0.5, 0.4, 0.9], 2),
    (1, [0.5, 0.4, 0.6, 0.3, 0.9], 4),  # cumulative: 2nd non-improvement stops even after an improvement
    (3, [0.1] * 10, 5),
    (100, [0.1 * i for i in range(100)], 11),  # max_epoch=20, epoch_size=2: nepoch 0, 2, ..., 20 -> 11 validations
])
def test_fit_loop_follows_stopping_rule(monkeypatch, tenacity, scores, n_val):
    X, y = blobs(40)
    seq = iter(scores)
    monkeypatch.setattr(TorchProbe, "score", lambda self, X, y: next(seq))
    cfg = dict(FAST, tenacity=tenacity, epoch_size=2, max_epoch=20)
    p = TorchProbe(6, 2, config=cfg, device="cpu").fit(X, y, validation_data=(X, y))
    assert p.n_validations_ == n_val
    assert p.n_epochs_ == 2 * n_val
    assert p.best_score_ == max(scores[:n_val])


def test_best_snapshot_is_restored(monkeypatch):
    X, y = blobs(40)
    snapshots = []
    real_score = TorchProbe.score
    seq = iter([0.3, 0.9, 0.5, 0.4])

    def scripted(self, X_, y_):
        snapshots.append(copy.deepcopy(self.model.state_dict()))
        return next(seq)

    monkeypatch.setattr(TorchProbe, "score", scripted)
    p = TorchProbe(6, 2, config=dict(FAST, tenacity=1), device="cpu").fit(X, y, validation_data=(X, y))
    monkeypatch.setattr(TorchProbe, "score", real_score)
    for k, v in p.model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])


# ------------------------------------------------------------------------------------------------------------------
# The PyTorch probe against a line-by-line transcription of SentEval's PyTorchClassifier / MLP (CPU)
# ------------------------------------------------------------------------------------------------------------------


class SentEvalMLP:
    """SentEval 5d6dc11 ``tools/classifier.py`` (``PyTorchClassifier`` + ``MLP``), with ``.cuda()`` -> CPU, the
    optimizer built directly, and the global ``np.random`` stream, as in the original."""

    def __init__(self, params, inputdim, nclasses, l2reg=0.0, batch_size=64, seed=1111):
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.inputdim, self.nclasses, self.l2reg = inputdim, nclasses, l2reg
        self.nhid = params["nhid"]
        self.optim = params.get("optim", "adam")
        self.tenacity = params.get("tenacity", 5)
        self.epoch_size = params.get("epoch_size", 4)
        self.max_epoch = params.get("max_epoch", 200)
        self.dropout = params.get("dropout", 0.0)
        self.batch_size = params.get("batch_size", 64)
        if params["nhid"] == 0:
            self.model = torch.nn.Sequential(torch.nn.Linear(inputdim, nclasses))
        else:
            self.model = torch.nn.Sequential(torch.nn.Linear(inputdim, params["nhid"]),
                                             torch.nn.Dropout(p=self.dropout), torch.nn.Sigmoid(),
                                             torch.nn.Linear(params["nhid"], nclasses))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        optim_fn, optim_params = {"adam": (torch.optim.Adam, {}), "rmsprop": (torch.optim.RMSprop, {}),
                                  "sgd,lr=0.1": (torch.optim.SGD, {"lr": 0.1})}[self.optim]
        self.optimizer = optim_fn(self.model.parameters(), **optim_params)
        self.optimizer.param_groups[0]["weight_decay"] = self.l2reg

    def prepare_split(self, X, y, validation_data=None, validation_split=None):
        if validation_data is not None:
            trainX, trainy = X, y
            devX, devy = validation_data
        else:
            permutation = np.random.permutation(len(X))
            trainidx = permutation[int(validation_split * len(X)):]
            devidx = permutation[0:int(validation_split * len(X))]
            trainX, trainy = X[trainidx], y[trainidx]
            devX, devy = X[devidx], y[devidx]
        f = lambda a, t: torch.from_numpy(a).to("cpu", dtype=t)  # noqa: E731
        return f(trainX, torch.float32), f(trainy, torch.int64), f(devX, torch.float32), f(devy, torch.int64)

    def fit(self, X, y, validation_data=None, validation_split=None, early_stop=True):
        self.nepoch = 0
        bestaccuracy = -1
        stop_train = False
        early_stop_count = 0
        trainX, trainy, devX, devy = self.prepare_split(X, y, validation_data, validation_split)
        while not stop_train and self.nepoch <= self.max_epoch:
            self.trainepoch(trainX, trainy, epoch_size=self.epoch_size)
            accuracy = self.score(devX, devy)
            if accuracy > bestaccuracy:
                bestaccuracy = accuracy
                bestmodel = copy.deepcopy(self.model)
            elif early_stop:
                if early_stop_count >= self.tenacity:
                    stop_train = True
                early_stop_count += 1
        self.model = bestmodel
        return bestaccuracy

    def trainepoch(self, X, y, epoch_size=1):
        self.model.train()
        for _ in range(self.nepoch, self.nepoch + epoch_size):
            permutation = np.random.permutation(len(X))
            for i in range(0, len(X), self.batch_size):
                idx = torch.from_numpy(permutation[i:i + self.batch_size]).long()
                output = self.model(X[idx])
                loss = self.loss_fn(output, y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.nepoch += epoch_size

    def score(self, devX, devy):
        self.model.eval()
        correct = 0
        if not isinstance(devX, torch.Tensor):
            devX, devy = torch.FloatTensor(devX), torch.LongTensor(devy)
        with torch.no_grad():
            for i in range(0, len(devX), self.batch_size):
                output = self.model(devX[i:i + self.batch_size])
                pred = output.data.max(1)[1]
                correct += pred.long().eq(devy[i:i + self.batch_size].long()).sum().item()
        return 1.0 * correct / len(devX)


@pytest.mark.parametrize("cfg", [
    dict(FAST),
    dict(FAST, optim="rmsprop", batch_size=16, tenacity=1, epoch_size=2),
    dict(FAST, nhid=8, dropout=0.2, optim="sgd,lr=0.1"),
], ids=["adam-logreg", "rmsprop-logreg", "sgd-mlp-dropout"])
@pytest.mark.parametrize("split", ["validation_data", "validation_split"])
def test_torch_probe_equals_senteval_transcription(cfg, split):
    X, y = blobs(120, d=6, nclasses=3, sep=1.0, seed=3)
    Xd, yd = blobs(30, d=6, nclasses=3, sep=1.0, seed=4)
    kw = {"validation_data": (Xd, yd)} if split == "validation_data" else {"validation_split": 0.05}
    ref = SentEvalMLP(cfg, 6, 3, l2reg=1e-3, seed=7)
    ref_best = ref.fit(X, y, **kw)
    ours = TorchProbe(6, 3, l2reg=1e-3, seed=7, config=cfg, device="cpu").fit(X, y, **kw)
    assert ours.best_score_ == ref_best
    assert ours.n_epochs_ == ref.nepoch
    for (k, a), b in zip(ours.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert ours.score(Xd, yd) == ref.score(Xd, yd)


def test_torch_probe_is_deterministic_and_seed_sensitive():
    X, y = blobs(100, sep=1.0)
    a = TorchProbe(6, 2, seed=1, config=FAST, device="cpu").fit(X, y, validation_split=0.1)
    b = TorchProbe(6, 2, seed=1, config=FAST, device="cpu").fit(X, y, validation_split=0.1)
    c = TorchProbe(6, 2, seed=2, config=FAST, device="cpu").fit(X, y, validation_split=0.1)
    sa, sb, sc = (p.model.state_dict()["0.weight"] for p in (a, b, c))
    assert torch.equal(sa, sb) and not torch.equal(sa, sc)


def test_initial_weights_are_a_function_of_seed_and_shape():
    torch.manual_seed(0)
    torch.rand(5)  # whatever happened before must not matter
    a = TorchProbe(6, 3, seed=11, config={"nhid": 4}, device="cpu").model.state_dict()
    torch.manual_seed(11)
    lin1, lin2 = torch.nn.Linear(6, 4), torch.nn.Linear(4, 3)
    assert torch.equal(a["0.weight"], lin1.weight) and torch.equal(a["3.bias"], lin2.bias)


def test_weight_decay_on_all_params():
    p = TorchProbe(6, 2, l2reg=1e-3, config={"nhid": 4}, device="cpu")
    assert len(p.optimizer.param_groups) == 1
    assert p.optimizer.param_groups[0]["weight_decay"] == 1e-3
    assert len(p.optimizer.param_groups[0]["params"]) == 4  # both weights and both biases


def test_torch_probe_checks_inputs():
    X, y = blobs(40)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        TorchProbe(6, 2, device="cpu").fit(X, y + 1, validation_split=0.1)
    with pytest.raises(ValueError, match="leaves no validation sample"):
        TorchProbe(6, 2, device="cpu").fit(X[:10], y[:10], validation_split=0.05)
    with pytest.raises(ValueError, match="validation"):
        TorchProbe(6, 2, device="cpu").fit(X, y)


# ------------------------------------------------------------------------------------------------------------------
# Evaluators: known answers
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("usepytorch", [False, True], ids=["sklearn", "pytorch"])
def test_split_eval_separable_vs_shuffled(usepytorch):
    Xtr, ytr = blobs(200, nclasses=3, seed=0)
    Xdv, ydv = blobs(60, nclasses=3, seed=0)  # same centers: same seed draws the same centers first
    Xte, yte = blobs(90, nclasses=3, seed=0)
    kw = dict(nclasses=3, seed=1, usepytorch=usepytorch, classifier=dict(FAST, optim="adam,lr=0.05"), device="cpu")
    good = ev.split_eval(Xtr, ytr, Xdv, ydv, Xte, yte, **kw)
    assert good["devacc"] >= 95 and good["acc"] >= 95
    Xs, ys = blobs(300, nclasses=3, seed=5, shuffle_labels=True)
    bad = ev.split_eval(Xs[:200], ys[:200], Xs[200:250], ys[200:250], Xs[250:], ys[250:], **kw)
    assert bad["acc"] <= 60  # chance is 33%
    assert good["regs"] == list(PYTORCH_L2_GRID if usepytorch else SKLEARN_C_GRIDS["split"])


def test_grid_ties_go_to_first_value():
    Xtr, ytr = blobs(100, sep=10.0)
    Xdv, ydv = blobs(40, sep=10.0)
    for usepytorch, first in ((False, 0.25), (True, 1e-5)):
        r = ev.split_eval(Xtr, ytr, Xdv, ydv, Xdv, ydv, nclasses=2, usepytorch=usepytorch, classifier=FAST,
                          device="cpu")
        assert r["dev_scores"] == [100.0] * len(r["regs"])
        assert r["reg"] == first
    assert protocol.select_reg([70.0, 71.25, 71.25, 69.0], [1, 2, 3, 4]) == (2, 71.25)


def test_sklearn_split_equals_direct_sklearn():
    Xtr, ytr = blobs(150, nclasses=3, sep=1.0, seed=1)
    Xdv, ydv = blobs(50, nclasses=3, sep=1.0, seed=1)
    Xte, yte = blobs(50, nclasses=3, sep=1.0, seed=1)
    r = ev.split_eval(Xtr, ytr, Xdv, ydv, Xte, yte, nclasses=3, seed=3, usepytorch=False)
    scores = [round(100 * LogisticRegression(C=c, random_state=3).fit(Xtr, ytr).score(Xdv, ydv), 2)
              for c in (0.25, 0.5, 1, 2, 4, 8)]
    best = (0.25, 0.5, 1, 2, 4, 8)[int(np.argmax(scores))]
    acc = round(100 * LogisticRegression(C=best, random_state=3).fit(Xtr, ytr).score(Xte, yte), 2)
    assert (r["dev_scores"], r["devacc"], r["reg"], r["acc"]) == (scores, max(scores), best, acc)


def test_sklearn_kfold_equals_direct_sklearn():
    Xtr, ytr = blobs(120, nclasses=3, sep=1.0, seed=2)
    Xte, yte = blobs(40, nclasses=3, sep=1.0, seed=2)
    r = ev.kfold_eval(Xtr, ytr, Xte, yte, nclasses=3, kfold=4, seed=9, usepytorch=False)
    skf = StratifiedKFold(n_splits=4, shuffle=True, random_state=9)
    grid = (0.5, 1, 2, 4, 8, 16, 32)
    scores = []
    for c in grid:
        accs = [LogisticRegression(C=c, random_state=9).fit(Xtr[a], ytr[a]).score(Xtr[b], ytr[b])
                for a, b in skf.split(Xtr, ytr)]
        scores.append(round(100 * np.mean(accs), 2))
    best = grid[int(np.argmax(scores))]
    clf = LogisticRegression(C=best, random_state=9).fit(Xtr, ytr)
    assert r["dev_scores"] == scores and r["devacc"] == max(scores) and r["reg"] == best
    assert r["acc"] == round(100 * clf.score(Xte, yte), 2)
    np.testing.assert_array_equal(r["yhat"], clf.predict(Xte))


def test_sklearn_innerkfold_equals_direct_sklearn():
    X, y = blobs(90, sep=0.8, seed=4)
    r = ev.innerkfold_eval(X, y, nclasses=2, kfold=3, seed=5, usepytorch=False)
    skf = StratifiedKFold(n_splits=3, shuffle=True, random_state=1111)
    grid = (0.25, 0.5, 1, 2, 4, 8)
    dev, test = [], []
    for tr, te in skf.split(X, y):
        scores = []
        for c in grid:
            accs = [LogisticRegression(C=c, random_state=5).fit(X[tr][a], y[tr][a]).score(X[tr][b], y[tr][b])
                    for a, b in skf.split(X[tr], y[tr])]
            scores.append(round(100 * np.mean(accs), 2))
        dev.append(np.max(scores))
        best = grid[int(np.argmax(scores))]
        test.append(round(100 * LogisticRegression(C=best, random_state=5).fit(X[tr], y[tr]).score(X[te], y[te]), 2))
    assert r["fold_devacc"] == dev and r["fold_acc"] == test
    assert r["devacc"] == round(np.mean(dev), 2) and r["acc"] == round(np.mean(test), 2)


def test_innerkfold_ignores_seed_for_folds_but_kfold_uses_it():
    X, y = blobs(60, sep=0.5, seed=6)
    a = ev.innerkfold_eval(X, y, nclasses=2, kfold=3, seed=1, usepytorch=False)
    b = ev.innerkfold_eval(X, y, nclasses=2, kfold=3, seed=2, usepytorch=False)
    assert a == b  # sklearn's lbfgs draws nothing from random_state, and the folds are fixed at 1111
    c = ev.kfold_eval(X, y, X, y, nclasses=2, kfold=3, seed=1, usepytorch=False)
    d = ev.kfold_eval(X, y, X, y, nclasses=2, kfold=3, seed=2, usepytorch=False)
    assert c["dev_scores"] != d["dev_scores"]


def test_rounding_mirrors_senteval_expressions():
    # A single accuracy uses Python's round, a mean uses NumPy's: they differ on 2.675.
    assert protocol.split_score(0.5) == 50.0 and round(2.675, 2) == 2.67
    assert protocol.mean_score([2.675]) == 2.68


@pytest.mark.parametrize("usepytorch", [False, True], ids=["sklearn", "pytorch"])
def test_pytorch_and_sklearn_evaluators_are_deterministic(usepytorch):
    X, y = blobs(80, sep=1.0, seed=8)
    kw = dict(nclasses=2, seed=3, usepytorch=usepytorch, classifier=FAST, device="cpu")
    r1 = ev.kfold_eval(X, y, X[:20], y[:20], kfold=2, **kw)
    r2 = ev.kfold_eval(X, y, X[:20], y[:20], kfold=2, **kw)
    np.testing.assert_array_equal(r1.pop("yhat"), r2.pop("yhat"))
    assert r1 == r2
    assert ev.innerkfold_eval(X, y, kfold=2, **kw) == ev.innerkfold_eval(X, y, kfold=2, **kw)


def test_sklearn_probe_ignores_validation_args():
    X, y = blobs(50)
    a = SklearnProbe(C=1, seed=0).fit(X, y, validation_split=0.5)
    assert a.model.C == 1 and a.model.random_state == 0
    assert a.score(X, y) == LogisticRegression(C=1, random_state=0).fit(X, y).score(X, y)


# ------------------------------------------------------------------------------------------------------------------
# Relatedness and STS
# ------------------------------------------------------------------------------------------------------------------


def test_relatedness_label_encoding():
    Y = ev.encode_relatedness_labels([1.0, 3.3, 5.0, 0.4, 0.0, 2.5])
    np.testing.assert_allclose(Y[0], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(Y[1], [0, 0, 0.7, 0.3, 0], atol=1e-6)
    np.testing.assert_allclose(Y[2], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(Y[3], [0.4, 0, 0, 0, 0], atol=1e-6)  # STS-B quirk: partial mass only
    np.testing.assert_allclose(Y[4], [0, 0, 0, 0, 0])  # y = 0: all-zero target
    # for y in [1, 5] the expected value of the target is y
    np.testing.assert_allclose(Y[[0, 1, 2, 5]] @ np.arange(1, 6), [1.0, 3.3, 5.0, 2.5], atol=1e-6)
    assert Y.dtype == np.float32


def _relatedness_data(n, seed):
    rng = np.random.RandomState(seed)
    s = rng.uniform(1, 5, n)
    X = np.c_[s, rng.randn(n, 3)].astype(np.float32)
    return X, s


def test_relatedness_learns_and_is_deterministic():
    Xtr, ytr = _relatedness_data(150, 0)
    Xdv, ydv = _relatedness_data(40, 1)
    Xte, yte = _relatedness_data(40, 2)
    r = ev.relatedness_eval(Xtr, ytr, Xdv, ydv, Xte, yte, seed=1, device="cpu")
    assert r["devpearson"] > 0.9 and r["pearson"] > 0.9 and r["spearman"] > 0.9
    assert r["yhat"].shape == (40,) and 1 <= r["yhat"].min() and r["yhat"].max() <= 5
    assert r["mse"] == pytest.approx(np.mean((r["yhat"] - yte) ** 2))
    r2 = ev.relatedness_eval(Xtr, ytr, Xdv, ydv, Xte, yte, seed=1, device="cpu")
    np.testing.assert_array_equal(r["yhat"], r2["yhat"])


def test_relatedness_stops_after_patience(monkeypatch):
    X, y = _relatedness_data(20, 0)
    seq = iter([0.5, 0.4, 0.6, 0.3, 0.3, 0.3, 0.9])
    monkeypatch.setattr("senteval_anatomy.engine.probes.pearson_or_zero", lambda a, b: next(seq))
    reg = RelatednessRegressor(4, seed=0, device="cpu").fit(X, ev.encode_relatedness_labels(y), X, y)
    assert reg.n_epochs_ == 6 * 50  # 4 non-improving rounds with patience 3
    assert reg.best_score_ == 0.6


def test_sts_eval_known_answers():
    rng = np.random.RandomState(0)
    A = rng.randn(30, 50)
    t = np.linspace(0, 1, 30)[:, None]
    B = (1 - t) * A + t * rng.randn(30, 50)  # cosine(A, B) falls as t grows
    gold = np.linspace(5, 0, 30)
    zero = np.zeros((3, 50))
    r = ev.sts_eval({"x": (A, B, gold), "zeros": (zero, zero, [1.0, 2.0, 3.0])})
    assert r["x"]["pearson"][0] > 0.7 and r["x"]["spearman"].statistic > 0.7
    assert r["x"]["nsamples"] == 30 and r["zeros"]["nsamples"] == 3
    # zero vectors: cosine is nan -> 0 for every pair -> constant scores -> nan correlation (as SentEval)
    assert np.isnan(r["zeros"]["pearson"][0])
    x_only = ev.sts_eval({"x": (A, B, gold)})
    assert x_only["all"]["pearson"]["mean"] == pytest.approx(r["x"]["pearson"][0])
    # weighted mean
    r2 = ev.sts_eval({"x": (A, B, gold), "y": (A[:10], B[:10], gold[:10])})
    w = (30 * r2["x"]["pearson"][0] + 10 * r2["y"]["pearson"][0]) / 40
    assert r2["all"]["pearson"]["wmean"] == pytest.approx(w)


def test_default_similarity_is_sentevals_cosine():
    u, v = np.array([1.0, 2.0, np.nan]), np.array([2.0, 4.0, 1.0])
    expected = np.dot([1, 2, 0], [2, 4, 1]) / (np.linalg.norm([1, 2, 0]) * np.linalg.norm([2, 4, 1]))
    assert ev.default_similarity(u, v) == pytest.approx(expected)
