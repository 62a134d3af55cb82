"""The parameter stack of the stacked trainers: S independent probes ("slots") as a few optimizer groups, with each
slot's best snapshot, compaction of stopped slots, and the index plans that read each group's features and labels
out of mini-batches gathered side by side. :mod:`senteval_anatomy.engine.stacked` trains on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .kernels import stacked_forward
from .probes import EarlyStopping

__all__ = ["COUPLED_DECAY", "SCORE_BLOCK_ELEMS", "OptimizerFactory", "coupled_decay", "SlotGroup", "SlotStack", "block_streams", "in_order_blocks",
           "row_sets", "score_slices", "slots_per_pass"]

OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]

#: Upper bound (elements) of one gathered ``[slots, rows, features]`` block at scoring time, so that scoring thousands
#: of slots on wide pair features never materialises more than ~256 MB at once.
SCORE_BLOCK_ELEMS = 64 * 1024 * 1024


class SlotGroup:
    """Slots sharing one weight decay and one cohort (streams with the same mini-batch schedule, see
    :meth:`SlotStack.regroup`): one optimizer param group, parameters ``[n_slots, ...]``."""

    __slots__ = ("reg", "decays", "cohort", "slots", "slot_stream", "probe_pos", "label_pos", "params",
                 "block_streams", "cache")

    def __init__(self, reg: float, cohort: int, slots: np.ndarray, slot_stream: np.ndarray, probe_pos: torch.Tensor,
                 label_pos: torch.Tensor | None, params: list[nn.Parameter], block_streams: list[int] | None,
                 decays: list[tuple[float, int, int]] | None = None):
        self.reg = reg  # the optimizer group's weight_decay (0 when the stack applies the decays, see below)
        self.decays = decays or []  # (weight decay, s0, s1): slots s0:s1 decay by it, added to their gradient
        self.cohort = cohort
        self.slots = slots  # global slot ids, by (weight decay, id)
        self.slot_stream = slot_stream  # the stream (seed, rows) whose mini-batches each slot trains on
        self.probe_pos = probe_pos  # probe index of each slot (long tensor on the device)
        self.label_pos = label_pos  # label-set index of each slot (None: one label set)
        self.params = params
        # None: the slots' features are gathered slot by slot; a list: the slots are len(list) blocks of probes
        # 0..P-1 in order, block b on stream block_streams[b], so every block reads its stream's features as they
        # are (no gather; kernels.StackedLinear takes the blocks)
        self.block_streams = block_streams
        self.cache: dict[tuple[int, ...], tuple] = {}  # per set of live streams: the slots' input indices

    @property
    def full(self) -> int:
        """Number of in-order probe blocks (0: gathered slot by slot)."""
        return len(self.block_streams) if self.block_streams is not None else 0

    @property
    def streams(self) -> list[int]:
        return sorted(set(self.slot_stream.tolist()))

    def inputs(self, where: tuple[int, ...], device: torch.device) -> tuple:
        """Index tensors that read this group's slots out of row sets gathered side by side (``XS`` ``[P, n, rows,
        f]``, ``YS`` ``[L, n, rows]``; stream ``k`` reads row set ``where[k]`` of the ``n = max(where) + 1``): per
        block its row set (None: slot by slot), per slot its row of the ``[P * n, rows, f]`` view (None: blocks),
        its row of the ``[L * n, rows]`` labels, and its row set."""
        if where not in self.cache:
            n = max(where) + 1
            local = np.asarray(where, dtype=np.int64)[self.slot_stream]
            labels = (np.zeros(len(self.slots), np.int64) if self.label_pos is None
                      else self.label_pos.cpu().numpy())
            blocks = None if self.block_streams is None else [where[k] for k in self.block_streams]
            x_rows = None if blocks is not None else torch.as_tensor(self.probe_pos.cpu().numpy() * n + local,
                                                                     device=device)
            self.cache[where] = (blocks, x_rows, torch.as_tensor(labels * n + local, device=device),
                                 torch.as_tensor(local, device=device))
        return self.cache[where]

    def batch(self, params: Sequence[torch.Tensor], where: tuple[int, ...], XS: torch.Tensor, YS: torch.Tensor,
              masks: torch.Tensor | None = None, s0: int = 0, s1: int | None = None):
        """Outputs ``[s1 - s0, rows, C]`` of slots ``s0:s1`` of this group (``params`` sliced to them) on the row
        sets ``XS`` / ``YS`` (see :meth:`inputs`) and their labels (``[rows]`` when one label set is shared). With
        blocks, the whole group (``s0 = 0``, ``s1 = None``); each block multiplies its row set's features as they
        are, so a one-stream group computes exactly what a gather-free stack of its probes computes."""
        blocks, x_rows, y_rows, local = self.inputs(where, XS.device)
        P, n, m, f = XS.shape
        if blocks is not None:
            xb: Any = tuple(XS[:, j] for j in blocks)
        else:
            xb = XS.reshape(P * n, m, f).index_select(0, x_rows[s0:s1])
        if self.label_pos is None and n == 1:
            yb = YS[0, 0]
        else:
            yb = YS.reshape(-1, m).index_select(0, y_rows[s0:s1])
        mask = None if masks is None else (masks[0] if n == 1 else masks.index_select(0, local[s0:s1]))
        return stacked_forward(params, xb, mask), yb


class SlotStack:
    """Parameters of S independent probes ("slots"), grouped by (cohort, weight decay), plus each slot's best
    snapshot.

    A slot is one (probe, weight decay, label set, stream) tuple. Its initial weights are given per slot (a solo
    probe's init is a pure function of its seed and the shapes, so the slots of one stream share them). A *cohort*
    is a set of streams whose mini-batch schedules match (same numbers of training and validation rows): their
    slots of one weight decay form one group, so every step runs one forward, one loss and one optimizer group
    for all of them, whatever the number of streams (:meth:`regroup`; by default every stream is its own cohort).
    Slots that stop early are dropped from the live stack (``compact``) together with their optimizer state, so
    compute follows the number of still-running probes; their best snapshot stays in ``best``.
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
        stack_decay: bool = False,
    ):
        """``init``: per-slot initial parameters ``[S, ...]``. ``stack_decay``: the optimizer's weight decay is
        torch's coupled L2 (:func:`coupled_decay`), so the stack adds each slot's decay to its gradient itself and
        slots of every weight decay share one param group."""
        self.device = device
        self.slot_probe = np.asarray(slot_probe, dtype=np.int64)
        self.slot_reg = np.asarray(slot_reg, dtype=np.float64)
        n_slots = len(self.slot_probe)
        self.slot_stream = (np.zeros(n_slots, np.int64) if slot_stream is None
                            else np.asarray(slot_stream, dtype=np.int64))
        self.slot_labels = None if slot_labels is None else np.asarray(slot_labels, dtype=np.int64)
        self.n_probes = n_probes
        self.make_optimizer = make_optimizer
        self.stack_decay = bool(stack_decay)
        init = [t.detach().to(device=device, dtype=torch.float32) for t in init]
        self.best = [t.clone().contiguous() for t in init]
        self.regroup(np.arange(int(self.slot_stream.max()) + 1))

    def regroup(self, stream_cohort: np.ndarray) -> None:
        """Group the slots by cohort of their stream (and weight decay, unless the stack applies the decays), in
        order of first appearance, each group's slots by (weight decay, id). Only before training: the parameters
        are taken from ``best`` (the initial weights until the first snapshot)."""
        if getattr(self, "steps", 0):
            raise RuntimeError("regroup is only possible before training")
        self.steps = 0
        cohort = np.asarray(stream_cohort, dtype=np.int64)[self.slot_stream]
        seen: list[tuple[int, float]] = []
        for c, reg in zip(cohort.tolist(), self.slot_reg.tolist(), strict=True):
            k = (c, 0.0 if self.stack_decay else reg)
            if k not in seen:
                seen.append(k)
        self.groups: list[SlotGroup] = []
        for c, reg in seen:
            mask = cohort == c
            if not self.stack_decay:
                mask &= self.slot_reg == reg
            slots = np.flatnonzero(mask)
            slots = slots[np.lexsort((slots, self.slot_reg[slots]))]  # by (weight decay, id): decays are ranges
            si = torch.as_tensor(slots, device=self.device)
            params = [nn.Parameter(t.index_select(0, si).contiguous()) for t in self.best]
            self.groups.append(self._make_group(reg, c, slots, params))
        self.optimizer = self._build_optimizer()

    def _make_group(self, reg: float, cohort: int, slots: np.ndarray, params: list[nn.Parameter]) -> SlotGroup:
        probes = self.slot_probe[slots]
        streams = self.slot_stream[slots]
        labels = None if self.slot_labels is None else torch.as_tensor(self.slot_labels[slots], device=self.device)
        decays = None
        if self.stack_decay:
            regs = self.slot_reg[slots]
            cuts = np.flatnonzero(np.diff(regs)) + 1
            decays = [(float(regs[a]), int(a), int(b)) for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(regs)],
                                                                       strict=True) if regs[a] != 0]
        return SlotGroup(reg, cohort, slots, streams, torch.as_tensor(probes, device=self.device), labels, params,
                         block_streams(probes, streams, self.n_probes), decays)

    def _build_optimizer(self) -> torch.optim.Optimizer | None:
        if not self.groups:
            return None
        return self.make_optimizer([{"params": g.params, "weight_decay": g.reg} for g in self.groups])

    def descend(self, total: torch.Tensor | None) -> None:
        """One optimizer step on the summed loss of every live slot (each slot's gradient is its own loss's)."""
        assert self.optimizer is not None and total is not None
        self.optimizer.zero_grad()
        total.backward()
        if self.stack_decay:  # what the optimizer's step would do first: grad = grad.add(param, alpha=weight_decay)
            with torch.no_grad():
                for g in self.groups:
                    for reg, s0, s1 in g.decays:
                        for p in g.params:
                            if p.grad is not None:
                                p.grad[s0:s1].add_(p[s0:s1], alpha=reg)
        self.optimizer.step()
        self.steps += 1

    def active_streams(self) -> list[int]:
        """Streams with at least one running slot, ascending."""
        return sorted({k for g in self.groups for k in g.streams})

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
        new_groups: list[SlotGroup] = []
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
            new_groups.append(self._make_group(g.reg, g.cohort, g.slots[keep], params))
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

    def step(self, stoppers: Sequence[EarlyStopping], scored: Iterable[tuple[int, float]]) -> None:
        """End of a validation round: feed each ``(slot, score)`` to that slot's early stopping, in the given order;
        snapshot the slots that improved and drop the ones that stopped (the tail every stacked trainer shares)."""
        improved, stopped = [], []
        for s, score in scored:
            if stoppers[s].step(score):
                improved.append(s)
            elif stoppers[s].stop:
                stopped.append(s)
        self.snapshot(np.asarray(improved, dtype=np.int64))
        self.compact(np.asarray(stopped, dtype=np.int64))

    def restore_best(self) -> None:
        """End of training: the live stack is discarded, only the snapshots remain (SentEval restores the best)."""
        self.groups = []
        self.optimizer = None


