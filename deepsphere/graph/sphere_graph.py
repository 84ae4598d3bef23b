"""A weighted undirected graph on a sampling of the sphere, and its Laplacians."""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from .._stack import user_stacklevel

LAPLACIANS = ("normalized", "combinatorial")


class SphereGraph:
    r"""Weighted undirected graph :math:`G = (V, E, W)` whose vertices are the points of a
    :class:`~deepsphere.sampling.Sampling`.

    Parameters
    ----------
    adjacency : scipy.sparse matrix, shape ``(n, n)``
        Symmetric, non-negative weights with an empty diagonal (no self loops).
    sampling : Sampling, optional
        Where the vertices are; ``None`` for a graph given without geometry.
    recipe : dict, optional
        How the graph was built (kept for caching and checkpoints).
    check : bool
        Verify symmetry, sign, finiteness and the absence of self loops (recommended for
        user-supplied matrices; builders skip it since they guarantee it).

    Attributes
    ----------
    isolated : ndarray
        Vertices without an edge.
    n_components : int
        Number of connected components; a graph with more than one (or with isolated
        vertices) is reported with a ``UserWarning`` on construction, since a graph filter
        never moves information between components.

    Notes
    -----
    Laplacians:

    - combinatorial :math:`L = D - W`,
    - symmetric normalized :math:`L = I - D^{-1/2} W D^{-1/2}` (spectrum in :math:`[0, 2]`),

    with :math:`D = \operatorname{diag}(W \mathbf{1})`. The Chebyshev operator is the
    rescaled :math:`\tilde L = a\,(2L/\lambda_{max} - I)`, whose spectrum lies in
    :math:`[-a, a]`.
    """

    def __init__(self, adjacency, sampling=None, recipe: Optional[dict] = None, check: bool = True):
        W = sp.csr_matrix(adjacency, dtype=np.float64)
        if check:
            _check_adjacency(W)
        W.sum_duplicates()
        W.sort_indices()
        self.adjacency: sp.csr_matrix = W
        self.sampling = sampling
        self.recipe = dict(recipe or {})
        if sampling is not None and sampling.npix != W.shape[0]:
            raise ValueError(
                f"adjacency has {W.shape[0]} vertices but the sampling has {sampling.npix} points"
            )
        self._laplacians: dict = {}
        self._lmax: dict = {}
        self.isolated = np.flatnonzero(self.degrees == 0)
        # A k-NN graph can split silently (the 2b coincident copies of a DH pole, or the
        # tight polar rings of an equiangular grid, are each other's nearest neighbours):
        # a graph filter then never moves information between the pieces.
        # csgraph counts a stored 0 as an edge; a weight that underflowed links nothing
        linked = W
        if W.nnz and not W.data.all():
            linked = W.copy()
            linked.eliminate_zeros()
        self.n_components, labels = connected_components(linked, directed=False)
        if self.n_components > 1 or self.isolated.size:
            warnings.warn(_disconnected_message(self.n_components, labels, self.isolated),
                          stacklevel=user_stacklevel())

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def from_adjacency(cls, adjacency, sampling=None) -> "SphereGraph":
        """A graph from a user's scipy.sparse (or dense) adjacency, checked: square,
        symmetric, non-negative, finite, no self loops."""
        return cls(adjacency, sampling=sampling, recipe={"kind": "adjacency"}, check=True)

    @classmethod
    def from_pyg(cls, data, sampling=None) -> "SphereGraph":
        """A graph from a ``torch_geometric.data.Data`` with ``edge_index`` (both
        directions) and optional ``edge_weight`` (default 1)."""
        import torch

        ei = data.edge_index
        if ei is None or ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError("data.edge_index must be a [2, E] integer tensor")
        n = int(data.num_nodes)
        if ei.dtype.is_floating_point or ei.dtype.is_complex or ei.dtype == torch.bool:
            raise TypeError(f"data.edge_index must hold integer vertex indices, got {ei.dtype}")
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            raise ValueError(
                f"data.edge_index has vertex indices in [{int(ei.min())}, {int(ei.max())}] but "
                f"the graph has num_nodes={n} (valid indices 0..{n - 1})"
            )
        ew = getattr(data, "edge_weight", None)
        if ew is not None and (not isinstance(ew, torch.Tensor) or tuple(ew.shape) != (ei.shape[1],)):
            # scipy's words ("all index and data arrays must have the same length") named neither
            raise ValueError(
                f"data.edge_weight must be a tensor of shape [E] = [{ei.shape[1]}], one weight per "
                f"column of edge_index, got {tuple(getattr(ew, 'shape', ()))!r} "
                f"({type(ew).__name__})"
                + ("; a [E, 1] edge_attr-style tensor goes in as edge_weight.view(-1)"
                   if isinstance(ew, torch.Tensor) and ew.numel() == ei.shape[1] else "")
            )
        w = np.ones(ei.shape[1]) if ew is None else ew.detach().cpu().double().numpy()
        ei = ei.detach().cpu().numpy()
        W = sp.coo_matrix((w, (ei[0], ei[1])), shape=(n, n)).tocsr()
        # the fix in edge_index terms, not the adjacency's
        _check_adjacency(W, symmetrize=": edge_index must list every edge in both directions, "
                         "with equal weights; e.g. torch_geometric.utils.to_undirected("
                         "edge_index, edge_weight, reduce='mean')")
        return cls(W, sampling=sampling, recipe={"kind": "pyg"}, check=False)

    # ---- basic properties ---------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return self.adjacency.shape[0]

    @property
    def n_edges(self) -> int:
        """Number of undirected edges (stored zero weights link nothing and are not counted)."""
        return int(np.count_nonzero(self.adjacency.data)) // 2

    @property
    def degrees(self) -> np.ndarray:
        """Weighted degrees :math:`d_i = \\sum_j w_{ij}`."""
        return np.asarray(self.adjacency.sum(axis=1)).ravel()

    def __repr__(self) -> str:
        return (f"SphereGraph(n_vertices={self.n_vertices}, n_edges={self.n_edges}, "
                f"recipe={self.recipe}, sampling={self.sampling!r})")

    # ---- Laplacians ---------------------------------------------------------------
    def laplacian(self, kind: str = "normalized") -> sp.csr_matrix:
        """The graph Laplacian (see class notes), cached, scipy CSR float64."""
        _check_kind(kind)
        if kind not in self._laplacians:
            W = self.adjacency
            d = self.degrees
            if kind == "combinatorial":
                off, diag = W, d
            else:
                with np.errstate(divide="ignore"):
                    dinv = np.where(d > 0, 1.0 / np.sqrt(d), 0.0)
                # D^-1/2 W D^-1/2 by scaling the stored weights (no sparse products)
                rows = np.repeat(np.arange(len(d), dtype=W.indices.dtype), np.diff(W.indptr))
                off = sp.csr_matrix((W.data * dinv[rows] * dinv[W.indices], W.indices, W.indptr),
                                    shape=W.shape)
                del rows
                diag = np.ones(len(d))
            L = sp.csr_matrix(sp.diags(diag, format="csr") - off)
            L.sort_indices()
            self._laplacians[kind] = L
        return self._laplacians[kind]

    def lmax(self, kind: str = "normalized", method: str = "lanczos", margin: float = 0.02) -> float:
        r"""Largest eigenvalue of the Laplacian, for Chebyshev rescaling.

        Parameters
        ----------
        method : {'lanczos', 'bound'}
            ``lanczos``: ``scipy.sparse.linalg.eigsh`` (Ritz values approach from below,
            hence ``margin``). ``bound``: 2 for the normalized Laplacian, :math:`2 d_{max}`
            (Gershgorin) for the combinatorial one — safe but loose.
        margin : float
            Relative safety margin applied to the Lanczos estimate:
            :math:`\lambda_{max} (1 + \text{margin})`. Lanczos runs to a relative
            tolerance of ``margin / 2`` (at least 1e-4), so the result bounds the true value
            from above.
        """
        _check_kind(kind)
        if not (isinstance(margin, (int, float)) and 0 <= margin < float("inf")):
            # a negative margin gives an lmax below the spectrum (the Chebyshev terms blow up)
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        if method == "bound":
            return 2.0 if kind == "normalized" else float(2 * self.degrees.max())
        if method != "lanczos":
            raise ValueError(f"method must be 'lanczos' or 'bound', got {method!r}")
        key = (kind, margin)
        if key not in self._lmax:
            L = self.laplacian(kind)
            n = L.shape[0]
            if n <= 256:
                lam = float(np.linalg.eigvalsh(L.toarray())[-1])
            else:
                v0 = np.random.default_rng(0).standard_normal(n)
                tol = max(margin / 2, 1e-4)
                lam = float(spla.eigsh(L, k=1, which="LA", return_eigenvectors=False,
                                       v0=v0, tol=tol)[0])
            self._lmax[key] = lam
        return self._lmax[key] * (1.0 + margin)

    def lmax_lower_bound(self, kind: str = "normalized") -> float:
        r"""A lower bound on :math:`\lambda_{max}` from Rayleigh quotients:
        :math:`\max(\max_i L_{ii},\ \max_{ij \in E} (L_{ii} + L_{jj} - 2L_{ij})/2)`
        (test vectors :math:`e_i` and :math:`e_i - e_j`); one pass over the edges."""
        L = self.laplacian(kind).tocoo()
        diag = L.diagonal()
        off = L.row != L.col
        pairs = (diag[L.row[off]] + diag[L.col[off]] - 2 * L.data[off]) / 2
        return float(max(diag.max(initial=0.0), pairs.max(initial=0.0)))

    def chebyshev_matrix(self, kind: str = "normalized", lmax: Optional[float] = None,
                         scale: float = 1.0) -> sp.csr_matrix:
        r"""Rescaled Laplacian :math:`\tilde L = a (2L/\lambda_{max} - I)` as scipy CSR.

        ``lmax`` (default: estimated, see :meth:`lmax`) must bound the spectrum from above; one
        below :meth:`lmax_lower_bound` is refused. ``scale`` :math:`a \in (0, 1]`.
        """
        if not (isinstance(scale, (int, float, np.floating)) and 0 < scale <= 1):
            raise ValueError(
                f"scale must be in (0, 1] (the spectrum of L~ is [-scale, scale]; above 1 the "
                f"Chebyshev terms grow without bound, 0 erases the graph), got {scale!r}"
            )
        L = self.laplacian(kind)
        lam = self.lmax(kind) if lmax is None else float(lmax)
        if not (lam > 0 and np.isfinite(lam)):
            raise ValueError(f"lmax must be positive and finite, got {lam}")
        safe = self.lmax(kind, method="bound")
        if lmax is not None and lam < safe:  # at or above the safe bound: nothing to check
            low = self.lmax_lower_bound(kind)
            if lam < low * (1 - 1e-9):
                raise ValueError(
                    f"lmax={lam:g} is below the largest eigenvalue of the {kind} Laplacian "
                    f"(at least {low:.4g}): the spectrum of 2L/lmax - I would leave [-1, 1] and "
                    "the Chebyshev terms grow without bound. Leave lmax unset (estimated), "
                    f"or use lmax >= {safe:g} (a safe bound)."
                )
        # a (2L/lam - I): scale the stored values, then shift the diagonal entries
        Lt = L.copy()
        Lt.data *= 2.0 * scale / lam
        Lt.setdiag(Lt.diagonal() - scale)
        return Lt

    def chebyshev_operator(self, kind: str = "normalized", lmax: Optional[float] = None,
                           scale: float = 1.0, dtype=None, device=None):
        r"""Rescaled Laplacian :math:`\tilde L = a (2L/\lambda_{max} - I)` as a torch sparse
        CSR tensor (int64 indices) of ``dtype`` (default float32) on ``device``; the input
        of :class:`deepsphere.nn.ChebConv`."""
        import torch

        return scipy_to_torch_csr(self.chebyshev_matrix(kind, lmax, scale),
                                  dtype=dtype or torch.float32, device=device)

    # ---- interop ------------------------------------------------------------------
    def edge_index(self):
        """PyG ``(edge_index [2, E] int64, edge_weight [E] float64)`` with both directions."""
        import torch

        W = self.adjacency.tocoo()
        ei = torch.from_numpy(np.vstack([W.row, W.col]).astype(np.int64))
        return ei, torch.from_numpy(W.data.copy())

    def to_pyg(self, dtype=None):
        """A ``torch_geometric.data.Data`` with ``edge_index``, ``edge_weight`` and ``pos``
        (unit vectors, when the sampling is known)."""
        import torch
        from torch_geometric.data import Data

        ei, ew = self.edge_index()
        dtype = dtype or torch.float32
        pos = None
        if self.sampling is not None:
            pos = torch.as_tensor(self.sampling.vectors, dtype=dtype)
        return Data(edge_index=ei, edge_weight=ew.to(dtype), pos=pos, num_nodes=self.n_vertices)

    def to_pygsp(self):
        """A ``pygsp.graphs.Graph`` with the same weights (and coordinates when known)."""
        from pygsp import graphs

        coords = None if self.sampling is None else self.sampling.vectors
        return graphs.Graph(self.adjacency, coords=coords)


