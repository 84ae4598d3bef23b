"""Climate segmentation data: NetCDF reading/writing, area-conserving regridding, the
synthetic generator's physics and class balance, and the dataset contract."""
import numpy as np
import pytest

from deepsphere.data import climate as C
from deepsphere.sampling import Equiangular, HEALPix, Irregular


def small_snapshot(nlat=12, nlon=24, seed=0):
    lat, lon = C.latlon_grid(nlat, nlon)
    rng = np.random.default_rng(seed)
    fields = rng.normal(size=(len(C.VARIABLES), nlat, nlon)).astype(np.float32)
    labels = rng.integers(0, 3, size=(nlat, nlon))
    return lat, lon, fields, labels


# ---- NetCDF --------------------------------------------------------------------------
def test_netcdf3_roundtrip(tmp_path):
    lat, lon, fields, labels = small_snapshot()
    p = C.write_climatenet(tmp_path / "a.nc", lat, lon, fields, labels)
    assert p.read_bytes()[:3] == b"CDF"
    la, lo, f, lab = C.read_climatenet(p)
    np.testing.assert_allclose(la, lat)
    np.testing.assert_allclose(lo, lon)
    np.testing.assert_allclose(f, fields, rtol=1e-6)
    np.testing.assert_array_equal(lab, labels)
    # a subset of variables, in the order asked
    _, _, f2, none = C.read_climatenet(p, ["PSL", "TMQ"], labels=False)
    assert none is None
    np.testing.assert_allclose(f2, fields[[C.VARIABLES.index("PSL"), C.VARIABLES.index("TMQ")]], rtol=1e-6)


def _write_tmq(path, raw, **attributes):
    """A NetCDF3 file holding one 4 x 8 TMQ field ``raw`` (its dtype is the file's) with the
    given CF attributes, written by hand as ClimateNet-like tools do."""
    from scipy.io import netcdf_file

    lat, lon = C.latlon_grid(4, 8)
    with netcdf_file(str(path), "w") as f:
        f.createDimension("lat", 4)
        f.createDimension("lon", 8)
        f.createVariable("lat", "d", ("lat",))[:] = lat
        f.createVariable("lon", "d", ("lon",))[:] = lon
        v = f.createVariable("TMQ", raw.dtype.char, ("lat", "lon"))
        v[:] = raw
        for name, value in attributes.items():
            setattr(v, name, value)


def test_netcdf3_packing_and_fill_values(tmp_path):
    """CF packing (scale_factor/add_offset) and _FillValue are unpacked; scipy does not do
    this by itself."""
    p = tmp_path / "packed.nc"
    raw = np.arange(32, dtype=np.int16).reshape(4, 8)
    raw[0, 0] = -32767
    _write_tmq(p, raw, scale_factor=0.5, add_offset=10.0, _FillValue=np.int16(-32767))
    _, _, f, _ = C.read_climatenet(p, ["TMQ"], labels=False)
    expect = raw * 0.5 + 10.0
    assert np.isnan(f[0, 0, 0])
    np.testing.assert_allclose(f[0].ravel()[1:], expect.ravel()[1:])


def test_netcdf4_roundtrip_or_clean_error(tmp_path):
    lat, lon, fields, labels = small_snapshot()
    try:
        import netCDF4  # noqa: F401
    except ImportError:
        # an HDF5 file without a NetCDF4 reader: a clean error that says what to install
        p = tmp_path / "fake4.nc"
        p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        with pytest.raises(ImportError, match="netCDF4"):
            C.read_climatenet(p)
        pytest.skip("netCDF4 not installed: checked the error only")
    p = C.write_climatenet(tmp_path / "b.nc", lat, lon, fields, labels, format="NETCDF4")
    assert p.read_bytes()[:4] == b"\x89HDF"
    _, _, f, lab = C.read_climatenet(p)
    np.testing.assert_allclose(f, fields, rtol=1e-6)
    np.testing.assert_array_equal(lab, labels)


def test_read_errors(tmp_path):
    lat, lon, fields, labels = small_snapshot()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.read_climatenet(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a NetCDF file"):
        C.read_climatenet(junk)
    p = C.write_climatenet(tmp_path / "few.nc", lat, lon, fields[:2], None, variables=["TMQ", "PSL"])
    with pytest.raises(KeyError, match="U850"):
        C.read_climatenet(p, labels=False)
    with pytest.raises(KeyError, match="LABELS"):
        C.read_climatenet(p, ["TMQ"])
    bad = labels.copy()
    bad[0, 0] = 7
    p = C.write_climatenet(tmp_path / "bad.nc", lat, lon, fields, bad)
    with pytest.raises(ValueError, match=r"LABELS must be .*\[7\]"):
        C.read_climatenet(p)


# ---- regridding ----------------------------------------------------------------------
def _pixel_average(fn, nside, fine=32):
    """Exact-enough pixel averages of ``fn(theta, phi)``: the mean over each NESTED pixel's
    ``fine**2`` children at nside ``nside * fine`` (an independent quadrature)."""
    import healpy as hp

    theta, phi = hp.pix2ang(nside * fine, np.arange(hp.nside2npix(nside * fine)), nest=True)
    return fn(theta, phi).reshape(12 * nside**2, -1).mean(1)


def _grid_field(fn, lat, lon):
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    return fn(np.radians(90 - LAT), np.radians(LON))


def _y32(theta, phi):
    """A degree-3 spherical harmonic (real part of Y_3^2, unnormalised) plus a Y_1^0 term."""
    return np.sin(theta) ** 2 * np.cos(theta) * np.cos(2 * phi) + 0.3 * np.cos(theta)


def test_regridder_maps_a_constant_to_itself():
    """Every point's weights are normalised: a constant comes out exactly, on any sampling,
    a partial sky, and with missing (NaN) cells left out."""
    lat, lon = C.latlon_grid(48, 96)
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, 300)
    points = Irregular(rng.uniform(0, 360, 300), np.degrees(np.arcsin(z)), units="deg")
    field = np.full((48, 96), -2.5)
    holes = field.copy()
    holes[rng.random(holes.shape) < 0.1] = np.nan
    for s in (HEALPix(4), HEALPix(8, np.arange(200)), Equiangular(8, "DH"), points):
        for method in ("conservative", "centre"):
            R = C.LatLonRegridder(lat, lon, s, method=method)
            np.testing.assert_allclose(R(field), -2.5, rtol=1e-13)
            np.testing.assert_allclose(R(holes), -2.5, rtol=1e-13)


def test_regridder_conserves_the_area_weighted_integral():
    """Sub-cells add up to their grid cell, so when the points' cells tile the sphere the
    grid's integral sum_c A_c f_c equals sum_p R_p f_p with R_p the area each point received
    (and sum_p R_p = 4 pi); the grid's cell areas are checked against dlon (sin top - sin
    bottom) computed here. With HEALPix's true pixel areas the integral is kept to the
    received-area error."""
    lat, lon = C.latlon_grid(64, 128)
    half = 90.0 / 63
    top, bottom = np.radians(np.minimum(lat + half, 90)), np.radians(np.maximum(lat - half, -90))
    area = np.outer(np.sin(top) - np.sin(bottom), np.full(lon.size, 2 * np.pi / lon.size))
    rng = np.random.default_rng(1)
    f = rng.normal(size=area.shape) + 3 * _grid_field(_y32, lat, lon)
    integral = (area * f).sum()
    for s in (HEALPix(4), HEALPix(16), Equiangular(8, "SOFT")):  # no pole ring of equal points
        R = C.LatLonRegridder(lat, lon, s)
        np.testing.assert_allclose(R.cell_area, area, rtol=1e-12)
        assert R.empty.size == 0
        np.testing.assert_allclose(R.received_area.sum(), 4 * np.pi, rtol=1e-12)
        np.testing.assert_allclose((R.received_area * R(f)).sum(), integral, rtol=1e-10)
        if isinstance(s, HEALPix):
            assert abs((s.areas * R(f)).sum() - integral) < 2e-3 * np.abs(area * f).sum()
    # the plain cell mean (which overweights the poles) is not the sphere's mean: sin^2 -> 1/3
    sin2 = np.sin(np.radians(lat))[:, None] ** 2 + 0 * lon
    assert abs(C.LatLonRegridder(lat, lon, HEALPix(4))(sin2).mean() - 1 / 3) < 1e-3
    assert abs(sin2.mean() - 1 / 3) > 0.05


