"""Test-only fault injection for the process tests (``tests/test_faults.py``); never part of the package.

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that holds one, so a test that
puts this folder on a child process's ``PYTHONPATH`` can make that real process die (``SIGKILL``) or be interrupted
(``SIGINT``, as Ctrl-C does) at an exact point of its work, instead of after a sleep that depends on the machine's
speed. The package's code runs unchanged; only the process's fate at that point is decided here.

``$SA_FAULT`` holds rules separated by ``;``:

``SIGNAL@call:MODULE:QUALNAME:N``
    send ``SIGNAL`` (``KILL``, ``INT`` as Ctrl-C does, or ``TERM``) to this process just before the ``N``-th call of ``MODULE.QUALNAME``
    (a function, or ``Class.method``), patched right after ``MODULE`` is first imported;
``SIGNAL@rename:SUBSTRING:N``
    the same, before the ``N``-th ``os.replace`` / ``os.rename`` whose destination contains ``SUBSTRING`` (the file
    is complete in its temporary place, not yet renamed into place);
``count:MODULE:QUALNAME``
    append ``MODULE:QUALNAME`` to the file ``$SA_FAULT_LOG`` at every call (to count how often work is done);
``batch:MODULE:QUALNAME``
    the same, followed by the first dimension of the call's first tensor argument (e.g. a forward pass's batch).

A rule whose target cannot be found writes ``MISSING ...`` to ``$SA_FAULT_LOG``, so that a test fails loudly
instead of passing without its fault.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import signal
import sys

_RULES: list[list[str]] = [r.split(":") for r in os.environ.get("SA_FAULT", "").split(";") if r.strip()]
_COUNTS: dict[str, int] = {}


def _log(line: str) -> None:
    path = os.environ.get("SA_FAULT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _fire(action: str, key: str, n: int) -> None:
    _COUNTS[key] = _COUNTS.get(key, 0) + 1
    if _COUNTS[key] != n:
        return
    _log(f"FIRED {action} {key} #{n}")
    sig = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}[action.split("@")[0]]
    os.kill(os.getpid(), sig)


def _wrap(func, before):  # noqa: ANN001, ANN202
    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        before(*args, **kwargs)
        return func(*args, **kwargs)

    return wrapper


def _log_batch(key: str, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
    shapes = [a.shape for a in (*args, *kwargs.values()) if getattr(a, "shape", None)]
    _log(f"{key} {shapes[0][0] if shapes else '?'}")


def _patch_module(module) -> None:  # noqa: ANN001
    for rule in _RULES:
        kind = rule[0]
        if not (kind in ("count", "batch") or kind.endswith("@call")) or rule[1] != module.__name__:
            continue
        qualname = rule[2]
        owner = module
        parts = qualname.split(".")
        try:
            for part in parts[:-1]:
                owner = getattr(owner, part)
            func = getattr(owner, parts[-1])
        except AttributeError:
            _log(f"MISSING {module.__name__}:{qualname}")
            continue
        key = f"{module.__name__}:{qualname}"
        if kind == "count":
            def before(*_args, _key=key, **_kwargs):  # noqa: ANN002, ANN003, ANN202
                _log(_key)
        elif kind == "batch":
            before = functools.partial(_log_batch, key)
        else:
            def before(*_args, _kind=kind, _key=key, _n=int(rule[3]), **_kwargs):  # noqa: ANN002, ANN003, ANN202
                _fire(_kind, _key, _n)
        setattr(owner, parts[-1], _wrap(func, before))


_TARGETS = {r[1] for r in _RULES if r[0] in ("count", "batch") or r[0].endswith("@call")}


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a target module right after it has executed, before anyone can bind its functions."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name not in _TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            _log(f"MISSING module {name}")
            return spec
        original = spec.loader.exec_module

        def exec_module(module, original=original):  # noqa: ANN001, ANN202
            original(module)
            _patch_module(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _TARGETS:
    sys.meta_path.insert(0, _Finder())

_RENAMES = [r for r in _RULES if r[0].endswith("@rename")]
if _RENAMES:
    def _renamer(func):  # noqa: ANN001, ANN202
        @functools.wraps(func)
        def wrapper(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            for rule in _RENAMES:
                if rule[1] in os.fspath(dst):
                    _fire(rule[0], f"rename:{rule[1]}", int(rule[2]))
            return func(src, dst, *args, **kwargs)

        return wrapper

    os.replace = _renamer(os.replace)
    os.rename = _renamer(os.rename)
