"""Fine-tune the bundled MiniLM on real SentEval MRPC (or SST2): last vs best-layer vs topk, over seeds, on this machine.

What it measures, side by side in one run: the pretrained sweep that chooses best-layer and top-k on dev (seconds),
then per readout the time per epoch, the process's peak RSS, dev and test scores (mean and s.d. over seeds) and the
paired test differences between readouts over the same seeds. Everything goes through the public
``senteval_anatomy.finetune.finetune`` (the function behind ``senteval-anatomy finetune``).

    python benchmarks/finetune_minilm.py                                   # MRPC subset, 3 seeds, paper preset
    python benchmarks/finetune_minilm.py --task SST2 --limit-train 2000
    python benchmarks/finetune_minilm.py --limit-train 0                   # the full task (slow on CPU)

On a CPU the full tasks are slow (MRPC: 3,668 training pairs per epoch after the dev slice); ``--limit-train`` takes a
fixed seeded subset of train (recorded in every row and in the key). The selection sweep always sees the full task.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _default_data() -> Path:
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "senteval-data").is_dir():
            return base / "shared" / "senteval-data"
    return REPO.parent / "shared" / "senteval-data"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=_default_data())
    p.add_argument("--task", default="MRPC", choices=["MRPC", "SST2"])
    p.add_argument("--reads", default="last,best-layer,topk")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--limit-train", type=int, default=400, help="0 = full train")
    p.add_argument("--limit-dev", type=int, default=100)
    p.add_argument("--limit-test", type=int, default=300)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--ks", default="1,4,12", help="k values tried when topk chooses k on dev")
    p.add_argument("--out", type=Path, default=Path("benchmark-finetune"))
    args = p.parse_args()
    if not (args.data / "downstream").is_dir():
        print(f"no SentEval data at {args.data}; give --data", file=sys.stderr)
        return 2
    from dataclasses import replace

    import torch

    from senteval_anatomy.finetune.experiment import finetune
    from senteval_anatomy.finetune.settings import PAPER_FINETUNE

    settings = replace(PAPER_FINETUNE, epochs=args.epochs)
    limits = {"train": args.limit_train or None, "dev": args.limit_dev or None, "test": args.limit_test or None}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; task {args.task}; subset {limits}; settings "
          f"{settings}")
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = finetune("minilm", args.task, task_path=str(args.data), reads=args.reads.split(","),
                       seeds=[int(s) for s in args.seeds.split(",")], out_dir=args.out, settings=settings,
                       limits=limits, ks=[int(k) for k in args.ks.split(",")], device="cpu", progress=False)
    total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    rows = outcome.rows
    train = rows["train_seconds"].sum()
    rows["cpu_s_per_epoch"] = rows["train_cpu_seconds"] / rows["epochs_run"]
    cols = ["readout", "representation", "seed", "devacc", "acc", "f1", "best_epoch", "seconds_per_epoch",
            "cpu_s_per_epoch", "peak_rss_mb"]
    print(rows[cols].to_string(index=False))
    print(outcome.summary[["readout", "representation", "n_seeds", "dev_mean", "dev_sd", "test_mean", "test_sd",
                           "seconds_per_epoch"]].to_string(index=False))
    print(outcome.paired[["a", "b", "n_seeds", "mean_diff", "sd_diff", "b_wins", "p_paired_t"]].to_string(index=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CPU time of the process {cpu_total:.0f} s (training {rows['train_cpu_seconds'].sum():.0f} s)")
    print(f"wall {total:.0f} s: training {train:.0f} s, selection sweep + top-k curve + evaluation {total - train:.0f}"
          f" s; peak RSS of the process {peak:.0f} MiB; train/dev/test sizes {rows['n_train'].iloc[0]}/"
          f"{rows['n_dev'].iloc[0]}/{rows['n_test'].iloc[0]}; dev = {rows['dev_source'].iloc[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
