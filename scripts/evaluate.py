#!/usr/bin/env python
"""Evaluate a trained run on its test split: the same as ``deepsphere evaluate``.

    python scripts/evaluate.py runs/quickstart [--split test] [--checkpoint best]
"""
import sys

from deepsphere.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
