"""What fine-tuning did to every head: the fine-tuned models swept again, with the pretrained sweep's settings.

For each finished run whose selected model was kept (``models/<name>/``), the package's public
:func:`~senteval_anatomy.sweeping.sweep` probes every head and layer of the fine-tuned transformer on the selection
task with exactly the settings of the pretrained sweep (same preset, pooling, max length, data; only the model and
hence its fingerprint differ). Written under ``<out>/probe_after/``:

* ``probe_after.csv``: the tidy rows of both, one table, with ``checkpoint`` (``pretrained`` or ``finetuned:<run>``),
  ``readout`` and ``ft_seed`` columns;
* ``head_delta.csv``: per readout × head, Δ = after − before of the dev and test score, mean over fine-tuning seeds and
  a 95% t-interval over seeds (NaN below 2 seeds); ``gained`` / ``lost`` rank heads by mean dev Δ;
* ``summary.csv``: per readout, Spearman ρ between the pretrained and the fine-tuned head maps (test scores; mean over
  seeds), mean Δ over heads, the layer curves before / after, and how the dev-chosen top-k heads changed (overlap);
* figures: ``delta_<readout>.png`` (Δ heatmap, mean over seeds) and ``layer_curves.png`` (before / after).

Δ on test is description (which heads moved), not selection; heads are *ranked* by dev Δ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.plots import save_figure
from ..encoders.loading import load_encoder
from ..sweeping import sweep
from ..tables.results import Results
from ..vocab import VIEWS, atomic_write
from .choosing import SELECTION_SWEEP_DIR

__all__ = ["ProbeAfter", "probe_after"]


@dataclass
class ProbeAfter:
    """The tables of :func:`probe_after` (also written to ``<out>/probe_after``)."""

    table: pd.DataFrame
    head_delta: pd.DataFrame
    summary: pd.DataFrame
    figures: list[Path]


def _interval(values: np.ndarray) -> tuple[float, float]:
    from scipy.stats import t

    v = values[~np.isnan(values)]
    if len(v) < 2:
        return float("nan"), float("nan")
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean() - half), float(v.mean() + half)


def probe_after(encoder: Any, rows: pd.DataFrame, *, data: Any, task_path: str | Path | None, out_dir: str | Path,
                pooling: str | None = None, progress: bool = True, k: int | None = None) -> ProbeAfter:
    """Sweep every kept fine-tuned model of ``rows`` (rows of :func:`~.experiment.finetune`) and compare with the
    pretrained ``encoder`` on ``data.select_task``; see the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    task = data.select_task
    if task is None or task_path is None:
        raise ValueError("--probe-after sweeps a SentEval task: give --select-on TASK and --task-path")
    out = Path(out_dir)
    dest = out / "probe_after"
    dest.mkdir(parents=True, exist_ok=True)
    before = sweep(encoder, [task], task_path=str(task_path), views=list(VIEWS), out_dir=out / SELECTION_SWEEP_DIR,
                   pooling=pooling, progress=progress)
    res_before = Results(before)
    m_before = res_before.matrix(task, value="acc")
    d_before = res_before.matrix(task, value="devacc")
    k = k or min(12, m_before.size)
    top_before = set(res_before.top_head_ids(task, k))
    frames = [before.assign(checkpoint="pretrained", readout="", ft_seed=-1)]
    per: list[dict[str, Any]] = []
    for _, row in rows.iterrows():
        name = str(row["checkpoint"]).removeprefix("finetuned:")
        folder = out / "models" / name
        if not (folder / "config.json").is_file():
            continue
        ft = load_encoder(str(folder), device=str(encoder.device))
        after = sweep(ft, [task], task_path=str(task_path), views=list(VIEWS), out_dir=dest / "sweeps" / name,
                      pooling=pooling, progress=progress)
        frames.append(after.assign(checkpoint=row["checkpoint"], readout=row["readout"], ft_seed=int(row["seed"])))
        res = Results(after)
        m_after, d_after = res.matrix(task, value="acc"), res.matrix(task, value="devacc")
        rho = spearmanr(m_before.to_numpy().ravel(), m_after.to_numpy().ravel(), nan_policy="omit")[0]
        layers_before = res_before.layer_scores(task)["acc"]
        layers_after = res.layer_scores(task)["acc"]
        per.append({"readout": row["readout"], "seed": int(row["seed"]), "rho": float(rho),
                    "delta_test": (m_after - m_before).to_numpy(), "delta_dev": (d_after - d_before).to_numpy(),
                    "layers_before": layers_before, "layers_after": layers_after,
                    "topk_overlap": len(top_before & set(res.top_head_ids(task, k)))})
    table = pd.concat(frames, ignore_index=True)
    atomic_write(dest / "probe_after.csv", lambda p: table.to_csv(p, index=False))
    L, H = m_before.shape
    deltas, summary, figures = [], [], []
    for readout in dict.fromkeys(p["readout"] for p in per):
        mine = [p for p in per if p["readout"] == readout]
        dt = np.stack([p["delta_test"] for p in mine])
        dd = np.stack([p["delta_dev"] for p in mine])
        for la in range(L):
            for h in range(H):
                lo, hi = _interval(dt[:, la, h])
                deltas.append({"readout": readout, "layer": la, "head": h, "n_seeds": len(mine),
                               "before_acc": float(m_before.iat[la, h]), "delta_dev": float(np.nanmean(dd[:, la, h])),
                               "delta_test": float(np.nanmean(dt[:, la, h])), "delta_test_low": lo,
                               "delta_test_high": hi})
        curve_after = pd.concat([p["layers_after"] for p in mine], axis=1).mean(axis=1)
        summary.append({"readout": readout, "n_seeds": len(mine),
                        "spearman_rho_mean": float(np.mean([p["rho"] for p in mine])),
                        "mean_delta_test": float(np.nanmean(dt)), "k": k,
                        "topk_overlap_mean": float(np.mean([p["topk_overlap"] for p in mine])),
                        "layers_before": ";".join(f"{v:.4g}" for v in mine[0]["layers_before"]),
                        "layers_after_mean": ";".join(f"{v:.4g}" for v in curve_after)})
        fig, ax = plt.subplots(figsize=(max(4, H * 0.45), max(3, L * 0.4)))
        mean = np.nanmean(dt, axis=0)
        lim = float(np.nanmax(np.abs(mean))) or 1.0
        im = ax.imshow(mean, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{task}: Δ test score after fine-tuning ({readout}, mean of {len(mine)} seeds)", fontsize=8)
        fig.colorbar(im, ax=ax)
        figures += save_figure(fig, dest / f"delta_{readout.replace(':', '_').replace(';', '_')}", formats=["png"])
        plt.close(fig)
    head_delta = pd.DataFrame(deltas)
    if not head_delta.empty:
        head_delta["gained_rank"] = head_delta.groupby("readout")["delta_dev"].rank(ascending=False, method="first")
        head_delta["lost_rank"] = head_delta.groupby("readout")["delta_dev"].rank(ascending=True, method="first")
    summary_df = pd.DataFrame(summary)
    atomic_write(dest / "head_delta.csv", lambda p: head_delta.to_csv(p, index=False))
    atomic_write(dest / "summary.csv", lambda p: summary_df.to_csv(p, index=False))
    if per:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        lb = per[0]["layers_before"]
        ax.plot(lb.index, lb.to_numpy(), "k-o", label="pretrained")
        for readout in dict.fromkeys(p["readout"] for p in per):
            cur = pd.concat([p["layers_after"] for p in per if p["readout"] == readout], axis=1).mean(axis=1)
            ax.plot(cur.index, cur.to_numpy(), "-o", label=f"fine-tuned ({readout})")
        ax.set_xlabel("layer (-1 = embeddings)")
        ax.set_ylabel("test score of a probe")
        ax.set_title(f"{task}: layer probes before / after fine-tuning", fontsize=8)
        ax.legend(fontsize=7)
        figures += save_figure(fig, dest / "layer_curves", formats=["png"])
        plt.close(fig)
    return ProbeAfter(table, head_delta, summary_df, figures)
