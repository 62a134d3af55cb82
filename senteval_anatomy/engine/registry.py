"""The task registry: every family's :class:`~senteval_anatomy.engine.spec.TaskSpec`, in SentEval's order, looked
up by name; and the task lists and groups other modules used to keep as tables, derived from the specs.

Adding a task is declaring its spec in its family file (:mod:`senteval_anatomy.engine.families`); a task outside
the package (a plug-in, a test) calls :func:`register`. The module-level tuples below describe the built-in tasks
(what SentEval ships); :func:`specs` and :func:`task_names` also include tasks registered at run time.
"""

from __future__ import annotations

import difflib

from .families import FAMILIES
from .spec import TaskSpec

__all__ = [
    "TASK_NAMES",
    "UNSUPPORTED_TASKS",
    "PROBING_TASKS",
    "DOWNSTREAM_TASKS",
    "PROBING_GROUPS",
    "NO_DEV_TASKS",
    "SENTEVAL_FILE_LINES",
    "register",
    "unregister",
    "get_task",
    "specs",
    "task_names",
]

#: SentEval's 28 task names, in SentEval's order (``SE.list_tasks``): the order of every task list.
TASK_NAMES: tuple[str, ...] = (
    "CR", "MR", "MPQA", "SUBJ", "SST2", "SST5", "TREC", "MRPC",
    "SICKRelatedness", "SICKEntailment", "STSBenchmark",
    "SNLI", "ImageCaptionRetrieval", "STS12", "STS13", "STS14", "STS15", "STS16",
    "Length", "WordContent", "Depth", "TopConstituents", "BigramShift", "Tense",
    "SubjNumber", "ObjNumber", "OddManOut", "CoordinationInversion",
)  # fmt: skip

#: Known to SentEval, not supported by the built-in engine.
UNSUPPORTED_TASKS: tuple[str, ...] = ("SNLI", "ImageCaptionRetrieval")

_SPECS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry (after SentEval's tasks, in call order) and return its spec.

    Raises ``ValueError`` for a name already registered or one of SentEval's unsupported tasks.
    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register() takes a TaskSpec, got {type(spec).__name__}")
    if spec.name in _SPECS or spec.name in UNSUPPORTED_TASKS:
        raise ValueError(f"task {spec.name!r} is already known; give the new task another name")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> TaskSpec:
    """Remove a task registered with :func:`register` (for tests and plug-ins that clean up after themselves)."""
    if name in TASK_NAMES:
        raise ValueError(f"{name!r} is one of SentEval's tasks; it cannot be unregistered")
    return _SPECS.pop(name)


def specs() -> tuple[TaskSpec, ...]:
    """Every registered task's spec: SentEval's supported tasks in SentEval's order, then registered ones."""
    return tuple(_SPECS.values())


def task_names(*, probing: bool | None = None) -> tuple[str, ...]:
    """Names of the registered tasks, in :func:`specs` order: all, only probing or only downstream ones."""
    return tuple(s.name for s in _SPECS.values() if probing is None or s.is_probing == probing)


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a supported task.

    Raises
    ------
    ValueError
        For an unknown name (listing the valid ones, with a "did you mean" hint) or for SNLI /
        ImageCaptionRetrieval, which the built-in engine does not support.
    """
    if isinstance(name, str) and name in _SPECS:
        return _SPECS[name]
    if name in UNSUPPORTED_TASKS:
        raise ValueError(
            f"Task {name!r} is a SentEval task that the built-in engine does not support. Supported tasks: "
            f"{', '.join(_SPECS)}. Run {name} with SentEval itself (senteval.engine.SE)."
        )
    hint = ""
    if isinstance(name, str):
        known = TASK_NAMES + tuple(n for n in _SPECS if n not in TASK_NAMES)
        folded = {t.lower(): t for t in known}
        close = [folded[name.lower()]] if name.lower() in folded else []
        close += [m for m in difflib.get_close_matches(name, known, n=3, cutoff=0.5) if m not in close]
        if close:
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?"
    raise ValueError(f"Unknown task {name!r}.{hint} Valid task names: {', '.join(_SPECS)}.")


def _register_builtins() -> None:
    """SentEval's tasks in SentEval's order, then any other task a family file declares, in family order."""
    declared = [s for family in FAMILIES for s in family.SPECS]
    order = {name: i for i, name in enumerate(TASK_NAMES)}
    for spec in sorted(declared, key=lambda s: order.get(s.name, len(order))):  # stable: extras keep file order
        register(spec)


_register_builtins()

#: The 10 probing tasks, in SentEval's order.
PROBING_TASKS: tuple[str, ...] = task_names(probing=True)

#: The supported downstream tasks, in SentEval's order.
DOWNSTREAM_TASKS: tuple[str, ...] = task_names(probing=False)

#: The reference notebooks' grouping of the probing tasks (paper-reference section 5), used by tables and figures.
PROBING_GROUPS: dict[str, tuple[str, ...]] = {}
for _s in specs():
    if _s.is_probing:
        PROBING_GROUPS.setdefault(_s.group, ())
        PROBING_GROUPS[_s.group] += (_s.name,)
del _s

#: Tasks whose result has no dev score (unsupervised cosine similarity): nothing can be selected on dev for them.
NO_DEV_TASKS: tuple[str, ...] = tuple(s.name for s in specs() if not s.has_dev)

#: Line counts of SentEval's data files where known, by path relative to ``task_path`` (each spec's
#: ``file_lines``): they tell a file cut short from a deliberate subset; the downloader checks its outputs.
SENTEVAL_FILE_LINES: dict[str, int] = {rel: n for s in specs() for rel, n in s.file_lines.items()}
