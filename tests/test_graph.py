"""Graphs and Laplacians checked against brute force, dense linear algebra, pygsp and PyG."""
import warnings

import healpy as hp
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deepsphere import graph
from deepsphere.graph import SphereGraph, tuned_sigma
from deepsphere.sampling import Equiangular, HEALPix, Irregular


def dense_d2(v):
    return np.sum((v[:, None, :] - v[None, :, :]) ** 2, axis=-1)


# ---- builders ----------------------------------------------------------------------
def test_healpix_neighbours_matches_healpy_and_v1_weights():
    nside = 4
    g = graph.healpix_neighbours(HEALPix(nside))
    nb = hp.get_all_neighbours(nside, np.arange(192), nest=True)
    deg = (nb >= 0).sum(0)
    np.testing.assert_array_equal(np.diff(g.adjacency.indptr), deg)
    # 8 vertices of the base grid touch only 3 pixels: their 3 pixels have 7 neighbours
    assert sorted(set(deg)) == [7, 8] and (deg == 7).sum() == 24
    # v1 weights: w = exp(-d^2 / (2 mean d^2)) over edges
    v = np.stack(hp.pix2vec(nside, np.arange(192), nest=True), 1)
    W = g.adjacency.tocoo()
    d2 = np.sum((v[W.row] - v[W.col]) ** 2, 1)
    np.testing.assert_allclose(W.data, np.exp(-d2 / (2 * d2.mean())), rtol=1e-12)
    assert set(zip(W.row, W.col)) == {(i, j) for j in range(192) for i in nb[:, j] if i >= 0}


def test_partial_sky_graph_is_restriction_of_full_graph():
    nside = 8
    pix = np.arange(64, 192)
    full = graph.healpix_neighbours(HEALPix(nside), kernel_width=0.01)
    part = graph.healpix_neighbours(HEALPix(nside, pix), kernel_width=0.01)
    expected = full.adjacency[pix][:, pix]
    assert abs(part.adjacency - expected).max() < 1e-15


@pytest.mark.parametrize("sampling", [HEALPix(4), Equiangular(6, "SOFT"),
                                      Irregular(*np.random.default_rng(0).uniform([-180, -90], [180, 90], (150, 2)).T, units="deg")])
@pytest.mark.parametrize("k", [1, 8, 20])
def test_knn_edges_match_brute_force(sampling, k):
    g = graph.knn(sampling, k=k, kernel_width=0.05, symmetrize="maximum")
    D2 = dense_d2(sampling.vectors)
    np.fill_diagonal(D2, np.inf)
    W = g.adjacency.toarray()
    kth = np.sort(D2, axis=1)[:, k - 1]
    # every vertex keeps its k nearest (ties at the k-th distance may go either way)
    strictly_inside = D2 < kth[:, None] - 1e-12
    assert np.all(W[strictly_inside] > 0)
    assert np.all((W > 0).sum(1) >= k)
    # every edge is a k-NN relation in at least one direction
    i, j = np.nonzero(W)
    assert np.all((D2[i, j] <= kth[i] + 1e-12) | (D2[i, j] <= kth[j] + 1e-12))
    np.testing.assert_allclose(W[i, j], np.exp(-D2[i, j] / (4 * 0.05)), rtol=1e-12)
    assert np.allclose(W, W.T) and not W.diagonal().any()


def test_knn_average_symmetrisation_halves_one_sided_edges():
    s = Irregular([0, 1, 3, 10], [0, 0, 0, 0], units="deg")
    g = graph.knn(s, k=1, kernel_width=1.0, symmetrize="average")
    W = g.adjacency.toarray()
    d2 = dense_d2(s.vectors)
    # 0<->1 mutual nearest, 2->1 and 3->2 one-sided
    assert W[0, 1] == pytest.approx(np.exp(-d2[0, 1] / 4))
    assert W[1, 2] == pytest.approx(0.5 * np.exp(-d2[1, 2] / 4))
    assert W[2, 3] == pytest.approx(0.5 * np.exp(-d2[2, 3] / 4))


