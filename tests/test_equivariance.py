"""Equivariance instrument: harmonics checked against healpy and scipy, rotations against direct
evaluation at rotated points, errors of exactly equivariant / clearly non-equivariant operators,
the published ordering of DeepSphere's graphs, the kernel-width optimiser and the CLI."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

healpy = pytest.importorskip("healpy")
torch = pytest.importorskip("torch")

from deepsphere import graph, sampling  # noqa: E402
from deepsphere.equivariance import (DegreeSpace, equivariance_error, random_rotations,  # noqa: E402
                                     real_harmonics, rotate_interpolated, rotate_signal)
from deepsphere.equivariance.harmonics import _real_to_healpy  # noqa: E402
from deepsphere.equivariance.measure import limit_threads  # noqa: E402


def _healpy_synthesis(c, ell, nside):
    """Degree-ell real coefficients -> NESTED map through healpy (RING inside)."""
    m = healpy.alm2map(_real_to_healpy(c, ell), nside, lmax=ell)
    return healpy.reorder(m, r2n=True)


@pytest.mark.parametrize("ell", [1, 5, 12])
def test_basis_matches_healpy_synthesis(ell):
    s = sampling.HEALPix(8)
    c = np.random.default_rng(ell).standard_normal(2 * ell + 1)
    ours = real_harmonics(ell, s.theta, s.phi) @ c            # scipy, NESTED pixel centres
    np.testing.assert_allclose(ours, _healpy_synthesis(c, ell, 8), atol=1e-10)


def test_basis_is_orthonormal_under_quadrature():
    s = sampling.Equiangular(16, "DH")                         # exact quadrature below b
    B = real_harmonics(7, s.theta, s.phi)
    G = B.T @ (s.areas[:, None] * B)
    np.testing.assert_allclose(G, np.eye(15), atol=1e-10)


@pytest.mark.parametrize("samp", [sampling.HEALPix(8), sampling.Equiangular(12, "SOFT")])
def test_degree_rotation_is_exact(samp):
    """D(R) c synthesised on the points == the signal evaluated at R^-1 x (scipy, no Wigner-D)."""
    ell = 6
    R = random_rotations(1, seed=3)[0]
    space = DegreeSpace(samp, ell)
    c = np.random.default_rng(0).standard_normal((2, 2 * ell + 1))
    rotated = space.synthesize(space.rotate(c, R))
    v = samp.vectors @ R                                       # rows are R^T x = R^-1 x
    theta = np.arccos(np.clip(v[:, 2], -1, 1))
    phi = np.mod(np.arctan2(v[:, 1], v[:, 0]), 2 * np.pi)
    direct = c @ real_harmonics(ell, theta, phi).T
    np.testing.assert_allclose(rotated, direct, atol=1e-10)


def test_projection_recovers_coefficients_both_paths(monkeypatch):
    s = sampling.HEALPix(16)
    c = np.random.default_rng(1).standard_normal((3, 2 * 40 + 1))
    direct = DegreeSpace(s, 40)
    np.testing.assert_allclose(direct.project(direct.synthesize(c)), c, atol=1e-9)
    monkeypatch.setattr("deepsphere.equivariance.harmonics._MAX_BASIS_ENTRIES", 0)
    iterative = DegreeSpace(s, 40)                             # healpy + conjugate gradients
    assert iterative._basis is None
    y = iterative.synthesize(c)
    np.testing.assert_allclose(y, direct.synthesize(c), atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # converged: no warning
        np.testing.assert_allclose(iterative.project(y), c, atol=1e-8)
    # stopped early, the coefficients are off: said so (they came back silently)
    short = DegreeSpace(s, 40, max_iter=1)
    with pytest.warns(RuntimeWarning, match=r"stopped after max_iter=1 conjugate-gradient steps"):
        short.project(y + np.random.default_rng(3).standard_normal(y.shape))


def test_rotate_signal_harmonic():
    R = random_rotations(1, seed=5)[0]
    for s, ell, tol in [(sampling.Equiangular(16, "DH"), 10, 1e-10), (sampling.HEALPix(16), 6, 2e-3)]:
        space = DegreeSpace(s, ell)
        c = np.random.default_rng(2).standard_normal((1, 2 * ell + 1))
        exact = space.synthesize(space.rotate(c, R))
        got = rotate_signal(space.synthesize(c), s, R)
        assert np.linalg.norm(got - exact) / np.linalg.norm(exact) < tol


def test_rotate_interpolated_is_approximate_and_converges():
    rng = np.random.default_rng(0)
    R = random_rotations(1, seed=1)[0]
    errs = []
    for n in (800, 3200):
        lon, lat = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        s = sampling.Irregular(lon, lat, units="deg")
        space = DegreeSpace(s, 3)
        c = rng.standard_normal((1, 7))
        exact = space.synthesize(space.rotate(c, R))
        got = rotate_interpolated(space.synthesize(c), s, R)
        errs.append(np.linalg.norm(got - exact) / np.linalg.norm(exact))
    assert errs[0] < 0.05 and errs[1] < errs[0] / 2              # O(h^2): 4x points, ~4x smaller


def test_isotropic_operator_has_zero_error_and_pointwise_product_does_not():
    s = sampling.HEALPix(8)
    # Laplace-Beltrami on band-limited signals, built from the sampled harmonics: exactly isotropic
    B = np.hstack([real_harmonics(l, s.theta, s.phi) for l in range(0, 24)])
    lam = np.concatenate([[l * (l + 1)] * (2 * l + 1) for l in range(0, 24)])
    with limit_threads(1):                                     # BLAS threads thrash on busy machines
        LB = (B * lam) @ np.linalg.pinv(B)
    r = equivariance_error(LB, s, [3, 7, 12], n_signals=2, n_rotations=2)
    assert r.kind == "equivariance" and r.mean.max() < 1e-8
    r = equivariance_error(sp.diags(1 + s.vectors[:, 2]), s, [3, 7], n_signals=2, n_rotations=2)
    assert r.mean.min() > 0.3                                   # multiplication by z is not equivariant
    np.testing.assert_allclose(r.mean_squared, (r.ratios ** 2).mean(axis=1))


def test_zonal_spectral_filter_float32_on_equiangular():
    from deepsphere.spectral import ZonalConv

    s = sampling.Equiangular(16, "DH")
    torch.manual_seed(0)
    r = equivariance_error(ZonalConv(s, 1, 1, bias=False), s, [3, 8, 15], n_signals=2, n_rotations=2)
    assert r.mean.max() < 1e-6


def test_zonal_spectral_filter_float32_on_healpix_small_weight():
    """The float32 zonal filter stays <= 1e-6 at every degree, also where its weight is small.

    Float32 transforms spread rounding into every degree; a filter that nearly removes degree l
    (w_l = 0.05, others 1) amplifies it 20x (about 3e-6 at nside 16). Computing the transforms
    in float64 leaves only the float32 input and output rounding (about 4e-7)."""
    from deepsphere.spectral import ZonalConv

    s = sampling.HEALPix(16)
    conv = ZonalConv(s, 1, 1, lmax=2 * s.nside, bias=False, iterations=10,
                     compute_dtype=torch.float64).float()
    with torch.no_grad():
        conv.filter.weight.fill_(1.0)
        conv.filter.weight[..., 12] = 0.05
    with limit_threads(1):
        r = equivariance_error(conv, s, [5, 12, 20, 30], n_signals=4, n_rotations=2)
    assert r.mean.max() <= 1e-6, r


def test_invariance_of_model_outputs():
    s = sampling.HEALPix(8)
    energy = lambda x: (x ** 2).sum(axis=1, keepdims=True)    # invariant up to quadrature  # noqa: E731
    probe = lambda x: x[:, :3]                                 # three pixel values: not invariant  # noqa: E731
    r1 = equivariance_error(energy, s, [2, 4], n_signals=2, n_rotations=2)
    r2 = equivariance_error(probe, s, [2, 4], n_signals=2, n_rotations=2)
    assert r1.kind == r2.kind == "invariance"
    assert r1.mean.max() < 0.05 and r2.mean.min() > 0.3


def test_graph_ordering_nside16():
    """v1 > k8 > k20 > k40 with tuned widths (DeepSphere ICLR 2020, fig. 2) at mid degrees."""
    s = sampling.HEALPix(16)
    degs = [10, 20, 30]
    e = {name: equivariance_error(g, s, degs, n_signals=2, n_rotations=1).overall()
         for name, g in [("v1", graph.healpix_neighbours(s)), ("k8", graph.knn(s, 8)),
                         ("k20", graph.knn(s, 20)), ("k40", graph.knn(s, 40))]}
    assert e["v1"] > e["k8"] > e["k20"] > e["k40"], e
    assert e["k40"] < 0.02 < e["v1"]


def test_ring_nested_mixup_is_caught_by_the_measure():
    """A Laplacian built in RING order applied to NESTED signals is far from equivariant."""
    s = sampling.HEALPix(8)
    g = graph.knn(s, 20)
    n2r = healpy.nest2ring(8, np.arange(s.npix))
    P = sp.csr_matrix((np.ones(s.npix), (n2r, np.arange(s.npix))), shape=(s.npix, s.npix))
    L_ring = P @ g.laplacian() @ P.T
    good = equivariance_error(g, s, [4, 8], n_signals=2, n_rotations=1).overall()
    bad = equivariance_error(L_ring, s, [4, 8], n_signals=2, n_rotations=1).overall()
    assert bad > 10 * good


def test_chebconv_filter_error_is_small_for_k40():
    from deepsphere.equivariance import cheb_filter

    s = sampling.HEALPix(8)
    r8 = equivariance_error(cheb_filter(graph.knn(s, 8), K=3), s, [4, 8], n_signals=2, n_rotations=1)
    r40 = equivariance_error(cheb_filter(graph.knn(s, 40), K=3), s, [4, 8], n_signals=2, n_rotations=1)
    assert r40.overall() < r8.overall()


def test_kernel_width_optimiser_nside16():
    from deepsphere.equivariance.optimise import optimise_kernel_width

    s = sampling.HEALPix(16)
    res = optimise_kernel_width(s, k=20, degrees=[8, 16, 24, 32, 40], n_signals=2, xatol=0.05)
    tuned = equivariance_error(graph.knn(s, 20), s, [8, 16, 24, 32, 40], 2, 1, seed=0).overall()
    assert res.error <= tuned * 1.02                            # at least as good as the table
    assert 0.6 < res.sigma / graph.tuned_sigma(20, 16) < 1.6


def test_bad_input_errors():
    s = sampling.HEALPix(4)
    g = graph.knn(s, 8)
    with pytest.raises(ValueError, match="degrees"):
        equivariance_error(g, s, [], 1, 1)
    with pytest.raises(ValueError, match="band limit"):
        equivariance_error(g, s, [40], 1, 1)
    with pytest.raises(ValueError, match="square"):
        equivariance_error(np.ones((3, 4)), s, [2], 1, 1)
    with pytest.raises(ValueError, match="points"):
        equivariance_error(graph.knn(sampling.HEALPix(2), 8), s, [2], 1, 1)
    with pytest.raises(ValueError, match="kind"):
        equivariance_error(g, s, [2], 1, 1, kind="bogus")
    # the same number of points, elsewhere: the graph's vertices are not the signal's points
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(0, 360, 300), np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    a = sampling.Irregular(lon, lat, units="deg")
    perm = sampling.Irregular(lon[::-1], lat[::-1], units="deg")
    with pytest.raises(ValueError, match=r"built on Irregular\(npix=300\), whose points differ.*vertex 0"):
        equivariance_error(graph.knn(a, 8), perm, [2], 1, 1)
    same = sampling.Irregular(lon, lat, units="deg")  # another object, the same points
    equivariance_error(graph.knn(a, 8), same, [2], 1, 1)
    with pytest.raises(ValueError, match="rotation"):
        rotate_signal(np.zeros(s.npix), s, np.eye(3) * 2)


def test_experimental_graphs():
    from deepsphere.graph import experimental as ex

    s = sampling.HEALPix(8)
    C, m = ex.fem_matrices(s)
    np.testing.assert_allclose(m.sum(), 4 * np.pi, rtol=2e-2)   # lumped areas tile the sphere
    np.testing.assert_allclose(np.asarray(C.sum(axis=1)).ravel(), 0, atol=1e-12)
    # M^-1 C approximates -Laplace-Beltrami: Y_lm are near eigenvectors with eigenvalue l(l+1)
    f = real_harmonics(3, s.theta, s.phi)[:, 2]
    Lf = ex.fem_laplacian(s) @ f
    assert abs(f @ Lf / (f @ f) - 12) / 12 < 0.05
    g = ex.density_normalized(graph.knn(s, 8))
    assert np.allclose((g.adjacency - g.adjacency.T).data, 0)
    opt = ex.optimise_edge_weights(graph.knn(s, 8), degrees=[4, 8], n_signals=4, steps=25, lr=0.05)
    before = equivariance_error(graph.knn(s, 8), s, [4, 8], 2, 2, seed=7).overall()
    after = equivariance_error(opt, s, [4, 8], 2, 2, seed=7).overall()   # held-out signals
    assert after < before


def test_cli_writes_table_and_plot(tmp_path, capsys):
    from deepsphere.cli import main

    cfg = tmp_path / "eq.yaml"
    cfg.write_text(
        "out: %s\ndegrees: [4, 8]\nn_signals: 1\nn_rotations: 1\n"
        "samplings: [{name: healpix, nside: 4}]\n"
        "graphs: [{label: k8, kind: knn, k: 8}, {label: v1, kind: healpix}]\n"
        "cost: {K: 2, channels: 2, repeats: 1}\n" % (tmp_path / "out"))
    assert main(["equivariance", str(cfg)]) == 0
    rows = (tmp_path / "out" / "errors.csv").read_text().splitlines()
    assert rows[0].startswith("sampling,nside,graph") and len(rows) == 1 + 2 * 2
    assert (tmp_path / "out" / "equivariance.png").stat().st_size > 1000
    assert main(["equivariance", str(cfg), "--protocol", "published", "--no-plot",
                 "--out", str(tmp_path / "pub")]) == 0
    col = rows[0].split(",").index("error")
    pub = (tmp_path / "pub" / "errors.csv").read_text().splitlines()
    assert len(pub) == len(rows)                                # same table, other rotation of L f
    assert [r.split(",")[col] for r in pub[1:]] != [r.split(",")[col] for r in rows[1:]]
    bad = tmp_path / "bad.yaml"
    bad.write_text("samplings: [{name: healpix, nside: 4}]\ngraphs: [{label: a, kind: knn, kk: 3}]\n")
    capsys.readouterr()
    assert main(["equivariance", str(bad)]) == 2                 # one line, no traceback
    assert re.match(r"error: unknown key\(s\) \['kk'\] in graph 'a'", capsys.readouterr().err)


def test_published_protocol_reproduces_published_k40():
    """protocol='published' (R_V = T R T^-1 on f and L f, single-pass HEALPix quadrature)
    reproduces DeepSphere ICLR 2020 fig. 2 for k = 40 at nside 32 (l = 10: 0.048, minimum near
    l = 48: 0.005), which the exact protocol puts 4x and 2x lower."""
    s = sampling.HEALPix(32)
    g = graph.knn(s, 40, symmetrize="maximum")
    with limit_threads(1):
        pub = equivariance_error(g, s, [10, 50], 4, 2, protocol="published").mean
        exact = equivariance_error(g, s, [10, 50], 4, 2).mean
    assert 0.048 / 1.5 < pub[0] < 0.048 * 1.5 and 0.005 / 2 < pub[1] < 0.005 * 2
    assert exact[0] < pub[0] / 2 and exact[1] < pub[1]


def test_published_protocol_is_exact_where_the_analysis_is():
    # on an equiangular grid T^-1 is exact up to b - 1: an isotropic operator shows no error under
    # the published protocol either; on HEALPix the single-pass quadrature error shows up
    def isotropic(s, L):
        B = np.hstack([real_harmonics(l, s.theta, s.phi) for l in range(L + 1)])
        lam = np.concatenate([[l * (l + 1)] * (2 * l + 1) for l in range(L + 1)])
        with limit_threads(1):
            return (B * lam) @ np.linalg.pinv(B)
    s = sampling.Equiangular(12, "SOFT")
    r = equivariance_error(isotropic(s, 11), s, [3, 7], 2, 2, protocol="published")
    assert r.mean.max() < 1e-8 and r.info["protocol"] == "published"
    h = sampling.HEALPix(8)
    LB = isotropic(h, 23)
    assert equivariance_error(LB, h, [3, 7], 2, 2).mean.max() < 1e-8
    assert equivariance_error(LB, h, [3, 7], 2, 2, protocol="published").mean.max() > 1e-4
    with pytest.raises(ValueError, match="protocol"):
        equivariance_error(LB, h, [3], 1, 1, protocol="paper")
    with pytest.raises(ValueError, match="equivariance"):
        equivariance_error(lambda x: x[:, :3], h, [3], 1, 1, protocol="published")


@pytest.mark.slow
def test_published_curves_nside32():
    """DeepSphere ICLR 2020 fig. 2 at nside 32: ordering, U shape, minima within 2x of the
    published 0.053 / 0.014 / 0.005 (k40 is measured lower: see RESULTS.md)."""
    s = sampling.HEALPix(32)
    degs = list(range(10, 91, 10))
    res = {k: equivariance_error(graph.knn(s, k), s, degs, 4, 2) for k in (8, 20, 40)}
    for k, pub in [(8, 0.053), (20, 0.014)]:
        m = res[k].mean
        assert pub / 2 < m.min() < 2 * pub
        assert m[0] > m.min() < m[-1]                           # U shaped
        assert 30 <= degs[int(m.argmin())] <= 70                # near 1.5 nside
    assert res[8].overall() > res[20].overall() > res[40].overall()


@pytest.mark.slow
def test_tuned_table_rederived_nside32():
    from deepsphere.equivariance.optimise import optimise_kernel_width

    s = sampling.HEALPix(32)
    for k in (8, 20, 40):
        r = optimise_kernel_width(s, k, n_signals=4)
        assert abs(r.sigma / graph.tuned_sigma(k, 32) - 1) < 0.15


def test_irregular_sampling_uses_interpolated_residual():
    """Stations-like points: no harmonic analysis, so the residual is rotated by interpolation.
    An isotropic operator still shows ~0 (its output has no residual); a k-NN graph does not."""
    rng = np.random.default_rng(4)
    n = 1500
    s = sampling.Irregular(rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n))), units="deg")
    B = np.hstack([real_harmonics(l, s.theta, s.phi) for l in range(0, 10)])
    lam = np.concatenate([[l * (l + 1)] * (2 * l + 1) for l in range(0, 10)])
    with limit_threads(1):
        LB = (B * lam) @ np.linalg.pinv(B)
    r = equivariance_error(LB, s, [2, 5], n_signals=2, n_rotations=1)
    assert r.info["residual"] == "interpolated" and r.mean.max() < 1e-8
    r = equivariance_error(graph.knn(s, 8), s, [2, 5], n_signals=2, n_rotations=1)
    assert np.all(np.isfinite(r.mean)) and r.mean.min() > 1e-3


def test_models_invariance_and_equivariance():
    """A global-pooling classifier is measured for invariance, a U-Net for equivariance."""
    from deepsphere import models

    s = sampling.HEALPix(8)
    errors = {}
    for head in ("global", "fc"):
        torch.manual_seed(0)
        clf = models.SphericalCNN(s, in_channels=1, n_classes=3, channels=[4, 4], K=3, head=head,
                                  graph={"kind": "knn", "k": 8, "kernel_width": "tuned"})
        r = equivariance_error(clf, s, [2, 4], n_signals=2, n_rotations=2)
        assert r.kind == "invariance"
        errors[head] = r.overall()
    assert errors["global"] < errors["fc"]                      # global pooling is the invariant head
    seg = models.SphericalUNet(s, in_channels=1, n_classes=2, channels=[4, 4], K=3,
                               graph={"kind": "knn", "k": 8, "kernel_width": "tuned"})
    r = equivariance_error(seg, s, [2, 4], n_signals=2, n_rotations=1)
    assert r.kind == "equivariance" and np.all(np.isfinite(r.mean))


def test_measure_matches_a_dense_hand_computation():
    """E(l) on a DH grid recomputed with dense matrices: scipy harmonics, the grid's exact
    quadrature, block-diagonal Wigner-D, least squares by numpy. An exactly isotropic operator
    gives ~0, the identity ~0, a random matrix the same O(1) number as the hand computation."""
    from scipy.linalg import block_diag

    from deepsphere.equivariance.harmonics import wigner_D

    s = sampling.Equiangular(4, "DH")
    B = 3                                                      # band limit b - 1
    T = np.hstack([real_harmonics(l, s.theta, s.phi) for l in range(B + 1)])
    A = (T * s.areas[:, None]).T                               # exact analysis below b
    rng = np.random.default_rng(1)
    w = np.repeat(rng.standard_normal(B + 1), 2 * np.arange(B + 1) + 1)
    operators = {"zonal": T @ np.diag(w) @ A, "identity": np.eye(s.npix),
                 "random": rng.standard_normal((s.npix, s.npix))}
    degrees, n_sig, n_rot, seed = [1, 2, 3], 3, 2, 5
    for name, M in operators.items():
        got = equivariance_error(M, s, degrees, n_signals=n_sig, n_rotations=n_rot, seed=seed).mean
        r = np.random.default_rng(seed)                        # the measure's draw order
        rots = random_rotations(n_rot, r)
        ref = []
        for ell in degrees:
            Tl = real_harmonics(ell, s.theta, s.phi)
            c = r.standard_normal((n_sig, 2 * ell + 1))
            y = c @ Tl.T @ M.T
            errs = []
            for R in rots:
                D = wigner_D(ell, R)
                yR = c @ D.T @ Tl.T @ M.T                      # L R_V f
                cp = np.linalg.lstsq(Tl, y.T, rcond=None)[0].T
                rest = y - cp @ Tl.T
                RVy = cp @ D.T @ Tl.T + rest @ A.T @ block_diag(*[wigner_D(l, R) for l in range(B + 1)]).T @ T.T
                errs += list(np.linalg.norm(RVy - yR, axis=1) / np.linalg.norm(y, axis=1))
            ref.append(np.mean(errs))
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-13)
        if name == "random":
            assert got.min() > 0.5
        else:
            assert got.max() < 1e-13


def test_sweep_spectral_lmax_in_units_of_nside():
    from deepsphere.equivariance.sweep import _fixed_operator

    s = sampling.HEALPix(4)
    for spec, lmax in (({"lmax": "1nside"}, 4), ({"lmax": "2nside"}, 8), ({"lmax": 5}, 5)):
        op, _, _ = _fixed_operator(s, dict(kind="spectral", **spec))
        assert op.filter.lmax == lmax
    with pytest.raises(ValueError, match=r"'twonside' is not understood.*'2nside'"):
        _fixed_operator(s, {"kind": "spectral", "lmax": "twonside"})


def test_default_degrees_respect_the_equiangular_band_limit():
    """An equiangular grid's equivalent nside (matched on point spacing) overstates its band limit
    b - 1: the default degrees of the width optimiser reached 29 on a b = 16 grid, and every
    optimise_kernel_width call without degrees= failed with 'exceed the band limit'."""
    from deepsphere.equivariance.optimise import default_degrees
    from deepsphere.equivariance.rotation import band_limit

    for s in (sampling.Equiangular(16, "DH"), sampling.Equiangular(8, "SOFT"), sampling.HEALPix(4)):
        d = default_degrees(s)
        assert d and max(d) <= band_limit(s), (s, d)
    assert default_degrees(sampling.HEALPix(4))[-1] == 11                # 3 nside - 1, unchanged
    s = sampling.Equiangular(8, "DH")
    r = equivariance_error(graph.knn(s, 8), s, default_degrees(s), 1, 1)
    assert np.all(np.isfinite(r.mean))


def test_fractional_degrees_are_refused():
    """Degree 2.5 was measured as degree 2 (and True as 1) without a word."""
    s = sampling.HEALPix(4)
    for bad in ([2.5], [True], ["3"]):
        with pytest.raises(ValueError, match=r"degrees must be a non-empty list of integers >= 1"):
            equivariance_error(np.eye(s.npix), s, bad, 1, 1)
    r = equivariance_error(np.eye(s.npix), s, [2.0, np.int64(3)], 1, 1)
    assert r.degrees.tolist() == [2, 3] and r.mean.max() < 1e-12     # the identity commutes


def test_sweep_config_mistakes():
    """Sweep configs that gave an unexplained TypeError (a knn graph without k; a float64
    spectral filter timed on a float32 input), a silently truncated degree, a table with every
    row twice, or an empty table."""
    from deepsphere.equivariance.sweep import run_sweep

    base = dict(degrees=[2, 4], n_signals=1, n_rotations=1, cost={"repeats": 1, "K": 2, "channels": 2},
                samplings=[{"name": "healpix", "nside": 4}])
    quiet = dict(log=lambda *a: None)
    with pytest.raises(ValueError, match=r"'k8': a knn graph needs 'k'.*got None"):   # int(None)
        run_sweep(dict(base, graphs=[{"label": "k8", "kind": "knn"}]), **quiet)
    with pytest.raises(ValueError, match=r"degrees must be a list of integers, got \[2.5\]"):
        run_sweep(dict(base, degrees=[2.5], graphs=[{"label": "k8", "kind": "knn", "k": 8}]), **quiet)
    with pytest.raises(ValueError, match=r"laplacians must be a non-empty list.*'normalized'"):
        run_sweep(dict(base, laplacians="normalized", graphs=[{"label": "k8", "kind": "knn", "k": 8}]),
                  **quiet)                                    # iterated as 'n', 'o', ... before
    with pytest.raises(ValueError, match=r"no graph of the config applies.*HEALPix samplings only"):
        run_sweep(dict(base, samplings=[{"name": "equiangular", "bandwidth": 4}],
                       graphs=[{"label": "v1", "kind": "healpix"}]), **quiet)
    # operators that do not depend on 'laplacians' are measured once, not once per entry
    rows = run_sweep(dict(base, laplacians=["normalized", "combinatorial"],
                          graphs=[{"label": "z", "kind": "spectral", "dtype": "float64"},
                                  {"label": "k8", "kind": "knn", "k": 8},
                                  {"label": "cot", "kind": "cotangent", "laplacian": "combinatorial"}]),
                     **quiet)
    seen = [(r["graph"], r["laplacian"], r["ell"]) for r in rows]
    assert len(seen) == len(set(seen)) == 2 * (1 + 2 + 1), seen


def test_sweep_optimises_the_healpix_graph_width():
    """kernel_width: optimise on the 8-neighbour HEALPix graph raised a TypeError (it tuned a
    k-NN graph with k=None); it tunes the HEALPix graph's own width, which beats the heuristic."""
    from deepsphere.equivariance.sweep import run_sweep

    cfg = dict(degrees=[2, 4, 6], n_signals=2, n_rotations=1, cost={"repeats": 1, "K": 2, "channels": 2},
               samplings=[{"name": "healpix", "nside": 4}], optimiser={"n_signals": 2, "n_rotations": 1},
               graphs=[{"label": "opt", "kind": "healpix", "kernel_width": "optimise"},
                       {"label": "heur", "kind": "healpix", "kernel_width": "heuristic"}])
    rows = run_sweep(cfg, log=lambda *a: None)
    mean = {g: np.mean([float(r["error"]) for r in rows if r["graph"] == g]) for g in ("opt", "heur")}
    t = {r["graph"]: r["t"] for r in rows}
    assert t["opt"] != t["heur"] and mean["opt"] <= mean["heur"] * 1.05, (mean, t)


