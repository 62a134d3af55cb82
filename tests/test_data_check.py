"""``check`` on good, partial, incomplete and broken folders (statuses, messages, exit codes), and the rules that
decide which data folder a command uses (``resolve_task_path``, ``default_task_path``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from senteval_anatomy.data import ENV_VAR, default_task_path, folders, grammar, resolve_task_path
from senteval_anatomy.data.__main__ import main
from senteval_anatomy.data.check import check, format_report

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "data" / "default"
SHARED_DATA = REPO.parent / "shared" / "senteval-data"


def _copy(rel: str, dest_root: Path) -> Path:
    dest = dest_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEFAULT / rel, dest)
    return dest


# ------------------------------------------------------------------------------------------------ check


def test_embedded_default_is_reported_partial_and_synthetic():
    report = check(DEFAULT)
    assert report.synthetic and not report.failed
    status = {t.task: t.status for t in report.tasks}
    assert status["Tense"] == status["SST2"] == status["SICKEntailment"] == "partial"
    assert status["STS12"] == status["CR"] == "absent"
    assert report.task("Depth").sizes == {"train": 2000, "dev": 250, "test": 250}
    text = format_report(report)
    assert "embedded synthetic demo data" in text and "python -m senteval_anatomy.data download" in text


def test_cli_exit_codes_on_requested_tasks(capsys):
    assert main(["check", str(DEFAULT), "--tasks", "Tense", "TREC"]) == 0
    out = capsys.readouterr().out
    assert "Tense" in out and "partial" in out
    assert main(["check", str(DEFAULT), "--tasks", "STS12"]) == 1  # asked for it, and it is not there
    assert "absent" in capsys.readouterr().out
    assert main(["check", "--task-path", str(DEFAULT), "--tasks", "sick", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [t["task"] for t in payload["tasks"]] == ["SICKRelatedness", "SICKEntailment"]
    assert payload["failed"] is False
    assert main(["check", str(DEFAULT / "nowhere")]) == 2


def test_malformed_line_is_broken_with_file_and_line(tmp_path, capsys):
    path = _copy("probing/past_present.txt", tmp_path)
    lines = path.read_text().splitlines()
    lines[6] = "xx" + lines[6][2:]
    path.write_text("\n".join(lines) + "\n")
    report = check(tmp_path, ["Tense"])
    t = report.task("Tense")
    assert t.status == "broken" and report.failed
    assert f"{path}:7:" in t.problems[0] and "unknown split 'xx'" in t.problems[0]
    assert main(["check", str(tmp_path)]) == 1  # a present task is broken: fails even without --tasks
    assert "broken" in capsys.readouterr().out


def test_some_files_missing_is_broken_with_the_fix(tmp_path):
    _copy("downstream/SICK/SICK_train.txt", tmp_path)
    t = check(tmp_path, ["SICKEntailment"]).task("SICKEntailment")
    assert t.status == "broken"
    assert "SICK_trial.txt" in t.problems[0] and "SICK_test_annotated.txt" in t.problems[0]
    assert "download --tasks SICK" in t.problems[1]


def test_standard_sizes_are_complete_and_subsets_partial(tmp_path):
    """A TREC folder with SentEval's sizes (5452 / 500) is complete; with fewer questions it is partial."""
    full = grammar.trec_lines(sizes={"train": 5452, "test": 500})
    folder = tmp_path / "full" / "downstream" / "TREC"
    folder.mkdir(parents=True)
    (folder / "train_5500.label").write_text("\n".join(full["train"]) + "\n")
    (folder / "TREC_10.label").write_text("\n".join(full["test"]) + "\n")
    assert check(tmp_path / "full", ["TREC"]).task("TREC").status == "complete"
    (folder / "TREC_10.label").write_text("\n".join(full["test"][:100]) + "\n")
    t = check(tmp_path / "full", ["TREC"]).task("TREC")
    assert t.status == "partial" and any("standard size" in n for n in t.notes)


