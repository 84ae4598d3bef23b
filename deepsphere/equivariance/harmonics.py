r"""Signals of a single degree :math:`\ell` on a sampling, and the rotations that act on them.

A real signal of degree :math:`\ell` is :math:`f = \sum_{m=-\ell}^{\ell} c_m Y^{\mathbb R}_{\ell m}`
with the real orthonormal harmonics of :mod:`deepsphere.spectral.coefficients`
(:math:`Y^{\mathbb R}_{\ell m} = \sqrt2 (-1)^m \lambda_{\ell |m|}(\theta)\cos m\phi` for
:math:`m>0`, :math:`\sqrt2 (-1)^m \lambda_{\ell |m|}(\theta)\sin |m|\phi` for :math:`m<0`,
:math:`Y_{\ell 0}` for :math:`m=0`). Rotating it is exact and cheap: :math:`c \mapsto D^\ell(R)\,c`
(real Wigner-D, :func:`deepsphere.spectral.wigner_D_real`), then synthesis on the same points.

:class:`DegreeSpace` is the sampled space :math:`T_\ell = [Y^{\mathbb R}_{\ell m}(x_i)]_{im}`:
synthesis :math:`c \mapsto T_\ell c` and the least-squares projection
:math:`y \mapsto T_\ell^+ y` (exact on sampled degree-:math:`\ell` signals, whatever the
quadrature). On a full-sky HEALPix sampling it runs through healpy (RING order inside, NESTED
outside); on other samplings it evaluates the harmonics at the points (one Legendre table per
distinct colatitude, so iso-latitude grids are cheap).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..sampling import HEALPix, Sampling

#: pixels x coefficients above which the explicit basis matrix is not formed
_MAX_BASIS_ENTRIES = 8_000_000


def random_coefficients(ell: int, n: int, rng: np.random.Generator) -> np.ndarray:
    r"""``(n, 2 ell + 1)`` i.i.d. standard normal real coefficients: a Gaussian random field of
    degree :math:`\ell` whose law is invariant under rotations (the real Wigner-D matrices are
    orthogonal)."""
    return rng.standard_normal((n, 2 * ell + 1))


def _real_to_healpy(c: np.ndarray, ell: int) -> np.ndarray:
    """Real coefficients ``(..., 2l+1)`` of degree ``l`` -> healpy alm ``(..., size(lmax=l))``."""
    import healpy as hp

    size = hp.Alm.getsize(ell)
    out = np.zeros(c.shape[:-1] + (size,), dtype=complex)
    m = np.arange(ell + 1)
    idx = hp.Alm.getidx(ell, ell, m)
    sign = (-1.0) ** m
    a = sign / np.sqrt(2) * (c[..., ell + m] - 1j * c[..., ell - m])
    a[..., 0] = c[..., ell]
    out[..., idx] = a
    return out


def _healpy_to_real(alm: np.ndarray, ell: int, lmax: int) -> np.ndarray:
    """Degree-``ell`` entries of healpy alm ``(..., size(lmax))`` as real coefficients."""
    import healpy as hp

    m = np.arange(ell + 1)
    a = alm[..., hp.Alm.getidx(lmax, ell, m)]
    sign = (-1.0) ** m
    c = np.empty(alm.shape[:-1] + (2 * ell + 1,))
    c[..., ell + m] = np.sqrt(2) * sign * a.real
    c[..., ell - m] = -np.sqrt(2) * sign * a.imag
    c[..., ell] = a[..., 0].real
    return c


def real_harmonics(ell: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    r"""``(n, 2 ell + 1)`` matrix :math:`Y^{\mathbb R}_{\ell m}(\theta_i, \phi_i)`, column
    ``ell + m``; evaluated with scipy's :func:`~scipy.special.sph_harm_y` once per distinct
    colatitude (independent of healpy and of :mod:`deepsphere.spectral`)."""
    from scipy.special import sph_harm_y

    theta = np.asarray(theta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    tu, inv = np.unique(theta, return_inverse=True)
    m = np.arange(ell + 1)
    lam = sph_harm_y(ell, m[None, :], tu[:, None], 0.0).real[inv]  # (n, l+1), lambda_{lm}
    sign = (-1.0) ** m
    Y = np.empty((len(theta), 2 * ell + 1))
    Y[:, ell] = lam[:, 0]
    mp = m[1:]
    Y[:, ell + mp] = np.sqrt(2) * sign[1:] * lam[:, 1:] * np.cos(mp * phi[:, None])
    Y[:, ell - mp] = np.sqrt(2) * sign[1:] * lam[:, 1:] * np.sin(mp * phi[:, None])
    return Y


def _full_healpix(sampling: Sampling) -> bool:
    return isinstance(sampling, HEALPix) and sampling.full_sky


@lru_cache(maxsize=8)
def _nest2ring(nside: int) -> np.ndarray:
    import healpy as hp

    return hp.nest2ring(nside, np.arange(12 * nside * nside))


def nested_to_ring(x: np.ndarray, nside: int) -> np.ndarray:
    """Reorder a full-sky map ``(..., npix)`` from NESTED (our order) to RING (healpy's)."""
    out = np.empty_like(x)
    out[..., _nest2ring(nside)] = x
    return out


def ring_to_nested(x: np.ndarray, nside: int) -> np.ndarray:
    """Reorder a full-sky map ``(..., npix)`` from RING to NESTED."""
    return x[..., _nest2ring(nside)]


class DegreeSpace:
    r"""The sampled harmonics of one degree :math:`\ell` on a sampling.

    Parameters
    ----------
    sampling : Sampling
    ell : int
        Degree, :math:`\ge 1`.
    tol, max_iter : float, int
        Stopping rule of the iterative least-squares projection used on large HEALPix maps:
        the residual of the normal equations relative to their right-hand side; a
        ``RuntimeWarning`` says when ``max_iter`` steps did not reach ``tol``.
    """

    def __init__(self, sampling: Sampling, ell: int, tol: float = 1e-12, max_iter: int = 200):
        if int(ell) != ell or ell < 0:
            raise ValueError(f"degree ell must be a non-negative integer, got {ell!r}")
        self.sampling, self.ell = sampling, int(ell)
        self.tol, self.max_iter = tol, max_iter
        self.dim = 2 * self.ell + 1
        n = sampling.npix
        self._healpy = _full_healpix(sampling)
        self._basis = None
        self._chol = None
        if not self._healpy or n * self.dim <= _MAX_BASIS_ENTRIES:
            if n * self.dim > 4 * _MAX_BASIS_ENTRIES:
                raise MemoryError(
                    f"degree {ell} on {n} points would need a {n} x {self.dim} basis; use a "
                    "full-sky HEALPix sampling (iterative path) or lower degrees")
            self._basis = real_harmonics(self.ell, sampling.theta, sampling.phi)
            if n < self.dim:
                raise ValueError(
                    f"{n} points cannot represent degree {ell} ({self.dim} coefficients); use "
                    f"degrees below {int(np.sqrt(n)) // 2}")
            from scipy.linalg import cho_factor

            # the sampled harmonics are nearly orthogonal, so the Gram matrix is well conditioned
            self._chol = cho_factor(self._basis.T @ self._basis)

    @classmethod
    def cached(cls, sampling: Sampling, ell: int) -> "DegreeSpace":
        """A shared instance per (sampling, degree): sweeps measure many graphs on the same
        points and reuse the basis and its factorisation."""
        key = (id(sampling), int(ell))
        hit = _SPACES.get(key)
        if hit is None or hit.sampling is not sampling:
            if len(_SPACES) >= 24:
                _SPACES.pop(next(iter(_SPACES)))
            hit = _SPACES[key] = cls(sampling, ell)
        return hit

    # ---- synthesis and projection -------------------------------------------------------
    def synthesize(self, c: np.ndarray) -> np.ndarray:
        """``(S, 2l+1)`` real coefficients -> ``(S, npix)`` samples (sampling's order)."""
        c = np.atleast_2d(c)
        if self._basis is not None:
            return c @ self._basis.T
        import healpy as hp

        nside = self.sampling.nside
        alm = _real_to_healpy(c, self.ell)
        maps = hp.alm2map(alm, nside, lmax=self.ell, pol=False)
        return ring_to_nested(np.atleast_2d(maps), nside)

    def _adjoint(self, y: np.ndarray) -> np.ndarray:
        r""":math:`\frac{4\pi}{N} T_\ell^\top y` through healpy's quadrature (``iter=0``)."""
        import healpy as hp

        nside = self.sampling.nside
        alm = hp.map2alm(nested_to_ring(y, nside), lmax=self.ell, iter=0, pol=False,
                         use_pixel_weights=False)
        return _healpy_to_real(np.atleast_2d(alm), self.ell, self.ell)

    def project(self, y: np.ndarray) -> np.ndarray:
        r"""Least-squares coefficients :math:`\arg\min_c \|T_\ell c - y\|`, ``(S, npix) -> (S, 2l+1)``.

        Direct (Cholesky of the Gram matrix) where the basis fits in memory; otherwise conjugate gradients
        on the normal equations :math:`(A T_\ell) c = A y` with :math:`A = \frac{4\pi}{N}
        T_\ell^\top` (well conditioned: HEALPix quadrature is nearly exact)."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self._chol is not None:
            from scipy.linalg import cho_solve

            return cho_solve(self._chol, (y @ self._basis).T).T
        b = self._adjoint(y)
        x = b.copy()
        r = b - self._adjoint(self.synthesize(x))
        p = r.copy()
        rs = np.sum(r * r, axis=1)
        bn = np.sqrt(np.sum(b * b, axis=1)) + 1e-300
        for _ in range(self.max_iter):
            if np.all(np.sqrt(rs) <= self.tol * bn):
                break
            Ap = self._adjoint(self.synthesize(p))
            alpha = rs / np.maximum(np.sum(p * Ap, axis=1), 1e-300)
            x += alpha[:, None] * p
            r -= alpha[:, None] * Ap
            rs_new = np.sum(r * r, axis=1)
            p = r + (rs_new / np.maximum(rs, 1e-300))[:, None] * p
            rs = rs_new
        worst = float(np.max(np.sqrt(rs) / bn))
        if worst > self.tol:  # as SHT(method='lsq') does: unconverged coefficients are not silent
            import warnings

            warnings.warn(
                f"DegreeSpace(ell={self.ell}).project stopped after max_iter={self.max_iter} "
                f"conjugate-gradient steps at relative residual {worst:.1e} > tol={self.tol:g}: "
                "the coefficients are not the least-squares solution. Raise max_iter or tol.",
                RuntimeWarning, stacklevel=2)
        return x

    def rotate(self, c: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        r"""Coefficients of :math:`f(R^{-1}x)`: :math:`c \mapsto D^\ell(R) c`."""
        return np.atleast_2d(c) @ wigner_D(self.ell, rotation).T


_SPACES: dict = {}


def wigner_D(ell: int, rotation: np.ndarray) -> np.ndarray:
    """Real Wigner-D matrix of degree ``ell`` for a ``(3, 3)`` rotation matrix."""
    from ..spectral.rotation import matrix_to_euler, wigner_D_real

    return wigner_D_real(ell, *matrix_to_euler(rotation))
