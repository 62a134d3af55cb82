"""senteval_anatomy: every attention head and every layer of a transformer as a SentEval sentence encoder."""

from ._version import __version__

__all__ = ["__version__"]
