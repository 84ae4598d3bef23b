"""What the models share: graph recipes, per-level Chebyshev operators held as
non-persistent buffers (so ``.to(device)`` moves them and checkpoints stay small), input
checks and rebuilding samplings from their recipes."""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import graph as _graph
from ..nn.operator import SparseOperator
from ..nn.pooling import HierarchyPool, check_vertices
from ..sampling import Equiangular, HEALPix, Sampling

DEFAULT_GRAPH = {"kind": "knn", "k": 8, "kernel_width": "tuned"}


def graph_recipe(graph: Optional[dict], laplacian: str) -> tuple:
    """A copy of the graph recipe (default :data:`DEFAULT_GRAPH`) and the Laplacian kind;
    a ``laplacian`` key in the recipe wins over the argument."""
    if graph is not None and not isinstance(graph, dict):
        raise TypeError(f"graph must be a recipe dict with a 'kind', e.g. {DEFAULT_GRAPH}; got "
                        f"{graph!r} ({type(graph).__name__})")
    recipe = copy.deepcopy(DEFAULT_GRAPH if graph is None else dict(graph))
    if "kind" not in recipe:
        raise ValueError(f"graph must be a recipe dict with a 'kind', e.g. {DEFAULT_GRAPH}; got {graph!r}")
    laplacian = recipe.pop("laplacian", laplacian)
    return recipe, laplacian


def pooling_chain(sampling: Sampling, n: int, mode: str, max_channels) -> List[HierarchyPool]:
    """``n`` successive poolings by one level each from ``sampling``. A hierarchy too short
    for them is refused with the depth it allows: ``max_channels(i)`` is the longest
    ``channels`` list that needs only ``i`` poolings."""
    pools, level = [], sampling
    for i in range(n):
        try:
            pools.append(HierarchyPool(level, 1, mode))
        except ValueError as e:
            raise ValueError(f"{n} poolings from {sampling!r} are not possible, only {i} ({e}). "
                             f"Give at most {max_channels(i)} entries in channels, or use a finer "
                             f"sampling") from e
        level = pools[-1].coarse_sampling
    return pools


def build_operators(samplings: Sequence[Sampling], recipe: dict, laplacian: str,
                    K: int = 2) -> nn.ModuleList:
    r"""One :class:`~deepsphere.nn.SparseOperator` per sampling, each at that sampling's own
    size: the rescaled Laplacian :math:`\tilde L = a(2L/\lambda_{max} - I)` of the graph the
    recipe builds there, held as non-persistent buffers.

    The recipe's optional ``lmax`` (fixed :math:`\lambda_{max}`, e.g. 2 for a normalized
    Laplacian) and ``scale`` (DeepSphere v1 used 0.75) set the rescaling. With ``K=1`` the
    convolutions use :math:`T_0 = I` only: no graph is built and the list is empty."""
    ops = []
    if K == 1:
        return nn.ModuleList(ops)
    for i, s in enumerate(samplings):
        try:
            g = _graph.build(s, recipe)
        except ValueError as e:
            if len(samplings) == 1:  # one level: "fewer levels" would be no advice
                raise ValueError(f"cannot build the graph {recipe} on {s!r}: {e}") from e
            raise ValueError(
                f"cannot build the graph {recipe} at level {i} of {len(samplings)} ({s!r}, after "
                f"{i} pooling(s)): {e} Use fewer levels (shorter channels) or another graph recipe."
            ) from e
        Lt = g.chebyshev_matrix(laplacian, recipe.get("lmax"), recipe.get("scale", 1.0))
        if Lt.shape[0] != s.npix:
            raise ValueError(f"the graph recipe {recipe} gave {Lt.shape[0]} vertices on {s!r}")
        ops.append(SparseOperator(Lt, check_symmetric=False))  # graph Laplacians are symmetric
    return nn.ModuleList(ops)


def operator(operators: nn.ModuleList, i: int) -> Optional[SparseOperator]:
    """The operator of level ``i``, or None when there are none (``K=1``)."""
    return operators[i] if len(operators) else None


def check_input(x: Tensor, sampling: Sampling, in_channels: int) -> None:
    """``x`` must be ``[batch, sampling.npix, in_channels]``; clear errors otherwise."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}; convert it with "
                        "torch.as_tensor(x, dtype=torch.float32)")
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


def _is_count(n) -> bool:
    """``n`` is a positive whole number (``4`` or ``4.0``; not ``4.5``, ``True`` or ``"4"``)."""
    try:
        return not isinstance(n, (bool, str)) and int(n) == n and int(n) >= 1
    except (TypeError, ValueError):
        return False


def check_outputs(n, name: str) -> int:
    """A positive number of outputs (classes or regression targets)."""
    if not _is_count(n):
        raise ValueError(f"{name} must be a positive int (the number of model outputs), got {n!r}")
    return int(n)


def check_in_channels(n) -> int:
    """A positive number of input features per vertex (never truncated: 2.5 is refused)."""
    if not _is_count(n):
        raise ValueError(f"in_channels must be a positive int (input features per vertex), "
                         f"got {n!r}")
    return int(n)


def check_channels(channels) -> List[int]:
    try:
        ch = list(channels)
    except TypeError:
        raise TypeError(f"channels must be a list of ints, got {channels!r}") from None
    # int() would truncate 4.5 to 4 silently
    if not ch or not all(_is_count(c) for c in ch):
        raise ValueError(f"channels must be a non-empty list of positive ints, got {channels!r}")
    return [int(c) for c in ch]
