"""The on-disk entry format: folder names, the manifest (written, read, validated), the streaming ``.npy`` writer,
crash-safe file operations, and opening an entry as :class:`~.features.StoredFeatures`.

Layout (one directory per entry, under ``<cache dir>/features/``)::

    <key32>-<views>/            e.g. 3f2a...-heads+layers
        manifest.json           format version, key fields, shapes, dtypes, n_truncated, checksums, created time
        sentences.json          the deduplicated, sorted sentences (JSON: sentences may contain newlines)
        heads.npy               [n, L, H, d]   (when "heads" was requested)
        layers.npy              [n, L + 1, D]  (when "layers" was requested)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..vocab import VIEWS, atomic_write
from .checksums import first_non_finite, manifest_seal, quick_checksum, sha256_file
from .errors import CorruptEntry
from .features import StoredFeatures

#: Bump when the on-disk layout or the meaning of stored features changes; it is part of every key, so old entries
#: are simply never matched again (and can be removed with ``clear``).
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
SENTENCES = "sentences.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
#: A temp folder older than this is a dead writer's, whatever its process id says.
STALE_TMP_SECONDS = 24 * 3600
# Names the store gives its folders; nothing else under features/ is ever removed.
ENTRY_RE = re.compile(r"^[0-9a-f]{32}-(heads|layers|heads\+layers)$")
TMP_RE = re.compile(r"^\.tmp-[0-9a-f]{32}-(heads|layers|heads\+layers)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")
TRASH_RE = re.compile(r"^\.trash-[0-9a-f]{32}-(heads|layers|heads\+layers)-[0-9a-f]{8}$")

# In-process memo of opened disk entries, shared by every FeatureStore of the process (adapters may each build their
# own store object); keyed by (resolved features dir, entry name).
OPENED: dict[tuple[str, str], StoredFeatures] = {}


def views_tag(views: Sequence[str]) -> str:
    """The views part of an entry's folder name (``heads``, ``layers``, ``heads+layers``), in :data:`VIEWS` order."""
    return "+".join(v for v in VIEWS if v in views)


def fsync_path(path: Path) -> None:
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


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True))


def remove_tree(path: Path) -> int:
    """Remove a directory tree, first renaming it to a hidden trash name so that no reader sees a half-deleted entry.

    Returns the bytes freed.
    """
    if path.is_symlink() or not path.is_dir():  # never follow a link: the store makes none, its target is not ours
        return 0
    size = dir_size(path)
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:  # someone else removed it first
        return 0
    shutil.rmtree(trash, ignore_errors=True)
    return size - (dir_size(trash) if trash.exists() else 0)  # only what was actually freed


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover
        return False
    return True


class NpyWriter:
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


