"""The package's shape: no import cycle, no use of another module's private names, modules of a readable size,
imports that point down the layers, package imports at the top of modules, and light commands that never load torch.

Each rule that today's code does not meet yet carries an explicit, commented pending list naming the files and the
reason. A pending entry that the code no longer needs fails its test, so the lists only shrink.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from senteval_anatomy.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "senteval_anatomy"
REPO = PACKAGE.parent


def _module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = set(_sources())


def _package_imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, ast.stmt, bool]]:
    """``(module, statement, lazy)`` for every import of a package module in ``path``; ``lazy``: inside a function.

    ``from . import name`` imports the module ``name`` when there is one, else the package itself (a package's
    ``__init__`` runs for it: ``from . import _helper`` is an import of the package, and can close a cycle).
    ``root``: the package folder ``path`` belongs to (a copy of the package in a test)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, ast.stmt, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for alias in child.names:
                    target = f"{mod}.{alias.name}"
                    found.append((target if target in MODULES else mod, child, inner))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child, inner) for a in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [(m, node, lazy) for m, node, lazy in found if m in MODULES and m != name]


def _imports(path: Path) -> set[str]:
    """Package modules a module imports, at module level or inside functions (a lazy import that closes a cycle
    is still a cycle: it only hides the order problem until that function runs)."""
    return {m for m, _, _ in _package_imports(path)}


def test_no_import_cycle():
    graph = {name: _imports(path) for name, path in _sources().items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == "senteval_anatomy":
                continue  # the top package only re-exports lazily
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep] if dep in stack else [node, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])


def test_no_private_results_use_outside_results():
    """plots, report, analysis and topk use Results' public methods only."""
    private = re.compile(r"\b(?:results|res|self\.results)\._[a-z]\w*")
    for path in PACKAGE.rglob("*.py"):
        if path.name == "results.py":
            continue
        hits = private.findall(path.read_text(encoding="utf-8"))
        assert not hits, f"{path.name} uses private Results members {hits}"


def _shadowed_names(package_dir: Path) -> list[str]:
    """Names a package's ``__init__`` defines (def, class, assignment) that are also the name of one of its modules.

    Importing that module (``from .name import ...`` anywhere, lazily too) rebinds the package attribute to the
    module, so ``package.name`` stops being the function the package documents."""
    tree = ast.parse((package_dir / "__init__.py").read_text(encoding="utf-8"))
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    return sorted(n for n in defined if (package_dir / f"{n}.py").is_file() or (package_dir / n / "__init__.py").is_file())


def test_no_module_shadows_a_name_its_package_defines():
    """``senteval_anatomy.finetune.probe_after`` was the function until ``finetune/probe_after.py`` was imported once
    (by a run with ``probe_after=True``): then it was the module. A package's names and its modules' names differ."""
    found = {p.parent.relative_to(PACKAGE).as_posix() or ".": _shadowed_names(p.parent)
             for p in PACKAGE.rglob("__init__.py")}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"package names that a module of the same name replaces once it is imported: {found}"


def test_shadow_rule_reads_the_package(tmp_path):
    (tmp_path / "__init__.py").write_text("def probe_after():\n    from .probe_after import run\nX = 1\n")
    (tmp_path / "probe_after.py").write_text("def run():\n    pass\n")
    (tmp_path / "other.py").write_text("")
    assert _shadowed_names(tmp_path) == ["probe_after"]


# ------------------------------------------------------------------------------------------------ module size

MAX_LINES = 800
"""A module longer than this mixes concerns often enough to be split on its seams (issue 17, item 6)."""

SIZE_EXEMPT = {
    # one toy-grammar DSL: the word tables and the per-task generators that read them (cohesive; a split would only
    # move the lexicon away from the rules that use it)
    "data/grammar.py",
}

