r"""Building blocks for ``[batch, vertices, channels]`` signals: batch normalisation over
channels and the Chebyshev convolution – batch norm – ReLU block."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from .cheb_conv import ChebConv

__all__ = ["VertexBatchNorm", "ChebBlock"]


class VertexBatchNorm(nn.BatchNorm1d):
    r"""Batch normalisation of each channel over the batch *and* the vertices,

    .. math:: y_{b,v,c} = \gamma_c \frac{x_{b,v,c} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c,

    with :math:`\mu_c, \sigma_c^2` the mean and variance of channel :math:`c` over all
    :math:`(b, v)`. Same statistics as :class:`torch.nn.BatchNorm1d` on ``[B, C, N]``,
    taken directly on the ``[B, N, C]`` layout (no transpose). A permutation of the vertices
    (e.g. a rotation that maps the sampling to itself) leaves the statistics unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"expected [batch, vertices, {self.num_features}] input, got {tuple(x.shape)}"
            )
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)


class ChebBlock(nn.Module):
    r"""Chebyshev graph convolution, then batch norm over channels, then ReLU:

    .. math:: y = \mathrm{ReLU}\big(\mathrm{BN}\big(\textstyle\sum_{k<K} T_k(\tilde L)\, x\, W_k\big)\big).

    Parameters
    ----------
    in_channels, out_channels : int
        Feature sizes.
    K : int
        Polynomial order + 1 (``K=1``: no neighbourhood, a per-vertex linear map).
    batchnorm : bool
        Use :class:`VertexBatchNorm` (the convolution then has no bias: BN's shift replaces it).
    activation : nn.Module, optional
        Nonlinearity after the norm; default :class:`torch.nn.ReLU`; ``nn.Identity()`` for none.

    ``forward(x, L)``: ``x`` is ``[B, N, in_channels]``, ``L`` the rescaled Laplacian of the
    graph at this resolution (see :meth:`deepsphere.graph.SphereGraph.chebyshev_operator`).
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, batchnorm: bool = True,
                 activation: Optional[nn.Module] = None):
        super().__init__()
        self.conv = ChebConv(in_channels, out_channels, K, bias=not batchnorm)
        self.norm = VertexBatchNorm(out_channels) if batchnorm else nn.Identity()
        self.activation = nn.ReLU() if activation is None else activation

    def forward(self, x: Tensor, L) -> Tensor:
        return self.activation(self.norm(self.conv(x, L)))
