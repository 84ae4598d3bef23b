r"""Edge weights and kernel widths.

Weights are the heat kernel of the Euclidean (chordal) distance between unit vectors,

.. math:: w_{ij} = \exp\!\left(-\frac{\|x_i - x_j\|^2}{4t}\right),

with width :math:`t`. The literature also writes :math:`w = \exp(-\ln 2\, d^2 / \sigma^2)`,
i.e. :math:`t = \sigma^2 / (4 \ln 2)`.
"""
from __future__ import annotations

import warnings
from typing import Union

import numpy as np

from .._stack import user_stacklevel

# Tuned sigma (DeepSphere v2, ICLR 2020) minimising the equivariance error of HEALPix
# k-NN graphs; rows nside, columns k.
TUNED_SIGMA = {
    32: {8: 0.02500, 20: 0.03185, 40: 0.042432},
    64: {8: 0.01228, 20: 0.01564, 40: 0.021354},
    128: {8: 0.00614, 20: 0.00782, 40: 0.010595},
    256: {8: 0.00307, 20: 0.00391, 40: 0.005551},
    512: {8: 0.00154, 20: 0.00196},
    1024: {8: 0.00077, 20: 0.00098},
}
_TABLE_K = (8, 20, 40)


def sigma_to_t(sigma: float) -> float:
    r""":math:`t = \sigma^2 / (4 \ln 2)`."""
    return float(sigma) ** 2 / (4 * np.log(2))


def t_to_sigma(t: float) -> float:
    return float(np.sqrt(4 * np.log(2) * t))


def tuned_sigma(k: int, nside: float) -> float:
    r"""Tuned width :math:`\sigma` for a k-NN graph at HEALPix resolution ``nside``.

    Values come from the published table where it has them; elsewhere :math:`\sigma` is
    scaled from the nearest tabulated nside by :math:`\sigma \propto 1/n_{side}`, and for
    ``k`` not in {8, 20, 40} interpolated log-log in ``k`` (with a warning outside
    [8, 40]; re-derive widths with :mod:`deepsphere.equivariance` for such graphs).
    ``nside`` may be fractional: for a non-HEALPix sampling with ``n`` points use the
    equivalent :math:`\sqrt{n/12}`.
    """
    if nside <= 0:
        raise ValueError(f"nside must be positive, got {nside}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ns = int(nside) if float(nside).is_integer() else None
    if ns in TUNED_SIGMA and k in TUNED_SIGMA[ns]:
        return TUNED_SIGMA[ns][k]
    # Scale the nside-32 row (complete for all k) by 1/nside.
    row = TUNED_SIGMA[32]
    if k in row:
        s32 = row[k]
    else:
        if k < _TABLE_K[0] or k > _TABLE_K[-1]:
            warnings.warn(
                f"no tuned kernel width for k={k}; extrapolating the k in [8, 40] table. "
                "Optimise the width for this graph (deepsphere.equivariance) for best results.",
                stacklevel=user_stacklevel(),
            )
        lk = np.log(np.array(_TABLE_K, dtype=float))
        ls = np.log(np.array([row[kk] for kk in _TABLE_K]))
        slope_lo = (ls[1] - ls[0]) / (lk[1] - lk[0])
        slope_hi = (ls[2] - ls[1]) / (lk[2] - lk[1])
        x = np.log(k)
        if x < lk[0]:
            y = ls[0] + slope_lo * (x - lk[0])
        elif x > lk[-1]:
            y = ls[-1] + slope_hi * (x - lk[-1])
        else:
            y = np.interp(x, lk, ls)
        s32 = float(np.exp(y))
    return s32 * 32.0 / float(nside)


def equivalent_nside(npix_full_sphere: float) -> float:
    """HEALPix nside with the same pixel density as a sampling of the full sphere."""
    return float(np.sqrt(npix_full_sphere / 12.0))


def heat_kernel(d2: np.ndarray, t: float) -> np.ndarray:
    """:math:`\\exp(-d^2 / 4t)` for squared distances ``d2``."""
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"kernel width t must be a positive finite number, got {t}")
    return np.exp(-d2 / (4.0 * t))


def heuristic_t(d2: np.ndarray) -> float:
    r"""DeepSphere v1 width :math:`t = \overline{d^2} / 2` (mean over edges), so that
    :math:`w = \exp(-d^2 / 2\overline{d^2})`."""
    return float(np.mean(d2)) / 2.0


KernelWidth = Union[str, float]
