"""Samplings checked against healpy's geometry and against analytic integrals."""
import healpy as hp
import numpy as np
import pytest
from scipy.special import sph_harm_y

from deepsphere.sampling import HEALPix, Equiangular, Irregular, UNSEEN, closure, is_closed, check_nside
from deepsphere.sampling.healpix import ring_roughness_if_suspect, roughness_ratio


# ---- HEALPix -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 3, 12, 16384, -4, 2.5])
def test_nside_must_be_power_of_two(bad):
    with pytest.raises(ValueError, match="power of two"):
        HEALPix(bad)


def test_nside_type_error():
    with pytest.raises(TypeError, match="nside"):
        check_nside("sixteen")


@pytest.mark.parametrize("nside", [1, 2, 8, 8192])
def test_nside_valid_range(nside):
    assert HEALPix(nside).npix == 12 * nside**2


def test_full_sky_geometry_matches_healpy():
    s = HEALPix(8)
    x, y, z = hp.pix2vec(8, np.arange(768), nest=True)
    np.testing.assert_allclose(s.vectors, np.stack([x, y, z], 1), atol=1e-14)
    lon, lat = hp.pix2ang(8, np.arange(768), nest=True, lonlat=True)
    np.testing.assert_allclose(s.lat, lat, atol=1e-10)
    np.testing.assert_allclose(np.cos(np.radians(s.lon - lon)), 1, atol=1e-12)
    assert s.areas.sum() == pytest.approx(4 * np.pi)


def test_parent_is_the_coarse_pixel_containing_the_child():
    s = HEALPix(8)
    c = s.coarsen()
    parents = c.pixels[s.parent_index()]
    # independent: ask healpy which coarse pixel contains each fine pixel's centre
    expected = hp.vec2pix(4, *s.vectors.T, nest=True)
    np.testing.assert_array_equal(parents, expected)
    assert c.npix * 4 == s.npix