def test_tuned_widths_table_and_scaling():
    assert tuned_sigma(20, 64) == 0.01564
    assert tuned_sigma(40, 512) == pytest.approx(0.042432 * 32 / 512)
    assert tuned_sigma(8, 16) == pytest.approx(0.05)
    g = graph.knn(HEALPix(32), k=8, kernel_width="tuned")
    assert g.recipe["t"] == pytest.approx(0.025**2 / (4 * np.log(2)))
    # a full-sphere equiangular grid gets a width scaled by its point spacing
    assert 0 < graph.equivalent_nside(Equiangular(16, "DH")) < 64
    with pytest.warns(UserWarning, match="no tuned kernel width"):
        tuned_sigma(60, 32)


def test_radius_graph_matches_brute_force():
    s = HEALPix(4)
    r = 0.5
    g = graph.radius(s, r, kernel_width=0.1)
    ang = np.arccos(np.clip(s.vectors @ s.vectors.T, -1, 1))
    A = (ang <= r) & ~np.eye(s.npix, dtype=bool)
    np.testing.assert_array_equal(g.adjacency.toarray() > 0, A)


def test_isolated_vertices_reported():
    s = Irregular([0, 0.5, 90], [0, 0, 0], units="deg")
    with pytest.warns(UserWarning, match="1 isolated"):
        graph.radius(s, np.radians(1.0))


def test_k_too_large():
    with pytest.raises(ValueError, match="k=12"):
        graph.knn(HEALPix(1), k=12)
    with pytest.raises(ValueError, match="at least 2 points; the sampling has 1"):
        graph.knn(Irregular([0], [0], units="deg"), k=1)  # was "Use k <= 0"


# ---- Laplacians ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def g8():
    return graph.knn(HEALPix(4), k=8)


def test_laplacians_match_definitions_and_pygsp(g8):
    W = g8.adjacency.toarray()
    d = W.sum(1)
    np.testing.assert_allclose(g8.laplacian("combinatorial").toarray(), np.diag(d) - W, atol=1e-14)
    Ln = np.eye(len(d)) - W / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(g8.laplacian("normalized").toarray(), Ln, atol=1e-14)
    G = g8.to_pygsp()
    G.compute_laplacian("normalized")
    np.testing.assert_allclose(G.L.toarray(), Ln, atol=1e-12)


def test_laplacian_null_space_and_spectrum(g8):
    Lc = g8.laplacian("combinatorial").toarray()
    Ln = g8.laplacian("normalized").toarray()
    np.testing.assert_allclose(Lc @ np.ones(len(Lc)), 0, atol=1e-12)
    np.testing.assert_allclose(Ln @ np.sqrt(g8.degrees), 0, atol=1e-12)
    ev = np.linalg.eigvalsh(Ln)
    assert ev[0] > -1e-12 and ev[-1] <= 2 + 1e-12 and ev[1] > 1e-6  # connected


def test_laplacian_matches_pyg_get_laplacian(g8):
    from torch_geometric.utils import get_laplacian, to_scipy_sparse_matrix

    ei, ew = g8.edge_index()
    li, lw = get_laplacian(ei, ew, normalization="sym", num_nodes=g8.n_vertices)
    Lp = to_scipy_sparse_matrix(li, lw, g8.n_vertices).toarray()
    np.testing.assert_allclose(Lp, g8.laplacian("normalized").toarray(), atol=1e-12)


@pytest.mark.parametrize("kind", ["normalized", "combinatorial"])
def test_lmax_lanczos_close_above_true_value(kind):
    g = graph.knn(HEALPix(8), k=8)  # 768 vertices: Lanczos path
    true = np.linalg.eigvalsh(g.laplacian(kind).toarray())[-1]
    est = g.lmax(kind)
    assert true <= est <= true * 1.03
    assert g.lmax(kind, method="bound") >= true


