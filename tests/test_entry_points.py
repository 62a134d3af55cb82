"""One validator for every entry point (issue 18, item 3).

The same bad value, given to every entry point that takes the argument (the command line, ``sweep()``,
``encode()``/``iter_encode()``, the three adapters, the feature store, ``load_encoder``/``Encoder.from_model``,
``reproduce``), is refused with the same one-line rule, naming the argument, before any work; NumPy scalars and arrays
are accepted wherever Python ints and lists are; repeats are removed the same way; and a flag that takes one value,
given twice, is an error in every command (one mechanism: ``vocab.OneLineParser``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import build_tiny
from test_sweep import make_tiny_data

from senteval_anatomy import cli
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.encoders.encoding import encode, iter_encode
from senteval_anatomy.encoders.loading import load_encoder
from senteval_anatomy.experiments.reproduce import _check_arguments as reproduce_arguments
from senteval_anatomy.interop.adapters import HeadAdapter, HeadsAdapter, LayerAdapter
from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import sweep
from senteval_anatomy.vocab import HEAD_RULE, LAYER_RULE, OneLineParser, check_whole_list

REPO = Path(__file__).resolve().parents[1]
SENTENCES = ["the cat sat on the mat .", "dogs bark .", "what is the capital of france ?"]
BATCH_RULE = "give a whole number >= 1 (sentences per forward pass)"
POOLING_RULE = "give one of cls, last, mean, one-past-last"
# The tiny BERT uses MiniLM's WordPiece tokenizer: [CLS] and [SEP] count against max_length, so 3 is the least.
TOO_SMALL = "too small; it counts special tokens too (this tokenizer adds 2, so every sentence would keep 0 words): " \
            "give at least 3"
NOT_WHOLE_LENGTH = "give a whole number of tokens (special tokens included), e.g. 128"

# (argument, bad value, the rule every entry point taking the argument must show, in one line)
CASES: list[tuple[str, Any, str]] = [
    ("batch_size", 0, BATCH_RULE),
    ("batch_size", -1, BATCH_RULE),
    ("batch_size", True, BATCH_RULE),
    ("batch_size", 2.5, BATCH_RULE),
    ("batch_size", None, BATCH_RULE),
    ("max_length", 2, TOO_SMALL),
    ("max_length", 0, "too small"),
    ("max_length", True, NOT_WHOLE_LENGTH),
    ("max_length", 2.5, NOT_WHOLE_LENGTH),
    ("max_length", "128", NOT_WHOLE_LENGTH),
    ("layer", True, LAYER_RULE),
    ("layer", 2.5, LAYER_RULE),
    ("layer", None, LAYER_RULE),
    ("layer", "x", LAYER_RULE),
    ("head", True, HEAD_RULE),
    ("head", 2.5, HEAD_RULE),
    ("head", None, HEAD_RULE),
    ("head", -1, HEAD_RULE),
    ("pooling", "max", POOLING_RULE),
    ("pooling", 3, POOLING_RULE),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    """A tiny BERT (2 layers x 4 heads) as an encoder and as a saved folder, and tiny SentEval data."""
    root = tmp_path_factory.mktemp("entry-points")
    model, tok = build_tiny("bert", seed=1)
    folder = root / "tiny-bert"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    enc = Encoder.from_model(model, tok, name="tiny-bert", device="cpu")
    return {"enc": enc, "folder": str(folder), "data": str(make_tiny_data(root / "data")), "model": model, "tok": tok}


def _adapter_kwargs(arg: str, value: Any) -> dict[str, Any]:
    return {arg: value} if arg in ("batch_size", "max_length", "pooling") else {}


def _head_adapter(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    layer, head = (value if arg == "layer" else 0), (value if arg == "head" else 0)
    HeadAdapter(w["enc"], layer, head, store=FeatureStore(tmp / "cache"), **_adapter_kwargs(arg, value))


def _layer_adapter(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    LayerAdapter(w["enc"], value if arg == "layer" else -1, store=FeatureStore(tmp / "cache"),
                 **_adapter_kwargs(arg, value))


def _heads_adapter(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    pair = (value if arg == "layer" else 0, value if arg == "head" else 0)
    HeadsAdapter(w["enc"], [(1, 1), pair], store=FeatureStore(tmp / "cache"), **_adapter_kwargs(arg, value))


def _encode(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    encode(w["enc"], SENTENCES, **{arg: value})


def _iter_encode(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    next(iter_encode(w["enc"], SENTENCES, **{arg: value}))


def _store_get(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    FeatureStore(tmp / "cache").get(w["enc"], SENTENCES, **{arg: value})


def _sweep(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    sweep(w["enc"], "Length", task_path=w["data"], out_dir=tmp / "out", store=FeatureStore(tmp / "cache"),
          progress=False, **{arg: value})


def _load_encoder(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    load_encoder(w["folder"], device="cpu", **{arg: value})


def _from_model(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    Encoder.from_model(w["model"], w["tok"], name="tiny-bert", device="cpu", **{arg: value})


def _reproduce(w: dict[str, Any], arg: str, value: Any, tmp: Path) -> None:
    reproduce_arguments(["Length"], None, value)


#: entry point -> (call, the arguments it takes)
API: dict[str, tuple[Callable[..., None], set[str]]] = {
    "HeadAdapter": (_head_adapter, {"batch_size", "max_length", "pooling", "layer", "head"}),
    "LayerAdapter": (_layer_adapter, {"batch_size", "max_length", "pooling", "layer"}),
    "HeadsAdapter": (_heads_adapter, {"batch_size", "max_length", "pooling", "layer", "head"}),
    "encode": (_encode, {"batch_size", "max_length", "pooling"}),
    "iter_encode": (_iter_encode, {"batch_size", "max_length", "pooling"}),
    "FeatureStore.get": (_store_get, {"max_length", "pooling"}),
    "sweep": (_sweep, {"batch_size", "max_length", "pooling"}),
    "load_encoder": (_load_encoder, {"max_length"}),
    "Encoder.from_model": (_from_model, {"max_length"}),
    "reproduce": (_reproduce, {"pooling"}),
}
API_ROWS = [(name, arg, value, rule) for arg, value, rule in CASES for name, (_, takes) in API.items() if arg in takes]


@pytest.mark.parametrize("entry, arg, value, rule", API_ROWS,
                         ids=[f"{e}-{a}={v!r}" for e, a, v, _ in API_ROWS])
def test_every_api_entry_point_refuses_the_same_value_with_the_same_line(entry, arg, value, rule, world, tmp_path):
    call, _ = API[entry]
    with pytest.raises(ValueError) as info:
        call(world, arg, value, tmp_path)
    message = str(info.value)
    assert rule in message, message
    assert f"{arg}={value!r}" in message, message  # names the argument and the value given
    assert "\n" not in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "work was done before the check"


# The same rules through the command line (values it can express; argparse refuses non-numbers for int flags itself).
CLI_CASES: list[tuple[list[str], str, str]] = [
    (["--batch-size", "0"], "--batch-size 0", BATCH_RULE),
    (["--batch-size=-1"], "--batch-size -1", BATCH_RULE),
    (["--max-length", "2"], "--max-length", TOO_SMALL),
    (["--layer", "2.5"], "--layer '2.5'", LAYER_RULE),
    (["--layer", "x"], "--layer 'x'", LAYER_RULE),
    (["--head", "2.5,0"], "--head '2.5,0'", LAYER_RULE),
    (["--head", "0,2.5"], "--head '0,2.5'", HEAD_RULE),
    (["--head=0,-1"], "--head '0,-1'", HEAD_RULE),
]


@pytest.mark.parametrize("extra, named, rule", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_the_command_line_shows_the_same_rule(extra, named, rule, world, tmp_path, capsys):
    single = any(a.startswith(("--layer", "--head")) for a in extra)
    argv = ["probing", "--model", world["folder"], "--task-path", world["data"], "--tasks", "Length",
            "--cache-dir", str(tmp_path / "cache"), "-q", *([] if single else ["--out", str(tmp_path / "out")]),
            *extra]
    assert cli.main(argv) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith(("data: ", "model: "))]
    assert len(lines) == 1 and named in lines[0] and rule in lines[0], lines
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_numpy_values_are_read_like_python_ones(world, tmp_path):
    enc = world["enc"]
    plain = encode(enc, SENTENCES, pooling="mean", batch_size=2, max_length=8)
    numpy = encode(enc, np.array(SENTENCES), pooling="MEAN", batch_size=np.int64(2), max_length=np.int32(8))
    np.testing.assert_array_equal(plain.heads, numpy.heads)
    np.testing.assert_array_equal(plain.layers, numpy.layers)
    store = FeatureStore(tmp_path / "cache")
    assert HeadAdapter(enc, np.int64(1), np.int64(2), store=store, batch_size=np.int64(4)).name == \
        HeadAdapter(enc, 1, 2, store=store).name
    assert LayerAdapter(enc, np.int64(0), store=store).layer == 0
    assert LayerAdapter(enc, "EMBEDDINGS", store=store).layer == "embeddings"
    assert LayerAdapter(enc, " Embeddings ", store=store).name == "embeddings"
    assert HeadsAdapter(enc, [(np.int64(0), 1)], store=store).heads == [(0, 1)]
    assert HeadsAdapter(enc, np.array([[0, 1], [1, 3]]), store=store).heads == [(0, 1), (1, 3)]
    assert load_encoder(world["folder"], device="cpu", max_length=np.int64(16)).max_length == 16
    assert reproduce_arguments(np.array(["Length", "Length"]), np.array([4, 1, 4]), "CLS") == (["Length"], [4, 1],
                                                                                                "cls")


def test_pooling_in_any_case_gives_the_same_vectors(world, tmp_path):
    enc = world["enc"]
    lower = LayerAdapter(enc, -1, pooling="mean", store=FeatureStore(tmp_path / "a")).batcher(None, [s.split() for s in
                                                                                                      SENTENCES])
    upper = LayerAdapter(enc, -1, pooling=" Mean", store=FeatureStore(tmp_path / "b")).batcher(None, [s.split() for s in
                                                                                                       SENTENCES])
    np.testing.assert_array_equal(lower, upper)
    args = cli._parser("probing").parse_args(["--pooling", "CLS"])
    assert args.pooling == "cls"


def test_repeats_are_removed_the_same_way(world, tmp_path):
    """A head named twice (or as -1 and L-1) is used once, as a task named twice is; so is a k."""
    adapter = HeadsAdapter(world["enc"], [(1, 0), (-1, 0), (0, 3), (1, 0)], store=FeatureStore(tmp_path))
    assert adapter.heads == [(1, 0), (0, 3)] and adapter.dim == 2 * world["enc"].head_dim
    assert check_whole_list("4,1,4", what="ks") == [4, 1]
    assert check_whole_list(np.array([8, 8]), what="ks") == [8]
    assert reproduce_arguments("Length,length,Length", None, None)[0] == ["Length"]


@pytest.mark.parametrize("value, rule", [("1,,2", "expected comma-separated whole numbers"),
                                         ([True], "every value must be a whole number >= 1 (got True)"),
                                         ([2.5], "(got 2.5)"), ("0", "(got 0)"), ("", "give at least one")])
def test_ks_are_read_the_same_way_by_reproduce_and_its_command(value, rule, capsys):
    with pytest.raises(ValueError, match="ks=") as info:
        reproduce_arguments(["Length"], value, None)
    assert rule in str(info.value)
    if isinstance(value, str):
        assert cli.main(["reproduce", "--dry-run", "--ks", value]) == 2
        err = capsys.readouterr().err
        assert "--ks" in err and rule in err and len(err.strip().splitlines()) == 1, err


def test_load_encoder_checks_its_arguments_before_reading_anything(world):
    with pytest.raises(ValueError, match="^name_or_path=None: give 'minilm'"):
        load_encoder(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^device='gpu0' is not a device"):
        load_encoder("/no/such/model", device="gpu0")
    with pytest.raises(ValueError, match="^trust_remote_code='yes': must be True or False"):
        load_encoder(world["folder"], trust_remote_code="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^dtype=\\['float16'\\] is not one of"):
        load_encoder(world["folder"], dtype=["float16"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- repeated single-value flags
# Each command line also holds a mistake that stops it at once (an unknown task, a missing folder), so that a broken
# repeat check fails the test quickly and never starts real work (a sweep, a download, a cache clean-up).
REPEATED: list[tuple[list[str], str]] = [
    (["probing", "--tasks", "Nope", "--seed", "1", "--seed", "2"], "--seed given 2 times ('1', then '2')"),
    (["probing", "--tasks", "Nope", "--topk", "--no-topk"], "--topk/--no-topk given 2 times"),
    (["cache", "list", "--cache-dir", "a", "--cache-dir", "b"], "--cache-dir given 2 times ('a', then 'b')"),
    (["cache", "clear", "--cache-dir", "a", "--older-than", "1", "--older-than", "2"], "--older-than given 2 times"),
    (["data", "check", "--task-path", "a", "--task-path", "b"], "--task-path given 2 times ('a', then 'b')"),
    (["data", "download", "--tasks", "Nope", "--dest", "a", "--dest", "b"], "--dest given 2 times"),
    (["models", "--check", "./a", "--check", "./b"], "--check given 2 times ('./a', then './b')"),
    (["reproduce", "--dry-run", "--tasks", "Nope", "--ks", "1", "--ks", "2"],
     "--ks given 2 times ('1', then '2'); it takes one value and only the last would count: give it once (several k: "
     "--ks 1,2,4)"),
    (["reproduce", "--dry-run", "--tasks", "Nope", "--models", "a", "--mod", "b"], "--models given 2 times ('a', then 'b')"),
    (["reproduce", "--dry-run", "--tasks", "Nope", "--out=a", "--out", "b"], "--out given 2 times ('a', then 'b')"),
    (["reproduce", "--finetune", "--dry-run", "--seeds", "0", "--seeds", "1"], "--seeds given 2 times ('0', then '1')"),
]


@pytest.mark.parametrize("argv, fragment", REPEATED, ids=[f"{r[0][0]} {r[0][-2]}" for r in REPEATED])
def test_a_single_value_flag_given_twice_is_an_error_in_every_command(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


def test_flags_that_add_up_still_add_up():
    """``--tasks`` (documented to add up), ``-q -q`` and a script's own arguments are not repeats."""
    p = OneLineParser(prog="t")
    p.add_argument("--tasks", nargs="+", action="extend")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(["--tasks", "A", "--tasks", "B", "-q", "-q", "--device", "cpu", "s.py", "--device", "cuda"])
    assert a.tasks == ["A", "B"] and a.device == "cpu" and a.args == ["--device", "cuda"]
    parent = OneLineParser(prog="t")
    parent.add_argument("--out")
    sub = parent.add_subparsers(dest="cmd").add_parser("run")
    sub.add_argument("--out")  # the sub-command's own flag of the same name: one use each is no repeat
    assert parent.parse_args(["--out", "a", "run", "--out", "b"]).out == "b"


def test_a_repeated_flag_in_a_real_process():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "senteval_anatomy", "cache", "verify", "--cache-dir", "a",
                        "--cache-dir", "b"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("senteval-anatomy cache: error: --cache-dir given 2 times ('a', then 'b'); it takes "
                                "one value and only the last would count: give it once (see `senteval-anatomy cache "
                                "--help`)")