def in_order_blocks(probes: np.ndarray, n_probes: int) -> int:
    """How many whole blocks of probes ``0..n_probes-1`` in order ``probes`` is (0: not such blocks). Slots laid out
    so (a task's probes, then its control probes, on the same rows) read the features without a gather."""
    k, r = divmod(len(probes), n_probes)
    return k if k and not r and bool(np.all(probes == np.tile(np.arange(n_probes), k))) else 0


#: Optimizers whose step begins with torch's coupled L2, ``grad = grad.add(param, alpha=weight_decay)``, before it
#: reads the gradient for anything else (checked against torch's source for the optimizers SentEval accepts; Rprop
#: has no weight decay). For these the stack adds the decay to each slot's gradient itself, with the same kernel and
#: the same scalar, and runs the optimizer with ``weight_decay=0``: the very same numbers with one param group for
#: every weight decay, so one forward, one loss and one optimizer group per step.
COUPLED_DECAY = ("Adadelta", "Adagrad", "Adam", "Adamax", "ASGD", "RMSprop", "SGD")


def coupled_decay(optim_cls: type, optim_params: dict[str, Any]) -> bool:
    """Whether the stack may apply ``optim_cls``'s weight decay itself (see :data:`COUPLED_DECAY`); not with the
    options that change where the decay enters (``maximize``, ``decoupled_weight_decay``, ``differentiable``)."""
    return optim_cls.__name__ in COUPLED_DECAY and not any(
        optim_params.get(k) for k in ("maximize", "decoupled_weight_decay", "differentiable"))


