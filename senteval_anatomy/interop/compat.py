"""Run the unmodified facebookresearch/SentEval on today's stack: Python ≥ 3.11, NumPy ≥ 1.24, PyTorch 2, no CUDA.

One line in an existing SentEval script::

    import senteval_anatomy.interop.compat; senteval_anatomy.interop.compat.patch()          # device="auto": CUDA if there, else CPU

or scoped::

    from senteval_anatomy.interop.compat import senteval_compat
    with senteval_compat(device="cpu"):
        senteval.engine.SE(params, batcher, prepare).eval(["SST5", "STS14"])

or without touching the script at all: ``python -m senteval_anatomy.interop.compat [--device cpu] my_senteval_script.py ARGS``.

SentEval's files are never edited. Each patch replaces a name *inside SentEval's own modules* (or, for ``.cuda()``,
re-routes only the calls whose caller is a SentEval module), is applied only where the running stack needs it, and is
undone by :func:`unpatch` / on leaving the ``with`` block. The patches (details and what they leave as SentEval had
it: ``docs/compat.md``):

``getargspec``
    ``senteval.utils.get_optimizer`` checks optimizer arguments with ``inspect.getargspec``, gone in Python 3.11 and
    refusing PyTorch 2's keyword-only optimizer signatures before that. ``senteval.utils.inspect`` becomes a view of
    :mod:`inspect` with a ``getargspec`` built on ``getfullargspec``.
``device``
    ``MLP``/``PyTorchClassifier`` and ``RelatednessPytorch`` call ``.cuda()`` unconditionally, build
    ``torch.device('cuda')``, test ``isinstance(x, torch.cuda.FloatTensor)`` and assert ``torch.cuda.is_available()``.
    The ``torch`` name in ``senteval.tools.classifier`` and ``senteval.tools.relatedness`` becomes a view of torch
    whose ``device('cuda')`` and ``cuda.*`` answer for the chosen device, and ``Tensor.cuda`` / ``Module.cuda`` move
    to the chosen device when (and only when) the caller is a SentEval module.
``sts_ragged``
    ``STSEval.loadFile`` builds ``np.array([s.split() for s in sent1])`` from token lists of different lengths, an
    error since NumPy 1.24. The ``np`` name in ``senteval.sts`` becomes a view of NumPy whose ``array`` builds a 1-D
    object array of token lists from a list of lists, as NumPy < 1.24 did.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect as _inspect
import os
import sys
import threading
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as _np

from ..vocab import OneLineParser, resolve_device

__all__ = ["PATCHES", "CompatState", "needed_patches", "patch", "unpatch", "senteval_compat", "active", "main"]

#: The patches, in the order they are applied; :func:`needed_patches` says which the running stack needs and why.
PATCHES = ("getargspec", "device", "sts_ragged")

INSTALL_HINT = (
    "SentEval is not on PyPI: pip install 'senteval_anatomy[senteval]' (or pip install "
    "git+https://github.com/facebookresearch/SentEval), or put the folder holding its senteval/ package on sys.path."
)

#: What ``getargspec`` returned (Python ≤ 3.10): SentEval indexes ``[0]`` (the argument names).
ArgSpec = namedtuple("ArgSpec", ["args", "varargs", "keywords", "defaults"])

# SentEval's optimizer names (utils.get_optimizer), used to test whether the running inspect.getargspec accepts them.
_SENTEVAL_OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "Adamax", "ASGD", "RMSprop", "Rprop", "SGD")


def _getargspec(func: Any) -> ArgSpec:
    """``inspect.getargspec`` for today's functions: positional then keyword-only names (SentEval checks the names).

    >>> _getargspec(lambda self, params, lr=1e-3, *, foreach=None: None).args
    ['self', 'params', 'lr', 'foreach']
    """
    spec = _inspect.getfullargspec(func)
    return ArgSpec(list(spec.args) + list(spec.kwonlyargs), spec.varargs, spec.varkw, spec.defaults)


class _InspectView(ModuleType):
    """:mod:`inspect` as SentEval's ``utils`` sees it under the patch: everything delegated, plus ``getargspec``."""

    def __init__(self) -> None:
        super().__init__("inspect", "inspect, with getargspec restored for SentEval (senteval_anatomy.interop.compat)")
        self.getargspec = _getargspec

    def __getattr__(self, name: str) -> Any:
        return getattr(_inspect, name)


