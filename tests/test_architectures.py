"""Every supported architecture, proven against its own computation (tiny random models, no download).

For each ``model_type`` in :data:`~senteval_anatomy.encoders.architectures.ARCHITECTURES` a tiny model (2-3 layers, hidden 32) is
built from its config, with a real tokenizer. The checks are independent of the layout table: the tests below know,
from reading each family's modeling code, where q, k and v come from and what the attention module returns.

* **heads = softmax(QKᵀ·scale + mask + bias)·V**, rebuilt from the model's own q/k/v projections (rotary, ALiBi,
  GQA/MQA, sliding windows, soft-capping where they apply), at the first and the last real token of every sentence
  of a padded batch, against what ``encode`` returns from the default (sdpa) kernel. For DeBERTa's disentangled
  attention, MPNet's and T5's relative position buckets the score function is not rebuilt: those use the eager
  model's attention probabilities × our own V (``PROBS_TIMES_V``).
* **W_O identity through the block's own attention module**: W_O·heads + b (plus the residual and norm that the
  module applies itself, e.g. BERT, BLOOM) equals the attention module's output at that token.
* **layers** are the embeddings and the block outputs; **padding invariance** for every type and pooling;
  **the last real token** for every decoder.
"""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
import warnings
from functools import cache

import numpy as np
import pytest
import torch
from conftest import REPO, _bpe_tokenizer, _minilm_tokenizer

from senteval_anatomy.encoders.architectures import (
    ARCHITECTURES,
    ArchSpec,
    ArchSpecError,
    UnsupportedModelError,
    load_arch_spec,
    supported_models_markdown,
)
from senteval_anatomy.encoders.encoder import Encoder
from senteval_anatomy.encoders.encoding import encode, pool
from senteval_anatomy.encoders.loading import load_encoder

SENTS = [
    "the cat sat on the mat .",
    "what is the capital of france ?",
    "dogs bark loudly at night , and the neighbours complain about it every single day .",
    "a",
]

# ---------------------------------------------------------------------------------------------- tiny models
_TOK = {"wordpiece": _minilm_tokenizer, "roberta": lambda: _bpe_tokenizer("roberta"),
        "llama": lambda: _bpe_tokenizer("llama"), "gpt": lambda: _bpe_tokenizer("gpt")}

_S = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
_DEC = dict(_S, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
_SEQ2SEQ = dict(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=2,
           decoder_start_token_id=0)

#: model_type -> (config class name, tokenizer kind, config kwargs). Sizes are tiny; features that matter for the
#: proof are switched on: GQA/MQA, head_dim != hidden/heads, partial rotary, sliding windows shorter than the
#: sentences, soft-capping strong enough to bite, ALBERT with 3 layers on 1 shared block.
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "bert": ("BertConfig", "wordpiece", _S),
    "electra": ("ElectraConfig", "wordpiece", dict(_S, embedding_size=16)),
    "roberta": ("RobertaConfig", "roberta", dict(_S, max_position_embeddings=66, pad_token_id=1)),
    "xlm-roberta": ("XLMRobertaConfig", "roberta", dict(_S, max_position_embeddings=66, pad_token_id=1)),
    "camembert": ("CamembertConfig", "roberta", dict(_S, max_position_embeddings=66, pad_token_id=1)),
    "distilbert": ("DistilBertConfig", "wordpiece", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                         max_position_embeddings=64)),
    "albert": ("AlbertConfig", "wordpiece", dict(_S, num_hidden_layers=3, embedding_size=16)),
    "deberta": ("DebertaConfig", "wordpiece", dict(_S, relative_attention=True, pos_att_type=["c2p", "p2c"],
                                                   max_relative_positions=16)),
    "deberta-v2": ("DebertaV2Config", "wordpiece", dict(_S, relative_attention=True, pos_att_type=["c2p", "p2c"],
                                                        position_buckets=8, norm_rel_ebd="layer_norm",
                                                        share_att_key=True, max_relative_positions=16)),
    "mpnet": ("MPNetConfig", "roberta", dict(_S, max_position_embeddings=66, pad_token_id=1)),
    "modernbert": ("ModernBertConfig", "wordpiece", dict(_S, num_hidden_layers=3, global_attn_every_n_layers=2,
                                                        local_attention=6, pad_token_id=0, bos_token_id=101,
                                                        eos_token_id=102, cls_token_id=101, sep_token_id=102)),
    "t5": ("T5Config", "llama", _T5),
    "mt5": ("MT5Config", "llama", _T5),
    "umt5": ("UMT5Config", "llama", _T5),
    "bart": ("BartConfig", "roberta", _SEQ2SEQ),
    "mbart": ("MBartConfig", "roberta", _SEQ2SEQ),
    "marian": ("MarianConfig", "roberta", dict(_SEQ2SEQ, decoder_vocab_size=None)),
    "pegasus": ("PegasusConfig", "roberta", _SEQ2SEQ),
    "gpt2": ("GPT2Config", "gpt", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
                                       eos_token_id=0)),
    "openai-gpt": ("OpenAIGPTConfig", "gpt", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "gpt_neox": ("GPTNeoXConfig", "gpt", dict(_S, rotary_pct=0.5, bos_token_id=0, eos_token_id=0)),
    "gptj": ("GPTJConfig", "gpt", dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64,
                                       bos_token_id=0, eos_token_id=0)),
    "opt": ("OPTConfig", "llama", dict(_S, ffn_dim=64, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1,
                                       eos_token_id=2)),
    "falcon": ("FalconConfig", "gpt", dict(_S, multi_query=True, parallel_attn=True, new_decoder_architecture=False,
                                           alibi=False, bos_token_id=0, eos_token_id=0)),
    "bloom": ("BloomConfig", "gpt", dict(hidden_size=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0,
                                         pad_token_id=0)),
    "gemma": ("GemmaConfig", "llama", dict(_DEC, num_key_value_heads=1, head_dim=16)),
    "gemma2": ("Gemma2Config", "llama", dict(_DEC, head_dim=8, sliding_window=4, query_pre_attn_scalar=12,
                                             attn_logit_softcapping=0.5, final_logit_softcapping=None,
                                             layer_types=["sliding_attention", "full_attention"])),
    "gemma3_text": ("Gemma3TextConfig", "llama", dict(_DEC, head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                                                      layer_types=["sliding_attention", "full_attention"])),
    "phi": ("PhiConfig", "gpt", dict(_S, partial_rotary_factor=0.5, bos_token_id=0, eos_token_id=0)),
    "phi3": ("Phi3Config", "llama", dict(_DEC)),
    "llama": ("LlamaConfig", "llama", dict(_DEC, head_dim=16)),
    "mistral": ("MistralConfig", "llama", dict(_DEC, sliding_window=None)),
    "mixtral": ("MixtralConfig", "llama", dict(_DEC, num_local_experts=4, num_experts_per_tok=2,
                                               sliding_window=None)),
    "qwen2": ("Qwen2Config", "llama", dict(_DEC)),
    "qwen2_moe": ("Qwen2MoeConfig", "llama", dict(_DEC, num_experts=4, num_experts_per_tok=2,
                                                  moe_intermediate_size=32, shared_expert_intermediate_size=32)),
    "qwen3": ("Qwen3Config", "llama", dict(_DEC, head_dim=8)),
    "qwen3_moe": ("Qwen3MoeConfig", "llama", dict(_DEC, head_dim=8, num_experts=4, num_experts_per_tok=2,
                                                  moe_intermediate_size=32)),
    "olmo": ("OlmoConfig", "llama", dict(_DEC)),
    "olmo2": ("Olmo2Config", "llama", dict(_DEC)),
}

