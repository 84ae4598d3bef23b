"""Optional fast CPU path through ducc0 (``pip install ducc0``): the same transforms as the torch
path, as autograd functions (the backward of synthesis is ducc's adjoint synthesis and vice
versa). Import-guarded: nothing here is needed unless ``backend="ducc"`` is asked for."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .coefficients import from_healpy_alm, to_healpy_alm
from .rings import RingGeometry

try:  # optional dependency
    import ducc0.sht.experimental as _ducc_sht
except ImportError:  # pragma: no cover - exercised when ducc0 is absent
    _ducc_sht = None


def available() -> bool:
    """Whether ducc0 is importable."""
    return _ducc_sht is not None


def require() -> None:
    if _ducc_sht is None:
        raise ImportError(
            "backend='ducc' needs the optional package ducc0: pip install ducc0 "
            "(or use backend='torch', which needs nothing else and runs on GPUs)"
        )


class DuccGeometry:
    """Ring description in ducc's format and the permutation sampling order <-> ring-major.
    ``nthreads=None`` follows ``torch.get_num_threads()`` at each call, as the torch backend
    does."""

    def __init__(self, geo: RingGeometry, lmax: int, nthreads: Optional[int] = None):
        require()
        R = geo.nrings
        rows = [None] * R
        for g in geo.groups:
            for i, r in enumerate(g.rings):
                rows[r] = g.pixels[i]
        self.order = np.concatenate(rows)                      # ring-major position -> sampling index
        self.inverse = np.argsort(self.order)                  # sampling index -> ring-major position
        self.nphi = geo.nphi.astype(np.uintp)
        self.ringstart = np.concatenate([[0], np.cumsum(geo.nphi)[:-1]]).astype(np.uintp)
        self.theta = np.ascontiguousarray(geo.theta, dtype=np.float64)
        self.phi0 = np.ascontiguousarray(geo.phi0, dtype=np.float64)
        self.npix = geo.npix
        self.lmax = int(lmax)
        self.nthreads = None if nthreads is None else int(nthreads)
        w = np.empty(geo.npix)
        w[self.order] = np.repeat(geo.weight, geo.nphi)
        self.pixel_weights = w                                  # sampling order

    def _kw(self):
        return dict(theta=self.theta, lmax=self.lmax, mmax=self.lmax, nphi=self.nphi, phi0=self.phi0,
                    ringstart=self.ringstart, spin=0,
                    nthreads=torch.get_num_threads() if self.nthreads is None else self.nthreads)

    def synthesis(self, alm: np.ndarray) -> np.ndarray:
        """Complex healpy-ordered alm ``(n, nalm)`` -> maps ``(n, npix)`` in sampling order."""
        ring = _ducc_sht.synthesis(alm=alm[:, None, :], **self._kw())[:, 0, :]
        # np.take, not fancy indexing: several times faster on wide batches
        return np.take(ring, self.inverse, axis=1)

    def adjoint(self, maps: np.ndarray) -> np.ndarray:
        """Maps ``(n, npix)`` in sampling order -> :math:`\\sum_p f_p \\overline{Y_{\\ell m}(p)}`."""
        ring = np.take(maps, self.order, axis=1)
        return _ducc_sht.adjoint_synthesis(map=ring[:, None, :], **self._kw())[:, 0, :]


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(-1, x.shape[-1]).cpu().numpy()


def _check_cpu(x: torch.Tensor) -> None:
    if x.device.type != "cpu":
        raise ValueError("backend='ducc' runs on the CPU; use backend='torch' for tensors on "
                         f"{x.device}")


class _Synthesis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coeffs: torch.Tensor, geo: DuccGeometry):
        ctx.geo = geo
        alm = _flat(to_healpy_alm(coeffs.detach(), geo.lmax))
        out = geo.synthesis(np.ascontiguousarray(alm))
        return torch.from_numpy(out).reshape(*coeffs.shape[:-1], geo.npix).to(coeffs.dtype)

    @staticmethod
    def backward(ctx, grad):
        return _Adjoint.apply(grad, ctx.geo), None


class _Adjoint(torch.autograd.Function):
    """Transpose of the real-basis synthesis: :math:`c_k = \\sum_p f_p Y^{\\mathbb R}_k(p)`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, geo: DuccGeometry):
        ctx.geo = geo
        a = geo.adjoint(np.ascontiguousarray(_flat(x)))
        c = from_healpy_alm(torch.from_numpy(a), geo.lmax, dtype=x.dtype)
        return c.reshape(*x.shape[:-1], c.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        return _Synthesis.apply(grad, ctx.geo), None


def synthesis(coeffs: torch.Tensor, geo: DuccGeometry) -> torch.Tensor:
    _check_cpu(coeffs)
    return _Synthesis.apply(coeffs, geo)


def adjoint(x: torch.Tensor, geo: DuccGeometry) -> torch.Tensor:
    _check_cpu(x)
    return _Adjoint.apply(x, geo)
