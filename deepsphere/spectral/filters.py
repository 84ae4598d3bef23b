r"""Isotropic (zonal) spectral filters, Esteves et al. (2018) style.

A zonal filter multiplies every coefficient of degree :math:`\ell` by a *real* weight:

.. math:: y_{o,\ell m} = \sum_i w_{o i \ell}\, x_{i,\ell m}.

It is the convolution of the signal with a zonal (axially symmetric) kernel
:math:`k(\theta) = \sum_\ell \sqrt{(2\ell+1)/4\pi}\, w_\ell\, Y_{\ell 0}(\theta)`, so it commutes
exactly with every rotation: a Wigner-D matrix acts inside one degree, where the filter is a
multiple of the identity. (A complex weight per degree would rotate each :math:`(m, -m)` pair of
the real basis by an :math:`m`-dependent angle, which commutes with rotations about :math:`z`
only; such a filter is not equivariant and this layer cannot express it.)

*Spectral parametrisation* (``n_anchors``): the weights are given at ``n_anchors`` degrees
equispaced in :math:`[0, L]` and linearly interpolated in between, which makes the filter smooth
in :math:`\ell` and hence localised on the sphere (Esteves et al., 2018).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..sampling import Sampling
from .coefficients import (autocast_on, check_float, check_int, check_layer_dtype, degrees_orders,
                           num_coefficients)
from .transforms import SHT, InverseSHT, default_lmax


def interpolation_matrix(lmax: int, n_anchors: int) -> np.ndarray:
    """``(n_anchors, lmax + 1)`` matrix of linear interpolation from anchor degrees
    ``linspace(0, lmax, n_anchors)`` to every degree ``0..lmax``."""
    if n_anchors < 2:
        raise ValueError(f"n_anchors must be >= 2 (or None for free per-degree weights), got {n_anchors}")
    anchors = np.linspace(0, lmax, n_anchors)
    l = np.arange(lmax + 1)
    M = np.zeros((n_anchors, lmax + 1))
    for j in range(n_anchors):
        e = np.zeros(n_anchors)
        e[j] = 1.0
        M[j] = np.interp(l, anchors, e)
    return M


class ZonalFilter(nn.Module):
    r"""Per-degree real channel mixing of spherical harmonic coefficients.

    Input ``[..., in_channels, (L+1)**2]`` (real coefficients, layout of
    :mod:`.coefficients`), output ``[..., out_channels, (L+1)**2]``.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Band limit :math:`L`.
    n_anchors : int, optional
        Spectral parametrisation: learn the weights at this many degrees and interpolate
        linearly (smooth, localised filters), at most ``lmax + 1``. ``None``: one free
        weight per degree.
    bias : bool
        Add a learnable constant per output channel to the signal (on :math:`c_{00}` as
        :math:`\sqrt{4\pi}\,b`, the only rotation-invariant place for it).
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int,
                 n_anchors: Optional[int] = None, bias: bool = True):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got in={in_channels}, out={out_channels}")
        lmax = check_int(lmax, "lmax")
        self.in_channels, self.out_channels, self.lmax = int(in_channels), int(out_channels), lmax
        self.n_anchors = None if n_anchors is None else int(n_anchors)
        if self.n_anchors is not None and self.n_anchors > lmax + 1:
            # anchors fall between integer degrees: those not next to one get no gradient
            raise ValueError(
                f"n_anchors={self.n_anchors} is more than the lmax + 1 = {lmax + 1} degrees; the "
                "extra anchors would never be used. Use n_anchors <= lmax + 1, or None for one "
                "weight per degree")
        n_w = self.lmax + 1 if n_anchors is None else self.n_anchors
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, n_w))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        if n_anchors is not None:
            # float64, like the transforms' tables: in float32, 1/3 -> 0.33333334 put ~3e-8
            # relative errors into the degree weights of a float64 filter
            self.register_buffer("interp", torch.from_numpy(interpolation_matrix(self.lmax, self.n_anchors)),
                                 persistent=False)
        else:
            self.interp = None
        l, _ = degrees_orders(self.lmax)
        self.register_buffer("degree", torch.from_numpy(l), persistent=False)
        self.reset_parameters()

    def _apply(self, fn, recurse=True):
        # dtype casts reach the weights only: the interpolation table stays float64 (and is cast
        # to the weights' dtype in degree_weights); device moves apply to it as usual
        table = self.interp
        super()._apply(fn, recurse)
        if table is not None and self.interp.dtype != table.dtype:
            self.interp = table.to(self.interp.device)
        return self

    def reset_parameters(self) -> None:
        # unit gain per degree in expectation, like a 1x1 convolution
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_channels))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def degree_weights(self) -> torch.Tensor:
        """The real weights per degree, ``(out_channels, in_channels, lmax + 1)``."""
        if self.interp is None:
            return self.weight
        return self.weight @ self.interp.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_on(x):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.weight.dtype))
        check_float(x, "coefficients")
        n = num_coefficients(self.lmax)
        if x.dim() < 2 or x.shape[-1] != n or x.shape[-2] != self.in_channels:
            raise ValueError(
                f"expected coefficients [..., in_channels={self.in_channels}, (lmax+1)**2={n}], "
                f"got shape {tuple(x.shape)}"
            )
        check_layer_dtype(x, self.weight, "ZonalFilter")
        return self._mix(x)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        # in x's dtype: ZonalConv's compute_dtype runs float32 weights on float64 coefficients
        w = self.degree_weights().to(x.dtype)[..., self.degree]  # (out, in, ncoef)
        y = torch.einsum("oik,...ik->...ok", w, x)
        if self.bias is not None:
            y = torch.cat([y[..., :1] + math.sqrt(4 * math.pi) * self.bias.to(x.dtype)[:, None],
                           y[..., 1:]], dim=-1)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, "
                f"n_anchors={self.n_anchors}, bias={self.bias is not None}")


