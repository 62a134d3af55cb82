"""Task registry, loaders and the embedding step of the built-in engine.

A task run is split in three steps that ``SE.eval`` chains (and that a sweep can call separately):

1. :func:`load_task` parses and validates every file of the task (errors: :class:`DataError`, naming file:line);
2. :meth:`Task.embed` calls ``batcher(params, batch)`` exactly as SentEval does (same sort key, same
   ``batch_size`` chunks, split order train -> dev -> test, all A batches of a split then all B batches for pair
   tasks, A/B alternation for STS12-16) and returns the stacked embeddings;
3. :meth:`Task.evaluate` runs SentEval's evaluator for the task on those embeddings and returns SentEval's result
   dict.

Layout of the ``embeddings`` dict (``n`` rows per split, in SentEval's sorted order; ``d`` = embedding size):

=====================  ===============================================================================================
task kind / evaluator  layout
=====================  ===============================================================================================
classification, split  ``{"train"|"dev"|"test": {"X": [n, d], "y": int64 [n]}}`` (SST2, SST5, probing)
classification, kfold  ``{"train"|"test": {"X", "y"}}`` (TREC; no dev split: dev = cross-validation)
classification,        ``{"all": {"X", "y"}}`` (CR, MR, MPQA, SUBJ: one pool, nested cross-validation)
innerkfold
pair_classification    ``{split: {"A": [n, d], "B": [n, d], "y": int64 [n]}}`` (MRPC: train/test; SICKEntailment:
                       train/dev/test). Pair features are built by :func:`pair_features` inside ``evaluate``.
relatedness            ``{"train"|"dev"|"test": {"A", "B", "y": float64 [n] raw scores}}`` (SICKRelatedness,
                       STSBenchmark)
sts                    ``{sub_dataset: {"A", "B", "gold": float64 [n]}}`` in SentEval's sub-dataset order
=====================  ===============================================================================================
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..vocab import STS_DATASETS  # re-exported: the table's one home is vocab
from . import evaluators as ev
from .params import thread_limit
from .protocol import check_similarity, evaluation_params, evaluator_call, pair_features, result_dict

logger = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "TaskSpec",
    "Task",
    "TASK_NAMES",
    "PROBING_TASKS",
    "DOWNSTREAM_TASKS",
    "UNSUPPORTED_TASKS",
    "STS_DATASETS",
    "TREC_LABELS",
    "SICK_LABELS",
    "PROBING_LABELS",
    "PROBING_SPLIT_SIZES",
    "SENTEVAL_FILE_LINES",
    "DOWNLOAD_COMMAND",
    "get_task",
    "load_task",
    "pair_features",
]

#: How users get the data (named in every missing-file error).
DOWNLOAD_COMMAND = "python -m senteval_anatomy.data download --tasks {name}"


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


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------

#: SentEval's 28 task names, in SentEval's order (``SE.list_tasks``).
TASK_NAMES: tuple[str, ...] = (
    "CR", "MR", "MPQA", "SUBJ", "SST2", "SST5", "TREC", "MRPC",
    "SICKRelatedness", "SICKEntailment", "STSBenchmark",
    "SNLI", "ImageCaptionRetrieval", "STS12", "STS13", "STS14", "STS15", "STS16",
    "Length", "WordContent", "Depth", "TopConstituents", "BigramShift", "Tense",
    "SubjNumber", "ObjNumber", "OddManOut", "CoordinationInversion",
)  # fmt: skip

#: Known to SentEval, not supported by the built-in engine.
UNSUPPORTED_TASKS: tuple[str, ...] = ("SNLI", "ImageCaptionRetrieval")

PROBING_FILES: dict[str, str] = {
    "Length": "sentence_length.txt",
    "WordContent": "word_content.txt",
    "Depth": "tree_depth.txt",
    "TopConstituents": "top_constituents.txt",
    "BigramShift": "bigram_shift.txt",
    "Tense": "past_present.txt",
    "SubjNumber": "subj_number.txt",
    "ObjNumber": "obj_number.txt",
    "OddManOut": "odd_man_out.txt",
    "CoordinationInversion": "coordination_inversion.txt",
}

#: The 10 probing tasks, in SentEval's order.
PROBING_TASKS: tuple[str, ...] = tuple(PROBING_FILES)

#: The supported downstream tasks, in SentEval's order.
DOWNSTREAM_TASKS: tuple[str, ...] = tuple(
    t for t in TASK_NAMES if t not in PROBING_TASKS and t not in UNSUPPORTED_TASKS
)

#: TREC coarse classes.
TREC_LABELS: dict[str, int] = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}
#: SICK entailment labels.
SICK_LABELS: dict[str, int] = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}

#: The label set of each probing task, fixed by the task's definition (Conneau et al., ACL 2018): a label outside it,
#: in any split, is a typo or other data and is refused (SentEval would silently make it a new class). WordContent's
#: 1000 target words are not listed; its defining rule is checked instead: the label is a lower-case word that occurs
#: among its sentence's tokens (case-insensitively).
PROBING_LABELS: dict[str, frozenset[str] | None] = {
    "Length": frozenset(str(b) for b in range(6)),  # 6 sentence-length bins
    "WordContent": None,
    "Depth": frozenset(str(d) for d in range(5, 13)),  # tree depths 5-12
    "TopConstituents": frozenset(
        {
            "ADVP_NP_VP_.", "CC_ADVP_NP_VP_.", "CC_NP_VP_.", "IN_NP_VP_.", "NP_ADVP_VP_.", "NP_NP_VP_.",
            "NP_PP_.", "NP_VP_.", "PP_NP_VP_.", "RB_NP_VP_.", "SBAR_NP_VP_.", "SBAR_VP_.", "S_CC_S_.",
            "S_NP_VP_.", "S_VP_.", "VBD_NP_VP_.", "VP_.", "WHADVP_SQ_.", "WHNP_SQ_.", "OTHER",
        }
    ),  # the 19 most frequent top-constituent sequences, and OTHER  # fmt: skip
    "BigramShift": frozenset({"O", "I"}),
    "Tense": frozenset({"PAST", "PRES"}),
    "SubjNumber": frozenset({"NN", "NNS"}),
    "ObjNumber": frozenset({"NN", "NNS"}),
    "OddManOut": frozenset({"O", "C"}),
    "CoordinationInversion": frozenset({"O", "I"}),
}

#: Lines per split of SentEval's probing files (``tr`` / ``va`` / ``te``).
PROBING_SPLIT_SIZES: dict[str, int] = {"tr": 100_000, "va": 10_000, "te": 10_000}

#: Line counts (``wc -l``, header lines included) of SentEval's data files, by path relative to ``task_path``, where
#: they are known. They tell a file cut short (it ends mid-line with fewer lines than this) from a deliberate subset
#: (which ends with a newline); the downloader verifies its outputs against them.
SENTEVAL_FILE_LINES: dict[str, int] = {
    **{f"probing/{f}": sum(PROBING_SPLIT_SIZES.values()) for f in PROBING_FILES.values()},
    "downstream/SST/binary/sentiment-train": 67349,
    "downstream/SST/binary/sentiment-dev": 872,
    "downstream/SST/binary/sentiment-test": 1821,
    "downstream/SST/fine/sentiment-train": 8544,
    "downstream/SST/fine/sentiment-dev": 1101,
    "downstream/SST/fine/sentiment-test": 2210,
    "downstream/TREC/train_5500.label": 5452,
    "downstream/TREC/TREC_10.label": 500,
    "downstream/MRPC/msr_paraphrase_train.txt": 4077,
    "downstream/MRPC/msr_paraphrase_test.txt": 1726,
    "downstream/SICK/SICK_train.txt": 4501,
    "downstream/SICK/SICK_trial.txt": 501,
    "downstream/SICK/SICK_test_annotated.txt": 4928,
    "downstream/STS/STSBenchmark/sts-train.csv": 5749,
    "downstream/STS/STSBenchmark/sts-dev.csv": 1500,
    "downstream/STS/STSBenchmark/sts-test.csv": 1379,
    "downstream/MR/rt-polarity.pos": 5331,
    "downstream/MR/rt-polarity.neg": 5331,
    "downstream/SUBJ/subj.objective": 5000,
    "downstream/SUBJ/subj.subjective": 5000,
}

_BINARY_FILES = {
    "CR": ("custrev.pos", "custrev.neg"),
    "MR": ("rt-polarity.pos", "rt-polarity.neg"),
    "MPQA": ("mpqa.pos", "mpqa.neg"),
    "SUBJ": ("subj.objective", "subj.subjective"),  # label 1, label 0
}


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task.

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
    """

    name: str
    kind: str
    evaluator: str
    files: tuple[str, ...]
    n_classes: int | None
    main_metric: str
    folder: str
    splits: tuple[str, ...]

    @property
    def is_probing(self) -> bool:
        return self.name in PROBING_TASKS


