"""Looking after the cache: list its entries, clear them, verify them and repair the damaged ones; the leftovers of
writers that died are removed. Only folders the store wrote are ever removed.
"""

from __future__ import annotations

import fnmatch
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .entry import (
    ENTRY_RE,
    MANIFEST,
    OPENED,
    STALE_TMP_SECONDS,
    TMP_RE,
    TRASH_RE,
    dir_size,
    open_entry,
    pid_alive,
    read_manifest,
    remove_tree,
    views_tag,
)
from .errors import CorruptEntry
from .features import StoredFeatures

__all__ = ["ClearReport", "EntryCheck", "StoreMaintenance", "matches", "mem_size"]


class StoreMaintenance:
    """The maintenance half of :class:`~.feature_store.FeatureStore` (its base class): reads the store's ``root``,
    ``memory``, ``_mem``, ``_memo_key`` and ``_key_of``."""

    root: Path
    memory: bool
    _mem: dict[str, StoredFeatures]

    def entries(self) -> list[dict]:
        """Manifests of all committed entries, each with ``key``, ``path`` and ``size_bytes`` added, oldest first.

        Folders whose manifest is missing or invalid are listed with ``"error"`` set instead of being hidden, and
        folders not named like an entry with ``"foreign": True`` as well, so that ``list`` shows them and ``clear``
        can say that it leaves them alone.
        """
        if self.memory:
            return [dict(f.manifest, key=k, path=None, size_bytes=mem_size(f)) for k, f in self._mem.items()]
        out: list[dict] = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.iterdir()):
            if p.is_symlink() and not p.name.startswith("."):  # listed, never followed: its target is not the store's to count, verify or remove
                out.append({"error": "a symbolic link (the store never makes one)", "foreign": True,
                            "created": p.lstat().st_mtime, "key": p.name, "path": str(p), "size_bytes": 0})
                continue
            if p.name.startswith(".") or not p.is_dir():
                continue
            if not ENTRY_RE.match(p.name):
                manifest = {"error": "not named like a cache entry (<32 hex>-<views>)", "foreign": True}
            else:
                manifest, problem = read_manifest(p)
                if problem is not None:
                    manifest = {"error": problem}
            manifest.setdefault("created", p.stat().st_mtime)
            out.append(dict(manifest, key=p.name, path=str(p), size_bytes=dir_size(p)))
        out.sort(key=lambda e: float(e.get("created", 0)))
        return out

    def clear(self, *, older_than_days: float | None = None, model: str | None = None) -> ClearReport:
        """Remove the store's entries (all, or those created more than ``older_than_days`` ago and/or whose model
        name matches the glob ``model``) and the leftovers of dead writers.

        Only folders the store wrote are removed: named like an entry and holding a present, valid manifest. Anything
        else under ``features/`` (a user's folder, a stray file, an entry whose manifest is damaged) is left alone
        and listed in :attr:`ClearReport.left_alone` with the reason; damaged entries are for ``verify --repair``.
        """
        report = ClearReport()
        if self.memory:
            for k in list(self._mem):
                if matches(self._mem[k].manifest, older_than_days, model):
                    report.freed += mem_size(self._mem.pop(k))
                    report.removed.append(k)
            return report
        for e in self.entries():
            if "error" in e:
                why = (
                    f"not a cache entry ({e['error']})"
                    if e.get("foreign")
                    else f"damaged entry ({e['error']}); remove it with `verify --repair`"
                )
                report.left_alone.append((e["path"], why))
                continue
            if matches(e, older_than_days, model):
                report.freed += remove_tree(Path(e["path"]))
                report.removed.append(e["key"])
                OPENED.pop(self._memo_key(e["key"]), None)
        report.freed += self._clear_leftovers()
        if self.root.is_dir():
            for p in sorted(self.root.iterdir()):
                if p.is_symlink():
                    if p.name.startswith("."):
                        report.left_alone.append((str(p), "not a cache entry (a symbolic link; never followed)"))
                elif not p.is_dir():
                    report.left_alone.append((str(p), "not a cache entry (a file)"))
                elif p.name.startswith(".") and not (TMP_RE.match(p.name) or TRASH_RE.match(p.name)):
                    report.left_alone.append((str(p), "not a cache entry (hidden folder the store did not make)"))
        return report

    def verify_entries(self, *, full: bool = False, model: str | None = None) -> list[EntryCheck]:
        """Check every entry (or those whose model name matches the glob ``model``); one :class:`EntryCheck` each.

        Quick (default): the checks of every open -- manifest, sizes, sampled checksums (full hash of files modified
        after the commit), ``.npy`` headers against the manifest, the sentence count -- plus the entry's name against
        the hash of its key fields. ``full``: SHA-256 of every file against the manifest and a scan of every array
        for NaN/inf, i.e. every byte of the cache. Folders that are not entries are reported as ``foreign``.
        """
        if self.memory:
            return [EntryCheck(k, None, "ok", None, mem_size(f)) for k, f in self._mem.items()]
        checks: list[EntryCheck] = []
        for e in self.entries():
            path = Path(e["path"])
            if e.get("foreign"):
                checks.append(EntryCheck(e["key"], path, "foreign", e["error"], e["size_bytes"]))
                continue
            if "error" not in e and model is not None and not matches(e, None, model):
                continue
            problem = e.get("error")
            if problem is None:
                try:
                    open_entry(path, verify="full" if full else "quick", expect=None, sentences=None)
                    # The manifest's key_fields also record views and model name, which are not part of the key.
                    key_fields = {k: v for k, v in e["key_fields"].items() if k not in ("views", "model")}
                    if self._key_of(key_fields)[:32] != e["key"].split("-", 1)[0]:
                        raise CorruptEntry(f"{MANIFEST}: key fields do not hash to the folder's name")
                    if views_tag(e.get("views") or ()) != e["key"].split("-", 1)[1]:
                        raise CorruptEntry(f"{MANIFEST}: views {e.get('views')} do not match the folder's name")
                except CorruptEntry as exc:
                    problem = str(exc)
            status = "ok" if problem is None else "damaged"
            checks.append(EntryCheck(e["key"], path, status, problem, e["size_bytes"]))
        return checks

    def repair(self, checks: Sequence[EntryCheck]) -> int:
        """Remove the damaged entries among ``checks`` (from :meth:`verify_entries`); they are recomputed on next use.

        Foreign folders are never touched. Returns the bytes freed.
        """
        freed = 0
        for c in checks:
            if c.status == "damaged" and c.path is not None and ENTRY_RE.match(c.path.name):
                freed += remove_tree(c.path)
                OPENED.pop(self._memo_key(c.key), None)
        return freed

    def _clear_leftovers(self) -> int:
        """Remove temp dirs of writers that died (or are more than a day old) and abandoned trash dirs.

        Only hidden folders named exactly as the store names them are considered.
        """
        if not self.root.is_dir():
            return 0
        freed = 0
        host = socket.gethostname()
        now = time.time()
        for p in self.root.iterdir():
            if p.is_symlink() or not p.is_dir():
                continue
            if TRASH_RE.match(p.name):
                freed += dir_size(p)
                shutil.rmtree(p, ignore_errors=True)
                continue
            m = TMP_RE.match(p.name)
            if m is None:
                continue
            stale = now - p.stat().st_mtime > STALE_TMP_SECONDS
            if not stale and m["host"] == host:
                stale = not pid_alive(int(m["pid"]))  # only pids of this host can be checked
            if stale:
                freed += dir_size(p)
                shutil.rmtree(p, ignore_errors=True)
        return freed


@dataclass
class ClearReport:
    """What :meth:`FeatureStore.clear` did: bytes freed, entry keys removed, and paths left alone with the reason."""

    freed: int = 0
    removed: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class EntryCheck:
    """The verdict of :meth:`FeatureStore.verify_entries` on one folder: ``ok``, ``damaged`` (``problem`` says which file and
    what) or ``foreign`` (not a store entry; never removed)."""

    key: str
    path: Path | None
    status: str
    problem: str | None
    size_bytes: int


def mem_size(f: StoredFeatures) -> int:
    return sum(a.nbytes for a in (f.heads, f.layers) if a is not None)


def matches(entry: dict, older_than_days: float | None, model: str | None) -> bool:
    if older_than_days is not None:
        age_days = (time.time() - float(entry.get("created", 0))) / 86400.0
        if age_days < older_than_days:
            return False
    if model is not None:
        name = str(entry.get("model") or "")
        if not fnmatch.fnmatchcase(name, model):
            return False
    return True