#: Families whose score function is not rebuilt (relative position buckets, disentangled attention): the
#: reference is the eager model's attention probabilities × V from the model's own value projection.
PROBS_TIMES_V = {"deberta", "deberta-v2", "mpnet", "t5", "mt5", "umt5"}

TYPES = sorted(ARCHITECTURES)
DECODERS = [t for t in TYPES if ARCHITECTURES[t].causal]


def test_the_matrix_covers_every_table_entry():
    assert set(FAMILIES) == set(ARCHITECTURES)


@cache
def tokenizer(kind: str):
    tok = _TOK[kind]()
    if tok.pad_token is None:  # padding is masked out; its id never reaches a pooled vector
        tok.pad_token = tok.eos_token
    return tok


@cache
def tiny(model_type: str, attn: str | None = None):
    """(model as AutoModel builds it, tokenizer); the eager copy shares the default model's weights."""
    import transformers

    cls_name, tok_kind, kwargs = FAMILIES[model_type]
    tok = tokenizer(tok_kind)
    config = getattr(transformers, cls_name)(vocab_size=len(tok), **kwargs)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModel.from_config(config, **({"attn_implementation": attn} if attn else {}))
    if attn is not None:
        model.load_state_dict(tiny(model_type)[0].state_dict())
    model.eval()
    return model, tok


@cache
def encoder(model_type: str) -> Encoder:
    model, tok = tiny(model_type)
    return Encoder.from_model(model, tok, name=f"tiny-{model_type}", device="cpu")


@cache
def features(model_type: str, pooling: str):
    return encode(encoder(model_type), SENTS, pooling=pooling, batch_size=len(SENTS))


def _runnable(model_type: str, model):
    """The part of the model that runs: the encoder of an encoder-decoder, else the model itself."""
    return model.encoder if FAMILIES[model_type][0] in _ENCODER_DECODER else model


_ENCODER_DECODER = {"T5Config", "MT5Config", "UMT5Config", "BartConfig", "MBartConfig", "MarianConfig",
                    "PegasusConfig"}


def _batch(tok):
    tok.padding_side = "right"
    b = tok(SENTS, padding=True, return_tensors="pt")
    return b["input_ids"], b["attention_mask"]


