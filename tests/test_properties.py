"""Property-based tests of invariants that must hold for every input."""
import healpy as hp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepsphere import graph
from deepsphere.nn import HierarchyPool, HierarchyUnpool
from deepsphere.sampling import HEALPix, Irregular, closure, is_closed

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

nsides = st.sampled_from([1, 2, 4, 8])


@SETTINGS
@given(nside=nsides, data=st.data())
def test_pixel_vector_round_trip(nside, data):
    """pixel -> vector -> pixel is the identity (healpy as the independent inverse)."""
    npix = 12 * nside**2
    pix = np.unique(data.draw(st.lists(st.integers(0, npix - 1), min_size=1, max_size=50)))
    s = HEALPix(nside, pix)
    np.testing.assert_array_equal(hp.vec2pix(nside, *s.vectors.T, nest=True), pix)
    # lon/lat -> vectors -> lon/lat
    back = Irregular(s.lon, s.lat, units="deg", min_separation=0)
    np.testing.assert_allclose(back.vectors, s.vectors, atol=1e-12)


@SETTINGS
@given(lon=st.floats(-180, 360), lat=st.floats(-90, 90))
def test_lonlat_round_trip(lon, lat):
    s = Irregular([lon], [lat], units="deg")
    assert s.lat[0] == pytest.approx(lat, abs=1e-9)
    if abs(lat) < 89.999:
        assert np.cos(np.radians(s.lon[0] - lon)) == pytest.approx(1.0, abs=1e-9)


@SETTINGS
@given(nside=st.sampled_from([4, 8, 16]), levels=st.integers(0, 2), data=st.data())
def test_closure_is_minimal_closed_superset(nside, levels, data):
    npix = 12 * nside**2
    pix = np.unique(data.draw(st.lists(st.integers(0, npix - 1), min_size=1, max_size=40)))
    ext = closure(pix, nside, levels)
    assert is_closed(ext, levels) and np.isin(pix, ext).all()
    np.testing.assert_array_equal(np.unique(ext // 4**levels), np.unique(pix // 4**levels))


@SETTINGS
@given(k=st.integers(1, 12), kind=st.sampled_from(["normalized", "combinatorial"]),
       seed=st.integers(0, 2**16), n=st.integers(16, 60))
def test_laplacian_symmetric_psd_with_null_space(k, kind, seed, n):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    lat = np.degrees(np.arcsin(pts[:, 2]))
    lon = np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
    s = Irregular(lon, lat, units="deg")
    g = graph.knn(s, k=min(k, n - 1), kernel_width="heuristic")
    L = g.laplacian(kind).toarray()
    np.testing.assert_allclose(L, L.T, atol=1e-14)
    ev, U = np.linalg.eigh(L)
    assert ev[0] > -1e-10
    # null space: one dimension per connected component, spanned by 1 (combinatorial)
    # or D^{1/2} 1 (normalized) restricted to each component
    from scipy.sparse.csgraph import connected_components

    ncomp, labels = connected_components(g.adjacency, directed=False)
    assert np.sum(ev < 1e-9) == ncomp
    v = np.ones(n) if kind == "combinatorial" else np.sqrt(g.degrees)
    np.testing.assert_allclose(L @ v, 0, atol=1e-10)
    if kind == "normalized":
        assert ev[-1] <= 2 + 1e-10
        assert g.lmax(kind) >= ev[-1]


@SETTINGS
@given(nside=st.sampled_from([2, 4, 8]), levels=st.integers(1, 2), c=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_pool_unpool_identities(nside, levels, c, seed):
    if nside >> levels < 1:
        return
    s = HEALPix(nside)
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(2, s.npix // 4**levels, c, generator=g, dtype=torch.float64)
    up = HierarchyUnpool(s, levels, mode="nearest")
    avg = HierarchyPool(s, levels, mode="average")
    mx = HierarchyPool(s, levels, mode="max", return_indices=True)
    # pooling a nearest-unpooled map gives it back (average and max)
    torch.testing.assert_close(avg(up(coarse)), coarse)
    torch.testing.assert_close(mx(up(coarse))[0], coarse)
    # max-unpool(max-pool(x)) keeps exactly the maxima at their places, zeros elsewhere
    fine = torch.randn(2, s.npix, c, generator=g, dtype=torch.float64)
    y, idx = mx(fine)
    z = HierarchyUnpool(s, levels, mode="max")(y, idx)
    torch.testing.assert_close(torch.gather(z, 1, idx), y)
    torch.testing.assert_close(torch.gather(fine, 1, idx), y)
    assert int((z != 0).sum()) == y.numel()
    torch.testing.assert_close(mx(z)[0], y.clamp(min=0))
