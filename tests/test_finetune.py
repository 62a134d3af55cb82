"""Fine-tuning (``senteval_anatomy.finetune``): what a user relies on, on a tiny random BERT and small real subsets.

* the classifier reads exactly the chosen heads / layer (the gradient at the readout reaches only them);
* selection is on dev only: scrambled test labels change the test score and nothing else;
* a run killed with SIGKILL and started again equals a clean run with the same seed (a real subprocess);
* two seeds differ; the same seed twice is identical on CPU; a finished run is never trained twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import build_tiny
from test_sweep import make_tiny_data

from senteval_anatomy.finetune.comparison import paired_table, summary_table
from senteval_anatomy.finetune.data import load_finetune_data, load_glue_folder
from senteval_anatomy.finetune.experiment import finetune
from senteval_anatomy.finetune.readouts import Readout, ReadoutClassifier, check_read, parse_read
from senteval_anatomy.finetune.training import TrainSettings

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "default"
FAST = TrainSettings(max_length=32, learning_rate=5e-4, batch_size=16, epochs=3)
LIMITS = {"train": 64, "dev": 24, "test": 40}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers x 4 heads) saved as a model folder, as a user would give it."""
    path = tmp_path_factory.mktemp("tiny-bert")
    model, tok = build_tiny("bert", seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _run(model: Path, out: Path, data: Path = DATA, **kw):
    kw.setdefault("reads", ["last"])
    kw.setdefault("seeds", [0])
    return finetune(str(model), "MRPC", task_path=str(data), out_dir=out, settings=FAST, limits=LIMITS,
                    device="cpu", progress=False, **kw)


def test_classifier_reads_exactly_the_chosen_heads(tiny_encoder):
    enc = tiny_encoder("bert")
    batch = enc.tokenizer(["a cat sat on the mat .", "dogs bark ."], padding=True, return_tensors="pt")
    chosen = ((1, 2), (0, 3))
    torch.manual_seed(0)
    model = ReadoutClassifier(enc, Readout("heads:1,2;0,3", "heads", heads=chosen), 3, pooling="cls")
    try:
        feats = model.features(batch["input_ids"], batch["attention_mask"])
        assert feats.shape == (2, enc.num_layers, enc.num_heads, enc.head_dim)
        feats.retain_grad()
        model.classify(feats).sum().backward()
        touched = {(la, h) for la in range(enc.num_layers) for h in range(enc.num_heads)
                   if feats.grad[:, la, h].abs().sum() > 0}
        assert touched == set(chosen)
        # and the read vector is those heads' contexts, concatenated in the order given (the sweep's vectors)
        read = model.read(feats.detach())
        assert torch.equal(read, torch.cat([feats[:, 1, 2], feats[:, 0, 3]], dim=1).detach())
        # the whole transformer trains through them: the first block's attention weights get a gradient
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.model.parameters())
    finally:
        model.close()
        enc.model.zero_grad(set_to_none=True)


def test_layer_readout_reads_that_layer_only(tiny_encoder):
    enc = tiny_encoder("bert")
    batch = enc.tokenizer(["a cat sat ."], return_tensors="pt")
    model = ReadoutClassifier(enc, Readout("layer:0", "layers", layer=0), 1, pooling="cls")
    try:
        feats = model.features(batch["input_ids"], batch["attention_mask"])
        feats.retain_grad()
        model.classify(feats).sum().backward()
        nonzero = [i for i in range(feats.shape[1]) if feats.grad[:, i].abs().sum() > 0]
        assert nonzero == [1]  # index 0 is the embeddings, 1 the output of block 0
    finally:
        model.close()
        enc.model.zero_grad(set_to_none=True)


def test_read_parsing_and_ranges():
    assert parse_read("heads:0,1;-1,3").heads == ((0, 1), (-1, 3))
    assert check_read(parse_read("heads:-1,3"), 2, 4).heads == ((1, 3),)
    assert parse_read("topk:5").k == 5
    for bad, num in (("layer:2", "out of range"), ("heads:0,4", "out of range")):
        with pytest.raises(ValueError, match=num):
            check_read(parse_read(bad), 2, 4)
    with pytest.raises(ValueError, match="unknown"):
        parse_read("best")


