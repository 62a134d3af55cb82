"""Persistent feature store: pooled head and layer vectors, computed once and memory-mapped ever after.

A sweep over every head of a model runs hundreds of probes on the same sentences; encoding them again for every
probe, task split or process would dominate the run time. The store computes the features of a *sentence set* once
per (model fingerprint, pooling, max length, dtype) and keeps them on disk as plain ``.npy`` files that every later
adapter, sweep, process and run memory-maps read-only.

Layout (one directory per entry, under ``<cache dir>/features/``)::

    <key32>-<views>/            e.g. 3f2a...-heads+layers
        manifest.json           format version, key fields, shapes, dtypes, n_truncated, checksums, created time
        sentences.json          the deduplicated, sorted sentences (JSON: sentences may contain newlines)
        heads.npy               [n, L, H, d]   (when "heads" was requested)
        layers.npy              [n, L + 1, D]  (when "layers" was requested)

Design decisions, and why:

* **No pickle anywhere.** Arrays are ``.npy`` files loaded with ``allow_pickle=False``, metadata is JSON, so opening
  a cache entry can never run code.
* **Atomic entries.** An entry is written into a hidden temp directory (``.tmp-*``), fsynced, and then renamed into
  place in one ``os.rename``. A killed or failing run leaves only the hidden temp directory, which is never read as an
  entry (and ``clear`` removes it once its process is gone). Two processes computing the same entry both write their
  own temp directory; the rename of the second fails because the target exists, and the loser discards its copy.
* **Streaming writes with bounded memory.** Rows are written batch by batch with ``os.pwrite`` into preallocated
  ``.npy`` files. Unlike stores into a writable ``np.memmap``, written pages then live in the kernel page cache and do
  not count towards the process's resident set, so peak RSS stays at one batch of features plus the model, whatever
  the number of sentences.
* **Sentence sets, not sequences.** Sentences are deduplicated and sorted before keying, so the same sentences in any
  order (or with repeats, as SentEval's ``prepare`` passes them) share one entry. ``StoredFeatures.rows`` maps
  sentences back to rows.
* **Corruption is detected and repaired, never used.** Every open checks the manifest against the request, the
  ``.npy`` headers against the manifest, and each file's size plus a *quick checksum* (first and last MiB and 16
  evenly spaced 64 KiB blocks). A file whose modification time differs from the one recorded at write time (anything
  wrote to it after the entry was committed) is hashed in full instead. A full SHA-256 of every file is recorded and
  checked with ``verify="full"`` and by ``python -m senteval_anatomy.store verify --full``. The quick check is the
  default because a full hash of a BERT-base entry (about 1.5 GB for 20k sentences) would cost seconds on every open,
  while the failures that really happen to cache files -- truncation, a file replaced, zeroed or written to, a
  disk-full write -- change the size, the sampled blocks or the modification time. A bad entry is reported with a
  :class:`CacheCorruptionWarning` naming the entry and the file, removed, and rebuilt.
* **Only finite numbers are stored.** A NaN or an infinity in the encoder's output is refused at write time with
  :class:`NonFiniteFeaturesError`, naming model, view, layer, head and sentence, so any non-finite value found later
  is damage.
* **Maintenance touches only the store's own entries.** ``clear`` and ``verify --repair`` remove folders named like
  an entry (``<32 hex>-<views>``); ``clear`` only those whose manifest is present and valid. Anything else under
  ``features/`` is reported and left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .vocab import (
    CACHE_ENV_VAR,
    ENCODE_BATCH_SIZE,
    VIEWS,
    OneLineParser,
    atomic_write,
    check_pooling,
    check_views,
    default_cache_dir,
    path_arg,
)

__all__ = [
    "CacheCorruptionError",
    "CacheCorruptionWarning",
    "CacheWriteError",
    "ClearReport",
    "EntryCheck",
    "FeatureStore",
    "NonFiniteFeaturesError",
    "StoredFeatures",
    "default_cache_dir",
    "main",
]

#: Bump when the on-disk layout or the meaning of stored features changes; it is part of every key, so old entries
#: are simply never matched again (and can be removed with ``clear``).
FORMAT_VERSION = 1

ENV_VAR = CACHE_ENV_VAR
DTYPES = ("float32", "float16")
VERIFY_MODES = ("quick", "full", "none")

_MANIFEST = "manifest.json"
_SENTENCES = "sentences.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_MIB = 1 << 20
_SAMPLE_BLOCK = 64 << 10
_N_SAMPLES = 16
_STALE_TMP_SECONDS = 24 * 3600
# Names the store gives its folders; nothing else under features/ is ever removed.
_ENTRY_RE = re.compile(r"^[0-9a-f]{32}-(heads|layers|heads\+layers)$")
_TMP_RE = re.compile(r"^\.tmp-[0-9a-f]{32}-(heads|layers|heads\+layers)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")
_TRASH_RE = re.compile(r"^\.trash-[0-9a-f]{32}-(heads|layers|heads\+layers)-[0-9a-f]{8}$")


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed validation (damaged, truncated or mismatched) and is being rebuilt."""


