"""The data a fine-tuning run trains, selects and tests on.

SentEval tasks are read with the package's own loaders (:func:`senteval_anatomy.engine.load_task`: the same files,
checks and error messages as every sweep), so a fine-tuned number and a probing number are on the same data and carry
the same ``data_hash``. A GLUE-format folder (``train.tsv`` / ``dev.tsv``, as the paper's ``examples/glue`` used) is
read here.

Dev-only selection needs a dev split. SentEval's MRPC and TREC have none (SentEval cross-validates on train), and a
GLUE folder's ``dev.tsv`` is what the paper reported as "test" (GLUE's test labels are hidden). For those, a fixed
slice of train, drawn with ``split_seed``, is held out as dev; the rows record it (``dev_source``) and the key
includes it. The slice does not depend on the training seed, so every seed and readout selects on the same dev set
and a paired comparison across readouts is paired on data too.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import load_task
from ..sweeping.identity import data_hash

__all__ = ["FINETUNE_TASKS", "FinetuneData", "GlueFormatError", "Split", "load_finetune_data", "load_glue_folder"]

#: SentEval tasks a model can be fine-tuned on (supervised, with a train split).
FINETUNE_TASKS = ("SST2", "SST5", "TREC", "MRPC", "SICKEntailment", "SICKRelatedness", "STSBenchmark")

#: GLUE column layouts: (first text column, second text column or None, label column). First match wins.
_GLUE_LAYOUTS = (
    ("#1 String", "#2 String", "Quality"),  # MRPC
    ("sentence1", "sentence2", "score"),  # STS-B (regression)
    ("sentence1", "sentence2", "label"),  # RTE, WNLI
    ("question1", "question2", "is_duplicate"),  # QQP
    ("question", "sentence", "label"),  # QNLI
    ("sentence", None, "label"),  # SST-2
)


class GlueFormatError(ValueError):
    """A GLUE-format folder that cannot be read (a missing file or column): a user's mistake."""


@dataclass
class Split:
    """One split: first texts, second texts (pair tasks) or None, and labels (int classes or float scores)."""

    a: list[str]
    b: list[str] | None
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def take(self, idx: np.ndarray) -> Split:
        return Split([self.a[i] for i in idx], None if self.b is None else [self.b[i] for i in idx], self.y[idx])


@dataclass
class FinetuneData:
    """A task's train / dev / test splits and the facts that key its results."""

    name: str
    regression: bool
    n_labels: int  # 1 for regression
    splits: dict[str, Split]
    dev_source: str  # "file" or "train-holdout:<fraction>:seed<split_seed>"
    data_hash: str
    test_source: str = "file"  # GLUE folders: "glue-dev.tsv" (the paper's "test")
    label_names: list[str] | None = None
    select_task: str | None = None  # the SentEval task whose sweep chooses best-layer / top-k heads
    extra: dict = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return "pearson" if self.regression else "acc"

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def _holdout(train: Split, fraction: float, split_seed: int) -> tuple[Split, Split]:
    """Split train into (train, dev) with a fixed seeded permutation."""
    if not 0 < fraction < 1:
        raise ValueError(f"--dev-fraction {fraction}: give a fraction in (0, 1)")
    n = len(train)
    n_dev = max(1, int(round(n * fraction)))
    if n_dev >= n:
        raise ValueError(f"train has {n} examples: too few to hold out a dev slice of {fraction}")
    perm = np.random.RandomState(split_seed).permutation(n)
    return train.take(np.sort(perm[n_dev:])), train.take(np.sort(perm[:n_dev]))


def _subset(split: Split, limit: int | None, seed: int) -> Split:
    if limit is None or limit >= len(split):
        return split
    perm = np.random.RandomState(seed).permutation(len(split))
    return split.take(np.sort(perm[:limit]))


def _limit(data: FinetuneData, limits: dict[str, int | None] | None, split_seed: int) -> FinetuneData:
    """Fixed seeded subsets of each split (benchmarks and tests on a CPU); recorded in ``extra`` and the key."""
    if not limits or not any(limits.values()):
        return data
    data.splits = {k: _subset(v, limits.get(k), split_seed) for k, v in data.splits.items()}
    data.extra["subset"] = {k: v for k, v in limits.items() if v}
    return data


