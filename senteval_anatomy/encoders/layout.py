r"""Where a loaded model keeps its heads, and the proof of it.

:class:`ModelLayout` is a model, its tokenizer and sizes under an :class:`~senteval_anatomy.encoders.architectures.
ArchSpec`: it finds the block, the attention module and the output projection W_O of every layer.
:func:`verify_layout` proves on a probe sentence that W_O applied to the hooked heads gives the attention module's
output, and tells whether attention is causal. :class:`~senteval_anatomy.encoders.encoder.Encoder` is a
``ModelLayout`` with a name and an identity; layout discovery validates its candidates as bare ``ModelLayout``\ s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .architectures import ArchSpec
from .hooks import HookSet, bound_arguments, first_tensor, heads_input, on_call, on_output
from .readers import get_module

__all__ = ["PROBE_SENTENCE", "LayoutReport", "ModelLayout", "verify_layout"]

#: The sentence every layout is proven on (discovery, load-time validation, ``--check``).
PROBE_SENTENCE = "The quick brown fox jumps over the lazy dog ."


@dataclass(eq=False)
class ModelLayout:
    """A model in eval mode, its tokenizer, its sizes and the spec that says where each layer's heads are.

    Attributes
    ----------
    num_layers, num_heads, head_dim, hidden_size : int
        ``L``, ``H``, ``d`` (read from the config or from the output projection's width, never as hidden / heads) and
        ``D``.
    max_length : int
        Longest input in tokens, special tokens included; longer sentences are truncated and counted.
    """

    model: torch.nn.Module
    tokenizer: Any
    spec: ArchSpec
    model_type: str
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    max_length: int
    device: torch.device

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The module list of transformer blocks (for ``shared_blocks`` layouts, fewer than ``num_layers``)."""
        return get_module(self.model, self.spec.blocks)  # type: ignore[return-value]

    def block(self, layer: int) -> torch.nn.Module:
        """The block that computes layer ``layer`` (0-based); shared layouts map layers onto their groups."""
        blocks = self.blocks
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} is out of range 0..{self.num_layers - 1}.")
        if self.spec.shared_blocks:
            return blocks[layer * len(blocks) // self.num_layers]
        return blocks[layer]

    def distinct_blocks(self) -> list[torch.nn.Module]:
        """Every block module once (all ``num_layers`` of them, or the shared groups)."""
        return list(self.blocks) if self.spec.shared_blocks else [self.block(i) for i in range(self.num_layers)]

    def o_proj(self, layer: int) -> torch.nn.Module:
        """The attention output projection of block ``layer``; its input holds the ``H`` head contexts."""
        return get_module(self.block(layer), self.spec.o_proj)

    def attn(self, layer: int) -> torch.nn.Module:
        """The attention module of block ``layer`` (see :attr:`ArchSpec.attn`)."""
        return get_module(self.block(layer), self.spec.attn)

    def submodule(self, layer: int, path: str) -> torch.nn.Module:
        """Any module inside block ``layer`` by dotted path."""
        return get_module(self.block(layer), path)

    @property
    def default_pooling(self) -> str:
        return self.spec.default_pooling

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


@dataclass
class LayoutReport:
    """What :func:`verify_layout` found on the probe sentence."""

    ok: bool
    problems: list[str]
    causal: bool
    max_rel_error: float


def verify_layout(encoder: ModelLayout, *, check_causal: bool = True) -> LayoutReport:
    """Prove the layout on a probe sentence: the hooked heads, through W_O, give the attention module's output.

    Checks, in one forward pass of :data:`PROBE_SENTENCE`: W_O and the attention module run exactly once per layer;
    W_O's input is ``[1, tokens, H·d]`` (not unpadded or reshaped); ``attn(x) == norm(W_O·heads + residual)`` as
    the layout describes, at every token. A second pass with the last token changed tells whether the model is
    causal (the first token's final state does not move).
    """
    model, spec, L = encoder.model, encoder.spec, encoder.num_layers
    width = encoder.num_heads * encoder.head_dim
    ids = list(encoder.tokenizer(PROBE_SENTENCE)["input_ids"])[: encoder.max_length]
    while len(ids) < 3:
        ids = ids + ids[-1:]
    problems: list[str] = []
    o_calls: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = []
    attn_calls: list[tuple[torch.nn.Module, dict[str, Any], torch.Tensor]] = []
    finals: list[torch.Tensor] = []
    hooks = HookSet()
    o_mods = {id(encoder.o_proj(i)): encoder.o_proj(i) for i in range(L)}
    a_mods = {id(encoder.attn(i)): encoder.attn(i) for i in range(L)}

    def o_hook(m: torch.nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        o_calls.append((m, heads_input(args, kwargs).detach().clone(), out.detach().clone()))

    def a_hook(m: torch.nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        attn_calls.append((m, bound_arguments(m, args, kwargs), out.detach().clone()))

    for mod in o_mods.values():
        hooks.add(on_call(mod, o_hook))
    for mod in a_mods.values():
        hooks.add(on_call(mod, a_hook))
    hooks.add(on_output(encoder.block(L - 1), lambda out: finals.append(out.detach().clone())))

    def run(token_ids: list[int]) -> None:
        x = torch.tensor([token_ids], dtype=torch.long, device=encoder.device)
        with torch.inference_mode():
            model(input_ids=x, attention_mask=torch.ones_like(x))

    max_err = 0.0
    causal = spec.causal
    try:
        run(ids)
        n_o, n_a = len(o_calls), len(attn_calls)
        if n_o != L:
            problems.append(f"o_proj={spec.o_proj!r} ran {n_o} times in one forward pass; expected once per layer ({L}).")
        if n_a != L:
            problems.append(f"attn={spec.attn!r} ran {n_a} times in one forward pass; expected once per layer ({L}).")
        tol = 1e-4 if encoder.dtype == torch.float32 else 3e-2
        for layer, ((o_mod, z, _), (_, bound, out)) in enumerate(zip(o_calls, attn_calls)):
            if tuple(z.shape) != (1, len(ids), width):
                problems.append(
                    f"layer {layer}: o_proj's input has shape {tuple(z.shape)}, expected (1, {len(ids)}, "
                    f"{encoder.num_heads}×{encoder.head_dim}); the model reshapes or unpads the batch, or o_proj is "
                    "not the attention output projection."
                )
                break
            with torch.inference_mode():
                want = o_mod(z)
                want = first_tensor(want)
                if spec.attn_residual:
                    residual = next(
                        (bound[n] for n in spec.attn_residual.split("|") if isinstance(bound.get(n), torch.Tensor)),
                        None,
                    )
                    if residual is None:
                        problems.append(
                            f"layer {layer}: the attention module got no argument named {spec.attn_residual!r}."
                        )
                        break
                    want = want + residual
                if spec.attn_norm:
                    want = encoder.submodule(layer, spec.attn_norm)(want)
            if tuple(want.shape) != tuple(out.shape):
                problems.append(
                    f"layer {layer}: W_O·heads has shape {tuple(want.shape)} but the attention module returned "
                    f"{tuple(out.shape)}."
                )
                break
            err = float((want.float() - out.float()).abs().max() / out.float().abs().max().clamp_min(1e-6))
            max_err = max(max_err, err)
            if err > tol:
                problems.append(
                    f"layer {layer}: W_O applied to the hooked heads differs from the attention module's output "
                    f"(relative error {err:.2e} > {tol:.0e}); o_proj / attn / attn_residual / attn_norm do not "
                    "describe this model."
                )
                break
        if not problems and finals and tuple(finals[0].shape) != (1, len(ids), encoder.hidden_size):
            # Layers are read at the blocks' outputs: they must be one residual stream [batch, tokens, hidden].
            problems.append(
                f"the last block returns a tensor of shape {tuple(finals[0].shape)}, expected (1, {len(ids)}, "
                f"{encoder.hidden_size}); the model keeps several residual streams (hyper-connections) or reshapes "
                "the batch, so its layers cannot be read as one vector per token."
            )
        if check_causal and not problems and finals:
            # Every position before the last, not only the first: under local or block-sparse attention the first
            # token may not see the last one in a few layers, while its neighbours do.
            before = finals[0][0, :-1]
            changed = ids[:-1] + [ids[0] if ids[-1] != ids[0] else ids[1]]
            if changed == ids:
                changed = ids[:-1] + [(ids[-1] + 1) % max(2, len(encoder.tokenizer))]
            run(changed)
            causal = bool(torch.allclose(finals[-1][0, :-1].float(), before.float(), atol=1e-6, rtol=1e-5))
    except Exception as exc:  # noqa: BLE001 - any failure of a candidate layout is a finding, not a crash
        problems.append(f"the probe forward pass failed: {type(exc).__name__}: {exc}")
    finally:
        hooks.remove()
    return LayoutReport(ok=not problems, problems=problems, causal=causal, max_rel_error=max_err)
