"""Fetch SentEval's data into SentEval's layout: resumable, verified, atomic, with a clear error per failure.

How one dataset is obtained (see :mod:`.sources` for the table):

1. If every output is already in place and verifies (sha256 where known, else the expected line count), it is
   skipped, unless ``force``.
2. Otherwise each recipe is tried in order, first using only local sources (``--source`` overrides, ``--mirror``
   folders/archives/URLs, the download cache), then, unless ``mirror_only``, the recipe's own URLs as well. The
   local pass comes first so that a mirror with a prepared copy wins over a slow dead host.
3. Every artifact is downloaded to ``<dest>/.downloads/<name>.part`` with HTTP Range resume and retries; a complete
   file is checked against its sha256 (when known) and only then renamed into the cache.
4. The recipe's build step writes the outputs into a private staging folder inside ``dest``. The outputs are
   verified, and only if all of them pass are they moved into place with ``os.replace``. A failure at any point
   leaves ``dest`` as it was (partial downloads are kept in the cache for the next run's resume).
5. A file already in ``dest`` that differs from what the download would write (edited by hand, or other data) is
   never overwritten silently: the data set is not placed and the message names the file. With ``force`` it is
   replaced, and the current file is kept under ``dest/.backup/<UTC time>/`` (the path is reported).

Nothing here shells out: no curl, unzip, sed, cabextract or Moses checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..vocab import atomic_write, default_cache_dir
from .sources import (
    Artifact,
    Dataset,
    Output,
    Recipe,
    archive_names,
    datasets_for,
    expand_tasks,
    is_archive,
    read_archive_member,
)

USER_AGENT = "senteval_anatomy-data (python urllib)"
MANIFEST_NAME = ".senteval_anatomy_download.json"
BACKUP_DIR = ".backup"
"""Where ``download --force`` keeps the files it replaces: ``<dest>/.backup/<UTC time>/<path in dest>``."""
CHUNK = 1 << 16


class FetchError(Exception):
    """One location could not deliver one artifact; the message says why."""


class _WouldOverwrite(Exception):
    """Files in the destination differ from what the download would write, and ``force`` was not given."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths


@dataclass
class DatasetResult:
    """Outcome of one dataset: ``placed``, ``skipped`` (already present and verified) or ``failed``."""

    dataset: str
    tasks: tuple[str, ...]
    status: str
    recipe: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    backups: list[Path] = field(default_factory=list)
    """Files that ``force`` replaced, as kept under ``<dest>/.backup/``."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def count_lines(path: Path) -> int:
    """Lines of a file: newlines, plus one for a last line without a newline (so that a file saved without the
    final newline still matches the expected counts of the source table, which are ``wc -l`` of complete files)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def default_download_dir() -> Path:
    """``data/`` under the package's cache root (:func:`senteval_anatomy.vocab.default_cache_dir`), i.e.
    ``~/.cache/senteval_anatomy/data`` by default."""
    return default_cache_dir() / "data"


