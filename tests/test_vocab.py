"""The shared vocabulary: one home per fact, and the rules every module now shares."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from senteval_anatomy import vocab
from senteval_anatomy.vocab import (
    PAPER_PARAMS,
    PRESETS,
    atomic_write,
    check_pooling,
    check_views,
    default_cache_dir,
    main_scores,
    preset_params,
    resolve_device,
    slug,
    vector_name,
)

PACKAGE = Path(vocab.__file__).resolve().parent


def test_package_level_sweep_is_the_function_even_after_importing_its_module():
    """README: ``from senteval_anatomy import sweep`` then ``sweep(...)``; the CLI imports the module first."""
    code = (
        "import senteval_anatomy.sweeping\n"
        "import senteval_anatomy.cli\n"
        "from senteval_anatomy import sweep\n"
        "assert callable(sweep) and sweep.__module__ == 'senteval_anatomy.sweeping', sweep\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_vocab_is_import_light():
    """Light commands (store list, data check) use the vocabulary; importing it must not load torch or pandas."""
    code = "import sys, senteval_anatomy.vocab\nassert not {'torch', 'pandas', 'numpy'} & set(sys.modules)\n"
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_vector_names_and_bad_input():
    assert vector_name("heads", 0, 0) == "blocks.0.attn.head.0"
    assert vector_name("layers", 5) == "blocks.5.hook_resid_post"
    assert vector_name("layers", -1) == "embeddings"
    for bad in (("heads", 1, -1), ("heads", -1, 0), ("layers", -2), ("head", 0, 0)):
        with pytest.raises(ValueError):
            vector_name(*bad)


def test_one_view_rule_everywhere(tmp_path):
    """``"heads,layers"`` means the same to the sweep, the encoder and the store (the store used to reject it)."""
    assert check_views("heads,layers") == check_views(["layers", "heads"]) == ("heads", "layers")
    assert check_views(" layers ") == ("layers",)
    for bad in ("", "head", ["heads", "attn"], []):
        with pytest.raises(ValueError, match="heads, layers"):
            check_views(bad)
    from senteval_anatomy.encoders import encoding
    from senteval_anatomy.store import feature_store

    assert encoding.check_views is check_views and feature_store.check_views is check_views


def test_pooling_rule():
    class Enc:
        default_pooling = "last"

    assert check_pooling(None, Enc()) == "last"
    assert check_pooling("mean") == "mean"
    with pytest.raises(ValueError, match="cls, last, mean"):
        check_pooling("max")


def test_presets():
    clf = PAPER_PARAMS["classifier"]
    assert (PAPER_PARAMS["kfold"], PAPER_PARAMS["seed"], PAPER_PARAMS["usepytorch"]) == (5, 123, True)
    assert (clf["nhid"], clf["optim"], clf["batch_size"], clf["tenacity"], clf["epoch_size"], clf["dropout"]) == (
        0, "rmsprop", 256, 3, 2, 0.0)
    sd = PRESETS["senteval-default"]
    assert (sd["kfold"], sd["classifier"]["optim"], sd["classifier"]["batch_size"], sd["classifier"]["tenacity"],
            sd["classifier"]["epoch_size"]) == (10, "adam", 64, 5, 4)
    pr = PRESETS["prototyping"]
    assert (pr["kfold"], pr["classifier"]["optim"], pr["classifier"]["batch_size"], pr["classifier"]["tenacity"],
            pr["classifier"]["epoch_size"]) == (5, "rmsprop", 128, 3, 2)
    p = preset_params("paper", seed=9, classifier={"nhid": 50})
    assert p["seed"] == 9 and p["classifier"]["nhid"] == 50 and p["classifier"]["optim"] == "rmsprop"
    assert PAPER_PARAMS["seed"] == 123 and PAPER_PARAMS["classifier"]["nhid"] == 0  # the preset is not mutated
    with pytest.raises(ValueError, match="paper"):
        preset_params("fast")
    from senteval_anatomy.analysis import topk

    assert topk.default_params("DIR") == dict(preset_params("paper"), task_path="DIR")


def test_main_scores_reads_every_family():
    import numpy as np

    s = main_scores({"devacc": 80.0, "acc": 70.0, "f1": 75.5, "ndev": 10, "ntest": 20})
    assert s == ("acc", 80.0, 70.0, 10.0, 20.0, 75.5) and s.f1 == 75.5
    s = main_scores({"devpearson": 0.5, "pearson": np.float64(0.4), "ndev": 1, "ntest": 2})
    assert (s.metric, s.devacc, s.acc) == ("pearson", 0.5, 0.4)
    s = main_scores({"pearson": [0.3, 0.01]})  # scipy (r, p) pairs serialised as lists
    assert s.acc == 0.3 and s.devacc != s.devacc
    sts = {"A": {"nsamples": 3}, "B": {"nsamples": 4}, "all": {"pearson": {"mean": 0.25}}}
    s = main_scores(sts)
    assert (s.metric, s.acc, s.ntest) == ("pearson", 0.25, 7.0) and s.devacc != s.devacc
    with pytest.raises(ValueError, match="keys"):
        main_scores({"foo": 1})


def test_device_rule():
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="gpu0"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    from senteval_anatomy.encoders import encoder
    from senteval_anatomy.engine import params

    assert params.resolve_device is resolve_device and encoder.resolve_device is resolve_device


def test_cache_root_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTEVAL_ANATOMY_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SENTEVAL_ANATOMY_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "senteval_anatomy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "senteval_anatomy"
    from senteval_anatomy.data import default_download_dir
    from senteval_anatomy.store import FeatureStore

    monkeypatch.setenv("SENTEVAL_ANATOMY_CACHE", str(tmp_path / "c"))
    assert FeatureStore().root == tmp_path / "c" / "features"
    assert default_download_dir() == tmp_path / "c" / "data"


def test_slug():
    assert slug("minilm") == "minilm"
    assert slug("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers-all-minilm-l6-v2"
    assert slug("///") == "x" and slug("", default="model") == "model"
    a, b = slug("x" * 100 + "a"), slug("x" * 100 + "b")
    assert a != b and len(a) <= 80 and len(b) <= 80
    assert re.fullmatch(r"[a-z0-9._-]+", slug("Ünïcode: names / with spaces?"))


def test_atomic_write(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    atomic_write(target, lambda p: Path(p).write_text("via callable"))
    assert target.read_text() == "via callable"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    def fail(p):
        Path(p).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "via callable"  # old content intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]  # no temp file left


def test_atomic_write_names_a_folder_in_the_way(tmp_path):
    """A folder where the file goes (e.g. a ``results.csv/`` folder in --out): the error names it, not the hidden
    temporary file, and leaves nothing behind."""
    (tmp_path / "results.csv").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        atomic_write(tmp_path / "results.csv", "a,b\n")
    assert exc.value.filename == str(tmp_path / "results.csv") and "folder is in the way" in str(exc.value)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_no_second_definition_in_the_package():
    """One home per fact: the vector-name scheme, temp-file writers, and the cache variable are spelt out only in
    vocab.py (per-task facts such as the STS table live on the task specs: tests/test_task_registry.py)."""
    patterns = {
        "vector name scheme": re.compile(r"attn\.head\.\{|hook_resid_post\""),
        "temp-file writer": re.compile(r"mkstemp\("),
        "cache variable": re.compile(r"\"SENTEVAL_ANATOMY_CACHE\""),
        "view names": re.compile(r"\(\"heads\", \"layers\"\)"),
        "pooling names": re.compile(r"\(\"cls\", \"last\", \"mean\"\)"),
        "device rule": re.compile(r"def resolve_device"),
        "paper optimizer": re.compile(r"\"optim\": \"rmsprop\""),
    }
    for path in PACKAGE.rglob("*.py"):
        if path.name == "vocab.py":
            continue
        text = path.read_text(encoding="utf-8")
        for what, pat in patterns.items():
            assert not pat.search(text), f"{path.relative_to(PACKAGE)} defines the {what} again; import it from vocab"


