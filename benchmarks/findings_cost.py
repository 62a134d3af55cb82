"""What the trustworthy extras cost: a plain sweep against ``--controls --seeds N``, encoding included.

Issue 17's budget: ``--controls --seeds 5`` at most 1.15x a plain sweep of the same tasks, encoding included. Each
run starts from an empty feature cache (so it encodes, as a first run does) and runs the one sweep:

* ``plain``: the sweep's batched probes of every head (one stacked run per task and view);
* ``--controls``, ``--seeds N``, ``--controls --seeds N``: the same sweep with findings options; the controls and
  the extra seeds are variants (slots) of the same stacked runs, and every probe trains once.

    python benchmarks/findings_cost.py                        # Tense of ../shared/senteval-data, MiniLM heads
    python benchmarks/findings_cost.py --task-path demo --tasks Tense,Length --seeds 5 --repeats 3

``--task-path demo`` uses the embedded demo data. Prints a markdown table (seconds, the minimum over ``--repeats``
interleaved rounds; the ratio to plain of each round, measured side by side in one process, and their median) and
the machine it ran on with its load average before and after (the machine may be shared: a load spike hits one
round, and the median ratio of the rounds is robust to it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the process (encoding; probe chunks train in parallel, one thread each, "
                         "as many as these threads hold); default: torch's own (one per core)")
    ap.add_argument("--device", default="cpu", help="where the model and the probes run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds over all runs, interleaved (the minimum per run is reported: robust to load)")
    ap.add_argument("--only-both", action="store_true",
                    help="time only the plain sweep and --controls --seeds N (half the time, the budget's ratio)")
    args = ap.parse_args(argv)
    if args.task_path == "demo":
        from senteval_anatomy.data import resolve_task_path

        args.task_path = str(resolve_task_path(None)[0])
    if not Path(args.task_path).is_dir():
        print(f"no data at {args.task_path}", file=sys.stderr)
        return 2

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
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
    if args.only_both:
        runs = {k: v for k, v in runs.items() if k in ("plain sweep", f"--controls --seeds {args.seeds}")}
    times: dict[str, list[float]] = {name: [] for name in runs}
    load_before = os.getloadavg()
    for _ in range(args.repeats):  # interleaved rounds: a load spike hits one round, not one run
        for name, findings in runs.items():
            with tempfile.TemporaryDirectory() as tmp:  # an empty cache: every run encodes
                t0 = time.perf_counter()
                sweep(enc, tasks, task_path=args.task_path, views=args.views, params=params,
                      store=FeatureStore(tmp), progress=False, findings=findings)
                times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()
    plain = times["plain sweep"]
    print(f"{args.model}, tasks {args.tasks}, views {args.views}, {args.threads} thread(s), device {args.device}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average (1/5/15 min) "
          f"before {'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}")
    print("| run (encoding included) | min seconds | x plain, per round | x plain, median |\n|---|---:|---|---:|")
    for name, secs in times.items():
        ratios = [s / p for s, p in zip(secs, plain, strict=True)]
        print(f"| {name} | {min(secs):.1f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
              f"{statistics.median(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
