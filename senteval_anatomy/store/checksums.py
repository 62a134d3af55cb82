"""The checksums a cache entry records and checks: the full SHA-256 of a file, the sampled *quick* checksum every open
uses, per-chunk CRC-32s that every read checks, the manifest's seal, and the scan for non-finite values.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CHUNK_BYTES", "MIB", "N_SAMPLES", "SAMPLE_BLOCK", "chunk_checksums", "chunk_crc", "first_non_finite", "manifest_seal", "quick_checksum", "rows_per_chunk", "sha256_file"]


MIB = 1 << 20
#: The quick checksum reads the first and last MiB and this many evenly spaced blocks of this size.
SAMPLE_BLOCK = 64 << 10
N_SAMPLES = 16


def sha256_file(path: Path) -> str:
    """SHA-256 of a whole file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def quick_checksum(path: Path) -> str:
    """SHA-256 over the file size, its first and last MiB and 16 evenly spaced 64 KiB blocks (at most ~3 MiB read)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= 3 * MIB:
            h.update(f.read())
            return h.hexdigest()
        h.update(f.read(MIB))
        span = size - 2 * MIB - SAMPLE_BLOCK
        for i in range(N_SAMPLES):
            f.seek(MIB + span * i // (N_SAMPLES - 1))
            h.update(f.read(SAMPLE_BLOCK))
        f.seek(size - MIB)
        h.update(f.read(MIB))
    return h.hexdigest()


#: Rows per checksummed chunk are chosen so that a chunk is about this many bytes: small enough that the trainer's
#: first read of a row checks little more than it reads, large enough that the manifest stays small.
CHUNK_BYTES = 1 << 20


def rows_per_chunk(shape: Sequence[int], itemsize: int) -> int:
    row_bytes = max(1, itemsize * int(np.prod(shape[1:], dtype=np.int64)))
    return max(1, CHUNK_BYTES // row_bytes)


def chunk_crc(arr: np.ndarray, start: int, stop: int) -> int:
    """CRC-32 of the raw bytes of rows ``start:stop`` of a C-ordered array (a memory map reads just those pages)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(arr[start:stop])).cast("B"))


def chunk_checksums(path: Path) -> dict:
    """Per-chunk CRC-32s of an ``.npy`` file's rows: what every read of the entry verifies (see StoredFeatures)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    rpc = rows_per_chunk(arr.shape, arr.dtype.itemsize)
    crcs = [chunk_crc(arr, start, start + rpc) for start in range(0, arr.shape[0], rpc)]
    del arr
    return {"rows": rpc, "crc32": crcs}


def manifest_seal(manifest: dict) -> str:
    """SHA-256 of the whole manifest (every field but the seal itself): an edited model name, n_truncated, shape or
    checksum shows as a broken seal, not as a true statement about the entry."""
    body = {k: v for k, v in manifest.items() if k != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def first_non_finite(arr: np.ndarray, chunk_bytes: int = 32 * MIB) -> int | None:
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