def _build_specs() -> dict[str, TaskSpec]:
    specs: dict[str, TaskSpec] = {}
    for name, (a, b) in _BINARY_FILES.items():
        folder = f"downstream/{name}"
        specs[name] = TaskSpec(name, "classification", "innerkfold", (f"{folder}/{a}", f"{folder}/{b}"), 2, "acc",
                               folder, ("all",))
    for name, sub, n in (("SST2", "binary", 2), ("SST5", "fine", 5)):
        folder = f"downstream/SST/{sub}"
        files = tuple(f"{folder}/sentiment-{s}" for s in ("train", "dev", "test"))
        specs[name] = TaskSpec(name, "classification", "split", files, n, "acc", folder, ("train", "dev", "test"))
    specs["TREC"] = TaskSpec("TREC", "classification", "kfold",
                             ("downstream/TREC/train_5500.label", "downstream/TREC/TREC_10.label"), 6, "acc",
                             "downstream/TREC", ("train", "test"))
    specs["MRPC"] = TaskSpec("MRPC", "pair_classification", "kfold",
                             ("downstream/MRPC/msr_paraphrase_train.txt", "downstream/MRPC/msr_paraphrase_test.txt"),
                             2, "acc", "downstream/MRPC", ("train", "test"))
    sick = tuple(f"downstream/SICK/SICK_{s}.txt" for s in ("train", "trial", "test_annotated"))
    specs["SICKRelatedness"] = TaskSpec("SICKRelatedness", "relatedness", "relatedness", sick, None, "pearson",
                                        "downstream/SICK", ("train", "dev", "test"))
    specs["SICKEntailment"] = TaskSpec("SICKEntailment", "pair_classification", "split", sick, 3, "acc",
                                       "downstream/SICK", ("train", "dev", "test"))
    stsb = tuple(f"downstream/STS/STSBenchmark/sts-{s}.csv" for s in ("train", "dev", "test"))
    specs["STSBenchmark"] = TaskSpec("STSBenchmark", "relatedness", "relatedness", stsb, None, "pearson",
                                     "downstream/STS/STSBenchmark", ("train", "dev", "test"))
    for name, datasets in STS_DATASETS.items():
        folder = f"downstream/STS/{name}-en-test"
        files = tuple(f"{folder}/STS.{kind}.{d}.txt" for d in datasets for kind in ("input", "gs"))
        specs[name] = TaskSpec(name, "sts", "sts", files, None, "pearson", folder, datasets)
    for name, fname in PROBING_FILES.items():
        specs[name] = TaskSpec(name, "classification", "split", (f"probing/{fname}",), None, "acc", "probing",
                               ("train", "dev", "test"))
    return {name: specs[name] for name in TASK_NAMES if name in specs}


