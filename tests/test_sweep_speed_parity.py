"""The speed-ups of the sweep must not change a single number.

* The stacked trainer's cross-entropy (classes laid out in the middle, so that torch's vectorised log-softmax kernel
  runs, see ``engine/batched.py``) gives the solo probe's loss and gradient bit for bit, whatever path it picks.
* The thread count the trainer runs with changes neither results nor the caller's torch setting.
* A sweep split into probe chunks (small memory budget) gives the table of an unchunked sweep, and both give the
  engine's one-probe-at-a-time numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from senteval_anatomy.engine import batched as B
from senteval_anatomy.engine import chunks, kernels, stacked
from senteval_anatomy.engine.protocol import PYTORCH_L2_GRID

FAST = {"nhid": 0, "optim": "rmsprop", "batch_size": 32, "tenacity": 1, "epoch_size": 1, "max_epoch": 12}
WORDS = np.array("the a cat dog bird sat ran saw big small red old new near under over with and of .".split())


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.mark.parametrize("nclasses", [2, 6, 20])
@pytest.mark.parametrize("rows", [256, 300, 1, 2000])
def test_trainer_cross_entropy_is_the_solo_one_bit_for_bit(nclasses, rows):
    """Whichever loss the trainer picks for these shapes, loss and logit gradients equal the solo kernel's."""
    gen = torch.Generator().manual_seed(rows * 31 + nclasses)
    logits = (torch.randn(7, rows, nclasses, generator=gen) * 5).requires_grad_()
    y = torch.randint(0, nclasses, (rows,), generator=gen)
    loss = kernels.slot_cross_entropy(logits, y)
    (grad,) = torch.autograd.grad(loss, logits)
    for s in range(7):  # the solo probe: nn.CrossEntropyLoss(reduction="mean") on its own [m, C] logits
        solo_logits = logits[s].detach().clone().requires_grad_()
        solo = F.cross_entropy(solo_logits, y)
        (solo_grad,) = torch.autograd.grad(solo, solo_logits)
        assert torch.equal(grad[s], solo_grad), f"slot {s}: gradient differs from the solo probe's"
    ref = kernels.ce_reference(logits.detach(), y)
    assert torch.equal(loss.detach(), ref)


def test_thread_count_changes_no_result_and_is_restored():
    rs = np.random.RandomState(0)
    y = rs.randint(0, 3, 160)
    X = (rs.randn(160, 5, 6) + np.linspace(0, 2, 5)[None, :, None] * np.eye(3, 6)[y][:, None, :]).astype(np.float32)
    kw = dict(nclasses=3, seed=3, classifier=FAST, device="cpu")
    args = (X[:100], y[:100], X[100:130], y[100:130], X[130:], y[130:])
    torch.set_num_threads(2)  # the caller's setting, which the trainer must restore
    try:
        one = B.split_eval_many(*args, num_threads=1, **kw)
        assert torch.get_num_threads() == 2
        two = B.split_eval_many(*args, num_threads=2, **kw)
        assert torch.get_num_threads() == 2
        keep = B.split_eval_many(*args, num_threads=None, **kw)
        assert one == two == keep
        with pytest.raises(ValueError, match="num_threads"):
            B.split_eval_many(*args, num_threads=0, **kw)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_evaluate_many_takes_probe_threads_from_params(monkeypatch):
    """``num_threads="auto"``: the engine's ``params.probe_threads`` when set, else the trainer's default of 1."""
    from senteval_anatomy.engine import Task, get_task

    seen = []
    real = chunks.torch_threads

    def spy(n, device):
        seen.append(n)
        return real(n, device)

    monkeypatch.setattr(chunks, "torch_threads", spy)
    rs = np.random.RandomState(1)
    y = rs.randint(0, 2, 60)
    X = rs.randn(60, 2, 3).astype(np.float32)
    emb = {s: {"X": X[a:b], "y": y[a:b]} for s, (a, b) in {"train": (0, 40), "dev": (40, 50), "test": (50, 60)}.items()}
    task = Task(get_task("SST2"), {}, [], seed=1, label_names=None)
    params = {"seed": 1, "classifier": FAST, "device": "cpu"}
    B.evaluate_many(task, emb, params)
    B.evaluate_many(task, emb, dict(params, probe_threads=2))
    B.evaluate_many(task, emb, dict(params, probe_threads=2), num_threads=None)
    assert seen == [stacked.DEFAULT_CPU_THREADS, 2, None]
    with pytest.raises(ValueError, match="num_threads"):
        B.evaluate_many(task, emb, params, num_threads="many")


