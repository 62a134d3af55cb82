"""Prove that a refactor changed no number: run the same commands on two git revisions, compare tables row by row.

Why: issue 17 (one pipeline) rewrote the sweep loop, findings, top-k and the CLI pipeline; its promise is that the
same commands give the same numbers, new top-k rows and columns aside. This script checks out each revision in a
temporary ``git worktree``, runs every command of the parity list there (``python -m senteval_anatomy ...`` with
that worktree first on ``PYTHONPATH``, a fresh feature cache and output folder per revision), then compares
``results.csv`` of each command on the key columns and the score columns. It prints the wall time of every command on
both revisions side by side (the same machine, one run) and exits 1 on any difference.

Usage::

    python benchmarks/redesign_parity.py --before 3fc044a --after HEAD [--only main,downstream] [--keep DIR]
    python benchmarks/redesign_parity.py --compare BEFORE_OUT AFTER_OUT     # two folders already written

Commands (named so that ``--only`` can pick them):

* ``main``: the README's main job (``probing`` on the embedded default);
* ``downstream``: ``downstream --tasks TREC,MRPC,SICKRelatedness``;
* ``findings``: ``probing --tasks Length,Tense --controls --seeds 2 --untrained-baseline --mdl --ablate``;
* ``ray``: ``probing --tasks Length,Tense --backend ray`` (skipped when Ray is not installed).

Rows are matched on (model, task, view, layer, head, pooling, seed) and compared on ``devacc``, ``acc``, ``ndev``,
``ntest`` and every findings column both tables have. Rows and columns only the newer table has (top-k, new
controls) are listed, not failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "main": ["probing"],
    "downstream": ["downstream", "--tasks", "TREC,MRPC,SICKRelatedness"],
    "findings": ["probing", "--tasks", "Length,Tense", "--controls", "--seeds", "2",
                 "--untrained-baseline", "--mdl", "--ablate"],
    "ray": ["probing", "--tasks", "Length,Tense", "--backend", "ray"],
}
MATCH = ["model", "task", "view", "layer", "head", "pooling", "seed"]
SCORES = ["devacc", "acc", "ndev", "ntest"]


@contextlib.contextmanager
def revision_tree(rev: str | None, work: Path) -> Iterator[Path | None]:
    """A temporary ``git worktree`` of ``rev`` under ``work`` (removed afterwards); ``None``: no tree."""
    if rev is None:
        yield None
        return
    tree = work / f"tree-{rev.replace('/', '_')}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=True)  # a folder removed by hand earlier
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def run_rev(rev: str, names: list[str], work: Path) -> dict[str, tuple[float, Path]]:
    """Run each named command on revision ``rev`` in its own worktree; return wall time and output folder."""
    out: dict[str, tuple[float, Path]] = {}
    with revision_tree(rev, work) as tree:
        for name in names:
            dest = work / f"out-{rev.replace('/', '_')}-{name}"
            env = dict(os.environ, PYTHONPATH=str(tree), SENTEVAL_ANATOMY_CACHE=str(work / f"cache-{rev}-{name}"))
            cmd = [sys.executable, "-m", "senteval_anatomy", *COMMANDS[name], "--out", str(dest), "--quiet"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{rev} {name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
            out[name] = (wall, dest)
    return out


def compare(before: Path, after: Path) -> list[str]:
    """Differences between two output folders' tables on the rows both have; new rows/columns are not differences.

    ``results.csv`` against ``results.csv``; and where the older folder also has ``findings.csv`` (before issue 17,
    the findings were a second table), its findings columns against the newer ``results.csv``, which carries them.
    """
    problems = _compare_tables(pd.read_csv(before / "results.csv"), pd.read_csv(after / "results.csv"))
    if (before / "findings.csv").is_file():
        problems += [f"findings.csv: {p}" for p in _compare_tables(pd.read_csv(before / "findings.csv"),
                                                                   pd.read_csv(after / "results.csv"))]
    return problems


def _compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    keys = [c for c in MATCH if c in a.columns and c in b.columns]
    shared = [c for c in a.columns if c in b.columns and c not in keys and c not in {"setting", "data_path"}
              and (c in SCORES or pd.api.types.is_numeric_dtype(a[c]))]
    m = a.merge(b, on=keys, how="left", suffixes=("_before", "_after"), indicator=True)
    problems = []
    missing = m[m["_merge"] != "both"]
    if len(missing):
        problems.append(f"{len(missing)} rows of before are missing after, e.g. {missing[keys].head(3).to_dict('records')}")
    both = m[m["_merge"] == "both"]
    for col in shared:
        x = pd.to_numeric(both[f"{col}_before"], errors="coerce").to_numpy(float)
        y = pd.to_numeric(both[f"{col}_after"], errors="coerce").to_numpy(float)
        bad = ~((np.isnan(x) & np.isnan(y)) | np.isclose(x, y, rtol=0, atol=1e-9))
        if bad.any():
            problems.append(f"column {col}: {int(bad.sum())} of {len(x)} rows differ")
    extra = len(b) - (len(both))
    if extra:
        print(f"    ({extra} new rows after; new columns: {sorted(set(b.columns) - set(a.columns))})")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="3fc044a")
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--only", default=",".join(COMMANDS), help="comma-separated: " + ",".join(COMMANDS))
    ap.add_argument("--keep", type=Path, help="keep outputs in this folder (default: a temporary one)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE_DIR", "AFTER_DIR"),
                    help="only compare two output folders already written (no runs)")
    args = ap.parse_args(argv)
    if args.compare:
        problems = compare(*args.compare)
        for p in problems:
            print(f"    {p}")
        print("same numbers" if not problems else "DIFFERENT")
        return 1 if problems else 0
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(COMMANDS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; choose from {sorted(COMMANDS)}")
    if "ray" in names and shutil.which("ray") is None:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray not installed: skipping the ray command")
            names.remove("ray")
    work = args.keep or Path(tempfile.mkdtemp(prefix="parity-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = {}
    for rev in dict.fromkeys((args.before, args.after)):  # one run when both name the same revision
        runs[rev] = run_rev(rev, names, work)
    failed = False
    print(f"{'command':<12}{'before s':>10}{'after s':>10}{'ratio':>8}  verdict")
    for name in names:
        (tb, db), (ta, da) = runs[args.before][name], runs[args.after][name]
        problems = compare(db, da)
        failed |= bool(problems)
        print(f"{name:<12}{tb:>10.1f}{ta:>10.1f}{ta / tb:>8.2f}  {'same numbers' if not problems else 'DIFFERENT'}")
        for p in problems:
            print(f"    {p}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