_SPECS = _build_specs()


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a supported task.

    Raises
    ------
    ValueError
        For an unknown name (listing the valid ones, with a "did you mean" hint) or for SNLI /
        ImageCaptionRetrieval, which the built-in engine does not support.
    """
    if isinstance(name, str) and name in _SPECS:
        return _SPECS[name]
    if name in UNSUPPORTED_TASKS:
        raise ValueError(
            f"Task {name!r} is a SentEval task that the built-in engine does not support. Supported tasks: "
            f"{', '.join(_SPECS)}. Run {name} with SentEval itself (senteval.engine.SE)."
        )
    hint = ""
    if isinstance(name, str):
        folded = {t.lower(): t for t in TASK_NAMES}
        close = [folded[name.lower()]] if name.lower() in folded else []
        close += [m for m in difflib.get_close_matches(name, TASK_NAMES, n=3, cutoff=0.5) if m not in close]
        if close:
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?"
    raise ValueError(f"Unknown task {name!r}.{hint} Valid task names: {', '.join(_SPECS)}.")


# --------------------------------------------------------------------------------------------------------------
# File reading helpers
# --------------------------------------------------------------------------------------------------------------


def _fix_hint(name: str) -> str:
    return (f"get the data with `{DOWNLOAD_COMMAND.format(name=name)}` and point params.task_path at the folder "
            "that holds downstream/ and probing/")


def _check_folder(root: Path, spec: TaskSpec) -> None:
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


_BOM = b"\xef\xbb\xbf"


def _task_of(rel: str) -> str:
    """The (first) task that reads the data file ``rel``."""
    return next((sp.name for sp in _SPECS.values() if rel in sp.files), rel)


def _read_text(path: Path, encoding: str, rel: str | None = None) -> str:
    """Decode a whole file, with universal newlines (what ``io.open(path, encoding=...)`` does in text mode).

    A leading UTF-8 byte-order mark is dropped (SentEval would glue it to the first token or label). ``rel``, the
    file's path relative to ``task_path``, looks up the line count of SentEval's file: a file with fewer lines whose
    last line has no newline was cut short (an interrupted copy or download) and is refused, naming that line.
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
    full = SENTEVAL_FILE_LINES.get(rel) if rel is not None else None
    if full is not None and text and not text.endswith("\n"):
        n = text.count("\n") + 1
        if n < full:
            raise DataError(
                f"the last line is cut short: the file ends mid-line after {n} of the {full} lines of SentEval's "
                "file (an interrupted copy or download)", path=path, line=n,
                expected=f"complete lines, each ending with a newline ({full} in SentEval's file)",
                fix=f"get the file again (`{DOWNLOAD_COMMAND.format(name=_task_of(rel))} --force`, or copy it "
                "again); a deliberate subset must end with a newline")
    return text


