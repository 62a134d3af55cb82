"""Reading SentEval's data files the way SentEval does, with errors that name file:line: what every family's
loader (:mod:`senteval_anatomy.engine.families`) shares.

Nothing here knows a task by name: the facts a check needs (encoding, SentEval's line count of a file, the task
to name in the download hint) come from the task's :class:`~senteval_anatomy.engine.spec.TaskSpec`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .spec import DOWNLOAD_COMMAND, DataError, TaskSpec

__all__ = ["check_folder", "read_text", "file_lines", "split_lines", "task_file_lines", "task_split_lines", "score",
           "natural_key"]

_BOM = b"\xef\xbb\xbf"


def _fix_hint(name: str) -> str:
    return (f"get the data with `{DOWNLOAD_COMMAND.format(name=name)}` and point params.task_path at the folder "
            "that holds downstream/ and probing/")


def check_folder(root: Path, spec: TaskSpec) -> None:
    """Refuse a missing ``task_path``, task folder or data file before any parsing, naming the expected files and
    the download command."""
    if not root.is_dir():
        raise DataError(f"task_path {str(root)!r} is not a folder", path=root,
                        expected="a folder holding SentEval's downstream/ and probing/ folders",
                        fix=_fix_hint(spec.name))
    folder = root / spec.folder
    if not folder.is_dir():
        raise DataError(f"folder of task {spec.name} not found", path=folder,
                        expected="files " + ", ".join(os.path.relpath(f, spec.folder) for f in spec.files),
                        fix=_fix_hint(spec.name))
    missing = [f for f in spec.files if not (root / f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} file(s) of task {spec.name} missing", path=root / missing[0],
                        expected="files " + ", ".join(os.path.relpath(f, spec.folder) for f in spec.files)
                        + f" under {folder}",
                        fix=_fix_hint(spec.name))


def read_text(path: Path, encoding: str, *, full_lines: int | None = None, task: str | None = None) -> str:
    """Decode a whole file, with universal newlines (what ``io.open(path, encoding=...)`` does in text mode).

    A leading UTF-8 byte-order mark is dropped (SentEval would glue it to the first token or label).
    ``full_lines`` is the line count of SentEval's file, where known: a file with fewer lines whose last line has no
    newline was cut short (an interrupted copy or download) and is refused, naming that line and the download
    command of ``task``.
    """
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not valid {encoding} ({e.reason} at byte {e.start})", path=path, line=line,
                        expected=f"a {encoding} text file", fix=f"re-save the file as {encoding}") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if full_lines is not None and text and not text.endswith("\n"):
        n = text.count("\n") + 1
        if n < full_lines:
            raise DataError(
                f"the last line is cut short: the file ends mid-line after {n} of the {full_lines} lines of "
                "SentEval's file (an interrupted copy or download)", path=path, line=n,
                expected=f"complete lines, each ending with a newline ({full_lines} in SentEval's file)",
                fix=f"get the file again (`{DOWNLOAD_COMMAND.format(name=task or path.name)} --force`, or copy it "
                "again); a deliberate subset must end with a newline")
    return text


def file_lines(path: Path, encoding: str, *, full_lines: int | None = None, task: str | None = None) -> list[str]:
    """The lines ``for line in io.open(path)`` yields, without their newline."""
    text = read_text(path, encoding, full_lines=full_lines, task=task)
    if not text:
        raise DataError("file is empty", path=path, expected="one sample per line")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def split_lines(path: Path, encoding: str, *, full_lines: int | None = None, task: str | None = None) -> list[str]:
    """``io.open(path).read().splitlines()``."""
    lines = read_text(path, encoding, full_lines=full_lines, task=task).splitlines()
    if not lines:
        raise DataError("file is empty", path=path, expected="one sample per line")
    return lines


def task_file_lines(root: Path, spec: TaskSpec, rel: str) -> list[str]:
    """:func:`file_lines` of the task's file ``rel``, with the task's encoding and SentEval's line count."""
    return file_lines(root / rel, spec.encoding, full_lines=spec.file_lines.get(rel), task=spec.name)


def task_split_lines(root: Path, spec: TaskSpec, rel: str) -> list[str]:
    """:func:`split_lines` of the task's file ``rel``, with the task's encoding and SentEval's line count."""
    return split_lines(root / rel, spec.encoding, full_lines=spec.file_lines.get(rel), task=spec.name)


def score(value: str, path: Path, lineno: int, expected: str, lo: float = 0.0, hi: float = 5.0) -> float:
    """A gold score in ``[lo, hi]``, or a :class:`DataError` naming the line."""
    try:
        y = float(value)
    except ValueError:
        raise DataError(f"score {value!r} is not a number", path=path, line=lineno, expected=expected) from None
    if not math.isfinite(y) or not lo <= y <= hi:
        raise DataError(f"score {value!r} is outside [{lo:g}, {hi:g}]", path=path, line=lineno, expected=expected)
    return y


def natural_key(label: str) -> tuple[int, str]:
    """Sort key: numbers by value, then words."""
    return (int(label), "") if label.isdigit() else (1 << 30, label)
