"""Equiangular (iso-latitude) grids by bandwidth: Driscoll–Healy, SOFT, Clenshaw–Curtis,
Gauss–Legendre, with exact quadrature weights."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .base import Sampling

KINDS = ("DH", "SOFT", "CC", "GL")


def colatitudes(bandwidth: int, kind: str) -> np.ndarray:
    r"""Colatitudes :math:`\theta_j` of the grid rings.

    - ``DH`` (Driscoll–Healy): :math:`2b` rings, :math:`\theta_j = \pi j / 2b`, north pole included.
    - ``SOFT``: :math:`2b` rings, :math:`\theta_j = \pi (2j+1) / 4b`, no pole.
    - ``CC`` (Clenshaw–Curtis): :math:`2b+1` rings, :math:`\theta_j = \pi j / 2b`, both poles.
    - ``GL`` (Gauss–Legendre): :math:`b+1` rings at the roots of :math:`P_{b+1}(\cos\theta)`.
    """
    b = bandwidth
    if kind == "DH":
        return np.pi * np.arange(2 * b) / (2 * b)
    if kind == "SOFT":
        return np.pi * (2 * np.arange(2 * b) + 1) / (4 * b)
    if kind == "CC":
        return np.pi * np.arange(2 * b + 1) / (2 * b)
    if kind == "GL":
        x, _ = np.polynomial.legendre.leggauss(b + 1)
        return np.arccos(x[::-1])  # north to south
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


@lru_cache(maxsize=32)
def _ring_weights(bandwidth: int, kind: str) -> np.ndarray:
    theta = colatitudes(bandwidth, kind)
    if kind == "GL":
        _, w = np.polynomial.legendre.leggauss(bandwidth + 1)
        return w[::-1].copy()
    # Interpolatory quadrature on the rings: the unique weights that integrate
    # T_m(cos θ) = cos(mθ) exactly over [-1, 1] for m < number of rings. For DH and SOFT
    # this is the Driscoll–Healy / SOFT quadrature; for CC, Clenshaw–Curtis.
    n = len(theta)
    m = np.arange(n)
    A = np.cos(np.outer(m, theta))
    rhs = np.zeros(n)
    even = m % 2 == 0
    rhs[even] = 2.0 / (1.0 - m[even].astype(float) ** 2)
    w = np.linalg.solve(A, rhs)
    if kind == "DH":
        # the DH closed form, (2/b) sin(θ_j) Σ_l sin((2l+1)θ_j)/(2l+1), vanishes at the
        # pole ring; the solve leaves ~1e-16 of either sign there
        w[0] = 0.0
    # These weights are non-negative in exact arithmetic; clip round-off so that areas
    # are never negative.
    return np.clip(w, 0.0, None)


class Equiangular(Sampling):
    r"""Equiangular grid of bandwidth :math:`b`: rings of constant colatitude (see
    :func:`colatitudes`), each with :math:`2b` equispaced longitudes :math:`\phi_k = 2\pi k/2b`.

    Pixels are stored ring-major: pixel ``j * nlon + k`` is at :math:`(\theta_j, \phi_k)`.
    :attr:`areas` are exact quadrature weights: :math:`\sum_i w_i f(x_i) = \int_{S^2} f`
    for every polynomial of degree below ``nlat`` in :math:`\cos\theta` times a trigonometric
    polynomial of degree below ``nlon`` in :math:`\phi` (so spherical harmonics products of
    degree :math:`< b` are integrated exactly).

    DH and SOFT grids are hierarchical: :meth:`coarsen` halves the bandwidth and each
    coarse pixel is the parent of a 2×2 block (pooling by 4).
    """

    def __init__(self, bandwidth: int, kind: str = "DH"):
        if (isinstance(bandwidth, (bool, np.bool_)) or not isinstance(bandwidth, (int, np.integer))
                or bandwidth < 1):  # a boolean would pass as bandwidth 1
            raise ValueError(f"bandwidth must be a positive integer, got {bandwidth!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.bandwidth = int(bandwidth)
        self.kind = kind
        self.hierarchical = kind in ("DH", "SOFT") and self.bandwidth % 2 == 0
        self._vectors = None

    @property
    def nlat(self) -> int:
        return len(self.theta_rings)

    @property
    def nlon(self) -> int:
        return 2 * self.bandwidth

    @property
    def npix(self) -> int:
        return self.nlat * self.nlon

    @property
    def theta_rings(self) -> np.ndarray:
        return colatitudes(self.bandwidth, self.kind)

    @property
    def phi_rings(self) -> np.ndarray:
        return 2 * np.pi * np.arange(self.nlon) / self.nlon

    @property
    def ring_weights(self) -> np.ndarray:
        """Quadrature weights in :math:`\\cos\\theta`, shape ``(nlat,)``, summing to 2.

        Non-negative: DH's north-pole ring has weight exactly 0 (its :math:`2b` pixels are one
        point), and round-off below 0 is clipped."""
        return _ring_weights(self.bandwidth, self.kind).copy()  # the cache stays intact

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            t, p = np.meshgrid(self.theta_rings, self.phi_rings, indexing="ij")
            t, p = t.ravel(), p.ravel()
            self._vectors = np.stack(
                [np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=1
            )
        return self._vectors

    @property
    def theta(self) -> np.ndarray:
        return np.repeat(self.theta_rings, self.nlon)

    @property
    def phi(self) -> np.ndarray:
        return np.tile(self.phi_rings, self.nlat)

    @property
    def areas(self) -> np.ndarray:
        return np.repeat(self.ring_weights * (2 * np.pi / self.nlon), self.nlon)

    def to_grid(self, x: np.ndarray) -> np.ndarray:
        """Reshape ``(..., npix)`` to ``(..., nlat, nlon)``."""
        return np.asarray(x).reshape(*np.shape(x)[:-1], self.nlat, self.nlon)

    def coarsen(self) -> "Equiangular":
        if not self.hierarchical:
            raise ValueError(
                f"Equiangular(kind={self.kind!r}, bandwidth={self.bandwidth}) cannot be pooled: "
                "2x2 pooling needs a DH or SOFT grid with an even bandwidth"
            )
        return Equiangular(self.bandwidth // 2, self.kind)

    def parent_index(self) -> np.ndarray:
        self.coarsen()
        j, k = np.divmod(np.arange(self.npix), self.nlon)
        return ((j // 2) * (self.nlon // 2) + k // 2).astype(np.int64)

    def recipe(self) -> dict:
        return {"name": "equiangular", "bandwidth": self.bandwidth, "kind": self.kind}

    def __repr__(self) -> str:
        return f"Equiangular(bandwidth={self.bandwidth}, kind={self.kind!r}, {self.nlat}x{self.nlon})"
