r"""Rotation-equivariant spectral models (Cohen et al. 2018 style), the exact reference beside
the graph models.

Both take signals ``[batch, vertices, in_channels]`` on a ring sampling (full-sky HEALPix or an
equiangular grid), like the graph models of :mod:`deepsphere.models`.

- :class:`SpectralClassifier`: SHT -> :class:`S2Conv` -> [nonlinearity on SO(3) ->
  :class:`SO3Conv`]* -> nonlinearity -> invariant features (norm of each degree block of each
  channel, i.e. the SO(3) power spectrum) -> linear head. Rotation *invariant* logits.
- :class:`SpectralSegmenter`: the same trunk, then :class:`SO3ToS2`, a :class:`ZonalFilter` to
  ``n_classes`` and synthesis: rotation *equivariant* per-pixel logits ``[batch, vertices,
  n_classes]``.
- :class:`ZonalClassifier`: [:class:`ZonalConv` -> ReLU on the sphere]* -> average over the
  vertices -> linear head. Isotropic filters only, like the graph CNN, at :math:`O(L^3)` per
  layer instead of the SO(3) layers' cost, so the band limit can follow the map's resolution.

Every linear layer is exactly equivariant; the pointwise nonlinearity on the SO(3) grid is
equivariant up to aliasing (see RESULTS.md), which is the only source of error.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..sampling import Sampling
from .filters import ZonalConv, ZonalFilter
from .nonlinear import SO3GridNonlinearity
from .so3 import S2Conv, SO3Conv, SO3ToS2, so3_size
from .transforms import SHT, InverseSHT, default_lmax


class _Trunk(nn.Module):
    def __init__(self, sampling: Sampling, in_channels: int, channels: Sequence[int], lmax: int,
                 oversampling: float, iterations: int):
        super().__init__()
        if len(channels) < 1:
            raise ValueError("channels must list at least one layer width")
        self.lmax = int(lmax)
        self.analysis = SHT(sampling, self.lmax, iterations)
        self.s2conv = S2Conv(in_channels, channels[0], self.lmax)
        self.so3convs = nn.ModuleList(SO3Conv(a, b, self.lmax) for a, b in zip(channels[:-1], channels[1:]))
        self.act = SO3GridNonlinearity(self.lmax, torch.relu, oversampling)
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in channels)

    def _nonlin(self, g: torch.Tensor, i: int) -> torch.Tensor:
        # bias on the invariant degree-0 coefficient, then the pointwise activation on SO(3)
        b = self.bias[i].to(g.dtype)[:, None]
        g = torch.cat([g[..., :1] + b, g[..., 1:]], dim=-1)
        return self.act(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        npix, cin = self.analysis.npix, self.s2conv.in_channels
        if x.dim() != 3 or x.shape[1] != npix or x.shape[2] != cin:
            raise ValueError(
                f"expected a signal [batch, vertices={npix}, channels={cin}], got shape {tuple(x.shape)}"
            )
        c = self.analysis(x.transpose(1, 2))            # [B, C, (L+1)^2]
        g = self._nonlin(self.s2conv(c), 0)              # [B, C0, so3_size]
        for i, conv in enumerate(self.so3convs):
            g = self._nonlin(conv(g), i + 1)
        return g


class SpectralClassifier(nn.Module):
    """Rotation-invariant classifier; see the module docstring.

    Parameters
    ----------
    sampling : HEALPix (full sky) or Equiangular
    in_channels, n_classes : int
    channels : sequence of int
        Widths of the S2Conv and following SO3Conv layers.
    lmax : int
        Band limit of all layers (keep it small: SO(3) transforms cost :math:`O(L^5)`).
    oversampling : float
        Oversampling of the SO(3) grid of the nonlinearity (equivariance vs cost).
    iterations : int
        Jacobi refinements of the HEALPix analysis.
    """

    def __init__(self, sampling: Sampling, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (8, 16), lmax: int = 8, oversampling: float = 2.0,
                 iterations: int = 0):
        super().__init__()
        self.trunk = _Trunk(sampling, in_channels, channels, lmax, oversampling, iterations)
        self.head = nn.Linear(channels[-1] * (lmax + 1), n_classes)

    def invariant_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frobenius norm of each degree block of each channel, ``[B, C * (L+1)]``."""
        g = self.trunk(x)
        L = self.trunk.lmax
        norms = [g[..., (so3_size(l - 1) if l else 0): so3_size(l)].norm(dim=-1) for l in range(L + 1)]
        return torch.stack(norms, dim=-1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.invariant_features(x))