def test_mrpc_holds_out_a_fixed_dev_slice_and_records_it():
    a = load_finetune_data("MRPC", DATA, dev_fraction=0.1, split_seed=0)
    b = load_finetune_data("MRPC", DATA, dev_fraction=0.1, split_seed=0)
    c = load_finetune_data("MRPC", DATA, dev_fraction=0.1, split_seed=1)
    assert a.dev_source == "train-holdout:0.1:seed0"
    assert a.splits["dev"].a == b.splits["dev"].a and a.splits["dev"].a != c.splits["dev"].a
    assert len(a.splits["train"]) + len(a.splits["dev"]) == 1200
    sick = load_finetune_data("SICKRelatedness", DATA)
    assert sick.dev_source == "file" and sick.regression and sick.n_labels == 1


def test_glue_folder_dev_tsv_is_the_test_split(tmp_path):
    g = tmp_path / "SST-2"
    g.mkdir()
    (g / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"good film {i}\t1\nbad film {i}\t0\n"
                                                                for i in range(20)))
    (g / "dev.tsv").write_text("sentence\tlabel\nfine film\t1\nawful film\t0\n")
    d = load_glue_folder(g)
    assert d.test_source == "glue-dev.tsv" and d.splits["test"].a == ["fine film", "awful film"]
    assert len(d.splits["dev"]) == 4 and d.dev_source.startswith("train-holdout")


def test_dev_only_selection_scrambled_test_labels_change_only_test(tiny_model, tmp_path):
    scrambled = tmp_path / "data"
    shutil.copytree(DATA / "downstream" / "MRPC", scrambled / "downstream" / "MRPC")
    test_file = scrambled / "downstream" / "MRPC" / "msr_paraphrase_test.txt"
    lines = test_file.read_text(encoding="utf-8").splitlines()
    flipped = [lines[0]] + [("1" if x[0] == "0" else "0") + x[1:] for x in lines[1:]]
    test_file.write_text("\n".join(flipped) + "\n", encoding="utf-8")
    a = _run(tiny_model, tmp_path / "a").rows.iloc[0]
    b = _run(tiny_model, tmp_path / "b", data=scrambled).rows.iloc[0]
    for col in ("devacc", "dev_curve", "best_epoch", "train_loss", "weights_sha256", "representation", "n_train", "n_dev", "n_test"):
        assert a[col] == b[col], col
    assert a["acc"] != b["acc"]
    assert a["acc"] + b["acc"] == pytest.approx(100.0)  # every test label flipped: correct <-> wrong


