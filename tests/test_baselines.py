"""The untrained baseline: same architecture, model's own random init, reproducible, never mixed with the trained."""

from __future__ import annotations

import numpy as np
import torch

from senteval_anatomy.encoders.baselines import untrained_encoder, untrained_name
from senteval_anatomy.encoders.encoding import encode

SENTENCES = ["the cat sat on the mat .", "what is the capital of france ?", "dogs bark ."]


def test_untrained_is_reproducible_and_distinct(tiny_encoder):
    enc = tiny_encoder("bert", seed=0)  # built by from_config under torch.manual_seed(0): the baseline seed 0 IS it
    before = torch.random.get_rng_state()
    a, b, c = untrained_encoder(enc, seed=7), untrained_encoder(enc, seed=7), untrained_encoder(enc, seed=8)
    assert untrained_encoder(enc, seed=0).fingerprint() != enc.fingerprint()  # same weights, other name/revision
    assert torch.equal(torch.random.get_rng_state(), before), "building a baseline must not move the global RNG"
    assert a.fingerprint() == b.fingerprint()
    assert len({a.fingerprint(), c.fingerprint(), enc.fingerprint()}) == 3
    assert a.name == untrained_name(enc.name, 7) != c.name
    fa, fb, fe = (encode(x, SENTENCES) for x in (a, b, enc))
    np.testing.assert_array_equal(fa.heads, fb.heads)
    np.testing.assert_array_equal(fa.layers, fb.layers)
    assert not np.allclose(fa.heads, fe.heads)
    assert (a.num_layers, a.num_heads, a.head_dim, a.hidden_size) == (enc.num_layers, enc.num_heads, enc.head_dim,
                                                                      enc.hidden_size)


def test_untrained_uses_the_models_own_init(minilm):
    """BERT's _init_weights: Linear weights ~ N(0, initializer_range), LayerNorm weight 1 and bias 0."""
    u = untrained_encoder(minilm, seed=3)
    w = u.o_proj(0).weight.detach()
    assert abs(float(w.std()) - minilm.model.config.initializer_range) < 2e-3
    ln = u.blocks[0].attention.output.LayerNorm
    assert torch.equal(ln.weight.detach(), torch.ones_like(ln.weight)) and not ln.bias.detach().any()
    assert u.fingerprint() != minilm.fingerprint()