def _file_lines(path: Path, encoding: str, rel: str | None = None) -> list[str]:
    """The lines ``for line in io.open(path)`` yields, without their newline."""
    text = _read_text(path, encoding, rel)
    if not text:
        raise DataError("file is empty", path=path, expected="one sample per line")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _splitlines(path: Path, encoding: str, rel: str | None = None) -> list[str]:
    """``io.open(path).read().splitlines()``."""
    lines = _read_text(path, encoding, rel).splitlines()
    if not lines:
        raise DataError("file is empty", path=path, expected="one sample per line")
    return lines


def _score(value: str, path: Path, lineno: int, expected: str, lo: float = 0.0, hi: float = 5.0) -> float:
    try:
        y = float(value)
    except ValueError:
        raise DataError(f"score {value!r} is not a number", path=path, line=lineno, expected=expected) from None
    if not math.isfinite(y) or not lo <= y <= hi:
        raise DataError(f"score {value!r} is outside [{lo:g}, {hi:g}]", path=path, line=lineno, expected=expected)
    return y


# --------------------------------------------------------------------------------------------------------------
# Loaders (one per SentEval task family). Each returns (data, samples, label_names).
# --------------------------------------------------------------------------------------------------------------


def _load_binary(root: Path, spec: TaskSpec):
    pos_path, neg_path = (root / f for f in spec.files)
    pos = [line.split() for line in _splitlines(pos_path, "latin-1", spec.files[0])]
    neg = [line.split() for line in _splitlines(neg_path, "latin-1", spec.files[1])]
    samples = pos + neg
    data = {"all": {"X": samples, "y": [1] * len(pos) + [0] * len(neg)}}
    names = ["subjective", "objective"] if spec.name == "SUBJ" else ["negative", "positive"]
    return data, list(samples), names


