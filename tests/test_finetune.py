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

from senteval_anatomy.finetune.classifier import ReadoutClassifier
from senteval_anatomy.finetune.comparison import paired_table, summary_table
from senteval_anatomy.finetune.data import load_finetune_data, load_glue_folder
from senteval_anatomy.finetune.experiment import finetune
from senteval_anatomy.finetune.readouts import Readout, check_read, parse_read
from senteval_anatomy.finetune.settings import TrainSettings

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


def test_glue_folder_trains_end_to_end_from_the_command_line(tiny_model, tmp_path, capsys):
    """A GLUE MRPC folder (the paper's data layout: ``Quality``, ``#1 String``, ``#2 String``) of a dozen training
    pairs, fine-tuned through ``senteval-anatomy finetune --glue``: train.tsv less a seeded held-out dev slice trains,
    dev.tsv is the test split, and every row says so (``dev_source``, ``test_source``, sizes, data hash)."""
    from senteval_anatomy import cli

    g = tmp_path / "MRPC"
    g.mkdir()
    head = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    pairs = [("1", f"the cat sat on mat {i} .", f"a cat sat on the mat {i} .") if i % 2 else
             ("0", f"dogs bark at night {i} .", f"the market fell today {i} .") for i in range(12)]
    (g / "train.tsv").write_text(head + "".join(f"{q}\t{i}\t{i + 100}\t{a}\t{b}\n"
                                                for i, (q, a, b) in enumerate(pairs)), encoding="utf-8")
    (g / "dev.tsv").write_text(head + "1\t7\t8\tthe cat sat .\ta cat sat .\n0\t9\t10\tdogs bark .\tthe market "
                                      "fell .\n1\t11\t12\tit rains .\tit is raining .\n0\t13\t14\tred car .\t"
                                      "blue sky .\n", encoding="utf-8")
    out = tmp_path / "ft"
    status = cli.main(["finetune", "--model", str(tiny_model), "--glue", str(g), "--read", "last", "--read",
                       "heads:1,0;0,2", "--seeds", "0", "--dev-fraction", "0.25", "--max-length", "32", "--lr",
                       "5e-4", "--batch-size", "4", "--epochs", "2", "--device", "cpu", "--no-progress", "--out",
                       str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    rows = pd.read_csv(out / "finetune_results.csv")
    assert len(rows) == 2 and set(rows["readout"]) == {"last", "heads:1,0;0,2"}
    assert (rows["task"] == "glue:MRPC").all() and (rows["dev_source"] == "train-holdout:0.25:seed0").all()
    assert (rows["test_source"] == "glue-dev.tsv").all() and (rows["metric"] == "acc").all()
    assert (rows[["n_train", "n_dev", "n_test"]].to_numpy() == [9, 3, 4]).all()
    assert rows["acc"].isin([0.0, 25.0, 50.0, 75.0, 100.0]).all() and rows["data_hash"].nunique() == 1
    assert rows["best_epoch"].between(1, 2).all() and rows["dev_curve"].str.count(";").eq(1).all()  # 2 evals
    assert "glue:MRPC" in captured.out and not list((out / "checkpoints").glob("*/checkpoint-*"))


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


def test_dry_run_sizes_a_model_outside_the_grid_from_its_config(capsys, tmp_path):
    """``--dry-run`` estimates a model outside the paper's grid from its own config (the bundled MiniLM: ~23M
    parameters, not BERT-base's 110M, so its CPU time is ~5x shorter), and says when it has to assume a size."""
    from senteval_anatomy import cli

    assert cli.main(["reproduce", "--finetune", "--dry-run", "--models", "minilm", "--tasks", "MRPC"]) == 0
    out = capsys.readouterr().out
    assert "minilm: about 23M parameters (from its config)" in out
    minutes = int(out.split("about ")[2].split(" min per run")[0])  # MRPC's 4,076 pairs x 3 epochs at ~8/s
    assert 20 <= minutes <= 30, out
    missing = tmp_path / "no-such-model"
    assert cli.main(["reproduce", "--finetune", "--dry-run", "--models", str(missing), "--tasks", "MRPC"]) == 0
    assert "about 110M parameters (its config is not readable offline" in capsys.readouterr().out


@pytest.fixture(scope="module")
def probed(tiny_model, tmp_path_factory):
    """One real ``finetune(..., probe_after=True, progress=False)`` on the tiny BERT, its stderr captured (the bars
    of transformers write to ``sys.stderr`` as it is when they start)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("probed")
    data = make_tiny_data(root / "data")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        res = finetune(str(tiny_model), "TREC", task_path=str(data), reads=["last"], seeds=[0], out_dir=root / "o",
                       settings=FAST, device="cpu", progress=False, probe_after=True)
    return res, root / "o", err.getvalue()


def test_probe_after_sweeps_the_fine_tuned_model_into_the_same_table(probed):
    """--probe-after: pretrained and fine-tuned rows in one tidy table (``checkpoint`` column), Δ per head = after −
    before of those very rows, and the fine-tuned model's fingerprint differs from the pretrained one."""
    res, out, _ = probed
    probe = res.probe
    table = pd.read_csv(out / "probe_after" / "probe_after.csv")
    assert set(table["checkpoint"]) == {"pretrained", res.rows.loc[0, "checkpoint"]}
    assert table.groupby("checkpoint")["fingerprint"].nunique().eq(1).all() and table["fingerprint"].nunique() == 2
    heads = table[table["view"] == "heads"].pivot_table(index=["layer", "head"], columns="checkpoint", values="acc")
    delta = (heads[res.rows.loc[0, "checkpoint"]] - heads["pretrained"]).to_numpy()
    assert np.allclose(probe.head_delta["delta_test"].to_numpy(), delta)
    assert len(probe.head_delta) == 2 * 4 and -1 <= probe.summary.loc[0, "spearman_rho_mean"] <= 1
    assert any(p.name.startswith("delta_last") for p in probe.figures)


def test_no_progress_silences_the_model_shard_bar(probed):
    """With progress off nothing of transformers' bars reaches stderr: the kept fine-tuned model and the Trainer's
    checkpoints go through ``save_pretrained``, whose "Writing model shards" bar ignored ``--no-progress``."""
    res, out, err = probed
    assert (out / "models" / res.rows.loc[0, "checkpoint"].removeprefix("finetuned:") / "config.json").is_file()
    assert "Writing model shards" not in err and "it/s]" not in err, err[-500:]


def test_our_head_deltas_line_up_with_the_released_head_finetuned_rows(probed, tmp_path, capsys):
    """``reproduce --finetune --probe-after``: our per-head Δ (``head_delta`` of a real tiny probe-after run) beside
    the shipped head_finetuned rows, aligned by (layer, head). Ours are given the paper's Δ of bert-base MRPC at the
    same (layer, head), so ρ must be 1 and every row must carry the paper's number of that very head; a head or layer
    index shifted by one anywhere in the alignment breaks both."""
    from senteval_anatomy.finetune.grid import (
        HEAD_COMPARISON_COLUMNS,
        compare_head_deltas,
        paper_head_deltas,
        write_head_comparison,
    )

    ours = probed[0].probe.head_delta.copy()
    assert list(ours[["layer", "head"]].itertuples(index=False, name=None)) == [(la, h) for la in range(2)
                                                                                 for h in range(4)]
    paper = paper_head_deltas("bert-base-uncased", "MRPC").set_index(["layer", "head"])
    assert len(paper) == 144 and paper["paper_delta"].notna().sum() == 140  # 4 heads were never probed at step 0
    assert paper.loc[(0, 0), "paper_after"] == pytest.approx(71.20666, abs=1e-4)  # mean of 3 released runs' ends
    ours["delta_test"] = [paper.loc[(la, h), "paper_delta"] for la, h in zip(ours["layer"], ours["head"])]
    assert ours["delta_test"].nunique() == len(ours)  # distinct values: a shifted index cannot match by chance
    table, rho = compare_head_deltas(ours, "bert-base-uncased", "MRPC")
    assert list(table.columns) == HEAD_COMPARISON_COLUMNS and len(table) == len(ours)
    for _, r in table.iterrows():
        assert r["paper_delta"] == pytest.approx(paper.loc[(r["layer"], r["head"]), "paper_delta"])
        assert r["ours_delta"] == pytest.approx(r["paper_delta"])
        assert r["ours_after"] == pytest.approx(r["ours_before"] + r["ours_delta"])
    assert rho.loc[0, "n_heads"] == 8 and rho.loc[0, "spearman_rho_delta"] == pytest.approx(1.0)
    # the Hub id of ELECTRA is matched to the released name; a model the paper did not release gives NaNs, no error
    t2, r2 = compare_head_deltas(ours, "some/other-model", "MRPC")
    assert t2["paper_delta"].isna().all() and r2.loc[0, "n_heads"] == 0
    write_head_comparison(tmp_path, table, rho)
    assert "spearman_rho_delta" in capsys.readouterr().out
    back = pd.read_csv(tmp_path / "finetune_head_comparison.csv")
    assert np.allclose(back["paper_delta"], table["paper_delta"]) and (tmp_path / "finetune_head_rho.csv").is_file()