def test_lmax_combinatorial_reference_nside16():
    # reference.md: true lmax 2.58 at nside 16, k=8 (PyG's default bound gives 3.44)
    g = graph.knn(HEALPix(16), k=8)
    assert g.lmax("combinatorial", margin=0) == pytest.approx(2.58, abs=0.01)


def test_chebyshev_operator_spectrum_and_layout(g8):
    L = g8.chebyshev_operator("normalized", dtype=torch.float64)
    assert L.layout == torch.sparse_csr and L.dtype == torch.float64
    assert L.crow_indices().dtype == torch.int64
    ev = np.linalg.eigvalsh(L.to_dense().numpy())
    assert ev.min() >= -1 - 1e-12 and ev.max() <= 1 + 1e-12 and ev.max() > 0.95
    lam = g8.lmax("normalized")
    ref = 2 * g8.laplacian("normalized").toarray() / lam - np.eye(g8.n_vertices)
    np.testing.assert_allclose(L.to_dense().numpy(), ref, atol=1e-14)
    L3 = g8.chebyshev_operator(scale=0.75, lmax=2.0)
    np.testing.assert_allclose(L3.to_dense().numpy(),
                               0.75 * (g8.laplacian().toarray() - np.eye(g8.n_vertices)), atol=1e-6)


# ---- interop and user adjacencies ------------------------------------------------------
def test_pyg_round_trip(g8):
    data = g8.to_pyg(dtype=torch.float64)
    assert data.edge_index.shape == (2, 2 * g8.n_edges) and data.pos.shape == (g8.n_vertices, 3)
    back = SphereGraph.from_pyg(data)
    assert abs(back.adjacency - g8.adjacency).max() < 1e-15


def test_from_pyg_bad_edge_index():
    from torch_geometric.data import Data

    for ei in ([[0, 5], [5, 0]], [[0, -1], [-1, 0]]):
        with pytest.raises(ValueError, match=r"vertex indices in \[-?\d, \d\].*num_nodes=3"):
            SphereGraph.from_pyg(Data(edge_index=torch.tensor(ei), num_nodes=3))
    with pytest.raises(TypeError, match="integer vertex indices"):
        SphereGraph.from_pyg(Data(edge_index=torch.tensor([[0.0, 1.0], [1.0, 0.0]]), num_nodes=2))
    # a weight per edge, [E]: other lengths and shapes failed inside scipy's COO constructor
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    with pytest.raises(ValueError, match=r"edge_weight must be a tensor of shape \[E\] = \[4\].*\(2,\)"):
        SphereGraph.from_pyg(Data(edge_index=ei, edge_weight=torch.ones(2), num_nodes=3))
    with pytest.raises(ValueError, match=r"\(4, 1\).*edge_weight.view\(-1\)"):
        SphereGraph.from_pyg(Data(edge_index=ei, edge_weight=torch.ones(4, 1), num_nodes=3))
    with pytest.raises(ValueError, match=r"not symmetric.*both directions.*to_undirected"):
        SphereGraph.from_pyg(Data(edge_index=ei[:, ::2], num_nodes=3))  # one direction only
    g = SphereGraph.from_pyg(Data(edge_index=ei, edge_weight=torch.tensor([1.0, 1.0, 0.5, 0.5]), num_nodes=3))
    np.testing.assert_array_equal(g.adjacency.toarray(), [[0, 1, 0], [1, 0, 0.5], [0, 0.5, 0]])


