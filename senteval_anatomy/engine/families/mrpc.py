"""SentEval's MRPC paraphrase detection: sentence pairs, train/test files with a header line, ``kfold``
evaluator; the result also carries the F1 of the refit model's test predictions."""

from __future__ import annotations

from pathlib import Path

from ..readers import task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "load_mrpc"]


def load_mrpc(root: Path, spec: TaskSpec):
    expected = "TSV 'Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String' with Quality 0 or 1, after a header line"
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        lines = task_file_lines(root, spec, rel)
        head = lines[0].lstrip("\ufeff").strip().split("\t")
        if head[0].strip() in ("0", "1") and len(head) >= 5:
            raise DataError("the first line looks like data, but it is dropped as the header", path=path, line=1,
                            expected="the MRPC header line 'Quality<TAB>#1 ID<TAB>...' first",
                            fix="restore the header line (SentEval always drops line 1)")
        if len(lines) < 2:
            raise DataError("no data lines after the header", path=path, expected=expected)
        A, B, y = [], [], []
        for i, line in enumerate(lines[1:], 2):
            text = line.strip().split("\t")
            if len(text) < 5:
                raise DataError(f"{len(text)} TAB-separated fields", path=path, line=i, expected=expected)
            if text[0].strip() not in ("0", "1"):
                raise DataError(f"label {text[0]!r} is not 0 or 1", path=path, line=i, expected=expected)
            A.append(text[3].split())
            B.append(text[4].split())
            y.append(int(text[0]))
        data[split] = {"A": A, "B": B, "y": y}
    samples = data["train"]["A"] + data["train"]["B"] + data["test"]["A"] + data["test"]["B"]
    return data, samples, list(spec.label_names)


_FILES = ("downstream/MRPC/msr_paraphrase_train.txt", "downstream/MRPC/msr_paraphrase_test.txt")
_SIZES = {"train": 4076, "test": 1725}

SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("MRPC", "pair_classification", "kfold", _FILES, 2, "acc", "downstream/MRPC", ("train", "test"),
             family="mrpc", loader=load_mrpc, sizes=_SIZES,
             file_lines={f: _SIZES[s] + 1 for s, f in zip(("train", "test"), _FILES)},  # + the header line
             label_names=("not paraphrase", "paraphrase"), extra_f1=True),
)
