"""Fine-tuning on the heads and layers a sweep found (the second half of Jo & Myaeng 2020), and what it did to them.

* :func:`finetune` (``senteval-anatomy finetune``): a model fine-tuned end to end on a SentEval task or a GLUE folder,
  with the paper's classifier (dense → tanh → dropout → linear) on ``last``, ``best-layer``, ``topk``, ``layer:N`` or
  ``heads:L,H;L,H``, over seeds, on the Hugging Face ``Trainer``; selection on dev only.
* :func:`probe_after`: the fine-tuned models swept again with the pretrained sweep's settings; Δ per head and layer.
* :mod:`.grid`: the paper's fine-tuning grid and its released numbers (``reproduce --finetune``).

Modules: :mod:`.readouts` (``--read`` parsed and resolved), :mod:`.settings` (the training settings and the paper's
preset), :mod:`.classifier` (the model trained on a readout), :mod:`.data` (splits, held-out dev, GLUE folders),
:mod:`.choosing` (best-layer / top-k on dev), :mod:`.training` (one keyed, resumable run), :mod:`.comparison`
(mean, s.d., paired tests), :mod:`.experiment` (the whole call), :mod:`.reprobe` (:func:`probe_after`),
:mod:`.checks` (argument checks), :mod:`.cli`. ``readouts``, ``settings``, ``checks`` and ``cli`` need no torch, so
``finetune --help`` and its argument checks answer at once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["finetune", "probe_after"]


def finetune(*args: Any, **kwargs: Any) -> Any:
    """See :func:`senteval_anatomy.finetune.experiment.finetune` (imported lazily: transformers' Trainer is heavy)."""
    # lazy: start-up time (torch, transformers' Trainer): `finetune --help` runs this __init__
    from .experiment import finetune as run

    return run(*args, **kwargs)


def probe_after(*args: Any, **kwargs: Any) -> Any:
    """See :func:`senteval_anatomy.finetune.reprobe.probe_after`."""
    # lazy: start-up time (torch, transformers' Trainer): `finetune --help` runs this __init__
    from .reprobe import probe_after as run

    return run(*args, **kwargs)
