"""What a "head" and a "layer" are, proven against the model's own computation, for every architecture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import _bpe_tokenizer

from senteval_anatomy.encoders.architectures import ARCHITECTURES, UnsupportedModelError
from senteval_anatomy.encoders.encoding import POOLINGS, encode, iter_encode
from senteval_anatomy.encoders.loading import load_encoder

SENTS = [
    "the cat sat on the mat .",
    "what is the capital of france ?",
    "dogs bark loudly at night , and the neighbours complain about it every single day .",
    "a",
]


# Per-architecture proofs (heads rebuilt from q/k/v, W_O through the attention module, layers, padding invariance,
# the last real token) for every supported type live in test_architectures.py.


def test_order_and_duplicates_and_empty(tiny_encoder):
    enc = tiny_encoder("bert")
    sents = ["b c d", "", "a", "b c d"]
    f = encode(enc, sents, batch_size=2)
    np.testing.assert_allclose(f.heads[0], f.heads[3], atol=1e-6)
    for i, s in enumerate(sents):
        np.testing.assert_allclose(encode(enc, [s]).heads[0], f.heads[i], atol=2e-5)
    # GPT-2 tokenizes "" to nothing; it still gets a vector (from the BOS/EOS token)
    g = encode(tiny_encoder("gpt2"), ["", "x"])
    assert np.isfinite(g.heads).all()


def test_iter_encode_yields_every_sentence_once_longest_first(tiny_encoder):
    enc = tiny_encoder("bert")
    sents = [" ".join(["w"] * n) for n in (3, 9, 1, 5, 7)]
    batches = list(iter_encode(enc, sents, batch_size=2))
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(len(sents)))
    assert seen.tolist()[:2] == [1, 4]
    assert batches[0].heads.shape == (2, enc.num_layers, enc.num_heads, enc.head_dim)


def test_truncation_counted_with_one_warning(tiny_encoder):
    enc = tiny_encoder("bert", max_length=8)
    long = " ".join(["word"] * 30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = encode(enc, [long, long + " x", "short one"])
    msgs = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(msgs) == 1 and msgs[0].startswith("2 of 3 sentences")
    assert f.n_truncated == 2


def test_head_dim_comes_from_config_not_hidden_over_heads(tiny_encoder):
    enc = tiny_encoder("llama")
    assert enc.hidden_size == 32 and enc.num_heads == 4 and enc.head_dim == 16
    assert encode(enc, ["hello"]).heads.shape == (1, 2, 4, 16)


def test_bundled_minilm_offline_deterministic_and_real(minilm):
    assert (minilm.num_layers, minilm.num_heads, minilm.head_dim, minilm.hidden_size) == (6, 12, 32, 384)
    sents = ["A man is playing a guitar .", "A person plays the guitar .", "The stock market fell sharply today ."]
    a = encode(minilm, sents, pooling="mean")
    b = encode(minilm, sents, pooling="mean")
    np.testing.assert_array_equal(a.heads, b.heads)
    np.testing.assert_array_equal(a.layers, b.layers)
    # Real trained weights: the two guitar sentences are far closer than the unrelated one (random weights fail this).
    v = a.layers[:, -1] / np.linalg.norm(a.layers[:, -1], axis=1, keepdims=True)
    assert v[0] @ v[1] > 0.6 and v[0] @ v[1] - v[0] @ v[2] > 0.4


def test_errors_are_clear(tiny_encoder, tmp_path):
    enc = tiny_encoder("bert")
    with pytest.raises(UnsupportedModelError, match="not a bundled short name"):
        load_encoder("no-such-model-anywhere-xyz", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedModelError, match="no config.json"):
        load_encoder(tmp_path / "empty", device="cpu")
    with pytest.raises(ValueError, match="empty"):
        encode(enc, [])
    with pytest.raises(TypeError, match="sentence 1 is a list"):
        encode(enc, ["ok", ["not", "joined"]])
    with pytest.raises(TypeError, match="not one string"):
        encode(enc, "a single string")
    with pytest.raises(ValueError, match="pooling='max'"):
        encode(enc, ["x"], pooling="max")


def test_a_saved_model_outside_the_table_loads_by_discovery(tmp_path):
    """load_encoder on a folder of a type the table lacks: discovered, validated, recorded, and usable."""
    from transformers import Starcoder2Config, Starcoder2Model

    from senteval_anatomy.encoders.architectures import ARCHITECTURES as table

    tok = _bpe_tokenizer("llama")
    cfg = Starcoder2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    assert cfg.model_type not in table
    Starcoder2Model(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="'starcoder2' is not in senteval_anatomy's table"):
        enc = load_encoder(tmp_path, device="cpu")
    assert enc.layout == "discovered" and enc.spec.o_proj == "self_attn.o_proj" and enc.default_pooling == "last"
    assert encode(enc, ["a b c", "d"]).heads.shape == (2, 2, 4, 8)


def test_fingerprint_tracks_weights_and_local_dir_loading(tiny_encoder, tmp_path):
    enc = tiny_encoder("bert", seed=3)
    fp = enc.fingerprint()
    assert fp == enc.fingerprint()
    enc.model.save_pretrained(tmp_path)
    enc.tokenizer.save_pretrained(tmp_path)
    again = load_encoder(tmp_path, device="cpu")
    assert again.fingerprint() == fp
    np.testing.assert_allclose(encode(again, ["a b c"]).heads, encode(enc, ["a b c"]).heads, atol=1e-6)
    with torch.no_grad():
        again.model.encoder.layer[0].attention.output.dense.weight.add_(0.01)
    assert again.fingerprint() != fp


def test_every_table_entry_is_complete():
    for model_type, spec in ARCHITECTURES.items():
        assert spec.default_pooling in POOLINGS, model_type
        assert spec.blocks and spec.o_proj and spec.attn, model_type
        assert (spec.default_pooling == "last") == spec.causal, model_type
