"""The command line: ``senteval-anatomy {probing, downstream, data, cache, models, reproduce}``.

``senteval-anatomy probing`` (also ``python -m senteval_anatomy probing`` and the thin wrapper ``run_probing.py``)
with no further arguments is the main job on the embedded default: the bundled MiniLM model, the 10 probing tasks
of the default data (SentEval's data when a folder is given or was downloaded), every head and every layer, then
heatmaps, a summary table and ``report.md`` in the output folder. ``downstream`` does the same for the paper's
downstream tasks and adds the top-k heads representation (heads and k chosen on dev). With ``--head L,H`` or
``--layer L`` either command evaluates just that one adapter. ``data``, ``cache``, ``models`` and ``reproduce`` hand
their arguments to the main function of the module that owns them.

What the command line promises (``docs/reliability.md`` lists every case and the test that proves it):

* **Every setting is checked before any encoding starts**: tasks, views, probe settings, devices, paths, the task
  data's files, then (once the model is loaded, which encodes nothing) layers, heads, ``--ks`` and
  ``--max-length`` against the model. A mistake ends the command at once.
* **A user's mistake is one line** on stderr (``error: ...``: what is wrong, and how to fix it) and exit status 2;
  a failure of the run itself (a full disk, a folder that became unwritable) is one line and exit status 1; Ctrl-C
  is exit status 130 with "interrupted — rerun the same command to resume". A traceback is printed only with
  ``--debug``.
* **Nothing half-written**: every file is written through :func:`senteval_anatomy.vocab.atomic_write` or the
  store's atomic entries, so an interruption leaves finished units, which a rerun reuses, and nothing else.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .outdir import RESULTS_CSV

__all__ = ["COMMANDS", "UsageError", "main", "main_downstream", "main_probing", "run"]

PROG = "senteval-anatomy"

#: Sub-commands: name -> (``module:function`` it dispatches to, or "" for the sweeps defined here; one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "probing": ("", "sweep every head and layer over the probing tasks; heatmaps, tables, report.md"),
    "downstream": ("", "the same over downstream tasks, plus the top-k heads representation"),
    "data": ("senteval_anatomy.data.__main__:main", "download SentEval's data, check a data folder"),
    "cache": ("senteval_anatomy.store:main", "list, verify or clear the feature cache"),
    "models": ("senteval_anatomy.encoders.selfcheck:main", "the supported model types and bundled models"),
    "reproduce": ("senteval_anatomy.reproduce:main", "run the paper's experiments and compare with its numbers"),
    "finetune": ("senteval_anatomy.finetune.cli:main", "fine-tune end to end on the last / dev-best layer / top-k heads"),
}

#: Exit statuses: a user's mistake, a failure of the run, Ctrl-C (128 + SIGINT), SIGTERM (128 + SIGTERM).
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143

RESUME_HINT = "rerun the same command to resume"


class UsageError(Exception):
    """A user's mistake on the command line or in the inputs it names: reported as one line, exit status 2."""


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that temporary files are removed on the way out (like Ctrl-C)."""


# ------------------------------------------------------------------------------------------------ parsing


from .vocab import OneLineParser as _Parser  # noqa: E402 - one-line argparse errors, shared by every command


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` where a flag has a fixed default; flags set by ``--preset`` say so in their help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _preset_help(what: str, key: str) -> str:
    """Help text for a flag whose default comes from ``--preset``, with each preset's value from the one table."""
    from .vocab import PRESETS

    def value(params: dict[str, Any]) -> Any:
        node: Any = params
        for part in key.split("."):
            node = node[part]
        return node

    per = "; ".join(f"{name}: {value(p)}" for name, p in PRESETS.items())
    return f"{what} (default: from --preset; {per})"