def _load_sst(root: Path, spec: TaskSpec):
    n = spec.n_classes
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        X, y = [], []
        for i, line in enumerate(_file_lines(path, "utf-8", rel), 1):
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
    names = ["negative", "positive"] if n == 2 else ["very negative", "negative", "neutral", "positive",
                                                     "very positive"]
    return data, samples, names


def _load_trec(root: Path, spec: TaskSpec):
    expected = "'COARSE:fine question words', COARSE one of " + ", ".join(TREC_LABELS)
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        X, y = [], []
        for i, line in enumerate(_file_lines(path, "latin-1", rel), 1):
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
    return data, data["train"]["X"] + data["test"]["X"], list(TREC_LABELS)


def _load_mrpc(root: Path, spec: TaskSpec):
    expected = "TSV 'Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String' with Quality 0 or 1, after a header line"
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        lines = _file_lines(path, "utf-8", rel)
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
    return data, samples, ["not paraphrase", "paraphrase"]


def _load_sick(root: Path, spec: TaskSpec):
    entailment = spec.name == "SICKEntailment"
    if entailment:
        expected = ("TSV 'pair_ID<TAB>sentence_A<TAB>sentence_B<TAB>relatedness_score<TAB>entailment_judgment' "
                    "with a judgment in " + ", ".join(SICK_LABELS) + ", after a header line")
    else:
        expected = ("TSV 'pair_ID<TAB>sentence_A<TAB>sentence_B<TAB>relatedness_score...' with a score in [0, 5], "
                    "after a header line")
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        lines = _file_lines(path, "utf-8", rel)
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
                label = _score(text[3], path, i, expected)
            A.append(text[1].split())
            B.append(text[2].split())
            y.append(label)
        data[split] = {"A": A, "B": B, "y": y}
    samples = []
    for split in spec.splits:
        samples += data[split]["A"] + data[split]["B"]
    return data, samples, (list(SICK_LABELS) if entailment else None)


def _load_stsb(root: Path, spec: TaskSpec):
    expected = "TSV with >= 7 fields: genre, file, year, id, score in [0, 5], sentence 1, sentence 2 (no header)"
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        A, B, y = [], [], []
        for i, line in enumerate(_file_lines(path, "utf-8", rel), 1):
            text = line.strip().split("\t")
            if len(text) < 7:
                raise DataError(f"{len(text)} TAB-separated fields, need 7", path=path, line=i, expected=expected)
            y.append(_score(text[4], path, i, expected))
            A.append(text[5].split())
            B.append(text[6].split())
        data[split] = {"A": A, "B": B, "y": y}
    samples = []
    for split in spec.splits:
        samples += data[split]["A"] + data[split]["B"]
    return data, samples, None


def _load_sts(root: Path, spec: TaskSpec):
    data, samples = {}, []
    folder = root / spec.folder
    for dataset in spec.splits:
        in_path = folder / f"STS.input.{dataset}.txt"
        gs_path = folder / f"STS.gs.{dataset}.txt"
        in_lines = _splitlines(in_path, "utf-8")
        gs_lines = _read_text(gs_path, "utf-8").splitlines()
        if len(gs_lines) != len(in_lines):
            raise DataError(f"{len(gs_lines)} gold lines for {len(in_lines)} sentence pairs in {in_path}",
                            path=gs_path, expected="one gold score (or an empty line) per line of the input file")
        sent1, sent2, gold = [], [], []
        for i, (pair, raw) in enumerate(zip(in_lines, gs_lines), 1):
            fields = pair.split("\t")
            if len(fields) != 2:
                raise DataError(f"{len(fields)} TAB-separated fields", path=in_path, line=i,
                                expected="'sentence 1<TAB>sentence 2'")
            if raw == "":  # SentEval drops pairs whose gold line is empty
                continue
            sent1.append(fields[0].split())
            sent2.append(fields[1].split())
            gold.append(_score(raw, gs_path, i, "a gold similarity score in [0, 5] or an empty line"))
        if not gold:
            raise DataError("no scored pair (every gold line is empty)", path=gs_path,
                            expected="gold similarity scores in [0, 5]")
        ordered = sorted(zip(sent1, sent2, gold), key=lambda z: (len(z[0]), len(z[1]), z[2]))
        s1 = [z[0] for z in ordered]
        s2 = [z[1] for z in ordered]
        data[dataset] = {"A": s1, "B": s2, "gold": [z[2] for z in ordered]}
        samples += s1 + s2
    return data, samples, None