def test_user_adjacency_checks():
    W = sp.random(20, 20, density=0.3, random_state=0, format="csr")
    W.setdiag(0)
    W.eliminate_zeros()
    with pytest.raises(ValueError, match="not symmetric"):
        SphereGraph.from_adjacency(W)
    with pytest.raises(ValueError, match="square"):
        SphereGraph.from_adjacency(sp.random(3, 4, density=1.0))
    S = W + W.T
    S.setdiag(0)
    S.eliminate_zeros()
    with pytest.raises(ValueError, match="negative"):
        SphereGraph.from_adjacency(-S)
    with pytest.raises(ValueError, match="self loops"):
        SphereGraph.from_adjacency(S + sp.identity(20))
    bad = S.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SphereGraph.from_adjacency(bad)
    g = SphereGraph.from_adjacency(S)
    assert g.n_vertices == 20
    with pytest.raises(ValueError, match="sampling has"):
        SphereGraph.from_adjacency(S, sampling=HEALPix(1))


# ---- recipes and cache ----------------------------------------------------------------
def test_build_recipe_and_unknown_keys(tmp_path):
    s = HEALPix(4)
    g = graph.build(s, {"kind": "knn", "k": 8, "kernel_width": "tuned", "laplacian": "normalized"})
    assert g.recipe["k"] == 8
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['kk'\]"):
        graph.build(s, {"kind": "knn", "kk": 8})
    with pytest.raises(ValueError, match="unknown graph kind"):
        graph.build(s, {"kind": "delaunay"})
    g1 = graph.build(s, {"kind": "knn", "k": 8}, cache_dir=tmp_path)
    files = list(tmp_path.glob("graph-*.npz"))
    assert len(files) == 1
    g2 = graph.build(s, {"kind": "knn", "k": 8}, cache_dir=tmp_path)
    assert "cached" in g2.recipe and abs(g1.adjacency - g2.adjacency).max() == 0


def test_lmax_lower_bound_and_too_small_lmax_refused(g8):
    """A fixed lmax below the spectrum sends eigenvalues of L~ past 1, where T_k grows like
    cosh(k acosh(x)): refused when it is below a Rayleigh-quotient lower bound."""
    for kind in ("normalized", "combinatorial"):
        true = np.linalg.eigvalsh(g8.laplacian(kind).toarray())[-1]
        low = g8.lmax_lower_bound(kind)
        assert 0.5 * true < low <= true
    # lmax=2 suits the normalized Laplacian, not the combinatorial one (true lmax ~2.5 here)
    g8.chebyshev_matrix("normalized", lmax=2.0)
    with pytest.raises(ValueError, match=r"lmax=2 is below the largest eigenvalue of the "
                                         r"combinatorial Laplacian.*lmax unset"):
        g8.chebyshev_matrix("combinatorial", lmax=2.0)
    with pytest.raises(ValueError, match="positive and finite"):
        g8.chebyshev_matrix(lmax=float("inf"))


@pytest.mark.parametrize("kwargs", [dict(scale=2.0), dict(scale=0.0), dict(scale=-0.75)])
def test_chebyshev_scale_outside_unit_interval_refused(g8, kwargs):
    """scale > 1 puts the spectrum of L~ past 1 (Chebyshev terms blow up); 0 zeroes L~."""
    with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
        g8.chebyshev_matrix(**kwargs)
    g8.chebyshev_matrix(scale=0.75)


def test_lmax_negative_margin_refused(g8):
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        g8.lmax(margin=-0.5)
    assert g8.lmax(margin=0) <= g8.lmax()


@pytest.mark.parametrize("kind", ["DH", "CC"])
def test_coincident_pole_points_give_finite_psd_graphs(kind):
    """A DH grid's north-pole ring (and both CC pole rings) holds 2b copies of one point:
    pairs at distance 0. The kernel graphs stay finite, symmetric, free of self-loops and
    connected, and their Laplacians positive semi-definite (dense eigenvalues); each copy is
    linked to the others with the kernel's largest weight, exp(0) = 1 (1/2 where the k-NN
    relation is one-sided, with 'average')."""
    from scipy.sparse.csgraph import connected_components

    for b in (4, 8):
        s = Equiangular(b, kind)
        pole = np.arange(s.nlon)
        assert np.allclose(s.vectors[pole], [0, 0, 1])
        for g in (graph.knn(s, 8), graph.knn(s, 20, kernel_width="heuristic"),
                  graph.knn(s, 8, symmetrize="maximum"), graph.radius(s, 0.6)):
            W = g.adjacency
            assert np.all(np.isfinite(W.data)) and np.all(W.data > 0) and np.all(W.data <= 1)
            assert W.diagonal().max() == 0 and abs(W - W.T).max() == 0
            assert connected_components(W)[0] == 1
            assert W[pole][:, pole].max() == 1.0
            for lap in ("combinatorial", "normalized"):
                ev = np.linalg.eigvalsh(g.laplacian(lap).toarray())
                assert ev[0] > -1e-10 and np.isfinite(ev).all(), (b, g.recipe, lap, ev[0])


