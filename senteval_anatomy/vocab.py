"""The shared vocabulary and policy of the package, defined once and imported everywhere else.

Why one module: the same facts (which views and poolings exist, how a vector is named, the paper's probe settings,
the columns of a results row, how a score is read from a SentEval result dict, where the cache lives, how a file is
written safely) used to be spelled out in several modules, and the copies drifted apart. Every module now imports
them from here; a change to one of them is a change in one place.

The module is import-light on purpose (standard library only at import time; torch is imported inside
:func:`resolve_device`), so that light commands such as ``python -m senteval_anatomy.store list`` or
``python -m senteval_anatomy.data check`` can use it without loading torch.

Contents
--------
Names and values
    :data:`VIEWS`, :data:`POOLINGS`, :data:`HARNESSES`, :func:`vector_name`. (Per-task facts, such as
    STS sub-datasets, probing groups and which tasks have no dev score, are on each task's ``TaskSpec``:
    ``senteval_anatomy.engine.registry``.)
Probe settings
    :data:`PRESETS` (``paper``, ``senteval-default``, ``prototyping``), :data:`PAPER_PARAMS`, :func:`preset_params`.
Results
    :data:`PROTOCOL_VERSION`, :data:`RESULT_COLUMNS`, :class:`Scores` and :func:`main_scores`.
Validation
    :func:`check_views`, :func:`check_pooling`, :func:`check_probe_params` (:class:`ParamError`).
Command defaults
    :data:`DEFAULT_PRESET`, :data:`PAPER_DOWNSTREAM_TASKS`, :data:`ENCODE_BATCH_SIZE`.
Policy
    :func:`resolve_device`, :func:`default_cache_dir` (``$SENTEVAL_ANATOMY_CACHE``), :func:`slug`,
    :func:`atomic_write`.
"""

from __future__ import annotations

import argparse
import copy
import errno
import hashlib
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

__all__ = [
    "OneLineParser",
    "path_arg",
    "ABLATION_MODES",
    "CACHE_ENV_VAR",
    "DEFAULT_PRESET",
    "ENCODE_BATCH_SIZE",
    "HARNESSES",
    "PAPER_DOWNSTREAM_TASKS",
    "PAPER_PARAMS",
    "POOLINGS",
    "PRESETS",
    "PROTOCOL_VERSION",
    "RESULT_COLUMNS",
    "CURVE_COLUMNS",
    "INTERVAL_COLUMNS",
    "ParamError",
    "Scores",
    "VIEWS",
    "HEAD_RULE",
    "LAYER_RULE",
    "atomic_write",
    "check_batch_size",
    "check_count",
    "check_probe_params",
    "check_pooling",
    "check_views",
    "check_whole_list",
    "default_cache_dir",
    "is_whole",
    "main_scores",
    "names_list",
    "plain",
    "preset_params",
    "read_head",
    "read_layer",
    "resolve_device",
    "slug",
    "vector_name",
]

# ------------------------------------------------------------------------------------------------ names and values

#: The two views of a model: every attention head of every block, and every layer (embeddings + block outputs).
VIEWS: tuple[str, ...] = ("heads", "layers")

#: Token poolings: first token, last real token, mean over real tokens; and ``one-past-last``, a compatibility
#: pooling for exact reproduction of Transformer Anatomy's GPT/GPT-2 numbers only (its code read the position one past
#: the sentence, an id-0 token; see ``docs/reproduce.md``). Never a default.
POOLINGS: tuple[str, ...] = ("cls", "last", "mean", "one-past-last")

#: How a sweep evaluates its probes: batched trainer, our SE one probe at a time, or the installed SentEval.
HARNESSES: tuple[str, ...] = ("builtin", "engine", "senteval")

def vector_name(view: str, layer: int, head: int = -1) -> str:
    """The one name of a vector, used in results, cache manifests, adapters and plot labels.

    TransformerLens-style names, so that a reader who knows that library recognises them: head ``h`` of block ``l``
    is ``blocks.{l}.attn.head.{h}``, the output of block ``l`` is ``blocks.{l}.hook_resid_post`` and layer ``-1``
    of the layers view is the embeddings.

    >>> vector_name("heads", 3, 7), vector_name("layers", 11), vector_name("layers", -1)
    ('blocks.3.attn.head.7', 'blocks.11.hook_resid_post', 'embeddings')
    """
    if view == "heads":
        if layer < 0 or head < 0:
            raise ValueError(f"vector_name('heads', {layer}, {head}): a head needs layer >= 0 and head >= 0.")
        return f"blocks.{layer}.attn.head.{head}"
    if view == "layers":
        if layer < -1:
            raise ValueError(f"vector_name('layers', {layer}): layer must be >= -1 (-1 = the embeddings).")
        return "embeddings" if layer == -1 else f"blocks.{layer}.hook_resid_post"
    raise ValueError(f"vector_name: view={view!r} is not one of {VIEWS}.")


