#!/usr/bin/env python
"""Sweep every head and layer of a transformer over SentEval probing tasks (see `python run_probing.py --help`)."""

import sys

from senteval_anatomy.cli import main_probing

if __name__ == "__main__":
    sys.exit(main_probing())
