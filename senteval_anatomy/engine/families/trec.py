"""SentEval's TREC question classification: 6 coarse classes, train/test files (latin-1), ``kfold`` evaluator
(dev = cross-validation on train)."""

from __future__ import annotations

from pathlib import Path

from ..readers import task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "TREC_LABELS", "load_trec"]

#: TREC coarse classes.
TREC_LABELS: dict[str, int] = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}


def load_trec(root: Path, spec: TaskSpec):
    expected = "'COARSE:fine question words', COARSE one of " + ", ".join(TREC_LABELS)
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        X, y = [], []
        for i, line in enumerate(task_file_lines(root, spec, rel), 1):
            parts = line.strip().split(":", 1)
            if len(parts) != 2:
                raise DataError("no ':' after the coarse label", path=path, line=i, expected=expected)
            target, sample = parts
            if target not in TREC_LABELS:
                raise DataError(f"unknown TREC class {target!r}", path=path, line=i, expected=expected)
            fine_and_text = sample.split(" ", 1)
            if len(fine_and_text) != 2:
                raise DataError("no space between the fine label and the question", path=path, line=i,
                                expected=expected)
            X.append(fine_and_text[1].split())
            y.append(TREC_LABELS[target])
        data[split] = {"X": X, "y": y}
    return data, data["train"]["X"] + data["test"]["X"], list(spec.label_names)


_FILES = ("downstream/TREC/train_5500.label", "downstream/TREC/TREC_10.label")
_SIZES = {"train": 5452, "test": 500}

SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("TREC", "classification", "kfold", _FILES, len(TREC_LABELS), "acc", "downstream/TREC",
             ("train", "test"), family="trec", loader=load_trec, encoding="latin-1", sizes=_SIZES,
             file_lines={f: _SIZES[s] for s, f in zip(("train", "test"), _FILES)},  # no header
             label_names=tuple(TREC_LABELS)),
)