# ------------------------------------------------------------------------------------------------ probe settings

#: Named SentEval probe settings. ``batch_size`` is SentEval's encoding batch (sentences per batcher call); the
#: probe's own batch is ``classifier["batch_size"]``. ``max_epoch`` is left to SentEval's default (200).
#:
#: * ``paper``: what Transformer Anatomy (Jo & Myaeng, ACL 2020) used for every head-wise number: logistic probe,
#:   RMSprop, probe batch 256, tenacity 3, epoch size 2, kfold 5, seed 123 (and first-token pooling for encoders,
#:   which is the encoders' default pooling here).
#: * ``senteval-default``: SentEval's README "default config, for comparable results" (Adam, batch 64, tenacity 5,
#:   epoch size 4, kfold 10), with SentEval's default seed 1111.
#: * ``prototyping``: SentEval's README "prototyping config" (RMSprop, batch 128, tenacity 3, epoch size 2,
#:   kfold 5), seed 1111.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "usepytorch": True,
        "kfold": 5,
        "seed": 123,
        "batch_size": 128,
        "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 256, "tenacity": 3, "epoch_size": 2,
                       "dropout": 0.0},
    },
    "senteval-default": {
        "usepytorch": True,
        "kfold": 10,
        "seed": 1111,
        "batch_size": 128,
        "classifier": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4,
                       "dropout": 0.0},
    },
    "prototyping": {
        "usepytorch": True,
        "kfold": 5,
        "seed": 1111,
        "batch_size": 128,
        "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 3, "epoch_size": 2,
                       "dropout": 0.0},
    },
}

#: The paper's settings (the ``paper`` preset), the default of every sweep, top-k evaluation and command.
PAPER_PARAMS: dict[str, Any] = PRESETS["paper"]


def preset_params(name: str = "paper", **overrides: Any) -> dict[str, Any]:
    """A fresh copy of preset ``name``'s params with ``overrides`` applied (``classifier`` is merged key by key).

    >>> preset_params("paper", seed=1)["seed"], preset_params(classifier={"nhid": 50})["classifier"]["optim"]
    (1, 'rmsprop')
    """
    if name not in PRESETS:
        raise ValueError(f"preset {name!r} is not one of {', '.join(PRESETS)}.")
    params = copy.deepcopy(PRESETS[name])
    for key, value in overrides.items():
        if key == "classifier" and isinstance(value, Mapping):
            params["classifier"].update(value)
        else:
            params[key] = value
    return params


# ------------------------------------------------------------------------------------------------ results

#: Version of our own protocol (how a unit is computed and what its key means). Part of every result key: bump it
#: when a change to the code changes numbers, so that no older unit is ever reused for the new protocol.
PROTOCOL_VERSION = 1

#: The one result schema: every column of the tidy table, in the order the sweep writes them. ``model``..``metric``
#: say what a row is; ``devacc``..``f1`` are its scores; the rest is its identity and provenance: ``setting`` is the
#: short hash of every run setting that determines the numbers (see :mod:`senteval_anatomy.sweeping.identity`) and
#: ``data_hash`` that of the task's data (its files' content and split sizes); ``data_path`` is the folder read;
#: ``layout`` says where the heads were read (``table:<model_type>``, ``discovered``, ``user`` or ``user:<file>``).
RESULT_COLUMNS: tuple[str, ...] = (
    "model", "fingerprint", "task", "view", "layer", "head", "name", "pooling", "metric", "devacc", "acc",
    "ndev", "ntest", "f1", "harness", "usepytorch", "classifier", "kfold", "seed", "num_layers", "num_heads",
    "package_version", "dtype", "cache_dtype", "max_length", "preset", "data_path", "data_hash", "protocol", "setting",
    "layout",
)  # fmt: skip

