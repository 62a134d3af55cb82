"""A result's identity: units are reused only for exactly the same data, model, dtype, settings and seed; damaged
units are named and recomputed; several settings share one output folder without colliding."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import build_tiny
from test_cli import PROBE, run
from test_sweep import FAST, make_tiny_data

from senteval_anatomy.analysis.analyse import analyse
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import merge_units, sweep
from senteval_anatomy.sweeping.identity import UNIT_FORMAT, UnitFileWarning, read_unit
from senteval_anatomy.tables.results import Results
from senteval_anatomy.tables.table import load_table


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("id-data"), n_train=60, n_dev=20, n_test=20)


@pytest.fixture
def counted(monkeypatch):
    """Records (task, view) of every unit the sweep computes (the real trainer still runs)."""
    calls: list[tuple[str, str]] = []
    import senteval_anatomy.sweeping.backends.local as local  # the unit loop: one _batched call per unit computed

    real = local._batched

    def spy(*a, **k):
        calls.append((a[1].name, a[3].view))
        return real(*a, **k)

    monkeypatch.setattr(local, "_batched", spy)
    return calls


def _sweep(enc, data, out, store, **kw):
    kw.setdefault("params", FAST)
    kw.setdefault("views", ("layers",))
    return sweep(enc, ["Tense"], task_path=data, store=store, out_dir=out, progress=False, **kw)


def _scores(df: pd.DataFrame) -> pd.DataFrame:
    return df[["task", "view", "layer", "head", "devacc", "acc"]].reset_index(drop=True)


def test_stale_units_are_recomputed_never_reused(tiny_encoder, data, tmp_path, counted):
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    out = tmp_path / "out"
    first = _sweep(enc, data, out, store)
    assert counted == [("Tense", "layers")]
    assert first["data_hash"].nunique() == 1 and first["setting"].nunique() == 1
    assert first["data_path"].iloc[0] == str(data.resolve()) and first["preset"].iloc[0] == "custom"

    # same command: reused, identical (determinism on CPU)
    again = _sweep(enc, data, out, store)
    assert counted == [("Tense", "layers")]
    pd.testing.assert_frame_equal(again, first)

    # another data folder whose Tense file differs in one sentence: recomputed
    other = tmp_path / "other-data"
    shutil.copytree(data, other)
    f = other / "probing" / "past_present.txt"
    lines = f.read_text(encoding="utf-8").splitlines()
    split, label, sentence = lines[0].split("\t")
    lines[0] = "\t".join([split, label, sentence + " again"])
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    moved = _sweep(enc, other, out, store)
    assert len(counted) == 2
    assert moved["data_hash"].iloc[0] != first["data_hash"].iloc[0]
    assert moved["data_path"].iloc[0] == str(other.resolve())

    # the same data edited in place (same folder): recomputed too
    edited = tmp_path / "edited"
    shutil.copytree(data, edited)
    _sweep(enc, edited, out, store)
    assert len(counted) == 3
    (edited / "probing" / "past_present.txt").write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    _sweep(enc, edited, out, store)
    assert len(counted) == 4

    # another checkpoint of the same architecture and name: recomputed
    model, tok = build_tiny("bert", seed=5)
    other_ckpt = Encoder.from_model(model, tok, name=enc.name, device="cpu")
    _sweep(other_ckpt, data, out, store)
    assert len(counted) == 5

    # another dtype of the same weights: recomputed
    model, tok = build_tiny("bert", seed=0)
    half = Encoder.from_model(model.to(torch.bfloat16), tok, name=enc.name, device="cpu")
    lowp = _sweep(half, data, out, store)
    assert len(counted) == 6 and lowp["dtype"].iloc[0] == "bfloat16"

    # another seed: recomputed
    _sweep(enc, data, out, store, params=dict(FAST, seed=8))
    assert len(counted) == 7

    # every run is its own setting in the shared folder: no duplicate keys, every table still loads
    table = load_table(out)
    assert table["setting"].nunique() == 6  # first, other data, edited folder, checkpoint, dtype, seed
    assert len(table) == 6 * len(first)
    # the edited folder kept only its newest unit in results.csv, and the original numbers are unchanged
    assert len(table[table["data_path"] == str(edited.resolve())]) == len(first)
    pd.testing.assert_frame_equal(
        _scores(table[table["setting"] == first["setting"].iloc[0]]), _scores(first), check_dtype=False)


def test_same_command_same_table_other_seed_other_numbers(minilm, data, tmp_path):
    """Determinism on CPU with real features (the bundled MiniLM): two fresh runs agree to the bit; a seed moves them."""
    store = FeatureStore(tmp_path / "cache")
    one = _sweep(minilm, data, tmp_path / "a", store)
    two = _sweep(minilm, data, tmp_path / "b", store)
    pd.testing.assert_frame_equal(_scores(one), _scores(two))
    other = _sweep(minilm, data, tmp_path / "c", store, params=dict(FAST, seed=8))
    assert not _scores(other).equals(_scores(one))


def _unit(out: Path) -> Path:
    (unit,) = (out / "units").glob("*.json")
    return unit


@pytest.mark.parametrize("damage", ["empty", "truncated", "foreign", "other key", "csv text", "edited accuracy"])
def test_damaged_unit_is_named_and_recomputed(tiny_encoder, data, tmp_path, counted, damage):
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    out = tmp_path / "out"
    clean = _sweep(enc, data, out, store)
    unit = _unit(out)
    text = unit.read_text(encoding="utf-8")
    if damage == "empty":
        unit.write_text("")
    elif damage == "truncated":
        unit.write_text(text[: len(text) // 2])
    elif damage == "foreign":
        unit.write_text(json.dumps({"hello": "world"}))
    elif damage == "other key":  # a valid unit of another seed copied over this name
        payload = json.loads(text)
        payload["key"]["setting"]["params"]["seed"] = 99
        from senteval_anatomy.sweeping.identity import key_hash

        payload["key_hash"] = key_hash(payload["key"])
        unit.write_text(json.dumps(payload))
    elif damage == "edited accuracy":  # issue 18: a number edited by hand, key and key hash untouched
        payload = json.loads(text)
        payload["rows"][0][payload["columns"].index("acc")] = 99.99
        unit.write_text(json.dumps(payload))
    else:
        unit.write_text("model,task\nx,y\n")
    with pytest.warns(UnitFileWarning, match=unit.name):
        again = _sweep(enc, data, out, store)
    assert counted == [("Tense", "layers"), ("Tense", "layers")]  # recomputed once, not reused
    pd.testing.assert_frame_equal(again, clean)
    assert json.loads(unit.read_text())["format"] == UNIT_FORMAT  # repaired on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnitFileWarning)
        _sweep(enc, data, out, store)  # and now silently reused
    assert len(counted) == 2


def test_a_damaged_unit_never_blocks_later_runs(tiny_encoder, data, tmp_path, counted):
    """Another setting's empty unit in the folder: named, left out of results.csv, and every run still works."""
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    out = tmp_path / "out"
    (out / "units").mkdir(parents=True)
    junk = out / "units" / "tiny-bert__Tense__layers__cls__0123456789abcdef.json"
    junk.write_text("")
    with pytest.warns(UnitFileWarning, match=junk.name):
        table = _sweep(enc, data, out, store, resume=False)
    with pytest.warns(UnitFileWarning, match=junk.name):
        merged = merge_units(out)
    pd.testing.assert_frame_equal(merged, table, check_dtype=False)
    assert read_unit(_unit_of(out, table)) is not None