def _load_probing(root: Path, spec: TaskSpec):
    rel = spec.files[0]
    path = root / rel
    tok2split = {"tr": "train", "va": "dev", "te": "test"}
    expected = "'SPLIT<TAB>LABEL<TAB>...<TAB>SENTENCE' with SPLIT one of tr, va, te"
    allowed = PROBING_LABELS[spec.name]
    if allowed is not None:
        label_rule = f"a {spec.name} label: one of {', '.join(sorted(allowed, key=_natural))}"
    else:
        label_rule = "a WordContent label: the one lower-case target word that the sentence contains"
    data = {s: {"X": [], "y": [], "line": []} for s in ("train", "dev", "test")}
    for i, line in enumerate(_file_lines(path, "utf-8", rel), 1):
        fields = line.rstrip().split("\t")
        if len(fields) < 3:
            raise DataError(f"{len(fields)} TAB-separated field(s), need 3", path=path, line=i, expected=expected)
        if fields[0] not in tok2split:
            raise DataError(f"unknown split {fields[0]!r}", path=path, line=i, expected=expected)
        label, tokens = fields[1], fields[-1].split()
        if allowed is not None and label not in allowed:
            raise DataError(f"unknown label {label!r}", path=path, line=i, expected=label_rule,
                            fix="correct the label (SentEval's label sets are fixed per task)")
        if allowed is None and (label != label.lower() or label not in {t.lower() for t in tokens}):
            raise DataError(f"label {label!r} does not occur in the sentence", path=path, line=i,
                            expected=label_rule, fix="correct the label or the sentence")
        rec = data[tok2split[fields[0]]]
        rec["X"].append(tokens)
        rec["y"].append(label)
        rec["line"].append(i)
    for split, tok in (("train", "tr"), ("dev", "va"), ("test", "te")):
        if not data[split]["X"]:
            raise DataError(f"no '{tok}' ({split}) lines", path=path, expected=expected)
    labels = sorted(set(data["train"]["y"]))
    tok2label = {lab: k for k, lab in enumerate(labels)}
    for split in ("dev", "test"):
        for lab, lineno in zip(data[split]["y"], data[split]["line"]):
            if lab not in tok2label:
                raise DataError(f"{split} label {lab!r} never occurs in the training ('tr') lines", path=path,
                                line=lineno, expected="every dev/test label among the training labels")
    out = {s: {"X": d["X"], "y": [tok2label[lab] for lab in d["y"]]} for s, d in data.items()}
    samples = out["train"]["X"] + out["dev"]["X"] + out["test"]["X"]
    return out, samples, labels


def _natural(label: str) -> tuple[int, str]:
    """Sort key: numbers by value, then words."""
    return (int(label), "") if label.isdigit() else (1 << 30, label)


_LOADERS: dict[str, Callable] = {
    **{n: _load_binary for n in _BINARY_FILES},
    "SST2": _load_sst,
    "SST5": _load_sst,
    "TREC": _load_trec,
    "MRPC": _load_mrpc,
    "SICKEntailment": _load_sick,
    "SICKRelatedness": _load_sick,
    "STSBenchmark": _load_stsb,
    **{n: _load_sts for n in STS_DATASETS},
    **{n: _load_probing for n in PROBING_TASKS},
}


