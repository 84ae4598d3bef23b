r"""Pooling and unpooling on the sphere for signals of shape ``[batch, vertices, channels]``.

Two families:

- **Hierarchical** pooling (:class:`HierarchyPool`, :class:`HierarchyUnpool`, and the
  HEALPix-named :class:`HEALPixPool`, :class:`HEALPixUnpool`) follows a sampling's own
  parent/child relation (:meth:`Sampling.parent_index`): every coarse vertex has exactly
  :math:`4^\ell` descendants after :math:`\ell` levels, and pooling reduces over them,

  .. math:: y_p = \frac{1}{|C(p)|} \sum_{i \in C(p)} x_i \quad\text{(average)}, \qquad
            y_p = \max_{i \in C(p)} x_i \quad\text{(max)},

  where :math:`C(p)` are the children of parent :math:`p`. On HEALPix in NESTED order the
  children of pixel :math:`p` are pixels :math:`4p, \dots, 4p+3` (average pooling equals
  ``healpy.ud_grade``); on Driscoll–Healy / SOFT grids they are 2×2 blocks.
- **Remap** pooling (:class:`RemapPool`) between any two samplings (irregular data, or
  a coarse grid that is not part of a hierarchy): a fixed sparse matrix :math:`P`,
  :math:`y = P x`.

Max pooling returns, when asked, the index of the winning vertex in the fine sampling for
every (batch, coarse vertex, channel), like :class:`torch.nn.MaxPool1d`; max unpooling
scatters values back to those vertices and zeros elsewhere (:class:`torch.nn.MaxUnpool1d`).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..sampling import HEALPix, Sampling

__all__ = [
    "HierarchyPool",
    "HierarchyUnpool",
    "HEALPixPool",
    "HEALPixUnpool",
    "RemapPool",
    "hierarchy_parents",
    "check_vertices",
]

_POOL_MODES = ("average", "max")
_UNPOOL_MODES = ("nearest", "max")
_MODE_ALIASES = {"avg": "average", "mean": "average", "average": "average", "max": "max",
                 "nearest": "nearest"}


def _mode(mode: str, valid: Tuple[str, ...]) -> str:
    m = _MODE_ALIASES.get(mode) if isinstance(mode, str) else None
    if m not in valid:
        raise ValueError(f"mode must be one of {valid}, got {mode!r}")
    return m


def _describe_count(n: int) -> str:
    """Which HEALPix resolution a vertex count matches, for error messages."""
    nside = np.sqrt(n / 12)
    if 12 * int(round(nside)) ** 2 == n:
        return f"a full-sky HEALPix map with {n} vertices has nside={int(round(nside))}"
    return f"{n} vertices is not a full-sky HEALPix size (12*nside**2)"


def check_vertices(x: Tensor, sampling: Sampling, what: str = "input") -> None:
    """Raise a clear error unless ``x`` is ``[batch, vertices, channels]`` with
    ``vertices == sampling.npix``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}; convert it with "
                        "torch.as_tensor(x, dtype=torch.float32)")
    if x.dim() != 3:
        raise ValueError(
            f"{what} must have shape [batch, vertices, channels], got {tuple(x.shape)}; add a "
            "batch axis with x.unsqueeze(0) or a channel axis with x.unsqueeze(-1)"
        )
    n = x.shape[1]
    if n != sampling.npix:
        hint = ""
        if isinstance(sampling, HEALPix):
            hint = f" (the sampling is nside={sampling.nside}; {_describe_count(n)})"
        raise ValueError(
            f"{what} has {n} vertices on axis 1 but the sampling {sampling!r} has "
            f"{sampling.npix}{hint}. Is the layout [batch, vertices, channels]?"
        )