@pytest.fixture(scope="module")
def task_path(tmp_path_factory):
    """A small Length task in SentEval's probing format (3 length bins)."""
    root = tmp_path_factory.mktemp("senteval")
    rng = np.random.default_rng(1)
    lines = []
    for split, n in (("tr", 150), ("va", 45), ("te", 45)):
        for i in range(n):
            label = i % 3
            words = rng.choice(WORDS, size=int(rng.integers(2, 4) + 4 * label))
            lines.append(f"{split}\t{label}\t{' '.join(words)}")
    (root / "probing").mkdir()
    (root / "probing" / "sentence_length.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_chunked_sweep_equals_unchunked_and_the_engine(tiny_encoder, task_path, tmp_path):
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep

    enc = tiny_encoder("bert")
    params = {"usepytorch": True, "kfold": 3, "seed": 7, "batch_size": 64, "classifier": FAST}
    store = FeatureStore(tmp_path / "cache")
    common = dict(task_path=task_path, params=params, store=store, progress=False)
    whole = sweep(enc, ["Length"], views=("heads", "layers"), **common)
    chunked = sweep(enc, ["Length"], views=("heads", "layers"), memory_budget_gb=1e-9, **common)  # 1 probe a chunk
    assert len(whole) == enc.num_layers * enc.num_heads + enc.num_layers + 1
    pd_cols = ["view", "layer", "head", "devacc", "acc", "ndev", "ntest"]
    assert whole[pd_cols].equals(chunked[pd_cols])
    assert whole["acc"].nunique() > 1, "the probes should differ, or the comparison proves little"
    engine = sweep(enc, ["Length"], views="heads", harness="engine", **common)
    heads = whole[whole["view"] == "heads"].reset_index(drop=True)
    np.testing.assert_array_equal(heads["devacc"].to_numpy(), engine["devacc"].to_numpy())
    np.testing.assert_array_equal(heads["acc"].to_numpy(), engine["acc"].to_numpy())


def test_grid_slots_train_with_the_fast_loss_and_match_solo_probes():
    """End to end through BatchedMLP.fit on 6 classes (the fast path on x86 CPUs): every slot equals its solo probe."""
    from senteval_anatomy.engine.probes import TorchProbe

    rs = np.random.RandomState(2)
    y = rs.randint(0, 6, 140)
    centers = rs.randn(6, 5)
    X = np.stack([centers[y] * s + rs.randn(140, 5) for s in (0.2, 1.5)], axis=1).astype(np.float32)
    slot_probe, slot_reg = np.tile(np.arange(2), 4), np.repeat(PYTORCH_L2_GRID, 2)
    Xt = torch.from_numpy(X.transpose(1, 0, 2).copy())
    bm = stacked.BatchedMLP(5, 6, slot_probe, slot_reg, n_probes=2, seed=4, config=FAST, device="cpu")
    bm.fit(Xt, torch.from_numpy(y), np.arange(100), val_rows=np.arange(100, 140))
    pred = bm.predict(Xt, np.arange(140))
    for s in range(len(slot_probe)):
        p = slot_probe[s]
        solo = TorchProbe(5, 6, l2reg=slot_reg[s], seed=4, config=FAST, device="cpu")
        solo.fit(X[:100, p], y[:100], validation_data=(X[100:, p], y[100:]))
        assert solo.best_score_ == bm.best_score_[s] and solo.n_epochs_ == bm.n_epochs_[s]
        np.testing.assert_array_equal(solo.predict(X[:, p]), pred[s])
