"""The one home of the raw torch hooks on a model's modules, and of the conventions they read arguments by.

Every head and layer is read, checked or edited through forward hooks: feature capture
(:mod:`~senteval_anatomy.encoders.encoding`), the layout proof (:func:`~senteval_anatomy.encoders.layout.
verify_layout`), the self-check (:mod:`~senteval_anatomy.encoders.selfcheck`) and head ablation all hook the
attention output projection W_O (``o_proj``) and the blocks. Models pass W_O's input positionally or by keyword, and
blocks return a tensor or a tuple; the helpers here read both ways, so every caller agrees on what "W_O's input" and
"a block's output" are.

Why not ``register_forward_pre_hook`` directly: without ``with_kwargs=True`` a model that calls W_O by keyword
gives an empty ``args`` and the hook reads nothing (or the wrong tensor); with it, each caller had re-written the
"first positional argument, else the first keyword argument" rule. Hooks are removed when the :class:`HookSet`
that holds them closes, also when the forward pass raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

__all__ = [
    "HookSet",
    "block_input",
    "bound_arguments",
    "first_tensor",
    "heads_input",
    "on_block_input",
    "on_call",
    "on_heads",
    "on_output",
]


def heads_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """W_O's input, ``[batch, pos, H·d]``: the first positional argument, else the first keyword argument."""
    return args[0] if args else next(iter(kwargs.values()))


def block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """A block's hidden-state input: the first positional argument, else ``hidden_states=``, else the first tensor
    among the keyword arguments (blocks called with other keyword names)."""
    if args:
        return args[0]
    x = kwargs.get("hidden_states")
    if x is None:
        x = next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
    return x


def first_tensor(output: Any) -> torch.Tensor:
    """A module's main output: the output itself, or the first element of a tuple/list (blocks and attention
    modules return ``(hidden_states, attention_weights, ...)``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def bound_arguments(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of one call of ``module.forward`` by parameter name (``**kwargs`` catch-alls flattened in)."""
    try:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return dict(kwargs)
    out = dict(bound)
    for value in list(bound.values()):
        if isinstance(value, dict) and value is not kwargs:  # the **kwargs catch-all
            out.update({k: v for k, v in value.items() if k not in out})
    return out


def on_heads(
    o_proj: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor | None], *, prepend: bool = False
) -> RemovableHandle:
    """Call ``fn(heads)`` with W_O's input before every call of ``o_proj``.

    ``fn`` returns None to only read the heads, or a tensor that replaces W_O's input (head ablation), passed on the
    way the model passed it (positionally or by keyword). ``prepend=True`` runs ``fn`` before every hook registered
    earlier, so an edit is what other readers of the heads see.
    """

    def pre(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        new = fn(heads_input(args, kwargs))
        if new is None:
            return None
        if args:
            return (new, *args[1:]), kwargs
        key = next(iter(kwargs))
        return args, {**kwargs, key: new}

    return o_proj.register_forward_pre_hook(pre, with_kwargs=True, prepend=prepend)


def on_block_input(block: torch.nn.Module, fn: Callable[[torch.Tensor], None]) -> RemovableHandle:
    """Call ``fn(hidden_states)`` with the block's input before every call of ``block``."""

    def pre(module: Any, args: tuple, kwargs: dict) -> None:
        fn(block_input(args, kwargs))

    return block.register_forward_pre_hook(pre, with_kwargs=True)


def on_output(module: torch.nn.Module, fn: Callable[[torch.Tensor], None]) -> RemovableHandle:
    """Call ``fn(output)`` with the module's main output (:func:`first_tensor`) after every call."""

    def post(mod: Any, args: tuple, output: Any) -> None:
        fn(first_tensor(output))

    return module.register_forward_hook(post)


def on_call(
    module: torch.nn.Module, fn: Callable[[torch.nn.Module, tuple, dict, torch.Tensor], None]
) -> RemovableHandle:
    """Call ``fn(module, args, kwargs, output)`` after every call (``output`` as :func:`first_tensor`): for checks
    that compare a module's inputs with its output."""

    def post(mod: Any, args: tuple, kwargs: dict, output: Any) -> None:
        fn(mod, args, kwargs, first_tensor(output))

    return module.register_forward_hook(post, with_kwargs=True)


class HookSet:
    """Handles of registered hooks, all removed when the ``with`` block ends (normally or by an exception)."""

    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> RemovableHandle:
        self.handles.append(handle)
        return handle

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
