"""The sweep: batched probes agree with one-head-at-a-time evaluation, the table is tidy, and reruns resume."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import sweep
from senteval_anatomy.tables.results import Results
from senteval_anatomy.vocab import FINDINGS_COLUMNS, RESULT_COLUMNS, ParamError, main_scores, vector_name

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "default"

FAST = {
    "usepytorch": True, "kfold": 2, "seed": 7, "batch_size": 64,
    "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 64, "tenacity": 2, "epoch_size": 1, "max_epoch": 8},
}


def make_tiny_data(root: Path, n_train: int = 80, n_dev: int = 24, n_test: int = 24) -> Path:
    """A small SentEval folder cut from the embedded default data (probing files keep their format)."""
    src = DEFAULT_DATA / "probing"
    dst = root / "probing"
    dst.mkdir(parents=True)
    for f in src.glob("*.txt"):
        lines = f.read_text(encoding="utf-8").splitlines()
        by_split = {"tr": [], "va": [], "te": []}
        for line in lines:
            by_split[line.split("\t", 1)[0]].append(line)
        keep = by_split["tr"][:n_train] + by_split["va"][:n_dev] + by_split["te"][:n_test]
        # every dev/test label must exist in train (SentEval's label map comes from train)
        train_labels = {x.split("\t")[1] for x in by_split["tr"][:n_train]}
        keep = [x for x in keep if x.split("\t")[1] in train_labels]
        (dst / f.name).write_text("\n".join(keep) + "\n", encoding="utf-8")
    trec = root / "downstream" / "TREC"
    trec.mkdir(parents=True)
    for name, n in (("train_5500.label", 90), ("TREC_10.label", 30)):
        lines = (DEFAULT_DATA / "downstream" / "TREC" / name).read_text(encoding="latin-1").splitlines()
        (trec / name).write_text("\n".join(lines[:: max(1, len(lines) // n)][:n]) + "\n", encoding="latin-1")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("senteval-data"))


def test_vector_names_golden():
    assert vector_name("heads", 0, 0) == "blocks.0.attn.head.0"
    assert vector_name("heads", 11, 7) == "blocks.11.attn.head.7"
    assert vector_name("layers", 5) == "blocks.5.hook_resid_post"
    assert vector_name("layers", -1) == "embeddings"


def test_main_scores_per_family():
    metric, dev, test, ndev, ntest, f1 = main_scores({"devacc": 80.0, "acc": 70.0, "ndev": 10, "ntest": 20})
    assert (metric, dev, test, ndev, ntest) == ("acc", 80.0, 70.0, 10, 20) and math.isnan(f1)
    assert main_scores({"devacc": 80.0, "acc": 70.0, "f1": 75.5, "ndev": 10, "ntest": 20})[5] == 75.5
    metric, dev, test, *_ = main_scores({"devpearson": 0.5, "pearson": 0.4, "spearman": 0.3, "ndev": 1, "ntest": 2})
    assert (metric, dev, test) == ("pearson", 0.5, 0.4)
    sts = {"MSRpar": {"pearson": (0.1, 0.0), "spearman": (0.1, 0.0), "nsamples": 3},
           "all": {"pearson": {"mean": 0.25, "wmean": 0.2}, "spearman": {"mean": 0.2, "wmean": 0.2}}}
    metric, dev, test, ndev, ntest, _ = main_scores(sts)
    assert metric == "pearson" and math.isnan(dev) and test == 0.25 and ntest == 3
    with pytest.raises(ValueError, match="Unrecognised"):
        main_scores({"foo": 1})


def test_batched_sweep_equals_one_head_at_a_time(tiny_encoder, tiny_data, tmp_path):
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    fast = sweep(enc, ["Tense", "TREC"], task_path=tiny_data, params=FAST, store=store, progress=False)
    slow = sweep(enc, ["Tense", "TREC"], task_path=tiny_data, params=FAST, store=store, progress=False,
                 harness="engine")
    # one table, every column: the findings columns are there and empty when no findings option is on
    assert list(fast.columns) == list(RESULT_COLUMNS) + list(FINDINGS_COLUMNS)
    assert fast[list(FINDINGS_COLUMNS)].isna().all().all()
    assert set(fast.layout) == {"table:bert"}  # the results say where the heads were read
    L, H = enc.num_layers, enc.num_heads
    for task in ("Tense", "TREC"):
        f = fast[fast.task == task]
        assert len(f) == L * H + L + 1
        assert set(f[f.view == "heads"].name) == {vector_name("heads", lay, h) for lay in range(L) for h in range(H)}
        assert set(f[f.view == "layers"].layer) == set(range(-1, L))
    key = ["task", "view", "layer", "head"]
    merged = fast.merge(slow, on=key, suffixes=("_batched", "_solo"))
    assert len(merged) == len(fast)
    np.testing.assert_allclose(merged.devacc_batched, merged.devacc_solo, atol=1e-9)
    np.testing.assert_allclose(merged.acc_batched, merged.acc_solo, atol=1e-9)
    # the table records how each row was made
    assert set(fast.harness) == {"builtin"} and set(slow.harness) == {"engine"}
    assert (fast.seed == 7).all() and (fast.kfold == 2).all() and fast.usepytorch.all()


def test_resume_skips_finished_units_and_tables_on_disk(tiny_encoder, tiny_data, tmp_path, monkeypatch):
    enc = tiny_encoder("bert")
    out = tmp_path / "out"
    store = FeatureStore(tmp_path / "cache")
    first = sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, store=store, out_dir=out, progress=False,
                  views=("layers",))
    units = sorted((out / "units").glob("*.json"))
    assert len(units) == 1
    assert (out / "results.csv").exists() and (out / "results.parquet").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "results.csv"),
                                  check_dtype=False)

    import senteval_anatomy.sweeping.backends.local as local  # the unit loop: one _batched call per unit computed

    calls = []
    real = local._batched
    monkeypatch.setattr(local, "_batched", lambda *a, **k: calls.append(a[3].view) or real(*a, **k))
    again = sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, store=store, out_dir=out, progress=False,
                  views=("heads", "layers"))
    assert calls == ["heads"]  # the layers unit was on disk; only heads ran
    assert set(again.view) == {"heads", "layers"}
    pd.testing.assert_frame_equal(
        again[again.view == "layers"].reset_index(drop=True), first.reset_index(drop=True), check_dtype=False
    )
    calls.clear()
    sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, store=store, out_dir=out, progress=False)
    assert calls == []
    # other probe settings are another unit: nothing is silently reused
    other = dict(FAST, seed=8)
    sweep(enc, ["Tense"], task_path=tiny_data, params=other, store=store, out_dir=out, progress=False,
          views=("layers",))
    assert calls == ["layers"]


def test_interrupted_sweep_keeps_finished_units(tiny_encoder, tiny_data, tmp_path, monkeypatch):
    enc = tiny_encoder("bert")
    out = tmp_path / "out"
    import senteval_anatomy.sweeping.backends.local as local

    real = local._batched

    def boom(*a, **k):
        if a[1].spec.name == "TREC":
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(local, "_batched", boom)
    with pytest.raises(KeyboardInterrupt):
        sweep(enc, ["Tense", "TREC"], task_path=tiny_data, params=FAST, store=FeatureStore(tmp_path / "c"),
              out_dir=out, progress=False, views=("layers",))
    units = list((out / "units").glob("*.json"))
    assert len(units) == 1 and "Tense" in units[0].name
    assert not [p for p in (out / "units").iterdir() if p.name.startswith(".")]  # no half-written file


def test_sweep_errors(tiny_encoder, tiny_data):
    enc = tiny_encoder("bert")
    with pytest.raises(ValueError, match="unknown task 'Lenght'"):
        sweep(enc, ["Lenght"], task_path=tiny_data, progress=False)
    with pytest.raises(ValueError, match="harness"):
        sweep(enc, ["Tense"], task_path=tiny_data, harness="fast", progress=False)
    with pytest.raises(ValueError, match="views"):
        sweep(enc, ["Tense"], task_path=tiny_data, views=("neurons",), progress=False)
    with pytest.raises(ImportError, match="SentEval"):
        sweep(enc, ["Tense"], task_path=tiny_data, harness="senteval", progress=False, params=FAST,
              store=FeatureStore(memory=True))


@pytest.mark.parametrize("params, message", [
    ({"classifier": {"nhid": 0, "epoch_size": 0}}, "params: classifier.epoch_size=0: must be >= 1"),
    ({"classifier": {"nhid": 0, "max_epoch": 0, "tenacity": -1}}, "params: classifier.tenacity=-1: must be >= 0"),
    ({"classifier": {"nhid": 0, "max_epoch": 0}}, "params: classifier.max_epoch=0: must be >= 1"),
    ({"kfold": 1}, "params: kfold=1: must be >= 2"),
    ({"seed": 2.5}, "params: seed=2.5: must be a whole number"),
    ({"seed": True}, "params: seed=True: must be a whole number"),
])
def test_sweep_refuses_the_settings_the_cli_refuses(tiny_encoder, tiny_data, tmp_path, params, message):
    """Issue 18: the Python API is as careful as the command line: one line naming the setting, before any work."""
    store = FeatureStore(tmp_path / "cache")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        sweep(tiny_encoder("bert"), ["Tense"], task_path=tiny_data, params=dict(FAST, **params), store=store,
              out_dir=tmp_path / "out", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kw, message", [
    ({"tasks": None}, "tasks=None: give"),
    ({"tasks": [None]}, "is not a name"),
    ({"tasks": "Lenght"}, "unknown task 'Lenght'"),
    ({"tasks": ","}, "names nothing"),
    ({"views": None}, "views=None: give one or more of heads, layers"),
    ({"views": "EMBEDDINGS"}, "unknown: EMBEDDINGS"),
    ({"batch_size": 2.5}, "batch_size=2.5: give a whole number >= 1"),
    ({"batch_size": True}, "batch_size=True: give a whole number >= 1"),
    ({"params": [("kfold", 5)]}, "params=[('kfold', 5)]: give a dict"),
])
def test_sweep_arguments_are_one_line_errors(tiny_encoder, tiny_data, tmp_path, kw, message):
    kw = {"tasks": ["Tense"], **kw}
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep(tiny_encoder("bert"), kw.pop("tasks"), task_path=tiny_data, store=FeatureStore(tmp_path / "cache"),
              progress=False, **{"params": FAST, **kw})
    assert not (tmp_path / "cache").exists()


def test_sweep_takes_numpy_and_removes_repeats_like_the_cli(tiny_encoder, tiny_data, tmp_path):
    """numpy scalars and arrays are accepted wherever ints and lists are, and give the same setting (same key) as
    Python values; "Tense,Tense" is one task (issue 18: every row came twice and Results blamed a re-run)."""
    import numpy as np

    from senteval_anatomy.interop.adapters import LayerAdapter

    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    plain = sweep(enc, "Tense,Tense", task_path=tiny_data, views="layers", params=FAST, store=store, progress=False)
    assert len(plain) == enc.num_layers + 1 and plain["task"].tolist() == ["Tense"] * len(plain)
    Results(plain).best_layer("Tense")  # no duplicate rows
    numpy_params = dict(FAST, seed=np.int64(7), kfold=np.int32(2),
                        classifier=dict(FAST["classifier"], max_epoch=np.int64(8)))
    numpy = sweep(enc, np.array(["Tense", "tense"]), task_path=tiny_data, views=np.array(["layers"]),
                  params=numpy_params, store=store, progress=False, batch_size=np.int64(16))
    pd.testing.assert_frame_equal(numpy, plain)
    a, b = LayerAdapter(enc, "EMBEDDINGS"), LayerAdapter(enc, "embeddings")
    assert a.name == b.name
    for bad in (2.5, True, None):  # the shared layer rule (vocab.LAYER_RULE), as sweep() and --layer say it
        with pytest.raises(ParamError, match=r"layer=.*: give a block index"):
            LayerAdapter(enc, bad)