def _unit_of(out: Path, table: pd.DataFrame) -> Path:
    return next(p for p in (out / "units").glob("*.json") if p.stat().st_size > 0)


def test_two_settings_in_one_folder_through_analysis_and_report(tiny_encoder, data, tmp_path):
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    out = tmp_path / "out"
    a = _sweep(enc, data, out, store, views=("heads", "layers"))
    b = _sweep(enc, data, out, store, views=("heads", "layers"), params=dict(FAST, seed=8))
    assert len(a) == len(b) and a["setting"].iloc[0] != b["setting"].iloc[0]
    # each run's own table analyses as before
    rep_b = analyse(b, out, formats=("png",))
    assert "1 other run setting" in rep_b.path.read_text()
    # the whole folder: one report per setting and an index; nothing mixed, nothing crashes
    table = load_table(out)
    res = Results(table)
    with pytest.raises(ValueError, match="run settings"):
        res.top_heads("Tense", 3)
    s = res.settings()
    assert list(s["setting"]) == sorted([a["setting"].iloc[0], b["setting"].iloc[0]])
    assert sorted(s["seed"]) == ["7", "8"]
    best = res.select(setting=b["setting"].iloc[0]).best_head("Tense")
    assert best.devacc == Results(b).best_head("Tense").devacc
    rep = analyse(table, out, formats=("png",))
    index = rep.path.read_text()
    for setting in s["setting"]:
        assert f"settings/{setting}/report.md" in index
        assert (out / "settings" / setting / "report.md").is_file()
        assert (out / "settings" / setting / "figures" / "heads_sorted_grid.png").is_file()


