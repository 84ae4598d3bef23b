r"""Spherical harmonic transforms of real signals as differentiable torch modules.

Synthesis (:class:`InverseSHT`) evaluates

.. math:: f(\theta_r, \phi_{rj}) = \sum_{m=-L}^{L} F_m(\theta_r)\, e^{i m \phi_{rj}}, \qquad
          F_m(\theta) = \sum_{\ell=|m|}^{L} a_{\ell m}\, \lambda_{\ell m}(\theta),

a Legendre step (a batched matmul against a float64-built table, see :mod:`.legendre`) then one
real FFT per ring (rings with the same number of longitudes share one batched FFT; orders
:math:`|m| > n_\phi/2` alias onto the ring's bins and HEALPix's per-ring phase offset
:math:`\phi_{0,r}` is applied to :math:`F_m`). Analysis (:class:`SHT`) is the quadrature

.. math:: a_{\ell m} = \sum_p w_p\, f(x_p)\, \overline{Y_{\ell m}(x_p)},

exact on the equiangular grids for :math:`L \le b-1` (their weights integrate the products of
two such harmonics exactly). On HEALPix, which has no exact quadrature, the quadrature is
refined by Jacobi iterations :math:`a \leftarrow a + \mathcal A(f - \mathcal S a)` as healpy's
``map2alm(iter=...)`` does, or solved in the least-squares sense by conjugate gradients
(``method="lsq"``); accuracy per ``(nside, lmax)`` in RESULTS.md.

``backend="ducc"`` swaps the torch Legendre/FFT steps for the optional ducc0 library (CPU only,
faster, no table memory), with the same results and gradients.

Coefficients are real, ``[..., (L+1)**2]`` in the layout of :mod:`.coefficients`; signals are
``[..., npix]`` in the sampling's pixel order (NESTED for HEALPix). All leading dimensions are
batch dimensions. Both directions are linear, built from matmuls, FFTs and gathers, so autograd,
float32/float64 and any device work; tables are kept in float64 and cast to the input's dtype.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..sampling import Equiangular, HEALPix, Sampling
from .coefficients import check_float, check_int, matrix_to_real, real_to_matrix
from .legendre import legendre_table
from .rings import RingGeometry, ring_geometry


#: Largest Legendre table (bytes, float64) the torch backend builds before refusing.
MAX_TABLE_BYTES = 4 * 2**30
#: Blocks of orders the triangular Legendre table is stored in.
_LEGENDRE_BLOCKS = 8


def default_lmax(sampling: Sampling) -> int:
    """``3 nside - 1`` on HEALPix (healpy's default), ``b - 1`` on an equiangular grid of
    bandwidth ``b`` (the largest degree its analysis is exact for)."""
    if isinstance(sampling, HEALPix):
        return 3 * sampling.nside - 1
    if isinstance(sampling, Equiangular):
        return sampling.bandwidth - 1
    raise TypeError(f"no default lmax for {type(sampling).__name__}")


def _fold_index(nphi: int, lmax: int):
    r"""Synthesis: order ``m`` adds :math:`F_m` to bin ``m mod nphi`` and, for ``m > 0``,
    :math:`\overline{F_m}` to bin ``-m mod nphi``, keeping only the half spectrum
    ``0..nphi//2`` of a real ring. Returns ``(m, bin, sign)`` arrays (``sign = -1`` marks the
    conjugate, i.e. a negated imaginary part)."""
    K = nphi // 2 + 1
    ms, ks, sg = [], [], []
    for m in range(lmax + 1):
        k = m % nphi
        if k < K:
            ms.append(m), ks.append(k), sg.append(1.0)
        kc = (-m) % nphi
        if m > 0 and kc < K:
            ms.append(m), ks.append(kc), sg.append(-1.0)
    return np.array(ms), np.array(ks), np.array(sg)


def _unfold_index(nphi: int, lmax: int):
    """Analysis: order ``m`` of a real ring's DFT is bin ``m mod nphi`` of its half spectrum, or
    the conjugate of the mirrored bin. Returns ``(bin, sign)`` arrays of length ``L+1``."""
    K = nphi // 2 + 1
    ks, sg = [], []
    for m in range(lmax + 1):
        k = m % nphi
        ks.append(k if k < K else nphi - k)
        sg.append(1.0 if k < K else -1.0)
    return np.array(ks), np.array(sg)


class _RingTransform(nn.Module):
    """Tables shared by synthesis and analysis on one sampling."""

    def __init__(self, sampling: Sampling, lmax: Optional[int], analysis: bool, backend: str = "torch"):
        super().__init__()
        self.sampling = sampling
        if backend not in ("torch", "ducc"):
            raise ValueError(f"backend must be 'torch' or 'ducc', got {backend!r}")
        if not isinstance(sampling, (HEALPix, Equiangular)):
            ring_geometry(sampling)  # raises the explanatory TypeError
        self.lmax = default_lmax(sampling) if lmax is None else check_int(lmax, "lmax")
        if backend == "torch":
            nrings = 4 * sampling.nside - 1 if isinstance(sampling, HEALPix) else sampling.nlat
            size = (self.lmax + 1) ** 2 * nrings * 8  # the square table is built before it is blocked
            if size > MAX_TABLE_BYTES:
                raise ValueError(
                    f"the torch transform at lmax={self.lmax} on {sampling!r} needs a "
                    f"{size / 2**30:.1f} GiB Legendre table (limit deepsphere.spectral.transforms."
                    f"MAX_TABLE_BYTES = {MAX_TABLE_BYTES / 2**30:.0f} GiB). Use backend='ducc' (CPU, no "
                    "table), a smaller lmax, or raise the limit if the memory is there."
                )
        geo: RingGeometry = ring_geometry(sampling)
        self.geometry = geo
        self.npix = geo.npix
        self.backend = backend
        self._cast_cache = {}
        if backend == "ducc":
            from . import ducc_backend

            self._ducc = ducc_backend.DuccGeometry(geo, self.lmax)
            self.register_buffer("pixel_weights", torch.from_numpy(self._ducc.pixel_weights), persistent=False)
            return
        L = self.lmax
        # Legendre table [m, l, r]; on the analysis side it carries the quadrature weights.
        lam = legendre_table(L, geo.theta)
        if analysis:
            lam = lam * geo.weight[None, None, :]
        # The table is triangular (zero for l < m): store it in blocks of orders, block c
        # holding orders [m0, m1) and degrees [m0, L], which skips most of the zeros (memory and
        # work of the Legendre step ~ (1 + 1/n_blocks) / 2 of the padded square).
        n_blocks = max(1, min(_LEGENDRE_BLOCKS, L + 1))
        bounds = np.linspace(0, L + 1, n_blocks + 1).round().astype(int)
        self.m_blocks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        for c, (m0, m1) in enumerate(self.m_blocks):
            self.register_buffer(f"lam_{c}", torch.from_numpy(np.ascontiguousarray(lam[m0:m1, m0:])),
                                 persistent=False)
        del lam
        m = np.arange(L + 1)
        ph = np.outer(geo.phi0, m) * (-1 if analysis else 1)
        self.register_buffer("cos_phase", torch.from_numpy(np.cos(ph)), persistent=False)
        self.register_buffer("sin_phase", torch.from_numpy(np.sin(ph)), persistent=False)
        self.nphis = []
        order = []
        for i, g in enumerate(geo.groups):
            if analysis:
                k, sg = _unfold_index(g.nphi, L)
                m = np.arange(L + 1)
            else:
                m, k, sg = _fold_index(g.nphi, L)
            self.register_buffer(f"fold_m_{i}", torch.from_numpy(m), persistent=False)
            self.register_buffer(f"fold_k_{i}", torch.from_numpy(k), persistent=False)
            self.register_buffer(f"fold_sign_{i}", torch.from_numpy(sg), persistent=False)
            self.register_buffer(f"rings_{i}", torch.from_numpy(g.rings), persistent=False)
            self.nphis.append(g.nphi)
            order.append(g.pixels.ravel())
        order = np.concatenate(order)
        # concatenated group outputs -> sampling order, and back
        self.register_buffer("gather_pix", torch.from_numpy(order), persistent=False)
        self.register_buffer("scatter_pix", torch.from_numpy(np.argsort(order)), persistent=False)
        ring_order = np.concatenate([g.rings for g in geo.groups])
        self.register_buffer("ring_inverse", torch.from_numpy(np.argsort(ring_order)), persistent=False)

    def _buf(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        t = getattr(self, name)
        if t.dtype == dtype:
            return t
        key = (name, dtype, t.device, t.data_ptr())
        out = self._cast_cache.get(key)
        if out is None:
            out = t.to(dtype)
            self._cast_cache = {k: v for k, v in self._cast_cache.items() if k[0] != name or k[1] != dtype}
            self._cast_cache[key] = out
        return out

    def extra_repr(self) -> str:
        return f"sampling={self.sampling!r}, lmax={self.lmax}" + (", backend='ducc'" if self.backend == "ducc" else "")


class InverseSHT(_RingTransform):
    r"""Synthesis: real coefficients ``[..., (L+1)**2]`` -> signal ``[..., npix]``.

    Parameters
    ----------
    sampling : HEALPix (full sky) or Equiangular
        Where the signal lives. HEALPix output is in NESTED order (the sampling's order).
    lmax : int, optional
        Band limit :math:`L` (default :func:`default_lmax`).
    backend : {'torch', 'ducc'}
        ``'torch'`` (default): torch ops, any device. ``'ducc'``: the optional ducc0 package,
        CPU only, much faster there; same results and gradients.
    """

    def __init__(self, sampling: Sampling, lmax: Optional[int] = None, backend: str = "torch"):
        super().__init__(sampling, lmax, analysis=False, backend=backend)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        check_float(coeffs, "coefficients")
        if self.backend == "ducc":
            from .coefficients import _check_real
            from .ducc_backend import synthesis

            _check_real(coeffs, self.lmax)
            return synthesis(coeffs, self._ducc)
        if coeffs.numel() == 0:  # an empty batch: torch's CPU FFT refuses empty inputs
            return coeffs.new_zeros(*coeffs.shape[:-1], self.npix)
        dt = coeffs.dtype
        re, im = real_to_matrix(coeffs, self.lmax)
        ri = torch.stack([re, im])  # one batched matmul for both parts
        F = torch.cat([torch.einsum("...ml,mlr->...rm", ri[..., m0:m1, m0:], self._buf(f"lam_{c}", dt))
                       for c, (m0, m1) in enumerate(self.m_blocks)], dim=-1)
        Fre, Fim = F[0], F[1]
        c, s = self._buf("cos_phase", dt), self._buf("sin_phase", dt)
        Fre, Fim = Fre * c - Fim * s, Fre * s + Fim * c  # times e^{i m phi0}
        outs = []
        for i, nphi in enumerate(self.nphis):
            rings = getattr(self, f"rings_{i}")
            m, k = getattr(self, f"fold_m_{i}"), getattr(self, f"fold_k_{i}")
            sign = self._buf(f"fold_sign_{i}", dt)
            fr, fi = Fre[..., rings, :][..., m], Fim[..., rings, :][..., m] * sign
            K = nphi // 2 + 1
            Gre = fr.new_zeros(*fr.shape[:-1], K).index_add(fr.dim() - 1, k, fr)
            Gim = fi.new_zeros(*fi.shape[:-1], K).index_add(fi.dim() - 1, k, fi)
            ring = torch.fft.irfft(torch.complex(Gre, Gim), n=nphi, dim=-1, norm="forward")
            outs.append(ring.reshape(*ring.shape[:-2], -1))
        out = torch.cat(outs, dim=-1)
        return out[..., self.scatter_pix]


class SHT(_RingTransform):
    r"""Analysis: signal ``[..., npix]`` -> real coefficients ``[..., (L+1)**2]``.

    Parameters
    ----------
    sampling : HEALPix (full sky) or Equiangular
        Where the signal lives (HEALPix input in NESTED order).
    lmax : int, optional
        Band limit :math:`L` (default :func:`default_lmax`). On an equiangular grid of bandwidth
        ``b`` the analysis is exact for ``lmax <= b - 1``; larger values raise.
    iterations : int
        Jacobi refinements :math:`a \leftarrow a + \mathcal A(f - \mathcal S a)` (HEALPix only;
        healpy's ``iter``, default 3). Ignored on exact grids. They diverge for
        ``lmax >= 3 nside`` (a ``RuntimeWarning`` says so), as healpy's do.
    backend : {'torch', 'ducc'}
        See :class:`InverseSHT`.
    method : {'jacobi', 'lsq'}
        HEALPix only. ``'jacobi'`` (default): ``iterations`` Jacobi refinements, exactly
        healpy's ``map2alm(iter=iterations)``. ``'lsq'``: the least-squares solution
        :math:`\arg\min_a \|S a - f\|` by conjugate gradients on the normal equations
        (at most ``iterations`` steps, stopping at relative residual ``tol``; a ``RuntimeWarning``
        says when it stops short, so pass e.g. ``iterations=100``, not the default 3); it recovers
        band-limited signals to ~1e-11 even at ``lmax = 3 nside - 1``, where Jacobi stalls.
        Its gradient is computed by a second solve (no unrolling, constant memory).
    tol : float
        Stopping tolerance of ``method='lsq'``.
    """

    def __init__(self, sampling: Sampling, lmax: Optional[int] = None, iterations: int = 3,
                 backend: str = "torch", method: str = "jacobi", tol: float = 1e-12):
        super().__init__(sampling, lmax, analysis=True, backend=backend)
        if method not in ("jacobi", "lsq"):
            raise ValueError(f"method must be 'jacobi' or 'lsq', got {method!r}")
        self.method = method
        self.tol = float(tol)
        exact = self.geometry.exact_lmax
        if exact is not None and self.lmax > exact:
            raise ValueError(
                f"analysis on {sampling!r} is exact only up to lmax={exact}; lmax={self.lmax} "
                f"would alias. Use a grid of bandwidth >= {self.lmax + 1} or lmax <= {exact}."
            )
        iterations = check_int(iterations, "iterations")
        self.iterations = iterations if exact is None else 0
        if (isinstance(sampling, HEALPix) and method == "jacobi" and self.iterations
                and self.lmax >= 3 * sampling.nside):
            # A S has eigenvalues above 2 there, so I - A S amplifies some coefficients each step
            warnings.warn(
                f"Jacobi refinement diverges on {sampling!r} at lmax={self.lmax} >= 3 nside: each of "
                f"the {self.iterations} iterations amplifies some coefficients (at lmax = 4 nside, "
                "10 iterations multiply the error by ~30). Use lmax <= 3 nside - 1, iterations=0, "
                "or method='lsq'.", RuntimeWarning, stacklevel=2)
        self.synthesis = InverseSHT(sampling, self.lmax, backend) if self.iterations else None

    def quadrature(self, x: torch.Tensor) -> torch.Tensor:
        """One quadrature pass :math:`\\mathcal A f` (no refinement)."""
        check_float(x, "signal")
        if x.shape[-1] != self.npix:
            raise ValueError(
                f"signal has {x.shape[-1]} values on its last axis, the sampling {self.sampling!r} "
                f"has {self.npix} pixels"
            )
        if self.backend == "ducc":
            from .ducc_backend import adjoint

            return adjoint(x * self.pixel_weights.to(x.dtype), self._ducc)
        if x.numel() == 0:
            return x.new_zeros(*x.shape[:-1], (self.lmax + 1) ** 2)
        dt = x.dtype
        xs = x[..., self.gather_pix]
        parts_re, parts_im = [], []
        start = 0
        for i, nphi in enumerate(self.nphis):
            nr = len(getattr(self, f"rings_{i}"))
            seg = xs[..., start:start + nr * nphi].reshape(*x.shape[:-1], nr, nphi)
            start += nr * nphi
            G = torch.fft.rfft(seg, dim=-1)
            k = getattr(self, f"fold_k_{i}")
            parts_re.append(G.real[..., k])
            parts_im.append(G.imag[..., k] * self._buf(f"fold_sign_{i}", dt))
        inv = self.ring_inverse
        Fre = torch.cat(parts_re, dim=-2)[..., inv, :]
        Fim = torch.cat(parts_im, dim=-2)[..., inv, :]
        c, s = self._buf("cos_phase", dt), self._buf("sin_phase", dt)
        Fre, Fim = Fre * c - Fim * s, Fre * s + Fim * c  # times e^{-i m phi0}
        Fri = torch.stack([Fre, Fim])
        a = torch.cat([torch.nn.functional.pad(
            torch.einsum("...rm,mlr->...ml", Fri[..., m0:m1], self._buf(f"lam_{c}", dt)), (m0, 0))
            for c, (m0, m1) in enumerate(self.m_blocks)], dim=-2)
        return matrix_to_real(a[0], a[1], self.lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "lsq" and self.iterations:
            return _LeastSquares.apply(x, self)
        a = self.quadrature(x)
        for _ in range(self.iterations):
            a = a + self.quadrature(x - self.synthesis(a))
        return a

    def _normal(self, a: torch.Tensor) -> torch.Tensor:
        # N = A S = w S^T S (HEALPix: equal weights w), symmetric positive definite on the band
        return self.quadrature(self.synthesis(a))

    def _cg(self, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Conjugate gradients for ``N a = b``, batched over leading dims (per-row scalars)."""
        r = b - self._normal(a)
        p = r
        rr = (r * r).sum(-1, keepdim=True)
        bb = (b * b).sum(-1, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
        tol2 = max(self.tol, 10 * torch.finfo(b.dtype).eps) ** 2
        for _ in range(self.iterations):
            if bool((rr <= tol2 * bb).all()):
                break
            q = self._normal(p)
            alpha = rr / (p * q).sum(-1, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
            a = a + alpha * p
            r = r - alpha * q
            rr_new = (r * r).sum(-1, keepdim=True)
            p = r + (rr_new / rr.clamp_min(torch.finfo(b.dtype).tiny)) * p
            rr = rr_new
        if not bool((rr <= tol2 * bb).all()):
            worst = float((rr / bb).max().sqrt())
            warnings.warn(
                f"SHT(method='lsq') stopped after iterations={self.iterations} conjugate-gradient "
                f"steps at relative residual {worst:.1e} > tol={math.sqrt(tol2):.1e}: the coefficients "
                "are not the least-squares solution, and the gradient (computed for a converged "
                "solve) does not match them. Raise iterations (e.g. SHT(sampling, lmax, 100, "
                "method='lsq')) or lower lmax.", RuntimeWarning, stacklevel=3)
        return a

    def extra_repr(self) -> str:
        out = super().extra_repr() + (f", iterations={self.iterations}" if self.iterations else "")
        return out + (f", method='lsq', tol={self.tol:g}" if self.method == "lsq" else "")


class _LeastSquares(torch.autograd.Function):
    r""":math:`a = N^{-1} A f` (the least-squares coefficients); backward
    :math:`\bar f = A^\top N^{-1} \bar a` by a second solve (``A^T = w S``: equal weights)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sht: "SHT"):
        ctx.sht = sht
        with torch.no_grad():
            b = sht.quadrature(x)
            return sht._cg(b, b)

    @staticmethod
    def backward(ctx, grad):
        sht = ctx.sht
        with torch.no_grad():
            z = sht._cg(grad, grad)
            w = float(sht.geometry.weight[0])
            return w * sht.synthesis(z), None


_CACHE: dict = {}


def _cached(cls, sampling: Sampling, lmax: Optional[int], *args):
    key = (cls, repr(sampling), lmax, args)
    mod = _CACHE.get(key)
    if mod is None:
        if len(_CACHE) > 16:
            _CACHE.clear()
        mod = cls(sampling, lmax, *args)
        _CACHE[key] = mod
    return mod


def sht(x: torch.Tensor, sampling: Sampling, lmax: Optional[int] = None, iterations: int = 3,
        method: str = "jacobi") -> torch.Tensor:
    """Functional analysis ``[..., npix] -> [..., (L+1)**2]`` (modules cached per sampling);
    see :class:`SHT`."""
    return _cached(SHT, sampling, lmax, iterations, "torch", method).to(x.device)(x)


def isht(coeffs: torch.Tensor, sampling: Sampling, lmax: Optional[int] = None) -> torch.Tensor:
    """Functional synthesis ``[..., (L+1)**2] -> [..., npix]``; see :class:`InverseSHT`."""
    check_float(coeffs, "coefficients")
    if lmax is None:
        from .coefficients import lmax_from_size

        lmax = lmax_from_size(coeffs.shape[-1])
    return _cached(InverseSHT, sampling, lmax).to(coeffs.device)(coeffs)
