"""The model a fine-tuning run trains: the transformer plus the paper's classifier on one readout (:mod:`.readouts`).

Why the sweep's hooks: a "top-k heads" readout must be the very vectors the sweep scored when it ranked those heads
(the head context softmax(QKᵀ/√d)·V before the output projection, pooled the same way). The classifier therefore
reads the pooled tensors that :class:`senteval_anatomy.encoders.encoding.FeatureHooks` collects in every forward pass, the same
hooks ``encode()`` and every sweep use; outside ``inference_mode`` they keep their autograd graph, so the whole
transformer is trained through them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..encoders.encoding import FeatureHooks
from .readouts import Readout

__all__ = ["ReadoutClassifier"]


class ReadoutClassifier(nn.Module):
    """The transformer plus the paper's classifier (dense → tanh → dropout → linear) on one readout.

    ``forward`` returns ``{"loss", "logits"}`` (the Trainer's contract). ``n_labels == 1`` is regression (MSE on the
    raw score), otherwise cross-entropy. :meth:`features` and :meth:`classify` split the forward pass at the readout,
    so that a test can check that the gradient reaches only the chosen heads there.
    """

    def __init__(self, encoder: Any, readout: Readout, n_labels: int, *, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
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
