"""A result's identity: the key of everything that determines a number, and the unit files that carry it.

Why: a resumed sweep reuses finished units from its output folder. A unit named only by model name, task, view and
probe settings could hand back numbers computed on other data, another checkpoint or another dtype, with exit code
0. Here a unit is reused only when the key stored *inside* it equals, field for field, the key of the unit about to
be computed.

The key (:func:`unit_key`) holds

* the **setting** (:func:`setting_fields`): our protocol version (:data:`~senteval_anatomy.vocab.PROTOCOL_VERSION`),
  the model name and fingerprint (weights, tokenizer, config, revision), the weights' dtype, the feature cache's
  dtype, the pooling, the max length, the harness, the preset the probe settings match, every probe setting
  (SentEval params, classifier filled with its defaults), and the data folder;
* the **data** (:func:`data_hash`): a hash of the content of every file the task reads and of its split sizes;
* the task and the view.

Rows carry the short hashes of both: ``setting`` groups rows that belong to one run configuration (tables, figures
and the report group by it), ``data_hash`` says which data each task's numbers were computed on.

Unit files (``<out>/units/<model>__<task>__<view>__<pooling>__<key hash>.json``) are JSON: the format tag, the full
key, its hash, the rows, and a hash of the rows (an edited number is refused and recomputed). A unit that is empty, truncated, not JSON, of another format or holding another key is
reported by path (:class:`UnitFileWarning`) and recomputed; it never stops a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engine.params import apply_defaults
from ..engine.probes import classifier_config
from ..outdir import UNITS_DIR
from ..vocab import PRESETS, PROTOCOL_VERSION, RESULT_COLUMNS, atomic_write, slug

__all__ = [
    "UNIT_FORMAT",
    "UnitFileWarning",
    "data_hash",
    "key_hash",
    "preset_name",
    "read_unit",
    "select_units",
    "setting_fields",
    "unit_key",
    "unit_path",
    "write_unit",
]

#: Format tag of a unit file; a file without it is foreign and never read as a result.
UNIT_FORMAT = "senteval_anatomy.unit/1"

#: Params that do not change a number: where the data is (the data hash covers its content), where and with how
#: many threads probes train, the task being evaluated, and how many sentences one forward pass encodes.
_NOT_IN_KEY = frozenset({"task_path", "device", "probe_threads", "current_task", "encode_batch_size"})


class UnitFileWarning(UserWarning):
    """A unit file in the output folder was damaged, foreign or stale; it is named and recomputed."""


def key_hash(fields: Mapping[str, Any], n: int = 16) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``fields`` as canonical JSON (sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        _FILE_HASHES[memo] = h.hexdigest()
    return _FILE_HASHES[memo]


def data_hash(task: Any) -> str:
    """Hash of a loaded task's data: the content of every file it reads and the size of each split.

    ``task`` is an :class:`senteval_anatomy.engine.tasks.Task` (it knows its files and its folder). Two folders
    holding the same files give the same hash; one changed byte, or a split of another size, gives another.
    """
    root = Path(task.task_path)
    files = [[rel, _file_sha256(root / rel)] for rel in task.spec.files]
    sizes = {split: len(next(iter(cols.values()))) if isinstance(cols, Mapping) and cols else len(cols)
             for split, cols in task.data.items()}
    return key_hash({"task": task.name, "files": files, "splits": sizes})


def _jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(params):
        value = params[key]
        if key in _NOT_IN_KEY or callable(value):
            continue
        if key == "classifier":
            value = classifier_config(value)
        out[key] = value
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def preset_name(params: Mapping[str, Any]) -> str:
    """The preset (``paper``, ``senteval-default``, ``prototyping``) whose probe settings ``params`` use, else
    ``custom``. Compared after SentEval's defaults are filled in, so ``{"nhid": 0}`` and an explicit default agree."""
    run = apply_defaults(dict(params))
    for name, preset in PRESETS.items():
        if all(run.get(k) == preset[k] for k in ("usepytorch", "kfold", "seed")) and classifier_config(
            run.classifier
        ) == classifier_config(preset["classifier"]):
            return name
    return "custom"


