"""Head ablation: exactly the head's slice changes, nothing upstream; the model's own losses respond."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORPUS, _config, _minilm_tokenizer

from senteval_anatomy.encoders.ablation import (
    ablate_heads,
    ablation_reference,
    ablation_scan,
    head_means,
    model_score,
    topk_ablation_curve,
)
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.encoders.encoding import encode

SENTENCES = list(dict.fromkeys(CORPUS))


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablation_changes_exactly_that_heads_slice(tiny_encoder, arch, mode):
    enc = tiny_encoder(arch)
    L, H = enc.num_layers, enc.num_heads
    layer, head = L - 1, 2
    means = head_means(enc, SENTENCES) if mode == "mean" else None
    clean = encode(enc, SENTENCES, pooling="mean")
    with ablate_heads(enc, [(layer, head)], mode=mode, means=means):
        abl = encode(enc, SENTENCES, pooling="mean")
    others = [h for h in range(H) if h != head]
    np.testing.assert_array_equal(abl.heads[:, :layer], clean.heads[:, :layer])  # earlier layers: untouched
    np.testing.assert_array_equal(abl.heads[:, layer, others], clean.heads[:, layer, others])  # same layer, others
    want = np.zeros_like(clean.heads[:, layer, head]) if mode == "zero" else np.broadcast_to(
        means[layer, head], clean.heads[:, layer, head].shape)
    np.testing.assert_allclose(abl.heads[:, layer, head], want, rtol=1e-6, atol=1e-7)  # the slice itself
    assert not np.allclose(abl.heads[:, layer, head], clean.heads[:, layer, head])
    np.testing.assert_array_equal(abl.layers[:, : layer + 1], clean.layers[:, : layer + 1])  # upstream residual
    assert not np.allclose(abl.layers[:, layer + 1], clean.layers[:, layer + 1])  # the block's output moves
    # hooks are gone afterwards
    np.testing.assert_array_equal(encode(enc, SENTENCES, pooling="mean").heads, clean.heads)


def test_ablation_rejects_bad_input(tiny_encoder):
    enc = tiny_encoder("bert")
    with pytest.raises(ValueError, match=r"heads\[0\] layer=5: out of range"):
        with ablate_heads(enc, [(5, 0)]):
            pass
    with pytest.raises(ValueError, match="needs means"):
        with ablate_heads(enc, [(0, 0)], mode="mean"):
            pass


def test_mlm_and_clm_losses_respond_to_ablation(tiny_encoder):
    from transformers import BertForMaskedLM, GPT2LMHeadModel

    tok = _minilm_tokenizer()
    torch.manual_seed(0)
    mlm = BertForMaskedLM(_config("bert", len(tok)))
    enc = Encoder.from_model(mlm, tok, name="tiny-mlm", device="cpu")
    assert enc.model is mlm.bert
    base, _ = model_score(enc, SENTENCES, measure="mlm", lm_model=mlm)
    again, _ = model_score(enc, SENTENCES, measure="mlm", lm_model=mlm)
    assert base == again and np.isfinite(base)  # same seed, same masked positions
    scan = ablation_scan(enc, SENTENCES, heads=[(0, 1), (1, 3)], lm_model=mlm)
    assert list(scan["measure"]) == ["mlm", "mlm"] and (scan["baseline"] == base).all()
    assert (scan["delta"].abs() > 0).all()
    with pytest.raises(ValueError, match="base model"):
        model_score(tiny_encoder("bert"), SENTENCES, measure="mlm", lm_model=mlm)

    gpt_enc = tiny_encoder("gpt2")
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(gpt_enc.model.config)
    lm.transformer = gpt_enc.model  # the LM head on the encoder's own weights
    scan = ablation_scan(gpt_enc, SENTENCES, heads=[(1, 0)], lm_model=lm)
    assert scan.loc[0, "measure"] == "clm" and scan.loc[0, "delta"] != 0


def test_embedding_shift_without_lm_head(tiny_encoder):
    enc = tiny_encoder("bert")
    scan = ablation_scan(enc, SENTENCES[:6], heads=[(0, 0), (1, 1)], mode="mean", reference=SENTENCES[6:])
    assert (scan["measure"] == "embedding").all() and (scan["baseline"] == 0).all()
    assert (scan["delta"] > 0).all() and (scan["delta"] < 1).all()


def test_topk_ablation_curve(tiny_encoder):
    enc = tiny_encoder("bert")
    curve = topk_ablation_curve(enc, SENTENCES, [(1, 0), (0, 3), (1, 2)], ks=[1, 3], n_random=2)
    assert list(curve["k"]) == [1, 1, 3, 3] and list(curve["kind"]) == ["top", "random"] * 2
    single = ablation_scan(enc, SENTENCES, heads=[(1, 0)])
    assert curve.loc[0, "delta"] == pytest.approx(single.loc[0, "delta"])  # k = 1 is the head's own ablation
    assert curve["delta"].gt(0).all() and curve.loc[1, "delta_sd"] >= 0
    with pytest.raises(ValueError, match="outside"):
        topk_ablation_curve(enc, SENTENCES, [(1, 0)], ks=[2])


def test_mean_ablation_means_come_from_the_reference_not_the_evaluated_sentences(tiny_encoder):
    """mode="mean" substitutes the heads' mean context over ``reference`` (training sentences), never over the
    sentences it is measured on; without a reference, or with the evaluated sentences as reference, it refuses."""
    from senteval_anatomy.engine.registry import get_task
    from senteval_anatomy.engine.tasks import Task

    enc = tiny_encoder("bert")
    evaluated, train = SENTENCES[:6], SENTENCES[6:]
    scan = ablation_scan(enc, evaluated, heads=[(1, 2)], mode="mean", reference=train)
    base, ref = model_score(enc, evaluated, measure="embedding")
    with ablate_heads(enc, [(1, 2)], mode="mean", means=head_means(enc, train)):
        want = model_score(enc, evaluated, measure="embedding", reference=ref)[0] - base
    with ablate_heads(enc, [(1, 2)], mode="mean", means=head_means(enc, evaluated)):
        own = model_score(enc, evaluated, measure="embedding", reference=ref)[0] - base
    assert scan.loc[0, "delta"] == pytest.approx(want) and want != pytest.approx(own)
    curve = topk_ablation_curve(enc, evaluated, [(1, 2)], ks=[1], n_random=1, mode="mean", reference=train)
    assert curve.loc[0, "delta"] == pytest.approx(want)
    with pytest.raises(ValueError, match="reference="):
        ablation_scan(enc, evaluated, heads=[(1, 2)], mode="mean")
    with pytest.raises(ValueError, match="very sentences"):
        ablation_scan(enc, evaluated, heads=[(1, 2)], mode="mean", reference=list(evaluated))
    # The task's reference: its training sentences, never its test sentences.
    split = lambda ss: [s.split() for s in ss]  # noqa: E731
    task = Task(get_task("Tense"), {"train": {"X": split(train), "y": [0] * len(train)},
                                    "test": {"X": split(evaluated), "y": [0] * len(evaluated)}}, [])
    assert ablation_reference(task) == list(dict.fromkeys(" ".join(s) for s in split(train)))
    assert not set(ablation_reference(task)) & set(" ".join(s) for s in split(evaluated))
