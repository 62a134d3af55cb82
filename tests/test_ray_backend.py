"""The Ray backend: the same table as the local sweep, worker and driver crashes survived, one-line errors.

The first tests need no Ray (planning, device choice, exact shards, that the package never imports Ray). The rest
start one local Ray with 2 CPUs for the module and skip cleanly when Ray is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sweep import FAST, make_tiny_data

from senteval_anatomy.identity import read_unit
from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import sweep
from senteval_anatomy.sweeping.backends.ray import (
    RayBackend,
    missing_ranges,
    shard_bounds,
    unit_device,
    unit_resources,
)

REPO = Path(__file__).resolve().parents[1]
TASKS = ["Tense", "TREC"]
KEY = ["task", "view", "layer", "head"]
SCORES = ["devacc", "acc", "ndev", "ntest"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


# ------------------------------------------------------------------------------------------------ without Ray


def test_importing_the_package_never_imports_ray():
    code = ("import sys, senteval_anatomy, senteval_anatomy.sweeping, senteval_anatomy.cli, senteval_anatomy.sweeping.backends, "
            "senteval_anatomy.sweeping.backends.ray, senteval_anatomy.store; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_units_ask_ray_for_a_gpu_or_a_share_of_one():
    assert unit_resources("encode", 0) == unit_resources("train", 0) == {"num_cpus": 1}
    assert unit_resources("encode", 2) == {"num_cpus": 1, "num_gpus": 1}
    assert unit_resources("train", 2, train_units_per_gpu=3) == {"num_cpus": 1, "num_gpus": 1 / 3}
    with pytest.raises(ValueError, match="unit kind"):
        unit_resources("eval", 1)
    with pytest.raises(ValueError, match="train_units_per_gpu"):
        unit_resources("train", 1, train_units_per_gpu=0)


def test_device_follows_the_gpu_ray_assigned():
    assert unit_device("auto", [], cuda_available=True) == "cpu"  # never a GPU Ray did not hand out
    assert unit_device(None, ["1"], cuda_available=True) == "cuda:0"  # CUDA_VISIBLE_DEVICES=1 -> cuda:0
    assert unit_device("auto", ["1"], cuda_available=True, visible_remapped=False) == "cuda:1"
    assert unit_device("cpu", ["1"], cuda_available=True) == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA"):
        unit_device("auto", ["0"], cuda_available=False)


def test_shard_and_chunk_planning():
    assert shard_bounds(130, 64, 20_000) == [(0, 130)]
    assert shard_bounds(130, 64, 100) == [(0, 64), (64, 128), (128, 130)]
    assert shard_bounds(5, 4, 1) == [(0, 4), (4, 5)]  # at least one batch per shard
    assert missing_ranges(7, [(2, 5)], 2) == [(0, 2), (5, 7)]
    assert missing_ranges(4, [(0, 4)], 2) == []
    assert missing_ranges(144, [], 64) == [(0, 48), (48, 96), (96, 144)]  # balanced, no straggler
    assert missing_ranges(5, [(1, 2)], 10) == [(0, 1), (2, 5)]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("ray-data"))


def test_shards_encode_exactly_the_features_of_one_run(tiny_encoder, tmp_path):
    """Shards cut in batch order give bit-identical features, so the Ray table can equal the local one."""
    enc = tiny_encoder("bert")
    sentences = sorted({s.split("\t")[-1] for s in (REPO / "data/default/probing/past_present.txt").read_text().splitlines()
                        [:120]})
    store = FeatureStore(tmp_path / "cache")
    whole = store.get(enc, sentences, batch_size=16)
    shards = RayBackend(shard_size=32)._shards(enc, sentences, enc.max_length, 16)
    assert len(shards) > 2 and sorted(s for sh in shards for s in sh) == sentences
    for shard in shards:
        part = store.get(enc, shard, batch_size=16)
        rows = whole.rows(part.sentences)
        np.testing.assert_array_equal(np.asarray(part.heads), np.asarray(whole.heads)[rows])
        np.testing.assert_array_equal(np.asarray(part.layers), np.asarray(whole.layers)[rows])


# ------------------------------------------------------------------------------------------------ with Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", object_store_memory=200 * 1024**2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tiny_encoder, tiny_data, tmp_path_factory) -> pd.DataFrame:
    """The local backend's table: what every Ray run must reproduce."""
    store = FeatureStore(tmp_path_factory.mktemp("ref-cache"))
    return sweep(tiny_encoder("bert"), TASKS, task_path=tiny_data, params=FAST, store=store, progress=False)