def setting_fields(
    encoder: Any,
    *,
    params: Mapping[str, Any],
    pooling: str,
    max_length: int,
    harness: str,
    cache_dtype: str,
    data_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Everything of a run that determines its numbers, apart from the task, its data and the view."""
    return {
        "protocol": PROTOCOL_VERSION,
        "model": str(encoder.name),
        "fingerprint": str(encoder.fingerprint()),
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "cache_dtype": str(cache_dtype),
        "pooling": pooling,
        "max_length": int(max_length),
        "harness": harness,
        "preset": preset_name(params),
        "params": _jsonable_params(params),
        "data_path": str(Path(data_path).resolve()),
    }


def unit_key(setting: Mapping[str, Any], task: str, data: str, view: str) -> dict[str, Any]:
    """The full key of one unit (one task x view of one setting)."""
    return {"setting": dict(setting), "task": task, "data_hash": data, "view": view}


def unit_path(out_dir: str | os.PathLike[str], key: Mapping[str, Any]) -> Path:
    """Where the unit of ``key`` lives: readable parts for people, the key hash for uniqueness."""
    s = key["setting"]
    name = f"{slug(s['model'], default='model')}__{key['task']}__{key['view']}__{s['pooling']}__{key_hash(key)}.json"
    return Path(out_dir) / UNITS_DIR / name


def _clean(value: Any) -> Any:
    """A JSON value for one table cell (NaN kept as NaN, numpy scalars as Python numbers)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    return value


def write_unit(path: Path, key: Mapping[str, Any], table: Any) -> None:
    """Write a unit atomically: format tag, key, key hash and the rows (``table`` is a DataFrame); the table's
    ``attrs`` too (JSON values, e.g. the records of a per-unit curve), restored by :func:`read_unit`."""
    payload = {
        "format": UNIT_FORMAT,
        "key_hash": key_hash(key),
        "key": key,
        "columns": list(table.columns),
        "rows": [[_clean(v) for v in row] for row in table.itertuples(index=False, name=None)],
    }
    if getattr(table, "attrs", None):
        payload["attrs"] = json.loads(json.dumps(table.attrs, default=str))
    payload["content_hash"] = _content_hash(payload)
    atomic_write(path, json.dumps(payload, indent=None, sort_keys=False))


def _content_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a unit's numbers (columns, rows, attrs): an accuracy edited by hand no longer matches it."""
    return key_hash({k: payload.get(k) for k in ("columns", "rows", "attrs")}, 64)


def read_unit(path: Path, key: Mapping[str, Any] | None = None, *,
              required: Sequence[str] = RESULT_COLUMNS) -> Any | None:
    """The rows of a unit file as a DataFrame, or ``None`` (with a :class:`UnitFileWarning` naming the file) when it
    is empty, truncated, not a unit, lacks a ``required`` column, or holds another key than ``key`` (``None``: any
    valid unit)."""
    import pandas as pd

    def bad(why: str) -> None:
        warnings.warn(f"unit file {path}: {why}; it is not used and will be recomputed by a sweep with its "
                      "settings", UnitFileWarning, stacklevel=3)

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        bad(f"cannot be read ({exc})")
        return None
    if not text.strip():
        bad("is empty")
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        bad(f"is not complete JSON (line {exc.lineno}: {exc.msg}; truncated by a crash or an edit?)")
        return None
    if not isinstance(payload, dict) or payload.get("format") != UNIT_FORMAT:
        bad(f"is not a unit file of this version (format {payload.get('format') if isinstance(payload, dict) else '?'!r},"
            f" expected {UNIT_FORMAT!r})")
        return None
    stored = payload.get("key")
    if not isinstance(stored, dict) or payload.get("key_hash") != key_hash(stored):
        bad("its key does not match its key hash (edited or damaged)")
        return None
    if key is not None and stored != json.loads(json.dumps(key, default=str)):
        bad("holds results for other settings or data than its name says")
        return None
    if payload.get("content_hash") != _content_hash(payload):
        bad("its rows do not match its content hash (numbers edited by hand, damaged, or written by an older "
            "version)")
        return None
    columns, rows = payload.get("columns"), payload.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list) or not rows or any(
        not isinstance(r, list) or len(r) != len(columns) for r in rows
    ):
        bad("has no rows or malformed rows")
        return None
    missing = [c for c in required if c not in columns]
    if missing:
        bad(f"lacks column(s) {', '.join(missing)}")
        return None
    table = pd.DataFrame(rows, columns=columns)
    if isinstance(payload.get("attrs"), dict):
        table.attrs.update(payload["attrs"])
    return table


def select_units(out_dir: str | os.PathLike[str], run_keys: Sequence[Mapping[str, Any]] = ()) -> list[Any]:
    """The unit tables that make up ``out_dir``'s results table: for every unit of this run (``run_keys``), the unit
    whose key equals that key; for every other (setting, task, view) in the folder, its newest valid unit.

    Why: a folder holds units of several runs. Choosing "the newest unit" for this run's own (setting, task, view)
    would serve numbers of other data: run clean, edit a data file and run, revert the edit and run again -- the
    third run reuses the first run's unit, but the second run's unit is newer. A run's rows are therefore the units
    *of its keys*, and the newest-wins rule is only for groups this run did not touch (named in a warning when two
    units compete for one group). Damaged or foreign unit files are named in a :class:`UnitFileWarning` and left out.
    """
    out = Path(out_dir)
    units = out / "units"
    chosen: dict[tuple[str, str, str], Any] = {}
    mine: set[Path] = set()
    for key in run_keys:
        path = unit_path(out, key)
        df = read_unit(path, key) if path.is_file() else None
        group = (key_hash(key["setting"], 16), str(key["task"]), str(key["view"]))
        mine.add(path.resolve())
        if df is not None:
            chosen[group] = df
        else:  # never fall back to another unit of the same group: it holds other data or settings
            chosen[group] = None
    latest: dict[tuple[str, str, str], tuple[float, Path, Any]] = {}
    for f in sorted(units.glob("*.json")):
        if f.resolve() in mine:
            continue
        df = read_unit(f)
        if df is None:
            continue
        group = (str(df["setting"].iloc[0]), str(df["task"].iloc[0]), str(df["view"].iloc[0]))
        if group in chosen:  # a unit of this run's setting on other data: kept on disk, not in the table
            continue
        mtime = f.stat().st_mtime
        if group in latest:
            older, newer = sorted([latest[group], (mtime, f, df)], key=lambda t: (t[0], str(t[1])))
            warnings.warn(f"unit file {older[1]} holds {group[1]} {group[2]} of the same setting on other data than "
                          f"the newer {newer[1].name}; results.csv keeps the newer one", UnitFileWarning, stacklevel=2)
            latest[group] = newer
        else:
            latest[group] = (mtime, f, df)
    return [df for df in chosen.values() if df is not None] + [df for _, _, df in latest.values()]
