"""The two run scripts, end to end, in real subprocesses (tiny model saved to disk, tiny SentEval-format data)."""

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
    curves = list((out / "topk").glob("TREC__*.csv"))
    assert len(curves) == 1
    curve = pd.read_csv(curves[0])
    assert set(curve[curve.kind == "topk"].k) == {1, 2}
    assert curve.selected.sum() == 1


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "Lenght"], "unknown task"),
        (["--model", "/no/such/model/dir"], "Could not load"),
        (["--task-path", "/no/such/data"], "/no/such/data"),
        (["--head", "x"], "--head"),
    ],
)
def test_cli_errors_are_clear(args, message, tmp_path, tiny_data):
    base = ["--task-path", str(tiny_data)] if "--task-path" not in args else []
    r = run("run_probing.py", *base, *args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