# ---------------------------------------------------------------------------------------------- where things are
#: model_type -> (blocks, attention module inside a block) as read from each family's modeling code.
_WHERE = {
    **dict.fromkeys(["bert", "electra", "roberta", "xlm-roberta", "camembert", "deberta", "deberta-v2", "mpnet"],
                    ("encoder.layer", "attention")),
    "distilbert": ("transformer.layer", "attention"),
    "albert": ("encoder.albert_layer_groups", "albert_layers.0.attention"),
    "modernbert": ("layers", "attn"),
    **dict.fromkeys(["t5", "mt5", "umt5"], ("block", "layer.0.SelfAttention")),
    **dict.fromkeys(["bart", "mbart", "marian", "pegasus"], ("layers", "self_attn")),
    **dict.fromkeys(["gpt2", "openai-gpt"], ("h", "attn")),
    "gpt_neox": ("layers", "attention"),
    "gptj": ("h", "attn"),
    "opt": ("decoder.layers", "self_attn"),
    **dict.fromkeys(["falcon", "bloom"], ("h", "self_attention")),
    **dict.fromkeys(["gemma", "gemma2", "gemma3_text", "phi", "phi3", "llama", "mistral", "mixtral", "qwen2",
                     "qwen2_moe", "qwen3", "qwen3_moe", "olmo", "olmo2"], ("layers", "self_attn")),
}
#: What the attention module does after W_O, per its forward: (projection, residual argument, norm inside module).
_AFTER_WO = {
    **dict.fromkeys(["bert", "electra", "roberta", "xlm-roberta", "camembert"],
                    ("output.dense", "hidden_states", "output.LayerNorm")),
    **dict.fromkeys(["deberta", "deberta-v2"], ("output.dense", "hidden_states", "output.LayerNorm")),
    "mpnet": ("attn.o", "hidden_states", "LayerNorm"),
    "albert": ("dense", "hidden_states", "LayerNorm"),
    "distilbert": ("out_lin", None, None),
    "modernbert": ("Wo", None, None),
    **dict.fromkeys(["t5", "mt5", "umt5"], ("o", None, None)),
    **dict.fromkeys(["bart", "mbart", "marian", "pegasus", "gptj", "opt"], ("out_proj", None, None)),
    **dict.fromkeys(["gpt2", "openai-gpt"], ("c_proj", None, None)),
    **dict.fromkeys(["gpt_neox", "falcon", "phi"], ("dense", None, None)),
    "bloom": ("dense", "residual", None),
}
for _t in _WHERE:  # the Llama-style rest: o_proj, nothing added inside the module
    _AFTER_WO.setdefault(_t, ("o_proj", None, None))


