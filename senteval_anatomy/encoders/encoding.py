"""One forward pass per batch → every head of every layer and every layer, pooled into sentence vectors.

Shapes (see ``docs/architecture.md``):

* ``heads``  ``[n, L, H, d]``: head ``h`` of block ``l`` is that head's attention context softmax(QKᵀ/√d)·V, read
  from the *input* of the block's attention output projection (so before W_O, dropout, residual and LayerNorm).
* ``layers`` ``[n, L + 1, D]``: index 0 is the embeddings (the input of block 0), index ``l + 1`` the output of
  block ``l`` (the residual stream after the block; for GPT-2 this is before the final ``ln_f``, as in the paper).

Pooling happens inside the hooks (:class:`FeatureHooks`, registered through :mod:`~senteval_anatomy.encoders.hooks`),
so memory per batch is ``[batch, L·H·d]`` rather than ``[batch, pos, L·H·d]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..vocab import (  # re-exported: the one home is vocab
    ENCODE_BATCH_SIZE,
    POOLINGS,
    VIEWS,
    check_batch_size,
    check_pooling,
    check_views,
)
from .encoder import Encoder
from .hooks import HookSet, on_block_input, on_heads, on_output
from .readers import quiet_transformers

__all__ = ["POOLINGS", "VIEWS", "EncodedBatch", "Features", "FeatureHooks", "encode", "iter_encode", "pool", "tokenize"]


@dataclass
class EncodedBatch:
    """Pooled features of one forward pass.

    ``indices`` are positions into the ``sentences`` given to :func:`iter_encode`; batches come longest first.
    """

    indices: np.ndarray
    heads: np.ndarray | None
    layers: np.ndarray | None
    n_truncated: int


@dataclass
class Features:
    """Pooled features of a list of sentences, in input order (float32)."""

    heads: np.ndarray | None  # [n, L, H, d]
    layers: np.ndarray | None  # [n, L + 1, D]
    n_truncated: int = 0

    def __len__(self) -> int:
        arr = self.heads if self.heads is not None else self.layers
        return 0 if arr is None else int(arr.shape[0])


def _check_sentences(sentences: Sequence[str]) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("sentences must be a sequence of strings, not one string; wrap it in a list: [sentence].")
    if isinstance(sentences, np.ndarray):  # a NumPy array of strings reads like the list it holds
        sentences = sentences.tolist()
    if sentences is None or not hasattr(sentences, "__iter__"):
        raise TypeError(f"sentences={sentences!r}: give a list of strings, e.g. ['A cat sat .', 'Dogs bark .'].")
    out = list(sentences)
    if not out:
        raise ValueError("No sentences to encode: the input is empty.")
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise TypeError(
                f"sentence {i} is a {type(s).__name__}, not a str; join token lists first (' '.join(tokens))."
            )
    return out


def _check_arguments(
    encoder: Encoder, sentences: Any, pooling: Any, views: Any, batch_size: Any, max_length: Any
) -> tuple[list[str], str, tuple[str, ...], int, int]:
    """The arguments of :func:`encode`/:func:`iter_encode`, read as every entry point reads them (the shared checks
    of :mod:`senteval_anatomy.vocab` and :meth:`Encoder.token_limit`): one line naming the argument at the first
    mistake, before anything is tokenized. ``max_length`` comes back as the limit sentences are cut at."""
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be an Encoder from load_encoder(), got {type(encoder).__name__}.")
    return (_check_sentences(sentences), check_pooling(pooling, encoder), check_views(views),
            check_batch_size(batch_size), encoder.token_limit(max_length))


def tokenize(
    encoder: Encoder, sentences: Sequence[str], max_length: int | None = None
) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of each sentence, with the tokenizer's own special tokens, truncated to the model's limit.

    Returns the id lists and a boolean array marking the sentences that were truncated. A sentence that tokenizes to nothing (the empty string
    in GPT-2) gets one token — BOS, else EOS, else UNK — so that every sentence has a vector.
    """
    tok = encoder.tokenizer
    limit = encoder.token_limit(max_length)
    with quiet_transformers():
        ids: list[list[int]] = tok(list(sentences), add_special_tokens=True, truncation=False)["input_ids"]
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            cut = tok([sentences[i] for i in long], add_special_tokens=True, truncation=True, max_length=limit)
            for i, x in zip(long, cut["input_ids"]):
                ids[i] = x
    filler = next(
        (t for t in (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) if t is not None), 0
    )
    for i, x in enumerate(ids):
        if not x:
            ids[i] = [filler]
    truncated = np.zeros(len(ids), dtype=bool)
    truncated[long] = True
    return ids, truncated