SIZE_PENDING: set[str] = set()
"""Files still waiting for their split (each left in the commit that split it: engine/tasks.py, store.py, cli.py)."""


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_over_the_size_limit():
    sizes = {p.relative_to(PACKAGE).as_posix(): _lines(p) for p in PACKAGE.rglob("*.py")}
    over = {f: n for f, n in sizes.items() if n > MAX_LINES and f not in SIZE_EXEMPT | SIZE_PENDING}
    assert not over, f"modules over {MAX_LINES} lines (split them on their seams): {over}"
    done = sorted(f for f in SIZE_PENDING if sizes.get(f, 0) <= MAX_LINES)
    assert not done, f"{done} no longer over {MAX_LINES} lines (or gone): remove them from SIZE_PENDING"
    stale = sorted(f for f in SIZE_EXEMPT if sizes.get(f, 0) <= MAX_LINES)
    assert not stale, f"{stale} no longer needs its exemption: remove it from SIZE_EXEMPT"


# ------------------------------------------------------------------------------------------------ layers
#
# The folders show the layers, bottom first: the vocabulary, then encoders -> store -> engine -> data -> interop ->
# tables -> sweeping -> analysis -> pipeline -> experiments -> the command line (docs/architecture.md draws the same).
# A module imports only from its own layer or from a layer below it, lazy imports included (a function-level import
# is still a dependency).

LAYERS = ("ground", "encoders", "store", "engine", "data", "interop", "tables", "sweeping", "analysis", "pipeline",
          "experiments", "face")
"""Bottom first. ``data`` sits above ``engine`` (its download and check lists read the engine's task registry) and
below ``sweeping`` (a sweep checks its task names with ``data.sources``). ``interop``: the SentEval-facing adapters
and compat, on the encoders and the store; the sweep's ``--harness senteval`` runs the real SentEval through them.
``tables``: the results table and its dev-only rules, which the sweep writes and ranks with and every report reads.
``pipeline``: ``run(plan)``, the sweep then the report. ``experiments``: the paper's experiments (``reproduce``,
``finetune``), built on the pipeline and the sweep. ``face``: the command line and the package's public names."""

LAYER_OF: dict[str, str] = {
    # folders: every module in them
    "encoders": "encoders",  # a model as an encoder of every head and layer; ablation and the untrained twin
    "store": "store",
    "engine": "engine",  # our SentEval: tasks, probes, the batched trainer; controls, statistics, MDL
    "data": "data",
    "interop": "interop",  # SentEval's prepare/batcher (adapters) and the unmodified SentEval on today's stack
    "tables": "tables",  # the results table and its dev-only rules: the sweep writes and ranks with them
    "sweeping": "sweeping",  # plan, units, identity, views, variants, backends
    "analysis": "analysis",
    "pipeline": "pipeline",  # run(plan): the sweep, then the report
    "experiments": "experiments",  # reproduce: the paper's experiments on the pipeline
    "finetune": "experiments",  # the paper's fine-tuning experiment, on the sweep (reproduce --finetune uses it)
    # modules at the top of the package
    "vocab": "ground",
    "outdir": "ground",  # the names in an output folder: vocabulary
    "_version": "ground",
    "cli": "face",
    "__main__": "face",
    "": "face",  # senteval_anatomy/__init__.py: the public names, re-exported lazily
}
"""Module (dotted, relative to the package; "" is the package itself) -> its layer. The longest matching prefix
wins, so a folder's entry covers every module in it. A new module or folder must be placed here."""

UPWARD_PENDING: dict[tuple[str, str], str] = {}
"""(importer, imported) -> why it still points up. Empty: every import points down. Should a seam ever need a
pending entry again, it is closed by moving code, not by editing the map; an entry the code no longer needs fails."""


def _layer(module: str) -> str:
    rel = module[len("senteval_anatomy"):].lstrip(".")
    parts = rel.split(".") if rel else []
    if not parts:
        return LAYER_OF[""]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYER_OF:
            return LAYER_OF[key]
    raise AssertionError(f"{module} has no layer: add it (or its folder) to LAYER_OF in tests/test_structure.py")


def _short(module: str) -> str:
    return module[len("senteval_anatomy"):].lstrip(".")


