r"""Functions on the rotation group SO(3): Fourier coefficients, grid transforms, and the
group convolutions of Cohen et al. (2018) in spectral form.

**Coefficients.** A band-limited :math:`g: SO(3) \to \mathbb R` is

.. math:: g(R) = \sum_{\ell=0}^{L} \sum_{m,n=-\ell}^{\ell} F^\ell_{mn}\, D^\ell_{mn}(R),
          \qquad F^\ell_{mn} = (2\ell+1) \int_{SO(3)} g(R)\, D^\ell_{mn}(R)\, dR,

with the *real* Wigner-D matrices of :mod:`.rotation` and the Haar measure of total mass 1.
Stored flat as ``[..., so3_size(L)]``, degree-major, each block row-major in ``(m, n)``
(:func:`so3_index`). Rotating the signal, :math:`(\Lambda_Q g)(R) = g(Q^{-1}R)`, maps
:math:`F^\ell \mapsto D^\ell(Q) F^\ell` (:func:`rotate_so3_coefficients`).

**Grid.** Euler angles (same ZYZ convention as :mod:`.rotation`): :math:`\alpha_i = 2\pi
i/n_\alpha`, :math:`\gamma_k = 2\pi k/n_\gamma`, :math:`\beta_j` at Gauss–Legendre nodes in
:math:`\cos\beta`. With :math:`n_\alpha, n_\gamma \ge 2L+1` and :math:`n_\beta \ge L+1` the
quadrature is exact for products of two degree-:math:`L` functions, so analysis inverts
synthesis exactly. Transforms go through the complex basis, where :math:`D_{ab} =
e^{-ia\alpha} d_{ab}(\beta) e^{-ib\gamma}`: a sum over degrees per :math:`\beta` ring and one
2-D FFT over :math:`(\alpha, \gamma)`, :math:`O(L^4)` per signal.

**Convolutions** (spectral form, all exactly equivariant):

- :class:`S2Conv`: :math:`(\psi \star f)(R) = \int_{S^2} \psi(R^{-1}x) f(x)\, dx`, giving
  :math:`F^\ell_{mn} = \hat f_{\ell m} \hat\psi_{\ell n}`;
- :class:`SO3Conv`: :math:`(\psi \star g)(R) = \int_{SO(3)} \psi(R^{-1}S) g(S)\, dS`, giving
  :math:`G^\ell K^{\ell\top} / (2\ell+1)`;
- :class:`SO3ToS2`: average over the fibre :math:`R R_z(t)`, :math:`c_{\ell m} =
  \sqrt{4\pi/(2\ell+1)}\, F^\ell_{m0}`.

Kernels are localised: learnable weights on points near the north pole (S2Conv) or near the
identity (SO3Conv), band-limited to ``lmax`` (e3nn's "near identity" grids).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from torch import nn

from .coefficients import (autocast_on, check_float, check_int, check_layer_dtype, degrees_orders,
                           num_coefficients)
from .legendre import legendre_table
from .rotation import Rotation, as_euler, wigner_D_real, wigner_d_small


# ---- layout --------------------------------------------------------------------------------
def so3_size(lmax: int) -> int:
    """Number of SO(3) coefficients up to degree ``lmax``: :math:`\\sum_\\ell (2\\ell+1)^2`."""
    L = int(lmax)
    return (L + 1) * (2 * L + 1) * (2 * L + 3) // 3


def so3_index(l: int, m: int, n: int) -> int:
    """Flat index of :math:`F^\\ell_{mn}`."""
    return so3_size(l - 1) + (m + l) * (2 * l + 1) + (n + l) if l > 0 else 0


def _check_so3(F, lmax: int, what: str = "SO(3) coefficients") -> None:
    check_float(F, what)
    if F.shape[-1] != so3_size(lmax):
        raise ValueError(f"expected {so3_size(lmax)} {what} (sum_l (2l+1)^2 with lmax={lmax}) on the "
                         f"last axis, got shape {tuple(F.shape)}")


def so3_lmax_from_size(n: int) -> int:
    L = 0
    while so3_size(L) < n:
        L += 1
    if so3_size(L) != n:
        raise ValueError(f"{n} is not a number of SO(3) coefficients sum_l (2l+1)^2")
    return L


@lru_cache(maxsize=32)
def _pad_index(lmax: int):
    """For the padded layout ``[L+1, 2L+1, 2L+1]`` (orders offset by ``L``): flat index of each
    valid entry, and the padded position of each flat entry."""
    L = lmax
    P = 2 * L + 1
    pos = np.zeros(so3_size(L), dtype=np.int64)
    for l in range(L + 1):
        m = np.arange(-l, l + 1)
        block = (l * P + (m[:, None] + L)) * P + (m[None, :] + L)
        pos[so3_size(l - 1) if l else 0: so3_size(l)] = block.ravel()
    return pos


def so3_to_padded(F: torch.Tensor, lmax: int) -> torch.Tensor:
    """``[..., so3_size(L)]`` -> zero-padded ``[..., L+1, 2L+1, 2L+1]``."""
    L, P = lmax, 2 * lmax + 1
    pos = torch.as_tensor(_pad_index(L), device=F.device)
    out = F.new_zeros(*F.shape[:-1], (L + 1) * P * P)
    out = out.index_copy(-1, pos, F) if F.dim() == 1 else out.index_copy(F.dim() - 1, pos, F)
    return out.reshape(*F.shape[:-1], L + 1, P, P)


def padded_to_so3(X: torch.Tensor, lmax: int) -> torch.Tensor:
    """Inverse of :func:`so3_to_padded` (drops entries outside the blocks)."""
    pos = torch.as_tensor(_pad_index(lmax), device=X.device)
    return X.reshape(*X.shape[:-3], -1)[..., pos]


# ---- rotations of SO(3) coefficients ------------------------------------------------------
def rotate_so3_coefficients(F: torch.Tensor, rotation: Rotation, lmax: Optional[int] = None) -> torch.Tensor:
    """Coefficients of :math:`g(Q^{-1}R)`: :math:`F^\\ell \\mapsto D^\\ell(Q) F^\\ell`."""
    check_float(F, "SO(3) coefficients")
    L = so3_lmax_from_size(F.shape[-1]) if lmax is None else int(lmax)
    _check_so3(F, L)
    a, b, g = as_euler(rotation)
    out = []
    for l in range(L + 1):
        n = 2 * l + 1
        blk = F[..., so3_size(l - 1) if l else 0: so3_size(l)].reshape(*F.shape[:-1], n, n)
        D = torch.as_tensor(wigner_D_real(l, a, b, g), dtype=F.dtype, device=F.device)
        out.append((D @ blk).reshape(*F.shape[:-1], n * n))
    return torch.cat(out, dim=-1)


# ---- real spherical harmonics at arbitrary points -----------------------------------------
def real_sph_harm(lmax: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real orthonormal harmonics :math:`Y^{\\mathbb R}_{\\ell m}` (layout of
    :mod:`.coefficients`) at points, float64 ``(npoints, (L+1)**2)``."""
    theta = np.asarray(theta, dtype=np.float64).ravel()
    phi = np.asarray(phi, dtype=np.float64).ravel()
    lam = legendre_table(lmax, theta)  # [m, l, p]
    l, m = degrees_orders(lmax)
    am = np.abs(m)
    base = lam[am, l, :].T * np.where(am % 2 == 1, -1.0, 1.0)  # (-1)^m lambda: no CS phase
    trig = np.where(m > 0, np.sqrt(2) * np.cos(am * phi[:, None]),
                    np.where(m < 0, np.sqrt(2) * np.sin(am * phi[:, None]), 1.0))
    return base * trig


