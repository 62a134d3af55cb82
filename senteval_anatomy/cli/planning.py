"""From flags to a checked plan: every setting is checked before any encoding starts (tasks, views, probe
settings, devices, paths, the task data's files; then, once the model is loaded, layers, heads, ``--ks`` and
``--max-length``). A mistake is a :class:`~.errors.UsageError` naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import DOWNLOAD_HINT, resolve_task_path
from ..data.sources import expand_tasks
from ..encoders.architectures import ArchSpecError, UnsupportedModelError
from ..engine.probes import parse_optimizer  # the one grammar of SentEval's optimizer strings
from ..engine.registry import NO_DEV_TASKS, get_task
from ..outdir import RUN_FILES, UNITS_DIR
from ..vocab import (  # the rules every entry point shares
    CACHE_ENV_VAR,
    VIEWS,
    ParamError,
    check_batch_size,
    check_probe_params,
    check_views,
    default_cache_dir,
    preset_params,
    read_head,
    read_layer,
    resolve_device,
    slug,
)
from .errors import UsageError
from .parser import _default_tasks

#: Which flag sets which SentEval param: a params error names the flag the user typed.
_FLAG_OF_PARAM = {
    "kfold": "--kfold", "seed": "--seed", "usepytorch": "--sklearn",
    "device": "--probe-device", "classifier.nhid": "--nhid", "classifier.optim": "--optim",
    "classifier.batch_size": "--probe-batch-size", "classifier.tenacity": "--tenacity",
    "classifier.epoch_size": "--epoch-size", "classifier.max_epoch": "--max-epoch",
    "classifier.dropout": "--dropout",
}


@dataclass
class _Plan:
    """Every setting of a run, checked; built before the model is loaded and before anything is written."""

    kind: str
    tasks: list[str]
    views: tuple[str, ...]
    params: dict[str, Any]
    preset: str
    task_path: Path
    data_note: str
    out: Path
    cache_dir: Path | None
    harness: str
    topk: bool
    ks: list[int] | None
    rank_task: str | None
    pooling: str | None = None
    max_length: int | None = None
    batch_size: int = 1
    head: tuple[int, int] | None = None
    layer: int | str | None = None
    findings: bool = False
    notes: list[str] = field(default_factory=list)


def _parse_tasks(flag: str, text: str) -> list[str]:
    """The one ``--tasks`` convention (also the data command's): names in any case, data sets, groups, commas."""
    try:
        tasks = expand_tasks([text]) if text.strip(" ,") else []
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None
    if not tasks:
        raise UsageError(f"{flag} {text!r} names no task: give names such as {flag} Length,Depth or a group such as "
                         f"{flag} probing")
    return tasks


def _parse_head(text: str) -> tuple[int, int]:
    values = text.split(",")
    try:
        if len(values) != 2:
            raise ValueError
        return int(read_layer(values[0], embeddings=False)), read_head(values[1])
    except ParamError as exc:
        raise UsageError(f"--head {text!r}: {exc.setting} {exc.value!r}: {exc.rule}") from None
    except ValueError:
        raise UsageError(f"--head {text!r}: expected two integers 'LAYER,HEAD', e.g. --head 3,7 "
                         "(negative layers count from the end: --head -1,0)") from None


def _parse_layer(text: str) -> int | str:
    try:
        return read_layer(text)
    except ParamError as exc:
        raise UsageError(f"--layer {text!r}: {exc.rule}") from None


def _params_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's params with every explicitly given probe flag applied on top."""
    top = {"seed": args.seed, "kfold": args.kfold, "device": args.probe_device}
    overrides: dict[str, Any] = {k: v for k, v in top.items() if v is not None}
    if args.sklearn:
        overrides["usepytorch"] = False
    clf = {"nhid": args.nhid, "optim": args.optim, "batch_size": args.probe_batch_size, "tenacity": args.tenacity,
           "epoch_size": args.epoch_size, "max_epoch": args.max_epoch, "dropout": args.dropout}
    overrides["classifier"] = {k: v for k, v in clf.items() if v is not None}
    return preset_params(args.preset, **overrides)


def _check_no_ignored_flags(args: argparse.Namespace, params: dict[str, Any], single: bool) -> None:
    """A flag the run would ignore is a mistake to report, not to swallow: the user believes it took effect."""
    if single:
        given = [flag for flag, value in (("--out", args.out), ("--views", args.views), ("--ks", args.ks),
                                          ("--rank-task", args.rank_task)) if value is not None]
        given += [flag for flag, on in (("--no-resume", args.no_resume), ("--no-plots", args.no_plots)) if on]
        if given:
            raise UsageError(f"{given[0]} has no effect with --head/--layer (one adapter, its result printed as "
                             f"JSON); drop {given[0]}, or drop --head/--layer for a sweep")
    if args.sklearn:
        torch_only = [flag for flag, value in (
            ("--optim", args.optim), ("--probe-batch-size", args.probe_batch_size), ("--tenacity", args.tenacity),
            ("--epoch-size", args.epoch_size), ("--max-epoch", args.max_epoch), ("--dropout", args.dropout),
            ("--nhid", args.nhid), ("--probe-device", args.probe_device)) if value is not None]
        if torch_only:
            raise UsageError(f"{torch_only[0]} sets the PyTorch probe, which --sklearn replaces by scikit-learn's "
                             f"logistic regression; drop {torch_only[0]} or drop --sklearn")
    clf = params["classifier"]
    if args.dropout and not clf.get("nhid"):
        raise UsageError(f"--dropout {args.dropout} has no effect on a logistic-regression probe (nhid 0): add "
                         "--nhid N for a hidden layer, or drop --dropout")


def _check_params(params: dict[str, Any]) -> None:
    try:
        check_probe_params(params)
    except ParamError as exc:
        flag = _FLAG_OF_PARAM.get(exc.setting)
        raise UsageError(f"{flag} {exc.value}: {exc.rule}" if flag else str(exc)) from None
    optim = params["classifier"].get("optim")
    if optim is not None:
        try:
            parse_optimizer(optim)
        except ValueError as exc:
            raise UsageError(f"--optim {optim}: {exc}") from None


def _check_device(flag: str, value: str | None) -> None:
    if value is None:
        return
    try:
        resolve_device(value, what=flag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _can_write_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _check_writable(flag: str, path: Path) -> None:
    """``path`` is (or can become) a folder we can write in; checked by writing an anonymous temporary file."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: this is a file, not a folder; give a folder (it is created if missing)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(f"{flag} {path}: {base} is a file, so no folder can be made under it; give another folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {base} ({exc.strerror}); give a writable folder") from None


def _check_out_is_ours(out: Path) -> None:
    """Never overwrite a user's own ``results.csv`` / ``report.md``: a folder holding them without the ``units/``
    folder every run writes first was not written by a run."""
    if not out.is_dir() or (out / UNITS_DIR).is_dir():
        return
    theirs = [name for name in RUN_FILES if (out / name).exists()]
    if theirs:
        raise UsageError(f"--out {out}: already holds {', '.join(theirs)} that no senteval_anatomy run wrote (no "
                         "units/ folder beside them), which this run would overwrite; give a new or empty folder")


def _check_task_files(tasks: Sequence[str], root: Path, data_note: str) -> None:
    """Every file each task reads is there; else say which files are missing and how to get them."""
    for name in tasks:
        try:
            spec = get_task(name)
        except ValueError as exc:
            raise UsageError(f"--tasks: {exc}") from None
        missing = [f for f in spec.files if not (root / f).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise UsageError(
                f"task {name}: {len(missing)} of its files missing under {root} ({data_note}): {shown}; get them with "
                f"`{DOWNLOAD_HINT} --tasks {name} --dest {root}` or point --task-path at SentEval's data folder"
            )


def _plan(kind: str, args: argparse.Namespace) -> _Plan:
    """Check every setting that does not need the model; raise :class:`UsageError` at the first mistake."""
    model = str(args.model)
    if model.startswith((os.sep, "~", ".")) and not Path(model).expanduser().exists():  # a path, not a Hub id
        raise UsageError(f"--model {model}: no such folder; give 'minilm' (bundled), a folder written by "
                         "save_pretrained(), or a Hugging Face Hub id such as bert-base-uncased")
    if args.arch_spec is not None and not Path(args.arch_spec).expanduser().is_file():
        raise UsageError(f"--arch-spec {args.arch_spec}: no such file; give a JSON file describing the layout "
                         "(see docs/models.md)")
    tasks = _parse_tasks("--tasks", ",".join(args.tasks or [_default_tasks(kind)]))
    try:
        views = check_views(args.views if args.views is not None else VIEWS)
    except ValueError as exc:
        raise UsageError(f"--views: {exc}") from None
    harness = args.harness
    single = args.head is not None or args.layer is not None
    if args.head is not None and args.layer is not None:
        raise UsageError("give either --head or --layer, not both")
    head = _parse_head(args.head) if args.head is not None else None
    layer = _parse_layer(args.layer) if args.layer is not None else None

    params = _params_from_flags(args)
    _check_params(params)
    _check_no_ignored_flags(args, params, single)
    _check_device("--device", args.device)
    _check_device("--probe-device", args.probe_device)
    try:
        check_batch_size(args.batch_size)  # the rule encode(), the adapters and sweep() share
    except ParamError as exc:
        raise UsageError(f"--batch-size {args.batch_size}: {exc.rule}, e.g. --batch-size 32") from None
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: give a positive number of threads, e.g. --threads 1")
    cpus = os.cpu_count() or 1
    if args.threads is not None and args.threads > cpus:  # thousands of threads exhaust memory before any work
        raise UsageError(f"--threads {args.threads}: this machine has {cpus} CPUs; give at most --threads {cpus}")
    if args.max_length is not None and args.max_length < 1:
        raise UsageError(f"--max-length {args.max_length}: give a positive number of tokens, e.g. --max-length 128")
    if harness == "senteval":
        import importlib.util

        if importlib.util.find_spec("senteval") is None:
            raise UsageError("--harness senteval needs facebookresearch/SentEval installed (pip install "
                             "'senteval_anatomy[senteval]', which installs it from its repository); or use "
                             "--harness builtin, whose numbers match SentEval's")

    findings = args.controls or args.untrained_baseline or args.seeds != 1 or args.mdl or args.ablate
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: give a positive number of probe seeds, e.g. --seeds 3")
    if args.ablation_mode is not None and not args.ablate:  # it alone ran a plain sweep with no ablation column
        raise UsageError(f"--ablation-mode {args.ablation_mode} says how --ablate replaces a head: add --ablate, or "
                         f"drop --ablation-mode")
    if findings and single:
        raise UsageError("--controls/--untrained-baseline/--seeds/--mdl/--ablate work on a sweep; drop them, or drop "
                         "--head/--layer")
    if findings and args.backend != "local":
        raise UsageError(f"--controls/--untrained-baseline/--seeds/--mdl/--ablate run on the local backend (their "
                         f"variants train in the local loop); drop --backend {args.backend}, or drop them")
    if args.backend == "ray":
        import importlib.util

        if single:
            raise UsageError("--backend ray fans a sweep out; drop it, or drop --head/--layer")
        if harness != "builtin":
            raise UsageError(f"--backend ray runs the batched probes (--harness builtin), not --harness {harness}")
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--backend ray needs Ray: pip install 'senteval_anatomy[ray]'; or drop --backend ray")
    else:
        given = [f for f, v in (("--ray-address", args.ray_address), ("--ray-features", args.ray_features)) if v]
        if given:
            raise UsageError(f"{given[0]} is for --backend ray; add --backend ray, or drop {given[0]}")
    if findings and harness != "builtin":
        raise UsageError("--controls/--untrained-baseline/--seeds/--mdl/--ablate run on the batched trainer: use "
                         "--harness builtin")
    topk = True if args.topk is None else bool(args.topk)  # the main job's table shows top-k (issue 17)
    notes: list[str] = []
    if single and args.topk:
        raise UsageError("--topk works on a sweep; drop it, or drop --head/--layer")
    if single:
        topk = False
    if topk and "heads" not in views:
        if args.topk:
            raise UsageError("--topk ranks heads, so it needs the heads view: add heads to --views or drop --topk")
        topk = False
        notes.append("top-k skipped: --views has no heads")
    # lazy: start-up time (pandas: the sweeping package): every command imports this module
    from ..sweeping.plan import parse_ks  # the one --ks parser

    try:
        ks = parse_ks(args.ks)
    except ParamError as exc:
        raise UsageError(f"--ks {exc.value!r}: {exc.rule}") from None
    if (ks is not None or args.rank_task is not None) and not topk:
        flag = "--ks" if ks is not None else "--rank-task"
        raise UsageError(f"{flag} is for top-k, which is off here: add --topk (and the heads view), or drop {flag}")
    rank_task = None
    if args.rank_task is not None:
        named = _parse_tasks("--rank-task", args.rank_task)
        if len(named) != 1:
            raise UsageError(f"--rank-task {args.rank_task!r}: give one task, not {len(named)}")
        rank_task = named[0]
        if rank_task not in tasks:
            raise UsageError(f"--rank-task {rank_task}: heads are ranked on this task's sweep, so it must be one of "
                             f"--tasks ({','.join(tasks)}); add it to --tasks")
        if rank_task in NO_DEV_TASKS:
            raise UsageError(f"--rank-task {rank_task}: this task has no dev split to rank heads on; choose another")

    try:
        task_path, data_note = resolve_task_path(args.task_path)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    _check_task_files(tasks, task_path, data_note)

    out = Path(args.out).expanduser() if args.out else Path("results") / slug(str(args.model), default="model") / kind
    if not single:
        _check_writable("--out", out)
        _check_out_is_ours(out)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else None
    cache_flag = "--cache-dir" if cache_dir else f"the cache folder (default, or ${CACHE_ENV_VAR}; set --cache-dir)"
    features = (cache_dir or default_cache_dir()) / "features"
    if features.is_dir() and not _can_write_in(features):
        # A lab's shared read-only cache: the entries it holds are served; only an entry it lacks is an error (one
        # line, when the store would have to write it).
        notes.append(f"{features} is read-only: its entries are used as they are; an entry it lacks cannot be "
                     "added (give a writable --cache-dir for that)")
    else:
        _check_writable(cache_flag, cache_dir or default_cache_dir())
    params["task_path"] = str(task_path)
    return _Plan(kind=kind, tasks=tasks, views=views, params=params, preset=args.preset, task_path=task_path,
                 data_note=data_note, out=out, cache_dir=cache_dir, harness=harness, topk=topk, ks=ks,
                 rank_task=rank_task, pooling=args.pooling, max_length=args.max_length, batch_size=args.batch_size,
                 head=head, layer=layer, findings=findings, notes=notes)


def _load(args: argparse.Namespace) -> Any:
    # lazy: start-up time (torch, transformers): every command imports this module
    from ..encoders.loading import load_encoder

    try:
        return load_encoder(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length,
                            spec=args.arch_spec)
    except (UnsupportedModelError, ValueError, OSError) as exc:
        flag = ("--arch-spec" if isinstance(exc, ArchSpecError) else "--max-length" if "max_length" in str(exc)
                else "--model")
        raise UsageError(f"{flag}: {exc}") from None


def _check_for_model(plan: _Plan, encoder: Any, store: Any) -> Any:
    """Settings that depend on the model's shape; returns the single adapter when one was asked for."""
    # lazy: start-up time (torch): every command imports this module
    from ..interop.adapters import HeadAdapter, LayerAdapter

    if plan.ks is not None:
        total = encoder.num_layers * encoder.num_heads
        big = [k for k in plan.ks if k > total]
        if big:
            raise UsageError(f"--ks: k={big[0]} is more than the {total} heads of {encoder.name} "
                             f"({encoder.num_layers} layers x {encoder.num_heads} heads); give k <= {total}")
    try:
        if plan.head is not None:
            layer, head = plan.head
            return HeadAdapter(encoder, layer, head, pooling=plan.pooling, max_length=plan.max_length,
                               store=store, batch_size=plan.batch_size)
        if plan.layer is not None:
            return LayerAdapter(encoder, plan.layer, pooling=plan.pooling, max_length=plan.max_length,
                                store=store, batch_size=plan.batch_size)
    except (ValueError, TypeError) as exc:
        flag = "--head" if plan.head is not None else "--layer"
        shown = ",".join(map(str, plan.head)) if plan.head is not None else plan.layer
        raise UsageError(f"{flag} {shown}: {exc}") from None
    return None
