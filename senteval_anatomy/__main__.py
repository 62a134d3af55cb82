"""``python -m senteval_anatomy COMMAND ...``: the same command line as the ``senteval-anatomy`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
