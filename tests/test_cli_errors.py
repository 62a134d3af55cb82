"""The bad-input table of ``docs/reliability.md``: one test per row.

Each row is a command line with one mistake. The command must end with one line on stderr that names the mistake
(the fragment below), exit status 2, no traceback, and nothing written into ``--out`` or ``--cache-dir``: every
setting is checked before any encoding starts. The rows run in-process through :func:`senteval_anatomy.cli.main`
(the very function the console script and ``python -m senteval_anatomy`` call) because each subprocess would pay
seconds of imports; ``test_bad_input_in_a_real_process`` repeats a representative set as real processes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_tiny
from test_sweep import make_tiny_data

from senteval_anatomy import cli

REPO = Path(__file__).resolve().parents[1]

# (id, extra arguments, fragment the one-line message must contain). Placeholders: {file} an ordinary file,
# {empty} an empty folder, {ro} a read-only file system, {broken} data with a malformed line, {notok} a model folder
# without tokenizer files, {wrongtok} one with another model's tokenizer, {resnet} a model without attention heads. Later flags override the base command's;
# a row's --tasks replaces the base command's (repeated --tasks add up).
BAD_INPUTS: list[tuple[str, list[str], str]] = [
    # layers and heads (the tiny model has 2 layers x 4 heads)
    ("head-layer-out-of-range", ["--head", "2,0"], "out of range"),
    ("head-index-out-of-range", ["--head", "0,4"], "out of range"),
    ("head-negative-layer-too-far", ["--head", "-3,0"], "out of range"),
    ("head-not-numbers", ["--head", "x"], "expected two integers"),
    ("head-one-number", ["--head", "1"], "expected two integers"),
    ("head-three-numbers", ["--head", "1,2,3"], "expected two integers"),
    ("layer-out-of-range", ["--layer", "99"], "out of range"),
    ("layer-negative-too-far", ["--layer", "-3"], "out of range"),
    ("layer-not-a-number", ["--layer", "foo"], "give a block index"),
    ("head-and-layer", ["--head", "0,0", "--layer", "0"], "either --head or --layer"),
    ("head-with-topk", ["--head", "0,0", "--topk"], "--topk works on a sweep"),
    ("head-with-no-plots", ["--head", "0,0", "--no-plots"], "--no-plots has no effect with --head/--layer"),
    # views and tasks
    ("views-singular", ["--views", "head"], "unknown: head"),
    ("views-empty", ["--views", ""], "give one or more of heads, layers"),
    ("tasks-snli", ["--tasks", "SNLI"], "unknown task 'SNLI'"),
    ("tasks-typo", ["--tasks", "Lenght"], "unknown task 'Lenght'"),
    ("tasks-empty", ["--tasks", ","], "names no task"),
    ("tasks-repeated-flag", ["--tasks", "SNLI", "--tasks", "Length"], "unknown task 'SNLI'"),
    ("views-repeated-flag", ["--views", "layers", "--views", "heads"],
     "--views given 2 times ('layers', then 'heads'); it takes one value and only the last would count: give it once "
     "(several views: --views heads,layers)"),
    ("preset-repeated-flag", ["--preset", "paper", "--preset", "prototyping"],
     "--preset given 2 times ('paper', then 'prototyping')"),
    ("seed-repeated-flag", ["--seed", "1", "--seed", "2"], "--seed given 2 times ('1', then '2')"),
    ("max-epoch-repeated-abbreviated", ["--max-epoch=4", "--max-ep", "5"], "--max-epoch given 2 times ('4', then '5')"),
    ("task-files-missing", ["--tasks", "SST5"], "sentiment-train"),
    # devices
    ("device-unknown", ["--device", "gpu0"], "is not a device"),
    ("device-cuda-absent", ["--device", "cuda"], "CUDA is not available"),
    ("device-cuda-index-absent", ["--device", "cuda:3"], "CUDA is not available"),
    ("probe-device-unknown", ["--probe-device", "gpu"], "--probe-device='gpu' is not a device"),
    ("probe-device-cuda-absent", ["--probe-device", "cuda"], "CUDA is not available"),
    # probe settings
    ("optim-unknown", ["--optim", "adamw"], "Unknown optimization method"),
    ("optim-sgd-without-lr", ["--optim", "sgd"], "sgd needs a learning rate"),
    ("optim-unknown-option", ["--optim", "adam,foo=1"], "Unexpected parameters ['foo']"),
    ("optim-option-not-a-number", ["--optim", "adam,lr=x"], "must be a number"),
    ("probe-batch-size-zero", ["--probe-batch-size", "0"], "--probe-batch-size"),
    ("batch-size-zero", ["--batch-size", "0"], "--batch-size"),
    ("batch-size-negative", ["--batch-size", "-7"], "--batch-size"),
    ("dropout-above-one", ["--nhid", "8", "--dropout", "1.5"], "--dropout 1.5: must be a number in [0, 1)"),
    ("dropout-negative", ["--nhid", "8", "--dropout", "-0.1"], "--dropout -0.1: must be a number in [0, 1)"),
    ("epoch-size-zero", ["--epoch-size", "0"], "--epoch-size"),
    ("max-epoch-zero", ["--max-epoch", "0"], "--max-epoch"),
    ("tenacity-negative", ["--tenacity", "-1"], "--tenacity"),
    ("kfold-one", ["--kfold", "1"], "--kfold"),
    ("nhid-negative", ["--nhid", "-1"], "--nhid"),
    ("threads-zero", ["--threads", "0"], "--threads 0"),
    ("threads-more-than-cpus", ["--threads", "100000"], "CPUs; give at most --threads"),
    ("max-length-zero", ["--max-length", "0"], "--max-length 0"),
    ("max-length-too-small", ["--max-length", "1"], "too small"),
    ("max-length-only-special-tokens", ["--max-length", "2"], "this tokenizer adds 2, so every sentence would keep 0"),
    ("dropout-without-hidden-layer", ["--dropout", "0.3"], "no effect on a logistic-regression probe"),
    ("torch-flag-with-sklearn", ["--sklearn", "--optim", "adam"], "--optim sets the PyTorch probe"),
    # top-k
    ("ks-zero", ["--topk", "--ks", "0"], "--ks '0': every value must be a whole number >= 1 (got 0)"),
    ("ks-not-numbers", ["--topk", "--ks", "1,x"], "--ks '1,x': expected comma-separated whole numbers"),
    ("ks-empty-item", ["--topk", "--ks", "1,,2"], "--ks '1,,2': expected comma-separated whole numbers"),
    ("ks-more-than-heads", ["--topk", "--ks", "1,1000"], "more than the 8 heads"),
    ("ks-without-topk", ["--no-topk", "--ks", "1,2"], "add --topk"),
    ("findings-on-ray", ["--controls", "--backend", "ray"], "run on the local backend"),
    ("rank-task-not-swept", ["--topk", "--rank-task", "Depth"], "must be one of --tasks"),
    ("rank-task-unknown", ["--topk", "--rank-task", "Foo"], "unknown task 'Foo'"),
    ("rank-task-two-tasks", ["--tasks", "Length,Tense", "--topk", "--rank-task", "Length,Tense"], "give one task"),
    ("rank-task-without-topk", ["--no-topk", "--rank-task", "Length"], "add --topk"),
    ("topk-without-heads", ["--topk", "--views", "layers"], "needs the heads view"),
    # findings
    ("seeds-zero", ["--seeds", "0"], "--seeds 0: give a positive number of probe seeds"),
    ("controls-not-batched", ["--controls", "--harness", "engine"], "run on the batched trainer"),
    ("controls-with-head", ["--head", "0,0", "--controls"], "work on a sweep"),
    ("ablation-mode-without-ablate", ["--ablation-mode", "mean"], "--ablation-mode mean says how --ablate"),
    # backends
    ("ray-address-without-ray", ["--ray-address", "auto"], "--ray-address is for --backend ray"),
    ("ray-with-engine-harness", ["--backend", "ray", "--harness", "engine"], "(--harness builtin)"),
    # paths
    ("out-is-a-file", ["--out", "{file}"], "this is a file, not a folder"),
    ("out-under-a-file", ["--out", "{file}/sub"], "is a file, so no folder can be made"),
    ("out-holds-a-users-results", ["--out", "{foreign}"], "results.csv, report.md that no senteval_anatomy run wrote"),
    ("cache-dir-is-a-file", ["--cache-dir", "{file}"], "this is a file, not a folder"),
    ("out-read-only", ["--out", "{ro}/out"], "cannot write"),
    ("cache-dir-read-only", ["--cache-dir", "{ro}/cache"], "cannot write"),
    ("task-path-missing", ["--task-path", "/no/such/data"], "no such folder"),
    ("task-path-is-a-file", ["--task-path", "{file}"], "not a folder"),
    ("task-path-holds-no-data", ["--task-path", "{empty}"], "holds neither probing/ nor downstream/"),
    ("data-line-malformed", ["--task-path", "{broken}"], "sentence_length.txt:3"),
    ("data-header-line", ["--task-path", "{header}"], "sentence_length.txt:1: unknown split 'split'"),
    ("data-latin1-bytes", ["--task-path", "{latin1}"], "sentence_length.txt:2: not valid utf-8"),
    ("out-empty", ["--out", ""], "argument --out/-o: an empty path"),
    ("task-path-empty", ["--task-path", ""], "argument --task-path: an empty path"),
    ("cache-dir-empty", ["--cache-dir", " "], "argument --cache-dir: an empty path"),
    ("arch-spec-empty", ["--arch-spec", ""], "argument --arch-spec: an empty path"),
    # models
    ("model-folder-missing", ["--model", "/no/such/model"], "no such folder"),
    ("model-empty", ["--model", ""], "an empty model name"),
    ("model-is-a-file", ["--model", "{file}"], "is a file, not a model folder"),
    ("model-config-not-json", ["--model", "{badjson}"], "config.json:1:2: not valid JSON"),
    ("model-config-unknown-type", ["--model", "{unktype}"], "config.json: transformers cannot read it"),
    ("model-weights-corrupt", ["--model", "{corrupt}"], "could not load the model's weights (SafetensorError"),
    ("model-hub-id-unknown", ["--model", "no-such-org/no-such-model-xyz"], "Could not load"),
    ("model-folder-without-config", ["--model", "{empty}"], "no config.json"),
    ("model-folder-without-tokenizer", ["--model", "{notok}"], "not this model's tokenizer"),
    ("model-tokenizer-of-another-model", ["--model", "{wrongtok}"], "not this model's tokenizer"),
    ("model-without-attention-heads", ["--model", "{resnet}"], "Could not find where 'resnet' keeps its attention"),
    ("arch-spec-missing", ["--arch-spec", "/no/such/spec.json"], "--arch-spec /no/such/spec.json: no such file"),
    ("arch-spec-malformed", ["--arch-spec", "{file}"], "--arch-spec: "),
    # flags argparse refuses (one line too)
    ("dtype-unknown", ["--dtype", "float8"], "invalid choice: 'float8'"),
    ("pooling-unknown", ["--pooling", "max"], "invalid choice: 'max'"),
    ("preset-unknown", ["--preset", "fast"], "invalid choice: 'fast'"),
    ("harness-unknown", ["--harness", "fast"], "invalid choice: 'fast'"),
    ("harness-senteval-absent", ["--harness", "senteval"], "needs facebookresearch/SentEval"),
    ("seed-not-an-int", ["--seed", "x"], "invalid int value: 'x'"),
    ("seed-negative", ["--seed", "-5"], "--seed -5: must be between 0 and 4294967295"),
    ("cache-dtype-unknown", ["--cache-dtype", "int8"], "invalid choice: 'int8'"),
    ("flag-unknown", ["--colour", "red"], "unrecognized arguments"),
]

ROW_IDS = [row[0] for row in BAD_INPUTS]


def _needs_skip(row_id: str) -> str | None:
    import importlib.util

    import torch

    if "cuda" in row_id and torch.cuda.is_available():
        return "this machine has CUDA"
    if row_id == "harness-senteval-absent" and importlib.util.find_spec("senteval") is not None:
        return "SentEval is installed here"
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Everything the rows point at: a tiny model, tiny data, a file, an empty folder, broken data, odd models."""
    root = tmp_path_factory.mktemp("bad-inputs")
    model_dir = root / "tiny-bert"
    model, tok = build_tiny("bert", seed=1)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    notok = root / "no-tokenizer"
    model.save_pretrained(notok)
    from transformers import ResNetConfig, ResNetModel

    resnet = root / "resnet"  # a model without attention heads
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1])).save_pretrained(resnet)
    tok.save_pretrained(resnet)
    for name, edit in (("bad-json", lambda d: (d / "config.json").write_text("{not json")),
                       ("unknown-type", lambda d: (d / "config.json").write_text(
                           (d / "config.json").read_text().replace('"model_type": "bert"', '"model_type": "foobar"'))),
                       ("corrupt-weights", lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 10))):
        shutil.copytree(model_dir, root / name)
        edit(root / name)
    assert '"foobar"' in (root / "unknown-type" / "config.json").read_text()
    wrongtok = root / "wrong-tokenizer"  # BERT weights, GPT-2's byte-level BPE tokenizer (400 tokens)
    model.save_pretrained(wrongtok)
    build_tiny("gpt2")[1].save_pretrained(wrongtok)
    data = make_tiny_data(root / "data")
    broken = make_tiny_data(root / "broken")
    lines = (broken / "probing" / "sentence_length.txt").read_text(encoding="utf-8").splitlines()
    lines[2] = "tr\tonly-two-fields"
    (broken / "probing" / "sentence_length.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    header = make_tiny_data(root / "header")  # a header line, as a spreadsheet export writes
    length = header / "probing" / "sentence_length.txt"
    length.write_text("split\tlabel\tsentence\n" + length.read_text(encoding="utf-8"), encoding="utf-8")
    latin1 = make_tiny_data(root / "latin1")  # one sentence saved as Latin-1
    length = latin1 / "probing" / "sentence_length.txt"
    lines = length.read_text(encoding="utf-8").splitlines()
    lines[1] += " caf\xe9"
    length.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    foreign = root / "my-analysis"  # a user's own folder: their results.csv and notes must never be overwritten
    foreign.mkdir()
    (foreign / "results.csv").write_text("mine,not,yours\n")
    (foreign / "report.md").write_text("# my notes\n")
    (root / "a-file.txt").write_text("not a folder\n")
    (root / "empty").mkdir()
    return {"model": str(model_dir), "data": str(data), "file": str(root / "a-file.txt"), "empty": str(root / "empty"),
            "broken": str(broken), "notok": str(notok), "resnet": str(resnet),
            "wrongtok": str(wrongtok), "badjson": str(root / "bad-json"), "unktype": str(root / "unknown-type"),
            "corrupt": str(root / "corrupt-weights"), "header": str(header), "latin1": str(latin1), "foreign": str(foreign)}


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory):
    """A read-only file system (a tmpfs mounted ``ro``): root ignores file modes, but not a read-only mount."""
    path = tmp_path_factory.mktemp("ro")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {r.stderr.decode().strip()}")
        path.chmod(0o555)  # an ordinary user is refused by the mode bits
        yield path
        path.chmod(0o755)
        return
    yield path
    subprocess.run(["umount", str(path)], check=False)


