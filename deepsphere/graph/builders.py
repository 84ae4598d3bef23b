"""Graph builders: which points neighbour which, and with what weight.

All builders are vectorised (k-d tree queries, array arithmetic; no Python loop over
points) and return a :class:`~deepsphere.graph.SphereGraph` with symmetric weights and no
self loops.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp

from .._stack import user_stacklevel
from ..io import atomic_path
from ..sampling import HEALPix, Sampling
from .kernel import heuristic_t, sigma_to_t, tuned_sigma
from .sphere_graph import SphereGraph

SYMMETRIZE = ("average", "maximum")


def _index_dtype(nnz: int):
    return np.int64 if nnz >= 2**31 - 1 else np.int32


def _pair_d2(vectors: np.ndarray, rows: np.ndarray, cols: np.ndarray,
             chunk: int = 1 << 22) -> np.ndarray:
    """Squared chordal distances of point pairs, in chunks (bounded memory at nside 1024+)."""
    out = np.empty(len(rows))
    for s in range(0, len(rows), chunk):
        diff = vectors[rows[s:s + chunk]] - vectors[cols[s:s + chunk]]
        out[s:s + chunk] = np.einsum("ij,ij->i", diff, diff)
    return out


def _assemble(indptr: np.ndarray, cols: np.ndarray, d2: np.ndarray, n: int, t,
              symmetrize: str):
    """Weighted symmetric adjacency from directed edges given row by row (CSR layout:
    the edges of vertex i are ``cols[indptr[i]:indptr[i+1]]``, squared distances ``d2``,
    which are overwritten by the weights).

    Building CSR directly avoids a COO sort; the transpose is a free CSC view."""
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {symmetrize!r}")
    if isinstance(t, str):
        if t != "heuristic":
            raise ValueError(f"unknown kernel width {t!r}")
        t = heuristic_t(d2)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"kernel width t must be a positive finite number, got {t}")
    # Weights written over the distances, and halved before the sum for 'average': at
    # nside 1024 each full-size temporary is gigabytes.
    w = d2
    np.multiply(w, -1.0 / (4.0 * t), out=w)
    np.exp(w, out=w)
    if symmetrize == "average":
        w *= 0.5
    idx = _index_dtype(2 * len(cols))
    W = sp.csr_matrix((w, cols.astype(idx, copy=False), indptr.astype(idx, copy=False)),
                      shape=(n, n))
    del w
    W = W + W.T if symmetrize == "average" else W.maximum(W.T)
    W = sp.csr_matrix(W)
    W.sort_indices()
    return W, float(t)


def _resolve_t(kernel_width, sampling: Sampling, k: Optional[int]):
    """Turn a kernel-width spec into t (float) or 'heuristic'."""
    if isinstance(kernel_width, str):
        if kernel_width == "heuristic":
            return "heuristic"
        if kernel_width == "tuned":
            if k is None:
                raise ValueError("kernel_width='tuned' is defined for k-NN graphs only")
            return sigma_to_t(tuned_sigma(k, equivalent_nside(sampling)))
        raise ValueError(
            f"kernel_width must be 'tuned', 'heuristic', a float t (w = exp(-d^2/4t)) or "
            f"{{'sigma': s}}, got {kernel_width!r}"
        )
    if isinstance(kernel_width, dict):
        if set(kernel_width) != {"sigma"}:
            raise ValueError(f"kernel_width dict must be {{'sigma': value}}, got {kernel_width}")
        sigma = kernel_width["sigma"]
        # sigma enters squared: a negative value would silently act as its absolute value
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) \
                or not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"kernel_width sigma must be a positive finite number (radians, "
                             f"chordal), got {sigma!r}")
        return sigma_to_t(float(sigma))
    if isinstance(kernel_width, bool) or not isinstance(kernel_width, (int, float, np.number)):
        raise TypeError(
            f"kernel_width must be 'tuned', 'heuristic', a float t (w = exp(-d^2/4t)) or "
            f"{{'sigma': s}}, got {kernel_width!r} ({type(kernel_width).__name__})"
        )
    t = float(kernel_width)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"kernel width t must be positive and finite, got {kernel_width!r}")
    return t


_HEALPIX32_NN = None


def _check_sampling(sampling, builder: str) -> None:
    if not isinstance(sampling, Sampling):
        raise TypeError(
            f"{builder} needs a deepsphere Sampling, got {type(sampling).__name__}; wrap raw points "
            "as deepsphere.sampling.Irregular(lon, lat, units='deg')"
        )


def equivalent_nside(sampling: Sampling) -> float:
    """HEALPix nside of the same point density: ``nside`` itself for HEALPix, else
    matched on the median nearest-neighbour distance (so partial or non-uniform
    samplings get a sensible tuned width)."""
    global _HEALPIX32_NN
    if isinstance(sampling, HEALPix):
        return float(sampling.nside)
    from scipy.spatial import cKDTree

    if _HEALPIX32_NN is None:
        v = HEALPix(32).vectors
        _HEALPIX32_NN = float(np.median(cKDTree(v).query(v, k=2)[0][:, 1]))
    v = sampling.vectors
    if len(v) < 2:
        raise ValueError("a graph needs at least 2 points")
    dnn = float(np.median(cKDTree(v).query(v, k=2, workers=-1)[0][:, 1]))
    return 32.0 * _HEALPIX32_NN / dnn


def _nearest_between_components(tree, v: np.ndarray, labels: np.ndarray):
    """For every component, its shortest link to another: ``(i, j, d)`` arrays, one row per
    component, ``i`` in it, ``j`` outside, ``d`` the chordal distance.

    Each point's nearest neighbour outside its own component is looked for among its ``m``
    nearest points, ``m`` doubling for the points that found none yet and may still beat
    their component's best (their ``m``-th distance is a lower bound on their link)."""
    n, nc = len(v), int(labels.max()) + 1
    best_d = np.full(nc, np.inf)
    best_i = np.full(nc, -1, dtype=np.int64)
    best_j = np.full(nc, -1, dtype=np.int64)
    pending = np.arange(n)
    m = min(16, n)
    while pending.size:
        d, idx = tree.query(v[pending], k=m, workers=-1)
        d, idx = d.reshape(len(pending), m), idx.reshape(len(pending), m)
        other = labels[idx] != labels[pending][:, None]
        found = other.any(axis=1)
        first = other.argmax(axis=1)
        p, q = pending[found], idx[found, first[found]]
        dq = d[found, first[found]]
        # the closest candidate of each component (sorted by distance, first of each label)
        order = np.lexsort((dq, labels[p]))
        lab = labels[p][order]
        head = np.ones(len(lab), dtype=bool)
        head[1:] = lab[1:] != lab[:-1]
        c, cand = lab[head], order[head]
        better = dq[cand] < best_d[c]
        c, cand = c[better], cand[better]
        best_d[c], best_i[c], best_j[c] = dq[cand], p[cand], q[cand]
        if m >= n:
            break
        rest = pending[~found]
        pending = rest[d[~found, -1] < best_d[labels[rest]]]
        m = min(2 * m, n)
    return best_i, best_j, best_d


