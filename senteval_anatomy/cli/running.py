"""Running a checked plan: one adapter (``--head`` / ``--layer``) through the harness, or the whole sweep through
the one pipeline (:func:`senteval_anatomy.pipeline.run`); the CLI only parses and plans.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..outdir import RESULTS_CSV
from ..store import FeatureStore
from .parser import _backend
from .planning import _check_for_model, _load, _Plan, _plan


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def _single(plan: _Plan, encoder: Any, adapter: Any) -> int:
    # lazy: start-up time (pandas: the sweeping package): every command imports this module
    from ..sweeping.backends.local import harness_engine  # the one harness switch, as the sweep runs it
    from ..sweeping.identity import preset_name

    engine_cls, running = harness_engine(plan.harness, plan.params.get("device") or "auto")
    with running:
        results = engine_cls(plan.params, adapter.batcher, adapter.prepare).eval(plan.tasks)

    print(json.dumps({"model": encoder.name, "vector": adapter.name, "preset": preset_name(plan.params),
                      "results": results},
                     indent=2, default=_jsonable))
    return 0


def _run(kind: str, args: argparse.Namespace) -> int:
    plan = _plan(kind, args)
    print(f"data: {plan.task_path} ({plan.data_note})", file=sys.stderr)
    encoder = _load(args)
    print(f"model: {encoder!r}", file=sys.stderr)
    store = FeatureStore(plan.cache_dir, dtype=args.cache_dtype, rebuild=not args.no_rebuild)
    adapter = _check_for_model(plan, encoder, store)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if adapter is not None:
        return _single(plan, encoder, adapter)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)

    # lazy: start-up time (pandas: the pipeline and the sweeping package): every command imports this module
    from ..pipeline import run as run_plan
    from ..sweeping.plan import make_plan
    from ..sweeping.variants import FindingsOptions

    findings = FindingsOptions(controls=args.controls, untrained_baseline=args.untrained_baseline, seeds=args.seeds,
                               mdl=args.mdl, ablate=args.ablate, ablation_mode=args.ablation_mode or "zero")
    run = make_plan(plan.tasks, task_path=plan.task_path, params=plan.params, views=plan.views, ks=plan.ks,
                    findings=findings, pooling=plan.pooling, max_length=plan.max_length, harness=plan.harness,
                    backend=_backend(args), batch_size=plan.batch_size, out=plan.out, resume=not args.no_resume,
                    progress=not args.quiet, topk=plan.topk, rank_task=plan.rank_task, kind=kind,
                    data_note=plan.data_note, draw_figures=not args.no_plots)
    done = run_plan(run, encoder, store)
    print(f"sweep: {len(done.table)} rows in {done.seconds:.1f} s -> {plan.out / RESULTS_CSV}", file=sys.stderr)
    print(done.report.summary_text)
    print(f"\nreport: {done.report.path}")
    print(f"output folder: {plan.out.resolve()}")
    return 0
