#!/usr/bin/env python
"""Sweep every head and layer of a transformer over SentEval downstream tasks (see `python run_downstream.py --help`)."""

import sys

from senteval_anatomy.cli import main_downstream

if __name__ == "__main__":
    sys.exit(main_downstream())