#: How a head is ablated (:mod:`senteval_anatomy.encoders.ablation`): its W_O input replaced by zeros or by its mean
#: over training sentences. Here, with the other names of findings options, so a sweep's options are checked without
#: loading torch.
ABLATION_MODES: tuple[str, ...] = ("zero", "mean")
#: Kinds of control task, in report order (the registry is :data:`senteval_anatomy.engine.controls.CONTROL_KINDS`; these
#: names are the prefixes of their columns below).
CONTROL_KIND_NAMES: tuple[str, ...] = ("bow", "permuted")
#: Columns the sweep's findings options fill after :data:`RESULT_COLUMNS` in ``results.csv`` (controls, untrained
#: baseline, seeds, intervals, paired tests, MDL, ablation); their meaning is in that module's docstring. NaN where an
#: option was not run or does not apply to the task.
FINDINGS_COLUMNS: tuple[str, ...] = (
    "acc_low", "acc_high", "acc_mean", "acc_std", "n_seeds", "majority_acc", "majority_selectivity",
    *(c for k in CONTROL_KIND_NAMES for c in (f"{k}_control_acc", f"{k}_selectivity")),
    "untrained_acc", "untrained_gain", "mdl", "compression", "ablation_delta", "ablation_measure", "dev_rank",
    "p_vs_best", "p_vs_best_adj", "tied_with_best", "p_vs_next", "p_vs_layer_best", "p_vs_layer_best_adj",
    "tied_with_layer_best", "family_size", "layer_family_size", "correction",
)  # fmt: skip


#: Columns of a top-k curve (:func:`senteval_anatomy.analysis.topk.topk_curve`, the sweep's ``topk`` view): one row per k
#: (``kind`` ``topk``) and per layer baseline (``last_layer``, ``best_layer``, ``mean_last_layer``...); ``selected``
#: marks the k chosen on dev.
CURVE_COLUMNS: tuple[str, ...] = (
    "model", "task", "rank_task", "pooling", "kind", "k", "layer", "name", "dim", "metric", "devacc", "acc", "ndev",
    "ntest", "f1", "by", "selected", "seconds",
)  # fmt: skip

#: Extra columns of a top-k curve with intervals: the 95% Wilson interval of each row's test accuracy
#: (:func:`senteval_anatomy.engine.stats.accuracy_ci`) and the exact McNemar p-value of its test predictions against the
#: dev-chosen best layer's (NaN for that row, and for tasks without per-sentence predictions).
INTERVAL_COLUMNS: tuple[str, ...] = ("acc_low", "acc_high", "p_vs_best_layer")


class Scores(NamedTuple):
    """The main scores of one SentEval result dict: ``metric`` is ``acc`` (percent) or ``pearson`` ([-1, 1])."""

    metric: str
    devacc: float
    acc: float
    ndev: float
    ntest: float
    f1: float


def _number(x: Any) -> float:
    """A float from a result value; None -> NaN; ``(r, p)`` pairs (scipy results as lists) -> their first item."""
    if x is None:
        return math.nan
    if isinstance(x, (list, tuple)):
        return _number(x[0]) if len(x) else math.nan
    if hasattr(x, "ravel"):  # a numpy array or scalar, without importing numpy here
        flat = x.ravel()
        return float(flat[0]) if flat.size else math.nan
    return float(x)


def main_scores(result: Mapping[str, Any]) -> Scores:
    """(metric, dev, test, ndev, ntest, f1) of one SentEval result dict, whatever the task family.

    Classification tasks give accuracies (``devacc``/``acc``, plus ``f1`` for MRPC); SICK-R and STS-B give Pearson r
    (``devpearson``/``pearson``); STS12-16 have no dev score (NaN) and report the mean Pearson r over their
    sub-datasets, with ``ntest`` the number of pairs.

    >>> main_scores({"devacc": 80.0, "acc": 79.5, "ndev": 10, "ntest": 10})[:3]
    ('acc', 80.0, 79.5)
    """
    nan = math.nan
    if "devacc" in result and "acc" in result:
        return Scores("acc", _number(result["devacc"]), _number(result["acc"]), _number(result.get("ndev")),
                      _number(result.get("ntest")), _number(result.get("f1")))
    if "pearson" in result:
        return Scores("pearson", _number(result.get("devpearson")), _number(result["pearson"]),
                      _number(result.get("ndev")), _number(result.get("ntest")), nan)
    if "all" in result:  # STS12-16: unsupervised, no dev score
        n = sum(_number(v.get("nsamples", 0)) for k, v in result.items() if k != "all" and isinstance(v, Mapping))
        return Scores("pearson", nan, _number(result["all"]["pearson"]["mean"]), nan, n, nan)
    raise ValueError(f"Unrecognised SentEval result dict with keys {sorted(result)}.")


