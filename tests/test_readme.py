"""README's Python examples run as written (on a small copy of the demo data), and their commented results hold."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from test_sweep import make_tiny_data

REPO = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def with_checks(code: str) -> str:
    """Turn ``expr  # (2, 6, 12, 32): ...`` lines into assertions that the expression equals the commented tuple."""
    out = []
    for line in code.splitlines():
        m = re.match(r"^(?P<expr>[^#=]+?)\s+#\s*(?P<value>\([0-9, ]+\))", line)
        if m:
            ast.parse(m["expr"], mode="eval")  # only bare expressions are checked
            line = f"assert ({m['expr']}) == {m['value']}, ({m['expr']!r}, {m['expr']})"
        out.append(line)
    return "\n".join(out)


def test_readme_python_examples_run_as_written(tmp_path):
    blocks = python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks, "README has no ```python block"
    data = make_tiny_data(tmp_path / "data", n_train=60, n_dev=20, n_test=20)
    # A block that needs SentEval itself runs with the real package when the workspace has it, else is left out
    # (as on a user's machine without SentEval); every other block always runs.
    senteval_home = REPO.parent / "shared" / "third_party" / "SentEval"
    has_senteval = (senteval_home / "senteval" / "__init__.py").is_file()
    blocks = [b for b in blocks if has_senteval or "compat" not in b]
    code = "\n".join(with_checks(b) for b in blocks)
    assert code.count("assert (") >= 2  # the shape comments are checked
    code = code.replace('"DIR"', repr(str(data)))
    # run in a fresh interpreter, in an empty folder (outputs land there), with the package of this checkout
    path = os.pathsep.join([str(REPO), *([str(senteval_home)] if has_senteval else [])])
    env = dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["SENTEVAL_ANATOMY_CACHE"] = str(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / "results" / "minilm" / "results.csv").is_file()
    assert (work / "length_heatmap.png").is_file()