def pool(x: torch.Tensor, mask: torch.Tensor, last: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``x [batch, pos, feat]`` over real tokens into ``[batch, feat]`` (float32)."""
    x = x.float()
    if pooling == "cls":
        return x[:, 0]
    if pooling in ("last", "one-past-last"):  # one-past-last: the appended id-0 token is the last one (iter_encode)
        return x[torch.arange(x.shape[0], device=x.device), last]
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class FeatureHooks:
    """Forward hooks that pool the head contexts and block outputs of one forward pass (a context manager: the hooks
    are removed when it closes)."""

    def __init__(self, encoder: Encoder, pooling: str, views: tuple[str, ...]) -> None:
        self.encoder = encoder
        self.pooling = pooling
        self.views = views
        self.hooks = HookSet()
        self.mask: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        L = encoder.num_layers
        self.heads: list[torch.Tensor | None] = [None] * L
        self.layers: list[torch.Tensor | None] = [None] * (L + 1)

    def _p(self, x: torch.Tensor) -> torch.Tensor:
        assert self.mask is not None and self.last is not None
        return pool(x, self.mask, self.last, self.pooling)

    def _check_shape(self, x: torch.Tensor, where: str) -> None:
        assert self.mask is not None
        if x.dim() != 3 or tuple(x.shape[:2]) != tuple(self.mask.shape):
            raise RuntimeError(
                f"{self.encoder.model_type}: {where} got a tensor of shape {tuple(x.shape)} for a padded batch of "
                f"shape {tuple(self.mask.shape)}: the model unpads or reshapes batches (e.g. a flash-attention path), "
                "so positions cannot be mapped back to tokens. Load it with attn_implementation='sdpa' or 'eager'."
            )

    def __enter__(self) -> FeatureHooks:
        enc = self.encoder
        shared = enc.spec.shared_blocks
        # Layer of each call: the block's index, or, where one module serves several layers (ALBERT), the call's
        # position in this forward pass (counters reset per batch).
        self.calls = {"heads": 0, "layers": 0}

        def layer_of(kind: str, fixed: int) -> int:
            if not shared:
                return fixed
            k = self.calls[kind]
            self.calls[kind] = k + 1
            return k

        targets = list(enumerate(enc.distinct_blocks()))
        if "heads" in self.views:
            spec = enc.spec
            for index, block in targets:

                def read_heads(x: torch.Tensor, index: int = index) -> None:
                    self._check_shape(x, f"o_proj ({spec.o_proj})")
                    self.heads[layer_of("heads", index)] = self._p(x)

                self.hooks.add(on_heads(block.get_submodule(spec.o_proj), read_heads))
        if "layers" in self.views:
            first = targets[0][1]

            def embed(x: torch.Tensor) -> None:
                if shared and self.calls["layers"] > 0:
                    return  # a shared block runs again for later layers; only its first input is the embedding
                self._check_shape(x, "block 0's input")
                self.layers[0] = self._p(x)

            self.hooks.add(on_block_input(first, embed))
            for index, block in targets:

                def read_layer(out: torch.Tensor, index: int = index) -> None:
                    self._check_shape(out, "a block's output")
                    self.layers[layer_of("layers", index) + 1] = self._p(out)

                self.hooks.add(on_output(block, read_layer))
        return self

    def collect(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Stack this batch's pooled features and reset; raise if a layer's hook did not fire exactly once."""
        enc = self.encoder
        heads = layers = None
        if "heads" in self.views:
            missing = [i for i, x in enumerate(self.heads) if x is None]
            if missing or (enc.spec.shared_blocks and self.calls["heads"] != enc.num_layers):
                raise RuntimeError(
                    f"{enc.model_type}: the attention output projection did not run once per layer in this forward "
                    f"pass (no heads for layers {missing}); the layout ({enc.layout}) does not describe this model. "
                    "Run `python -m senteval_anatomy.encoders --check MODEL`."
                )
            heads = torch.stack(self.heads, 1).reshape(n, enc.num_layers, enc.num_heads, enc.head_dim)  # type: ignore[arg-type]
        if "layers" in self.views:
            missing = [i for i, x in enumerate(self.layers) if x is None]
            if missing:
                raise RuntimeError(
                    f"{enc.model_type}: no block output for layers {missing} in this forward pass; the layout "
                    f"({enc.layout}) does not describe this model."
                )
            layers = torch.stack(self.layers, 1)  # type: ignore[arg-type]
        self.heads = [None] * enc.num_layers
        self.layers = [None] * (enc.num_layers + 1)
        self.calls = {"heads": 0, "layers": 0}
        return heads, layers

    def __exit__(self, *exc: Any) -> None:
        self.hooks.remove()


def pad_token_id(encoder: Encoder) -> int:
    """The id that pads a batch (the tokenizer's, or 0 where it has none; masked out either way)."""
    pad_id = encoder.tokenizer.pad_token_id
    return 0 if pad_id is None else int(pad_id)


def padded_batch(ids: Sequence[Sequence[int]], idx: Sequence[int], width: int,
                 pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (CPU, int64) of the token ids ``ids[i]`` for ``i`` in ``idx``, right-padded
    to ``width``: the batches of :func:`iter_encode`, one forward pass each."""
    input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        seq = ids[i]
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def iter_encode(
    encoder: Encoder,
    sentences: Sequence[str],
    *,
    pooling: str | None = None,
    views: Sequence[str] | str = VIEWS,
    batch_size: int = ENCODE_BATCH_SIZE,
    max_length: int | None = None,
    progress: bool | None = None,
    desc: str = "encoding",
) -> Iterator[EncodedBatch]:
    """Encode ``sentences`` batch by batch, longest first, yielding pooled features of every head and layer.

    One forward pass per batch gives all heads of all layers and all layers, in eval mode under
    ``torch.inference_mode``. Batches group sentences of similar token length to waste little on padding. Sentences
    longer than the model's limit are truncated; one warning gives the count. ``progress=None`` shows a bar from
    1,000 sentences on.
    """
    sentences, pooling, views, batch_size, max_length = _check_arguments(
        encoder, sentences, pooling, views, batch_size, max_length)
    ids, truncated = tokenize(encoder, sentences, max_length)
    if pooling == "one-past-last":
        # Transformer Anatomy's GPT position (compatibility only): an id-0 token after the sentence, attended to
        # like the sentence's tokens, is read as the last token (docs/reproduce.md)
        room = encoder.token_limit(max_length) - 1
        ids = [x[:room] + [0] for x in ids]
    n_truncated = int(truncated.sum())
    if n_truncated:
        limit = encoder.token_limit(max_length)
        warnings.warn(
            f"{n_truncated} of {len(sentences)} sentences are longer than {limit} tokens and were truncated.",
            stacklevel=2,
        )
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = pad_token_id(encoder)
    show = progress if progress is not None else len(sentences) >= 1000
    model = encoder.model
    model.eval()
    with FeatureHooks(encoder, pooling, views) as hooks, torch.inference_mode():
        bar = tqdm(total=len(sentences), desc=desc, unit="sent", disable=not show, leave=False)
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                input_ids, mask = padded_batch(ids, idx, int(lengths[idx].max()), pad_id)
                input_ids = input_ids.to(encoder.device)
                mask = mask.to(encoder.device)
                hooks.mask = mask
                hooks.last = mask.sum(1) - 1
                model(input_ids=input_ids, attention_mask=mask)
                heads_t, layers_t = hooks.collect(len(idx))
                heads = heads_t.cpu().numpy() if heads_t is not None else None
                layers = layers_t.cpu().numpy() if layers_t is not None else None
                yield EncodedBatch(
                    indices=idx.astype(np.int64), heads=heads, layers=layers, n_truncated=int(truncated[idx].sum())
                )
                bar.update(len(idx))
        finally:
            bar.close()


def encode(
    encoder: Encoder,
    sentences: Sequence[str],
    *,
    pooling: str | None = None,
    views: Sequence[str] | str = VIEWS,
    batch_size: int = ENCODE_BATCH_SIZE,
    max_length: int | None = None,
    progress: bool | None = None,
) -> Features:
    """Pooled features of every head and every layer for ``sentences``, in input order.

    Examples
    --------
    >>> enc = load_encoder("minilm")                       # doctest: +SKIP
    >>> f = encode(enc, ["A cat sat .", "Dogs bark ."])    # doctest: +SKIP
    >>> f.heads.shape, f.layers.shape                      # doctest: +SKIP
    ((2, 6, 12, 32), (2, 7, 384))
    """
    sentences, pooling, views, batch_size, max_length = _check_arguments(  # all before any work
        encoder, sentences, pooling, views, batch_size, max_length)
    n = len(sentences)
    L, H, d, D = encoder.num_layers, encoder.num_heads, encoder.head_dim, encoder.hidden_size
    heads = np.empty((n, L, H, d), dtype=np.float32) if "heads" in views else None
    layers = np.empty((n, L + 1, D), dtype=np.float32) if "layers" in views else None
    n_truncated = 0
    for batch in iter_encode(
        encoder, sentences, pooling=pooling, views=views, batch_size=batch_size,
        max_length=max_length, progress=progress,
    ):
        n_truncated += batch.n_truncated
        if heads is not None:
            heads[batch.indices] = batch.heads
        if layers is not None:
            layers[batch.indices] = batch.layers
    return Features(heads=heads, layers=layers, n_truncated=n_truncated)
