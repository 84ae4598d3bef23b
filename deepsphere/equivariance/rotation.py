r"""Rotations of sampled signals: :math:`(\Lambda_R f)(x) = f(R^{-1}x)`.

- :func:`rotate_signal` is exact for band-limited signals on iso-latitude samplings (full-sky
  HEALPix, equiangular grids): analysis, rotation of the coefficients, synthesis on the same
  points, :math:`R_V = T R T^{-1}` (DeepSphere, ICLR 2020, eq. 10). On HEALPix the analysis is
  healpy's iterative quadrature, exact only in the limit of iterations (see
  :class:`~deepsphere.equivariance.harmonics.DegreeSpace` for an exact projection).
- :func:`rotate_interpolated` works on any point set (stations, partial skies) by linear
  interpolation on the spherical Delaunay triangulation of the points. It is **approximate**:
  its error is :math:`O(h^2 \ell^2)` for a signal of degree :math:`\ell` on points spaced by
  :math:`h`, so it is only meaningful well below the sampling's resolution.

Rotations are ``(3, 3)`` matrices :math:`R` (:func:`random_rotations` draws them uniformly, i.e.
from the Haar measure, with a seed); :func:`deepsphere.spectral.matrix_to_euler` gives the ZYZ
angles.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from ..sampling import Equiangular, HEALPix, Sampling
from .harmonics import nested_to_ring, ring_to_nested


def random_rotations(n: int, seed=0) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices drawn from the Haar (uniform) measure on SO(3).

    ``seed`` is an int or a :class:`numpy.random.Generator`."""
    from scipy.spatial.transform import Rotation

    if int(n) != n or n < 1:
        raise ValueError(f"number of rotations must be a positive integer, got {n!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return Rotation.random(int(n), random_state=rng).as_matrix()


def _check_rotation(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or np.abs(R @ R.T - np.eye(3)).max() > 1e-8 or np.linalg.det(R) < 0:
        raise ValueError("rotation must be a (3, 3) orthogonal matrix with determinant +1")
    return R


def exact_rotation_available(sampling: Sampling) -> bool:
    """Whether :func:`rotate_signal` is exact (harmonic) on this sampling."""
    return (isinstance(sampling, HEALPix) and sampling.full_sky) or isinstance(sampling, Equiangular)


def band_limit(sampling: Sampling) -> int:
    """Band limit of the harmonic rotation: ``3 nside - 1`` (HEALPix), ``b - 1`` (equiangular)."""
    if isinstance(sampling, HEALPix):
        return 3 * sampling.nside - 1
    if isinstance(sampling, Equiangular):
        return sampling.bandwidth - 1
    raise TypeError(f"{type(sampling).__name__} has no harmonic band limit; use rotate_interpolated")


def rotate_signal(x: np.ndarray, sampling: Sampling, rotation, lmax: Optional[int] = None,
                  iterations: int = 3) -> np.ndarray:
    r"""Rotate signals ``(..., npix)`` on an iso-latitude sampling in harmonic space.

    :math:`x \mapsto T\, D(R)\, T^{-1} x` with :math:`T^{-1}` the analysis up to ``lmax``
    (default :func:`band_limit`). Exact for signals band-limited to ``lmax`` on equiangular
    grids; on HEALPix the analysis uses healpy's ``map2alm`` with ``iterations`` Jacobi steps
    and no pixel weights (nothing is downloaded), so it is exact only at low degrees.
    """
    R = _check_rotation(rotation)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != sampling.npix:
        raise ValueError(f"signal has {x.shape[-1]} values on its last axis, the sampling has {sampling.npix}")
    if not exact_rotation_available(sampling):
        raise TypeError(
            f"no harmonic rotation on {sampling!r}: it needs a full-sky HEALPix or an equiangular "
            "sampling. Use rotate_interpolated (approximate) for irregular points or partial skies.")
    from ..spectral.rotation import healpy_rotate_alm_args, matrix_to_euler

    L = band_limit(sampling) if lmax is None else int(lmax)
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if isinstance(sampling, HEALPix):
        import healpy as hp

        nside = sampling.nside
        alm = np.atleast_2d(hp.map2alm(nested_to_ring(x2, nside), lmax=L, iter=iterations,
                                       pol=False, use_pixel_weights=False))
        psi, theta, phi = healpy_rotate_alm_args(*matrix_to_euler(R))
        for a in alm:
            hp.rotate_alm(a, psi, theta, phi, lmax=L)
        out = ring_to_nested(np.atleast_2d(hp.alm2map(alm, nside, lmax=L, pol=False)), nside)
    else:
        import torch

        from ..spectral import rotate_signal as spectral_rotate

        out = spectral_rotate(torch.from_numpy(x2), sampling, R, lmax=L).numpy()
    return out.reshape(shape)


#: a triangle whose longest edge exceeds this multiple of the median one spans a gap (uniform
#: random points stay below 3 up to 10^4 points; a hemisphere's cut face is ~10x); likewise a
#: query point farther than this multiple of the median nearest-neighbour spacing from every
#: point (uniform random points: at most 4.3 for 10^2 to 5 10^4 points; HEALPix: 0.8)
GAP_FACTOR = 6.0


class _Triangulation:
    """Spherical Delaunay triangulation (convex hull) of unit vectors, with point location."""

    def __init__(self, vectors: np.ndarray):
        from scipy.spatial import ConvexHull, cKDTree

        if len(vectors) < 4:
            raise ValueError("interpolation needs at least 4 points")
        hull = ConvexHull(vectors)
        self.v = vectors
        self.tri = hull.simplices
        # triangles much longer than the typical one span a gap in the points (the missing part
        # of a partial sky, an ocean between stations): interpolation there is extrapolation
        corners = vectors[self.tri]
        longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
        self.gap = longest > GAP_FACTOR * np.median(longest)
        c = vectors[self.tri].mean(axis=1)
        self.tree = cKDTree(c / np.linalg.norm(c, axis=1, keepdims=True))
        # the triangle test misses points deep inside a gap: the point location then settles on
        # a small triangle at the gap's edge, so distance to the nearest point is tested too
        self.points = cKDTree(vectors)
        self.spacing = float(np.median(self.points.query(vectors, k=2)[0][:, 1]))

    def in_gap(self, q: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Query points (located in triangles ``which``) that lie in a gap of the points."""
        far = self.points.query(q)[0] > GAP_FACTOR * self.spacing
        return self.gap[which] | far

    def weights(self, q: np.ndarray, n_candidates: int = 8, return_triangles: bool = False):
        """Triangle vertices ``(m, 3)`` and barycentric weights ``(m, 3)`` of query points (and
        the index of each point's triangle with ``return_triangles``)."""
        k = min(n_candidates, len(self.tri))
        _, cand = self.tree.query(q, k=k)
        cand = cand.reshape(len(q), k)
        P = self.v[self.tri[cand]]                       # (m, k, 3 vertices, 3 coords)
        # barycentric coordinates of the ray through q: solve [p0 p1 p2] w = q (up to scale)
        M = np.transpose(P, (0, 1, 3, 2))                # columns are the vertices
        w = np.linalg.solve(M, np.broadcast_to(q[:, None, :], (len(q), k, 3))[..., None])[..., 0]
        score = w.min(axis=-1)                           # >= 0 inside the spherical triangle
        best = np.argmax(score, axis=1)
        i = np.arange(len(q))
        w = np.clip(w[i, best], 0.0, None)
        w /= w.sum(axis=1, keepdims=True)
        if return_triangles:
            return self.tri[cand[i, best]], w, cand[i, best]
        return self.tri[cand[i, best]], w


def rotate_interpolated(x: np.ndarray, sampling: Sampling, rotation) -> np.ndarray:
    r"""Rotate signals ``(..., npix)`` on *any* sampling by interpolation: the value at
    :math:`x_i` is the piecewise-linear interpolant (on the spherical Delaunay triangulation of
    the points) evaluated at :math:`R^{-1}x_i`.

    **Approximate**: the error is that of linear interpolation, :math:`O(h^2 \ell^2)` relative for
    a degree-:math:`\ell` signal on points spaced by :math:`h` (about 1 % at
    :math:`h\ell \approx 0.3`). Use :func:`rotate_signal` where the sampling allows it.
    Points whose preimage :math:`R^{-1}x_i` falls in a gap of the sampling (the missing part of
    a partial sky) get values extrapolated across the gap; a warning says how many.
    """
    R = _check_rotation(rotation)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != sampling.npix:
        raise ValueError(f"signal has {x.shape[-1]} values on its last axis, the sampling has {sampling.npix}")
    tri = _triangulation(sampling)
    q = sampling.vectors @ R  # rows: R^T x_i = R^{-1} x_i
    idx, w, which = tri.weights(q, return_triangles=True)
    outside = int(tri.in_gap(q, which).sum())
    if outside:
        warnings.warn(
            f"at least {outside} of {sampling.npix} rotated points come from a gap in {sampling!r} (a partial "
            "sky, or a region without stations): their values are extrapolated across it, and an "
            "equivariance error measured there is mostly this extrapolation, not the operator's",
            stacklevel=2)
    return np.einsum("...mk,mk->...m", x[..., idx], w)


_TRI_CACHE: dict = {}


def _triangulation(sampling: Sampling) -> _Triangulation:
    key = id(sampling)
    hit = _TRI_CACHE.get(key)
    if hit is None or hit[0] is not sampling:
        if len(_TRI_CACHE) > 8:
            _TRI_CACHE.clear()
        hit = (sampling, _Triangulation(sampling.vectors))
        _TRI_CACHE[key] = hit
    return hit[1]
