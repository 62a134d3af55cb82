"""senteval_anatomy.interop.compat against the real, unmodified SentEval (the workspace copy; skipped when it is absent).

Everything runs on CPU on tiny task folders cut from real data (tests/senteval_layout.py), with tiny probe settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from senteval_layout import REPO, build_tiny_task_path

SENTEVAL_DIR = REPO.parent / "shared" / "third_party" / "SentEval"
pytestmark = pytest.mark.skipif(not (SENTEVAL_DIR / "senteval" / "engine.py").is_file(),
                                reason="the unmodified SentEval copy (../shared/third_party/SentEval) is absent")

#: One task per family (three probing tasks, WordContent for its forced linear probe), all five STS years.
TASKS = ("Length", "WordContent", "BigramShift", "SST2", "SST5", "TREC", "MRPC", "SICKEntailment", "SICKRelatedness",
         "STSBenchmark", "STS12", "STS13", "STS14", "STS15", "STS16")

TINY = {"nhid": 0, "optim": "rmsprop", "batch_size": 16, "tenacity": 1, "epoch_size": 1, "max_epoch": 3}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny probes on a busy machine: one intra-op thread is several times faster than two (see docs/engine.md)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def senteval():
    sys.path.insert(0, str(SENTEVAL_DIR))
    try:
        import senteval as mod
        import senteval.engine  # noqa: F401

        yield mod
    finally:  # leave the session as it was: other tests check behaviour without SentEval installed
        sys.path.remove(str(SENTEVAL_DIR))
        for name in [n for n in sys.modules if n == "senteval" or n.startswith("senteval.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def task_path(tmp_path_factory) -> Path:
    return build_tiny_task_path(tmp_path_factory.mktemp("senteval-tiny"), per_label=6)


@pytest.fixture()
def compat():
    from senteval_anatomy.interop import compat as mod

    yield mod
    while mod.active() is not None:  # a failing test must not leave SentEval patched for the next one
        mod.unpatch()


def _params(task_path: Path, usepytorch: bool, seed: int = 7) -> dict:
    return {"task_path": str(task_path), "usepytorch": usepytorch, "kfold": 2, "seed": seed, "batch_size": 32,
            "classifier": dict(TINY)}


def _numbers(result: dict) -> dict:
    """The numbers of a SentEval result dict, as plain floats (STS: every sub-dataset and the means)."""
    if "all" in result:
        out = {f"all.{m}.{a}": float(result["all"][m][a]) for m in ("pearson", "spearman") for a in ("mean", "wmean")}
        for name, r in result.items():
            if name != "all":
                out[f"{name}.pearson"] = float(r["pearson"][0])
                out[f"{name}.n"] = float(r["nsamples"])
        return out
    return {k: float(v) for k, v in result.items() if k in ("devacc", "acc", "f1", "devpearson", "pearson", "spearman",
                                                            "mse", "ndev", "ntest")}


def _bow_batcher(params, batch):
    """Deterministic hashed bag of words: features that need no model."""
    import zlib

    out = np.zeros((len(batch), 24), dtype=np.float32)
    for i, sent in enumerate(batch):
        for w in sent:
            out[i, zlib.crc32(w.encode()) % 24] += 1.0
    return out


def test_unpatched_senteval_fails_exactly_where_the_patches_say(senteval, task_path, compat):
    """The breakages are real on this stack (so the patches below are not vacuous), and needed_patches names them."""
    needed = compat.needed_patches("cpu")
    if set(needed) != set(compat.PATCHES):
        pytest.skip(f"this stack only needs {sorted(needed)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((AssertionError, AttributeError, RuntimeError)):  # .cuda() without CUDA
            senteval.engine.SE(_params(task_path, True), _bow_batcher).eval("SST2")
        with pytest.raises(AssertionError, match="cuda"):  # RelatednessPytorch asserts CUDA, whatever usepytorch
            senteval.engine.SE(_params(task_path, False), _bow_batcher).eval("SICKRelatedness")
        with pytest.raises(ValueError, match="inhomogeneous"):
            senteval.engine.SE(_params(task_path, False), _bow_batcher).eval("STS12")
        with pytest.raises(AttributeError, match="getargspec"):  # what every PyTorch probe hits after the CUDA fix
            senteval.utils.get_optimizer("adam")


def test_patch_changes_only_sentevals_names_and_undoes_itself(senteval, compat):
    import senteval.sts
    import senteval.tools.classifier
    import senteval.tools.relatedness
    import senteval.utils

    names = [(senteval.utils, "inspect"), (senteval.tools.classifier, "torch"), (senteval.tools.relatedness, "torch"),
             (senteval.sts, "np")]
    before = [getattr(m, a) for m, a in names]
    tensor_cuda_in_dict = "cuda" in torch.Tensor.__dict__
    module_cuda = torch.nn.Module.cuda
    inspect_mod = sys.modules["inspect"]

    state = compat.patch("cpu")
    assert compat.active() is state and set(state.applied) <= set(compat.PATCHES)
    if "getargspec" in state.applied:
        assert senteval.utils.inspect is not before[0]
        assert not hasattr(inspect_mod, "getargspec") or sys.version_info < (3, 11)  # the real inspect untouched
        fn, kwargs = senteval.utils.get_optimizer("sgd,lr=0.1")
        assert fn is torch.optim.SGD and kwargs == {"lr": 0.1}
        with pytest.raises(Exception, match="Unexpected parameters"):  # SentEval's own check still works
            senteval.utils.get_optimizer("adam,typo=1")
    if "sts_ragged" in state.applied:
        arr = senteval.sts.np.array([["a", "b"], ["c"]])
        assert arr.shape == (2,) and arr[1] == ["c"]
        with pytest.raises(ValueError):
            np.array([["a", "b"], ["c"]])
    # nested patch with the same settings nests; other settings are refused
    assert compat.patch("cpu") is state and state.depth == 2
    compat.unpatch()
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="already patched"):
            compat.patch("cuda")
    compat.unpatch()

    assert compat.active() is None
    assert [getattr(m, a) for m, a in names] == before
    assert ("cuda" in torch.Tensor.__dict__) == tensor_cuda_in_dict and torch.nn.Module.cuda is module_cuda
    compat.unpatch()  # no-op when not patched


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the routing on a machine without CUDA")
def test_cuda_routing_is_scoped_to_sentevals_callers(senteval, compat):
    with compat.senteval_compat("auto") as state:
        assert str(state.device) == "cpu" and "device" in state.applied
        # SentEval's classifier builds and moves its model with .cuda(): now on CPU
        from senteval.tools.classifier import MLP

        clf = MLP({"nhid": 0, "optim": "adam", "max_epoch": 2, "epoch_size": 1}, inputdim=4, nclasses=2)
        assert next(clf.model.parameters()).device.type == "cpu"
        # everyone else's .cuda() is what torch does without CUDA: an error
        with pytest.raises((AssertionError, RuntimeError)):
            torch.zeros(2).cuda()
        with pytest.raises((AssertionError, RuntimeError)):
            torch.nn.Linear(2, 2).cuda()
        assert torch.device("cuda").type == "cuda"  # the real torch.device is untouched


def test_missing_senteval_gives_the_install_hint(compat):
    with pytest.raises(ImportError, match="pip install"):
        compat.patch("cpu", senteval="no_such_senteval_pkg")
    assert compat.active() is None


@pytest.mark.parametrize("usepytorch", [False, True], ids=["sklearn", "pytorch"])
def test_every_family_runs_with_our_adapters_and_our_engine_gives_the_same_numbers(
    senteval, task_path, compat, minilm, usepytorch
):
    """Real SentEval (patched) and senteval_anatomy.engine.SE on the same adapters, features and seed: same numbers."""
    from senteval_anatomy.engine import SE as OurSE
    from senteval_anatomy.interop.adapters import HeadAdapter, HeadsAdapter, LayerAdapter

    adapters = [HeadAdapter(minilm, 2, 3, progress=False), LayerAdapter(minilm, 4, progress=False),
                HeadsAdapter(minilm, [(0, 1), (5, 2), (3, 3)], progress=False)]
    mismatches = []
    with compat.senteval_compat("cpu"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn ConvergenceWarning / DataConversionWarning, as SentEval has them
        for i, task in enumerate(TASKS):
            adapter = adapters[i % len(adapters)]
            theirs = _numbers(senteval.engine.SE(_params(task_path, usepytorch), adapter.batcher,
                                                 adapter.prepare).eval(task))
            ours = _numbers(OurSE(_params(task_path, usepytorch), adapter.batcher, adapter.prepare).eval(task))
            assert theirs, task
            if theirs.keys() != ours.keys() or not all(np.isclose(theirs[k], ours[k], rtol=0, atol=1e-9)
                                                       for k in theirs):
                mismatches.append((task, type(adapter).__name__, theirs, ours))
    assert not mismatches, mismatches


def test_sentevals_pytorch_path_on_cpu_has_no_spread(senteval, task_path, compat):
    """Seeds are reset at every classifier construction: on CPU, reruns give identical numbers (spread 0)."""
    with compat.senteval_compat("cpu"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [_numbers(senteval.engine.SE(_params(task_path, True, seed=s), _bow_batcher).eval("SST5"))
                for s in (3, 3, 3, 11)]
    spread = {k: max(r[k] for r in runs[:3]) - min(r[k] for r in runs[:3]) for k in runs[0]}
    assert all(v == 0 for v in spread.values()), spread
    assert runs[3] != runs[0]  # the seed is honoured (a different seed moves the numbers)


USER_SCRIPT = '''
import json, sys
import numpy as np
{compat_line}
import senteval

def prepare(params, samples):
    # the bag-of-words example's shape: a vocabulary from the task's sentences
    words = sorted({{w for s in samples for w in s}})
    params.word2id = {{w: i for i, w in enumerate(words)}}

def batcher(params, batch):
    out = np.zeros((len(batch), 16), dtype=np.float32)
    for i, sent in enumerate(batch):
        for w in sent or ["."]:
            out[i, params.word2id.get(w, 0) % 16] += 1.0
    return out

params = {{"task_path": sys.argv[1], "usepytorch": True, "kfold": 2, "seed": 1111,
          "classifier": {{"nhid": 0, "optim": "rmsprop", "batch_size": 16, "tenacity": 1, "epoch_size": 1}}}}
results = senteval.engine.SE(params, batcher, prepare).eval(["SST2", "TREC", "SICKRelatedness", "STS14"])
print("RESULT " + json.dumps({{k: v.get("acc", v.get("pearson", v.get("all", {{}}).get("pearson", {{}}).get("mean")))
                            for k, v in results.items()}}, default=float))
'''


def test_a_users_senteval_script_runs_with_one_added_line(tmp_path, task_path):
    """A SentEval script of the bow-example kind, usepytorch=True, on CPU: with the one added line, and unchanged
    through ``python -m senteval_anatomy.interop.compat`` (the same script as it is stops, see
    test_unpatched_senteval_fails_exactly_where_the_patches_say)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(SENTEVAL_DIR)]), PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    runs = {}
    for name, line, launcher in (
        ("one_line", "import senteval_anatomy.interop.compat; senteval_anatomy.interop.compat.patch()", []),
        ("unchanged", "", ["-m", "senteval_anatomy.interop.compat"]),
    ):
        script = tmp_path / f"{name}.py"
        script.write_text(textwrap.dedent(USER_SCRIPT.format(compat_line=line)))
        run = subprocess.run([sys.executable, *launcher, str(script), str(task_path)], capture_output=True,
                             text=True, env=env, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, (name, run.stderr[-3000:])
        runs[name] = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert runs["one_line"] == runs["unchanged"]  # same seed, same CPU: same numbers
    result = runs["one_line"]
    assert set(result) == {"SST2", "TREC", "SICKRelatedness", "STS14"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in result.values()), result


EXAMPLE_STYLE_SCRIPT = '''
# The shape of SentEval's own examples (examples/bow.py): the script puts SentEval's folder on sys.path itself,
# reads word vectors from a GloVe-format file, logs, and runs under __main__.
from __future__ import absolute_import, division, unicode_literals
import io, json, logging, sys
import numpy as np

PATH_TO_SENTEVAL = {senteval_dir!r}
PATH_TO_DATA = sys.argv[1]
PATH_TO_VEC = sys.argv[2]
sys.path.insert(0, PATH_TO_SENTEVAL)
{compat_line}
import senteval


def prepare(params, samples):
    vocab = {{w for s in samples for w in s}}
    params.word_vec = {{}}
    with io.open(PATH_TO_VEC, "r", encoding="utf-8") as f:
        for line in f:
            word, vec = line.split(" ", 1)
            if word in vocab:
                params.word_vec[word] = np.array(vec.split(), dtype=np.float64)
    params.wvec_dim = 8


def batcher(params, batch):
    batch = [sent if sent != [] else ["."] for sent in batch]
    embeddings = []
    for sent in batch:
        sentvec = [params.word_vec[w] for w in sent if w in params.word_vec] or [np.zeros(params.wvec_dim)]
        embeddings.append(np.mean(sentvec, 0))
    return np.vstack(embeddings)  # float64, as the example returns it


params_senteval = {{"task_path": PATH_TO_DATA, "usepytorch": True, "kfold": 2}}
params_senteval["classifier"] = {{"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 1, "epoch_size": 1,
                                  "max_epoch": 2}}
logging.basicConfig(format="%(asctime)s : %(message)s", level=logging.DEBUG)

if __name__ == "__main__":
    se = senteval.engine.SE(params_senteval, batcher, prepare)
    results = se.eval(["MR", "STS12"])
    print("RESULT " + json.dumps({{"MR": results["MR"]["acc"], "STS12": results["STS12"]["all"]["pearson"]["mean"]}},
                                 default=float))
'''


def test_a_script_shaped_like_sentevals_examples_runs_through_the_runner_and_with_the_line(tmp_path, task_path):
    """SentEval's examples import SentEval from a folder they put on sys.path themselves, so SentEval is not
    importable before the script runs: the runner patches it the moment the script imports it, and the one line
    works placed after the script's ``sys.path.insert``. InnerKFold (MR) and STS12 with ``usepytorch=True``."""
    data = tmp_path / "data"
    (data / "downstream").mkdir(parents=True)
    for sub in ("SST", "STS"):  # the fixture's folders, plus MR made from SST2's sentences and labels
        os.symlink(task_path / "downstream" / sub, data / "downstream" / sub, target_is_directory=True)
    rows = [ln.rsplit("\t", 1) for split in ("train", "dev", "test")
            for ln in (task_path / "downstream" / "SST" / "binary" / f"sentiment-{split}")
            .read_text(encoding="utf-8").splitlines() if ln.strip()]
    (data / "downstream" / "MR").mkdir()
    for label, fname in (("1", "rt-polarity.pos"), ("0", "rt-polarity.neg")):
        (data / "downstream" / "MR" / fname).write_text("\n".join(s for s, lab in rows if lab == label) + "\n",
                                                       encoding="latin-1")
    rs = np.random.RandomState(0)
    words = sorted({w for p in data.rglob("*") if p.is_file() for w in p.read_text(encoding="latin-1").split()})
    vec = tmp_path / "vectors.txt"
    vec.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rs.randn(8))}\n" for w in words), encoding="utf-8")

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")  # no SentEval there
    runs = {}
    for name, line, launcher in (
        ("runner", "", ["-m", "senteval_anatomy.interop.compat", "--device", "cpu"]),
        ("one_line", "import senteval_anatomy.interop.compat; senteval_anatomy.interop.compat.patch()", []),
    ):
        script = tmp_path / f"{name}.py"
        script.write_text(EXAMPLE_STYLE_SCRIPT.format(senteval_dir=str(SENTEVAL_DIR), compat_line=line))
        run = subprocess.run([sys.executable, *launcher, str(script), str(data), str(vec)], capture_output=True,
                             text=True, env=env, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, (name, run.stderr[-3000:])
        runs[name] = json.loads(run.stdout.split("RESULT ", 1)[1])
        if name == "runner":  # it says what it patched, once SentEval was imported
            assert "senteval_anatomy.interop.compat: " in run.stderr and "(device cpu)" in run.stderr, run.stderr[-2000:]
    assert runs["runner"] == runs["one_line"]
    assert 0 < runs["runner"]["MR"] <= 100 and np.isfinite(runs["runner"]["STS12"]), runs


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "gpu0", "{script}"], "'gpu0' is not a device"),
    (["{folder}"], "is a folder, not a script"),
], ids=["device-unknown", "script-is-a-folder"])
def test_compat_command_refuses_in_one_line(argv, fragment, tmp_path, capsys):
    """``python -m senteval_anatomy.interop.compat``: a bad --device or a folder given as the script is one line, exit 2,
    no traceback, and the script does not run."""
    from senteval_anatomy.interop import compat as compat_module

    script = tmp_path / "script.py"
    script.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    argv = [a.replace("{script}", str(script)).replace("{folder}", str(tmp_path)) for a in argv]
    saved = (list(sys.argv), list(sys.path))
    try:
        with pytest.raises(SystemExit) as exc:
            compat_module.main(argv)
    finally:
        sys.argv[:], sys.path[:] = saved
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert "Traceback" not in err and not (tmp_path / "ran").exists()
