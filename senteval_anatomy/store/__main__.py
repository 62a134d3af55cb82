"""``python -m senteval_anatomy.store {list,clear,verify}``: the ``cache`` command (see :mod:`.command`)."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
