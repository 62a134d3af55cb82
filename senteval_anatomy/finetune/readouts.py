"""What the fine-tuning classifier reads: a parsed ``--read`` and the model that trains on it.

Why the sweep's hooks: a "top-k heads" readout must be the very vectors the sweep scored when it ranked those heads
(the head context softmax(QKᵀ/√d)·V before the output projection, pooled the same way). The classifier therefore
reads the pooled tensors that :class:`senteval_anatomy.encoders.encoding.FeatureHooks` collects in every forward pass, the same
hooks ``encode()`` and every sweep use; outside ``inference_mode`` they keep their autograd graph, so the whole
transformer is trained through them.

Readouts (``--read``):

* ``last``: the output of the last block (layers view index ``L``);
* ``best-layer``: the block with the best dev score in a sweep (resolved by :mod:`.selection`, then a ``layer:N``);
* ``topk``: the top-k heads ranked on dev, k chosen on dev (resolved to ``heads:...``);
* ``layer:N``: the output of block ``N`` (0-based; ``-1`` = the embeddings output);
* ``heads:L,H;L,H``: those heads' contexts, concatenated in the order given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["READ_FORMS", "Readout", "ReadoutClassifier", "ReadSpec", "check_read", "parse_read"]

#: The accepted forms of ``--read`` (the help text and error messages list these).
READ_FORMS = ("last", "best-layer", "topk", "topk:K", "layer:N", "heads:L,H;L,H")


@dataclass(frozen=True)
class ReadSpec:
    """A parsed ``--read``: ``kind`` is one of last, best-layer, topk, layer, heads."""

    text: str
    kind: str
    layer: int | None = None
    heads: tuple[tuple[int, int], ...] = ()
    k: int | None = None  # topk:K fixes k (otherwise k is chosen on dev)

    @property
    def needs_selection(self) -> bool:
        """Whether a sweep's dev scores must choose what is read (best-layer, topk)."""
        return self.kind in ("best-layer", "topk")


def parse_read(text: str) -> ReadSpec:
    """Parse one ``--read`` value; ``ValueError`` with the accepted forms for anything else."""
    t = str(text).strip()
    forms = ", ".join(READ_FORMS)
    if t in ("last", "best-layer", "topk"):
        return ReadSpec(t, t)
    m = re.fullmatch(r"topk:(\d+)", t)
    if m:
        k = int(m.group(1))
        if k < 1:
            raise ValueError(f"--read {t!r}: k must be >= 1")
        return ReadSpec(t, "topk", k=k)
    m = re.fullmatch(r"layer:(-?\d+)", t)
    if m:
        return ReadSpec(t, "layer", layer=int(m.group(1)))
    if t.startswith("heads:"):
        pairs = []
        for item in t[len("heads:"):].split(";"):
            m = re.fullmatch(r"\s*(-?\d+)\s*,\s*(\d+)\s*", item)
            if not m:
                raise ValueError(f"--read {t!r}: {item!r} is not 'LAYER,HEAD'; write e.g. heads:0,1;5,3")
            pairs.append((int(m.group(1)), int(m.group(2))))
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"--read {t!r}: a head is named twice")
        return ReadSpec(t, "heads", heads=tuple(pairs))
    raise ValueError(f"--read {t!r} is unknown; use one of {forms}")


def check_read(spec: ReadSpec, num_layers: int, num_heads: int) -> ReadSpec:
    """Check a readout's layer/heads against the model (``ValueError`` naming the range); negative layers of
    ``heads:`` count from the end, as ``--head`` does elsewhere. Returns the spec with layers made non-negative."""
    if spec.kind == "layer":
        assert spec.layer is not None
        if not -1 <= spec.layer < num_layers:
            raise ValueError(f"--read {spec.text!r}: layer {spec.layer} is out of range; this model has blocks "
                             f"0..{num_layers - 1} (-1 = the embeddings output)")
    if spec.kind == "heads":
        fixed = []
        for layer, head in spec.heads:
            real = layer + num_layers if layer < 0 else layer
            if not 0 <= real < num_layers or not 0 <= head < num_heads:
                raise ValueError(f"--read {spec.text!r}: head {layer},{head} is out of range; this model has "
                                 f"layers 0..{num_layers - 1} and heads 0..{num_heads - 1}")
            fixed.append((real, head))
        return ReadSpec(spec.text, "heads", heads=tuple(fixed))
    if spec.kind == "topk" and spec.k is not None and spec.k > num_layers * num_heads:
        raise ValueError(f"--read {spec.text!r}: k={spec.k} is more than the model's {num_layers * num_heads} heads")
    return spec


