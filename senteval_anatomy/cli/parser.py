"""The ``probing`` / ``downstream`` parser: every flag, with its default from the one source (presets, backends,
probe settings), read without importing torch.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..engine.probes import CLASSIFIER_DEFAULTS, OPTIMIZER_NAMES
from ..vocab import (
    ABLATION_MODES,
    DEFAULT_PRESET,
    ENCODE_BATCH_SIZE,
    HARNESSES,
    PAPER_DOWNSTREAM_TASKS,
    POOLINGS,
    PRESETS,
    VIEWS,
    path_arg,
)
from ..vocab import OneLineParser as _Parser  # noqa: E402 - one-line argparse errors, shared by every command
from .errors import PROG


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` where a flag has a fixed default; flags set by ``--preset`` say so in their help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _preset_help(what: str, key: str) -> str:
    """Help text for a flag whose default comes from ``--preset``, with each preset's value from the one table."""
    def value(params: dict[str, Any]) -> Any:
        node: Any = params
        for part in key.split("."):
            node = node[part]
        return node

    per = "; ".join(f"{name}: {value(p)}" for name, p in PRESETS.items())
    return f"{what} (default: from --preset; {per})"


def _parser(kind: str, prog: str | None = None) -> argparse.ArgumentParser:
    # lazy: start-up time (pandas: the sweeping package): every command imports this module, --help too
    from ..sweeping.backends import BACKENDS  # the backend files, listed without importing Ray or torch

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
    f = p.add_argument_group("findings you can trust (builtin harness; senteval_anatomy.analysis.findings)")
    f.add_argument("--controls", action="store_true",
                   help="also train every probe on the task's bag-of-words and permuted-label controls: control "
                        "accuracies and selectivity against each (docs/findings.md)")
    f.add_argument("--untrained-baseline", action="store_true",
                   help="also sweep the same architecture with random weights: untrained score and gain")
    f.add_argument("--seeds", type=int, default=1, help="probe seeds per cell: mean and standard deviation")
    f.add_argument("--mdl", action="store_true", help="online-code minimum description length of every probe")
    f.add_argument("--ablate", action="store_true",
                   help="ablate each head alone and measure the change of the model's own output")
    f.add_argument("--ablation-mode", choices=ABLATION_MODES, default=None,
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
    return "probing" if kind == "probing" else ",".join(PAPER_DOWNSTREAM_TASKS)


def _backend(args: argparse.Namespace) -> Any:
    """``--backend`` and its options as the sweep's backend (Ray is imported only when it runs)."""
    # lazy: start-up time (pandas: the sweeping package): every command imports this module
    from ..sweeping.backends import get_backend

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
