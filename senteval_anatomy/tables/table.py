"""The tidy results table: its schema, validation, and file I/O (CSV, parquet, the reference's JSON layout).

The sweep (:func:`senteval_anatomy.sweeping.sweep`) writes one row per model x task x view x layer x head with the
columns of :data:`senteval_anatomy.vocab.RESULT_COLUMNS`. Everything that reads a table goes through
:func:`validate_table`, so a hand-edited or concatenated table fails early with the file, the rows and the fix,
rather than later as a confusing ``KeyError`` or a silently wrong "best head".
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..outdir import RESULTS_CSV, RESULTS_PARQUET
from ..vocab import POOLINGS, RESULT_COLUMNS, VIEWS, atomic_write, vector_name

__all__ = [
    "COLUMNS",
    "ESSENTIAL_COLUMNS",
    "KEY_COLUMNS",
    "METRICS",
    "ResultsTableError",
    "load_table",
    "read_reference_json",
    "save_table",
    "table_path",
    "validate_table",
    "write_reference_json",
    "write_results_table",
]

#: Every column of the tidy table, in the order the sweep writes them (the one schema: vocab.RESULT_COLUMNS).
COLUMNS: tuple[str, ...] = RESULT_COLUMNS

#: Columns without which no query can be answered; the rest are provenance and are filled with NA when absent.
ESSENTIAL_COLUMNS: tuple[str, ...] = ("model", "task", "view", "layer", "head", "pooling", "metric", "devacc", "acc")

#: A row is identified by these columns; two rows with the same key are an error (an appended re-run). ``setting``
#: (the hash of every run setting, see :mod:`senteval_anatomy.sweeping.identity`) lets one table hold several seeds, presets,
#: data folders or dtypes of one model; tables without it (older sweeps, the reference's JSON) read it as "".
KEY_COLUMNS: tuple[str, ...] = ("model", "setting", "task", "view", "pooling", "layer", "head")

#: Identity columns that are text even when a hash happens to look like a number.
TEXT_COLUMNS: tuple[str, ...] = ("fingerprint", "setting", "data_hash", "data_path", "preset", "classifier")

#: The two kinds of main score: accuracy in percent, or Pearson r for relatedness / STS tasks.
METRICS: tuple[str, ...] = ("acc", "pearson")


class ResultsTableError(ValueError):
    """The results table is malformed (missing columns, bad values, duplicate rows)."""

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
    out["setting"] = out["setting"].astype("string").fillna("").astype(str)
    for col in ("num_layers", "num_heads", "ndev", "ntest", "kfold", "seed", "max_length", "protocol"):
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
            f"results table{where} has {int(dup.sum())} rows sharing a ({', '.join(KEY_COLUMNS)}) key, e.g. {first} at {_rows_hint(out, dup, source)}. This happens when a re-run was appended "
            "to an old table; keep one of them, e.g. df.drop_duplicates(list(KEY_COLUMNS), keep='last'), "
            "or give the runs different model names. (A sweep's own results.csv never has this: its rows carry the "
            "setting of their run.)"
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


def table_path(path: str | os.PathLike[str]) -> Path:
    """The file a path stands for: a sweep's output folder stands for the table in it (parquet preferred: exact
    dtypes); any other path is itself."""
    p = Path(path)
    if p.is_dir():
        for name in (RESULTS_PARQUET, RESULTS_CSV):
            if (p / name).is_file():
                return p / name
    return p


def load_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table from CSV or parquet (by extension) and validate it.

    A directory, or a ``.json`` file, is read as the reference's per-task JSON layout
    (see :func:`read_reference_json`).
    """
    p = table_path(path)
    if not p.exists():
        raise FileNotFoundError(f"results table {p} does not exist")
    if p.is_dir() or p.suffix.lower() == ".json":
        return read_reference_json(p)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(p, dtype={c: str for c in TEXT_COLUMNS})
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(p)
    else:
        raise ValueError(
            f"cannot tell the format of {p}: use a .csv, .parquet or .json file, or a directory of JSONs"
        )
    return validate_table(df, source=p)


def save_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table as CSV or parquet (chosen by the extension), atomically."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        atomic_write(p, lambda tmp: table.to_csv(tmp, index=False))
    elif suffix in (".parquet", ".pq"):
        atomic_write(p, lambda tmp: table.to_parquet(tmp, index=False))
    else:
        raise ValueError(f"cannot save to {p}: use a .csv or .parquet extension")
    return p


def read_reference_json(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    pooling: str = "cls",
    metric: Mapping[str, str] | None = None,
) -> pd.DataFrame:
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
    return validate_table(pd.DataFrame(rows))


def write_reference_json(
    table: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    pooling: str | None = None,
    include_embeddings: bool = False,
) -> list[Path]:
    """Export in the reference's layout: ``{model}_{task}.json`` keyed ``"{layer}_{head}_{location}"``.

    ``location`` is ``head`` for head rows and ``fc`` (head = -1) for layer rows, as in Transformer_Anatomy's
    result files, so people can diff our numbers against theirs. Each value holds ``devacc``/``acc`` (plus
    ``devpearson``/``pearson`` for relatedness tasks and ``f1`` for MRPC). The reference never stored the
    embeddings layer; it is left out unless ``include_embeddings`` (then under ``"-1_-1_fc"``). Missing cells
    are left out. A file holds one pooling: pass ``pooling`` when the table has several.
    """
    out = Path(out_dir)
    df = validate_table(table)
    poolings = sorted(set(df["pooling"]))
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
        atomic_write(path, text)
        written.append(path)
    return written


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


#: Beside ``results.csv``: the SHA-256 of the last ``results.csv`` a run wrote, so that a hand-edited table is noticed.
_WRITTEN_HASH = ".results.csv.sha256"


def _sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def write_results_table(out_dir: str | os.PathLike[str], df: pd.DataFrame) -> Path | None:
    """Write ``results.csv`` and ``results.parquet`` into ``out_dir`` (atomically); return the backup it made, if any.

    Why the backup: a user who edited ``results.csv`` by hand (a note, a corrected row) would lose that work when the
    next run rewrites the table. The SHA-256 of every ``results.csv`` a run writes is kept beside it; when the file on
    disk no longer has that hash, it is kept as ``results.csv.<UTC time>.bak`` and the run says so (a warning naming
    both files).
    """
    import time
    import warnings

    out = Path(out_dir)
    csv = out / "results.csv"
    record = out / _WRITTEN_HASH
    backup: Path | None = None
    if csv.is_file() and record.is_file():
        try:
            written = record.read_text(encoding="utf-8").strip()
        except OSError:
            written = ""
        if written and _sha256_of(csv) != written:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            backup = out / f"results.csv.{stamp}.bak"
            n = 1
            while backup.exists():
                n += 1
                backup = out / f"results.csv.{stamp}-{n}.bak"
            os.replace(csv, backup)
            warnings.warn(f"{csv} was changed since a run wrote it (edited by hand?); it is kept as {backup.name} and "
                          "a new results.csv is written", UserWarning, stacklevel=2)
    atomic_write(csv, lambda p: df.to_csv(p, index=False))
    atomic_write(out / "results.parquet", lambda p: df.to_parquet(p, index=False))
    atomic_write(record, _sha256_of(csv))
    return backup
