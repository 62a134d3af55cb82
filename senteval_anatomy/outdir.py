"""Every name in a run's output folder, defined once (the sweep, the report, the CLI and reproduce import them).

::

    <out>/
      results.csv, results.parquet   the tidy table: every row, every column (findings columns empty when off)
      units/                         one keyed file per (model, task, view) result unit; marks a folder a run wrote
      topk/                          the top-k view's keyed unit files (one per task), and its curves table
      topk.csv                       every top-k curve of the run (rows of kind topk + layer baselines)
      ablation_curves.csv            the top-k ablation curves (--ablate)
      figures/                       every figure (figures/findings/ for the findings figures)
      report.md                      the report
"""

from __future__ import annotations

__all__ = ["ABLATION_CURVES_CSV", "FIGURES_DIR", "FINDINGS_FIGURES_DIR", "REPORT_MD", "RESULTS_CSV",
           "RESULTS_PARQUET", "RUN_FILES", "TOPK_CSV", "TOPK_DIR", "UNITS_DIR"]

RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
UNITS_DIR = "units"
TOPK_DIR = "topk"
TOPK_CSV = "topk.csv"
ABLATION_CURVES_CSV = "ablation_curves.csv"
FIGURES_DIR = "figures"
FINDINGS_FIGURES_DIR = "findings"  # under FIGURES_DIR
REPORT_MD = "report.md"

#: Files a run writes at the top of its folder (a folder holding them without UNITS_DIR was not written by a run).
RUN_FILES: tuple[str, ...] = (RESULTS_CSV, RESULTS_PARQUET, REPORT_MD)
