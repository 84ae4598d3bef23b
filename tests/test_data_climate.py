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


def test_netcdf3_packing_and_fill_values(tmp_path):
    """CF packing (scale_factor/add_offset) and _FillValue, written by hand as ClimateNet-
    like tools do, are unpacked; scipy does not do this by itself."""
    from scipy.io import netcdf_file

    lat, lon = C.latlon_grid(4, 8)
    p = tmp_path / "packed.nc"
    with netcdf_file(str(p), "w") as f:
        f.createDimension("lat", 4)
        f.createDimension("lon", 8)
        f.createVariable("lat", "d", ("lat",))[:] = lat
        f.createVariable("lon", "d", ("lon",))[:] = lon
        v = f.createVariable("TMQ", "h", ("lat", "lon"))
        raw = np.arange(32, dtype=np.int16).reshape(4, 8)
        raw[0, 0] = -32767
        v[:] = raw
        v.scale_factor = 0.5
        v.add_offset = 10.0
        v._FillValue = np.int16(-32767)
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
def test_regridder_conserves_the_area_weighted_mean():
    """Regridding assigns each cell to one pixel with its area as weight: the pixel values
    weighted by the cell area each pixel received reproduce the grid's area-weighted mean
    exactly, and the received areas approximate the pixel areas, so the plain HEALPix mean is
    close to it too; the plain cell mean (which overweights the poles) is not."""
    lat, lon = C.latlon_grid(64, 128)
    s = HEALPix(4)
    R = C.LatLonRegridder(lat, lon, s)
    assert R.empty.size == 0
    np.testing.assert_allclose(R.cell_area.sum(), 4 * np.pi, rtol=1e-12)
    f = np.cos(np.radians(lat))[:, None] ** 0 * np.sin(np.radians(lat))[:, None] ** 2 + 0 * lon
    out = R(f)
    # every pixel gets the same total cell area only approximately; compare with weights
    w = np.asarray(R._assign.sum(axis=1)).ravel()
    np.testing.assert_allclose((out * w).sum() / w.sum(), (f * R.cell_area).sum() / R.cell_area.sum(), rtol=1e-12)
    # and the pixel areas come out right within the grid's resolution
    np.testing.assert_allclose(w, s.areas, rtol=0.2)
    # area-aware: sin^2(lat) averages to 1/3 over the sphere
    assert abs(out.mean() - 1 / 3) < 0.01
    assert abs(f.mean() - 1 / 3) > 0.05


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
    R = C.LatLonRegridder(lat, lon, s)
    assert R.empty.size > 0  # many pixels get no cell: bilinear fallback
    out = R(f)
    expect = np.sin(np.radians(s.lat)) + np.cos(np.radians(s.lon)) * np.cos(np.radians(s.lat))
    np.testing.assert_allclose(out, expect, atol=0.1)
    labels = np.zeros(LAT.shape, int)
    lab = R.labels(labels)
    assert lab.shape == (s.npix,) and (lab == 0).all()


def test_label_regridding_by_area_fraction():
    lat, lon = C.latlon_grid(181, 360)
    s = HEALPix(2)
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
    with pytest.raises(ValueError, match=r"covers latitudes -1.5708 to 1.5708 degrees, but 144 of .*"
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
    R = C.LatLonRegridder(gauss, np.arange(128) * 360 / 128, HEALPix(64))
    assert R.empty.size > 0


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
