r"""Graph constructions beyond DeepSphere's k-NN, aimed at a better equivariance/cost trade-off.

Each returns an operator that :func:`deepsphere.equivariance.equivariance_error` measures and a
:class:`~deepsphere.graph.SphereGraph` whose Laplacian a :class:`deepsphere.nn.ChebConv` can use.

- :func:`density_normalized`: the diffusion-maps correction of Coifman & Lafon (2006),
  :math:`W' = D^{-\alpha} W D^{-\alpha}`, which removes the influence of the sampling density
  (and, for a regular sampling, of the uneven number of neighbours within the kernel) from the
  limit operator. With ``alpha=1`` the random-walk Laplacian tends to the Laplace–Beltrami
  operator whatever the density.
- :func:`cotangent_graph` / :func:`fem_laplacian`: the linear finite-element Laplacian on the
  spherical Delaunay triangulation of the points (its convex hull): stiffness
  :math:`C_{ij} = -\tfrac12(\cot\alpha_{ij} + \cot\beta_{ij})` and lumped mass
  :math:`M_{ii} = A_i/3` (a third of the area of the triangles around :math:`i`). The operator
  :math:`M^{-1}C` converges to :math:`-\Delta_{S^2}` at :math:`O(h^2)`, with about 6 neighbours per
  vertex. Its symmetric form :math:`M^{-1/2} C M^{-1/2}` has the same spectrum (for ChebConv).
- :func:`optimise_edge_weights`: per-edge weights of a fixed graph fitted so that the normalized
  Laplacian maps sampled spherical harmonics of each degree to multiples of themselves (the
  property an equivariant operator has), by gradient descent on the relative residual
  :math:`\|L f - \hat\lambda_\ell f\| / \|L f\|`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..sampling import Sampling
from .sphere_graph import SphereGraph


def density_normalized(graph: SphereGraph, alpha: float = 1.0) -> SphereGraph:
    r"""Graph with weights :math:`w'_{ij} = w_{ij} / (d_i d_j)^\alpha` (:math:`d` the degrees)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    d = graph.degrees
    if np.any(d <= 0):
        raise ValueError("density normalisation needs every vertex to have an edge")
    s = sp.diags(d ** -alpha)
    W = sp.csr_matrix(s @ graph.adjacency @ s)
    recipe = dict(graph.recipe, density_alpha=alpha)
    return SphereGraph(W, graph.sampling, recipe, check=False)


