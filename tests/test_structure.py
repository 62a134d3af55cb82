"""The package's shape: no import cycle between its modules, and no use of another module's private names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "senteval_anatomy"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Package modules a module imports, at module level or inside functions (a lazy import that closes a cycle
    is still a cycle: it only hides the order problem until that function runs)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("senteval_anatomy"):
                if node.module:  # "from . import evaluators" imports the module, not the package's names
                    found.add(mod)
                for alias in node.names:  # "from . import evaluators" imports a module
                    found.add(f"{mod}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("senteval_anatomy")}
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle():
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
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