def test_finite_elements_refuse_coincident_points():
    """The triangulation keeps one of the 2b DH pole copies; the others got zero lumped mass,
    so fem_laplacian divided by 0 (inf, NaN in the equivariance sweep) and cotangent_graph
    left them isolated with a warning. They are now refused with the reason."""
    from deepsphere.graph import experimental as ex

    msg = r"7 of 64 points are not vertices of the triangulation.*\[1, 2, 3.*coincide"
    s = Equiangular(4, "DH")
    for build in (ex.fem_matrices, ex.fem_laplacian, ex.cotangent_graph):
        with pytest.raises(ValueError, match=msg):
            build(s)
    C, m = ex.fem_matrices(Equiangular(4, "SOFT"))  # no pole: fine
    assert np.all(m > 0) and np.allclose(m.sum(), 4 * np.pi, rtol=0.1)


# ---- connectivity ------------------------------------------------------------------------
def _clusters(n_clusters=4, per=12, spread=0.03, seed=0):
    """Tight clusters of points far apart: a k-NN graph with k < per splits into them."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n_clusters, 3))
    p = np.repeat(c / np.linalg.norm(c, axis=1, keepdims=True), per, 0) + spread * rng.normal(size=(n_clusters * per, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return Irregular(np.degrees(np.arctan2(p[:, 1], p[:, 0])), np.degrees(np.arcsin(p[:, 2])), units="deg")


def _build_recording(build):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = build()
    return g, [str(w.message) for w in caught if "not connected" in str(w.message)]


@pytest.mark.parametrize("make, k, n_comp", [
    (lambda: Equiangular(8, "DH"), 8, 1),
    (lambda: Equiangular(16, "DH"), 8, 2),   # the 2b copies of the north pole link only each other
    (lambda: Equiangular(16, "CC"), 8, 3),   # both poles
    (lambda: Equiangular(16, "SOFT"), 8, 1),
    (lambda: Equiangular(16, "DH"), 20, 1),
    (lambda: HEALPix(8), 8, 1),
    (lambda: _clusters(), 5, 4),
])
def test_disconnected_graph_warned_exactly_when_laplacian_has_several_zero_eigenvalues(make, k, n_comp):
    """The number of connected components is the multiplicity of the eigenvalue 0 of the
    combinatorial Laplacian (dense eigendecomposition); the warning fires exactly when it
    exceeds 1, and names the count."""
    g, msgs = _build_recording(lambda: graph.knn(make(), k))
    ev = np.linalg.eigvalsh(g.laplacian("combinatorial").toarray())
    zeros = int(np.sum(ev < 1e-9))
    assert ev[zeros] > 1e-6  # a clear gap: the count is not a matter of tolerance
    assert zeros == n_comp == g.n_components
    assert len(msgs) == (n_comp > 1)
    if n_comp > 1:
        assert f"graph is not connected: {n_comp} connected components" in msgs[0]


def test_disconnected_warning_names_the_smallest_component_and_the_fixes():
    """Driscoll-Healy b = 32, k = 8 (configs/digits_graph_equiangular.yaml): the north pole's
    64 copies, the rings at 2.8 and 177.2 degrees, and the rest."""
    s = Equiangular(32, "DH")
    with pytest.warns(UserWarning, match=r"4 connected components \(sizes 3904, 64, 64, 64\); the "
                      r"smallest has 64 vertices, e.g. \[0, 1, 2.*connect=True.*radius graph"):
        g = graph.knn(s, 8, kernel_width="heuristic")
    assert g.n_components == 4
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # connected graphs stay silent
        assert graph.knn(s, 40).n_components == 1
        assert graph.knn(HEALPix(16), 8).n_components == 1
        assert graph.build(s, {"kind": "knn", "k": 8, "connect": True}).n_components == 1


def test_connect_adds_a_minimum_spanning_tree_of_the_components():
    """connect=True keeps every k-NN edge and adds c - 1 edges whose total length is that of
    the minimum spanning tree of the components, the distance between two components being
    that of their closest points (brute force over all pairs), each weighted exp(-d^2/4t)."""
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    s = _clusters(n_clusters=6, per=10)
    g0, msgs = _build_recording(lambda: graph.knn(s, 5, kernel_width=0.3))
    assert g0.n_components == 6 and msgs
    g1, msgs = _build_recording(lambda: graph.knn(s, 5, kernel_width=0.3, connect=True))
    assert not msgs and g1.n_components == 1 and g1.recipe["connect"] is True
    W0, W1 = g0.adjacency.toarray(), g1.adjacency.toarray()
    np.testing.assert_array_equal(W1[W0 > 0], W0[W0 > 0])
    added = np.argwhere(np.triu((W1 > 0) & (W0 == 0)))
    assert len(added) == 6 - 1
    d = np.sqrt(dense_d2(s.vectors))
    np.testing.assert_allclose(W1[added[:, 0], added[:, 1]],
                               np.exp(-d[added[:, 0], added[:, 1]] ** 2 / (4 * g1.recipe["t"])), rtol=1e-12)
    _, lab = connected_components(g0.adjacency)
    Dc = np.array([[d[np.ix_(lab == a, lab == b)].min() if a != b else 0 for b in range(6)] for a in range(6)])
    mst = minimum_spanning_tree(Dc).sum()
    np.testing.assert_allclose(d[added[:, 0], added[:, 1]].sum(), mst, rtol=1e-12)
    ev = np.linalg.eigvalsh(g1.laplacian("normalized").toarray())
    assert ev[0] > -1e-12 and ev[1] > 1e-8  # one zero eigenvalue: connected


@pytest.mark.parametrize("kind", ["DH", "SOFT", "CC", "GL"])
def test_connect_repairs_equiangular_grids_and_leaves_connected_graphs_alone(kind):
    for b, k in ((32, 8), (32, 20), (8, 8)):
        s = Equiangular(b, kind)
        g0, _ = _build_recording(lambda: graph.knn(s, k))
        g1, msgs = _build_recording(lambda: graph.knn(s, k, connect=True))
        assert not msgs and g1.n_components == 1
        diff = g1.adjacency - g0.adjacency
        diff.eliminate_zeros()
        assert diff.nnz >= 2 * (g0.n_components - 1) and np.all(diff.data > 0)  # only additions
        if g0.n_components == 1:
            assert diff.nnz == 0 and "connect" in g1.recipe  # bit for bit the same weights
        assert abs(g1.adjacency - g1.adjacency.T).max() == 0 and g1.adjacency.diagonal().max() == 0
    # radius graphs: CC rings are pi/2b apart, more than pi/nlat: only the pole rings link
    s = Equiangular(4, "CC")
    g0, msgs = _build_recording(lambda: graph.radius(s, 1.01 * np.pi / s.nlat))
    assert g0.n_components > 1 and msgs
    g1, msgs = _build_recording(lambda: graph.radius(s, 1.01 * np.pi / s.nlat, connect=True))
    assert g1.n_components == 1 and not msgs


def test_connect_must_be_a_boolean_and_recipes_without_it_are_unchanged(tmp_path):
    s = Equiangular(16, "DH")
    with pytest.raises(TypeError, match="connect must be True or False, got 'yes'"):
        graph.knn(s, 8, connect="yes")
    with pytest.raises(TypeError, match="connect must be True or False"):
        graph.radius(s, 0.2, connect=1)
    g = graph.build(s, {"kind": "knn", "k": 8, "connect": True}, cache_dir=tmp_path)
    again = graph.build(s, {"kind": "knn", "k": 8, "connect": True}, cache_dir=tmp_path)
    assert (g.adjacency != again.adjacency).nnz == 0 and again.n_components == 1
    plain = graph.knn(HEALPix(4), 8)
    assert "connect" not in plain.recipe
    assert (graph.knn(HEALPix(4), 8, connect=True).adjacency != plain.adjacency).nnz == 0


def test_connect_warns_when_the_kernel_is_too_narrow_for_the_links():
    """Clusters a radian apart under the width tuned for their spacing: the links' weights
    underflow (or fall below float32 resolution), so the graph stays disconnected in effect;
    both facts are reported."""
    s = _clusters(n_clusters=3, per=10)
    with pytest.warns(UserWarning, match=r"connect=True: 2 of the 2 links added between "
                      r"components are too long for the kernel.*widen the kernel"):
        graph.knn(s, 5, connect=True)


def test_explicit_zero_weights_do_not_connect_components():
    """Two triangles joined only by a stored weight of 0 (a kernel weight that underflowed,
    kept in a user's sparse matrix): the combinatorial Laplacian has two zero eigenvalues, so
    the graph has two components and is reported, as it is without the stored zeros."""
    i = np.array([0, 0, 1, 3, 3, 4, 2])
    j = np.array([1, 2, 2, 4, 5, 5, 3])
    w = np.array([1.0, 1, 1, 1, 1, 1, 0])  # edge 2-3 stored with weight 0
    W = sp.csr_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(6, 6))
    assert W.nnz == 14
    with pytest.warns(UserWarning, match="2 connected components"):
        g = SphereGraph(W)
    ev = np.linalg.eigvalsh(g.laplacian("combinatorial").toarray())
    assert g.n_components == int(np.sum(ev < 1e-9)) == 2


def test_sigma_kernel_width_is_the_half_height_distance():
    """kernel_width={'sigma': s}: w = exp(-ln 2 d^2 / s^2), i.e. weight 1/2 at distance s."""
    s = HEALPix(4)
    sigma = 0.3
    g = graph.knn(s, k=8, kernel_width={"sigma": sigma}, symmetrize="maximum")
    W = g.adjacency.tocoo()
    d2 = dense_d2(s.vectors)[W.row, W.col]
    np.testing.assert_allclose(W.data, 2.0 ** (-d2 / sigma**2), rtol=1e-12)
    assert g.recipe["t"] == pytest.approx(sigma**2 / (4 * np.log(2)))


@pytest.mark.parametrize("k", [4, 12, 30, 60])
def test_tuned_width_is_log_log_linear_in_k_between_and_beyond_the_table(k):
    """Away from k in {8, 20, 40} the width follows the table's log-log segments, the end
    segments extended: sigma(k) = sigma(k0) (k/k0)^slope."""
    row = {8: 0.025, 20: 0.03185, 40: 0.042432}
    k0, k1 = (8, 20) if k < 20 else (20, 40)
    slope = np.log(row[k1] / row[k0]) / np.log(k1 / k0)
    want = row[k0] * (k / k0) ** slope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside [8, 40] a warning says it extrapolates
        assert tuned_sigma(k, 32) == pytest.approx(want, rel=1e-12)
        assert tuned_sigma(k, 128) == pytest.approx(want / 4, rel=1e-12)


def test_radius_is_an_angle_not_a_chord():
    """r is geodesic: a pair 0.503 rad apart (chord 0.4979 < 0.5) is outside r = 0.5, a pair
    0.497 rad apart is inside."""
    lon = np.degrees([0.0, 0.503, 2.0, 2.497])
    s = Irregular(lon, [0.0, 0.0, 0.0, 0.0], units="deg")
    with pytest.warns(UserWarning, match="not connected"):  # two separate pairs
        W = graph.radius(s, 0.5, kernel_width=1.0).adjacency.toarray()
    assert W[0, 1] == 0 and W[2, 3] > 0
    assert np.count_nonzero(W) == 2


def test_kernel_width_conversions_and_heat_kernel():
    """t = sigma^2 / (4 ln 2) and back; the heat kernel exp(-d^2 / 4t) is 1/2 at d = sigma."""
    sigma = 0.07
    t = graph.sigma_to_t(sigma)
    assert t == pytest.approx(sigma**2 / (4 * np.log(2)), rel=1e-14)
    assert graph.t_to_sigma(t) == pytest.approx(sigma, rel=1e-14)
    assert graph.heat_kernel(np.array([sigma**2]), t)[0] == pytest.approx(0.5, rel=1e-14)
    d2 = np.array([0.0, 0.01, 0.3])
    np.testing.assert_allclose(graph.heat_kernel(d2, 0.2), np.exp(-d2 / 0.8), rtol=1e-14)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_density_normalized_weights_by_hand(alpha):
    """w'_ij = w_ij / (d_i d_j)^alpha, from the dense adjacency."""
    from deepsphere.graph import experimental as ex

    g = graph.knn(HEALPix(4), k=8)
    W = g.adjacency.toarray()
    d = W.sum(1)
    want = W / np.outer(d, d) ** alpha
    np.testing.assert_allclose(ex.density_normalized(g, alpha).adjacency.toarray(), want,
                               rtol=1e-12, atol=0)


def test_symmetric_fem_laplacian_is_m_half_c_m_half_with_the_generalised_spectrum():
    """symmetric=True is M^-1/2 C M^-1/2: its eigenvalues solve C u = lambda M u (scipy's
    generalised eigensolver), as do those of M^-1 C."""
    import scipy.linalg as sla

    from deepsphere.graph import experimental as ex

    s = HEALPix(4)
    C, m = ex.fem_matrices(s)
    want = sla.eigh(C.toarray(), np.diag(m), eigvals_only=True)
    Ls = ex.fem_laplacian(s, symmetric=True).toarray()
    np.testing.assert_allclose(Ls, Ls.T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(Ls), want, atol=1e-9)
    L = ex.fem_laplacian(s).toarray()
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(L).real), want, atol=1e-9)