# ------------------------------------------------------------------------------------------------ validation


def check_views(views: Sequence[str] | str) -> tuple[str, ...]:
    """The views asked for, validated and in canonical order (``heads`` before ``layers``), without repeats.

    One rule everywhere: a string is a comma-separated list (``"heads,layers"``, ``"layers"``), a sequence holds view
    names; at least one view, each one of :data:`VIEWS`.

    >>> check_views("layers, heads"), check_views(["layers"])
    (('heads', 'layers'), ('layers',))
    """
    np = _numpy()
    if views is None or not (isinstance(views, (str, list, tuple)) or (np is not None and isinstance(views, np.ndarray))):
        raise ValueError(f"views={views!r}: give one or more of {', '.join(VIEWS)} (e.g. 'heads,layers').")
    items = views.split(",") if isinstance(views, str) else list(views)
    names = []
    for v in items:
        if not isinstance(v, str):
            raise ValueError(f"views={views!r}: each view must be a string, one of {', '.join(VIEWS)}.")
        if v.strip():
            names.append(v.strip())
    bad = [v for v in names if v not in VIEWS]
    if bad or not names:
        raise ValueError(
            f"views={views!r}: give one or more of {', '.join(VIEWS)} (e.g. 'heads,layers')"
            + (f"; unknown: {', '.join(bad)}" if bad else "")
            + "."
        )
    return tuple(v for v in VIEWS if v in names)


def check_pooling(pooling: str | None, encoder: Any = None) -> str:
    """The pooling to use: ``pooling`` when valid (in any case: ``"CLS"`` is ``"cls"``, as ``--pooling`` reads it),
    the encoder's default when ``None``; else a one-line :class:`ParamError` naming ``pooling``."""
    if pooling is None:
        if encoder is None:
            raise ParamError("pooling", None, f"needs an encoder to take its default from; give one of "
                                              f"{', '.join(POOLINGS)}")
        return str(encoder.default_pooling)
    name = pooling.strip().lower() if isinstance(pooling, str) else None
    if name not in POOLINGS:
        raise ParamError("pooling", pooling, f"give one of {', '.join(POOLINGS)} (in any case)")
    return name


# ------------------------------------------------------------------------------------------------ policy


def resolve_device(device: Any = "auto", *, what: str = "device") -> Any:
    """Turn ``"auto"`` / ``None`` or a device name into a ``torch.device``; one rule for models and probes.

    ``"auto"`` is CUDA when available, else the CPU (the engine's documented rule: on a machine without CUDA the
    numbers are the CPU's, reproducible anywhere). Apple MPS is used only when asked for (``"mps"``), because the
    probes' numerics are not validated there. An explicit name (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or a
    ``torch.device`` is checked: asking for an accelerator this machine does not have is an error that says so,
    rather than a crash later. ``what`` names the setting in messages (e.g. ``params.device``).
    """
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}={device!r} is not a device; use auto, cpu, cuda, cuda:N or mps.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={device!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{what}={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})."
            )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{what}={device!r} was asked for, but Apple MPS is not available here; use 'cpu'.")
    return dev


