"""Faults, in real processes of ``python -m senteval_anatomy probing``: kill -9 and Ctrl-C at every stage, a full
disk, two runs at once. After each, a rerun of the same command gives the table of a clean run, and no unit that
was finished before is computed again.

Where a fault must strike at an exact point (during encoding, the cache write, probe training, the result write),
the child process loads ``tests/faults/sitecustomize.py`` (test-only, see its docstring), which sends the signal at
the N-th call of a named function or the N-th rename into a named folder, so nothing depends on the machine's speed.
A full disk is a real one: a tiny tmpfs (skipped where this process may not mount).
"""

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
FAULTS = Path(__file__).resolve().parent / "faults"
TASKS = ("Length", "Tense")
UNITS = len(TASKS) * 2  # heads and layers per task
PROBE = ["--seed", "7", "--kfold", "2", "--tenacity", "1", "--epoch-size", "1", "--max-epoch", "4",
         "--probe-batch-size", "64", "--batch-size", "16", "--no-plots", "--no-topk", "-q"]
# --no-topk: the fault points count the sweep's own trainer calls (one per unit); the top-k view adds one trainer
# call per k, keyed units of its own (resume of those is tested in test_topk / test_cli)
FORWARD = "transformers.models.bert.modeling_bert:BertModel.forward"
TRAIN = "senteval_anatomy.engine.batched:evaluate_many"
RESUME = " — rerun the same command to resume"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    model, tok = build_tiny("bert", seed=1)
    model.save_pretrained(root / "tiny-bert")
    tok.save_pretrained(root / "tiny-bert")
    return {"model": root / "tiny-bert", "data": make_tiny_data(root / "data")}