def test_cli_runs_with_two_seeds_into_one_folder(tmp_path):
    """The crash of issue 10: --seed 1 then --seed 2 into one --out; both succeed and results.csv keeps both."""
    model_dir = tmp_path / "model"
    model, tok = build_tiny("bert", seed=1)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = make_tiny_data(tmp_path / "data", n_train=60, n_dev=20, n_test=20)
    out = tmp_path / "out"
    probe = [a for a in PROBE if a not in ("--seed", "7")]
    for seed in ("1", "2"):
        r = run("run_probing.py", "--model", str(model_dir), "--task-path", str(data), "--tasks", "Tense",
                "--out", str(out), "--seed", seed, *probe, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    table = load_table(out)
    assert sorted(table["seed"].unique()) == [1, 2] and table["setting"].nunique() == 2
    assert "other run setting" in (out / "report.md").read_text()


def _summary(stdout: str) -> str:
    """The printed summary of a CLI run, without the lines that name paths or times."""
    return "\n".join(line for line in stdout.splitlines()
                     if not line.startswith(("report:", "output folder:")) and "sweep:" not in line)


def test_edit_run_revert_run_serves_this_runs_keys(tmp_path):
    """Issue 18: run clean, edit a data file and run, revert the edit and run again into one --out. The third run's
    results.csv rows, printed summary and report.md are those of the clean data (its own keys' units), not the
    newest unit (the edited data's), which stays on disk and out of the table."""
    model_dir = tmp_path / "model"
    model, tok = build_tiny("bert", seed=1)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = make_tiny_data(tmp_path / "data", n_train=60, n_dev=20, n_test=20)
    out = tmp_path / "out"
    f = data / "probing" / "past_present.txt"
    clean_text = f.read_text(encoding="utf-8")

    def cli_run() -> tuple[str, pd.DataFrame, str]:
        r = run("run_probing.py", "--model", str(model_dir), "--task-path", str(data), "--tasks", "Tense",
                "--views", "layers", "--out", str(out), "--no-plots", *PROBE, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return _summary(r.stdout), pd.read_csv(out / "results.csv"), (out / "report.md").read_text()

    clean_summary, clean_table, clean_report = cli_run()
    lines = clean_text.splitlines()
    lines = [ln.replace("\tPRES\t", "\tPAST\t") if i % 2 else ln for i, ln in enumerate(lines)]  # other labels
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, edited_table, _ = cli_run()
    assert edited_table["data_hash"].iloc[0] != clean_table["data_hash"].iloc[0]
    f.write_text(clean_text, encoding="utf-8")
    summary, table, report = cli_run()
    assert len(list((out / "units").glob("*.json"))) == 2  # the edited data's unit stays on disk
    cols = ["task", "view", "layer", "head", "devacc", "acc", "data_hash"]
    pd.testing.assert_frame_equal(table[cols], clean_table[cols])
    assert summary == clean_summary
    assert report == clean_report


def test_a_hand_edited_results_csv_is_kept_as_a_backup(tiny_encoder, data, tmp_path):
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    out = tmp_path / "out"
    _sweep(enc, data, out, store)
    untouched = list(out.glob("results.csv.*.bak"))
    _sweep(enc, data, out, store)
    assert untouched == [] and list(out.glob("results.csv.*.bak")) == []  # a run's own file is simply replaced
    edited = (out / "results.csv").read_text() + "# my note\n"
    (out / "results.csv").write_text(edited)
    with pytest.warns(UserWarning, match=r"results.csv was changed since a run wrote it .* kept as results\.csv\."):
        _sweep(enc, data, out, store)
    (bak,) = out.glob("results.csv.*.bak")
    assert bak.read_text() == edited and "# my note" not in (out / "results.csv").read_text()
