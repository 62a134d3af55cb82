"""What can go wrong with the feature cache, as exception and warning types, and the one message for a cache
that cannot be written.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..vocab import CACHE_ENV_VAR

__all__ = ["CacheCorruptionError", "CacheCorruptionWarning", "CacheWriteError", "CorruptEntry", "NonFiniteFeaturesError", "write_error_message"]


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


def write_error_message(cache_dir: Path, exc: OSError) -> str:
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


class CorruptEntry(Exception):
    """Internal: raised by entry validation; the message says what is wrong with which file."""