def _triangles(vectors: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    tri = ConvexHull(vectors).simplices
    # orient counter-clockwise seen from outside
    a, b, c = (vectors[tri[:, i]] for i in range(3))
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return tri


def fem_matrices(sampling: Sampling):
    r"""Cotangent stiffness :math:`C` (symmetric, zero row sums) and lumped mass diagonal
    :math:`m` of the linear finite elements on the points' spherical Delaunay triangulation."""
    v = sampling.vectors
    tri = _triangles(v)
    n = len(v)
    # the convex hull keeps one of coincident points: the others would get zero mass (M^-1
    # infinite) and no edge
    missing = np.setdiff1d(np.arange(n), tri)
    if missing.size:
        raise ValueError(
            f"{missing.size} of {n} points are not vertices of the triangulation "
            f"(e.g. {missing[:10].tolist()}): they coincide with other points (the pole ring "
            "of a DH grid, or both pole rings of a CC grid, is 2b copies of one point) or lie "
            "inside the hull. The finite-element Laplacian needs distinct points on the "
            "sphere: use a SOFT or GL grid, HEALPix, or a k-NN graph."
        )
    rows, cols, vals = [], [], []
    area = np.zeros(n)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        p, q, r = v[tri[:, i]], v[tri[:, j]], v[tri[:, k]]
        e1, e2 = q - p, r - p
        cr = np.cross(e1, e2)
        cot = np.einsum("ij,ij->i", e1, e2) / np.linalg.norm(cr, axis=1)  # angle at vertex i
        # the angle at i is opposite the edge (j, k)
        rows += [tri[:, j], tri[:, k]]
        cols += [tri[:, k], tri[:, j]]
        vals += [0.5 * cot, 0.5 * cot]
        if i == 0:
            tri_area = 0.5 * np.linalg.norm(cr, axis=1)
    for i in range(3):
        np.add.at(area, tri[:, i], tri_area / 3)
    W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    C = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    return sp.csr_matrix(C), area


def fem_laplacian(sampling: Sampling, symmetric: bool = False) -> sp.csr_matrix:
    r""":math:`M^{-1} C` (or :math:`M^{-1/2} C M^{-1/2}` with ``symmetric=True``)."""
    C, m = fem_matrices(sampling)
    if symmetric:
        s = sp.diags(m ** -0.5)
        return sp.csr_matrix(s @ C @ s)
    return sp.csr_matrix(sp.diags(1 / m) @ C)


def cotangent_graph(sampling: Sampling) -> SphereGraph:
    r"""The triangulation as a graph with cotangent weights :math:`w_{ij} = \tfrac12(\cot\alpha +
    \cot\beta)` (non-negative on a Delaunay triangulation; the rare negative ones are clipped),
    so that its combinatorial Laplacian is the stiffness matrix :math:`C`."""
    C, _ = fem_matrices(sampling)
    W = -C
    W.setdiag(0)
    W.data = np.clip(W.data, 0, None)
    W.eliminate_zeros()
    return SphereGraph(W, sampling, {"kind": "cotangent"}, check=False)


def optimise_edge_weights(graph: SphereGraph, degrees: Sequence[int], n_signals: int = 8,
                          steps: int = 300, lr: float = 0.02, seed: int = 0,
                          laplacian: str = "normalized", signed: bool = False,
                          verbose: bool = False) -> SphereGraph:
    r"""Per-edge weights minimising the non-isotropy of the normalized Laplacian.

    For random sampled signals :math:`f` of each degree :math:`\ell` the loss is the mean of
    :math:`\|L f - \hat\lambda_\ell f\|^2 / \|L f\|^2` with :math:`\hat\lambda_\ell` the
    least-squares eigenvalue shared by all signals of degree :math:`\ell`: zero exactly when
    :math:`L` acts as a multiple of the identity on each sampled degree, as an equivariant
    operator does. Weights are :math:`w_e = w^0_e \exp(\theta_e)` (positive, one parameter per
    undirected edge, sparsity pattern unchanged), optimised with Adam from the input graph; with
    ``signed=True`` they are :math:`w^0_e (1 + \theta_e)` and may turn negative (like the
    stencils of higher-order discretisations), so the result is an operator, not a graph in
    the strict sense (:class:`SphereGraph` is built without the sign check).
    ``laplacian`` is ``'normalized'`` (:math:`I - D^{-1/2} W D^{-1/2}`) or ``'combinatorial'``
    (:math:`D - W`).
    Check the result on held-out signals and rotations with
    :func:`~deepsphere.equivariance.equivariance_error`.
    """
    import torch

    from ..equivariance.harmonics import DegreeSpace, random_coefficients

    if laplacian not in ("normalized", "combinatorial"):
        raise ValueError(f"laplacian must be 'normalized' or 'combinatorial', got {laplacian!r}")
    sampling = graph.sampling
    W0 = sp.triu(graph.adjacency, k=1).tocoo()
    n = graph.n_vertices
    r = torch.from_numpy(W0.row.astype(np.int64))
    c = torch.from_numpy(W0.col.astype(np.int64))
    w0 = torch.from_numpy(W0.data)
    rng = np.random.default_rng(seed)
    signals = []
    for ell in degrees:
        space = DegreeSpace(sampling, int(ell))
        signals.append(torch.from_numpy(space.synthesize(random_coefficients(int(ell), n_signals, rng)).T.copy()))
    theta = torch.zeros(len(w0), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    idx = torch.stack([torch.cat([r, c]), torch.cat([c, r])])

    def apply_L(w, F):
        d = torch.zeros(n, dtype=w.dtype).index_add_(0, r, w).index_add_(0, c, w)
        vals = torch.cat([w, w])
        if laplacian == "combinatorial":
            WF = torch.zeros_like(F).index_add_(0, idx[0], vals[:, None] * F[idx[1]])
            return d[:, None] * F - WF
        dm = d.clamp_min(1e-12).rsqrt()
        G = dm[:, None] * F
        WG = torch.zeros_like(G).index_add_(0, idx[0], vals[:, None] * G[idx[1]])
        return F - dm[:, None] * WG

    for step in range(steps):
        opt.zero_grad()
        w = w0 * (1 + theta) if signed else w0 * torch.exp(theta)
        loss = 0.0
        for F in signals:
            LF = apply_L(w, F)
            lam = (LF * F).sum() / (F * F).sum()
            loss = loss + (((LF - lam * F) ** 2).sum(0) / (LF ** 2).sum(0)).mean()
        loss = loss / len(signals)
        loss.backward()
        opt.step()
        if verbose and step % 50 == 0:
            print(f"step {step}: loss {loss.item():.4g}")
    w = (w0 * (1 + theta.detach()) if signed else w0 * torch.exp(theta.detach())).numpy()
    W = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([W0.row, W0.col]),
                                                 np.concatenate([W0.col, W0.row]))), shape=(n, n))
    recipe = dict(graph.recipe, edge_weights="optimised-signed" if signed else "optimised",
                  degrees=[int(x) for x in degrees])
    return SphereGraph(sp.csr_matrix(W), sampling, recipe, check=False)
