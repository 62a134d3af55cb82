"""Batched SentEval probes: train the probes of every head / layer of one task at once.

Evaluating one head at a time through SentEval's classifiers costs seconds per head, and a sweep has 72-1,024 heads
times many tasks. :func:`evaluate_many` takes the embeddings of one task for P probes (``[n, P, d]`` arrays in the
layout of :meth:`Task.embed <senteval_anatomy.engine.tasks.Task.embed>`) and returns, for every probe, the result
dict that ``Task.evaluate`` returns for that probe alone: same keys, same rounding, same numbers (see "How close"
below).

>>> from senteval_anatomy.engine import load_task                             # doctest: +SKIP
>>> from senteval_anatomy.engine.batched import evaluate_many                  # doctest: +SKIP
>>> task = load_task("TREC", task_path, seed=123)                             # doctest: +SKIP
>>> emb = task.embed(params, batcher)  # a batcher returning [batch, L*H, d]  # doctest: +SKIP
>>> results = evaluate_many(task, emb, params)  # one result dict per head    # doctest: +SKIP

How it works
------------
* A *slot* is one (probe, weight decay) pair. A grid search stacks all of them: 4 weight decays x P probes train as
  one model with weights ``[S, out, in]`` and batched matmuls (:class:`BatchedMLP`; :class:`BatchedRelatedness` for
  SICK-R / STS-B).
* Every solo probe of a task starts from the same weights (``torch.manual_seed(seed)`` then ``nn.Linear`` init,
  a pure function of seed and shapes) and draws the same validation split and the same mini-batches from
  ``np.random.RandomState(seed)``. So one module build and one ``rng`` serve every slot, and every slot sees the
  rows its solo run sees. With ``nhid > 0`` the dropout masks are also the same in every solo run (same generator,
  same shapes), so one mask per step serves all slots.
* Loss: the *sum over slots of each slot's mean loss*, so each slot's gradient is exactly its solo gradient.
  Weight decay differs per slot: slots with the same value form one optimizer param group, and torch's own
  optimizer (built by the engine's :func:`~senteval_anatomy.engine.probes.parse_optimizer`) applies it to weights
  and biases. All SentEval optimizers are elementwise, so stacked parameters get per-slot independent updates.
* Each slot has its own early stopping (the engine's :class:`~senteval_anatomy.engine.probes.EarlyStopping`:
  cumulative tenacity on validation accuracy, ``epoch_size`` epochs per validation, ``max_epoch``) and its own best
  snapshot. A slot that stops is removed from the live stack together with its optimizer state, so compute
  follows the number of running probes.
* SplitClassifier refits the chosen weight decay with the same seed on the same data, which replays the grid run
  of that value; the grid snapshot *is* the refit model, so it is not trained twice. KFold and InnerKFold refit on
  a different training set (5% validation split) and are trained, each probe with its own chosen value.
* STS12-16 need no training: a vectorised cosine (:func:`cosine_many`) feeds the engine's own ``sts_eval``.
* ``usepytorch=False`` (sklearn) and a custom STS ``similarity`` cannot be stacked: those run the engine's
  ``Task.evaluate`` probe by probe (optionally in parallel with ``n_jobs``), so they are the engine's numbers.
* Speed on CPU: training runs on one torch thread by default (:data:`DEFAULT_CPU_THREADS`), and the slots'
  cross-entropy uses a ``[slots, classes, rows]`` layout whose log-softmax kernel is ~15x faster than the solo
  ``[rows, classes]`` one and, where :func:`_fast_ce_ok` verifies it, bit-identical to it.

How close to solo runs, and why
-------------------------------
* **CPU, classification**: identical ``devacc`` / ``acc`` / ``f1`` / predictions in every comparison we ran (all
  evaluators, all eight optimizers, ``nhid`` 0 and > 0 with dropout). Each slot runs the solo probe's operations in
  the same order; elementwise kernels give the same result wherever an element sits in a tensor; the weight
  gradient is computed as ``grad.T @ x`` like ``nn.Linear``'s backward (:class:`_StackedLinear`, not autograd's
  ``x.T @ grad``), which makes the stacked and solo matmuls the same sums. BLAS may still pick a different kernel
  for a batched matmul than for a single one (it depends on shapes, memory alignment and thread count; with
  several threads even the solo result depends on the thread count), and then a weight differs in its last bit.
  An accuracy only changes if such a difference flips a prediction that sits on an exact tie or an early-stopping
  decision that is decided by one sample; we have not seen it happen.
* **CPU, relatedness**: bit-identical in most shapes; where BLAS rounds differently, the hundreds of epochs carry
  the last-bit difference to ~1e-7 relative on ``devpearson`` / ``pearson`` / ``spearman`` / ``mse``.
* **STS12-16**: the engine computes each cosine with ``np.dot`` in the embeddings' dtype; :func:`cosine_many` uses
  float64, so correlations agree to ~1e-7 (float32 rounding of the engine's cosines).
* **CUDA**: cuBLAS batched and single GEMMs are different kernels, so expect float-rounding-level differences from
  the start; like above they reach an accuracy only through near-ties, and a correlation at ~1e-6.
* ``usepytorch=False`` and custom similarities: exact (the engine itself runs).

Memory
------
Probes are processed in chunks of ``max_probes``. The default keeps one chunk's stacked float32 features
(``[probes, rows of all splits, features]``; pair tasks have ``2d`` features) under :data:`CHUNK_BYTES` (1 GiB);
the per-split numpy slices used to fill it and the probe parameters (``4 x (d + 1) x classes`` floats per probe
and grid value, times ~5 for gradients, optimizer state and snapshots) come on top. Chunking never changes the
results: slots never interact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import evaluators as ev
from .params import resolve_device, thread_limit
from .probes import (
    RELATEDNESS_BATCH_SIZE,
    RELATEDNESS_EPOCHS_PER_ROUND,
    RELATEDNESS_L2,
    RELATEDNESS_MAX_EPOCH,
    RELATEDNESS_NCLASSES,
    RELATEDNESS_PATIENCE,
    EarlyStopping,
    build_mlp,
    classifier_config,
    parse_optimizer,
    seed_torch,
)
from .protocol import (
    INNER_KFOLD_RANDOM_STATE,
    VALIDATION_SPLIT,
    check_similarity,
    cv_score,
    evaluation_params,
    evaluator_call,
    mean_score,
    pair_features,
    pearson_or_zero,
    reg_grid,
    relatedness_scores,
    result_dict,
    select_reg,
    split_score,
    stratified_kfold,
)

OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]

#: Upper bound (elements) of one gathered ``[slots, rows, features]`` block at scoring time, so that scoring thousands
#: of slots on wide pair features never materialises more than ~256 MB at once.
_SCORE_BLOCK_ELEMS = 64 * 1024 * 1024

#: Torch threads used by the stacked trainer on CPU unless the caller asks otherwise (``num_threads``). Every op of a
#: training step works on a few hundred KB, so threads gain little, and on a shared machine (more runnable threads
#: than cores) each op waits for a descheduled thread. On a 2-core machine, 2 threads were 1.3x faster than 1 when it
#: was idle and 5-12x slower while other jobs ran; one thread is the safe default. One thread also makes every
#: matmul of a slot the solo probe's single-threaded matmul, which is how the agreement tests run.
DEFAULT_CPU_THREADS = 1


@contextlib.contextmanager
def _torch_threads(n: int | None, device: torch.device):
    """Run the block with ``n`` torch (and BLAS / OpenMP) threads on CPU, restored afterwards (the engine's
    :func:`~senteval_anatomy.engine.params.thread_limit`); ``None`` or a CUDA device: unchanged."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {n!r}.")
    if n is None or device.type != "cpu":
        yield
        return
    with thread_limit(int(n)):
        yield


