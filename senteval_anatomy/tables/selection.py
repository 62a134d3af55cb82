"""Selection rules: how heads, layers and k are chosen, on dev and never silently on test.

Transformer Anatomy chose heads, layers and k by *test* accuracy, so its "best" numbers are optimistically biased.
Every selection in this package (``Results.top_heads``, ``best_layer``, ``best_head``, :func:`choose_k` for the
top-k ``k``) ranks by the **dev** score (``devacc``). Ranking by test exists only to reproduce the paper's tables:
pass ``by="acc"`` together with ``allow_test_selection=True``, and a :class:`TestSelectionWarning` is emitted
every time.

Ties are broken towards the lower layer, then the lower head, and for k towards the smaller k: rounded SentEval
scores tie often, and breaking a tie with the test score would leak test information into the selection.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "BY_CHOICES",
    "HeadPick",
    "LayerPick",
    "TestSelectionWarning",
    "check_selection",
    "choose_k",
    "thirds_of",
]

#: The score columns a selection may rank by: ``devacc`` (dev, the default) or ``acc`` (test, biased).
BY_CHOICES: tuple[str, ...] = ("devacc", "acc")


class TestSelectionWarning(UserWarning):
    """Heads, layers or k were selected with the *test* score, as the paper did; the numbers are biased."""

    __test__ = False  # not a pytest test class despite the name


def check_selection(
    by: str, allow_test_selection: bool, *, what: str = "selection", stacklevel: int = 3
) -> None:
    """Refuse test-score selection unless explicitly allowed, and warn when it is.

    Why: selecting on test and then reporting test is how the paper's tables came out optimistic. We make the
    biased path possible (to reproduce them) but never silent.
    """
    if by not in BY_CHOICES:
        raise ValueError(f"by={by!r} is not a score column; use 'devacc' (default) or 'acc'")
    if by == "acc":
        if not allow_test_selection:
            raise ValueError(
                f"{what} by='acc' ranks on the TEST score, which biases every number reported afterwards. "
                "Use by='devacc' (the default); to reproduce the paper's test-selected tables pass "
                "allow_test_selection=True as well."
            )
        warnings.warn(
            f"{what} uses TEST scores (by='acc'), as the reference paper did; the resulting numbers are "
            "optimistically biased and must not be reported as held-out results.",
            TestSelectionWarning,
            stacklevel=stacklevel,
        )


def thirds_of(num_layers: int) -> list[tuple[str, range]]:
    """Split ``range(num_layers)`` into lower / middle / upper thirds (sizes differ by at most one).

    For 12 layers this is 0-3 / 4-7 / 8-11, the split used in the paper's analysis.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    parts = np.array_split(np.arange(num_layers), 3)
    return [
        (name, range(int(p[0]), int(p[-1]) + 1) if len(p) else range(0))
        for name, p in zip(("lower", "middle", "upper"), parts, strict=True)
    ]


@dataclass(frozen=True)
class LayerPick:
    """A selected layer: ``layer`` is the block index (-1 = embeddings) and its dev / test scores."""

    task: str
    layer: int
    name: str
    devacc: float
    acc: float
    by: str


@dataclass(frozen=True)
class HeadPick:
    """A selected head with its dev / test scores."""

    task: str
    layer: int
    head: int
    name: str
    devacc: float
    acc: float
    by: str


def choose_k(curve: pd.DataFrame, *, by: str = "devacc", allow_test_selection: bool = False) -> pd.Series:
    """The top-k row with the best ``by`` score (dev by default); ties go to the smaller k.

    Why smaller k on ties: the cheaper representation, and a rule that does not look at test scores.
    """
    check_selection(by, allow_test_selection, what="choose_k")
    if "kind" not in curve.columns:
        raise ValueError("choose_k: the frame has no 'kind' column; pass topk_curve()'s output")
    top = curve[(curve["kind"] == "topk") & curve[by].notna()]
    if "task" in top.columns and top["task"].nunique() > 1:
        raise ValueError(
            f"choose_k: the frame holds several tasks {sorted(top['task'].unique())}; select one"
        )
    if top.empty:
        raise ValueError(
            f"choose_k: no top-k row has a {by!r} score (tasks without a dev split, such as STS12-16, cannot "
            "have k chosen on dev)"
        )
    top = top.sort_values([by, "k"], ascending=[False, True], kind="mergesort")
    return top.iloc[0]
