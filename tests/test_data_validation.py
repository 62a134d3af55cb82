"""What the loaders refuse and what they tolerate, on real files in tmp dirs: fixed label sets (an unknown label in
any split is a DataError naming file:line), a last line cut short where SentEval's line count is known, and a UTF-8
byte-order mark. The files are copies of the embedded demo data (data/default), edited the way users' files go
wrong; the real SentEval subsample in ../shared is used, when present, to check that the label sets are SentEval's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from senteval_anatomy.data.__main__ import main as data_main
from senteval_anatomy.engine import PROBING_TASKS, DataError, get_task, load_task
from senteval_anatomy.engine.registry import SENTEVAL_FILE_LINES

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "data" / "default"
SHARED = REPO.parent / "shared" / "senteval-data"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A private, editable copy of the demo data."""
    root = tmp_path / "data"
    shutil.copytree(DEFAULT, root)
    return root


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _set_line(path: Path, lineno: int, edit) -> None:  # noqa: ANN001 - str -> str
    lines = _lines(path)
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _first_line_of(path: Path, split: str) -> int:
    return next(i for i, line in enumerate(_lines(path), 1) if line.startswith(split + "\t"))


# ------------------------------------------------------------------------------------------------ label sets


@pytest.mark.parametrize("task", [t for t in PROBING_TASKS if get_task(t).labels is not None])
def test_unknown_train_label_is_an_error_naming_file_and_line(data: Path, task: str) -> None:
    """A typo in a training label used to become a new class silently; it is now refused."""
    path = data / get_task(task).files[0]
    load_task(task, data)  # the demo data is valid
    lineno = 7
    _set_line(path, lineno, lambda line: "\t".join(f + "x" if k == 1 else f for k, f in enumerate(line.split("\t"))))
    with pytest.raises(DataError) as err:
        load_task(task, data)
    assert err.value.path == str(path) and err.value.line == lineno
    assert f"{path}:{lineno}: unknown label" in str(err.value)
    assert "expected: a " + task + " label: one of" in str(err.value)


@pytest.mark.parametrize("split", ["tr", "va", "te"])
def test_unknown_label_in_every_split(data: Path, split: str) -> None:
    path = data / get_task("Tense").files[0]
    lineno = _first_line_of(path, split) + 3
    _set_line(path, lineno, lambda line: line.replace("\tPAST\t", "\tPASST\t").replace("\tPRES\t", "\tPRESS\t"))
    with pytest.raises(DataError, match="unknown label 'P(ASST|RESS)'") as err:
        load_task("Tense", data)
    assert (err.value.path, err.value.line) == (str(path), lineno)


def test_label_with_a_trailing_space_is_not_a_new_class(data: Path) -> None:
    path = data / get_task("SubjNumber").files[0]
    _set_line(path, 2, lambda line: line.replace("\tNN\t", "\tNN \t").replace("\tNNS\t", "\tNNS \t"))
    with pytest.raises(DataError, match=r"unknown label 'NNS? '") as err:
        load_task("SubjNumber", data)
    assert err.value.line == 2


def test_word_content_label_must_be_a_word_of_its_sentence(data: Path) -> None:
    path = data / get_task("WordContent").files[0]
    split, label, sentence = _lines(path)[4].split("\t")
    assert label in sentence.lower().split()
    _set_line(path, 5, lambda line: f"{split}\t{label[:-1]}\t{sentence}")  # a typo: the word is not in the sentence
    with pytest.raises(DataError, match="does not occur in the sentence") as err:
        load_task("WordContent", data)
    assert (err.value.path, err.value.line) == (str(path), 5)
    _set_line(path, 5, lambda line: f"{split}\t{label.upper()}\t{sentence}")  # labels are lower case
    with pytest.raises(DataError, match="does not occur in the sentence"):
        load_task("WordContent", data)
    _set_line(path, 5, lambda line: f"{split}\t{label}\t{sentence.upper()}")  # the sentence's case does not matter
    assert load_task("WordContent", data).n_classes == 25


