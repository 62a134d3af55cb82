"""The findings flags of the run scripts, end to end in a real subprocess."""

from __future__ import annotations

import pandas as pd
from test_cli import PROBE, run, tiny_data, tiny_model_dir  # noqa: F401  (fixtures)

from senteval_anatomy.vocab import FINDINGS_COLUMNS


def test_run_probing_with_findings_flags(tiny_model_dir, tiny_data, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
            "--views", "heads", "--out", str(out), "--no-plots", "--controls", "--untrained-baseline", "--seeds",
            "2", "--mdl", "--ablate", *PROBE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out / "results.csv")  # one table: the findings are its columns
    assert set(FINDINGS_COLUMNS) <= set(table.columns) and len(table) == 8
    for c in ("bow_selectivity", "permuted_selectivity", "majority_acc", "untrained_acc", "acc_std", "mdl",
              "ablation_delta", "acc_low", "p_vs_best_adj", "tied_with_layer_best", "family_size"):
        assert table[c].notna().all() if c != "p_vs_best_adj" else table[c].notna().sum() == len(table) - 1, c
    assert (table["family_size"] == 7).all() and (table["layer_family_size"] == 6).all()
    assert not (out / "findings.csv").exists() and not (out / "findings").exists()
    assert "## Findings with controls" in (out / "report.md").read_text()
    assert not (out / "figures").exists()  # --no-plots covers the findings figures


def test_findings_flags_errors(tiny_model_dir, tiny_data, tmp_path):  # noqa: F811
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
            "--seeds", "0", *PROBE, cwd=tmp_path)
    assert r.returncode == 2 and "--seeds 0" in r.stderr
    r = run("run_probing.py", "--model", str(tiny_model_dir), "--task-path", str(tiny_data), "--tasks", "Tense",
            "--controls", "--harness", "engine", *PROBE, cwd=tmp_path)
    assert r.returncode == 2 and "--harness builtin" in r.stderr