def test_received_pixel_areas_converge_to_the_true_areas():
    """The area a HEALPix pixel receives tends to 4 pi / (12 nside^2) as the sub-cells shrink
    (misplaced sub-cells lie along the pixel's boundary), within 1 % at the default
    subdivision; whole cells (method='centre') are off by up to 19 %."""
    lat, lon = C.latlon_grid(192, 288)  # cells 1/11 of an nside-16 pixel, as ClimateNet at 64
    s = HEALPix(16)
    true = 4 * np.pi / (12 * 16**2)
    err = {}
    for sub in (1, 2, 4, 8, 16):
        r = C.LatLonRegridder(lat, lon, s, subdivisions=sub).received_area / true - 1
        err[sub] = (np.abs(r).max(), np.sqrt(np.mean(r**2)))
    worst, rms = np.array(list(err.values())).T
    assert np.all(np.diff(worst) < 0) and np.all(np.diff(rms) < 0), err
    assert worst[-1] < 0.005 and rms[-1] < 1e-3
    R = C.LatLonRegridder(lat, lon, s)
    assert R.subdivisions == 10  # ceil(sqrt(1024 * largest cell / pixel))
    assert np.abs(R.received_area / true - 1).max() < 0.01
    assert np.abs(C.LatLonRegridder(lat, lon, s, method="centre").received_area / true - 1).max() > 0.15


def test_smooth_field_regrids_to_its_pixel_averages():
    """A degree-3 spherical harmonic regrids to its exact pixel averages (an independent
    quadrature on nside 512 sub-pixels) to 2e-4 of its amplitude; whole cells miss by 40
    times more, and the pixel-centre values differ by the field's curvature over a pixel."""
    lat, lon = C.latlon_grid(192, 288)
    s = HEALPix(16)
    g = _grid_field(_y32, lat, lon)
    exact = _pixel_average(_y32, 16)
    out = C.LatLonRegridder(lat, lon, s)(g)
    assert np.abs(out - exact).max() < 3e-4
    assert np.abs(C.LatLonRegridder(lat, lon, s, method="centre")(g) - exact).max() > 5e-3
    centre = _y32(np.radians(90 - s.lat), np.radians(s.lon))
    assert np.abs(out - centre).max() < 3e-3


def test_label_fractions_are_overlap_areas():
    """Class fractions are the share of each pixel's area covered by the class: for a polar
    cap whose edge is a grid-cell edge they match the cap's exact share of each pixel."""
    lat, lon = C.latlon_grid(181, 360)
    s = HEALPix(8)
    labels = np.where(lat[:, None] > 60 + 0 * lon, C.AR, 0)  # cap edge at 60.5 degrees
    frac = C.LatLonRegridder(lat, lon, s).fractions(labels, 3)
    cap = _pixel_average(lambda th, ph: (np.pi / 2 - th > np.radians(60.5)) * 1.0, 8, 64)
    np.testing.assert_allclose(frac[:, C.AR], cap, atol=0.006)
    np.testing.assert_allclose(frac.sum(1), 1.0, rtol=1e-13)
    old = C.LatLonRegridder(lat, lon, s, method="centre").fractions(labels, 3)
    assert np.abs(old[:, C.AR] - cap).max() > 0.012


def test_setup_blocks_do_not_change_the_overlaps(monkeypatch):
    """Setup memory is bounded by building the overlaps a block of sub-rows at a time;
    blocks smaller than one grid row (a row split across blocks) give the same matrix."""
    lat, lon = C.latlon_grid(48, 96)
    for sub in (1, 3, 7):
        whole = C.LatLonRegridder(lat, lon, HEALPix(8), subdivisions=sub)._assign
        monkeypatch.setattr(C.LatLonRegridder, "_CHUNK", 500)
        blocks = C.LatLonRegridder(lat, lon, HEALPix(8), subdivisions=sub)._assign
        monkeypatch.undo()
        assert blocks.nnz == whole.nnz
        assert abs(blocks - whole).max() < 1e-15


def _children_by_brute_force(lat, lon, s, j):
    """W from every level-j NESTED child of every pixel, each located on its own (latitude
    edges half-way between centres, longitude columns centred on ``lon``)."""
    import healpy as hp
    from scipy import sparse

    ls = np.sort(lat)
    e = np.clip(np.concatenate([[1.5 * ls[0] - 0.5 * ls[1]], 0.5 * (ls[1:] + ls[:-1]),
                                [1.5 * ls[-1] - 0.5 * ls[-2]]]), -90, 90)
    fine = s.nside * 2**j
    theta, phi = hp.pix2ang(fine, (s.pixels[:, None] * 4**j + np.arange(4**j)).ravel(), nest=True)
    i = np.searchsorted(np.sin(np.radians(e)), np.cos(theta), side="right") - 1
    ok = (i >= 0) & (i < lat.size)
    row = np.argsort(lat)[np.clip(i, 0, lat.size - 1)]
    step = 360 / lon.size
    k = np.floor(np.mod(np.degrees(phi) - np.sort(lon)[0] + step / 2, 360) / step).astype(int)
    col = np.argsort(lon)[k % lon.size]
    owner = np.repeat(np.arange(s.npix), 4**j)
    return sparse.csr_matrix((np.full(ok.sum(), hp.nside2pixarea(fine)),
                              (owner[ok], (row * lon.size + col)[ok])),
                             shape=(s.npix, lat.size * lon.size))


def test_child_path_equals_every_child_located_independently():
    """Blocks of children that lie in one cell go to it whole, the rest are split: the
    result is the matrix of all 4^j children located one by one (grids offset so that no
    child centre lies on a cell edge), also for descending latitudes, longitudes from -180,
    a Gaussian grid that stops short of the poles, partial skies and a regional grid."""
    lat, lon = C.latlon_grid(47, 96)
    lon = lon + 1.234567
    gauss = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(24)[0]))
    tropics = np.abs(lat) < 40
    cases = [(lat, lon, HEALPix(16), 3), (lat[::-1], lon - 180, HEALPix(8), 4),
             (gauss, np.arange(48) * 7.5 + 0.7654321, HEALPix(16), 3),
             (lat, lon, HEALPix(16, np.arange(300, 700)), 3),
             (lat[tropics], lon, HEALPix.from_mask(np.abs(HEALPix(8).lat) < 30, "NESTED"), 4)]
    for la, lo, s, j in cases:
        R = C.LatLonRegridder(la, lo, s, child_levels=j)
        assert R.child_levels == j and R.subdivisions is None
        want = _children_by_brute_force(la, lo, s, j)
        assert R._assign.nnz == want.nnz
        assert abs(R._assign - want).max() < 1e-12 * s.areas[0]


def test_child_path_gives_each_pixel_its_exact_area():
    """Children partition their pixel exactly, so with pixels smaller than the grid cells
    (where this path is chosen) every pixel receives 4 pi / (12 nside^2) to rounding, and
    the grid's integral is kept to the children misplaced across cell edges; a grid that
    stops short of the poles gives the pixels it covers their exact area and the polar
    pixels the part of it inside the grid (checked against the cap area beyond the edge)."""
    import healpy as hp

    lat, lon = C.latlon_grid(96, 192)  # cells 1.9 degrees, nside-64 pixels 0.9 degrees
    s = HEALPix(64)
    R = C.LatLonRegridder(lat, lon, s)
    assert R.child_levels == 4 and R.subdivisions is None
    np.testing.assert_allclose(R.received_area, 4 * np.pi / (12 * 64**2), rtol=1e-12)
    f = _grid_field(_y32, lat, lon) + 0.5
    # each cell gets its area to the children cut by its edges (away from the polar slivers)
    away = np.abs(lat) < 80
    for r, worst, rms in ((R, 0.08, 0.02), (C.LatLonRegridder(lat, lon, s, child_levels=5), 0.025, 0.008)):
        e = np.asarray(r._assign.sum(0)).reshape(r.shape)[away] / r.cell_area[away] - 1
        assert np.abs(e).max() < worst and np.sqrt(np.mean(e**2)) < rms
    integral = (R.cell_area * f).sum()
    assert abs((R.received_area * R(f)).sum() - integral) < 1e-5 * np.abs(R.cell_area * f).sum()
    # a Gaussian grid: cells end at its outermost edges, +-87.9 degrees
    gauss = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(48)[0]))
    s = HEALPix(32)
    top = 1.5 * gauss[-1] - 0.5 * gauss[-2]
    z = np.array([hp.boundaries(32, p, step=4, nest=True)[2] for p in s.pixels])
    inside = np.abs(z).max(1) < np.sin(np.radians(top))
    assert inside.sum() > 0.98 * s.npix
    caps = 2 * 2 * np.pi * (1 - np.sin(np.radians(top)))  # both caps beyond the grid
    rim = 2 * 2 * np.pi * np.cos(np.radians(top))  # length of the two edges
    miss = []
    for j in (4, 6):
        R = C.LatLonRegridder(gauss, np.arange(96) * 3.75, s, child_levels=j)
        np.testing.assert_allclose(R.received_area[inside], s.areas[inside], rtol=1e-12)
        assert R.empty.size == 0
        miss.append(abs(4 * np.pi - R.received_area.sum() - caps))  # children cut by the rim
        assert miss[-1] < 0.5 * rim * np.sqrt(hp.nside2pixarea(32 * 2**j))
    assert miss[1] < 0.5 * miss[0]


