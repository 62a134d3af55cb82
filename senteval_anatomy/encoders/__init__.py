"""Encoders: a Hugging Face model becomes a sentence encoder whose every head and every layer can be read.

The lowest layer of the package (it imports only :mod:`senteval_anatomy.vocab`). Modules, bottom up:

* :mod:`.architectures` — :class:`ArchSpec` and the declarative table ``ARCHITECTURES`` (where each ``model_type``
  keeps its blocks, W_O and attention module), the spec's JSON form, the README's table. No torch.
* :mod:`.readers` — reading a model, its config and tokenizer: module paths, sizes, limits, dtypes, digests.
* :mod:`.hooks` — the one home of raw torch hooks on W_O and the blocks, and the argument conventions they share.
* :mod:`.layout` — :class:`ModelLayout` (module access by layer) and :func:`verify_layout` (the W_O identity proof).
* :mod:`.discovery` — finding and validating a layout for a model type the table does not cover.
* :mod:`.encoder` — :class:`Encoder` (a ``ModelLayout`` with a name and a fingerprint), ``Encoder.from_model``.
* :mod:`.loading` — :func:`load_encoder`: bundled names, local folders and Hub ids, with one-line errors.
* :mod:`.encoding` — tokenizing, the pooling hooks and :func:`encode` / :func:`iter_encode` (one forward pass per
  batch gives every head and every layer).
* :mod:`.selfcheck` — :func:`~.selfcheck.self_check`: the checks ``models --check MODEL`` runs on one model.
* :mod:`.command` — the ``models`` command: list the table, ``--markdown``, ``--check MODEL`` (no torch until a
  model is checked).

Import names from their module (``from senteval_anatomy.encoders.loading import load_encoder``) or from the package
top (``from senteval_anatomy import load_encoder``). This ``__init__`` imports nothing, so reading a spec
(:mod:`.architectures`) does not load torch.
"""
