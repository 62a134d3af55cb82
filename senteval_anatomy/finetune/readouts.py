"""What the fine-tuning classifier reads: a parsed ``--read`` (:class:`ReadSpec`) and the resolved representation
(:class:`Readout`). Plain data and parsing, no torch, so the ``finetune`` command checks its arguments (and answers
``--help``) without loading a model; the classifier that trains on a readout is :mod:`.classifier`.

Readouts (``--read``):

* ``last``: the output of the last block (layers view index ``L``);
* ``best-layer``: the block with the best dev score in a sweep (resolved by :mod:`.choosing`, then a ``layer:N``);
* ``topk``: the top-k heads ranked on dev, k chosen on dev (resolved to ``heads:...``);
* ``layer:N``: the output of block ``N`` (0-based; ``-1`` = the embeddings output);
* ``heads:L,H;L,H``: those heads' contexts, concatenated in the order given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["READ_FORMS", "Readout", "ReadSpec", "check_read", "parse_read"]

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