def test_child_path_regrids_smooth_fields_to_pixel_averages_in_nested_order():
    """A degree-3 harmonic regrids to its exact pixel averages, computed here in RING
    order (children binned by healpy.ang2pix) and reordered to NESTED, on the full sky and
    on a partial sky, whose pixels get exactly their full-sky values (children of pixels
    outside the partial sky are not counted)."""
    import healpy as hp

    lat, lon = C.latlon_grid(192, 288)
    g = _grid_field(_y32, lat, lon)
    nside, fine = 64, 512
    theta, phi = hp.pix2ang(fine, np.arange(hp.nside2npix(fine)))
    ring = np.bincount(hp.ang2pix(nside, theta, phi), _y32(theta, phi)) / 64
    exact = hp.reorder(ring, r2n=True)
    R = C.LatLonRegridder(lat, lon, HEALPix(nside))
    assert R.child_levels is not None
    out = R(g)
    # the grid holds point values at cell centres: 1.7e-3 off the pixel means either way
    assert np.abs(out - exact).max() < 2e-3 and np.sqrt(np.mean((out - exact) ** 2)) < 7e-4
    assert np.abs(np.roll(out, 1) - exact).max() > 0.5  # a shifted order would fail
    sub = C.LatLonRegridder(lat, lon, HEALPix(nside), subdivisions=64)(g)
    assert np.abs(out - sub).max() < 5e-4
    part = HEALPix(nside, np.sort(np.random.default_rng(0).choice(12 * nside**2, 5000, replace=False)))
    P = C.LatLonRegridder(lat, lon, part)
    assert P.child_levels == R.child_levels
    np.testing.assert_allclose(P.received_area, part.areas, rtol=1e-12)
    np.testing.assert_allclose(P(g), out[part.pixels], atol=1e-13)
    assert abs(P._assign - R._assign[part.pixels]).max() < 1e-18


def test_child_path_on_a_longitude_window_leaves_children_outside_it_out():
    """A regional grid covering 9.3-69.3 degrees of longitude, and pixels cut by its
    western edge: their children west of it lie in no cell (the sub-cells give them no
    share there either), instead of being wrapped onto the columns at the eastern edge.
    Reference: each child tested against every column's own longitude interval."""
    import healpy as hp

    lon, lat = np.arange(10.3, 70, 2.0), np.arange(-40.2, 41, 2.0)
    full = HEALPix(8)
    s = HEALPix.from_mask((full.lon > 8) & (full.lon < 72) & (np.abs(full.lat) < 30), "NESTED")
    j = 3
    R = C.LatLonRegridder(lat, lon, s, child_levels=j)
    theta, phi = hp.pix2ang(8 * 2**j, (s.pixels[:, None] * 4**j + np.arange(4**j)).ravel(), nest=True)
    clat, clon = 90 - np.degrees(theta), np.degrees(phi)
    inside = (clat >= lat[0] - 1) & (clat < lat[-1] + 1) & (clon >= lon[0] - 1) & (clon < lon[-1] + 1)
    row = np.floor((clat - lat[0] + 1) / 2).astype(int)
    col = np.floor((clon - lon[0] + 1) / 2).astype(int)
    owner = np.repeat(np.arange(s.npix), 4**j)
    want = np.zeros((s.npix, lat.size * lon.size))
    np.add.at(want, (owner[inside], (row * lon.size + col)[inside]), hp.nside2pixarea(8 * 2**j))
    assert (want.sum(1) < 0.9 * s.areas).any()  # some pixels stick out of the window
    assert abs(R._assign.toarray() - want).max() < 1e-12 * s.areas[0]
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    sub = C.LatLonRegridder(lat, lon, s, subdivisions=32)
    assert np.abs(R(LON) - sub(LON)).max() < 0.2  # was 13 degrees off


def test_default_takes_pixel_centres_where_capped_sub_cells_would_miss_pixels():
    """Cells of ~4000 pixels: the children need no level (j = 0, one centre per pixel, no
    refinement, so no work along the cell edges) and give each pixel exactly its area;
    the sub-cells, capped at 64 per side, would be 1.4 degrees tall against 0.46-degree
    pixels and leave some pixels without any (the work estimate charged j = 0 for edge
    refinement and took them)."""
    lat, lon = np.array([-45.0, 45.0]), np.arange(26) * (360 / 26)
    s = HEALPix(128)
    R = C.LatLonRegridder(lat, lon, s)
    assert R.child_levels == 0 and R.subdivisions is None
    np.testing.assert_allclose(R.received_area, s.areas, rtol=1e-12)
    capped = C.LatLonRegridder(lat, lon, s, subdivisions=R.MAX_SUBDIVISIONS)
    assert capped.empty.size > 0  # what the default took before


def test_child_and_subcell_paths_converge_to_the_same_overlaps():
    """The two ways of computing W[p, c] = |C_c n P_p| approach each other as the children
    (level j) and the sub-cells (s per cell) shrink: the row-normalised matrices differ by
    O(2^-j) + O(1/s), and each path's own error shrinks with its parameter."""
    lat, lon = C.latlon_grid(47, 96)
    lon = lon + 1.234567
    s = HEALPix(16)

    def norm(R):
        return (R._assign.multiply(1 / R.received_area[:, None])).tocsr()

    sub = {k: norm(C.LatLonRegridder(lat, lon, s, subdivisions=k)) for k in (4, 16, 64)}
    kid = {j: norm(C.LatLonRegridder(lat, lon, s, child_levels=j)) for j in (2, 4, 6)}
    d = lambda a, b: abs(a - b).sum(1).max()  # noqa: E731  (worst row, L1)
    sub_err = [d(sub[k], kid[6]) for k in (4, 16)]
    kid_err = [d(kid[j], sub[64]) for j in (2, 4)]
    assert sub_err[1] < 0.5 * sub_err[0] and kid_err[1] < 0.5 * kid_err[0], (sub_err, kid_err)
    assert d(sub[64], kid[6]) < 0.05


def test_regridder_options_are_checked():
    lat, lon = C.latlon_grid(16, 32)
    with pytest.raises(ValueError, match="method must be 'conservative' or 'centre'"):
        C.LatLonRegridder(lat, lon, HEALPix(2), method="nearest")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="subdivisions must be a positive integer"):
            C.LatLonRegridder(lat, lon, HEALPix(2), subdivisions=bad)
    with pytest.raises(ValueError, match="method='conservative' only"):
        C.LatLonRegridder(lat, lon, HEALPix(2), method="centre", subdivisions=4)
    for bad in (-1, 2.5, True, 29):
        with pytest.raises(ValueError, match="child_levels must be an integer from 0 to 28"):
            C.LatLonRegridder(lat, lon, HEALPix(2), child_levels=bad)
    for kw in ({"method": "centre"}, {"subdivisions": 2}):
        with pytest.raises(ValueError, match="child_levels applies to method='conservative' on a HEALPix"):
            C.LatLonRegridder(lat, lon, HEALPix(2), child_levels=2, **kw)
    with pytest.raises(ValueError, match="child_levels applies to method='conservative' on a HEALPix"):
        C.LatLonRegridder(lat, lon, Equiangular(4, "DH"), child_levels=2)


