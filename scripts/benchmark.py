#!/usr/bin/env python
"""Time deepsphere's ChebConv against torch_geometric's and time graph builds.

Same as ``deepsphere benchmark``; see ``python scripts/benchmark.py --help``.
Example: ``python scripts/benchmark.py --quick``.
"""
import sys

from deepsphere.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