def _upward_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for name, path in _sources().items():
        for target, node, _ in _package_imports(path):
            if LAYERS.index(_layer(target)) > LAYERS.index(_layer(name)):
                where = f"{path.relative_to(REPO)}:{node.lineno} ({_layer(name)}) imports {_short(target)} " \
                        f"({_layer(target)})"
                found.setdefault((_short(name), _short(target)), []).append(where)
    return found


def test_every_module_has_a_layer():
    assert all(layer in LAYERS for layer in LAYER_OF.values())
    for name in MODULES:
        _layer(name)


def test_imports_point_down_the_layers():
    found = _upward_imports()
    new = [w for pair, where in found.items() if pair not in UPWARD_PENDING for w in where]
    assert not new, "imports from a higher layer (move the code down, or the module up):\n" + "\n".join(new)
    gone = sorted(pair for pair in UPWARD_PENDING if pair not in found)
    assert not gone, f"{gone} no longer import upward: remove them from UPWARD_PENDING"


def test_layer_rule_catches_an_upward_import(tmp_path):
    """The rule reads real import statements: an engine module importing the sweep is reported."""
    engine = tmp_path / "senteval_anatomy" / "engine"
    engine.mkdir(parents=True)
    bad = engine / "tasks.py"
    bad.write_text("def f():\n    from ..sweeping import sweep\n", encoding="utf-8")
    name = "senteval_anatomy.engine.tasks"
    targets = [t for t, _, _ in _package_imports(bad, tmp_path / "senteval_anatomy")]
    assert targets == ["senteval_anatomy.sweeping"]
    assert LAYERS.index(_layer(targets[0])) > LAYERS.index(_layer(name))


# ------------------------------------------------------------------------------------------------ lazy imports
#
# Package imports belong at the top of a module, where a reader sees what it depends on. An import inside a
# function needs a reason, stated on the import (or on a comment line right above a run of imports) as
# ``# lazy: <reason>``, e.g. ``# lazy: optional dependency (ray)`` or ``# lazy: start-up time (torch)``.

LAZY_REASON = re.compile(r"#\s*lazy:\s*\S")

LAZY_PENDING: dict[str, str] = {}
"""Modules whose function-level package imports carry no reason yet. Empty: every such import states why. Should one
ever need an entry again, it leaves the list when it has none left (an entry the code no longer needs fails)."""


def _unexplained_lazy_imports(path: Path) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    bad = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not isinstance(body, list):
            continue
        for block in _statement_lists(node):
            first = None
            for stmt in block:
                if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    first = None
                    continue
                first = first or stmt
                if not _is_package_import(stmt, path):
                    continue
                own = lines[stmt.lineno - 1 : stmt.end_lineno]
                above = lines[first.lineno - 2] if first.lineno >= 2 else ""
                if not any(LAZY_REASON.search(t) for t in own) and not (
                    above.lstrip().startswith("#") and LAZY_REASON.search(above)
                ):
                    bad.append(stmt.lineno)
    return sorted(set(bad))


def _statement_lists(fn: ast.AST) -> list[list[ast.stmt]]:
    """Every list of statements inside a function (its body, branches, loops, with/try blocks), nested ones too."""
    out = []
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody", "handlers"):
            value = getattr(node, field, None)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                out.append(value)
    return out


def _is_package_import(stmt: ast.stmt, path: Path) -> bool:
    if isinstance(stmt, ast.ImportFrom):
        return bool(stmt.level) or (stmt.module or "").startswith("senteval_anatomy")
    return any(a.name.startswith("senteval_anatomy") for a in stmt.names)


def test_package_imports_at_module_top_unless_a_reason_is_given():
    unexplained = {}
    for name, path in _sources().items():
        rows = _unexplained_lazy_imports(path)
        if rows:
            unexplained[_short(name)] = [f"{path.relative_to(REPO)}:{n}" for n in rows]
    new = {m: rows for m, rows in unexplained.items() if m not in LAZY_PENDING}
    assert not new, ("package imports inside functions without a `# lazy: <reason>` comment (move them to the "
                     f"module top): {new}")
    done = sorted(set(LAZY_PENDING) - set(unexplained))
    assert not done, f"{done} have no unexplained lazy import left: remove them from LAZY_PENDING"


