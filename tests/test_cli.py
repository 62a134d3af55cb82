"""The command line: the two run scripts end to end in real subprocesses (tiny model saved to disk, tiny
SentEval-format data), the one ``senteval-anatomy`` command and its dispatch, presets, the one ``--tasks``
convention. Bad inputs: ``test_cli_errors.py``; faults: ``test_faults.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import build_tiny
from test_sweep import make_tiny_data

from senteval_anatomy import cli

REPO = Path(__file__).resolve().parents[1]
PROBE = ["--seed", "7", "--kfold", "2", "--tenacity", "2", "--epoch-size", "1", "--max-epoch", "8",
         "--probe-batch-size", "64", "-q"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert")
    model, tok = build_tiny("bert", seed=1)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def run(script: str, *args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["SENTEVAL_ANATOMY_CACHE"] = str(cwd / "cache")
    env.pop("SENTEVAL_ANATOMY_DATA", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_run_probing_end_to_end(tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "out"
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks",
            "Length,Tense", "--out", str(out), "--topk", "--ks", "1,2,4", *PROBE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"output folder: {out.resolve()}" in r.stdout
    table = pd.read_csv(out / "results.csv")
    assert set(table.task) == {"Length", "Tense"} and set(table.view) == {"heads", "layers"}
    assert len(table) == 2 * (2 * 4 + 3)
    report = (out / "report.md").read_text()
    assert "figures/heads_sorted_grid.png" in report and "figures/topk.png" in report
    for name in ("heads_sorted_grid", "heads_unsorted_grid", "layer_curves", "heatmap_Length", "topk"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "figures" / f"{name}.svg").exists()
    assert "| Length |" in r.stdout  # the summary table is printed
    # a rerun resumes: nothing recomputed, same table
    again = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks",
                "Length,Tense", "--out", str(out), "--topk", "--ks", "1,2,4", "--no-plots", *PROBE, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)


def test_run_downstream_topk_table(tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "ds"
    r = run("run_downstream.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "TREC",
            "--out", str(out), "--ks", "1,2", *PROBE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| TREC |" in r.stdout and "topk_test" in r.stdout
    units = list((out / "topk" / "units").glob("*__TREC__topk__*.json"))  # the view's keyed unit
    assert len(units) == 1
    curve = pd.read_csv(out / "topk.csv")
    assert set(curve[curve.kind == "topk"].k) == {1, 2, 4}  # --ks plus the paper's k (heads per layer)
    assert curve.selected.sum() == 1


def test_main_job_table_shows_topk_by_default(tiny_model_dir, tiny_data, tmp_path):
    """Issue 17: the main job (no --topk flag) prints best layer, best head and the dev-chosen top-k (the paper's
    k and the dev-best k) for every probing task; --no-topk leaves those cells empty."""
    out = tmp_path / "main"
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks",
            "Length,Tense", "--out", str(out), "--no-plots", *PROBE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("| task"))
    for col in ("best_layer", "best_head", "topk_k", "topk_test", "topk_paper_k", "topk_paper_test"):
        assert col in header, col
    for task in ("Length", "Tense"):
        row = next(line for line in r.stdout.splitlines() if line.startswith(f"| {task} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        values = dict(zip([c.strip() for c in header.strip("|").split("|")], cells, strict=True))
        assert values["topk_paper_k"] == "4" and values["topk_k"] not in ("", "nan", "–")
        assert float(values["topk_test"]) > 0 and float(values["topk_paper_test"]) > 0
    off = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks",
              "Length", "--out", str(tmp_path / "off"), "--no-plots", "--no-topk", *PROBE, cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "off" / "topk").exists()


def test_run_probing_on_the_embedded_default(tiny_model_dir, tmp_path):
    """No --task-path and no downloaded data: the embedded demo data is used, and the output says so."""
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--tasks", "Length", "--views", "layers",
            "--out", str(tmp_path / "o"), *PROBE, cwd=tmp_path,
            env_extra={"HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    assert "embedded" in r.stderr and "demo" in r.stderr
    table = pd.read_csv(tmp_path / "o" / "results.csv")
    assert len(table) == 3 and table.ntest.iloc[0] == 250


def test_single_adapter_mode(tiny_model_dir, tiny_data, tmp_path):
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
            "--layer", "-1", *PROBE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["vector"] == "blocks.1.hook_resid_post"
    assert set(payload["results"]["Tense"]) >= {"devacc", "acc", "ndev", "ntest"}
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
            "--head", "0,3", "--harness", "senteval", *PROBE, cwd=tmp_path)
    assert r.returncode == 2 and "SentEval" in r.stderr


def test_one_command_help_lists_every_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "senteval_anatomy", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path, timeout=120)
    assert r.returncode == 0
    for name in cli.COMMANDS:
        assert f"  {name} " in r.stdout


def test_console_scripts_point_at_real_functions():
    """setup.py installs `senteval-anatomy` (and the data/cache aliases); every target is a callable main."""
    import ast
    import importlib

    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = next(ast.literal_eval(kw.value)["console_scripts"] for node in ast.walk(tree)
                   if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == "entry_points")
    targets = dict(s.split("=") for s in scripts)
    assert targets["senteval-anatomy"] == "senteval_anatomy.cli:main"
    for target in targets.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_help_shows_defaults_from_the_one_source(capsys):
    from senteval_anatomy.vocab import ENCODE_BATCH_SIZE, PRESETS

    with pytest.raises(SystemExit):
        cli.main(["probing", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, params in PRESETS.items():
        assert f"{name}: {params['kfold']}" in text
        assert f"{name}: {params['classifier']['optim']}" in text
    assert f"(speed and memory only) (default: {ENCODE_BATCH_SIZE})" in text


def test_data_and_cache_dispatch_with_the_same_tasks_convention(tmp_path, capsys):
    assert cli.main(["data", "sources", "--tasks", "length,TENSE"]) == 0
    out = capsys.readouterr().out
    assert "sentence_length.txt" in out and "past_present.txt" in out and "tree_depth.txt" not in out
    assert cli.main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    assert str(tmp_path) in capsys.readouterr().out


def test_a_command_whose_module_is_absent_says_so(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "nope", ("senteval_anatomy.no_such_module:main", "test"))
    assert cli.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "not part of this version" in err and "Traceback" not in err


def test_preset_flags_override_and_no_plots_keeps_topk(tiny_model_dir, tiny_data, tmp_path, capsys):
    """--preset senteval-default with an explicit --kfold: the rows record the preset's probe and the override;
    task names in any case, separated by spaces (or commas); --no-plots skips figures but still evaluates top-k."""
    out = tmp_path / "out"
    status = cli.main(["probing", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks",
                       "length", "TENSE", "--views", "heads", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--preset",
                       "senteval-default", "--kfold", "2", "--max-epoch", "8", "--no-plots", "--topk", "--ks", "1,2",
                       "-q"])
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(out / "results.csv")
    assert set(table.task) == {"Length", "Tense"} and set(table.kfold) == {2}
    clf = json.loads(table.classifier.iloc[0])
    assert (clf["optim"], clf["batch_size"], clf["tenacity"], clf["epoch_size"]) == ("adam", 64, 5, 4)
    assert set(table.seed) == {1111}
    assert set(table.preset) == {"custom"}  # the rows name a preset only when the settings are exactly its own
    assert not (out / "figures").exists()
    curve = pd.read_csv(out / "topk.csv")
    curve = curve[curve.task == "Length"]
    assert set(curve[curve.kind == "topk"].k) == {1, 2, 4}  # --ks plus the paper's k (heads per layer)


def test_negative_layer_index_for_a_head(tiny_model_dir, tiny_data, tmp_path, capsys):
    """--head -1,0 is head 0 of the last block; the output names the preset whose settings were used."""
    status = cli.main(["probing", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
                       "--head", "-1,0", "--cache-dir", str(tmp_path / "cache"), "--preset", "prototyping", "-q"])
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["vector"] == "blocks.1.attn.head.0" and payload["preset"] == "prototyping"