def test_graph_warnings_name_the_users_line():
    """A warning raised deep inside the package (the graph built inside a model's constructor)
    pointed at builders.py or sphere_graph.py; it names the caller's file."""
    from deepsphere import models

    with pytest.warns(UserWarning, match="connected components") as record:
        graph.knn(Equiangular(32, "DH"), k=8)  # 4 components (pole copies, polar rings)
    assert {w.filename for w in record} == {__file__}
    with pytest.warns(UserWarning, match="no tuned kernel width for k=6") as record:
        models.SphericalCNN(HEALPix(4), 1, 2, channels=[2], K=2,
                            graph={"kind": "knn", "k": 6, "kernel_width": "tuned"})
    assert {w.filename for w in record} == {__file__}


def test_n_edges_ignores_stored_zero_weights():
    W = sp.csr_matrix(np.array([[0, 1.0, 0], [1.0, 0, 2.0], [0, 2.0, 0]]))
    W.data[W.indices == 2] = 0.0  # stored zeros on (1, 2) and (2, 1): one edge left
    W.data[(W.indices == 1) & (np.repeat(np.arange(3), np.diff(W.indptr)) == 2)] = 0.0
    with pytest.warns(UserWarning, match="isolated"):  # vertex 2 is linked by zeros only
        g = graph.SphereGraph(W)
    assert W.nnz == 4 and g.n_edges == 1