def _is_url(loc: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", loc))


def _cache_key(name: str) -> str:
    return name.replace("/", "__")


class Fetcher:
    """Downloads artifacts into a cache folder, one location at a time.

    ``retries`` counts extra attempts after a dropped connection, a timeout or a 5xx answer; each retry resumes from
    the bytes already on disk with an HTTP ``Range`` request (a server that ignores it is read again from the start).
    A 4xx answer, an unknown host or a refused connection is final for that location, because retrying cannot help.
    """

    def __init__(
        self,
        cache_dir: Path,
        retries: int = 3,
        timeout: float = 30.0,
        backoff: float = 1.0,
        progress: bool | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.progress = sys.stderr.isatty() if progress is None else progress

    # -- public -----------------------------------------------------------------------------------------------

    def cached(self, artifact: Artifact) -> Path | None:
        """The completed cache file of ``artifact`` if an earlier run left one (it was verified then)."""
        path = self.cache_dir / _cache_key(artifact.name)
        if path.is_file() and (artifact.sha256 is None or sha256_file(path) == artifact.sha256):
            return path
        return None

    def fetch(self, artifact: Artifact, location: str) -> Path:
        """Bring ``artifact`` from ``location`` (URL, local file, or ``archive!member``) into the cache.

        Returns the cache path. Raises :class:`FetchError` with the reason; a checksum mismatch deletes what was
        fetched, an interrupted download keeps its ``.part`` file for a later resume.
        """
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.cache_dir / _cache_key(artifact.name)
        part = target.with_name(target.name + ".part")
        if _is_url(location):
            self._http(location, part, artifact.name)
        elif "!" in location and is_archive(Path(location.split("!", 1)[0])):
            archive, member = location.split("!", 1)
            try:
                part.write_bytes(read_archive_member(Path(archive), member))
            except (OSError, KeyError) as exc:
                raise FetchError(f"cannot read {member} from {archive}: {exc}") from exc
        else:
            src = Path(location).expanduser()
            if not src.is_file():
                raise FetchError(f"{src} is not a file")
            shutil.copyfile(src, part)
        if artifact.sha256 is not None:
            got = sha256_file(part)
            if got != artifact.sha256:
                part.unlink(missing_ok=True)
                _meta(part).unlink(missing_ok=True)
                raise FetchError(
                    f"sha256 mismatch: expected {artifact.sha256}, got {got} (the file was discarded)"
                )
        os.replace(part, target)
        _meta(part).unlink(missing_ok=True)
        return target

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _http(self, url: str, part: Path, desc: str) -> None:
        meta = _meta(part)
        failures = 0
        while True:
            try:
                self._http_once(url, part, meta, desc)
                return
            except FetchError:
                raise
            except urllib.error.HTTPError as exc:
                if exc.code == 416:
                    # The server cannot serve the rest of what we hold: start again from zero.
                    part.unlink(missing_ok=True)
                    reason = "HTTP 416 on resume"
                elif exc.code in (408, 425, 429) or exc.code >= 500:
                    reason = f"HTTP {exc.code} {exc.reason}"
                else:
                    raise FetchError(f"HTTP {exc.code} {exc.reason}") from exc
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (socket.gaierror, ConnectionRefusedError)):
                    raise FetchError(f"cannot connect: {exc.reason}") from exc
                reason = f"{exc.reason}"
            except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failures += 1
            if failures > self.retries:
                held = part.stat().st_size if part.exists() else 0
                keep = f"; {held} bytes kept in {part} for the next run to resume" if held else ""
                raise FetchError(f"gave up after {failures} attempts ({reason}){keep}")
            time.sleep(self.backoff * 2 ** (failures - 1))

    def _http_once(self, url: str, part: Path, meta: Path, desc: str) -> None:
        offset = 0
        if part.exists() and meta.exists() and meta.read_text(encoding="utf-8") == url:
            offset = part.stat().st_size
        else:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            status = getattr(resp, "status", None) or resp.getcode()
            total: int | None = None
            length = resp.headers.get("Content-Length")
            if offset and status == 206:
                m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    raise http.client.HTTPException("server answered the Range request with another range")
                total = int(m.group(2)) if m.group(2) != "*" else None
                mode = "ab"
            else:
                offset = 0
                mode = "wb"
            if total is None and length is not None:
                total = offset + int(length)
            received = offset
            bar = _bar(total, offset, desc, self.progress)
            try:
                with open(part, mode) as fh:
                    meta.write_text(
                        url, encoding="utf-8"
                    )  # bytes are coming: remember their origin for resume
                    while True:
                        try:
                            block = resp.read(CHUNK)
                        except http.client.IncompleteRead as exc:
                            fh.write(exc.partial)
                            received += len(exc.partial)
                            raise
                        if not block:
                            break
                        fh.write(block)
                        received += len(block)
                        bar.update(len(block))
            finally:
                bar.close()
            if total is not None and received < total:
                raise http.client.IncompleteRead(b"", total - received)


def _meta(part: Path) -> Path:
    """Side file recording which URL a ``.part`` file came from: only that URL may be resumed into it."""
    return part.with_name(part.name + ".url")


def _bar(total: int | None, initial: int, desc: str, enabled: bool):  # noqa: ANN202 - tqdm or a no-op
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------- mirrors


def mirror_candidates(name: str, mirrors: Sequence[str]) -> list[str]:
    """Where each mirror could hold the artifact ``name``.

    A URL mirror is tried as ``<url>/<name>``. A folder is searched for ``<folder>/<name>`` and then for any file
    whose path ends with ``/<name>`` (so a copy of a whole SentEval ``data/`` folder, or a folder of raw downloads,
    works as a mirror). An archive (zip or tar) is searched the same way among its members.
    """
    out: list[str] = []
    for m in mirrors:
        if _is_url(m):
            out.append(m.rstrip("/") + "/" + urllib.parse.quote(name))
            continue
        path = Path(m).expanduser()
        if path.is_dir():
            exact = path / name
            if exact.is_file():
                out.append(str(exact))
            base = name.rsplit("/", 1)[-1]
            hits = sorted(
                (
                    p
                    for p in path.rglob(base)
                    if p.is_file() and p != exact and p.as_posix().endswith("/" + name)
                ),
                key=lambda p: (len(p.parts), str(p)),
            )
            out.extend(str(p) for p in hits)
        elif is_archive(path):
            members = [n for n in archive_names(path) if n == name or n.endswith("/" + name)]
            out.extend(f"{path}!{n}" for n in sorted(members, key=len))
    return out


def check_dest(dest: Path) -> None:
    """Fail early, naming ``--dest``, when it cannot become a data folder (a file in the way, or not writable)."""
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"--dest {dest}: not a folder (a file of that name is in the way)")
    probe = dest
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--dest {dest}: {probe} is a file, so no folder can be made under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--dest {dest}: {probe} is not writable; choose another --dest")


