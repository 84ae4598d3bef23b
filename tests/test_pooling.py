"""Pooling and unpooling, checked against healpy.ud_grade, numpy reshapes and scipy k-d trees."""
import healpy as hp
import numpy as np
import pytest
import torch

from deepsphere.nn.pooling import (HEALPixPool, HEALPixUnpool, HierarchyPool, HierarchyUnpool,
                                   RemapPool)
from deepsphere.sampling import HEALPix, Equiangular, Irregular



@pytest.fixture(autouse=True)
def float64_default():
    """float64 within this file only: a module-level default would leak into other files."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _maps(nside, batch=2, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 12 * nside**2, channels))


@pytest.mark.parametrize("nside,levels", [(8, 1), (8, 2), (16, 3)])
def test_healpix_average_pool_equals_ud_grade(nside, levels):
    m = _maps(nside)
    y = HEALPixPool(nside, levels=levels)(torch.from_numpy(m)).numpy()
    for b in range(m.shape[0]):
        for c in range(m.shape[2]):
            ref = hp.ud_grade(m[b, :, c], nside >> levels, order_in="NESTED", order_out="NESTED")
            np.testing.assert_allclose(y[b, :, c], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("levels", [1, 2])
def test_healpix_nearest_unpool_equals_ud_grade_up(levels):
    nside = 8
    coarse = _maps(nside >> levels)
    y = HEALPixUnpool(nside, levels=levels)(torch.from_numpy(coarse)).numpy()
    for c in range(coarse.shape[2]):
        ref = hp.ud_grade(coarse[0, :, c], nside, order_in="NESTED", order_out="NESTED")
        np.testing.assert_array_equal(y[0, :, c], ref)


def test_healpix_max_pool_and_indices():
    nside, levels = 8, 2
    m = _maps(nside)
    y, idx = HEALPixPool(nside, levels=levels, mode="max", return_indices=True)(torch.from_numpy(m))
    f = 4**levels
    ref = m.reshape(2, -1, f, 3).max(axis=2)
    np.testing.assert_array_equal(y.numpy(), ref)
    # indices point at the maxima, inside the right parent
    np.testing.assert_array_equal(np.take_along_axis(m, idx.numpy(), axis=1), ref)
    assert np.all(idx.numpy() // f == np.arange(m.shape[1] // f)[None, :, None])
    # max unpooling: values back at their argmax, zeros elsewhere (torch.nn.MaxUnpool1d)
    up = HEALPixUnpool(nside, levels=levels, mode="max")(y, idx)
    ref_up = torch.nn.functional.max_unpool1d(
        y.transpose(1, 2), idx.transpose(1, 2), kernel_size=f, output_size=(m.shape[1],)
    ).transpose(1, 2)
    torch.testing.assert_close(up, ref_up, rtol=0, atol=0)
    assert (up != 0).sum() == y.numel()


def test_max_unpool_gradient_flows_to_winners():
    nside = 4
    x = torch.from_numpy(_maps(nside)).requires_grad_()
    y, idx = HEALPixPool(nside, mode="max", return_indices=True)(x)
    HEALPixUnpool(nside, mode="max")(y, idx).sum().backward()
    assert x.grad.sum().item() == y.numel()
    assert torch.all(x.grad.gather(1, idx) == 1)


def test_partial_sky_pooling_matches_full_sky():
    nside, levels = 8, 2
    pixels = np.arange(3 * 16, 7 * 16)  # four nside-2 parents' descendants
    s = HEALPix(nside, pixels, levels=levels)
    m = _maps(nside)
    y = HEALPixPool(s, levels=levels)(torch.from_numpy(m[:, pixels]))
    full = HEALPixPool(nside, levels=levels)(torch.from_numpy(m))
    torch.testing.assert_close(y, full[:, 3:7])
    up = HEALPixUnpool(s, levels=levels)(y)
    assert up.shape == (2, len(pixels), 3)
    torch.testing.assert_close(up, HEALPixUnpool(nside, levels)(full)[:, pixels])


def test_partial_sky_not_closed_errors():
    s = HEALPix(8, np.arange(0, 20), levels=1)  # closed for 1 level, not for 2
    with pytest.raises(ValueError, match="not closed"):
        HEALPixPool(s, levels=2)

    class Broken(HEALPix):  # a sampling whose parent map gives 3 children to parent 0
        def parent_index(self):
            p = super().parent_index().copy()
            p[0] = 1
            return p

    with pytest.raises(ValueError, match="instead of 4"):
        HierarchyPool(Broken(4))


def test_equiangular_pools_by_four_like_2x2_reshape():
    s = Equiangular(8, "DH")
    assert s.nlat == s.nlon == 16
    pool = HierarchyPool(s)
    assert pool.n_coarse * 4 == s.npix == pool.coarse_sampling.npix * 4
    x = np.random.default_rng(1).standard_normal((2, s.npix, 3))
    y = pool(torch.from_numpy(x)).numpy()
    g = x.reshape(2, 8, 2, 8, 2, 3)  # (batch, lat/2, 2, lon/2, 2, C)
    np.testing.assert_allclose(y, g.mean(axis=(2, 4)).reshape(2, 64, 3), rtol=1e-12)
    ym, idx = HierarchyPool(s, mode="max", return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(ym.numpy(), g.max(axis=(2, 4)).reshape(2, 64, 3))
    np.testing.assert_array_equal(np.take_along_axis(x, idx.numpy(), 1), ym.numpy())
    # unpooling: nearest copies each coarse value onto its 2x2 block
    up = HierarchyUnpool(s)(torch.from_numpy(g.mean(axis=(2, 4)).reshape(2, 64, 3))).numpy()
    ref = np.repeat(np.repeat(g.mean(axis=(2, 4)), 2, axis=1), 2, axis=2).reshape(2, 256, 3)
    np.testing.assert_array_equal(up, ref)
    # max unpool puts each max back where it was
    upm = HierarchyUnpool(s, mode="max")(ym, idx).numpy()
    assert np.all((upm == x) | (upm == 0))
    assert np.count_nonzero(upm) == ym.numel()


def test_equiangular_two_levels_reduces_by_16():
    s = Equiangular(8, "SOFT")
    pool = HierarchyPool(s, levels=2)
    x = torch.randn(1, s.npix, 2)
    assert pool(x).shape == (1, s.npix // 16, 2)


def test_non_hierarchical_errors():
    s = Irregular([0, 10, 20, 30], [0, 5, 10, 15], units="deg")
    with pytest.raises(ValueError, match="not hierarchical.*RemapPool"):
        HierarchyPool(s)
    with pytest.raises(ValueError, match="not hierarchical"):
        HierarchyPool(Equiangular(5, "DH"))
    with pytest.raises(ValueError, match="not hierarchical"):
        HierarchyPool(Equiangular(4, "GL"))
    with pytest.raises(ValueError, match="levels must be >= 1"):
        HEALPixPool(4, levels=0)
    with pytest.raises(ValueError, match="coarsened"):
        HEALPixPool(4, levels=3)


def test_vertex_count_mismatch_error_names_nside():
    pool = HEALPixPool(8)
    with pytest.raises(ValueError, match=r"192 vertices.*768.*nside=8.*nside=4"):
        pool(torch.randn(1, 192, 1))
    with pytest.raises(ValueError, match=r"\[batch, vertices, channels\]"):
        pool(torch.randn(768, 1))
    with pytest.raises(ValueError, match="coarse"):
        HEALPixUnpool(8)(torch.randn(1, 768, 1))
    with pytest.raises(ValueError, match="needs the indices"):
        HEALPixUnpool(8, mode="max")(torch.randn(1, 192, 1))
    with pytest.raises(ValueError, match="mode"):
        HEALPixPool(8, mode="median")
    with pytest.raises(ValueError, match="return_indices"):
        HEALPixPool(8, mode="average", return_indices=True)


def test_remap_nearest_equals_healpix_average_pool():
    # NESTED children are nearest to their own parent's centre (checked here with a k-d tree
    # independently of the remap), so the Voronoi-cell average is the HEALPix average.
    fine, coarse = HEALPix(8), HEALPix(4)
    from scipy.spatial import cKDTree

    _, near = cKDTree(coarse.vectors).query(fine.vectors)
    assert np.array_equal(near, np.arange(fine.npix) // 4)
    x = torch.from_numpy(_maps(8))
    torch.testing.assert_close(RemapPool(fine, coarse)(x), HEALPixPool(8)(x))
    # upwards, empty targets take their nearest source: nearest-neighbour upsampling
    y = torch.from_numpy(_maps(4))
    torch.testing.assert_close(RemapPool(coarse, fine)(y), HEALPixUnpool(8)(y))
    with pytest.raises(ValueError, match="nearest to no source"):
        RemapPool(coarse, fine, empty="raise")


def test_remap_irregular_properties():
    rng = np.random.default_rng(3)
    n = 200
    lon, lat = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    src = Irregular(lon, lat, units="deg")
    tgt = HEALPix(2)
    for pool in (RemapPool(src, tgt), RemapPool(src, tgt, method="knn", k=5)):
        P = pool.matrix()
        assert P.shape == (tgt.npix, n)
        np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0)  # averages
        x = torch.from_numpy(rng.standard_normal((2, n, 3)))
        y = pool(x)
        np.testing.assert_allclose(y[1].numpy(), P @ x[1].numpy(), rtol=1e-12)
        # constants are preserved
        torch.testing.assert_close(pool(torch.ones(1, n, 1)), torch.ones(1, tgt.npix, 1))
    # nearest: rebuilt by brute force (argmax of dot products) as a dense matrix
    ang = tgt.vectors @ src.vectors.T
    owner = np.argmax(ang, axis=0)  # nearest target of each source
    ref = np.zeros((tgt.npix, n))
    ref[owner, np.arange(n)] = 1.0
    empty = ref.sum(axis=1) == 0
    ref[np.flatnonzero(empty), np.argmax(ang[empty], axis=1)] = 1.0
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(RemapPool(src, tgt).matrix().toarray(), ref, rtol=1e-12)
    # knn: the chosen sources are the k closest by brute force
    pool = RemapPool(src, tgt, method="knn", k=5, width=float("inf"))
    P = pool.matrix().toarray()
    np.testing.assert_allclose(P[P > 0], 0.2)
    brute = np.argsort(-ang, axis=1)[:, :5]
    assert np.array_equal(np.sort(np.nonzero(P)[1].reshape(-1, 5), 1), np.sort(brute, 1))


def test_buffers_are_not_persistent_and_move():
    pool = HierarchyPool(Equiangular(4, "DH"))
    assert pool.state_dict() == {}
    assert RemapPool(HEALPix(4), HEALPix(2)).state_dict() == {}
    pool = pool.to(torch.float32)
    assert pool.perm.dtype == torch.int64  # index buffers keep their dtype


def test_pooling_refuses_fractional_levels_foreign_inputs_and_float_indices():
    """levels=1.5 pooled once without a word (HEALPix(levels=1.5) is refused); a numpy input
    gave "'numpy.ndarray' object has no attribute 'dim'" and float indices a bare scatter()
    error."""
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match=r"levels must be an int \(number of poolings by 4\)"):
            HEALPixPool(4, levels=bad)
    with pytest.raises(TypeError, match=r"levels must be an int"):
        HierarchyUnpool(Equiangular(8, "DH"), levels=2.0)
    assert HEALPixPool(8, levels=np.int64(2)).n_coarse == 48
    with pytest.raises(TypeError, match=r"input must be a torch.Tensor, got ndarray.*torch.as_tensor"):
        HEALPixPool(4)(np.zeros((1, 192, 1)))
    y, idx = HEALPixPool(4, mode="max", return_indices=True)(torch.randn(2, 192, 3))
    unpool = HEALPixUnpool(4, mode="max")
    with pytest.raises(TypeError, match=r"indices must be the int64 tensor returned by HierarchyPool"):
        unpool(y, idx.float())
    out = unpool(y, idx)
    assert torch.equal(out.gather(1, idx), y) and int((out != 0).sum()) == y.numel()


def test_max_unpool_refuses_indices_out_of_range_or_of_another_parent():
    """An index >= 192 or < 0 gave torch's bare "index 192 is out of bounds" (a device assert
    on a GPU); an index in range but outside its coarse vertex's children was scattered
    silently, overwriting another winner's place."""
    y, idx = HEALPixPool(4, mode="max", return_indices=True)(torch.randn(2, 192, 3))
    unpool = HEALPixUnpool(4, mode="max")
    for bad in (192, -1, 10**6):
        i = idx.clone()
        i[1, 5, 2] = bad
        with pytest.raises(ValueError, match=r"indices must lie in \[0, 192\).*got " + str(bad)):
            unpool(y, i)
    i = idx.clone()
    i[0, 0, 0] = 100  # in range, but a child of coarse vertex 25, not 0
    with pytest.raises(ValueError, match=r"indices\[0, 0, 0\] = 100 is not a child of its coarse vertex"):
        unpool(y, i)
    # the same on a grid whose children are not consecutive (a permuted hierarchy)
    s = Equiangular(8, "DH")
    ym, im = HierarchyPool(s, mode="max", return_indices=True)(torch.randn(1, s.npix, 2))
    up = HierarchyUnpool(s, mode="max")
    torch.testing.assert_close(up(ym, im).gather(1, im), ym)
    i = im.clone()
    i[0, 3, 1] = im[0, 4, 1]
    with pytest.raises(ValueError, match=r"indices\[0, 3, 1\] = \d+ is not a child of its coarse vertex"):
        up(ym, i)
    i[0, 3, 1] = s.npix
    with pytest.raises(ValueError, match=rf"indices must lie in \[0, {s.npix}\)"):
        up(ym, i)
    # shapes: a batch or channel count that differs from x
    with pytest.raises(ValueError, match=r"indices must have the shape of x, \(2, 48, 3\); got \(1, 48, 3\)"):
        unpool(y, idx[:1])
    with pytest.raises(ValueError, match=r"indices must have the shape of x"):
        unpool(y, idx[..., :2])
    # an empty batch is fine
    assert unpool(y[:0], idx[:0]).shape == (0, 192, 3)


@pytest.mark.parametrize("width", [0.05, None])
def test_remap_knn_weights_are_the_heat_kernel_of_chordal_distance(width):
    """method='knn': P[t, s] = exp(-d^2 / 4t) / sum over the k nearest, d chordal, t = width
    or the mean squared distance to the k neighbours."""
    rng = np.random.default_rng(4)
    n, k = 120, 4
    src = Irregular(rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                    units="deg")
    tgt = HEALPix(1)
    d2 = np.sum((tgt.vectors[:, None] - src.vectors[None]) ** 2, axis=-1)
    near = np.argsort(d2, axis=1)[:, :k]
    dk = np.take_along_axis(d2, near, axis=1)
    t = dk.mean() if width is None else width
    ref = np.zeros((tgt.npix, n))
    np.put_along_axis(ref, near, np.exp(-dk / (4 * t)), axis=1)
    ref /= ref.sum(axis=1, keepdims=True)
    P = RemapPool(src, tgt, method="knn", k=k, width=width).matrix().toarray()
    np.testing.assert_allclose(P, ref, rtol=1e-10, atol=1e-15)