@dataclass(frozen=True)
class Readout:
    """A resolved readout: the representation the classifier reads and how it was chosen.

    ``view`` is ``layers`` (``layer`` = block index, -1 = embeddings) or ``heads`` (``heads`` = (layer, head) pairs).
    ``requested`` is what the user asked for (``best-layer``), ``selection`` how it was resolved (for the rows).
    """

    requested: str
    view: str
    layer: int | None = None
    heads: tuple[tuple[int, int], ...] = ()
    selection: str = "fixed"

    @property
    def representation(self) -> str:
        """Resolved name, e.g. ``layer:5`` or ``heads:3,1;5,0``."""
        if self.view == "layers":
            return f"layer:{self.layer}"
        return "heads:" + ";".join(f"{a},{b}" for a, b in self.heads)

    @classmethod
    def fixed(cls, spec: ReadSpec, num_layers: int) -> Readout:
        """The readout of a spec that needs no sweep (last, layer:N, heads:...)."""
        if spec.kind == "last":
            return cls(spec.text, "layers", layer=num_layers - 1)
        if spec.kind == "layer":
            return cls(spec.text, "layers", layer=spec.layer)
        if spec.kind == "heads":
            return cls(spec.text, "heads", heads=spec.heads)
        raise ValueError(f"--read {spec.text!r} needs a sweep's dev scores to be resolved")


class ReadoutClassifier(nn.Module):
    """The transformer plus the paper's classifier (dense → tanh → dropout → linear) on one readout.

    ``forward`` returns ``{"loss", "logits"}`` (the Trainer's contract). ``n_labels == 1`` is regression (MSE on the
    raw score), otherwise cross-entropy. :meth:`features` and :meth:`classify` split the forward pass at the readout,
    so that a test can check that the gradient reaches only the chosen heads there.
    """

    def __init__(self, encoder: Any, readout: Readout, n_labels: int, *, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
        from ..encoders.encoding import FeatureHooks

        self.encoder_model = encoder.model  # registered: trained, saved and moved with this module
        self.readout = readout
        self.n_labels = int(n_labels)
        self.pooling = pooling
        self._hooks = FeatureHooks(encoder, pooling, (readout.view,))
        self._hooks.__enter__()  # hooks stay on the model for the classifier's life (removed by :meth:`close`)
        if readout.view == "layers":
            width = encoder.hidden_size
            self.register_buffer("_index", torch.tensor([readout.layer + 1]), persistent=False)
        else:
            width = encoder.head_dim * len(readout.heads)
            flat = [layer * encoder.num_heads + head for layer, head in readout.heads]
            self.register_buffer("_index", torch.tensor(flat), persistent=False)
        self.num_layers, self.num_heads = encoder.num_layers, encoder.num_heads
        self.dense = nn.Linear(width, encoder.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.hidden_size, self.n_labels)

    def close(self) -> None:
        """Remove the hooks from the transformer (a model saved for probing must not carry them)."""
        self._hooks.__exit__(None, None, None)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Every pooled vector of the readout's view, as the sweep reads it: heads ``[n, L, H, d]`` or layers
        ``[n, L + 1, D]``."""
        hooks = self._hooks
        hooks.mask = attention_mask
        hooks.last = attention_mask.sum(1) - 1
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        self.encoder_model(**kwargs)
        heads, layers = hooks.collect(int(input_ids.shape[0]))
        return heads if self.readout.view == "heads" else layers  # type: ignore[return-value]

    def read(self, feats: torch.Tensor) -> torch.Tensor:
        """The readout's vector ``[n, width]`` from :meth:`features`' tensor (chosen heads concatenated in order)."""
        n = feats.shape[0]
        if self.readout.view == "layers":
            return feats[:, self._index[0]]
        flat = feats.reshape(n, self.num_layers * self.num_heads, -1)
        return flat[:, self._index].reshape(n, -1)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits (or the predicted score, ``[n, 1]``) from :meth:`features`' tensor."""
        x = self.read(feats).to(self.dense.weight.dtype)
        return self.out(self.dropout(torch.tanh(self.dense(x))))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.classify(self.features(input_ids, attention_mask, token_type_ids))
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            if self.n_labels == 1:
                out["loss"] = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                out["loss"] = nn.functional.cross_entropy(logits, labels.long())
        return out