def _same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    g = got.sort_values(KEY).reset_index(drop=True)
    w = want.sort_values(KEY).reset_index(drop=True)
    assert not g.duplicated(KEY).any(), "a unit was recorded twice"
    pd.testing.assert_frame_equal(g[KEY + SCORES + ["name", "fingerprint"]], w[KEY + SCORES + ["name", "fingerprint"]],
                                  check_dtype=False)


def test_ray_table_equals_local_table(ray_cluster, tiny_encoder, tiny_data, reference, tmp_path):
    enc = tiny_encoder("bert")
    out = tmp_path / "out"
    # several shards per task and several probe chunks per view, through the shared store ...
    backend = RayBackend(shard_size=64, probes_per_unit=3)
    got = sweep(enc, TASKS, task_path=tiny_data, params=FAST, store=FeatureStore(tmp_path / "c"), out_dir=out,
                progress=False, backend=backend)
    _same_table(got, reference)
    assert sorted(p.name for p in (out / "units").iterdir()) == sorted(
        p.name for p in (out / "units").glob("*.json")), "no .parts folder is left once a unit is complete"
    # ... and through Ray's object store, in memory
    got = sweep(enc, TASKS, task_path=tiny_data, params=FAST, store=FeatureStore(memory=True), progress=False,
                backend=RayBackend(probes_per_unit=5))
    _same_table(got, reference)


