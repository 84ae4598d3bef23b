r"""Normalised associated Legendre functions by a stable three-term recursion (float64).

We tabulate

.. math::

    \lambda_{\ell m}(\theta) = (-1)^m \sqrt{\frac{2\ell+1}{4\pi}\frac{(\ell-m)!}{(\ell+m)!}}
    P_\ell^m(\cos\theta), \qquad m \ge 0,

so that :math:`Y_{\ell m}(\theta, \phi) = \lambda_{\ell m}(\theta)\, e^{i m \phi}` are the
orthonormal complex spherical harmonics with the Condon–Shortley phase (healpy's and
Wikipedia's convention). The recursion runs upward in :math:`\ell` at fixed :math:`m`:

.. math::

    \lambda_{mm} &= (-1)^m \sqrt{\tfrac{2m+1}{4\pi}\textstyle\prod_{k=1}^m \tfrac{2k-1}{2k}}\,
    \sin^m\theta, \\
    \lambda_{m+1,m} &= \sqrt{2m+3}\,\cos\theta\,\lambda_{mm}, \\
    \lambda_{\ell m} &= a_{\ell m}\bigl(\cos\theta\,\lambda_{\ell-1,m}
    - \lambda_{\ell-2,m} / a_{\ell-1,m}\bigr), \quad
    a_{\ell m} = \sqrt{\tfrac{4\ell^2-1}{\ell^2-m^2}}.

This recursion is forward-stable for normalised functions. The seed
:math:`\lambda_{mm}\propto\sin^m\theta` underflows near the poles for large :math:`m`; we run
the recursion on a rescaled value and carry the (log) scale separately, so entries are exact
wherever they are representable (they are flushed to zero only when truly below ~1e-300).
"""
from __future__ import annotations

import numpy as np

_RESCALE = 1e150


def legendre_table(lmax: int, theta: np.ndarray, mmax: int | None = None) -> np.ndarray:
    r"""Table of :math:`\lambda_{\ell m}(\theta_r)`, float64 array of shape
    ``(mmax + 1, lmax + 1, len(theta))`` indexed ``[m, l, r]``; zero where :math:`\ell < m`.

    Parameters
    ----------
    lmax : int
        Largest degree.
    theta : array, shape ``(R,)``
        Colatitudes in radians, in :math:`[0, \pi]`.
    mmax : int, optional
        Largest order (default ``lmax``).
    """
    lmax = int(lmax)
    mmax = lmax if mmax is None else int(mmax)
    if lmax < 0 or not 0 <= mmax <= lmax:
        raise ValueError(f"need 0 <= mmax <= lmax, got lmax={lmax}, mmax={mmax}")
    theta = np.asarray(theta, dtype=np.float64).ravel()
    x = np.cos(theta)[None, :]
    s = np.sin(theta)
    m = np.arange(mmax + 1, dtype=np.float64)[:, None]
    # log |lambda_mm| = 0.5 log((2m+1)/4pi) + 0.5 sum_k log((2k-1)/2k) + m log sin(theta)
    k = np.arange(1, mmax + 1, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.log((2 * k - 1) / (2 * k)))])[:, None]
    logsin = np.log(np.maximum(np.abs(s), 1e-300))[None, :]
    logscale = 0.5 * np.log((2 * m + 1) / (4 * np.pi)) + 0.5 * cum + m * logsin
    logscale = np.where((m > 0) & (s[None, :] == 0), -np.inf, logscale)  # exact poles
    sign = np.where(np.arange(mmax + 1) % 2 == 0, 1.0, -1.0)[:, None]

    out = np.zeros((mmax + 1, lmax + 1, theta.size))
    prev = np.zeros((mmax + 1, theta.size))  # scaled lambda_{l-2, m}
    cur = np.broadcast_to(sign, (mmax + 1, theta.size)).copy()  # scaled lambda_{l-1, m}; seed at l = m
    a_prev = np.zeros((mmax + 1, 1))
    mf = m[:, 0]
    for l in range(0, lmax + 1):
        # rows m < l advance by the recursion; row m == l holds its seed; rows m > l are zero
        k = min(l, mmax + 1)
        if k > 0:
            lf = float(l)
            a = np.sqrt((4 * lf * lf - 1) / (lf * lf - mf[:k] ** 2))[:, None]
            ap = a_prev[:k]
            inv_ap = np.divide(1.0, ap, out=np.zeros_like(ap), where=ap > 0)
            new = a * (x * cur[:k] - prev[:k] * inv_ap)
            prev[:k] = cur[:k]
            cur[:k] = new
            a_prev[:k] = a
            big = np.abs(new) > _RESCALE  # keep the scaled values representable
            if big.any():
                rows, cols = np.nonzero(big)
                cur[rows, cols] /= _RESCALE
                prev[rows, cols] /= _RESCALE
                logscale[rows, cols] += np.log(_RESCALE)
        r = min(l + 1, mmax + 1)
        with np.errstate(under="ignore"):
            out[:r, l, :] = cur[:r] * np.exp(logscale[:r])
    return out