def launch(world: dict[str, Path], out: Path, cache: Path, *, fault: str = "", log: Path | None = None,
           wait: bool = True):
    """``python -m senteval_anatomy probing`` on the tiny model and data, with an optional fault rule."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=f"{FAULTS}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    env.pop("SENTEVAL_ANATOMY_DATA", None)
    env["SA_FAULT"] = fault
    env["SA_FAULT_LOG"] = str(log) if log else ""
    args = [sys.executable, "-m", "senteval_anatomy", "probing", "--model", str(world["model"]), "--task-path",
            str(world["data"]), "--tasks", ",".join(TASKS), "--out", str(out), "--cache-dir", str(cache), *PROBE]
    if not wait:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def log_lines(log: Path) -> list[str]:
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    assert not [x for x in lines if x.startswith("MISSING")], f"a fault target no longer exists: {lines}"
    return lines


def unit_files(out: Path) -> dict[str, int]:
    """Finished unit files (hidden temporary files excluded) and their modification times."""
    folder = out / "units"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")} \
        if folder.is_dir() else {}


def temporary_files(out: Path, cache: Path) -> set[Path]:
    """Hidden temporaries: atomic_write's ``.<name>.<random>.tmp`` files, the store's ``.tmp-*`` entry folders."""
    return {*out.rglob(".*.tmp"), *cache.rglob(".tmp-*")}


def table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip() and not x.startswith(("data: ", "model: "))]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory) -> pd.DataFrame:
    """A clean run; it also counts the forward passes, which proves that --batch-size reaches the encoder."""
    tmp = tmp_path_factory.mktemp("reference")
    log = tmp / "log"
    r = launch(world, tmp / "out", tmp / "cache", fault=f"batch:{FORWARD};count:{TRAIN}", log=log)
    assert r.returncode == 0, r.stderr
    lines = log_lines(log)
    assert lines.count(TRAIN) == UNITS
    from senteval_anatomy.engine.tasks import load_task

    # --batch-size 16: every forward pass holds at most 16 sentences, and each task's sentences fill
    # floor(n / 16) full batches (loading the model may add a check on a probe sentence or two)
    batches = [int(x.split()[1]) for x in lines if x.startswith(FORWARD)]
    full = sum(len({" ".join(s) for s in load_task(t, world["data"]).samples}) // 16 for t in TASKS)
    assert max(batches) == 16 and batches.count(16) == full
    df = table(tmp / "out")
    assert len(df) == len(TASKS) * (2 * 4 + 3)
    return df


def test_kill_and_ctrl_c_at_every_stage_then_resume(world, reference, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    stages = [
        ("encoding", f"KILL@call:{FORWARD}:2", -9),
        ("cache write, SIGTERM", "TERM@rename:/features/:1", 143),
        ("cache write", "KILL@rename:/features/:1", -9),
        ("probe training, Ctrl-C", f"INT@call:{TRAIN}:2", 130),
        ("probe training", f"KILL@call:{TRAIN}:2", -9),
        ("result write, Ctrl-C", "INT@rename:/units/:1", 130),
        ("result write", "KILL@rename:/units/:1", -9),
        ("clean rerun", "", 0),
    ]
    for i, (stage, fault, status) in enumerate(stages):
        log = tmp_path / f"log{i}"
        before = unit_files(out)
        temporaries = temporary_files(out, cache)
        r = launch(world, out, cache, fault=f"count:{TRAIN};{fault}", log=log)
        lines = log_lines(log)
        assert r.returncode == status, (stage, r.stderr)
        if fault:
            assert any(x.startswith("FIRED") for x in lines), stage
        if status in (130, 143):  # Ctrl-C or SIGTERM: one line, and the interrupted write left no temporary
            assert ("interrupted" if status == 130 else "terminated") + RESUME in one_error_line(r.stderr)
            assert temporary_files(out, cache) <= temporaries, stage
        after = unit_files(out)
        assert all(after.get(name) == mtime for name, mtime in before.items()), f"{stage}: a finished unit changed"
        trained = lines.count(TRAIN)
        assert trained <= UNITS - len(before), f"{stage}: a finished unit was trained again"
        assert len(after) - len(before) <= trained
    assert lines.count(TRAIN) == UNITS - len(before)  # the clean rerun trained exactly the missing units
    same_table(table(out), reference)


def test_two_runs_at_once_into_one_out_and_cache(world, reference, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    procs = [launch(world, out, cache, wait=False) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    same_table(table(out), reference)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """Mount a small tmpfs (a real full disk); skip cleanly where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_full_disk_in_the_cache(world, reference, tmp_path, tiny_tmpfs):
    """The features do not fit: one line saying so, exit 1, no entry and no temporary left in the cache."""
    cache = tiny_tmpfs("cache", "32k")
    r = launch(world, tmp_path / "out", cache)
    assert r.returncode == 1
    assert "no space left on" in one_error_line(r.stderr).lower()
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    r = launch(world, tmp_path / "out", tmp_path / "roomy-cache")
    assert r.returncode == 0, r.stderr
    same_table(table(tmp_path / "out"), reference)


def test_full_disk_in_the_output_folder(world, reference, tmp_path, tiny_tmpfs):
    """Room for some unit files only: the run stops with one line; the finished units are whole and are reused."""
    out = tiny_tmpfs("out", "8k")
    r = launch(world, out, tmp_path / "cache")
    assert r.returncode == 1
    assert "no space left on" in one_error_line(r.stderr).lower()
    done = unit_files(out)
    assert 1 <= len(done) < UNITS and not [p for p in out.rglob(".*") if p.is_file()]
    for name in done:
        json.loads((out / "units" / name).read_text(encoding="utf-8"))  # whole, readable
    subprocess.run(["mount", "-o", "remount,size=1m", str(out)], check=True)
    log = tmp_path / "log"
    r = launch(world, out, tmp_path / "cache", fault=f"count:{TRAIN}", log=log)
    assert r.returncode == 0, r.stderr
    assert all(unit_files(out)[name] == mtime for name, mtime in done.items())
    assert log_lines(log).count(TRAIN) == UNITS - len(done)
    same_table(table(out), reference)
