"""What the main job costs, before and after a change, measured side by side in one run.

Why: issue 17 asked to measure the main job's time before and after the redesign (one pipeline; the top-k view on
by default), and what the top-k view adds. Timings taken in two sessions, or under another developer's load, cannot
be compared; this script runs every command in interleaved rounds on the same machine, each from an empty feature
cache and output folder (so every run encodes, as a first run does), and prints per command the minimum wall time,
the child process's CPU time (user + system: little affected by other processes on a shared machine), and each
round's ratio to the first command.

Commands (the README's main job, ``senteval-anatomy probing`` on the embedded default):

* ``before``: ``probing`` at the revision ``--before`` (default 3fc044a, the last commit before issue 17), in a
  temporary ``git worktree`` with that tree first on ``PYTHONPATH``;
* ``after``: ``probing`` at the working tree (top-k view on, its default since issue 17);
* ``after --no-topk``: the same without the top-k view;
* with ``--findings``: also ``probing --controls --seeds 5`` (and ``--no-topk``): the findings' cost at the command
  level, all tasks, both views.

    python benchmarks/main_job_time.py                       # 2 rounds, the full main job (~6 min per round)
    python benchmarks/main_job_time.py --tasks Length,Tense --rounds 3 --findings

Prints a markdown table and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redesign_parity import revision_tree

ROOT = Path(__file__).resolve().parents[1]


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(tree: Path, args: list[str], work: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m senteval_anatomy ARGS`` run in ``tree`` with an empty cache and output."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree), SENTEVAL_ANATOMY_CACHE=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "senteval_anatomy", *args, "--out", str(Path(tmp) / "out"), "--quiet"]
        cpu0, t0 = _child_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} in {tree}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="3fc044a", help="git revision to compare with (default 3fc044a)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--tasks", help="comma-separated probing tasks (default: the main job's, all 10)")
    ap.add_argument("--findings", action="store_true", help="also time --controls --seeds 5 (with and without top-k)")
    ap.add_argument("--no-before", action="store_true", help="only the working tree's commands")
    args = ap.parse_args(argv)
    base = ["probing"] + (["--tasks", args.tasks] if args.tasks else [])
    commands: dict[str, tuple[str, list[str]]] = {}
    if not args.no_before:
        commands[f"before ({args.before}): probing"] = ("before", base)
    commands["after: probing"] = ("after", base)
    commands["after: probing --no-topk"] = ("after", [*base, "--no-topk"])
    if args.findings:
        commands["after: probing --controls --seeds 5"] = ("after", [*base, "--controls", "--seeds", "5"])
        commands["after: probing --no-topk --controls --seeds 5"] = ("after", [*base, "--no-topk", "--controls",
                                                                              "--seeds", "5"])
    work = Path(tempfile.mkdtemp(prefix="mainjob-"))
    wall: dict[str, list[float]] = {c: [] for c in commands}
    cpu: dict[str, list[float]] = {c: [] for c in commands}
    load_before = os.getloadavg()
    with revision_tree(None if args.no_before else args.before, work) as before_tree:
        trees = {"before": before_tree, "after": ROOT}
        for r in range(args.rounds):  # interleaved: a load spike hits one round, not one command
            for name, (which, cmd) in commands.items():
                w, c = run_once(trees[which], cmd, work)
                wall[name].append(w)
                cpu[name].append(c)
                print(f"round {r + 1}: {name}: {w:.1f} s wall, {c:.1f} s CPU", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    ref = next(iter(commands))
    print(f"main job{' (tasks ' + args.tasks + ')' if args.tasks else ''}, {args.rounds} interleaved rounds; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}")
    print("| command | min wall s | min CPU s | wall x first, per round | median | CPU x first, median |\n"
          "|---|---:|---:|---|---:|---:|")
    for name in commands:
        rw = [a / b for a, b in zip(wall[name], wall[ref], strict=True)]
        rc = [a / b for a, b in zip(cpu[name], cpu[ref], strict=True)]
        print(f"| {name} | {min(wall[name]):.1f} | {min(cpu[name]):.1f} | {', '.join(f'{x:.2f}' for x in rw)} | "
              f"{statistics.median(rw):.2f} | {statistics.median(rc):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
