"""The stacked trainers: S SentEval probes ("slots") trained in lock-step as one model, each exactly like its solo
probe (:class:`BatchedMLP` for classification, :class:`BatchedRelatedness` for SICK-R / STS-B), on the parameter
stack :class:`SlotStack` with per-slot early stopping and best snapshots. Why this equals the solo probes, and how
close it is: :mod:`senteval_anatomy.engine.batched`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .kernels import slot_cross_entropy, stacked_forward, take_rows, template_parameters
from .params import resolve_device, thread_limit
from .probes import (
    RELATEDNESS_BATCH_SIZE,
    RELATEDNESS_EPOCHS_PER_ROUND,
    RELATEDNESS_L2,
    RELATEDNESS_MAX_EPOCH,
    RELATEDNESS_NCLASSES,
    RELATEDNESS_PATIENCE,
    EarlyStopping,
    ProbeSettings,
    build_mlp,
    parse_optimizer,
    seed_torch,
)
from .protocol import pearson_or_zero
from .slots import (
    SlotGroup,
    SlotStack,
    coupled_decay,
    in_order_blocks,
    row_sets,
    score_slices,
    slots_per_pass,
)

__all__ = ["DEFAULT_CPU_THREADS", "GLOBAL_RNG_LOCK", "BatchedMLP", "BatchedRelatedness", "check_num_threads",
           "torch_threads"]


#: Torch threads used by the stacked trainer on CPU unless the caller asks otherwise (``num_threads``). Every op of a
#: training step works on a few hundred KB, so threads gain little, and on a shared machine (more runnable threads
#: than cores) each op waits for a descheduled thread. On a 2-core machine, 2 threads were 1.3x faster than 1 when it
#: was idle and 5-12x slower while other jobs ran; one thread is the safe default. One thread also makes every
#: matmul of a slot the solo probe's single-threaded matmul, which is how the agreement tests run.
DEFAULT_CPU_THREADS = 1


#: Held while a trainer uses torch's global generator: seeding it and building its template module (the slots'
#: initial weights), and drawing dropout masks from a stream's saved state. Probe chunks train in parallel threads
#: (:func:`~senteval_anatomy.engine.chunks.run_chunks`); without the lock one trainer's draws would interleave with
#: another's seeding and every mask or init after it would change.
GLOBAL_RNG_LOCK = threading.RLock()


def check_num_threads(n: Any) -> None:
    """``num_threads``: a positive int or None (the one rule, for the trainers and the chunk planner)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {n!r}.")


@contextlib.contextmanager
def torch_threads(n: int | None, device: torch.device):
    """Run the block with ``n`` torch (and BLAS / OpenMP) threads on CPU, restored afterwards (the engine's
    :func:`~senteval_anatomy.engine.params.thread_limit`); ``None`` or a CUDA device: unchanged."""
    check_num_threads(n)
    if n is None or device.type != "cpu":
        yield
        return
    with thread_limit(int(n)):
        yield


def _slot_blocks(params: Sequence[torch.Tensor], full: int, width: int, chunk: int) -> list[tuple[int, int, int]]:
    """``(b0, s0, s1)``: the slot blocks of one scoring pass, bounded by :data:`SCORE_BLOCK_ELEMS`, inside the
    in-order probe blocks starting at ``b0`` when ``full`` (see :func:`in_order_blocks`)."""
    n_slots = params[0].shape[0]
    sblock = slots_per_pass(params, chunk, width)
    per = n_slots // full if full else n_slots
    return [(b0, s0, min(b0 + per, s0 + sblock)) for b0 in range(0, n_slots, per) for s0 in range(b0, b0 + per, sblock)]


def _forward_rows(params: Sequence[torch.Tensor], probe_pos: torch.Tensor, full: int, xr: torch.Tensor,
                  blocks: list[tuple[int, int, int]]):
    """Yield ``(s0, s1, outputs)`` of the slot blocks ``blocks`` on the gathered rows ``xr`` ``[P, rows, f]``."""
    for b0, s0, s1 in blocks:
        xs = xr[s0 - b0 : s1 - b0] if full else xr.index_select(0, probe_pos[s0:s1])
        yield s0, s1, stacked_forward([p[s0:s1] for p in params], xs)