# ---- grids ---------------------------------------------------------------------------------
class SO3Grid:
    """Euler-angle grid with exact quadrature for band limit ``lmax`` (see module docstring).

    ``n_alpha``/``n_gamma`` default to ``2 lmax + 2``, ``n_beta`` to ``lmax + 1``; larger values
    oversample (useful before a pointwise nonlinearity)."""

    def __init__(self, lmax: int, n_alpha: Optional[int] = None, n_beta: Optional[int] = None,
                 n_gamma: Optional[int] = None):
        L = check_int(lmax, "lmax")
        self.lmax = L
        self.n_alpha = 2 * L + 2 if n_alpha is None else int(n_alpha)
        self.n_gamma = 2 * L + 2 if n_gamma is None else int(n_gamma)
        self.n_beta = L + 1 if n_beta is None else int(n_beta)
        if self.n_alpha < 2 * L + 1 or self.n_gamma < 2 * L + 1 or self.n_beta < L + 1:
            raise ValueError(
                f"an exact SO(3) grid for lmax={L} needs n_alpha, n_gamma >= {2 * L + 1} and "
                f"n_beta >= {L + 1}; got {self.n_alpha}, {self.n_gamma}, {self.n_beta}"
            )
        self.alpha = 2 * np.pi * np.arange(self.n_alpha) / self.n_alpha
        self.gamma = 2 * np.pi * np.arange(self.n_gamma) / self.n_gamma
        x, w = np.polynomial.legendre.leggauss(self.n_beta)
        self.beta = np.arccos(x[::-1])
        self.beta_weights = w[::-1] / 2  # sum to 1

    @property
    def shape(self):
        return (self.n_alpha, self.n_beta, self.n_gamma)

    @property
    def weights(self) -> np.ndarray:
        """Haar quadrature weights, shape :attr:`shape`, summing to 1."""
        return np.broadcast_to(self.beta_weights[None, :, None] / (self.n_alpha * self.n_gamma),
                               self.shape).copy()

    def __repr__(self) -> str:
        return f"SO3Grid(lmax={self.lmax}, shape={self.shape})"


