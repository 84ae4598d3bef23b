#!/usr/bin/env python
"""Measurements of the spectral branch (deepsphere.spectral), printed as markdown tables.

    python scripts/benchmark_spectral.py accuracy       # HEALPix analysis error per (nside, lmax, iter)
    python scripts/benchmark_spectral.py equivariance   # layers and nonlinearities, float32/float64
    python scripts/benchmark_spectral.py timing [--max-nside 128] [--batch 4] [--figure PATH]
    python scripts/benchmark_spectral.py convolutions [--batch 4]   # S2Conv / SO3Conv vs lmax
    python scripts/benchmark_spectral.py all

Timings compare against healpy's map2alm / alm2map in the same process (ratios, not absolute
numbers, are the point) and fit the scaling exponent of time versus lmax.
"""
from __future__ import annotations

import argparse
import os
import sys

# Threads must be fixed before torch/healpy start their OpenMP pools: --threads N (default 1,
# a fair single-core comparison that is also robust on a shared machine).
def _threads_from_argv(argv) -> str:
    """The value of --threads N or --threads=N (argparse checks it later; '1' if absent or
    malformed, so that argparse, not an IndexError, reports the mistake)."""
    for i, a in enumerate(argv):
        if a.startswith("--threads="):
            return a.split("=", 1)[1] or "1"
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
    return "1"


_threads = _threads_from_argv(sys.argv[1:])
os.environ["OMP_NUM_THREADS"] = _threads if _threads.isdigit() and int(_threads) > 0 else "1"

import healpy as hp
import numpy as np
import torch

from deepsphere.benchmark_scale import wall_times
from deepsphere.cli import nside_arg, positive_int
from deepsphere.sampling import Equiangular, HEALPix
from deepsphere.spectral import (SHT, InverseSHT, from_healpy_alm, num_coefficients,
                                 random_rotation, rotate_coefficients, to_healpy_alm)


def _random_alm(lmax, rng, batch=None):
    n = hp.Alm.getsize(lmax)
    shape = (n,) if batch is None else (batch, n)
    alm = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    alm[..., : lmax + 1] = alm[..., : lmax + 1].real
    return alm


def accuracy(nsides=(8, 16, 32, 64), iters=(0, 1, 3, 10)):
    """Relative error ||A S c - c|| / ||c|| of HEALPix analysis on band-limited signals."""
    rng = np.random.default_rng(0)
    print("| nside | lmax | " + " | ".join(f"jacobi iter={k}" for k in iters)
          + " | least squares (<= 100 CG steps) | vs healpy (iter=3) |")
    print("|---|---|" + "---|" * len(iters) + "---|---|")
    for nside in nsides:
        s = HEALPix(nside)
        for lmax in (nside, 2 * nside, 3 * nside - 1):
            alm = _random_alm(lmax, rng)
            c = from_healpy_alm(alm, lmax)
            x = InverseSHT(s, lmax)(c)
            errs = [((SHT(s, lmax, k)(x) - c).norm() / c.norm()).item() for k in iters]
            errs.append(((SHT(s, lmax, 100, method="lsq")(x) - c).norm() / c.norm()).item())
            ours = to_healpy_alm(SHT(s, lmax, 3)(x), lmax).numpy()
            ref = hp.map2alm(hp.reorder(x.numpy(), n2r=True), lmax=lmax, iter=3, use_pixel_weights=False)
            d = np.abs(ours - ref).max() / np.abs(ref).max()
            print(f"| {nside} | {lmax} | " + " | ".join(f"{e:.1e}" for e in errs) + f" | {d:.0e} |")