def check_mirrors(mirrors: Sequence[str]) -> None:
    """Fail early, naming the argument, when a ``--mirror`` is neither a URL, a folder nor an archive."""
    for m in mirrors:
        if _is_url(m):
            continue
        p = Path(m).expanduser()
        if not p.exists():
            raise ValueError(f"--mirror {m}: no such file or folder")
        if not (p.is_dir() or is_archive(p)):
            raise ValueError(f"--mirror {m}: not a folder, a zip/tar archive or a URL")


def parse_source_overrides(items: Sequence[str]) -> dict[str, list[str]]:
    """``NAME=LOCATION`` strings (from ``--source``) -> {artifact name: [locations]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(
                f"--source {item!r}: expected NAME=URL_OR_PATH (see `python -m senteval_anatomy.data sources`)"
            )
        name, loc = item.split("=", 1)
        out.setdefault(name.strip(), []).append(loc.strip())
    return out


# ------------------------------------------------------------------------------------------- verification


def verify_output(path: Path, out: Output) -> tuple[str | None, str | None]:
    """Check one output file against the table. Returns ``(error, warning)``; at most one is set.

    An exact output must match its sha256; a tokenized one is compared and a difference is only a warning. A known
    line count must match in both cases (a wrong count means a wrong or truncated file, not a tokenizer detail).
    """
    if not path.is_file():
        return f"{out.path} was not produced", None
    if out.lines is not None:
        n = count_lines(path)
        if n != out.lines:
            return f"{out.path} has {n} lines, expected {out.lines}", None
    if out.sha256 is not None:
        got = sha256_file(path)
        if got != out.sha256:
            if out.exact:
                return f"{out.path}: sha256 {got} differs from SentEval's prepared file ({out.sha256})", None
            return None, (
                f"{out.path}: differs from the reference SentEval output (sha256 {got[:16]}…, reference "
                f"{out.sha256[:16]}…); our tokenizer may differ from the Perl/sed original on a few tokens"
            )
    return None, None


def outputs_present(dest: Path, ds: Dataset) -> bool:
    """Whether every output of ``ds`` is already in ``dest`` and verifies (non-exact checksum differences allowed)."""
    return all(verify_output(dest / o.path, o)[0] is None for o in ds.outputs)


# ------------------------------------------------------------------------------------------- the download


def _fetch_recipe(
    recipe: Recipe,
    fetcher: Fetcher,
    candidates: Mapping[str, list[str]],
    attempts: list[str],
) -> dict[str, tuple[Path, str]] | None:
    inputs: dict[str, tuple[Path, str]] = {}
    for art in recipe.artifacts:
        hit = fetcher.cached(art)
        if hit is not None:
            inputs[art.name] = (hit, "download cache")
            continue
        for loc in candidates[art.name]:
            try:
                inputs[art.name] = (fetcher.fetch(art, loc), loc)
                break
            except FetchError as exc:
                attempts.append(f"[{recipe.name}] {art.name} <- {loc}: {exc}")
        else:
            if not candidates[art.name]:
                attempts.append(f"[{recipe.name}] {art.name}: no location to try")
            return None
    return inputs


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (size first, then content)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256_file(a) == sha256_file(b)


def _keep_backup(final: Path, backup: Path) -> Path:
    """Keep the current ``final`` as ``backup`` (``backup.1``, ... if taken): a hard link (instant, and ``final`` is
    never missing) or a copy. Returns the backup's path."""
    backup.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while backup.exists():
        n += 1
        backup = backup.with_name(f"{backup.name.rsplit('.~', 1)[0]}.~{n}")
    try:
        os.link(final, backup)
    except OSError:
        shutil.copy2(final, backup)
    return backup


