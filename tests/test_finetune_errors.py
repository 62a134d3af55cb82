"""Bad input to ``senteval-anatomy finetune``: one line naming the mistake, exit 2, before any training, nothing written
into ``--out`` (the finetune rows of ``docs/reliability.md``). Rows run in-process through
:func:`senteval_anatomy.cli.main`, the function the console script calls."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import build_tiny
from test_sweep import make_tiny_data

from senteval_anatomy import cli

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "default"

# (id, arguments replacing/adding to the base command, fragment of the one line). Placeholders: {other} a sweep of
# another model, {glue} a good GLUE folder, {badglue} a GLUE folder without a label column, {ro} a read-only file
# system, {small} a 64 KiB file system. A row with --glue drops the base command's --task.
BAD: list[tuple[str, list[str], str]] = [
    ("read-unknown", ["--read", "best"], "--read 'best' is unknown; use one of last, best-layer, topk"),
    ("read-twice", ["--read", "last", "--read", "last"], "--read last is given twice"),
    ("read-layer-out-of-range", ["--read", "layer:2"], "layer 2 is out of range; this model has blocks 0..1"),
    ("read-head-out-of-range", ["--read", "heads:0,4"], "head 0,4 is out of range"),
    ("read-head-layer-out-of-range", ["--read", "heads:5,0"], "head 5,0 is out of range"),
    ("topk-k-too-large", ["--read", "topk:99"], "more than the model's 8 heads"),
    ("from-another-model", ["--read", "best-layer", "--from", "{other}"], "these results are of another model"),
    ("select-on-task-without-dev", ["--read", "best-layer", "--select-on", "STS12"], "STS12 has no dev split"),
    ("glue-best-layer-without-select-on", ["--glue", "{glue}", "--read", "best-layer"], "give --select-on TASK"),
    ("glue-missing-columns", ["--glue", "{badglue}"], "a GLUE task needs one of"),
    ("task-not-finetunable", ["--task", "Length"], "fine-tuning works on SST2"),
    ("task-and-glue", ["--glue", "{glue}", "--task", "MRPC"], "either --task"),
    ("seeds-empty-item", ["--seeds", "0,,1"], "--seeds='0,,1': expected comma-separated whole numbers"),
    ("seeds-not-whole", ["--seeds", "0,2.5"], "--seeds='0,2.5': expected comma-separated whole numbers"),
    ("seeds-negative", ["--seeds", "1,-1"], "--seeds='1,-1': every value must be a whole number >= 0 (got -1)"),
    ("ks-below-one", ["--read", "topk", "--ks", "0,2"], "--ks='0,2': every value must be a whole number >= 1"),
    ("limit-below-two", ["--limit-dev", "1"], "--limit-dev=1: give a whole number >= 2"),
    ("dropout-above-one", ["--dropout", "1.5"], "--dropout 1.5: must be a number in [0, 1)"),
    ("out-read-only", ["--out", "{ro}/ft"], "cannot write in"),
    ("out-too-little-disk", ["--out", "{small}/ft"], "MiB free on its disk"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("ft-errors")
    model, tok = build_tiny("bert", seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    from senteval_anatomy.sweeping import sweep

    data = make_tiny_data(root / "data")
    other = tiny_encoder("bert", seed=1)  # another model: other weights, other fingerprint
    sweep(other, ["Length"], task_path=str(data), views=["layers"], out_dir=root / "other",
          params={"usepytorch": True, "kfold": 2, "seed": 7, "batch_size": 64,
                  "classifier": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 1, "epoch_size": 1,
                                 "max_epoch": 2}}, progress=False)
    glue = root / "glue"
    glue.mkdir()
    body = "".join(f"good film {i}\t1\nbad film {i}\t0\n" for i in range(10))
    (glue / "train.tsv").write_text("sentence\tlabel\n" + body)
    (glue / "dev.tsv").write_text("sentence\tlabel\n" + body)
    bad = root / "badglue"
    bad.mkdir()
    (bad / "train.tsv").write_text("sentence\tpolarity\nnice\t1\n")
    (bad / "dev.tsv").write_text("sentence\tpolarity\nnice\t1\n")
    return {"tiny": str(root / "tiny"), "other": str(root / "other"), "glue": str(glue), "badglue": str(bad)}


def _mount(path: Path, options: str) -> None:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")


@pytest.mark.parametrize("row_id, extra, fragment", BAD, ids=[r[0] for r in BAD])
def test_finetune_bad_input(row_id, extra, fragment, world, tmp_path, capsys):
    mounts = []
    places = dict(world)
    for name, options in (("ro", "ro,size=64k"), ("small", "size=64k")):
        if any("{" + name + "}" in a for a in extra):
            _mount(tmp_path / name, options)
            mounts.append(tmp_path / name)
            places[name] = str(tmp_path / name)
    out = tmp_path / "out"
    base = ["finetune", "--model", world["tiny"], "--task", "MRPC", "--task-path", str(DATA), "--out", str(out),
            "--limit-train", "32", "--limit-dev", "8", "--limit-test", "8", "--device", "cpu", "--no-progress"]
    extra = [a.format(**places) for a in extra]
    # a flag that takes one value may be given once (a repeat is an error, vocab.OneLineParser): a row's --task/--out
    # replace the base command's; a row with --glue drops the base's --task
    for flag in ("--task", "--out", "--limit-train", "--limit-dev", "--limit-test"):
        if flag in extra or (flag == "--task" and "--glue" in extra):
            i = base.index(flag)
            del base[i:i + 2]
    try:
        try:
            status = cli.main(base + extra)
        except SystemExit as exc:
            status = exc.code
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert status == 2, err
        assert len(lines) == 1 and fragment in lines[0], err
        assert "Traceback" not in err
        for place in (out, tmp_path / "ro" / "ft", tmp_path / "small" / "ft"):
            assert not place.exists() or not any(place.iterdir())
    finally:
        for m in mounts:
            subprocess.run(["umount", str(m)], check=False)


def test_seed_lists_read_like_every_other_list_of_the_package():
    """``seeds`` (the command's ``--seeds`` and the Python ``finetune(seeds=...)``) are read by the package's one
    reader of number lists, :func:`~senteval_anatomy.vocab.check_whole_list` (``ks`` of ``sweep`` and ``reproduce``):
    the same message for the same mistake (``2.5``, ``True``, ``"0,,1"``, an empty list), repeats dropped the same way
    (first kept), NumPy values accepted as Python's; ``--limit-*`` goes through ``check_count``."""
    import numpy as np

    from senteval_anatomy.finetune.checks import parse_seeds
    from senteval_anatomy.finetune.experiment import finetune
    from senteval_anatomy.sweeping.plan import parse_ks
    from senteval_anatomy.vocab import check_whole_list

    assert parse_seeds("3,1,3,0") == [3, 1, 0] and parse_seeds(np.array([4, 2, 4])) == [4, 2]
    assert parse_seeds((np.int64(1), 0, 1)) == [1, 0] and type(parse_seeds([np.int64(7)])[0]) is int
    for bad in ([2.5], [True], [1, np.bool_(True)], "0,,1", "1,x", [], "", ["1"], -1, [-1]):
        with pytest.raises(ValueError) as got:
            parse_seeds(bad)
        with pytest.raises(ValueError) as shared:  # what sweep(ks=...) / reproduce --ks say, with seeds' bound
            check_whole_list(bad, what="seeds", low=0, example="0,1,2,3,4")
        assert str(got.value) == str(shared.value)
    with pytest.raises(ValueError) as got:
        parse_ks([2.5], what="ks")
    assert str(got.value) == "ks=[2.5]: every value must be a whole number >= 1 (got 2.5), e.g. 1,2,4,8"
    with pytest.raises(ValueError, match="seeds=\\[0, True\\]: every value must be a whole number >= 0 \\(got True\\)"):
        finetune("no-such-model-is-loaded", "MRPC", task_path=str(DATA), seeds=[0, True], out_dir="unused")
    with pytest.raises(ValueError, match="--limit-train=1: give a whole number >= 2"):
        finetune("no-such-model-is-loaded", "MRPC", task_path=str(DATA), limits={"train": 1}, out_dir="unused")
