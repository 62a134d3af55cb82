"""The built-in engine against the real, unmodified SentEval (``../shared/third_party/SentEval``; skipped when absent).

Both engines run end to end (``SE(params, batcher).eval(task)``) on the same small task folder in SentEval's layout,
with the same deterministic bag-of-hashed-words batcher and the same params; their result dicts must be identical:
same keys in the same order, same numbers to the last bit. The data are noisy (labels partly random), so the scores
sit between chance and 100 and a different fold, grid, rounding, refit split or batch size shows.

* ``usepytorch=False`` (scikit-learn): SentEval runs as it is, every task family that runs on today's stack without a
  patch: InnerKFold (CR, MR, MPQA, SUBJ), KFold (TREC; MRPC with its F1), Split (SST2, SST5, SICKEntailment, probing).
* ``usepytorch=True``: SentEval's PyTorch ``MLP`` cannot run on Python >= 3.11 / CPU without patches (running it is
  ``senteval_anatomy.interop.compat``'s job, tested there). Here SentEval's own protocol code (``senteval/tools/
  validation.py``: grids, folds, selection, the 5 % refit split, rounding; the task modules: WordContent's rule,
  MRPC's F1, result dicts) drives the engine's ``TorchProbe`` in place of its ``MLP``, which pins every setting of
  the evaluations around the probe; the probe itself is compared with SentEval's training loop elsewhere.
* SICK-R and STS-B: SentEval's ``RelatednessPytorch`` asserts CUDA. SentEval's run goes through
  ``senteval_anatomy.interop.compat`` (``.cuda()`` routed to the CPU for SentEval's own calls, undone afterwards; the
  engine's numbers are computed before, unpatched), so SentEval's regression itself runs: batch 64, rounds of 50
  epochs, patience 3, Adam, 5-bin targets.
* STS12-16 need a NumPy patch (SentEval's ``np.array`` of ragged token lists), which is the compat module's job.
"""

from __future__ import annotations

import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_engine_tasks import (
    write_binary,
    write_mrpc,
    write_probing,
    write_sick,
    write_sst,
    write_stsb,
    write_trec,
)

from senteval_anatomy.engine import SE, get_task
from senteval_anatomy.engine.families.trec import TREC_LABELS
from senteval_anatomy.engine.probes import TorchProbe
from senteval_anatomy.interop.compat import senteval_compat

SENTEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "third_party" / "SentEval"

D = 12  # embedding size of the hashed bag of words
FILLER = [f"w{i}" for i in range(40)]
PROBE = {"nhid": 4, "dropout": 0.1, "optim": "adam", "batch_size": 16, "tenacity": 1, "epoch_size": 1,
         "max_epoch": 5}


@pytest.fixture(scope="module")
def senteval():
    """The real SentEval package from the workspace's unmodified copy."""
    if not (SENTEVAL / "senteval" / "engine.py").is_file():
        pytest.skip(f"the real SentEval is not at {SENTEVAL}")
    sys.path.insert(0, str(SENTEVAL))
    try:
        import senteval.engine
        import senteval.tools.validation

        assert Path(senteval.__file__).resolve().is_relative_to(SENTEVAL.resolve())
        yield senteval
    finally:  # unload it too: other tests check behaviour without SentEval installed (test_sweep's harness error)
        sys.path.remove(str(SENTEVAL))
        for name in [n for n in sys.modules if n == "senteval" or n.startswith("senteval.")]:
            del sys.modules[name]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# ------------------------------------------------------------------------------------------------------------------
# Noisy tasks in SentEval's layout, and one batcher for both engines
# ------------------------------------------------------------------------------------------------------------------


def _sentence(rs: np.random.RandomState, cls: int) -> str:
    """3-8 words; about a third are one of three words of class ``cls``, the rest filler."""
    n = rs.randint(3, 9)
    return " ".join(f"c{cls}x{rs.randint(3)}" if rs.rand() < 0.35 else FILLER[rs.randint(len(FILLER))]
                    for _ in range(n))


def _labelled(rs, n: int, n_classes: int, noise: float = 0.25) -> list[tuple[str, int]]:
    """``n`` (sentence, label) rows, every class present; a ``noise`` share of the labels is drawn at random."""
    rows = []
    for i in range(n):
        cls = i % n_classes
        label = rs.randint(n_classes) if rs.rand() < noise else cls
        rows.append((_sentence(rs, cls), label))
    return rows


def _pairs(rs, n: int) -> list[tuple[str, str, float]]:
    """(A, B, similarity in [0, 1]): B is A with a word or two replaced (similar) or an unrelated sentence."""
    rows = []
    for _ in range(n):
        a = _sentence(rs, rs.randint(4)).split()
        if rs.rand() < 0.5:
            b = list(a)
            for _ in range(rs.randint(1, 3)):
                b[rs.randint(len(b))] = FILLER[rs.randint(len(FILLER))]
            sim = 0.6 + 0.4 * rs.rand()
        else:
            b = _sentence(rs, rs.randint(4)).split()
            sim = 0.5 * rs.rand()
        if rs.rand() < 0.15:
            sim = rs.rand()  # noise
        rows.append((" ".join(a), " ".join(b), sim))
    return rows


