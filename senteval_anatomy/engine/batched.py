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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
    """Slots sharing one weight decay and one stream: one optimizer param group, parameters ``[n_slots, ...]``."""

    __slots__ = ("reg", "stream", "slots", "probe_pos", "label_pos", "params", "full")

    def __init__(self, reg: float, stream: int, slots: np.ndarray, probe_pos: torch.Tensor,
                 label_pos: torch.Tensor | None, params: list[nn.Parameter], full: bool):
        self.reg = reg
        self.stream = stream  # the stream (seed, rows) whose mini-batches these slots train on
        self.slots = slots  # global slot ids, ascending
        self.probe_pos = probe_pos  # probe index of each slot (long tensor on the device)
        self.label_pos = label_pos  # label-set index of each slot (None: one label set)
        self.params = params
        self.full = full  # slots are exactly probes 0..P-1 in order: no gather needed


class _SlotStack:
    """Parameters of S independent probes ("slots"), grouped by (stream, weight decay), plus each slot's best
    snapshot.

    A slot is one (probe, weight decay, label set, stream) tuple. Its initial weights are given per slot (a solo
    probe's init is a pure function of its seed and the shapes, so the slots of one stream share them). Slots that
    stop early are dropped from the live stack (``compact``) together with their optimizer state, so compute
    follows the number of still-running probes; their best snapshot stays in ``best``.
    """

    def __init__(
        self,
        init: Sequence[torch.Tensor],
        slot_probe: np.ndarray,
        slot_reg: np.ndarray,
        n_probes: int,
        make_optimizer: OptimizerFactory,
        device: torch.device,
        slot_stream: np.ndarray | None = None,
        slot_labels: np.ndarray | None = None,
    ):
        """``init``: per-slot initial parameters ``[S, ...]``."""
        self.device = device
        self.slot_probe = np.asarray(slot_probe, dtype=np.int64)
        self.slot_reg = np.asarray(slot_reg, dtype=np.float64)
        n_slots = len(self.slot_probe)
        self.slot_stream = (np.zeros(n_slots, np.int64) if slot_stream is None
                            else np.asarray(slot_stream, dtype=np.int64))
        self.slot_labels = None if slot_labels is None else np.asarray(slot_labels, dtype=np.int64)
        self.n_probes = n_probes
        self.make_optimizer = make_optimizer
        init = [t.detach().to(device=device, dtype=torch.float32) for t in init]
        self.best = [t.clone().contiguous() for t in init]
        self.groups: list[_Group] = []
        seen: list[tuple[int, float]] = []
        for k, reg in zip(self.slot_stream.tolist(), self.slot_reg.tolist(), strict=True):
            if (k, reg) not in seen:
                seen.append((k, reg))
        for k, reg in seen:
            slots = np.flatnonzero((self.slot_reg == reg) & (self.slot_stream == k))
            si = torch.as_tensor(slots, device=device)
            params = [nn.Parameter(t.index_select(0, si).contiguous()) for t in init]
            self.groups.append(self._make_group(reg, k, slots, params))
        self.optimizer = self._build_optimizer()

    def _make_group(self, reg: float, stream: int, slots: np.ndarray, params: list[nn.Parameter]) -> _Group:
        probes = self.slot_probe[slots]
        full = len(probes) == self.n_probes and bool(np.all(probes == np.arange(self.n_probes)))
        labels = None if self.slot_labels is None else torch.as_tensor(self.slot_labels[slots], device=self.device)
        return _Group(reg, stream, slots, torch.as_tensor(probes, device=self.device), labels, params, full)

    def _build_optimizer(self) -> torch.optim.Optimizer | None:
        if not self.groups:
            return None
        return self.make_optimizer([{"params": g.params, "weight_decay": g.reg} for g in self.groups])

    def active_streams(self) -> list[int]:
        """Streams with at least one running slot, ascending."""
        return sorted({g.stream for g in self.groups})

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
            new_groups.append(self._make_group(g.reg, g.stream, g.slots[keep], params))
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

    A *slot* is one (probe, weight decay, label set, stream) tuple: ``slot_probe[s]`` indexes the probe axis of the
    stacked features ``X`` ``[P, N, d]``, ``slot_reg[s]`` is its ``weight_decay``, ``slot_labels[s]`` the row of the
    label matrix ``Y`` ``[L, N]`` it learns (a task's labels, its control task's labels...), and ``slot_stream[s]``
    its *stream*: the seed (``stream_seeds[k]``) that draws its initial weights, validation split, mini-batches and
    dropout masks, together with the training / validation rows of that stream. Every slot has its own early
    stopping (cumulative tenacity on its validation accuracy), its own best snapshot and its own optimizer state;
    the slots of a stream share the mini-batch row indices, which are the same for every solo probe of that seed.
    So one stacked run trains a task's probes and its control probes under N seeds at once; slot ``s`` ends where
    a solo ``TorchProbe(seed=stream_seeds[slot_stream[s]])`` trained on labels ``Y[slot_labels[s]]`` ends.

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
        The seed of the single stream when ``stream_seeds`` is not given.
    config : mapping
        ``params.classifier`` (``nhid`` required), parsed by :func:`~senteval_anatomy.engine.probes.classifier_config`.
    device : str or torch.device
    slot_stream : array of int, shape (S,), optional
        Stream of every slot (index into ``stream_seeds``); default: every slot in stream 0.
    stream_seeds : sequence of int, optional
        Seed of every stream; default ``[seed]``. Several streams may have the same seed (e.g. k-fold folds drawn
        from different label sets: same seed, other rows).
    slot_labels : array of int, shape (S,), optional
        Label set of every slot (a row of a 2-D ``y``); default: ``y`` is one label vector shared by all slots.
    """

    def __init__(self, inputdim: int, nclasses: int, slot_probe: np.ndarray, slot_reg: np.ndarray, *,
                 n_probes: int, seed: int = 1111, config: dict[str, Any] | None = None, device: Any = "auto",
                 slot_stream: np.ndarray | None = None, stream_seeds: Sequence[int] | None = None,
                 slot_labels: np.ndarray | None = None):
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
        seeds = [int(seed)] if stream_seeds is None else [int(v) for v in stream_seeds]
        if slot_stream is None:
            slot_stream = np.zeros(len(slot_probe), dtype=np.int64)
        slot_stream = np.asarray(slot_stream, dtype=np.int64)
        if slot_stream.shape != slot_probe.shape or slot_stream.min() < 0 or slot_stream.max() >= len(seeds):
            raise ValueError(f"slot_stream must give every slot a stream in 0..{len(seeds) - 1} (one per slot), "
                             f"got shape {slot_stream.shape}")
        if slot_labels is not None:
            slot_labels = np.asarray(slot_labels, dtype=np.int64)
            if slot_labels.shape != slot_probe.shape or slot_labels.min() < 0:
                raise ValueError(f"slot_labels must give every slot a label-set index (one per slot), got shape "
                                 f"{slot_labels.shape}")

        optim_cls, optim_params = parse_optimizer(cfg["optim"])  # fail before touching any RNG, as the solo probe
        # Per stream, the construction order of TorchProbe: seed, build the module on the CPU (its init is the init
        # of every slot of that stream), then the numpy stream that draws validation splits and mini-batches. With
        # several streams, each keeps its torch generator state after the build for its own dropout masks.
        inits: list[list[torch.Tensor]] = []
        self.rngs_: list[np.random.RandomState] = []
        self._torch_states: list[torch.Tensor] = []
        for sd in seeds:
            seed_torch(sd)
            template = build_mlp(self.inputdim, self.nclasses, self.nhid, self.dropout)
            inits.append(template_parameters(template))
            self.rngs_.append(np.random.RandomState(sd))
            self._torch_states.append(self._get_rng_state())
        self.rng_ = self.rngs_[0]
        self.stream_seeds = seeds
        init = [torch.stack([inits[k][i] for k in slot_stream.tolist()]) for i in range(len(inits[0]))]

        def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
            return optim_cls(groups, **optim_params)

        self._stack = _SlotStack(init, slot_probe, np.asarray(slot_reg, dtype=np.float64), int(n_probes),
                                 make_optimizer, self.device, slot_stream=slot_stream, slot_labels=slot_labels)
        self.n_slots = len(slot_probe)
        self.n_streams = len(seeds)

    def _get_rng_state(self) -> torch.Tensor:
        if self.device.type == "cuda":
            return torch.cuda.get_rng_state(self.device)
        return torch.get_rng_state()

    def _set_rng_state(self, state: torch.Tensor) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)

    def _per_stream(self, rows: Any, what: str) -> list[np.ndarray] | None:
        """``rows`` as one int64 array per stream (one array: shared by every stream)."""
        if rows is None:
            return None
        if isinstance(rows, (list, tuple)):
            if len(rows) != self.n_streams:
                raise ValueError(f"BatchedMLP: {what} has {len(rows)} row sets for {self.n_streams} streams.")
            return [np.asarray(r, dtype=np.int64) for r in rows]
        return [np.asarray(rows, dtype=np.int64)] * self.n_streams

    @staticmethod
    def _labels(y: torch.Tensor) -> torch.Tensor:
        """Labels as a ``[L, N]`` matrix (a 1-D ``y`` is one label set)."""
        return y.unsqueeze(0) if y.dim() == 1 else y

    # -- training --------------------------------------------------------------------------------------------------
    def fit(self, X: torch.Tensor, y: torch.Tensor, train_rows: Any, val_rows: Any = None,
            validation_split: float | None = None) -> BatchedMLP:
        """Train every slot on rows ``train_rows`` of ``X`` [P, N, d] / ``y`` ([N], or [L, N] with ``slot_labels``)
        with early stopping on the accuracy over ``val_rows`` (or on a ``validation_split`` drawn like the solo
        probe's, per stream), then keep each slot's best snapshot. ``train_rows`` / ``val_rows`` are one array for
        all streams or a list with one array per stream. Sets ``best_score_`` (per slot, in [0, 1]) and
        ``n_epochs_`` (per slot)."""
        trains = self._per_stream(train_rows, "train_rows")
        vals = self._per_stream(val_rows, "val_rows")
        if vals is None:
            if not validation_split:
                raise ValueError("BatchedMLP.fit needs val_rows or validation_split for early stopping.")
            vals = []
            for k, rows in enumerate(trains):
                n = len(rows)
                permutation = self.rngs_[k].permutation(n)
                n_val = int(validation_split * n)
                if n_val == 0:
                    raise ValueError(
                        f"validation_split={validation_split} of {n} samples leaves no validation sample "
                        f"(need at least {int(np.ceil(1 / validation_split))} samples)."
                    )
                trains[k] = rows[permutation[n_val:]]
                vals.append(rows[permutation[:n_val]])
        for k in range(self.n_streams):
            if len(trains[k]) == 0 or len(vals[k]) == 0:
                raise ValueError(f"BatchedMLP.fit: empty training ({len(trains[k])}) or validation ({len(vals[k])}) "
                                 "set.")
        dev = self.device
        Y = self._labels(y)
        tr = [torch.as_tensor(r, device=dev) for r in trains]
        self._val = [torch.as_tensor(r, device=dev) for r in vals]
        stoppers = [EarlyStopping(self.tenacity, best=-1.0) for _ in range(self.n_slots)]
        self.n_epochs_ = np.zeros(self.n_slots, dtype=np.int64)
        stack = self._stack
        nepoch = 0
        while stack.n_active and nepoch <= self.max_epoch:
            live = stack.active_streams()
            for _ in range(self.epoch_size):
                batches: dict[int, list[torch.Tensor]] = {}
                for k in live:
                    perm_t = torch.as_tensor(self.rngs_[k].permutation(len(tr[k])), device=dev)
                    batches[k] = [tr[k][perm_t[i : i + self.batch_size]]
                                  for i in range(0, len(tr[k]), self.batch_size)]
                for i in range(max(len(b) for b in batches.values())):
                    self._train_step(X, Y, {k: b[i] for k, b in batches.items() if i < len(b)})
            nepoch += self.epoch_size
            active = stack.active_slots()
            self.n_epochs_[active] = nepoch
            acc = self._live_accuracy(X, Y)
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

    def _mask(self, k: int, m: int) -> torch.Tensor | None:
        """The dropout mask ``[m, nhid]`` of stream ``k`` for one step (None without a hidden layer). The solo
        probe's nn.Dropout draws one mask per step from the global generator; every slot of a stream draws the same
        one, so one draw serves them all. With several streams, each draws from its own saved generator state."""
        if not self.nhid:
            return None
        ones = torch.ones(m, self.nhid, device=self.device)
        if self.n_streams == 1:
            return F.dropout(ones, self.dropout, True)
        outer = self._get_rng_state()
        try:
            self._set_rng_state(self._torch_states[k])
            mask = F.dropout(ones, self.dropout, True)
            self._torch_states[k] = self._get_rng_state()
        finally:
            self._set_rng_state(outer)
        return mask

    def _train_step(self, X: torch.Tensor, Y: torch.Tensor, idx: dict[int, torch.Tensor]) -> None:
        """One optimizer step; ``idx[k]`` are stream ``k``'s mini-batch rows (streams without a batch this step,
        having fewer rows, keep their parameters: their gradients stay None, which every optimizer skips)."""
        stack = self._stack
        fetched: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        total: torch.Tensor | None = None
        for g in stack.groups:
            if g.stream not in idx:
                continue
            if g.stream not in fetched:
                rows = idx[g.stream]
                # index_select: much faster than X[:, idx] on CPU
                fetched[g.stream] = (X.index_select(1, rows), Y.index_select(1, rows), self._mask(g.stream, len(rows)))
            xb_all, yb_all, mask = fetched[g.stream]
            xb = xb_all if g.full else xb_all.index_select(0, g.probe_pos)
            yb = yb_all[0] if g.label_pos is None else yb_all.index_select(0, g.label_pos)
            out = _stacked_forward(g.params, xb, mask)
            # Mean CE per slot, summed over slots: each slot's gradient is exactly its solo gradient.
            loss = _slot_cross_entropy(out, yb)
            total = loss if total is None else total + loss
        assert stack.optimizer is not None and total is not None
        stack.optimizer.zero_grad()
        total.backward()
        stack.optimizer.step()

    def _live_accuracy(self, X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
        """Validation accuracy of every active slot with its current weights (NaN for inactive slots)."""
        acc = np.full(self.n_slots, np.nan)
        for g in self._stack.groups:
            rows = self._val[g.stream]
            correct = self._count_correct([p.detach() for p in g.params], g.probe_pos, g.label_pos, g.full, X, Y,
                                          rows)
            for s, c in zip(g.slots, correct.tolist(), strict=True):
                acc[s] = 1.0 * c / len(rows)
        return acc

    def _count_correct(self, params, probe_pos, label_pos, full, X, Y, rows) -> torch.Tensor:
        correct = torch.zeros(params[0].shape[0], dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, out in _iter_blocks(params, probe_pos, full, X, rows, self.batch_size):
            yr = Y.index_select(1, rows[i0:i1])
            yr = yr[0] if label_pos is None else yr.index_select(0, label_pos[s0:s1])
            correct[s0:s1] += out.max(2)[1].eq(yr).sum(1)
        return correct

    # -- inference (best snapshots) --------------------------------------------------------------------------------
    def _slot_view(self, slots: np.ndarray | None):
        """Best-snapshot parameters, probe and label-set index tensors and "no gather needed" flag of ``slots``
        (default all)."""
        probes = self._stack.slot_probe
        labels = self._stack.slot_labels
        params = self._stack.best
        if slots is not None:
            slots = np.asarray(slots, dtype=np.int64)
            probes = probes[slots]
            labels = None if labels is None else labels[slots]
            si = torch.as_tensor(slots, device=self.device)
            params = [p.index_select(0, si) for p in params]
        full = len(probes) == self._stack.n_probes and bool(np.all(probes == np.arange(self._stack.n_probes)))
        label_pos = None if labels is None else torch.as_tensor(labels, device=self.device)
        return params, torch.as_tensor(probes, device=self.device), label_pos, full

    def _by_stream(self, rows: Any, slots: np.ndarray | None, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        """``fn(rows_k, slots_k)`` per stream when ``rows`` is a list with one row set per stream, reassembled in
        slot order; else ``None``."""
        if not isinstance(rows, (list, tuple)):
            return None
        per = self._per_stream(rows, "rows")
        slots = np.arange(self.n_slots) if slots is None else np.asarray(slots, dtype=np.int64)
        streams = self._stack.slot_stream[slots]
        parts: dict[int, np.ndarray] = {}
        for k in np.unique(streams).tolist():
            parts[k] = fn(per[k], slots[streams == k])
        out, pos = [], {k: 0 for k in parts}
        for k in streams.tolist():
            out.append(parts[k][pos[k]])
            pos[k] += 1
        return np.stack(out) if out and np.ndim(out[0]) else np.asarray(out)

    def score(self, X: torch.Tensor, y: torch.Tensor, rows: Any, slots: np.ndarray | None = None) -> np.ndarray:
        """Accuracy in [0, 1] of the best snapshot of ``slots`` (default: every slot) on ``rows`` (one array, or a
        list with one array per stream), float64."""
        split = self._by_stream(rows, slots, lambda r, s: self.score(X, y, r, slots=s))
        if split is not None:
            return split.astype(np.float64)
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        if len(rows_t) == 0:
            raise ValueError("BatchedMLP.score: empty evaluation set.")
        params, probe_pos, label_pos, full = self._slot_view(slots)
        correct = self._count_correct(params, probe_pos, label_pos, full, X, self._labels(y), rows_t).tolist()
        return np.array([1.0 * c / len(rows_t) for c in correct], dtype=np.float64)

    def predict(self, X: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Class ids of the best snapshot of ``slots`` (default: every slot) on ``rows``: int64 (n_slots, n_rows)."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        params, probe_pos, _, full = self._slot_view(slots)
        out = torch.empty(params[0].shape[0], len(rows_t), dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, logits in _iter_blocks(params, probe_pos, full, X, rows_t, self.batch_size):
            out[s0:s1, i0:i1] = logits.max(2)[1]
        return out.cpu().numpy()

    def predict_log_proba(self, X: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Natural-log class probabilities of the best snapshot of ``slots`` (default: every slot) on ``rows``:
        float64 (n_slots, n_rows, nclasses). Used for codelengths (online-code MDL), where a probability matters,
        not only the argmax."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        params, probe_pos, _, full = self._slot_view(slots)
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

        init = [t.unsqueeze(0).repeat(len(slot_probe), *([1] * t.dim())) for t in template_parameters(template)]
        self._stack = _SlotStack(init, slot_probe,
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


def _grid_slots(n_probes: int, regs: Sequence[float], n_variants: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots of a grid search over ``n_variants`` (label set, seed) variants: slot ``(v * R + r) * n_probes + p``
    is probe ``p`` with ``regs[r]`` in variant ``v``. Returns ``(slot_probe, slot_reg, slot_variant)``."""
    n_regs = len(regs)
    return (np.tile(np.arange(n_probes), n_variants * n_regs),
            np.tile(np.repeat(np.asarray(regs, dtype=np.float64), n_probes), n_variants),
            np.repeat(np.arange(n_variants), n_regs * n_probes))