def _parser(kind: str, prog: str | None = None) -> argparse.ArgumentParser:
    from .engine.probes import CLASSIFIER_DEFAULTS, OPTIMIZER_NAMES
    from .sweeping.backends import BACKENDS  # the backend files, listed without importing Ray or torch
    from .vocab import (
        DEFAULT_PRESET,
        ENCODE_BATCH_SIZE,
        HARNESSES,
        POOLINGS,
        PRESETS,
        VIEWS,
        path_arg,
    )

    default_tasks = _default_tasks(kind)
    p = _Parser(
        prog=prog or f"{PROG} {kind}",
        description=(
            f"Sweep every attention head and every layer of a transformer over SentEval {kind} tasks, then draw the "
            "layer x head heatmaps and write a report."
            + (" Adds the top-k heads representation, with heads and k chosen on dev." if kind == "downstream" else "")
            + " Every setting is checked before any encoding starts; a rerun of the same command resumes."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--model", "-m", default="minilm",
                   help="'minilm' (bundled, offline), a local model folder, or a Hugging Face Hub id")
    p.add_argument("--arch-spec", type=path_arg, default=None, metavar="FILE.json",
                   help="where a model type not in the table keeps its heads, when discovery cannot tell "
                        "(docs/models.md)")
    p.add_argument("--tasks", "-t", nargs="+", action="extend", metavar="T", default=None,
                   help="tasks, separated by commas or spaces (as in the data command): SentEval names in any case "
                        f"(Length, sst5), data sets (SICK, STS12) or groups (probing, downstream, sts, all) "
                        f"(default: {default_tasks})")
    p.add_argument("--views", default=None,
                   help=f"comma-separated views: {', '.join(VIEWS)} (default: {','.join(VIEWS)})")
    p.add_argument("--task-path", type=path_arg, default=None,
                   help="SentEval data folder (holding probing/ and downstream/); default: $SENTEVAL_ANATOMY_DATA, "
                        "then downloaded data, then the embedded demo data")
    p.add_argument("--out", "-o", type=path_arg, default=None,
                   help=f"output folder (default: results/<model>/{kind})")
    p.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                   help="named probe settings (paper: Jo & Myaeng 2020; senteval-default and prototyping: SentEval's "
                        "README configs); any probe flag given explicitly overrides the preset's value")
    p.add_argument("--pooling", type=str.lower, choices=POOLINGS, default=None,
                   help="token pooling (default: cls for encoders, last for decoders)")
    p.add_argument("--harness", choices=HARNESSES, default="builtin",
                   help="builtin: batched probes (fast); engine: one probe at a time through our SE; "
                        "senteval: one run per probe of an installed SentEval")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: this process; ray: fan the sweep out over a Ray cluster (pip install "
                        "'senteval_anatomy[ray]'), same table and resume rules")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join with --backend ray (host:port, ray://host:port, auto); "
                        "default $RAY_ADDRESS, else a local cluster")
    p.add_argument("--ray-features", choices=("store", "object"), default=None,
                   help="how features reach the training units: store = the feature cache folder, which must be "
                        "shared storage on a cluster (default); object = Ray's object store (no shared storage)")
    p.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="model weights' dtype (default: float32)")
    p.add_argument("--max-length", type=int, default=None,
                   help="truncate inputs to this many tokens (default: the model's limit)")
    p.add_argument("--batch-size", type=int, default=ENCODE_BATCH_SIZE,
                   help="sentences per forward pass when encoding (speed and memory only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for encoding (default: torch's); 1 is faster on a busy shared machine")
    p.add_argument("--cache-dir", type=path_arg, default=None,
                   help="feature cache folder (default: $SENTEVAL_ANATOMY_CACHE or ~/.cache/senteval_anatomy)")
    p.add_argument("--cache-dtype", choices=("float32", "float16"), default="float32", help="dtype of cached features")
    p.add_argument("--no-rebuild", action="store_true",
                   help="a damaged cache entry found while reading (checksum, NaN) is an error, not rebuilt")
    g = p.add_argument_group("probe settings (SentEval's params; defaults from --preset)")
    g.add_argument("--seed", type=int, default=None, help=_preset_help("seed of every probe and fold split", "seed"))
    g.add_argument("--kfold", type=int, default=None, help=_preset_help("cross-validation folds (>= 2)", "kfold"))
    g.add_argument("--sklearn", action="store_true",
                   help="usepytorch=False: scikit-learn logistic regression instead of the PyTorch probe")
    g.add_argument("--nhid", type=int, default=None,
                   help=_preset_help("hidden units of the probe (0 = logistic regression)", "classifier.nhid"))
    g.add_argument("--optim", default=None,
                   help=_preset_help(f"probe optimizer: {', '.join(OPTIMIZER_NAMES)}, with options as in "
                                     "'sgd,lr=0.1'", "classifier.optim"))
    g.add_argument("--probe-batch-size", type=int, default=None,
                   help=_preset_help("probe mini-batch size", "classifier.batch_size"))
    g.add_argument("--tenacity", type=int, default=None,
                   help=_preset_help("early stopping patience (>= 0)", "classifier.tenacity"))
    g.add_argument("--epoch-size", type=int, default=None,
                   help=_preset_help("epochs between validations (>= 1)", "classifier.epoch_size"))
    g.add_argument("--max-epoch", type=int, default=None,
                   help=f"most epochs of probe training (default: SentEval's, {CLASSIFIER_DEFAULTS['max_epoch']})")
    g.add_argument("--dropout", type=float, default=None,
                   help=_preset_help("dropout of the hidden layer, in [0, 1)", "classifier.dropout"))
    g.add_argument("--probe-device", default=None,
                   help="where PyTorch probes train: auto, cpu, cuda, cuda:N (default: auto)")
    a = p.add_argument_group("analysis")
    a.add_argument("--no-plots", action="store_true",
                   help="skip every figure, findings figures included (tables, report.md and top-k still run)")
    a.add_argument("--no-resume", action="store_true", help="recompute units already in the output folder")
    a.add_argument("--topk", action=argparse.BooleanOptionalAction, default=None,
                   help="the top-k heads view: heads ranked on dev, concatenated in rank order, k chosen on dev "
                        "(default: on; --no-topk skips it)")
    a.add_argument("--ks", default=None, help="k values for top-k, e.g. 1,2,4,8 (default: 1..12, then doubling, "
                   "all heads; the paper's k, heads per layer, is always added)")
    a.add_argument("--rank-task", default=None,
                   help="rank heads on the dev scores of this task (one of --tasks) instead of each task's own")
    f = p.add_argument_group("findings you can trust (builtin harness; senteval_anatomy.findings)")
    f.add_argument("--controls", action="store_true",
                   help="also train every probe on the task's bag-of-words and permuted-label controls: control "
                        "accuracies and selectivity against each (docs/findings.md)")
    f.add_argument("--untrained-baseline", action="store_true",
                   help="also sweep the same architecture with random weights: untrained score and gain")
    f.add_argument("--seeds", type=int, default=1, help="probe seeds per cell: mean and standard deviation")
    f.add_argument("--mdl", action="store_true", help="online-code minimum description length of every probe")
    f.add_argument("--ablate", action="store_true",
                   help="ablate each head alone and measure the change of the model's own output")
    f.add_argument("--ablation-mode", choices=("zero", "mean"), default=None,
                   help="how --ablate replaces a head (default zero)")
    s = p.add_argument_group("single adapter (instead of a sweep)")
    s.add_argument("--head", default=None, metavar="L,H",
                   help="evaluate one head, e.g. 3,7 or -1,0 (negative layers count from the end)")
    s.add_argument("--layer", default=None, metavar="L",
                   help="evaluate one layer: block index (negative counts from the end) or 'embeddings'")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="print the full traceback of any error")
    p.add_argument("--version", action="version", version=f"senteval_anatomy {__version__}")
    return p