def _fill(args: list[str], world: dict[str, str], tmp: Path, ro: Path | None) -> list[str]:
    values = {**world, "tmp": str(tmp), "ro": str(ro) if ro else ""}
    return [re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], a) for a in args]


def _base(world: dict[str, str], tmp: Path, extra: list[str]) -> list[str]:
    """The command each row changes; a sweep writes to ``tmp/out``, one adapter (--head/--layer) prints JSON."""
    out = [] if {"--head", "--layer", "--out"} & set(extra) else ["--out", str(tmp / "out")]
    tasks = [] if "--tasks" in extra else ["--tasks", "Length"]  # repeated --tasks add up, so a row's replace these
    # a flag that takes one value may be given once (issue 18): a row's --model/--task-path/--cache-dir replace these
    base = [("--model", world["model"]), ("--task-path", world["data"]), ("--cache-dir", str(tmp / "cache"))]
    return ["probing", *[x for flag, value in base if flag not in extra for x in (flag, value)], *tasks, *out, "-q"]


def _written(tmp: Path) -> list[Path]:
    return [p for d in ("out", "cache") for p in (tmp / d).rglob("*") if p.is_file()] if tmp.exists() else []


@pytest.mark.parametrize("row_id, extra, fragment", BAD_INPUTS, ids=ROW_IDS)
def test_bad_input(row_id, extra, fragment, world, tmp_path, capsys, request):
    reason = _needs_skip(row_id)
    if reason:
        pytest.skip(reason)
    ro = request.getfixturevalue("read_only_dir") if "{ro}" in " ".join(extra) else None
    argv = _base(world, tmp_path, extra) + _fill(extra, world, tmp_path, ro)
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip() and not x.startswith(("data: ", "model: "))]
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert "error: " in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert _written(tmp_path) == []  # checked before anything was written