class _NumpyView(ModuleType):
    """:mod:`numpy` as SentEval's ``sts`` sees it under the patch: ``array`` of a list of lists is a 1-D object array."""

    def __init__(self) -> None:
        super().__init__("numpy", "numpy, with NumPy<1.24's ragged np.array for SentEval (senteval_anatomy.interop.compat)")
        self.array = _ragged_array

    def __getattr__(self, name: str) -> Any:
        return getattr(_np, name)


def _ragged_array(obj: Any, *args: Any, **kwargs: Any) -> _np.ndarray:
    """``np.array``, except that a list of lists (token lists) becomes a 1-D object array holding those lists.

    >>> a = _ragged_array([["a", "b"], ["c"]]); a.shape, a[1]
    ((2,), ['c'])
    >>> _ragged_array(["1.0", "2"]).dtype.kind
    'U'
    """
    if not args and not kwargs and isinstance(obj, list) and obj and all(isinstance(x, list) for x in obj):
        out = _np.empty(len(obj), dtype=object)
        for i, x in enumerate(obj):
            out[i] = x
        return out
    return _np.array(obj, *args, **kwargs)


def _numpy_rejects_ragged() -> bool:
    try:
        _np.array([["a", "b"], ["c"]])
    except ValueError:
        return True
    return False


def _getargspec_problem() -> str | None:
    """Why SentEval's ``inspect.getargspec(optim_fn.__init__)`` fails on this stack, or None if it works."""
    fn = getattr(_inspect, "getargspec", None)
    if fn is None:
        return f"inspect.getargspec does not exist in Python {sys.version_info.major}.{sys.version_info.minor}"
    import torch

    for name in _SENTEVAL_OPTIMIZERS:
        try:
            fn(getattr(torch.optim, name).__init__)
        except (ValueError, TypeError) as exc:
            return f"inspect.getargspec rejects torch.optim.{name}.__init__ ({exc})"
    return None


def _resolve(device: Any):
    return resolve_device(device, what="senteval_compat(device=...)")


def _cuda_is_native(target: Any) -> bool:
    """True when SentEval's plain ``.cuda()`` already lands on ``target`` (then the device patch is not needed)."""
    import torch

    if target.type != "cuda" or not torch.cuda.is_available():
        return False
    return target.index is None or target.index == torch.cuda.current_device()


def needed_patches(device: Any = "auto") -> dict[str, str]:
    """The patches this stack needs for SentEval to run on ``device``, each with the reason (empty: none needed)."""
    out: dict[str, str] = {}
    problem = _getargspec_problem()
    if problem:
        out["getargspec"] = problem
    target = _resolve(device)
    if not _cuda_is_native(target):
        import torch

        why = "no CUDA device" if not torch.cuda.is_available() else f"device {target} chosen"
        out["device"] = f"SentEval calls .cuda() unconditionally ({why}); routed to {target}"
    if _numpy_rejects_ragged():
        out["sts_ragged"] = f"NumPy {_np.__version__} rejects np.array of token lists of different lengths (STS12-16)"
    return out


# --------------------------------------------------------------------------------------------------- device routing
class _FloatTensorCheck(type):
    """``isinstance(x, torch.cuda.FloatTensor)`` as SentEval means it: a float32 tensor already on the chosen device."""

    target: Any = None

    def __instancecheck__(cls, obj: Any) -> bool:
        import torch

        if not (isinstance(obj, torch.Tensor) and obj.dtype == torch.float32):
            return False
        target = cls.target
        return obj.device.type == target.type and (target.index is None or obj.device.index == target.index)


class _CudaView:
    """``torch.cuda`` as SentEval's classifier/relatedness modules see it: available, on the chosen device."""

    def __init__(self, target: Any) -> None:
        import torch

        self._target = target
        self._cuda = torch.cuda
        self.FloatTensor = _FloatTensorCheck("FloatTensor", (), {"target": target})

    def is_available(self) -> bool:
        # SentEval asks only to decide whether it may call .cuda(); under the patch that lands on the chosen device.
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cuda, name)  # manual_seed & co.: real (lazy, harmless without a GPU)


class _TorchView(ModuleType):
    """``torch`` as SentEval's classifier/relatedness modules see it: ``device('cuda')`` is the chosen device."""

    def __init__(self, target: Any) -> None:
        import torch

        super().__init__("torch", f"torch, with CUDA routed to {target} for SentEval (senteval_anatomy.interop.compat)")
        self._torch = torch
        self._target = target
        self.cuda = _CudaView(target)

    def device(self, *args: Any, **kwargs: Any) -> Any:
        dev = self._torch.device(*args, **kwargs)
        return self._target if dev.type == "cuda" else dev

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)