def hierarchy_parents(sampling: Sampling, levels: int = 1) -> Tuple[np.ndarray, Sampling]:
    r"""Map every vertex of ``sampling`` to its ancestor ``levels`` coarsenings up.

    Returns ``(parent, coarse)``: ``parent[i]`` indexes ``coarse.vectors``. Checks that the
    hierarchy is closed: every coarse vertex has exactly :math:`4^{levels}` descendants.
    """
    if isinstance(levels, (bool, np.bool_)) or not isinstance(levels, (int, np.integer)):
        # int(1.5) == 1 would pool once without a word
        raise TypeError(f"levels must be an int (number of poolings by 4), got {levels!r}")
    levels = int(levels)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if not getattr(sampling, "hierarchical", False):
        raise ValueError(
            f"{sampling!r} is not hierarchical (no coarser level / parent map): hierarchical "
            "pooling needs a HEALPix or an even-bandwidth DH/SOFT Equiangular sampling. For "
            "other samplings use deepsphere.nn.RemapPool(source, target)."
        )
    parent = np.arange(sampling.npix, dtype=np.int64)
    level = sampling
    for i in range(levels):
        try:
            step = np.asarray(level.parent_index(), dtype=np.int64)
            coarse = level.coarsen()
        except (NotImplementedError, ValueError) as e:
            raise ValueError(
                f"cannot pool {sampling!r} {levels} time(s): level {i} ({level!r}) cannot be "
                f"coarsened: {e}"
            ) from e
        if step.shape != (level.npix,) or step.min(initial=0) < 0 or step.max(initial=0) >= coarse.npix:
            raise ValueError(
                f"{type(level).__name__}.parent_index() must give one index in [0, "
                f"{coarse.npix}) per vertex ({level.npix}); got shape {step.shape}"
            )
        counts = np.bincount(step, minlength=coarse.npix)
        if not np.all(counts == 4):
            bad = np.flatnonzero(counts != 4)
            raise ValueError(
                f"{level!r} is not closed under its hierarchy: coarse vertices "
                f"{bad[:10].tolist()} have {counts[bad[:10]].tolist()} children instead of 4. "
                "For partial HEALPix skies build the sampling with levels>=" f"{levels} (or "
                "extend the pixel set with deepsphere.sampling.closure)."
            )
        parent = step[parent]
        level = coarse
    return parent, level


