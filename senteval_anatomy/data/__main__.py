"""``python -m senteval_anatomy.data`` (console script ``senteval-anatomy-data``).

Sub-commands::

    download [--tasks T ...] [--dest DIR] [--mirror LOC ...] [--source NAME=LOC ...]   fetch SentEval's data
    check [DIR] [--tasks T ...] [--json]                                                 what is there, and is it OK
    sources [--tasks T ...]                                                              the source table
    path [--task-path DIR]                                                               which folder commands use
    make-default [DIR]                                                                   regenerate the demo data
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..vocab import OneLineParser, path_arg, print_error
from .check import check, format_report
from .download import default_download_dir, download, parse_source_overrides
from .folders import ENV_VAR, repo_default_path, resolve_task_path
from .grammar import write_default
from .sources import datasets_for, expand_tasks, groups


def _tasks_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--tasks",
        nargs="+",
        action="extend",  # --tasks A --tasks B means both, as in one --tasks A,B
        metavar="T",
        help=f"tasks to {what}: SentEval names (SST2, SICKEntailment, Depth…), datasets (SICK, STS12…) or groups "
        f"({', '.join(groups())}); commas or spaces; default: all",
    )


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = OneLineParser(
        prog=prog or "python -m senteval_anatomy.data",
        description="Get SentEval's data in SentEval's layout, check a data folder, or regenerate the demo data.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "download",
        help="download SentEval's probing and downstream data",
        description="Download SentEval's data into SentEval's layout (probing/, downstream/) with SentEval's "
        "post-processing done in Python. Verified (sha256 / line counts), resumable, atomic per data set.",
    )
    _tasks_arg(d, "download")
    d.add_argument(
        "--dest", "--task-path", dest="dest", type=path_arg, help=f"data folder to fill (default: {default_download_dir()})"
    )
    d.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="LOC",
        help="extra place holding the files under their source-table names (see `sources`): a URL prefix, a folder "
        "(searched recursively, so a SentEval data/ folder works) or a zip/tar archive; tried before the network; "
        "repeatable",
    )
    d.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=LOC",
        help="override one file: NAME as listed by `sources`, LOC a URL or a local path; repeatable",
    )
    d.add_argument(
        "--mirror-only", action="store_true", help="use only --mirror/--source locations, no network defaults"
    )
    d.add_argument(
        "--force",
        action="store_true",
        help="download again even when the files are present and verify, and replace files that differ from what "
        "the download writes (edited by hand, other data); each replaced file is kept under DEST/.backup/<UTC time>/",
    )
    d.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="place files whose checksum or line count differs from the reference (with a warning)",
    )
    d.add_argument("--keep-downloads", action="store_true", help="keep the raw downloads in DEST/.downloads")
    d.add_argument(
        "--retries", type=int, default=3, help="retries per URL after a dropped connection (default 3)"
    )
    d.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")

    c = sub.add_parser(
        "check",
        help="report which tasks a data folder holds and whether they are complete",
        description="For each task: absent, complete (the standard SentEval sizes), partial (parses, but not the "
        "standard size: a subset or the demo data) or broken (and why). Exit code 1 when a task given with --tasks "
        "is absent or broken, or when any present task is broken.",
    )
    c.add_argument(
        "dir", nargs="?", type=path_arg, help=f"data folder (default: --task-path, ${ENV_VAR}, downloaded, embedded)"
    )
    c.add_argument("--task-path", dest="task_path", type=path_arg, help="same as DIR")
    _tasks_arg(c, "check")
    c.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub.add_parser(
        "sources", help="print where every file comes from (names usable with --source/--mirror)"
    )
    _tasks_arg(s, "list")

    p = sub.add_parser("path", help="print the data folder commands would use, and why")
    p.add_argument("--task-path", dest="task_path", type=path_arg)

    m = sub.add_parser("make-default", help="regenerate the embedded synthetic demo data (deterministic)")
    m.add_argument("dir", nargs="?", type=path_arg, help="output folder (default: the repository's data/default)")
    m.add_argument(
        "--force", action="store_true", help="overwrite files in DIR that differ from the demo data (never needed "
        "for the repository's data/default)"
    )
    return ap


def _cmd_download(args: argparse.Namespace) -> int:
    try:
        results = download(
            args.tasks,
            args.dest,
            mirrors=args.mirror,
            sources=parse_source_overrides(args.source),
            mirror_only=args.mirror_only,
            force=args.force,
            allow_mismatch=args.allow_mismatch,
            keep_downloads=args.keep_downloads,
            retries=args.retries,
            timeout=args.timeout,
            progress=False if args.no_progress else None,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    except ValueError as exc:
        print_error(exc)
        return 2
    except OSError as exc:  # the disk, not the data: a full or read-only destination
        print_error(f"cannot write the data: {exc}; nothing was half-written (files are placed atomically)")
        return 1
    failed = [r.dataset for r in results if r.status == "failed"]
    done = [r.dataset for r in results if r.status != "failed"]
    dest = Path(args.dest).expanduser() if args.dest else default_download_dir()
    print(
        f"{len(done)} data set(s) ready in {dest}"
        + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else "")
    )
    if done and not failed:
        print(
            f"use it with --task-path {dest} (or {ENV_VAR}={dest}); check it with `python -m senteval_anatomy.data check {dest}`"
        )
    return 1 if failed else 0


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        root, where = resolve_task_path(args.dir or args.task_path)
        report = check(root, args.tasks)
    except (FileNotFoundError, ValueError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"data folder: {root} ({where})")
        print(format_report(report))
    return 1 if report.failed else 0


def _cmd_sources(args: argparse.Namespace) -> int:
    try:
        tasks = expand_tasks(args.tasks)
    except ValueError as exc:
        print_error(exc)
        return 2
    for ds in datasets_for(tasks):
        print(f"{ds.name}  (tasks: {', '.join(ds.tasks)})" + (f"  {ds.note}" if ds.note else ""))
        for out in ds.outputs:
            extra = [f"{out.lines} lines" if out.lines else "", f"sha256 {out.sha256}" if out.sha256 else ""]
            if out.sha256 and not out.exact:
                extra.append("reference only: tokenized here")
            print(f"  -> {out.path}  " + "; ".join(e for e in extra if e))
        for i, recipe in enumerate(ds.recipes, 1):
            print(f"  recipe {i}: {recipe.name}")
            for art in recipe.artifacts:
                sha = f"  sha256 {art.sha256}" if art.sha256 else ""
                print(f"    {art.name}{sha}")
                for url in art.urls:
                    print(f"      {url}")
                if not art.urls:
                    print("      (no public URL known: --mirror or --source only)")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    try:
        root, where = resolve_task_path(args.task_path)
    except (FileNotFoundError, ValueError) as exc:
        print_error(exc)
        return 2
    print(root)
    print(where, file=sys.stderr)
    return 0


def _cmd_make_default(args: argparse.Namespace) -> int:
    out = Path(args.dir) if args.dir else repo_default_path()
    if out.exists() and not out.is_dir():
        print_error(f"make-default {out}: not a folder (a file of that name is in the way)")
        return 2
    try:
        files = write_default(out, progress=True, prune=not args.dir, overwrite=not args.dir or args.force)
    except FileExistsError as exc:
        print_error(f"make-default {out}: nothing written: {exc}. Choose an empty folder, or --force to overwrite "
                    "them with the synthetic demo data")
        return 2
    except OSError as exc:
        print_error(f"cannot write the demo data under {out}: {exc}")
        return 1
    print(f"wrote {len(files)} files under {out}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Console entry point; returns the exit code. ``prog``: the name usage lines show (``senteval-anatomy data``)."""
    args = _parser(prog).parse_args(argv)
    handler = {
        "download": _cmd_download,
        "check": _cmd_check,
        "sources": _cmd_sources,
        "path": _cmd_path,
        "make-default": _cmd_make_default,
    }[args.cmd]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