def _get(root, path):
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _attention_calls(model_type: str, model, input_ids, mask, **extra):
    """Run ``model`` on the batch; per layer (call order): (attention module, bound arguments, first output)."""
    blocks_path, attn_path = _WHERE[model_type]
    runnable = _runnable(model_type, model)
    modules = {id(m): m for m in (_get(b, attn_path) for b in _get(runnable, blocks_path))}
    calls, handles = [], []
    for m in modules.values():
        def hook(mod, args, kwargs, out):
            bound = inspect.signature(mod.forward).bind(*args, **kwargs).arguments
            bound.update(bound.pop("kwargs", {}) or {})
            calls.append((mod, bound, out[0] if isinstance(out, (tuple, list)) else out))

        handles.append(m.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            out = runnable(input_ids=input_ids, attention_mask=mask, **extra)
    finally:
        for h in handles:
            h.remove()
    return calls, out


# ---------------------------------------------------------------------------------------------- the rebuild
def _split(t, n, d):  # [B, T, n*d] -> [B, n, T, d]
    B, T, _ = t.shape
    return t.reshape(B, T, n, d).transpose(1, 2)


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def _rope(x, cos, sin):
    """Rotary on the first ``cos.shape[-1]`` dims of each head (partial rotary leaves the rest): x [B, n, T, d]."""
    r = cos.shape[-1]
    c, s = cos[:, None], sin[:, None]
    return torch.cat((x[..., :r] * c + _rotate_half(x[..., :r]) * s, x[..., r:]), -1)


def _rope_gptj(x, rotary_dim, positions):
    """GPT-J: sinusoidal rotary on interleaved pairs of the first ``rotary_dim`` dims."""
    inv = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    ang = positions.float()[:, None] * inv[None]
    sin, cos = ang.sin().repeat_interleave(2, -1), ang.cos().repeat_interleave(2, -1)
    xr = x[..., :rotary_dim]
    rot = torch.stack((-xr[..., 1::2], xr[..., ::2]), -1).flatten(-2)
    return torch.cat((xr * cos + rot * sin, x[..., rotary_dim:]), -1)


def _alibi_slopes(n):
    """Press et al.'s ALiBi slopes, with BLOOM's rule for head counts that are not powers of two."""
    p = 2 ** math.floor(math.log2(n))
    base = [2 ** (-8 * (i + 1) / p) for i in range(p)]
    extra = [2 ** (-4 * (2 * i + 1) / p) for i in range(n - p)]
    return torch.tensor(base + extra)


def _qkv(model_type: str, m, a: dict, cfg) -> dict:
    """q [B,H,T,d], k/v [B,kv,T,d] from the module's own projections, plus the score function's settings."""
    x = a.get("hidden_states")
    if x is None:
        x = next(v for v in a.values() if isinstance(v, torch.Tensor))
    H = cfg.num_attention_heads
    out: dict = {"causal": model_type in DECODERS, "scale": None, "window": None, "softcap": None, "alibi": False}
    if model_type in ("bert", "electra", "roberta", "xlm-roberta", "camembert"):
        s = m.self
        d = s.attention_head_size
        q, k, v = (_split(p(x), H, d) for p in (s.query, s.key, s.value))
    elif model_type == "distilbert":
        d = cfg.dim // H
        q, k, v = (_split(p(x), H, d) for p in (m.q_lin, m.k_lin, m.v_lin))
    elif model_type == "albert":
        d = cfg.hidden_size // H
        q, k, v = (_split(p(x), H, d) for p in (m.query, m.key, m.value))
    elif model_type == "deberta":
        d = cfg.hidden_size // H
        qkv = m.self.in_proj(x).reshape(*x.shape[:2], H, 3 * d).transpose(1, 2)
        q, k, v = qkv.chunk(3, -1)
        v = v + m.self.v_bias.reshape(1, H, 1, d)
    elif model_type == "deberta-v2":
        d = cfg.hidden_size // H
        q = k = None
        v = _split(m.self.value_proj(x), H, d)
    elif model_type == "mpnet":
        d = cfg.hidden_size // H
        q = k = None
        v = _split(m.attn.v(x), H, d)
    elif model_type in ("t5", "mt5", "umt5"):
        d = cfg.d_kv
        q = k = None
        v = _split(m.v(x), H, d)
    elif model_type == "modernbert":
        d = cfg.hidden_size // H
        qkv = m.Wqkv(x).reshape(*x.shape[:2], 3, H, d)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        cos, sin = a["position_embeddings"]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if cfg.layer_types[m.layer_idx] == "sliding_attention":
            out["window"] = ("bidirectional", cfg.local_attention // 2)
    elif model_type in ("bart", "mbart", "marian", "pegasus", "opt"):
        d = cfg.hidden_size // H
        q, k, v = (_split(p(x), H, d) for p in (m.q_proj, m.k_proj, m.v_proj))
    elif model_type in ("gpt2", "openai-gpt"):
        d = x.shape[-1] // H
        q, k, v = (_split(t, H, d) for t in m.c_attn(x).split(x.shape[-1], -1))
    elif model_type == "gpt_neox":
        d = cfg.hidden_size // H
        q, k, v = m.query_key_value(x).reshape(*x.shape[:2], H, 3 * d).transpose(1, 2).chunk(3, -1)
        cos, sin = a["position_embeddings"]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    elif model_type == "gptj":
        d = cfg.n_embd // H
        q, k, v = (_split(p(x), H, d) for p in (m.q_proj, m.k_proj, m.v_proj))
        positions = torch.arange(x.shape[1])
        q, k = _rope_gptj(q, cfg.rotary_dim, positions), _rope_gptj(k, cfg.rotary_dim, positions)
    elif model_type == "falcon":  # multi-query: H query heads, then one shared key and one shared value head
        d = cfg.hidden_size // H
        fused = m.query_key_value(x)
        q, k, v = _split(fused[..., : H * d], H, d), _split(fused[..., H * d : H * d + d], 1, d), _split(
            fused[..., H * d + d :], 1, d)
        cos, sin = a["position_embeddings"]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    elif model_type == "bloom":
        d = cfg.hidden_size // H
        qkv = m.query_key_value(x).reshape(*x.shape[:2], H, 3, d)
        q, k, v = (qkv[..., i, :].transpose(1, 2) for i in range(3))
        out["alibi"] = True
    elif model_type in ("phi",):
        d = cfg.hidden_size // H
        q, k, v = (_split(p(x), H, d) for p in (m.q_proj, m.k_proj, m.v_proj))
        cos, sin = a["position_embeddings"]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    else:  # Llama-style: separate or fused q/k/v, GQA, rotary from the model's cos/sin, family extras
        d = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
        kv = cfg.num_key_value_heads
        if model_type == "phi3":
            fused = m.qkv_proj(x)
            q_, k_, v_ = fused.split([H * d, kv * d, kv * d], -1)
        else:
            q_, k_, v_ = m.q_proj(x), m.k_proj(x), m.v_proj(x)
        if model_type == "olmo2":  # RMSNorm over all heads at once, before the split
            q_, k_ = m.q_norm(q_), m.k_norm(k_)
        q, k, v = _split(q_, H, d), _split(k_, kv, d), _split(v_, kv, d)
        if model_type in ("qwen3", "qwen3_moe", "gemma3_text"):  # RMSNorm per head
            q, k = m.q_norm(q), m.k_norm(k)
        cos, sin = a["position_embeddings"]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if model_type in ("gemma2", "gemma3_text"):
            out["scale"] = cfg.query_pre_attn_scalar ** -0.5
            if cfg.layer_types[m.layer_idx] == "sliding_attention":
                out["window"] = ("causal", cfg.sliding_window)
        if model_type == "gemma2":
            out["softcap"] = cfg.attn_logit_softcapping
    out.update(q=q, k=k, v=v, d=d)
    if out["scale"] is None:
        out["scale"] = 1.0 if model_type == "opt" else d ** -0.5  # OPT scales q inside q_proj's caller
        if model_type == "opt":
            out["q"] = q * d ** -0.5
    return out


def _rebuild(model_type, r: dict, mask: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
    """softmax(QKᵀ·scale + mask + bias)·V, or probs·V; returns [B, T, H, d]."""
    v = r["v"]
    H = probs.shape[1] if probs is not None else r["q"].shape[1]
    v = v.repeat_interleave(H // v.shape[1], 1)  # GQA / MQA: each KV head serves H / kv query heads
    if probs is None:
        k = r["k"].repeat_interleave(H // r["k"].shape[1], 1)
        scores = r["q"] @ k.transpose(-1, -2) * r["scale"]
        if r["softcap"]:
            scores = torch.tanh(scores / r["softcap"]) * r["softcap"]
        T = scores.shape[-1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None]
        allowed = mask[:, None, None, :].bool().expand(-1, 1, T, T)
        if r["causal"]:
            allowed = allowed & (j <= i)
        if r["window"] is not None:
            kind, w = r["window"]
            allowed = allowed & ((i - j < w) if kind == "causal" else ((i - j).abs() <= w))
        if r["alibi"]:
            pos = ((mask.cumsum(-1) - 1) * mask).float()  # key positions count real tokens only
            scores = scores + _alibi_slopes(H)[None, :, None, None] * pos[:, None, None, :]
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = scores.softmax(-1)
    return (probs @ v).transpose(1, 2)


@pytest.mark.parametrize("model_type", TYPES)
def test_heads_are_softmax_qk_times_v_at_first_and_last_real_token(model_type):
    """Captured heads (sdpa kernel) == each head's context rebuilt from the model's own q/k/v (eager weights)."""
    eager, tok = tiny(model_type, "eager")
    cfg = eager.config
    ids, mask = _batch(tok)
    use_probs = model_type in PROBS_TIMES_V
    calls, out = _attention_calls(model_type, eager, ids, mask, **({"output_attentions": True} if use_probs else {}))
    enc = encoder(model_type)
    assert len(calls) == enc.num_layers
    if use_probs:
        assert out.attentions is not None and len(out.attentions) == enc.num_layers
    ref = []
    for layer, (m, bound, _) in enumerate(calls):
        with torch.no_grad():
            r = _qkv(model_type, m, bound, cfg)
            ref.append(_rebuild(model_type, r, mask, out.attentions[layer] if use_probs else None))
    ref = torch.stack(ref, 2)  # [B, T, L, H, d]
    B, T, L, H, d = ref.shape
    assert (L, H, d) == (enc.num_layers, enc.num_heads, enc.head_dim)
    last = mask.sum(1) - 1
    first_got = features(model_type, "cls").heads
    last_got = features(model_type, "last").heads
    np.testing.assert_allclose(first_got, ref[:, 0].numpy(), atol=3e-5, rtol=1e-4, err_msg="first token")
    np.testing.assert_allclose(last_got, ref[torch.arange(B), last].numpy(), atol=3e-5, rtol=1e-4,
                               err_msg="last real token")


@pytest.mark.parametrize("model_type", TYPES)
def test_wo_identity_through_the_blocks_attention_module(model_type):
    """W_O·heads + b (+ the residual and norm the module applies itself) == the attention module's output."""
    model, tok = tiny(model_type)
    ids, mask = _batch(tok)
    calls, _ = _attention_calls(model_type, model, ids, mask)
    proj_path, residual_arg, norm_path = _AFTER_WO[model_type]
    heads = features(model_type, "last").heads
    last = mask.sum(1) - 1
    rows = torch.arange(len(SENTS))
    for layer, (m, bound, attn_out) in enumerate(calls):
        proj = _get(m, proj_path)
        z = torch.from_numpy(heads[:, layer].reshape(len(SENTS), -1))
        w = proj.weight
        want = z @ (w if type(proj).__name__ == "Conv1D" else w.T)  # Conv1D stores (in, out), Linear (out, in)
        if proj.bias is not None:
            want = want + proj.bias
        with torch.no_grad():
            if residual_arg:
                want = want + bound[residual_arg][rows, last]
            if norm_path:
                want = _get(m, norm_path)(want)
        torch.testing.assert_close(want, attn_out[rows, last], atol=3e-5, rtol=1e-4, msg=f"layer {layer}")


@pytest.mark.parametrize("model_type", TYPES)
def test_layers_are_embeddings_and_block_outputs(model_type):
    """layers[:, 0] is the input of the first block, layers[:, l+1] the output of block l (before any final norm)."""
    enc = encoder(model_type)
    model, tok = tiny(model_type)
    ids, mask = _batch(tok)
    blocks_path, _ = _WHERE[model_type]
    runnable = _runnable(model_type, model)
    blocks = list(_get(runnable, blocks_path))
    seen_in, seen_out = [], []
    handles = [blocks[0].register_forward_pre_hook(
        lambda m, a, k: seen_in.append((a[0] if a else k["hidden_states"]).clone()), with_kwargs=True)]
    for b in {id(b): b for b in blocks}.values():
        handles.append(b.register_forward_hook(
            lambda m, a, o: seen_out.append(o[0] if isinstance(o, (tuple, list)) else o)))
    with torch.no_grad():
        runnable(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    got = features(model_type, "mean").layers
    assert got.shape == (len(SENTS), enc.num_layers + 1, enc.hidden_size)
    want = [seen_in[0]] + seen_out
    assert len(want) == enc.num_layers + 1  # ALBERT: one block called once per layer
    for i, x in enumerate(want):
        np.testing.assert_allclose(got[:, i], pool(x, mask, mask.sum(1) - 1, "mean").numpy(), atol=3e-5,
                                   rtol=1e-4, err_msg=f"layer index {i}")


@pytest.mark.parametrize("model_type", TYPES)
def test_padding_invariance(model_type):
    """A sentence alone and inside a padded batch of longer ones gets the same vectors (default and mean pooling)."""
    enc = encoder(model_type)
    for pooling in sorted({enc.default_pooling, "mean"}):
        together = features(model_type, pooling)
        for i in (0, 3):  # a mid-length and the shortest sentence
            alone = encode(enc, [SENTS[i]], pooling=pooling)
            np.testing.assert_allclose(alone.heads[0], together.heads[i], atol=3e-5, rtol=1e-4, err_msg=pooling)
            np.testing.assert_allclose(alone.layers[0], together.layers[i], atol=3e-5, rtol=1e-4, err_msg=pooling)


@pytest.mark.parametrize("model_type", DECODERS)
def test_decoders_pool_the_last_real_token(model_type):
    """'last' pooling of a padded batch == the unpadded run's final position; a decoder's default is 'last'."""
    enc = encoder(model_type)
    assert enc.default_pooling == "last" and enc.spec.causal
    model, tok = tiny(model_type)
    got = features(model_type, "last").layers
    blocks_path, _ = _WHERE[model_type]
    last_block = list(_get(model, blocks_path))[-1]
    seen: list[torch.Tensor] = []
    h = last_block.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, (tuple, list)) else o))
    for i in (0, 3):  # a mid-length sentence and a one-word one, both padded in the batch
        ids = torch.tensor([tok(SENTS[i])["input_ids"]])
        seen.clear()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        np.testing.assert_allclose(got[i, -1], seen[0][0, -1].numpy(), atol=3e-5, rtol=1e-4)
    h.remove()
    # the state one token earlier is a different vector: reading one past (or one short) would be caught
    ids = tok(SENTS[0])["input_ids"]
    shorter = encode(enc, [tok.decode(ids[:-1], skip_special_tokens=False)], pooling="last").layers[0, -1]
    assert not np.allclose(shorter, got[0, -1], atol=1e-4)


@pytest.mark.parametrize("model_type", TYPES)
def test_layout_recorded_and_default_pooling_fits_attention(model_type):
    enc = encoder(model_type)
    assert enc.layout == f"table:{model_type}"
    assert (enc.default_pooling == "last") == (model_type in DECODERS)


# ---------------------------------------------------------------------------------------------- discovery
_MLA = dict(_DEC, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
            v_head_dim=10, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=16,
            first_k_dense_replace=1, n_group=1, topk_group=1)

#: Types that are *not* in the table, found by structure and validated on the probe sentence.
DISCOVERED = {
    "granite": ("GraniteConfig", "llama", dict(_DEC), "layers", "self_attn.o_proj", "last"),
    "roformer": ("RoFormerConfig", "wordpiece", dict(_S, embedding_size=32), "encoder.layer",
                 "attention.output.dense", "cls"),
    "megatron-bert": ("MegatronBertConfig", "wordpiece", dict(_S), "encoder.layer", "attention.output.dense", "cls"),
    "xglm": ("XGLMConfig", "roberta", dict(d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                                           max_position_embeddings=64, pad_token_id=1), "layers", "self_attn.out_proj",
             "last"),
    "gpt_bigcode": ("GPTBigCodeConfig", "gpt", dict(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                    multi_query=True), "h", "attn.c_proj", "last"),
    # Multi-head latent attention: queries/keys 8 + 4 (rotary) wide, values 10 wide; W_O reads H × v_head_dim.
    "deepseek_v2": ("DeepseekV2Config", "llama", _MLA, "layers", "self_attn.o_proj", "last"),
    "deepseek_v3": ("DeepseekV3Config", "llama", _MLA, "layers", "self_attn.o_proj", "last"),
}


@cache
def discovered(model_type: str):
    import transformers

    cls_name, tok_kind, kwargs, *_ = DISCOVERED[model_type]
    tok = tokenizer(tok_kind)
    config = getattr(transformers, cls_name)(vocab_size=len(tok), **kwargs)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = Encoder.from_model(model, tok, device="cpu")
    return enc, [str(w.message) for w in caught]


@pytest.mark.parametrize("model_type", sorted(DISCOVERED))
def test_discovery_finds_and_validates_layouts_not_in_the_table(model_type):
    assert model_type not in ARCHITECTURES
    enc, messages = discovered(model_type)
    *_, blocks, o_proj, pooling = DISCOVERED[model_type]
    assert enc.layout == "discovered"
    assert (enc.spec.blocks, enc.spec.o_proj, enc.default_pooling) == (blocks, o_proj, pooling)
    assert any("was discovered" in m for m in messages)
    # The discovered hook point really is the heads: through W_O and the module's own post-processing they
    # reproduce the attention module's output at the last real token.
    ids, mask = _batch(enc.tokenizer)
    attn_out, bound_args = [], []
    handles = []
    for layer in range(enc.num_layers):
        def hook(m, a, k, o):
            attn_out.append(o[0] if isinstance(o, (tuple, list)) else o)
            bound_args.append(inspect.signature(m.forward).bind(*a, **k).arguments)

        handles.append(enc.attn(layer).register_forward_hook(hook, with_kwargs=True))
    with torch.no_grad():
        enc.model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    heads = encode(enc, SENTS, pooling="last").heads
    last, rows = mask.sum(1) - 1, torch.arange(len(SENTS))
    for layer in range(enc.num_layers):
        with torch.no_grad():
            want = enc.o_proj(layer)(torch.from_numpy(heads[:, layer].reshape(len(SENTS), -1)))
            if enc.spec.attn_residual:
                want = want + bound_args[layer][enc.spec.attn_residual][rows, last]
            if enc.spec.attn_norm:
                want = enc.submodule(layer, enc.spec.attn_norm)(want)
        torch.testing.assert_close(want, attn_out[layer][rows, last], atol=3e-5, rtol=1e-4)
    # and a sentence gets the same vector alone as in a padded batch
    alone = encode(enc, [SENTS[0]], pooling="last").heads[0]
    np.testing.assert_allclose(alone, heads[0], atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["deepseek_v2", "deepseek_v3"])
def test_latent_attention_heads_have_the_value_width(model_type):
    """MLA: q/k heads are qk_nope + qk_rope wide, the contexts W_O reads are v_head_dim wide (config.head_dim is the
    rotary part there): every head is one v_head_dim slice of W_O's input."""
    enc, _ = discovered(model_type)
    assert (enc.num_heads, enc.head_dim) == (4, _MLA["v_head_dim"])
    assert encode(enc, SENTS[:2], pooling="last").heads.shape[1:] == (2, 4, _MLA["v_head_dim"])


def test_discovery_failure_lists_what_was_tried_and_how_to_write_a_spec():
    import transformers

    tok = tokenizer("wordpiece")
    config = transformers.BertConfig(vocab_size=len(tok), **_S)
    model = transformers.AutoModel.from_config(config)
    model.config.model_type = "my-bert-fork"
    model.config.num_hidden_layers = 5  # no ModuleList of 5 blocks exists
    with pytest.raises(UnsupportedModelError) as err:
        Encoder.from_model(model, tok, device="cpu")
    msg = str(err.value)
    assert "'my-bert-fork'" in msg and "Tried:" in msg and "ModuleList of 5 blocks" in msg
    assert "spec=ArchSpec(" in msg and "--arch-spec" in msg


#: Models whose heads cannot be read the same way in every layer, or whose attention runs time-major: a clear
#: refusal with the reason, never a crash (both crashed with AttributeError before).
REFUSED = {
    # MiniMax: softmax attention in some layers, linear ("lightning") attention in others.
    "minimax": ("MiniMaxConfig", dict(_DEC, head_dim=8, num_local_experts=2, num_experts_per_tok=1,
                                      layer_types=["full_attention", "linear_attention"]),
                "not every layer of this model is softmax attention"),
    # FSMT: its encoder holds no config of its own and runs [tokens, batch, features].
    "fsmt": ("FSMTConfig", dict(langs=["en", "de"], d_model=32, encoder_layers=2, decoder_layers=1,
                                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                decoder_ffn_dim=64, max_position_embeddings=64),
             "o_proj's input has shape"),
}


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_hybrid_and_time_major_models_are_refused_with_the_reason(model_type):
    import transformers

    cls_name, kwargs, reason = REFUSED[model_type]
    tok = tokenizer("wordpiece")
    sizes = dict(src_vocab_size=len(tok), tgt_vocab_size=len(tok)) if model_type == "fsmt" else dict(vocab_size=len(tok))
    config = getattr(transformers, cls_name)(**sizes, **kwargs)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    assert model_type not in ARCHITECTURES
    with pytest.raises(UnsupportedModelError) as err:
        Encoder.from_model(model, tok, device="cpu")
    assert reason in str(err.value) and "spec=ArchSpec(" in str(err.value)


def test_user_spec_is_validated_and_recorded(tmp_path):
    model, tok = tiny("bert")
    good = {"blocks": "encoder.layer", "o_proj": "attention.output.dense", "attn": "attention",
            "attn_residual": "hidden_states", "attn_norm": "attention.output.LayerNorm", "default_pooling": "mean"}
    path = tmp_path / "bert.json"
    path.write_text(json.dumps(good))
    spec = load_arch_spec(path)
    enc = Encoder.from_model(model, tok, device="cpu", spec=spec, layout=f"user:{path}")
    assert enc.layout == f"user:{path}" and enc.default_pooling == "mean"
    np.testing.assert_allclose(encode(enc, SENTS, pooling="cls").heads, features("bert", "cls").heads, atol=1e-6)
    # the layout is part of the fingerprint (another hook point would give other features)
    assert enc.fingerprint() != encoder("bert").fingerprint()
    # a wrong spec (the MLP's output projection as W_O) fails validation with a message saying why
    wrong = ArchSpec(blocks="encoder.layer", o_proj="attention.self.query", attn="attention", default_pooling="cls")
    with pytest.raises(UnsupportedModelError, match="failed validation"):
        Encoder.from_model(model, tok, device="cpu", spec=wrong)
    missing = ArchSpec(blocks="encoder.layers", o_proj="x", attn="y", default_pooling="cls")
    with pytest.raises(UnsupportedModelError, match=r"blocks='encoder.layers' does not exist.*children are: layer"):
        Encoder.from_model(model, tok, device="cpu", spec=missing)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"bad\.json:1: not valid JSON"),
        ("[1, 2]", "is a JSON object"),
        ('{"blocks": "a", "o_proj": "b"}', r"missing required key\(s\) \['attn'\]"),
        ('{"blocks": "a", "o_proj": "b", "attn": "c", "colour": 1}', r"unknown key\(s\) \['colour'\]"),
        ('{"blocks": "a", "o_proj": "b", "attn": "c", "causal": "yes"}', "'causal' must be a bool"),
        ('{"blocks": "a..b", "o_proj": "b", "attn": "c"}', "dotted module path"),
        ('{"blocks": "a", "o_proj": "b", "attn": "c", "default_pooling": "max"}', "default_pooling='max'"),
    ],
)
def test_bad_spec_files_name_the_file_and_the_problem(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ArchSpecError, match=match) as err:
        load_arch_spec(path)
    assert str(path) in str(err.value)