def test_seeds_differ_same_seed_identical_and_never_trained_twice(tiny_model, tmp_path):
    one = _run(tiny_model, tmp_path / "one", seeds=[0, 1]).rows
    assert one.loc[0, "weights_sha256"] != one.loc[1, "weights_sha256"]
    again = _run(tiny_model, tmp_path / "again", seeds=[0]).rows.iloc[0]
    for col in ("weights_sha256", "train_loss", "devacc", "acc", "best_epoch"):
        assert again[col] == one.loc[0, col], col
    runs = sorted((tmp_path / "one" / "runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    reused = _run(tiny_model, tmp_path / "one", seeds=[0, 1]).rows
    assert reused["reused"].all() and [p.stat().st_mtime_ns for p in runs] == stamps
    assert not any((tmp_path / "one" / "checkpoints").iterdir())  # finished runs leave no checkpoints


def test_resume_after_kill_9_equals_a_clean_run(tiny_model, tmp_path):
    cmd = [sys.executable, "-m", "senteval_anatomy", "finetune", "--model", str(tiny_model), "--task", "MRPC",
           "--task-path", str(DATA), "--read", "heads:1,0;0,2", "--seeds", "3", "--max-length", "32",
           "--lr", "5e-4", "--batch-size", "16", "--epochs", "3", "--limit-train", "64", "--limit-dev", "24",
           "--limit-test", "40", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env)
    for line in proc.stderr:
        if "checkpoint saved" in line:
            proc.send_signal(signal.SIGKILL)  # kill -9 just after the first epoch's checkpoint
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "runs").exists() or not list((killed / "runs").glob("*.json"))
    assert list((killed / "checkpoints").glob("*/checkpoint-*"))
    subprocess.run([*cmd, "--out", str(killed)], check=True, env=env, capture_output=True)
    r = pd.read_csv(killed / "finetune_results.csv").iloc[0]
    c = _run(tiny_model, tmp_path / "clean", reads=["heads:1,0;0,2"], seeds=[3]).rows.iloc[0]  # same settings
    assert r["resumed_from_step"] > 0 and c["resumed_from_step"] == 0
    for col in ("weights_sha256", "devacc", "acc", "best_epoch", "train_loss", "key_hash"):
        assert r[col] == c[col], col
    assert not (killed / "checkpoints").exists() or not any((killed / "checkpoints").iterdir())


def test_summary_and_paired_tables():
    rows = pd.DataFrame({
        "model": "m", "task": "MRPC", "readout": ["last"] * 3 + ["topk"] * 3, "representation": "x",
        "metric": "acc", "seed": [0, 1, 2] * 2, "devacc": 1.0, "acc": [70.0, 72.0, 71.0, 73.0, 74.0, 73.5],
        "seconds_per_epoch": 1.0, "dev_source": "file"})
    s = summary_table(rows).set_index("readout")
    assert s.loc["last", "test_mean"] == pytest.approx(71.0) and s.loc["last", "test_sd"] == pytest.approx(1.0)
    p = paired_table(rows).iloc[0]
    assert (p["a"], p["b"], p["n_seeds"], p["b_wins"]) == ("last", "topk", 3, 3)
    assert p["mean_diff"] == pytest.approx(np.mean([3.0, 2.0, 2.5]))
    assert 0 < p["p_paired_t"] < 0.05


def test_shipped_paper_numbers_and_the_grid_dry_run(capsys):
    """The released fine-tuning numbers ship with the package (means as the paper-results README gives them), and
    ``reproduce --finetune --dry-run`` plans the grid, estimates time and disk, says "test" is GLUE dev, runs nothing."""
    from senteval_anatomy import cli
    from senteval_anatomy.finetune.grid import paper_numbers, reference_runs

    assert len(reference_runs()) == 44
    p = paper_numbers().set_index(["model", "task", "readout"])["paper_mean"]
    assert round(p["bert-base-uncased", "mrpc", "best-layer"], 2) == 83.09
    assert round(p["bert-base-uncased", "sst-2", "best-layer"], 2) == 92.34
    assert round(p["bert-base-uncased", "sts-b", "last"], 4) == 0.8816
    assert round(p["google/electra-base-discriminator", "sts-b", "best-layer"], 4) == 0.834
    assert cli.main(["reproduce", "--finetune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "bert-base-uncased MRPC: 10 runs" in out and "estimated disk" in out and "GLUE dev" in out


def test_probe_after_sweeps_the_fine_tuned_model_into_the_same_table(tiny_model, tmp_path):
    """--probe-after: pretrained and fine-tuned rows in one tidy table (``checkpoint`` column), Δ per head = after −
    before of those very rows, and the fine-tuned model's fingerprint differs from the pretrained one."""
    data = make_tiny_data(tmp_path / "data")
    res = finetune(str(tiny_model), "TREC", task_path=str(data), reads=["last"], seeds=[0], out_dir=tmp_path / "o",
                   settings=FAST, device="cpu", progress=False, probe_after=True)
    probe = res.probe
    table = pd.read_csv(tmp_path / "o" / "probe_after" / "probe_after.csv")
    assert set(table["checkpoint"]) == {"pretrained", res.rows.loc[0, "checkpoint"]}
    assert table.groupby("checkpoint")["fingerprint"].nunique().eq(1).all() and table["fingerprint"].nunique() == 2
    heads = table[table["view"] == "heads"].pivot_table(index=["layer", "head"], columns="checkpoint", values="acc")
    delta = (heads[res.rows.loc[0, "checkpoint"]] - heads["pretrained"]).to_numpy()
    assert np.allclose(probe.head_delta["delta_test"].to_numpy(), delta)
    assert len(probe.head_delta) == 2 * 4 and -1 <= probe.summary.loc[0, "spearman_rho_mean"] <= 1
    assert any(p.name.startswith("delta_last") for p in probe.figures)
