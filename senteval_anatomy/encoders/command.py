"""The ``models`` command (``senteval-anatomy models``, ``python -m senteval_anatomy.encoders``): list the supported
model types and how each is read, print the README's table, or self-check one model (``--check MODEL``,
:func:`~senteval_anatomy.encoders.selfcheck.self_check`). Listing reads only the declarative table
(:mod:`.architectures`), so ``models`` and ``models --help`` answer without loading torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..vocab import OneLineParser, path_arg, print_error
from .architectures import (
    ARCHITECTURES,
    UnsupportedModelError,
    describe_architectures,
    how_read,
    supported_models_markdown,
)

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``python -m senteval_anatomy.encoders [--check MODEL]``: list supported types, or self-check one model.

    Exit codes: 0 listed / all checks passed, 1 a check failed, 2 the model could not be loaded.
    """
    parser = OneLineParser(
        prog=prog or "python -m senteval_anatomy.encoders",
        description="List the model types senteval_anatomy reads and how, or self-check a model.",
    )
    parser.add_argument("--check", metavar="MODEL", help="bundled name, local folder or Hub id to self-check")
    parser.add_argument("--arch-spec", type=path_arg, metavar="FILE.json", help="your own layout (see docs/models.md)")
    parser.add_argument("--device", default="cpu", help="device for the check (default: cpu)")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--markdown", action="store_true", help="print the README's table of supported types")
    args = parser.parse_args(argv)
    if args.check is None:
        if args.markdown:
            print(supported_models_markdown())
            return 0
        print(f"{len(ARCHITECTURES)} model types have a table entry; any other is discovered and validated at load:")
        for model_type in describe_architectures():
            spec = ARCHITECTURES[model_type]
            print(f"  {model_type:<12} {how_read(spec)}")
            if spec.notes:
                print(f"  {'':<12} {spec.notes}")
        return 0
    # lazy: start-up time (torch, transformers): `models` and `models --help` list the table without them
    from .loading import load_encoder
    from .selfcheck import self_check

    try:
        encoder = load_encoder(args.check, device=args.device, dtype=args.dtype, spec=args.arch_spec)
        checks = self_check(encoder)
    except (UnsupportedModelError, ValueError, OSError) as exc:
        print_error(exc)
        return 2
    print(f"{encoder!r}\nlayout: {encoder.layout}")
    for name, passed, detail in checks:
        print(f"  [{'ok' if passed else 'FAIL'}] {name}: {detail}")
    failed = [name for name, passed, _ in checks if not passed]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return 1 if failed else 0
