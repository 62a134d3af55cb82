"""What the trustworthy extras cost: a plain sweep against ``--controls --seeds N``, encoding included.

Issue 17's budget: ``--controls --seeds 5`` at most 1.15x a plain sweep of the same tasks, encoding included. Each
run starts from an empty feature cache (so it encodes, as a first run does) and runs the one sweep:

* ``plain``: the sweep's batched probes of every head (one stacked run per task and view);
* ``--controls``, ``--seeds N``, ``--controls --seeds N``: the same sweep with findings options; the controls and
  the extra seeds are variants (slots) of the same stacked runs, and every probe trains once.

    python benchmarks/findings_cost.py                        # Tense of ../shared/senteval-data, MiniLM heads
    python benchmarks/findings_cost.py --task-path demo --tasks Tense,Length --seeds 5 --threads 1

``--task-path demo`` uses the embedded demo data. Prints a markdown table (seconds, the minimum over ``--repeats``
interleaved rounds, and the ratio to plain, measured side by side in one process) and the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "senteval-data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="Tense", help="comma-separated tasks (default Tense)")
    ap.add_argument("--task-path", default=str(DEFAULT_DATA), help="SentEval data root, or 'demo'")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--views", default="heads")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (encoding and probes)")
    ap.add_argument("--device", default="cpu", help="where the model and the probes run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds over all runs, interleaved (the minimum per run is reported: robust to load)")
    args = ap.parse_args(argv)
    if args.task_path == "demo":
        from senteval_anatomy.data import resolve_task_path

        args.task_path = str(resolve_task_path(None)[0])
    if not Path(args.task_path).is_dir():
        print(f"no data at {args.task_path}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    from senteval_anatomy.encoders.loading import load_encoder
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep
    from senteval_anatomy.vocab import preset_params

    enc = load_encoder(args.model, device=args.device)
    tasks = args.tasks.split(",")
    params = preset_params("paper", device=args.device)
    runs = {"plain sweep": {},
            "--controls": {"controls": True},
            f"--seeds {args.seeds}": {"seeds": args.seeds},
            f"--controls --seeds {args.seeds}": {"controls": True, "seeds": args.seeds}}
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):  # interleaved rounds: a load spike hits one round, not one run
        for name, findings in runs.items():
            with tempfile.TemporaryDirectory() as tmp:  # an empty cache: every run encodes
                t0 = time.perf_counter()
                sweep(enc, tasks, task_path=args.task_path, views=args.views, params=params,
                      store=FeatureStore(tmp), progress=False, findings=findings)
                best[name] = min(best[name], time.perf_counter() - t0)
    plain = best["plain sweep"]
    print(f"{args.model}, tasks {args.tasks}, views {args.views}, {args.threads} thread(s), device {args.device}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| run (encoding included) | seconds | x plain |\n|---|---:|---:|")
    for name, sec in best.items():
        print(f"| {name} | {sec:.1f} | {sec / plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
