r"""Per-vertex regression on one sampling without pooling (e.g. weather stations)."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from ..nn.blocks import ChebBlock
from ..sampling import Sampling
from ._common import (build_operators, check_channels, check_in_channels, check_input, check_outputs,
                      graph_recipe, operator)
from .base import SphereModel


class StationRegressor(SphereModel):
    r"""Chebyshev blocks at a single resolution, then a per-vertex linear output.

    Meant for irregular samplings (stations), where there is no hierarchy to pool along:
    each block mixes every station with its graph neighbourhood up to ``K-1`` hops,

    .. math:: h^{(l+1)} = \mathrm{ReLU}\big(\mathrm{BN}\big(\textstyle\sum_{k<K} T_k(\tilde L)\,
              h^{(l)} W^{(l)}_k\big)\big), \qquad y = h^{(L)} W_{out} + b.

    ``K=1`` means no graph at all: :math:`T_0 = I`, so the model is the same MLP applied to
    every station independently (the "P=0" baseline of DeepSphere's GHCN experiment); no
    graph is built (``operators`` is empty) and ``graph`` is ignored.

    Parameters
    ----------
    sampling : Sampling
        Any sampling (``Irregular`` stations, HEALPix, ...).
    in_channels, out_channels : int
        Input features and regression targets per vertex.
    channels : sequence of int
        Hidden features of each block.
    K : int
        Chebyshev polynomial order + 1.
    graph : dict
        Graph recipe for :func:`deepsphere.graph.build`.
    laplacian : {'normalized', 'combinatorial'}
    batchnorm : bool

    Shape: ``[B, sampling.npix, in_channels] -> [B, sampling.npix, out_channels]``.
    """

    def __init__(self, sampling: Sampling, in_channels: int, out_channels: int,
                 channels: Sequence[int] = (32, 32), K: int = 5, graph: Optional[dict] = None,
                 laplacian: str = "normalized", batchnorm: bool = True):
        super().__init__()
        in_channels = check_in_channels(in_channels)
        channels = check_channels(channels)
        out_channels = check_outputs(out_channels, "out_channels")
        if int(K) < 1:
            raise ValueError(f"K must be >= 1 (K=1: no graph), got {K}")
        recipe, laplacian = graph_recipe(graph, laplacian)
        self._store_config(sampling, in_channels=int(in_channels), out_channels=int(out_channels),
                           channels=channels, K=int(K), graph=recipe, laplacian=laplacian,
                           batchnorm=bool(batchnorm))
        self.in_channels = int(in_channels)
        self.K = int(K)
        self.operators = build_operators([sampling], recipe, laplacian, self.K)
        ins = [self.in_channels] + channels[:-1]
        self.blocks = nn.ModuleList(ChebBlock(i, o, K, batchnorm) for i, o in zip(ins, channels))
        self.regressor = nn.Linear(channels[-1], int(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.sampling, self.in_channels)
        L = operator(self.operators, 0)
        for block in self.blocks:
            x = block(x, L)
        return self.regressor(x)
