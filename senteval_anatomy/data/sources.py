"""Where every SentEval data file comes from, and how SentEval post-processes it.

This is a declarative table. Each :class:`Dataset` is one unit of download (for example ``SICK``, which feeds both
``SICKEntailment`` and ``SICKRelatedness``). A dataset lists the files it places under the data root
(:class:`Output`, with the sha256 of SentEval's prepared file where we know it) and one or more :class:`Recipe`\\ s,
alternative ways to obtain those files. A recipe names the raw files it needs (:class:`Artifact`, each with an ordered
list of URLs) and a ``build`` function that turns them into SentEval's layout, doing in Python what SentEval's
``get_transfer_data.bash`` does with curl, unzip, sed, cut, paste and the Moses scripts.

Why several recipes: most of SentEval's original hosts are gone (cogcomp, alt.qcri.org, ixa2.si.ehu.es, the
fbaipublicfiles ``senteval_data`` bucket). The original URL stays first, because it is the authoritative source
whenever it answers; copies of SentEval's *prepared* files in public repositories come next, verified by sha256
against known-good copies. Every artifact can also be served by a user mirror (``--mirror``) or overridden one by one
(``--source NAME=URL_OR_PATH``): the artifact ``name`` is the key for both.

Checksums: ``Output.sha256`` values are the full sha256 of known-good prepared files (see ``docs/data.md``). Outputs
that are byte copies of a download (SST, MRPC, the TREC quote stripping) are ``exact``: a mismatch means the bytes
are not SentEval's and the dataset is not placed. Outputs produced by tokenizers (SICK, STS, MR/CR/SUBJ/MPQA) are
compared too, but a mismatch is only reported, because ``sacremoses`` and our PTB rules may differ from the Perl and
sed originals on a few rare tokens.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.registry import SENTEVAL_FILE_LINES, get_task, specs
from ..engine.spec import TaskSpec
from ..vocab import names_list
from .tokenization import cat_v, cut_fields, moses_tokenize, ptb_tokenize, split_lines, strip_trec_quotes

Build = Callable[[Mapping[str, Path], Path], None]
"""A build step: ``build(inputs, root)`` reads the fetched artifacts (``inputs[artifact.name]`` is a local path)
and writes the dataset's outputs under ``root`` (a staging data root, same layout as the final one)."""


@dataclass(frozen=True)
class Artifact:
    """One file fetched from the outside world.

    ``name`` is the key used for mirrors (``<mirror>/<name>``) and for ``--source name=...`` overrides; it is a plain
    file name for raw files and a SentEval-layout path (relative to ``downstream/`` or starting with ``probing/``)
    for prepared copies. ``sha256`` is given only where the exact bytes at those URLs are known.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None


@dataclass(frozen=True)
class Output:
    """One file of SentEval's layout, relative to the data root (posix separators)."""

    path: str
    sha256: str | None = None
    lines: int | None = None
    exact: bool = True


@dataclass(frozen=True)
class Recipe:
    """One way to produce a dataset's outputs: fetch ``artifacts``, then run ``build``."""

    name: str
    artifacts: tuple[Artifact, ...]
    build: Build


@dataclass(frozen=True)
class Dataset:
    """A unit of download: the tasks it serves, the files it places, and the ways to obtain them."""

    name: str
    tasks: tuple[str, ...]
    outputs: tuple[Output, ...]
    recipes: tuple[Recipe, ...]
    note: str = ""
    group: str = field(default="downstream")


# ---------------------------------------------------------------------------------------------------------------
# Build helpers: small Python equivalents of the shell steps in SentEval's script.
# ---------------------------------------------------------------------------------------------------------------