def _descendants_titled(title: bytes) -> list[int]:
    """Pids of this process's descendants whose process title starts with ``title`` (Ray names busy workers
    ``ray::<function>``)."""
    parent: dict[int, int] = {}
    titles: dict[int, bytes] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            titles[int(d)] = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    me = os.getpid()

    def mine(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == me:
                return True
        return False

    return [pid for pid, t in titles.items() if t.startswith(title) and mine(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers through /proc")
def test_a_worker_killed_mid_unit_is_retried_and_counted_once(ray_cluster, tiny_encoder, tiny_data, reference,
                                                              tmp_path):
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            for pid in _descendants_titled(b"ray::_train_unit"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        got = sweep(tiny_encoder("bert"), TASKS, task_path=tiny_data, params=FAST, store=FeatureStore(tmp_path / "c"),
                    out_dir=tmp_path / "out", progress=False, backend=RayBackend(probes_per_unit=2, max_retries=2))
    finally:
        stop.set()
        thread.join()
    assert killed, "no training unit was seen running, so none was killed"
    _same_table(got, reference)


DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import build_tiny
    from senteval_anatomy.encoders.encoder import Encoder
    from senteval_anatomy.sweeping.backends.ray import RayBackend
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep
    from test_sweep import FAST

    model, tok = build_tiny("bert")
    enc = Encoder.from_model(model, tok, name="tiny-bert", device="cpu")
    sweep(enc, {tasks!r}, task_path={data!r}, params=FAST, store=FeatureStore({cache!r}), out_dir={out!r},
          progress=False, backend=RayBackend(address={address!r}, probes_per_unit=1))
""")


def test_a_killed_driver_resumes_from_the_finished_units(ray_cluster, tiny_encoder, tiny_data, reference, tmp_path,
                                                         capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(REPO / "tests"), tasks=TASKS, data=str(tiny_data), cache=str(cache),
                                    out=str(out), address=ray_cluster))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "units").glob("*.parts/*.json")):
            assert proc.poll() is None, f"driver exited early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no unit finished in time"
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs in the driver
        proc.wait()
    parts = sorted((out / "units").glob("*.parts/*.json"))
    finished = sorted((out / "units").glob("*.json"))
    rows_on_disk = len(parts) + sum(len(read_unit(f)) for f in finished)  # one probe per part here
    assert 0 < rows_on_disk < len(reference), "the driver should die mid-sweep"

    got = sweep(tiny_encoder("bert"), TASKS, task_path=tiny_data, params=FAST, store=FeatureStore(cache),
                out_dir=out, progress=True, backend=RayBackend(probes_per_unit=1))
    err = capsys.readouterr().err
    # only the probes that no finished unit or part holds are trained again
    assert f"resuming, {len(parts)} probe result(s) already on disk, {len(reference) - rows_on_disk} to train" in err
    _same_table(got, reference)
    assert not list((out / "units").glob("*.parts"))


def test_an_unreachable_cluster_is_one_clear_line(tiny_data, tmp_path):
    pytest.importorskip("ray")
    out = subprocess.run(
        [sys.executable, str(REPO / "run_probing.py"), "--tasks", "Tense", "--task-path", str(tiny_data),
         "--out", str(tmp_path / "o"), "--backend", "ray", "--ray-address", "127.0.0.1:9", "--no-plots", "-q"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert out.returncode == 2
    lines = [x for x in out.stderr.splitlines() if "error:" in x]
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "Traceback" not in out.stderr


def test_resume_merges_only_parts_of_this_key_and_range(tiny_encoder, tmp_path):
    """Issue 18's planted bug: the resume merged a saved partial result whatever its key or probe range. Only a part
    holding this unit's key, with the range its name says, inside the unit and not overlapping another, is merged."""
    import json

    from senteval_anatomy.identity import UnitFileWarning, write_unit
    from senteval_anatomy.sweeping.backends.ray import _part_key, _parts_dir, _read_parts

    data = make_tiny_data(tmp_path / "data", n_train=40, n_dev=16, n_test=16)
    out = tmp_path / "out"
    table = sweep(tiny_encoder("bert"), ["Tense"], task_path=data, views=("layers",), params=FAST,
                  store=FeatureStore(tmp_path / "cache"), out_dir=out, progress=False)
    (unit,) = (out / "units").glob("*.json")
    key = json.loads(unit.read_text())["key"]
    n = len(table)  # 3 probes: embeddings and two blocks
    parts = _parts_dir(unit)
    parts.mkdir()
    write_unit(parts / "000000-000001.json", _part_key(key, 0, 1), table.iloc[0:1])  # a good part
    other = json.loads(json.dumps(key))
    other["setting"]["params"]["seed"] = 99
    write_unit(parts / "000001-000002.json", _part_key(other, 1, 2), table.iloc[1:2])  # another seed's part
    with pytest.warns(UnitFileWarning, match="000001-000002.json: holds results for other settings"):
        got = _read_parts(unit, key, n)
    assert sorted(got) == [0]
    pd.testing.assert_frame_equal(got[0], table.iloc[0:1].reset_index(drop=True), check_dtype=False)
    # a part saved for probes 0..1 under the name of probes 1..2 (its key says 0..1)
    (parts / "000001-000002.json").unlink()
    write_unit(parts / "000001-000002.json", _part_key(key, 0, 1), table.iloc[0:1])
    with pytest.warns(UnitFileWarning, match="other settings or data than its name says"):
        assert sorted(_read_parts(unit, key, n)) == [0]
    # overlapping parts (an earlier run with another chunk size) and a part past the unit's last probe
    for f in parts.glob("*.json"):
        f.unlink()
    write_unit(parts / "000000-000002.json", _part_key(key, 0, 2), table.iloc[0:2])
    write_unit(parts / "000001-000002.json", _part_key(key, 1, 2), table.iloc[1:2])
    write_unit(parts / "000002-000004.json", _part_key(key, 2, 4), pd.concat([table.iloc[2:3]] * 2))
    with pytest.warns(UnitFileWarning, match="overlap another part or lie outside") as record:
        got = _read_parts(unit, key, n)
    assert sorted(got) == [0] and len(got[0]) == 2 and len(record) == 2
