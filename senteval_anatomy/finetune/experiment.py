"""``finetune()``: readouts × seeds on one task, from the checks to the tables.

Order of work (why): everything that can be wrong with the inputs is checked first (readouts parsed, data read and
validated, model loaded, readouts checked against its shape, ``--from`` checked to be this model's with dev scores,
the output folder writable, the disk large enough for a checkpoint); then the pretrained model is swept if a readout
must be chosen on dev and no ``--from`` was given; then each (readout, seed) is trained, or returned from ``runs/``
when done before; then the tables are written.

Output folder::

    runs/<name>.json            one finished run: its key, its row, its per-example test outcomes
    checkpoints/<name>/         the Trainer's checkpoints of an unfinished run (removed when it finishes)
    models/<name>/              the selected fine-tuned transformer (kept with --probe-after / keep_model)
    sweep-pretrained/           the pretrained sweep that chose best-layer / topk (when no --from)
    finetune_results.csv        one row per finished run in this folder (tidy; ``checkpoint`` column)
    finetune_summary.csv        mean and s.d. over seeds per model × task × readout
    finetune_paired.csv         paired differences between readouts over the same seeds
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..encoders.loading import load_encoder
from ..sweeping.plan import parse_ks
from ..vocab import atomic_write
from .checks import check_disk, check_limits, check_out_dir, parse_seeds
from .choosing import check_select_task, load_from, resolve, sweep_for_selection
from .comparison import paired_table, summary_table
from .data import FinetuneData, load_finetune_data, load_glue_folder
from .readouts import Readout, ReadSpec, check_read, parse_read
from .reprobe import probe_after as run_probe
from .settings import PAPER_FINETUNE, TrainSettings
from .training import RUN_FORMAT, checkpoint_bytes, train_one

__all__ = ["FinetuneOutcome", "collect_runs", "finetune", "prepare"]


@dataclass
class FinetuneOutcome:
    """What :func:`finetune` returns: this call's rows, the summary and paired tables, and where they were written."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    out_dir: Path
    readouts: list[Readout] = field(default_factory=list)
    probe: Any = None


@dataclass
class _Plan:
    encoder: Any
    data: FinetuneData
    specs: list[ReadSpec]
    from_results: Any
    out: Path


def prepare(model: Any, task: str | None, *, glue: str | Path | None, task_path: str | Path | None,
            reads: Sequence[str | ReadSpec], out_dir: str | Path, from_results: str | Path | None,
            select_on: str | None, settings: TrainSettings, device: str, dev_fraction: float, split_seed: int,
            limits: dict[str, int | None] | None, keep_model: bool, n_seeds: int) -> _Plan:
    """Every check that needs no training, in order; ``ValueError`` (one line) for a user's mistake."""
    settings.check()
    specs = [r if isinstance(r, ReadSpec) else parse_read(r) for r in reads]
    out = check_out_dir(out_dir)
    if (task is None) == (glue is None):
        raise ValueError("give either --task (a SentEval task) or --glue DIR (a GLUE-format folder)")
    if glue is not None:
        data = load_glue_folder(glue, dev_fraction=dev_fraction, split_seed=split_seed, select_task=select_on,
                                limits=limits)
    else:
        if task_path is None:
            raise ValueError("--task-path: give the SentEval data folder (holding downstream/)")
        data = load_finetune_data(task, task_path, dev_fraction=dev_fraction, split_seed=split_seed, limits=limits)
        if select_on:
            data.select_task = select_on
    check_select_task(data.select_task, specs)
    encoder = model if not isinstance(model, (str, Path)) else load_encoder(str(model), device=device)
    specs = [check_read(s, encoder.num_layers, encoder.num_heads) for s in specs]
    from_res = None
    if from_results is not None and any(s.needs_selection for s in specs):
        views = {"layers" if s.kind == "best-layer" else "heads" for s in specs if s.needs_selection}
        for view in sorted(views):
            from_res = load_from(from_results, encoder, data.select_task, view)
    elif any(s.needs_selection for s in specs) and task_path is None:
        raise ValueError("--read best-layer/topk without --from sweeps the pretrained model first; give "
                         "--task-path (the SentEval data of --select-on)")
    n_params = sum(p.numel() for p in encoder.model.parameters())
    need = checkpoint_bytes(n_params) + (n_params * 4 * len(specs) * n_seeds if keep_model else 0)
    check_disk(out, need, "one run's checkpoints (weights + optimizer state, best and newest)"
               + (" and the kept fine-tuned models" if keep_model else ""))
    return _Plan(encoder, data, specs, from_res, out)


