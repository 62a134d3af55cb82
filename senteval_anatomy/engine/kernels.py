"""The kernels of the stacked trainer: one ``nn.Linear``-exact matmul for many slots (:class:`StackedLinear`), SentEval's
probe forward for every slot (:func:`stacked_forward`) and the slots' cross-entropy (:func:`slot_cross_entropy`),
each verified to give the solo probe's numbers (see :mod:`senteval_anatomy.engine.batched`, "How close").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "StackedLinear",
    "take_rows",
    "ce_classes_mid",
    "ce_reference",
    "fast_ce_ok",
    "slot_cross_entropy",
    "stacked_forward",
    "template_parameters",
]


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
# ``fast_ce_ok`` checks it bit for bit on random logits once per (class count, padded batch size) and process, and
# the trainer falls back to the solo formulation wherever it does not hold (and on non-CPU devices).

_LSM_ROW_PAD = 64
_FAST_CE_OK: dict[tuple[int, int], bool] = {}


def ce_reference(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Sum over slots of each slot's mean cross-entropy, with the solo probe's kernel (``[S*m, C]`` rows)."""
    s, m, c = out.shape
    labels = yb.expand(s, m).reshape(s * m)  # ``yb`` is [m] (one label set) or [S, m] (a label set per slot)
    return F.cross_entropy(out.reshape(s * m, c), labels, reduction="none").view(s, m).mean(1).sum()


