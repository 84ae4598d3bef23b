r"""Nonlinearities for spectral (coefficient) features, with their equivariance.

All act on real coefficients ``[..., channels, (L+1)**2]`` (or SO(3) coefficients
``[..., channels, so3_size(L)]`` for :class:`SO3GridNonlinearity`).

Approximately equivariant (aliasing of the degrees above L that the activation creates; the
error falls as the grid is refined):

- :class:`S2GridNonlinearity`: synthesis on a Gauss–Legendre grid, pointwise activation,
  analysis back to degree L.
- :class:`SO3GridNonlinearity`: the same on the SO(3) Euler grid.

Exactly equivariant:

- :class:`NormNonlinearity`: scales each degree-ℓ block by a function of its (rotation
  invariant) norm.
- :class:`GatedNonlinearity`: the degree-0 coefficient through an activation, blocks ℓ > 0
  multiplied by a sigmoid of it.
- :class:`QuadraticNonlinearity`: :math:`f \mapsto (f^2)_{\le L}`, the Clebsch–Gordan (Gaunt)
  tensor product of the signal with itself, on a grid exact for degree 3L.
- :class:`TensorProduct`: learnable combinations of the products of channel pairs (same
  construction, bilinear).

Measured errors are in RESULTS.md ("Spectral transforms").
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..sampling import Equiangular
from .coefficients import autocast_on, check_float, check_layer_dtype, degrees_orders, num_coefficients
from .so3 import SO3Analysis, SO3Grid, SO3Synthesis
from .transforms import SHT, InverseSHT


class S2GridNonlinearity(nn.Module):
    r"""Pointwise activation on the sphere: :math:`c \mapsto A_L\,\sigma(S\,c)` on a
    Gauss–Legendre grid of bandwidth ``bandwidth`` (default ``oversampling * (L + 1)``).
    The activation creates degrees above :math:`L` that alias into the analysis, so the map
    is equivariant only up to an error that falls as the grid is refined."""

    def __init__(self, lmax: int, activation: Callable = torch.relu, oversampling: float = 2.0,
                 bandwidth: Optional[int] = None):
        super().__init__()
        self.lmax = int(lmax)
        b = int(round(oversampling * (self.lmax + 1))) if bandwidth is None else int(bandwidth)
        if b < self.lmax + 1:
            raise ValueError(f"bandwidth must be >= lmax + 1 = {self.lmax + 1}, got {b}")
        self.grid = Equiangular(b, "GL")
        self.synthesis = InverseSHT(self.grid, self.lmax)
        self.analysis = SHT(self.grid, self.lmax)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.analysis(self.activation(self.synthesis(x)))

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, grid={self.grid!r}"


class SO3GridNonlinearity(nn.Module):
    """Pointwise activation on SO(3): synthesis on an Euler grid oversampled by
    ``oversampling`` in each angle, activation, exact analysis back to degree ``L``."""

    def __init__(self, lmax: int, activation: Callable = torch.relu, oversampling: float = 1.0):
        super().__init__()
        L = int(lmax)
        self.lmax = L
        n_ag = int(round(oversampling * (2 * L + 2)))
        n_b = int(round(oversampling * (L + 1)))
        grid = SO3Grid(L, n_ag, n_b, n_ag)
        self.synthesis, self.analysis = SO3Synthesis(grid), SO3Analysis(grid)
        self.activation = activation

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.analysis(self.activation(self.synthesis(g)))

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, grid={self.synthesis.grid!r}"


class _PerDegree(nn.Module):
    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = int(lmax)
        l, _ = degrees_orders(self.lmax)
        self.register_buffer("degree", torch.from_numpy(l), persistent=False)

    def _check(self, x: torch.Tensor) -> None:
        check_float(x, "coefficients")
        if x.shape[-1] != num_coefficients(self.lmax):
            raise ValueError(f"expected [..., {num_coefficients(self.lmax)}] coefficients, got {tuple(x.shape)}")

    def block_norms(self, x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
        """Norm of each degree block, ``[..., L+1]`` (rotation invariant)."""
        sq = torch.zeros(*x.shape[:-1], self.lmax + 1, dtype=x.dtype, device=x.device)
        sq = sq.index_add(x.dim() - 1, self.degree, x * x)
        return torch.sqrt(sq + eps)


class NormNonlinearity(_PerDegree):
    r"""Norm nonlinearity: each degree block :math:`c_\ell` of each channel becomes
    :math:`c_\ell\, \sigma(\|c_\ell\| + b_{\ell})/\|c_\ell\|` (degree 0 included, where the
    norm is :math:`|c_{00}|`). Exactly equivariant; ``channels`` learnable biases per degree."""

    def __init__(self, channels: int, lmax: int, activation: Callable = torch.relu):
        super().__init__(lmax)
        self.bias = nn.Parameter(torch.zeros(channels, self.lmax + 1))
        self.activation = activation

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_on(x):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.bias.dtype))
        self._check(x)
        C = self.bias.shape[0]
        if x.dim() < 2 or x.shape[-2] != C:  # the bias would broadcast 1 channel (or a batch) to C
            raise ValueError(f"expected coefficients [..., channels={C}, {num_coefficients(self.lmax)}], "
                             f"got shape {tuple(x.shape)}")
        check_layer_dtype(x, self.bias, "NormNonlinearity")
        n = self.block_norms(x)
        scale = self.activation(n + self.bias.to(x.dtype)) / n
        return x * scale[..., self.degree]


class GatedNonlinearity(_PerDegree):
    r"""Gated nonlinearity: the degree-0 coefficient (a rotation invariant) passes through
    ``activation``; the blocks :math:`\ell > 0` are multiplied by :math:`\mathrm{sigmoid}(
    c_{00})`. Exactly equivariant."""

    def __init__(self, lmax: int, activation: Callable = torch.relu):
        super().__init__(lmax)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        s = x[..., :1]
        return torch.cat([self.activation(s), x[..., 1:] * torch.sigmoid(s)], dim=-1)


class QuadraticNonlinearity(nn.Module):
    r""":math:`f \mapsto (f^2)_{\le L}`: the Clebsch–Gordan (Gaunt) tensor product of the signal
    with itself, truncated to degree :math:`L`. Computed exactly on a Gauss–Legendre grid of
    bandwidth :math:`2L+1` (exact for the degree-:math:`3L` integrands), hence exactly
    equivariant. ``[..., (L+1)**2] -> [..., (L+1)**2]``."""

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = int(lmax)
        grid = Equiangular(2 * self.lmax + 1, "GL")
        self.synthesis = InverseSHT(grid, self.lmax)
        self.analysis = SHT(grid, self.lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.synthesis(x)
        return self.analysis(f * f)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}"


class TensorProduct(nn.Module):
    r"""Learnable Clebsch–Gordan tensor product of channels:
    :math:`y_o = \sum_{i \le j} w_{oij}\, (x_i x_j)_{\le L}`, the products of pairs of input
    signals truncated to degree :math:`L` (Gaunt coefficients), computed exactly on a
    Gauss–Legendre grid of bandwidth :math:`2L+1`. Bilinear and exactly equivariant.
    ``[..., in_channels, (L+1)**2] -> [..., out_channels, (L+1)**2]``."""

    def __init__(self, in_channels: int, out_channels: int, lmax: int):
        super().__init__()
        self.in_channels, self.out_channels, self.lmax = int(in_channels), int(out_channels), int(lmax)
        grid = Equiangular(2 * self.lmax + 1, "GL")
        self.synthesis = InverseSHT(grid, self.lmax)
        self.analysis = SHT(grid, self.lmax)
        i, j = torch.triu_indices(in_channels, in_channels)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, len(i)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=1.0 / len(self.pair_i) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_on(x):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.weight.dtype))
        check_float(x, "coefficients")
        if x.shape[-2:] != (self.in_channels, num_coefficients(self.lmax)):
            raise ValueError(f"expected [..., {self.in_channels}, {num_coefficients(self.lmax)}], got {tuple(x.shape)}")
        check_layer_dtype(x, self.weight, "TensorProduct")
        f = self.synthesis(x)                                    # [..., C, npix]
        prod = f[..., self.pair_i, :] * f[..., self.pair_j, :]   # [..., P, npix]
        y = torch.einsum("op,...pn->...on", self.weight.to(x.dtype), prod)
        return self.analysis(y)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}"


def equivariance_error(op: Callable, x: torch.Tensor, rotation, kind: str = "s2") -> float:
    r"""Relative error :math:`\|op(D x) - D\, op(x)\| / \|op(x)\|` with the rotation done in
    harmonic space (``kind='s2'`` for sphere coefficients, ``'so3'`` for SO(3) coefficients)."""
    from .rotation import rotate_coefficients
    from .so3 import rotate_so3_coefficients

    if kind not in ("s2", "so3"):  # anything else rotated sphere coefficients as SO(3) ones
        raise ValueError(f"kind must be 's2' (sphere coefficients) or 'so3' (SO(3) coefficients), got {kind!r}")
    rot = rotate_coefficients if kind == "s2" else rotate_so3_coefficients
    with torch.no_grad():
        y = op(x)
        return ((op(rot(x, rotation)) - rot(y, rotation)).norm() / y.norm()).item()