def test_climatenet_grid_regridding_against_independent_areas():
    """On ClimateNet's 768 x 1152 grid, with cell areas computed here (dlon (sin top - sin
    bottom), half cells at the poles): a constant stays constant, the equal-area HEALPix
    mean matches the grid's area-weighted mean, a latitude-only field matches its exact
    pixel averages (from 4096 sub-pixels each), class fractions match class areas, and
    flipping the grid (latitudes descending, longitudes -180..180) changes nothing."""
    import healpy as hp

    lat, lon = C.latlon_grid(768, 1152)
    half = 90.0 / 767
    top, bottom = np.radians(np.minimum(lat + half, 90)), np.radians(np.maximum(lat - half, -90))
    area = np.outer(np.sin(top) - np.sin(bottom), np.full(lon.size, 2 * np.pi / lon.size))
    np.testing.assert_allclose(area.sum(), 4 * np.pi, rtol=1e-12)
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    s = HEALPix(8)
    R = C.LatLonRegridder(lat, lon, s)
    np.testing.assert_allclose(R(np.full(LAT.shape, 3.7)), 3.7, rtol=1e-12)
    f = np.sin(np.radians(LAT)) ** 2 + np.cos(np.radians(LAT)) * np.cos(np.radians(LON - 40)) ** 3
    out = R(f)
    assert abs(out.mean() - (area * f).sum() / area.sum()) < 1e-4
    theta, _ = hp.pix2ang(8 * 64, np.arange(hp.nside2npix(8 * 64)), nest=True)
    exact = (np.cos(theta) ** 2).reshape(s.npix, -1).mean(1)  # NESTED: children are contiguous
    np.testing.assert_allclose(R(np.sin(np.radians(LAT)) ** 2), exact, atol=2e-3)
    labels = np.where((LAT > 10) & (LAT < 40) & (LON > 50) & (LON < 120), C.TC, 0)
    labels[(LAT < -20) & (LAT > -60)] = C.AR
    frac = R.fractions(labels, 3).mean(0)
    np.testing.assert_allclose(frac, [(area * (labels == c)).sum() / (4 * np.pi) for c in range(3)], atol=2e-3)
    k = lon.size // 2
    lon_w = np.concatenate([lon[k:] - 360, lon[:k]])
    flip = lambda a: np.concatenate([a[:, k:], a[:, :k]], 1)[::-1]  # noqa: E731
    R2 = C.LatLonRegridder(lat[::-1], lon_w, s)
    np.testing.assert_allclose(R2(flip(f)), out, atol=1e-12)
    np.testing.assert_array_equal(R2.labels(flip(labels)), R.labels(labels))


def test_regridder_reproduces_smooth_fields_on_any_sampling():
    lat, lon = C.latlon_grid(91, 180)
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")

    def field(la, lo):
        return np.cos(np.radians(la)) * np.cos(np.radians(lo)) + 0.5 * np.sin(np.radians(la))

    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, 500)
    points = Irregular(rng.uniform(0, 360, 500), np.degrees(np.arcsin(z)), units="deg")
    # each value is the mean over the point's cell: off the point value by about the
    # gradient times the offset of the cell's centroid, small where cells are small
    for s, tol in ((HEALPix(8), 0.03), (Equiangular(8, "DH"), 0.05), (points, 0.15)):
        R = C.LatLonRegridder(lat, lon, s)
        out = R(field(LAT, LON)[None])[0]
        err = np.abs(out - field(s.lat, s.lon))
        assert err.max() < tol, (s, err.max())


def test_regridder_refuses_a_cyclic_longitude():
    """A grid that lists 0 and 360 (a cyclic point) counts that meridian twice: 0.56 % too
    much area on a 2-degree grid, silently; it is refused with the fix in the message."""
    lat, _ = C.latlon_grid(91, 180)
    for lon in (np.linspace(0, 360, 181), np.linspace(-180, 180, 181), np.linspace(360, 0, 181)):
        with pytest.raises(ValueError, match=r"repeats the first one \(a cyclic point\).*lon\[:-1\]"):
            C.LatLonRegridder(lat, lon, HEALPix(8))
    C.LatLonRegridder(lat, np.arange(180) * 2.0, HEALPix(8))  # 0 .. 358: fine


def test_regridder_partial_sky_and_fine_target():
    lat, lon = C.latlon_grid(19, 36)  # 10-degree grid, coarser than nside 16
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    f = np.sin(np.radians(LAT)) + np.cos(np.radians(LON)) * np.cos(np.radians(LAT))
    s = HEALPix(16, np.arange(16 * 16))  # base pixel 0
    expect = np.sin(np.radians(s.lat)) + np.cos(np.radians(s.lon)) * np.cos(np.radians(s.lat))
    R = C.LatLonRegridder(lat, lon, s, method="centre")
    assert R.empty.size > 0  # many pixels get no whole cell: bilinear fallback
    np.testing.assert_allclose(R(f), expect, atol=0.1)
    # split into sub-cells every pixel gets a share (the value of the 10-degree cell under it)
    R = C.LatLonRegridder(lat, lon, s, subdivisions=R.MAX_SUBDIVISIONS)
    assert R.empty.size == 0
    np.testing.assert_allclose(R.received_area, s.areas, rtol=0.05)
    # the default splits the (smaller) pixels instead: each gets exactly its area
    K = C.LatLonRegridder(lat, lon, s)
    assert K.child_levels == 4 and K.subdivisions is None
    np.testing.assert_allclose(K.received_area, s.areas, rtol=1e-12)
    np.testing.assert_allclose(K(f), R(f), atol=0.01)
    out = R(f)
    np.testing.assert_allclose(out, expect, atol=0.1)
    labels = np.zeros(LAT.shape, int)
    lab = R.labels(labels)
    assert lab.shape == (s.npix,) and (lab == 0).all()


def test_label_regridding_by_area_fraction():
    lat, lon = C.latlon_grid(181, 360)
    s = HEALPix(4)  # at nside 2 no pixel centre is north of 75 degrees: the check was empty
    R = C.LatLonRegridder(lat, lon, s)
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    labels = np.zeros(LAT.shape, int)
    labels[LAT > 60] = C.AR  # a polar cap of AR
    frac = R.fractions(labels, 3)
    np.testing.assert_allclose(frac.sum(1), 1.0)
    lab = R.labels(labels)
    th = np.radians(90 - s.lat)
    # pixels entirely north of 60 degrees are AR, those entirely south are background
    north = s.lat > 75
    south = s.lat < 45
    assert north.sum() == 4 and south.any()
    assert (lab[north] == C.AR).all() and (lab[south] == 0).all()
    # a threshold of (almost) zero marks every pixel touching the cap
    assert (R.labels(labels, event_fraction=1e-9) == C.AR).sum() >= (lab == C.AR).sum()
    del th


def test_regridder_rejects_bad_grids():
    s = HEALPix(2)
    with pytest.raises(ValueError, match="monotonic"):
        C.LatLonRegridder([0, 10, 5], [0, 90, 180, 270], s)
    with pytest.raises(ValueError, match="latitudes"):
        C.LatLonRegridder([-95, 0, 95], [0, 90, 180, 270], s)
    R = C.LatLonRegridder(*C.latlon_grid(8, 16), s)
    with pytest.raises(ValueError, match="grid is"):
        R(np.zeros((7, 16)))


def test_regridder_refuses_to_extrapolate_beyond_the_grid():
    # were filled silently by clamping the outermost latitude row (144 and 48 of 192 pixels)
    s = HEALPix(4)
    lat, lon = C.latlon_grid(32, 64)
    with pytest.raises(ValueError, match=r"covers latitudes -1.5708 to 1.5708 degrees, but 176 of .*"
                                         r"radians"):
        C.LatLonRegridder(np.radians(lat), lon, s)
    tropics = np.abs(lat) < 40
    with pytest.raises(ValueError, match=r"48 of the sampling's points lie beyond it .*regional"):
        C.LatLonRegridder(lat[tropics], lon, s)
    # the same regional grid on a partial sky inside it, and a global grid that stops short
    # of the poles (a Gaussian grid), are fine
    inside = HEALPix.from_mask(np.abs(HEALPix(4).lat) < 30, "NESTED")
    C.LatLonRegridder(lat[tropics], lon, inside)
    gauss = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(64)[0]))
    assert 90 - gauss.max() > 1  # the last centre is far enough for nside 64 pixels to lie beyond it
    R = C.LatLonRegridder(gauss, np.arange(128) * 360 / 128, HEALPix(64), method="centre")
    assert R.empty.size > 0
    # its cells stop at 89.25 degrees: the polar pixels get the part of them the cells cover
    R = C.LatLonRegridder(gauss, np.arange(128) * 360 / 128, HEALPix(64))
    assert R.empty.size == 0 and R.received_area.min() < 0.9 * R.received_area.max()


