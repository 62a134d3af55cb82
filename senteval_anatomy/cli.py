"""Command lines behind ``run_probing.py`` and ``run_downstream.py``: argument parsing and calls to the public API.

``python run_probing.py`` with no arguments is the main job on the embedded default: the bundled MiniLM model, the
10 probing tasks of the default data (SentEval's data when a folder is given or was downloaded), every head and every
layer, then heatmaps, a summary table and ``report.md`` in the output folder. ``run_downstream.py`` does the same for
SST5, TREC, SICKEntailment and MRPC and adds the top-k heads representation (heads and k chosen on dev).

With ``--head L,H`` or ``--layer L`` either script evaluates just that one adapter through the engine
(``--harness builtin``) or an installed SentEval (``--harness senteval``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .engine.tasks import PROBING_TASKS as PROBING_DEFAULT
from .vocab import POOLINGS

DOWNSTREAM_DEFAULT = ("SST5", "TREC", "SICKEntailment", "MRPC")


def _parser(kind: str) -> argparse.ArgumentParser:
    default_tasks = PROBING_DEFAULT if kind == "probing" else DOWNSTREAM_DEFAULT
    p = argparse.ArgumentParser(
        prog=f"run_{kind}.py",
        description=(
            f"Sweep every attention head and every layer of a transformer over SentEval {kind} tasks, then draw the "
            "layer x head heatmaps and write a report."
            + (" Adds the top-k heads representation, with heads and k chosen on dev." if kind == "downstream" else "")
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", "-m", default="minilm",
                   help="'minilm' (bundled, offline), a local model folder, or a Hugging Face Hub id")
    p.add_argument("--tasks", "-t", default=",".join(default_tasks), help="comma-separated SentEval task names")
    p.add_argument("--views", default="heads,layers", help="heads, layers, or both")
    p.add_argument("--task-path", default=None,
                   help="SentEval data folder (holding probing/ and downstream/); default: $SENTEVAL_ANATOMY_DATA, "
                        "then downloaded data, then the embedded demo data")
    p.add_argument("--out", "-o", default=None, help="output folder (default: results/<model>/" + kind + ")")
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="token pooling (default: cls for encoders, last for decoders)")
    p.add_argument("--harness", choices=("builtin", "engine", "senteval"), default="builtin",
                   help="builtin: batched probes (fast); engine: one probe at a time through our SE; "
                        "senteval: one run per probe of an installed SentEval")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"), help="model weights' dtype")
    p.add_argument("--max-length", type=int, default=None, help="truncate inputs to this many tokens")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for encoding (default: torch's); 1 is faster on a busy shared machine")
    p.add_argument("--cache-dir", default=None,
                   help="feature cache folder (default: $SENTEVAL_ANATOMY_CACHE or ~/.cache/senteval_anatomy)")
    p.add_argument("--cache-dtype", choices=("float32", "float16"), default="float32", help="dtype of cached features")
    g = p.add_argument_group("probe settings (SentEval params; defaults = the paper's)")
    g.add_argument("--seed", type=int, default=123)
    g.add_argument("--kfold", type=int, default=5)
    g.add_argument("--sklearn", action="store_true", help="usepytorch=False: scikit-learn logistic regression")
    g.add_argument("--nhid", type=int, default=0, help="hidden units of the probe (0 = logistic regression)")
    g.add_argument("--optim", default="rmsprop")
    g.add_argument("--probe-batch-size", type=int, default=256)
    g.add_argument("--tenacity", type=int, default=3)
    g.add_argument("--epoch-size", type=int, default=2)
    g.add_argument("--max-epoch", type=int, default=200)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--probe-device", default="auto", help="where PyTorch probes train")
    a = p.add_argument_group("analysis")
    a.add_argument("--no-plots", action="store_true", help="skip figures and report")
    a.add_argument("--no-resume", action="store_true", help="recompute units already in the output folder")
    a.add_argument("--topk", action=argparse.BooleanOptionalAction, default=(kind == "downstream"),
                   help="evaluate the top-k heads representation (heads ranked on dev)")
    a.add_argument("--ks", default=None, help="k values for top-k, e.g. 1,2,4,8 (default: 1..12, then doubling)")
    a.add_argument("--rank-task", default=None,
                   help="rank heads on the dev scores of this task instead of each task's own")
    f = p.add_argument_group("findings you can trust (builtin harness; senteval_anatomy.findings)")
    f.add_argument("--controls", action="store_true",
                   help="also train every probe on the task's control task: control accuracy and selectivity")
    f.add_argument("--untrained-baseline", action="store_true",
                   help="also sweep the same architecture with random weights: untrained score and gain")
    f.add_argument("--seeds", type=int, default=1, help="probe seeds per cell: mean and standard deviation")
    f.add_argument("--mdl", action="store_true", help="online-code minimum description length of every probe")
    f.add_argument("--ablate", action="store_true",
                   help="ablate each head alone and measure the change of the model's own output")
    f.add_argument("--ablation-mode", choices=("zero", "mean"), default="zero", help="how a head is ablated")
    s = p.add_argument_group("single adapter (instead of a sweep)")
    s.add_argument("--head", default=None, metavar="L,H", help="evaluate one head, e.g. 3,7")
    s.add_argument("--layer", default=None, metavar="L", help="evaluate one layer: block index, -1, or embeddings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--version", action="version", version=f"senteval_anatomy {__version__}")
    return p


def _params(args: argparse.Namespace, task_path: Path) -> dict[str, Any]:
    return {
        "task_path": str(task_path),
        "usepytorch": not args.sklearn,
        "kfold": args.kfold,
        "seed": args.seed,
        "batch_size": 128,
        "device": args.probe_device,
        "classifier": {
            "nhid": args.nhid, "optim": args.optim, "batch_size": args.probe_batch_size,
            "tenacity": args.tenacity, "epoch_size": args.epoch_size, "max_epoch": args.max_epoch,
            "dropout": args.dropout,
        },
    }


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _single(args: argparse.Namespace, encoder: Any, tasks: list[str], params: dict[str, Any], store: Any) -> int:
    from .adapters import HeadAdapter, LayerAdapter

    if args.head is not None:
        try:
            layer, head = (int(x) for x in args.head.split(","))
        except ValueError:
            return _fail(f"--head {args.head!r}: expected two integers 'LAYER,HEAD', e.g. --head 3,7")
        adapter: Any = HeadAdapter(encoder, layer, head, pooling=args.pooling, store=store, max_length=args.max_length)
    else:
        spec = args.layer
        layer_arg: int | str = spec if spec == "embeddings" else int(spec)
        adapter = LayerAdapter(encoder, layer_arg, pooling=args.pooling, store=store, max_length=args.max_length)
    if args.harness == "senteval":
        try:
            import senteval  # type: ignore[import-not-found]
        except ImportError:
            return _fail("--harness senteval needs facebookresearch/SentEval installed "
                         "(pip install git+https://github.com/facebookresearch/SentEval); or use --harness builtin.")
        se = senteval.engine.SE(params, adapter.batcher, adapter.prepare)
    else:
        from .engine import SE

        se = SE(params, adapter.batcher, adapter.prepare)
    results = se.eval(tasks)
    print(json.dumps({"model": encoder.name, "vector": adapter.name, "results": results}, indent=2, default=_jsonable))
    return 0


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def run(kind: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_probing.py`` (``kind="probing"``) and ``run_downstream.py`` (``kind="downstream"``)."""
    args = _parser(kind).parse_args(argv)
    from .data import resolve_task_path
    from .engine import TASK_NAMES
    from .models import UnsupportedModelError, load_encoder
    from .store import FeatureStore
    from .sweeping import sweep
    from .vocab import slug

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        return _fail(f"--tasks: unknown task(s) {unknown}. Valid names: {', '.join(TASK_NAMES)}")
    if args.head is not None and args.layer is not None:
        return _fail("give either --head or --layer, not both")
    try:
        task_path, where = resolve_task_path(args.task_path)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    print(f"data: {task_path} ({where})", file=sys.stderr)
    try:
        encoder = load_encoder(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length)
    except (UnsupportedModelError, ValueError) as exc:
        return _fail(str(exc))
    print(f"model: {encoder!r}", file=sys.stderr)
    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads {args.threads}: give a positive number")
        import torch

        torch.set_num_threads(args.threads)
    findings = args.controls or args.untrained_baseline or args.seeds != 1 or args.mdl or args.ablate
    if args.seeds < 1:
        return _fail(f"--seeds {args.seeds}: give a positive number of probe seeds")
    if findings and args.harness != "builtin":
        return _fail("--controls/--untrained-baseline/--seeds/--mdl/--ablate run on the batched trainer: use "
                     "--harness builtin")
    store = FeatureStore(args.cache_dir, dtype=args.cache_dtype)
    params = _params(args, task_path)
    if args.head is not None or args.layer is not None:
        return _single(args, encoder, tasks, params, store)

    out = Path(args.out) if args.out else Path("results") / slug(str(args.model), default="model") / kind
    started = time.time()
    from .engine import DataError

    try:
        table = sweep(
            encoder, tasks, task_path=task_path, views=args.views, out_dir=out, params=params,
            pooling=args.pooling, max_length=args.max_length, store=store, harness=args.harness,
            resume=not args.no_resume, progress=not args.quiet,
        )
    except DataError as exc:
        return _fail(str(exc))
    print(f"sweep: {len(table)} rows in {time.time() - started:.1f} s -> {out / 'results.csv'}", file=sys.stderr)
    if findings:  # before the report: analyse() reads findings.csv into the main report
        from .findings import findings_report, findings_sweep

        views = "heads" if args.ablate and "heads" not in args.views else args.views
        ftable = findings_sweep(
            encoder, tasks, task_path=task_path, views=views, params=params, pooling=args.pooling,
            max_length=args.max_length, store=store, controls=args.controls, untrained_baseline=args.untrained_baseline,
            seeds=args.seeds, mdl=args.mdl, ablate=args.ablate, ablation_mode=args.ablation_mode, out_dir=out,
            resume=not args.no_resume, progress=not args.quiet,
        )
        print(f"findings: {len(ftable)} rows -> {out / 'findings.csv'}; report: {findings_report(ftable, out)}")
    if not args.no_plots:
        from .analysis import analyse

        report = analyse(
            table, out, encoder=encoder, task_path=task_path, params=params, store=store, kind=kind,
            topk=args.topk, ks=args.ks, rank_task=args.rank_task, pooling=args.pooling, progress=not args.quiet,
            data_note=where,
        )
        print(report.summary_text)
        print(f"\nreport: {report.path}")
    print(f"output folder: {out.resolve()}")
    return 0


def main_probing(argv: Sequence[str] | None = None) -> int:
    return run("probing", argv)


def main_downstream(argv: Sequence[str] | None = None) -> int:
    return run("downstream", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(os.environ.get("SENTEVAL_ANATOMY_KIND", "probing")))