@pytest.mark.skipif(not (SHARED / "probing").is_dir(), reason="the real SentEval subsample is not available")
def test_label_sets_are_senteval_s() -> None:
    """Every label in the real SentEval probing files is accepted, and TopConstituents' 20 are exactly SentEval's."""
    for task in PROBING_TASKS:
        labels = {line.split("\t")[1] for line in _lines(SHARED / get_task(task).files[0])}
        load_task(task, SHARED)  # raises on any unknown label (or WordContent word missing from its sentence)
        if get_task(task).labels is not None:
            assert labels <= get_task(task).labels, task
    top = {line.split("\t")[1] for line in _lines(SHARED / get_task("TopConstituents").files[0])}
    assert top == get_task("TopConstituents").labels and len(top) == 20


def test_demo_labels_are_within_the_fixed_sets() -> None:
    for task in PROBING_TASKS:
        labels = {line.split("\t")[1] for line in _lines(DEFAULT / get_task(task).files[0])}
        if get_task(task).labels is not None:
            assert labels <= get_task(task).labels, task


# ------------------------------------------------------------------------------------------------ cut short


def test_last_line_cut_short_is_reported_where_the_line_count_is_known(data: Path) -> None:
    rel = get_task("Depth").files[0]
    path = data / rel
    raw = path.read_bytes()
    n = raw.count(b"\n")
    path.write_bytes(raw[:-12])  # an interrupted copy: the last line lost its end
    with pytest.raises(DataError) as err:
        load_task("Depth", data)
    assert (err.value.path, err.value.line) == (str(path), n)
    msg = str(err.value)
    assert "cut short" in msg and f"after {n} of the {SENTEVAL_FILE_LINES[rel]} lines" in msg
    assert "download --tasks Depth --force" in msg

    # A deliberate subset ends with a newline: accepted.
    path.write_bytes(b"".join(raw.splitlines(keepends=True)[:-40]))
    assert len(load_task("Depth", data).data["test"]["y"]) == 210


def test_cut_short_in_downstream_files_and_crlf(data: Path) -> None:
    sst = data / "downstream/SST/fine/sentiment-train"
    raw = sst.read_bytes()
    sst.write_bytes(raw[:-5])
    with pytest.raises(DataError, match="cut short") as err:
        load_task("SST5", data)
    assert err.value.line == raw.count(b"\n")
    sst.write_bytes(raw)

    sick = data / "downstream/SICK/SICK_train.txt"
    crlf = sick.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    sick.write_bytes(crlf[:-9])  # cut inside the last line of a CRLF file
    with pytest.raises(DataError, match="cut short"):
        load_task("SICKEntailment", data)


def test_full_file_without_final_newline_is_fine(data: Path) -> None:
    """Where the file has all of SentEval's lines, a missing final newline is only a style (TREC test: 500 lines)."""
    rel = "downstream/TREC/TREC_10.label"
    lines = _lines(data / rel)
    full = (lines * 2)[: SENTEVAL_FILE_LINES[rel]]
    (data / rel).write_text("\n".join(full), encoding="latin-1")  # no final newline
    assert len(load_task("TREC", data).data["test"]["y"]) == SENTEVAL_FILE_LINES[rel]
    (data / rel).write_text("\n".join(full[:-1]), encoding="latin-1")  # one line short and no final newline
    with pytest.raises(DataError, match="cut short") as err:
        load_task("TREC", data)
    assert err.value.line == SENTEVAL_FILE_LINES[rel] - 1


def test_check_command_reports_a_cut_file_as_broken(data: Path, capsys: pytest.CaptureFixture) -> None:
    path = data / get_task("Tense").files[0]
    path.write_bytes(path.read_bytes()[:-3])
    assert data_main(["check", str(data), "--tasks", "Tense"]) == 1
    out = capsys.readouterr().out
    assert "broken" in out and f"{path}:2500:" in out and "cut short" in out


# ------------------------------------------------------------------------------------------------ BOM


@pytest.mark.parametrize("task", ["Tense", "SST5", "SST2", "SICKEntailment", "TREC"])
def test_utf8_bom_is_tolerated(data: Path, task: str) -> None:
    before = load_task(task, data)
    spec = get_task(task)
    for rel in spec.files:
        p = data / rel
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    after = load_task(task, data)
    assert after.data == before.data and after.samples == before.samples
