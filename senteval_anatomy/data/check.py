"""``python -m senteval_anatomy.data check``: which tasks a data folder holds, and whether each is usable and whole.

Parsing exists once, in the engine: every present task is loaded with :func:`senteval_anatomy.engine.load_task`,
which validates every line (fields, labels, scores, encodings) and raises ``DataError`` naming file and line. This
module adds what only a checker needs:

* presence: which tasks are absent, which have only some of their files;
* size: the split sizes the engine parsed, compared with SentEval's standard sizes, so that a subset (or the
  embedded demo data) is reported as ``partial`` rather than passing silently for the real thing;
* labels: how many classes a probing task has against the standard number;
* encodings and line endings: ASCII / UTF-8 / BOM / CRLF per file, and a warning where a file SentEval reads as
  latin-1 holds UTF-8 multi-byte sequences (it would be read as mojibake);
* provenance: whether a file is byte-identical to SentEval's prepared file (known sha256), and what the downloader
  recorded about where a data set came from.

Statuses: ``complete`` (parses, standard size), ``partial`` (parses, not the standard size), ``present`` (parses,
no standard size known), ``absent`` (no file of the task), ``broken`` (some files missing, or a parse error).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engine import DataError, load_task
from ..engine.registry import get_task, task_names
from .download import MANIFEST_NAME, sha256_file
from .sources import expand_tasks, task_dataset

# SentEval's standard sizes (``TaskSpec.sizes``: items per split, STS: scored pairs per sub-dataset), loose sizes
# where those are not pinned down (``approx_size``: CR, MPQA), the class count of each probing task's data
# (``standard_classes``) and the encoding SentEval reads a task's files with (``encoding``) are facts of each task,
# read from its spec in the task registry.


@dataclass
class FileReport:
    """One file of a task: presence, line count, encoding, line endings, and identity with the reference."""

    path: str
    present: bool
    lines: int | None = None
    encoding: str | None = None
    crlf: bool = False
    reference: bool | None = (
        None  # True: byte-identical to SentEval's prepared file; None: no reference known
    )


@dataclass
class TaskReport:
    """The verdict on one task."""

    task: str
    status: str
    sizes: dict[str, int] = field(default_factory=dict)
    standard: dict[str, int] | None = None
    classes: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "partial", "present")


@dataclass
class CheckReport:
    """All task verdicts for one folder. ``failed``: a requested task is absent or broken, or any task is broken."""

    root: str
    tasks: list[TaskReport]
    requested: list[str] | None = None
    synthetic: bool = False

    @property
    def failed(self) -> bool:
        for t in self.tasks:
            if t.status == "broken":
                return True
            if self.requested is not None and t.task in self.requested and t.status == "absent":
                return True
        return False

    def task(self, name: str) -> TaskReport:
        return next(t for t in self.tasks if t.task == name)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "synthetic": self.synthetic,
            "failed": self.failed,
            "tasks": [asdict(t) for t in self.tasks],
        }


def _encoding(data: bytes) -> tuple[str, bool]:
    """A label for the file's encoding, and whether it decodes as UTF-8."""
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    if body.isascii():
        return ("ascii + UTF-8 BOM" if bom else "ascii"), True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start + (3 if bom else 0)) + 1
        return f"not UTF-8 (first bad byte on line {line}; latin-1 reads anything)", False
    return ("utf-8 + BOM" if bom else "utf-8"), True


def _file_report(root: Path, rel: str, task: str, reference: str | None, notes: list[str]) -> FileReport:
    path = root / rel
    if not path.is_file():
        return FileReport(rel, False)
    data = path.read_bytes()
    enc, utf8 = _encoding(data)
    crlf = b"\r\n" in data
    if get_task(task).encoding == "latin-1" and enc.startswith("utf-8"):
        notes.append(
            f"{rel}: holds UTF-8 multi-byte characters but SentEval reads it as latin-1, so they become mojibake "
            "(SentEval's own files are ASCII)"
        )
    ref = None if reference is None else (sha256_file(path) == reference)
    lines = data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
    return FileReport(rel, True, lines, enc, crlf, ref)


def _sizes(task_obj) -> dict[str, int]:  # noqa: ANN001 - engine Task
    out = {}
    for split, rec in task_obj.data.items():
        key = "gold" if "gold" in rec else ("y" if "y" in rec else next(iter(rec)))
        out[split] = len(rec[key])
    return out


def _fmt_sizes(sizes: dict[str, int]) -> str:
    return " / ".join(f"{k} {v}" for k, v in sizes.items())