class ZonalConv(nn.Module):
    r"""Isotropic spherical convolution of signals on a ring sampling:
    :math:`x \mapsto S\,(\text{ZonalFilter})\,A\,x`.

    Input and output are ``[batch, vertices, channels]`` (the layout of
    :class:`deepsphere.nn.ChebConv`, so the two are interchangeable), in the dtype of the
    filter's weights (another dtype is refused, as by ChebConv). The output is band-limited
    to ``lmax``. Exactly equivariant on equiangular grids (for inputs band-limited to ``lmax``);
    on HEALPix as exact as the analysis (``iterations``).

    Parameters
    ----------
    sampling : HEALPix (full sky) or Equiangular
    in_channels, out_channels : int
    lmax : int, optional
        Band limit :math:`L` (default :func:`~deepsphere.spectral.transforms.default_lmax`).
    n_anchors : int, optional
        Spectral parametrisation of the weights (see :class:`ZonalFilter`).
    bias : bool
    iterations : int
        Jacobi refinements of the HEALPix analysis.
    compute_dtype : torch.dtype, optional
        Precision of the transforms and the filter; the output has the input's dtype. ``None``
        (default): the input's dtype. Why ``torch.float64`` for float32 signals: a transform
        rounded at :math:`\epsilon` leaves errors of size :math:`\sim\epsilon\|x\|` in *every*
        coefficient, which the filter multiplies by :math:`w_{\ell'}`. For a signal of degree
        :math:`\ell` the relative error of the output is then about
        :math:`\epsilon\,\|w\|_{\mathrm{rms}} / |w_\ell|`, large where the filter nearly
        removes :math:`\ell` (HEALPix nside 32, :math:`|w_{40}| = 0.1`: 1.4e-6 in float32).
        Computing in float64 leaves only the rounding of the float32 input and output
        (1.8e-7 there), at 1.35x the time on one CPU core. With it set, the transforms' tables stay in
        float64 whatever ``.float()``/``.to(dtype)`` does to the filter's weights.
    backend : {'torch', 'ducc'}
        Where the transforms run (see :class:`~deepsphere.spectral.transforms.InverseSHT`):
        ``'ducc'`` is the fast CPU path through the optional ducc0 package.
    """

    def __init__(self, sampling: Sampling, in_channels: int, out_channels: int,
                 lmax: Optional[int] = None, n_anchors: Optional[int] = None, bias: bool = True,
                 iterations: int = 3, compute_dtype: Optional[torch.dtype] = None,
                 backend: str = "torch"):
        super().__init__()
        if compute_dtype is not None and compute_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"compute_dtype must be torch.float32, torch.float64 or None, got {compute_dtype!r}")
        self.compute_dtype = compute_dtype
        L = default_lmax(sampling) if lmax is None else check_int(lmax, "lmax")
        self.analysis = SHT(sampling, L, iterations, backend=backend)
        self.synthesis = InverseSHT(sampling, L, backend=backend)
        self.filter = ZonalFilter(in_channels, out_channels, L, n_anchors, bias)

    def reset_parameters(self) -> None:
        self.filter.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_on(x):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.filter.weight.dtype))
        check_float(x, "signal")
        npix, cin = self.analysis.npix, self.filter.in_channels
        if x.dim() < 2 or x.shape[-2] != npix or x.shape[-1] != cin:
            raise ValueError(
                f"expected a signal [batch, vertices={npix}, channels={cin}], got shape {tuple(x.shape)}"
            )
        check_layer_dtype(x, self.filter.weight, "ZonalConv")
        dt = self.compute_dtype or x.dtype
        c = self.analysis(x.transpose(-1, -2).to(dt))
        return self.synthesis(self.filter._mix(c)).transpose(-1, -2).to(x.dtype)

    def _apply(self, fn, recurse=True):
        if self.compute_dtype is None:
            return super()._apply(fn, recurse)
        # dtype casts reach the filter's weights only: rounding the transforms' tables to float32
        # would undo compute_dtype (device moves and other conversions apply as usual)
        self.filter._apply(fn, recurse)

        def keep_dtype(t):
            out = fn(t)
            return out if out.dtype == t.dtype else t.to(out.device)

        self.analysis._apply(keep_dtype, recurse)
        self.synthesis._apply(keep_dtype, recurse)
        return self

    def extra_repr(self) -> str:
        return "" if self.compute_dtype is None else f"compute_dtype={self.compute_dtype}"