class SpectralSegmenter(nn.Module):
    """Rotation-equivariant dense predictor ``[B, V, in] -> [B, V, n_classes]``; parameters as
    :class:`SpectralClassifier`."""

    def __init__(self, sampling: Sampling, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (8, 16), lmax: int = 8, oversampling: float = 2.0,
                 iterations: int = 0):
        super().__init__()
        self.trunk = _Trunk(sampling, in_channels, channels, lmax, oversampling, iterations)
        self.project = SO3ToS2(lmax)
        self.head = ZonalFilter(channels[-1], n_classes, lmax)
        self.synthesis = InverseSHT(sampling, lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.head(self.project(self.trunk(x)))
        return self.synthesis(c).transpose(1, 2)


class ZonalClassifier(nn.Module):
    r"""Rotation-invariant classifier built from isotropic spherical convolutions: the exact
    counterpart of a graph CNN with a global-average head.

    .. math::
        h_0 = x,\qquad h_{i+1} = \mathrm{ReLU}\big(S\,W_i\,A\,h_i\big),\qquad
        \mathrm{logits} = \Theta\,\mathrm{BN}\Big(\frac{\sum_{v \in P} a_v\,h_n(v)}
        {\sum_{v \in P} a_v}\Big) + \theta_0

    with :math:`A` the analysis and :math:`S` the synthesis at band limit :math:`L`,
    :math:`a_v` the area (quadrature weight) of vertex :math:`v`, and
    :math:`W_i` a :class:`ZonalFilter` (one channel-mixing matrix per degree :math:`\ell`).
    Zonal filters commute with rotations and the ReLU acts pixel by pixel, so the feature maps
    are equivariant up to the grid's aliasing, and their average over the whole sphere
    (:math:`P` = all vertices) is invariant. Each layer costs one :math:`O(L^3)` transform
    per input and per output channel, against :math:`O(L^4)` for the SO(3) layers of
    :class:`SpectralClassifier`, so :math:`L` can follow the map's resolution.

    Parameters
    ----------
    sampling : HEALPix (full sky) or Equiangular
    in_channels, n_classes : int
    channels : sequence of int
        Widths of the zonal convolutions.
    lmax : int, optional
        Band limit (default :func:`~deepsphere.spectral.transforms.default_lmax`).
    n_anchors : int, optional
        Filter weights given at this many degrees and interpolated linearly (smooth filters,
        few parameters), capped at ``lmax + 1``; ``None``: one weight per degree.
    iterations : int
        Jacobi refinements of the HEALPix analysis (0 is a quadrature).
    backend : {'torch', 'ducc'}
        Where the transforms run.
    readout : sequence of int, optional
        Vertices the features are averaged over, weighted by their areas (default all; a
        partial-sky signal padded with zeros averages over its observed vertices only).
    batchnorm : bool
        Batch normalisation of the averaged features before the head (invariant: it acts on
        rotation-invariant numbers).
    """

    def __init__(self, sampling: Sampling, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 16), lmax: Optional[int] = None,
                 n_anchors: Optional[int] = 16, iterations: int = 0, backend: str = "torch",
                 readout: Optional[Sequence[int]] = None, batchnorm: bool = True):
        super().__init__()
        if len(channels) < 1:
            raise ValueError("channels must list at least one layer width")
        widths = [int(in_channels)] + [int(c) for c in channels]
        if n_anchors is not None:  # a low band limit has fewer degrees than anchors
            n_anchors = min(int(n_anchors), (default_lmax(sampling) if lmax is None else lmax) + 1)
        self.convs = nn.ModuleList(
            ZonalConv(sampling, a, b, lmax=lmax, n_anchors=n_anchors, iterations=iterations,
                      backend=backend)
            for a, b in zip(widths[:-1], widths[1:]))
        npix = self.convs[0].analysis.npix
        idx = torch.arange(npix) if readout is None else torch.as_tensor(readout, dtype=torch.long)
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= npix:
            raise ValueError(f"readout must index the sampling's {npix} vertices, got "
                             f"{idx.numel()} indices in [{idx.min().item() if idx.numel() else '-'}, "
                             f"{idx.max().item() if idx.numel() else '-'}]")
        self.register_buffer("readout", idx, persistent=False)
        # quadrature weights: a plain mean over an equiangular grid would overweight the poles
        # and break the invariance (HEALPix: equal areas, a plain mean)
        areas = torch.as_tensor(np.asarray(sampling.areas, dtype=np.float64))[idx]
        self.register_buffer("readout_weights", (areas / areas.sum()).float(), persistent=False)
        # the classes may differ by a few per cent in these averages (as in power spectra):
        # standardising them lets the head see it from the first steps
        self.norm = nn.BatchNorm1d(widths[-1]) if batchnorm else nn.Identity()
        self.head = nn.Linear(widths[-1], n_classes)

    @property
    def lmax(self) -> int:
        return self.convs[0].filter.lmax

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps, ``[B, vertices, channels[-1]]``."""
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)[:, self.readout]
        return self.head(self.norm(torch.einsum("bvc,v->bc", h, self.readout_weights.to(h.dtype))))

    def extra_repr(self) -> str:
        n = self.readout.numel()
        return f"lmax={self.lmax}" + ("" if n == self.convs[0].analysis.npix else f", readout={n} vertices")