def ce_classes_mid(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """:func:`ce_reference` computed on ``[S, C, m_padded]`` logits (see the note above); same values and grads."""
    s, m, _ = out.shape
    padded = -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD
    logits = out.transpose(1, 2)
    logits = F.pad(logits, (0, padded - m)) if padded != m else logits.contiguous()
    lsm = torch.log_softmax(logits, dim=1)
    if padded != m:
        lsm = lsm[:, :, :m]
    # The picked log-probabilities by ``gather`` rather than ``nll_loss(reduction="none")``: the same values (a copy)
    # and the same gradient (-1/m scattered to the label), ~10% faster; negating the sum instead of each row is
    # exact (negation commutes with rounding).
    return -lsm.gather(1, yb.expand(s, m).unsqueeze(1)).squeeze(1).mean(1).sum()


def fast_ce_ok(nclasses: int, padded_rows: int) -> bool:
    """Whether :func:`ce_classes_mid` equals :func:`ce_reference` bit for bit (log-probabilities, loss and
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
            ref = ce_reference(x, y)
            (g_ref,) = torch.autograd.grad(ref, x)
            lsm_ref = torch.log_softmax(x.detach(), -1)
            x2 = x.detach().clone().requires_grad_()
            new = ce_classes_mid(x2, y)
            (g_new,) = torch.autograd.grad(new, x2)
            pad = -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD - m
            lsm_new = torch.log_softmax(F.pad(x.detach().transpose(1, 2), (0, pad)), dim=1)[:, :, :m].transpose(1, 2)
            ok = bool(torch.equal(lsm_ref, lsm_new) and torch.equal(g_ref, g_new) and torch.equal(ref, new))
    _FAST_CE_OK[key] = ok
    return ok


def slot_cross_entropy(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Sum over slots of each slot's mean cross-entropy of ``out`` ``[S, m, C]`` against ``yb`` ``[m]`` or ``[S, m]``: the fast
    layout where it is verified to equal the solo kernel (CPU), the solo formulation everywhere else."""
    _, m, c = out.shape
    if out.device.type == "cpu" and fast_ce_ok(c, -(-m // _LSM_ROW_PAD) * _LSM_ROW_PAD):
        return ce_classes_mid(out, yb)
    return ce_reference(out, yb)


def take_rows(X: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``X[:, rows]`` as a new contiguous tensor: the mini-batch rows of every probe of ``X`` ``[P, N, ...]``.

    On CPU through numpy's ``take`` (a copy of whole ``[...]`` rows; ~1.7x faster than torch's ``index_select``
    along a middle dimension, which copies element by element, and ~10x faster than ``X[:, rows]``); the same values
    either way. ``index_select`` elsewhere."""
    if X.device.type == "cpu" and not X.requires_grad:
        return torch.from_numpy(np.take(X.numpy(), rows.numpy(), axis=1))
    return X.index_select(1, rows)


class StackedLinear(torch.autograd.Function):
    """``y[s] = x[s] @ W[s].T + b[s]`` for every slot ``s``, with ``W`` stored as ``[S, out, in]`` like ``nn.Linear``.

    Why a custom Function: autograd's ``bmm`` backward computes the weight gradient as ``x.T @ g`` (then transposes),
    while a solo ``nn.Linear`` (``addmm`` with a transposed weight) computes ``g.T @ x``. The two sum the same products
    through different BLAS kernels, which makes the stacked probe drift from the solo one by float rounding. Computing
    ``g.T @ x`` per slot reproduces the solo kernels; on CPU the stacked weights then equal the solo ones bit for bit
    in the common shapes (see the module docstring for the exceptions).

    Blocks: ``x`` may be a tuple of ``[P, m, in]`` tensors (block ``v`` holds slots ``v * P .. (v + 1) * P - 1``, e.g.
    a task's probes, its control probes and its probes under other seeds, each block reading its own mini-batch),
    or one ``[P, m, in]`` tensor read by every block of ``W`` ``[reps * P, out, in]``. Each block is multiplied with
    its features as they are (views, no gathered ``[reps * P, m, in]`` copy): the per-slot matmuls are the same
    calls on the same values. Tuple inputs get no gradient (they are the probes' input features).
    """

    @staticmethod
    def forward(ctx: Any, x: Any, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        blocks = x if isinstance(x, tuple) else None
        if blocks is None and weight.shape[0] != x.shape[0]:
            blocks = (x,) * (weight.shape[0] // x.shape[0])
        if blocks is None:
            ctx.n_blocks = 0
            ctx.save_for_backward(weight, x)
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        n = blocks[0].shape[0]
        ctx.n_blocks = len(blocks)
        ctx.save_for_backward(weight, *blocks)
        return torch.cat([torch.baddbmm(bias[v * n : (v + 1) * n].unsqueeze(1), xb,
                                        weight[v * n : (v + 1) * n].transpose(1, 2)) for v, xb in enumerate(blocks)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, *xs = ctx.saved_tensors
        gx = gw = None
        if not ctx.n_blocks:
            if ctx.needs_input_grad[0]:
                gx = torch.bmm(grad, weight)
            if ctx.needs_input_grad[1]:
                gw = torch.bmm(grad.transpose(1, 2), xs[0])
        else:
            n = xs[0].shape[0]
            parts = [(grad[v * n : (v + 1) * n], weight[v * n : (v + 1) * n], xb) for v, xb in enumerate(xs)]
            if ctx.needs_input_grad[0]:  # one tensor read by every block
                gx = sum(torch.bmm(g, w) for g, w, _ in parts)
            if ctx.needs_input_grad[1]:
                gw = torch.cat([torch.bmm(g.transpose(1, 2), xb) for g, _, xb in parts])
        gb = grad.sum(1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def stacked_forward(params: Sequence[torch.Tensor], x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Forward of SentEval's probe for every slot: ``Linear`` or ``Linear -> Dropout -> Sigmoid -> Linear``.

    ``params`` is ``[W, b]`` or ``[W1, b1, W2, b2]`` with a leading slot dimension; ``x`` is ``[S, m, in]``,
    ``[P, m, in]`` read by ``S / P`` blocks of P slots, or a tuple of such blocks (see :class:`StackedLinear`);
    ``mask`` is the dropout multiplier (zeros and ``1/(1-p)``): ``[m, nhid]`` shared by all slots (every solo probe of
    one seed draws the very same mask sequence), or ``[S, m, nhid]`` when the slots' seeds differ.
    """
    h = StackedLinear.apply(x, params[0], params[1])
    if len(params) == 4:
        if mask is not None:
            h = h * mask
        h = torch.sigmoid(h)
        h = StackedLinear.apply(h, params[2], params[3])
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

