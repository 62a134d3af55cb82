"""SentEval's SICK family: SICKRelatedness (a score in [0, 5], ``relatedness`` evaluator) and SICKEntailment (3
classes, ``split`` evaluator), both read from the same train/trial/test files (header line, UTF-8)."""

from __future__ import annotations

from pathlib import Path

from ..readers import score, task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "SICK_LABELS", "load_sick"]

#: SICK entailment labels.
SICK_LABELS: dict[str, int] = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}


def load_sick(root: Path, spec: TaskSpec):
    entailment = spec.kind == "pair_classification"
    if entailment:
        expected = ("TSV 'pair_ID<TAB>sentence_A<TAB>sentence_B<TAB>relatedness_score<TAB>entailment_judgment' "
                    "with a judgment in " + ", ".join(SICK_LABELS) + ", after a header line")
    else:
        expected = ("TSV 'pair_ID<TAB>sentence_A<TAB>sentence_B<TAB>relatedness_score...' with a score in [0, 5], "
                    "after a header line")
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        lines = task_file_lines(root, spec, rel)
        if len(lines) < 2:
            raise DataError("no data lines after the header", path=path, expected=expected)
        A, B, y = [], [], []
        for i, line in enumerate(lines[1:], 2):
            text = line.strip().split("\t")
            need = 5 if entailment else 4
            if len(text) < need:
                raise DataError(f"{len(text)} TAB-separated fields, need {need}", path=path, line=i,
                                expected=expected)
            if entailment:
                if text[4] not in SICK_LABELS:
                    raise DataError(f"unknown entailment label {text[4]!r}", path=path, line=i, expected=expected)
                label = SICK_LABELS[text[4]]
            else:
                label = score(text[3], path, i, expected)
            A.append(text[1].split())
            B.append(text[2].split())
            y.append(label)
        data[split] = {"A": A, "B": B, "y": y}
    samples = []
    for split in spec.splits:
        samples += data[split]["A"] + data[split]["B"]
    return data, samples, (list(spec.label_names) if entailment else None)


_SPLITS = ("train", "dev", "test")
_FILES = tuple(f"downstream/SICK/SICK_{s}.txt" for s in ("train", "trial", "test_annotated"))
_SIZES = {"train": 4500, "dev": 500, "test": 4927}
_LINES = {f: _SIZES[s] + 1 for s, f in zip(_SPLITS, _FILES)}  # + the header line
_COMMON = dict(family="sick", loader=load_sick, group="sick", dataset="SICK", sizes=_SIZES, file_lines=_LINES)

SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("SICKRelatedness", "relatedness", "relatedness", _FILES, None, "pearson", "downstream/SICK", _SPLITS,
             **_COMMON),
    TaskSpec("SICKEntailment", "pair_classification", "split", _FILES, len(SICK_LABELS), "acc", "downstream/SICK",
             _SPLITS, label_names=tuple(SICK_LABELS), **_COMMON),
)
