"""The feature store (split into modules in the next commit)."""

from .feature_store import *  # noqa: F403
from .feature_store import __all__  # noqa: F401
