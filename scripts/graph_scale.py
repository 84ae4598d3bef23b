#!/usr/bin/env python
"""Time and peak memory of building large HEALPix graphs and their Chebyshev operators.

Each (nside, k) runs in its own process so its peak resident memory is its own::

    python scripts/graph_scale.py --nside 256 512 1024 --k 8 20 [--cache DIR]

With ``--cache`` the second build of each graph is a load from the on-disk cache, whose
time is reported too.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(nside: int, k: int, cache: str | None, lanczos: bool = True) -> dict:
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    from deepsphere import graph, sampling

    out = {"nside": nside, "k": k}
    t = time.perf_counter()
    s = sampling.HEALPix(nside)
    _ = s.vectors
    out["sampling_s"] = time.perf_counter() - t
    recipe = {"kind": "knn", "k": k, "kernel_width": "tuned"}
    t = time.perf_counter()
    g = graph.build(s, recipe, cache_dir=cache)
    out["graph_s"] = time.perf_counter() - t
    out["nnz"] = int(g.adjacency.nnz)
    out["index_dtype"] = str(g.adjacency.indices.dtype)
    t = time.perf_counter()
    if lanczos:
        lam = g.lmax("normalized")
        out["lmax_s"] = time.perf_counter() - t
        out["lmax"] = lam
        t = time.perf_counter()
        L = g.chebyshev_operator("normalized")
        out["operator_s"] = time.perf_counter() - t
    else:  # lambda_max <= 2 bounds any normalized Laplacian: no Lanczos run, no Laplacian copy
        from deepsphere.nn import SparseOperator

        out["lmax_s"], out["lmax"] = 0.0, 2.0
        M = g.chebyshev_matrix("normalized", lmax=2.0)
        if not cache:  # the operator below is all a layer needs: let the adjacency go
            del g
        L = SparseOperator(M, check_symmetric=False)  # float32, int32 indices while they fit
        del M
        out["operator_s"] = time.perf_counter() - t
        out["operator_gib"] = sum(b.nbytes for b in L.buffers()) / 2**30
    del L
    if cache:
        t = time.perf_counter()
        graph.build(s, recipe, cache_dir=cache)
        out["cache_load_s"] = time.perf_counter() - t
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nside", type=int, nargs="+", default=[256, 512])
    p.add_argument("--k", type=int, nargs="+", default=[8, 20])
    p.add_argument("--cache", default=None, help="cache directory (also times the reload)")
    p.add_argument("--no-lanczos", action="store_true",
                   help="use the bound lambda_max = 2 of the normalized Laplacian instead of a "
                        "Lanczos run, and build the layers' float32 SparseOperator (what lets "
                        "nside 2048 fit in 24 GiB)")
    p.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], a.cache, not a.no_lanczos)))
        return 0
    print(f"{'nside':>6} {'k':>3} {'npix':>11} {'nnz':>12} {'idx':>6} {'graph s':>8} "
          f"{'lmax s':>7} {'op s':>6} {'cache s':>8} {'peak GiB':>9}")
    for nside in a.nside:
        for k in a.k:
            cmd = [sys.executable, __file__, "--one", str(nside), str(k)]
            if a.cache:
                cmd += ["--cache", a.cache]
            if a.no_lanczos:
                cmd += ["--no-lanczos"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(f"{nside:>6} {k:>3}  failed: {r.stderr.strip().splitlines()[-1:]}")
                continue
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{nside:>6} {k:>3} {12 * nside**2:>11,} {m['nnz']:>12,} {m['index_dtype']:>6} "
                  f"{m['graph_s']:>8.1f} {m['lmax_s']:>7.1f} {m['operator_s']:>6.1f} "
                  f"{m.get('cache_load_s', float('nan')):>8.1f} {m['peak_rss_gib']:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
