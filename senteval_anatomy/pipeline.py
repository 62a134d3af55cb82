"""The one run pipeline: ``run(plan, encoder) -> RunReport``, used by the command line, the Python API and
``reproduce`` alike.

1. the sweep (:func:`~senteval_anatomy.sweeping.execute`): every unit of the plan (heads, layers, with the findings
   variants and column providers when asked for) on the plan's backend, reusing finished units; then each task's
   top-k heads view from the store (on by default);
2. the report (:func:`senteval_anatomy.analysis.analyse.analyse`, when the plan has an output folder): figures, tables and
   ``report.md`` from what step 1 returned, nothing trained again.

This module is its own layer, above both steps: the sweep (:mod:`senteval_anatomy.sweeping`) never calls the analysis,
and the analysis never runs a sweep; only the pipeline joins them. The command line only parses its flags into a
:class:`~senteval_anatomy.sweeping.plan.Plan`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .analysis.analyse import analyse
from .sweeping import SweepOutput, execute
from .sweeping.plan import Plan

__all__ = ["RunReport", "run"]


@dataclass
class RunReport:
    """What a run produced: the sweep's output (table, top-k curves, ablation curves), the report (``None``
    without an output folder or with ``plan.report=False``) and the sweep's wall time."""

    sweep: SweepOutput
    report: Any
    seconds: float

    @property
    def table(self) -> pd.DataFrame:
        return self.sweep.table

    @property
    def topk(self) -> pd.DataFrame | None:
        return self.sweep.topk


def run(plan: Plan, encoder: Any, store: Any = None) -> RunReport:
    """Execute ``plan`` with ``encoder`` (features cached in ``store``, default the process-wide one)."""
    started = time.perf_counter()
    output = execute(encoder, plan, store)
    seconds = time.perf_counter() - started
    report = None
    if plan.report and plan.out is not None:
        report = analyse(output.table, plan.out, curves=output.topk, ablation_curves=output.ablation_curves,
                         kind=plan.kind, data_note=plan.data_note, draw_figures=plan.draw_figures)
    return RunReport(sweep=output, report=report, seconds=seconds)