# ----------------------------------------------------------------------------------------------------- bookkeeping
@dataclass
class CompatState:
    """What :func:`patch` did: the SentEval package, the device, the patches applied (with reasons), what to undo."""

    package: str
    device: Any
    applied: dict[str, str]
    depth: int = 1
    _undo: list[Any] = field(default_factory=list, repr=False)


_LOCK = threading.RLock()
_STATE: CompatState | None = None


def active() -> CompatState | None:
    """The current patch state, or None when SentEval is unpatched."""
    return _STATE


def _import_senteval(package: str | ModuleType) -> tuple[str, dict[str, ModuleType]]:
    name = package.__name__ if isinstance(package, ModuleType) else str(package)
    mods: dict[str, ModuleType] = {}
    try:
        for sub in ("utils", "sts", "tools.classifier", "tools.relatedness"):
            mods[sub] = importlib.import_module(f"{name}.{sub}")
    except ImportError as exc:
        raise ImportError(
            f"Cannot import SentEval as {name!r} ({exc}). {INSTALL_HINT} If your script puts SentEval on sys.path "
            "itself (sys.path.insert(0, PATH_TO_SENTEVAL)), call patch() after that line, or run the script "
            "unchanged with python -m senteval_anatomy.interop.compat SCRIPT."
        ) from exc
    return name, mods


def _set(module: ModuleType, attr: str, value: Any, undo: list[Any]) -> None:
    undo.append((module, attr, module.__dict__.get(attr, _MISSING)))
    setattr(module, attr, value)


_MISSING = object()


def _route_cuda(package: str, target: Any, undo: list[Any]) -> None:
    """``Tensor.cuda`` / ``Module.cuda`` → ``.to(target)`` for callers in ``package``; everyone else unchanged."""
    import torch

    prefix = package + "."
    orig_tensor_cuda = torch.Tensor.cuda
    orig_module_cuda = torch.nn.Module.cuda

    def from_senteval() -> bool:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        return caller == package or caller.startswith(prefix)

    def tensor_cuda(self: Any, *args: Any, **kwargs: Any) -> Any:
        if from_senteval():
            return self.to(target)
        return orig_tensor_cuda(self, *args, **kwargs)

    def module_cuda(self: Any, *args: Any, **kwargs: Any) -> Any:
        if from_senteval():
            return self.to(target)
        return orig_module_cuda(self, *args, **kwargs)

    tensor_cuda.__doc__ = f"Tensor.cuda, routed to {target} for SentEval's calls (senteval_anatomy.interop.compat)."
    module_cuda.__doc__ = f"Module.cuda, routed to {target} for SentEval's calls (senteval_anatomy.interop.compat)."
    _set(torch.Tensor, "cuda", tensor_cuda, undo)  # type: ignore[arg-type]
    _set(torch.nn.Module, "cuda", module_cuda, undo)  # type: ignore[arg-type]


def _restore(undo: list[Any]) -> None:
    for obj, attr, old in reversed(undo):
        if old is _MISSING:
            with contextlib.suppress(AttributeError):
                delattr(obj, attr)
        else:
            setattr(obj, attr, old)
    undo.clear()


def patch(device: Any = "auto", *, senteval: str | ModuleType = "senteval") -> CompatState:
    """Make the installed SentEval run on this stack; returns what was patched. Undo with :func:`unpatch`.

    Parameters
    ----------
    device : ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda:1"``, a ``torch.device``, ...
        Where SentEval's PyTorch probes (``usepytorch=True``, SICK-R, STS-B) run. With ``"auto"`` on a CUDA machine
        SentEval's own ``.cuda()`` already does the right thing and is left alone.
    senteval : the SentEval package (module or import name), for copies vendored under another name
        (e.g. ``"SentEval.senteval"``).

    Calling it again with the same settings nests (each call needs one :func:`unpatch`); with other settings it
    raises, since one process holds one SentEval.
    """
    global _STATE
    with _LOCK:
        target = _resolve(device)
        if _STATE is not None:
            name = senteval.__name__ if isinstance(senteval, ModuleType) else str(senteval)
            if _STATE.package != name or _STATE.device != target:
                raise RuntimeError(
                    f"SentEval is already patched for package {_STATE.package!r} on {_STATE.device}; call "
                    f"senteval_anatomy.interop.compat.unpatch() before patching for {name!r} on {target}."
                )
            _STATE.depth += 1
            return _STATE
        package, mods = _import_senteval(senteval)
        reasons = needed_patches(target)
        undo: list[Any] = []
        try:
            if "getargspec" in reasons:
                _set(mods["utils"], "inspect", _InspectView(), undo)
            if "device" in reasons:
                view = _TorchView(target)
                _set(mods["tools.classifier"], "torch", view, undo)
                _set(mods["tools.relatedness"], "torch", view, undo)
                _route_cuda(package, target, undo)
            if "sts_ragged" in reasons:
                _set(mods["sts"], "np", _NumpyView(), undo)
        except BaseException:
            _restore(undo)
            raise
        _STATE = CompatState(package=package, device=target, applied=reasons, _undo=undo)
        return _STATE