def check_task(root: Path, task: str, manifest: dict | None = None, synthetic: bool = False) -> TaskReport:
    """Check one task under ``root`` (see the module doc for the statuses)."""
    spec = get_task(task)
    try:
        ds = task_dataset(task)
    except KeyError:  # a registered task with no download recipe: everything but provenance is checked
        ds = None
    refs = {o.path: o.sha256 for o in ds.outputs} if ds else {}
    notes: list[str] = []
    files = [_file_report(root, rel, task, refs.get(rel), notes) for rel in spec.files]
    missing = [f.path for f in files if not f.present]
    standard = None if spec.sizes is None else dict(spec.sizes)
    report = TaskReport(task, "absent", files=files, notes=notes, standard=standard)
    if len(missing) == len(files):
        report.problems.append(
            f"no file of {task} under {root} (expected {', '.join(spec.files[:3])}{' …' if len(spec.files) > 3 else ''})"
        )
        return report
    if missing:
        report.status = "broken"
        report.problems.append(f"missing: {', '.join(missing)}")
        report.problems.append(
            f"fix: python -m senteval_anatomy.data download --tasks {ds.name if ds else task} --dest {root}"
        )
        return report
    try:
        loaded = load_task(task, root)
    except DataError as exc:
        report.status = "broken"
        report.problems.append(str(exc))
        return report
    report.sizes = _sizes(loaded)
    report.classes = loaded.n_classes
    if standard is None:
        report.status = "present"
        if spec.approx_size:
            notes.append(f"{sum(report.sizes.values())} items; SentEval's {task} has {spec.approx_size}")
    elif report.sizes == standard:
        report.status = "complete"
    else:
        report.status = "partial"
        if not synthetic:  # the report's header already says the demo data is not SentEval's
            notes.append(f"not SentEval's standard size ({_fmt_sizes(standard)}): a subset or other data")
    want = spec.standard_classes
    if want is not None and report.classes is not None and report.classes != want and not synthetic:
        notes.append(f"{report.classes} classes (SentEval: {want})")
    if any(f.reference for f in files):
        same = sum(1 for f in files if f.reference)
        notes.append(f"{same} of {len(files)} file(s) byte-identical to SentEval's prepared files")
    if manifest and ds and ds.name in manifest:
        entry = manifest[ds.name]
        notes.append(f"downloaded {entry.get('date', '?')} via {entry.get('recipe', '?')}")
        notes.extend(f"download warning: {w}" for w in entry.get("warnings", []))
    return report


def _is_synthetic(root: Path) -> bool:
    from . import _repo_default

    if (root / ".generator-version").is_file():
        return True
    try:
        return root.resolve() == _repo_default().resolve()
    except OSError:
        return False


def check(root: str | Path, tasks: Sequence[str] | None = None) -> CheckReport:
    """Check ``tasks`` (default: every supported task) in the data folder ``root``.

    Raises ``FileNotFoundError`` when ``root`` is not a folder, ``ValueError`` for an unknown task name.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: not a folder (expected SentEval's data folder holding probing/ and downstream/)"
        )
    requested = expand_tasks(list(tasks)) if tasks else None
    names = requested if requested is not None else list(task_names())
    manifest = None
    if (root / MANIFEST_NAME).is_file():
        try:
            manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
    synthetic = _is_synthetic(root)
    reports = [check_task(root, t, manifest, synthetic) for t in names]
    return CheckReport(str(root), reports, requested, synthetic)


def format_report(report: CheckReport) -> str:
    """A human-readable table, then the problems and notes of each task."""
    lines = []
    if report.synthetic:
        lines.append(
            "note: this is the embedded synthetic demo data (for demos and tests). Real results need SentEval's "
            "data: python -m senteval_anatomy.data download"
        )
    width = max(len(t.task) for t in report.tasks) if report.tasks else 4
    lines.append(f"{'task':<{width}}  {'status':<8}  sizes")
    for t in report.tasks:
        sizes = _fmt_sizes(t.sizes) if t.sizes else "-"
        if t.classes is not None and t.sizes:
            sizes += f"  ({t.classes} classes)"
        lines.append(f"{t.task:<{width}}  {t.status:<8}  {sizes}")
    details = [t for t in report.tasks if (t.problems and t.status != "absent") or t.notes]
    if details:
        lines.append("")
    for t in details:
        lines.append(f"{t.task}:")
        if t.status != "absent":
            lines.extend("  " + p.replace("\n", "\n  ") for p in t.problems)
        lines.extend(f"  note: {n}" for n in t.notes)
    counts: dict[str, int] = {}
    for t in report.tasks:
        counts[t.status] = counts.get(t.status, 0) + 1
    lines.append("")
    lines.append("summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)
