"""A loaded task (:class:`Task`) and :func:`load_task`: the embedding and evaluation steps of the built-in engine.

What a task is (files, splits, evaluator, sizes, labels) is its :class:`~senteval_anatomy.engine.spec.TaskSpec`,
declared in its family file (:mod:`senteval_anatomy.engine.families`) and looked up in
:mod:`senteval_anatomy.engine.registry`; the family's loader reads the files.

A task run is split in three steps that ``SE.eval`` chains (and that a sweep can call separately):

1. :func:`load_task` parses and validates every file of the task (errors: :class:`DataError`, naming file:line);
2. :meth:`Task.embed` calls ``batcher(params, batch)`` exactly as SentEval does (same sort key, same
   ``batch_size`` chunks, split order train -> dev -> test, all A batches of a split then all B batches for pair
   tasks, A/B alternation for STS12-16) and returns the stacked embeddings;
3. :meth:`Task.evaluate` runs SentEval's evaluator for the task on those embeddings and returns SentEval's result
   dict.

Layout of the ``embeddings`` dict (``n`` rows per split, in SentEval's sorted order; ``d`` = embedding size):

=====================  ===============================================================================================
task kind / evaluator  layout
=====================  ===============================================================================================
classification, split  ``{"train"|"dev"|"test": {"X": [n, d], "y": int64 [n]}}`` (SST2, SST5, probing)
classification, kfold  ``{"train"|"test": {"X", "y"}}`` (TREC; no dev split: dev = cross-validation)
classification,        ``{"all": {"X", "y"}}`` (CR, MR, MPQA, SUBJ: one pool, nested cross-validation)
innerkfold
pair_classification    ``{split: {"A": [n, d], "B": [n, d], "y": int64 [n]}}`` (MRPC: train/test; SICKEntailment:
                       train/dev/test). Pair features are built by :func:`pair_features` inside ``evaluate``.
relatedness            ``{"train"|"dev"|"test": {"A", "B", "y": float64 [n] raw scores}}`` (SICKRelatedness,
                       STSBenchmark)
sts                    ``{sub_dataset: {"A", "B", "gold": float64 [n]}}`` in SentEval's sub-dataset order
=====================  ===============================================================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import evaluators as ev
from .params import thread_limit
from .protocol import check_similarity, evaluation_params, evaluator_call, pair_features, result_dict
from .readers import check_folder
from .registry import get_task
from .spec import DOWNLOAD_COMMAND, TaskSpec

logger = logging.getLogger(__name__)

# DataError (home: spec), get_task (home: registry) and pair_features (home: protocol) are imported from their homes
# everywhere; this module exports only what it defines.
__all__ = ["Task", "load_task"]


def load_task(name: str, task_path: str | os.PathLike, seed: int = 1111) -> Task:
    """Load and validate a task's data from ``task_path`` (SentEval's layout).

    Raises
    ------
    ValueError
        Unknown or unsupported task name, or no ``task_path``.
    DataError
        A missing folder/file (naming the expected files and the download command) or a malformed line
        (naming file:line and what was expected).
    """
    spec = get_task(name)
    if task_path is None:
        raise ValueError("params.task_path is not set: point it at the folder that holds SentEval's downstream/ "
                         f"and probing/ folders (get them with `{DOWNLOAD_COMMAND.format(name=name)}`).")
    root = Path(task_path)
    check_folder(root, spec)
    data, samples, label_names = spec.loader(root, spec)
    return Task(spec, data, samples, seed=seed, task_path=str(root), label_names=label_names)


# --------------------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------------------


def _to_numpy(out) -> np.ndarray:
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # torch tensor, possibly on GPU
        out = out.detach().cpu().numpy()
    return np.asarray(out)


class Task:
    """A loaded task: its data, parsed and validated, ready to embed and evaluate.

    Attributes
    ----------
    spec : TaskSpec
    samples : list of list of str
        Exactly what SentEval passes to ``prepare(params, samples)``, in the same order.
    data : dict
        Parsed data per split, in file order (STS: already sorted, as SentEval sorts at load time).
    seed : int
        Seed given at load time (used by :meth:`evaluate` when ``params`` has no ``seed``).
    n_classes : int or None
    label_names : list of str or None
        Name of each class id.
    """

    def __init__(self, spec: TaskSpec, data: dict, samples: list[list[str]], *, seed: int = 1111,
                 task_path: str | None = None, label_names: list[str] | None = None):
        self.spec = spec
        self.data = data
        self.samples = samples
        self.seed = seed
        self.task_path = task_path
        self.label_names = label_names
        self.n_classes = spec.n_classes if spec.n_classes is not None else (
            len(label_names) if spec.kind == "classification" and label_names else None)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(next(iter(v.values())))}" for k, v in self.data.items())
        return f"Task({self.name!r}, {sizes})"

    # -- SentEval's call sequence -----------------------------------------------------------------------------
    def prepare(self, params, prepare: Callable | None) -> Any:
        """Call ``prepare(params, self.samples)`` once (SentEval's ``do_prepare``)."""
        if prepare is None:
            return None
        return prepare(params, self.samples)

    def sorted_data(self) -> dict[str, dict[str, list]]:
        """Per split, the data in the order SentEval embeds it.

        Single sentences are sorted by ``(len(tokens), label)``; pairs by ``(len(A), len(B), label)``; STS data is
        already sorted at load. ``sorted`` is stable, so ties keep file order.
        """
        out = {}
        for split, rec in self.data.items():
            if self.spec.kind == "sts":
                out[split] = rec
            elif "X" in rec:
                ordered = sorted(zip(rec["X"], rec["y"]), key=lambda z: (len(z[0]), z[1]))
                out[split] = {"X": [z[0] for z in ordered], "y": [z[1] for z in ordered]}
            else:
                ordered = sorted(zip(rec["A"], rec["B"], rec["y"]), key=lambda z: (len(z[0]), len(z[1]), z[2]))
                out[split] = {"A": [z[0] for z in ordered], "B": [z[1] for z in ordered],
                              "y": [z[2] for z in ordered]}
        return out

    def batch_plan(self, batch_size: int, sorted_data: dict | None = None) -> list[tuple[str, str, list[list[str]]]]:
        """The ``(split, side, batch)`` of every ``batcher`` call, in SentEval's call order (``side`` is ``'X'`` for
        single sentences, ``'A'``/``'B'`` for pairs)."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"params.batch_size must be a positive integer, got {batch_size}.")
        sd = self.sorted_data() if sorted_data is None else sorted_data
        plan = []
        for split, rec in sd.items():
            if self.spec.kind == "sts":
                n = len(rec["gold"])
                for i in range(0, n, batch_size):
                    b1, b2 = rec["A"][i : i + batch_size], rec["B"][i : i + batch_size]
                    if len(b1) == len(b2) and len(b1) > 0:
                        plan.append((split, "A", b1))
                        plan.append((split, "B", b2))
            else:
                sides = ("X",) if "X" in rec else ("A", "B")
                n = len(rec["y"])
                for side in sides:
                    for i in range(0, n, batch_size):
                        plan.append((split, side, rec[side][i : i + batch_size]))
        return plan

    def embed(self, params, batcher: Callable) -> dict[str, dict[str, np.ndarray]]:
        """Call ``batcher(params, batch)`` as SentEval does and return the embeddings (layout in the module doc).

        ``batcher`` must return an array-like (numpy array, or torch tensor on any device) with one row per
        sentence of ``batch``, in order; the trailing shape must be the same for every call. Arrays with more than
        two dimensions ([n, L, H, d], say) are stacked as they are, for callers that slice them before
        :meth:`evaluate`.
        """
        p = params if params is not None else {}
        batch_size = p.get("batch_size", 128) if isinstance(p, Mapping) else 128
        sd = self.sorted_data()
        chunks: dict[tuple[str, str], list[np.ndarray]] = {}
        trailing = None
        for split, side, batch in self.batch_plan(batch_size, sd):
            out = _to_numpy(batcher(params, batch))
            if out.ndim == 1 and len(batch) == 1:
                out = out.reshape(1, -1)
            if out.ndim < 2 or out.shape[0] != len(batch):
                raise ValueError(
                    f"{self.name}: batcher returned an array of shape {out.shape} for a batch of {len(batch)} "
                    f"sentences; expected shape ({len(batch)}, d), one row per sentence in batch order."
                )
            if trailing is None:
                trailing = out.shape[1:]
            elif out.shape[1:] != trailing:
                raise ValueError(
                    f"{self.name}: batcher returned rows of shape {out.shape[1:]} after {trailing} earlier; the "
                    "embedding size must be the same for every batch of a task."
                )
            chunks.setdefault((split, side), []).append(out)
        result: dict[str, dict[str, np.ndarray]] = {}
        for split, rec in sd.items():
            result[split] = {}
            for side in (("A", "B") if self.spec.kind == "sts" or "A" in rec else ("X",)):
                result[split][side] = np.concatenate(chunks[(split, side)], axis=0)
            if self.spec.kind == "sts":
                result[split]["gold"] = np.asarray(rec["gold"], dtype=np.float64)
            elif self.spec.kind == "relatedness":
                result[split]["y"] = np.asarray(rec["y"], dtype=np.float64)
            else:
                result[split]["y"] = np.asarray(rec["y"], dtype=np.int64)
        return result

    def evaluate(self, embeddings: Mapping[str, Mapping[str, np.ndarray]], params) -> dict[str, Any]:
        """Run the task's evaluator on ``embeddings`` (layout in the module doc) and return SentEval's result dict.

        ``params`` gives ``usepytorch``, ``classifier``, ``kfold``, ``device``, ``probe_threads`` and ``similarity``
        (defaults as in ``SE``), and ``seed`` (default: the seed given to :func:`load_task`). The protocol around
        the probes (grids, rounding, folds, WordContent, MRPC's F1, result keys) is
        :mod:`senteval_anatomy.engine.protocol`, shared with the batched trainer.
        """
        p, seed = evaluation_params(params, self.seed)
        with thread_limit(p.probe_threads):
            return self._evaluate(embeddings, p, seed)

    def _evaluate(self, embeddings, p, seed) -> dict[str, Any]:
        spec = self.spec
        if spec.evaluator == "sts":
            similarity = check_similarity(p.similarity)
            datasets = {d: (embeddings[d]["A"], embeddings[d]["B"], embeddings[d]["gold"]) for d in spec.splits}
            return result_dict(spec, ev.sts_eval(datasets, similarity), embeddings)

        def features(rec):
            return rec["X"] if "X" in rec else pair_features(rec["A"], rec["B"])

        call = evaluator_call(spec, embeddings, p, seed, self.n_classes, features)
        evaluate = {"split": ev.split_eval, "kfold": ev.kfold_eval, "innerkfold": ev.innerkfold_eval,
                    "relatedness": ev.relatedness_eval}[call.evaluator]
        return result_dict(spec, evaluate(*call.args, **call.kwargs), embeddings)
