r"""Spherical CNN classifier: Chebyshev blocks and hierarchical pooling, then a global
(rotation-invariant) or fully connected head."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from ..nn.blocks import ChebBlock
from ..sampling import Sampling
from ._common import (build_operators, pooling_chain, check_channels, check_in_channels, check_input, check_outputs,
                      graph_recipe, operator)
from .base import SphereModel

_HEADS = ("global", "fc")


class SphericalCNN(SphereModel):
    r"""DeepSphere classifier.

    For each entry :math:`c_i` of ``channels``: a :class:`~deepsphere.nn.ChebBlock` at
    resolution level :math:`i` (Chebyshev order ``K-1`` on that level's own graph), then a
    pooling by 4 along the sampling's hierarchy. Then the head:

    - ``head="global"``: average over vertices, then a linear layer. The average is invariant
      to any permutation of the vertices, so the whole model is invariant to the rotations
      that map the sampling and its graphs to themselves (DeepSphere's "FCN" variant).
    - ``head="fc"``: flatten ``[vertices x channels]`` and a linear layer (DeepSphere's "CNN"
      variant; not invariant, and tied to the number of vertices).

    Parameters
    ----------
    sampling : Sampling
        Input sampling; hierarchical and closed for ``len(channels)`` poolings
        (HEALPix nside :math:`\ge 2^{len(channels)}`, DH/SOFT equiangular, closed partial skies).
    in_channels, n_classes : int
        Input features per vertex, and output logits.
    channels : sequence of int
        Output channels of each block; ``len(channels)`` blocks and poolings.
    K : int
        Chebyshev polynomial order + 1.
    graph : dict
        Graph recipe for :func:`deepsphere.graph.build`, applied at every level.
    laplacian : {'normalized', 'combinatorial'}
        Laplacian whose rescaling :math:`2L/\lambda_{max} - I` the convolutions use.
    pooling : {'average', 'max'}
    head : {'global', 'fc'}
    batchnorm : bool

    Shape: ``[B, sampling.npix, in_channels] -> [B, n_classes]`` (logits).
    """

    def __init__(self, sampling: Sampling, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 32, 64), K: int = 5, graph: Optional[dict] = None,
                 laplacian: str = "normalized", pooling: str = "average", head: str = "global",
                 batchnorm: bool = True):
        super().__init__()
        in_channels = check_in_channels(in_channels)
        channels = check_channels(channels)
        n_classes = check_outputs(n_classes, "n_classes")
        if head not in _HEADS:
            raise ValueError(f"head must be one of {_HEADS}, got {head!r}")
        recipe, laplacian = graph_recipe(graph, laplacian)
        self._store_config(sampling, in_channels=int(in_channels), n_classes=int(n_classes),
                           channels=channels, K=int(K), graph=recipe, laplacian=laplacian,
                           pooling=pooling, head=head, batchnorm=bool(batchnorm))
        self.in_channels = int(in_channels)
        levels = sampling.hierarchy(0)
        self.pools = nn.ModuleList(pooling_chain(sampling, len(channels), pooling,
                                                 lambda i: i))  # a pooling per block
        levels += [p.coarse_sampling for p in self.pools]
        self.samplings = levels  # [input, after pool 1, ..., after pool len(channels)]
        self.operators = build_operators(levels[:-1], recipe, laplacian, int(K))
        ins = [self.in_channels] + channels[:-1]
        self.blocks = nn.ModuleList(ChebBlock(i, o, K, batchnorm) for i, o in zip(ins, channels))
        n_in = channels[-1] if head == "global" else channels[-1] * levels[-1].npix
        self.head = head
        self.classifier = nn.Linear(n_in, int(n_classes))

    def features(self, x: Tensor) -> Tensor:
        """The feature maps before the head, ``[B, coarsest.npix, channels[-1]]``."""
        check_input(x, self.sampling, self.in_channels)
        for i, (block, pool) in enumerate(zip(self.blocks, self.pools)):
            x = pool(block(x, operator(self.operators, i)))
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = x.mean(dim=1) if self.head == "global" else x.flatten(1)
        return self.classifier(x)