class _Hierarchy(nn.Module):
    """Shared set-up: the composed parent map, and a permutation that groups children.

    Since every parent has exactly ``f = 4**levels`` children, sorting the fine vertices by
    parent turns the segment reduction into a reshape ``[B, M, f, C]``. When the children
    are already consecutive (HEALPix NESTED), the permutation is skipped.
    """

    def __init__(self, sampling: Sampling, levels: int = 1):
        super().__init__()
        parent, coarse = hierarchy_parents(sampling, levels)
        self.levels = int(levels)
        self.factor = 4 ** self.levels
        self.fine_sampling = sampling
        self.coarse_sampling = coarse
        self.n_fine = sampling.npix
        self.n_coarse = coarse.npix
        # Index buffers only where children are not already consecutive: at nside 1024 an
        # identity map would cost 100 MB per layer.
        if np.array_equal(parent, np.arange(self.n_fine) // self.factor):
            self.parent = self.perm = None
        else:
            perm = np.argsort(parent, kind="stable")
            self.register_buffer("parent", torch.from_numpy(parent), persistent=False)
            self.register_buffer("perm", torch.from_numpy(perm), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.n_fine} -> {self.n_coarse} vertices, levels={self.levels}"


class HierarchyPool(_Hierarchy):
    r"""Pool by :math:`4^{levels}` along a hierarchical sampling.

    Parameters
    ----------
    sampling : Sampling
        The fine (input) sampling; must be hierarchical (``HEALPix``, DH/SOFT
        ``Equiangular`` with even bandwidth) and closed for ``levels`` coarsenings.
    levels : int
        Number of poolings by 4 at once (factor :math:`4^{levels}`).
    mode : {'average', 'max'}
        Reduction over the children of each coarse vertex.
    return_indices : bool
        With ``mode='max'``, also return the fine-vertex index of each maximum, shape
        ``[batch, coarse_vertices, channels]``, for :class:`HierarchyUnpool` (``mode='max'``).

    Shape: ``[B, sampling.npix, C] -> [B, coarse.npix, C]`` where ``coarse`` is
    :attr:`coarse_sampling` (``sampling.hierarchy(levels)[-1]``).
    """

    def __init__(self, sampling: Sampling, levels: int = 1, mode: str = "average",
                 return_indices: bool = False):
        super().__init__(sampling, levels)
        self.mode = _mode(mode, _POOL_MODES)
        if return_indices and self.mode != "max":
            raise ValueError("return_indices=True needs mode='max' (average pooling has no argmax)")
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        check_vertices(x, self.fine_sampling)
        B, _, C = x.shape
        if self.perm is not None:
            x = x.index_select(1, self.perm)
        if self.mode == "average":
            return x.reshape(B, self.n_coarse, self.factor, C).mean(dim=2)
        if not self.return_indices:
            return x.reshape(B, self.n_coarse, self.factor, C).amax(dim=2)
        # max_pool1d gives the argmax as a position along the (grouped) vertex axis, several
        # times faster than Tensor.max(dim) on CPU; map it back to a fine-vertex index.
        y, pos = F.max_pool1d(x.transpose(1, 2), self.factor, return_indices=True)
        y, pos = y.transpose(1, 2).contiguous(), pos.transpose(1, 2).contiguous()
        return y, (pos if self.perm is None else self.perm[pos])

    def extra_repr(self) -> str:
        s = f"{super().extra_repr()}, mode={self.mode!r}"
        return s + (", return_indices=True" if self.return_indices else "")


class HierarchyUnpool(_Hierarchy):
    r"""Inverse of :class:`HierarchyPool`: from the coarse level back to ``sampling``.

    Parameters
    ----------
    sampling : Sampling
        The fine (output) sampling, the same one the matching pooling took as input.
    levels : int
        Number of levels to go up in resolution (factor :math:`4^{levels}`).
    mode : {'nearest', 'max'}
        ``'nearest'``: every child copies its parent's value (``healpy.ud_grade`` to a
        higher nside). ``'max'``: ``forward(x, indices)`` puts each value at the fine vertex
        that won the max pooling and zeros elsewhere (like :class:`torch.nn.MaxUnpool1d`).

    Shape: ``[B, coarse.npix, C] -> [B, sampling.npix, C]``.
    """

    def __init__(self, sampling: Sampling, levels: int = 1, mode: str = "nearest"):
        super().__init__(sampling, levels)
        self.mode = _mode(mode, _UNPOOL_MODES)

    def forward(self, x: Tensor, indices: Optional[Tensor] = None) -> Tensor:
        check_vertices(x, self.coarse_sampling, "input (coarse level)")
        if self.mode == "nearest":
            if indices is not None:
                raise ValueError("indices are only used with mode='max'")
            if self.perm is None:
                return x.repeat_interleave(self.factor, dim=1)
            return x.index_select(1, self.parent)
        if indices is None:
            raise ValueError(
                "max unpooling needs the indices returned by the max pooling "
                "(HierarchyPool(..., mode='max', return_indices=True))"
            )
        if not isinstance(indices, Tensor) or indices.dtype != torch.int64:
            raise TypeError(
                "indices must be the int64 tensor returned by HierarchyPool(..., mode='max', "
                f"return_indices=True); got {getattr(indices, 'dtype', type(indices).__name__)}"
            )
        if indices.shape != x.shape:
            raise ValueError(
                f"indices must have the shape of x, {tuple(x.shape)}; got {tuple(indices.shape)}"
            )
        self._check_indices(indices)
        out = x.new_zeros(x.shape[0], self.n_fine, x.shape[2])
        return out.scatter(1, indices, x)

    def _check_indices(self, indices: Tensor) -> None:
        """Every index must be a child of its own coarse vertex: torch's scatter reports an
        out-of-range index as a bare error (a device assert on a GPU), and silently lets a
        foreign child overwrite another winner's place."""
        if indices.numel() == 0:
            return
        # one device sync in the common (valid) case; the details only when something is wrong
        outside = (indices < 0) | (indices >= self.n_fine)
        safe = indices.clamp(0, self.n_fine - 1)
        parent = safe // self.factor if self.perm is None else self.parent[safe]
        own = torch.arange(self.n_coarse, device=indices.device).view(1, -1, 1)
        bad = outside | (parent != own)
        if not bool(bad.any()):
            return
        if bool(outside.any()):
            lo, hi = int(indices.min()), int(indices.max())
            raise ValueError(
                f"indices must lie in [0, {self.n_fine}) (vertices of the fine sampling "
                f"{self.fine_sampling!r}); got {lo if lo < 0 else hi}. Pass the indices returned "
                f"by the matching HierarchyPool(..., levels={self.levels}, mode='max', "
                "return_indices=True)."
            )
        b, p, c = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"indices[{b}, {p}, {c}] = {int(indices[b, p, c])} is not a child of its coarse "
            f"vertex: position ({b}, {p}, {c}) must hold one of the {self.factor} fine "
            f"vertices that pool into coarse vertex {p}. Pass the indices returned by the "
            f"matching HierarchyPool(..., levels={self.levels}, mode='max', "
            "return_indices=True)."
        )

    def extra_repr(self) -> str:
        return f"{self.n_coarse} -> {self.n_fine} vertices, levels={self.levels}, mode={self.mode!r}"


