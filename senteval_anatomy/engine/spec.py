"""What a task *is*: :class:`TaskSpec`, the one record of every per-task fact, and :class:`DataError`.

Each SentEval task family declares its tasks' specs in its own file (:mod:`senteval_anatomy.engine.families`); the
registry (:mod:`senteval_anatomy.engine.registry`) orders and looks them up; everything else (the engine's loaders
and evaluators, the data downloader and checker, the sweep's memory plan, the tables' grouping) reads the spec
instead of keeping its own name-keyed table. This module imports nothing of the package, so a family file (which
imports it) never closes an import cycle with the registry (which imports the families).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DataError", "TaskSpec", "DOWNLOAD_COMMAND", "KINDS", "EVALUATORS"]

#: How users get the data (named in every missing-file error).
DOWNLOAD_COMMAND = "python -m senteval_anatomy.data download --tasks {name}"

#: Task kinds: what the embeddings of a split hold (see :mod:`senteval_anatomy.engine.tasks`).
KINDS: tuple[str, ...] = ("classification", "pair_classification", "relatedness", "sts")
#: SentEval's evaluators (``senteval_anatomy.engine.protocol.evaluator_call``).
EVALUATORS: tuple[str, ...] = ("split", "kfold", "innerkfold", "relatedness", "sts")


class DataError(ValueError):
    """A task's data is missing or malformed.

    Attributes
    ----------
    path : str or None
        The file (or folder) at fault.
    line : int or None
        1-based line number, when one line is at fault.
    expected : str or None
        What the engine expected to find.
    fix : str or None
        How to fix it.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 expected: str | None = None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        self.expected = expected
        self.fix = fix
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        text = where + message
        if expected:
            text += f"\n  expected: {expected}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)

    def __reduce__(self):  # keep path/line/expected/fix through pickling (multiprocessing, joblib)
        return (_rebuild_data_error, (self.message, self.path, self.line, self.expected, self.fix))


def _rebuild_data_error(message, path, line, expected, fix) -> DataError:
    return DataError(message, path=path, line=line, expected=expected, fix=fix)


Loader = Callable[[Path, "TaskSpec"], tuple[dict, list, "list[str] | None"]]
"""A family's reader: ``loader(task_path, spec) -> (data, samples, label_names)``; raises :class:`DataError`."""


@dataclass(frozen=True)
class TaskSpec:
    """Every static fact about one task, in one place.

    Attributes
    ----------
    name : str
        SentEval's task name.
    kind : {'classification', 'pair_classification', 'relatedness', 'sts'}
    evaluator : {'split', 'kfold', 'innerkfold', 'relatedness', 'sts'}
    files : tuple of str
        Data files, relative to ``params.task_path``.
    n_classes : int or None
        Number of classes (None when read from the data: probing tasks; or not a classification).
    main_metric : {'acc', 'pearson'}
        The result key that summarises the task (STS: ``result['all']['pearson']['mean']``).
    folder : str
        The task's folder, relative to ``task_path``.
    splits : tuple of str
        Keys of the ``embeddings`` dict (STS: sub-dataset names).
    family : str
        The family file that declares it (``binary``, ``sst``, ``trec``, ``mrpc``, ``sick``, ``sts``, ``probing``).
    loader : callable
        The family's reader (:data:`Loader`).
    group : str or None
        The named group it belongs to: the reference notebooks' probing groups (``surface``, ``syntactic``,
        ``semantic``) or the downloader's downstream groups (``classification``, ``sst``, ``sick``, ``sts``).
    dataset : str
        The download unit that provides its files (``SICK`` for both SICK tasks; otherwise the task's name).
    sizes : mapping or None
        SentEval's standard size of each split (items; STS: scored pairs per sub-dataset); None when not pinned
        down. The data check compares the parsed sizes with it.
    file_lines : mapping
        Line counts (``wc -l``, header lines included) of SentEval's files, by path relative to ``task_path``,
        where known: they tell a file cut short from a deliberate subset; the downloader verifies its outputs
        against them.
    approx_size : str or None
        A loose size, where the exact one is not pinned down (``about 3.8k``), for the data check's notes.
    labels : frozenset of str or None
        The fixed label set a probing task's files may use (anything else is refused); None for WordContent
        (whose rule is checked instead) and for tasks whose loader maps labels itself.
    label_names : tuple of str or None
        Names of the class ids of a fixed-class task (None: read from the data, or not a classification).
    standard_classes : int or None
        How many classes SentEval's data uses (probing tasks; the data check notes a different count).
    has_dev : bool
        Whether the result has a dev score to select on (False for STS12-16: unsupervised cosine similarity).
    encoding : str
        The encoding SentEval opens the files with (``latin-1`` for CR, MR, MPQA, SUBJ, TREC; else ``utf-8``).
    force_linear : bool
        The probe is always linear (``nhid = 0``), whatever ``params.classifier`` says (WordContent).
    extra_f1 : bool
        The result also reports the F1 of the refit model's test predictions (MRPC).
    """

    name: str
    kind: str
    evaluator: str
    files: tuple[str, ...]
    n_classes: int | None
    main_metric: str
    folder: str
    splits: tuple[str, ...]
    family: str = field(kw_only=True)
    loader: Loader = field(kw_only=True, repr=False, compare=False)
    group: str | None = field(default=None, kw_only=True)
    dataset: str = field(default="", kw_only=True)
    sizes: Mapping[str, int] | None = field(default=None, kw_only=True, hash=False)  # dicts: compared, not hashed
    file_lines: Mapping[str, int] = field(default_factory=dict, kw_only=True, hash=False)
    approx_size: str | None = field(default=None, kw_only=True)
    labels: frozenset[str] | None = field(default=None, kw_only=True)
    label_names: tuple[str, ...] | None = field(default=None, kw_only=True)
    standard_classes: int | None = field(default=None, kw_only=True)
    has_dev: bool = field(default=True, kw_only=True)
    encoding: str = field(default="utf-8", kw_only=True)
    force_linear: bool = field(default=False, kw_only=True)
    extra_f1: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        # Checked once here, so a new family file with a typo fails at import, naming the task and the field.
        if self.kind not in KINDS:
            raise ValueError(f"TaskSpec {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"TaskSpec {self.name!r}: evaluator {self.evaluator!r} is not one of "
                             f"{', '.join(EVALUATORS)}")
        if not self.files:
            raise ValueError(f"TaskSpec {self.name!r}: no data files")
        if self.sizes is not None and set(self.sizes) != set(self.splits):
            raise ValueError(f"TaskSpec {self.name!r}: sizes name {sorted(self.sizes)}, splits are "
                             f"{list(self.splits)}")
        unknown = set(self.file_lines) - set(self.files)
        if unknown:
            raise ValueError(f"TaskSpec {self.name!r}: file_lines names files it does not read: {sorted(unknown)}")
        object.__setattr__(self, "dataset", self.dataset or self.name)
        object.__setattr__(self, "sizes", None if self.sizes is None else dict(self.sizes))
        object.__setattr__(self, "file_lines", dict(self.file_lines))

    @property
    def is_probing(self) -> bool:
        return self.family == "probing"

    @property
    def pair(self) -> bool:
        """Whether every item is a sentence pair (the sweep's memory plan doubles the feature size)."""
        return self.kind in ("pair_classification", "relatedness", "sts")

    def info(self) -> dict[str, Any]:
        """The spec as plain data (for tests and docs): every field but the loader."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "loader"}
        for k in ("sizes", "file_lines"):
            out[k] = None if out[k] is None else dict(out[k])
        return out