def test_encodings_bom_and_line_endings_are_reported(tmp_path):
    trec = _copy("downstream/TREC/train_5500.label", tmp_path)
    _copy("downstream/TREC/TREC_10.label", tmp_path)
    trec.write_bytes(trec.read_bytes().replace(b"What", "Wh\u00e4t".encode(), 1))
    t = check(tmp_path, ["TREC"]).task("TREC")
    assert t.status == "partial"  # parses (SentEval reads latin-1), but:
    assert t.files[0].encoding == "utf-8" and any("mojibake" in n for n in t.notes)

    for s in ("train", "test"):
        _copy(f"downstream/MRPC/msr_paraphrase_{s}.txt", tmp_path)
    assert check(tmp_path, ["MRPC"]).task("MRPC").files[0].encoding == "ascii + UTF-8 BOM"

    for s in ("train", "trial", "test_annotated"):
        p = _copy(f"downstream/SICK/SICK_{s}.txt", tmp_path)
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    files = check(tmp_path, ["SICKRelatedness"]).task("SICKRelatedness").files
    assert [f.crlf for f in files] == [False, False, True]

    bad = tmp_path / "downstream/SST/fine"
    for s in ("train", "dev", "test"):
        _copy(f"downstream/SST/fine/sentiment-{s}", tmp_path)
    (bad / "sentiment-dev").write_bytes(b"2 caf\xe9 au lait .\n")
    t = check(tmp_path, ["SST5"]).task("SST5")
    assert t.status == "broken" and "not valid utf-8" in t.problems[0]
    assert t.files[1].encoding.startswith("not UTF-8")


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="real SentEval data not available at ../shared/senteval-data"
)
def test_real_data_is_complete_and_identical_to_senteval_files():
    report = check(SHARED_DATA, ["TREC", "SICK", "MRPC", "SST2", "SST5"])
    for t in report.tasks:
        assert t.status == "complete", (t.task, t.problems, t.notes)
        assert all(f.reference for f in t.files), t.task
    assert (
        check(SHARED_DATA, ["Depth"]).task("Depth").status == "partial"
    )  # its probing files are a subsample


# ------------------------------------------------------------------------------------------------ resolution


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SENTEVAL_ANATOMY_CACHE", raising=False)  # the cache root (vocab.default_cache_dir) follows XDG
    monkeypatch.delenv(ENV_VAR, raising=False)
    path, where = resolve_task_path(None)
    assert path == DEFAULT and "embedded synthetic demo data" in where and "download" in where

    downloaded = tmp_path / "cache" / "senteval_anatomy" / "data"
    _copy("probing/past_present.txt", downloaded)
    assert resolve_task_path(None) == (downloaded, resolve_task_path(None)[1])
    assert "downloaded" in resolve_task_path(None)[1]

    env_dir = tmp_path / "env"
    _copy("probing/past_present.txt", env_dir)
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    assert resolve_task_path(None) == (env_dir, f"from ${ENV_VAR}")

    arg_dir = tmp_path / "SentEval"  # a SentEval checkout: its data/ folder is used
    _copy("probing/past_present.txt", arg_dir / "data")
    path, where = resolve_task_path(str(arg_dir))
    assert path == arg_dir / "data" and where.startswith("from --task-path") and "checkout" in where


def test_resolution_errors_name_the_argument(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--task-path .*no such folder.*download"):
        resolve_task_path(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        resolve_task_path(tmp_path / "file.txt")
    with pytest.raises(ValueError, match="neither probing/ nor downstream/"):
        resolve_task_path(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        resolve_task_path(None)


def test_default_is_generated_into_the_cache_when_the_repo_copy_is_absent(tmp_path, monkeypatch, capsys):
    """An installed package has no data/default: the same generator fills ~/.cache, once, atomically."""
    monkeypatch.setattr(folders, "repo_default_path", lambda: tmp_path / "no-checkout")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SENTEVAL_ANATOMY_CACHE", raising=False)  # the cache root (vocab.default_cache_dir) follows XDG
    monkeypatch.setattr(grammar, "PROBING_SIZES", {"tr": 30, "va": 6, "te": 6})
    monkeypatch.setattr(
        grammar, "DOWNSTREAM_SIZES", {k: {s: 12 for s in v} for k, v in grammar.DOWNSTREAM_SIZES.items()}
    )
    path = default_task_path()
    assert path == tmp_path / "cache" / "senteval_anatomy" / "default-data"
    assert (path / ".generator-version").read_text().strip() == grammar.GENERATOR_VERSION
    assert len(list((path / "probing").iterdir())) == 10
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".default-data")]  # no temp folder left
    stamp = (path / "probing" / "tree_depth.txt").stat().st_mtime_ns
    assert default_task_path() == path and (path / "probing" / "tree_depth.txt").stat().st_mtime_ns == stamp
    (path / ".generator-version").write_text("0\n")  # an older generator's output is replaced
    default_task_path()
    assert (path / ".generator-version").read_text().strip() == grammar.GENERATOR_VERSION
    assert check(path, ["Tense"]).synthetic
    assert main(["path"]) == 0 and capsys.readouterr().out.strip()