def _default_tasks(kind: str) -> str:
    from .vocab import PAPER_DOWNSTREAM_TASKS

    return "probing" if kind == "probing" else ",".join(PAPER_DOWNSTREAM_TASKS)


def _backend(args: argparse.Namespace) -> Any:
    """``--backend`` and its options as the sweep's backend (Ray is imported only when it runs)."""
    from .sweeping.backends import get_backend

    return get_backend(args.backend, address=args.ray_address, features=args.ray_features)


_NEGATIVE_VALUE = re.compile(r"^-\d+(,\s*-?\d+)*$")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--head -1,0`` -> ``--head=-1,0``: argparse would read ``-1,0`` as an unknown option, not a value."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if (tok.startswith("--") and "=" not in tok and i + 1 < len(args)
                and _NEGATIVE_VALUE.match(args[i + 1])):
            out.append(f"{tok}={args[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


# ------------------------------------------------------------------------------------------------ validation

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
    from .data.sources import expand_tasks

    try:
        tasks = expand_tasks([text]) if text.strip(" ,") else []
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None
    if not tasks:
        raise UsageError(f"{flag} {text!r} names no task: give names such as {flag} Length,Depth or a group such as "
                         f"{flag} probing")
    return tasks


def _parse_head(text: str) -> tuple[int, int]:
    from .vocab import ParamError, read_head, read_layer  # the rules every entry point shares

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
    from .vocab import ParamError, read_layer  # the rule every entry point shares

    try:
        return read_layer(text)
    except ParamError as exc:
        raise UsageError(f"--layer {text!r}: {exc.rule}") from None


def _params_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's params with every explicitly given probe flag applied on top."""
    from .vocab import preset_params

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
    from .engine.probes import parse_optimizer  # the one grammar of SentEval's optimizer strings
    from .vocab import ParamError, check_probe_params

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
    from .vocab import resolve_device

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
    from .outdir import RUN_FILES, UNITS_DIR

    if not out.is_dir() or (out / UNITS_DIR).is_dir():
        return
    theirs = [name for name in RUN_FILES if (out / name).exists()]
    if theirs:
        raise UsageError(f"--out {out}: already holds {', '.join(theirs)} that no senteval_anatomy run wrote (no "
                         "units/ folder beside them), which this run would overwrite; give a new or empty folder")


def _check_task_files(tasks: Sequence[str], root: Path, data_note: str) -> None:
    """Every file each task reads is there; else say which files are missing and how to get them."""
    from .data import DOWNLOAD_HINT
    from .engine.registry import get_task

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
    from .data import resolve_task_path
    from .engine.registry import NO_DEV_TASKS
    from .vocab import (
        CACHE_ENV_VAR,
        VIEWS,
        ParamError,
        check_batch_size,
        check_views,
        default_cache_dir,
        slug,
    )

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
    from .sweeping.plan import parse_ks  # the one --ks parser

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
    from .encoders.architectures import ArchSpecError, UnsupportedModelError
    from .encoders.loading import load_encoder

    try:
        return load_encoder(args.model, device=args.device, dtype=args.dtype, max_length=args.max_length,
                            spec=args.arch_spec)
    except (UnsupportedModelError, ValueError, OSError) as exc:
        flag = ("--arch-spec" if isinstance(exc, ArchSpecError) else "--max-length" if "max_length" in str(exc)
                else "--model")
        raise UsageError(f"{flag}: {exc}") from None


def _check_for_model(plan: _Plan, encoder: Any, store: Any) -> Any:
    """Settings that depend on the model's shape; returns the single adapter when one was asked for."""
    from .adapters import HeadAdapter, LayerAdapter

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


# ------------------------------------------------------------------------------------------------ running


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def _single(plan: _Plan, encoder: Any, adapter: Any) -> int:
    from .identity import preset_name
    from .sweeping.backends.local import harness_engine  # the one harness switch, as the sweep runs it

    engine_cls, running = harness_engine(plan.harness, plan.params.get("device") or "auto")
    with running:
        results = engine_cls(plan.params, adapter.batcher, adapter.prepare).eval(plan.tasks)

    print(json.dumps({"model": encoder.name, "vector": adapter.name, "preset": preset_name(plan.params),
                      "results": results},
                     indent=2, default=_jsonable))
    return 0


def _run(kind: str, args: argparse.Namespace) -> int:
    plan = _plan(kind, args)
    print(f"data: {plan.task_path} ({plan.data_note})", file=sys.stderr)
    encoder = _load(args)
    print(f"model: {encoder!r}", file=sys.stderr)
    from .store import FeatureStore

    store = FeatureStore(plan.cache_dir, dtype=args.cache_dtype, rebuild=not args.no_rebuild)
    adapter = _check_for_model(plan, encoder, store)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if adapter is not None:
        return _single(plan, encoder, adapter)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)

    from .sweeping.pipeline import run as run_plan
    from .sweeping.plan import make_plan
    from .sweeping.variants import FindingsOptions

    findings = FindingsOptions(controls=args.controls, untrained_baseline=args.untrained_baseline, seeds=args.seeds,
                               mdl=args.mdl, ablate=args.ablate, ablation_mode=args.ablation_mode or "zero")
    run = make_plan(plan.tasks, task_path=plan.task_path, params=plan.params, views=plan.views, ks=plan.ks,
                    findings=findings, pooling=plan.pooling, max_length=plan.max_length, harness=plan.harness,
                    backend=_backend(args), batch_size=plan.batch_size, out=plan.out, resume=not args.no_resume,
                    progress=not args.quiet, topk=plan.topk, rank_task=plan.rank_task, kind=kind,
                    data_note=plan.data_note, draw_figures=not args.no_plots)
    done = run_plan(run, encoder, store)
    print(f"sweep: {len(done.table)} rows in {done.seconds:.1f} s -> {plan.out / RESULTS_CSV}", file=sys.stderr)
    print(done.report.summary_text)
    print(f"\nreport: {done.report.path}")
    print(f"output folder: {plan.out.resolve()}")
    return 0


