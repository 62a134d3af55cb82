"""SentEval adapters: one head, one layer, or a list of heads as a ``prepare`` / ``batcher`` pair.

They follow SentEval's protocol exactly (its engine is ``facebookresearch/SentEval``, HEAD 5d6dc11):
``prepare(params, samples)`` is called once per task with every sentence of the task as token lists, and
``batcher(params, batch)`` with lists of token lists (possibly empty), expecting a float array
``[len(batch), d]`` in row order. So both our engine and an unchanged ``senteval.engine.SE`` accept them::

    adapter = HeadAdapter(load_encoder("minilm"), layer=3, head=7)
    se = senteval.engine.SE(params, adapter.batcher, adapter.prepare)
    se.eval(["TREC"])

``prepare`` encodes all of the task's sentences once, through the :class:`~senteval_anatomy.store.FeatureStore`;
every later adapter on the same encoder and task (another head, a layer, a top-k list) finds the entry there, in
memory or on disk, and only slices it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .encoders.encoder import Encoder, check_head, check_heads, check_layer
from .encoders.encoding import encode
from .store import FeatureStore, StoredFeatures
from .vocab import (
    ENCODE_BATCH_SIZE,
    VIEWS,
    check_batch_size,
    check_pooling,
    default_cache_dir,
    read_layer,
    vector_name,
)

__all__ = ["HeadAdapter", "HeadsAdapter", "LayerAdapter", "check_head", "check_heads", "check_layer", "default_store"]

_DEFAULT_STORES: dict[str, FeatureStore] = {}


def default_store() -> FeatureStore:
    """The process-wide store at the default cache location (``$SENTEVAL_ANATOMY_CACHE`` or ``~/.cache/...``)."""
    where = str(default_cache_dir())
    if where not in _DEFAULT_STORES:
        _DEFAULT_STORES[where] = FeatureStore(where)
    return _DEFAULT_STORES[where]


def _join(batch: Any, what: str) -> list[str]:
    """Token lists → strings joined by spaces (SentEval data is pre-tokenized), with clear errors."""
    if isinstance(batch, np.ndarray):
        batch = batch.tolist()
    if not isinstance(batch, (list, tuple)):
        raise TypeError(f"{what} must be a list of token lists, got {type(batch).__name__}.")
    out = []
    for i, tokens in enumerate(batch):
        if isinstance(tokens, str):
            raise TypeError(
                f"{what}[{i}] is a str, not a list of tokens; SentEval passes token lists such as ['A', 'cat', '.']."
            )
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"{what}[{i}] is a {type(tokens).__name__}, not a list of str tokens.")
        for j, tok in enumerate(tokens):
            if not isinstance(tok, str):
                raise TypeError(f"{what}[{i}][{j}] is {tok!r} ({type(tok).__name__}); every token must be a str.")
        out.append(" ".join(tokens))
    return out


class _Adapter:
    """Shared prepare/batcher machinery; subclasses only say which slice of the features they return."""

    view: str = "heads"

    def __init__(
        self,
        encoder: Encoder,
        *,
        pooling: str | None = None,
        store: FeatureStore | None = None,
        max_length: int | None = None,
        batch_size: int = ENCODE_BATCH_SIZE,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be an Encoder from load_encoder(), got {type(encoder).__name__}.")
        self.encoder = encoder
        # the checks encode() and sweep() make, here at construction: a mistake is one line before any encoding
        self.pooling = check_pooling(pooling, encoder)
        if store is not None and not isinstance(store, FeatureStore):
            raise TypeError(f"store must be a FeatureStore (or None for the default cache), got {type(store).__name__}.")
        self.store = store
        self.max_length = None if max_length is None else encoder.token_limit(max_length)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        self.features_: StoredFeatures | None = None
        self.task_: str | None = None
        self.n_prepared_ = 0

    # -- what subclasses define
    @property
    def dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _select(self, heads: np.ndarray | None, layers: np.ndarray | None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- SentEval protocol
    def prepare(self, params: Any, samples: Sequence[Sequence[str]]) -> None:
        """Encode every sentence of the task once (or find them in the store). Returns None, as SentEval expects."""
        sentences = _join(samples, "samples")
        unique = list(dict.fromkeys(sentences))
        if not unique:
            raise ValueError("prepare() got no samples: the task has no sentences.")
        store = self.store if self.store is not None else default_store()
        self.features_ = store.get(
            self.encoder, unique, pooling=self.pooling, max_length=self.max_length, batch_size=self.batch_size,
            views=VIEWS, progress=self.progress,
        )
        self.task_ = getattr(params, "current_task", None) if params is not None else None
        self.n_prepared_ += 1

    def batcher(self, params: Any, batch: Sequence[Sequence[str]]) -> np.ndarray:
        """Vectors of ``batch`` (token lists) as float32 ``[len(batch), dim]``, row ``i`` for ``batch[i]``."""
        sentences = _join(batch, "batch")
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.features_
        if feats is not None:
            try:
                rows = feats.rows(sentences)
            except KeyError:
                rows = None
            if rows is not None:
                # rows in batch order: fancy indexing keeps row i = batch[i]
                # read() checks every chunk of the cache entry on its first read (store.StoredFeatures.read)
                heads = feats.read("heads", rows) if self.view == "heads" else None
                layers = feats.read("layers", rows) if self.view == "layers" else None
                return np.ascontiguousarray(self._select(heads, layers), dtype=np.float32)
        # Sentences prepare() did not see (or no prepare at all): encode them directly, without caching.
        f = encode(
            self.encoder, sentences, pooling=self.pooling, views=(self.view,), batch_size=self.batch_size,
            max_length=self.max_length, progress=False,
        )
        return np.ascontiguousarray(self._select(f.heads, f.layers), dtype=np.float32)


class HeadAdapter(_Adapter):
    """One attention head as a sentence encoder: ``d``-dim vectors (head ``head`` of block ``layer``, 0-based)."""

    view = "heads"

    def __init__(self, encoder: Encoder, layer: int, head: int, **kwargs: Any) -> None:
        super().__init__(encoder, **kwargs)
        self.layer = check_layer(encoder, layer)
        self.head = check_head(encoder, head)

    @property
    def dim(self) -> int:
        return self.encoder.head_dim

    @property
    def name(self) -> str:
        return vector_name("heads", self.layer, self.head)

    def _select(self, heads: np.ndarray | None, layers: np.ndarray | None) -> np.ndarray:
        assert heads is not None
        return heads[:, self.layer, self.head, :]


class HeadsAdapter(_Adapter):
    """Several heads concatenated along the feature axis, in the given order (the paper's top-k representation)."""

    view = "heads"

    def __init__(self, encoder: Encoder, heads: Sequence[tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(encoder, **kwargs)
        self.heads = check_heads(encoder, heads)
        self._layers = np.array([p[0] for p in self.heads])
        self._heads = np.array([p[1] for p in self.heads])

    @property
    def dim(self) -> int:
        return self.encoder.head_dim * len(self.heads)

    @property
    def name(self) -> str:
        return "+".join(vector_name("heads", lay, h) for lay, h in self.heads)

    def _select(self, heads: np.ndarray | None, layers: np.ndarray | None) -> np.ndarray:
        assert heads is not None
        return heads[:, self._layers, self._heads, :].reshape(heads.shape[0], -1)


class LayerAdapter(_Adapter):
    """One layer as a sentence encoder: the output of block ``layer`` (negative counts from the end; ``-1`` is the
    last block) or ``"embeddings"``, ``hidden_size``-dim."""

    view = "layers"

    def __init__(self, encoder: Encoder, layer: int | str = -1, **kwargs: Any) -> None:
        super().__init__(encoder, **kwargs)
        if read_layer(layer) == "embeddings":  # 'embeddings' in any case, as --layer reads it
            self.layer: int | str = "embeddings"
            self._index = 0
        else:
            self.layer = check_layer(encoder, layer)  # type: ignore[arg-type]
            self._index = int(self.layer) + 1

    @property
    def dim(self) -> int:
        return self.encoder.hidden_size

    @property
    def name(self) -> str:
        return vector_name("layers", -1 if self.layer == "embeddings" else int(self.layer))

    def _select(self, heads: np.ndarray | None, layers: np.ndarray | None) -> np.ndarray:
        assert layers is not None
        return layers[:, self._index, :]