def scipy_to_torch_csr(M: sp.spmatrix, dtype=None, device=None):
    """A scipy sparse matrix as a torch sparse CSR tensor with int64 indices."""
    import torch

    M = sp.csr_matrix(M)
    with warnings.catch_warnings():
        # torch flags every CSR construction as beta; the operations used here are stable.
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(
            torch.from_numpy(M.indptr.astype(np.int64)),
            torch.from_numpy(M.indices.astype(np.int64)),
            torch.from_numpy(M.data).to(dtype or torch.float32),
            size=M.shape,
            device=device,
        )


def _disconnected_message(n_components: int, labels: np.ndarray, isolated: np.ndarray) -> str:
    """Why a graph is not connected, where, and how to fix it."""
    parts = []
    if n_components > 1:
        sizes = np.bincount(labels)
        smallest = int(np.argmin(sizes))
        shown = ", ".join(str(int(x)) for x in np.sort(sizes)[::-1][:10])
        parts.append(
            f"graph is not connected: {n_components} connected components (sizes {shown}"
            f"{', ...' if n_components > 10 else ''}); the smallest has {sizes[smallest]} "
            f"vertices, e.g. {np.flatnonzero(labels == smallest)[:10].tolist()}"
        )
    if isolated.size:
        parts.append(
            f"{isolated.size} isolated vertices (no edges, or only edges whose kernel weight "
            f"underflowed to 0), e.g. {isolated[:10].tolist()}"
        )
    return (
        "; ".join(parts) + ". A graph filter cannot move information between components, nor to "
        "or from an isolated vertex. Increase k, the radius or the kernel width; link the "
        "components by their nearest points with knn(..., connect=True) or radius(..., "
        "connect=True) (recipe key connect: true); or use another graph or sampling (on an "
        "equiangular grid the crowded polar rings are each other's nearest neighbours; a radius "
        "graph with r above the ring spacing joins them). If the sampling covers separate "
        "regions on purpose (a partial sky of non-adjacent base pixels, stations on several "
        "continents), the components may be those regions and the warning can be ignored."
    )