def _streams(seeds: Sequence[int], rows: Sequence[tuple[np.ndarray, ...]]
             ) -> tuple[np.ndarray, list[int], list[tuple[np.ndarray, ...]]]:
    """Group variants into trainer streams: variants with the same seed and the same row sets draw the same
    initial weights and mini-batches, so they share one stream (one gather per step). Returns the stream of every
    variant, the seed of every stream and its row sets."""
    keys: dict[tuple, int] = {}
    of_variant, stream_seeds, stream_rows = [], [], []
    for sd, rs in zip(seeds, rows, strict=True):
        key = (int(sd), *(np.asarray(r, dtype=np.int64).tobytes() for r in rs))
        if key not in keys:
            keys[key] = len(stream_seeds)
            stream_seeds.append(int(sd))
            stream_rows.append(rs)
        of_variant.append(keys[key])
    return np.asarray(of_variant, dtype=np.int64), stream_seeds, stream_rows


def _mlp(X, nclasses, slot_probe, slot_reg, slot_variant, seeds, variant_rows, *, classifier, device) -> tuple:
    """A :class:`BatchedMLP` whose slot ``s`` trains on label set ``slot_variant[s]`` with that variant's seed, and
    each stream's row sets (``variant_rows[v]``: tuples of row arrays, deduplicated into streams)."""
    var_stream, stream_seeds, stream_rows = _streams(seeds, variant_rows)
    bm = BatchedMLP(X.shape[2], nclasses, slot_probe, slot_reg, n_probes=X.shape[0], seed=stream_seeds[0],
                    config=classifier, device=device, slot_stream=var_stream[slot_variant], stream_seeds=stream_seeds,
                    slot_labels=slot_variant if len(seeds) > 1 else None)
    return bm, stream_rows