def _place(
    dest: Path,
    ds: Dataset,
    recipe: Recipe,
    inputs: Mapping[str, Path],
    allow_mismatch: bool,
    force: bool = False,
    backup_root: Path | None = None,
) -> tuple[list[Path], list[str], list[Path]]:
    """Build into a staging folder inside ``dest``, verify, then move every output into place.

    Raises ``ValueError`` with the reasons when verification fails, and :class:`_WouldOverwrite` when a file in
    ``dest`` differs from the one built and ``force`` is off; ``dest`` is unchanged then. With ``force`` such files
    are first kept under ``backup_root``. The staging folder is removed either way. Returns the placed files, the
    warnings and the backups made.
    """
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{ds.name}-", dir=dest))
    try:
        recipe.build(inputs, staging)
        errors, warnings = [], []
        for out in ds.outputs:
            err, warn = verify_output(staging / out.path, out)
            if err and allow_mismatch and (staging / out.path).is_file():
                warnings.append(err + " (placed anyway: --allow-mismatch)")
            elif err:
                errors.append(err)
            if warn:
                warnings.append(warn)
        if errors:
            raise ValueError("; ".join(errors))
        differ = [
            out.path
            for out in ds.outputs
            if (dest / out.path).is_file() and not _same_bytes(dest / out.path, staging / out.path)
        ]
        if differ and not force:
            raise _WouldOverwrite([str(dest / p) for p in differ])
        if differ and backup_root is None:
            backup_root = dest / BACKUP_DIR / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        placed, backups = [], []
        for out in ds.outputs:
            final = dest / out.path
            final.parent.mkdir(parents=True, exist_ok=True)
            if out.path in differ:
                backups.append(_keep_backup(final, backup_root / out.path))
            os.replace(staging / out.path, final)
            placed.append(final)
        return placed, warnings, backups
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _failure_message(ds: Dataset, dest: Path, attempts: list[str]) -> str:
    names = sorted({a.name for r in ds.recipes for a in r.artifacts})
    first = ds.recipes[0].artifacts[0]
    lines = [
        f"{ds.name} ({', '.join(ds.tasks)}) could not be obtained; {dest} was left unchanged.",
        "  expected files: "
        + ", ".join(str(dest / o.path) for o in ds.outputs[:4])
        + (" …" if len(ds.outputs) > 4 else ""),
        "  tried:",
        *(f"    {a}" for a in attempts),
        "  what to do: download one of the files above by hand (e.g. "
        + (first.urls[0] if first.urls else first.name)
        + ")",
        f"    and run: python -m senteval_anatomy.data download --tasks {ds.name} --dest {dest} --source {first.name}=/path/to/{first.name.rsplit('/', 1)[-1]}",
        "    or point --mirror at a folder, archive or URL holding files named: "
        + ", ".join(names[:6])
        + (" …" if len(names) > 6 else ""),
    ]
    return "\n".join(lines)


def _conflict_message(ds: Dataset, dest: Path, paths: list[str]) -> str:
    return "\n".join(
        [
            f"{ds.name} ({', '.join(ds.tasks)}) was not placed; {dest} was left unchanged, because these files differ "
            "from what the download would write (edited by hand, or other data):",
            *(f"    {p}" for p in paths),
            "  to replace them, rerun with --force: the current files are then kept under "
            f"{dest / BACKUP_DIR}/<UTC time>/ (the paths are printed).",
        ]
    )


def _update_manifest(dest: Path, results: list[DatasetResult]) -> None:
    """Record where each placed dataset came from (read by ``check``); written atomically."""
    path = dest / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for r in results:
        if r.status == "placed":
            data[r.dataset] = {"recipe": r.recipe, "sources": r.sources, "warnings": r.warnings, "date": now}
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


