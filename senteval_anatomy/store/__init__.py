"""Persistent feature store: pooled head and layer vectors, computed once and memory-mapped ever after.

A sweep over every head of a model runs hundreds of probes on the same sentences; encoding them again for every
probe, task split or process would dominate the run time. The store computes the features of a *sentence set* once
per (model fingerprint, pooling, max length, dtype) and keeps them on disk as plain ``.npy`` files that every later
adapter, sweep, process and run memory-maps read-only.

Layout: one directory per entry under ``<cache dir>/features/``, holding ``manifest.json``, ``sentences.json``,
``heads.npy`` and / or ``layers.npy``; the format is drawn in :mod:`.entry`, its home.

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

The package, by concern: :mod:`.feature_store` (:class:`FeatureStore`: get, open, compute), :mod:`.features`
(:class:`StoredFeatures`), :mod:`.entry` (the on-disk entry format: names, manifest, writer, opening),
:mod:`.checksums`, :mod:`.errors`, :mod:`.maintenance` (list, clear, verify, repair) and :mod:`.command` (the
``cache`` command).
"""

from __future__ import annotations

from ..vocab import default_cache_dir
from .command import main
from .entry import FORMAT_VERSION
from .errors import CacheCorruptionError, CacheCorruptionWarning, CacheWriteError, NonFiniteFeaturesError
from .feature_store import DTYPES, ENV_VAR, VERIFY_MODES, FeatureStore
from .features import StoredFeatures
from .maintenance import ClearReport, EntryCheck

__all__ = [
    "CacheCorruptionError",
    "CacheCorruptionWarning",
    "CacheWriteError",
    "ClearReport",
    "DTYPES",
    "ENV_VAR",
    "EntryCheck",
    "FORMAT_VERSION",
    "FeatureStore",
    "NonFiniteFeaturesError",
    "StoredFeatures",
    "VERIFY_MODES",
    "default_cache_dir",
    "main",
]