def unpatch() -> None:
    """Undo :func:`patch` (the outermost call restores everything exactly as it was). No-op when not patched."""
    global _STATE
    with _LOCK:
        if _STATE is None:
            return
        _STATE.depth -= 1
        if _STATE.depth > 0:
            return
        _restore(_STATE._undo)
        _STATE = None


@contextlib.contextmanager
def senteval_compat(device: Any = "auto", *, senteval: str | ModuleType = "senteval") -> Iterator[CompatState]:
    """``with senteval_compat(device="auto"):`` — :func:`patch` on entry, :func:`unpatch` on exit (also on errors)."""
    state = patch(device, senteval=senteval)
    try:
        yield state
    finally:
        unpatch()


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patch SentEval the moment a script imports it (the runner's way: SentEval examples put SentEval's folder on
    ``sys.path`` themselves, so it is often not importable before the script runs)."""

    def __init__(self, package: str, device: Any, announce: Any) -> None:
        self.package, self.device, self.announce = package, device, announce

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.package:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None  # not there (yet): the script's own import error, as without the runner
        spec.loader = _PatchAfterExec(spec.loader, self)
        return spec

    def loaded(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        self.announce(patch(self.device, senteval=self.package))


class _PatchAfterExec(importlib.abc.Loader):
    """SentEval's own loader, then :func:`patch` once its package has run (all its modules are imported then)."""

    def __init__(self, inner: Any, hook: _PatchOnImport) -> None:
        self.inner, self.hook = inner, hook

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.hook.loaded()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...: SentEval's loader answers
        return getattr(self.inner, name)


def main(argv: list[str] | None = None) -> int:
    """``python -m senteval_anatomy.interop.compat [--device D] [--senteval PKG] SCRIPT [ARGS...]``: run an unchanged
    SentEval script (as ``python SCRIPT ARGS`` would, ``__name__ == "__main__"``) with SentEval patched.

    When SentEval is importable already it is patched before the script starts; otherwise (the SentEval examples'
    ``sys.path.insert(0, PATH_TO_SENTEVAL)`` before ``import senteval``) the moment the script imports it."""
    import argparse
    import runpy

    p = OneLineParser(prog="python -m senteval_anatomy.interop.compat",
                      description="Run a SentEval script unchanged, with senteval_anatomy.interop.compat applied.")
    p.add_argument("--device", default="auto", help="where SentEval's PyTorch probes run (auto, cpu, cuda:1, mps)")
    p.add_argument("--senteval", default="senteval", help="import name of the SentEval package")
    p.add_argument("script", help="the SentEval script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = p.parse_args(argv)
    script = os.path.abspath(args.script)
    if not os.path.isfile(script):
        what = "is a folder, not a script" if os.path.isdir(script) else "not found"
        p.error(f"script {args.script!r} {what}; give the path of a SentEval script (a .py file)")
    sys.argv = [script, *args.args]
    sys.path.insert(0, os.path.dirname(script))

    def announce(state: CompatState) -> None:
        print(f"senteval_anatomy.interop.compat: {', '.join(state.applied) or 'nothing needed'} (device {state.device})",
              file=sys.stderr)

    try:
        _resolve(args.device)  # a bad --device is a usage error before the script runs
    except ValueError as exc:
        p.error(str(exc))
    hook = None
    try:
        importable = importlib.util.find_spec(args.senteval) is not None
    except ImportError:  # a dotted name whose parent is not importable yet
        importable = False
    if importable:
        try:
            announce(patch(args.device, senteval=args.senteval))
        except ImportError as exc:  # found, but it does not import (a broken SentEval checkout)
            p.error(str(exc).replace("\n", " "))
    else:
        hook = _PatchOnImport(args.senteval, args.device, announce)
        sys.meta_path.insert(0, hook)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        if hook is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(hook)
        if hook is None or active() is not None:
            unpatch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
