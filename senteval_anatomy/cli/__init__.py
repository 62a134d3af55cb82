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

The package, by concern: :mod:`.parser` (the probing/downstream flags), :mod:`.planning` (flags to a checked
plan), :mod:`.running` (the plan run through the pipeline), :mod:`.errors` (the one error guard); this module holds
the entry points and the dispatch of ``data``, ``cache``, ``models``, ``reproduce`` and ``finetune``.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from ..vocab import print_error
from .errors import EXIT_USAGE, PROG, UsageError, _guarded
from .parser import _join_negative_values, _parser
from .running import _run

__all__ = ["COMMANDS", "UsageError", "main", "main_downstream", "main_probing", "run"]

#: Sub-commands: name -> (``module:function`` it dispatches to, or "" for the sweeps defined here; one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "probing": ("", "sweep every head and layer over the probing tasks; heatmaps, tables, report.md"),
    "downstream": ("", "the same over downstream tasks, plus the top-k heads representation"),
    "data": ("senteval_anatomy.data.__main__:main", "download SentEval's data, check a data folder"),
    "cache": ("senteval_anatomy.store:main", "list, verify or clear the feature cache"),
    "models": ("senteval_anatomy.encoders.command:main", "the supported model types and bundled models"),
    "reproduce": ("senteval_anatomy.experiments.reproduce:main", "run the paper's experiments and compare with its numbers"),
    "finetune": ("senteval_anatomy.finetune.cli:main", "fine-tune end to end on the last / dev-best layer / top-k heads"),
}


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
    print_error(f"unknown command {name!r}.{hint} Commands: {', '.join(COMMANDS)} (see `{PROG} --help`)", PROG)
    return EXIT_USAGE


def main_probing(argv: Sequence[str] | None = None) -> int:
    """``run_probing.py``: the ``probing`` command."""
    return run("probing", argv, prog="run_probing.py")


def main_downstream(argv: Sequence[str] | None = None) -> int:
    """``run_downstream.py``: the ``downstream`` command."""
    return run("downstream", argv, prog="run_downstream.py")
