"""``deepsphere demo``: the whole pipeline in one minute on a laptop.

1. sample the sphere (HEALPix, NESTED) and build a k-NN graph with tuned widths;
2. filter white noise with a Chebyshev expansion of the graph heat kernel and measure,
   with healpy's spherical harmonic transform, how much power it keeps per degree;
3. train a small spherical CNN to tell two kinds of random fields apart and print its
   test accuracy.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

import numpy as np


# The demo holds its 650 maps in memory and trains 6 epochs over 400 of them. Measured on
# 2 CPU cores: nside 64 takes ~1 GB and ~4 minutes, nside 128 ~2.3 GB and ~15 minutes; every
# doubling of nside costs 4x the memory and 4-9x the time (nside 256: ~1 hour), and at
# nside 8192 the maps alone would take 2 TB.
MAX_DEMO_NSIDE = 128


def _nside_problem(nside: int) -> Optional[str]:
    """Why a valid HEALPix ``nside`` is out of the demo's range, or None."""
    if nside < 4:
        return (f"must be at least 4: the demo's classifier pools twice (by 4 each), "
                f"got {nside}")
    if nside > MAX_DEMO_NSIDE:
        return (f"at most {MAX_DEMO_NSIDE}, got {nside}: the demo keeps 650 maps in memory "
                f"and trains on them for minutes (nside 128: ~2.3 GB, ~15 min; each doubling "
                f"costs at least 4x the memory and time). For larger maps train from a config with "
                f"'deepsphere train'.")
    return None


def demo_nside(text: str) -> int:
    """argparse ``type`` of ``--nside``: a HEALPix nside in [4, MAX_DEMO_NSIDE]."""
    from .cli import nside_arg

    nside = nside_arg(text)
    problem = _nside_problem(nside)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return nside


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nside", type=demo_nside, default=16,
                        help=f"HEALPix resolution, a power of two from 4 to {MAX_DEMO_NSIDE} "
                             "(default 16)")
    parser.add_argument("--k", type=int, default=8, help="neighbours per vertex (default 8)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random maps and of the weights, >= 0 (default 0)")


def heat_filter_demo(nside: int, k: int, seed: int, a: float = 4.0, K: int = 20):
    r"""Low-pass white noise with the graph heat kernel :math:`e^{-\tau L}` expanded in
    Chebyshev polynomials of :math:`\tilde L = 2L/\lambda_{max} - I`:
    :math:`e^{-a(\tilde L + 1)} = \sum_k c_k T_k(\tilde L)`,
    :math:`c_k = (2 - \delta_{k0})\, e^{-a} (-1)^k I_k(a)` (Jacobi–Anger).

    Returns the fraction of power kept at degrees 1, nside and 2·nside (healpy's
    map2alm as the independent measure): a low-pass keeps large scales only.
    """
    import healpy as hp
    import torch
    from scipy.special import iv

    from . import graph, sampling

    s = sampling.HEALPix(nside)
    g = graph.knn(s, k=k, kernel_width="tuned")
    L = g.chebyshev_operator("normalized", dtype=torch.float64)
    m = np.random.default_rng(seed).standard_normal(s.npix)
    c = [(1 if j == 0 else 2) * np.exp(-a) * (-1) ** j * iv(j, a) for j in range(K)]
    t0 = torch.from_numpy(m)[:, None]
    t1 = torch.sparse.mm(L, t0)
    y = c[0] * t0 + c[1] * t1
    for j in range(2, K):
        t0, t1 = t1, 2 * torch.sparse.mm(L, t1) - t0
        y = y + c[j] * t1
    lmax = 3 * nside - 1
    cl_in = hp.anafast(hp.reorder(m, n2r=True), lmax=lmax, use_pixel_weights=False)
    cl_out = hp.anafast(hp.reorder(y[:, 0].numpy(), n2r=True), lmax=lmax, use_pixel_weights=False)
    kept = cl_out / cl_in
    return float(kept[1]), float(kept[nside]), float(kept[2 * nside])


def run(args: argparse.Namespace) -> int:
    from . import sampling

    try:  # a bad --nside or --k: the library's message, not a traceback
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
        if args.seed < 0:  # numpy's own words: "expected non-negative integer"
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        sampling.check_nside(args.nside)
        problem = _nside_problem(args.nside)  # for callers that skip the parser
        if problem:
            raise ValueError(f"--nside {problem}")
        return _run(args)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from . import models, sampling
    from .data.synthetic import SyntheticFields

    torch.manual_seed(args.seed)
    t = time.time()
    r1, rn, r2n = heat_filter_demo(args.nside, args.k, args.seed)
    print(f"[1] graph heat filter on HEALPix nside={args.nside}, k={args.k}: power kept at "
          f"ell=1: {r1:.3f}, ell={args.nside}: {rn:.3f}, ell={2 * args.nside}: {r2n:.3f} "
          f"(a low-pass, {time.time() - t:.1f}s)")

    s = sampling.HEALPix(args.nside)
    data = SyntheticFields(s, n_train=400, n_val=50, n_test=200, seed=args.seed)
    model = models.SphericalCNN(s, in_channels=1, n_classes=2, channels=[16, 32], K=5,
                                graph={"kind": "knn", "k": args.k, "kernel_width": "tuned"})
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    train = torch.utils.data.DataLoader(data.split("train"), batch_size=16, shuffle=True)
    test = torch.utils.data.DataLoader(data.split("test"), batch_size=64)
    t = time.time()
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        print(f"[2] epoch {epoch + 1}/{args.epochs}: last batch loss {loss.item():.3f}")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    print(f"[3] test accuracy {correct / total:.1%} on {total} maps "
          f"({sum(p.numel() for p in model.parameters())} parameters, {time.time() - t:.1f}s)")
    return 0