# ------------------------------------------------------------------------------------------------ errors


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error_message(exc: OSError) -> str:
    if exc.errno is None:  # the package's own OSErrors (e.g. store.CacheWriteError) already say what and how
        return f"{exc} ({RESUME_HINT})" if RESUME_HINT not in str(exc) else str(exc)
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}: free some space or choose another --out / --cache-dir, then "
                f"{RESUME_HINT} (finished units are kept; nothing half-written was left)")
    if exc.errno == errno.EFBIG:
        return f"file too large for this file system or limit{where}: raise the limit or choose another folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where}: {exc.strerror}; choose a writable --out / --cache-dir, then {RESUME_HINT}"
    return f"{exc.strerror or exc}{where}; fix the cause, then {RESUME_HINT}"


def _guarded(work: Callable[[], int], *, debug: bool, prog: str = PROG) -> int:
    """Run ``work``; turn every error into one line on stderr and an exit status (``--debug``: re-raise)."""
    from .encoders.architectures import UnsupportedModelError
    from .engine.tasks import DataError
    from .store import CacheCorruptionError

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        return work()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted — {RESUME_HINT}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print(f"{prog}: terminated — {RESUME_HINT}", file=sys.stderr)
        return EXIT_TERMINATED
    except DataError as exc:
        if debug:
            raise
        where = f"{exc.path}:{exc.line}: " if exc.line is not None else (f"{exc.path}: " if exc.path else "")
        extra = "; ".join(x for x in (f"expected {exc.expected}" if exc.expected else "",
                                      f"fix: {exc.fix}" if exc.fix else "") if x)
        print(f"{prog}: error: {where}{_one_line(exc.message)}" + (f" ({_one_line(extra)})" if extra else ""),
              file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, UnsupportedModelError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except CacheCorruptionError as exc:  # --no-rebuild and a damaged entry: the line names it and how to repair
        if debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # the reader went away (`... | head`): nothing to report to it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return EXIT_FAILURE
    except ConnectionError as exc:  # a cluster out of reach (--ray-address): the address is the user's to fix
        if debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(_os_error_message(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except MemoryError:
        if debug:
            raise
        print(f"{prog}: error: out of memory; lower --batch-size (encoding) or --probe-batch-size", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and how to see more
        if debug:
            raise
        if "out of memory" in str(exc).lower():
            print(f"{prog}: error: out of memory ({_one_line(exc)[:200]}); lower --batch-size or --probe-batch-size",
                  file=sys.stderr)
        else:
            print(f"{prog}: error: {type(exc).__name__}: {_one_line(exc)[:500]} (rerun with --debug for the "
                  "traceback, and please report it)", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ------------------------------------------------------------------------------------------------ entry points


def run(kind: str, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the ``probing`` or ``downstream`` command with ``argv``; return the exit status."""
    argv = _join_negative_values(sys.argv[1:] if argv is None else argv)
    parser = _parser(kind, prog)
    args = parser.parse_args(argv)  # a single-value flag given twice is refused there (vocab.OneLineParser)
    return _guarded(lambda: _run(kind, args), debug=args.debug, prog=parser.prog)


def _dispatch(name: str, argv: list[str], debug: bool) -> int:
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")

    def work() -> int:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise UsageError(f"the `{name}` command is not part of this version of senteval_anatomy "
                             f"({module_name} is missing); upgrade the package") from None
        func = getattr(module, func_name, None)
        if func is None:
            raise UsageError(f"the `{name}` command is not part of this version of senteval_anatomy "
                             f"({module_name} has no {func_name}()); upgrade the package")
        return int(func(argv, prog=f"{PROG} {name}") or 0)  # usage lines name the command as typed

    return _guarded(work, debug=debug, prog=f"{PROG} {name}")


def _top_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} [--debug] COMMAND [ARGS...]", "",
             "Every attention head and every layer of a transformer as a SentEval sentence encoder.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", f"`{PROG} COMMAND --help` explains a command. --debug prints full tracebacks.",
              f"Also: python -m senteval_anatomy COMMAND ...   ({PROG} {__version__})"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``senteval-anatomy COMMAND ...`` (console script and ``python -m senteval_anatomy``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while args and args[0] == "--debug":
        debug = True
        args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(_top_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    if args[0] == "--version":
        print(f"senteval_anatomy {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name in ("probing", "downstream"):
        return run(name, [*rest, "--debug"] if debug else rest, prog=f"{PROG} {name}")
    if name in COMMANDS:
        if "--debug" in rest:
            debug = True
            rest = [a for a in rest if a != "--debug"]
        return _dispatch(name, rest, debug)
    close = difflib.get_close_matches(name, list(COMMANDS), n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    print(f"{PROG}: error: unknown command {name!r}.{hint} Commands: {', '.join(COMMANDS)} "
          f"(see `{PROG} --help`)", file=sys.stderr)
    return EXIT_USAGE


def main_probing(argv: Sequence[str] | None = None) -> int:
    """``run_probing.py``: the ``probing`` command."""
    return run("probing", argv, prog="run_probing.py")


def main_downstream(argv: Sequence[str] | None = None) -> int:
    """``run_downstream.py``: the ``downstream`` command."""
    return run("downstream", argv, prog="run_downstream.py")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
