"""Regenerate ``data/default`` (the embedded synthetic demo data) byte for byte.

The generator lives in the package (``senteval_anatomy.data.grammar``) so that an installed package can produce the
same data without this script; this file only points it at ``data/default`` and removes files the generator no longer
produces. Run it after changing the grammar (and bump ``GENERATOR_VERSION``)::

    python data/make_default.py

``tests/test_data_grammar.py`` fails when the committed files differ from a fresh regeneration.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing the package

from senteval_anatomy.data.grammar import write_default  # noqa: E402 - after the path tweak above


def main() -> int:
    out = HERE / "default"
    written = write_default(out, progress=True, prune=True)
    print(f"wrote {len(written)} files under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