def test_module_with_a_per_vertex_output_without_channel_axis():
    """A module returning [B, V] (a squeezed channel axis) was measured as an *invariance* error
    (about 1.5 for 2 f) while the same function as a callable gave ~0; and n_signals=2.5 gave a
    bare numpy TypeError."""
    s = sampling.HEALPix(4)

    class Squeezed(torch.nn.Module):
        def forward(self, x):
            return 2 * x[..., 0]

    r = equivariance_error(Squeezed(), s, [2, 5], n_signals=2, n_rotations=1)
    assert r.kind == "equivariance" and r.mean.max() < 1e-6        # float32 rounding
    probe = lambda x: x[:, :3]                                     # noqa: E731
    assert equivariance_error(probe, s, [2], 2, 1).kind == "invariance"
    for name in ("n_signals", "n_rotations", "in_channels"):
        with pytest.raises(TypeError, match=f"{name} must be an int, got 2.5"):
            equivariance_error(np.eye(s.npix), s, [2], **{name: 2.5})


def test_sweep_and_optimiser_refuse_malformed_specs():
    """A mapping where a list belongs, a sampling without its size, a graph given as a string
    and a reversed or non-positive search interval raised KeyError, AttributeError or
    scipy's 'Optimization bounds must be finite scalars'."""
    from deepsphere.equivariance.optimise import optimise_kernel_width
    from deepsphere.equivariance.sweep import run_sweep

    knn8 = [{"label": "k8", "kind": "knn", "k": 8}]
    hp4 = [{"name": "healpix", "nside": 4}]
    cases = [({"samplings": {"name": "healpix", "nside": 4}, "graphs": knn8}, r"'samplings' must be a list"),
             ({"samplings": hp4, "graphs": {"label": "k8"}}, r"'graphs' must be a list"),
             ({"samplings": [{"name": "healpix"}], "graphs": knn8}, r"healpix sampling needs an nside"),
             ({"samplings": [{"name": "equiangular"}], "graphs": knn8}, r"needs a bandwidth"),
             ({"samplings": [{"name": "healpix", "nsid": 4}], "graphs": knn8}, r"unknown key.*'nsid'"),
             ({"samplings": hp4, "graphs": ["k8"]}, r"graph 'k8' must be a mapping")]
    for cfg, msg in cases:
        with pytest.raises(ValueError, match=msg):
            run_sweep(dict(cfg, degrees=[2], n_signals=1, n_rotations=1), log=lambda *a: None)
    for bounds in ((5, 0.2), (0, 1), (-1, 2)):
        with pytest.raises(ValueError, match=r"bounds must be two multiples 0 < low < high"):
            optimise_kernel_width(sampling.HEALPix(4), 8, [2], n_signals=1, bounds=bounds)