def load_finetune_data(task: str, task_path: str | Path, *, dev_fraction: float = 0.1, split_seed: int = 0,
                       limits: dict[str, int | None] | None = None) -> FinetuneData:
    """Train / dev / test of a SentEval task, read by the package's loaders; MRPC and TREC get a held-out dev."""
    if task not in FINETUNE_TASKS:
        raise ValueError(f"--task {task!r}: fine-tuning works on {', '.join(FINETUNE_TASKS)} or a GLUE folder "
                         "(--glue DIR)")
    loaded = load_task(task, task_path)
    spec = loaded.spec
    regression = spec.kind == "relatedness"
    splits: dict[str, Split] = {}
    for name, rec in loaded.data.items():
        join = " ".join
        if "X" in rec:
            splits[name] = Split([join(s) for s in rec["X"]], None,
                                 np.asarray(rec["y"], dtype=np.float32 if regression else np.int64))
        else:
            splits[name] = Split([join(s) for s in rec["A"]], [join(s) for s in rec["B"]],
                                 np.asarray(rec["y"], dtype=np.float32 if regression else np.int64))
    dev_source = "file"
    if "dev" not in splits:
        splits["train"], splits["dev"] = _holdout(splits["train"], dev_fraction, split_seed)
        dev_source = f"train-holdout:{dev_fraction:g}:seed{split_seed}"
    n_labels = 1 if regression else int(loaded.n_classes or int(splits["train"].y.max()) + 1)
    data = FinetuneData(task, regression, n_labels, {k: splits[k] for k in ("train", "dev", "test")}, dev_source,
                        data_hash(loaded), label_names=loaded.label_names, select_task=task)
    return _limit(data, limits, split_seed)


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise GlueFormatError(f"{path}: missing; a GLUE-format folder holds train.tsv and dev.tsv (with a header "
                              "line, tab-separated)")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise GlueFormatError(f"{path}: empty; expected a header line and data lines")
    return [c.strip() for c in rows[0]], rows[1:]


def load_glue_folder(path: str | Path, *, dev_fraction: float = 0.1, split_seed: int = 0,
                     select_task: str | None = None, limits: dict[str, int | None] | None = None) -> FinetuneData:
    """A GLUE-format folder: ``train.tsv`` (train, with a seeded dev slice held out) and ``dev.tsv`` (the test
    split here, since GLUE's test labels are hidden: the paper's "test" numbers are these GLUE dev numbers)."""
    root = Path(path)
    if not root.is_dir():
        raise GlueFormatError(f"--glue {root}: not a folder; give the folder that holds train.tsv and dev.tsv")
    tables = {name: _read_tsv(root / f"{name}.tsv") for name in ("train", "dev")}
    header = tables["train"][0]
    layout = next((lay for lay in _GLUE_LAYOUTS if all(c is None or c in header for c in lay)), None)
    if layout is None:
        wanted = "; ".join(" + ".join(c for c in lay if c) for lay in _GLUE_LAYOUTS)
        raise GlueFormatError(f"{root / 'train.tsv'}: line 1 has columns {header}; a GLUE task needs one of: "
                              f"{wanted}")
    a_col, b_col, y_col = layout
    regression = y_col == "score"
    raw: dict[str, tuple[list[str], list[str] | None, list[str]]] = {}
    for name, (head, rows) in tables.items():
        missing = [c for c in layout if c is not None and c not in head]
        if missing:
            raise GlueFormatError(f"{root / (name + '.tsv')}: line 1 lacks column(s) {missing} (has {head}); "
                                  "train.tsv and dev.tsv need the same columns")
        ia, iy = head.index(a_col), head.index(y_col)
        ib = head.index(b_col) if b_col else None
        need = max(i for i in (ia, ib, iy) if i is not None)
        A, B, Y = [], [] if b_col else None, []
        for lineno, row in enumerate(rows, 2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= need:
                raise GlueFormatError(f"{root / (name + '.tsv')}:{lineno}: {len(row)} fields, need {need + 1} "
                                      f"(columns {head})")
            A.append(row[ia])
            if B is not None:
                B.append(row[ib])
            Y.append(row[iy].strip())
        if not A:
            raise GlueFormatError(f"{root / (name + '.tsv')}: no data lines after the header")
        raw[name] = (A, B, Y)
    if regression:
        def conv(values: list[str], name: str) -> np.ndarray:
            try:
                return np.asarray([float(v) for v in values], dtype=np.float32)
            except ValueError as exc:
                raise GlueFormatError(f"{root / (name + '.tsv')}: a score is not a number ({exc})") from None
        label_names = None
    else:
        label_names = sorted(set(raw["train"][2]), key=lambda v: (len(v), v))
        index = {v: i for i, v in enumerate(label_names)}

        def conv(values: list[str], name: str) -> np.ndarray:
            unknown = sorted(set(values) - set(index))
            if unknown:
                raise GlueFormatError(f"{root / (name + '.tsv')}: label(s) {unknown[:5]} do not occur in train.tsv")
            return np.asarray([index[v] for v in values], dtype=np.int64)
    splits = {name: Split(a, b, conv(y, name)) for name, (a, b, y) in raw.items()}
    train, dev = _holdout(splits["train"], dev_fraction, split_seed)
    h = hashlib.sha256()
    for name in ("train", "dev"):
        h.update((root / f"{name}.tsv").read_bytes())
    h.update(json.dumps({"layout": layout}).encode())
    data = FinetuneData(f"glue:{root.name}", regression, 1 if regression else len(label_names or []),
                        {"train": train, "dev": dev, "test": splits["dev"]},
                        f"train-holdout:{dev_fraction:g}:seed{split_seed}", h.hexdigest()[:16],
                        test_source="glue-dev.tsv", label_names=label_names, select_task=select_task)
    return _limit(data, limits, split_seed)