def print_error(message: object, prog: str | None = None) -> None:
    """The one way every command reports an error: one line on stderr, ``PROG: error: ...`` (``error: ...`` without
    a program name), newlines folded, so that a user's mistake never scrolls a traceback or a wrapped paragraph."""
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}" if prog else f"error: {text}", file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusals are one line (what is wrong, and where the help is), exit status 2, no usage block.

    Every command's parser is one of these (sub-parsers inherit it), so a mistake reads the same everywhere.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    #: Actions that may be given several times: they add up (``append``/``extend``, e.g. ``--tasks``; ``count``) or
    #: say the same thing again (``store_true``/``store_false``/``store_const``, e.g. ``-q -q``).
    _REPEATABLE = (argparse._AppendAction, argparse._ExtendAction, argparse._CountAction, argparse._StoreConstAction,
                   argparse._HelpAction, argparse._VersionAction)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse, refusing a flag that takes one value given twice (argparse keeps the last one silently:
        ``--views layers --views heads`` dropped the layers; ``--seed 1 --seed 2`` ran seed 2). One mechanism for
        every command: the uses are counted as argparse reads them (so abbreviations, ``--flag=value``, a sub-command's
        own flags and arguments passed through to a script are all read exactly as argparse reads them)."""
        self._uses: dict[argparse.Action, list[list[str]]] = {}
        result = super().parse_known_args(args, namespace)
        for action, uses in self._uses.items():
            if len(uses) > 1:
                flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
                if action.nargs == 0:  # e.g. --topk/--no-topk
                    self.error(f"{'/'.join(action.option_strings)} given {len(uses)} times; only the last would "
                               "count: give it once")
                shown = ", then ".join(repr(" ".join(u)) for u in uses)
                self.error(f"{flag} given {len(uses)} times ({shown}); it takes one value and only the last would "
                           "count: give it once" + (f" ({_LIST_FLAGS[flag]})" if flag in _LIST_FLAGS else ""))
        return result

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse calls this once per use of an action, before the action stores its value
        if action.option_strings and not isinstance(action, self._REPEATABLE):
            self._uses.setdefault(action, []).append(list(arg_strings))
        return super()._get_values(action, arg_strings)


#: Flags whose one value is itself a comma-separated list: a repeat is refused with a hint to join the values.
_LIST_FLAGS = {"--views": "several views: --views heads,layers", "--ks": "several k: --ks 1,2,4",
               "--models": "several models: --models bert-base-uncased,gpt2"}


def path_arg(text: str) -> str:
    """``argparse`` type of every path option: an empty or blank path is refused, never read as "the default".

    ``Path("")`` is the current folder, so ``--out ""`` (an unset shell variable, say) would otherwise write
    results into the working directory, and ``--task-path ""`` would silently fall back to the demo data.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path ({text!r}); give a path, or leave the option out for its "
                                         "default")
    return text


#: Environment variable that moves the cache root (features, downloaded data, generated default data).
CACHE_ENV_VAR = "SENTEVAL_ANATOMY_CACHE"


def default_cache_dir() -> Path:
    """The cache root: ``$SENTEVAL_ANATOMY_CACHE``, else ``$XDG_CACHE_HOME/senteval_anatomy``, else
    ``~/.cache/senteval_anatomy``.

    Everything the package caches lives under it: ``features/`` (the feature store), ``data/`` (downloaded
    SentEval data) and ``default-data/`` (the generated demo data of an installed package).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "senteval_anatomy"


def slug(text: str, *, max_len: int = 80, default: str = "x") -> str:
    """A file-name-safe form of ``text``: lower case, runs of characters other than ``a-z 0-9 . _ -`` become ``-``.

    Lower case so that names never differ only in case (macOS and Windows file systems would merge them). Long
    texts are cut and get a short hash of the full text, so two long names that share a prefix never share a file
    name.

    >>> slug("sentence-transformers/all-MiniLM-L6-v2"), slug("Probing tasks: by group")
    ('sentence-transformers-all-minilm-l6-v2', 'probing-tasks-by-group')
    """
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    if len(s) > max_len:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        s = s[: max_len - 9].rstrip("-.") + "-" + digest
    return s or default


def atomic_write(
    path: str | os.PathLike[str],
    content: str | bytes | Callable[[str], Any],
    *,
    encoding: str = "utf-8",
    fsync: bool = True,
) -> Path:
    """Write ``path`` so that readers see either the old file or the complete new one, never half a file.

    ``content`` is text, bytes, or a callable that writes the temporary path it is given (e.g.
    ``lambda p: df.to_csv(p, index=False)``). The data goes to a hidden temporary file in the same folder, is
    flushed to disk (``fsync``) and renamed over ``path``; on any error (including Ctrl-C) the temporary file is
    removed and ``path`` is untouched. The new file gets the user's normal permissions (0666 minus umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():  # else the rename fails naming only the hidden temporary file
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of this file; move or rename the folder",
                                str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(tmp)
        else:
            data = content.encode(encoding) if isinstance(content, str) else bytes(content)
            with os.fdopen(fd, "wb") as fh:
                fd = -1
                fh.write(data)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# ------------------------------------------------------------------------------------------------ command defaults

#: The preset every sweep, top-k evaluation and command uses when none is named.
DEFAULT_PRESET = "paper"