def _split_chunk(X, Y, rows, *, seeds, nclasses, classifier, device, noreg, bar,
                 predictions=False) -> list[list[dict[str, Any]]]:
    tr, dv, te = rows
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("split", True, noreg)
    slot_probe, slot_reg, slot_var = _grid_slots(n_probes, regs, n_var)
    bm, _ = _mlp(X, nclasses, slot_probe, slot_reg, slot_var, seeds, [()] * n_var, classifier=classifier,
                 device=device)
    bm.fit(X, Y, tr, val_rows=dv)
    bar.update()
    dev_acc = bm.score(X, Y, dv).tolist()  # Python floats, as TorchProbe.score returns
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_var)]
    chosen = []
    for v in range(n_var):
        for p in range(n_probes):
            scores = [split_score(dev_acc[(v * len(regs) + r) * n_probes + p]) for r in range(len(regs))]
            optreg, devacc = select_reg(scores, regs)
            chosen.append((v * len(regs) + list(regs).index(optreg)) * n_probes + p)
            out[v].append({"devacc": float(devacc), "reg": optreg, "regs": list(regs),
                           "dev_scores": [float(s) for s in scores]})
    # SplitClassifier refits the chosen value with the same seed on the same data, which replays the grid run of
    # that value exactly (training is a pure function of seed, data and reg); its snapshot is the refit model.
    test_acc = bm.score(X, Y, te, slots=np.asarray(chosen)).tolist()
    yhat = bm.predict(X, te, slots=np.asarray(chosen)) if predictions else None
    for v in range(n_var):
        for p in range(n_probes):
            i = v * n_probes + p
            out[v][p]["acc"] = float(split_score(test_acc[i]))
            if yhat is not None:
                out[v][p]["yhat"] = yhat[i]
    return out