class CacheCorruptionError(ValueError):
    """A damaged cache entry found while its features were read, with rebuilding turned off (``rebuild=False``,
    ``--no-rebuild``): one line naming the entry, the file and what is wrong."""


class NonFiniteFeaturesError(ValueError):
    """The encoder produced a NaN or an infinity; the message names model, view, layer, head and sentence.

    Such features would poison every probe trained on them, and a store that accepted them could not tell them from
    damage on disk, so they are refused before anything is committed.
    """


class CacheWriteError(OSError):
    """The cache could not be written (disk full, file too large, read-only or not a folder); nothing was committed
    and the temp folder was removed. The message names the cache folder and how to fix it."""


def _write_error_message(cache_dir: Path, exc: OSError) -> str:
    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot add an entry to the feature cache under {cache_dir}: {what}{where}. A read-only cache serves "
                "the entries it holds; this run needs one it lacks: point --cache-dir / "
                f"${CACHE_ENV_VAR} at a writable folder (or have the cache's owner run it once). Nothing was stored.")
    return (
        f"cannot write the feature cache under {cache_dir}: {what}{where}. Nothing was stored. Free disk space "
        f"(`python -m senteval_anatomy.store clear` empties the cache), or point --cache-dir / ${CACHE_ENV_VAR} at a "
        "writable folder with room; the run can be repeated as it is."
    )


class _CorruptEntry(Exception):
    """Internal: raised by entry validation; the message says what is wrong with which file."""


# --------------------------------------------------------------------------------------------------------------------
# small file helpers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * _MIB):
            h.update(chunk)
    return h.hexdigest()


def _quick_checksum(path: Path) -> str:
    """SHA-256 over the file size, its first and last MiB and 16 evenly spaced 64 KiB blocks (at most ~3 MiB read)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= 3 * _MIB:
            h.update(f.read())
            return h.hexdigest()
        h.update(f.read(_MIB))
        span = size - 2 * _MIB - _SAMPLE_BLOCK
        for i in range(_N_SAMPLES):
            f.seek(_MIB + span * i // (_N_SAMPLES - 1))
            h.update(f.read(_SAMPLE_BLOCK))
        f.seek(size - _MIB)
        h.update(f.read(_MIB))
    return h.hexdigest()


#: Rows per checksummed chunk are chosen so that a chunk is about this many bytes: small enough that the trainer's
#: first read of a row checks little more than it reads, large enough that the manifest stays small.
_CHUNK_BYTES = 1 << 20


def _rows_per_chunk(shape: Sequence[int], itemsize: int) -> int:
    row_bytes = max(1, itemsize * int(np.prod(shape[1:], dtype=np.int64)))
    return max(1, _CHUNK_BYTES // row_bytes)


def _chunk_crc(arr: np.ndarray, start: int, stop: int) -> int:
    """CRC-32 of the raw bytes of rows ``start:stop`` of a C-ordered array (a memory map reads just those pages)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(arr[start:stop])).cast("B"))


