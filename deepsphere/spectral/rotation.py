r"""Wigner-D matrices and exact rotation of band-limited signals.

**Convention (stated once, used everywhere in this package).** A rotation is given by
*active* ZYZ Euler angles :math:`(\alpha, \beta, \gamma)`:

.. math:: R = R_z(\alpha)\, R_y(\beta)\, R_z(\gamma),

rotate by :math:`\gamma` about :math:`z`, then by :math:`\beta` about :math:`y`, then by
:math:`\alpha` about :math:`z` (fixed axes), with right-handed rotation matrices
:math:`R_z(t) = [[\cos t, -\sin t, 0], [\sin t, \cos t, 0], [0, 0, 1]]`. Rotating a signal means
:math:`(\Lambda_R f)(x) = f(R^{-1} x)`: a bump at :math:`x_0` moves to :math:`R x_0`. Its
complex coefficients transform as

.. math:: a'_{\ell m} = \sum_{m'} D^\ell_{m m'}(R)\, a_{\ell m'}, \qquad
          D^\ell_{m m'}(\alpha, \beta, \gamma) = e^{-i m \alpha}\, d^\ell_{m m'}(\beta)\, e^{-i m' \gamma},

and the real coefficients of :mod:`.coefficients` by the real orthogonal matrices
:math:`D^{\ell,\mathbb R} = U D^\ell U^\dagger` (``U`` the complex-to-real change of basis).
healpy's ``rotate_alm(alm, psi, theta, phi)`` applies the same operator with
``(psi, theta, phi) = (gamma, beta, alpha)`` (:func:`healpy_rotate_alm_args`), and
``healpy.Rotator(rot=np.degrees([-gamma, beta, -alpha]), eulertype='Y')`` has ``.mat == R``
and rotates alm and maps the same way (:func:`healpy_rotator`; both tested).

**Stability.** :math:`d^\ell(\beta) = e^{-i\beta J_y}` is computed from the eigendecomposition
of the Hermitian tridiagonal matrix :math:`J_y` (eigenvalues :math:`-\ell..\ell`, well
separated, so the eigenvectors are accurate to machine precision at any degree), once per
degree. A rotation is then applied as :math:`Z(\alpha)\, Q\, Z(\beta)\, Q^\top Z(\gamma)`, with
:math:`Q = D(R_x(-\pi/2))` (maps the :math:`z` axis to the :math:`y` axis) and :math:`Z` the
cheap rotations about :math:`z` (2×2 blocks in the real basis): :math:`O(L^3)` per rotation,
stable up to large degrees (tested to :math:`\ell = 128` and beyond).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .coefficients import check_float, lmax_from_size, num_coefficients

Rotation = Union[np.ndarray, torch.Tensor, Sequence[float], Tuple[float, float, float]]


# ---- rotation matrices and Euler angles --------------------------------------------------
def rot_z(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def euler_to_matrix(alpha: float, beta: float, gamma: float) -> np.ndarray:
    r""":math:`R = R_z(\alpha) R_y(\beta) R_z(\gamma)`, a ``(3, 3)`` float64 array."""
    return rot_z(alpha) @ rot_y(beta) @ rot_z(gamma)


def matrix_to_euler(R) -> Tuple[float, float, float]:
    r"""ZYZ Euler angles ``(alpha, beta, gamma)`` of a rotation matrix (inverse of
    :func:`euler_to_matrix`; ``gamma = 0`` at the gimbal-locked :math:`\beta \in \{0, \pi\}`).

    Accurate to rounding at every :math:`\beta`: :math:`\beta` comes from an ``arctan2`` (not
    ``arccos``, which loses half the digits near the poles), and near :math:`\beta = 0`
    (:math:`\pi`) only :math:`\alpha \pm \gamma` is well determined, so it is read from the
    upper-left block, :math:`R_{10} \mp R_{01} = (1 \pm \cos\beta) \sin(\alpha \pm \gamma)`,
    :math:`R_{00} \pm R_{11} = (1 \pm \cos\beta) \cos(\alpha \pm \gamma)`."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"a rotation matrix has shape (3, 3), got {R.shape}")
    if not np.isfinite(R).all():
        raise ValueError("not a rotation matrix: it has NaN or infinite entries")
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-6 or np.linalg.det(R) < 0:
        raise ValueError("not a rotation matrix: R @ R.T must be the identity and det(R) = +1")
    s = float(np.hypot(R[0, 2], R[1, 2]))  # sin(beta)
    beta = float(np.arctan2(s, R[2, 2]))
    if R[2, 2] >= 0:
        both = float(np.arctan2(R[1, 0] - R[0, 1], R[0, 0] + R[1, 1]))    # alpha + gamma
    else:
        both = float(np.arctan2(-(R[1, 0] + R[0, 1]), R[1, 1] - R[0, 0]))  # alpha - gamma
    # the error of alpha from the last column is ~eps/sin(beta), but it moves the entries of R
    # by ~eps only once gamma is taken from the well-determined sum or difference
    alpha = both if s < 1e-15 else float(np.arctan2(R[1, 2], R[0, 2]))
    gamma = both - alpha if R[2, 2] >= 0 else alpha - both
    return alpha, beta, math.remainder(gamma, 2 * math.pi)


