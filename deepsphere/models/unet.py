r"""Spherical U-Net: per-vertex segmentation with an encoder–decoder over the sampling's
hierarchy and skip connections."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..nn.blocks import ChebBlock
from ..nn.pooling import HierarchyUnpool
from ..sampling import Sampling
from ._common import (build_operators, pooling_chain, check_channels, check_in_channels, check_input, check_outputs,
                      graph_recipe, operator)
from .base import SphereModel


class SphericalUNet(SphereModel):
    r"""U-Net on the sphere.

    With :math:`D` = ``len(channels)`` resolution levels (so :math:`D-1` poolings by 4):

    - encoder: at level :math:`i` a :class:`~deepsphere.nn.ChebBlock` to ``channels[i]``,
      then pooling to level :math:`i+1` (none after the last, the bottleneck);
    - decoder: from level :math:`i+1` unpool to level :math:`i`, concatenate the encoder's
      level-:math:`i` features (skip connection), and a ChebBlock to ``channels[i]``;
    - head: a per-vertex linear map to ``n_classes`` logits.

    Every level has its own graph, built from ``graph`` on ``sampling.hierarchy(D-1)[i]``.

    Parameters
    ----------
    sampling : Sampling
        Hierarchical, closed for ``len(channels) - 1`` poolings.
    in_channels, n_classes : int
    channels : sequence of int
        Features per level, finest first; its length is the depth.
    K : int
        Chebyshev polynomial order + 1.
    graph : dict
        Graph recipe for :func:`deepsphere.graph.build`.
    laplacian : {'normalized', 'combinatorial'}
    pooling : {'average', 'max'}
        Encoder pooling. Unpooling copies each coarse value to its children (nearest); max
        unpooling is not offered because the decoder's channels differ from the encoder's
        at the same level, so the argmax indices would not line up.
    batchnorm : bool

    Shape: ``[B, sampling.npix, in_channels] -> [B, sampling.npix, n_classes]`` (logits).
    """

    def __init__(self, sampling: Sampling, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 32, 64), K: int = 5, graph: Optional[dict] = None,
                 laplacian: str = "normalized", pooling: str = "average",
                 batchnorm: bool = True):
        super().__init__()
        in_channels = check_in_channels(in_channels)
        channels = check_channels(channels)
        n_classes = check_outputs(n_classes, "n_classes")
        recipe, laplacian = graph_recipe(graph, laplacian)
        self._store_config(sampling, in_channels=int(in_channels), n_classes=int(n_classes),
                           channels=channels, K=int(K), graph=recipe, laplacian=laplacian,
                           pooling=pooling, batchnorm=bool(batchnorm))
        self.in_channels = int(in_channels)
        self.depth = len(channels)
        self.pools = nn.ModuleList(pooling_chain(sampling, self.depth - 1, pooling,
                                                 lambda i: i + 1))  # a pooling per level below the first
        levels = [sampling] + [p.coarse_sampling for p in self.pools]
        self.unpools = nn.ModuleList(HierarchyUnpool(s, 1, "nearest") for s in levels[:-1])
        self.samplings = levels
        self.operators = build_operators(levels, recipe, laplacian, int(K))
        ins = [self.in_channels] + channels[:-1]
        self.encoder = nn.ModuleList(ChebBlock(i, o, K, batchnorm) for i, o in zip(ins, channels))
        self.decoder = nn.ModuleList(
            ChebBlock(channels[i + 1] + channels[i], channels[i], K, batchnorm)
            for i in range(self.depth - 1)
        )
        self.classifier = nn.Linear(channels[0], int(n_classes))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.sampling, self.in_channels)
        skips = []
        for i in range(self.depth):
            x = self.encoder[i](x, operator(self.operators, i))
            if i < self.depth - 1:
                skips.append(x)
                x = self.pools[i](x)
        for i in reversed(range(self.depth - 1)):
            x = self.unpools[i](x)
            x = self.decoder[i](torch.cat([x, skips[i]], dim=2), operator(self.operators, i))
        return self.classifier(x)