@pytest.mark.parametrize("method", ["conservative", "centre"])
def test_regridder_refuses_pixels_centred_beyond_a_latitude_band(method):
    # HEALPix(1)'s rings at +-41.8 degrees overlap the band's cells by 6-9 % of their area:
    # they got the mean of that sliver (conservative), or a value clamped from the edge row
    lat, lon = np.array([-10.0, 0.0, 10.0]), np.arange(36) * 10.0
    with pytest.raises(ValueError, match=r"covers latitudes -10 to 10 degrees, but 8 of the "
                                         r"sampling's points lie beyond it .*from_mask"):
        C.LatLonRegridder(lat, lon, HEALPix(1), method=method)


# ---- synthetic physics ---------------------------------------------------------------
@pytest.fixture(scope="module")
def snapshots():
    lat, lon = C.latlon_grid(181, 360)  # 1 degree: resolves the cyclones' cores
    rng = np.random.default_rng(3)
    return lat, lon, [C.synthetic_snapshot(lat, lon, rng, n_rivers=4, n_cyclones=3) for _ in range(4)]


def test_synthetic_fields_are_physical(snapshots):
    lat, lon, snaps = snapshots
    v = {name: np.stack([f[i] for f, _ in snaps]) for i, name in enumerate(C.VARIABLES)}
    assert np.all(v["TMQ"] >= 0) and 40 < v["TMQ"].max() < 120
    assert np.all(v["PRECT"] >= 0) and np.all(v["QREFHT"] >= 0)
    assert 90000 < v["PSL"].min() and v["PSL"].max() < 106000  # deep cyclones reach ~940 hPa
    assert 230 < v["TS"].min() and v["TS"].max() < 315
    assert np.all(v["T200"] < v["T500"]) and np.all(v["T500"] < v["TS"] + 5)
    assert np.all(v["Z200"] > 9000)
    # hydrostatic-ish: Z1000 follows sea-level pressure
    assert np.corrcoef(v["Z1000"].ravel(), v["PSL"].ravel())[0, 1] > 0.99
    # the tropics are moister than the poles
    trop = np.abs(lat) < 10
    pole = np.abs(lat) > 70
    assert v["TMQ"][:, trop].mean() > 3 * v["TMQ"][:, pole].mean()


def test_cyclones_are_cyclonic_low_pressure_vortices(snapshots):
    """In each labelled cyclone: pressure is lower than around it, the wind is strong,
    and its circulation (vorticity sign) is cyclonic for its hemisphere."""
    lat, lon, snaps = snapshots
    LAT = np.broadcast_to(lat[:, None], (lat.size, lon.size))
    from scipy import ndimage

    checked = 0
    for f, lab in snaps:
        regions, n = ndimage.label(lab == C.TC, structure=np.ones((3, 3)))
        psl, u, v = f[C.VARIABLES.index("PSL")], f[C.VARIABLES.index("U850")], f[C.VARIABLES.index("V850")]
        for r in range(1, n + 1):
            m = regions == r
            if m.sum() < 4:
                continue
            i, j = np.unravel_index(np.argmin(np.where(m, psl, np.inf)), psl.shape)
            if not (10 <= i < lat.size - 10 and 10 <= j < lon.size - 10):
                continue
            h = np.sign(lat[i])
            # circulation around the centre: counter-clockwise (north) = u < 0 above, u > 0 below
            circ = (-u[i + 2, j] + u[i - 2, j] + v[i, j + 2] - v[i, j - 2])
            assert h * circ > 0
            assert np.hypot(u, v)[m].max() > 25
            assert psl[i, j] < psl[i - 10:i + 11, j - 10:j + 11].mean() - 500
            assert 5 <= abs(LAT[i, j]) <= 30
            checked += 1
    assert checked >= 3


def test_surface_winds_spiral_into_cyclones_in_both_hemispheres(snapshots):
    """Friction turns the surface wind (UBOT, VBOT) towards low pressure: around every
    cyclone centre its radial component is inflow, in the south as in the north, while the
    850 hPa wind is purely tangential."""
    lat, lon, snaps = snapshots
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    from scipy import ndimage

    V = C.VARIABLES
    seen = set()
    for f, lab in snaps:
        psl = np.where(lab == C.TC, f[V.index("PSL")], np.inf)
        centres = np.argwhere((psl == ndimage.minimum_filter(psl, size=9, mode="wrap")) & np.isfinite(psl))
        for i, j in centres:
            x, y, r = C._local_offsets(LAT, LON, lat[i], lon[j])  # east, north offsets (degrees)
            ring = (r > 1.0) & (r < 3.0)
            radial = {k: (f[V.index(u)] * x + f[V.index(v)] * y)[ring] / r[ring]
                      for k, u, v in (("850", "U850", "V850"), ("bot", "UBOT", "VBOT"))}
            tangential = ((-y * f[V.index("UBOT")] + x * f[V.index("VBOT")])[ring] / r[ring]).mean()
            assert radial["bot"].mean() < -0.1 * abs(tangential), (lat[i], radial["bot"].mean(), tangential)
            assert abs(radial["850"].mean()) < 0.05 * abs(tangential)
            seen.add(np.sign(lat[i]))
    assert seen == {-1.0, 1.0}


def test_rivers_are_long_moist_filaments(snapshots):
    lat, lon, snaps = snapshots
    from scipy import ndimage

    tmq_i = C.VARIABLES.index("TMQ")
    ratios, excess = [], []
    for f, lab in snaps:
        regions, n = ndimage.label(lab == C.AR)
        for r in range(1, n + 1):
            ii, jj = np.nonzero(regions == r)
            if ii.size < 30:
                continue
            pts = np.stack([lat[ii], lon[jj] * np.cos(np.radians(lat[ii]))], 1)
            ev = np.linalg.eigvalsh(np.cov(pts.T))
            ratios.append(np.sqrt(ev[1] / ev[0]))
            # moister than its latitude band
            zonal = f[tmq_i].mean(axis=1)
            excess.append((f[tmq_i][ii, jj] - zonal[ii]).mean())
    # elongated: length / width of the principal axes well above 1 (crossing or strongly
    # bent rivers can merge into rounder regions, so look at the median)
    assert len(ratios) >= 5
    assert np.median(ratios) > 3, ratios
    assert min(excess) > 0 and np.median(excess) > 5, excess


def test_class_balance_near_climatenet():
    """About 97.7 / 0.1 / 2.2 % of the sphere's area (background / TC / AR)."""
    s = HEALPix(8)
    lat, lon = C.latlon_grid(60, 120)
    R = C.LatLonRegridder(lat, lon, s)
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    for _ in range(40):
        _, lab = C.synthetic_snapshot(lat, lon, rng)
        counts += np.bincount(lab.ravel(), weights=R.cell_area.ravel(), minlength=3)
    share = counts / counts.sum()
    assert 0.965 < share[0] < 0.99
    assert 0.0003 < share[C.TC] < 0.003
    assert 0.012 < share[C.AR] < 0.035


