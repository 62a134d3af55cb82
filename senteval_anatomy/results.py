"""Queries over the tidy results table that :func:`senteval_anatomy.sweeping.sweep` writes.

The sweep produces one row per model x task x view x layer x head (see ``docs/architecture.md``). Researchers
then ask the same handful of questions of that table: *where* does a property live (a layers x heads matrix),
which heads are best, which layer is best, how does the best head compare with the last / best layer, and where
do the top heads sit (lower / middle / upper thirds of the network). :class:`Results` answers them.

Selection rule (the paper's main flaw, which we do not repeat)
----------------------------------------------------------------
Transformer Anatomy chose heads, layers and k by *test* accuracy, so its "best" numbers are optimistically biased.
Every selection here (``top_heads``, ``best_layer``, ``best_head``, the top-k ``k``) ranks by the **dev** score
(``devacc``). Ranking by test exists only to reproduce the paper's tables: pass ``by="acc"`` together with
``allow_test_selection=True``, and a :class:`TestSelectionWarning` is emitted every time.

Ties are broken towards the lower layer, then the lower head: rounded SentEval scores tie often, and breaking a
tie with the test score would leak test information into the selection.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .engine.tasks import PROBING_TASKS
from .vocab import POOLINGS, RESULT_COLUMNS, VIEWS, atomic_write, vector_name

__all__ = [
    "BY_CHOICES",
    "COLUMNS",
    "PROBING_GROUPS",
    "PROBING_TASKS",
    "KEY_COLUMNS",
    "LayerPick",
    "HeadPick",
    "Results",
    "ResultsTableError",
    "TestSelectionWarning",
    "check_selection",
    "load_table",
    "picks_to_dict",
    "synthetic_table",
    "validate_table",
    "thirds_of",
]

#: Every column of the tidy table, in the order the sweep writes them (the one schema: vocab.RESULT_COLUMNS).
COLUMNS: tuple[str, ...] = RESULT_COLUMNS

#: Columns without which no query can be answered; the rest are provenance and are filled with NA when absent.
ESSENTIAL_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "view",
    "layer",
    "head",
    "pooling",
    "metric",
    "devacc",
    "acc",
)

#: A row is identified by these columns; two rows with the same key are an error (an appended re-run).
KEY_COLUMNS: tuple[str, ...] = ("model", "task", "view", "pooling", "layer", "head")

METRICS = ("acc", "pearson")
BY_CHOICES = ("devacc", "acc")

#: The reference notebooks' grouping of probing tasks (paper-reference section 5).
PROBING_GROUPS: dict[str, tuple[str, ...]] = {
    "surface": ("Length", "WordContent"),
    "syntactic": ("Depth", "TopConstituents", "BigramShift"),
    "semantic": ("Tense", "SubjNumber", "ObjNumber", "OddManOut", "CoordinationInversion"),
}


class ResultsTableError(ValueError):
    """The results table is malformed (missing columns, bad values, duplicate rows)."""


class TestSelectionWarning(UserWarning):
    """Heads, layers or k were selected with the *test* score, as the paper did; the numbers are biased."""

    __test__ = False  # not a pytest test class despite the name


# --------------------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------------------


def _where(source: str | os.PathLike[str] | None) -> str:
    return f" in {os.fspath(source)}" if source is not None else ""


def _rows_hint(df: pd.DataFrame, mask: pd.Series, source: str | os.PathLike[str] | None) -> str:
    """Name the offending rows: CSV line numbers for CSV files, table positions otherwise."""
    positions = np.flatnonzero(mask.to_numpy())[:5]
    if source is not None and os.fspath(source).lower().endswith(".csv"):
        return "lines " + ", ".join(str(p + 2) for p in positions)  # +1 header, +1 one-based
    return "rows " + ", ".join(str(p) for p in positions)


def validate_table(df: pd.DataFrame, *, source: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Check a tidy results table and return a cleaned copy with canonical dtypes and column order.

    Why: the table is often assembled by hand (concatenating sweeps, reading a CSV someone edited), and a
    missing column or a duplicated row otherwise surfaces much later as a confusing KeyError or as a silently
    wrong "best head". Errors name the file, the rows (CSV line numbers) and the fix.

    Parameters
    ----------
    df : pandas.DataFrame
        The table as loaded.
    source : path, optional
        Where it came from; only used in error messages.

    Returns
    -------
    pandas.DataFrame
        A copy with all of :data:`COLUMNS` (provenance columns that were absent are filled with NA), ints for
        ``layer``/``head``/``num_layers``/``num_heads`` and floats for the scores.

    Raises
    ------
    ResultsTableError
        On missing essential columns, unknown ``view``/``pooling``/``metric`` values, non-numeric layer/head or
        scores, head/view inconsistencies, or duplicate (model, task, view, pooling, layer, head) rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_table expects a pandas.DataFrame, got {type(df).__name__}")
    where = _where(source)
    missing = [c for c in ESSENTIAL_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsTableError(
            f"results table{where} is missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, df.columns)) or 'no columns'}. "
            f"The sweep writes these columns: {', '.join(COLUMNS)}."
        )
    out = df.copy().reset_index(drop=True)
    for col in COLUMNS:
        if col not in out.columns:
            out[col] = pd.NA
    extra = [c for c in out.columns if c not in COLUMNS]
    out = out[list(COLUMNS) + extra]

    for col in ("model", "task", "view", "pooling", "metric"):
        bad = out[col].isna()
        if bad.any():
            raise ResultsTableError(
                f"column {col!r}{where} is empty at {_rows_hint(out, bad, source)}; every row needs a {col}."
            )
        out[col] = out[col].astype(str)
    for col, allowed in (("view", VIEWS), ("pooling", POOLINGS), ("metric", METRICS)):
        bad = ~out[col].isin(allowed)
        if bad.any():
            values = sorted(set(out.loc[bad, col]))
            raise ResultsTableError(
                f"column {col!r}{where} has unknown value(s) {values} at {_rows_hint(out, bad, source)}; "
                f"allowed: {', '.join(allowed)}."
            )

    for col in ("layer", "head"):
        num = pd.to_numeric(out[col], errors="coerce")
        bad = num.isna() | (num != np.floor(num))
        if bad.any():
            raise ResultsTableError(
                f"column {col!r}{where} must hold integers; got {list(out.loc[bad, col][:3])} at "
                f"{_rows_hint(out, bad, source)}."
            )
        out[col] = num.astype("int64")
    for col in ("num_layers", "num_heads", "ndev", "ntest", "kfold", "seed"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    for col in ("devacc", "acc", "f1"):
        num = pd.to_numeric(out[col], errors="coerce")
        bad = num.isna() & out[col].notna()
        if bad.any():
            raise ResultsTableError(
                f"column {col!r}{where} must be numeric (NaN marks a missing cell); got "
                f"{list(out.loc[bad, col][:3])} at {_rows_hint(out, bad, source)}."
            )
        out[col] = num.astype("float64")

    heads = out["view"] == "heads"
    bad = heads & ((out["head"] < 0) | (out["layer"] < 0))
    if bad.any():
        raise ResultsTableError(
            f"'heads' rows{where} need layer >= 0 and head >= 0 ({_rows_hint(out, bad, source)})."
        )
    bad = ~heads & ((out["head"] != -1) | (out["layer"] < -1))
    if bad.any():
        raise ResultsTableError(
            f"'layers' rows{where} need head == -1 and layer >= -1 (-1 = embeddings) "
            f"({_rows_hint(out, bad, source)})."
        )

    dup = out.duplicated(list(KEY_COLUMNS), keep=False)
    if dup.any():
        first = out.loc[dup, list(KEY_COLUMNS)].iloc[0].to_dict()
        raise ResultsTableError(
            f"results table{where} has {int(dup.sum())} rows sharing a (model, task, view, pooling, layer, "
            f"head) key, e.g. {first} at {_rows_hint(out, dup, source)}. This happens when a re-run was appended "
            "to an old table; keep one of them, e.g. df.drop_duplicates(list(KEY_COLUMNS), keep='last'), "
            "or give the runs different model names."
        )

    _fill_shapes(out, source)
    out["name"] = [
        n if isinstance(n, str) and n else vector_name(v, la, h)
        for n, v, la, h in zip(out["name"], out["view"], out["layer"], out["head"], strict=True)
    ]
    return out


def _fill_shapes(out: pd.DataFrame, source: str | os.PathLike[str] | None) -> None:
    """Fill / check ``num_layers`` and ``num_heads`` per model, so matrices keep cells that were never run."""
    for model, idx in out.groupby("model").groups.items():
        sub = out.loc[idx]
        for col, inferred in (
            ("num_layers", int(sub["layer"].max()) + 1),
            (
                "num_heads",
                int(sub.loc[sub["view"] == "heads", "head"].max()) + 1
                if (sub["view"] == "heads").any()
                else pd.NA,
            ),
        ):
            known = sub[col].dropna().unique()
            if len(known) > 1:
                raise ResultsTableError(
                    f"model {model!r}{_where(source)} has several {col} values {sorted(int(v) for v in known)}; "
                    "one model name must denote one architecture."
                )
            value = int(known[0]) if len(known) else inferred
            if len(known) and inferred is not pd.NA and inferred > value:
                raise ResultsTableError(
                    f"model {model!r}{_where(source)} has {col}={value} but rows index up to {inferred - 1}."
                )
            out.loc[idx, col] = value


def _sweep_table_in(p: Path) -> Path:
    """A sweep's output folder stands for the table in it (parquet preferred: exact dtypes)."""
    if p.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (p / name).is_file():
                return p / name
    return p


