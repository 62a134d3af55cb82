"""Queries over the tidy results table that :func:`senteval_anatomy.sweeping.sweep` writes.

The sweep produces one row per model x task x view x layer x head (see ``docs/architecture.md``). Researchers
then ask the same handful of questions of that table: *where* does a property live (a layers x heads matrix),
which heads are best, which layer is best, how does the best head compare with the last / best layer, and where
do the top heads sit (lower / middle / upper thirds of the network). :class:`Results` answers them.

Every selection follows the rules of :mod:`senteval_anatomy.tables.selection` (dev scores; test only when explicitly
allowed, with a warning; ties to the lower layer / head). The table's schema, validation and files are in
:mod:`senteval_anatomy.tables.table`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine.registry import PROBING_GROUPS, PROBING_TASKS
from ..vocab import vector_name
from .selection import (
    BY_CHOICES,
    HeadPick,
    LayerPick,
    TestSelectionWarning,
    check_selection,
    choose_k,
    thirds_of,
)
from .table import (
    COLUMNS,
    KEY_COLUMNS,
    ResultsTableError,
    load_table,
    read_reference_json,
    save_table,
    validate_table,
    write_reference_json,
)

#: How many top heads the "where the best heads sit" analysis counts by default (the paper's top 10); a model with
#: fewer heads counts all of them.
THIRDS_K = 10

#: Names documented as importable from here; each has its one home in selection, table, vocab or the task registry.
__all__ = [
    "BY_CHOICES",
    "COLUMNS",
    "HeadPick",
    "KEY_COLUMNS",
    "LayerPick",
    "PROBING_GROUPS",
    "PROBING_TASKS",
    "Results",
    "ResultsTableError",
    "TestSelectionWarning",
    "check_selection",
    "load_table",
    "thirds_of",
    "validate_table",
]


class Results:
    """Questions researchers ask of a sweep's tidy table.

    Parameters
    ----------
    table : pandas.DataFrame
        The tidy table (validated with :func:`validate_table`).
    model, pooling : str, optional
        Defaults for every query. Queries need exactly one model and one pooling; when the table holds several and
        neither the call nor these defaults pick one, a ``ValueError`` lists the choices.
    setting : str, optional
        The run setting (the ``setting`` column: seed, preset, data, dtype... of one run) that queries read, when the
        table holds several for one model and pooling (several runs into one output folder). :meth:`settings`
        lists them; :meth:`select` narrows the table to one.

    Examples
    --------
    >>> res = Results.load("results/minilm.parquet")          # doctest: +SKIP
    >>> res.matrix("Length")                                    # doctest: +SKIP
    >>> res.top_heads("Length", k=5)                            # doctest: +SKIP
    """

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        model: str | None = None,
        pooling: str | None = None,
        setting: str | None = None,
    ) -> None:
        self.table = validate_table(table)
        self.model = model
        self.pooling = pooling
        self.setting = setting
        for arg, col in ((model, "model"), (pooling, "pooling"), (setting, "setting")):
            if arg is not None and arg not in set(self.table[col]):
                raise ValueError(f"{col}={arg!r} is not in the table; it has {sorted(set(self.table[col]))}")

    # ---------------------------------------------------------------- construction / persistence

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Results:
        """Load a CSV / parquet table, a sweep's output folder, or a folder / file in the reference's JSON layout."""
        return cls(load_table(path), **kwargs)

    @classmethod
    def concat(cls, parts: Iterable[Results | pd.DataFrame], **kwargs: Any) -> Results:
        """Combine several tables (e.g. two models' sweeps) into one; duplicate keys are an error."""
        frames = [p.table if isinstance(p, Results) else p for p in parts]
        if not frames:
            raise ValueError("Results.concat needs at least one table")
        return cls(pd.concat(frames, ignore_index=True), **kwargs)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV or parquet (chosen by extension), atomically."""
        return save_table(self.table, path)

    def to_reference_json(
        self, out_dir: str | os.PathLike[str], *, pooling: str | None = None, include_embeddings: bool = False
    ) -> list[Path]:
        """Export in the reference's layout (see :func:`senteval_anatomy.tables.table.write_reference_json`)."""
        return write_reference_json(self.table, out_dir, pooling=pooling or self.pooling,
                                    include_embeddings=include_embeddings)

    @classmethod
    def from_reference_json(
        cls,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        pooling: str = "cls",
        metric: Mapping[str, str] | None = None,
    ) -> Results:
        """Read result files in the reference's layout (see :func:`senteval_anatomy.tables.table.read_reference_json`)."""
        return cls(read_reference_json(path, pooling=pooling, metric=metric))

    # ---------------------------------------------------------------- basic facts

    def __repr__(self) -> str:
        return f"Results({len(self.table)} rows; models={self.models}; tasks={self.tasks}; poolings={self.poolings})"

    def __len__(self) -> int:
        return len(self.table)

    @property
    def models(self) -> list[str]:
        """Model names in the table, sorted."""
        return sorted(set(self.table["model"]))

    @property
    def tasks(self) -> list[str]:
        """Tasks in the table: probing tasks in the paper's order first, then the rest alphabetically."""
        present = set(self.table["task"])
        order = [t for t in PROBING_TASKS if t in present]
        return order + sorted(present - set(order))

    @property
    def poolings(self) -> list[str]:
        """Poolings in the table, sorted."""
        return sorted(set(self.table["pooling"]))

    def select(
        self,
        *,
        model: str | None = None,
        pooling: str | None = None,
        tasks: Sequence[str] | None = None,
        setting: str | None = None,
    ) -> Results:
        """A new :class:`Results` restricted to a model, a pooling, a run setting and/or some tasks."""
        df = self.table
        if setting is not None:
            df = df[df["setting"] == setting]
        if model is not None:
            df = df[df["model"] == model]
        if pooling is not None:
            df = df[df["pooling"] == pooling]
        if tasks is not None:
            df = df[df["task"].isin(list(tasks))]
        if df.empty:
            raise ValueError(
                f"no rows for model={model!r}, pooling={pooling!r}, setting={setting!r}, tasks={tasks!r}; {self!r}"
            )
        return Results(df, model=model, pooling=pooling, setting=setting)

    def settings(self) -> pd.DataFrame:
        """One row per run setting in the table: ``setting`` and what it stands for (model, pooling, seed, preset,
        probe settings, harness, dtype, data folder), with the number of rows. Sorted by model, pooling, setting."""
        cols = [c for c in ("setting", "model", "pooling", "seed", "preset", "kfold", "classifier", "usepytorch",
                            "harness", "dtype", "cache_dtype", "max_length", "data_path", "fingerprint")
                if c in self.table.columns]
        t = self.table[cols].astype("string").fillna("")
        out = t.groupby(cols, sort=False, dropna=False).size().reset_index(name="rows")
        return out.sort_values(["model", "pooling", "setting"], kind="stable").reset_index(drop=True)

    def metric(self, task: str) -> str:
        """``acc`` or ``pearson`` for the task (a task has one metric)."""
        vals = sorted(set(self._task_rows(task)["metric"]))
        if len(vals) > 1:
            raise ResultsTableError(f"task {task!r} has several metrics {vals}")
        return vals[0]

    def shape(self, *, model: str | None = None) -> tuple[int, int]:
        """``(num_layers, num_heads)`` of a model."""
        model = self._resolve("model", model, self.table)
        sub = self.table[self.table["model"] == model]
        nl, nh = sub["num_layers"].iloc[0], sub["num_heads"].iloc[0]
        if pd.isna(nh):
            raise ValueError(f"model {model!r} has no 'heads' rows, so its number of heads is unknown")
        return int(nl), int(nh)

    # ---------------------------------------------------------------- internal filtering

    def _resolve(self, col: str, value: str | None, df: pd.DataFrame) -> str:
        value = value if value is not None else getattr(self, col)
        present = sorted(set(df[col]))
        if value is None:
            if len(present) == 1:
                return present[0]
            if col == "setting":
                raise ValueError(
                    f"the table holds {len(present)} run settings {present} for one model and pooling (several runs "
                    "into one folder: other seeds, presets, data or dtypes); pick one with "
                    "Results(..., setting=...) or .select(setting=...); .settings() says what each one is"
                )
            raise ValueError(
                f"the table holds several {col}s {present}; pass {col}=... (or Results(..., {col}=...)) to pick one"
            )
        if value not in present:
            raise ValueError(f"{col}={value!r} has no rows here; available: {present}")
        return value

    def resolve(self, task: str, *, model: str | None = None, pooling: str | None = None) -> tuple[str, str]:
        """The ``(model, pooling)`` a query on ``task`` uses: the arguments, else the defaults given to
        :class:`Results`, else the only one present; a ``ValueError`` lists the choices when that is ambiguous."""
        rows = self._task_rows(task)
        m = self._resolve("model", model, rows)
        p = self._resolve("pooling", pooling, rows[rows["model"] == m])
        return m, p

    def _task_rows(self, task: str) -> pd.DataFrame:
        df = self.table[self.table["task"] == task]
        if df.empty:
            raise KeyError(f"task {task!r} is not in the results table; it has {self.tasks}")
        return df

    def _rows(
        self, task: str, view: str, *, model: str | None = None, pooling: str | None = None
    ) -> tuple[pd.DataFrame, str, str]:
        df = self._task_rows(task)
        model = self._resolve("model", model, df)
        df = df[df["model"] == model]
        pooling = self._resolve("pooling", pooling, df)
        df = df[df["pooling"] == pooling]
        setting = self._resolve("setting", None, df)
        df = df[(df["setting"] == setting) & (df["view"] == view)]
        return df, model, pooling

    # ---------------------------------------------------------------- matrices

    def matrix(
        self,
        task: str,
        *,
        value: str = "acc",
        model: str | None = None,
        pooling: str | None = None,
        sort: bool = False,
    ) -> pd.DataFrame:
        """The layers x heads grid of a task (index = layer 0..L-1, columns = head 0..H-1; NaN = missing cell).

        ``value`` is the score shown (``acc`` = test, as in the paper's heatmaps; ``devacc`` for dev). Showing a
        test score is description, not selection. With ``sort=True`` each row is sorted best-first (NaN last) and
        the columns become within-layer ranks 0..H-1, as in the paper's sorted heatmap.
        """
        if value not in BY_CHOICES:
            raise ValueError(f"value={value!r}; use 'acc' (test) or 'devacc' (dev)")
        df, model, _ = self._rows(task, "heads", model=model, pooling=pooling)
        nl, nh = self.shape(model=model)
        mat = df.pivot(index="layer", columns="head", values=value).reindex(
            index=range(nl), columns=range(nh)
        )
        mat = mat.astype("float64")
        mat.index.name, mat.columns.name = "layer", "head"
        if sort:
            vals = mat.to_numpy()
            # sort descending with NaN last: sort -vals ascending (NaN goes last in np.sort)
            sorted_vals = -np.sort(-vals, axis=1)
            mat = pd.DataFrame(sorted_vals, index=mat.index, columns=pd.RangeIndex(nh, name="rank"))
        return mat

    def layer_scores(
        self,
        task: str,
        *,
        model: str | None = None,
        pooling: str | None = None,
        include_embeddings: bool = True,
    ) -> pd.DataFrame:
        """Layer-view scores of a task: one row per layer (-1 = embeddings) with ``devacc`` and ``acc``.

        Layers in ``0..L-1`` that were never scored appear with NaN scores.
        """
        df, model, _ = self._rows(task, "layers", model=model, pooling=pooling)
        nl = int(self.table.loc[self.table["model"] == model, "num_layers"].iloc[0])
        layers = list(range(-1 if include_embeddings else 0, nl))
        out = df.set_index("layer")[["name", "devacc", "acc"]].reindex(layers)
        out["name"] = [vector_name("layers", la, -1) for la in layers]
        out.index.name = "layer"
        return out

    # ---------------------------------------------------------------- selections (dev by default)

    def top_heads(
        self,
        task: str,
        k: int | None = None,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        allow_test_selection: bool = False,
    ) -> pd.DataFrame:
        """Heads of ``task`` ranked best-first by ``by`` (dev by default); ``k=None`` returns all ranked heads.

        Returns a frame with ``rank`` (1-based), ``layer``, ``head``, ``name``, ``devacc``, ``acc``. Heads whose
        ``by`` score is missing are not ranked. Ties go to the lower layer, then the lower head (never to the
        other score: that would let test scores leak into a dev selection).
        """
        check_selection(by, allow_test_selection, what="top_heads")
        if k is not None and (not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"k must be a positive int or None (all heads), got {k!r}")
        df, _, _ = self._rows(task, "heads", model=model, pooling=pooling)
        df = df[df[by].notna()]
        if df.empty:
            raise ValueError(f"task {task!r} has no scored heads (column {by!r} is empty)")
        ranked = df.sort_values([by, "layer", "head"], ascending=[False, True, True], kind="mergesort")
        if k is not None:
            if k > len(ranked):
                warnings.warn(
                    f"top_heads({task!r}, k={k}): only {len(ranked)} heads are scored; returning all of them",
                    stacklevel=2,
                )
            ranked = ranked.head(k)
        out = ranked[["layer", "head", "name", "devacc", "acc"]].reset_index(drop=True)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        return out

    def top_head_ids(
        self, task: str, k: int | None = None, by: str = "devacc", **kwargs: Any
    ) -> list[tuple[int, int]]:
        """``top_heads`` as a list of ``(layer, head)`` in rank order: the input :class:`HeadsAdapter` takes."""
        if by == "acc":
            kwargs.setdefault("allow_test_selection", False)
        t = self.top_heads(task, k, by, **kwargs)
        return [(int(a), int(b)) for a, b in zip(t["layer"], t["head"], strict=True)]

    def best_head(
        self,
        task: str,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        allow_test_selection: bool = False,
    ) -> HeadPick:
        """The single best head (chosen by ``by``, dev by default) with its dev and test scores."""
        check_selection(by, allow_test_selection, what="best_head")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TestSelectionWarning)
            row = self.top_heads(task, 1, by, model=model, pooling=pooling, allow_test_selection=True).iloc[0]
        return HeadPick(
            task, int(row.layer), int(row["head"]), str(row["name"]), float(row.devacc), float(row.acc), by
        )

    def best_layer(
        self,
        task: str,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        include_embeddings: bool = False,
        allow_test_selection: bool = False,
    ) -> LayerPick:
        """The best layer-view representation (chosen by ``by``, dev by default) with dev and test scores.

        The embeddings output (layer -1) is excluded by default, as in the paper (its layer indices are
        blocks only). Ties go to the lower layer.
        """
        check_selection(by, allow_test_selection, what="best_layer")
        scores = self.layer_scores(task, model=model, pooling=pooling, include_embeddings=include_embeddings)
        scores = scores[scores[by].notna()]
        if scores.empty:
            raise ValueError(
                f"task {task!r} has no scored layers ('layers' view rows with {by}); run the sweep with the layers view"
            )
        layer = int(scores[by].idxmax())  # idxmax returns the first (lowest layer) maximum
        row = scores.loc[layer]
        return LayerPick(task, layer, str(row["name"]), float(row.devacc), float(row.acc), by)

    def last_layer(self, task: str, *, model: str | None = None, pooling: str | None = None) -> LayerPick:
        """The last block's layer-view scores (the usual "take the top layer" baseline)."""
        scores = self.layer_scores(task, model=model, pooling=pooling, include_embeddings=False)
        layer = int(scores.index.max())
        row = scores.loc[layer]
        return LayerPick(task, layer, str(row["name"]), float(row.devacc), float(row.acc), "fixed")

    def head_stats(
        self, task: str, *, value: str = "acc", model: str | None = None, pooling: str | None = None
    ) -> dict[str, float]:
        """Mean, median, max and count of head scores (descriptive; no selection)."""
        df, _, _ = self._rows(task, "heads", model=model, pooling=pooling)
        v = df[value].dropna()
        return {
            "mean": float(v.mean()) if len(v) else math.nan,
            "median": float(v.median()) if len(v) else math.nan,
            "max": float(v.max()) if len(v) else math.nan,
            "n": int(len(v)),
        }

    def thirds(
        self,
        task: str,
        k: int | None = None,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        allow_test_selection: bool = False,
    ) -> dict[str, int]:
        """How many of the top-``k`` heads sit in the lower / middle / upper third of the layers.

        This is the paper's "where the best heads sit" analysis (for 12 layers: 0-3 / 4-7 / 8-11). ``k=None``: the
        paper's 10, or every scored head when there are fewer (an explicit larger ``k`` warns, as in :meth:`top_heads`).
        """
        check_selection(by, allow_test_selection, what="thirds")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TestSelectionWarning)
            top = self.top_heads(task, k, by, model=model, pooling=pooling, allow_test_selection=True)
        if k is None:
            top = top.head(THIRDS_K)
        model_ = self._resolve("model", model, self._task_rows(task))
        nl, _ = self.shape(model=model_)
        return {name: int(top["layer"].isin(list(rng)).sum()) for name, rng in thirds_of(nl)}

    def thirds_table(
        self,
        tasks: Sequence[str] | None = None,
        k: int | None = None,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        allow_test_selection: bool = False,
    ) -> pd.DataFrame:
        """:meth:`thirds` for many tasks, plus the layer with the highest mean head score and the best head's layer."""
        check_selection(by, allow_test_selection, what="thirds_table")
        rows = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TestSelectionWarning)
            for task in tasks or self.tasks_with("heads"):
                th = self.thirds(task, k, by, model=model, pooling=pooling, allow_test_selection=True)
                mat = self.matrix(task, value=by, model=model, pooling=pooling)
                means = mat.mean(axis=1)
                best = self.best_head(task, by, model=model, pooling=pooling, allow_test_selection=True)
                n = sum(th.values()) if k is None else k  # the heads thirds() counted: top_heads at its k
                top = self.top_heads(task, n, by, model=model, pooling=pooling, allow_test_selection=True)
                rows.append(
                    {
                        "task": task,
                        "top_layers": ",".join(str(x) for x in top["layer"]),
                        **th,
                        "split": f"{th['lower']}/{th['middle']}/{th['upper']}",
                        "layer_best_mean": int(means.idxmax()) if means.notna().any() else pd.NA,
                        "best_head_layer": best.layer,
                    }
                )
        return pd.DataFrame(rows)

    def tasks_with(self, view: str) -> list[str]:
        """Tasks that have rows of ``view`` (``heads`` or ``layers``), in :attr:`tasks` order."""
        present = set(self.table.loc[self.table["view"] == view, "task"])
        return [t for t in self.tasks if t in present]

    # ---------------------------------------------------------------- summaries and comparisons

    def summary(
        self,
        tasks: Sequence[str] | None = None,
        *,
        model: str | None = None,
        pooling: str | None = None,
        topk: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """One row per task: last layer, best layer (dev-chosen), best head (dev-chosen), mean head, top-k.

        All ``*_test`` columns are test scores of representations *selected on dev*. ``topk`` is the frame
        :func:`senteval_anatomy.analysis.topk.topk_curve` returns (one or several tasks concatenated); its dev-chosen k
        fills the ``topk_*`` columns. ``gain_vs_best_layer`` is top-k test minus best-layer test (points), and
        ``best_head_minus_best_layer`` is the same for the best single head.
        """
        rows = []
        for task in tasks or self.tasks:
            row: dict[str, Any] = {"task": task, "metric": self.metric(task)}
            df = self._task_rows(task)
            m, p = self.resolve(task, model=model, pooling=pooling)
            row.update(model=m, pooling=p)
            has_layers = ((df["view"] == "layers") & (df["model"] == m) & (df["pooling"] == p)).any()
            has_heads = ((df["view"] == "heads") & (df["model"] == m) & (df["pooling"] == p)).any()
            if has_layers:
                last = self.last_layer(task, model=m, pooling=p)
                row.update(last_layer=last.layer, last_layer_dev=last.devacc, last_layer_test=last.acc)
                try:
                    best = self.best_layer(task, model=m, pooling=p)
                    row.update(best_layer=best.layer, best_layer_dev=best.devacc, best_layer_test=best.acc)
                except ValueError:
                    pass
            if has_heads:
                try:
                    bh = self.best_head(task, model=m, pooling=p)
                    row.update(
                        best_head=f"{bh.layer},{bh.head}", best_head_dev=bh.devacc, best_head_test=bh.acc
                    )
                except ValueError:
                    pass
                st = self.head_stats(task, model=m, pooling=p)
                row.update(mean_head_test=st["mean"], median_head_test=st["median"], heads_scored=st["n"])
            if topk is not None:
                sub = topk[topk["task"] == task]
                if "model" in sub.columns and sub["model"].notna().any():
                    sub = sub[sub["model"] == m]
                if "pooling" in sub.columns and (sub["pooling"] == p).any():
                    sub = sub[(sub["pooling"] == p) | (sub["kind"] != "topk")]
                if "rank_task" in sub.columns and sub["rank_task"].nunique() > 1:
                    # several rankings of the same task: the table reports heads ranked on the task itself
                    sub = sub[sub["rank_task"] == task]
                try:
                    pick = choose_k(sub) if not sub.empty else None
                except ValueError:  # no dev score (STS12-16): no k can be chosen on dev
                    pick = None
                if pick is not None:
                    row.update(
                        topk_k=int(pick["k"]), topk_dev=float(pick["devacc"]), topk_test=float(pick["acc"])
                    )
                # the paper's k: as many heads as a layer has (its tables' top-k), fixed in advance, not chosen
                n_heads = df.loc[df["model"] == m, "num_heads"].dropna()
                paper = sub[(sub["kind"] == "topk") & (pd.to_numeric(sub["k"], errors="coerce") == (
                    int(n_heads.iloc[0]) if len(n_heads) else -1))]
                if len(paper):
                    row.update(topk_paper_k=int(paper["k"].iloc[0]), topk_paper_test=float(paper["acc"].iloc[0]))
            rows.append(row)
        out = pd.DataFrame(rows)
        for col in ("last_layer_test", "best_layer_test", "best_head_test", "topk_test", "topk_paper_test"):
            if col not in out.columns:
                out[col] = np.nan
        out["best_head_minus_best_layer"] = out["best_head_test"] - out["best_layer_test"]
        out["gain_vs_best_layer"] = out["topk_test"] - out["best_layer_test"]
        return out

    def compare(
        self,
        a: str,
        b: str,
        *,
        on: str = "model",
        tasks: Sequence[str] | None = None,
        model: str | None = None,
        pooling: str | None = None,
    ) -> pd.DataFrame:
        """Compare two models (``on="model"``) or two poolings (``on="pooling"``) task by task.

        For each task: last layer, dev-chosen best layer and best head (their test scores), and the mean head,
        for ``a`` and ``b``, and ``b - a``. The other axis (``pooling`` when comparing models and vice versa) is
        fixed by the keyword or must be unique.
        """
        if on not in ("model", "pooling"):
            raise ValueError(f"on={on!r}; compare along 'model' or 'pooling'")
        measures = (
            "last_layer_test",
            "best_layer",
            "best_layer_test",
            "best_head",
            "best_head_test",
            "mean_head_test",
        )
        sides = {}
        for side in (a, b):
            kw = {"model": side, "pooling": pooling} if on == "model" else {"model": model, "pooling": side}
            sub = self.table[self.table[on] == side]
            if sub.empty:
                raise ValueError(f"{on}={side!r} has no rows; available: {sorted(set(self.table[on]))}")
            tk = [t for t in (tasks or self.tasks) if t in set(sub["task"])]
            sides[side] = self.summary(tk, **kw).set_index("task")
        common = [t for t in sides[a].index if t in sides[b].index]
        if not common:
            raise ValueError(f"{a!r} and {b!r} share no task")
        out = pd.DataFrame(index=pd.Index(common, name="task"))
        out["metric"] = sides[a].loc[common, "metric"]
        for mcol in measures:
            for side in (a, b):
                col = (
                    sides[side][mcol]
                    if mcol in sides[side].columns
                    else pd.Series(np.nan, index=sides[side].index)
                )
                out[f"{mcol}[{side}]"] = col.reindex(common)
            if mcol.endswith("_test"):
                out[f"{mcol}[{b}-{a}]"] = out[f"{mcol}[{b}]"] - out[f"{mcol}[{a}]"]
        return out.reset_index()

    def matrix_diff(
        self,
        task: str,
        a: str,
        b: str,
        *,
        on: str = "pooling",
        value: str = "acc",
        model: str | None = None,
        pooling: str | None = None,
    ) -> pd.DataFrame:
        """Cell-wise ``b - a`` of two matrices (two poolings of a model, or two models of the same shape)."""
        if on == "pooling":
            ma = self.matrix(task, value=value, model=model, pooling=a)
            mb = self.matrix(task, value=value, model=model, pooling=b)
        elif on == "model":
            ma = self.matrix(task, value=value, model=a, pooling=pooling)
            mb = self.matrix(task, value=value, model=b, pooling=pooling)
        else:
            raise ValueError(f"on={on!r}; use 'pooling' or 'model'")
        if ma.shape != mb.shape:
            raise ValueError(
                f"{a!r} is {ma.shape[0]}x{ma.shape[1]} but {b!r} is {mb.shape[0]}x{mb.shape[1]}; "
                "a cell-wise difference needs the same layers x heads grid (use compare() instead)"
            )
        return mb - ma

    def provenance(self) -> pd.DataFrame:
        """The distinct run settings in the table (harness, classifier, kfold, seed, preset, data, version) per model
        and pooling."""
        cols = [
            "model",
            "fingerprint",
            "setting",
            "pooling",
            "preset",
            "dtype",
            "data_path",
            "harness",
            "usepytorch",
            "classifier",
            "kfold",
            "seed",
            "package_version",
        ]
        return self.table[cols].astype("string").drop_duplicates().reset_index(drop=True)