def test_partial_sky_closure_and_check():
    pix = np.array([0, 1, 2, 3, 17, 40])
    with pytest.raises(ValueError, match="not closed"):
        HEALPix(8, pix, levels=1)
    ext = closure(pix, 8, 1)
    assert set(pix) <= set(ext) and is_closed(ext, 1)
    np.testing.assert_array_equal(np.unique(ext // 4), np.unique(pix // 4))
    s = HEALPix.from_pixels(8, pix[::-1], levels=2, extend=True)
    assert s.npix == 16 * len(np.unique(pix // 16))
    c = s.coarsen()
    np.testing.assert_array_equal(c.pixels[s.parent_index()], s.pixels // 4)
    assert c.coarsen().npix == len(np.unique(pix // 16))


def test_unsorted_or_duplicate_pixels_rejected():
    with pytest.raises(ValueError, match="sorted"):
        HEALPix(4, [3, 1, 2])
    with pytest.raises(ValueError, match="duplicate"):
        HEALPix(4, [1, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        HEALPix(4, [1, 192])
    with pytest.raises(TypeError, match="from_mask"):
        HEALPix(4, np.ones(192, bool))


def test_from_map_ring_with_unseen():
    nside = 8
    m = np.arange(768, dtype=float)
    m[hp.ang2pix(nside, np.radians(30), 0, lonlat=False) :] = UNSEEN  # RING: south part unseen
    s = HEALPix.from_map(m, order="RING")
    seen_ring = np.flatnonzero(m != UNSEEN)
    np.testing.assert_array_equal(s.pixels, np.sort(hp.ring2nest(nside, seen_ring)))
    vals = s.take(np.where(m == UNSEEN, 0.0, m), order="RING")
    np.testing.assert_array_equal(vals, hp.nest2ring(nside, s.pixels))


def test_take_requires_explicit_order_and_converts_ring():
    s = HEALPix(4)
    m_ring = np.random.default_rng(0).standard_normal(192)
    np.testing.assert_array_equal(s.take(m_ring, order="RING"), hp.reorder(m_ring, r2n=True))
    with pytest.raises(ValueError, match="order"):
        s.take(m_ring, order="nested-ish")


def test_ring_map_declared_nested_is_detected():
    nside = 32
    # a smooth map (low multipoles) in RING order
    lon, lat = hp.pix2ang(nside, np.arange(12 * nside**2), lonlat=True)
    m = np.cos(np.radians(lat)) * np.sin(np.radians(lon)) + np.sin(np.radians(lat))
    with pytest.raises(ValueError, match="looks like RING"):
        HEALPix(nside).take(m, order="NESTED")
    # the same map reordered correctly passes
    HEALPix(nside).take(hp.reorder(m, r2n=True), order="NESTED")
    # white noise never triggers
    HEALPix(nside).take(np.random.default_rng(0).standard_normal(m.size), order="NESTED")


def _smooth_ring(nside, fwhm, seed):
    """A Gaussian random field under a Gaussian beam, RING ordered as healpy makes it."""
    return hp.smoothing(np.random.default_rng(seed).standard_normal(12 * nside**2), fwhm=fwhm)


def _add_sources(m, k, rng):
    """``m`` with ``k`` point sources of amplitude 1e2 to 1e6 (either sign) on random pixels."""
    m = m.copy()
    pix = rng.choice(m.size, size=k, replace=False)
    m[pix] += 10 ** rng.uniform(2, 6, size=k) * rng.choice([-1, 1], size=k)
    return m


@pytest.mark.parametrize("seed", range(4))
def test_ring_map_smoothed_over_three_pixels_declared_nested_is_caught(seed):
    # fwhm 0.2 rad is about 3 pixels at nside 16: ratio about 3-4, below the former threshold 20
    m = _smooth_ring(16, 0.2, seed)
    with pytest.raises(ValueError, match="looks like RING"):
        HEALPix(16).take(m, order="NESTED")
    # point sources on top do not hide it (they weighed the same in both orderings)
    with pytest.raises(ValueError, match="looks like RING"):
        HEALPix(16).take(_add_sources(m, 3, np.random.default_rng(seed)), order="NESTED")
    # the same map reordered correctly passes, and is far smoother as NESTED
    nested = hp.reorder(m, r2n=True)
    HEALPix(16).take(nested, order="NESTED")
    assert roughness_ratio(nested, 16) < 0.5


def test_zonal_ring_map_declared_nested_is_caught():
    # a field of latitude only (most climate fields nearly are): equal along each RING row, so
    # most NESTED "neighbours" of a RING map (same row) differ by 0 and only a few pairs carry
    # the signal; a statistic that trims large differences would lose it
    nside = 16
    lat = hp.pix2ang(nside, np.arange(12 * nside**2), lonlat=True)[1]
    m = np.sin(np.radians(lat)) + 1e-3 * np.random.default_rng(0).standard_normal(lat.size)
    with pytest.raises(ValueError, match="looks like RING"):
        HEALPix(nside).take(m, order="NESTED")
    HEALPix(nside).take(hp.reorder(m, r2n=True), order="NESTED")


@pytest.mark.parametrize("nside", [16, 64])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_nested_maps_with_point_sources_are_not_flagged(nside, k):
    # a few bright pixels on a correct NESTED map were seen from some of their neighbours only
    # (random probes) and gave ratios far above 20
    rng = np.random.default_rng(10 * nside + k)
    npix = 12 * nside**2
    lat = hp.pix2ang(nside, np.arange(npix), nest=True, lonlat=True)[1]
    for trial in range(8):
        background = [np.zeros(npix), rng.standard_normal(npix),
                      hp.reorder(_smooth_ring(nside, 0.2, trial), r2n=True)][trial % 3]
        m = _add_sources(background, k, rng)
        if trial >= 4:  # the south cap observed only
            m = np.where(lat < 30, m, UNSEEN)
        assert ring_roughness_if_suspect(m, nside) is None, trial
        HEALPix.from_map(m, order="NESTED")


def test_subsampled_roughness_is_not_led_by_point_sources():
    # maps with more than n_probe pixels are probed on a random subset; one bright pixel next
    # to a probe must not decide the ratio
    nside, rng = 64, np.random.default_rng(5)
    smooth = hp.reorder(_smooth_ring(nside, 0.2, 5), r2n=True)
    for trial in range(10):
        m = _add_sources(smooth, 1 + trial % 3, rng)
        assert roughness_ratio(m, nside, n_probe=4096, seed=trial) < 1.0
    # and a RING map is still told from its subsample
    assert roughness_ratio(hp.reorder(smooth, n2r=True), nside, n_probe=4096) > 5.0


def _checkerboard(nside):
    # +-1 alternating on each base pixel's x-y grid: the most pixel-scale map there is
    x, y, _ = hp.pix2xyf(nside, np.arange(12 * nside**2), nest=True)
    return (-1.0) ** (x + y)


@pytest.mark.parametrize("nside", [4, 8, 32])
def test_correct_nested_maps_of_many_kinds_are_not_flagged(nside):
    rng = np.random.default_rng(nside)
    npix = 12 * nside**2
    smooth = hp.reorder(_smooth_ring(nside, 0.2, nside), r2n=True)
    lat = hp.pix2ang(nside, np.arange(npix), nest=True, lonlat=True)[1]
    maps = {
        "white": rng.standard_normal(npix),
        "checkerboard": _checkerboard(nside) + 0.01 * rng.standard_normal(npix),
        "lognormal": np.exp(2 * smooth / smooth.std()),
        "binary": (smooth > 0).astype(float),
        "counts": rng.poisson(0.1 * np.exp(smooth / smooth.std())).astype(float),
        "const+tiny noise": 5 + 1e-9 * rng.standard_normal(npix),
        "mostly unseen": np.where(lat < -53, rng.standard_normal(npix), UNSEEN),
        "ten sources": _add_sources(np.zeros(npix), 10, rng),
    }
    for name, m in maps.items():
        r = roughness_ratio(m, nside)
        assert np.isfinite(r) and r < 1.6, (name, r)
        assert ring_roughness_if_suspect(m, nside) is None, name


def test_roughness_of_constant_or_unseen_maps_is_undecided():
    for m in (np.full(768, 3.0), np.zeros(768), np.full(768, UNSEEN), np.full(768, np.nan)):
        assert roughness_ratio(m, 8) == 1.0
        assert ring_roughness_if_suspect(m, 8) is None


def test_take_bad_values_and_sizes():
    s = HEALPix(4)
    m = np.zeros(192)
    m[5] = np.nan
    m[7] = UNSEEN
    with pytest.raises(ValueError, match="UNSEEN/NaN"):
        s.take(m, order="NESTED")
    out = s.take(m, order="NESTED", unseen="zero")
    assert out[5] == 0 and out[7] == 0
    with pytest.raises(ValueError, match="nside"):
        s.take(np.zeros(768), order="NESTED")


def test_take_half_precision_map_is_not_all_unseen():
    # UNSEEN overflows float16 to -inf: every value was "close" to it and the map refused
    s = HEALPix(4)
    m = np.random.default_rng(0).standard_normal(192).astype(np.float16)
    np.testing.assert_array_equal(s.take(m, order="NESTED"), m)
    m[9] = np.nan
    with pytest.raises(ValueError, match=r"1 UNSEEN/NaN/inf values .*positions \[9\]"):
        s.take(m, order="NESTED")


# ---- Equiangular ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["DH", "SOFT", "CC", "GL"])
def test_quadrature_integrates_harmonic_products_exactly(kind):
    b = 6
    s = Equiangular(b, kind)
    th, ph, w = s.theta, s.phi, s.areas
    lm = [(l, m) for l in range(b) for m in range(-l, l + 1)]
    Y = np.stack([sph_harm_y(l, m, th, ph) for l, m in lm], 1)
    gram = (Y.conj().T * w) @ Y
    np.testing.assert_allclose(gram, np.eye(len(lm)), atol=1e-12)


@pytest.mark.parametrize("b", [4, 7])
@pytest.mark.parametrize("kind,ducc_kind", [("DH", "DH"), ("SOFT", "F1"), ("CC", "CC"),
                                            ("GL", "GL")])
def test_equiangular_rings_and_areas_match_ducc0(kind, ducc_kind, b):
    """The rings' positions and weights against ducc0's grids of the same names (Fejér's
    first rule is SOFT's): interpolatory weights integrate exactly on any rings, so the
    quadrature test alone cannot tell where the rings are."""
    ducc0 = pytest.importorskip("ducc0")
    s = Equiangular(b, kind)
    want = ducc0.sht.experimental.get_gridweights(ducc_kind, s.nlat) / s.nlon
    np.testing.assert_allclose(s.to_grid(s.areas), np.tile(want[:, None], s.nlon), atol=1e-14)


@pytest.mark.parametrize("kind", ["DH", "SOFT"])
def test_equiangular_pooling_is_by_four(kind):
    """Checked by geometry, not by the index formula: every coarse point has 4 children,
    which are grid neighbours, and it is (one of) the coarse point(s) nearest to their
    centroid (ties only at the DH north pole, whose ring is a single point)."""
    s = Equiangular(8, kind)
    c = s.coarsen()
    assert s.npix == 4 * c.npix and c.bandwidth == 4 and c.kind == kind
    parent = s.parent_index()
    assert np.all(np.bincount(parent, minlength=c.npix) == 4)
    for p in range(c.npix):
        kids = s.vectors[parent == p]
        # neighbours: within one ring step and one longitude step of each other
        span = np.arccos(np.clip(kids @ kids.T, -1, 1)).max()
        assert span <= np.hypot(np.pi / s.nlat, 2 * np.pi / s.nlon) + 1e-12
        centroid = kids.mean(0)
        d = np.linalg.norm(c.vectors - centroid, axis=1)
        assert d[p] <= d.min() + 1e-12
    with pytest.raises(ValueError, match="cannot be pooled"):
        Equiangular(8, "GL").coarsen()


def test_equiangular_vectors_on_rings():
    s = Equiangular(4, "SOFT")
    np.testing.assert_allclose(np.linalg.norm(s.vectors, axis=1), 1)
    np.testing.assert_allclose(s.theta, np.arccos(s.vectors[:, 2]), atol=1e-12)


# ---- Irregular -------------------------------------------------------------------
def test_irregular_units_and_ranges():
    with pytest.raises(ValueError, match="units"):
        Irregular([0, 1], [0, 1], units="degrees")
    with pytest.raises(ValueError, match="row 1"):
        Irregular([0, 10, 20], [0, 95, 10], units="deg")
    with pytest.raises(ValueError, match="units='deg'"):
        Irregular([0, 100], [0, 45], units="rad")
    s = Irregular([0, np.pi / 2], [0, np.pi / 4], units="rad")
    np.testing.assert_allclose(s.lat, [0, 45])
    np.testing.assert_allclose(s.vectors[1], [0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)


def test_irregular_duplicates_and_empty_named():
    with pytest.raises(ValueError, match=r"rows 0 \[A\] and 2 \[C\]"):
        Irregular([10, 20, 370 - 360], [5, 5, 5], units="deg", names=["A", "B", "C"])
    with pytest.raises(ValueError, match="empty"):
        Irregular([], [], units="deg")


def test_irregular_from_csv(tmp_path):
    p = tmp_path / "stations.csv"
    p.write_text("id,lat,lon\nS1,46.5,6.6\nS2,-33.9,151.2\nS3,40.7,-74.0\nS4,0,0\n")
    s = Irregular.from_csv(p, units="deg", name="id")
    assert s.npix == 4 and s.names == ["S1", "S2", "S3", "S4"]
    np.testing.assert_allclose(s.lat, [46.5, -33.9, 40.7, 0])
    assert s.areas.sum() == pytest.approx(4 * np.pi)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lat,lon\nS1,46.5,abc\n")
    with pytest.raises(ValueError, match="line 2"):
        Irregular.from_csv(bad, units="deg")
    with pytest.raises(ValueError, match="no column 'longitude'"):
        Irregular.from_csv(p, units="deg", lon="longitude")


@pytest.mark.parametrize("levels", [1.5, True, "2"])
def test_levels_must_be_an_int(levels):
    """int() would silently read 1.5 as 1 and True as 1."""
    with pytest.raises(TypeError, match="levels must be an int"):
        HEALPix(8, levels=levels)
    assert HEALPix(8, levels=np.int64(2)).levels == 2


def test_equiangular_bandwidth_boolean_refused():
    with pytest.raises(ValueError, match="bandwidth must be a positive integer"):
        Equiangular(True)


def test_from_pixels_and_closure_refuse_what_a_cast_would_change():
    """np.asarray(..., int64) read a boolean mask as pixels {0, 1}, 2.7 as pixel 2, and let
    closure return indices outside the sphere."""
    mask = np.zeros(768, bool)
    mask[100:140] = True
    for build in (lambda p: HEALPix.from_pixels(8, p), lambda p: closure(p, 8, 1)):
        with pytest.raises(TypeError, match="from_mask"):
            build(mask)
        with pytest.raises(TypeError, match="integer NESTED indices"):
            build([1.5, 2.7])
        with pytest.raises(ValueError, match=r"out of range \[0, 768\)"):
            build([-1, 3])
        with pytest.raises(ValueError, match=r"out of range.*\[768\]"):
            build([768])
    with pytest.raises(TypeError, match="levels must be an int"):
        closure([1], 8, 1.5)
    assert HEALPix.from_pixels(8, np.flatnonzero(mask)) == HEALPix.from_mask(mask, "NESTED")
    np.testing.assert_array_equal(closure(np.array([5, 1]), 8, 1), [0, 1, 2, 3, 4, 5, 6, 7])
    assert closure([], 8, 1).size == 0


def test_from_map_and_from_mask_refuse_a_stack():
    """A stack of 4 nside-8 maps has as many values as one nside-16 map: it was read as one."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 768))
    m[:, :10] = UNSEEN
    with pytest.raises(ValueError, match=r"one full-sky map.*\(4, 768\)"):
        HEALPix.from_map(m, "RING")
    with pytest.raises(ValueError, match=r"one full-sky map.*mask.any\(axis=0\)"):
        HEALPix.from_mask(np.ones((4, 768), bool), "NESTED")
    assert HEALPix.from_map(m[0], "RING").npix == 758


def test_take_checks_unseen_option_on_clean_maps():
    with pytest.raises(ValueError, match="unseen must be 'raise' or 'zero'"):
        HEALPix(2).take(np.zeros(48), "NESTED", unseen="mask")


def test_irregular_min_separation_is_checked():
    for bad in (-1.0, float("nan"), float("inf"), "1e-3", True):
        with pytest.raises(ValueError, match="min_separation must be a distance >= 0"):
            Irregular([0, 1], [0, 0], units="deg", min_separation=bad)
    assert Irregular([0, 1], [0, 0], units="deg", min_separation=0.0).npix == 2


def test_irregular_areas_that_scipy_cannot_compute_are_explained():
    # were scipy's 'Rank of input points must be at least 3' / 'Duplicate generators present.'
    with pytest.raises(ValueError, match="not all on one plane"):
        Irregular([0, 90, 180, 270], [0, 0, 0, 0], units="deg").areas
    close = Irregular([0, 1e-6, 90, 180, 270, 0], [0, 0, 0, 0, 0, 90], units="deg")
    with pytest.raises(ValueError, match="closer than about 1e-6 rad"):
        close.areas


def test_irregular_from_csv_with_byte_order_mark(tmp_path):
    # spreadsheets' "CSV UTF-8" starts with a BOM: the first column was named '\ufefflon'
    p = tmp_path / "stations.csv"
    p.write_text("lon,lat,id\n6.6,46.5,S1\n151.2,-33.9,S2\n", encoding="utf-8-sig")
    s = Irregular.from_csv(p, units="deg", name="id")
    np.testing.assert_allclose(s.lon, [6.6, 151.2])
    assert s.names == ["S1", "S2"]


def test_irregular_names_as_one_string_refused():
    # "abc" for 3 points named them 'a', 'b', 'c'
    with pytest.raises(TypeError, match="one per point"):
        Irregular([0, 1, 2], [0, 0, 0], units="deg", names="abc")


def test_longitudes_stay_below_a_full_turn():
    """np.mod(-1e-17, 2 pi) is exactly 2 pi: tiny negative longitudes came back as 2 pi rad /
    360 deg, outside the documented [0, 2 pi) / [0, 360)."""
    from deepsphere.sampling import Irregular

    s = Irregular([-1e-15, -1e-13, 10.0, 359.9999999999999, -180.0], [0, 10, 20, 30, 40], units="deg")
    assert np.all((s.phi >= 0) & (s.phi < 2 * np.pi))
    assert np.all((s.lon >= 0) & (s.lon < 360))
    for q in (s.lon, np.degrees(s.phi)):
        np.testing.assert_allclose(np.cos(np.radians(q)), np.cos(np.radians([0, 0, 10, 0, 180])), atol=1e-12)
    h = HEALPix(4)
    assert h.lon.max() < 360 and h.phi.max() < 2 * np.pi
    np.testing.assert_allclose(h.lon, np.degrees(hp.pix2ang(4, np.arange(192), nest=True)[1]), atol=1e-9)


def test_irregular_from_csv_with_spaces_after_commas(tmp_path):
    """A hand-written "lon, lat" header was refused: its second column was named ' lat'."""
    from deepsphere.sampling import Irregular

    p = tmp_path / "spaced.csv"
    p.write_text("name, lon , lat\nGeneva, 6.14, 46.2\nQuito, -78.5,  -0.22\n")
    s = Irregular.from_csv(p, units="deg", name="name")
    np.testing.assert_allclose(s.lat, [46.2, -0.22])
    np.testing.assert_allclose(s.lon, [6.14, 360 - 78.5])
    assert list(s.names) == ["Geneva", "Quito"]


def test_dh_weights_are_the_closed_form_and_never_negative():
    """The DH north-pole weight came out of the linear solve as about -1e-16 (b = 2, 4, 16,
    32): a negative area for 2b pixels. The Driscoll-Healy closed form,
    w_j = (2/b) sin(theta_j) sum_l sin((2l+1) theta_j) / (2l+1), is exactly 0 at the pole."""
    for b in (1, 2, 3, 4, 5, 8, 16, 32, 64):
        s = Equiangular(b, "DH")
        theta = np.pi * np.arange(2 * b) / (2 * b)
        odd = 2 * np.arange(b) + 1
        ref = (2 / b) * np.sin(theta) * (np.sin(np.outer(theta, odd)) / odd).sum(axis=1)
        np.testing.assert_allclose(s.ring_weights, ref, rtol=0, atol=1e-14)
        assert s.ring_weights[0] == 0.0 and np.all(s.areas[: s.nlon] == 0.0)
        assert np.all(s.areas >= 0)
    for kind in ("SOFT", "CC", "GL"):
        for b in (1, 2, 3, 4, 8, 16, 33, 64):
            assert np.all(Equiangular(b, kind).ring_weights > 0), (kind, b)


def test_ring_weights_are_a_copy_of_the_cached_quadrature():
    """ring_weights returned the cached array itself: one caller's in-place edit changed the
    weights (and areas) of every later grid of that bandwidth and kind."""
    s = Equiangular(4, "DH")
    w = s.ring_weights
    w *= 0
    assert Equiangular(4, "DH").ring_weights.sum() == pytest.approx(2.0)
    assert s.areas.sum() == pytest.approx(4 * np.pi)


def test_a_user_sampling_without_recipe_goes_into_graph_caches_and_models(tmp_path):
    """Tutorial 1 calls recipe() optional; without one, graph caches, every model and
    ``deepsphere train`` stopped on a bare NotImplementedError."""
    import torch

    from deepsphere import graph, models
    from deepsphere.sampling import Sampling

    class Points(Sampling):
        def __init__(self, lon, lat):
            self._v = Irregular(lon, lat, units="deg").vectors

        @property
        def vectors(self):
            return self._v

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(0, 360, 60), rng.uniform(-60, 60, 60)
    s = Points(lon, lat)
    r = s.recipe()
    assert r["name"] == "Points" and r["npix"] == 60 and r == Points(lon, lat).recipe()
    assert r != Points(lon[::-1], lat[::-1]).recipe()  # other points, another recipe
    g1 = graph.build(s, {"kind": "knn", "k": 6}, cache_dir=tmp_path)
    g2 = graph.build(Points(lon, lat), {"kind": "knn", "k": 6}, cache_dir=tmp_path)
    assert "cached" in g2.recipe and abs(g1.adjacency - g2.adjacency).max() == 0
    m = models.StationRegressor(s, 2, 1, channels=[4], K=3, graph={"kind": "knn", "k": 6})
    assert m(torch.randn(2, 60, 2)).shape == (2, 60, 1)
    m2 = models.StationRegressor.from_config(m.config, sampling=Points(lon, lat))
    with pytest.raises(ValueError, match="differs from the one the model was built on"):
        models.StationRegressor.from_config(m.config, sampling=Points(lon[::-1], lat[::-1]))
    with pytest.raises(ValueError, match="cannot be rebuilt from its recipe alone"):
        models.StationRegressor.from_config(m.config)
    assert m2.config == m.config


@pytest.mark.parametrize("levels", [1, 2])
def test_is_closed_looks_at_every_parent_not_only_the_count(levels):
    """A set of the right size (a multiple of 4**levels) with a parent missing children is
    not closed; checked against the definition, parent by parent."""
    f = 4**levels
    rng = np.random.default_rng(levels)
    for _ in range(20):
        pix = np.sort(rng.choice(12 * 16**2, size=2 * f, replace=False))
        want = all(np.isin(p * f + np.arange(f), pix).all() for p in np.unique(pix // f))
        assert not want and is_closed(pix, levels) == want
    pix = np.array([0, 1, 2, 4])  # four pixels, parents 0 (3 children) and 1 (1 child)
    assert not is_closed(pix, 1)
    with pytest.raises(ValueError, match="not closed"):
        HEALPix(16, pix, levels=1)
    ok = closure(pix, 16, levels)
    assert is_closed(ok, levels) and len(ok) == f * len(np.unique(pix // f))


def test_irregular_from_a_2d_grid_is_told_to_ravel():
    lon, lat = np.meshgrid(np.arange(0.0, 360.0, 30.0), np.arange(-60.0, 61.0, 30.0))
    with pytest.raises(ValueError, match=r"got shapes \(5, 12\) and \(5, 12\); for a grid of points "
                                         r"\(e.g. from np.meshgrid\) pass lon.ravel\(\) and lat.ravel\(\)"):
        Irregular(lon, lat, units="deg")
    assert Irregular(lon.ravel(), lat.ravel(), units="deg").npix == 60
