"""The ``cache`` command (``senteval-anatomy cache {list,clear,verify}``, ``python -m senteval_anatomy.store``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from ..vocab import OneLineParser, default_cache_dir, path_arg
from .feature_store import ENV_VAR, FeatureStore
from .maintenance import matches

__all__ = ["main"]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``senteval-anatomy-cache {list,clear,verify}``: inspect, empty or check the feature cache.

    Returns the exit status: 0, or 1 when ``verify`` found damage that it did not repair. ``prog`` is the program
    name usage lines show (``senteval-anatomy cache`` when the umbrella command dispatches here).
    """
    parser = OneLineParser(
        prog=prog or "senteval-anatomy-cache",
        description="List, clear or verify the senteval_anatomy feature cache "
        f"(default location: ${ENV_VAR} or ~/.cache/senteval_anatomy).",
    )
    parser.add_argument("command", choices=("list", "clear", "verify"))
    parser.add_argument(
        "--cache-dir",
        type=lambda text: Path(path_arg(text)),
        default=None,
        help=f"cache root (default: ${ENV_VAR} or ~/.cache/senteval_anatomy)",
    )
    parser.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="list/clear: only entries older than DAYS"
    )
    parser.add_argument(
        "--model", default=None, metavar="NAME", help="only entries of this model (glob allowed)"
    )
    parser.add_argument("--json", action="store_true", help="list/verify: print the result as JSON")
    parser.add_argument(
        "--full",
        action="store_true",
        help="verify: SHA-256 of every file and a NaN/inf scan of every array (default: the sampled checksums "
        "every open uses)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="verify: remove the damaged entries, so that the next run recomputes them",
    )
    args = parser.parse_args(argv)
    if args.older_than is not None and not args.older_than >= 0:  # also refuses nan
        parser.error(f"--older-than {args.older_than}: give a number of days >= 0, e.g. --older-than 30")
    if args.command != "verify" and (args.full or args.repair):
        parser.error("--full and --repair belong to the verify command")
    if args.command == "verify" and args.older_than is not None:
        parser.error("--older-than belongs to list and clear")
    root = args.cache_dir.expanduser() if args.cache_dir is not None else default_cache_dir()
    for p in (root, root / "features"):
        if p.exists() and not p.is_dir():
            where = "--cache-dir" if args.cache_dir is not None else f"${ENV_VAR} / the default cache"
            parser.error(f"{where}: {p} is not a folder")
    if args.cache_dir is not None and not root.exists():  # a folder the user named: a typo, or not the runs' one
        parser.error(f"--cache-dir {root}: no such folder; give the --cache-dir your runs used (default: "
                     f"${ENV_VAR} or ~/.cache/senteval_anatomy)")
    if not (root / "features").is_dir():  # say so, rather than list an "(empty)" cache or "remove 0 entries"
        print(f"no feature cache in {root} (no features/ folder: nothing was encoded with this cache folder); "
              f"nothing to {args.command}")
        return 0

    store = FeatureStore(args.cache_dir)
    if args.command == "list":
        return _cmd_list(store, args)
    if args.command == "verify":
        return _cmd_verify(store, args)
    report = store.clear(older_than_days=args.older_than, model=args.model)
    n = len(report.removed)
    print(f"removed {n} {'entry' if n == 1 else 'entries'}, freed {_human(report.freed)} from {store.root}")
    for path, why in report.left_alone:
        print(f"left alone: {path}: {why}")
    return 0


def _cmd_list(store: FeatureStore, args: argparse.Namespace) -> int:
    entries = [e for e in store.entries() if matches(e, args.older_than, args.model)]
    if args.json:
        print(json.dumps(entries, indent=1, sort_keys=True, default=str))
        return 0
    print(f"feature cache: {store.root}")
    if not entries:
        print("(empty)")
        return 0
    print(f"{'key':<45} {'model':<28} {'pooling':<7} {'maxlen':>6} {'dtype':<7} {'n':>7} {'size':>10}  created")
    for e in entries:
        k = e["key"]
        inner = e.get("key_fields") if isinstance(e.get("key_fields"), dict) else {}
        if "error" in e:
            print(f"{k:<45} {'NOT AN ENTRY' if e.get('foreign') else 'ERROR'}: {e['error']}")
            continue
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(e.get("created", 0))))
        print(
            f"{k:<45} {str(e.get('model'))[:28]:<28} {str(inner.get('pooling')):<7} "
            f"{str(inner.get('max_length')):>6} {str(inner.get('dtype')):<7} {e.get('n_sentences', '?'):>7} "
            f"{_human(e['size_bytes']):>10}  {created}"
        )
    total = sum(e["size_bytes"] for e in entries)
    print(f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, {_human(total)}")
    return 0


#: What ``verify`` checks, said on its first line: without --full, also what it did not check.
_QUICK_CHECKS = ("quick: manifests (sealed, validated whole), sizes, .npy headers, sampled checksums; NOT checked: "
                 "the bytes between the sampled blocks and NaN/inf in them (every run checks the chunks it reads; "
                 "--full checks every byte)")
_FULL_CHECKS = "full: manifests, sha256 of every file, every array scanned for NaN/inf"


def _cmd_verify(store: FeatureStore, args: argparse.Namespace) -> int:
    checks = store.verify_entries(full=args.full, model=args.model)
    damaged = [c for c in checks if c.status == "damaged"]
    freed = store.repair(damaged) if args.repair and damaged else 0
    if args.json:
        rows = [
            {"key": c.key, "path": str(c.path), "status": c.status, "problem": c.problem, "size_bytes": c.size_bytes}
            for c in checks
        ]
        print(json.dumps({"root": str(store.root), "full": args.full,
                          "checked": _FULL_CHECKS if args.full else _QUICK_CHECKS, "repaired": bool(args.repair and damaged),
                          "entries": rows}, indent=1))
    else:
        print(f"feature cache: {store.root} ({_FULL_CHECKS if args.full else _QUICK_CHECKS})")
        if not checks:
            print("(empty)")
        for c in checks:
            label = {"ok": "ok", "damaged": "DAMAGED", "foreign": "not an entry, left alone"}[c.status]
            print(f"{label:<8} {c.key}" + (f": {c.problem}" if c.problem else ""))
        n_ok = sum(c.status == "ok" for c in checks)
        print(f"{n_ok} ok, {len(damaged)} damaged")
        if damaged and args.repair:
            print(f"removed the {len(damaged)} damaged entries ({_human(freed)}); they are recomputed on next use")
        elif damaged:
            print(
                "repair: `python -m senteval_anatomy.store verify --repair"
                + (f" --cache-dir {args.cache_dir}" if args.cache_dir else "")
                + "` removes the damaged entries; the next run recomputes them"
            )
    return 1 if damaged and not args.repair else 0