# Rows for the other commands: (id, command line, fragment of the one line on stderr). {tmp} is the test's folder,
# {file} an ordinary file.
COMMAND_BAD_INPUTS: list[tuple[str, list[str], str]] = [
    ("cache-list-missing-dir", ["cache", "list", "--cache-dir", "/no/such/cache"], "--cache-dir /no/such/cache: no such folder"),
    ("cache-clear-a-file", ["cache", "clear", "--cache-dir", "{file}"], "is not a folder"),
    ("cache-verify-empty-path", ["cache", "verify", "--cache-dir", ""], "argument --cache-dir: an empty path"),
    ("cache-older-than-nan", ["cache", "list", "--cache-dir", "{tmp}", "--older-than", "nan"], "--older-than nan"),
    ("cache-no-command", ["cache"], "senteval-anatomy cache: error: the following arguments are required"),
    ("data-check-empty-path", ["data", "check", ""], "senteval-anatomy data check: error: argument dir: an empty path"),
    ("data-download-empty-dest", ["data", "download", "--dest", "", "--tasks", "Length"], "an empty path"),
    ("data-no-command", ["data"], "senteval-anatomy data: error: the following arguments are required: COMMAND"),
    ("models-check-missing-path", ["models", "--check", "/no/such/model"], "/no/such/model: no such folder"),
    ("models-flag-unknown", ["models", "--colour"], "senteval-anatomy models: error: unrecognized arguments"),
    ("reproduce-out-empty", ["reproduce", "--out", ""], "senteval-anatomy reproduce: error: argument --out: an empty"),
    ("reproduce-flag-unknown", ["reproduce", "--colour"], "senteval-anatomy reproduce: error: unrecognized arguments"),
]


