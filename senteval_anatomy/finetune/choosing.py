"""Resolving ``best-layer`` and ``topk`` from a sweep's **dev** scores, and the checks on where those scores came from.

Why a module of its own: the choice is the scientific claim of a fine-tuning comparison ("the layer probing found"),
so it is made once, on dev, by the package's own queries (:meth:`Results.best_layer`, :meth:`Results.top_heads`,
:func:`~senteval_anatomy.analysis.topk.topk_curve` + :func:`~senteval_anatomy.tables.selection.choose_k`), and the rows say how.

What "a task without a dev split" means here: SentEval's MRPC and TREC have no dev file, but a sweep's ``devacc`` for
them is k-fold cross-validation on train, which never touches test; it is a dev score and is used (rows say
``dev=kfold-cv-on-train``). STS12-16 have no dev score at all (unsupervised cosine); a sweep table whose rows for the
selection task have no dev score cannot choose a layer or heads, and the run is refused before training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.topk import topk_curve
from ..engine import TASK_NAMES, get_task
from ..engine.registry import NO_DEV_TASKS
from ..sweeping import sweep
from ..tables.results import Results
from ..tables.selection import choose_k
from .readouts import Readout, ReadSpec

__all__ = ["SELECTION_SWEEP_DIR", "check_select_task", "load_from", "resolve", "sweep_for_selection"]

#: Where ``finetune`` sweeps the pretrained model when no ``--from`` is given (inside ``--out``).
SELECTION_SWEEP_DIR = "sweep-pretrained"


def check_select_task(task: str | None, reads: Sequence[ReadSpec]) -> None:
    """``ValueError`` when a dev-selected readout has no task to be selected on, or one without dev scores."""
    if not any(r.needs_selection for r in reads):
        return
    wanted = ", ".join(r.text for r in reads if r.needs_selection)
    if task is None:
        raise ValueError(f"--read {wanted} chooses on a sweep's dev scores, and a GLUE folder is not a SentEval "
                         "task: give --select-on TASK (the SentEval task whose sweep chooses, e.g. MRPC for GLUE "
                         "MRPC, as the paper did)")
    if task in NO_DEV_TASKS:
        raise ValueError(f"--read {wanted}: {task} has no dev split and no dev score (unsupervised similarity), so "
                         "nothing can be chosen on dev; select on a supervised task (--select-on) or use --read "
                         "layer:N / heads:L,H")
    if task not in TASK_NAMES:
        raise ValueError(f"--select-on {task!r} is not a SentEval task; use one of {', '.join(TASK_NAMES)}")


def _fingerprints_of(folder: Path) -> set[str]:
    """Model fingerprints named by the unit files of a sweep folder (empty when it has none)."""
    prints = set()
    for unit in (folder / "units").glob("*.json"):
        try:
            prints.add(json.loads(unit.read_text(encoding="utf-8"))["key"]["setting"]["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return prints


def load_from(path: str | Path, encoder: Any, task: str, view: str) -> Any:
    """The :class:`~senteval_anatomy.tables.results.Results` of ``--from`` (a sweep's ``--out`` folder, ``results.csv`` or
    ``results.parquet``), checked to be of this very model (fingerprint) with dev scores for ``task``'s ``view``."""
    p = Path(path)
    file = p
    if p.is_dir():
        file = next((p / n for n in ("results.parquet", "results.csv") if (p / n).is_file()), p / "results.csv")
    if not file.is_file():
        raise ValueError(f"--from {path}: no results table there; give a sweep's --out folder or its results.csv")
    try:
        res = Results.load(file)
    except Exception as exc:  # noqa: BLE001 - any unreadable table is the user's input
        raise ValueError(f"--from {file}: not a results table of this package ({exc})") from None
    table = res.table
    mine = encoder.fingerprint()
    prints = set(table["fingerprint"].dropna().astype(str)) if "fingerprint" in table else set()
    prints |= _fingerprints_of(file.parent)
    prints.discard("")
    if prints and mine not in prints:
        names = sorted(set(table["model"].astype(str)))
        raise ValueError(f"--from {path}: these results are of another model ({', '.join(names)}, fingerprint "
                         f"{sorted(prints)[0][:12]}…), not of {encoder.name} ({mine[:12]}…); sweep this model or "
                         "give its results")
    rows = table[(table["task"] == task) & (table["view"] == view)]
    if rows.empty:
        raise ValueError(f"--from {path}: no {view}-view rows for {task}; sweep {task} with --views {view}")
    if rows["devacc"].isna().all():
        raise ValueError(f"--from {path}: the {view} rows of {task} have no dev score, so nothing can be chosen on "
                         "dev; use --read layer:N / heads:L,H, or select on a task with a dev split (--select-on)")
    model = str(rows["model"].iloc[0])
    pooling = str(rows["pooling"].iloc[0])
    return Results(table[(table["model"] == model) & (table["pooling"] == pooling)], model=model, pooling=pooling)


def sweep_for_selection(encoder: Any, task: str, task_path: str, out_dir: Path, views: Sequence[str],
                        pooling: str | None, progress: bool) -> Any:
    """Sweep the pretrained model on ``task`` (reused from ``<out>/sweep-pretrained`` when done before)."""
    df = sweep(encoder, [task], task_path=task_path, views=list(views), out_dir=out_dir / SELECTION_SWEEP_DIR,
               pooling=pooling, progress=progress)
    return Results(df)


def _dev_kind(task: str) -> str:
    return "kfold-cv-on-train" if get_task(task).evaluator == "kfold" else "dev"


def resolve(spec: ReadSpec, results: Any, *, task: str, encoder: Any, task_path: str | None,
            ks: Sequence[int] | None = None, progress: bool = False) -> tuple[Readout, pd.DataFrame | None]:
    """The readout ``spec`` names, chosen on ``results``' dev scores for ``task``; with the top-k curve (or None).

    ``topk`` without a fixed k evaluates the dev-ranked top-k heads for each k in ``ks`` (the sweep's own top-k
    machinery, same probes and hooks) and keeps the k with the best dev score (ties: the smaller k).
    """
    dev = _dev_kind(task)
    src = f"{task}:{dev}"
    if spec.kind == "best-layer":
        pick = results.best_layer(task)
        return Readout(spec.text, "layers", layer=pick.layer,
                       selection=f"best dev layer of {src} ({pick.devacc:.4g})"), None
    if spec.kind != "topk":
        raise ValueError(f"--read {spec.text!r} needs no selection")
    if spec.k is not None:
        heads = tuple(results.top_head_ids(task, spec.k))
        return Readout(spec.text, "heads", heads=heads, selection=f"top-{spec.k} dev-ranked heads of {src}"), None
    if task_path is None:
        raise ValueError("--read topk chooses k on dev with a top-k curve; it needs the task's data (--task-path)")
    curve = topk_curve(encoder, task, str(task_path), results, ks=ks, progress=progress, baselines=False)
    best = choose_k(curve)
    k = int(best["k"])
    heads = tuple(results.top_head_ids(task, k))
    return Readout(spec.text, "heads", heads=heads,
                   selection=f"top-{k} dev-ranked heads of {src}, k chosen on dev ({float(best['devacc']):.4g})"), curve