def _check_connect(connect) -> bool:
    if not isinstance(connect, (bool, np.bool_)):
        raise TypeError(f"connect must be True or False, got {connect!r} ({type(connect).__name__})")
    return bool(connect)


def _connect(W: sp.csr_matrix, v: np.ndarray, t: float) -> sp.csr_matrix:
    r"""Link the connected components of ``W`` by their nearest points (Borůvka rounds):
    each round adds, for every component, its shortest edge to another component, with the
    kernel weight :math:`\exp(-d^2/4t)`, until one component is left. The added edges form a
    minimum spanning tree of the components (the distance between two components being that
    of their closest points; ties aside), so ``c`` components get ``c - 1`` new edges. A
    connected ``W`` is returned unchanged."""
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    nc, labels = connected_components(W, directed=False)
    if nc == 1:
        return W
    tree = cKDTree(v)
    links = sp.csr_matrix(W.shape)
    while nc > 1:
        i, j, d = _nearest_between_components(tree, v, labels)
        # two components that chose each other keep one link (the DH pole's copies are
        # equidistant from its neighbours, so they may name different pairs)
        a, b = np.minimum(labels[i], labels[j]), np.maximum(labels[i], labels[j])
        order = np.lexsort((d, b, a))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
        i, j = i[order[first]], j[order[first]]
        links = links + sp.csr_matrix((np.ones(len(i)), (i, j)), shape=W.shape)
        nc, labels = connected_components(W + links + links.T, directed=False)
    links = sp.triu(links + links.T).tocoo()  # a pair found from both of its sides, once
    i, j = links.row.astype(np.int64), links.col.astype(np.int64)
    d2 = _pair_d2(v, i, j)
    w = np.exp(-d2 / (4.0 * t))
    # In float32 (the operators' default dtype) a link far below the graph's typical weight
    # is lost in the degree sums: connected on paper, no information passes.
    weak = w < np.finfo(np.float32).eps * np.median(W.data)
    if weak.any():
        import warnings

        warnings.warn(
            f"connect=True: {int(weak.sum())} of the {len(w)} links added between components "
            f"are too long for the kernel (up to {np.sqrt(d2[weak].max()):.3g} chordal, weight "
            f"{w[weak].min():.3g} with t={t:.3g}) and carry no information in float32; widen the "
            "kernel (larger t or sigma) or increase k", stacklevel=user_stacklevel())
    B = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                      shape=W.shape)
    W = sp.csr_matrix(W + B)
    W.sort_indices()
    return W