def test_lazy_rule_reads_the_reason_comment(tmp_path):
    """A function-level package import is accepted with a reason on its line or right above its run of imports."""
    src = tmp_path / "m.py"
    src.write_text(
        "def a():\n    from .vocab import VIEWS\n"  # no reason: reported (line 2)
        "def b():\n    from .vocab import VIEWS  # lazy: start-up time\n"
        "def c():\n    # lazy: optional dependency (ray)\n    import json\n    from . import store\n"
        "def d():\n    import json\n",  # not a package import
        encoding="utf-8",
    )
    assert _unexplained_lazy_imports(src) == [2]


# ------------------------------------------------------------------------------------------------ light commands

LIGHT_COMMANDS = [
    ["--help"],
    *([name, "--help"] for name in COMMANDS),  # every command's --help, a new command's too
    ["data", "check", "{repo}/data/default", "--tasks", "Length"],
    ["cache", "list", "--cache-dir", "{tmp}"],
    ["models"],  # the table of supported model types
    ["reproduce", "--finetune", "--help"],  # the paper's fine-tuning grid
]
"""Commands that answer at once: they must not import torch or transformers (seconds of start-up). Only a command
that loads a model (a sweep, ``models --check``, a reproduction, a fine-tuning run) imports them, when it does."""


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_light_commands_do_not_import_torch(argv, tmp_path):
    """A real run of ``python -m senteval_anatomy ...``; ``-X importtime`` lists every module it imported."""
    args = [a.format(repo=REPO, tmp=tmp_path) for a in argv]
    env = dict(os.environ, PYTHONPATH=str(REPO), SENTEVAL_ANATOMY_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "senteval_anatomy", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()  # it answered (usage, a table, a folder's state)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "senteval_anatomy" in imported  # the listing is real
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "transformers"))
    assert not heavy, f"`senteval-anatomy {' '.join(argv)}` imported {heavy[:5]}"


# ------------------------------------------------------------------------------------------------ the map

ARCHITECTURE = REPO / "docs" / "architecture.md"


def _table_modules(text: str) -> set[str]:
    """Module paths named in the first cell of a markdown table row: ``| `store/entry.py` | ... |``."""
    return set(re.findall(r"^\|\s*`([\w/]+\.py)`\s*\|", text, flags=re.M))


def test_architecture_names_every_module():
    """docs/architecture.md's module map has a row for every module of the package, and no row for one that is
    gone: the map stays true as modules are added, moved or split."""
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    named = _table_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    missing = sorted(modules - named)
    assert not missing, f"docs/architecture.md (Module map) has no row for {missing}"
    gone = sorted(named - modules)
    assert not gone, f"docs/architecture.md (Module map) names modules that do not exist: {gone}"


def test_architecture_rule_reads_table_rows():
    text = "| `store/entry.py` | the format |\n| x | `cli.py` named in prose |\n`vocab.py` in a sentence\n"
    assert _table_modules(text) == {"store/entry.py"}


def _error_prints(path: Path) -> list[int]:
    """Lines where ``print(...)`` writes an ``error:`` line itself instead of calling ``vocab.print_error``."""
    rows = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print" and node.args:
            text = ast.unparse(node.args[0])
            if "error: " in text:
                rows.append(node.lineno)
    return rows


def test_one_place_prints_errors():
    """Every command reports an error through ``vocab.print_error`` (one line, ``PROG: error: ...``): the CLI's
    guard, the data, cache, models, reproduce and finetune commands alike."""
    found = {}
    for name, path in _sources().items():
        if name == "senteval_anatomy.vocab":
            continue
        rows = _error_prints(path)
        if rows:
            found[_short(name)] = rows
    assert not found, f"error lines printed outside vocab.print_error: {found}"


def test_error_print_rule_reads_print_calls(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('import sys\nprint(f"error: {1}", file=sys.stderr)\nprint("fine")\n', encoding="utf-8")
    assert _error_prints(src) == [2]
