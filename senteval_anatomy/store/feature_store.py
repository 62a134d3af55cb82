"""The store itself: :class:`FeatureStore` serves the features of a sentence set from the in-process memo, from
a valid disk entry, or computes them once by streaming encoder batches into a new entry (see the package
docstring for the design).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..vocab import CACHE_ENV_VAR, ENCODE_BATCH_SIZE, VIEWS, check_pooling, check_views, default_cache_dir
from .checksums import chunk_checksums, manifest_seal, quick_checksum, sha256_file
from .entry import (
    FORMAT_VERSION,
    MANIFEST,
    OPENED,
    SENTENCES,
    TMP_PREFIX,
    NpyWriter,
    fsync_path,
    new_manifest,
    open_entry,
    remove_tree,
    views_tag,
    write_json,
)
from .errors import (
    CacheCorruptionError,
    CacheCorruptionWarning,
    CacheWriteError,
    CorruptEntry,
    NonFiniteFeaturesError,
    write_error_message,
)
from .features import StoredFeatures
from .maintenance import StoreMaintenance

__all__ = ["DTYPES", "ENV_VAR", "VERIFY_MODES", "FeatureStore"]


ENV_VAR = CACHE_ENV_VAR
DTYPES = ("float32", "float16")
VERIFY_MODES = ("quick", "full", "none")


class FeatureStore(StoreMaintenance):
    """Compute-once, memory-map-ever-after store of pooled head/layer features.

    Args:
        cache_dir: cache root (entries go to ``<cache_dir>/features``); default :func:`default_cache_dir`.
        dtype: ``"float32"`` or ``"float16"`` (half the disk and page cache, ~3 significant digits, which the linear
            probes do not notice). Part of the key.
        memory: keep everything in RAM and write nothing to disk -- same API, for users who do not want a cache.
            Memory then grows with the number of sentences.
        verify: how an entry is checked when opened from disk: ``"quick"`` (sizes + sampled checksums, default),
            ``"full"`` (SHA-256 of every file) or ``"none"``.
        rebuild: what a damaged entry found while its features are read (a chunk that fails its checksum, a NaN)
            leads to: ``True`` recomputes it (with a :class:`CacheCorruptionWarning`), ``False`` raises
            :class:`CacheCorruptionError` (``--no-rebuild``: a shared cache you would rather repair yourself).
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        *,
        dtype: str = "float32",
        memory: bool = False,
        verify: str = "quick",
        rebuild: bool = True,
    ) -> None:
        if str(dtype) not in DTYPES:
            raise ValueError(f"FeatureStore(dtype={dtype!r}): must be one of {DTYPES}")
        if verify not in VERIFY_MODES:
            raise ValueError(f"FeatureStore(verify={verify!r}): must be one of {VERIFY_MODES}")
        self.dtype = str(dtype)
        self.memory = bool(memory)
        self.verify = verify
        self.rebuild = bool(rebuild)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.root = self.cache_dir / "features"
        self._mem: dict[str, StoredFeatures] = {}

    def _memo_key(self, name: str) -> tuple[str, str]:
        return (str(self.root.resolve()), name)

    def __repr__(self) -> str:
        where = "memory" if self.memory else str(self.root)
        return f"FeatureStore({where!r}, dtype={self.dtype!r})"

    # -- keys ---------------------------------------------------------------------------------------------------

    def _key_fields(self, encoder: Any, sentence_sha: str, pooling: str, max_length: int) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": str(encoder.fingerprint()),
            "pooling": pooling,
            "max_length": int(max_length),
            "dtype": self.dtype,
            "sentences_sha256": sentence_sha,
        }

    @staticmethod
    def _key_of(fields: dict) -> str:
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    # -- main entry point ---------------------------------------------------------------------------------------

    def get(
        self,
        encoder: Any,
        sentences: Sequence[str],
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        batch_size: int = ENCODE_BATCH_SIZE,
        views: Sequence[str] = VIEWS,
        progress: Any = None,
    ) -> StoredFeatures:
        """Return the features of ``sentences`` (deduplicated) under ``encoder``, computing them only if needed.

        Served, in order, from the in-process memo, from a valid disk entry (one holding the requested views or a
        superset), or computed by streaming ``iter_encode`` batches to disk. ``pooling`` / ``max_length`` default to
        the encoder's. ``batch_size`` and ``progress`` only affect how a miss is computed, not the key.
        """
        want = check_views(views)
        uniq = unique_sentences(sentences)
        sentences_blob = json.dumps(uniq, ensure_ascii=False).encode("utf-8")
        sentence_sha = hashlib.sha256(sentences_blob).hexdigest()
        pooling = check_pooling(pooling, encoder)
        # Same rule as encoding.tokenize: the encoder's limit caps any request, so a larger request shares the key.
        max_length = encoder.token_limit(max_length)
        fields = self._key_fields(encoder, sentence_sha, pooling, max_length)
        base = self._key_of(fields)[:32]

        candidates = [f"{base}-{views_tag(want)}"]
        if want != VIEWS:
            candidates.append(f"{base}-{views_tag(VIEWS)}")

        if self.memory:
            for name in candidates:
                if name in self._mem:
                    return self._mem[name]
        model_name = str(getattr(encoder, "name", "?"))
        if not self.memory:
            for name in candidates:
                hit = self._open_cached(name, fields, uniq, want)
                if hit is not None:
                    views = tuple(hit.manifest.get("views") or want)
                    return self._with_rebuild(hit, encoder, uniq, sentences_blob,
                                              dict(fields, views=list(views), model=model_name), batch_size, progress)

        name = candidates[0]
        manifest_fields = dict(fields, views=list(want), model=model_name)
        if self.memory:
            feats = self._compute_in_memory(name, encoder, uniq, manifest_fields, batch_size, progress)
            self._mem[name] = feats
            return feats
        feats = self._compute_to_disk(name, encoder, uniq, sentences_blob, manifest_fields, batch_size, progress)
        return self._with_rebuild(feats, encoder, uniq, sentences_blob, manifest_fields, batch_size, progress)

    def _with_rebuild(self, feats: StoredFeatures, encoder: Any, uniq: list[str], sentences_blob: bytes,
                      manifest_fields: dict, batch_size: int, progress: Any) -> StoredFeatures:
        """Give ``feats`` the means to recompute itself when a read finds damage (unless ``rebuild=False``)."""
        if not self.rebuild or feats.path is None:
            feats._rebuild = None
            return feats

        def rebuild() -> StoredFeatures:
            name = feats.key
            remove_tree(self.root / name)
            OPENED.pop(self._memo_key(name), None)
            fresh = self._compute_to_disk(name, encoder, uniq, sentences_blob, manifest_fields, batch_size, progress)
            OPENED[self._memo_key(name)] = feats  # the repaired object stays the one every reader holds
            return fresh

        feats._rebuild = rebuild
        return feats

    # -- reading ------------------------------------------------------------------------------------------------

    def _open_cached(
        self, name: str, fields: dict, uniq: list[str], want: Sequence[str]
    ) -> StoredFeatures | None:
        path = self.root / name
        memo_key = self._memo_key(name)
        memo = OPENED.get(memo_key)
        if memo is not None:
            if (path / MANIFEST).exists():
                return memo
            del OPENED[memo_key]
        if not path.is_dir():
            return None
        try:
            feats = open_entry(path, verify=self.verify, expect=fields, sentences=uniq)
            lacking = [v for v in want if getattr(feats, v) is None]
            if lacking:
                raise CorruptEntry(
                    f"{MANIFEST}: entry named for views {name.rsplit('-', 1)[-1]} lacks {lacking}"
                )
        except CorruptEntry as exc:
            if not self.rebuild:
                raise CacheCorruptionError(
                    f"feature cache entry {path} is damaged: {exc}; remove it with `senteval-anatomy cache verify "
                    "--repair` (or allow rebuilding: drop --no-rebuild) and run again") from None
            warnings.warn(
                f"feature cache entry {path} is unusable ({exc}); discarding and recomputing it",
                CacheCorruptionWarning,
                stacklevel=4,
            )
            remove_tree(path)
            return None
        OPENED[memo_key] = feats
        return feats

    def open(self, key: str) -> StoredFeatures:
        """Open an existing entry by its key (directory name, as shown by :meth:`entries`), without an encoder."""
        if self.memory:
            if key not in self._mem:
                raise KeyError(f"no in-memory feature entry {key!r}")
            return self._mem[key]
        path = self.root / key
        if not (path / MANIFEST).is_file():
            raise KeyError(f"no feature cache entry {key!r} under {self.root}")
        try:
            return open_entry(path, verify=self.verify, expect=None, sentences=None)
        except CorruptEntry as exc:
            raise ValueError(f"feature cache entry {path} is corrupt: {exc}; remove it with `clear`") from exc

    # -- computing ----------------------------------------------------------------------------------------------

    def _shapes(self, encoder: Any, n: int, want: Sequence[str]) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        n_layers = int(encoder.num_layers)
        if "heads" in want:
            shapes["heads"] = (n, n_layers, int(encoder.num_heads), int(encoder.head_dim))
        if "layers" in want:
            shapes["layers"] = (n, n_layers + 1, int(encoder.hidden_size))
        return shapes

    def _batches(
        self, encoder: Any, uniq: list[str], fields: dict, batch_size: int, progress: Any
    ) -> Iterator[Any]:
        from ..encoders.encoding import iter_encode  # lazy: the list/clear command must not import torch

        return iter_encode(
            encoder,
            uniq,
            pooling=fields["pooling"],
            views=tuple(fields["views"]),
            batch_size=batch_size,
            max_length=fields["max_length"],
            progress=progress,
        )

    def _cast(
        self,
        view: str,
        values: np.ndarray,
        expected: tuple[int, ...],
        name: str,
        *,
        model: str,
        indices: np.ndarray,
        sentences: Sequence[str],
    ) -> np.ndarray:
        if values is None:
            raise RuntimeError(
                f"iter_encode returned no {view!r} features although they were requested ({name})"
            )
        if tuple(values.shape[1:]) != expected:
            raise RuntimeError(
                f"iter_encode returned {view} of shape {tuple(values.shape)}, but the encoder's config says "
                f"[b, {', '.join(map(str, expected))}]; the encoder attributes (num_layers, num_heads, head_dim, "
                "hidden_size) disagree with its outputs"
            )
        values = np.asarray(values)
        finite = np.isfinite(values)
        if not finite.all():
            raise NonFiniteFeaturesError(non_finite_message(view, values, finite, model, indices, sentences))
        out = values.astype(self.dtype, copy=False)
        if self.dtype == "float16" and not np.all(np.isfinite(out)):
            raise OverflowError(
                f"{view} features exceed the float16 range (max |x| = {np.abs(values).max():.3g}); "
                "use FeatureStore(dtype='float32') for this model"
            )
        return out

    def _compute_in_memory(
        self, name: str, encoder: Any, uniq: list[str], fields: dict, batch_size: int, progress: Any
    ) -> StoredFeatures:
        shapes = self._shapes(encoder, len(uniq), fields["views"])
        arrays = {v: np.zeros(s, dtype=self.dtype) for v, s in shapes.items()}
        seen = np.zeros(len(uniq), dtype=bool)
        n_truncated = 0
        for batch in self._batches(encoder, uniq, fields, batch_size, progress):
            idx = np.asarray(batch.indices, dtype=np.int64)
            for v, arr in arrays.items():
                arr[idx] = self._cast(
                    v, getattr(batch, v), shapes[v][1:], name, model=fields["model"], indices=idx, sentences=uniq
                )
            seen[idx] = True
            n_truncated += int(batch.n_truncated)
        check_coverage(seen, name)
        for arr in arrays.values():
            arr.flags.writeable = False
        manifest = new_manifest(fields, shapes, self.dtype, n_truncated, len(uniq), files={})
        return StoredFeatures(name, None, manifest, uniq, arrays.get("heads"), arrays.get("layers"))

    def _compute_to_disk(
        self,
        name: str,
        encoder: Any,
        uniq: list[str],
        sentences_blob: bytes,
        fields: dict,
        batch_size: int,
        progress: Any,
    ) -> StoredFeatures:
        tmp = self.root / f"{TMP_PREFIX}{name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise CacheWriteError(write_error_message(self.cache_dir, exc)) from exc
        final = self.root / name
        writers: dict[str, NpyWriter] = {}
        try:
            shapes = self._shapes(encoder, len(uniq), fields["views"])
            for v, s in shapes.items():
                writers[v] = NpyWriter(tmp / f"{v}.npy", s, np.dtype(self.dtype))
            seen = np.zeros(len(uniq), dtype=bool)
            n_truncated = 0
            for batch in self._batches(encoder, uniq, fields, batch_size, progress):
                idx = np.asarray(batch.indices, dtype=np.int64)
                for v, w in writers.items():
                    values = self._cast(
                        v, getattr(batch, v), shapes[v][1:], name, model=fields["model"], indices=idx, sentences=uniq
                    )
                    w.write_rows(idx, values)
                seen[idx] = True
                n_truncated += int(batch.n_truncated)
            check_coverage(seen, name)
            for w in writers.values():
                w.close()
            with open(tmp / SENTENCES, "wb") as f:
                f.write(sentences_blob)
                f.flush()
                os.fsync(f.fileno())
            files = {}
            for fname in [f"{v}.npy" for v in shapes] + [SENTENCES]:
                p = tmp / fname
                st = p.stat()
                files[fname] = {
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "quick": quick_checksum(p),
                    "sha256": sha256_file(p),
                }
                if fname.endswith(".npy"):
                    files[fname]["chunks"] = chunk_checksums(p)
            manifest = new_manifest(fields, shapes, self.dtype, n_truncated, len(uniq), files=files)
            manifest["seal"] = manifest_seal(manifest)
            write_json(tmp / MANIFEST, manifest)
            fsync_path(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                # Lost the race: another process committed the same entry first. Its data is equivalent; use it.
                if not (final / MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                fsync_path(self.root)
        except BaseException as exc:
            for w in writers.values():
                w.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, CacheWriteError):
                raise CacheWriteError(write_error_message(self.cache_dir, exc)) from exc
            raise
        feats = open_entry(final, verify="none", expect=None, sentences=uniq)
        OPENED[self._memo_key(name)] = feats
        return feats

    # -- maintenance --------------------------------------------------------------------------------------------


def non_finite_message(
    view: str, values: np.ndarray, finite: np.ndarray, model: str, indices: np.ndarray, sentences: Sequence[str]
) -> str:
    """Say where the first NaN/inf of a batch is: model, view, layer, head (heads view) and sentence."""
    pos = tuple(int(i) for i in np.argwhere(~finite)[0])
    row = int(indices[pos[0]])
    value = values[pos]
    sentence = sentences[row] if 0 <= row < len(sentences) else "?"
    shown = sentence if len(sentence) <= 80 else sentence[:77] + "..."
    if view == "heads":
        where = f"layer {pos[1]}, head {pos[2]}"
    else:
        where = f"layer {pos[1]}" + (" (the embeddings)" if pos[1] == 0 else f" (output of block {pos[1] - 1})")
    n_bad = int((~finite).sum())
    return (
        f"model {model!r} produced {value} in its {view} features at {where}, sentence index {row} ({shown!r}); "
        f"{n_bad} non-finite value(s) in this batch. Nothing was stored. Non-finite features would poison every "
        "probe: check the model's weights (a damaged or half-converted checkpoint), or run it in float32 "
        "(--dtype float32) if it overflows in half precision."
    )


def unique_sentences(sentences: Sequence[str]) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("sentences must be a sequence of strings, not a single string")
    uniq = set()
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(
                f"sentences[{i}] is {type(s).__name__}, expected str; join token lists with ' ' first"
            )
        uniq.add(s)
    if not uniq:
        raise ValueError("FeatureStore.get() needs at least one sentence")
    return sorted(uniq)


def check_coverage(seen: np.ndarray, name: str) -> None:
    if not seen.all():
        missing = int((~seen).sum())
        raise RuntimeError(
            f"iter_encode skipped {missing} of {len(seen)} sentences while building entry {name}"
        )