def make_noisy_tasks(root: Path) -> None:
    rs = np.random.RandomState(2024)
    for name in ("CR", "MR", "MPQA", "SUBJ"):
        rows = _labelled(rs, 66, 2)
        write_binary(root, name, [s for s, y in rows if y == 1], [s for s, y in rows if y == 0])
    write_sst(root, False, {s: _labelled(rs, n, 2) for s, n in (("train", 80), ("dev", 30), ("test", 30))})
    write_sst(root, True, {s: _labelled(rs, n, 5) for s, n in (("train", 90), ("dev", 30), ("test", 30))})
    coarse = list(TREC_LABELS)
    write_trec(root, *[[(s, coarse[y]) for s, y in _labelled(rs, n, 6)] for n in (120, 60)])
    write_mrpc(root, *[[(a, b, int(sim > 0.5)) for a, b, sim in _pairs(rs, n)] for n in (120, 60)])

    def sick(n):
        out = []
        for a, b, sim in _pairs(rs, n):
            label = "ENTAILMENT" if sim > 0.7 else "CONTRADICTION" if sim < 0.3 else "NEUTRAL"
            out.append((a, b, round(1 + 4 * sim, 2), label))
        return out

    write_sick(root, {"train": sick(90), "dev": sick(30), "test": sick(30)})
    write_stsb(root, {s: [(a, b, round(5 * sim, 2)) for a, b, sim in _pairs(rs, n)]
                      for s, n in (("train", 90), ("dev", 30), ("test", 30))})
    for name, n_classes in (("Tense", 2), ("TopConstituents", 20), ("WordContent", 8)):
        # Labels from the task's fixed set, in sorted order so that label id y is class y (WordContent: a word that
        # the sentence contains, as in SentEval's data).
        names = sorted(get_task(name).labels or (f"word{y}" for y in range(n_classes)))[:n_classes]
        rows = []
        for split, n in (("tr", 6 * n_classes + 40), ("va", 30), ("te", 30)):
            rows += [(split, names[y], f"{s} {names[y]}" if name == "WordContent" else s)
                     for s, y in _labelled(rs, n, n_classes)]
        write_probing(root, name, rows)


@pytest.fixture(scope="module")
def task_path(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("senteval-noisy")
    make_noisy_tasks(root)
    return str(root)  # SentEval joins paths with "+"


def _vec(word: str) -> np.ndarray:
    return np.random.RandomState(zlib.crc32(word.encode())).randn(D)


def batcher(params, batch):
    """Sum of fixed random word vectors: a pure function of each sentence, whatever the batch."""
    return np.stack([np.sum([_vec(w) for w in s], axis=0) if s else np.zeros(D) for s in batch])


def _assert_same_result(ours: dict, theirs: dict, task: str) -> None:
    assert list(ours) == list(theirs), f"{task}: keys {list(ours)} != SentEval's {list(theirs)}"
    for key, value in theirs.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(ours[key], value, err_msg=f"{task} {key}")
        else:
            assert ours[key] == value, f"{task} {key}: engine {ours[key]!r} != SentEval {value!r}"


def _run_both(senteval, params: dict, task: str) -> tuple[dict, dict]:
    ours = SE(params, batcher).eval(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn ConvergenceWarning, SentEval's own deprecations
        theirs = senteval.engine.SE(params, batcher).eval(task)
    return ours, theirs


# ------------------------------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------------------------------

SKLEARN_TASKS = ["CR", "MR", "MPQA", "SUBJ", "SST2", "SST5", "TREC", "MRPC", "SICKEntailment", "Tense",
                 "TopConstituents"]


@pytest.mark.parametrize("task", SKLEARN_TASKS)
def test_sklearn_path_equals_senteval(senteval, task_path, task):
    params = {"task_path": task_path, "usepytorch": False, "kfold": 3, "seed": 7, "batch_size": 16}
    ours, theirs = _run_both(senteval, params, task)
    _assert_same_result(ours, theirs, task)
    assert 0 < ours["acc"] < 100, f"{task}: the data should not be trivially (un)learnable: {ours}"


def _engine_probe(params, inputdim, nclasses, l2reg=0.0, batch_size=64, seed=1111, cudaEfficient=False):
    """SentEval's ``MLP(...)`` call signature, answered with the engine's probe (reads the same ``params``)."""
    return TorchProbe(inputdim, nclasses, l2reg=l2reg, seed=seed, config=params, device="cpu")


@pytest.mark.parametrize("task", ["CR", "TREC", "MRPC", "SST5", "SICKEntailment", "WordContent"])
def test_pytorch_protocol_equals_sentevals_around_the_same_probe(senteval, task_path, task, monkeypatch):
    """SentEval's validation code (grid, folds, selection, 5 % refit split, rounding) and task code (WordContent's
    linear probe, MRPC's F1) around the engine's probe give the engine's numbers."""
    monkeypatch.setattr(senteval.tools.validation, "MLP", _engine_probe)
    params = {"task_path": task_path, "usepytorch": True, "kfold": 3, "seed": 5, "batch_size": 16,
              "classifier": dict(PROBE), "device": "cpu"}
    ours, theirs = _run_both(senteval, params, task)
    _assert_same_result(ours, theirs, task)


@pytest.mark.parametrize("task", ["SICKRelatedness", "STSBenchmark"])
def test_relatedness_equals_sentevals_regression(senteval, task_path, task):
    params = {"task_path": task_path, "usepytorch": False, "seed": 3, "batch_size": 16, "device": "cpu"}
    ours = SE(params, batcher).eval(task)
    # SentEval's RelatednessPytorch asserts CUDA and calls .cuda(): the package's one patch for that routes it to the
    # CPU, only for SentEval's own run (and undoes itself).
    with senteval_compat(device="cpu"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = senteval.engine.SE(params, batcher).eval(task)
    _assert_same_result(ours, theirs, task)
    assert 0.2 < ours["pearson"] < 0.99, f"{task}: the data should be neither random nor trivial: {ours}"
