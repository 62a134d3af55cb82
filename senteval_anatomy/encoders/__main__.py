"""``python -m senteval_anatomy.encoders [--check MODEL]``: the ``models`` command (see :mod:`.selfcheck`)."""

from senteval_anatomy.encoders.selfcheck import main

if __name__ == "__main__":  # pragma: no cover - python -m senteval_anatomy.encoders
    raise SystemExit(main())
