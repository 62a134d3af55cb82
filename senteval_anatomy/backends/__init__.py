"""Where a sweep's units of work run: in this process (``"local"``) or fanned out over a Ray cluster (``"ray"``).

A sweep is a set of *result units*, one per (model, task, view); each unit's rows land in one file under
``<out>/units`` and a finished unit is never computed again. The local backend runs them one after the other in
this process (the loop in :func:`senteval_anatomy.sweeping.sweep`). The Ray backend
(:mod:`senteval_anatomy.backends.ray_backend`) splits the same work into smaller units that a cluster runs in
parallel — encoding shards of a task where the accelerators are, and chunks of probes of a (task, view) for training —
and writes the same unit files, row for row.

Ray is an optional dependency (``pip install "senteval_anatomy[ray]"``). Nothing in the package imports it unless a
sweep asks for ``backend="ray"``: this module and :mod:`~senteval_anatomy.backends.ray_backend` import it lazily.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "check_backend"]

#: The backends a sweep can run on.
BACKENDS: tuple[str, ...] = ("local", "ray")


def check_backend(backend: object) -> str | object:
    """``backend`` validated: one of :data:`BACKENDS`, or a configured :class:`~.ray_backend.RayBackend` as is."""
    if isinstance(backend, str):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}.")
        return backend
    from .ray_backend import RayBackend  # imports no Ray itself

    if isinstance(backend, RayBackend):
        return backend
    raise TypeError(f"backend must be one of {BACKENDS} or a RayBackend instance, not {type(backend).__name__}.")