# ---- dataset -------------------------------------------------------------------------
def test_synthetic_dataset_contract():
    s = HEALPix(4)
    ds = C.ClimateSegmentation(s, n_train=4, n_val=2, n_test=2, seed=1)
    assert ds.task == "segmentation" and ds.n_classes == 3 and ds.in_channels == 16
    x, y = ds.split("train")[0]
    assert x.shape == (s.npix, 16) and x.dtype.__str__() == "torch.float32"
    assert y.shape == (s.npix,) and int(y.max()) <= 2
    xs = ds.split("train").x.numpy().reshape(-1, 16)
    np.testing.assert_allclose(xs.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(xs.std(0), 1, atol=1e-3)
    assert ds.class_counts().sum() == 4 * s.npix
    again = C.ClimateSegmentation(s, n_train=4, n_val=2, n_test=2, seed=1)
    np.testing.assert_array_equal(again.split("test").labels, ds.split("test").labels)
    with pytest.raises(ValueError, match="unknown split"):
        ds.split("training")
    with pytest.raises(ValueError, match="no variable"):
        C.ClimateSegmentation(s, variables=["TMQ", "SST"], n_train=1, n_val=1, n_test=1)


def test_dataset_regrid_option_reaches_the_regridder():
    """regrid='centre' is the earlier scheme: the dataset's first map equals the centre
    regridder applied to the same snapshot, and differs from the conservative default."""
    s = HEALPix(4)
    kw = dict(n_train=1, n_val=1, n_test=1, variables=["TMQ"], grid=[16, 32], seed=2)
    cons = C.ClimateSegmentation(s, **kw)
    centre = C.ClimateSegmentation(s, regrid="centre", **kw)
    a = cons.split("train").x.numpy() * cons.channel_std + cons.channel_mean
    b = centre.split("train").x.numpy() * centre.channel_std + centre.channel_mean
    lat, lon = C.latlon_grid(16, 32)
    rng = np.random.default_rng([2, 300])
    fields = C.synthetic_snapshot(lat, lon, rng)[0][C.VARIABLES.index("TMQ")]
    for method, got in (("conservative", a), ("centre", b)):
        want = C.LatLonRegridder(lat, lon, s, method=method)(fields[None])[0]
        np.testing.assert_allclose(got[0, :, 0], want, rtol=1e-5, atol=1e-4)
    assert not np.allclose(a, b, rtol=1e-3)
    with pytest.raises(ValueError, match="regrid must be 'conservative'"):
        C.ClimateSegmentation(s, regrid="bilinear", **kw)


def test_dataset_from_files(tmp_path):
    """A folder of small ClimateNet files, regridded to HEALPix, split in file order."""
    lat, lon = C.latlon_grid(24, 48)
    rng = np.random.default_rng(0)
    truth = []
    for k in range(5):
        f, lab = C.synthetic_snapshot(lat, lon, rng)
        C.write_climatenet(tmp_path / f"data-{k}.nc", lat, lon, f, lab)
        truth.append((f, lab))
    s = HEALPix(2)
    ds = C.ClimateSegmentation(s, files=str(tmp_path), variables=["TMQ", "PSL"],
                               split_fractions=[0.6, 0.2, 0.2])
    assert [len(ds.split(n)) for n in ("train", "val", "test")] == [3, 1, 1]
    assert ds.files["test"][0].name == "data-4.nc"
    R = C.LatLonRegridder(lat, lon, s)
    f4 = truth[4][0][[C.VARIABLES.index("TMQ"), C.VARIABLES.index("PSL")]]
    expect = (R(f4).T - ds.channel_mean) / ds.channel_std
    np.testing.assert_allclose(ds.split("test")[0][0].numpy(), expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ds.split("test")[0][1].numpy(), R.labels(truth[4][1]))
    # a glob and a list work too
    ds2 = C.ClimateSegmentation(s, files=str(tmp_path / "data-*.nc"), variables=["TMQ"])
    assert sum(len(ds2.split(n)) for n in ("train", "val", "test")) == 5
    with pytest.raises(FileNotFoundError, match="no NetCDF files"):
        C.ClimateSegmentation(s, files=str(tmp_path / "none-*.nc"))
    with pytest.raises(ValueError, match="at least 3 files"):
        C.ClimateSegmentation(s, files=[tmp_path / "data-0.nc", tmp_path / "data-1.nc"])


def test_missing_values_in_any_file_are_refused(tmp_path):
    # a test file with a region of fill values was zero-filled silently (only train was checked)
    lat, lon = C.latlon_grid(24, 48)
    rng = np.random.default_rng(0)
    for k in range(3):
        f, lab = C.synthetic_snapshot(lat, lon, rng)
        if k == 2:
            f[C.VARIABLES.index("PSL"), :9] = np.nan  # south of 27 S
        C.write_climatenet(tmp_path / f"data-{k}.nc", lat, lon, f, lab)
    with pytest.raises(ValueError, match=r"data-2.nc: \['PSL'\] are missing"):
        C.ClimateSegmentation(HEALPix(2), files=str(tmp_path), variables=["TMQ", "PSL"])
    C.ClimateSegmentation(HEALPix(2), files=str(tmp_path), variables=["TMQ"])


def test_config_names_the_dataset():
    from deepsphere.training import registry

    assert registry.DATASETS.get("climate") is C.ClimateSegmentation


# ---- configs and an end-to-end run ---------------------------------------------------
CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["climate_healpix.yaml", "climate_unweighted.yaml"])
def test_shipped_configs_validate(name):
    from deepsphere.training.config import load_config, validate

    cfg = load_config(CONFIGS / name)
    validate(cfg)
    assert cfg.data.name == "climate" and cfg.model.name == "unet"


def test_tiny_training_run(tmp_path):
    from deepsphere.training import train
    from deepsphere.training.config import load_config

    cfg = load_config(CONFIGS / "climate_healpix.yaml", [
        "sampling.nside=4", "data.n_train=4", "data.n_val=2", "data.n_test=2",
        "model.channels=[4, 8]", "trainer.epochs=1", "trainer.batch_size=2",
        "trainer.progress=false", "trainer.plots=false", f"trainer.out={tmp_path / 'run'}"])
    trainer = train(cfg)
    row = trainer.history[-1]
    assert {"val_mean_average_precision", "val_average_precision_1", "val_iou_2"} <= set(row)
    assert (tmp_path / "run" / "test_metrics.json").is_file()


def test_real_patterns_as_pressure_backgrounds(tmp_path):
    """A gridded field (as NCL's hgt.nc) becomes the synoptic pressure pattern: each draw is
    the field without its zonal mean, rolled in longitude, interpolated to the grid."""
    from scipy.io import netcdf_file

    slat = np.linspace(90, -90, 37)  # descending, as many reanalysis files
    slon = np.arange(0, 360, 5.0)
    LA, LO = np.meshgrid(slat, slon, indexing="ij")
    base = np.sin(np.radians(2 * LA)) * np.cos(np.radians(4 * LO))
    p = tmp_path / "hgt.nc"
    with netcdf_file(str(p), "w") as f:
        f.createDimension("time", 2)
        f.createDimension("lat", slat.size)
        f.createDimension("lon", slon.size)
        f.createVariable("lat", "d", ("lat",))[:] = slat
        f.createVariable("lon", "d", ("lon",))[:] = slon
        f.createVariable("HGT", "f", ("time", "lat", "lon"))[:] = 5500 + 100 * np.stack([base, base])
    lat, lon = C.latlon_grid(46, 90)
    P = C.RealPatterns(f"{p}:HGT", lat, lon)
    rng = np.random.default_rng(0)
    pat = P.draw(rng)
    GLA, GLO = np.meshgrid(lat, lon, indexing="ij")
    # the pattern is cos(4 (lon - shift)) sin(2 lat) for some shift: fit the phase
    c = (pat * np.sin(np.radians(2 * GLA)) * np.cos(np.radians(4 * GLO))).sum()
    s = (pat * np.sin(np.radians(2 * GLA)) * np.sin(np.radians(4 * GLO))).sum()
    phase = np.arctan2(s, c)
    model = np.sin(np.radians(2 * GLA)) * np.cos(np.radians(4 * GLO) - phase)
    assert np.corrcoef(pat.ravel(), model.ravel())[0, 1] > 0.99
    fields, _ = C.synthetic_snapshot(lat, lon, rng, pressure_pattern=pat)
    psl = fields[C.VARIABLES.index("PSL")]
    assert np.corrcoef((psl - psl.mean(1, keepdims=True)).ravel(), pat.ravel())[0, 1] > 0.7
    ds = C.ClimateSegmentation(HEALPix(2), n_train=2, n_val=1, n_test=1, background=f"{p}:HGT")
    assert len(ds.split("train")) == 2
    with pytest.raises(ValueError, match="FILE:VARIABLE"):
        C.RealPatterns(str(p), lat, lon)
    with pytest.raises(KeyError, match="HGT2"):
        C.RealPatterns(f"{p}:HGT2", lat, lon)


