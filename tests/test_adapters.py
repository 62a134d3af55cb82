"""The adapters against a SentEval-style driver written from the protocol spec (no SentEval installed)."""

from __future__ import annotations

import numpy as np
import pytest

from senteval_anatomy.adapters import HeadAdapter, HeadsAdapter, LayerAdapter
from senteval_anatomy.encoders.encoding import encode
from senteval_anatomy.store import FeatureStore


class DotDict(dict):
    """SentEval's params object: attribute access, missing keys read as None."""

    def __getattr__(self, key):
        return self.get(key)

    def __setattr__(self, key, value):
        self[key] = value


def drive(params, batcher, prepare, task_name, splits, pair=False):
    """What SentEval's engine does for one task: prepare once with all sentences, then sorted, batched calls.

    ``splits`` maps split name -> (sentences A as token lists, [sentences B], labels). Returns, per split, the
    embeddings in sorted order and the sorted labels, exactly as SentEval hands them to its classifiers.
    """
    params.current_task = task_name
    samples = []
    for a, b, _ in splits.values():
        samples += a + (b if pair else [])
    prepare(params, samples)
    out = {}
    for split, (a, b, y) in splits.items():
        if pair:
            order = sorted(zip(a, b, y), key=lambda z: (len(z[0]), len(z[1]), z[2]))
            a_s, b_s, y_s = map(list, zip(*order))
            embs = []
            for side in (a_s, b_s):  # all A batches of a split, then all B batches
                chunks = [batcher(params, side[i : i + params.batch_size]) for i in range(0, len(side), params.batch_size)]
                embs.append(np.vstack(chunks))
            out[split] = (embs[0], embs[1], y_s, a_s, b_s)
        else:
            order = sorted(zip(a, y), key=lambda z: (len(z[0]), z[1]))
            a_s, y_s = map(list, zip(*order))
            chunks = [batcher(params, a_s[i : i + params.batch_size]) for i in range(0, len(a_s), params.batch_size)]
            out[split] = (np.vstack(chunks), y_s, a_s)
    return out


TRAIN = [s.split() for s in [
    "the cat sat on the mat .", "what is the capital of france ?", "dogs bark .", "", "a b c d e f g h",
    "it rains", "she had never seen such a garden .", "how many people live in tokyo ?", "x",
]]
TEST = [s.split() for s in ["the dog sat .", "", "who wrote hamlet ?", "it rains"]]


@pytest.fixture()
def store(tmp_path):
    return FeatureStore(tmp_path / "cache")


def _count_forwards(encoder):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1

    handle = encoder.model.register_forward_pre_hook(hook)
    return calls, handle


def test_single_sentence_task_shapes_row_order_and_one_encoding(tiny_encoder, store):
    enc = tiny_encoder("bert")
    params = DotDict(batch_size=4, task_path="unused")
    splits = {"train": (TRAIN, None, list(range(len(TRAIN)))), "test": (TEST, None, [0, 1, 0, 1])}
    calls, handle = _count_forwards(enc)
    try:
        head = HeadAdapter(enc, layer=1, head=2, store=store)
        out = drive(params, head.batcher, head.prepare, "TREC", splits)
        n_forward_first = calls["n"]
        assert n_forward_first > 0
        # A second adapter on the same encoder and task reuses the features: no forward pass at all.
        layer = LayerAdapter(enc, layer=-1, store=store)
        out_layer = drive(params, layer.batcher, layer.prepare, "TREC", splits)
        heads = HeadsAdapter(enc, [(1, 2), (0, 3)], store=store)
        out_heads = drive(params, heads.batcher, heads.prepare, "TREC", splits)
        assert calls["n"] == n_forward_first
    finally:
        handle.remove()
    for split, (emb, _, sents) in out.items():
        assert emb.dtype == np.float32 and emb.shape == (len(sents), enc.head_dim)
        direct = encode(enc, [" ".join(s) for s in sents])
        np.testing.assert_allclose(emb, direct.heads[:, 1, 2], atol=2e-5)  # row i = batch[i]
        np.testing.assert_allclose(out_layer[split][0], direct.layers[:, -1], atol=2e-5)
        assert out_layer[split][0].shape == (len(sents), enc.hidden_size)
        cat = out_heads[split][0]
        assert cat.shape == (len(sents), 2 * enc.head_dim)
        np.testing.assert_allclose(cat[:, : enc.head_dim], direct.heads[:, 1, 2], atol=2e-5)
        np.testing.assert_allclose(cat[:, enc.head_dim :], direct.heads[:, 0, 3], atol=2e-5)