@pytest.mark.parametrize("row_id, argv, fragment", COMMAND_BAD_INPUTS, ids=[r[0] for r in COMMAND_BAD_INPUTS])
def test_command_bad_input(row_id, argv, fragment, world, tmp_path, capsys):
    """``cache``, ``data`` and ``models``: one line naming the command as typed, exit 2, nothing made or removed."""
    before = sorted(Path(world["data"]).rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{file}", world["file"]) for a in argv]
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert status == 2, err
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err and "usage:" not in err
    assert sorted(Path(world["data"]).rglob("*")) == before
    assert not (tmp_path / "features").exists()


def test_cache_commands_on_a_folder_without_a_cache_say_so(world, capsys):
    """A folder that exists but holds no ``features/`` (here: a data folder): no "(empty)" listing, no "removed 0
    entries", but a line saying there is no feature cache there; nothing in it is touched."""
    before = sorted(Path(world["data"]).rglob("*"))
    for command in ("list", "verify", "clear"):
        assert cli.main(["cache", command, "--cache-dir", world["data"]]) == 0
        out = capsys.readouterr().out
        assert f"no feature cache in {world['data']}" in out and f"nothing to {command}" in out, out
    assert sorted(Path(world["data"]).rglob("*")) == before


def test_unknown_command_says_what_was_meant(capsys):
    assert cli.main(["probe", "--tasks", "Length"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'probe'" in err and "Did you mean `probing`?" in err and len(err.splitlines()) == 1


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), SENTEVAL_ANATOMY_CACHE=str(cwd / "cache"))
    env.pop("SENTEVAL_ANATOMY_DATA", None)
    return subprocess.run([sys.executable, "-m", "senteval_anatomy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("row_id", ["head-layer-out-of-range", "tasks-snli", "device-unknown", "out-is-a-file"])
def test_bad_input_in_a_real_process(row_id, world, tmp_path):
    """The same rows through ``python -m senteval_anatomy``: exit 2, one line, no traceback, nothing written."""
    _, extra, fragment = BAD_INPUTS[ROW_IDS.index(row_id)]
    r = _run(*_base(world, tmp_path, extra), *_fill(extra, world, tmp_path, None), cwd=tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith(("data: ", "model: "))]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert _written(tmp_path) == []


def test_debug_shows_the_traceback(world, tmp_path):
    r = _run(*_base(world, tmp_path, ["--layer"]), "--layer", "99", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "out of range" in r.stderr


def test_reliability_doc_lists_every_row():
    """docs/reliability.md's bad-input table and this file's rows are the same set."""
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"test_bad_input\[([\w-]+)\]", doc))
    assert listed == set(ROW_IDS)
    assert len(ROW_IDS) >= 40


def test_a_damaged_cache_entry_is_rebuilt_or_with_no_rebuild_one_line(world, tmp_path, capsys):
    """Issue 18: a NaN written into a cached layers.npy (modification time kept, as bit rot leaves it) is never used:
    the run names the entry and rebuilds it, giving the clean table; with --no-rebuild it is one line, exit 1."""
    import numpy as np
    import pandas as pd

    fast = ["--seed", "7", "--kfold", "2", "--tenacity", "2", "--epoch-size", "1", "--max-epoch", "4",
            "--views", "layers", "--no-plots", "--no-resume"]
    base = _base(world, tmp_path, [])
    assert cli.main([*base, *fast]) == 0
    clean = pd.read_csv(tmp_path / "out" / "results.csv")
    (layers,) = (tmp_path / "cache" / "features").glob("*/layers.npy")
    st = layers.stat()
    arr = np.load(layers, mmap_mode="r+")
    arr[3, 1, 5] = np.nan
    arr.flush()
    del arr
    os.utime(layers, ns=(st.st_atime_ns, st.st_mtime_ns))
    import senteval_anatomy.store as store_mod

    store_mod._MEMO.clear()  # as in a new process: nothing opened yet
    capsys.readouterr()
    assert cli.main([*base, *fast, "--no-rebuild"]) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("senteval-anatomy")]
    assert len(err) == 1 and f"feature cache entry {layers.parent} is damaged: layers.npy" in err[0], err
    assert "--repair" in err[0] and "please report" not in err[0]
    store_mod._MEMO.clear()
    with pytest.warns(UserWarning, match=re.escape(f"feature cache entry {layers.parent} is unusable")):
        assert cli.main([*base, *fast]) == 0
    again = pd.read_csv(tmp_path / "out" / "results.csv")
    pd.testing.assert_frame_equal(again, clean)


def test_a_read_only_cache_holding_every_entry_is_served(world, tmp_path, capsys):
    """Issue 18: a lab's shared cache mounted read-only that already holds every entry a run needs is used as it is
    (it used to be refused); a run that needs an entry it lacks ends in one line naming the cache, exit 1."""
    import pandas as pd

    cache = tmp_path / "cache"
    cache.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(cache)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        fast = ["--seed", "7", "--kfold", "2", "--tenacity", "2", "--epoch-size", "1", "--max-epoch", "4",
                "--views", "layers", "--no-plots"]
        base = _base(world, tmp_path, [])
        assert cli.main([*base, *fast]) == 0
        clean = pd.read_csv(tmp_path / "out" / "results.csv")
        assert subprocess.run(["mount", "-o", "remount,ro", str(cache)], capture_output=True).returncode == 0
        import senteval_anatomy.store as store_mod

        store_mod._MEMO.clear()
        capsys.readouterr()
        assert cli.main([*base, *fast, "--no-resume"]) == 0
        err = capsys.readouterr().err
        assert "is read-only: its entries are used as they are" in err, err
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "results.csv"), clean)
        # another task needs an entry the cache lacks: one line, exit 1, naming the cache
        assert cli.main([*base, *fast, "--tasks", "Tense"]) == 1
        lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("senteval-anatomy")]
        assert len(lines) == 1 and f"cannot add an entry to the feature cache under {cache}" in lines[0], lines
    finally:
        import gc

        import senteval_anatomy.store as store_mod

        store_mod._MEMO.clear()  # the memory maps of the served entries keep the mount busy
        gc.collect()
        if subprocess.run(["umount", str(cache)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(cache)], check=False)
