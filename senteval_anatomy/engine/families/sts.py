"""SentEval's STS family: STSBenchmark (supervised, ``relatedness`` evaluator, train/dev/test) and STS12-16
(unsupervised cosine similarity per sub-dataset, ``sts`` evaluator: no training, no dev score)."""

from __future__ import annotations

from pathlib import Path

from ..readers import read_text, score, split_lines, task_file_lines
from ..spec import DataError, TaskSpec

__all__ = ["SPECS", "STS_DATASETS", "load_stsb", "load_sts"]

#: Scored pairs (non-empty gold lines) of each STS12-16 sub-dataset, in SentEval's order: the sub-datasets are the
#: files the loader reads and the keys of the result dict; the counts are the ``nsamples`` SentEval reports on the
#: full data.
_STS_SCORED_PAIRS: dict[str, dict[str, int]] = {
    "STS12": {"MSRpar": 750, "MSRvid": 750, "SMTeuroparl": 459, "surprise.OnWN": 750, "surprise.SMTnews": 399},
    "STS13": {"FNWN": 189, "headlines": 750, "OnWN": 561},
    "STS14": {"deft-forum": 450, "deft-news": 300, "headlines": 750, "images": 750, "OnWN": 750,
              "tweet-news": 750},
    "STS15": {"answers-forums": 375, "answers-students": 750, "belief": 375, "headlines": 750, "images": 750},
    "STS16": {"answer-answer": 254, "headlines": 249, "plagiarism": 230, "postediting": 244,
              "question-question": 209},
}  # fmt: skip

#: Sub-datasets of STS12-16, in SentEval's order.
STS_DATASETS: dict[str, tuple[str, ...]] = {task: tuple(sets) for task, sets in _STS_SCORED_PAIRS.items()}


def load_stsb(root: Path, spec: TaskSpec):
    expected = "TSV with >= 7 fields: genre, file, year, id, score in [0, 5], sentence 1, sentence 2 (no header)"
    data = {}
    for split, rel in zip(spec.splits, spec.files):
        path = root / rel
        A, B, y = [], [], []
        for i, line in enumerate(task_file_lines(root, spec, rel), 1):
            text = line.strip().split("\t")
            if len(text) < 7:
                raise DataError(f"{len(text)} TAB-separated fields, need 7", path=path, line=i, expected=expected)
            y.append(score(text[4], path, i, expected))
            A.append(text[5].split())
            B.append(text[6].split())
        data[split] = {"A": A, "B": B, "y": y}
    samples = []
    for split in spec.splits:
        samples += data[split]["A"] + data[split]["B"]
    return data, samples, None


def load_sts(root: Path, spec: TaskSpec):
    data, samples = {}, []
    folder = root / spec.folder
    for dataset in spec.splits:
        in_path = folder / f"STS.input.{dataset}.txt"
        gs_path = folder / f"STS.gs.{dataset}.txt"
        in_lines = split_lines(in_path, spec.encoding)
        gs_lines = read_text(gs_path, spec.encoding).splitlines()
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
            gold.append(score(raw, gs_path, i, "a gold similarity score in [0, 5] or an empty line"))
        if not gold:
            raise DataError("no scored pair (every gold line is empty)", path=gs_path,
                            expected="gold similarity scores in [0, 5]")
        ordered = sorted(zip(sent1, sent2, gold), key=lambda z: (len(z[0]), len(z[1]), z[2]))
        s1 = [z[0] for z in ordered]
        s2 = [z[1] for z in ordered]
        data[dataset] = {"A": s1, "B": s2, "gold": [z[2] for z in ordered]}
        samples += s1 + s2
    return data, samples, None


def _stsb() -> TaskSpec:
    folder = "downstream/STS/STSBenchmark"
    splits = ("train", "dev", "test")
    files = tuple(f"{folder}/sts-{s}.csv" for s in splits)
    sizes = {"train": 5749, "dev": 1500, "test": 1379}
    return TaskSpec("STSBenchmark", "relatedness", "relatedness", files, None, "pearson", folder, splits,
                    family="sts", loader=load_stsb, sizes=sizes,
                    file_lines={f: sizes[s] for s, f in zip(splits, files)})  # no header


def _sts_year(name: str) -> TaskSpec:
    folder = f"downstream/STS/{name}-en-test"
    datasets = STS_DATASETS[name]
    files = tuple(f"{folder}/STS.{kind}.{d}.txt" for d in datasets for kind in ("input", "gs"))
    return TaskSpec(name, "sts", "sts", files, None, "pearson", folder, datasets, family="sts", loader=load_sts,
                    group="sts", sizes=_STS_SCORED_PAIRS[name], has_dev=False)


SPECS: tuple[TaskSpec, ...] = (_stsb(), *(_sts_year(name) for name in STS_DATASETS))