def _as_healpix(sampling: Union[HEALPix, int]) -> HEALPix:
    if isinstance(sampling, HEALPix):
        return sampling
    if isinstance(sampling, (int, np.integer)):
        return HEALPix(int(sampling))
    raise TypeError(
        f"expected a deepsphere.sampling.HEALPix or a full-sky nside, got {type(sampling).__name__}; "
        "for other samplings use HierarchyPool or RemapPool"
    )


class HEALPixPool(HierarchyPool):
    r"""HEALPix pooling in NESTED order: each pixel of nside :math:`n/2^{levels}` pools its
    :math:`4^{levels}` descendants (consecutive pixels). Average pooling equals
    ``healpy.ud_grade(m, nside // 2**levels, order_in='NESTED', order_out='NESTED')``.

    ``sampling`` is a :class:`~deepsphere.sampling.HEALPix` (full or closed partial sky) or
    a full-sky ``nside``. Other arguments as in :class:`HierarchyPool`.
    """

    def __init__(self, sampling: Union[HEALPix, int], levels: int = 1, mode: str = "average",
                 return_indices: bool = False):
        super().__init__(_as_healpix(sampling), levels, mode, return_indices)


class HEALPixUnpool(HierarchyUnpool):
    r"""HEALPix unpooling in NESTED order to ``sampling`` (the fine level): ``'nearest'``
    repeats each pixel :math:`4^{levels}` times (``healpy.ud_grade`` upwards), ``'max'``
    undoes :class:`HEALPixPool` with ``return_indices=True``."""

    def __init__(self, sampling: Union[HEALPix, int], levels: int = 1, mode: str = "nearest"):
        super().__init__(_as_healpix(sampling), levels, mode)