def load_task(name: str, task_path: str | os.PathLike, seed: int = 1111) -> Task:
    """Load and validate a task's data from ``task_path`` (SentEval's layout).

    Raises
    ------
    ValueError
        Unknown or unsupported task name, or no ``task_path``.
    DataError
        A missing folder/file (naming the expected files and the download command) or a malformed line
        (naming file:line and what was expected).
    """
    spec = get_task(name)
    if task_path is None:
        raise ValueError("params.task_path is not set: point it at the folder that holds SentEval's downstream/ "
                         f"and probing/ folders (get them with `{DOWNLOAD_COMMAND.format(name=name)}`).")
    root = Path(task_path)
    _check_folder(root, spec)
    data, samples, label_names = _LOADERS[name](root, spec)
    return Task(spec, data, samples, seed=seed, task_path=str(root), label_names=label_names)


# --------------------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------------------


def _to_numpy(out) -> np.ndarray:
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # torch tensor, possibly on GPU
        out = out.detach().cpu().numpy()
    return np.asarray(out)


class Task:
    """A loaded task: its data, parsed and validated, ready to embed and evaluate.

    Attributes
    ----------
    spec : TaskSpec
    samples : list of list of str
        Exactly what SentEval passes to ``prepare(params, samples)``, in the same order.
    data : dict
        Parsed data per split, in file order (STS: already sorted, as SentEval sorts at load time).
    seed : int
        Seed given at load time (used by :meth:`evaluate` when ``params`` has no ``seed``).
    n_classes : int or None
    label_names : list of str or None
        Name of each class id.
    """

    def __init__(self, spec: TaskSpec, data: dict, samples: list[list[str]], *, seed: int = 1111,
                 task_path: str | None = None, label_names: list[str] | None = None):
        self.spec = spec
        self.data = data
        self.samples = samples
        self.seed = seed
        self.task_path = task_path
        self.label_names = label_names
        self.n_classes = spec.n_classes if spec.n_classes is not None else (
            len(label_names) if spec.kind == "classification" and label_names else None)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(next(iter(v.values())))}" for k, v in self.data.items())
        return f"Task({self.name!r}, {sizes})"

    # -- SentEval's call sequence -----------------------------------------------------------------------------
    def prepare(self, params, prepare: Callable | None) -> Any:
        """Call ``prepare(params, self.samples)`` once (SentEval's ``do_prepare``)."""
        if prepare is None:
            return None
        return prepare(params, self.samples)

    def sorted_data(self) -> dict[str, dict[str, list]]:
        """Per split, the data in the order SentEval embeds it.

        Single sentences are sorted by ``(len(tokens), label)``; pairs by ``(len(A), len(B), label)``; STS data is
        already sorted at load. ``sorted`` is stable, so ties keep file order.
        """
        out = {}
        for split, rec in self.data.items():
            if self.spec.kind == "sts":
                out[split] = rec
            elif "X" in rec:
                ordered = sorted(zip(rec["X"], rec["y"]), key=lambda z: (len(z[0]), z[1]))
                out[split] = {"X": [z[0] for z in ordered], "y": [z[1] for z in ordered]}
            else:
                ordered = sorted(zip(rec["A"], rec["B"], rec["y"]), key=lambda z: (len(z[0]), len(z[1]), z[2]))
                out[split] = {"A": [z[0] for z in ordered], "B": [z[1] for z in ordered],
                              "y": [z[2] for z in ordered]}
        return out

    def batch_plan(self, batch_size: int, sorted_data: dict | None = None) -> list[tuple[str, str, list[list[str]]]]:
        """The ``(split, side, batch)`` of every ``batcher`` call, in SentEval's call order (``side`` is ``'X'`` for
        single sentences, ``'A'``/``'B'`` for pairs)."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"params.batch_size must be a positive integer, got {batch_size}.")
        sd = self.sorted_data() if sorted_data is None else sorted_data
        plan = []
        for split, rec in sd.items():
            if self.spec.kind == "sts":
                n = len(rec["gold"])
                for i in range(0, n, batch_size):
                    b1, b2 = rec["A"][i : i + batch_size], rec["B"][i : i + batch_size]
                    if len(b1) == len(b2) and len(b1) > 0:
                        plan.append((split, "A", b1))
                        plan.append((split, "B", b2))
            else:
                sides = ("X",) if "X" in rec else ("A", "B")
                n = len(rec["y"])
                for side in sides:
                    for i in range(0, n, batch_size):
                        plan.append((split, side, rec[side][i : i + batch_size]))
        return plan

    def embed(self, params, batcher: Callable) -> dict[str, dict[str, np.ndarray]]:
        """Call ``batcher(params, batch)`` as SentEval does and return the embeddings (layout in the module doc).

        ``batcher`` must return an array-like (numpy array, or torch tensor on any device) with one row per
        sentence of ``batch``, in order; the trailing shape must be the same for every call. Arrays with more than
        two dimensions ([n, L, H, d], say) are stacked as they are, for callers that slice them before
        :meth:`evaluate`.
        """
        p = params if params is not None else {}
        batch_size = p.get("batch_size", 128) if isinstance(p, Mapping) else 128
        sd = self.sorted_data()
        chunks: dict[tuple[str, str], list[np.ndarray]] = {}
        trailing = None
        for split, side, batch in self.batch_plan(batch_size, sd):
            out = _to_numpy(batcher(params, batch))
            if out.ndim == 1 and len(batch) == 1:
                out = out.reshape(1, -1)
            if out.ndim < 2 or out.shape[0] != len(batch):
                raise ValueError(
                    f"{self.name}: batcher returned an array of shape {out.shape} for a batch of {len(batch)} "
                    f"sentences; expected shape ({len(batch)}, d), one row per sentence in batch order."
                )
            if trailing is None:
                trailing = out.shape[1:]
            elif out.shape[1:] != trailing:
                raise ValueError(
                    f"{self.name}: batcher returned rows of shape {out.shape[1:]} after {trailing} earlier; the "
                    "embedding size must be the same for every batch of a task."
                )
            chunks.setdefault((split, side), []).append(out)
        result: dict[str, dict[str, np.ndarray]] = {}
        for split, rec in sd.items():
            result[split] = {}
            for side in (("A", "B") if self.spec.kind == "sts" or "A" in rec else ("X",)):
                result[split][side] = np.concatenate(chunks[(split, side)], axis=0)
            if self.spec.kind == "sts":
                result[split]["gold"] = np.asarray(rec["gold"], dtype=np.float64)
            elif self.spec.kind == "relatedness":
                result[split]["y"] = np.asarray(rec["y"], dtype=np.float64)
            else:
                result[split]["y"] = np.asarray(rec["y"], dtype=np.int64)
        return result

    def evaluate(self, embeddings: Mapping[str, Mapping[str, np.ndarray]], params) -> dict[str, Any]:
        """Run the task's evaluator on ``embeddings`` (layout in the module doc) and return SentEval's result dict.

        ``params`` gives ``usepytorch``, ``classifier``, ``kfold``, ``device``, ``probe_threads`` and ``similarity``
        (defaults as in ``SE``), and ``seed`` (default: the seed given to :func:`load_task`). The protocol around
        the probes (grids, rounding, folds, WordContent, MRPC's F1, result keys) is
        :mod:`senteval_anatomy.engine.protocol`, shared with the batched trainer.
        """
        p, seed = evaluation_params(params, self.seed)
        with thread_limit(p.probe_threads):
            return self._evaluate(embeddings, p, seed)

    def _evaluate(self, embeddings, p, seed) -> dict[str, Any]:
        spec = self.spec
        if spec.evaluator == "sts":
            similarity = check_similarity(p.similarity)
            datasets = {d: (embeddings[d]["A"], embeddings[d]["B"], embeddings[d]["gold"]) for d in spec.splits}
            return result_dict(spec, ev.sts_eval(datasets, similarity), embeddings)

        def features(rec):
            return rec["X"] if "X" in rec else pair_features(rec["A"], rec["B"])

        call = evaluator_call(spec, embeddings, p, seed, self.n_classes, features)
        evaluate = {"split": ev.split_eval, "kfold": ev.kfold_eval, "innerkfold": ev.innerkfold_eval,
                    "relatedness": ev.relatedness_eval}[call.evaluator]
        return result_dict(spec, evaluate(*call.args, **call.kwargs), embeddings)