def new_manifest(
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


def read_manifest(path: Path) -> tuple[dict, str | None]:
    """``path/manifest.json`` and None when it is a manifest the store wrote (any format version), else ``({}, why)``."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"no {MANIFEST}"
    except (OSError, ValueError) as exc:
        return {}, f"unreadable {MANIFEST}: {exc}"
    if not isinstance(manifest, dict):
        return {}, f"{MANIFEST} is not a JSON object"
    missing = [k for k in ("format_version", "key_fields", "files", "created") if k not in manifest]
    if missing:
        return {}, f"{MANIFEST} lacks {', '.join(missing)}"
    if not isinstance(manifest["key_fields"], dict) or not isinstance(manifest["files"], dict):
        return {}, f"{MANIFEST}: key_fields/files are not objects"
    return manifest, None


def open_entry(
    path: Path, *, verify: str, expect: dict | None, sentences: list[str] | None
) -> StoredFeatures:
    """Validate and open an entry; raise :class:`CorruptEntry` saying what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptEntry(f"{MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptEntry(f"{MANIFEST}: not a format-{FORMAT_VERSION} manifest")
    key = manifest.get("key_fields")
    files = manifest.get("files")
    shapes = manifest.get("shapes")
    if not isinstance(key, dict) or not isinstance(files, dict) or not isinstance(shapes, dict):
        raise CorruptEntry(f"{MANIFEST}: missing key_fields/files/shapes")
    if verify != "none":
        validate_manifest(manifest)
    if expect is not None:
        for k, v in expect.items():
            if key.get(k) != v:
                raise CorruptEntry(f"{MANIFEST}: key field {k!r} is {key.get(k)!r}, expected {v!r}")
    for fname, meta in files.items():
        p = path / fname
        if not p.is_file():
            raise CorruptEntry(f"{fname}: missing")
        if verify == "none":
            continue
        if not isinstance(meta, dict):
            raise CorruptEntry(f"{MANIFEST}: the entry for {fname} is not an object")
        st = p.stat()
        if st.st_size != meta.get("size"):
            raise CorruptEntry(f"{fname}: size {st.st_size} != {meta.get('size')} in manifest")
        # Anything that wrote to the file after the commit changed its mtime: then only a full hash can tell.
        touched = "mtime_ns" in meta and st.st_mtime_ns != meta["mtime_ns"]
        if verify == "full" or touched:
            if sha256_file(p) != meta.get("sha256"):
                why = " (the file was modified after the entry was written)" if touched else ""
                raise CorruptEntry(f"{fname}: sha256 mismatch{why}")
        elif quick_checksum(p) != meta.get("quick"):
            raise CorruptEntry(f"{fname}: sampled checksum mismatch")

    arrays: dict[str, np.ndarray | None] = {"heads": None, "layers": None}
    for view, shape in shapes.items():
        fname = f"{view}.npy"
        if view not in arrays or fname not in files:
            raise CorruptEntry(f"{MANIFEST}: unknown view {view!r} or its file is not listed")
        try:
            arr = np.load(path / fname, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptEntry(f"{fname}: {exc}") from exc
        want_dtype = (manifest.get("dtypes") or {}).get(view)
        if list(arr.shape) != list(shape) or str(arr.dtype) != want_dtype:
            raise CorruptEntry(
                f"{fname}: .npy header says {arr.dtype}{list(arr.shape)}, manifest says {want_dtype}{list(shape)}"
            )
        if verify == "full":
            bad = first_non_finite(arr)
            if bad is not None:
                raise CorruptEntry(f"{fname}: non-finite value at row {bad} (the store never writes one)")
        arrays[view] = arr
    if sentences is None:
        try:
            sentences = json.loads((path / SENTENCES).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptEntry(f"{SENTENCES}: {exc}") from exc
    if not isinstance(sentences, list) or len(sentences) != manifest.get("n_sentences"):
        raise CorruptEntry(f"{SENTENCES}: does not hold {manifest.get('n_sentences')} sentences")
    return StoredFeatures(path.name, path, manifest, sentences, arrays["heads"], arrays["layers"])


def validate_manifest(manifest: dict) -> None:
    """The manifest as a whole: its seal, and every statement in it agreeing with the others (views, shapes, dtypes,
    files, model name, sentence count), so that no field outside the key can be edited and then shown as true."""
    if manifest.get("seal") != manifest_seal(manifest):
        raise CorruptEntry(f"{MANIFEST}: its seal does not match its content (edited after the entry was written, "
                            "or written by an older version)")
    key, shapes, dtypes, files = (manifest.get(k) for k in ("key_fields", "shapes", "dtypes", "files"))
    if not isinstance(dtypes, dict) or set(dtypes) != set(shapes) or set(manifest.get("views") or ()) != set(shapes):
        raise CorruptEntry(f"{MANIFEST}: views, shapes and dtypes name different views")
    for view, shape in shapes.items():
        if dtypes[view] != key.get("dtype"):
            raise CorruptEntry(f"{MANIFEST}: {view} dtype {dtypes[view]!r} is not the key's {key.get('dtype')!r}")
        if not isinstance(shape, list) or not shape or shape[0] != manifest.get("n_sentences"):
            raise CorruptEntry(f"{MANIFEST}: {view} shape {shape} does not hold n_sentences rows")
        chunks = (files.get(f"{view}.npy") or {}).get("chunks") if isinstance(files.get(f"{view}.npy"), dict) else None
        if not isinstance(chunks, dict) or not isinstance(chunks.get("crc32"), list) or not isinstance(
                chunks.get("rows"), int) or chunks["rows"] < 1 or len(chunks["crc32"]) != -(-shape[0] // chunks["rows"]):
            raise CorruptEntry(f"{MANIFEST}: {view}.npy has no valid per-chunk checksums")
    if manifest.get("model") != key.get("model"):
        raise CorruptEntry(f"{MANIFEST}: model {manifest.get('model')!r} is not the key's {key.get('model')!r}")
    if not isinstance(manifest.get("n_truncated"), int) or not 0 <= manifest["n_truncated"] <= manifest["n_sentences"]:
        raise CorruptEntry(f"{MANIFEST}: n_truncated {manifest.get('n_truncated')!r} is not a count of sentences")
