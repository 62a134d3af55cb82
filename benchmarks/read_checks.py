"""What does checking every byte as it is read cost a sweep? Target: under 3 % (issue 18).

The feature store records a CRC-32 per chunk (about 1 MiB of rows) of every cached array; the sweep's batcher reads
its rows through :meth:`senteval_anatomy.store.StoredFeatures.read`, which checks each chunk once, on its first read
in the process (CRC-32 and a NaN/inf test). This script times the same sweep on a warm cache with the checks on (as
shipped) and with them off (the check replaced by a no-op, in this script only), alternating the two ``--repeats``
times so that a change of load on a shared machine hits both alike, and prints the medians side by side, their
ratio, and the time spent inside the checks themselves.

Usage::

    python benchmarks/read_checks.py                          # MiniLM, Tense of the bundled data, paper settings
    python benchmarks/read_checks.py --tasks Length,Tense --repeats 5 --task-path ../shared/senteval-data
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import senteval_anatomy.store as store_mod
from senteval_anatomy.encoders.loading import load_encoder
from senteval_anatomy.store import FeatureStore
from senteval_anatomy.sweeping import sweep

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tasks", default="Tense")
    ap.add_argument("--task-path", default=str(REPO / "data" / "default"))
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    enc = load_encoder(args.model, device="cpu")
    real_check = store_mod.StoredFeatures._check_chunks
    spent = [0.0]

    def timed_check(self, view, arr, idx):  # the shipped check, timed
        t = time.perf_counter()
        try:
            return real_check(self, view, arr, idx)
        finally:
            spent[0] += time.perf_counter() - t

    def no_check(self, view, arr, idx):
        return None

    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp) / "cache")
        kw = dict(task_path=args.task_path, preset=args.preset, store=store, progress=False)
        sweep(enc, args.tasks, **kw)  # warm the cache: both modes read the same entries
        times: dict[str, list[float]] = {"checks on": [], "checks off": []}
        in_checks: list[float] = []
        modes = [("checks on", timed_check), ("checks off", no_check)]
        for i in range(args.repeats):
            for mode, fn in modes if i % 2 == 0 else modes[::-1]:  # alternate which goes first
                store_mod._MEMO.clear()  # a new process: every chunk is checked again
                store_mod.StoredFeatures._check_chunks = fn
                spent[0] = 0.0
                t = time.perf_counter()
                sweep(enc, args.tasks, **kw)
                times[mode].append(time.perf_counter() - t)
                if mode == "checks on":
                    in_checks.append(spent[0])
        store_mod.StoredFeatures._check_chunks = real_check
    on, off = statistics.median(times["checks on"]), statistics.median(times["checks off"])
    print(f"model {enc.name}, tasks {args.tasks}, preset {args.preset}, {args.repeats} alternating repeats, "
          f"{args.threads} thread(s)")
    print(f"{'sweep, warm cache':<28} {'checks on':>10} {'checks off':>11}")
    print(f"{'median seconds':<28} {on:>10.2f} {off:>11.2f}")
    print(f"ratio on/off: {on / off:.3f}  ({(on / off - 1) * 100:+.1f} %; target < +3 %)")
    print(f"time inside the checks: {statistics.median(in_checks):.3f} s per sweep "
          f"({statistics.median(in_checks) / on * 100:.2f} % of the sweep)")


if __name__ == "__main__":
    main()