#: The downstream tasks of the paper's top-k experiments (Jo & Myaeng 2020): the default of
#: ``senteval-anatomy downstream``.
PAPER_DOWNSTREAM_TASKS: tuple[str, ...] = ("SST5", "TREC", "SICKEntailment", "MRPC")

#: Sentences per forward pass when encoding: a speed and memory knob (``--batch-size``), not part of any key.
ENCODE_BATCH_SIZE = 64


# ------------------------------------------------------------------------------------------------ probe settings check


class ParamError(ValueError):
    """A setting or argument that cannot give a meaningful result; ``setting`` names it (``kfold``,
    ``classifier.optim``, ``batch_size``, ``layer``) and ``rule`` says how to fix it, so that the command line can
    show the same rule under its flag's name (``--layer 'x': <rule>``) that the Python API shows (``layer='x':
    <rule>``)."""

    def __init__(self, setting: str, value: Any, rule: str) -> None:
        self.setting, self.value, self.rule = setting, value, rule
        super().__init__(f"{setting}={value!r}: {rule}")


def check_probe_params(params: Mapping[str, Any]) -> None:
    """Refuse SentEval params that SentEval itself would run but that cannot give a meaningful number.

    Why: SentEval accepts ``epoch_size=0`` or ``max_epoch=0`` and returns a chance-level table with exit code 0.
    Checking up front (the commands do, before any encoding) turns those into an immediate, named error. Keys that
    are absent are not checked (the engine's defaults are valid). The ``optim`` string has its own grammar and
    check, :func:`senteval_anatomy.engine.probes.parse_optimizer`.

    >>> check_probe_params({"kfold": 5, "classifier": {"nhid": 0, "optim": "rmsprop", "epoch_size": 2}})
    >>> check_probe_params({"classifier": {"nhid": 0, "epoch_size": 0}})
    Traceback (most recent call last):
    ...
    senteval_anatomy.vocab.ParamError: classifier.epoch_size=0: must be >= 1 (with 0 the probe never trains)
    """

    def whole(setting: str, value: Any, low: int, why: str, high: int | None = None) -> None:
        if not is_whole(value):
            raise ParamError(setting, value, "must be a whole number")
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise ParamError(setting, value, f"must be {bounds} ({why})")

    if "kfold" in params:
        whole("kfold", params["kfold"], 2, "cross-validation needs at least 2 folds")
    if "seed" in params and params["seed"] is not None:
        whole("seed", params["seed"], 0, "NumPy's seeds are 32-bit", 2**32 - 1)
    if "batch_size" in params:
        whole("batch_size", params["batch_size"], 1, "sentences per batcher call")
    if "usepytorch" in params and not _is_bool(params["usepytorch"]):
        raise ParamError("usepytorch", params["usepytorch"], "must be True or False")
    clf = params.get("classifier") or {}
    for key, low, why in (
        ("nhid", 0, "0 = logistic regression"),
        ("batch_size", 1, "sentences per probe mini-batch"),
        ("tenacity", 0, "validations without improvement before training stops"),
        ("epoch_size", 1, "with 0 the probe never trains"),
        ("max_epoch", 1, "with 0 the probe never trains"),
    ):
        if key in clf:
            whole(f"classifier.{key}", clf[key], low, why)
    if "dropout" in clf:
        d = clf["dropout"]
        if _is_bool(d) or not isinstance(d, numbers.Real) or not 0 <= d < 1:
            raise ParamError("classifier.dropout", d, "must be a number in [0, 1)")


# ------------------------------------------------------------------------------------------------ argument checks
# One home for how every entry point (the command line, sweep(), encode(), the adapters, load_encoder, reproduce)
# reads its arguments: numpy scalars and arrays are accepted wherever Python ints and lists are, repeats are removed
# the same way, and a mistake is one line naming the argument.


def _numpy() -> Any:
    """NumPy if something already imported it (then values may be NumPy's), else None: this module stays light."""
    return sys.modules.get("numpy")