def random_rotation(rng: Optional[np.random.Generator] = None) -> Tuple[float, float, float]:
    """Euler angles of a uniformly (Haar) distributed random rotation."""
    rng = np.random.default_rng() if rng is None else rng
    a, g = rng.uniform(0, 2 * np.pi, size=2)
    b = np.arccos(rng.uniform(-1, 1))
    return float(a), float(b), float(g)


def as_euler(rotation: Rotation) -> Tuple[float, float, float]:
    """Euler angles from either three angles or a ``(3, 3)`` rotation matrix."""
    r = rotation.detach().cpu().numpy() if isinstance(rotation, torch.Tensor) else np.asarray(rotation, dtype=np.float64)
    if r.shape == (3, 3):
        return matrix_to_euler(r)
    if r.shape == (3,):
        if not np.isfinite(r).all():
            raise ValueError(f"Euler angles must be finite, got {tuple(r.tolist())}")
        return float(r[0]), float(r[1]), float(r[2])
    raise ValueError(
        f"a rotation is ZYZ Euler angles (alpha, beta, gamma) or a (3, 3) matrix, got shape {r.shape}"
    )


def healpy_rotate_alm_args(alpha: float, beta: float, gamma: float) -> Tuple[float, float, float]:
    """Arguments ``(psi, theta, phi)`` of ``healpy.rotate_alm`` that apply the same rotation of
    a signal as our ``(alpha, beta, gamma)`` (tested in ``tests/test_spectral_rotation.py``)."""
    return _HEALPY_MAP(alpha, beta, gamma)


def _HEALPY_MAP(alpha, beta, gamma):
    return (gamma, beta, alpha)


def healpy_rotator(alpha: float, beta: float, gamma: float):
    """The ``healpy.Rotator`` whose ``.mat`` is our :math:`R` and whose ``rotate_alm`` /
    ``rotate_map_alms`` apply the same rotation of a signal: ``Rotator(rot=degrees(-gamma,
    beta, -alpha), eulertype='Y')`` (tested)."""
    import healpy as hp

    return hp.Rotator(rot=np.degrees([-gamma, beta, -alpha]), eulertype="Y")


# ---- Wigner small-d and D ----------------------------------------------------------------
@lru_cache(maxsize=1024)
def _jx_eigen(l: int):
    r"""Eigenvalues ``mu`` and real orthonormal eigenvectors ``V`` of the real symmetric
    tridiagonal :math:`J_x = (J_+ + J_-)/2` in the basis :math:`|\ell m\rangle`, ``m = -l..l``."""
    from scipy.linalg import eigh_tridiagonal

    m = np.arange(-l, l)  # <m+1| J+ |m> = sqrt((l-m)(l+m+1))
    off = 0.5 * np.sqrt((l - m) * (l + m + 1.0))
    mu, V = eigh_tridiagonal(np.zeros(2 * l + 1), off)
    return mu, V


def wigner_d_small(l: int, beta: float) -> np.ndarray:
    r""":math:`d^\ell_{m m'}(\beta) = \langle \ell m| e^{-i\beta J_y} |\ell m'\rangle`,
    a real ``(2l+1, 2l+1)`` array indexed ``[m + l, m' + l]``.

    :math:`J_y = P J_x P^\dagger` with :math:`P = \mathrm{diag}((-i)^m)`, so
    :math:`d = \mathrm{Re}[\,i^{m'-m} (C - iS)]` with :math:`C, S = V \cos(\beta\mu) V^\top,
    V \sin(\beta\mu) V^\top` from the real eigendecomposition of :math:`J_x`: real
    arithmetic, eigenvectors accurate to machine precision at every degree."""
    l = int(l)
    mu, V = _jx_eigen(l)
    C = (V * np.cos(beta * mu)) @ V.T
    S = (V * np.sin(beta * mu)) @ V.T
    m = np.arange(-l, l + 1)
    k = (m[None, :] - m[:, None]) % 4
    return np.select([k == 0, k == 1, k == 2], [C, S, -C], -S)