def equivariance():
    """Relative equivariance errors with rotations done in harmonic space (mean of 3 rotations)."""
    from deepsphere.spectral import (GatedNonlinearity, NormNonlinearity, QuadraticNonlinearity,
                                     S2Conv, S2GridNonlinearity, SO3Conv, SO3GridNonlinearity,
                                     SO3ToS2, TensorProduct, ZonalFilter, equivariance_error)
    from deepsphere.spectral.models import SpectralClassifier
    from deepsphere.spectral.so3 import rotate_so3_coefficients, so3_size

    rng = np.random.default_rng(0)
    rots = [random_rotation(rng) for _ in range(3)]
    rows = []

    def mean_err(op, x, kind="s2"):
        return float(np.mean([equivariance_error(op, x, R, kind) for R in rots]))

    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(0)
        L = 8
        x = torch.randn(4, 3, num_coefficients(L), dtype=dtype)
        g = torch.randn(4, 3, so3_size(L), dtype=dtype)
        name = str(dtype).replace("torch.", "")
        rows.append(("ZonalFilter", L, name, mean_err(ZonalFilter(3, 3, L).to(dtype), x)))
        s2 = S2Conv(3, 3, L).to(dtype)

        def s2op(t, R=None):
            return s2(t)

        errs = []
        for R in rots:
            with torch.no_grad():
                y = s2(x)
                errs.append(((s2(rotate_coefficients(x, R)) - rotate_so3_coefficients(y, R)).norm() / y.norm()).item())
        rows.append(("S2Conv", L, name, float(np.mean(errs))))
        rows.append(("SO3Conv", L, name, mean_err(SO3Conv(3, 3, L).to(dtype), g, "so3")))
        errs = []
        for R in rots:
            with torch.no_grad():
                y = SO3ToS2(L)(g)
                errs.append(((SO3ToS2(L)(rotate_so3_coefficients(g, R)) - rotate_coefficients(y, R)).norm() / y.norm()).item())
        rows.append(("SO3ToS2", L, name, float(np.mean(errs))))
        rows.append(("NormNonlinearity", L, name, mean_err(NormNonlinearity(3, L).to(dtype), x)))
        rows.append(("GatedNonlinearity", L, name, mean_err(GatedNonlinearity(L), x)))
        rows.append(("QuadraticNonlinearity (CG)", L, name, mean_err(QuadraticNonlinearity(L), x)))
        rows.append(("TensorProduct (CG, 3 -> 3 channels)", L, name, mean_err(TensorProduct(3, 3, L).to(dtype), x)))
    x = torch.randn(4, 3, num_coefficients(16), dtype=torch.float64)
    for L in (8, 16):
        xl = x[..., : num_coefficients(L)]
        for o in (1, 2, 4, 8):
            rows.append((f"S2GridNonlinearity relu, GL grid b={int(o * (L + 1))} ({o}x)", L, "float64",
                         mean_err(S2GridNonlinearity(L, oversampling=o), xl)))
    for L in (4, 8):
        g = torch.randn(2, 3, so3_size(L), dtype=torch.float64)
        for o in (1, 2, 3):
            rows.append((f"SO3GridNonlinearity relu ({o}x)", L, "float64",
                         mean_err(SO3GridNonlinearity(L, oversampling=o), g, "so3")))
    # whole classifier (invariance of logits) on a DH grid, band-limited input
    s = Equiangular(8, "DH")
    syn = InverseSHT(s, 7)
    c = torch.randn(4, 1, num_coefficients(7), dtype=torch.float64)
    for o in (1, 2, 3):
        torch.manual_seed(0)
        model = SpectralClassifier(s, 1, 10, channels=(8, 8), lmax=4, oversampling=o).double()
        errs = []
        with torch.no_grad():
            y = model(syn(c).transpose(1, 2))
            for R in rots:
                yr = model(syn(rotate_coefficients(c, R)).transpose(1, 2))
                errs.append(((yr - y).norm() / y.norm()).item())
        rows.append((f"SpectralClassifier logits (invariance), SO(3) grid {o}x", 4, "float64", float(np.mean(errs))))
    print("| operator | lmax | dtype | rel. equivariance error |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1e} |")


def _time(fn, repeat=5):
    return min(wall_times(fn, repeat))  # the minimum is the least disturbed by other load


