#!/usr/bin/env python
"""The Chebyshev layer at scale: triad bandwidth, the sparse product against its bound,
time against the number of vertices, and a U-Net's peak memory.

Same as ``python -m deepsphere.benchmark_scale``; see ``--help``.
Example: ``python scripts/benchmark_scale.py all``.
"""
import sys

from deepsphere.benchmark_scale import main

if __name__ == "__main__":
    sys.exit(main())