def wigner_D_complex(l: int, alpha: float, beta: float, gamma: float) -> np.ndarray:
    r"""Complex :math:`D^\ell_{m m'}(\alpha,\beta,\gamma)`, indexed ``[m + l, m' + l]``."""
    m = np.arange(-l, l + 1)
    return np.exp(-1j * m * alpha)[:, None] * wigner_d_small(l, beta) * np.exp(-1j * m * gamma)[None, :]


@lru_cache(maxsize=1024)
def complex_to_real_basis(l: int) -> np.ndarray:
    """Unitary ``U`` with ``c = U a`` for the real coefficients ``c_{l,-l..l}`` of a real signal
    with complex coefficients ``a_{l,-l..l}`` (layout of :mod:`.coefficients`)."""
    U = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    U[l, l] = 1.0
    r = 1 / np.sqrt(2)
    for m in range(1, l + 1):
        s = (-1.0) ** m
        U[l + m, l + m], U[l + m, l - m] = s * r, r
        U[l - m, l + m], U[l - m, l - m] = 1j * s * r, -1j * r
    return U


@lru_cache(maxsize=1024)
def _basis_pairs(l: int):
    """Row ``i`` of ``U`` has two non-zeros, at columns ``a1[i], a2[i]`` with values ``u1, u2``."""
    U = complex_to_real_basis(l)
    a1 = np.arange(2 * l + 1)
    a2 = a1[::-1].copy()
    return a1, a2, U[a1, a1], np.where(a1 == l, 0, U[a1, a2])


def _to_real_basis(d: np.ndarray) -> np.ndarray:
    r""":math:`\mathrm{Re}(U d U^\dagger)` in :math:`O(\ell^2)` using the sparsity of ``U``."""
    l = (d.shape[0] - 1) // 2
    a1, a2, u1, u2 = _basis_pairs(l)
    T = u1[:, None] * d[a1] + u2[:, None] * d[a2]
    return (T[:, a1] * u1.conj()[None, :] + T[:, a2] * u2.conj()[None, :]).real


def _z_matrix_left(M: np.ndarray, t: float) -> np.ndarray:
    """``Z(t) @ M`` for the real-basis rotation about z (2x2 blocks pairing m and -m)."""
    l = (M.shape[0] - 1) // 2
    m = np.arange(-l, l + 1)
    return np.cos(np.abs(m) * t)[:, None] * M - np.sin(m * t)[:, None] * M[::-1]


def wigner_D_real(l: int, alpha: float, beta: float, gamma: float) -> np.ndarray:
    r"""Real orthogonal :math:`D^{\ell,\mathbb R}(\alpha,\beta,\gamma) = U D^\ell U^\dagger`
    acting on the real coefficients ``c_{l,-l..l}`` (``c' = D c`` rotates the signal), float64
    ``(2l+1, 2l+1)``. Built as :math:`Z(\alpha)\, (U d(\beta) U^\dagger)\, Z(\gamma)`."""
    d = _to_real_basis(wigner_d_small(l, beta))
    d = _z_matrix_left(d, alpha)
    return _z_matrix_left(d.T, -gamma).T  # (Z(-g) d^T)^T = d Z(g), since Z(-g) = Z(g)^T


@lru_cache(maxsize=64)
def _q_blocks(lmax: int) -> tuple:
    r"""Real-basis :math:`D^\ell(R_x(-\pi/2))` for ``l = 0..lmax``; :math:`R_x(-\pi/2) =
    R_z(-\pi/2) R_y(-\pi/2) R_z(\pi/2)` maps the z axis onto the y axis."""
    return tuple(wigner_D_real(l, -np.pi / 2, -np.pi / 2, np.pi / 2) for l in range(lmax + 1))


@lru_cache(maxsize=64)
def _z_tables(lmax: int):
    from .coefficients import degrees_orders

    l, m = degrees_orders(lmax)
    mirror = l * l + l - m
    return m.astype(np.float64), mirror


@lru_cache(maxsize=16)
def _z_tables_torch(lmax: int, device: torch.device):
    m, mirror = _z_tables(lmax)
    return torch.as_tensor(m, dtype=torch.float64, device=device), torch.as_tensor(mirror, device=device)


def _rotate_z(c: torch.Tensor, angle: float, lmax: int) -> torch.Tensor:
    r"""Rotation about z of real coefficients: :math:`c'_k = \cos(|k|t)\,c_k - \sin(kt)\,c_{-k}`."""
    if angle == 0.0:
        return c
    m, mirror = _z_tables_torch(lmax, c.device)
    cos = torch.cos(m.abs() * angle).to(c.dtype)  # float64 angles, then cast
    sin = torch.sin(m * angle).to(c.dtype)
    return c * cos - c[..., mirror] * sin


