#!/usr/bin/env python
"""ChebConv time against the number of vertices, beside the spherical harmonic transform's.

    python scripts/plot_scaling.py --figure docs/figures/scaling.png
    python scripts/plot_scaling.py --gpu-json benchmark_gpu.json --figure scaling.png

Measures, on one CPU thread, per map / sample and HEALPix nside 16 ... ``--max-nside``:

- ``ChebConv(16, 16, K=5)`` forward on a batch of 2 (k-NN k = 8 graph, λmax = 2), through
  :func:`deepsphere.benchmark_scale.scaling_rows`;
- the SHT synthesis at ``lmax = 2 nside`` (healpy's ``alm2map`` and, up to ``--max-sht-nside``,
  deepsphere's torch ``InverseSHT``), which costs O(L³) = O(n^1.5);

fits ``time ~ n^q`` to each, prints the table and draws one log-log figure. With
``--gpu-json`` (the JSON of ``deepsphere benchmark-gpu``) the float32 ChebConv forward on
the GPU is drawn too, per sample. Nothing asserts on time.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List

import numpy as np


def sht_rows(nsides: List[int], torch_max_nside: int) -> List[dict]:
    import healpy as hp
    import torch

    from deepsphere.benchmark_scale import wall_times
    from deepsphere.sampling import HEALPix
    from deepsphere.spectral import InverseSHT, from_healpy_alm

    rng = np.random.default_rng(0)
    rows = []
    for nside in nsides:
        lmax = 2 * nside
        nalm = hp.Alm.getsize(lmax)
        alm = rng.standard_normal(nalm) + 1j * rng.standard_normal(nalm)
        alm[: lmax + 1] = alm[: lmax + 1].real  # m = 0 coefficients of a real map are real
        row = dict(nside=nside, n=12 * nside**2, lmax=lmax,
                   healpy_s=min(wall_times(lambda: hp.alm2map(alm, nside, lmax=lmax), 3)))
        if nside <= torch_max_nside:
            syn = InverseSHT(HEALPix(nside), lmax)
            c = from_healpy_alm(alm[None], lmax).float()
            with torch.no_grad():
                row["torch_s"] = min(wall_times(lambda: syn(c), 3))
        rows.append(row)
        print(f"SHT nside {nside}: healpy {row['healpy_s']:.2e} s"
              + (f", torch {row['torch_s']:.2e} s" if "torch_s" in row else ""), flush=True)
    return rows


def fit(n, t) -> float:
    n, t = np.asarray(n, float), np.asarray(t, float)
    ok = np.isfinite(t)
    return float(np.polyfit(np.log(n[ok]), np.log(t[ok]), 1)[0]) if ok.sum() > 1 else float("nan")


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-nside", type=int, default=256, help="largest nside (ChebConv, healpy)")
    p.add_argument("--max-sht-nside", type=int, default=128,
                   help="largest nside of the torch SHT (its Legendre table grows as L^3)")
    p.add_argument("--fit-min-nside", type=int, default=64,
                   help="fit the exponents from this nside on (smaller sizes sit in cache)")
    p.add_argument("--gpu-json", help="JSON written by deepsphere benchmark-gpu, to overlay")
    p.add_argument("--figure", help="write the log-log figure here (PNG)")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    for name in ("max_nside", "max_sht_nside", "fit_min_nside"):
        v = getattr(a, name)
        if v < 16 or v & (v - 1):
            p.error(f"--{name.replace('_', '-')} must be a power of two >= 16 (HEALPix nside), got {v}")

    import threadpoolctl
    import torch

    from deepsphere.benchmark_scale import scaling_rows

    torch.set_num_threads(1)
    nsides = [2**k for k in range(4, int(np.log2(a.max_nside)) + 1)]
    with threadpoolctl.threadpool_limits(1):
        conv = scaling_rows(nsides, [2], K=5, channels=16, repeats=3, max_mb=400)
        sht = sht_rows(nsides, a.max_sht_nside)
    gpu: List[dict] = []
    if a.gpu_json:
        with open(a.gpu_json) as f:
            gpu = [r for r in json.load(f).get("conv", [])
                   if "error" not in r and r["dtype"] == "float32"]

    big = [r for r in conv if r["nside"] >= a.fit_min_nside]
    bigs = [r for r in sht if r["nside"] >= a.fit_min_nside]
    fits: Dict[str, float] = {
        "ChebConv forward, CPU": fit([r["n"] for r in big], [r["fwd_ms"] / r["batch"] for r in big]),
        "SHT synthesis, healpy": fit([r["n"] for r in bigs], [r["healpy_s"] for r in bigs]),
        "SHT synthesis, torch": fit([r["n"] for r in bigs], [r.get("torch_s", np.nan) for r in bigs]),
    }
    if len(gpu) > 1:
        fits["ChebConv forward, GPU"] = fit([r["n"] for r in gpu],
                                            [r["fwd_ms"] / r["batch"] for r in gpu])
    print("\n| nside | n | ChebConv fwd ms / sample (CPU, 1 thread) | healpy alm2map ms | "
          "torch InverseSHT ms |")
    print("|---|---|---|---|---|")
    for c, s in zip(conv, sht):
        print(f"| {c['nside']} | {c['n']:,} | {c['fwd_ms'] / c['batch']:.3g} | "
              f"{1e3 * s['healpy_s']:.3g} | "
              + (f"{1e3 * s['torch_s']:.3g}" if "torch_s" in s else "–") + " |")
    print(f"\nfitted time ~ n^q over nside >= {a.fit_min_nside}:")
    for k, q in fits.items():
        print(f"- {k}: q = {q:.2f}")
    if a.json:
        from deepsphere.io import atomic_write_text

        atomic_write_text(json.dumps(dict(conv=conv, sht=sht, gpu=gpu, fits=fits), indent=1), a.json)
    if a.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        n = np.array([r["n"] for r in conv], float)
        ax.loglog(n, [r["fwd_ms"] / r["batch"] for r in conv], "o-",
                  label=f"ChebConv K=5, 16→16, CPU (q={fits['ChebConv forward, CPU']:.2f})")
        if gpu:
            ax.loglog([r["n"] for r in gpu], [r["fwd_ms"] / r["batch"] for r in gpu], "D-",
                      label=f"ChebConv, GPU (q={fits.get('ChebConv forward, GPU', np.nan):.2f})")
        ax.loglog([r["n"] for r in sht], [1e3 * r["healpy_s"] for r in sht], "s--",
                  label=f"SHT synthesis, healpy (q={fits['SHT synthesis, healpy']:.2f})")
        ts = [r for r in sht if "torch_s" in r]
        if ts:
            ax.loglog([r["n"] for r in ts], [1e3 * r["torch_s"] for r in ts], "^:",
                      label=f"SHT synthesis, torch (q={fits['SHT synthesis, torch']:.2f})")
        ref = n / n[-1] * conv[-1]["fwd_ms"] / conv[-1]["batch"]
        ax.loglog(n, ref, color="0.6", lw=0.8, label="∝ n")
        ax.set_xlabel("vertices n (HEALPix, nside 16 … %d)" % a.max_nside)
        ax.set_ylabel("ms per sample (conv: 16 channels; SHT: 1 map)")
        ax.set_title("Cost against vertices: ChebConv layer vs one SHT, 1 CPU thread", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        from deepsphere.io import atomic_path

        with atomic_path(a.figure) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        print(f"\nfigure: {a.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