def _is_bool(value: Any) -> bool:
    np = _numpy()
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def is_whole(value: Any) -> bool:
    """An integer, Python's or NumPy's, but not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists (recursively through dicts,
    lists and tuples), so that settings hash, print and compare the same whichever the caller passed."""
    np = _numpy()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if np is not None and isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def names_list(value: Any, *, what: str, example: str) -> list[str]:
    """A list of names from a comma-separated string, a list/tuple or a NumPy array of strings, stripped, without
    repeats (first occurrence kept): the one way ``tasks``/``views`` are read. ``None``, a non-string item or no name
    at all is a one-line ``ValueError`` naming ``what``."""
    if value is None:
        raise ValueError(f"{what}=None: give {example}")
    np = _numpy()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)) or (np is not None and isinstance(value, np.ndarray)):
        items = list(value.tolist() if not isinstance(value, (list, tuple)) else value)
    else:
        raise ValueError(f"{what}={value!r}: expected a string or a list of strings, e.g. {example}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{what}={value!r}: {item!r} is not a name; give strings, e.g. {example}")
        name = item.strip()
        if name and name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"{what}={value!r} names nothing; give {example}")
    return out


def check_count(value: Any, *, what: str, low: int = 1, why: str = "") -> int:
    """A whole number >= ``low`` (NumPy's included, bools refused) as a Python int; else a one-line
    :class:`ParamError` (a ``ValueError``) naming ``what``."""
    if not is_whole(value) or value < low:
        raise ParamError(what, value, f"give a whole number >= {low}" + (f" ({why})" if why else ""))
    return int(value)


def check_batch_size(value: Any, *, what: str = "batch_size") -> int:
    """Sentences per forward pass (``encode``, the adapters, ``sweep``, ``--batch-size``): a whole number >= 1."""
    return check_count(value, what=what, why="sentences per forward pass")


def check_whole_list(value: Any, *, what: str, low: int = 1, example: str = "1,2,4,8") -> list[int]:
    """Whole numbers >= ``low`` from a comma-separated string (``"1,2,4"``; ``"1,,2"`` is a typo, refused), a
    list/tuple or a NumPy array, each once in the order given (as :func:`names_list` does for names): the one way
    ``ks``/``--ks`` are read. Bools, fractions and anything else are one line naming ``what``."""
    np = _numpy()
    if isinstance(value, str):
        try:
            items: list[Any] = [int(x) for x in value.split(",")] if value.strip() else []
        except ValueError:
            raise ParamError(what, value, f"expected comma-separated whole numbers, e.g. {example}") from None
    elif isinstance(value, (list, tuple)) or (np is not None and isinstance(value, np.ndarray)):
        items = list(value.tolist() if not isinstance(value, (list, tuple)) else value)
    else:
        raise ParamError(what, value, f"expected whole numbers (a list or a comma-separated string), e.g. {example}")
    out: list[int] = []
    for item in items:
        if not is_whole(item) or item < low:
            raise ParamError(what, value, f"every value must be a whole number >= {low} (got {item!r}), e.g. "
                                          f"{example}")
        if int(item) not in out:
            out.append(int(item))
    if not out:
        raise ParamError(what, value, f"give at least one whole number, e.g. {example}")
    return out


#: How a block (layer) index is given, everywhere (``--layer``, ``--head L,H``, the adapters' ``layer``).
LAYER_RULE = "give a block index (0, 1, ...; negative counts from the end, -1 = the last block)"
#: How a head index is given, everywhere (``--head L,H``, the adapters' ``head``).
HEAD_RULE = "give a head index (0, 1, ...; 0 is each block's first head)"


def read_layer(value: Any, *, what: str = "layer", embeddings: bool = True) -> int | str:
    """A layer as every entry point reads it: a whole number (NumPy's included; a numeric string, as ``--layer``
    gives it) or, where ``embeddings``, ``"embeddings"`` in any case. ``True``, ``2.5``, ``None`` and other values are
    a one-line :class:`ParamError` naming ``what``. The range is the model's, checked where the model is known."""
    if isinstance(value, str):
        text = value.strip()
        if embeddings and text.lower() == "embeddings":
            return "embeddings"
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    elif is_whole(value):
        return int(value)
    raise ParamError(what, value, LAYER_RULE + (" or 'embeddings'" if embeddings else ""))


def read_head(value: Any, *, what: str = "head") -> int:
    """A head index as every entry point reads it: a whole number >= 0 (NumPy's included; a numeric string, as
    ``--head`` gives it); anything else is a one-line :class:`ParamError` naming ``what``."""
    if isinstance(value, str) and re.fullmatch(r"\s*\+?\d+\s*", value):
        return int(value)
    if is_whole(value) and value >= 0:
        return int(value)
    raise ParamError(what, value, HEAD_RULE)
