"""What one result unit computes, shared by every backend: its probes, how their vectors are read, how many fit in
memory at once, and the table rows they become.

A result unit is one (model, task, view) of a sweep (:mod:`senteval_anatomy.identity` gives its key and file). The
local backend (:mod:`senteval_anatomy.sweeping.backends.local`) computes a unit in one go; the Ray backend
(:mod:`senteval_anatomy.sweeping.backends.ray`) computes chunks of its probes on different workers. Both use these
pieces, so both give the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..encoders.encoder import Encoder
from ..identity import key_hash
from ..store import StoredFeatures
from ..vocab import RESULT_COLUMNS, main_scores, vector_name

__all__ = ["StoreBatcher", "probe_chunk_size", "probe_index", "probe_slices", "result_rows"]


def probe_index(encoder: Encoder, view: str) -> list[tuple[int, int]]:
    """(layer, head) of each probe in the order of the flattened feature axis."""
    if view == "heads":
        return [(lay, h) for lay in range(encoder.num_layers) for h in range(encoder.num_heads)]
    return [(lay - 1, -1) for lay in range(encoder.num_layers + 1)]  # -1 = embeddings, then blocks 0..L-1


class StoreBatcher:
    """A SentEval batcher returning ``[len(batch), n_probes, d]``: a chunk of probes' vectors from the store.

    ``Task.embed`` stacks such 3-D batches as they are, which is the layout ``evaluate_many`` takes. ``feats`` is a
    :class:`~senteval_anatomy.store.StoredFeatures`, or anything with its ``rows()`` and ``read()`` (the Ray
    backend joins a task's encoding shards that way).
    """

    def __init__(self, feats: StoredFeatures, view: str, probes: slice) -> None:
        self.feats = feats
        self.view = view
        self.probes = probes

    def __call__(self, params: Any, batch: Sequence[Sequence[str]]) -> np.ndarray:
        rows = self.feats.rows([" ".join(tokens) for tokens in batch])
        arr = self.feats.read(self.view, rows)  # every chunk checked on its first read (store.StoredFeatures.read)
        if self.view == "heads":
            arr = arr.reshape(arr.shape[0], -1, arr.shape[-1])[:, self.probes]
        else:
            arr = arr[:, self.probes]
        return np.ascontiguousarray(arr, dtype=np.float32)


def probe_chunk_size(n_sentences: int, n_probes: int, dim: int, pair: bool, budget_bytes: float) -> int:
    """How many probes' stacked features fit in ``budget_bytes`` (at least one, at most ``n_probes``)."""
    per_probe = n_sentences * dim * 4 * (2 if pair else 1) * 2  # float32, sorted copy + pair features
    return max(1, min(n_probes, int(budget_bytes // max(per_probe, 1))))


def probe_slices(encoder: Encoder, task: Any, view: str, n_probes: int, budget_gb: float) -> list[slice]:
    """The probe chunks of one task and view whose embeddings (``[n, chunk, d]`` float32, sorted copy and pair
    features) fit in ``budget_gb`` (:func:`probe_chunk_size`): the sweep, and every run that streams stored features
    like it (with the findings variants), embeds and trains one chunk at a time."""
    dim = encoder.head_dim if view == "heads" else encoder.hidden_size
    pair = task.spec.pair
    chunk = probe_chunk_size(len(task.samples), n_probes, dim, pair, budget_gb * 1024**3)
    return [slice(start, min(start + chunk, n_probes)) for start in range(0, n_probes, chunk)]




def result_rows(encoder: Encoder, key: dict, probes: Sequence[tuple[int, int]], results: Sequence[dict],
              params: Any) -> pd.DataFrame:
    """The tidy rows (:data:`~senteval_anatomy.vocab.RESULT_COLUMNS`) of ``probes`` of the unit ``key``, from their
    SentEval result dicts."""
    setting = key["setting"]
    classifier = json.dumps(dict(params.classifier or {}), sort_keys=True)
    common = {
        "model": setting["model"], "fingerprint": setting["fingerprint"], "task": key["task"], "view": key["view"],
        "pooling": setting["pooling"], "harness": setting["harness"], "usepytorch": bool(params.usepytorch),
        "classifier": classifier, "kfold": params.kfold, "seed": params.seed, "num_layers": encoder.num_layers,
        "num_heads": encoder.num_heads, "package_version": __version__, "dtype": setting["dtype"],
        "cache_dtype": setting["cache_dtype"], "max_length": setting["max_length"], "preset": setting["preset"],
        "data_path": setting["data_path"], "data_hash": key["data_hash"], "protocol": setting["protocol"],
        "setting": key_hash(setting, 16), "layout": getattr(encoder, "layout", ""),
    }
    rows = []
    for (layer, head), result in zip(probes, results):
        metric, dev, test, ndev, ntest, f1 = main_scores(result)
        rows.append({
            **common, "layer": layer, "head": head, "name": vector_name(key["view"], layer, head),
            "metric": metric, "devacc": dev, "acc": test, "ndev": ndev, "ntest": ntest, "f1": f1,
        })
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
