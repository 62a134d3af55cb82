"""SentEval's SST family: SST2 (binary) and SST5 (fine-grained) sentiment, train/dev/test files, ``split``
evaluator. SST2 lines are ``sentence<TAB>label``; SST5 lines are ``label sentence``."""

from __future__ import annotations

from pathlib import Path

from ..readers import task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "load_sst"]

_NAMES = {2: ("negative", "positive"), 5: ("very negative", "negative", "neutral", "positive", "very positive")}


def load_sst(root: Path, spec: TaskSpec):
    n = spec.n_classes
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        X, y = [], []
        for i, line in enumerate(task_file_lines(root, spec, rel), 1):
            if n == 2:
                expected = "'sentence<TAB>label' with label 0 or 1"
                sample = line.strip().split("\t")
                if len(sample) < 2:
                    raise DataError("no TAB-separated label", path=path, line=i, expected=expected)
                sent, lab = sample[0], sample[1]
            else:
                expected = "'label sentence' with label 0..4 followed by a space"
                sample = line.strip().split(" ", 1)
                if len(sample) < 2:
                    raise DataError("no 'label sentence' pair", path=path, line=i, expected=expected)
                lab, sent = sample[0], sample[1]
            try:
                label = int(lab)
            except ValueError:
                raise DataError(f"label {lab!r} is not an integer", path=path, line=i, expected=expected) from None
            if not 0 <= label < n:
                raise DataError(f"label {label} is not a {spec.name} label", path=path, line=i, expected=expected)
            X.append(sent.split())
            y.append(label)
        data[split] = {"X": X, "y": y}
    samples = data["train"]["X"] + data["dev"]["X"] + data["test"]["X"]
    return data, samples, list(spec.label_names)


def _sst(name: str, sub: str, n_classes: int, sizes: dict[str, int]) -> TaskSpec:
    folder = f"downstream/SST/{sub}"
    splits = ("train", "dev", "test")
    files = tuple(f"{folder}/sentiment-{s}" for s in splits)
    return TaskSpec(name, "classification", "split", files, n_classes, "acc", folder, splits,
                    family="sst", loader=load_sst, group="sst", sizes=sizes,
                    file_lines={f: sizes[s] for s, f in zip(splits, files)},  # one sentence a line, no header
                    label_names=_NAMES[n_classes])


SPECS: tuple[TaskSpec, ...] = (
    _sst("SST2", "binary", 2, {"train": 67349, "dev": 872, "test": 1821}),
    _sst("SST5", "fine", 5, {"train": 8544, "dev": 1101, "test": 2210}),
)