def test_interpolated_rotation_warns_where_it_extrapolates_across_a_gap():
    """On a hemisphere a random rotation brings half the points from the missing half: the
    convex hull's cut face 'interpolated' them, and E(l) of a k-NN graph (about 1) measured that
    extrapolation without a word. Uniformly spread points and full grids do not warn."""
    import warnings

    R = random_rotations(1, seed=0)[0]
    half = sampling.HEALPix.from_pixels(8, np.arange(0, 384))
    with pytest.warns(UserWarning, match=r"rotated points come from a gap in HEALPix\(nside=8, 384"):
        rotate_interpolated(np.zeros(half.npix), half, R)
    with pytest.warns(UserWarning, match=r"extrapolated"):
        equivariance_error(graph.knn(half, 8), half, [2], 1, 1)
    rng = np.random.default_rng(4)
    n = 1500
    spread = sampling.Irregular(rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                                units="deg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in (spread, sampling.HEALPix(8), sampling.Equiangular(8, "DH"),
                  sampling.Equiangular(16, "SOFT")):
            for rot in (R, np.diag([1.0, -1.0, -1.0])):
                rotate_interpolated(np.zeros(s.npix), s, rot)


def test_gap_count_covers_points_deep_inside_the_gap():
    """Turning the northern hemisphere upside down brings every point from the missing half;
    the triangle test alone counted 1 of 368 (point location settles on small triangles at the
    gap's edge). Points deeper than a few spacings are now counted by their distance."""
    import healpy as hp

    north = sampling.HEALPix.from_pixels(8, np.flatnonzero(hp.pix2vec(8, np.arange(768), nest=True)[2] > 0))
    with pytest.warns(UserWarning) as caught:
        rotate_interpolated(np.zeros(north.npix), north, np.diag([1.0, -1.0, -1.0]))
    n = int(re.search(r"at least (\d+) of 368 rotated points", str(caught[0].message)).group(1))
    # points more than 6 spacings (about 44 degrees at nside 8) below the equator: 1 - sin(44)
    # of the hemisphere's area, i.e. about 0.3 of the points; the rest is a milder extrapolation
    assert n >= 0.25 * 368, n