def _cv_grid(X, Y, folds, regs, *, seeds, nclasses, classifier, device, bar) -> list[list[float]]:
    """Per slot (grid layout, see :func:`_grid_slots`), the list of held-out fold accuracies; ``folds[v]`` are
    variant ``v``'s ``(train_rows, test_rows)`` (every variant has as many folds; fold ``i`` of all variants trains
    in one stacked run)."""
    n_probes, n_var = X.shape[0], len(seeds)
    slot_probe, slot_reg, slot_var = _grid_slots(n_probes, regs, n_var)
    scans: list[list[float]] = [[] for _ in range(len(slot_probe))]
    for i in range(len(folds[0])):
        bm, srows = _mlp(X, nclasses, slot_probe, slot_reg, slot_var, seeds, [folds[v][i] for v in range(n_var)],
                         classifier=classifier, device=device)
        bm.fit(X, Y, [r[0] for r in srows], val_rows=[r[1] for r in srows])
        for s, acc in enumerate(bm.score(X, Y, [r[1] for r in srows]).tolist()):
            scans[s].append(acc)
        bar.update()
    return scans


def _select_cv(scans, regs, n_probes, n_variants=1):
    """Per variant and probe: SentEval's rounded mean CV scores, the chosen value and the best score."""
    out = []
    for v in range(n_variants):
        sel = []
        for p in range(n_probes):
            scores = [cv_score(scans[(v * len(regs) + r) * n_probes + p]) for r in range(len(regs))]
            optreg, best = select_reg(scores, regs)
            sel.append((scores, optreg, best))
        out.append(sel)
    return out