class RemapPool(nn.Module):
    r"""Fixed sparse linear map from one sampling to another: :math:`y = P x`.

    For any two samplings (irregular stations onto a coarse grid, one grid onto another).
    :math:`P` has shape ``(target.npix, source.npix)`` and each row sums to 1 (a weighted
    average of source vertices).

    Parameters
    ----------
    source, target : Sampling
        Input and output samplings.
    method : {'nearest', 'knn'}
        ``'nearest'``: every source vertex is assigned to its nearest target vertex, and
        each target averages the sources assigned to it (a Voronoi-cell average; on HEALPix
        NESTED nside :math:`n \to n/2` this is average pooling). Targets that receive no source
        (target finer than source) take the value of their nearest source, or raise,
        depending on ``empty``.
        ``'knn'``: each target averages its ``k`` nearest sources with weights
        :math:`\exp(-d^2 / (4t))` (:math:`d` the chordal distance), :math:`t` = ``width``
        or, if ``None``, the mean squared distance to the ``k`` neighbours.
    k : int
        Number of neighbours for ``'knn'``.
    width : float, optional
        Kernel width :math:`t` for ``'knn'``; ``float('inf')`` gives uniform weights.
    empty : {'nearest', 'raise'}
        For ``'nearest'``: what to do with a target that no source is nearest to.

    The matrix is stored as three non-persistent buffers (``rows``, ``cols``, ``weights``;
    COO) so ``.to(device)`` moves it and checkpoints don't carry it.
    """

    def __init__(self, source: Sampling, target: Sampling, method: str = "nearest", k: int = 4,
                 width: Optional[float] = None, empty: str = "nearest"):
        super().__init__()
        from scipy.spatial import cKDTree

        if method not in ("nearest", "knn"):
            raise ValueError(f"method must be 'nearest' or 'knn', got {method!r}")
        if empty not in ("nearest", "raise"):
            raise ValueError(f"empty must be 'nearest' or 'raise', got {empty!r}")
        self.source, self.target = source, target
        self.method = method
        vs, vt = np.asarray(source.vectors), np.asarray(target.vectors)
        ns, nt = len(vs), len(vt)
        if method == "nearest":
            _, assign = cKDTree(vt).query(vs, k=1)
            counts = np.bincount(assign, minlength=nt)
            rows, cols = assign.astype(np.int64), np.arange(ns, dtype=np.int64)
            w = 1.0 / counts[assign]
            missing = np.flatnonzero(counts == 0)
            if missing.size:
                if empty == "raise":
                    raise ValueError(
                        f"{missing.size} of {nt} target vertices are nearest to no source vertex "
                        f"(first: {missing[:10].tolist()}); the target is finer than the source "
                        "there. Use empty='nearest' or method='knn'."
                    )
                _, near = cKDTree(vs).query(vt[missing], k=1)
                rows = np.concatenate([rows, missing])
                cols = np.concatenate([cols, near.astype(np.int64)])
                w = np.concatenate([w, np.ones(missing.size)])
        else:
            k = int(k)
            if not 1 <= k <= ns:
                raise ValueError(f"k must be in [1, {ns}] (source vertices), got {k}")
            d, nb = cKDTree(vs).query(vt, k=k)
            d, nb = d.reshape(nt, k), nb.reshape(nt, k)
            t = float(np.mean(d**2)) if width is None else float(width)
            if not t > 0:
                raise ValueError(f"width must be positive, got {width!r}")
            w = np.exp(-(d**2) / (4 * t))
            w = w / w.sum(axis=1, keepdims=True)
            rows = np.repeat(np.arange(nt, dtype=np.int64), k)
            cols, w = nb.ravel().astype(np.int64), w.ravel()
        self.n_source, self.n_target = ns, nt
        self.register_buffer("rows", torch.from_numpy(rows), persistent=False)
        self.register_buffer("cols", torch.from_numpy(cols), persistent=False)
        self.register_buffer("weights", torch.from_numpy(w), persistent=False)

    def matrix(self):
        """:math:`P` as a ``scipy.sparse.csr_matrix`` of shape ``(target.npix, source.npix)``."""
        import scipy.sparse as sp

        return sp.csr_matrix(
            (self.weights.cpu().numpy(), (self.rows.cpu().numpy(), self.cols.cpu().numpy())),
            shape=(self.n_target, self.n_source),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_vertices(x, self.source)
        w = self.weights.to(x.dtype).view(1, -1, 1)
        out = x.new_zeros(x.shape[0], self.n_target, x.shape[2])
        return out.index_add(1, self.rows, x.index_select(1, self.cols) * w)

    def extra_repr(self) -> str:
        return f"{self.n_source} -> {self.n_target} vertices, method={self.method!r}, nnz={self.rows.numel()}"