def _iter_blocks(
    params: Sequence[torch.Tensor],
    probe_pos: torch.Tensor,
    full: int,
    X: torch.Tensor,
    rows: torch.Tensor,
    chunk: int,
):
    """Yield ``(s0, s1, i0, i1, outputs)`` over row chunks of ``chunk`` (the solo probe's scoring chunk, so that the
    matmul shapes are the solo ones) and slot blocks bounded by :data:`SCORE_BLOCK_ELEMS`. Eval mode, no grad.
    ``full``: 0 (gather each slot's probe by ``probe_pos``) or the number of in-order blocks of probes (see
    :func:`in_order_blocks`)."""
    blocks = _slot_blocks(params, full, X.shape[2], chunk)
    with torch.no_grad():
        for i0 in range(0, len(rows), chunk):
            r = rows[i0 : i0 + chunk]
            xr = take_rows(X, r)
            for s0, s1, out in _forward_rows(params, probe_pos, full, xr, blocks):
                yield s0, s1, i0, i0 + len(r), out


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
        self.inputdim = int(inputdim)
        self.nclasses = int(nclasses)
        self.seed = seed
        (self.nhid, optim, self.batch_size, self.tenacity, self.epoch_size, self.max_epoch,
         self.dropout) = ProbeSettings.read(config).fields()
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

        optim_cls, optim_params = parse_optimizer(optim)  # fail before touching any RNG, as the solo probe
        # Per stream, the construction order of TorchProbe: seed, build the module on the CPU (its init is the init
        # of every slot of that stream), then the numpy stream that draws validation splits and mini-batches. With
        # several streams, each keeps its torch generator state after the build for its own dropout masks.
        inits: list[list[torch.Tensor]] = []
        self.rngs_: list[np.random.RandomState] = []
        self._torch_states: list[torch.Tensor] = []
        with GLOBAL_RNG_LOCK:
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

        self._stack = SlotStack(init, slot_probe, np.asarray(slot_reg, dtype=np.float64), int(n_probes),
                                make_optimizer, self.device, slot_stream=slot_stream, slot_labels=slot_labels,
                                stack_decay=coupled_decay(optim_cls, optim_params))
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
        all streams or a list with one array per stream. Sets ``best_score_`` (per slot, in [0, 1]),
        ``n_epochs_`` (per slot) and ``n_groups_`` (the param groups trained: one per cohort and weight decay)."""
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
        # Streams with the same numbers of training and validation rows draw mini-batches of the same sizes at the
        # same steps: one cohort, trained as one group per weight decay.
        schedules: dict[tuple[int, int], int] = {}
        self._stack.regroup(np.array([schedules.setdefault((len(t), len(v)), len(schedules))
                                      for t, v in zip(trains, vals, strict=True)], dtype=np.int64))
        self.n_groups_ = len(self._stack.groups)  # optimizer groups: one per (cohort, weight decay)
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
            stack.step(stoppers, [(s, acc[s]) for s in active])
        stack.restore_best()
        self.best_score_ = np.array([s.best for s in stoppers], dtype=np.float64)
        return self

    def _mask(self, k: int, m: int) -> torch.Tensor | None:
        """The dropout mask ``[m, nhid]`` of stream ``k`` for one step (None without a hidden layer). The solo
        probe's nn.Dropout draws one mask per step from the global generator, which continues from its state after
        the module's build; every slot of a stream draws the same one, so one draw serves them all. Each stream
        draws from its own saved generator state (the global one is left as it was), under
        :data:`GLOBAL_RNG_LOCK`, so that trainers in other threads never see or move it."""
        if not self.nhid:
            return None
        ones = torch.ones(m, self.nhid, device=self.device)
        with GLOBAL_RNG_LOCK:
            outer = self._get_rng_state()
            try:
                self._set_rng_state(self._torch_states[k])
                mask = F.dropout(ones, self.dropout, True)
                self._torch_states[k] = self._get_rng_state()
            finally:
                self._set_rng_state(outer)
        return mask

    def _cohorts(self) -> list[tuple[list[SlotGroup], tuple[int, ...]]]:
        """The live groups by cohort, with the cohort's live streams (ascending)."""
        by: dict[int, list[SlotGroup]] = {}
        for g in self._stack.groups:
            by.setdefault(g.cohort, []).append(g)
        return [(gs, tuple(sorted({k for g in gs for k in g.streams}))) for gs in by.values()]

    def _train_step(self, X: torch.Tensor, Y: torch.Tensor, idx: dict[int, torch.Tensor]) -> None:
        """One optimizer step; ``idx[k]`` are stream ``k``'s mini-batch rows (the streams of a cohort have the same
        schedule; cohorts without a batch this step, having fewer rows, keep their parameters: their gradients stay
        None, which every optimizer skips). The mini-batches of a cohort's streams are gathered side by side in one
        ``index_select``, and each group (weight decay) runs one forward and one loss for all its streams."""
        stack = self._stack
        total: torch.Tensor | None = None
        P, f = X.shape[0], X.shape[2]
        for groups, ks in self._cohorts():
            if ks[0] not in idx:
                continue
            m = len(idx[ks[0]])
            rows = idx[ks[0]] if len(ks) == 1 else torch.cat([idx[k] for k in ks])
            XS = take_rows(X, rows).view(P, len(ks), m, f)
            YS = take_rows(Y, rows).view(Y.shape[0], len(ks), m)
            masks = torch.stack([self._mask(k, m) for k in ks]) if self.nhid else None
            where = row_sets(ks)
            for g in groups:
                out, yb = g.batch(g.params, where, XS, YS, masks)
                # Mean CE per slot, summed over slots: each slot's gradient is exactly its solo gradient.
                loss = slot_cross_entropy(out, yb)
                total = loss if total is None else total + loss
        stack.descend(total)

    def _live_accuracy(self, X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
        """Validation accuracy of every active slot with its current weights (NaN for inactive slots). Each chunk
        of a cohort's validation rows is gathered once for all its groups (weight decays), and once for all the
        streams that validate on the same rows."""
        acc = np.full(self.n_slots, np.nan)
        P, f = X.shape[0], X.shape[2]
        for groups, ks in self._cohorts():
            sets: list[torch.Tensor] = []
            pos: dict[int, int] = {}
            for k in ks:  # streams validating on the same rows read one gather
                same = [i for i, r in enumerate(sets) if r is self._val[k] or torch.equal(r, self._val[k])]
                pos[k] = same[0] if same else len(sets)
                if not same:
                    sets.append(self._val[k])
            where = row_sets(ks, pos)
            n_val = len(sets[0])
            views = [([p.detach() for p in g.params], g) for g in groups]
            correct = [torch.zeros(len(g.slots), dtype=torch.int64, device=self.device) for g in groups]
            with torch.no_grad():
                for i0 in range(0, n_val, self.batch_size):
                    chunk = [r[i0 : i0 + self.batch_size] for r in sets]
                    m = len(chunk[0])
                    rows = chunk[0] if len(chunk) == 1 else torch.cat(chunk)
                    XS = take_rows(X, rows).view(P, len(chunk), m, f)
                    YS = take_rows(Y, rows).view(Y.shape[0], len(chunk), m)
                    for (params, g), c in zip(views, correct, strict=True):
                        for s0, s1 in score_slices(g, params, m, f):
                            out, yr = g.batch([p[s0:s1] for p in params], where, XS, YS, s0=s0, s1=s1)
                            c[s0:s1] += out.max(2)[1].eq(yr).sum(1)
            for g, c in zip(groups, correct, strict=True):
                for s, n in zip(g.slots, c.tolist(), strict=True):
                    acc[s] = 1.0 * n / n_val
        return acc

    def _count_correct(self, params, probe_pos, label_pos, full, X, Y, rows) -> torch.Tensor:
        correct = torch.zeros(params[0].shape[0], dtype=torch.int64, device=self.device)
        for s0, s1, i0, i1, out in _iter_blocks(params, probe_pos, full, X, rows, self.batch_size):
            yr = take_rows(Y, rows[i0:i1])
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
        full = in_order_blocks(probes, self._stack.n_probes)
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
        with GLOBAL_RNG_LOCK:
            seed_torch(seed)
            template = nn.Linear(self.inputdim, self.nclasses)
        self.rng_ = np.random.RandomState(seed)

        def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
            return torch.optim.Adam(groups)

        init = [t.unsqueeze(0).repeat(len(slot_probe), *([1] * t.dim())) for t in template_parameters(template)]
        self._stack = SlotStack(init, slot_probe,
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
            scored = []
            for g in stack.groups:
                proba = self._proba([p.detach() for p in g.params], g.probe_pos, g.full, X, dev_rows)
                scored += [(s, pearson_or_zero(np.dot(proba[k], r), devscores)) for k, s in enumerate(g.slots)]
            stack.step(stoppers, scored)
        stack.restore_best()
        self.best_score_ = np.array([s.best for s in stoppers], dtype=np.float64)
        return self

    def _train_step(self, X: torch.Tensor, Y: torch.Tensor, idx: torch.Tensor) -> None:
        stack = self._stack
        xb_all = take_rows(X, idx)
        yb = Y[idx]
        total: torch.Tensor | None = None
        for g in stack.groups:
            xb = xb_all if g.full else xb_all.index_select(0, g.probe_pos)
            out = torch.softmax(stacked_forward(g.params, xb), dim=-1)
            # Mean MSE per slot (over its batch x 5 entries), summed over slots: solo gradients per slot.
            loss = F.mse_loss(out, yb.expand_as(out), reduction="none").mean((1, 2)).sum()
            total = loss if total is None else total + loss
        stack.descend(total)

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

