"""Reference encoders a finding is measured against: the same architecture with random weights.

An untrained transformer already encodes a lot of surface information (length, word identity) in its heads and
layers (Jawahar et al. 2019 compared every BERT layer with an untrained BERT). A head's probing accuracy is only
evidence that *training* put something there if it beats the same head of the untrained model. This module builds
that model: the trained encoder's own config, re-initialised by the model's own ``_init_weights`` under a fixed torch
seed (what ``AutoModel.from_config`` does), with the trained encoder's tokenizer.

The untrained encoder has its own weights, hence its own :meth:`Encoder.fingerprint`, and its own name
(``"<name>+untrained:<seed>"``), so feature caches and result tables never mix it with the trained one.
"""

from __future__ import annotations

import torch

from .encoder import Encoder

__all__ = ["UNTRAINED_SUFFIX", "untrained_encoder", "untrained_name"]

#: Marks an untrained baseline in encoder names (results, caches, plots): ``"minilm+untrained:0"``.
UNTRAINED_SUFFIX = "+untrained"


def untrained_name(name: str, seed: int) -> str:
    """The one name of the untrained twin of encoder ``name`` initialised with ``seed``."""
    return f"{name}{UNTRAINED_SUFFIX}:{int(seed)}"


def untrained_encoder(encoder: Encoder, seed: int = 0) -> Encoder:
    """The same architecture as ``encoder`` with random weights from the model's own initialisation.

    Parameters
    ----------
    encoder : Encoder
        The trained encoder; its config, tokenizer, device, dtype and ``max_length`` are reused.
    seed : int
        Torch seed of the initialisation: the same seed gives bit-identical weights (and fingerprint) on the same
        torch version and device, so an untrained baseline is reproducible.

    Notes
    -----
    The global torch RNG is restored afterwards, so building a baseline does not change any later random draw of
    the caller.
    """
    from transformers import AutoModel

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    config = encoder.model.config
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModel.from_config(config, dtype=encoder.dtype)
    finally:
        torch.random.set_rng_state(state)
    return Encoder.from_model(model, encoder.tokenizer, name=untrained_name(encoder.name, seed),
                              device=encoder.device, max_length=encoder.max_length,
                              revision=untrained_name(str(encoder.revision), seed))