# -- Cross-entropy through the "classes in the middle" log-softmax kernel ------------------------------------------
#
# A solo probe computes ``cross_entropy(logits [m, C], y)``: torch's log-softmax kernel over the last dimension, which
# works row by row and, for the 2-15 classes of most SentEval tasks, spends ~60 ns per row on reductions over a
# partial SIMD vector. Stacked slots give ``[S, m, C]`` logits, i.e. S*m such rows; that kernel (forward and backward)
# was half of the whole training time. Laid out as ``[S, C, m]``, the same log-softmax over ``dim=1`` runs torch's
# other kernel, vectorised across the m rows: ~15x faster. Per element the two kernels compute the same operations in
# the same order (max, then exp(x - max) summed class by class, log, x - max - log-sum; backward g - exp(out) * sum(g))
# as long as the class axis is shorter than one SIMD vector (otherwise the last-dim kernel sums in a tree) and the row
# axis has no partial-vector tail (the tail is handled by other code); we pad the rows to a multiple of
# ``_LSM_ROW_PAD``. Because this equality is a property of torch's CPU kernels, not a documented contract,
# ``_fast_ce_ok`` checks it bit for bit on random logits once per (class count, padded batch size) and process, and
# the trainer falls back to the solo formulation wherever it does not hold (and on non-CPU devices).

_LSM_ROW_PAD = 64
_FAST_CE_OK: dict[tuple[int, int], bool] = {}


