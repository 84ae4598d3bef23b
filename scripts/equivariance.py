#!/usr/bin/env python
"""Thin wrapper: ``python scripts/equivariance.py configs/equivariance_healpix.yaml`` is
``deepsphere equivariance configs/equivariance_healpix.yaml``."""
import sys

from deepsphere.cli import main

if __name__ == "__main__":
    sys.exit(main(["equivariance", *sys.argv[1:]]))