def _refit(X, Y, train_rows, optregs, *, seeds, nclasses, classifier, device, bar, test_rows=None):
    """Final fit of every probe of every variant with its own chosen value (``optregs[v][p]``) on
    ``train_rows[v]``, early-stopping on a 5% validation split. Returns the trainer and each stream's row sets
    (``(train, test)`` when ``test_rows`` is given)."""
    n_probes, n_var = X.shape[0], len(seeds)
    slot_probe = np.tile(np.arange(n_probes), n_var)
    slot_var = np.repeat(np.arange(n_var), n_probes)
    regs = np.asarray(optregs, dtype=np.float64).reshape(-1)
    rows = [(train_rows[v],) if test_rows is None else (train_rows[v], test_rows[v]) for v in range(n_var)]
    bm, srows = _mlp(X, nclasses, slot_probe, regs, slot_var, seeds, rows, classifier=classifier, device=device)
    bm.fit(X, Y, [r[0] for r in srows], validation_split=VALIDATION_SPLIT)
    bar.update()
    return bm, srows


def _kfold_chunk(X, Y, rows, *, seeds, nclasses, kfold, classifier, device, bar) -> list[list[dict[str, Any]]]:
    tr, te = rows
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("kfold", True)
    y_np = Y.cpu().numpy()
    # StratifiedKFold draws folds from the labels, the seed and the sample count only, so a placeholder X gives the
    # same folds; each variant (labels, seed) has its own.
    folds = [[(tr[a], tr[b]) for a, b in stratified_kfold(kfold, seeds[v]).split(np.zeros((len(tr), 1)), y_np[v, tr])]
             for v in range(n_var)]
    scans = _cv_grid(X, Y, folds, regs, seeds=seeds, nclasses=nclasses, classifier=classifier, device=device,
                     bar=bar)
    sel = _select_cv(scans, regs, n_probes, n_var)
    bm, _ = _refit(X, Y, [tr] * n_var, [[s[1] for s in sel_v] for sel_v in sel], seeds=seeds, nclasses=nclasses,
                   classifier=classifier, device=device, bar=bar)
    yhat = bm.predict(X, te)
    test_acc = bm.score(X, Y, te).tolist()
    return [[{"devacc": float(best), "acc": float(split_score(test_acc[v * n_probes + p])),
              "yhat": yhat[v * n_probes + p], "reg": optreg, "regs": list(regs),
              "dev_scores": [float(s) for s in scores]}
             for p, (scores, optreg, best) in enumerate(sel[v])] for v in range(n_var)]