def _u_stack(L: int) -> np.ndarray:
    """Complex-to-real change of basis per degree, padded ``[L+1, 2L+1, 2L+1]``."""
    from .rotation import complex_to_real_basis

    P = 2 * L + 1
    out = np.zeros((L + 1, P, P), dtype=complex)
    for l in range(L + 1):
        out[l, L - l: L + l + 1, L - l: L + l + 1] = complex_to_real_basis(l)
    return out


def _d_stack(betas: np.ndarray, L: int) -> np.ndarray:
    r"""Complex-basis :math:`d^\ell_{ab}(\beta_j)` padded, ``[n_beta, L+1, 2L+1, 2L+1]``."""
    P = 2 * L + 1
    out = np.zeros((len(betas), L + 1, P, P))
    for j, b in enumerate(betas):
        for l in range(L + 1):
            out[j, l, L - l: L + l + 1, L - l: L + l + 1] = wigner_d_small(l, b)
    return out


class _SO3Tables(nn.Module):
    r"""Tables of the fast transform. With :math:`D^{\mathbb R} = U D U^\dagger` and
    :math:`D_{ab} = e^{-ia\alpha} d_{ab}(\beta) e^{-ib\gamma}`,

    .. math:: g(\alpha_i, \beta_j, \gamma_k) = \sum_{a,b} e^{-ia\alpha_i - ib\gamma_k}
              \sum_\ell d^\ell_{ab}(\beta_j)\, \tilde F^\ell_{ab}, \qquad
              \tilde F^\ell = U^\top F^\ell\, \bar U,

    a sum over degrees per :math:`\beta_j` and one 2-D FFT over :math:`(\alpha, \gamma)`:
    :math:`O(L^4 + L^3 \log L)` instead of the :math:`O(L^6)` of a direct sum."""

    def __init__(self, grid: SO3Grid):
        super().__init__()
        self.grid = grid
        L = grid.lmax
        self.lmax = L
        U = _u_stack(L)
        self.register_buffer("u_re", torch.from_numpy(U.real.copy()), persistent=False)
        self.register_buffer("u_im", torch.from_numpy(U.imag.copy()), persistent=False)
        self.register_buffer("d", torch.from_numpy(_d_stack(grid.beta, L)), persistent=False)
        self.register_buffer("wb", torch.from_numpy(grid.beta_weights.copy()), persistent=False)
        self.register_buffer("two_l_plus_1", torch.arange(L + 1, dtype=torch.float64) * 2 + 1,
                             persistent=False)
        m = np.arange(-L, L + 1)
        self.register_buffer("bin_a", torch.from_numpy(m % grid.n_alpha), persistent=False)
        self.register_buffer("bin_g", torch.from_numpy(m % grid.n_gamma), persistent=False)

    def _u(self, dtype: torch.dtype) -> torch.Tensor:
        return torch.complex(self.u_re.to(dtype), self.u_im.to(dtype))

    def extra_repr(self) -> str:
        return repr(self.grid)


class SO3Synthesis(_SO3Tables):
    """SO(3) coefficients ``[..., so3_size(L)]`` -> grid values ``[..., n_alpha, n_beta, n_gamma]``."""

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        _check_so3(F, self.lmax)
        dt = F.dtype
        U = self._u(dt)
        Fp = so3_to_padded(F, self.lmax).to(U.dtype)                            # [..., l, m, n]
        Ft = torch.einsum("lma,...lmn,lnb->...lab", U, Fp, U.conj())
        H = torch.einsum("...lab,jlab->...jab", Ft, self.d.to(dt).to(U.dtype))  # [..., j, a, b]
        gr = self.grid
        G = H.new_zeros(*H.shape[:-2], gr.n_alpha, gr.n_gamma)
        G[..., self.bin_a[:, None], self.bin_g[None, :]] = H
        g = torch.fft.fft2(G).real                                             # [..., j, i, k]
        return g.transpose(-3, -2)


