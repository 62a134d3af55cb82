"""Batched SentEval probes: train the probes of every head / layer of one task at once.

(work in progress: core trainer)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .params import resolve_device
from .probes import (
    RELATEDNESS_BATCH_SIZE,
    RELATEDNESS_EPOCHS_PER_ROUND,
    RELATEDNESS_L2,
    RELATEDNESS_MAX_EPOCH,
    RELATEDNESS_NCLASSES,
    RELATEDNESS_PATIENCE,
    EarlyStopping,
    _pearson_or_zero,
    _seed_torch,
    build_mlp,
    classifier_config,
    parse_optimizer,
)

OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]

#: Upper bound (elements) of one gathered ``[slots, rows, features]`` block at scoring time, so that scoring thousands
#: of slots on wide pair features never materialises more than ~256 MB at once.
_SCORE_BLOCK_ELEMS = 64 * 1024 * 1024


class _StackedLinear(torch.autograd.Function):
    """``y[s] = x[s] @ W[s].T + b[s]`` for every slot ``s``, with ``W`` stored as ``[S, out, in]`` like ``nn.Linear``.

    Why a custom Function: autograd's ``bmm`` backward computes the weight gradient as ``x.T @ g`` (then transposes),
    while a solo ``nn.Linear`` (``addmm`` with a transposed weight) computes ``g.T @ x``. The two sum the same products
    through different BLAS kernels, which makes the stacked probe drift from the solo one by float rounding. Computing
    ``g.T @ x`` per slot reproduces the solo kernels; on CPU the stacked weights then equal the solo ones bit for bit
    in the common shapes (see the module docstring for the exceptions).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        gx = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = grad.sum(1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _stacked_forward(params: Sequence[torch.Tensor], x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Forward of SentEval's probe for every slot: ``Linear`` or ``Linear -> Dropout -> Sigmoid -> Linear``.

    ``params`` is ``[W, b]`` or ``[W1, b1, W2, b2]`` with a leading slot dimension; ``x`` is ``[S, m, in]``; ``mask``
    is the dropout multiplier ``[m, nhid]`` (zeros and ``1/(1-p)``) shared by all slots, because every solo probe
    draws the very same mask sequence from the same seed.
    """
    h = _StackedLinear.apply(x, params[0], params[1])
    if len(params) == 4:
        if mask is not None:
            h = h * mask
        h = torch.sigmoid(h)
        h = _StackedLinear.apply(h, params[2], params[3])
    return h


def template_parameters(module: nn.Module) -> list[torch.Tensor]:
    """Weights and biases of the ``nn.Linear`` layers of a solo probe module, in forward order."""
    out: list[torch.Tensor] = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            out += [m.weight.detach(), m.bias.detach()]
    if len(out) not in (2, 4):
        raise ValueError(
            f"expected a probe with 1 or 2 nn.Linear layers (SentEval's nhid=0 / nhid>0 MLP), found {len(out) // 2}"
        )
    return out


class _Group:
    """Slots sharing one weight decay: one optimizer param group, parameters ``[n_slots, ...]``."""

    __slots__ = ("reg", "slots", "probe_pos", "params", "full")

    def __init__(self, reg: float, slots: np.ndarray, probe_pos: torch.Tensor, params: list[nn.Parameter], full: bool):
        self.reg = reg
        self.slots = slots  # global slot ids, ascending
        self.probe_pos = probe_pos  # probe index of each slot (long tensor on the device)
        self.params = params
        self.full = full  # slots are exactly probes 0..P-1 in order: no gather needed


class _SlotStack:
    """Parameters of S independent probes ("slots"), grouped by weight decay, plus each slot's best snapshot.

    A slot is one (probe, weight decay) pair. All slots start from the same initial weights (a solo probe's init is a
    pure function of the seed and the shapes, and all probes of one task share the shapes). Slots that stop early are
    dropped from the live stack (``compact``) together with their optimizer state, so compute follows the number of
    still-running probes; their best snapshot stays in ``best``.
    """

    def __init__(
        self,
        init: Sequence[torch.Tensor],
        slot_probe: np.ndarray,
        slot_reg: np.ndarray,
        n_probes: int,
        make_optimizer: OptimizerFactory,
        device: torch.device,
    ):
        self.device = device
        self.slot_probe = np.asarray(slot_probe, dtype=np.int64)
        self.slot_reg = np.asarray(slot_reg, dtype=np.float64)
        self.n_probes = n_probes
        self.make_optimizer = make_optimizer
        n_slots = len(self.slot_probe)
        init = [t.detach().to(device=device, dtype=torch.float32) for t in init]
        self.best = [t.unsqueeze(0).repeat(n_slots, *([1] * t.dim())).contiguous() for t in init]
        self.groups: list[_Group] = []
        seen: list[float] = []
        for reg in self.slot_reg:
            if reg not in seen:
                seen.append(float(reg))
        for reg in seen:
            slots = np.flatnonzero(self.slot_reg == reg)
            params = [nn.Parameter(t.unsqueeze(0).repeat(len(slots), *([1] * t.dim())).contiguous()) for t in init]
            self.groups.append(self._make_group(reg, slots, params))
        self.optimizer = self._build_optimizer()

    def _make_group(self, reg: float, slots: np.ndarray, params: list[nn.Parameter]) -> _Group:
        probes = self.slot_probe[slots]
        full = len(probes) == self.n_probes and bool(np.all(probes == np.arange(self.n_probes)))
        return _Group(reg, slots, torch.as_tensor(probes, device=self.device), params, full)

    def _build_optimizer(self) -> torch.optim.Optimizer | None:
        if not self.groups:
            return None
        return self.make_optimizer([{"params": g.params, "weight_decay": g.reg} for g in self.groups])

    @property
    def n_active(self) -> int:
        return sum(len(g.slots) for g in self.groups)

    def active_slots(self) -> np.ndarray:
        return np.concatenate([g.slots for g in self.groups]) if self.groups else np.zeros(0, np.int64)

    def snapshot(self, slots: np.ndarray) -> None:
        """Copy the live parameters of ``slots`` (global ids, all active) into their best snapshot."""
        if len(slots) == 0:
            return
        for g in self.groups:
            local = np.flatnonzero(np.isin(g.slots, slots))
            if len(local) == 0:
                continue
            li = torch.as_tensor(local, device=self.device)
            gi = torch.as_tensor(g.slots[local], device=self.device)
            with torch.no_grad():
                for best, p in zip(self.best, g.params, strict=True):
                    best.index_copy_(0, gi, p.index_select(0, li))

    def compact(self, stopped: np.ndarray) -> None:
        """Drop ``stopped`` slots (global ids) from the live stack, keeping the optimizer state of the others."""
        if len(stopped) == 0:
            return
        old_opt = self.optimizer
        new_groups: list[_Group] = []
        remap: list[tuple[nn.Parameter, nn.Parameter, torch.Tensor]] = []
        for g in self.groups:
            keep = np.flatnonzero(~np.isin(g.slots, stopped))
            if len(keep) == len(g.slots):
                new_groups.append(g)
                continue
            if len(keep) == 0:
                continue
            ki = torch.as_tensor(keep, device=self.device)
            params = []
            for p in g.params:
                q = nn.Parameter(p.detach().index_select(0, ki).contiguous())
                remap.append((p, q, ki))
                params.append(q)
            new_groups.append(self._make_group(g.reg, g.slots[keep], params))
        self.groups = new_groups
        self.optimizer = self._build_optimizer()
        if self.optimizer is None or old_opt is None:
            return
        # Carry the optimizer state over: sliced for the compacted parameters, as is for untouched groups.
        # Per-parameter state is either parameter-shaped (moments, accumulators) or a scalar (step counters).
        moved = {id(p): (q, ki) for p, q, ki in remap}
        kept = {id(p) for g in self.groups for p in g.params}
        for old_p, state in old_opt.state.items():
            if id(old_p) in moved:
                q, ki = moved[id(old_p)]
                self.optimizer.state[q] = {
                    k: (v.index_select(0, ki).contiguous() if torch.is_tensor(v) and v.shape == old_p.shape else v)
                    for k, v in state.items()
                }
            elif id(old_p) in kept:
                self.optimizer.state[old_p] = state

    def restore_best(self) -> None:
        """End of training: the live stack is discarded, only the snapshots remain (SentEval restores the best)."""
        self.groups = []
        self.optimizer = None


def _iter_blocks(
    params: Sequence[torch.Tensor],
    probe_pos: torch.Tensor,
    full: bool,
    X: torch.Tensor,
    rows: torch.Tensor,
    chunk: int,
):
    """Yield ``(s0, s1, i0, i1, outputs)`` over row chunks of ``chunk`` (the solo probe's scoring chunk, so that the
    matmul shapes are the solo ones) and slot blocks bounded by :data:`_SCORE_BLOCK_ELEMS`. Eval mode, no grad."""
    n_slots = params[0].shape[0]
    width = max(X.shape[2], params[0].shape[1])
    sblock = max(1, _SCORE_BLOCK_ELEMS // max(1, chunk * width))
    with torch.no_grad():
        for i0 in range(0, len(rows), chunk):
            r = rows[i0 : i0 + chunk]
            xr = X[:, r]
            for s0 in range(0, n_slots, sblock):
                s1 = min(n_slots, s0 + sblock)
                if full:
                    xs = xr[s0:s1]
                else:
                    xs = xr.index_select(0, probe_pos[s0:s1])
                yield s0, s1, i0, i0 + len(r), _stacked_forward([p[s0:s1] for p in params], xs)


class BatchedMLP:
    """S SentEval classification probes trained in lock-step, each exactly like a solo
    :class:`~senteval_anatomy.engine.probes.TorchProbe`.

    A *slot* is one (probe, weight decay) pair: ``slot_probe[s]`` indexes the probe axis of the stacked features
    ``X`` ``[P, N, d]``, ``slot_reg[s]`` is its ``weight_decay``. Every slot has its own early stopping (cumulative
    tenacity on its validation accuracy), its own best snapshot and its own optimizer state; slots only share the
    mini-batch row indices, which are the same for every solo probe (same seed, same ``rng``).

    Parameters
    ----------
    inputdim, nclasses : int
    slot_probe : array of int, shape (S,)
        Probe index of every slot (an index into the first axis of ``X``).
    slot_reg : array of float, shape (S,)
        ``weight_decay`` of every slot.
    n_probes : int
        Size of the probe axis of ``X``.
    seed : int
    config : mapping
        ``params.classifier`` (``nhid`` required), parsed by :func:`~senteval_anatomy.engine.probes.classifier_config`.
    device : str or torch.device
    """

    def __init__(self, inputdim: int, nclasses: int, slot_probe: np.ndarray, slot_reg: np.ndarray, *,
                 n_probes: int, seed: int = 1111, config: dict[str, Any] | None = None, device: Any = "auto"):
        cfg = classifier_config(config if config is not None else {"nhid": 0})
        self.inputdim = int(inputdim)
        self.nclasses = int(nclasses)
        self.seed = seed
        self.nhid = int(cfg["nhid"] or 0)
        self.batch_size = int(cfg["batch_size"])
        self.tenacity = cfg["tenacity"]
        self.epoch_size = int(cfg["epoch_size"])
        self.max_epoch = cfg["max_epoch"]
        self.dropout = cfg["dropout"]
        self.device = resolve_device(device)
        slot_probe = np.asarray(slot_probe, dtype=np.int64)
        if slot_probe.ndim != 1 or len(slot_probe) == 0 or slot_probe.min() < 0 or slot_probe.max() >= n_probes:
            raise ValueError(f"slot_probe must be a non-empty 1-D array of probe indices in 0..{n_probes - 1}")
        if np.shape(slot_reg) != slot_probe.shape:
            raise ValueError(f"slot_reg has shape {np.shape(slot_reg)}, expected {slot_probe.shape} (one per slot)")

        optim_cls, optim_params = parse_optimizer(cfg["optim"])  # fail before touching any RNG, as the solo probe
        # Same construction order as TorchProbe: seed, build the module on the CPU (its init is the init of every
        # slot), then the numpy stream that draws validation splits and mini-batches.
        _seed_torch(seed)
        template = build_mlp(self.inputdim, self.nclasses, self.nhid, self.dropout)
        self.rng_ = np.random.RandomState(seed)

        def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
            return optim_cls(groups, **optim_params)

        self._stack = _SlotStack(template_parameters(template), slot_probe, np.asarray(slot_reg, dtype=np.float64),
                                 int(n_probes), make_optimizer, self.device)
        self.n_slots = len(slot_probe)

    # -- training --------------------------------------------------------------------------------------------------
    def fit(self, X: torch.Tensor, y: torch.Tensor, train_rows: np.ndarray, val_rows: np.ndarray | None = None,
            validation_split: float | None = None) -> BatchedMLP:
        """Train every slot on rows ``train_rows`` of ``X`` [P, N, d] / ``y`` [N] with early stopping on the
        accuracy over ``val_rows`` (or on a ``validation_split`` drawn like the solo probe's), then keep each slot's
        best snapshot. Sets ``best_score_`` (per slot, in [0, 1]) and ``n_epochs_`` (per slot)."""
        train_rows = np.asarray(train_rows, dtype=np.int64)
        if val_rows is None:
            if not validation_split:
                raise ValueError("BatchedMLP.fit needs val_rows or validation_split for early stopping.")
            n = len(train_rows)
            permutation = self.rng_.permutation(n)
            n_val = int(validation_split * n)
            if n_val == 0:
                raise ValueError(
                    f"validation_split={validation_split} of {n} samples leaves no validation sample "
                    f"(need at least {int(np.ceil(1 / validation_split))} samples)."
                )
            train_rows, val_rows = train_rows[permutation[n_val:]], train_rows[permutation[:n_val]]
        val_rows = np.asarray(val_rows, dtype=np.int64)
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise ValueError(f"BatchedMLP.fit: empty training ({len(train_rows)}) or validation ({len(val_rows)}) set.")
        dev = self.device
        tr = torch.as_tensor(train_rows, device=dev)
        va = torch.as_tensor(val_rows, device=dev)
        stoppers = [EarlyStopping(self.tenacity, best=-1.0) for _ in range(self.n_slots)]
        self.n_epochs_ = np.zeros(self.n_slots, dtype=np.int64)
        stack = self._stack
        n = len(train_rows)
        nepoch = 0
        while stack.n_active and nepoch <= self.max_epoch:
            for _ in range(self.epoch_size):
                permutation = self.rng_.permutation(n)
                perm_t = torch.as_tensor(permutation, device=dev)
                for i in range(0, n, self.batch_size):
                    self._train_step(X, y, tr[perm_t[i : i + self.batch_size]])
            nepoch += self.epoch_size
            active = stack.active_slots()
            self.n_epochs_[active] = nepoch
            acc = self._live_accuracy(X, y, va)
            improved, stopped = [], []
            for s in active:
                if stoppers[s].step(acc[s]):
                    improved.append(s)
                elif stoppers[s].stop:
                    stopped.append(s)
            stack.snapshot(np.asarray(improved, dtype=np.int64))
            stack.compact(np.asarray(stopped, dtype=np.int64))
        stack.restore_best()
        self.best_score_ = np.array([s.best for s in stoppers], dtype=np.float64)
        return self

    def _train_step(self, X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        stack = self._stack
        xb_all = X[:, idx]
        yb = y[idx]
        mask = None
        if self.nhid:
            # The solo probe's nn.Dropout draws one mask of shape [batch, nhid] per step (none when p == 0); every
            # slot's solo run draws the same one, so one draw through the same op serves all slots.
            mask = F.dropout(torch.ones(len(idx), self.nhid, device=self.device), self.dropout, True)
        total: torch.Tensor | None = None
        for g in stack.groups:
            xb = xb_all if g.full else xb_all.index_select(0, g.probe_pos)
            out = _stacked_forward(g.params, xb, mask)
            s, m, c = out.shape
            # Mean CE per slot, summed over slots: each slot's gradient is exactly its solo gradient.
            loss = F.cross_entropy(out.reshape(s * m, c), yb.repeat(s), reduction="none").view(s, m).mean(1).sum()
            total = loss if total is None else total + loss
        assert stack.optimizer is not None and total is not None
        stack.optimizer.zero_grad()
        total.backward()
        stack.optimizer.step()

    def _live_accuracy(self, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
        """Validation accuracy of every active slot with its current weights (NaN for inactive slots)."""
        acc = np.full(self.n_slots, np.nan)
        for g in self._stack.groups:
            correct = self._count_correct([p.detach() for p in g.params], g.probe_pos, g.full, X, y, rows)
            for s, c in zip(g.slots, correct.tolist(), strict=True):
                acc[s] = 1.0 * c / len(rows)
        return acc

    def _count_correct(self, params, probe_pos, full, X, y, rows) -> torch.Tensor:
        correct = torch.zeros(params[0].shape[0], dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, out in _iter_blocks(params, probe_pos, full, X, rows, self.batch_size):
            correct[s0:s1] += out.max(2)[1].eq(y[rows[i0:i1]]).sum(1)
        return correct

    # -- inference (best snapshots) --------------------------------------------------------------------------------
    def _slot_view(self):
        probe_pos = torch.as_tensor(self._stack.slot_probe, device=self.device)
        full = self.n_slots == self._stack.n_probes and bool(
            np.all(self._stack.slot_probe == np.arange(self._stack.n_probes)))
        return self._stack.best, probe_pos, full

    def score(self, X: torch.Tensor, y: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """Accuracy in [0, 1] of every slot's best snapshot on ``rows`` (float64, shape (S,))."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        if len(rows_t) == 0:
            raise ValueError("BatchedMLP.score: empty evaluation set.")
        params, probe_pos, full = self._slot_view()
        correct = self._count_correct(params, probe_pos, full, X, y, rows_t).tolist()
        return np.array([1.0 * c / len(rows_t) for c in correct], dtype=np.float64)

    def predict(self, X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """Class ids of every slot's best snapshot on ``rows``: int64 of shape (S, len(rows))."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        params, probe_pos, full = self._slot_view()
        out = torch.empty(self.n_slots, len(rows_t), dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, logits in _iter_blocks(params, probe_pos, full, X, rows_t, self.batch_size):
            out[s0:s1, i0:i1] = logits.max(2)[1]
        return out.cpu().numpy()


class BatchedRelatedness:
    """S SentEval relatedness regressions (``Linear(d, 5) -> Softmax``, MSE on 5-bin targets) trained in lock-step,
    each exactly like a solo :class:`~senteval_anatomy.engine.probes.RelatednessRegressor`: Adam (lr 1e-3, no
    weight decay), mini-batch 64, rounds of 50 epochs up to epoch 1000, its own early stopping on dev Pearson
    (cumulative patience 3) and its own best snapshot. Slot ``s`` reads probe ``slot_probe[s]`` of ``X`` [P, N, d].
    """

    def __init__(self, inputdim: int, slot_probe: np.ndarray, *, n_probes: int, seed: int = 1111,
                 device: Any = "auto"):
        self.inputdim = int(inputdim)
        self.nclasses = RELATEDNESS_NCLASSES
        self.seed = seed
        self.batch_size = RELATEDNESS_BATCH_SIZE
        self.max_epoch = RELATEDNESS_MAX_EPOCH
        self.device = resolve_device(device)
        slot_probe = np.asarray(slot_probe, dtype=np.int64)
        if slot_probe.ndim != 1 or len(slot_probe) == 0 or slot_probe.min() < 0 or slot_probe.max() >= n_probes:
            raise ValueError(f"slot_probe must be a non-empty 1-D array of probe indices in 0..{n_probes - 1}")
        # Same construction order as RelatednessRegressor: seed, build Linear(d, 5) on the CPU, numpy stream.
        _seed_torch(seed)
        template = nn.Linear(self.inputdim, self.nclasses)
        self.rng_ = np.random.RandomState(seed)

        def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
            return torch.optim.Adam(groups)

        self._stack = _SlotStack(template_parameters(template), slot_probe,
                                 np.full(len(slot_probe), RELATEDNESS_L2), int(n_probes), make_optimizer, self.device)
        self.n_slots = len(slot_probe)

    def fit(self, X: torch.Tensor, Y: torch.Tensor, train_rows: np.ndarray, dev_rows: np.ndarray,
            devscores: Sequence[float]) -> BatchedRelatedness:
        """Train on rows ``train_rows`` of ``X`` [P, N, d] with 5-bin targets ``Y`` [N, 5]; early-stop each slot on
        the Pearson of its ``probs @ [1..5]`` on ``dev_rows`` against the raw ``devscores``. Sets ``best_score_``
        (best dev Pearson per slot) and ``n_epochs_``."""
        dev = self.device
        train_rows = np.asarray(train_rows, dtype=np.int64)
        tr = torch.as_tensor(train_rows, device=dev)
        devscores = np.asarray(devscores, dtype=np.float64)
        stoppers = [EarlyStopping(RELATEDNESS_PATIENCE, best=-1.0) for _ in range(self.n_slots)]
        self.n_epochs_ = np.zeros(self.n_slots, dtype=np.int64)
        r = np.arange(1, self.nclasses + 1)
        stack = self._stack
        n = len(train_rows)
        nepoch = 0
        while stack.n_active and nepoch <= self.max_epoch:
            for _ in range(RELATEDNESS_EPOCHS_PER_ROUND):
                permutation = self.rng_.permutation(n)
                perm_t = torch.as_tensor(permutation, device=dev)
                for i in range(0, n, self.batch_size):
                    self._train_step(X, Y, tr[perm_t[i : i + self.batch_size]])
            nepoch += RELATEDNESS_EPOCHS_PER_ROUND
            active = stack.active_slots()
            self.n_epochs_[active] = nepoch
            improved, stopped = [], []
            for g in stack.groups:
                proba = self._proba([p.detach() for p in g.params], g.probe_pos, g.full, X, dev_rows)
                for k, s in enumerate(g.slots):
                    if stoppers[s].step(_pearson_or_zero(np.dot(proba[k], r), devscores)):
                        improved.append(s)
                    elif stoppers[s].stop:
                        stopped.append(s)
            stack.snapshot(np.asarray(improved, dtype=np.int64))
            stack.compact(np.asarray(stopped, dtype=np.int64))
        stack.restore_best()
        self.best_score_ = np.array([s.best for s in stoppers], dtype=np.float64)
        return self

    def _train_step(self, X: torch.Tensor, Y: torch.Tensor, idx: torch.Tensor) -> None:
        stack = self._stack
        xb_all = X[:, idx]
        yb = Y[idx]
        total: torch.Tensor | None = None
        for g in stack.groups:
            xb = xb_all if g.full else xb_all.index_select(0, g.probe_pos)
            out = torch.softmax(_stacked_forward(g.params, xb), dim=-1)
            # Mean MSE per slot (over its batch x 5 entries), summed over slots: solo gradients per slot.
            loss = F.mse_loss(out, yb.expand_as(out), reduction="none").mean((1, 2)).sum()
            total = loss if total is None else total + loss
        assert stack.optimizer is not None and total is not None
        stack.optimizer.zero_grad()
        total.backward()
        stack.optimizer.step()

    def _proba(self, params, probe_pos, full, X, rows) -> np.ndarray:
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        out = np.empty((params[0].shape[0], len(rows_t), self.nclasses), dtype=np.float32)
        for s0, s1, i0, i1, logits in _iter_blocks(params, probe_pos, full, X, rows_t, self.batch_size):
            out[s0:s1, i0:i1] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def predict_proba(self, X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of every slot's best snapshot, float32 of shape (S, len(rows), 5)."""
        probe_pos = torch.as_tensor(self._stack.slot_probe, device=self.device)
        full = self.n_slots == self._stack.n_probes and bool(
            np.all(self._stack.slot_probe == np.arange(self._stack.n_probes)))
        return self._proba(self._stack.best, probe_pos, full, X, rows)

    def predict(self, X: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """Expected score ``probs @ [1..5]`` of every slot, float64 of shape (S, len(rows))."""
        r = np.arange(1, self.nclasses + 1)
        return np.stack([np.dot(p, r) for p in self.predict_proba(X, rows)])
