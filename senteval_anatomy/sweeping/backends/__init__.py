"""Where a sweep's result units run: the one contract every backend implements, and the list of backends.

A sweep is a set of *result units*, one per (model, task, view); each unit's rows land in one file under
``<out>/units`` and a finished unit is never computed again. :func:`senteval_anatomy.sweeping.sweep` plans the units
(loads each task once, keys each unit, reuses the finished ones) and hands the rest to a backend:

The contract
------------
``Backend.run(units, context) -> {(task, view): rows}``

* ``units``: the :class:`PendingUnit` s to compute (task, view, unit file or ``None``, full key);
* ``context``: the :class:`RunContext`, every setting of the run, validated (encoder, params, pooling, max length,
  store, harness, memory budget, encoding batch size, findings options, the tasks already loaded...);
* returns one DataFrame of rows per unit given (:func:`~senteval_anatomy.sweeping.units.result_rows`, plus the
  findings columns when the context asks for them), and writes each unit file (``unit.path``) as soon as the unit
  is done, so an interrupted run resumes.

Backends
--------
``local`` (:mod:`.local`)
    this process, unit after unit: the reference loop (and the only one running the ``engine`` / ``senteval``
    harnesses and the findings variants).
``ray`` (:mod:`.ray`)
    a Ray cluster: encoding shards where the accelerators are, chunks of probes for training; the same unit files,
    row for row.

Adding a backend is one file: ``backends/<name>.py`` defining ``BACKEND``, a class whose instances have
``run(units, context)``, constructible with no arguments (or with the options :func:`get_backend` passes on).
:data:`BACKENDS` lists the files of this folder, so the command line's ``--backend`` choices follow without
importing any backend (Ray is imported only when its backend runs).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["BACKENDS", "Backend", "PendingUnit", "RunContext", "get_backend"]


@dataclass(frozen=True)
class PendingUnit:
    """One result unit of a sweep that is not on disk yet: ``path`` is its unit file (None: keep it in memory) and
    ``key`` its identity (:func:`senteval_anatomy.identity.unit_key`, plus the findings options when any is on)."""

    task: str
    view: str
    path: Path | None
    key: dict


@dataclass
class RunContext:
    """Every setting a backend needs to compute units, validated once by the sweep (:mod:`..plan`).

    ``tasks`` holds the tasks the sweep already loaded (name -> :class:`~senteval_anatomy.engine.tasks.Task`), so
    the local backend does not parse a task's files twice; a remote backend may load them where it runs.
    ``findings`` is the :class:`~senteval_anatomy.sweeping.variants.FindingsOptions` of the run (``None`` or all off:
    the plain table).
    """

    encoder: Any
    run_params: Any
    pooling: str
    limit: int
    store: Any
    harness: str = "builtin"
    memory_budget_gb: float = 1.0
    batch_size: int = 64
    progress: bool = True
    resume: bool = True
    findings: Any = None
    tasks: Mapping[str, Any] = field(default_factory=dict)
    twins: dict[int, Any] = field(default_factory=dict)  # untrained twins built during the run, by seed


class Backend(Protocol):
    """What :func:`~senteval_anatomy.sweeping.sweep` calls (the contract in the module docstring)."""

    def run(self, units: Sequence[PendingUnit], context: RunContext) -> dict[tuple[str, str], Any]: ...


def _discover() -> tuple[str, ...]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return tuple(["local", *sorted(n for n in names if n != "local")])


#: The backends a sweep can run on: the modules of this folder (``local`` first, the default).
BACKENDS: tuple[str, ...] = _discover()


def get_backend(backend: Any = "local", **options: Any) -> Any:
    """``backend`` as an object with ``run(units, context)``: a name of :data:`BACKENDS` (built with ``options``,
    e.g. ``address=`` for Ray; options left ``None`` are not passed) or an instance, returned as it is."""
    if isinstance(backend, str):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}.")
        cls = importlib.import_module(f"{__name__}.{backend}").BACKEND  # Ray itself is imported only in run()
        return cls(**{k: v for k, v in options.items() if v is not None})
    if callable(getattr(backend, "run", None)):
        return backend
    raise TypeError(f"backend must be one of {BACKENDS} or an object with run(units, context), not "
                    f"{type(backend).__name__}.")
