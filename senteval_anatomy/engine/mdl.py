"""Minimum description length of a task's labels given every probe's features: online (prequential) code.

Accuracy says how well a probe *can* do; MDL also says how much data and effort it takes (Voita & Titov 2020,
"Information-Theoretic Probing with Minimum Description Length"). The online code transmits the training labels in
blocks: the first block with a uniform code (``log2 K`` bits per label), every next block with the probe trained on
all labels sent so far. The total codelength in bits is lower when the representation makes the labels easy to
learn from few examples; ``compression = N log2 K / codelength`` (the uniform code over the online code).

Read compression against a useless representation, not against 1: with features that carry nothing about the
labels, each block's probe fits noise in the labels sent so far and then codes the next block *worse* than the
uniform code, so compression is **below 1**: 0.90 to 0.96 for 32- and 64-dimensional Gaussian noise with 1,000
to 2,000 balanced binary labels (``tests/test_mdl.py::test_mdl_of_random_features_is_below_one``), and 0.78 was
reported for random features in an earlier review; how far below depends on width, data size and probe. Only a compression clearly above that floor shows that the labels are easy to extract;
"1.0 = useless" would make a weakly informative head look useless and an overfitting one look informative.

Per block, the probes of all P heads (or layers) are trained at once by the batched trainer
(:class:`~senteval_anatomy.engine.stacked.BatchedMLP`, one slot per probe, no weight decay), so a sweep pays one
stacked training per block, not P.

Protocol (fixed, so codelengths are comparable across heads, layers, models and runs):

* data: the task's training split (``train``; ``all`` for the cross-validated CR/MR/MPQA/SUBJ), in an order
  shuffled once by ``np.random.RandomState(seed)``;
* block ends: :data:`DEFAULT_FRACTIONS` of the data (Voita & Titov's timesteps), with the first block at least
  ``min_first`` examples; duplicates dropped;
* each block's probe: SentEval's probe from ``params.classifier`` (same optimizer, batch size, tenacity), trained
  from the same seed on the labels sent so far, early-stopped on a 10% validation part of them, with at least
  :data:`MIN_STEPS_PER_CHECK` steps between checks (small blocks would otherwise stop untrained).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .params import apply_defaults, resolve_device, thread_limit
from .probes import classifier_config
from .protocol import pair_features
from .stacked import DEFAULT_CPU_THREADS, BatchedMLP

__all__ = ["DEFAULT_FRACTIONS", "MDL_VALIDATION_SPLIT", "block_ends", "mdl_many", "online_codelength",
           "online_codelength_many"]

#: Block ends as fractions of the training data (Voita & Titov 2020: 0.1% ... 100%).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
#: Fewest optimizer steps between two early-stopping checks of a block's probe. SentEval's probes check after
#: ``epoch_size`` epochs, which on the first blocks (tens of examples, one mini-batch per epoch) is a handful of
#: steps: the probe would stop before it learnt anything and every small block would cost ~log2 K bits per label
#: whatever the features. Each block's ``epoch_size`` is raised to reach this many steps per check.
MIN_STEPS_PER_CHECK = 50
#: Share of the labels sent so far that each block's probe holds out for early stopping.
MDL_VALIDATION_SPLIT = 0.1


def block_ends(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS, min_first: int = 20) -> list[int]:
    """Cumulative block ends (number of examples sent after each block) for ``n`` examples: ``fractions`` of
    ``n``, the first at least ``min_first`` (and at most ``n``), strictly increasing, the last equal to ``n``."""
    if n < 2:
        raise ValueError(f"MDL needs at least 2 training examples, got {n}.")
    fr = sorted(float(f) for f in fractions)
    if not fr or fr[0] <= 0 or fr[-1] != 1.0:
        raise ValueError(f"fractions must be positive, increasing and end at 1.0, got {list(fractions)}.")
    ends: list[int] = []
    for f in fr:
        e = min(n, max(int(min_first), int(round(f * n))))
        if not ends or e > ends[-1]:
            ends.append(e)
    return ends


def online_codelength(n_first: int, n_classes: int, block_log2_probs: Sequence[Sequence[float]]) -> float:
    """Online codelength in bits: ``n_first * log2(n_classes)`` for the uniformly coded first block, plus
    ``-sum(log2 p(y | x))`` over every later block (``block_log2_probs[i]``: the log2 probability each example of
    block ``i + 1`` gets from the probe trained on the blocks before it)."""
    bits = n_first * math.log2(n_classes)
    for block in block_log2_probs:
        bits -= float(np.sum(block))
    return bits


def online_codelength_many(X: torch.Tensor, y: torch.Tensor, order: np.ndarray, ends: Sequence[int], *,
                           n_classes: int, seed: int, classifier: dict[str, Any] | None,
                           device: torch.device) -> np.ndarray:
    """Online codelength (bits) of labels ``y`` [N] given each probe's features ``X`` [P, N, d], sending the rows
    in ``order`` with blocks ending at ``ends``: float64 [P]."""
    n_probes = X.shape[0]
    bits = np.full(n_probes, ends[0] * math.log2(n_classes))
    y_np = y.cpu().numpy()
    for start, stop in zip(ends[:-1], ends[1:], strict=True):
        sent = order[:start]
        bm = BatchedMLP(X.shape[2], n_classes, np.arange(n_probes), np.zeros(n_probes), n_probes=n_probes,
                        seed=seed, config=_block_config(classifier, start), device=device)
        bm.fit(X, y, sent, validation_split=MDL_VALIDATION_SPLIT)
        block = order[start:stop]
        lp = bm.predict_log_proba(X, block)  # [P, m, K], natural log
        bits -= lp[:, np.arange(len(block)), y_np[block]].sum(1) / math.log(2)
    return bits


def _block_config(classifier: dict[str, Any] | None, n_sent: int) -> dict[str, Any]:
    """The probe config for a block after ``n_sent`` labels: ``classifier`` with ``epoch_size`` raised so that each
    early-stopping check follows at least :data:`MIN_STEPS_PER_CHECK` optimizer steps."""
    cfg = classifier_config(classifier if classifier is not None else {"nhid": 0})
    n_train = n_sent - int(MDL_VALIDATION_SPLIT * n_sent)
    steps_per_epoch = max(1, math.ceil(n_train / int(cfg["batch_size"])))
    cfg["epoch_size"] = max(int(cfg["epoch_size"]), math.ceil(MIN_STEPS_PER_CHECK / steps_per_epoch))
    return cfg


def _train_source(task: Any, embeddings: Any) -> tuple[np.ndarray, np.ndarray]:
    split = "train" if "train" in embeddings else "all"
    rec = embeddings[split]
    if "X" in rec:
        X = np.asarray(rec["X"])
    else:
        A, B = np.asarray(rec["A"]), np.asarray(rec["B"])
        X = pair_features(A, B)
    if X.ndim != 3:
        raise ValueError(f"{task.name}: MDL needs [n, P, d] features (P probes), got shape {X.shape}.")
    return X, np.asarray(rec["y"], dtype=np.int64)


def mdl_many(task: Any, embeddings: Any, params: Any, *, fractions: Sequence[float] = DEFAULT_FRACTIONS,
             min_first: int = 20, max_probes: int | None = None, device: Any = None,
             num_threads: int | None = DEFAULT_CPU_THREADS, progress: bool | None = None) -> list[dict[str, Any]]:
    """Online-code MDL of a classification task for P probes at once.

    Parameters
    ----------
    task : Task
        A classification or pair-classification task (also a control task).
    embeddings : dict
        :meth:`Task.embed <senteval_anatomy.engine.tasks.Task.embed>` layout with ``[n, P, d]`` arrays (as for
        :func:`~senteval_anatomy.engine.batched.evaluate_many`).
    params : mapping
        SentEval params: ``seed`` (data order and probe init), ``classifier`` (the probe), ``device``.

    Returns
    -------
    list of dict, one per probe: ``mdl`` (codelength, bits), ``uniform`` (``N log2 K`` bits), ``compression``
    (``uniform / mdl``), ``n`` (examples coded), ``blocks`` (number of blocks).
    """
    from tqdm.auto import tqdm

    if task.spec.kind not in ("classification", "pair_classification"):
        raise ValueError(f"{task.name} is a {task.spec.kind} task; online-code MDL is defined here for "
                         "classification tasks only.")
    raw = params if params is not None else {}
    seed = raw["seed"] if "seed" in raw and raw["seed"] is not None else task.seed
    p = apply_defaults(raw)
    dev = resolve_device(p.device if device is None else device)
    X, y = _train_source(task, embeddings)
    n, n_probes, width = X.shape
    k = int(task.n_classes)
    ends = block_ends(n, fractions, min_first)
    order = np.random.RandomState(seed).permutation(n)
    step = int(max_probes) if max_probes else max(1, (1 << 30) // max(1, 4 * n * width))
    y_t = torch.as_tensor(y, device=dev)
    bits = np.empty(n_probes)
    with thread_limit(num_threads if dev.type == "cpu" else None):
        for p0 in tqdm(range(0, n_probes, step), desc=f"{task.name}: MDL", disable=None if progress is None else not progress,
                       leave=False):
            p1 = min(n_probes, p0 + step)
            Xc = torch.from_numpy(np.ascontiguousarray(X[:, p0:p1].transpose(1, 0, 2), dtype=np.float32)).to(dev)
            bits[p0:p1] = online_codelength_many(Xc, y_t, order, ends, n_classes=k, seed=seed,
                                                 classifier=p.classifier, device=dev)
    uniform = n * math.log2(k)
    return [{"mdl": float(b), "uniform": uniform, "compression": uniform / float(b), "n": n, "blocks": len(ends)}
            for b in bits]
