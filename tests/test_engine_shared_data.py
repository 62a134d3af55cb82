"""The engine on the real SentEval data of ``../shared/senteval-data`` (skipped when it is absent).

* Loading every task there is cheap and always runs: sizes, label maps, no DataError on real files.
* Evaluating the bundled MiniLM's last layer on them encodes ~60k sentences: marked ``slow`` and run only with
  ``SENTEVAL_ANATOMY_SLOW=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from senteval_anatomy.engine import SE, get_task, load_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "senteval-data"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared SentEval data at {SHARED}")

# split sizes of the shared copies (downstream: SentEval's standard sizes; probing: see probing/README.md there)
SIZES = {
    "SST2": {"train": 67349, "dev": 872, "test": 1821},
    "SST5": {"train": 8544, "dev": 1101, "test": 2210},
    "TREC": {"train": 5452, "test": 500},
    "MRPC": {"train": 4076, "test": 1725},
    "SICKEntailment": {"train": 4500, "dev": 500, "test": 4927},
    "SICKRelatedness": {"train": 4500, "dev": 500, "test": 4927},
    "Length": {"train": 600, "dev": 72, "test": 72},
    "WordContent": {"train": 565, "dev": 159, "test": 159},
    "Depth": {"train": 650, "dev": 75, "test": 75},
    "TopConstituents": {"train": 646, "dev": 79, "test": 75},
    "BigramShift": {"train": 650, "dev": 75, "test": 75},
    "Tense": {"train": 624, "dev": 75, "test": 75},
    "SubjNumber": {"train": 625, "dev": 75, "test": 75},
    "ObjNumber": {"train": 625, "dev": 75, "test": 75},
    "OddManOut": {"train": 625, "dev": 75, "test": 75},
    "CoordinationInversion": {"train": 625, "dev": 75, "test": 75},
}
N_CLASSES = {"SST2": 2, "SST5": 5, "TREC": 6, "MRPC": 2, "SICKEntailment": 3, "Length": 6, "WordContent": 159,
             "Depth": 7, "TopConstituents": 20, "BigramShift": 2, "Tense": 2, "SubjNumber": 2, "ObjNumber": 2,
             "OddManOut": 2, "CoordinationInversion": 2}


def _present(name):
    spec = get_task(name)
    return all((SHARED / f).is_file() for f in spec.files)


@pytest.mark.parametrize("name", list(SIZES))
def test_shared_task_loads(name):
    if not _present(name):
        pytest.skip(f"{name} is not in {SHARED}")
    task = load_task(name, SHARED)
    sizes = {split: len(rec["y"]) for split, rec in task.data.items()}
    assert sizes == SIZES[name]
    pairs = task.spec.kind != "classification"
    assert len(task.samples) == sum(sizes.values()) * (2 if pairs else 1)
    if name in N_CLASSES:
        assert task.n_classes == N_CLASSES[name]
        for rec in task.data.values():
            assert set(rec["y"]) <= set(range(task.n_classes))
    else:
        assert all(1 <= y <= 5 for rec in task.data.values() for y in rec["y"])


def test_shared_label_maps():
    if not _present("TREC") or not _present("Tense"):
        pytest.skip("TREC / Tense not in the shared data")
    trec = load_task("TREC", SHARED)
    assert trec.data["test"]["X"][0] == ["How", "far", "is", "it", "from", "Denver", "to", "Aspen", "?"]
    assert trec.data["test"]["y"][0] == 5  # NUM
    assert load_task("Tense", SHARED).label_names == ["PAST", "PRES"]
    mrpc = load_task("MRPC", SHARED)
    assert mrpc.data["train"]["y"][:2] == [1, 0]  # header (with its BOM) dropped


# ------------------------------------------------------------------------------------------------------------------
# Slow: the bundled model's last layer, end to end through SE
# ------------------------------------------------------------------------------------------------------------------

SLOW_TASKS = ["TREC", "SST5", "SICKEntailment", "MRPC", "Length", "WordContent", "Depth", "TopConstituents",
              "BigramShift", "Tense", "SubjNumber", "ObjNumber", "OddManOut", "CoordinationInversion"]
# Loose floors, well above chance and well below what MiniLM's last layer gets.
FLOORS = {"TREC": 60, "SST5": 30, "SICKEntailment": 60, "MRPC": 66, "Length": 30, "Tense": 60,
          "SubjNumber": 55, "ObjNumber": 55}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SENTEVAL_ANATOMY_SLOW") != "1", reason="set SENTEVAL_ANATOMY_SLOW=1 to run")
def test_minilm_last_layer_on_shared_data(tmp_path):
    adapters = pytest.importorskip("senteval_anatomy.interop.adapters")
    from senteval_anatomy import load_encoder
    from senteval_anatomy.store import FeatureStore

    tasks = [t for t in SLOW_TASKS if _present(t)]
    enc = load_encoder("minilm", device="cpu")
    adapter = adapters.LayerAdapter(enc, layer=-1, store=FeatureStore(tmp_path))
    params = {"task_path": str(SHARED), "usepytorch": False, "kfold": 2, "seed": 1111}
    results = SE(params, adapter.batcher, adapter.prepare).eval(tasks)
    for name in tasks:
        r = results[name]
        assert r["ntest"] == SIZES[name]["test"] and 0 <= r["acc"] <= 100, (name, r)
        assert np.isfinite(r["devacc"])
        if name in FLOORS:
            assert r["acc"] >= FLOORS[name], (name, r)
    assert results["MRPC"]["f1"] > 0
