#!/usr/bin/env python
"""Run every benchmark behind BENCHMARKS.md, one after the other.

    python scripts/benchmark.py --quick        # toy sizes, seconds: a smoke run of each part
    python scripts/benchmark.py                # the sizes of BENCHMARKS.md (an hour or more)
    python scripts/benchmark.py --only pyg gpu # some parts

Parts (each is also a command of its own, with more options):

- ``pyg``: ChebConv against torch_geometric's, and graph builds (``deepsphere benchmark``);
- ``scale``: triad bandwidth, the sparse product against its bound (torch's and the compiled
  kernel), the layer with either product, time against the number of vertices, a U-Net's
  peak memory (``deepsphere benchmark-scale``);
- ``gpu``: the same on a CUDA device, and a SHREC-size classifier's inference time
  (``deepsphere benchmark-gpu``; skipped without CUDA);
- ``spectral``: spherical harmonic transforms against healpy, and S²/SO(3) convolutions
  (``scripts/benchmark_spectral.py``).

Timings depend on the machine and its load; nothing here asserts on them.
"""
from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

PARTS = ("pyg", "scale", "gpu", "spectral")

QUICK: Dict[str, List[str]] = {
    "pyg": ["--quick"],
    "scale": ["all", "--threads", "1", "--triad-elements", "100000", "--spmm-nside", "8",
              "--columns", "16", "--layer-cases", "8:2", "--nside", "4", "8", "--batch", "2",
              "--repeats", "1",
              "--unet-nside", "8", "--unet-channels", "4", "8", "--K", "3", "--variant",
              "default"],
    "gpu": ["all", "--nside", "8", "16", "--columns", "16", "--batch", "2",
            "--triad-elements", "1000000", "--inference-batch", "1", "4", "--repeats", "3"],
    "spectral": ["accuracy", "--max-nside", "8", "--batch", "1"],
}
FULL: Dict[str, List[str]] = {
    "pyg": [],
    "scale": ["all"],
    "gpu": ["all"],
    "spectral": ["all"],
}


def _module_main(module: str) -> Callable[[List[str]], int]:
    def run(argv: List[str]) -> int:
        import importlib

        return importlib.import_module(module).main(argv)
    return run


def _script_main(path: Path) -> Callable[[List[str]], int]:
    def run(argv: List[str]) -> int:
        return runpy.run_path(str(path))["main"](argv) or 0
    return run


RUNNERS: Dict[str, Callable[[List[str]], int]] = {
    "pyg": _module_main("deepsphere.benchmark"),
    "scale": _module_main("deepsphere.benchmark_scale"),
    "gpu": _module_main("deepsphere.benchmark_gpu"),
    "spectral": _script_main(Path(__file__).with_name("benchmark_spectral.py")),
}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Each part prints the machine and its own command line.")
    p.add_argument("--quick", action="store_true", help="toy sizes: a smoke run of each part")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                   help="run these parts only")
    args = p.parse_args(argv)
    import torch

    failed = []
    for part in args.only:
        if part == "gpu" and not torch.cuda.is_available():
            print("\n# gpu: skipped (no CUDA device)\n", flush=True)
            continue
        part_args = (QUICK if args.quick else FULL)[part]
        print(f"\n# ==== {part}: {' '.join(part_args)}\n", flush=True)
        t0 = time.perf_counter()
        rc = RUNNERS[part](list(part_args))
        print(f"\n# {part}: exit {rc}, {time.perf_counter() - t0:.1f} s", flush=True)
        if rc:
            failed.append(part)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
