"""Argument checks of ``finetune`` that need no model: plain functions raising ``ValueError`` with one line that names
the argument and the fix, so that any entry point (this command, a future shared validator) can call them before
anything is trained."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .readouts import ReadSpec, parse_read

__all__ = ["check_disk", "check_out_dir", "parse_reads", "parse_seeds"]


def parse_reads(values: Sequence[str] | None) -> list[ReadSpec]:
    """``--read`` values (repeatable; default ``last``); a value named twice is refused."""
    specs = [parse_read(v) for v in (values or ["last"])]
    seen = [s.text for s in specs]
    dup = sorted({t for t in seen if seen.count(t) > 1})
    if dup:
        raise ValueError(f"--read {dup[0]} is given twice")
    return specs


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2,3,4``: distinct non-negative integers."""
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise ValueError(f"--seeds {text!r}: give comma-separated integers such as 0,1,2,3,4 (no empty item)")
    try:
        seeds = [int(t) for t in items]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give comma-separated integers such as 0,1,2,3,4") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: seeds must be distinct and >= 0")
    return seeds


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_out_dir(path: str | Path) -> Path:
    """``--out`` is (or can become) a folder we can write in: checked by writing an anonymous temporary file."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: this is a file, not a folder; give a folder (it is created if missing)")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise ValueError(f"--out {out}: {base} is a file, so no folder can be made under it; give another folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write in {base} ({exc.strerror}); give a writable folder") from None
    return out


def check_disk(path: str | Path, need_bytes: int, what: str) -> None:
    """Enough free space under ``path`` for ``need_bytes`` (``what`` says for what), else ``ValueError``."""
    base = _nearest_existing(Path(path))
    free = shutil.disk_usage(base).free
    if free < need_bytes:
        raise ValueError(f"--out {path}: {free / 2**20:.1f} MiB free on its disk, but {what} needs about "
                         f"{need_bytes / 2**20:.1f} MiB; free space or give --out on another disk")