def block_streams(probes: np.ndarray, streams: np.ndarray, n_probes: int) -> list[int] | None:
    """The stream of each in-order block of probes ``0..n_probes-1`` when ``probes`` is such blocks and each block
    lies on one stream (see :func:`in_order_blocks`); else None (the slots' features are gathered slot by slot)."""
    k = in_order_blocks(probes, n_probes)
    if not k:
        return None
    per_block = streams.reshape(k, n_probes)
    return per_block[:, 0].tolist() if bool(np.all(per_block == per_block[:, :1])) else None


def row_sets(streams: tuple[int, ...], pos: dict[int, int] | None = None) -> tuple[int, ...]:
    """For :meth:`SlotGroup.inputs`: the row set each stream ``0..max(streams)`` reads (``pos``, default the stream's
    rank in ``streams``; streams not in ``streams`` read 0, and no slot of theirs is live)."""
    pos = pos if pos is not None else {k: i for i, k in enumerate(streams)}
    return tuple(pos.get(k, 0) for k in range(max(streams) + 1))


def score_slices(g: SlotGroup, params: Sequence[torch.Tensor], rows: int, width: int) -> list[tuple[int, int | None]]:
    """Slot ranges of one scoring pass of group ``g``: the whole group when its blocks read the features as they
    are, else ranges whose gathered ``[slots, rows, f]`` features stay under :data:`SCORE_BLOCK_ELEMS`."""
    if g.block_streams is not None:
        return [(0, None)]
    n = params[0].shape[0]
    step = slots_per_pass(params, rows, width)
    return [(s0, min(n, s0 + step)) for s0 in range(0, n, step)]


def slots_per_pass(params: Sequence[torch.Tensor], rows: int, width: int) -> int:
    """Slots whose gathered ``[slots, rows, f]`` scoring features (``f`` the widest of input ``width``, hidden and
    output) stay under :data:`SCORE_BLOCK_ELEMS`."""
    return max(1, SCORE_BLOCK_ELEMS // max(1, rows * max(width, *(w.shape[1] for w in params[::2]))))