def load_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table from CSV or parquet (by extension) and validate it.

    A directory, or a ``.json`` file, is read as the reference's per-task JSON layout
    (see :meth:`Results.from_reference_json`).
    """
    p = _sweep_table_in(Path(path))
    if not p.exists():
        raise FileNotFoundError(f"results table {p} does not exist")
    if p.is_dir() or p.suffix.lower() == ".json":
        return Results.from_reference_json(p).table
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(p)
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(p)
    else:
        raise ValueError(
            f"cannot tell the format of {p}: use a .csv, .parquet or .json file, or a directory of JSONs"
        )
    return validate_table(df, source=p)


# --------------------------------------------------------------------------------------------------------------
# Selection helpers
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------


class Results:
    """Questions researchers ask of a sweep's tidy table.

    Parameters
    ----------
    table : pandas.DataFrame
        The tidy table (validated with :func:`validate_table`).
    model, pooling : str, optional
        Defaults for every query. Queries need exactly one model and one pooling; when the table holds several and
        neither the call nor these defaults pick one, a ``ValueError`` lists the choices.

    Examples
    --------
    >>> res = Results.load("results/minilm.parquet")          # doctest: +SKIP
    >>> res.matrix("Length")                                    # doctest: +SKIP
    >>> res.top_heads("Length", k=5)                            # doctest: +SKIP
    """

    def __init__(self, table: pd.DataFrame, *, model: str | None = None, pooling: str | None = None) -> None:
        self.table = validate_table(table)
        self.model = model
        self.pooling = pooling
        for arg, col in ((model, "model"), (pooling, "pooling")):
            if arg is not None and arg not in set(self.table[col]):
                raise ValueError(f"{col}={arg!r} is not in the table; it has {sorted(set(self.table[col]))}")

    # ---------------------------------------------------------------- construction / persistence

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Results:
        """Load a CSV / parquet table, a sweep's output folder, or a folder / file in the reference's JSON layout."""
        p = _sweep_table_in(Path(path))
        if p.is_dir() or p.suffix.lower() == ".json":
            res = cls.from_reference_json(p)
            return cls(res.table, **kwargs)
        return cls(load_table(p), **kwargs)

    @classmethod
    def concat(cls, parts: Iterable[Results | pd.DataFrame], **kwargs: Any) -> Results:
        """Combine several tables (e.g. two models' sweeps) into one; duplicate keys are an error."""
        frames = [p.table if isinstance(p, Results) else p for p in parts]
        if not frames:
            raise ValueError("Results.concat needs at least one table")
        return cls(pd.concat(frames, ignore_index=True), **kwargs)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV or parquet (chosen by extension), atomically."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".csv":
            atomic_write(p, lambda tmp: self.table.to_csv(tmp, index=False))
        elif suffix in (".parquet", ".pq"):
            atomic_write(p, lambda tmp: self.table.to_parquet(tmp, index=False))
        else:
            raise ValueError(f"cannot save to {p}: use a .csv or .parquet extension")
        return p

    def to_reference_json(
        self, out_dir: str | os.PathLike[str], *, pooling: str | None = None, include_embeddings: bool = False
    ) -> list[Path]:
        """Export in the reference's layout: ``{model}_{task}.json`` keyed ``"{layer}_{head}_{location}"``.

        ``location`` is ``head`` for head rows and ``fc`` (head = -1) for layer rows, as in Transformer_Anatomy's
        result files, so people can diff our numbers against theirs. Each value holds ``devacc``/``acc`` (plus
        ``devpearson``/``pearson`` for relatedness tasks and ``f1`` for MRPC). The reference never stored the
        embeddings layer; it is left out unless ``include_embeddings`` (then under ``"-1_-1_fc"``). Missing cells
        are left out. A file holds one pooling: pass ``pooling`` when the table has several.
        """
        out = Path(out_dir)
        df = self.table
        poolings = sorted(set(df["pooling"]))
        pooling = pooling or self.pooling
        if pooling is None and len(poolings) > 1:
            raise ValueError(
                f"the table holds poolings {poolings}; pass pooling= to choose the one to export"
            )
        if pooling is not None:
            df = df[df["pooling"] == pooling]
        if not include_embeddings:
            df = df[~((df["view"] == "layers") & (df["layer"] == -1))]
        written: list[Path] = []
        for (model, task), sub in df.groupby(["model", "task"], sort=True):
            payload: dict[str, dict[str, Any]] = {}
            for row in sub.sort_values(["view", "layer", "head"]).itertuples(index=False):
                if math.isnan(row.devacc) and math.isnan(row.acc):
                    continue
                loc = "head" if row.view == "heads" else "fc"
                entry: dict[str, Any] = {"devacc": _json_float(row.devacc), "acc": _json_float(row.acc)}
                if row.metric == "pearson":
                    entry.update(devpearson=entry["devacc"], pearson=entry["acc"])
                if not pd.isna(row.f1):
                    entry["f1"] = float(row.f1)
                for col in ("ndev", "ntest"):
                    if not pd.isna(getattr(row, col)):
                        entry[col] = int(getattr(row, col))
                payload[f"{row.layer}_{row.head}_{loc}"] = entry
            safe_model = re.sub(r"[\\/:]+", "_", str(model))
            path = out / f"{safe_model}_{task}.json"
            text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
            written.append(path)
        return written

    @classmethod
    def from_reference_json(
        cls,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        pooling: str = "cls",
        metric: Mapping[str, str] | None = None,
    ) -> Results:
        """Read result files in the reference's layout (``{model}_{task}.json``) into a tidy table.

        Why: to put Transformer_Anatomy's published numbers next to ours with the same queries and plots.
        ``path`` is a file, a directory (all ``*.json`` in it) or a list of files. Keys that are not
        ``"{layer}_{head}_{head|fc}"`` (e.g. top-k files keyed ``"{k}_{location}"``) are skipped. The reference's
        files do not say which pooling was used; ``pooling`` labels the rows (``cls`` for BERT-like models, the
        reference's GPT position is closest to ``last``). Relatedness tasks are detected from
        ``devpearson``/``pearson`` keys; ``metric`` can force a task's metric.
        """
        if isinstance(path, (str, os.PathLike)):
            p = Path(path)
            files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        else:
            files = [Path(x) for x in path]
        if not files:
            raise FileNotFoundError(f"no *.json result files found at {path}")
        rows: list[dict[str, Any]] = []
        key_re = re.compile(r"^(-?\d+)_(-?\d+)_(head|fc)$")
        for f in files:
            stem = f.stem
            if "_" not in stem:
                raise ResultsTableError(f"{f}: file name must be '{{model}}_{{task}}.json'")
            model, task = stem.rsplit("_", 1)
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ResultsTableError(f"{f}: not valid JSON (line {err.lineno}): {err.msg}") from err
            if not isinstance(data, dict):
                raise ResultsTableError(
                    f"{f}: expected a JSON object keyed '{{layer}}_{{head}}_{{location}}'"
                )
            for key, val in data.items():
                m = key_re.match(key)
                if not m or not isinstance(val, dict):
                    continue
                layer, head, loc = int(m.group(1)), int(m.group(2)), m.group(3)
                is_pearson = "pearson" in val and "acc" not in val
                met = (metric or {}).get(task, "pearson" if ("devpearson" in val or is_pearson) else "acc")
                dev = val.get("devacc", val.get("devpearson"))
                test = val.get("acc", val.get("pearson"))
                if met == "pearson":
                    dev = val.get("devpearson", dev)
                    test = val.get("pearson", test)
                view = "heads" if loc == "head" else "layers"
                rows.append(
                    {
                        "model": model,
                        "fingerprint": f"reference:{f.name}",
                        "task": task,
                        "view": view,
                        "layer": layer,
                        "head": head if view == "heads" else -1,
                        "name": None,
                        "pooling": pooling,
                        "metric": met,
                        "devacc": _as_float(dev),
                        "acc": _as_float(test),
                        "ndev": val.get("ndev"),
                        "ntest": val.get("ntest"),
                        "f1": _as_float(val.get("f1")),
                        "harness": "senteval",
                    }
                )
        if not rows:
            raise ResultsTableError(
                f"no '{{layer}}_{{head}}_{{head|fc}}' entries found in {len(files)} file(s) at {path}"
            )
        return cls(pd.DataFrame(rows))

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
        self, *, model: str | None = None, pooling: str | None = None, tasks: Sequence[str] | None = None
    ) -> Results:
        """A new :class:`Results` restricted to a model, a pooling and/or some tasks."""
        df = self.table
        if model is not None:
            df = df[df["model"] == model]
        if pooling is not None:
            df = df[df["pooling"] == pooling]
        if tasks is not None:
            df = df[df["task"].isin(list(tasks))]
        if df.empty:
            raise ValueError(f"no rows for model={model!r}, pooling={pooling!r}, tasks={tasks!r}; {self!r}")
        return Results(df, model=model, pooling=pooling)

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
            raise ValueError(
                f"the table holds several {col}s {present}; pass {col}=... (or Results(..., {col}=...)) to pick one"
            )
        if value not in present:
            raise ValueError(f"{col}={value!r} has no rows here; available: {present}")
        return value

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
        df = df[(df["pooling"] == pooling) & (df["view"] == view)]
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
        k: int = 10,
        by: str = "devacc",
        *,
        model: str | None = None,
        pooling: str | None = None,
        allow_test_selection: bool = False,
    ) -> dict[str, int]:
        """How many of the top-``k`` heads sit in the lower / middle / upper third of the layers.

        This is the paper's "where the best heads sit" analysis (for 12 layers: 0-3 / 4-7 / 8-11).
        """
        check_selection(by, allow_test_selection, what="thirds")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TestSelectionWarning)
            top = self.top_heads(task, k, by, model=model, pooling=pooling, allow_test_selection=True)
        model_ = self._resolve("model", model, self._task_rows(task))
        nl, _ = self.shape(model=model_)
        return {name: int(top["layer"].isin(list(rng)).sum()) for name, rng in thirds_of(nl)}

    def thirds_table(
        self,
        tasks: Sequence[str] | None = None,
        k: int = 10,
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
            for task in tasks or self._tasks_with("heads"):
                th = self.thirds(task, k, by, model=model, pooling=pooling, allow_test_selection=True)
                mat = self.matrix(task, value=by, model=model, pooling=pooling)
                means = mat.mean(axis=1)
                best = self.best_head(task, by, model=model, pooling=pooling, allow_test_selection=True)
                top = self.top_heads(task, k, by, model=model, pooling=pooling, allow_test_selection=True)
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

    def _tasks_with(self, view: str) -> list[str]:
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
        :func:`senteval_anatomy.topk.topk_curve` returns (one or several tasks concatenated); its dev-chosen k
        fills the ``topk_*`` columns. ``gain_vs_best_layer`` is top-k test minus best-layer test (points), and
        ``best_head_minus_best_layer`` is the same for the best single head.
        """
        rows = []
        for task in tasks or self.tasks:
            row: dict[str, Any] = {"task": task, "metric": self.metric(task)}
            df = self._task_rows(task)
            m = self._resolve("model", model, df)
            p = self._resolve("pooling", pooling, df[df["model"] == m])
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
                from .topk import choose_k  # local import: topk imports this module

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
            rows.append(row)
        out = pd.DataFrame(rows)
        for col in ("last_layer_test", "best_layer_test", "best_head_test", "topk_test"):
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
        """The distinct run settings in the table (harness, classifier, kfold, seed, version) per model and pooling."""
        cols = [
            "model",
            "fingerprint",
            "pooling",
            "harness",
            "usepytorch",
            "classifier",
            "kfold",
            "seed",
            "package_version",
        ]
        return self.table[cols].astype("string").drop_duplicates().reset_index(drop=True)


def _json_float(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _as_float(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, (list, tuple)) and x:  # scipy result objects serialised as [stat, pvalue]
        x = x[0]
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def synthetic_table(
    num_layers: int = 12,
    num_heads: int = 12,
    tasks: Sequence[str] = ("Length", "Tense"),
    *,
    model: str = "synthetic",
    pooling: str = "cls",
    seed: int = 0,
    missing: float = 0.0,
    metric: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A random table in the sweep's format, for previewing figures and testing code -- never a result.

    Each task gets a peak layer; head scores fall off with distance from it plus noise, so heatmaps and curves
    have the structure real sweeps show. ``missing`` is the fraction of cells dropped (an interrupted sweep).
    Relatedness-like tasks (``metric={"STSBenchmark": "pearson"}``) get scores in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for ti, task in enumerate(tasks):
        met = (metric or {}).get(task, "acc")
        peak = rng.uniform(0, num_layers - 1)
        lo, hi = (20.0 + 10 * (ti % 3), 90.0 - 5 * (ti % 4)) if met == "acc" else (0.05, 0.7)

        def score(
            layer: float, spread: float, lo: float = lo, hi: float = hi, peak: float = peak, met: str = met
        ) -> float:
            base = math.exp(-(((layer - peak) / max(num_layers / 3, 1.0)) ** 2))
            return float(np.clip(lo + (hi - lo) * base * spread, -1 if met == "pearson" else 0, 100))

        for layer in range(num_layers):
            for head in range(num_heads):
                spread = float(rng.beta(2, 2))
                dev = score(layer, spread)
                test = dev + float(rng.normal(0, 0.01 * (hi - lo)))
                rows.append(
                    dict(
                        view="heads",
                        layer=layer,
                        head=head,
                        devacc=round(dev, 4),
                        acc=round(test, 4),
                        task=task,
                        metric=met,
                    )
                )
        for layer in range(-1, num_layers):
            dev = score(max(layer, 0), 1.0) if layer >= 0 else lo + 0.3 * (hi - lo)
            rows.append(
                dict(
                    view="layers",
                    layer=layer,
                    head=-1,
                    devacc=round(dev, 4),
                    acc=round(dev + float(rng.normal(0, 0.01 * (hi - lo))), 4),
                    task=task,
                    metric=met,
                )
            )
    df = pd.DataFrame(rows)
    if missing > 0:
        df = df[rng.random(len(df)) >= missing]
    df = df.assign(
        model=model,
        fingerprint=f"synthetic-{seed}",
        pooling=pooling,
        name=None,
        ndev=100,
        ntest=100,
        f1=np.nan,
        harness="builtin",
        usepytorch=False,
        classifier=json.dumps({"nhid": 0}),
        kfold=5,
        seed=seed,
        num_layers=num_layers,
        num_heads=num_heads,
        package_version="synthetic",
    )
    return validate_table(df)


def picks_to_dict(pick: LayerPick | HeadPick) -> dict[str, Any]:
    """A pick as a plain dict (for JSON / tables)."""
    return asdict(pick)
