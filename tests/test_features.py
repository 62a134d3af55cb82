"""What a "head" and a "layer" are, proven against the model's own computation, for every architecture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import ARCHS, build_tiny

from senteval_anatomy.features import POOLINGS, _pool, encode, iter_encode
from senteval_anatomy.models import ARCHITECTURES, Encoder, UnsupportedModelError, load_encoder

SENTS = [
    "the cat sat on the mat .",
    "what is the capital of france ?",
    "dogs bark loudly at night , and the neighbours complain about it every single day .",
    "a",
]


def _reference_heads(arch: str, sentences: list[str]) -> tuple[Encoder, torch.Tensor, torch.Tensor, list]:
    """Rebuild every head as (attention probabilities @ V) from an eager run of the same weights.

    Returns the encoder of the *default* (sdpa where available) model, the reference heads [B, T, L, H, d],
    the attention mask, and the per-block attention outputs captured from the model itself.
    """
    eager_model, tok = build_tiny(arch, seed=0, attn_implementation="eager")
    enc_eager = Encoder.from_model(eager_model, tok, device="cpu")
    spec = enc_eager.spec
    values: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in range(enc_eager.num_layers):
        def grab(mod, args, out, layer=layer):
            values[layer] = out[0] if isinstance(out, (tuple, list)) else out

        hooks.append(enc_eager.submodule(layer, spec.values).register_forward_hook(grab))
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = eager_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    for h in hooks:
        h.remove()
    B, T = batch["input_ids"].shape
    H, d = enc_eager.num_heads, enc_eager.head_dim
    ref = []
    for layer in range(enc_eager.num_layers):
        v = values[layer]
        if spec.values_slice is not None:
            i, parts = spec.values_slice
            w = v.shape[-1] // parts
            v = v[..., i * w : (i + 1) * w]
        kv = v.shape[-1] // d
        v = v.reshape(B, T, kv, d).permute(0, 2, 1, 3)  # [B, kv, T, d]
        v = v.repeat_interleave(H // kv, dim=1)  # grouped-query attention: each KV head serves H/kv query heads
        probs = out.attentions[layer]  # [B, H, T, T]
        ref.append(torch.einsum("bhts,bhsd->bthd", probs, v))
    return enc_eager, torch.stack(ref, 2), batch["attention_mask"], out


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_are_attention_probabilities_times_values(arch, tiny_encoder):
    """Captured heads (default attention kernel) == softmax(QKᵀ/√d)·V rebuilt from the eager model's own weights."""
    enc = tiny_encoder(arch)
    _, ref, mask, _ = _reference_heads(arch, SENTS)
    last = mask.sum(1) - 1
    for pooling in [p for p in POOLINGS if p != "one-past-last"]:  # that one reads an appended token: test_reproduce
        got = encode(enc, SENTS, pooling=pooling).heads
        B, T, L, H, d = ref.shape
        want = _pool(ref.reshape(B, T, -1), mask, last, pooling).reshape(B, L, H, d).numpy()
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4, err_msg=f"{arch} pooling={pooling}")


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_through_output_projection_give_attention_output(arch, tiny_encoder):
    """Concatenated heads passed through the model's own W_O reproduce the attention output exactly."""
    enc = tiny_encoder(arch)
    spec = enc.spec
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in range(enc.num_layers):
        def grab(mod, args, out, layer=layer):
            captured[layer] = (out[0] if isinstance(out, (tuple, list)) else out).detach().clone()

        hooks.append(enc.submodule(layer, spec.attn).register_forward_hook(grab))
    batch = enc.tokenizer(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        enc.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for h in hooks:
        h.remove()
    mask = batch["attention_mask"]
    heads = encode(enc, SENTS, pooling="last").heads  # [B, L, H, d]
    for layer in range(enc.num_layers):
        o_proj = enc.o_proj(layer)
        z = torch.from_numpy(heads[:, layer].reshape(len(SENTS), -1))
        w = o_proj.weight
        # nn.Linear stores (out, in); transformers' Conv1D (GPT-2, GPT) stores (in, out)
        projected = z @ (w if w.shape[0] == z.shape[1] and not isinstance(o_proj, torch.nn.Linear) else w.T)
        if o_proj.bias is not None:
            projected = projected + o_proj.bias
        attn_out = _pool(captured[layer], mask, mask.sum(1) - 1, "last")
        torch.testing.assert_close(projected, attn_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_layers_are_block_outputs(arch, tiny_encoder):
    """layers[:, 0] = embeddings, layers[:, l+1] = output of block l (before any final norm)."""
    enc = tiny_encoder(arch)
    batch = enc.tokenizer(SENTS, padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    with torch.no_grad():
        out = enc.model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
    got = encode(enc, SENTS, pooling="mean").layers
    L = enc.num_layers
    assert got.shape == (len(SENTS), L + 1, enc.hidden_size)
    for i in range(L):
        want = _pool(out.hidden_states[i], mask, mask.sum(1) - 1, "mean").numpy()
        np.testing.assert_allclose(got[:, i], want, atol=1e-5, rtol=1e-5)
    final_norm = getattr(enc.model, "ln_f", None) or getattr(enc.model, "norm", None)
    last = torch.from_numpy(got[:, L])
    if final_norm is not None:  # GPT-2 / Llama: the block output is taken before the final norm, as in the paper
        per_token = _pool(out.last_hidden_state, mask, mask.sum(1) - 1, "last")
        ours = encode(enc, SENTS, pooling="last").layers[:, L]
        torch.testing.assert_close(final_norm(torch.from_numpy(ours)), per_token, atol=1e-5, rtol=1e-5)
    else:
        want = _pool(out.last_hidden_state, mask, mask.sum(1) - 1, "mean")
        torch.testing.assert_close(last, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_batch_invariance(arch, pooling, tiny_encoder):
    """A sentence alone and inside a padded batch of longer sentences gets the same vectors."""
    enc = tiny_encoder(arch)
    together = encode(enc, SENTS, pooling=pooling, batch_size=len(SENTS))
    for i, s in enumerate(SENTS):
        alone = encode(enc, [s], pooling=pooling)
        np.testing.assert_allclose(alone.heads[0], together.heads[i], atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(alone.layers[0], together.layers[i], atol=2e-5, rtol=1e-4)


def test_last_pooling_reads_the_last_real_token_not_one_past_it(tiny_encoder):
    """The reference code read one token past the sentence for GPT models; we read the last real one."""
    enc = tiny_encoder("gpt2")
    s = "the cat sat on the mat ."
    ids = enc.tokenizer(s)["input_ids"]
    prefix = enc.tokenizer.decode(ids[:-1])
    full = encode(enc, [s], pooling="last").layers[0]
    # Causal model: the last token's state depends on the full sentence; dropping that token changes it.
    shorter = encode(enc, [prefix], pooling="last").layers[0]
    assert not np.allclose(full[1:], shorter[1:])
    # And padding after the sentence (a longer batch-mate) does not move the pooled position.
    padded = encode(enc, [s, s + " and then it slept for a very long time ."], pooling="last").layers[0]
    np.testing.assert_allclose(full, padded, atol=2e-5)


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


def test_unsupported_architecture_lists_supported(tmp_path):
    from transformers import T5Config

    cfg = T5Config(d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=16, vocab_size=100)
    cfg.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError) as err:
        load_encoder(tmp_path, device="cpu")
    assert "'t5'" in str(err.value) and "bert" in str(err.value) and "gpt2" in str(err.value)


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
        assert spec.blocks and spec.o_proj and spec.values and spec.attn, model_type