def download(
    tasks: Sequence[str] | None = None,
    dest: str | Path | None = None,
    *,
    datasets: Sequence[Dataset] | None = None,
    mirrors: Sequence[str] = (),
    sources: Mapping[str, Sequence[str]] | None = None,
    mirror_only: bool = False,
    force: bool = False,
    allow_mismatch: bool = False,
    keep_downloads: bool = False,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool | None = None,
    log=print,  # noqa: ANN001 - any callable taking a string
) -> list[DatasetResult]:
    """Download ``tasks`` (SentEval names, dataset names or groups; default all) into ``dest`` (default
    :func:`default_download_dir`) in SentEval's layout. Returns one :class:`DatasetResult` per dataset; failures
    are reported in the results (with the full explanation in ``error``), not raised, so that one dead host does not
    stop the others.

    ``datasets`` replaces the task selection with explicit :class:`~.sources.Dataset` entries (a private source
    table, e.g. an institution's own mirror layout); ``sources`` maps artifact names to extra locations tried first
    (``--source``); ``mirrors`` are searched for every artifact (``--mirror``).
    """
    todo = (
        list(datasets) if datasets is not None else datasets_for(expand_tasks(list(tasks) if tasks else None))
    )
    dest = Path(dest).expanduser() if dest is not None else default_download_dir()
    check_dest(dest)
    if retries < 0:
        raise ValueError(f"--retries {retries}: must be 0 or more")
    if not timeout > 0:
        raise ValueError(f"--timeout {timeout}: must be a positive number of seconds")
    check_mirrors(mirrors)
    overrides = {k: list(v) for k, v in (sources or {}).items()}
    known = {a.name for ds in todo for r in ds.recipes for a in r.artifacts}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"--source names unknown for these tasks: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    created = not dest.exists()
    fetcher = Fetcher(
        dest / ".downloads", retries=retries, timeout=timeout, backoff=backoff, progress=progress
    )
    # One backup folder per run, named by its start time, so that a --force run's backups stay together.
    backup_root = dest / BACKUP_DIR / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results: list[DatasetResult] = []
    used_cache: set[Path] = set()
    failed_cache: set[Path] = set()
    for ds in todo:
        if not force and outputs_present(dest, ds):
            results.append(
                DatasetResult(ds.name, ds.tasks, "skipped", outputs=[dest / o.path for o in ds.outputs])
            )
            log(f"{ds.name}: already present and verified in {dest}")
            continue
        attempts: list[str] = []
        result: DatasetResult | None = None
        conflict: _WouldOverwrite | None = None
        passes = [True] if mirror_only else ([True, False] if (mirrors or overrides) else [False])
        for local_only in passes:
            for recipe in ds.recipes:
                cands = {
                    a.name: overrides.get(a.name, [])
                    + mirror_candidates(a.name, mirrors)
                    + ([] if local_only else list(a.urls))
                    for a in recipe.artifacts
                }
                if local_only and not all(cands[a.name] or fetcher.cached(a) for a in recipe.artifacts):
                    lacking = [a.name for a in recipe.artifacts if not (cands[a.name] or fetcher.cached(a))]
                    attempts.append(
                        f"[{recipe.name}] no --mirror/--source location holds {', '.join(lacking[:3])}{' …' if len(lacking) > 3 else ''}"
                    )
                    continue
                got = _fetch_recipe(recipe, fetcher, cands, attempts)
                if got is None:
                    continue
                try:
                    placed, warnings, backups = _place(
                        dest, ds, recipe, {k: p for k, (p, _) in got.items()}, allow_mismatch, force, backup_root
                    )
                except _WouldOverwrite as exc:
                    conflict = exc  # the downloads stay in the cache: a rerun with --force needs no network
                    break
                except Exception as exc:  # noqa: BLE001 - a broken archive or a verification failure: try the next recipe
                    attempts.append(
                        f"[{recipe.name}] built from {', '.join(loc for _, loc in got.values())}: {exc}"
                    )
                    failed_cache.update(p for p, _ in got.values())
                    continue
                used_cache.update(p for p, _ in got.values())
                result = DatasetResult(
                    ds.name,
                    ds.tasks,
                    "placed",
                    recipe.name,
                    {k: loc for k, (_, loc) in got.items()},
                    placed,
                    warnings,
                    backups=backups,
                )
                break
            if result is not None or conflict is not None:
                break
        if conflict is not None:
            result = DatasetResult(ds.name, ds.tasks, "failed", error=_conflict_message(ds, dest, conflict.paths))
            log(result.error)
        elif result is None:
            result = DatasetResult(ds.name, ds.tasks, "failed", error=_failure_message(ds, dest, attempts))
            log(result.error)
        else:
            log(f"{ds.name}: placed {len(result.outputs)} file(s) in {dest} ({result.recipe})")
            for b in result.backups:
                log(f"  replaced a file that differed; the previous one is kept as {b}")
            for w in result.warnings:
                log(f"  warning: {w}")
        results.append(result)
    if any(r.status == "placed" for r in results):
        _update_manifest(dest, results)
    if not keep_downloads:
        for p in used_cache | failed_cache:
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (dest / ".downloads").rmdir()
    if created:
        with contextlib.suppress(OSError):
            dest.rmdir()  # only succeeds when nothing at all was placed or kept
    return results
