"""``python -m senteval_anatomy.encoders [--check MODEL]``: the ``models`` command (see :mod:`.command`)."""

from senteval_anatomy.encoders.command import main

if __name__ == "__main__":  # pragma: no cover - python -m senteval_anatomy.encoders
    raise SystemExit(main())