def test_pair_task_a_then_b(tiny_encoder, store):
    enc = tiny_encoder("roberta")
    a = TRAIN[:6]
    b = TRAIN[3:9]
    params = DotDict(batch_size=2)
    adapter = HeadAdapter(enc, 0, 1, store=store)
    out = drive(params, adapter.batcher, adapter.prepare, "SICKEntailment", {"train": (a, b, [0, 1, 2, 0, 1, 2])}, pair=True)
    ea, eb, _, a_s, b_s = out["train"]
    np.testing.assert_allclose(ea, encode(enc, [" ".join(s) for s in a_s]).heads[:, 0, 1], atol=2e-5)
    np.testing.assert_allclose(eb, encode(enc, [" ".join(s) for s in b_s]).heads[:, 0, 1], atol=2e-5)


def test_prepare_is_per_task_and_disk_cache_survives_a_new_store(tiny_encoder, tmp_path):
    enc = tiny_encoder("gpt2")
    params = DotDict(batch_size=3)
    first = HeadAdapter(enc, 1, 0, store=FeatureStore(tmp_path / "c"))
    first.prepare(params, TRAIN)
    calls, handle = _count_forwards(enc)
    try:
        # a fresh store object on the same folder (a new process, in effect) finds the entry on disk
        again = HeadAdapter(enc, 1, 3, store=FeatureStore(tmp_path / "c"))
        again.prepare(params, TRAIN)
        assert calls["n"] == 0
        # a different task (other sentences) is encoded
        again.prepare(params, TEST)
        assert calls["n"] > 0
    finally:
        handle.remove()


def test_batcher_without_prepare_and_unseen_sentences(tiny_encoder, store):
    enc = tiny_encoder("bert")
    adapter = LayerAdapter(enc, "embeddings", store=store)
    got = adapter.batcher(DotDict(), [["never", "seen"], []])
    want = encode(enc, ["never seen", ""]).layers[:, 0]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert adapter.batcher(DotDict(), []).shape == (0, enc.hidden_size)


def test_pooling_choice_reaches_the_vectors(tiny_encoder, store):
    enc = tiny_encoder("bert")
    mean = LayerAdapter(enc, -1, pooling="mean", store=store)
    cls = LayerAdapter(enc, -1, pooling="cls", store=store)
    mean.prepare(DotDict(), TRAIN)
    cls.prepare(DotDict(), TRAIN)
    m = mean.batcher(DotDict(), TRAIN[:3])
    c = cls.batcher(DotDict(), TRAIN[:3])
    np.testing.assert_allclose(m, encode(enc, [" ".join(s) for s in TRAIN[:3]], pooling="mean").layers[:, -1], atol=2e-5)
    assert not np.allclose(m, c)


def test_clear_errors(tiny_encoder, store):
    enc = tiny_encoder("bert")  # 2 layers, 4 heads
    with pytest.raises(ValueError, match="layer=2: out of range.*2 layers"):
        HeadAdapter(enc, 2, 0)
    with pytest.raises(ValueError, match="head=4: out of range.*4 heads"):
        HeadAdapter(enc, 0, 4)
    with pytest.raises(ValueError, match=r"heads=\[\]: give at least one"):
        HeadsAdapter(enc, [])
    with pytest.raises(ValueError, match="not a \\(layer, head\\) pair"):
        HeadsAdapter(enc, [1])
    adapter = HeadAdapter(enc, -1, 0, store=store)
    assert adapter.layer == 1
    with pytest.raises(TypeError, match=r"batch\[1\]\[0\] is 3 \(int\)"):
        adapter.batcher(DotDict(), [["ok"], [3, "x"]])
    with pytest.raises(TypeError, match=r"batch\[0\] is a str"):
        adapter.batcher(DotDict(), ["a sentence"])
    with pytest.raises(ValueError, match="no samples"):
        adapter.prepare(DotDict(), [])
    with pytest.raises(TypeError, match="Encoder"):
        HeadAdapter("bert-base-uncased", 0, 0)