def timing(max_nside=128, batch=4, figure=None):
    """Seconds per map for synthesis and analysis (iter=0) vs healpy, HEALPix lmax = 2 nside."""
    rng = np.random.default_rng(0)
    torch.set_num_threads(int(_threads))
    rows = []
    nside = 16
    while nside <= max_nside:
        lmax = 2 * nside
        s = HEALPix(nside)
        alm = _random_alm(lmax, rng, batch)
        c = from_healpy_alm(alm, lmax)
        syn, ana = InverseSHT(s, lmax), SHT(s, lmax, iterations=0)
        x = syn(c)
        maps = hp.reorder(x.numpy(), n2r=True)
        with torch.no_grad():
            t_syn = _time(lambda: syn(c)) / batch
            t_ana = _time(lambda: ana(x)) / batch
            c32 = c.float()
            x32 = x.float()
            t_syn32 = _time(lambda: syn(c32)) / batch
            t_ana32 = _time(lambda: ana(x32)) / batch
        try:
            dsyn, dana = InverseSHT(s, lmax, backend="ducc"), SHT(s, lmax, 0, backend="ducc")
            with torch.no_grad():
                d_syn, d_ana = _time(lambda: dsyn(c)) / batch, _time(lambda: dana(x)) / batch
        except ImportError:
            d_syn = d_ana = float("nan")
        h_syn = _time(lambda: [hp.alm2map(a, nside, lmax=lmax) for a in alm]) / batch
        h_ana = _time(lambda: [hp.map2alm(m, lmax=lmax, iter=0, use_pixel_weights=False) for m in maps]) / batch
        rows.append((nside, lmax, t_syn, t_ana, t_syn32, t_ana32, h_syn, h_ana, d_syn, d_ana))
        nside *= 2
    print(f"batch of {batch} maps, seconds per map (best of 5), threads = {torch.get_num_threads()}")
    print("| nside | lmax | synthesis f64 | analysis f64 | synthesis f32 | analysis f32 | healpy alm2map | healpy map2alm | ducc backend syn | ducc backend ana | ratio syn f64 / healpy | ratio ana f64 / healpy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | " + " | ".join(f"{v:.2e}" for v in r[2:]) + f" | {r[2] / r[6]:.1f} | {r[3] / r[7]:.1f} |")
    arr = np.array(rows)
    fit = arr[1:] if len(arr) > 2 else arr  # the smallest size is overhead-dominated
    names = ["synthesis f64", "analysis f64", "synthesis f32", "analysis f32", "healpy alm2map", "healpy map2alm",
             "ducc backend synthesis f64", "ducc backend analysis f64"]
    print("\nfitted exponents (sizes above the smallest): time ~ lmax^p ~ npix^q; a transform "
          "with O(L^3) operations has p = 3, q = 1.5")
    for k, n in enumerate(names):
        if not np.all(np.isfinite(fit[:, 2 + k])):
            continue
        p = np.polyfit(np.log(fit[:, 1]), np.log(fit[:, 2 + k]), 1)[0]
        q = np.polyfit(np.log(12 * fit[:, 0] ** 2), np.log(fit[:, 2 + k]), 1)[0]
        print(f"- {n}: time ~ lmax^{p:.2f} ~ npix^{q:.2f}")
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k, n in enumerate(names):
            if np.all(np.isfinite(arr[:, 2 + k])):
                ax.loglog(arr[:, 1], arr[:, 2 + k], "s--" if "healpy" in n else ("^:" if "ducc" in n else "o-"), label=n)
        ax.set_xlabel("lmax (= 2 nside)")
        ax.set_ylabel("seconds per map")
        ax.set_title("HEALPix SHT, one CPU thread")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(figure, dpi=120)
        print(f"\nfigure: {figure}")


def convolutions(batch=4, lmaxes=(4, 8, 12, 16, 24), channels=8):
    """Forward+backward time and memory of S2Conv and SO3Conv versus lmax (float32)."""
    from deepsphere.spectral.so3 import S2Conv, SO3Conv, so3_size

    print(f"\nS2Conv {channels}->{channels} and SO3Conv {channels}->{channels}, batch {batch}, "
          "float32, forward+backward, best of 5 (s); parameters; activation size (MB)\n")
    print("| lmax | S2 coeffs | SO(3) coeffs | S2Conv f+b s | SO3Conv f+b s | SO(3) activation MB "
          "| S2Conv params | SO3Conv params |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for L in lmaxes:
        s2 = S2Conv(channels, channels, L)
        so3 = SO3Conv(channels, channels, L)
        x = torch.randn(batch, channels, num_coefficients(L), requires_grad=True)
        f = torch.randn(batch, channels, so3_size(L), requires_grad=True)

        def step_s2():
            s2(x).square().sum().backward()

        def step_so3():
            so3(f).square().sum().backward()

        t2, t3 = _time(step_s2), _time(step_so3)
        act = batch * channels * so3_size(L) * 4 / 2**20
        rows.append((L, t2, t3))
        print(f"| {L} | {num_coefficients(L)} | {so3_size(L)} | {t2:.2e} | {t3:.2e} | {act:.2f} | "
              f"{sum(p.numel() for p in s2.parameters())} | {sum(p.numel() for p in so3.parameters())} |")
    Ls = np.array([r[0] for r in rows], dtype=float)
    for name, col in (("S2Conv", 1), ("SO3Conv", 2)):
        q = np.polyfit(np.log(Ls[1:]), np.log([r[col] for r in rows][1:]), 1)[0]
        print(f"\n{name}: time ~ lmax^{q:.2f} (lmax {int(Ls[1])}-{int(Ls[-1])}; SO(3) coefficients grow as lmax^3)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["accuracy", "equivariance", "timing", "convolutions", "all"])
    p.add_argument("--max-nside", type=nside_arg, default=128,
                   help="timing: largest nside (16, 32, ... up to it)")
    p.add_argument("--batch", type=positive_int, default=4, help="maps per transform")
    p.add_argument("--figure", default=None, help="save the timing plot here (PNG)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="OpenMP/torch threads for both libraries")
    a = p.parse_args(argv)
    if a.what in ("timing", "all") and a.max_nside < 16:
        p.error(f"--max-nside {a.max_nside}: timing starts at nside 16; give 16 or more")
    if a.what in ("accuracy", "all"):
        accuracy()
    if a.what in ("equivariance", "all"):
        equivariance()
    if a.what in ("timing", "all"):
        timing(a.max_nside, a.batch, a.figure)
    if a.what in ("convolutions", "all"):
        convolutions(a.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