def _chunk_checksums(path: Path) -> dict:
    """Per-chunk CRC-32s of an ``.npy`` file's rows: what every read of the entry verifies (see StoredFeatures)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    rpc = _rows_per_chunk(arr.shape, arr.dtype.itemsize)
    crcs = [_chunk_crc(arr, start, start + rpc) for start in range(0, arr.shape[0], rpc)]
    del arr
    return {"rows": rpc, "crc32": crcs}


def _manifest_seal(manifest: dict) -> str:
    """SHA-256 of the whole manifest (every field but the seal itself): an edited model name, n_truncated, shape or
    checksum shows as a broken seal, not as a true statement about the entry."""
    body = {k: v for k, v in manifest.items() if k != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory, so that a rename that follows cannot expose unwritten data after a crash."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True))


def _remove_tree(path: Path) -> int:
    """Remove a directory tree, first renaming it to a hidden trash name so that no reader sees a half-deleted entry.

    Returns the bytes freed.
    """
    if path.is_symlink() or not path.is_dir():  # never follow a link: the store makes none, its target is not ours
        return 0
    size = _dir_size(path)
    trash = path.parent / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:  # someone else removed it first
        return 0
    shutil.rmtree(trash, ignore_errors=True)
    return size - (_dir_size(trash) if trash.exists() else 0)  # only what was actually freed


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover
        return False
    return True


class _NpyWriter:
    """Preallocated ``.npy`` file written row by row with ``os.pwrite``.

    Why not a writable ``np.memmap``: dirty pages of a shared mapping count towards the writer's resident set, so a
    20k-sentence BERT-base entry would add ~1.5 GB of RSS. ``pwrite`` leaves the data in the page cache instead, which
    the kernel can write back and evict at will.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            self.offset = f.tell()
            f.truncate(self.offset + shape[0] * self.row_bytes)  # sparse preallocation
        self.fd = os.open(path, os.O_WRONLY)
        self.rows_written = 0

    def write_rows(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values[i]`` to row ``rows[i]``, coalescing runs of consecutive rows into one syscall."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        values = values[order]
        start = 0
        n = len(rows)
        while start < n:
            stop = start + 1
            while stop < n and rows[stop] == rows[stop - 1] + 1:
                stop += 1
            buf = memoryview(values[start:stop]).cast("B")
            pos = self.offset + int(rows[start]) * self.row_bytes
            while len(buf):
                written = os.pwrite(self.fd, buf, pos)
                buf = buf[written:]
                pos += written
            start = stop
        self.rows_written += n

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------------------------------------------------
# public data object


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
            if _chunk_crc(arr, start, stop) != crcs[int(c)]:
                return f"{fname}: rows {start}..{stop - 1} do not match their checksum (changed on disk)"
            chunk = arr[start:stop]
            if not np.isfinite(chunk).all():
                bad = _first_non_finite(chunk) or 0
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


# --------------------------------------------------------------------------------------------------------------------
# the store

# In-process memo of opened disk entries, shared by every FeatureStore of the process (adapters may each build their
# own store object); keyed by (resolved features dir, entry name).
_MEMO: dict[tuple[str, str], StoredFeatures] = {}


def _views_tag(views: Sequence[str]) -> str:
    return "+".join(v for v in VIEWS if v in views)


class FeatureStore:
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
        uniq = _unique_sentences(sentences)
        sentences_blob = json.dumps(uniq, ensure_ascii=False).encode("utf-8")
        sentence_sha = hashlib.sha256(sentences_blob).hexdigest()
        pooling = check_pooling(pooling, encoder)
        # Same rule as features.tokenize: the encoder's limit caps any request, so a larger request shares the key.
        max_length = encoder.token_limit(max_length)
        fields = self._key_fields(encoder, sentence_sha, pooling, max_length)
        base = self._key_of(fields)[:32]

        candidates = [f"{base}-{_views_tag(want)}"]
        if want != VIEWS:
            candidates.append(f"{base}-{_views_tag(VIEWS)}")

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
            _remove_tree(self.root / name)
            _MEMO.pop(self._memo_key(name), None)
            fresh = self._compute_to_disk(name, encoder, uniq, sentences_blob, manifest_fields, batch_size, progress)
            _MEMO[self._memo_key(name)] = feats  # the repaired object stays the one every reader holds
            return fresh

        feats._rebuild = rebuild
        return feats

    # -- reading ------------------------------------------------------------------------------------------------

    def _open_cached(
        self, name: str, fields: dict, uniq: list[str], want: Sequence[str]
    ) -> StoredFeatures | None:
        path = self.root / name
        memo_key = self._memo_key(name)
        memo = _MEMO.get(memo_key)
        if memo is not None:
            if (path / _MANIFEST).exists():
                return memo
            del _MEMO[memo_key]
        if not path.is_dir():
            return None
        try:
            feats = _open_entry(path, verify=self.verify, expect=fields, sentences=uniq)
            lacking = [v for v in want if getattr(feats, v) is None]
            if lacking:
                raise _CorruptEntry(
                    f"{_MANIFEST}: entry named for views {name.rsplit('-', 1)[-1]} lacks {lacking}"
                )
        except _CorruptEntry as exc:
            if not self.rebuild:
                raise CacheCorruptionError(
                    f"feature cache entry {path} is damaged: {exc}; remove it with `senteval-anatomy cache verify "
                    "--repair` (or allow rebuilding: drop --no-rebuild) and run again") from None
            warnings.warn(
                f"feature cache entry {path} is unusable ({exc}); discarding and recomputing it",
                CacheCorruptionWarning,
                stacklevel=4,
            )
            _remove_tree(path)
            return None
        _MEMO[memo_key] = feats
        return feats

    def open(self, key: str) -> StoredFeatures:
        """Open an existing entry by its key (directory name, as shown by :meth:`entries`), without an encoder."""
        if self.memory:
            if key not in self._mem:
                raise KeyError(f"no in-memory feature entry {key!r}")
            return self._mem[key]
        path = self.root / key
        if not (path / _MANIFEST).is_file():
            raise KeyError(f"no feature cache entry {key!r} under {self.root}")
        try:
            return _open_entry(path, verify=self.verify, expect=None, sentences=None)
        except _CorruptEntry as exc:
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
        from .encoders.encoding import iter_encode  # lazy: the list/clear command must not import torch

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
            raise NonFiniteFeaturesError(_non_finite_message(view, values, finite, model, indices, sentences))
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
        _check_coverage(seen, name)
        for arr in arrays.values():
            arr.flags.writeable = False
        manifest = _manifest(fields, shapes, self.dtype, n_truncated, len(uniq), files={})
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
        tmp = self.root / f"{_TMP_PREFIX}{name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise CacheWriteError(_write_error_message(self.cache_dir, exc)) from exc
        final = self.root / name
        writers: dict[str, _NpyWriter] = {}
        try:
            shapes = self._shapes(encoder, len(uniq), fields["views"])
            for v, s in shapes.items():
                writers[v] = _NpyWriter(tmp / f"{v}.npy", s, np.dtype(self.dtype))
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
            _check_coverage(seen, name)
            for w in writers.values():
                w.close()
            with open(tmp / _SENTENCES, "wb") as f:
                f.write(sentences_blob)
                f.flush()
                os.fsync(f.fileno())
            files = {}
            for fname in [f"{v}.npy" for v in shapes] + [_SENTENCES]:
                p = tmp / fname
                st = p.stat()
                files[fname] = {
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "quick": _quick_checksum(p),
                    "sha256": _sha256_file(p),
                }
                if fname.endswith(".npy"):
                    files[fname]["chunks"] = _chunk_checksums(p)
            manifest = _manifest(fields, shapes, self.dtype, n_truncated, len(uniq), files=files)
            manifest["seal"] = _manifest_seal(manifest)
            _write_json(tmp / _MANIFEST, manifest)
            _fsync_path(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                # Lost the race: another process committed the same entry first. Its data is equivalent; use it.
                if not (final / _MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                _fsync_path(self.root)
        except BaseException as exc:
            for w in writers.values():
                w.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, CacheWriteError):
                raise CacheWriteError(_write_error_message(self.cache_dir, exc)) from exc
            raise
        feats = _open_entry(final, verify="none", expect=None, sentences=uniq)
        _MEMO[self._memo_key(name)] = feats
        return feats

    # -- maintenance --------------------------------------------------------------------------------------------

    def entries(self) -> list[dict]:
        """Manifests of all committed entries, each with ``key``, ``path`` and ``size_bytes`` added, oldest first.

        Folders whose manifest is missing or invalid are listed with ``"error"`` set instead of being hidden, and
        folders not named like an entry with ``"foreign": True`` as well, so that ``list`` shows them and ``clear``
        can say that it leaves them alone.
        """
        if self.memory:
            return [dict(f.manifest, key=k, path=None, size_bytes=_mem_size(f)) for k, f in self._mem.items()]
        out: list[dict] = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.iterdir()):
            if p.is_symlink() and not p.name.startswith("."):  # listed, never followed: its target is not the store's to count, verify or remove
                out.append({"error": "a symbolic link (the store never makes one)", "foreign": True,
                            "created": p.lstat().st_mtime, "key": p.name, "path": str(p), "size_bytes": 0})
                continue
            if p.name.startswith(".") or not p.is_dir():
                continue
            if not _ENTRY_RE.match(p.name):
                manifest = {"error": "not named like a cache entry (<32 hex>-<views>)", "foreign": True}
            else:
                manifest, problem = _read_manifest(p)
                if problem is not None:
                    manifest = {"error": problem}
            manifest.setdefault("created", p.stat().st_mtime)
            out.append(dict(manifest, key=p.name, path=str(p), size_bytes=_dir_size(p)))
        out.sort(key=lambda e: float(e.get("created", 0)))
        return out

    def clear(self, *, older_than_days: float | None = None, model: str | None = None) -> ClearReport:
        """Remove the store's entries (all, or those created more than ``older_than_days`` ago and/or whose model
        name matches the glob ``model``) and the leftovers of dead writers.

        Only folders the store wrote are removed: named like an entry and holding a present, valid manifest. Anything
        else under ``features/`` (a user's folder, a stray file, an entry whose manifest is damaged) is left alone
        and listed in :attr:`ClearReport.left_alone` with the reason; damaged entries are for ``verify --repair``.
        """
        report = ClearReport()
        if self.memory:
            for k in list(self._mem):
                if _matches(self._mem[k].manifest, older_than_days, model):
                    report.freed += _mem_size(self._mem.pop(k))
                    report.removed.append(k)
            return report
        for e in self.entries():
            if "error" in e:
                why = (
                    f"not a cache entry ({e['error']})"
                    if e.get("foreign")
                    else f"damaged entry ({e['error']}); remove it with `verify --repair`"
                )
                report.left_alone.append((e["path"], why))
                continue
            if _matches(e, older_than_days, model):
                report.freed += _remove_tree(Path(e["path"]))
                report.removed.append(e["key"])
                _MEMO.pop(self._memo_key(e["key"]), None)
        report.freed += self._clear_leftovers()
        if self.root.is_dir():
            for p in sorted(self.root.iterdir()):
                if p.is_symlink():
                    if p.name.startswith("."):
                        report.left_alone.append((str(p), "not a cache entry (a symbolic link; never followed)"))
                elif not p.is_dir():
                    report.left_alone.append((str(p), "not a cache entry (a file)"))
                elif p.name.startswith(".") and not (_TMP_RE.match(p.name) or _TRASH_RE.match(p.name)):
                    report.left_alone.append((str(p), "not a cache entry (hidden folder the store did not make)"))
        return report

    def verify_entries(self, *, full: bool = False, model: str | None = None) -> list[EntryCheck]:
        """Check every entry (or those whose model name matches the glob ``model``); one :class:`EntryCheck` each.

        Quick (default): the checks of every open -- manifest, sizes, sampled checksums (full hash of files modified
        after the commit), ``.npy`` headers against the manifest, the sentence count -- plus the entry's name against
        the hash of its key fields. ``full``: SHA-256 of every file against the manifest and a scan of every array
        for NaN/inf, i.e. every byte of the cache. Folders that are not entries are reported as ``foreign``.
        """
        if self.memory:
            return [EntryCheck(k, None, "ok", None, _mem_size(f)) for k, f in self._mem.items()]
        checks: list[EntryCheck] = []
        for e in self.entries():
            path = Path(e["path"])
            if e.get("foreign"):
                checks.append(EntryCheck(e["key"], path, "foreign", e["error"], e["size_bytes"]))
                continue
            if "error" not in e and model is not None and not _matches(e, None, model):
                continue
            problem = e.get("error")
            if problem is None:
                try:
                    _open_entry(path, verify="full" if full else "quick", expect=None, sentences=None)
                    # The manifest's key_fields also record views and model name, which are not part of the key.
                    key_fields = {k: v for k, v in e["key_fields"].items() if k not in ("views", "model")}
                    if self._key_of(key_fields)[:32] != e["key"].split("-", 1)[0]:
                        raise _CorruptEntry(f"{_MANIFEST}: key fields do not hash to the folder's name")
                    if _views_tag(e.get("views") or ()) != e["key"].split("-", 1)[1]:
                        raise _CorruptEntry(f"{_MANIFEST}: views {e.get('views')} do not match the folder's name")
                except _CorruptEntry as exc:
                    problem = str(exc)
            status = "ok" if problem is None else "damaged"
            checks.append(EntryCheck(e["key"], path, status, problem, e["size_bytes"]))
        return checks

    def repair(self, checks: Sequence[EntryCheck]) -> int:
        """Remove the damaged entries among ``checks`` (from :meth:`verify_entries`); they are recomputed on next use.

        Foreign folders are never touched. Returns the bytes freed.
        """
        freed = 0
        for c in checks:
            if c.status == "damaged" and c.path is not None and _ENTRY_RE.match(c.path.name):
                freed += _remove_tree(c.path)
                _MEMO.pop(self._memo_key(c.key), None)
        return freed

    def _clear_leftovers(self) -> int:
        """Remove temp dirs of writers that died (or are more than a day old) and abandoned trash dirs.

        Only hidden folders named exactly as the store names them are considered.
        """
        if not self.root.is_dir():
            return 0
        freed = 0
        host = socket.gethostname()
        now = time.time()
        for p in self.root.iterdir():
            if p.is_symlink() or not p.is_dir():
                continue
            if _TRASH_RE.match(p.name):
                freed += _dir_size(p)
                shutil.rmtree(p, ignore_errors=True)
                continue
            m = _TMP_RE.match(p.name)
            if m is None:
                continue
            stale = now - p.stat().st_mtime > _STALE_TMP_SECONDS
            if not stale and m["host"] == host:
                stale = not _pid_alive(int(m["pid"]))  # only pids of this host can be checked
            if stale:
                freed += _dir_size(p)
                shutil.rmtree(p, ignore_errors=True)
        return freed


@dataclass
class ClearReport:
    """What :meth:`FeatureStore.clear` did: bytes freed, entry keys removed, and paths left alone with the reason."""

    freed: int = 0
    removed: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class EntryCheck:
    """The verdict of :meth:`FeatureStore.verify_entries` on one folder: ``ok``, ``damaged`` (``problem`` says which file and
    what) or ``foreign`` (not a store entry; never removed)."""

    key: str
    path: Path | None
    status: str
    problem: str | None
    size_bytes: int


def _read_manifest(path: Path) -> tuple[dict, str | None]:
    """``path/manifest.json`` and None when it is a manifest the store wrote (any format version), else ``({}, why)``."""
    try:
        manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"no {_MANIFEST}"
    except (OSError, ValueError) as exc:
        return {}, f"unreadable {_MANIFEST}: {exc}"
    if not isinstance(manifest, dict):
        return {}, f"{_MANIFEST} is not a JSON object"
    missing = [k for k in ("format_version", "key_fields", "files", "created") if k not in manifest]
    if missing:
        return {}, f"{_MANIFEST} lacks {', '.join(missing)}"
    if not isinstance(manifest["key_fields"], dict) or not isinstance(manifest["files"], dict):
        return {}, f"{_MANIFEST}: key_fields/files are not objects"
    return manifest, None


# --------------------------------------------------------------------------------------------------------------------
# helpers used by the store


def _non_finite_message(
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


def _unique_sentences(sentences: Sequence[str]) -> list[str]:
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


def _check_coverage(seen: np.ndarray, name: str) -> None:
    if not seen.all():
        missing = int((~seen).sum())
        raise RuntimeError(
            f"iter_encode skipped {missing} of {len(seen)} sentences while building entry {name}"
        )


def _manifest(
    fields: dict, shapes: dict[str, tuple[int, ...]], dtype: str, n_truncated: int, n: int, files: dict
) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "key_fields": dict(fields),
        "model": fields.get("model"),
        "views": list(fields["views"]),
        "n_sentences": n,
        "shapes": {v: list(s) for v, s in shapes.items()},
        "dtypes": {v: dtype for v in shapes},
        "n_truncated": int(n_truncated),
        "created": time.time(),
        "files": files,
        "checksum": "quick = sha256(size, first MiB, 16 sampled 64 KiB blocks, last MiB); sha256 = full file; "
        "chunks = crc32 of every `rows` rows, checked as they are read; seal = sha256 of this manifest",
    }


def _open_entry(
    path: Path, *, verify: str, expect: dict | None, sentences: list[str] | None
) -> StoredFeatures:
    """Validate and open an entry; raise :class:`_CorruptEntry` saying what is wrong."""
    try:
        manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _CorruptEntry(f"{_MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise _CorruptEntry(f"{_MANIFEST}: not a format-{FORMAT_VERSION} manifest")
    key = manifest.get("key_fields")
    files = manifest.get("files")
    shapes = manifest.get("shapes")
    if not isinstance(key, dict) or not isinstance(files, dict) or not isinstance(shapes, dict):
        raise _CorruptEntry(f"{_MANIFEST}: missing key_fields/files/shapes")
    if verify != "none":
        _validate_manifest(manifest)
    if expect is not None:
        for k, v in expect.items():
            if key.get(k) != v:
                raise _CorruptEntry(f"{_MANIFEST}: key field {k!r} is {key.get(k)!r}, expected {v!r}")
    for fname, meta in files.items():
        p = path / fname
        if not p.is_file():
            raise _CorruptEntry(f"{fname}: missing")
        if verify == "none":
            continue
        if not isinstance(meta, dict):
            raise _CorruptEntry(f"{_MANIFEST}: the entry for {fname} is not an object")
        st = p.stat()
        if st.st_size != meta.get("size"):
            raise _CorruptEntry(f"{fname}: size {st.st_size} != {meta.get('size')} in manifest")
        # Anything that wrote to the file after the commit changed its mtime: then only a full hash can tell.
        touched = "mtime_ns" in meta and st.st_mtime_ns != meta["mtime_ns"]
        if verify == "full" or touched:
            if _sha256_file(p) != meta.get("sha256"):
                why = " (the file was modified after the entry was written)" if touched else ""
                raise _CorruptEntry(f"{fname}: sha256 mismatch{why}")
        elif _quick_checksum(p) != meta.get("quick"):
            raise _CorruptEntry(f"{fname}: sampled checksum mismatch")

    arrays: dict[str, np.ndarray | None] = {"heads": None, "layers": None}
    for view, shape in shapes.items():
        fname = f"{view}.npy"
        if view not in arrays or fname not in files:
            raise _CorruptEntry(f"{_MANIFEST}: unknown view {view!r} or its file is not listed")
        try:
            arr = np.load(path / fname, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _CorruptEntry(f"{fname}: {exc}") from exc
        want_dtype = (manifest.get("dtypes") or {}).get(view)
        if list(arr.shape) != list(shape) or str(arr.dtype) != want_dtype:
            raise _CorruptEntry(
                f"{fname}: .npy header says {arr.dtype}{list(arr.shape)}, manifest says {want_dtype}{list(shape)}"
            )
        if verify == "full":
            bad = _first_non_finite(arr)
            if bad is not None:
                raise _CorruptEntry(f"{fname}: non-finite value at row {bad} (the store never writes one)")
        arrays[view] = arr
    if sentences is None:
        try:
            sentences = json.loads((path / _SENTENCES).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _CorruptEntry(f"{_SENTENCES}: {exc}") from exc
    if not isinstance(sentences, list) or len(sentences) != manifest.get("n_sentences"):
        raise _CorruptEntry(f"{_SENTENCES}: does not hold {manifest.get('n_sentences')} sentences")
    return StoredFeatures(path.name, path, manifest, sentences, arrays["heads"], arrays["layers"])


def _validate_manifest(manifest: dict) -> None:
    """The manifest as a whole: its seal, and every statement in it agreeing with the others (views, shapes, dtypes,
    files, model name, sentence count), so that no field outside the key can be edited and then shown as true."""
    if manifest.get("seal") != _manifest_seal(manifest):
        raise _CorruptEntry(f"{_MANIFEST}: its seal does not match its content (edited after the entry was written, "
                            "or written by an older version)")
    key, shapes, dtypes, files = (manifest.get(k) for k in ("key_fields", "shapes", "dtypes", "files"))
    if not isinstance(dtypes, dict) or set(dtypes) != set(shapes) or set(manifest.get("views") or ()) != set(shapes):
        raise _CorruptEntry(f"{_MANIFEST}: views, shapes and dtypes name different views")
    for view, shape in shapes.items():
        if dtypes[view] != key.get("dtype"):
            raise _CorruptEntry(f"{_MANIFEST}: {view} dtype {dtypes[view]!r} is not the key's {key.get('dtype')!r}")
        if not isinstance(shape, list) or not shape or shape[0] != manifest.get("n_sentences"):
            raise _CorruptEntry(f"{_MANIFEST}: {view} shape {shape} does not hold n_sentences rows")
        chunks = (files.get(f"{view}.npy") or {}).get("chunks") if isinstance(files.get(f"{view}.npy"), dict) else None
        if not isinstance(chunks, dict) or not isinstance(chunks.get("crc32"), list) or not isinstance(
                chunks.get("rows"), int) or chunks["rows"] < 1 or len(chunks["crc32"]) != -(-shape[0] // chunks["rows"]):
            raise _CorruptEntry(f"{_MANIFEST}: {view}.npy has no valid per-chunk checksums")
    if manifest.get("model") != key.get("model"):
        raise _CorruptEntry(f"{_MANIFEST}: model {manifest.get('model')!r} is not the key's {key.get('model')!r}")
    if not isinstance(manifest.get("n_truncated"), int) or not 0 <= manifest["n_truncated"] <= manifest["n_sentences"]:
        raise _CorruptEntry(f"{_MANIFEST}: n_truncated {manifest.get('n_truncated')!r} is not a count of sentences")


def _first_non_finite(arr: np.ndarray, chunk_bytes: int = 32 * _MIB) -> int | None:
    """Row of the first NaN/inf in ``arr`` (read in chunks of about 32 MiB, so a memory map is never loaded whole),
    or None."""
    row_bytes = max(1, arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    rows_per_chunk = max(1, chunk_bytes // row_bytes)
    for start in range(0, arr.shape[0], rows_per_chunk):
        chunk = np.asarray(arr[start : start + rows_per_chunk])
        ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def _mem_size(f: StoredFeatures) -> int:
    return sum(a.nbytes for a in (f.heads, f.layers) if a is not None)


def _matches(entry: dict, older_than_days: float | None, model: str | None) -> bool:
    if older_than_days is not None:
        age_days = (time.time() - float(entry.get("created", 0))) / 86400.0
        if age_days < older_than_days:
            return False
    if model is not None:
        name = str(entry.get("model") or "")
        if not fnmatch.fnmatchcase(name, model):
            return False
    return True


# --------------------------------------------------------------------------------------------------------------------
# command line


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``senteval-anatomy-cache {list,clear,verify}``: inspect, empty or check the feature cache.

    Returns the exit status: 0, or 1 when ``verify`` found damage that it did not repair. ``prog`` is the program
    name usage lines show (``senteval-anatomy cache`` when the umbrella command dispatches here).
    """
    parser = OneLineParser(
        prog=prog or "senteval-anatomy-cache",
        description="List, clear or verify the senteval_anatomy feature cache "
        f"(default location: ${ENV_VAR} or ~/.cache/senteval_anatomy).",
    )
    parser.add_argument("command", choices=("list", "clear", "verify"))
    parser.add_argument(
        "--cache-dir",
        type=lambda text: Path(path_arg(text)),
        default=None,
        help=f"cache root (default: ${ENV_VAR} or ~/.cache/senteval_anatomy)",
    )
    parser.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="list/clear: only entries older than DAYS"
    )
    parser.add_argument(
        "--model", default=None, metavar="NAME", help="only entries of this model (glob allowed)"
    )
    parser.add_argument("--json", action="store_true", help="list/verify: print the result as JSON")
    parser.add_argument(
        "--full",
        action="store_true",
        help="verify: SHA-256 of every file and a NaN/inf scan of every array (default: the sampled checksums "
        "every open uses)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="verify: remove the damaged entries, so that the next run recomputes them",
    )
    args = parser.parse_args(argv)
    if args.older_than is not None and not args.older_than >= 0:  # also refuses nan
        parser.error(f"--older-than {args.older_than}: give a number of days >= 0, e.g. --older-than 30")
    if args.command != "verify" and (args.full or args.repair):
        parser.error("--full and --repair belong to the verify command")
    if args.command == "verify" and args.older_than is not None:
        parser.error("--older-than belongs to list and clear")
    root = args.cache_dir.expanduser() if args.cache_dir is not None else default_cache_dir()
    for p in (root, root / "features"):
        if p.exists() and not p.is_dir():
            where = "--cache-dir" if args.cache_dir is not None else f"${ENV_VAR} / the default cache"
            parser.error(f"{where}: {p} is not a folder")
    if args.cache_dir is not None and not root.exists():  # a folder the user named: a typo, or not the runs' one
        parser.error(f"--cache-dir {root}: no such folder; give the --cache-dir your runs used (default: "
                     f"${ENV_VAR} or ~/.cache/senteval_anatomy)")
    if not (root / "features").is_dir():  # say so, rather than list an "(empty)" cache or "remove 0 entries"
        print(f"no feature cache in {root} (no features/ folder: nothing was encoded with this cache folder); "
              f"nothing to {args.command}")
        return 0

    store = FeatureStore(args.cache_dir)
    if args.command == "list":
        return _cmd_list(store, args)
    if args.command == "verify":
        return _cmd_verify(store, args)
    report = store.clear(older_than_days=args.older_than, model=args.model)
    n = len(report.removed)
    print(f"removed {n} {'entry' if n == 1 else 'entries'}, freed {_human(report.freed)} from {store.root}")
    for path, why in report.left_alone:
        print(f"left alone: {path}: {why}")
    return 0


def _cmd_list(store: FeatureStore, args: argparse.Namespace) -> int:
    entries = [e for e in store.entries() if _matches(e, args.older_than, args.model)]
    if args.json:
        print(json.dumps(entries, indent=1, sort_keys=True, default=str))
        return 0
    print(f"feature cache: {store.root}")
    if not entries:
        print("(empty)")
        return 0
    print(f"{'key':<45} {'model':<28} {'pooling':<7} {'maxlen':>6} {'dtype':<7} {'n':>7} {'size':>10}  created")
    for e in entries:
        k = e["key"]
        inner = e.get("key_fields") if isinstance(e.get("key_fields"), dict) else {}
        if "error" in e:
            print(f"{k:<45} {'NOT AN ENTRY' if e.get('foreign') else 'ERROR'}: {e['error']}")
            continue
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(e.get("created", 0))))
        print(
            f"{k:<45} {str(e.get('model'))[:28]:<28} {str(inner.get('pooling')):<7} "
            f"{str(inner.get('max_length')):>6} {str(inner.get('dtype')):<7} {e.get('n_sentences', '?'):>7} "
            f"{_human(e['size_bytes']):>10}  {created}"
        )
    total = sum(e["size_bytes"] for e in entries)
    print(f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, {_human(total)}")
    return 0


#: What ``verify`` checks, said on its first line: without --full, also what it did not check.
_QUICK_CHECKS = ("quick: manifests (sealed, validated whole), sizes, .npy headers, sampled checksums; NOT checked: "
                 "the bytes between the sampled blocks and NaN/inf in them (every run checks the chunks it reads; "
                 "--full checks every byte)")
_FULL_CHECKS = "full: manifests, sha256 of every file, every array scanned for NaN/inf"


def _cmd_verify(store: FeatureStore, args: argparse.Namespace) -> int:
    checks = store.verify_entries(full=args.full, model=args.model)
    damaged = [c for c in checks if c.status == "damaged"]
    freed = store.repair(damaged) if args.repair and damaged else 0
    if args.json:
        rows = [
            {"key": c.key, "path": str(c.path), "status": c.status, "problem": c.problem, "size_bytes": c.size_bytes}
            for c in checks
        ]
        print(json.dumps({"root": str(store.root), "full": args.full,
                          "checked": _FULL_CHECKS if args.full else _QUICK_CHECKS, "repaired": bool(args.repair and damaged),
                          "entries": rows}, indent=1))
    else:
        print(f"feature cache: {store.root} ({_FULL_CHECKS if args.full else _QUICK_CHECKS})")
        if not checks:
            print("(empty)")
        for c in checks:
            label = {"ok": "ok", "damaged": "DAMAGED", "foreign": "not an entry, left alone"}[c.status]
            print(f"{label:<8} {c.key}" + (f": {c.problem}" if c.problem else ""))
        n_ok = sum(c.status == "ok" for c in checks)
        print(f"{n_ok} ok, {len(damaged)} damaged")
        if damaged and args.repair:
            print(f"removed the {len(damaged)} damaged entries ({_human(freed)}); they are recomputed on next use")
        elif damaged:
            print(
                "repair: `python -m senteval_anatomy.store verify --repair"
                + (f" --cache-dir {args.cache_dir}" if args.cache_dir else "")
                + "` removes the damaged entries; the next run recomputes them"
            )
    return 1 if damaged and not args.repair else 0


if __name__ == "__main__":
    sys.exit(main())