def test_missing_spec_file_is_named(tmp_path):
    with pytest.raises(ArchSpecError, match=r"nope\.json: cannot read"):
        load_arch_spec(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------- loading
def test_encoder_of_a_full_t5_and_t5_encoder_model_give_the_same_heads(tmp_path):
    """A saved full T5 loads through T5EncoderModel (no decoder weights needed); the encoder of the full model
    read directly gives the same features."""
    model, tok = tiny("t5")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = load_encoder(tmp_path, device="cpu")
    assert type(enc.model).__name__ == "T5Stack" and enc.layout == "table:t5"
    np.testing.assert_allclose(encode(enc, SENTS).heads, features("t5", "mean").heads, atol=1e-6)


def test_tokenizer_that_does_not_match_the_model_is_refused(tmp_path):
    model, _ = tiny("bert")  # 30,522-token WordPiece vocabulary
    small = tokenizer("gpt")  # a 400-token BPE
    with pytest.raises(UnsupportedModelError, match="not this model's tokenizer"):
        Encoder.from_model(model, small, device="cpu")
    gpt2, _ = tiny("gpt2")
    with pytest.raises(UnsupportedModelError, match="belongs to another model"):
        Encoder.from_model(gpt2, tokenizer("wordpiece"), device="cpu")
    # a saved model folder without tokenizer files: refused at load, with the fix
    model.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"tokenizer.*save_pretrained"):
        load_encoder(tmp_path, device="cpu")


