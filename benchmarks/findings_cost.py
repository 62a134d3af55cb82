"""What the trustworthy extras cost: a plain sweep against ``--controls --seeds N`` on the same features.

Every run reads the same stored features (the store is warmed first and its time is reported apart), so the rows
compare the probe training that each option adds:

* ``plain``: the sweep's batched probes of every head (one stacked run per task and view);
* ``controls``: plus the control task (one more stacked run on the same embeddings);
* ``seeds N``: plus N - 1 probe seeds;
* ``controls + seeds N``: both (the issue's ``--controls --seeds 5``).

    python benchmarks/findings_cost.py                        # Tense of ../shared/senteval-data, MiniLM heads
    python benchmarks/findings_cost.py --tasks Tense,Length --seeds 5 --threads 1

Prints a markdown table (seconds, the minimum over ``--repeats`` interleaved rounds; ratio to plain) and the machine
it ran on.
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
    ap.add_argument("--task-path", default=str(DEFAULT_DATA), help="SentEval data root")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--views", default="heads")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (encoding and probes)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds over all runs, interleaved (the minimum per run is reported: robust to load)")
    args = ap.parse_args(argv)
    if not Path(args.task_path).is_dir():
        print(f"no data at {args.task_path}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    from senteval_anatomy.encoders.loading import load_encoder
    from senteval_anatomy.findings import findings_sweep
    from senteval_anatomy.store import FeatureStore
    from senteval_anatomy.sweeping import sweep

    enc = load_encoder(args.model, device="cpu")
    tasks = args.tasks.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SENTEVAL_ANATOMY_CACHE"] = tmp
        store = FeatureStore(tmp)
        common = dict(task_path=args.task_path, views=args.views, store=store, progress=False)
        t0 = time.perf_counter()
        sweep(enc, tasks, **common)  # encodes once into the store
        rows.append(("first sweep (encode + probes)", time.perf_counter() - t0))
        runs = {"plain sweep (stored features)": lambda: sweep(enc, tasks, **common)}
        for name, kw in (("findings: nothing extra", dict(controls=False)),
                         ("findings: --controls", dict(controls=True)),
                         (f"findings: --seeds {args.seeds}", dict(controls=False, seeds=args.seeds)),
                         (f"findings: --controls --seeds {args.seeds}", dict(controls=True, seeds=args.seeds))):
            runs[name] = lambda kw=kw: findings_sweep(enc, tasks, **common, **kw)
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):  # interleaved rounds: a load spike hits one round, not one run
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        rows += list(best.items())
        plain = best["plain sweep (stored features)"]
    print(f"{args.model}, tasks {args.tasks}, views {args.views}, {args.threads} thread(s); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| run | seconds | x plain |\n|---|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {sec / plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