def _innerkfold_chunk(X, Y, *, seeds, nclasses, kfold, classifier, device, bar) -> list[list[dict[str, Any]]]:
    n_probes, n_var = X.shape[0], len(seeds)
    regs = reg_grid("innerkfold", True)
    y_np = Y.cpu().numpy()
    skf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    innerskf = stratified_kfold(kfold, INNER_KFOLD_RANDOM_STATE)
    outer = [list(skf.split(np.zeros((Y.shape[1], 1)), y_np[v])) for v in range(n_var)]
    devresults = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    testresults = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    fold_regs = [[[] for _ in range(n_probes)] for _ in range(n_var)]
    for i in range(len(outer[0])):
        train_idx = [outer[v][i][0] for v in range(n_var)]
        test_idx = [outer[v][i][1] for v in range(n_var)]
        inner = [[(train_idx[v][a], train_idx[v][b])
                  for a, b in innerskf.split(np.zeros((len(train_idx[v]), 1)), y_np[v, train_idx[v]])]
                 for v in range(n_var)]
        scans = _cv_grid(X, Y, inner, regs, seeds=seeds, nclasses=nclasses, classifier=classifier, device=device,
                         bar=bar)
        sel = _select_cv(scans, regs, n_probes, n_var)
        for v in range(n_var):
            for p, (_, optreg, best) in enumerate(sel[v]):
                devresults[v][p].append(best)
                fold_regs[v][p].append(optreg)
        bm, srows = _refit(X, Y, train_idx, [[s[1] for s in sel_v] for sel_v in sel], seeds=seeds,
                           nclasses=nclasses, classifier=classifier, device=device, bar=bar, test_rows=test_idx)
        for s, acc in enumerate(bm.score(X, Y, [r[1] for r in srows]).tolist()):
            testresults[s // n_probes][s % n_probes].append(split_score(acc))
    return [[{"devacc": float(mean_score(devresults[v][p])), "acc": float(mean_score(testresults[v][p])),
              "fold_devacc": [float(x) for x in devresults[v][p]], "fold_acc": [float(x) for x in testresults[v][p]],
              "fold_reg": fold_regs[v][p], "regs": list(regs)} for p in range(n_probes)] for v in range(n_var)]


def _relatedness_chunk(X, rows, y_train, y_dev, y_test, *, seeds, device, bar) -> list[list[dict[str, Any]]]:
    tr, dv, te = rows
    n_probes = X.shape[0]
    Y = torch.zeros(X.shape[1], RELATEDNESS_NCLASSES, dtype=torch.float32)
    Y[torch.as_tensor(tr)] = torch.from_numpy(ev.encode_relatedness_labels(y_train))
    out = []
    for seed in seeds:
        reg = BatchedRelatedness(X.shape[2], np.arange(n_probes), n_probes=n_probes, seed=seed, device=device)
        reg.fit(X, Y.to(X.device), tr, dv, np.asarray(list(y_dev), dtype=np.float64))
        bar.update()
        yhat = reg.predict(X, te)
        out.append([relatedness_scores(reg.best_score_[p], yhat[p], y_test) for p in range(n_probes)])
    return out


def _offsets(sizes: Sequence[int]) -> list[np.ndarray]:
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in range(len(sizes))]


def _run_chunks(kind: str, sources: Sequence[Source], labels: np.ndarray | None, *, seeds: Sequence[int],
                max_probes: int | None, progress: bool | None, desc: str, device: Any,
                num_threads: int | None = DEFAULT_CPU_THREADS, **kw: Any) -> list[list[dict[str, Any]]]:
    """Chunk the probes, stack each chunk's features once, run the batched evaluator ``kind`` on it (with
    ``num_threads`` torch threads on CPU, see :data:`DEFAULT_CPU_THREADS`) for every variant: ``labels`` is
    ``[V, N]`` (one label set per variant), ``seeds`` one seed per variant. Returns V lists of P results."""
    names = [f"split {i}" for i in range(len(sources))]
    sizes, n_probes, width = _check_sources(sources, names)
    dev = resolve_device(device)
    chunks = _chunks(n_probes, sum(sizes), width, max_probes)
    k = int(kw.get("kfold") or 0)
    fits = {"split": 1, "kfold": k + 1, "innerkfold": k * (k + 1), "relatedness": len(seeds)}[kind]
    bar = _Progress(len(chunks) * fits, desc, progress)
    rows = _offsets(sizes)
    y = None if labels is None else torch.as_tensor(np.asarray(labels), device=dev)
    results: list[list[dict[str, Any]]] = [[] for _ in seeds]
    try:
        with _torch_threads(num_threads, dev):
            for p0, p1 in chunks:
                X = _chunk_tensor(sources, p0, p1, dev)
                if kind == "split":
                    part = _split_chunk(X, y, rows, seeds=seeds, device=dev, bar=bar, **kw)
                elif kind == "kfold":
                    part = _kfold_chunk(X, y, rows, seeds=seeds, device=dev, bar=bar, **kw)
                elif kind == "innerkfold":
                    part = _innerkfold_chunk(X, y, seeds=seeds, device=dev, bar=bar, **kw)
                else:
                    part = _relatedness_chunk(X, rows, seeds=seeds, device=dev, bar=bar, **kw)
                for v in range(len(seeds)):
                    results[v] += part[v]
                del X
    finally:
        bar.close()
    return results


def _variant_labels(ys: Sequence[Any], seed: int | Sequence[int]) -> tuple[list[np.ndarray], list[int], bool]:
    """Normalise the label arguments of a ``*_eval_many`` function: each of ``ys`` is one label vector ``[n]`` or
    V label sets ``[V, n]``; ``seed`` one int or V seeds. Returns the ``[V, n]`` label matrices, the V seeds and
    whether the caller asked for variants (then results are V lists of P dicts)."""
    arrays = [np.asarray(y) for y in ys]
    multi = isinstance(seed, (list, tuple, np.ndarray)) or any(a.ndim == 2 for a in arrays)
    n_var = max([a.shape[0] for a in arrays if a.ndim == 2] + [len(seed) if isinstance(
        seed, (list, tuple, np.ndarray)) else 1])
    seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple, np.ndarray)) else [int(seed)] * n_var
    mats = [a if a.ndim == 2 else np.broadcast_to(a, (n_var, len(a))) for a in arrays]
    if len(seeds) != n_var or any(m.shape[0] != n_var for m in mats):
        raise ValueError(f"variants: {len(seeds)} seed(s) and label sets of {[m.shape[0] for m in mats]} rows; give "
                         "one seed per label set (or a single seed / a single label vector for all).")
    return mats, seeds, multi