# ---------------------------------------------------------------------------------------------- the command
def _run_models(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "senteval_anatomy.encoders", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_models_command_lists_every_type_and_how_it_is_read(capsys):
    from senteval_anatomy.encoders.command import main

    assert main([]) == 0
    out = capsys.readouterr().out
    for model_type, spec in ARCHITECTURES.items():
        assert f"  {model_type} " in out and spec.o_proj in out


def test_models_check_on_a_saved_model_passes_and_a_broken_one_fails(tmp_path, capsys):
    from senteval_anatomy.encoders.command import main

    model, tok = tiny("gpt_neox")
    model.save_pretrained(tmp_path / "ok")
    tok.save_pretrained(tmp_path / "ok")
    proc = _run_models("--check", str(tmp_path / "ok"))  # the real command, in its own process
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok] W_O identity through the attention module" in proc.stdout and "all checks passed" in proc.stdout
    assert "[ok] padding invariance" in proc.stdout and "layout: table:gpt_neox" in proc.stdout
    # a spec that points W_O at the MLP's output projection: refused with the reason, exit code 2
    (tmp_path / "wrong.json").write_text(json.dumps({"blocks": "layers", "o_proj": "mlp.dense_4h_to_h",
                                                     "attn": "attention"}))
    assert main(["--check", str(tmp_path / "ok"), "--arch-spec", str(tmp_path / "wrong.json")]) == 2
    err = capsys.readouterr().err  # (after save_pretrained's progress bars)
    assert "\nerror:" in "\n" + err and "failed validation" in err and "Traceback" not in err
    assert main(["--check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing" in err


def test_readme_lists_exactly_the_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- supported-models:begin -->", "<!-- supported-models:end -->"
    assert begin in readme and end in readme
    listed = readme.split(begin, 1)[1].split(end, 1)[0].strip()
    assert listed == supported_models_markdown(), "regenerate with: python -m senteval_anatomy.encoders --markdown"
