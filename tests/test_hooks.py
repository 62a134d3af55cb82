"""encoders.hooks: the one home of raw torch hooks reads and edits W_O's input however the model passes it."""

from __future__ import annotations

import pytest
import torch

from senteval_anatomy.encoders.hooks import HookSet, on_block_input, on_heads, on_output


@pytest.mark.parametrize("by_keyword", [False, True])
def test_on_heads_reads_and_replaces_the_input_positional_or_keyword(by_keyword):
    """Models call W_O positionally (BERT) or by keyword; a reading hook sees the same tensor, an editing hook's
    tensor is what the projection computes on, and closing the HookSet removes both."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 5, 4)

    def call() -> torch.Tensor:
        return lin(input=x) if by_keyword else lin(x)

    seen: list[torch.Tensor] = []
    with HookSet() as hooks:
        hooks.add(on_heads(lin, lambda h: seen.append(h.clone())))
        hooks.add(on_heads(lin, lambda h: torch.zeros_like(h), prepend=True))  # runs first: readers see zeros
        out = call()
    assert len(seen) == 1 and torch.equal(seen[0], torch.zeros_like(x))
    assert torch.allclose(out, lin.bias.expand_as(out))
    assert torch.equal(call(), lin(x))  # removed on exit
    assert not lin._forward_pre_hooks


def test_block_input_and_output_hooks_read_the_hidden_states():
    class Block(torch.nn.Module):
        def forward(self, hidden_states, mask=None):
            return (hidden_states * 2, "attention weights")

    block = Block()
    x = torch.ones(1, 2, 3)
    got: dict[str, torch.Tensor] = {}
    with HookSet() as hooks:
        hooks.add(on_block_input(block, lambda h: got.setdefault("in", h)))
        hooks.add(on_output(block, lambda h: got.setdefault("out", h)))
        block(hidden_states=x, mask=None)
    assert torch.equal(got["in"], x) and torch.equal(got["out"], 2 * x)
    with pytest.raises(RuntimeError), HookSet() as hooks:  # removed also when the forward pass raises
        hooks.add(on_output(block, lambda h: (_ for _ in ()).throw(RuntimeError("boom"))))
        block(x)
    assert not block._forward_hooks