def healpix_neighbours(sampling: HEALPix, kernel_width: Union[str, float] = "heuristic") -> SphereGraph:
    r"""The DeepSphere v1 graph: each HEALPix pixel linked to its 8 neighbours (7 at the 8
    special pixels) from ``healpy.get_all_neighbours``; on a partial sky, to those present.

    ``kernel_width='heuristic'`` is the v1 width :math:`t = \overline{d^2}/2`.
    """
    import healpy as hp

    if not isinstance(sampling, HEALPix):
        raise TypeError(f"healpix_neighbours needs a HEALPix sampling, got {type(sampling).__name__}")
    pix = sampling.pixels
    nb = hp.get_all_neighbours(sampling.nside, pix, nest=True).T  # (n, 8), -1 = none
    if not sampling.full_sky:  # neighbours outside the partial sky are dropped
        pos = np.minimum(np.searchsorted(pix, nb), len(pix) - 1)
        nb = np.where((nb >= 0) & (pix[pos] == nb), pos, -1)
    # at low nside a pixel can list the same neighbour twice: keep it once
    nb = np.sort(nb, axis=1)
    nb[:, 1:][nb[:, 1:] == nb[:, :-1]] = -1
    ok = nb >= 0
    indptr = np.concatenate([[0], np.cumsum(ok.sum(axis=1))])
    cols = nb[ok].astype(np.int64)
    rows = np.repeat(np.arange(len(pix), dtype=np.int64), ok.sum(axis=1))
    d2 = _pair_d2(sampling.vectors, rows, cols)
    del rows, nb, ok
    t = _resolve_t(kernel_width, sampling, None)
    W, t = _assemble(indptr, cols, d2, sampling.npix, t, "maximum")
    recipe = {"kind": "healpix", "kernel_width": kernel_width, "t": t}
    return SphereGraph(W, sampling, recipe, check=False)


