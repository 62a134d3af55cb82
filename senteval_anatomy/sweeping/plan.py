"""The validated settings of one run: what :func:`senteval_anatomy.pipeline.run` executes.

A :class:`Plan` is built by :func:`make_plan` (Python API, ``reproduce``) or by the command line (which checks its
flags first, to name them in its errors, then calls :func:`make_plan`). Every rule that does not need the model is
checked here, once, before anything is encoded; :func:`parse_ks` is the one parser of ``--ks``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.sources import check_tasks
from ..vocab import (
    DEFAULT_PRESET,
    ENCODE_BATCH_SIZE,
    HARNESSES,
    VIEWS,
    ParamError,
    check_batch_size,
    check_probe_params,
    check_views,
    check_whole_list,
    plain,
    preset_params,
)
from .variants import FindingsOptions

__all__ = ["Plan", "make_plan", "parse_ks", "parse_tasks"]


def parse_ks(ks: str | Sequence[int] | None, *, what: str = "ks") -> list[int] | None:
    """``--ks`` / ``ks=``: whole numbers >= 1 as every list of numbers is read
    (:func:`~senteval_anatomy.vocab.check_whole_list`: a comma-separated string, ``"1,,2"`` refused, a list or a NumPy
    array, each k once); ``None`` stays ``None`` (the default k sweep). ``what`` names the argument in the one-line
    error (``--ks`` on the command line)."""
    return None if ks is None else check_whole_list(ks, what=what)


def parse_tasks(tasks: Sequence[str] | str) -> list[str]:
    """Task names as every entry point reads them (:func:`senteval_anatomy.data.sources.check_tasks`: the command
    line's ``--tasks`` convention, each task once, in the caller's order)."""
    return check_tasks(tasks)


@dataclass
class Plan:
    """Every setting of a run, checked (:func:`make_plan`). ``params`` are SentEval's (preset applied, flags on
    top); ``out`` ``None`` keeps everything in memory; ``topk`` (on by default) adds the top-k heads view of every
    task with a heads view; ``findings`` the findings columns (:mod:`.variants`)."""

    tasks: list[str]
    task_path: Path
    params: dict[str, Any]
    views: tuple[str, ...] = VIEWS
    preset: str | None = None
    pooling: str | None = None
    max_length: int | None = None
    harness: str = "builtin"
    backend: Any = "local"
    batch_size: int = ENCODE_BATCH_SIZE
    memory_budget_gb: float = 1.0
    out: Path | None = None
    resume: bool = True
    progress: bool = True
    findings: FindingsOptions = field(default_factory=FindingsOptions)
    topk: bool = True
    ks: list[int] | None = None
    rank_task: str | None = None
    topk_tasks: list[str] | None = None
    kind: str = "probing"
    data_note: str | None = None
    draw_figures: bool = True
    report: bool = True


def make_plan(
    tasks: Sequence[str] | str,
    *,
    task_path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    preset: str | None = None,
    views: Sequence[str] | str = VIEWS,
    ks: str | Sequence[int] | None = None,
    findings: FindingsOptions | Mapping[str, Any] | None = None,
    **settings: Any,
) -> Plan:
    """A checked :class:`Plan`. ``params`` override ``preset`` (default: the paper's settings); ``findings`` is a
    :class:`~.variants.FindingsOptions` or its fields as a mapping; ``settings`` are the other fields of
    :class:`Plan`. Raises ``ValueError`` naming the setting at the first mistake."""
    task_list = parse_tasks(tasks)
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"params={params!r}: give a dict of SentEval params, e.g. {{'kfold': 5, 'seed': 1111}}")
    params = plain(params) if params is not None else None
    base = dict(preset_params(preset or DEFAULT_PRESET, **dict(params or {})) if preset is not None or params is None
                else params)
    try:  # the command line's checks: epoch_size=0, max_epoch=0, tenacity=-1, kfold=1 ... are one line
        check_probe_params(base)
    except ParamError as exc:
        raise ValueError(f"params: {exc}") from None
    base["task_path"] = str(task_path)
    if "batch_size" in settings:
        settings["batch_size"] = check_batch_size(settings["batch_size"])
    fo = findings if isinstance(findings, FindingsOptions) else FindingsOptions(**dict(findings or {}))
    plan = Plan(tasks=task_list, task_path=Path(task_path), params=base, views=check_views(views), preset=preset,
                ks=parse_ks(ks), findings=fo, **settings)
    if plan.harness not in HARNESSES:
        raise ValueError(f"harness={plan.harness!r} is not one of {HARNESSES}.")
    if fo.any() and plan.harness != "builtin":
        raise ValueError(f"the findings options run on the builtin harness (stacked variants), not "
                         f"harness={plan.harness!r}.")
    if fo.any() and plan.backend != "local" and type(plan.backend).__name__ != "LocalBackend":
        raise ValueError("the findings options run on the local backend (their variants train in the local loop); "
                         "use backend='local'.")
    if plan.rank_task is not None and plan.rank_task not in task_list:
        raise ValueError(f"rank_task={plan.rank_task!r} is not among the tasks {task_list}; add it.")
    if plan.out is not None:
        plan.out = Path(plan.out)
    return plan