# ---- regional grids: a longitude window ---------------------------------------------
def test_points_outside_a_longitude_window_are_refused_by_every_method():
    """A grid covering longitudes 0-90 and a sampling reaching beyond it, on the full sky or
    a partial sky poking 6 pixels out of the window: every path (sub-cells, children,
    whole cells, and the default) refuses the same points, saying which longitudes the grid
    covers, which points lie outside and how to fix it (was "bilinear interpolation needs a
    global, regular longitude axis", or, with the sub-cells, pixels outside kept a sliver
    of the edge column); a sampling inside the window is fine."""
    lat, lon = C.latlon_grid(48, 96)
    window = lon[lon <= 90]
    full = HEALPix(8)
    pokes = HEALPix.from_mask((full.lon > -5) & (full.lon < 100), "NESTED")
    inside = HEALPix.from_mask((full.lon > 5) & (full.lon < 85), "NESTED")
    for s, n in ((full, 550), (pokes, 6)):
        for kw in ({}, {"method": "centre"}, {"subdivisions": 4}, {"child_levels": 2}):
            with pytest.raises(ValueError, match=rf"covers longitudes 0 to 90 degrees only .*but {n} of "
                               r"the sampling's points lie outside that window: points \d+ \(lon \d+\.\d\)"
                               r".*Restrict the sampling to the window .*HEALPix.from_mask.*"
                               r" or pass a global grid"):
                C.LatLonRegridder(lat, window, s, **kw)
    # a Voronoi sampling too: the point at 120 degrees would take the window's eastern strip
    pts = Irregular([10, 45, 80, 120], [0, 10, -10, 0], units="deg")
    with pytest.raises(ValueError, match=r"1 of the sampling's points .*points 3 \(lon 120.0\)"):
        C.LatLonRegridder(lat, window, pts)
    for kw in ({}, {"method": "centre"}, {"subdivisions": 4}, {"child_levels": 2}):
        R = C.LatLonRegridder(lat, window, inside, **kw)
        np.testing.assert_allclose(R(np.full((48, window.size), 1.5)), 1.5, rtol=1e-13)


def test_points_without_cells_in_a_longitude_window_are_interpolated_inside_it():
    """Whole cells (or coarse sub-cells) leave fine pixels without a cell: inside a regional
    window they take the bilinear interpolation, which reproduces a field linear in latitude
    and longitude exactly (was refused as needing a global grid), also for a window across
    the meridian 0 given from -30; within 1.5 columns of an edge it is clamped to the edge
    column, as at the outermost latitudes."""
    lat, lon = C.latlon_grid(48, 96)
    for window, keep, unwrap in ((lon[lon <= 90], lambda x: (x > 5) & (x < 85), lambda x: x),
                                 (lon[(lon <= 30) | (lon >= 330)] % 360, None, None)):
        if keep is None:  # -30 .. 30, monotonic
            window = np.sort(np.where(window > 180, window - 360, window))
            keep = lambda x: (x < 25) | (x > 335)  # noqa: E731
            unwrap = lambda x: np.where(x > 180, x - 360, x)  # noqa: E731
        s = HEALPix.from_mask(keep(HEALPix(64).lon) & (np.abs(HEALPix(64).lat) < 80), "NESTED")
        LAT, LON = np.meshgrid(lat, window, indexing="ij")
        f = LAT + 2 * LON
        for kw in ({"method": "centre"}, {"subdivisions": 2}):
            R = C.LatLonRegridder(lat, window, s, **kw)
            assert R.empty.size > 100
            e = R.empty
            np.testing.assert_allclose(R(f)[e], s.lat[e] + 2 * unwrap(s.lon[e]), atol=1e-9)
    # 1 column beyond the eastern edge: the edge column's value (clamped), not the western one
    w = lon[lon <= 90]
    M = C.bilinear_matrix(lat, w, [0.0, 0.0, 10.0], [91.0, 358.0, 45.0])
    LAT, LON = np.meshgrid(lat, w, indexing="ij")
    np.testing.assert_allclose(M @ LON.ravel(), [90.0, 0.0, 45.0], atol=1e-9)
    with pytest.raises(ValueError, match=r"covers longitudes 0 to 90 degrees only .*1 of the sampling's "
                                         r"points lie outside that window: points 1 \(lon 180.0\)"):
        C.bilinear_matrix(lat, w, [0.0, 0.0], [45.0, 180.0])
    # a global grid stays periodic: 359 degrees lies between the last column and the first
    G = C.bilinear_matrix(lat, lon, [0.0], [359.0])
    g = np.cos(np.radians(np.meshgrid(lat, lon, indexing="ij")[1]))
    np.testing.assert_allclose(G @ g.ravel(), np.cos(np.radians(359.0)), atol=1e-3)


def test_irregular_longitudes_are_refused():
    """Columns of unequal widths: the sub-cells used each column's own longitude, the
    children and the interpolation its index times the median step (silently different)."""
    lat, _ = C.latlon_grid(16, 32)
    lon = np.r_[np.arange(0, 90, 10.0), 200.0]
    f = HEALPix(4)
    inside = HEALPix.from_mask((f.lon > 5) & (f.lon < 75), "NESTED")  # the two paths were 11.5 degrees apart
    with pytest.raises(ValueError, match=r"lon must be regularly spaced .*steps from 10 to 120 degrees"):
        C.LatLonRegridder(lat, lon, inside)
    with pytest.raises(ValueError, match=r"lon must be regularly spaced"):
        C.bilinear_matrix(lat, lon, [0.0], [5.0])


def test_default_never_takes_capped_sub_cells_on_a_healpix_target():
    """Grid cells larger than 4 pixels cap the sub-cells at 64 per side, short of their
    1/1024-of-a-pixel target: long thin cells (192 x 2, 768 x 2, 2 x 512) or cells of
    thousands of pixels (4 x 3 at nside 64, 2 x 144 at nside 128) gave pixels 0.72-1.34
    times their area, or none (then interpolated), because the work estimate favoured the
    sub-cells; the default now takes the children (j = 0 to 4), which give each pixel
    4 pi / (12 nside^2) exactly. Measured against the true area, not against either path."""
    cases = [(16, 192, 2, 4), (32, 2, 512, 4), (64, 768, 2, 3), (64, 4, 3, 0), (128, 2, 144, 1)]
    for nside, nlat, nlon, j in cases:
        lat, lon = C.latlon_grid(nlat, nlon)
        s = HEALPix(nside)
        true = 4 * np.pi / (12 * nside**2)
        R = C.LatLonRegridder(lat, lon, s)
        assert R.child_levels == j and R.subdivisions is None, (nside, nlat, nlon)
        assert R.empty.size == 0
        r = R.received_area / true
        assert 0.98 < r.min() and r.max() < 1.02, (nside, nlat, nlon, r.min(), r.max())
        capped = C.LatLonRegridder(lat, lon, s, subdivisions=R.MAX_SUBDIVISIONS)
        rc = capped.received_area / true
        assert rc.min() < 0.9 or rc.max() > 1.1  # what the default took before