def _unwrap(results: list[list[dict[str, Any]]], multi: bool) -> Any:
    return results if multi else results[0]


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
                    seed: int | Sequence[int] = 1111, usepytorch: bool = True,
                    classifier: dict[str, Any] | None = None, device: Any = "auto", noreg: bool = False,
                    max_probes: int | None = None, progress: bool | None = None, n_jobs: int | None = None,
                    num_threads: int | None = DEFAULT_CPU_THREADS, predictions: bool = False) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.split_eval` for P probes at once.

    ``X_*`` are ``[n, P, f]`` arrays (or ``(A, B)`` pairs of ``[n, P, d]`` arrays for pair features). Returns P
    dicts with the keys of ``split_eval`` (``devacc``, ``acc``, ``reg``, ``regs``, ``dev_scores``); with
    ``predictions=True`` (pytorch probes) also ``yhat``, the chosen probe's test predictions.

    Variants: ``y_*`` of shape ``[V, n]`` (V label sets, e.g. a task and its control task) and / or ``seed`` a
    sequence of V seeds train every (label set, seed) variant of every probe in the same stacked run; the result
    is then V lists of P dicts, list ``v`` equal to a call with ``y_*[v]`` and ``seed[v]``.
    """
    sources = [X_train, X_dev, X_test]
    _, n_probes, _ = _check_sources(sources, ["X_train", "X_dev", "X_test"])
    (Ytr, Ydv, Yte), seeds, multi = _variant_labels([y_train, y_dev, y_test], seed)
    if not usepytorch:
        return _unwrap([_per_probe(lambda p, v=v: ev.split_eval(
            _probe_features(X_train, p), Ytr[v], _probe_features(X_dev, p), Ydv[v], _probe_features(X_test, p),
            Yte[v], nclasses=nclasses, seed=seeds[v], usepytorch=False, noreg=noreg), n_probes, n_jobs, "split",
            progress) for v in range(len(seeds))], multi)
    labels = np.concatenate([Ytr, Ydv, Yte], axis=1).astype(np.int64)
    return _unwrap(_run_chunks("split", sources, labels, seeds=seeds, max_probes=max_probes, progress=progress,
                               desc="split probes", device=device, num_threads=num_threads, nclasses=nclasses,
                               classifier=classifier, noreg=noreg, predictions=predictions), multi)


def kfold_eval_many(X_train: Source, y_train, X_test: Source, y_test, *, nclasses: int, kfold: int = 5,
                    seed: int | Sequence[int] = 1111, usepytorch: bool = True,
                    classifier: dict[str, Any] | None = None, device: Any = "auto", max_probes: int | None = None,
                    progress: bool | None = None, n_jobs: int | None = None,
                    num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.kfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``yhat``, ``reg``, ``regs``, ``dev_scores``). Variants (``[V, n]`` labels, V seeds) as in
    :func:`split_eval_many`: each variant has its own folds (drawn from its labels and seed)."""
    sources = [X_train, X_test]
    _, n_probes, _ = _check_sources(sources, ["X_train", "X_test"])
    (Ytr, Yte), seeds, multi = _variant_labels([y_train, y_test], seed)
    if not usepytorch:
        return _unwrap([_per_probe(lambda p, v=v: ev.kfold_eval(
            _probe_features(X_train, p), Ytr[v], _probe_features(X_test, p), Yte[v], nclasses=nclasses,
            kfold=kfold, seed=seeds[v], usepytorch=False), n_probes, n_jobs, "kfold", progress)
            for v in range(len(seeds))], multi)
    labels = np.concatenate([Ytr, Yte], axis=1).astype(np.int64)
    return _unwrap(_run_chunks("kfold", sources, labels, seeds=seeds, max_probes=max_probes, progress=progress,
                               desc="kfold probes", device=device, num_threads=num_threads, nclasses=nclasses,
                               kfold=kfold, classifier=classifier), multi)


def innerkfold_eval_many(X: Source, y, *, nclasses: int, kfold: int = 5, seed: int | Sequence[int] = 1111,
                         usepytorch: bool = True, classifier: dict[str, Any] | None = None, device: Any = "auto",
                         max_probes: int | None = None, progress: bool | None = None,
                         n_jobs: int | None = None,
                         num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.innerkfold_eval` for P probes at once (P dicts: ``devacc``,
    ``acc``, ``fold_devacc``, ``fold_acc``, ``fold_reg``, ``regs``). Variants as in :func:`split_eval_many`."""
    _, n_probes, _ = _check_sources([X], ["X"])
    (Y,), seeds, multi = _variant_labels([y], seed)
    if not usepytorch:
        return _unwrap([_per_probe(lambda p, v=v: ev.innerkfold_eval(
            _probe_features(X, p), Y[v], nclasses=nclasses, kfold=kfold, seed=seeds[v], usepytorch=False),
            n_probes, n_jobs, "innerkfold", progress) for v in range(len(seeds))], multi)
    return _unwrap(_run_chunks("innerkfold", [X], Y.astype(np.int64), seeds=seeds, max_probes=max_probes,
                               progress=progress, desc="innerkfold probes", device=device, num_threads=num_threads,
                               nclasses=nclasses, kfold=kfold, classifier=classifier), multi)


def relatedness_eval_many(X_train: Source, y_train, X_dev: Source, y_dev, X_test: Source, y_test, *,
                          seed: int | Sequence[int] = 1111, device: Any = "auto", max_probes: int | None = None,
                          progress: bool | None = None,
                          num_threads: int | None = DEFAULT_CPU_THREADS) -> list[Any]:
    """:func:`~senteval_anatomy.engine.evaluators.relatedness_eval` for P probes at once (P dicts:
    ``devpearson``, ``pearson``, ``spearman``, ``mse``, ``yhat``). A sequence of seeds gives one list per seed
    (one stacked run each: relatedness has no control labels)."""
    multi = isinstance(seed, (list, tuple, np.ndarray))
    seeds = [int(s) for s in seed] if multi else [int(seed)]
    return _unwrap(_run_chunks("relatedness", [X_train, X_dev, X_test], None, seeds=seeds, max_probes=max_probes,
                               progress=progress, desc="relatedness probes", device=device,
                               num_threads=num_threads, y_train=np.asarray(y_train), y_dev=np.asarray(y_dev),
                               y_test=np.asarray(y_test)), multi)


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


@dataclass(frozen=True)
class Variant:
    """One (label set, seed) version of a task's probes for :func:`evaluate_many`'s ``variants``.

    ``labels`` maps each split of the embeddings to labels in the order of ``embeddings[split]["y"]`` (``None``:
    the task's own labels), e.g. a control task's labels; ``seed`` replaces ``params.seed`` (``None``: keep it).
    """

    labels: Mapping[str, Any] | None = None
    seed: int | None = None


def _with_labels(embeddings: Any, labels: Mapping[str, Any] | None, task_name: str) -> Any:
    """``embeddings`` with each split's ``y`` replaced by ``labels[split]`` (checked: same length, integers)."""
    if labels is None:
        return embeddings
    out = {}
    for split, rec in embeddings.items():
        rec = dict(rec)
        if split in labels:
            y = np.asarray(labels[split])
            if y.shape != np.shape(rec.get("y")):
                raise ValueError(f"{task_name}: variant labels for split {split!r} have shape {y.shape}, the "
                                 f"embeddings' labels {np.shape(rec.get('y'))}; give one label per row, in the "
                                 "embeddings' order.")
            rec["y"] = y.astype(np.int64)
        out[split] = rec
    return out


def evaluate_many(task: Any, embeddings: Any, params: Any, *, max_probes: int | None = None,
                  progress: bool | None = None, device: Any = None, n_jobs: int | None = None,
                  num_threads: int | None | str = "auto", predictions: bool = False,
                  variants: Sequence[Variant] | None = None) -> list[Any]:
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

    variants : sequence of Variant, optional
        Train every probe under each (label set, seed) :class:`Variant` (a task's labels and its control task's,
        several probe seeds...). For the pytorch classification evaluators all variants are slots of the same
        stacked runs (one pass over the features, one mini-batch gather per seed); other evaluators run one pass
        per variant. Result ``[v][i]`` equals ``task.evaluate`` on probe ``i``'s features with variant ``v``'s
        labels and seed.

    Returns
    -------
    list of dict
        One SentEval result dict per probe, with exactly the keys and rounding of ``task.evaluate``; with
        ``variants``, one such list per variant.
    """
    spec = task.spec
    p, seed = evaluation_params(params, task.seed)
    raw = params if params is not None else {}
    if variants is not None:
        return _evaluate_variants(task, embeddings, params, list(variants), max_probes=max_probes,
                                  progress=progress, device=device, n_jobs=n_jobs, num_threads=num_threads,
                                  predictions=predictions)
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


def _evaluate_variants(task: Any, embeddings: Any, params: Any, variants: list[Variant], **kw: Any) -> list[Any]:
    """:func:`evaluate_many` with ``variants``: one stacked pass for the pytorch classification evaluators, one
    pass per variant otherwise."""
    spec = task.spec
    if not variants:
        raise ValueError("variants is empty; pass None for the task's own labels and seed.")
    for v in variants:
        if not isinstance(v, Variant):
            raise TypeError(f"variants must hold Variant objects, got {type(v).__name__}.")
        if v.labels is not None and spec.kind not in ("classification", "pair_classification"):
            raise ValueError(f"{spec.name} is a {spec.kind} task: variant labels apply to classification tasks only.")
    raw = dict(params) if params is not None else {}
    p, seed = evaluation_params(params, task.seed)
    seeds = [seed if v.seed is None else int(v.seed) for v in variants]
    embs = [_with_labels(embeddings, v.labels, spec.name) for v in variants]
    stackable = spec.evaluator in ("split", "kfold", "innerkfold") and bool(p.usepytorch)
    if not stackable:
        return [evaluate_many(task, e, {**raw, "seed": sd}, **kw) for e, sd in zip(embs, seeds, strict=True)]
    dev = p.device if kw["device"] is None else kw["device"]
    num_threads = kw["num_threads"]
    if isinstance(num_threads, str):
        if num_threads != "auto":
            raise ValueError(f"num_threads must be a positive int, None or 'auto', got {num_threads!r}.")
        num_threads = p.probe_threads if p.get("probe_threads") is not None else DEFAULT_CPU_THREADS

    def features(rec: Any) -> Source:
        return rec["X"] if "X" in rec else (rec["A"], rec["B"])

    calls = [evaluator_call(spec, e, p, sd, task.n_classes, features) for e, sd in zip(embs, seeds, strict=True)]
    call = calls[0]
    label_pos = {"split": (1, 3, 5), "kfold": (1, 3), "innerkfold": (1,)}[call.evaluator]
    args = list(call.args)
    for i in label_pos:
        args[i] = np.stack([np.asarray(c.args[i]) for c in calls])
    evaluate = {"split": split_eval_many, "kfold": kfold_eval_many, "innerkfold": innerkfold_eval_many}[call.evaluator]
    extra = {"predictions": True} if kw["predictions"] and call.evaluator == "split" else {}
    rs = evaluate(*args, **dict(call.kwargs, device=dev, seed=seeds), max_probes=kw["max_probes"],
                  progress=kw["progress"], num_threads=num_threads, **extra)
    out = []
    for e, rv in zip(embs, rs, strict=True):
        res = [result_dict(spec, r, e) for r in rv]
        if kw["predictions"] and call.evaluator in ("split", "kfold"):
            for o, r in zip(res, rv, strict=True):
                o["yhat"] = r["yhat"]
        out.append(res)
    return out