@lru_cache(maxsize=16)
def _q_blocks_torch(lmax: int, dtype: torch.dtype, device: torch.device) -> tuple:
    return tuple(torch.as_tensor(q, dtype=dtype, device=device) for q in _q_blocks(lmax))


def _apply_q(c: torch.Tensor, lmax: int, transpose: bool) -> torch.Tensor:
    parts = c.split([2 * l + 1 for l in range(lmax + 1)], dim=-1)
    blocks = _q_blocks_torch(lmax, c.dtype, c.device)
    out = [p @ (Q.T if transpose else Q) for p, Q in zip(parts, blocks)]  # p @ Q = (Q^T p^T)^T
    return torch.cat(out, dim=-1)


def rotate_coefficients(coeffs: torch.Tensor, rotation: Rotation, lmax: Optional[int] = None) -> torch.Tensor:
    r"""Rotate real coefficients ``[..., (L+1)**2]``: returns the coefficients of
    :math:`f(R^{-1}x)` (see the module docstring for the convention).

    ``rotation`` is ZYZ Euler angles ``(alpha, beta, gamma)`` or a ``(3, 3)`` rotation matrix.
    Differentiable with respect to ``coeffs``; exact to rounding (about ``1e-14`` relative in
    float64 at ``lmax = 128``).
    """
    check_float(coeffs, "coefficients")
    L = lmax_from_size(coeffs.shape[-1]) if lmax is None else int(lmax)
    if coeffs.shape[-1] != num_coefficients(L):
        raise ValueError(f"expected (lmax+1)**2 = {num_coefficients(L)} coefficients, got {coeffs.shape[-1]}")
    alpha, beta, gamma = as_euler(rotation)
    # D(R) = Z(alpha) Q Z(beta) Q^T Z(gamma); vectors are rows, so c @ M^T applies M
    c = _rotate_z(coeffs, gamma, L)
    c = _apply_q(c, L, transpose=False)   # c @ Q   = Q^T c
    c = _rotate_z(c, beta, L)
    c = _apply_q(c, L, transpose=True)    # c @ Q^T = Q c
    return _rotate_z(c, alpha, L)


def wigner_D_blocks(lmax: int, rotation: Rotation, dtype: torch.dtype = torch.float64,
                    device=None) -> list:
    """The real Wigner-D matrices ``[D^0, ..., D^lmax]`` of a rotation as torch tensors."""
    alpha, beta, gamma = as_euler(rotation)
    return [torch.as_tensor(wigner_D_real(l, alpha, beta, gamma), dtype=dtype, device=device)
            for l in range(lmax + 1)]


def rotate_signal(x: torch.Tensor, sampling, rotation: Rotation, lmax: Optional[int] = None,
                  iterations: int = 3, method: str = "jacobi") -> torch.Tensor:
    r"""Rotate a band-limited signal ``[..., npix]`` on a sampling: analysis, rotation of the
    coefficients, synthesis, i.e. :math:`x \mapsto S\, D(R)\, A\, x` giving :math:`f(R^{-1}x)`
    at the sampling's pixels.

    Exact (to rounding) for signals band-limited to ``lmax`` on the equiangular grids
    (``lmax <= b - 1``, the default). On HEALPix, the analysis is iterative (``iterations``
    Jacobi steps), so the result is as accurate as the analysis (table in RESULTS.md); for an
    exactly known band-limited signal, rotate its coefficients with :func:`rotate_coefficients`
    and synthesise instead::

        x = isht(c, sampling)                                  # c: [..., (lmax+1)**2]
        x_rotated = isht(rotate_coefficients(c, R), sampling)  # exact on any ring sampling

    On HEALPix, ``lmax <= 2 nside`` with ``iterations=10`` (or ``method="lsq"`` with
    ``iterations=100``) makes the
    analysis exact to ~1e-12; at the default ``lmax = 3 nside - 1`` expect ~1e-1 for signals
    with power up to lmax (RESULTS.md, "Spectral transforms").

    Parameters
    ----------
    x : tensor ``[..., npix]``
    sampling : HEALPix (full sky) or Equiangular
    rotation : ZYZ Euler angles ``(alpha, beta, gamma)`` or a ``(3, 3)`` rotation matrix
        (convention in the module docstring).
    lmax, iterations, method : see :class:`deepsphere.spectral.SHT`.
    """
    from .transforms import default_lmax, isht, sht

    L = default_lmax(sampling) if lmax is None else int(lmax)
    c = sht(x, sampling, L, iterations, method)
    return isht(rotate_coefficients(c, rotation, L), sampling, L)
