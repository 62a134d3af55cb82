"""``senteval-anatomy finetune``: fine-tune a model end to end with a classifier on a chosen layer or heads.

Examples::

    senteval-anatomy finetune --model minilm --task MRPC --task-path DATA --read last --read best-layer \\
        --read topk --seeds 0,1,2 --out ft/
    senteval-anatomy finetune --model bert-base-uncased --glue glue_data/MRPC --select-on MRPC --task-path DATA \\
        --read best-layer --from sweeps/bert/ --seeds 0,1,2,3,4 --out ft/

Bad input (an unknown ``--read``, a layer or head out of range, ``--from`` results of another model, a selection task
without dev scores, a GLUE folder with missing columns, an unwritable ``--out``, too little disk for a checkpoint) is
one line on stderr and exit status 2, before any training.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine import DataError
from ..sweeping.plan import parse_ks
from ..vocab import OneLineParser, path_arg, print_error
from .checks import check_limits, parse_reads, parse_seeds
from .data import GlueFormatError
from .readouts import READ_FORMS
from .settings import PAPER_FINETUNE, TrainSettings

__all__ = ["main"]

PRESETS = {"paper": PAPER_FINETUNE}


def _parser(prog: str | None) -> OneLineParser:
    p = OneLineParser(prog=prog or "senteval-anatomy finetune",
                      description="Fine-tune a model on a SentEval task (or a GLUE folder) with a classifier on the "
                                  "last layer, the dev-best layer, the dev-chosen top-k heads, a layer or heads.")
    p.add_argument("--model", default="minilm", help="'minilm' (bundled), a local folder or a Hub id")
    p.add_argument("--task", help="SST2, SST5, TREC, MRPC, SICKEntailment, SICKRelatedness or STSBenchmark")
    p.add_argument("--glue", type=path_arg, help="a GLUE-format folder (train.tsv, dev.tsv); dev.tsv is the test "
                                                 "split here (GLUE's test labels are hidden)")
    p.add_argument("--task-path", type=path_arg, help="SentEval data folder (holding downstream/)")
    p.add_argument("--read", action="append", metavar="READOUT",
                   help=f"repeatable; one of {', '.join(READ_FORMS)} (default: last)")
    p.add_argument("--from", dest="from_results", type=path_arg, metavar="RESULTS",
                   help="a sweep of this model (its --out folder or results.csv) whose dev scores choose best-layer "
                        "/ topk; without it the pretrained model is swept first")
    p.add_argument("--select-on", metavar="TASK", help="SentEval task whose dev scores choose (default: --task; "
                                                        "required with --glue)")
    p.add_argument("--ks", help="k values tried when topk chooses k on dev (default: the sweep's)")
    p.add_argument("--seeds", default="0", help="comma-separated fine-tuning seeds, e.g. 0,1,2,3,4")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: max_length 128, lr 2e-5, batch 32, 3 epochs")
    p.add_argument("--max-length", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--dropout", type=float)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without a "
                                                                          "better dev score (0: off)")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    p.add_argument("--pooling", help="how a layer's / head's tokens are pooled (default: the model's, as the sweep)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dev-fraction", type=float, default=0.1,
                   help="share of train held out as dev where a task has no dev split (MRPC, TREC, GLUE folders)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that held-out slice (fixed across seeds)")
    p.add_argument("--limit-train", type=int, help="a fixed seeded subset of train (CPU benchmarks); recorded")
    p.add_argument("--limit-dev", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--probe-after", action="store_true",
                   help="sweep each fine-tuned model with the pretrained sweep's settings: Δ heatmaps, layer curves")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=path_arg, required=True, help="output folder (created if missing)")
    return p


def _settings(args) -> TrainSettings:
    from dataclasses import replace

    base = PRESETS[args.preset]
    over = {k: v for k, v in {
        "max_length": args.max_length, "learning_rate": args.lr, "batch_size": args.batch_size,
        "epochs": args.epochs, "dropout": args.dropout, "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay, "early_stopping": args.early_stopping,
        "mixed_precision": args.mixed_precision}.items() if v is not None}
    return replace(base, **over).check()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command line entry point; returns the exit status (2: a user's mistake, before any training)."""
    args = _parser(prog).parse_args(argv)
    name = prog or "senteval-anatomy finetune"

    try:
        settings = _settings(args)
        reads = parse_reads(args.read)
        seeds = parse_seeds(args.seeds, what="--seeds")
        ks = parse_ks(args.ks, what="--ks") if args.ks is not None else None
        limits = check_limits({"train": args.limit_train, "dev": args.limit_dev, "test": args.limit_test})
        # lazy: start-up time (torch, transformers): finetune --help and bad arguments answer without them
        from .experiment import finetune, prepare

        try:
            plan = prepare(args.model, args.task, glue=args.glue, task_path=args.task_path, reads=reads, out_dir=args.out,
                    from_results=args.from_results, select_on=args.select_on, settings=settings,
                    device=args.device, dev_fraction=args.dev_fraction, split_seed=args.split_seed, limits=limits,
                    keep_model=args.probe_after, n_seeds=len(seeds))
        except (DataError, GlueFormatError, FileNotFoundError) as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
    except ValueError as exc:
        print_error(str(exc).splitlines()[0], name)
        return 2
    outcome = finetune(plan.encoder, args.task, glue=args.glue, task_path=args.task_path, reads=reads, seeds=seeds,
                       out_dir=args.out, from_results=args.from_results, select_on=args.select_on,
                       settings=settings, pooling=args.pooling, device=args.device, dev_fraction=args.dev_fraction,
                       split_seed=args.split_seed, limits=limits, ks=ks, probe_after=args.probe_after,
                       keep_checkpoints=args.keep_checkpoints, progress=not args.no_progress)
    cols = ["task", "readout", "representation", "metric", "n_seeds", "dev_mean", "test_mean", "test_sd"]
    print(outcome.summary[cols].to_string(index=False))
    if not outcome.paired.empty:
        print(outcome.paired[["task", "a", "b", "n_seeds", "mean_diff", "sd_diff", "b_wins", "p_paired_t"]]
              .to_string(index=False))
    print(f"tables: {outcome.out_dir}/finetune_results.csv, finetune_summary.csv, finetune_paired.csv")
    return 0