def _check_kind(kind: str) -> None:
    if kind not in LAPLACIANS:
        raise ValueError(f"Laplacian kind must be one of {LAPLACIANS}, got {kind!r}")


_SYMMETRIZE = ". Symmetrize it, e.g. (W + W.T) / 2 or W.maximum(W.T)."


def _check_adjacency(W: sp.csr_matrix, symmetrize: str = _SYMMETRIZE) -> None:
    """Refuse an adjacency that is not a weighted undirected graph; ``symmetrize`` ends the
    asymmetry message with the fix in the caller's terms."""
    n, m = W.shape
    if n != m:
        raise ValueError(f"adjacency must be square, got shape {W.shape}")
    if n == 0:
        raise ValueError("adjacency is empty (0 vertices)")
    if not np.all(np.isfinite(W.data)):
        raise ValueError("adjacency has NaN or infinite weights")
    if W.data.size and W.data.min() < 0:
        raise ValueError(
            f"adjacency has negative weights (min {W.data.min():g}); graph weights must be >= 0"
        )
    if W.diagonal().any():
        raise ValueError(
            "adjacency has self loops (non-zero diagonal); remove them with W.setdiag(0); "
            "W.eliminate_zeros()"
        )
    asym = abs(W - W.T).tocoo()
    if asym.nnz and asym.data.max() > 1e-10 * max(abs(W).max(), 1e-300):
        a = int(np.argmax(asym.data))
        raise ValueError(
            f"adjacency is not symmetric: max |W - W.T| = {asym.data[a]:g} at "
            f"({asym.row[a]}, {asym.col[a]}){symmetrize}"
        )
