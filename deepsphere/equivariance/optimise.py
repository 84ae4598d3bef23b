r"""Kernel width that minimises the equivariance error of a graph.

For a sampling and a graph builder (k-NN with ``k`` neighbours by default), find the width
:math:`t` of :math:`w = \exp(-d^2/4t)` minimising the mean over degrees of :math:`E(\ell)`
(:func:`~deepsphere.equivariance.equivariance_error`). The objective is smooth and unimodal in
:math:`\log t` (too narrow: the graph degenerates to nearest neighbours; too wide: it blurs), so
a bounded scalar (Brent / golden-section) search in :math:`\log t` with a few signals converges
in 10-20 evaluations. Signals and rotations are fixed by the seed (common random numbers), so
the objective is a deterministic function of :math:`t`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from ..graph import equivalent_nside, knn, sigma_to_t, t_to_sigma, tuned_sigma
from ..sampling import Sampling
from .measure import equivariance_error
from .rotation import band_limit, exact_rotation_available


@dataclass
class KernelWidthResult:
    t: float
    sigma: float
    error: float
    history: list = field(default_factory=list)   #: (t, mean error) per evaluation

    @property
    def n_evaluations(self) -> int:
        return len(self.history)


def default_degrees(sampling: Sampling, num: int = 9) -> list:
    r"""The published grid :math:`\ell = 10, 20, \dots, 90` at :math:`n_{side} = 32`, scaled to the
    sampling's equivalent :math:`n_{side}` and clipped below its band limit (``3 nside - 1``;
    ``bandwidth - 1`` on equiangular grids, whose equivalent nside overstates it)."""
    ns = equivalent_nside(sampling)
    d = np.unique(np.round(np.linspace(10, 90, num) * ns / 32).astype(int))
    limit = band_limit(sampling) if exact_rotation_available(sampling) else int(3 * ns) - 1
    return [int(x) for x in d if 1 <= x <= limit]


def optimise_kernel_width(sampling: Sampling, k: int = 8, degrees: Optional[Sequence[int]] = None,
                          laplacian: str = "normalized", n_signals: int = 2, n_rotations: int = 1,
                          seed: int = 0, bounds: Sequence[float] = (0.2, 5.0), xatol: float = 0.01,
                          builder: Optional[Callable] = None, threads: Optional[int] = 1
                          ) -> KernelWidthResult:
    r"""Width :math:`t` minimising :math:`\operatorname{mean}_\ell E(\ell)`.

    Parameters
    ----------
    sampling : Sampling
    k : int
        Neighbours of the k-NN graph (ignored when ``builder`` is given).
    degrees : sequence of int, optional
        Degrees averaged; default :func:`default_degrees`.
    n_signals, n_rotations, seed
        Test signals per degree and rotations (fixed by ``seed`` for every :math:`t`).
    bounds : (float, float)
        Search interval as multiples of the start width (the tuned width for ``k``).
    xatol : float
        Tolerance on :math:`\log t` (0.01: 1 % in :math:`t`, 0.5 % in :math:`\sigma`).
    builder : callable ``(sampling, t) -> SphereGraph or matrix``, optional
        Another graph family to tune.
    """
    from scipy.optimize import minimize_scalar

    lo_f, hi_f = (float(b) for b in bounds)
    if not (0 < lo_f < hi_f < np.inf):
        raise ValueError(f"bounds must be two multiples 0 < low < high of the start width, got {tuple(bounds)}")
    degrees = default_degrees(sampling) if degrees is None else list(degrees)
    with warnings.catch_warnings():  # outside the table only the starting point is extrapolated
        warnings.simplefilter("ignore")
        t0 = sigma_to_t(tuned_sigma(k, equivalent_nside(sampling)))
    build = builder or (lambda s, t: knn(s, k=k, kernel_width=t))
    history = []

    def objective(logt: float) -> float:
        t = float(np.exp(logt))
        g = build(sampling, t)
        e = equivariance_error(g, sampling, degrees, n_signals, n_rotations, seed,
                               laplacian=laplacian, threads=threads).overall()
        history.append((t, e))
        return e

    lo, hi = np.log(t0 * lo_f), np.log(t0 * hi_f)
    res = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": xatol})
    t = float(np.exp(res.x))
    if min(abs(res.x - lo), abs(res.x - hi)) < 2 * xatol:
        warnings.warn(f"optimal width t={t:.3g} is at the edge of the search interval; widen bounds",
                      stacklevel=2)
    return KernelWidthResult(t=t, sigma=t_to_sigma(t), error=float(res.fun), history=history)
