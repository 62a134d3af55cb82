"""One entry's features as read-only arrays (:class:`StoredFeatures`), every row chunk checked on its first read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checksums import chunk_crc, first_non_finite
from .errors import CacheCorruptionError, CacheCorruptionWarning

__all__ = ["StoredFeatures"]


@dataclass
class StoredFeatures:
    """Pooled features of one sentence set, as read-only arrays (memory-mapped unless the store is in memory).

    Rows follow :attr:`sentences` (deduplicated and sorted); use :meth:`rows` to find the rows of any sentence list.
    ``heads`` / ``layers`` are ``None`` when that view was neither requested nor available in the serving entry.
    """

    key: str
    path: Path | None
    manifest: dict
    sentences: list[str]
    heads: np.ndarray | None
    layers: np.ndarray | None
    _index: dict[str, int] | None = field(default=None, repr=False)
    #: per view, which row chunks were verified already (each chunk is checked once, on its first read)
    _verified: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: computes the entry afresh (set by FeatureStore.get); None: a damaged chunk raises CacheCorruptionError
    _rebuild: Callable[[], StoredFeatures] | None = field(default=None, repr=False)

    def read(self, view: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """``heads[rows]`` / ``layers[rows]`` (as stored), every chunk holding one of ``rows`` checked on its first read.

        Why here: the trainer reads every row it uses anyway, so checking the chunks as they are read costs one CRC-32
        and one finiteness test per chunk and process, and no extra pass over the cache. A chunk whose bytes do not
        match the CRC-32 recorded at write time, or that holds a NaN/inf (the store never writes one), is damage: the
        entry is named in a :class:`CacheCorruptionWarning`, removed and computed again (the same features), or, with
        rebuilding off, a one-line :class:`CacheCorruptionError`.
        """
        arr = getattr(self, view)
        if arr is None:
            raise ValueError(f"feature store entry {self.key} holds no {view} features "
                             f"(views={self.manifest.get('views')})")
        idx = np.asarray(rows, dtype=np.int64)
        if self.path is not None:
            problem = self._check_chunks(view, arr, idx)
            if problem is not None:
                self._damaged(problem)
                arr = getattr(self, view)
        return np.asarray(arr[idx])

    def _check_chunks(self, view: str, arr: np.ndarray, idx: np.ndarray) -> str | None:
        fname = f"{view}.npy"
        meta = (self.manifest.get("files") or {}).get(fname) or {}
        chunks = meta.get("chunks")
        if not isinstance(chunks, dict) or not isinstance(chunks.get("crc32"), list):
            return f"{fname}: no per-chunk checksums in the manifest"
        rpc, crcs = int(chunks["rows"]), chunks["crc32"]
        done = self._verified.get(view)
        if done is None:
            done = self._verified[view] = np.zeros(len(crcs), dtype=bool)
        todo = np.unique(idx // rpc) if len(idx) else idx
        for c in todo[~done[todo]] if len(todo) else ():
            start, stop = int(c) * rpc, min((int(c) + 1) * rpc, arr.shape[0])
            if chunk_crc(arr, start, stop) != crcs[int(c)]:
                return f"{fname}: rows {start}..{stop - 1} do not match their checksum (changed on disk)"
            chunk = arr[start:stop]
            if not np.isfinite(chunk).all():
                bad = first_non_finite(chunk) or 0
                return f"{fname}: non-finite value in row {start + bad} (the store never writes one)"
            done[int(c)] = True
        return None

    def _damaged(self, problem: str) -> None:
        if self._rebuild is None:
            raise CacheCorruptionError(
                f"feature cache entry {self.path} is damaged: {problem}; remove it with `senteval-anatomy cache verify "
                "--repair` (or allow rebuilding: drop --no-rebuild) and run again")
        warnings.warn(f"feature cache entry {self.path} is unusable ({problem}); discarding and recomputing it",
                      CacheCorruptionWarning, stacklevel=4)
        fresh = self._rebuild()
        self.manifest, self.heads, self.layers = fresh.manifest, fresh.heads, fresh.layers
        self._verified = {}

    @property
    def n_truncated(self) -> int:
        """Number of sentences that the encoder had to truncate at ``max_length``."""
        return int(self.manifest.get("n_truncated", 0))

    def __len__(self) -> int:
        return len(self.sentences)

    def rows(self, sentences: Sequence[str]) -> np.ndarray:
        """Row ids (int64) of ``sentences`` in :attr:`heads` / :attr:`layers`, in the given order, repeats allowed.

        Raises ``KeyError`` naming the first missing sentences: asking for sentences that were not encoded is a
        programming error (the adapter's ``prepare`` saw a different sentence set than its batcher).
        """
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.sentences)}
        index = self._index
        out = np.empty(len(sentences), dtype=np.int64)
        missing: list[str] = []
        for i, s in enumerate(sentences):
            r = index.get(s)
            if r is None:
                missing.append(s)
                out[i] = -1
            else:
                out[i] = r
        if missing:
            shown = ", ".join(repr(m if len(m) <= 80 else m[:77] + "...") for m in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise KeyError(
                f"{len(missing)} sentence(s) not in feature store entry {self.key}: {shown}{more}. "
                "Encode them first: pass every sentence of the task to FeatureStore.get()."
            )
        return out

    def head_matrix(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Heads as ``[n, L*H, d]`` float32 (column ``l*H + h`` is head ``h`` of block ``l``) for the batched trainer.

        A view on the memory map when the entry is float32 and ``rows`` is None; otherwise a float32 copy of just the
        requested rows.
        """
        if self.heads is None:
            raise ValueError(
                f"feature store entry {self.key} holds no head features (views={self.manifest.get('views')}); "
                "request views=('heads', ...) from FeatureStore.get()."
            )
        n, n_layers, n_heads, d = self.heads.shape
        if rows is None:
            flat = self.heads.reshape(n, n_layers * n_heads, d)
            return flat if flat.dtype == np.float32 else flat.astype(np.float32)
        idx = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.read("heads", idx), dtype=np.float32).reshape(len(idx), n_layers * n_heads, d)
