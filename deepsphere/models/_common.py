"""What the models share: graph recipes, per-level Chebyshev operators held as buffers,
input checks and rebuilding samplings from their recipes."""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import graph as _graph
from ..nn.pooling import check_vertices
from ..sampling import Equiangular, HEALPix, Sampling

DEFAULT_GRAPH = {"kind": "knn", "k": 8, "kernel_width": "tuned"}


class ChebyshevOperator(nn.Module):
    r"""The rescaled Laplacian :math:`\tilde L = 2L/\lambda_{max} - I` of one graph, held as
    three non-persistent buffers (CSR ``crow_indices``, ``col_indices``, ``values``).

    Non-persistent: ``.to(device)`` / ``.double()`` move and cast it, but it is left out of
    the ``state_dict`` (checkpoints keep the recipe, not the matrix). Calling the module
    returns the torch sparse CSR view, rebuilt each time because sparse CSR tensors cannot
    be deep-copied.
    """

    def __init__(self, g, laplacian: str = "normalized", lmax: Optional[float] = None,
                 scale: float = 1.0):
        super().__init__()
        L = g.chebyshev_operator(kind=laplacian, lmax=lmax, scale=scale, dtype=torch.float32)
        self.n = int(L.shape[0])
        self.laplacian = laplacian
        self.register_buffer("crow_indices", L.crow_indices(), persistent=False)
        self.register_buffer("col_indices", L.col_indices(), persistent=False)
        self.register_buffer("values", L.values(), persistent=False)

    def forward(self) -> Tensor:
        return torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values,
                                       size=(self.n, self.n))

    def extra_repr(self) -> str:
        return f"n={self.n}, nnz={self.values.numel()}, laplacian={self.laplacian!r}"


def graph_recipe(graph: Optional[dict], laplacian: str) -> tuple:
    """A copy of the graph recipe (default :data:`DEFAULT_GRAPH`) and the Laplacian kind;
    a ``laplacian`` key in the recipe wins over the argument."""
    recipe = copy.deepcopy(DEFAULT_GRAPH if graph is None else dict(graph))
    if not isinstance(recipe, dict) or "kind" not in recipe:
        raise ValueError(f"graph must be a recipe dict with a 'kind', e.g. {DEFAULT_GRAPH}; got {graph!r}")
    laplacian = recipe.pop("laplacian", laplacian)
    return recipe, laplacian


def build_operators(samplings: Sequence[Sampling], recipe: dict, laplacian: str) -> nn.ModuleList:
    """One :class:`ChebyshevOperator` per sampling, each at that sampling's own size.

    The recipe's optional ``lmax`` (fixed :math:`\lambda_{max}`, e.g. 2 for a normalized
    Laplacian) and ``scale`` (DeepSphere v1 used 0.75) set the rescaling."""
    ops = []
    for s in samplings:
        g = _graph.build(s, recipe)
        op = ChebyshevOperator(g, laplacian, recipe.get("lmax"), recipe.get("scale", 1.0))
        assert op.n == s.npix, f"graph of {op.n} vertices built on {s!r}"
        ops.append(op)
    return nn.ModuleList(ops)


def check_input(x: Tensor, sampling: Sampling, in_channels: int) -> None:
    """``x`` must be ``[batch, sampling.npix, in_channels]``; clear errors otherwise."""
    check_vertices(x, sampling)
    if x.shape[2] != in_channels:
        raise ValueError(
            f"input has {x.shape[2]} channels on axis 2 but the model was built with "
            f"in_channels={in_channels}. Layout is [batch, vertices, channels]."
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"input must be a floating-point tensor, got {x.dtype}")


def sampling_from_recipe(recipe: dict, sampling: Optional[Sampling] = None) -> Sampling:
    """Rebuild a sampling from :meth:`Sampling.recipe`. Full-sky HEALPix and equiangular
    grids rebuild from the recipe alone; partial skies and irregular points must be passed
    as ``sampling`` and are checked against the recipe."""
    if sampling is not None:
        if sampling.recipe() != recipe:
            raise ValueError(
                f"the sampling passed ({sampling.recipe()}) differs from the one the model was "
                f"built on ({recipe})"
            )
        return sampling
    name = recipe.get("name")
    if name == "healpix" and "pixels_hash" not in recipe:
        return HEALPix(recipe["nside"], levels=recipe.get("levels", 0))
    if name == "equiangular":
        return Equiangular(recipe["bandwidth"], recipe["kind"])
    raise ValueError(
        f"a {name!r} sampling ({recipe}) cannot be rebuilt from its recipe alone (its points are "
        "not in it); pass the sampling: Model.from_config(config, sampling=...)"
    )


def check_channels(channels) -> List[int]:
    try:
        ch = [int(c) for c in channels]
    except TypeError:
        raise TypeError(f"channels must be a list of ints, got {channels!r}") from None
    if not ch or min(ch) < 1:
        raise ValueError(f"channels must be a non-empty list of positive ints, got {channels!r}")
    return ch