def _ce_reference(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Sum over slots of each slot's mean cross-entropy, with the solo probe's kernel (``[S*m, C]`` rows)."""
    s, m, c = out.shape
    return F.cross_entropy(out.reshape(s * m, c), yb.repeat(s), reduction="none").view(s, m).mean(1).sum()


def _ce_classes_mid(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """:func:`_ce_reference` computed on ``[S, C, m_padded]`` logits (see the note above); same values and grads."""
    s, m, _ = out.shape
    padded = -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD
    logits = out.transpose(1, 2)
    logits = F.pad(logits, (0, padded - m)) if padded != m else logits.contiguous()
    lsm = torch.log_softmax(logits, dim=1)
    if padded != m:
        lsm = lsm[:, :, :m]
    return F.nll_loss(lsm, yb.expand(s, m), reduction="none").mean(1).sum()


def _fast_ce_ok(nclasses: int, padded_rows: int) -> bool:
    """Whether :func:`_ce_classes_mid` equals :func:`_ce_reference` bit for bit (log-probabilities, loss and
    gradient) for ``nclasses`` classes and row counts that pad to ``padded_rows``, on this machine's torch CPU
    kernels. Checked once per pair on random logits from a private generator (the global torch RNG, which dropout
    masks use, is left untouched)."""
    key = (nclasses, padded_rows)
    if key in _FAST_CE_OK:
        return _FAST_CE_OK[key]
    ok = nclasses >= 2
    gen = torch.Generator().manual_seed(20240601 + 1000 * nclasses + padded_rows)
    with torch.enable_grad():
        # Row counts in (padded_rows - 64, padded_rows] all pad to padded_rows: check no padding, some, the most.
        for m, scale in ((padded_rows, 4.0), (max(1, padded_rows - 37), 0.3), (max(1, padded_rows - 63), 40.0)):
            if not ok:
                break
            x = (torch.randn(3, m, nclasses, generator=gen) * scale).requires_grad_()
            y = torch.randint(0, nclasses, (m,), generator=gen)
            ref = _ce_reference(x, y)
            (g_ref,) = torch.autograd.grad(ref, x)
            lsm_ref = torch.log_softmax(x.detach(), -1)
            x2 = x.detach().clone().requires_grad_()
            new = _ce_classes_mid(x2, y)
            (g_new,) = torch.autograd.grad(new, x2)
            pad = -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD - m
            lsm_new = torch.log_softmax(F.pad(x.detach().transpose(1, 2), (0, pad)), dim=1)[:, :, :m].transpose(1, 2)
            ok = bool(torch.equal(lsm_ref, lsm_new) and torch.equal(g_ref, g_new) and torch.equal(ref, new))
    _FAST_CE_OK[key] = ok
    return ok


def _slot_cross_entropy(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Sum over slots of each slot's mean cross-entropy of ``out`` ``[S, m, C]`` against ``yb`` ``[m]``: the fast
    layout where it is verified to equal the solo kernel (CPU), the solo formulation everywhere else."""
    _, m, c = out.shape
    if out.device.type == "cpu" and _fast_ce_ok(c, -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD):
        return _ce_classes_mid(out, yb)
    return _ce_reference(out, yb)


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
    width = max(X.shape[2], *(w.shape[1] for w in params[::2]))  # widest of input, hidden and output
    sblock = max(1, _SCORE_BLOCK_ELEMS // max(1, chunk * width))
    with torch.no_grad():
        for i0 in range(0, len(rows), chunk):
            r = rows[i0 : i0 + chunk]
            xr = X.index_select(1, r)
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
        seed_torch(seed)
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
        xb_all = X.index_select(1, idx)  # much faster than X[:, idx] on CPU
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
            # Mean CE per slot, summed over slots: each slot's gradient is exactly its solo gradient.
            loss = _slot_cross_entropy(out, yb)
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
    def _slot_view(self, slots: np.ndarray | None):
        """Best-snapshot parameters, probe index tensor and "no gather needed" flag of ``slots`` (default all)."""
        probes = self._stack.slot_probe
        params = self._stack.best
        if slots is not None:
            slots = np.asarray(slots, dtype=np.int64)
            probes = probes[slots]
            si = torch.as_tensor(slots, device=self.device)
            params = [p.index_select(0, si) for p in params]
        full = len(probes) == self._stack.n_probes and bool(np.all(probes == np.arange(self._stack.n_probes)))
        return params, torch.as_tensor(probes, device=self.device), full

    def score(self, X: torch.Tensor, y: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Accuracy in [0, 1] of the best snapshot of ``slots`` (default: every slot) on ``rows``, float64."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        if len(rows_t) == 0:
            raise ValueError("BatchedMLP.score: empty evaluation set.")
        params, probe_pos, full = self._slot_view(slots)
        correct = self._count_correct(params, probe_pos, full, X, y, rows_t).tolist()
        return np.array([1.0 * c / len(rows_t) for c in correct], dtype=np.float64)

    def predict(self, X: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Class ids of the best snapshot of ``slots`` (default: every slot) on ``rows``: int64 (n_slots, n_rows)."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        params, probe_pos, full = self._slot_view(slots)
        out = torch.empty(params[0].shape[0], len(rows_t), dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, logits in _iter_blocks(params, probe_pos, full, X, rows_t, self.batch_size):
            out[s0:s1, i0:i1] = logits.max(2)[1]
        return out.cpu().numpy()

    def predict_log_proba(self, X: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Natural-log class probabilities of the best snapshot of ``slots`` (default: every slot) on ``rows``:
        float64 (n_slots, n_rows, nclasses). Used for codelengths (online-code MDL), where a probability matters,
        not only the argmax."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        params, probe_pos, full = self._slot_view(slots)
        out = np.empty((params[0].shape[0], len(rows_t), self.nclasses), dtype=np.float64)
        for s0, s1, i0, i1, logits in _iter_blocks(params, probe_pos, full, X, rows_t, self.batch_size):
            out[s0:s1, i0:i1] = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        return out


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
        seed_torch(seed)
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
                    if stoppers[s].step(pearson_or_zero(np.dot(proba[k], r), devscores)):
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
        xb_all = X.index_select(1, idx)  # much faster than X[:, idx] on CPU
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


# ----------------------------------------------------------------------------------------------------------------
# Evaluators over stacked features (mirror senteval_anatomy.engine.evaluators, one result per probe)
# ----------------------------------------------------------------------------------------------------------------

#: Default memory budget of one probe chunk: the stacked float32 features ``[probes, rows, features]`` of all
#: splits of a task stay under this many bytes (transient per-split numpy copies come on top).
CHUNK_BYTES = 1 << 30

#: A feature source for one split: a ``[n, P, f]`` array, or an ``(A, B)`` pair of ``[n, P, d]`` arrays whose
#: SentEval pair features ``[|A - B|, A * B]`` are built chunk by chunk.
Source = Any


def _as_array(a: Any) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _source_shape(src: Source, what: str) -> tuple[int, int, int]:
    """``(n_rows, n_probes, n_features)`` of a source, with a clear error for wrong shapes."""
    if isinstance(src, tuple):
        a, b = src
        if np.ndim(a) != 3 or np.shape(a) != np.shape(b):
            raise ValueError(
                f"{what}: A and B must both have shape [n, P, d] (P probes), got {np.shape(a)} and {np.shape(b)}. "
                "Reshape per-head features [n, L, H, d] to [n, L*H, d] first."
            )
        n, p, d = np.shape(a)
        return n, p, 2 * d
    if np.ndim(src) != 3:
        raise ValueError(
            f"{what}: expected an array of shape [n, P, d] (P probes), got shape {np.shape(src)}. "
            "Reshape per-head features [n, L, H, d] to [n, L*H, d] first; a single probe is [n, 1, d]."
        )
    n, p, f = np.shape(src)
    return n, p, f


def _check_sources(sources: Sequence[Source], names: Sequence[str]) -> tuple[list[int], int, int]:
    shapes = [_source_shape(s, w) for s, w in zip(sources, names, strict=True)]
    n_probes = {s[1] for s in shapes}
    widths = {s[2] for s in shapes}
    if len(n_probes) != 1 or len(widths) != 1:
        raise ValueError(
            "every split must have the same number of probes and features, got "
            + ", ".join(f"{w}: {s[1]} probes x {s[2]} features" for w, s in zip(names, shapes, strict=True))
        )
    return [s[0] for s in shapes], n_probes.pop(), widths.pop()


def _chunk_tensor(sources: Sequence[Source], p0: int, p1: int, device: torch.device) -> torch.Tensor:
    """Stack probes ``p0:p1`` of every split into one float32 tensor ``[p1 - p0, sum(n), f]`` on ``device``.

    Pair features are built in the embeddings' own dtype by the engine's ``pair_features`` and only then cast to
    float32, exactly as a solo run (features in numpy, probe casts with ``.float()``); the cast rounds the same way
    in numpy and torch.
    """
    sizes, _, width = _check_sources(sources, [f"split {i}" for i in range(len(sources))])
    out = np.empty((p1 - p0, sum(sizes), width), dtype=np.float32)
    off = 0
    for src, n in zip(sources, sizes, strict=True):
        if isinstance(src, tuple):
            part = pair_features(_as_array(src[0][:, p0:p1]), _as_array(src[1][:, p0:p1]))
        else:
            part = _as_array(src[:, p0:p1])
        out[:, off : off + n] = part.transpose(1, 0, 2)
        off += n
    return torch.from_numpy(out).to(device)


def default_max_probes(n_rows: int, n_features: int, budget: int = CHUNK_BYTES) -> int:
    """Largest probe chunk whose stacked float32 features (``n_rows x n_features`` per probe) fit in ``budget``."""
    return max(1, budget // max(1, 4 * n_rows * n_features))


def _chunks(n_probes: int, n_rows: int, width: int, max_probes: int | None) -> list[tuple[int, int]]:
    if max_probes is None:
        max_probes = default_max_probes(n_rows, width)
    if int(max_probes) < 1:
        raise ValueError(f"max_probes must be a positive integer (probes trained together), got {max_probes!r}.")
    step = int(max_probes)
    return [(p0, min(n_probes, p0 + step)) for p0 in range(0, n_probes, step)]


class _Progress:
    """A tqdm bar over training runs (one per chunk x fold x grid fit), or nothing."""

    def __init__(self, total: int, desc: str, enabled: bool | None):
        self.bar = None
        if enabled is False or total <= 0:
            return
        from tqdm.auto import tqdm

        # enabled=None: tqdm decides (shown on a terminal, silent in logs and CI).
        self.bar = tqdm(total=total, desc=desc, unit="fit", disable=None if enabled is None else False, leave=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _grid_slots(n_probes: int, regs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Slots of a grid search: slot ``r * n_probes + p`` is probe ``p`` with ``regs[r]``."""
    return np.tile(np.arange(n_probes), len(regs)), np.repeat(np.asarray(regs, dtype=np.float64), n_probes)


def _split_chunk(X, y, rows, *, nclasses, seed, classifier, device, noreg, bar,
                 predictions=False) -> list[dict[str, Any]]:
    tr, dv, te = rows
    n_probes = X.shape[0]
    regs = reg_grid("split", True, noreg)
    slot_probe, slot_reg = _grid_slots(n_probes, regs)
    bm = BatchedMLP(X.shape[2], nclasses, slot_probe, slot_reg, n_probes=n_probes, seed=seed, config=classifier,
                    device=device).fit(X, y, tr, val_rows=dv)
    bar.update()
    dev_acc = bm.score(X, y, dv).tolist()  # Python floats, as TorchProbe.score returns
    out, chosen = [], []
    for p in range(n_probes):
        scores = [split_score(dev_acc[r * n_probes + p]) for r in range(len(regs))]
        optreg, devacc = select_reg(scores, regs)
        chosen.append(list(regs).index(optreg) * n_probes + p)
        out.append({"devacc": float(devacc), "reg": optreg, "regs": list(regs),
                    "dev_scores": [float(s) for s in scores]})
    # SplitClassifier refits the chosen value with the same seed on the same data, which replays the grid run of
    # that value exactly (training is a pure function of seed, data and reg); its snapshot is the refit model.
    test_acc = bm.score(X, y, te, slots=np.asarray(chosen)).tolist()
    yhat = bm.predict(X, te, slots=np.asarray(chosen)) if predictions else None
    for p in range(n_probes):
        out[p]["acc"] = float(split_score(test_acc[p]))
        if yhat is not None:
            out[p]["yhat"] = yhat[p]
    return out


def _cv_grid(X, y, folds, regs, *, nclasses, seed, classifier, device, bar) -> list[list[float]]:
    """Per slot (grid layout), the list of held-out fold accuracies; folds are ``(train_rows, test_rows)``."""
    n_probes = X.shape[0]
    slot_probe, slot_reg = _grid_slots(n_probes, regs)
    scans: list[list[float]] = [[] for _ in range(len(slot_probe))]
    for train_rows, test_rows in folds:
        bm = BatchedMLP(X.shape[2], nclasses, slot_probe, slot_reg, n_probes=n_probes, seed=seed, config=classifier,
                        device=device).fit(X, y, train_rows, val_rows=test_rows)
        for s, acc in enumerate(bm.score(X, y, test_rows).tolist()):
            scans[s].append(acc)
        bar.update()
    return scans


def _select_cv(scans, regs, n_probes):
    """Per probe: SentEval's rounded mean CV scores, the chosen value and the best score."""
    out = []
    for p in range(n_probes):
        scores = [cv_score(scans[r * n_probes + p]) for r in range(len(regs))]
        optreg, best = select_reg(scores, regs)
        out.append((scores, optreg, best))
    return out


def _refit(X, y, train_rows, optregs, *, nclasses, seed, classifier, device, bar) -> BatchedMLP:
    """Final fit of every probe with its own chosen value, early-stopping on a 5% validation split."""
    n_probes = X.shape[0]
    bm = BatchedMLP(X.shape[2], nclasses, np.arange(n_probes), np.asarray(optregs, dtype=np.float64),
                    n_probes=n_probes, seed=seed, config=classifier, device=device)
    bm.fit(X, y, train_rows, validation_split=VALIDATION_SPLIT)
    bar.update()
    return bm


def _kfold_chunk(X, y, rows, y_train, *, nclasses, kfold, seed, classifier, device, bar) -> list[dict[str, Any]]:
    tr, te = rows
    n_probes = X.shape[0]
    regs = reg_grid("kfold", True)
    skf = stratified_kfold(kfold, seed)
    # StratifiedKFold draws folds from the labels and the sample count only, so a placeholder X gives the same folds.
    folds = [(tr[a], tr[b]) for a, b in skf.split(np.zeros((len(tr), 1)), y_train)]
    scans = _cv_grid(X, y, folds, regs, nclasses=nclasses, seed=seed, classifier=classifier, device=device, bar=bar)
    sel = _select_cv(scans, regs, n_probes)
    bm = _refit(X, y, tr, [s[1] for s in sel], nclasses=nclasses, seed=seed, classifier=classifier, device=device,
                bar=bar)
    yhat = bm.predict(X, te)
    test_acc = bm.score(X, y, te).tolist()
    return [{"devacc": float(best), "acc": float(split_score(test_acc[p])), "yhat": yhat[p], "reg": optreg,
             "regs": list(regs), "dev_scores": [float(s) for s in scores]}
            for p, (scores, optreg, best) in enumerate(sel)]


def _innerkfold_chunk(X, y, y_all, *, nclasses, kfold, seed, classifier, device, bar) -> list[dict[str, Any]]:
    n_probes = X.shape[0]
    regs = reg_grid("innerkfold", True)
    skf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    innerskf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    devresults: list[list[Any]] = [[] for _ in range(n_probes)]
    testresults: list[list[float]] = [[] for _ in range(n_probes)]
    fold_regs: list[list[float]] = [[] for _ in range(n_probes)]
    for train_idx, test_idx in skf.split(np.zeros((len(y_all), 1)), y_all):
        inner = [(train_idx[a], train_idx[b])
                 for a, b in innerskf.split(np.zeros((len(train_idx), 1)), y_all[train_idx])]
        scans = _cv_grid(X, y, inner, regs, nclasses=nclasses, seed=seed, classifier=classifier, device=device,
                         bar=bar)
        sel = _select_cv(scans, regs, n_probes)
        for p, (_, optreg, best) in enumerate(sel):
            devresults[p].append(best)
            fold_regs[p].append(optreg)
        bm = _refit(X, y, train_idx, [s[1] for s in sel], nclasses=nclasses, seed=seed, classifier=classifier,
                    device=device, bar=bar)
        for p, acc in enumerate(bm.score(X, y, test_idx).tolist()):
            testresults[p].append(split_score(acc))
    return [{"devacc": float(mean_score(devresults[p])), "acc": float(mean_score(testresults[p])),
             "fold_devacc": [float(v) for v in devresults[p]], "fold_acc": [float(v) for v in testresults[p]],
             "fold_reg": fold_regs[p], "regs": list(regs)} for p in range(n_probes)]


def _relatedness_chunk(X, rows, y_train, y_dev, y_test, *, seed, device, bar) -> list[dict[str, Any]]:
    tr, dv, te = rows
    n_probes = X.shape[0]
    Y = torch.zeros(X.shape[1], RELATEDNESS_NCLASSES, dtype=torch.float32)
    Y[torch.as_tensor(tr)] = torch.from_numpy(ev.encode_relatedness_labels(y_train))
    reg = BatchedRelatedness(X.shape[2], np.arange(n_probes), n_probes=n_probes, seed=seed, device=device)
    reg.fit(X, Y.to(X.device), tr, dv, np.asarray(list(y_dev), dtype=np.float64))
    bar.update()
    yhat = reg.predict(X, te)
    return [relatedness_scores(reg.best_score_[p], yhat[p], y_test) for p in range(n_probes)]


def _offsets(sizes: Sequence[int]) -> list[np.ndarray]:
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in range(len(sizes))]


def _run_chunks(kind: str, sources: Sequence[Source], labels: np.ndarray | None, *, max_probes: int | None,
                progress: bool | None, desc: str, device: Any, num_threads: int | None = DEFAULT_CPU_THREADS,
                **kw: Any) -> list[dict[str, Any]]:
    """Chunk the probes, stack each chunk's features once, run the batched evaluator ``kind`` on it (with
    ``num_threads`` torch threads on CPU, see :data:`DEFAULT_CPU_THREADS`)."""
    names = [f"split {i}" for i in range(len(sources))]
    sizes, n_probes, width = _check_sources(sources, names)
    dev = resolve_device(device)
    chunks = _chunks(n_probes, sum(sizes), width, max_probes)
    k = int(kw.get("kfold") or 0)
    fits = {"split": 1, "kfold": k + 1, "innerkfold": k * (k + 1), "relatedness": 1}[kind]
    bar = _Progress(len(chunks) * fits, desc, progress)
    rows = _offsets(sizes)
    y = None if labels is None else torch.as_tensor(np.asarray(labels), device=dev)
    results: list[dict[str, Any]] = []
    try:
        with _torch_threads(num_threads, dev):
            for p0, p1 in chunks:
                X = _chunk_tensor(sources, p0, p1, dev)
                if kind == "split":
                    results += _split_chunk(X, y, rows, device=dev, bar=bar, **kw)
                elif kind == "kfold":
                    results += _kfold_chunk(X, y, rows, device=dev, bar=bar, **kw)
                elif kind == "innerkfold":
                    results += _innerkfold_chunk(X, y, device=dev, bar=bar, **kw)
                else:
                    results += _relatedness_chunk(X, rows, device=dev, bar=bar, **kw)
                del X
    finally:
        bar.close()
    return results


def _probe_features(src: Source, p: int) -> np.ndarray:
    """Probe ``p``'s own 2-D features of one split (contiguous, as a solo run would receive them)."""
    if isinstance(src, tuple):
        return pair_features(np.ascontiguousarray(_as_array(src[0][:, p])),
                             np.ascontiguousarray(_as_array(src[1][:, p])))
    return np.ascontiguousarray(_as_array(src[:, p]))


def _per_probe(fn: Callable[[int], dict[str, Any]], n_probes: int, n_jobs: int | None, desc: str,
               progress: bool | None) -> list[dict[str, Any]]:
    """Run ``fn(p)`` for every probe: the exact solo path (sklearn probes, custom STS similarity)."""
    if n_jobs is not None and n_jobs != 1:
        from joblib import Parallel, delayed

        return list(Parallel(n_jobs=n_jobs)(delayed(fn)(p) for p in range(n_probes)))
    bar = _Progress(n_probes, desc, progress)
    out = []
    try:
        for p in range(n_probes):
            out.append(fn(p))
            bar.update()
    finally:
        bar.close()
    return out


def split_eval_many(X_train: Source, y_train, X_dev: Source, y_dev, X_test: Source, y_test, *, nclasses: int,
                    seed: int = 1111, usepytorch: bool = True, classifier: dict[str, Any] | None = None,
                    device: Any = "auto", noreg: bool = False, max_probes: int | None = None,
                    progress: bool | None = None, n_jobs: int | None = None,
                    num_threads: int | None = DEFAULT_CPU_THREADS, predictions: bool = False) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.split_eval` for P probes at once.

    ``X_*`` are ``[n, P, f]`` arrays (or ``(A, B)`` pairs of ``[n, P, d]`` arrays for pair features). Returns P
    dicts with the keys of ``split_eval`` (``devacc``, ``acc``, ``reg``, ``regs``, ``dev_scores``); with
    ``predictions=True`` (pytorch probes) also ``yhat``, the chosen probe's test predictions.
    """
    sources = [X_train, X_dev, X_test]
    _, n_probes, _ = _check_sources(sources, ["X_train", "X_dev", "X_test"])
    if not usepytorch:
        return _per_probe(lambda p: ev.split_eval(
            _probe_features(X_train, p), y_train, _probe_features(X_dev, p), y_dev, _probe_features(X_test, p),
            y_test, nclasses=nclasses, seed=seed, usepytorch=False, noreg=noreg), n_probes, n_jobs, "split", progress)
    labels = np.concatenate([np.asarray(y_train), np.asarray(y_dev), np.asarray(y_test)]).astype(np.int64)
    return _run_chunks("split", sources, labels, max_probes=max_probes, progress=progress, desc="split probes",
                       device=device, num_threads=num_threads, nclasses=nclasses, seed=seed, classifier=classifier,
                       noreg=noreg, predictions=predictions)


def kfold_eval_many(X_train: Source, y_train, X_test: Source, y_test, *, nclasses: int, kfold: int = 5,
                    seed: int = 1111, usepytorch: bool = True, classifier: dict[str, Any] | None = None,
                    device: Any = "auto", max_probes: int | None = None, progress: bool | None = None,
                    n_jobs: int | None = None, num_threads: int | None = DEFAULT_CPU_THREADS) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.kfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``yhat``, ``reg``, ``regs``, ``dev_scores``)."""
    sources = [X_train, X_test]
    _, n_probes, _ = _check_sources(sources, ["X_train", "X_test"])
    if not usepytorch:
        return _per_probe(lambda p: ev.kfold_eval(
            _probe_features(X_train, p), y_train, _probe_features(X_test, p), y_test, nclasses=nclasses,
            kfold=kfold, seed=seed, usepytorch=False), n_probes, n_jobs, "kfold", progress)
    y_train = np.asarray(y_train)
    labels = np.concatenate([y_train, np.asarray(y_test)]).astype(np.int64)
    return _run_chunks("kfold", sources, labels, max_probes=max_probes, progress=progress, desc="kfold probes",
                       device=device, num_threads=num_threads, nclasses=nclasses, kfold=kfold, seed=seed,
                       classifier=classifier,
                       y_train=y_train)


def innerkfold_eval_many(X: Source, y, *, nclasses: int, kfold: int = 5, seed: int = 1111, usepytorch: bool = True,
                         classifier: dict[str, Any] | None = None, device: Any = "auto",
                         max_probes: int | None = None, progress: bool | None = None,
                         n_jobs: int | None = None,
                         num_threads: int | None = DEFAULT_CPU_THREADS) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.innerkfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``fold_devacc``, ``fold_acc``, ``fold_reg``, ``regs``)."""
    _, n_probes, _ = _check_sources([X], ["X"])
    if not usepytorch:
        return _per_probe(lambda p: ev.innerkfold_eval(
            _probe_features(X, p), y, nclasses=nclasses, kfold=kfold, seed=seed, usepytorch=False),
            n_probes, n_jobs, "innerkfold", progress)
    y = np.asarray(y)
    return _run_chunks("innerkfold", [X], y.astype(np.int64), max_probes=max_probes, progress=progress,
                       desc="innerkfold probes", device=device, num_threads=num_threads, nclasses=nclasses,
                       kfold=kfold, seed=seed,
                       classifier=classifier, y_all=y)


def relatedness_eval_many(X_train: Source, y_train, X_dev: Source, y_dev, X_test: Source, y_test, *,
                          seed: int = 1111, device: Any = "auto", max_probes: int | None = None,
                          progress: bool | None = None,
                          num_threads: int | None = DEFAULT_CPU_THREADS) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.relatedness_eval` for P probes at once (P dicts:
    ``devpearson``, ``pearson``, ``spearman``, ``mse``, ``yhat``)."""
    return _run_chunks("relatedness", [X_train, X_dev, X_test], None, max_probes=max_probes, progress=progress,
                       desc="relatedness probes", device=device, num_threads=num_threads, seed=seed,
                       y_train=np.asarray(y_train),
                       y_dev=np.asarray(y_dev), y_test=np.asarray(y_test))


def cosine_many(A: Any, B: Any) -> np.ndarray:
    """SentEval's default STS similarity ``nan_to_num(cosine(nan_to_num(u), nan_to_num(v)))`` of every row and
    probe of ``A``, ``B`` ``[n, P, d]``, as float64 of shape ``[P, n]``.

    Computed in float64 with vectorised sums. The engine computes each row with ``np.dot`` in the embeddings' dtype,
    so for float32 embeddings the two differ by float32 rounding (~1e-7 relative per score).
    """
    A = np.nan_to_num(_as_array(A)).astype(np.float64, copy=False)
    B = np.nan_to_num(_as_array(B)).astype(np.float64, copy=False)
    dot = np.einsum("npd,npd->pn", A, B)
    norms = np.sqrt(np.einsum("npd,npd->pn", A, A)) * np.sqrt(np.einsum("npd,npd->pn", B, B))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(dot / norms)


def sts_eval_many(datasets: dict[str, tuple[Any, Any, Sequence[float]]],
                  similarity: Callable[[Any, Any], float] | None = None, *, max_probes: int | None = None,
                  progress: bool | None = None, n_jobs: int | None = None) -> list[dict[str, Any]]:
    """:func:`~senteval_anatomy.engine.evaluators.sts_eval` for P probes: ``datasets`` maps each sub-dataset to
    ``(A, B, gold)`` with ``A``, ``B`` of shape ``[n, P, d]``.

    The default cosine is vectorised (:func:`cosine_many`); the correlations and the ``all`` summary are the
    engine's own code, fed with those scores. A custom ``similarity`` cannot be vectorised and runs per probe
    through the engine (exact).
    """
    names = list(datasets)
    shapes = [_source_shape((datasets[d][0], datasets[d][1]), f"STS {d}") for d in names]
    n_probes = {s[1] for s in shapes}
    if len(n_probes) != 1:
        raise ValueError("every STS sub-dataset must have the same number of probes, got "
                         + ", ".join(f"{d}: {s[1]}" for d, s in zip(names, shapes, strict=True)))
    P = n_probes.pop()
    if similarity is not None:
        return _per_probe(lambda p: ev.sts_eval(
            {d: (_as_array(datasets[d][0][:, p]), _as_array(datasets[d][1][:, p]), datasets[d][2]) for d in names},
            similarity), P, n_jobs, "sts", progress)
    n_rows = sum(s[0] for s in shapes)
    results: list[dict[str, Any]] = []
    for p0, p1 in _chunks(P, n_rows, 2 * shapes[0][2], max_probes):  # float64 A and B
        scores = {d: cosine_many(datasets[d][0][:, p0:p1], datasets[d][1][:, p0:p1]) for d in names}
        for k in range(p1 - p0):
            # The engine's sts_eval with a pass-through similarity: same correlations, same 'all' summary.
            results.append(ev.sts_eval({d: (scores[d][k], scores[d][k], datasets[d][2]) for d in names},
                                       lambda a, b: a))
    return results


# ----------------------------------------------------------------------------------------------------------------
# Task level
# ----------------------------------------------------------------------------------------------------------------


def _slice_embeddings(embeddings: Any, p: int) -> dict[str, dict[str, Any]]:
    return {split: {k: (np.ascontiguousarray(_as_array(v[:, p])) if k in ("X", "A", "B") else v)
                    for k, v in rec.items()} for split, rec in embeddings.items()}


def _n_probes(embeddings: Any, splits: Sequence[str], task_name: str) -> int:
    counts = {}
    for split in splits:
        if split not in embeddings:
            raise KeyError(f"{task_name}: embeddings has no split {split!r} (has {sorted(embeddings)}); "
                           "pass what Task.embed returns, with [n, P, d] arrays.")
        for k in ("X", "A", "B"):
            if k in embeddings[split]:
                shape = np.shape(embeddings[split][k])
                if len(shape) != 3:
                    raise ValueError(
                        f"{task_name}: embeddings[{split!r}][{k!r}] has shape {shape}; evaluate_many needs [n, P, d] "
                        "(P probes). Reshape per-head features [n, L, H, d] to [n, L*H, d]; for one probe use "
                        "Task.evaluate."
                    )
                counts[f"{split}.{k}"] = shape[1]
    if len(set(counts.values())) != 1:
        raise ValueError(f"{task_name}: the number of probes differs between arrays: {counts}")
    return next(iter(counts.values()))


def evaluate_many(task: Any, embeddings: Any, params: Any, *, max_probes: int | None = None,
                  progress: bool | None = None, device: Any = None, n_jobs: int | None = None,
                  num_threads: int | None | str = "auto", predictions: bool = False) -> list[dict[str, Any]]:
    """Evaluate P probes of one task at once; result ``i`` equals ``task.evaluate`` on probe ``i``'s features.

    Parameters
    ----------
    task : Task
        From :func:`~senteval_anatomy.engine.tasks.load_task`.
    embeddings : dict
        The layout of :meth:`Task.embed <senteval_anatomy.engine.tasks.Task.embed>`, but every ``X`` / ``A`` /
        ``B`` array has shape ``[n, P, d]`` (e.g. heads ``[n, L, H, d]`` reshaped to ``[n, L*H, d]``). numpy arrays,
        memmaps and CPU tensors are read chunk by chunk.
    params : mapping
        SentEval params, read as ``Task.evaluate`` reads them (``seed``, ``usepytorch``, ``classifier``, ``kfold``,
        ``device``, ``similarity``).
    max_probes : int, optional
        Probes trained together. Default: as many as keep the chunk's stacked float32 features (all splits,
        ``[probes, rows, features]``) under :data:`CHUNK_BYTES` (1 GiB). Results do not depend on it.
    progress : bool, optional
        tqdm bar over training runs; default: shown on a terminal only.
    device : str or torch.device, optional
        Where the stacked probes train; default ``params.device`` (``'auto'``: CUDA when available).
    n_jobs : int, optional
        Parallel jobs (joblib) for the paths that run probe by probe: ``usepytorch=False`` (sklearn) and a custom
        STS ``similarity``.
    num_threads : int, None or ``"auto"``
        Torch / BLAS threads while the stacked probes train on CPU (restored afterwards); ``None`` keeps the
        process setting. ``"auto"``: ``params.probe_threads`` when set (the engine's key for the same thing), else
        :data:`DEFAULT_CPU_THREADS` (1). Results do not depend on it in our tests; speed does, see
        :data:`DEFAULT_CPU_THREADS`.
    predictions : bool
        Also return each probe's test predictions as ``yhat`` (int64, in the order of ``embeddings['test']``) for
        the pytorch classification evaluators ``split`` and ``kfold`` (per-sentence correctness for bootstrap
        intervals and paired tests). Off by default: the result dicts then equal ``task.evaluate``'s.

    Returns
    -------
    list of dict
        One SentEval result dict per probe, with exactly the keys and rounding of ``task.evaluate``.
    """
    spec = task.spec
    p, seed = evaluation_params(params, task.seed)
    raw = params if params is not None else {}
    dev = p.device if device is None else device
    n_probes = _n_probes(embeddings, spec.splits, spec.name)
    desc = f"{spec.name}: {n_probes} probes"

    def pytorch_free(fn_p: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
        return _per_probe(fn_p, n_probes, n_jobs, desc, progress)

    if spec.evaluator == "sts":
        if check_similarity(p.similarity) is not None:
            return pytorch_free(lambda i: task.evaluate(_slice_embeddings(embeddings, i), raw))
        datasets = {d: (embeddings[d]["A"], embeddings[d]["B"], embeddings[d]["gold"]) for d in spec.splits}
        return [result_dict(spec, r, embeddings) for r in sts_eval_many(datasets, max_probes=max_probes,
                                                                         progress=progress)]

    if not p.usepytorch and spec.evaluator != "relatedness":
        return pytorch_free(lambda i: task.evaluate(_slice_embeddings(embeddings, i), raw))

    if isinstance(num_threads, str):
        if num_threads != "auto":
            raise ValueError(f"num_threads must be a positive int, None or 'auto', got {num_threads!r}.")
        num_threads = p.probe_threads if p.get("probe_threads") is not None else DEFAULT_CPU_THREADS

    def features(rec: Any) -> Source:
        return rec["X"] if "X" in rec else (rec["A"], rec["B"])

    call = evaluator_call(spec, embeddings, p, seed, task.n_classes, features)
    evaluate = {"split": split_eval_many, "kfold": kfold_eval_many, "innerkfold": innerkfold_eval_many,
                "relatedness": relatedness_eval_many}[call.evaluator]
    extra = {"predictions": True} if predictions and call.evaluator == "split" else {}
    rs = evaluate(*call.args, **dict(call.kwargs, device=dev), max_probes=max_probes, progress=progress,
                  num_threads=num_threads, **extra)
    out = [result_dict(spec, r, embeddings) for r in rs]
    if predictions and call.evaluator in ("split", "kfold"):
        for o, r in zip(out, rs, strict=True):
            o["yhat"] = r["yhat"]
    return out