def knn(sampling: Sampling, k: int = 8, kernel_width="tuned", symmetrize: str = "average",
        connect: bool = False) -> SphereGraph:
    r"""k-nearest-neighbour graph on any sampling (DeepSphere v2).

    Parameters
    ----------
    k : int
        Neighbours per vertex (8, 20, 40 are tabulated); must be < npix.
    kernel_width : 'tuned' | 'heuristic' | float | {'sigma': s}
        ``tuned``: the published widths minimising equivariance error (see
        :func:`~deepsphere.graph.kernel.tuned_sigma`); ``heuristic``: :math:`t=\overline{d^2}/2`;
        a float is :math:`t` in :math:`w = \exp(-d^2/4t)`.
    symmetrize : {'average', 'maximum'}
        The k-NN relation is not symmetric; ``average`` is :math:`(W + W^T)/2` (pygsp's
        default, with which the tuned widths were derived), ``maximum`` keeps full weight on
        one-sided edges.
    connect : bool
        The k-NN graph can fall apart: on equiangular grids the 2b copies of a pole, and the
        crowded rings next to it, are each other's nearest neighbours (Driscoll–Healy b = 32,
        k = 8: 4 components); distant clusters of stations too. A disconnected graph is
        reported with a ``UserWarning``. With ``connect=True`` its components are linked by
        their closest points, ``c - 1`` edges for ``c`` components (a minimum spanning tree of
        the components), weighted by the same kernel; a connected graph is left unchanged.
    """
    from scipy.spatial import cKDTree

    _check_sampling(sampling, "knn")
    connect = _check_connect(connect)
    n = sampling.npix
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n < 2:
        raise ValueError(f"a k-NN graph needs at least 2 points; the sampling has {n}")
    if k >= n:
        raise ValueError(f"k={k} neighbours need more than {k} points; the sampling has {n}. "
                         f"Use k <= {n - 1}.")
    t = _resolve_t(kernel_width, sampling, int(k))
    v = sampling.vectors
    tree = cKDTree(v)
    idx_dtype = _index_dtype(2 * n * k)
    cols = np.empty(n * k, dtype=idx_dtype)
    d2 = np.empty(n * k)
    # Query in blocks so the (block, k+1) distance/index arrays stay small at nside 1024+.
    block = max(1, (1 << 24) // (k + 1))
    for s0 in range(0, n, block):
        s1 = min(n, s0 + block)
        dist, idx = tree.query(v[s0:s1], k=k + 1, workers=-1)
        keep = idx != np.arange(s0, s1)[:, None]
        # Points whose own index did not come back (exact ties) drop their farthest neighbour.
        keep[keep.all(axis=1), -1] = False
        cols[s0 * k:s1 * k] = idx[keep]
        d2[s0 * k:s1 * k] = dist[keep] ** 2  # chordal distances straight from the tree
    del tree, dist, idx, keep
    W, t = _assemble(np.arange(n + 1, dtype=np.int64) * k, cols, d2, n, t, symmetrize)
    recipe = {"kind": "knn", "k": int(k), "kernel_width": kernel_width, "t": t,
              "symmetrize": symmetrize}
    if connect:
        W = _connect(W, v, t)
        recipe["connect"] = True
    return SphereGraph(W, sampling, recipe, check=False)


def radius(sampling: Sampling, r: float, kernel_width="heuristic", connect: bool = False) -> SphereGraph:
    """Graph linking all pairs of points within geodesic distance ``r`` (radians).

    ``connect=True`` links its connected components by their closest points, as in
    :func:`knn`; without it a disconnected graph is reported with a ``UserWarning``."""
    from scipy.spatial import cKDTree

    _check_sampling(sampling, "radius")
    connect = _check_connect(connect)
    if isinstance(r, bool) or not isinstance(r, (int, float, np.number)):
        raise TypeError(f"radius r must be a number of radians in (0, pi], got {r!r}")
    if not (0 < r <= np.pi):
        raise ValueError(f"radius r must be in (0, pi] radians, got {r}")
    t = _resolve_t(kernel_width, sampling, None)
    v = sampling.vectors
    pairs = cKDTree(v).query_pairs(2 * np.sin(r / 2), output_type="ndarray").astype(np.int64)
    if len(pairs) == 0:
        raise ValueError(f"no pair of points is within r={r} rad; increase the radius "
                         f"(typical spacing is {sampling.resolution:.3g} rad)")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=sampling.npix))])
    W, t = _assemble(indptr, cols, _pair_d2(v, rows, cols), sampling.npix, t, "maximum")
    recipe = {"kind": "radius", "r": float(r), "kernel_width": kernel_width, "t": t}
    if connect:
        W = _connect(W, v, t)
        recipe["connect"] = True
    return SphereGraph(W, sampling, recipe, check=False)


# ---- recipes ------------------------------------------------------------------------
_RECIPE_KEYS = {
    "healpix": {"kind", "kernel_width"},
    "knn": {"kind", "k", "kernel_width", "symmetrize", "connect"},
    "radius": {"kind", "r", "kernel_width", "connect"},
}
# Keys a recipe may carry for downstream users (Laplacian choice), ignored by builders.
_PASSTHROUGH = {"laplacian", "lmax", "scale"}


