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

Every linear layer is exactly equivariant; the pointwise nonlinearity on the SO(3) grid is
equivariant up to aliasing (see RESULTS.md), which is the only source of error.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..sampling import Sampling
from .filters import ZonalFilter
from .nonlinear import SO3GridNonlinearity
from .so3 import S2Conv, SO3Conv, SO3ToS2, so3_size
from .transforms import SHT, InverseSHT


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
