"""``params`` handling for the built-in engine: SentEval's ``dotdict`` and its defaults.

SentEval wraps the user's ``params`` in a ``dotdict`` (a dict whose attributes map to keys, with a missing key read
as ``None``) and fills in a few defaults in ``SE.__init__``. :func:`apply_defaults` does exactly that, plus one key of
ours, ``device``.

=============  ==========  =========================================================================================
key            default     meaning
=============  ==========  =========================================================================================
task_path      (required)  data root holding ``downstream/`` and ``probing/`` in SentEval's layout
usepytorch     True        True: PyTorch probe; False: ``sklearn.linear_model.LogisticRegression``
seed           1111        seeds every probe, the KFold shuffles (TREC, MRPC) and the relatedness regression
batch_size     128         sentences per ``batcher`` call (not the probe's mini-batch)
nhid           0           legacy, copied around but never read by the probes (as in SentEval)
kfold          5           folds for KFold (TREC, MRPC) and nested KFold (CR, MR, MPQA, SUBJ)
classifier     {'nhid': 0} probe config (see :data:`senteval_anatomy.engine.probes.CLASSIFIER_DEFAULTS`);
                           must contain ``nhid``
similarity     (cosine)    STS12-16 only: ``f(u, v) -> float``
device         'auto'      ours: where PyTorch probes run; 'auto' = 'cuda' if available else 'cpu'
probe_threads  None        ours: if set, torch and BLAS/OpenMP threads are limited to this number while probes are
                           trained (restored afterwards); None leaves the libraries' settings alone
=============  ==========  =========================================================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..vocab import resolve_device  # re-exported: one device rule for models and probes

__all__ = ["dotdict", "DEFAULTS", "apply_defaults", "resolve_device", "thread_limit"]


class dotdict(dict):  # noqa: N801 - SentEval's name
    """A dict with attribute access; a missing key reads as ``None`` (SentEval's ``utils.dotdict``).

    Unlike SentEval's, a missing *dunder* attribute (``__array__``, ``__deepcopy__``, ...) raises
    ``AttributeError`` as usual, so that ``copy``, ``pickle`` and ``numpy`` introspection behave.

    Examples
    --------
    >>> p = dotdict({"seed": 1})
    >>> p.seed, p.typo
    (1, None)
    >>> p.batch_size = 8
    >>> p["batch_size"]
    8
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError as e:
            raise AttributeError(name) from e


#: Top-level defaults, applied as SentEval does: only when the key is absent (``classifier`` also when empty).
DEFAULTS: dict[str, Any] = {
    "usepytorch": True,
    "seed": 1111,
    "batch_size": 128,
    "nhid": 0,
    "kfold": 5,
    "device": "auto",
    "probe_threads": None,
}


def apply_defaults(params: Mapping[str, Any] | None) -> dotdict:
    """Return a new :class:`dotdict` holding ``params`` plus SentEval's defaults.

    Parameters
    ----------
    params : mapping or None
        The user's parameters. It is shallow-copied once (as SentEval's ``dotdict(params)`` does); the returned
        object is the one every hook then receives.

    Raises
    ------
    ValueError
        If ``params['classifier']`` is not a mapping or has no ``nhid`` key (SentEval asserts).
    """
    p = dotdict(params or {})
    for key, value in DEFAULTS.items():
        if key not in p:
            p[key] = value
    if "classifier" not in p or not p["classifier"]:
        p["classifier"] = {"nhid": 0}
    if not isinstance(p["classifier"], Mapping):
        raise ValueError(
            f"params['classifier'] must be a dict such as {{'nhid': 0, 'optim': 'adam'}}, "
            f"got {type(p['classifier']).__name__}."
        )
    if "nhid" not in p["classifier"]:
        raise ValueError(
            "params['classifier'] has no 'nhid' key (number of hidden units; 0 = logistic regression). "
            "Set it, e.g. params['classifier'] = {'nhid': 0, ...}."
        )
    return p


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads and the BLAS / OpenMP pools (``threadpoolctl``) to ``n`` inside the block, and
    restore them afterwards. ``None`` does nothing.

    Probes train tiny models in many small steps; on a machine with few, busy cores the default of one thread per
    core mostly adds hand-off overhead (see ``docs/engine.md``, "Performance notes").
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"params.probe_threads must be a positive int or None, got {n!r}.")
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)