def collect_runs(out_dir: str | Path) -> pd.DataFrame:
    """Every finished run's row in ``<out>/runs`` (damaged or foreign files are skipped)."""
    rows = []
    for path in sorted((Path(out_dir) / "runs").glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(payload, dict) and payload.get("format") == RUN_FORMAT and isinstance(payload.get("row"), dict):
            rows.append(payload["row"])
    return pd.DataFrame(rows)


def finetune(
    model: Any = "minilm",
    task: str | None = None,
    *,
    glue: str | Path | None = None,
    task_path: str | Path | None = None,
    reads: Sequence[str | ReadSpec] = ("last",),
    seeds: Sequence[int] = (0,),
    out_dir: str | Path,
    from_results: str | Path | None = None,
    select_on: str | None = None,
    settings: TrainSettings = PAPER_FINETUNE,
    pooling: str | None = None,
    device: str = "auto",
    dev_fraction: float = 0.1,
    split_seed: int = 0,
    limits: dict[str, int | None] | None = None,
    ks: Sequence[int] | None = None,
    probe_after: bool = False,
    keep_checkpoints: bool = False,
    progress: bool = True,
) -> FinetuneOutcome:
    """Fine-tune ``model`` on ``task`` (or a GLUE folder) once per readout × seed; dev-only selection throughout.

    Examples
    --------
    >>> out = finetune("minilm", "MRPC", task_path="data", reads=["last", "best-layer", "topk"],
    ...                seeds=[0, 1, 2], out_dir="ft")                                  # doctest: +SKIP
    >>> out.summary[["readout", "test_mean", "test_sd"]]                               # doctest: +SKIP
    """
    seeds, limits = parse_seeds(seeds), check_limits(limits)  # the shared validators: same messages as sweep()
    ks = parse_ks(ks) if ks is not None else None
    plan = prepare(model, task, glue=glue, task_path=task_path, reads=reads, out_dir=out_dir,
                   from_results=from_results, select_on=select_on, settings=settings, device=device,
                   dev_fraction=dev_fraction, split_seed=split_seed, limits=limits, keep_model=probe_after,
                   n_seeds=len(seeds))
    enc, data, out = plan.encoder, plan.data, plan.out
    out.mkdir(parents=True, exist_ok=True)
    results = plan.from_results
    readouts: list[Readout] = []
    for spec in plan.specs:
        if not spec.needs_selection:
            readouts.append(Readout.fixed(spec, enc.num_layers))
            continue
        view = "layers" if spec.kind == "best-layer" else "heads"
        if from_results is None:
            results = sweep_for_selection(enc, data.select_task, str(task_path), out, [view], pooling, progress)
        elif view not in set(results.table["view"]):
            results = load_from(from_results, enc, data.select_task, view)
        readout, curve = resolve(spec, results, task=data.select_task, encoder=enc, task_path=task_path, ks=ks,
                                 progress=progress)
        if curve is not None:
            atomic_write(out / f"topk_curve_{data.select_task}.csv", lambda p, c=curve: c.to_csv(p, index=False))
        readouts.append(readout)
    name = enc.name
    rows = []
    for readout in readouts:
        for seed in seeds:
            row = train_one(name, data, readout, seed=int(seed), out_dir=out, settings=settings, pooling=pooling,
                            device=device, progress=progress, keep_model=probe_after,
                            keep_checkpoints=keep_checkpoints, encoder=enc)
            rows.append(row)
    mine = pd.DataFrame(rows)
    summary, paired = write_tables(out, mine)
    probe = None
    if probe_after:
        probe = run_probe(enc, mine, data=data, task_path=task_path, out_dir=out, pooling=pooling, progress=progress)
    return FinetuneOutcome(mine, summary, paired, out, readouts, probe)


def write_tables(out: Path, mine: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``finetune_results.csv`` (every finished run of the folder) and this call's summary / paired tables."""
    every = collect_runs(out)
    atomic_write(out / "finetune_results.csv", lambda p: every.to_csv(p, index=False))
    summary = summary_table(mine)
    paired = paired_table(mine)
    atomic_write(out / "finetune_summary.csv", lambda p: summary.to_csv(p, index=False))
    atomic_write(out / "finetune_paired.csv", lambda p: paired.to_csv(p, index=False))
    return summary, paired
