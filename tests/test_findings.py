"""findings_sweep: the sweep's own table plus controls, untrained baseline, seeds, intervals, MDL and ablation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_sweep import FAST, make_tiny_data

from senteval_anatomy.findings import (
    claims_section,
    findings_report,
    findings_sweep,
    selectivity_heatmap,
)
from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import sweep
from senteval_anatomy.vocab import FINDINGS_COLUMNS, RESULT_COLUMNS


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("senteval-data"))


def test_findings_sweep_adds_trustworthy_columns(tiny_encoder, tiny_data, tmp_path):
    enc = tiny_encoder("bert")
    store = FeatureStore()
    table = findings_sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, store=store, controls=True,
                           untrained_baseline=True, untrained_seed=1, seeds=2, mdl=True, ablate=True,
                           ablation_sentences=12, out_dir=tmp_path, progress=False)
    assert list(table.columns) == list(RESULT_COLUMNS) + list(FINDINGS_COLUMNS)
    assert len(table) == enc.num_layers * enc.num_heads
    # the main columns are the plain sweep's, bit for bit
    plain = sweep(enc, ["Tense"], task_path=tiny_data, views=("heads",), params=FAST, store=store, progress=False)
    pd.testing.assert_frame_equal(table[list(RESULT_COLUMNS)], plain[list(RESULT_COLUMNS)], check_dtype=False)
    acc = table["acc"].to_numpy()
    np.testing.assert_allclose(table["selectivity"], acc - table["control_acc"], atol=1e-9)
    np.testing.assert_allclose(table["untrained_gain"], acc - table["untrained_acc"], atol=1e-9)
    assert (table["acc_low"] <= acc + 1e-9).all() and (acc <= table["acc_high"] + 1e-9).all()
    assert (table["n_seeds"] == 2).all() and table["acc_std"].notna().all()
    assert table["mdl"].gt(0).all() and table["compression"].notna().all()
    assert table["ablation_delta"].gt(0).all() and (table["ablation_measure"] == "embedding").all()
    assert sorted(table["dev_rank"]) == list(range(1, len(table) + 1))
    best = table[table["dev_rank"] == 1].iloc[0]
    assert best["devacc"] == table["devacc"].max() and np.isnan(best["p_vs_best"])
    assert table.groupby("layer")["tied_with_layer_best"].apply(lambda s: s.astype(bool).any()).all()
    on_disk = pd.read_csv(tmp_path / "findings.csv")
    assert len(on_disk) == len(table)
    text = claims_section(table)
    assert "Tense" in text and "95% CI" in text and "layers with a tied head" in text
    fig = selectivity_heatmap(table, "Tense")
    assert "selectivity" in fig.axes[0].get_title()
    report = findings_report(table, tmp_path)
    md = report.read_text()
    assert "## Findings with controls" in md and "selectivity_Tense.png" in md and "utilisation_Tense.png" in md
    assert (report.parent / "figures" / "utilisation_Tense.png").is_file()


def test_findings_sweep_without_options_and_errors(tiny_encoder, tiny_data):
    enc = tiny_encoder("bert")
    table = findings_sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, controls=False, progress=False)
    for c in ("control_acc", "selectivity", "untrained_acc", "mdl", "ablation_delta", "acc_std"):
        assert table[c].isna().all(), c
    with pytest.raises(ValueError, match="seeds"):
        findings_sweep(enc, ["Tense"], task_path=tiny_data, params=FAST, seeds=0)
    with pytest.raises(ValueError, match="control"):
        selectivity_heatmap(table, "Tense")
