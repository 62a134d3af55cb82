"""Tiny task folders in SentEval's layout, cut from real data, for tests that run the real SentEval.

Every sentence and label is copied from the source folder (the workspace's SentEval data subsample when it is
there, else the package's synthetic demo data ``data/default``); only the number of lines is cut down, keeping a
few labels with a few lines each in every split so that every split sees every kept label. SentEval's data has no
STS here, so STS-B and STS12-16 files are made from SICK pairs (real sentences, SICK's relatedness score moved to
0-5), in SentEval's file formats.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from senteval_anatomy.engine.families.sts import STS_DATASETS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "senteval-data"
DEMO_DATA = REPO / "data" / "default"

PROBING_FILES = (
    "sentence_length.txt", "word_content.txt", "tree_depth.txt", "top_constituents.txt", "bigram_shift.txt",
    "past_present.txt", "subj_number.txt", "obj_number.txt", "odd_man_out.txt", "coordination_inversion.txt",
)


def source_root() -> Path:
    """The real SentEval data subsample when present, else the demo data shipped in the repository."""
    return SHARED_DATA if (SHARED_DATA / "probing").is_dir() else DEMO_DATA


def _balanced(rows: list[tuple[str, str]], per_label: int, n_labels: int) -> list[tuple[str, str]]:
    """Up to ``per_label`` rows for each of the first ``n_labels`` labels (sorted), in file order."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[0]].append(row)
    keep = sorted(by_label)[:n_labels]
    picked = {id(r) for lab in keep for r in by_label[lab][:per_label]}
    return [r for r in rows if id(r) in picked]


def _write(path: Path, lines: list[str], header: str | None = None, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ([header] if header is not None else []) + lines
    path.write_text("\n".join(text) + "\n", encoding=encoding)


def build_tiny_task_path(dest: Path, *, per_label: int = 8, source: Path | None = None) -> Path:
    """Write a tiny SentEval data folder under ``dest`` and return it (``dest`` holds ``probing/``, ``downstream/``)."""
    src = source or source_root()
    # -- probing: a few labels, ``per_label`` lines per label and split (labels kept in every split)
    for name in PROBING_FILES:
        rows = [ln for ln in (src / "probing" / name).read_text(encoding="utf-8").splitlines() if ln.strip()]
        splits: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for ln in rows:
            fields = ln.split("\t")
            splits[fields[0]].append((fields[1], ln))
        common = set.intersection(*(set(lab for lab, _ in splits[s]) for s in ("tr", "va", "te")))
        out = []
        for s, n in (("tr", per_label * 2), ("va", per_label), ("te", per_label)):
            out += [ln for _, ln in _balanced([r for r in splits[s] if r[0] in common], n, 3)]
        _write(dest / "probing" / name, out)

    down = src / "downstream"
    # -- SST2 / SST5
    for kind, parse in (("binary", lambda ln: ln.rsplit("\t", 1)[1].strip()), ("fine", lambda ln: ln.split(" ", 1)[0])):
        for split, n in (("train", per_label * 2), ("dev", per_label), ("test", per_label)):
            lines = [ln for ln in (down / "SST" / kind / f"sentiment-{split}").read_text(encoding="utf-8").splitlines()
                     if ln.strip()]
            picked = _balanced([(parse(ln), ln) for ln in lines], n, 5)
            _write(dest / "downstream" / "SST" / kind / f"sentiment-{split}", [ln for _, ln in picked])
    # -- TREC (latin-1, 6 coarse classes)
    for fname, n in (("train_5500.label", per_label), ("TREC_10.label", per_label // 2)):
        lines = [ln for ln in (down / "TREC" / fname).read_text(encoding="latin-1").splitlines() if ln.strip()]
        picked = _balanced([(ln.split(":", 1)[0], ln) for ln in lines], n, 6)
        _write(dest / "downstream" / "TREC" / fname, [ln for _, ln in picked], encoding="latin-1")
    # -- MRPC (header kept as is)
    for fname, n in (("msr_paraphrase_train.txt", per_label * 2), ("msr_paraphrase_test.txt", per_label)):
        lines = (down / "MRPC" / fname).read_text(encoding="utf-8").splitlines()
        body = [ln for ln in lines[1:] if ln.strip()]
        picked = _balanced([(ln.split("\t", 1)[0], ln) for ln in body], n, 2)
        _write(dest / "downstream" / "MRPC" / fname, [ln for _, ln in picked], header=lines[0])
    # -- SICK (3 entailment labels) and, from the same pairs, STS-B and STS12-16
    sick: dict[str, list[list[str]]] = {}
    for fname, n in (("SICK_train.txt", per_label * 2), ("SICK_trial.txt", per_label), ("SICK_test_annotated.txt",
                                                                                      per_label)):
        lines = (down / "SICK" / fname).read_text(encoding="utf-8").splitlines()
        body = [ln for ln in lines[1:] if ln.strip()]
        picked = [ln for _, ln in _balanced([(ln.split("\t")[4], ln) for ln in body], n, 3)]
        _write(dest / "downstream" / "SICK" / fname, picked, header=lines[0])
        sick[fname] = [ln.split("\t") for ln in picked]

    def sts_score(fields: list[str]) -> str:
        return f"{(float(fields[3]) - 1.0) * 5.0 / 4.0:.3f}"  # SICK 1-5 -> STS 0-5

    for split, fname in (("train", "SICK_train.txt"), ("dev", "SICK_trial.txt"), ("test", "SICK_test_annotated.txt")):
        rows = [f"main-captions\tSICK\t{split}\t{i:04d}\t{sts_score(f)}\t{f[1]}\t{f[2]}"
                for i, f in enumerate(sick[fname])]
        _write(dest / "downstream" / "STS" / "STSBenchmark" / f"sts-{split}.csv", rows)
    pairs = sick["SICK_train.txt"] + sick["SICK_trial.txt"] + sick["SICK_test_annotated.txt"]
    for task, datasets in STS_DATASETS.items():
        folder = dest / "downstream" / "STS" / f"{task}-en-test"
        for j, ds in enumerate(datasets):
            chunk = pairs[j::len(datasets)][: per_label * 2]
            _write(folder / f"STS.input.{ds}.txt", [f"{f[1].lower()}\t{f[2].lower()}" for f in chunk])
            gold = [sts_score(f) for f in chunk]
            gold[0] = ""  # SentEval drops pairs whose gold line is empty: keep one such line
            _write(folder / f"STS.gs.{ds}.txt", gold)
    return dest