def _write(root: Path, rel: str, data: bytes) -> None:
    """Write one output under the staging root (staging is private, so a plain write is fine here)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _member(names: list[str], wanted: str, archive: Path) -> str:
    """Find an archive member by path suffix; ignore macOS resource forks, which some archives carry."""
    hits = [
        n
        for n in names
        if (n == wanted or n.endswith("/" + wanted))
        and "__MACOSX" not in n
        and not n.rsplit("/", 1)[-1].startswith("._")
    ]
    if not hits:
        raise FileNotFoundError(
            f"{archive.name} has no member named {wanted!r} (it has {len(names)} members)"
        )
    return sorted(hits, key=len)[0]


def _read_zip(path: Path, wanted: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(_member(zf.namelist(), wanted, path))


def _read_tar(path: Path, wanted: str) -> bytes:
    with tarfile.open(path) as tf:
        member = _member([m.name for m in tf.getmembers() if m.isfile()], wanted, path)
        fh = tf.extractfile(member)
        assert fh is not None  # isfile() members always have data
        return fh.read()


def copy_as(mapping: Mapping[str, str]) -> Build:
    """Build step that places artifacts byte for byte under new names (SentEval's ``mv`` renames)."""

    def build(inputs: Mapping[str, Path], root: Path) -> None:
        for artifact, rel in mapping.items():
            _write(root, rel, inputs[artifact].read_bytes())

    return build


def _trec(mapping: Mapping[str, str]) -> Build:
    """TREC: SentEval deletes every backtick and every single quote (two ``sed`` calls on the raw bytes)."""

    def build(inputs: Mapping[str, Path], root: Path) -> None:
        for artifact, rel in mapping.items():
            _write(root, rel, strip_trec_quotes(inputs[artifact].read_bytes()))

    return build


def _sick_file(raw: bytes) -> bytes:
    """SICK: keep the header line as is; Moses-tokenize columns 2 and 3 (1-based); keep columns 1, 4 and 5.

    SentEval does ``cut`` + ``sed 1d`` + tokenizer + ``paste``. We work on ``\\n``-separated lines so that a
    ``\\r`` before the newline stays attached to the last column, exactly as ``cut`` leaves it.
    """
    lines, _ = split_lines(raw.decode("utf-8", errors="surrogateescape"))
    if not lines:
        return b""
    out = [lines[0]]
    for line in lines[1:]:
        a = moses_tokenize(cut_fields(line, [2]))
        b = moses_tokenize(cut_fields(line, [3]))
        out.append("\t".join([cut_fields(line, [1]), a, b, cut_fields(line, [4, 5])]))
    return ("\n".join(out) + "\n").encode("utf-8", errors="surrogateescape")


def _sick() -> Build:
    def build(inputs: Mapping[str, Path], root: Path) -> None:
        for split in ("train", "trial", "test_annotated"):
            raw = _read_zip(inputs[f"sick_{split}.zip"], f"SICK_{split}.txt")
            _write(root, f"downstream/SICK/SICK_{split}.txt", _sick_file(raw))

    return build


def _sts_pair_file(raw: bytes) -> bytes:
    """STS12-16 inputs: columns 1 and 2, each Moses-tokenized then lower-cased, pasted back with a tab."""
    lines, _ = split_lines(raw.decode("utf-8", errors="surrogateescape"))
    out = [
        moses_tokenize(cut_fields(line, [1]), lowercase=True)
        + "\t"
        + moses_tokenize(cut_fields(line, [2]), lowercase=True)
        for line in lines
    ]
    return ("\n".join(out) + "\n").encode("utf-8", errors="surrogateescape") if out else b""


def _stsb_file(raw: bytes) -> bytes:
    """STS-B: columns 1-5 kept, sentences (6, 7) Moses-tokenized and lower-cased; extra columns dropped."""
    lines, _ = split_lines(raw.decode("utf-8", errors="surrogateescape"))
    out = [
        "\t".join(
            [
                cut_fields(line, [1, 2, 3, 4, 5]),
                moses_tokenize(cut_fields(line, [6]), lowercase=True),
                moses_tokenize(cut_fields(line, [7]), lowercase=True),
            ]
        )
        for line in lines
    ]
    return ("\n".join(out) + "\n").encode("utf-8", errors="surrogateescape") if out else b""


def _stsb() -> Build:
    def build(inputs: Mapping[str, Path], root: Path) -> None:
        for split in ("train", "dev", "test"):
            raw = _read_tar(inputs["Stsbenchmark.tar.gz"], f"sts-{split}.csv")
            _write(root, f"downstream/STS/STSBenchmark/sts-{split}.csv", _stsb_file(raw))

    return build


def _sts_year(year: int, archive: str, sets: tuple[str, ...]) -> Build:
    """STS12-16: pick each sub-dataset's input and gold file out of the year's zip (STS16 names them
    ``STS2016.*``; SentEval renames them to ``STS.*``), tokenize the inputs, copy the gold scores."""

    def build(inputs: Mapping[str, Path], root: Path) -> None:
        prefix = "STS2016" if year == 16 else "STS"
        folder = f"downstream/STS/STS{year}-en-test"
        with zipfile.ZipFile(inputs[archive]) as zf:
            names = zf.namelist()
            for s in sets:
                raw_in = zf.read(_member(names, f"{prefix}.input.{s}.txt", inputs[archive]))
                raw_gs = zf.read(_member(names, f"{prefix}.gs.{s}.txt", inputs[archive]))
                _write(root, f"{folder}/STS.input.{s}.txt", _sts_pair_file(raw_in))
                _write(root, f"{folder}/STS.gs.{s}.txt", raw_gs)

    return build


def ptb_file(raw: bytes) -> bytes:
    """MR/CR/SUBJ/MPQA: ``cat -v`` (non-ASCII bytes become ``M-x``), then the PTB sed rules line by line."""
    text = cat_v(raw).decode("ascii")
    lines, trailing_newline = split_lines(text)
    out = "\n".join(ptb_tokenize(line) for line in lines)
    return (out + ("\n" if trailing_newline and lines else "")).encode("ascii")


_NB_MEMBERS = {  # the label-1 and label-0 files of each task inside datasmall_NB_ACL12.zip
    "MR": ("rt10662/rt-polarity.pos", "rt10662/rt-polarity.neg"),
    "CR": ("customerr/custrev.pos", "customerr/custrev.neg"),
    "SUBJ": ("subj/subj.objective", "subj/subj.subjective"),
    "MPQA": ("mpqa/mpqa.pos", "mpqa/mpqa.neg"),
}


def _nb_classif(task: str) -> Build:
    files = get_task(task).files  # label-1 file, label-0 file

    def build(inputs: Mapping[str, Path], root: Path) -> None:
        for member, rel in zip(_NB_MEMBERS[task], files):
            _write(root, rel, ptb_file(_read_zip(inputs["datasmall_NB_ACL12.zip"], member)))

    return build


def _place_prepared(rels: list[str]) -> Build:
    """Prepared copies are placed as they are: they already went through SentEval's script."""
    return copy_as({r: f"downstream/{r}" for r in rels})


# ---------------------------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------------------------

SENTEVAL_RAW = "https://raw.githubusercontent.com/facebookresearch/SentEval/main/data/probing"
FB_BUCKET = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
# Public repositories holding byte copies of SentEval's prepared files (see the PROVENANCE notes in docs/data.md).
# They were not reachable from where this table was written; sha256 verification makes a wrong copy harmless.
QNN = "https://raw.githubusercontent.com/FreedomIntelligence/qnn/77f549372d43/data"
YANS = "https://raw.githubusercontent.com/yan-soares/research_embeddings_fine_tuning/045c5e94572a/data/downstream"



_STS_ZIPS = {
    "STS12": "http://ixa2.si.ehu.es/stswiki/images/4/40/STS2012-en-test.zip",
    "STS13": "http://ixa2.si.ehu.es/stswiki/images/2/2f/STS2013-en-test.zip",
    "STS14": "http://ixa2.si.ehu.es/stswiki/images/8/8c/STS2014-en-test.zip",
    "STS15": "http://ixa2.si.ehu.es/stswiki/images/d/da/STS2015-en-test.zip",
    "STS16": "http://ixa2.si.ehu.es/stswiki/images/9/98/STS2016-en-test.zip",
}

_SHA = {
    "SST/binary/sentiment-train": "10a92a297ec38e262386e5a2713b4bc70e5d18ced88b7f54bd171a26e5b34ab5",
    "SST/binary/sentiment-dev": "9a6c7403b71a9b762158387afe4431253ae10cdfb2319b5275289f3766f48291",
    "SST/binary/sentiment-test": "4fefd1cd67526cf87ebc7fafc3afc21cc7cfa6ae53b45e74f77f9456e3c62752",
    "SST/fine/sentiment-train": "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee",
    "SST/fine/sentiment-dev": "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3",
    "SST/fine/sentiment-test": "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73",
    "TREC/train_5500.label": "8bd6e79493f43bbd22c364587366a1dced54e1e31259eaa92721a0f526031116",
    "TREC/TREC_10.label": "86ad53c8fc9d397ab2f4be7c967d8efb470b260140557d3e57afad69d1b88b76",
    "SICK/SICK_train.txt": "d07bdb73963dda1b2012f4d78c24044cd9503b1109218a518a481616973cf960",
    "SICK/SICK_trial.txt": "0d0786bd8671a0a70614f2f890b8ab24b3c24d1ccb624bcca87618091fbe4f11",
    "SICK/SICK_test_annotated.txt": "4c9aa1bb3c5bbf732520fe35b23c121739472a38eb47e7d5336e6df51896be02",
    "MRPC/msr_paraphrase_train.txt": "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    "MRPC/msr_paraphrase_test.txt": "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
}
"""Full sha256 of SentEval's prepared files (keys relative to ``downstream/``), computed from known-good copies."""


def _prepared(rel: str, *urls: str) -> Artifact:
    """A byte copy of one of SentEval's prepared files; its checksum is the output's."""
    return Artifact(rel, tuple(urls), _SHA.get(rel))


def _prepared_recipe(rels: dict[str, tuple[str, ...]]) -> Recipe:
    """Recipe that takes SentEval's prepared files from public copies or from a mirror of a SentEval data folder."""
    arts = tuple(_prepared(rel, *urls) for rel, urls in rels.items())
    return Recipe("prepared copy", arts, _place_prepared(list(rels)))


def _served(dataset: str) -> tuple[str, ...]:
    """The tasks whose spec names ``dataset`` as the download unit of their files, in the registry's order."""
    return tuple(s.name for s in specs() if s.dataset == dataset)


def _probing_dataset(spec: TaskSpec) -> Dataset:
    rel = spec.files[0]
    fname = rel.removeprefix("probing/")
    art = Artifact(fname, (f"{SENTEVAL_RAW}/{fname}",))
    return Dataset(
        name=spec.dataset,
        tasks=_served(spec.dataset),
        outputs=(Output(rel, lines=SENTEVAL_FILE_LINES[rel]),),
        recipes=(Recipe("SentEval repository", (art,), copy_as({fname: rel})),),
        note="Ships with SentEval's git repository; 100k/10k/10k lines (tr/va/te).",
        group="probing",
    )


def _sst(kind: str, task: str, raw_names: dict[str, str], raw_base: str, qnn_dir: str) -> Dataset:
    outs = {s: f"SST/{kind}/sentiment-{s}" for s in ("train", "dev", "test")}
    raw = tuple(Artifact(raw_names[s], (f"{raw_base}/{raw_names[s]}",), _SHA[outs[s]]) for s in outs)
    return Dataset(
        name=task,
        tasks=_served(task),
        outputs=tuple(
            Output(f"downstream/{outs[s]}", _SHA[outs[s]], SENTEVAL_FILE_LINES[f"downstream/{outs[s]}"])
            for s in outs
        ),
        recipes=(
            Recipe("SentEval sources", raw, copy_as({raw_names[s]: f"downstream/{outs[s]}" for s in outs})),
            _prepared_recipe(
                {outs[s]: (f"{QNN}/SST/{qnn_dir}/sentiment-{s}", f"{YANS}/{outs[s]}") for s in outs}
            ),
        ),
    )


def _nb_dataset(task: str, note: str) -> Dataset:
    o1, o2 = (f.removeprefix("downstream/") for f in get_task(task).files)
    zip_art = Artifact("datasmall_NB_ACL12.zip", (f"{FB_BUCKET}/datasmall_NB_ACL12.zip",))
    return Dataset(
        name=task,
        tasks=_served(task),
        outputs=(
            Output(f"downstream/{o1}", lines=SENTEVAL_FILE_LINES.get(f"downstream/{o1}"), exact=False),
            Output(f"downstream/{o2}", lines=SENTEVAL_FILE_LINES.get(f"downstream/{o2}"), exact=False),
        ),
        recipes=(
            Recipe("SentEval sources (cat -v + PTB tokenizer)", (zip_art,), _nb_classif(task)),
            _prepared_recipe({o1: (), o2: ()}),
        ),
        note=note,
    )


def _sts_dataset(task: str) -> Dataset:
    year = int(task[3:])
    archive = f"STS20{year}-en-test.zip"
    spec = get_task(task)
    sets = spec.splits
    folder = f"STS/{task}-en-test"
    outputs = []
    for s in sets:
        outputs.append(Output(f"downstream/{folder}/STS.input.{s}.txt", exact=False))
        outputs.append(Output(f"downstream/{folder}/STS.gs.{s}.txt"))
    rels = {f"{folder}/STS.{kind}.{s}.txt": () for s in sets for kind in ("input", "gs")}
    return Dataset(
        name=task,
        tasks=_served(task),
        outputs=tuple(outputs),
        recipes=(
            Recipe(
                "SentEval sources (Moses + lowercase)",
                (Artifact(archive, (_STS_ZIPS[task],)),),
                _sts_year(year, archive, sets),
            ),
            _prepared_recipe(rels),
        ),
        note="Scored pairs per sub-dataset: "
        + ", ".join(f"{k} {v}" for k, v in spec.sizes.items()),
    )


def _build_table() -> dict[str, Dataset]:
    table: dict[str, Dataset] = {}
    for spec in specs():
        if spec.is_probing:
            table[spec.dataset] = _probing_dataset(spec)

    table["SST2"] = _sst(
        "binary",
        "SST2",
        {s: f"sentiment-{s}" for s in ("train", "dev", "test")},
        "https://raw.githubusercontent.com/PrincetonML/SIF/master/data",
        "Binary",
    )
    table["SST5"] = _sst(
        "fine",
        "SST5",
        {s: f"stsa.fine.{s}" for s in ("train", "dev", "test")},
        "https://raw.githubusercontent.com/AcademiaSinicaNLPLab/sentiment_dataset/master/data",
        "Fine-Grained",
    )

    trec_names = {"train_5500.label": "TREC/train_5500.label", "TREC_10.label": "TREC/TREC_10.label"}
    table["TREC"] = Dataset(
        name="TREC",
        tasks=_served("TREC"),
        outputs=tuple(
            Output(f"downstream/{r}", _SHA[r], SENTEVAL_FILE_LINES[f"downstream/{r}"]) for r in trec_names.values()
        ),
        recipes=(
            Recipe(
                "SentEval sources (quotes stripped)",
                tuple(Artifact(n, (f"http://cogcomp.cs.illinois.edu/Data/QA/QC/{n}",)) for n in trec_names),
                _trec({n: f"downstream/{r}" for n, r in trec_names.items()}),
            ),
            _prepared_recipe({r: (f"{QNN}/{r}", f"{YANS}/{r}") for r in trec_names.values()}),
        ),
    )

    mrpc = {s: f"MRPC/msr_paraphrase_{s}.txt" for s in ("train", "test")}
    table["MRPC"] = Dataset(
        name="MRPC",
        tasks=_served("MRPC"),
        outputs=tuple(
            Output(f"downstream/{r}", _SHA[r], SENTEVAL_FILE_LINES[f"downstream/{r}"]) for r in mrpc.values()
        ),
        recipes=(
            Recipe(
                "SentEval sources",
                tuple(
                    Artifact(f"msr_paraphrase_{s}.txt", (f"{FB_BUCKET}/msr_paraphrase_{s}.txt",), _SHA[r])
                    for s, r in mrpc.items()
                ),
                copy_as({f"msr_paraphrase_{s}.txt": f"downstream/{r}" for s, r in mrpc.items()}),
            ),
            _prepared_recipe({r: (f"{YANS}/{r}",) for r in mrpc.values()}),
        ),
        note="4076 / 1725 pairs plus a header line (UTF-8 BOM on the header).",
    )

    sick = {s: f"SICK/SICK_{s}.txt" for s in ("train", "trial", "test_annotated")}
    table["SICK"] = Dataset(
        name="SICK",
        tasks=_served("SICK"),
        outputs=tuple(
            Output(f"downstream/{r}", _SHA[r], SENTEVAL_FILE_LINES[f"downstream/{r}"], exact=False)
            for r in sick.values()
        ),
        recipes=(
            Recipe(
                "SentEval sources (Moses tokenizer)",
                tuple(
                    Artifact(
                        f"sick_{s}.zip", (f"http://alt.qcri.org/semeval2014/task1/data/uploads/sick_{s}.zip",)
                    )
                    for s in sick
                ),
                _sick(),
            ),
            _prepared_recipe({r: (f"{YANS}/{r}",) for r in sick.values()}),
        ),
        note="4500 / 500 / 4927 pairs plus a header line; the test file has CRLF line endings.",
    )

    stsb = {s: f"STS/STSBenchmark/sts-{s}.csv" for s in ("train", "dev", "test")}
    table["STSBenchmark"] = Dataset(
        name="STSBenchmark",
        tasks=_served("STSBenchmark"),
        outputs=tuple(
            Output(f"downstream/{r}", lines=SENTEVAL_FILE_LINES[f"downstream/{r}"], exact=False) for r in stsb.values()
        ),
        recipes=(
            Recipe(
                "SentEval sources (Moses + lowercase)",
                (
                    Artifact(
                        "Stsbenchmark.tar.gz",
                        ("http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz",),
                    ),
                ),
                _stsb(),
            ),
            _prepared_recipe({r: () for r in stsb.values()}),
        ),
    )
    for spec in specs():
        if spec.kind == "sts":
            table[spec.dataset] = _sts_dataset(spec.name)

    table["MR"] = _nb_dataset("MR", "5331 positive and 5331 negative snippets.")
    table["CR"] = _nb_dataset("CR", "About 3.8k reviews sentences in all (positive and negative).")
    table["SUBJ"] = _nb_dataset("SUBJ", "5000 objective (label 1) and 5000 subjective sentences.")
    table["MPQA"] = _nb_dataset("MPQA", "About 10.6k phrases in all (positive and negative).")
    return table


DATASETS: dict[str, Dataset] = _build_table()
"""Dataset name -> :class:`Dataset`. Probing datasets are named after their task."""

def all_tasks() -> tuple[str, ...]:
    """Every task the downloader knows, in SentEval's (and the engine's) order: downstream, then probing tasks
    (read from the task registry, so a registered task is known here too)."""
    return tuple(s.name for s in specs() if not s.is_probing) + tuple(s.name for s in specs() if s.is_probing)


def groups() -> dict[str, tuple[str, ...]]:
    """The group names ``--tasks`` accepts: ``all``, ``probing``, ``downstream`` and each downstream task's
    ``group`` (``classification``, ``sst``, ``sick``, ``sts``), from the task registry."""
    out: dict[str, tuple[str, ...]] = {
        "all": all_tasks(),
        "probing": tuple(s.name for s in specs() if s.is_probing),
        "downstream": tuple(s.name for s in specs() if not s.is_probing),
    }
    for s in specs():
        if not s.is_probing and s.group:
            out[s.group] = out.get(s.group, ()) + (s.name,)
    return out


def task_dataset(task: str) -> Dataset:
    """The dataset that provides ``task``'s files (its spec's ``dataset``); ``KeyError`` when none does."""
    try:
        name = get_task(task).dataset
    except ValueError:
        raise KeyError(task) from None
    if name not in DATASETS:
        raise KeyError(task)
    return DATASETS[name]


def expand_tasks(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Turn user input (task names, dataset names like ``SICK``, groups like ``probing``; any case, commas allowed)
    into SentEval task names, in a stable order. ``None`` or empty means every task."""
    every, named = all_tasks(), groups()
    if not names:
        return list(every)
    lookup = {t.lower(): (t,) for t in every}
    lookup.update({d.lower(): ds.tasks for d, ds in DATASETS.items()})
    lookup.update(named)
    wanted: list[str] = []
    for raw in names:
        for name in filter(None, (p.strip() for p in raw.split(","))):
            key = name.lower()
            if key not in lookup:
                raise ValueError(
                    f"unknown task {name!r}; use SentEval task names ({', '.join(every)}), a dataset "
                    f"(SICK, STS12…) or a group ({', '.join(named)})"
                )
            wanted.extend(t for t in lookup[key] if t not in wanted)
    return [t for t in every if t in wanted]


def check_tasks(tasks: Any) -> list[str]:
    """Task names as every entry point reads them (the command line's ``--tasks`` convention: names in any case,
    data sets, groups; a string with commas, a list or a NumPy array), each once: ``"Length,Length"`` is one task."""
    names = names_list(tasks, what="tasks", example="'Length,Depth' or ['Length'] (or a group such as 'probing')")
    out: list[str] = []
    for name in names:  # the caller's order (a sweep runs tasks in it), groups expanded in place
        try:
            out.extend(t for t in expand_tasks([name]) if t not in out)
        except ValueError as exc:
            raise ValueError(f"tasks={tasks!r}: {exc}") from None
    return out


def datasets_for(tasks: list[str]) -> list[Dataset]:
    """The datasets needed for ``tasks`` (each once, table order)."""
    names = {task_dataset(t).name for t in tasks}
    return [ds for name, ds in DATASETS.items() if name in names]


class DamagedArchiveError(ValueError):
    """A ``--mirror`` archive that cannot be read to the end (truncated, a bad CRC, not what its name says): one line
    naming the archive and what is wrong, instead of the decompressor's own exception."""


@contextlib.contextmanager
def _reading_archive(path: Path, member: str | None = None) -> Iterator[None]:
    """Turn the decompressors' errors (EOFError, zlib.error, BadZipFile, TarError) into a :class:`DamagedArchiveError`
    naming the archive (and the member being read)."""
    try:
        yield
    except EOFError:
        what = "it is truncated: the compressed data ends before the archive does"
    except zlib.error as exc:
        what = f"its compressed data is corrupt ({exc})"
    except zipfile.BadZipFile as exc:
        what = f"a zip member failed its check ({exc})" if "CRC" in str(exc) else f"not a readable zip ({exc})"
    except (tarfile.TarError, gzip.BadGzipFile, lzma.LZMAError) as exc:
        what = f"not a readable tar archive ({exc or type(exc).__name__})"
    else:
        return
    at = f" while reading {member}" if member else ""
    raise DamagedArchiveError(f"--mirror {path}: the archive is damaged{at}: {what}; download or create it again, "
                              "or drop this --mirror")


def archive_names(path: Path) -> list[str]:
    """Member file names of a zip or tar archive (used to look up mirror archives)."""
    with _reading_archive(path):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return [n for n in zf.namelist() if not n.endswith("/")]
        with tarfile.open(path) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()]
    raise AssertionError("unreachable")  # pragma: no cover - _reading_archive either returns or raises


def read_archive_member(path: Path, member: str) -> bytes:
    """Bytes of one member of a zip or tar archive (a damaged archive: :class:`DamagedArchiveError`)."""
    with _reading_archive(path, member):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return zf.read(member)
        with tarfile.open(path) as tf:
            fh = tf.extractfile(member)
            if fh is None:
                raise FileNotFoundError(f"{member} is not a regular file in {path}")
            return fh.read()
    raise AssertionError("unreachable")  # pragma: no cover


def is_archive(path: Path) -> bool:
    """Whether a local mirror path is an archive we can search (zip, tar, tar.gz, ...)."""
    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        return True
    try:
        return tarfile.is_tarfile(path)
    except (OSError, io.UnsupportedOperation):
        return False
