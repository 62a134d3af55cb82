"""SentEval's binary classification family: CR, MR, MPQA, SUBJ.

One pool of sentences per task, a positive file and a negative file (SentEval reads them as latin-1), no dev split:
the evaluator is nested cross-validation (``innerkfold``). To add a fifth binary data set, add one
:func:`binary_task` line to :data:`SPECS` and one download recipe in ``senteval_anatomy/data/sources.py``.
"""

from __future__ import annotations

from pathlib import Path

from ..readers import task_split_lines
from ..spec import TaskSpec

__all__ = ["SPECS", "binary_task", "load_binary"]


def load_binary(root: Path, spec: TaskSpec):
    """Label 1 for every line of the first file, 0 for the second: SentEval's ``BinaryClassifierEval``."""
    pos = [line.split() for line in task_split_lines(root, spec, spec.files[0])]
    neg = [line.split() for line in task_split_lines(root, spec, spec.files[1])]
    samples = pos + neg
    data = {"all": {"X": samples, "y": [1] * len(pos) + [0] * len(neg)}}
    return data, list(samples), list(spec.label_names)


def binary_task(name: str, label1: tuple[str, int | None], label0: tuple[str, int | None], *,
                label_names: tuple[str, str] = ("negative", "positive"), approx_size: str | None = None) -> TaskSpec:
    """The spec of a binary task under ``downstream/<name>/``: ``label1``/``label0`` are ``(file name, SentEval's
    line count or None)`` of the label-1 and label-0 files; ``label_names`` name class 0 then class 1."""
    folder = f"downstream/{name}"
    files = (f"{folder}/{label1[0]}", f"{folder}/{label0[0]}")
    counts = (label1[1], label0[1])
    known = None not in counts
    return TaskSpec(
        name, "classification", "innerkfold", files, 2, "acc", folder, ("all",),
        family="binary", loader=load_binary, group="classification", encoding="latin-1",
        sizes={"all": sum(counts)} if known else None,
        file_lines={f: n for f, n in zip(files, counts) if n is not None},
        approx_size=approx_size, label_names=label_names,
    )


SPECS: tuple[TaskSpec, ...] = (
    binary_task("CR", ("custrev.pos", None), ("custrev.neg", None), approx_size="about 3.8k"),
    binary_task("MR", ("rt-polarity.pos", 5331), ("rt-polarity.neg", 5331)),
    binary_task("MPQA", ("mpqa.pos", None), ("mpqa.neg", None), approx_size="about 10.6k"),
    binary_task("SUBJ", ("subj.objective", 5000), ("subj.subjective", 5000),
                label_names=("subjective", "objective")),
)
