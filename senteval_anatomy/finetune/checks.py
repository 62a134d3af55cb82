"""Argument checks of ``finetune`` that need no model: plain functions raising ``ValueError`` with one line that names
the argument and the fix, so that any entry point (this command, a future shared validator) can call them before
anything is trained. Lists of numbers (seeds) and counts are read with the package's shared validators
(:mod:`senteval_anatomy.vocab`), so a mistake reads the same here as in ``sweep`` and the other commands."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..vocab import check_count, check_whole_list, plain
from .readouts import ReadSpec, parse_read

__all__ = ["check_disk", "check_limits", "check_out_dir", "parse_reads", "parse_seeds"]


def parse_reads(values: Sequence[str] | None) -> list[ReadSpec]:
    """``--read`` values (repeatable; default ``last``); a value named twice is refused (a repeated flag is a typo
    on the command line, docs/reliability.md)."""
    specs = [parse_read(v) for v in (values or ["last"])]
    seen = [s.text for s in specs]
    dup = sorted({t for t in seen if seen.count(t) > 1})
    if dup:
        raise ValueError(f"--read {dup[0]} is given twice")
    return specs


def parse_seeds(value: Any, *, what: str = "seeds") -> list[int]:
    """Fine-tuning seeds: ``"0,1,2,3,4"``, a list/tuple or a NumPy array of whole numbers >= 0, each once in the order
    given, read by :func:`~senteval_anatomy.vocab.check_whole_list`, the one way the package reads a list of numbers
    (``--ks`` too): ``"0,,1"`` is a typo, ``2.5`` and ``True`` are refused (a bool is never a seed to a user), an
    empty list names nothing. ``what`` names the argument in the one-line error (``--seeds`` on the command line)."""
    return check_whole_list(value, what=what, low=0, example="0,1,2,3,4")


def check_limits(limits: Mapping[str, Any] | None) -> dict[str, int | None]:
    """``--limit-train/-dev/-test``: ``None`` (all) or a whole number >= 2 (one example per class at the least)."""
    out: dict[str, int | None] = {}
    for split, v in (limits or {}).items():
        out[split] = None if v is None else check_count(plain(v), what=f"--limit-{split}", low=2,
                                                        why="a split needs at least 2 examples")
    return out


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