def test_child_centres_on_cell_edges_go_to_one_cell_whatever_the_blocks():
    """Grids whose edges fall on HEALPix centres (longitude edges at 0, 3.75, 7.5, ...; a
    latitude edge on the equator): thousands of children lie exactly on an edge. Each is
    counted once, in one of the two cells that share the edge, and in the same one whether
    its block went to a cell whole or was split down to it (the blocks' longitudes were
    recomputed from one corner, so an edge child could go east alone and west in its block:
    up to 136 entries one child off). Reference: every child located on its own against the
    edges in degrees, with the children within 1e-9 degrees of an edge allowed either cell."""
    import healpy as hp

    for nside, nlat, nlon, j, shift in ((8, 48, 96, 4, 0.0), (8, 48, 96, 4, 0.5), (4, 20, 16, 5, 0.5)):
        lat, lon = C.latlon_grid(nlat, nlon)
        lon = lon + shift * 360 / nlon
        s = HEALPix(nside)
        R = C.LatLonRegridder(lat, lon, s, child_levels=j)
        fine = nside * 2**j
        theta, phi = hp.pix2ang(fine, np.arange(s.npix * 4**j), nest=True)
        clat, clon = 90 - np.degrees(theta), np.degrees(phi)
        step = 360 / nlon
        e = np.concatenate([[-90], 0.5 * (lat[1:] + lat[:-1]), [90]])
        x = np.mod(clon - (lon[0] - step / 2), 360) / step  # columns from the first west edge
        on_lon = np.abs(x - np.round(x)) < 1e-9 / step
        on_lat = np.isclose(clat[:, None], e[None, 1:-1], rtol=0, atol=1e-9).any(1)
        assert on_lon.sum() > 1000 and on_lat.sum() >= 4 * fine  # the ties this is about
        # the two candidate cells of each child (the same one when it is on no edge)
        col = [np.floor(x - 0.5 * on_lon) % nlon, np.floor(x + 0.5 * on_lon) % nlon]
        row = [np.clip(np.searchsorted(e, clat - 1e-9 * on_lat) - 1, 0, nlat - 1),
               np.clip(np.searchsorted(e, clat + 1e-9 * on_lat) - 1, 0, nlat - 1)]
        owner = np.repeat(np.arange(s.npix), 4**j)
        area = hp.nside2pixarea(fine)
        sure = ~on_lon & ~on_lat
        want = np.zeros((s.npix, nlat * nlon))
        np.add.at(want, (owner[sure], (row[0] * nlon + col[0])[sure].astype(int)), area)
        allowed = np.zeros_like(want, bool)
        for r in row:
            for c in col:
                allowed[owner[~sure], (r * nlon + c)[~sure].astype(int)] = True
        got = R._assign.toarray()
        np.testing.assert_allclose(got.sum(1), s.areas, rtol=1e-12)  # each child once
        extra = got - want
        assert extra.min() > -1e-12 * area  # every child off the edges where it belongs
        assert not (np.abs(extra) > 1e-9 * area)[~allowed].any()  # edge children: a neighbour
        np.testing.assert_allclose(extra.sum(1), np.bincount(owner[~sure], minlength=s.npix) * area,
                                   rtol=1e-9, atol=1e-9 * area)
        # the blocks change nothing: every child located alone (no block tested) gives the same
        alone = C.LatLonRegridder.__new__(C.LatLonRegridder)
        alone.__dict__.update(R.__dict__)
        alone._TEST_BELOW = np.inf
        order = np.argsort(lat)
        edges = C._cell_edges(lat[order], -90.0, 90.0)
        assert abs(alone._child_overlaps(order, edges, j) - R._assign).max() < 1e-9 * area


def test_overlap_areas_match_random_points_binned_independently():
    """W[p, c] = |P_p n C_c| against Monte Carlo: 2^22 uniform random points on the sphere,
    each binned to its HEALPix pixel (healpy.ang2pix) or its nearest Irregular point (a
    dot product with every point) and to its grid cell (edges half-way between the
    centres, compared in degrees), each worth 4 pi / 2^22. Sub-cells (default and 64 per
    side) and children agree with it to 2 % of a point's cell (the Monte Carlo noise is up
    to 0.35 % per entry); giving whole cells (method='centre') is 15 % off."""
    import healpy as hp

    lat, lon = C.latlon_grid(12, 24)
    rng = np.random.default_rng(0)
    n = 1 << 22
    z, phi = rng.uniform(-1, 1, n), rng.uniform(0, 2 * np.pi, n)
    e = np.concatenate([[-90], 0.5 * (lat[1:] + lat[:-1]), [90]])
    cell = (np.searchsorted(e, np.degrees(np.arcsin(z))) - 1) * 24 \
        + np.floor(np.mod(np.degrees(phi) + 7.5, 360) / 15).astype(int) % 24
    rz = rng.uniform(-1, 1, 30)
    pts = Irregular(rng.uniform(0, 360, 30), np.degrees(np.arcsin(rz)), units="deg")
    xyz = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], 1)
    nearest = np.concatenate([np.argmax(xyz[k:k + (1 << 20)] @ pts.vectors.T, axis=1)
                              for k in range(0, n, 1 << 20)])
    for s, owner, runs in ((HEALPix(2), hp.ang2pix(2, np.arccos(z), phi, nest=True),
                            ({}, {"child_levels": 6}, {"subdivisions": 64})),
                           (pts, nearest, ({}, {"subdivisions": 64}))):
        mc = np.bincount(owner * lat.size * lon.size + cell, minlength=s.npix * lat.size * lon.size)
        mc = mc.reshape(s.npix, -1) * (4 * np.pi / n)
        unit = 4 * np.pi / s.npix
        for kw in runs:
            R = C.LatLonRegridder(lat, lon, s, **kw)
            assert np.abs(R._assign.toarray() - mc).max() < 0.02 * unit, (s, kw)
        centre = C.LatLonRegridder(lat, lon, s, method="centre")
        assert np.abs(centre._assign.toarray() - mc).max() > 0.1 * unit


def test_a_file_listed_twice_is_refused(tmp_path):
    # the same snapshot could land in train and in test (files are split in list order)
    lat, lon = C.latlon_grid(24, 48)
    rng = np.random.default_rng(0)
    for k in range(4):
        f, lab = C.synthetic_snapshot(lat, lon, rng)
        C.write_climatenet(tmp_path / f"data-{k}.nc", lat, lon, f, lab)
    files = [tmp_path / f"data-{k}.nc" for k in range(4)] + [str(tmp_path / "." / "data-0.nc")]
    with pytest.raises(ValueError, match=r"data-0.nc is listed twice \(items 1 and 5\)"):
        C.ClimateSegmentation(HEALPix(2), files=files, variables=["TMQ"])


def test_event_fraction_is_a_lower_bound_that_is_reached():
    """A pixel is an event when the event's area fraction is *at least* ``event_fraction``:
    with event_fraction=1 a pixel wholly inside a river (fraction exactly 1) is a river."""
    lat, lon = C.latlon_grid(181, 360)
    R = C.LatLonRegridder(lat, lon, HEALPix(2))
    labels = np.full((lat.size, lon.size), C.AR)
    assert (R.fractions(labels, 3)[:, C.AR] == 1.0).all()
    assert (R.labels(labels, event_fraction=1.0) == C.AR).all()


def test_small_events_are_kept_below_a_majority_with_a_low_event_fraction():
    """event_fraction=0.1 labels a pixel AR when at least 10 % of its area is AR, even
    though background covers most of it (a plurality vote would say background)."""
    lat, lon = C.latlon_grid(181, 360)
    R = C.LatLonRegridder(lat, lon, HEALPix(4))
    labels = np.where(lat[:, None] > 60 + 0 * lon, C.AR, 0)
    ar = R.fractions(labels, 3)[:, C.AR]
    minority = (ar >= 0.1) & (ar < 0.5)
    assert minority.any()  # pixels where the event is a minority exist
    low = R.labels(labels, event_fraction=0.1)
    np.testing.assert_array_equal(low, np.where(ar >= 0.1, C.AR, 0))
    np.testing.assert_array_equal(R.labels(labels), np.where(ar >= 0.5, C.AR, 0))


@pytest.mark.parametrize("value", [3, -1])
def test_labels_just_outside_0_1_2_are_refused(tmp_path, value):
    """LABELS are 0, 1 or 2: the values next to the valid ones are refused too (a class 3
    would be dropped from the fractions without a word)."""
    lat, lon, fields, labels = small_snapshot()
    bad = labels.copy()
    bad[1, 2] = value
    p = tmp_path / "bad.nc"
    C.write_climatenet(p, lat, lon, fields, bad)
    with pytest.raises(ValueError, match=r"LABELS must be 0 \(background\), 1 .* or 2"):
        C.read_climatenet(p)


def test_netcdf3_missing_value_attribute_is_nan(tmp_path):
    """CF's ``missing_value`` marks missing data as ``_FillValue`` does (used when the file
    has no _FillValue)."""
    p = tmp_path / "missing.nc"
    raw = np.arange(32, dtype=np.float32).reshape(4, 8)
    raw[2, 3] = -999.0
    _write_tmq(p, raw, missing_value=np.float32(-999.0))
    _, _, fields, _ = C.read_climatenet(p, ["TMQ"], labels=False)
    assert np.isnan(fields[0, 2, 3]) and np.isfinite(np.delete(fields[0].ravel(), 19)).all()


def test_labels_of_points_without_a_whole_cell_come_from_the_closest_corner():
    """With method='centre' on a target finer than the grid many points get no cell; their
    class fractions are those of the closest grid point, not NaN (which labelled them
    background whatever the event under them)."""
    lat, lon = C.latlon_grid(19, 36)
    s = HEALPix(16, np.arange(16 * 16))
    R = C.LatLonRegridder(lat, lon, s, method="centre")
    assert R.empty.size > 0
    labels = np.full((lat.size, lon.size), C.TC)
    frac = R.fractions(labels, 3)
    np.testing.assert_array_equal(frac[:, C.TC], 1.0)
    assert (R.labels(labels) == C.TC).all()