def test_sweep_degrees_choice_is_explicit():
    """degrees and degrees_per_nside together were resolved by ignoring 'degrees'; degrees
    beyond the band limit were dropped without a word."""
    from deepsphere.equivariance.sweep import degrees_for

    s = sampling.HEALPix(4)                                   # band limit 3 nside - 1 = 11
    with pytest.raises(ValueError, match="either 'degrees' or 'degrees_per_nside', not both"):
        degrees_for({"degrees": [2], "degrees_per_nside": [0.5]}, s)
    for bad in (0.5, [], [0.5, -1], ["1"]):
        with pytest.raises(ValueError, match="degrees_per_nside must be a non-empty list"):
            degrees_for({"degrees_per_nside": bad}, s)
    said = []
    assert degrees_for({"degrees": [2, 8, 12, 40]}, s, said.append) == [2, 8]
    assert said == ["healpix-4: degrees [12, 40] are outside [1, 11] (the band limit) and are not measured"]
    said.clear()
    assert degrees_for({"degrees_per_nside": [0.5, 2.0]}, s, said.append) == [2, 8]
    assert said == []


def test_sweep_connect_links_the_components_of_the_measured_graph():
    """A k-NN graph on a Driscoll-Healy grid splits (b = 16, k = 8: the 32 copies of the north
    pole link only each other); the sweep reports it, and ``connect: true`` measures the graph
    with its components linked (one more edge), for a tuned and an optimised width alike."""
    import warnings

    from deepsphere.equivariance.sweep import run_sweep

    cfg = dict(degrees=[2, 4], n_signals=1, n_rotations=1, cost={"repeats": 1, "K": 2, "channels": 2},
               samplings=[{"name": "equiangular", "bandwidth": 16, "kind": "DH"}],
               optimiser={"n_signals": 1, "n_rotations": 1},
               graphs=[{"label": "k8", "kind": "knn", "k": 8}])
    with pytest.warns(UserWarning, match="graph is not connected: 2 connected components"):
        plain = run_sweep(cfg, log=lambda *a: None)
    linked_cfg = dict(cfg, graphs=[{"label": "k8c", "kind": "knn", "k": 8, "connect": True},
                                   {"label": "k8o", "kind": "knn", "k": 8, "connect": True,
                                    "kernel_width": "optimise"}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        linked = run_sweep(linked_cfg, log=lambda *a: None)
    assert not [w for w in caught if "not connected" in str(w.message)]
    epv = {r["graph"]: float(r["edges_per_vertex"]) for r in plain + linked}
    npix = 32 * 32
    assert epv["k8c"] > epv["k8"] and epv["k8o"] == epv["k8c"]  # rounded to 3 decimals
    assert epv["k8c"] == pytest.approx(epv["k8"] + 2 / npix, abs=1e-3)


def test_sweep_optimises_the_width_of_the_graph_it_measures(monkeypatch):
    """kernel_width: optimise with symmetrize: maximum tunes the width on 'maximum' graphs, not
    on the default 'average' ones (every k-NN graph the sweep builds is recorded)."""
    from deepsphere.equivariance import sweep

    seen = []
    real_knn = sweep.graphs.knn

    def recording_knn(*args, **kwargs):
        seen.append(kwargs.get("symmetrize", "average"))
        return real_knn(*args, **kwargs)

    monkeypatch.setattr(sweep.graphs, "knn", recording_knn)
    cfg = dict(degrees=[2, 4], n_signals=1, n_rotations=1, cost={"repeats": 1, "K": 2, "channels": 2},
               samplings=[{"name": "healpix", "nside": 4}], optimiser={"n_signals": 1, "n_rotations": 1},
               graphs=[{"label": "k8o", "kind": "knn", "k": 8, "symmetrize": "maximum",
                        "kernel_width": "optimise"}])
    sweep.run_sweep(cfg, log=lambda *a: None)
    assert len(seen) > 3 and set(seen) == {"maximum"}


def test_random_rotations_are_haar_distributed():
    # every entry of a Haar-random rotation is uniform on [-1, 1] (R e_j is uniform on the
    # sphere); Euler angles drawn uniformly are not: cos(beta) would follow the arcsine law
    from scipy.stats import kstest

    R = random_rotations(3000, seed=4)
    for i in range(3):           # all nine: alpha in [0, pi) keeps R_02 uniform but R_12 >= 0
        for j in range(3):
            assert kstest(R[:, i, j], "uniform", args=(-1, 2)).pvalue > 1e-3, (i, j)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)


def test_optimiser_reports_the_mean_error_at_its_width():
    # the objective is mean_l E(l), unsquared: the reported error and history are the
    # measure's own numbers at those widths
    from deepsphere.equivariance.optimise import optimise_kernel_width

    s = sampling.HEALPix(4)

    def measured(t):
        return equivariance_error(graph.knn(s, k=8, kernel_width=t), s, [3, 6], 1, 1, seed=2).overall()

    res = optimise_kernel_width(s, k=8, degrees=[3, 6], n_signals=1, n_rotations=1, seed=2, xatol=0.3)
    assert res.error == pytest.approx(measured(res.t), rel=1e-9)
    for t, e in res.history[:2]:
        assert e == pytest.approx(measured(t), rel=1e-9)


def test_sweep_table_and_summary_hold_the_measured_numbers():
    # errors.csv: 'error' is the mean of E over the samples, 'error_squared' the mean of E^2;
    # summary.csv: the mean over degrees, the smallest error and its degree, first and last
    from deepsphere.equivariance.sweep import run_sweep, summarise

    cfg = {"degrees": [3, 6, 9], "n_signals": 2, "n_rotations": 2, "seed": 1,
           "samplings": [{"name": "healpix", "nside": 4}],
           "graphs": [{"label": "k8", "kind": "knn", "k": 8, "kernel_width": 0.05}],
           "cost": {"K": 2, "channels": 1, "repeats": 1}}
    rows = run_sweep(cfg, log=lambda *a: None)
    s = sampling.HEALPix(4)
    ref = equivariance_error(graph.knn(s, k=8, kernel_width=0.05), s, [3, 6, 9], 2, 2, seed=1)
    np.testing.assert_allclose([float(r["error"]) for r in rows], ref.ratios.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose([float(r["error_squared"]) for r in rows], (ref.ratios ** 2).mean(axis=1),
                               rtol=1e-5)
    (summary,) = summarise([dict(rows[0], ell=l, error=str(e)) for l, e in [(3, 0.4), (6, 0.1), (9, 0.2)]])
    assert float(summary["mean_error"]) == pytest.approx(0.7 / 3, rel=1e-3)
    assert summary["argmin_l"] == 6 and float(summary["min_error"]) == pytest.approx(0.1)
    assert (summary["first_l"], summary["last_l"]) == (3, 9)
    assert float(summary["error_first"]) == pytest.approx(0.4) and float(summary["error_last"]) == pytest.approx(0.2)