def build(sampling: Sampling, recipe: dict, cache_dir: Optional[Union[str, Path]] = None) -> SphereGraph:
    """Build a graph from a recipe such as ``{"kind": "knn", "k": 20, "kernel_width": "tuned"}``.

    ``kind`` is ``healpix`` (8 neighbours), ``knn`` or ``radius``; other keys are the
    builder's arguments. With ``cache_dir`` the adjacency is stored on disk under a hash of
    (sampling recipe, graph recipe) and loaded on the next call.
    """
    if not isinstance(recipe, dict) or "kind" not in recipe:
        raise ValueError(f"a graph recipe is a dict with a 'kind' in {sorted(_RECIPE_KEYS)}, got {recipe!r}")
    kind = recipe["kind"]
    if isinstance(kind, str) and ":" in kind:  # a user's builder, "package.module:function"
        return _build_plugin(sampling, recipe)
    if kind not in _RECIPE_KEYS:
        raise ValueError(f"unknown graph kind {kind!r}; choose from {sorted(_RECIPE_KEYS)}")
    unknown = set(recipe) - _RECIPE_KEYS[kind] - _PASSTHROUGH
    if unknown:
        raise ValueError(
            f"unknown key(s) {sorted(unknown)} in graph recipe of kind {kind!r}; valid keys: "
            f"{sorted(_RECIPE_KEYS[kind] | _PASSTHROUGH)}"
        )
    args = {k: v for k, v in recipe.items() if k in _RECIPE_KEYS[kind] and k != "kind"}
    path = None
    if cache_dir is not None:
        key = json.dumps({"sampling": sampling.recipe(), "graph": {"kind": kind, **args}},
                         sort_keys=True, default=str)
        path = Path(cache_dir) / f"graph-{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"
        if path.exists():
            try:
                W = sp.load_npz(path)  # allow_pickle=False: a cache never holds objects
                if W.shape != (sampling.npix, sampling.npix):
                    raise ValueError(f"shape {W.shape} for {sampling.npix} points")
            except Exception as e:  # a damaged cache entry is rebuilt, never trusted
                import warnings

                warnings.warn(f"graph cache {path} is unreadable ({type(e).__name__}: "
                              f"{str(e)[:80]}); rebuilding it", stacklevel=2)
            else:
                return SphereGraph(W, sampling, {"kind": kind, **args, "cached": str(path)},
                                   check=False)
    builder = {"healpix": healpix_neighbours, "knn": knn, "radius": radius}[kind]
    g = builder(sampling, **args)
    if path is not None:
        with atomic_path(path) as tmp:  # a crash never leaves a half-written cache entry
            sp.save_npz(tmp, g.adjacency)
    return g


def _build_plugin(sampling: Sampling, recipe: dict) -> SphereGraph:
    """``kind: package.module:function`` calls ``function(sampling, **other_keys)``, which
    returns a :class:`SphereGraph` (or a symmetric scipy.sparse adjacency)."""
    import importlib

    module, _, name = recipe["kind"].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ValueError(f"graph kind {recipe['kind']!r}: cannot import module {module!r} ({e}). "
                         "Is the package installed, or its folder on PYTHONPATH?") from None
    builder = getattr(mod, name, None)
    if not callable(builder):
        raise ValueError(f"graph kind {recipe['kind']!r}: module {module!r} has no function {name!r}")
    args = {k: v for k, v in recipe.items() if k != "kind" and k not in _PASSTHROUGH}
    g = builder(sampling, **args)
    if not isinstance(g, SphereGraph):
        if not sp.issparse(g):
            raise TypeError(f"graph builder {recipe['kind']!r} returned {type(g).__name__}; "
                            "it must return a SphereGraph or a scipy.sparse adjacency")
        g = SphereGraph(g, sampling, dict(recipe))
    if g.n_vertices != sampling.npix:
        raise ValueError(f"graph builder {recipe['kind']!r} returned {g.n_vertices} vertices "
                         f"for a sampling of {sampling.npix} points")
    return g