class SO3Analysis(_SO3Tables):
    """Grid values ``[..., n_alpha, n_beta, n_gamma]`` -> SO(3) coefficients (exact inverse of
    :class:`SO3Synthesis` on band-limited signals)."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        check_float(g, "SO(3) grid values")
        dt = g.dtype
        gr = self.grid
        if tuple(g.shape[-3:]) != gr.shape:
            raise ValueError(f"expected grid values [..., {gr.shape}], got {tuple(g.shape)}")
        U = self._u(dt)
        Q = torch.fft.fft2(g.transpose(-3, -2)) / (gr.n_alpha * gr.n_gamma)     # [..., j, i, k]
        Q = Q[..., self.bin_a[:, None], self.bin_g[None, :]]                    # [..., j, a, b]
        dw = (self.d * self.wb[:, None, None, None]).to(dt).to(U.dtype)
        Gh = torch.einsum("...jab,jlab->...lab", Q, dw)
        Fp = torch.einsum("lma,...lab,lnb->...lmn", U, Gh, U.conj()).real
        Fp = Fp * self.two_l_plus_1.to(dt)[:, None, None]
        return padded_to_so3(Fp, self.lmax)


# ---- near-identity kernel supports ---------------------------------------------------------
def s2_near_pole_grid(max_beta: float = math.pi / 8, n_beta: int = 3, n_alpha: int = 8) -> np.ndarray:
    """Points (colatitude, longitude) on rings around the north pole, ``(n, 2)``: the support
    of a localised S² kernel."""
    b = np.arange(1, n_beta + 1) * max_beta / n_beta
    a = 2 * np.pi * np.arange(n_alpha) / n_alpha
    B, A = np.meshgrid(b, a, indexing="ij")
    return np.stack([B.ravel(), A.ravel()], axis=1)


def so3_near_identity_grid(max_beta: float = math.pi / 8, max_gamma: float = 2 * math.pi,
                           n_alpha: int = 8, n_beta: int = 3, n_gamma: Optional[int] = None) -> np.ndarray:
    """Euler angles of rotations near the identity, ``(n, 3)`` (the support of a localised
    SO(3) kernel; e3nn's ``so3_near_identity_grid``): :math:`R_z(\\alpha) R_y(\\beta)
    R_z(\\gamma - \\alpha)`, i.e. a tilt by :math:`\\beta` and a twist :math:`\\gamma`."""
    n_gamma = n_alpha if n_gamma is None else n_gamma
    b = np.arange(1, n_beta + 1) * max_beta / n_beta
    a = 2 * np.pi * np.arange(n_alpha) / n_alpha
    if max_gamma >= 2 * np.pi:
        g = 2 * np.pi * np.arange(n_gamma) / n_gamma
    else:
        g = np.linspace(-max_gamma, max_gamma, n_gamma)
    A, B, G = np.meshgrid(a, b, g, indexing="ij")
    return np.stack([A.ravel(), B.ravel(), (G - A).ravel()], axis=1)


# ---- layers ----------------------------------------------------------------------------------
def _kernel_grid(grid, columns: int, what: str, default: str) -> np.ndarray:
    """A user kernel support as a finite float64 ``(n, columns)`` array with ``n >= 1``."""
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] != columns or len(g) == 0 or not np.isfinite(g).all():
        raise ValueError(f"{what} kernel_grid must be a finite (n, {columns}) array with n >= 1 "
                         f"(e.g. {default}), got shape {g.shape}")
    return g


class S2Conv(nn.Module):
    r"""Spherical correlation :math:`S^2 \to SO(3)`: coefficients ``[..., in, (L+1)**2]`` ->
    SO(3) coefficients ``[..., out, so3_size(L)]``.

    The kernel is :math:`\psi_{oi} = \sum_k w_{oik}\, \delta_{x_k}` band-limited to ``L``, with
    :math:`x_k` on rings around the north pole (:func:`s2_near_pole_grid`), so
    :math:`\hat\psi_{oi,\ell n} = \sum_k w_{oik} Y^{\mathbb R}_{\ell n}(x_k)` and
    :math:`F^\ell_{o,mn} = \sum_i \hat f_{i,\ell m}\, \hat\psi_{oi,\ell n}`.
    Exactly equivariant: rotating the input by :math:`Q` multiplies each output block by
    :math:`D^\ell(Q)` on the left.
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int,
                 kernel_grid: Optional[np.ndarray] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.lmax = int(in_channels), int(out_channels), int(lmax)
        grid = (s2_near_pole_grid() if kernel_grid is None else
                _kernel_grid(kernel_grid, 2, "S2Conv's", "(colatitude, longitude) from s2_near_pole_grid()"))
        Y = real_sph_harm(self.lmax, grid[:, 0], grid[:, 1])  # [K, ncoef]
        self.register_buffer("Y", torch.from_numpy(Y), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, len(grid)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_channels * self.weight.shape[-1]))

    def kernel(self, dtype=torch.float64) -> torch.Tensor:
        """Kernel coefficients ``(out, in, (L+1)**2)``."""
        return torch.einsum("oik,kc->oic", self.weight.to(dtype), self.Y.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_on(x):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.weight.dtype))
        check_float(x, "coefficients")
        if x.shape[-2:] != (self.in_channels, num_coefficients(self.lmax)):
            raise ValueError(f"expected [..., {self.in_channels}, {num_coefficients(self.lmax)}], got {tuple(x.shape)}")
        check_layer_dtype(x, self.weight, "S2Conv")
        psi = self.kernel(x.dtype)
        out = []
        for l in range(self.lmax + 1):
            sl = slice(l * l, (l + 1) ** 2)
            blk = torch.einsum("...im,oin->...omn", x[..., sl], psi[..., sl])
            out.append(blk.reshape(*blk.shape[:-2], -1))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, kernel_points={self.Y.shape[0]}"


class SO3Conv(nn.Module):
    r"""Group correlation :math:`SO(3) \to SO(3)` on coefficients ``[..., in, so3_size(L)]`` ->
    ``[..., out, so3_size(L)]``: :math:`G^\ell_o = \sum_i G^\ell_i K^{\ell\top}_{oi} / (2\ell+1)`
    with :math:`K_{oi} = \sum_k w_{oik} (2\ell+1) D^\ell(R_k)` for rotations :math:`R_k` near the
    identity (:func:`so3_near_identity_grid`), i.e. :math:`G^\ell_o = \sum_{i,k} w_{oik}\, G^\ell_i
    D^\ell(R_k)^\top`. Exactly equivariant (left multiplication commutes with it)."""

    def __init__(self, in_channels: int, out_channels: int, lmax: int,
                 kernel_grid: Optional[np.ndarray] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.lmax = int(in_channels), int(out_channels), int(lmax)
        grid = (so3_near_identity_grid() if kernel_grid is None else
                _kernel_grid(kernel_grid, 3, "SO3Conv's", "ZYZ Euler angles from so3_near_identity_grid()"))
        blocks = []
        for l in range(self.lmax + 1):
            blocks.append(np.stack([wigner_D_real(l, *r).T.ravel() for r in grid]))  # D^T, flat
        self.register_buffer("DT", torch.from_numpy(np.concatenate(blocks, axis=1)), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, len(grid)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_channels * self.weight.shape[-1]))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        if autocast_on(g):
            with torch.autocast(g.device.type, enabled=False):
                return self.forward(g.to(self.weight.dtype))
        check_float(g, "SO(3) coefficients")
        if g.shape[-2:] != (self.in_channels, so3_size(self.lmax)):
            raise ValueError(f"expected [..., {self.in_channels}, {so3_size(self.lmax)}], got {tuple(g.shape)}")
        check_layer_dtype(g, self.weight, "SO3Conv")
        K = torch.einsum("oik,kc->oic", self.weight.to(g.dtype), self.DT.to(g.dtype))  # sum_k w D^T
        out = []
        for l in range(self.lmax + 1):
            n = 2 * l + 1
            sl = slice(so3_size(l - 1) if l else 0, so3_size(l))
            G = g[..., sl].reshape(*g.shape[:-1], n, n)
            Kl = K[..., sl].reshape(*K.shape[:-1], n, n)
            blk = torch.einsum("...iab,oibc->...oac", G, Kl)
            out.append(blk.reshape(*blk.shape[:-2], n * n))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, kernel_points={self.weight.shape[-1]}"


class SO3ToS2(nn.Module):
    r"""Projection :math:`SO(3) \to S^2` by averaging over the fibre:
    :math:`h(x) = \frac{1}{2\pi}\int_0^{2\pi} g(R_x R_z(t))\, dt` with :math:`R_x e_z = x`;
    :math:`c_{\ell m} = \sqrt{4\pi/(2\ell+1)}\, F^\ell_{m0}`. ``[..., so3_size(L)] ->
    [..., (L+1)**2]``. Equivariant (it commutes with left multiplication)."""

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = int(lmax)
        idx, scale = [], []
        for l in range(self.lmax + 1):
            for m in range(-l, l + 1):
                idx.append(so3_index(l, m, 0))
                scale.append(math.sqrt(4 * math.pi / (2 * l + 1)))
        self.register_buffer("idx", torch.tensor(idx), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64), persistent=False)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        _check_so3(g, self.lmax)
        return g[..., self.idx] * self.scale.to(g.dtype)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}"
