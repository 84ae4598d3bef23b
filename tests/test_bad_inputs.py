"""A catalogue of bad inputs: each must raise a named error whose message says what was
wrong and how to fix it (never a silent wrong answer, never a bare library traceback).

Every case is one row of :data:`CASES`: an id, the area, the bad input in words, a call
that feeds it to the public API, the expected exception type and a regular expression
the message must match (chosen to cover both the diagnosis and the remedy where the
message gives one). ``docs/bad_inputs.md`` lists the same ids; a test checks they agree.
Known holes in code still being finished are in :data:`XFAIL_CASES` (strict xfail: the
day they are fixed, the test says so).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import healpy as hp
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deepsphere import graph, models, nn
from deepsphere.sampling import Equiangular, HEALPix, Irregular
from deepsphere.training import checkpoint
from deepsphere.training.config import Config, ConfigError, apply_override, load_config, validate

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"


@dataclass
class Case:
    id: str
    area: str
    what: str
    call: Callable  # call(files) feeds the bad input
    exc: type
    match: str


# ---- files written once per module ---------------------------------------------------
class _Evil:
    """Unpickling this runs code (it would create a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    f = SimpleNamespace(dir=d)
    # station CSVs
    (d / "header_only.csv").write_text("lon,lat\n")
    (d / "wrong_columns.csv").write_text("x,y\n1,2\n")
    (d / "not_a_number.csv").write_text("lon,lat\n10,abc\n")
    (d / "zero_bytes.csv").write_text("")
    # checkpoints
    checkpoint.atomic_save({"model": {"w": torch.zeros(3)}, "epoch": 1}, d / "good.pt")
    good = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(good[: len(good) // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_bytes(b"this is not a checkpoint\n")
    f.marker = d / "code_ran"
    torch.save({"model": _Evil(f.marker)}, d / "evil.pt")
    torch.save({"model": np.zeros(3)}, d / "numpy_object.pt")
    # configs
    (d / "broken.yaml").write_text("trainer: {epochs: [\n")
    (d / "python_tag.yaml").write_text(
        f"trainer: !!python/object/apply:pathlib.Path.touch [{str(f.marker)!r}]\n")
    (d / "scalar.yaml").write_text("3\n")
    (d / "empty.yaml").write_text("")
    (d / "dup-trainer.yaml").write_text("trainer: {epochs: 3}\nmodel: {name: cnn}\ntrainer: {batch_size: 4}\n")
    # GHCN files
    from deepsphere.data.stations import write_dly

    days = np.arange("2010-01-01", "2010-03-01", dtype="datetime64[D]")
    write_dly(d / "good.dly", "USW00000001", "TMAX", days, np.arange(days.size, dtype=float))
    lines = (d / "good.dly").read_text().splitlines()
    (d / "truncated.dly").write_text(lines[0] + "\n" + lines[1][:37] + "\n")
    (d / "text.dly").write_text("hello\nworld\n")
    (d / "empty.dly").write_text("")
    day3 = 21 + 8 * 2  # VALUE of day 3 on a .dly line
    (d / "underscore.dly").write_text(lines[0][:day3] + "  1_2" + lines[0][day3 + 5:] + "\n")
    row = "USW00000001  40.0000  -75.0000   10.0 PA SOMEWHERE"
    (d / "dup-stations.txt").write_text(row + "\n" + row + "\n")
    (d / "stations.txt").write_text(row + "\n")
    (d / "shifted-stations.txt").write_text(row[:11] + " " + row[11:] + "\n")  # one blank too many
    (d / "no-stations.txt").write_text("")
    # NetCDF
    from deepsphere.data.climate import VARIABLES, write_climatenet

    lat, lon = np.linspace(-90, 90, 9), np.linspace(0, 360, 16, endpoint=False)
    write_climatenet(d / "good.nc", lat, lon, np.zeros((len(VARIABLES), 9, 16)),
                     np.zeros((9, 16), int))
    nc = (d / "good.nc").read_bytes()
    (d / "truncated.nc").write_bytes(nc[: len(nc) // 2])
    (d / "text.nc").write_bytes(b"hello world")
    # ClimateNet files split train / val / test in name order; PSL is missing south of 27 S in
    # the last (test) file
    (d / "climate").mkdir()
    lat24, lon48 = np.linspace(-90, 90, 24), np.linspace(0, 360, 48, endpoint=False)
    for k in range(3):
        fields = np.zeros((len(VARIABLES), 24, 48))
        if k == 2:
            fields[VARIABLES.index("PSL"), :9] = np.nan
        write_climatenet(d / "climate" / f"data-{k}.nc", lat24, lon48, fields, np.zeros((24, 48), int))
    # an SAO-style NetCDF3 file of hourly station reports, and a truncated copy
    from scipy.io import netcdf_file

    with netcdf_file(str(d / "sao.cdf"), "w") as nc:
        nc.createDimension("report", 2)
        nc.createDimension("hour", 24)
        nc.createDimension("id_len", 12)
        nc.createVariable("id", "c", ("report", "hour", "id_len"))[:] = np.full((2, 24, 12), b"A", "S1")
        for name, value in (("lat", 40.0), ("lon", -100.0), ("T", 10.0)):
            nc.createVariable(name, "f", ("report", "hour"))[:] = np.full((2, 24), value, np.float32)
    sao = (d / "sao.cdf").read_bytes()
    (d / "truncated.cdf").write_bytes(sao[: len(sao) // 2])
    # HEALPix maps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hp.write_map(str(d / "good.fits"), np.arange(768.0), nest=False, dtype=np.float64)
    fits = (d / "good.fits").read_bytes()
    (d / "truncated.fits").write_bytes(fits[: len(fits) // 2])
    (d / "empty.fits").write_bytes(b"")
    (d / "text.fits").write_bytes(b"this is not a FITS file\n" * 20)
    # partial-sky FITS as healpy writes them (PIXEL column), then damaged copies
    from astropy.io import fits as afits

    partial = np.full(768, hp.UNSEEN)  # nside 8; indices past 255 keep healpy off int8/uint8
    partial[-64:] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hp.write_map(str(d / "partial.fits"), partial, nest=True, partial=True, dtype=np.float64)
    with afits.open(d / "partial.fits") as hdul:
        header = hdul[1].header.copy()
        pix = np.asarray(hdul[1].data["PIXEL"])
    for name, p in (("partial-negative.fits", np.r_[-1, pix[1:]]),
                    ("partial-repeated.fits", np.r_[pix[:1], pix[:-1]])):
        cols = [afits.Column("PIXEL", "K", array=p), afits.Column("T", "D", array=np.ones(p.size))]
        table = afits.BinTableHDU.from_columns(cols)
        for key in ("PIXTYPE", "ORDERING", "NSIDE", "INDXSCHM", "OBJECT"):
            if key in header:
                table.header[key] = header[key]
        afits.HDUList([afits.PrimaryHDU(), table]).writeto(d / name)
    with afits.open(d / "partial.fits") as hdul:
        del hdul[1].header["ORDERING"]
        hdul.writeto(d / "partial-no-ordering.fits")
    np.save(d / "map.npy", np.zeros(768))
    np.save(d / "ring.npy", _smooth_ring_map())
    np.save(d / "700pix.npy", np.zeros(700))
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "truncated.npy").write_bytes((d / "map.npy").read_bytes()[:100])
    (d / "map.txt").write_text("0 1 2\n")
    # convergence map classes of 2 files each (nside 8, NESTED), and ClimateNet snapshots
    rng = np.random.default_rng(0)
    for n in (2, 4):
        (d / f"maps{n}").mkdir()
        for c in "ab":
            for i in range(n):
                np.save(d / f"maps{n}" / f"{c}{i}.npy", rng.standard_normal(12 * 8**2))
    from deepsphere.data import climate

    lat, lon = climate.latlon_grid(24, 48)
    for k in range(4):
        fields, labels = climate.synthetic_snapshot(lat, lon, rng)
        climate.write_climatenet(d / f"snapshot-{k}.nc", lat, lon, fields, labels)
    return f


# ---- shared small objects ----------------------------------------------------------------
S8 = HEALPix(8)
IRR3 = Irregular([0, 90, 180], [0, 0, 0], units="deg")


def _smooth_ring_map(nside=16):
    """A smooth full-sky map in RING order (what healpy.read_map returns by default)."""
    rng = np.random.default_rng(0)
    return hp.smoothing(rng.standard_normal(hp.nside2npix(nside)), fwhm=1.0)


def _operator():
    return graph.knn(S8, k=8).chebyshev_operator()


def _cnn():
    return models.SphericalCNN(S8, in_channels=1, n_classes=2, channels=[4], K=2)


def _build(what, d):
    from deepsphere.training import builders

    d = dict(d)
    d.setdefault("sampling", {"name": "healpix", "nside": 2})
    config = Config.from_dict(d)
    validate(config)
    if what == "sampling":
        return builders.build_sampling(config)
    return builders.build_dataset(config, HEALPix(2))


def _unpool_with_index(value, at=(1, 5, 2)):
    x = torch.randn(2, 192, 3, generator=torch.Generator().manual_seed(0))
    y, idx = nn.HEALPixPool(4, mode="max", return_indices=True)(x)
    idx = idx.clone()
    idx[at] = value
    return nn.HEALPixUnpool(4, mode="max")(y, idx)


def _write_through_link_loop(d):
    from deepsphere.io import atomic_write_text

    a, b = d / "loop-a.txt", d / "loop-b.txt"
    for link, target in ((a, b), (b, a)):
        if not link.is_symlink():
            link.symlink_to(target)
    atomic_write_text("x", a)


def _validate(d):
    d = dict(d)
    d.setdefault("sampling", {"name": "healpix", "nside": 4})
    validate(Config.from_dict(d))


def _trainer(f, name, **trainer):
    """A Trainer of a tiny classification task (synthetic_fields); the checks run before
    anything is written to its run folder."""
    from deepsphere.training.trainer import Trainer

    t = dict({"epochs": 1, "batch_size": 2, "device": "cpu", "progress": False, "plots": False,
              "out": str(f.dir / f"run-{name}")}, **trainer)
    return Trainer(Config.from_dict({
        "data": {"name": "synthetic_fields", "n_train": 4, "n_val": 2, "n_test": 2},
        "sampling": {"name": "healpix", "nside": 2},
        "model": {"name": "cnn", "channels": [2], "K": 2},
        "trainer": t,
    }))


def _random_walk_operator():
    """The random-walk Laplacian I - D^-1 W rescaled with lmax = 2: the spectrum of the
    normalized one, but not symmetric."""
    W = graph.knn(S8, k=8).adjacency
    eye = sp.identity(W.shape[0])
    return sp.csr_matrix(eye - sp.diags(1 / np.asarray(W.sum(1)).ravel()) @ W) - eye


def _nan_operator():
    L = graph.knn(S8, k=8).chebyshev_matrix()
    L.data[3] = np.nan
    return L


def _stations():
    from deepsphere.data import stations

    return stations


def _climate():
    from deepsphere.data import climate

    return climate


def _spectral():
    from deepsphere import spectral

    return spectral


CASES = [
    # ---- HEALPix sampling ---------------------------------------------------------------
    Case("nside-not-power-of-two", "sampling", "HEALPix(nside=3)",
         lambda f: HEALPix(3), ValueError, r"nside=3 .*power of two.*sqrt\(npix / 12\)"),
    Case("nside-fractional", "sampling", "HEALPix(nside=2.5)",
         lambda f: HEALPix(2.5), ValueError, r"power of two"),
    Case("nside-boolean", "sampling", "HEALPix(nside=True) (was read as nside=1)",
         lambda f: HEALPix(True), TypeError, r"integer power of two.*boolean"),
    Case("nside-none", "sampling", "HEALPix(nside=None)",
         lambda f: HEALPix(None), TypeError, r"integer power of two, got None"),
    Case("levels-too-many", "sampling", "HEALPix(8, levels=5): more poolings than nside allows",
         lambda f: HEALPix(8, levels=5), ValueError, r"impossible from nside=8: at most 3"),
    Case("levels-fractional", "sampling", "HEALPix(8, levels=1.5) (was read as levels=1)",
         lambda f: HEALPix(8, levels=1.5), TypeError, r"levels must be an int \(number of poolings\), got 1.5"),
    Case("pixels-float", "sampling", "partial sky from float pixel indices",
         lambda f: HEALPix(8, [0.0, 1.0]), TypeError, r"integer NESTED indices.*from_mask"),
    Case("pixels-duplicate", "sampling", "partial sky with a repeated pixel",
         lambda f: HEALPix(8, [0, 0, 1]), ValueError, r"duplicate.*each pixel once"),
    Case("pixels-out-of-range", "sampling", "pixel index >= 12 nside^2",
         lambda f: HEALPix(8, [0, 1000]), ValueError, r"out of range \[0, 768\).*values \[1000\]"),
    Case("pixels-unsorted", "sampling", "partial-sky indices not sorted",
         lambda f: HEALPix(8, [3, 1]), ValueError, r"sorted.*np.sort.*reorder the data"),
    Case("pixels-empty", "sampling", "partial sky with no pixel",
         lambda f: HEALPix(8, []), ValueError, r"non-empty 1-D array"),
    Case("partial-sky-not-closed", "sampling",
         "partial sky not closed under the NESTED hierarchy for the poolings asked",
         lambda f: HEALPix(8, [0, 1, 2], levels=1), ValueError,
         r"not closed under the NESTED hierarchy.*closure\(pixels, 8, 1\).*extend=True"),
    Case("order-missing", "sampling", "HEALPix.take(m) without saying the ordering",
         lambda f: S8.take(np.zeros(768)), TypeError, r"required positional argument: 'order'"),
    Case("order-misspelt", "sampling", "order='nest'",
         lambda f: S8.take(np.zeros(768), order="nest"), ValueError, r"'NESTED' or 'RING'.*ORDERING"),
    Case("map-wrong-nside", "sampling", "a nside-16 map on a nside-8 sampling",
         lambda f: S8.take(np.zeros(3072), order="NESTED"), ValueError,
         r"3072 pixels.*expected 768.*Wrong nside\? .*nside=16"),
    Case("pixels-boolean-mask", "sampling", "a boolean mask given as pixel indices to HEALPix.from_pixels (became pixels 0 and 1)",
         lambda f: HEALPix.from_pixels(8, np.zeros(768, bool)), TypeError, r"boolean array.*HEALPix.from_mask"),
    Case("pixels-fractional", "sampling", "fractional pixel indices to HEALPix.from_pixels (1.5 became 1)",
         lambda f: HEALPix.from_pixels(8, [1.5, 2.7]), TypeError, r"integer NESTED indices, got dtype float64"),
    Case("closure-out-of-range", "sampling", "closure of a pixel index >= 12 nside^2 (was returned as a parent range)",
         lambda f: _closure()([768], 8, 1), ValueError, r"out of range \[0, 768\) for nside=8"),
    Case("closure-levels-fractional", "sampling", "closure(levels=1.5)",
         lambda f: _closure()([1], 8, 1.5), TypeError, r"levels must be an int"),
    Case("from-map-stack", "sampling", "a stack of 4 maps to HEALPix.from_map (read as one nside-16 map)",
         lambda f: HEALPix.from_map(np.zeros((4, 768)), "RING"), ValueError, r"one full-sky map.*\(4, 768\)"),
    Case("from-mask-stack", "sampling", "a stack of 4 masks to HEALPix.from_mask",
         lambda f: HEALPix.from_mask(np.ones((4, 768), bool), "NESTED"), ValueError, r"mask.any\(axis=0\)"),
    Case("take-unseen-unknown", "sampling", "take(unseen='mask') on a map without UNSEEN (was accepted)",
         lambda f: HEALPix(2).take(np.zeros(48), "NESTED", unseen="mask"), ValueError, r"unseen must be 'raise' or 'zero'"),
    Case("irregular-negative-separation", "sampling", "Irregular(min_separation=-1)",
         lambda f: Irregular([0, 1], [0, 0], units="deg", min_separation=-1), ValueError, r"min_separation must be a distance >= 0"),
    Case("irregular-areas-coplanar", "sampling", "Voronoi areas of points all on one great circle (scipy: rank of input points)",
         lambda f: Irregular([0, 90, 180, 270], [0] * 4, units="deg").areas, ValueError, r"not all on one plane"),
    Case("irregular-names-string", "sampling", "Irregular(names='abc') (its letters became the names)",
         lambda f: Irregular([0, 1, 2], [0] * 3, units="deg", names="abc"), TypeError, r"one per point"),
    Case("ring-declared-nested", "sampling", "a smooth RING map declared NESTED",
         lambda f: HEALPix(16).take(_smooth_ring_map(), order="NESTED"), ValueError,
         r"declared NESTED but looks like RING.*order='RING'"),
    Case("ring-declared-nested-partial", "sampling",
         "HEALPix.from_map of a smooth, partly UNSEEN RING map declared NESTED",
         lambda f: HEALPix.from_map(np.where(np.arange(3072) < 400, hp.UNSEEN, _smooth_ring_map()),
                                    order="NESTED"), ValueError,
         r"declared NESTED but looks like RING.*order='RING'"),
    Case("ring-declared-nested-3px", "sampling",
         "a RING map smoothed over ~3 pixels (fwhm 0.2 rad, nside 16) declared NESTED (passed "
         "the old threshold of 20)",
         lambda f: HEALPix(16).take(hp.smoothing(np.random.default_rng(0).standard_normal(3072),
                                                 fwhm=0.2), order="NESTED"), ValueError,
         r"declared NESTED but looks like RING.*order='RING'"),
    Case("ring-declared-nested-zonal", "sampling", "a zonal RING map (sin of latitude) declared NESTED",
         lambda f: HEALPix(16).take(np.sin(np.pi / 2 - hp.pix2ang(16, np.arange(3072))[0]),
                                    order="NESTED"), ValueError,
         r"declared NESTED but looks like RING.*order='RING'"),
    Case("map-nan", "sampling", "NaN on the sampling's pixels",
         lambda f: S8.take(np.r_[np.nan, np.zeros(767)], order="NESTED"), ValueError,
         r"1 UNSEEN/NaN/inf.*HEALPix.from_map.*unseen='zero'"),
    Case("map-unseen", "sampling", "healpy UNSEEN on the sampling's pixels",
         lambda f: S8.take(np.full(768, hp.UNSEEN), order="RING"), ValueError,
         r"768 UNSEEN/NaN/inf.*unseen='zero'"),
    Case("map-inf", "sampling", "+inf on the sampling's pixels",
         lambda f: S8.take(np.r_[np.zeros(767), np.inf], order="NESTED"), ValueError,
         r"UNSEEN/NaN/inf values.*positions \[767\]"),
    Case("map-not-numeric", "sampling", "a map of strings (e.g. read from a text file unparsed)",
         lambda f: S8.take(np.array(["1.0"] * 768), order="NESTED"), TypeError,
         r"numeric array.*dtype <U3.*np.asarray\(m, dtype=float\)"),
    Case("map-scalar", "sampling", "a single number instead of a map",
         lambda f: S8.take(3.0, order="NESTED"), TypeError, r"pixels on its last axis.*shape \(\)"),
    Case("unseen-policy-unknown", "sampling", "take(..., unseen='drop')",
         lambda f: S8.take(np.r_[np.inf, np.zeros(767)], order="NESTED", unseen="drop"),
         ValueError, r"unseen must be 'raise' or 'zero'"),
    Case("partial-map-ring", "sampling", "a partial map (one value per kept pixel) said to be RING",
         lambda f: HEALPix(8, np.arange(4)).take(np.zeros(4), order="RING"), ValueError,
         r"NESTED order; RING conversion needs the full-sky map"),
    Case("mask-not-boolean", "sampling", "HEALPix.from_mask with a float mask",
         lambda f: HEALPix.from_mask(np.ones(768), order="RING"), TypeError,
         r"mask must be boolean \(True = pixel kept\)"),
    Case("mask-wrong-size", "sampling", "a mask whose size is not 12 nside^2",
         lambda f: HEALPix.from_mask(np.ones(700, bool), order="RING"), ValueError,
         r"12\*nside\*\*2 pixels; 700.*partial map"),
    Case("map-all-unseen", "sampling", "HEALPix.from_map of a map that is entirely UNSEEN",
         lambda f: HEALPix.from_map(np.full(768, hp.UNSEEN), order="RING"), ValueError,
         r"keeps no pixel.*UNSEEN.*mask polarity"),
    # ---- equiangular ---------------------------------------------------------------------
    Case("bandwidth-zero", "sampling", "Equiangular(0)",
         lambda f: Equiangular(0), ValueError, r"bandwidth must be a positive integer"),
    Case("bandwidth-boolean", "sampling", "Equiangular(True) (was bandwidth 1)",
         lambda f: Equiangular(True), ValueError, r"bandwidth must be a positive integer, got True"),
    Case("equiangular-kind", "sampling", "Equiangular(4, 'dh') (kinds are upper case)",
         lambda f: Equiangular(4, "dh"), ValueError, r"kind must be one of \('DH', 'SOFT'"),
    Case("equiangular-odd-pool", "sampling", "pooling an odd-bandwidth grid",
         lambda f: Equiangular(3).coarsen(), ValueError, r"DH or SOFT grid with an even bandwidth"),
    # ---- irregular points / stations -----------------------------------------------------
    Case("units-missing", "stations", "Irregular(..., units='degrees')",
         lambda f: Irregular([0], [0], units="degrees"), ValueError, r"'deg' or 'rad'"),
    Case("degrees-as-radians", "stations", "degrees passed with units='rad'",
         lambda f: Irregular([100], [45], units="rad"), ValueError,
         r"out of range.*Are these degrees\? Then pass units='deg'"),
    Case("lon-lat-swapped", "stations", "latitude 100 (lon and lat swapped)",
         lambda f: Irregular([45], [100], units="deg"), ValueError, r"row 0.*lon and lat swapped"),
    Case("coordinate-nan", "stations", "a station at NaN",
         lambda f: Irregular([np.nan, 0], [0, 0], units="deg"), ValueError, r"not finite.*row 0"),
    Case("stations-empty", "stations", "no station at all",
         lambda f: Irregular([], [], units="deg"), ValueError, r"at least one point.*empty"),
    Case("stations-duplicate", "stations", "the same station twice",
         lambda f: Irregular([0, 0, 10], [0, 0, 10], units="deg", names=["a", "b", "c"]),
         ValueError, r"duplicate.*rows 0 \[a\] and 1 \[b\].*Merge or drop"),
    Case("stations-duplicate-wrapped", "stations", "the same station at lon 0 and lon 360",
         lambda f: Irregular([0, 360, 10], [0, 0, 10], units="deg"), ValueError, r"duplicate"),
    Case("lon-lat-lengths", "stations", "lon and lat of different lengths",
         lambda f: Irregular([0, 1], [0], units="deg"), ValueError, r"equal length.*\(2,\) and \(1,\)"),
    Case("names-length", "stations", "fewer names than points",
         lambda f: Irregular([0, 1], [0, 1], units="deg", names=["a"]), ValueError,
         r"1 names for 2 points"),
    Case("irregular-pool", "stations", "hierarchical pooling of an irregular set",
         lambda f: IRR3.coarsen(), NotImplementedError, r"not hierarchical.*RemapPool"),
    Case("voronoi-too-few", "stations", "Voronoi areas of 3 points",
         lambda f: IRR3.areas, ValueError, r"at least 4 points"),
    Case("csv-header-only", "stations", "a station CSV with a header and no rows",
         lambda f: Irregular.from_csv(f.dir / "header_only.csv", units="deg"), ValueError,
         r"header_only.csv: no stations"),
    Case("csv-wrong-columns", "stations", "a CSV without lon/lat columns",
         lambda f: Irregular.from_csv(f.dir / "wrong_columns.csv", units="deg"), ValueError,
         r"no column 'lon'; columns are \['x', 'y'\]"),
    Case("csv-not-a-number", "stations", "a CSV cell that is not a number",
         lambda f: Irregular.from_csv(f.dir / "not_a_number.csv", units="deg"), ValueError,
         r"line 2: cannot read lon='10', lat='abc' as numbers"),
    Case("csv-zero-bytes", "stations", "an empty CSV file",
         lambda f: Irregular.from_csv(f.dir / "zero_bytes.csv", units="deg"), ValueError,
         r"no column 'lon'; columns are \[\]"),
    # ---- graphs ----------------------------------------------------------------------------
    Case("knn-connect-not-bool", "graph", "knn(connect='yes')",
         lambda f: graph.knn(S8, 8, connect="yes"), TypeError, r"connect must be True or False, got 'yes'"),
    Case("knn-k-too-large", "graph", "k >= number of points",
         lambda f: graph.knn(HEALPix(1), k=12), ValueError, r"the sampling has 12\. Use k <= 11"),
    Case("knn-one-point", "graph", "a k-NN graph on a single point (was 'Use k <= 0')",
         lambda f: graph.knn(Irregular([0], [0], units="deg"), k=1), ValueError,
         r"a k-NN graph needs at least 2 points; the sampling has 1"),
    Case("knn-k-zero", "graph", "k=0",
         lambda f: graph.knn(S8, k=0), ValueError, r"k must be a positive integer"),
    Case("kernel-width-unknown", "graph", "kernel_width='wide'",
         lambda f: graph.knn(S8, kernel_width="wide"), ValueError, r"'tuned', 'heuristic'"),
    Case("kernel-width-negative", "graph", "a negative width t",
         lambda f: graph.knn(S8, kernel_width=-1.0), ValueError, r"positive and finite, got -1"),
    Case("kernel-sigma-negative", "graph", "kernel_width={'sigma': -1} (was squared silently)",
         lambda f: graph.knn(S8, kernel_width={"sigma": -0.02}), ValueError,
         r"sigma must be a positive finite number"),
    Case("graph-on-array", "graph", "knn on a raw (n, 3) array instead of a Sampling",
         lambda f: graph.knn(np.zeros((10, 3)), k=3), TypeError,
         r"needs a deepsphere Sampling.*Irregular\(lon, lat"),
    Case("healpix-graph-on-irregular", "graph", "the 8-neighbour HEALPix graph on stations",
         lambda f: graph.healpix_neighbours(IRR3), TypeError, r"needs a HEALPix sampling"),
    Case("fem-coincident-points", "graph", "the finite-element Laplacian on a DH grid (pole copies)",
         lambda f: __import__("deepsphere.graph.experimental", fromlist=["x"]).fem_laplacian(
             Equiangular(4, "DH")), ValueError, r"7 of 64 points are not vertices of the triangulation"),
    Case("radius-too-small", "graph", "a radius with no pair of points inside",
         lambda f: graph.radius(S8, 1e-6), ValueError, r"increase the radius.*typical spacing"),
    Case("radius-not-number", "graph", "radius('big')",
         lambda f: graph.radius(S8, "big"), TypeError, r"number of radians"),
    Case("recipe-unknown-kind", "graph", "recipe kind 'knnn'",
         lambda f: graph.build(S8, {"kind": "knnn"}), ValueError, r"unknown graph kind 'knnn'; choose from"),
    Case("recipe-unknown-key", "graph", "recipe with a misspelt key",
         lambda f: graph.build(S8, {"kind": "knn", "kk": 8}), ValueError,
         r"unknown key\(s\) \['kk'\].*valid keys"),
    Case("recipe-not-dict", "graph", "recipe given as a string",
         lambda f: graph.build(S8, "knn"), ValueError, r"a graph recipe is a dict with a 'kind'"),
    Case("recipe-plugin-missing", "graph", "plug-in builder from a module that does not exist",
         lambda f: graph.build(S8, {"kind": "no_such_module:builder"}), ValueError,
         r"cannot import module 'no_such_module'.*PYTHONPATH"),
    Case("adjacency-asymmetric", "graph", "a user adjacency that is not symmetric",
         lambda f: graph.SphereGraph.from_adjacency(np.array([[0, 1.0], [0, 0]])), ValueError,
         r"not symmetric.*\(W \+ W.T\) / 2"),
    Case("adjacency-negative", "graph", "negative weights",
         lambda f: graph.SphereGraph.from_adjacency(np.array([[0, -1.0], [-1.0, 0]])), ValueError,
         r"negative weights.*>= 0"),
    Case("adjacency-nan", "graph", "NaN weights",
         lambda f: graph.SphereGraph.from_adjacency(np.array([[0, np.nan], [np.nan, 0]])), ValueError,
         r"NaN or infinite weights"),
    Case("adjacency-self-loops", "graph", "non-zero diagonal",
         lambda f: graph.SphereGraph.from_adjacency(np.array([[1.0, 1], [1, 0]])), ValueError,
         r"self loops.*setdiag\(0\)"),
    Case("adjacency-size", "graph", "adjacency of 2 vertices for a 768-pixel sampling",
         lambda f: graph.SphereGraph.from_adjacency(sp.csr_matrix(np.array([[0, 1.0], [1, 0]])), S8),
         ValueError, r"2 vertices but the sampling has 768"),
    Case("pyg-edge-index-out-of-range", "graph", "a PyG edge_index naming vertex 5 with num_nodes=3",
         lambda f: graph.SphereGraph.from_pyg(__import__("torch_geometric.data", fromlist=["Data"]).Data(
             edge_index=torch.tensor([[0, 5], [5, 0]]), num_nodes=3)), ValueError,
         r"vertex indices in \[0, 5\] but the graph has num_nodes=3 \(valid indices 0..2\)"),
    Case("laplacian-kind", "graph", "laplacian('sym')",
         lambda f: graph.knn(S8).laplacian("sym"), ValueError, r"'normalized', 'combinatorial'"),
    Case("lmax-nonpositive", "graph", "a Chebyshev rescaling with lmax <= 0",
         lambda f: graph.knn(S8).chebyshev_matrix(lmax=-1), ValueError, r"lmax must be positive"),
    Case("lmax-below-spectrum", "graph",
         "chebyshev_matrix('combinatorial', lmax=2): a fixed lmax below the largest eigenvalue",
         lambda f: graph.knn(S8).chebyshev_matrix("combinatorial", lmax=2), ValueError,
         r"lmax=2 is below the largest eigenvalue of the combinatorial Laplacian.*"
         r"Leave lmax unset \(estimated\), or use lmax >= "),
    Case("chebyshev-scale-above-one", "graph", "chebyshev_matrix(scale=2): spectrum of L~ past 1",
         lambda f: graph.knn(S8).chebyshev_matrix(scale=2), ValueError,
         r"scale must be in \(0, 1\].*got 2"),
    Case("lmax-negative-margin", "graph", "lmax(margin=-0.5): an estimate below the spectrum",
         lambda f: graph.knn(S8).lmax(margin=-0.5), ValueError,
         r"margin must be a finite number >= 0, got -0.5"),
    # ---- layers ----------------------------------------------------------------------------
    Case("conv-wrong-vertices", "nn", "700 vertices into a nside-8 operator",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 700, 2), _operator()), ValueError,
         r"700 vertices.*768 vertices.*nside=8"),
    Case("conv-wrong-channels", "nn", "3 channels into a 2-channel layer",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 3), _operator()), ValueError,
         r"in_channels=2.*got 3.*\[batch, vertices, channels\]"),
    Case("conv-integer-input", "nn", "an int64 signal",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 2, dtype=torch.long), _operator()),
         TypeError, r"floating-point tensor"),
    Case("conv-dtype-mismatch", "nn", "float64 signal into a float32 layer",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 2, dtype=torch.float64), _operator()),
         TypeError, r"float64.*float32.*\.to\(\)"),
    Case("conv-sparse-input", "nn", "a sparse signal x",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 2).to_sparse(), _operator()), TypeError,
         r"x must be a dense tensor, got layout torch.sparse_coo; use x.to_dense\(\)"),
    Case("conv-operator-not-symmetric", "nn",
         "a random-walk operator I - D^-1 W (rescaled) as scipy sparse (gradients were wrong)",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 2), _random_walk_operator()), ValueError,
         r"not symmetric.*backward pass uses L~\^T = L~.*SphereGraph.chebyshev_operator"),
    Case("conv-operator-nan", "nn", "an operator holding NaN (scipy sparse)",
         lambda f: nn.ChebConv(2, 3, K=3)(torch.zeros(1, 768, 2), _nan_operator()), ValueError,
         r"NaN or infinite values; build it from a graph with finite weights"),
    Case("conv-float16-cpu", "nn", "ChebConv in float16 on CPU with a float16 SparseOperator",
         lambda f: nn.ChebConv(3, 2, K=3).half()(
             torch.zeros(1, 768, 3).half(),
             nn.SparseOperator(graph.knn(S8).chebyshev_matrix()).half()), TypeError,
         r"cannot run in torch.float16 on cpu.*model.float\(\).*torch.autocast"),
    Case("conv-K-zero", "nn", "ChebConv(K=0)",
         lambda f: nn.ChebConv(2, 3, K=0), ValueError, r"K must be an int >= 1"),
    Case("pool-not-hierarchical", "nn", "HierarchyPool on stations",
         lambda f: nn.HierarchyPool(IRR3), ValueError, r"not hierarchical.*HEALPix"),
    Case("pool-wrong-vertices", "nn", "700 vertices into a nside-8 pooling",
         lambda f: nn.HEALPixPool(8)(torch.zeros(1, 700, 1)), ValueError,
         r"700 vertices on axis 1 but the sampling .* has 768"),
    Case("pool-levels-fractional", "nn", "HEALPixPool(4, levels=1.5) (pooled once)",
         lambda f: nn.HEALPixPool(4, levels=1.5), TypeError,
         r"levels must be an int \(number of poolings by 4\), got 1.5"),
    Case("pool-input-numpy", "nn", "a numpy array into HEALPixPool",
         lambda f: nn.HEALPixPool(4)(np.zeros((1, 192, 1))), TypeError,
         r"input must be a torch.Tensor, got ndarray.*torch.as_tensor"),
    Case("unpool-index-out-of-range", "nn", "max-unpooling indices past the last fine vertex",
         lambda f: _unpool_with_index(192), ValueError, r"indices must lie in \[0, 192\)"),
    Case("unpool-index-negative", "nn", "a negative max-unpooling index",
         lambda f: _unpool_with_index(-1), ValueError, r"indices must lie in \[0, 192\).*got -1"),
    Case("unpool-index-foreign-child", "nn", "an unpooling index that is another coarse vertex's child",
         lambda f: _unpool_with_index(100, at=(0, 0, 0)), ValueError,
         r"indices\[0, 0, 0\] = 100 is not a child of its coarse vertex"),
    # ---- equivariance measurement ------------------------------------------------------------
    Case("equivariance-degrees-fractional", "equivariance", "degrees [2.5] (was measured as 2)",
         lambda f: _equivariance().equivariance_error(np.eye(192), HEALPix(4), [2.5], 1, 1),
         ValueError, r"degrees must be a non-empty list of integers >= 1, got \[2.5\]"),
    Case("equivariance-n-signals-fractional", "equivariance", "n_signals=2.5",
         lambda f: _equivariance().equivariance_error(np.eye(192), HEALPix(4), [2], n_signals=2.5),
         TypeError, r"n_signals must be an int, got 2.5"),
    Case("kernel-width-bounds-reversed", "equivariance", "optimise_kernel_width bounds=(5, 0.2)",
         lambda f: _equivariance().optimise_kernel_width(HEALPix(4), 8, [2], bounds=(5, 0.2)),
         ValueError, r"bounds must be two multiples 0 < low < high"),
    Case("sweep-knn-without-k", "equivariance", "a knn graph without k in a sweep config",
         lambda f: _sweep({"samplings": [{"name": "healpix", "nside": 4}],
                           "graphs": [{"label": "k8", "kind": "knn"}], "degrees": [2]}),
         ValueError, r"'k8': a knn graph needs 'k'"),
    Case("sweep-samplings-mapping", "equivariance", "samplings given as a mapping, not a list",
         lambda f: _sweep({"samplings": {"name": "healpix", "nside": 4},
                           "graphs": [{"label": "k8", "kind": "knn", "k": 8}], "degrees": [2]}),
         ValueError, r"'samplings' must be a list"),
    Case("sweep-sampling-without-nside", "equivariance", "a healpix sampling without nside",
         lambda f: _sweep({"samplings": [{"name": "healpix"}],
                           "graphs": [{"label": "k8", "kind": "knn", "k": 8}], "degrees": [2]}),
         ValueError, r"healpix sampling needs an nside"),
    # ---- models ----------------------------------------------------------------------------
    Case("model-too-deep", "models", "3 poolings from nside 2",
         lambda f: models.SphericalCNN(HEALPix(2), 1, 2, channels=[4, 4, 4]), ValueError,
         r"3 poolings .* not possible, only 1 .*coarsest.*Give at most 1 entries in channels"),
    Case("unet-too-deep", "models", "a 3-level U-Net (2 poolings) from nside 2",
         lambda f: models.SphericalUNet(HEALPix(2), 1, 2, channels=[4, 4, 4]), ValueError,
         r"2 poolings .* not possible, only 1 .*Give at most 2 entries in channels"),
    Case("model-no-channels", "models", "channels=[]",
         lambda f: models.SphericalCNN(S8, 1, 2, channels=[]), ValueError,
         r"non-empty list of positive ints"),
    Case("model-channels-fractional", "models", "channels=[4.5] (was truncated to 4)",
         lambda f: models.SphericalCNN(HEALPix(4), 2, 3, channels=[4.5]), ValueError,
         r"channels must be a non-empty list of positive ints, got \[4.5\]"),
    Case("model-in-channels-fractional", "models", "in_channels=2.5 (was truncated to 2)",
         lambda f: models.SphericalCNN(HEALPix(4), 2.5, 3), ValueError,
         r"in_channels must be a positive int \(input features per vertex\), got 2.5"),
    Case("model-no-classes", "models", "n_classes=0 (built a model with no outputs)",
         lambda f: models.SphericalCNN(S8, 1, 0, channels=[4]), ValueError,
         r"n_classes must be a positive int"),
    Case("model-graph-string", "models", "graph='knn' instead of a recipe dict",
         lambda f: models.SphericalCNN(S8, 1, 2, channels=[4], graph="knn"), TypeError,
         r"recipe dict with a 'kind'"),
    Case("model-input-unbatched", "models", "a [vertices, channels] input",
         lambda f: _cnn()(torch.zeros(768, 1)), ValueError, r"\[batch, vertices, channels\].*unsqueeze"),
    Case("patch-model-not-healpix", "models", "a cosmology patch model on an equiangular grid",
         lambda f: _cosmology().EmbeddedZonalClassifier(Equiangular(8, "DH"), 1, 2), TypeError,
         r"'patch_zonal' works on HEALPix patches, got a Equiangular.*healpix_patch"),
    Case("patch-model-wrong-vertices", "models", "a 10-vertex signal into a 16-vertex patch model",
         lambda f: _cosmology().EmbeddedZonalClassifier(_cosmology().healpix_patch(8, 2), 1, 2, lmax=4)(
             torch.zeros(2, 10, 1)), ValueError, r"\[batch, vertices=16, channels\], got shape \(2, 10, 1\)"),
    Case("patch-model-unbatched", "models", "a [vertices, channels] signal into a patch model",
         lambda f: _cosmology().EmbeddedSpectralClassifier(_cosmology().healpix_patch(8, 2), 1, 2, lmax=2)(
             torch.zeros(16, 1)), ValueError, r"got shape \(16, 1\); add a batch axis.*unsqueeze\(0\)"),
    Case("zonal-readout-outside", "models", "a ZonalClassifier readout index past the last vertex",
         lambda f: __import__("deepsphere.spectral", fromlist=["x"]).ZonalClassifier(
             HEALPix(2), 1, 2, channels=[2], lmax=4, readout=[0, 48]), ValueError,
         r"readout must index the sampling's 48 vertices, got 2 indices in \[0, 48\]"),
    Case("model-input-numpy", "models", "a numpy array as input",
         lambda f: _cnn()(np.zeros((1, 768, 1))), TypeError, r"torch.as_tensor"),
    Case("model-input-channels", "models", "2 channels into a 1-channel model",
         lambda f: _cnn()(torch.zeros(1, 768, 2)), ValueError, r"2 channels.*in_channels=1"),
    Case("regressor-too-few-stations", "models", "a k=8 graph on 2 stations",
         lambda f: models.StationRegressor(Irregular([0, 90], [0, 0], units="deg"), 1, 1, K=2),
         ValueError, r"Use k <= 1"),
    # ---- spectral transforms and layers ----------------------------------------------------
    Case("spectral-integer-coefficients", "spectral",
         "int64 coefficients to rotate_coefficients (its tables were cast to int64: zeros out)",
         lambda f: _spectral().rotate_coefficients(torch.arange(16), (0.3, 0.5, 0.7)), TypeError,
         r"coefficients must be a real floating tensor \(float32 or float64\), got torch.int64; "
         r"convert it with .double\(\) or .float\(\)"),
    Case("so3-coefficients-wrong-size", "spectral",
         "84 SO(3) coefficients (lmax 3) into SO3ToS2(lmax=2) (was silently the lmax-2 part)",
         lambda f: _spectral().SO3ToS2(2)(torch.randn(84)), ValueError,
         r"expected 35 SO\(3\) coefficients \(sum_l \(2l\+1\)\^2 with lmax=2\) on the last axis, "
         r"got shape \(84,\)"),
    Case("sht-lmax-fractional", "spectral", "SHT(HEALPix(2), lmax=3.7) (ran as lmax 3)",
         lambda f: _spectral().SHT(HEALPix(2), lmax=3.7), ValueError, r"lmax must be an integer, got 3.7"),
    Case("isht-lmax-boolean", "spectral", "InverseSHT(HEALPix(2), True) (ran as lmax 1)",
         lambda f: _spectral().InverseSHT(HEALPix(2), True), TypeError,
         r"lmax must be an integer, got the boolean True"),
    Case("s2conv-kernel-grid-so3", "spectral",
         "an SO(3) grid (n, 3) as S2Conv's kernel_grid (was read as (colatitude, longitude))",
         lambda f: _spectral().S2Conv(1, 1, 2, kernel_grid=__import__(
             "deepsphere.spectral.so3", fromlist=["x"]).so3_near_identity_grid()), ValueError,
         r"S2Conv's kernel_grid must be a finite \(n, 2\) array with n >= 1.*s2_near_pole_grid"),
    Case("spectral-dtype-mismatch", "spectral",
         "a float64 signal into a float32 ZonalConv (was computed in float64)",
         lambda f: _spectral().ZonalConv(HEALPix(2), 2, 3, lmax=4)(
             torch.zeros(1, 48, 2, dtype=torch.float64)), TypeError,
         r"ZonalConv: x is torch.float64.*weight is torch.float32.*\.to\(\)"),
    Case("s2conv-dtype-mismatch", "spectral",
         "float64 coefficients into a float32 S2Conv (was computed in float64)",
         lambda f: _spectral().S2Conv(2, 3, 2)(torch.zeros(1, 2, 9, dtype=torch.float64)), TypeError,
         r"S2Conv: x is torch.float64.*float32.*\.to\(\)"),
    Case("norm-nonlinearity-channels", "spectral",
         "1 channel into NormNonlinearity(channels=4) (its bias broadcast it to 4)",
         lambda f: _spectral().NormNonlinearity(4, 2)(torch.randn(1, 9)), ValueError,
         r"expected coefficients \[\.\.\., channels=4, 9\], got shape \(1, 9\)"),
    Case("rotation-nan", "spectral", "Euler angles (nan, 0, 0)",
         lambda f: _spectral().rotate_coefficients(torch.ones(4, dtype=torch.float64), (np.nan, 0.0, 0.0)),
         ValueError, r"Euler angles must be finite, got \(nan, 0.0, 0.0\)"),
    # ---- configs ---------------------------------------------------------------------------
    Case("predict-nan-on-run-pixels", "training",
         "a map with NaN on a partial-sky run's pixels to predict (the advice was take's unseen='zero')",
         lambda f: _predict().as_batch(np.r_[np.zeros(5), np.nan, np.zeros(186)],
                                       HEALPix.from_pixels(4, np.arange(32)), 1, "NESTED"), ValueError,
         r"predict needs a value at each of the run's pixels.*Fill the missing ones"),
    Case("predict-integer-maps", "training", "int64 maps to predict",
         lambda f: _predict().as_batch(np.zeros((2, 192), dtype=np.int64), HEALPix(4), 1), ValueError,
         r"maps must be floating point, got dtype int64: convert them with maps.astype\(np.float32\)"),
    Case("metric-nan-scores", "training", "a NaN row of scores to accuracy (was scored as class 0)",
         lambda f: _metrics().accuracy(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.array([1, 1])),
         ValueError, r"scores must be finite: 1 of 2 rows contain NaN or inf"),
    Case("metric-fractional-labels", "training", "target labels 1.7 and 0.2 (1.7 was truncated to 1)",
         lambda f: _metrics().accuracy(np.eye(2), np.array([1.7, 0.2])), ValueError,
         r"target labels must be integers"),
    Case("config-unknown-section", "config", "section 'trainr'",
         lambda f: Config.from_dict({"trainr": {}}), ConfigError,
         r"unknown section 'trainr'; valid sections: data, sampling"),
    Case("config-unknown-key", "config", "trainer.epochz",
         lambda f: Config.from_dict({"trainer": {"epochz": 3}}), ConfigError,
         r"trainer.epochz: unknown key.*valid keys: epochs"),
    Case("config-wrong-type", "config", "trainer.epochs: 'ten'",
         lambda f: Config.from_dict({"trainer": {"epochs": "ten"}}), ConfigError,
         r"trainer.epochs: 'ten' \(str\).*expected int"),
    Case("config-bool-for-int", "config", "trainer.epochs: true",
         lambda f: Config.from_dict({"trainer": {"epochs": True}}), ConfigError, r"expected int"),
    Case("config-string-for-float", "config", "optim.lr: '1e-3' (quoted)",
         lambda f: Config.from_dict({"optim": {"lr": "1e-3"}}), ConfigError, r"optim.lr.*expected float"),
    Case("config-section-not-mapping", "config", "trainer: [1]",
         lambda f: Config.from_dict({"trainer": [1]}), ConfigError, r"trainer: must be a mapping"),
    Case("config-not-mapping", "config", "a YAML file holding a number",
         lambda f: load_config(f.dir / "scalar.yaml"), ConfigError, r"mapping of sections, got int"),
    Case("config-bad-choice", "config", "optim.name: adamm",
         lambda f: Config.from_dict({"optim": {"name": "adamm"}}), ConfigError,
         r"'adamm' is not a valid choice; choose from 'adam', 'adamw', 'sgd'"),
    Case("config-missing-required", "config", "sampling section without nside",
         lambda f: validate(Config.from_dict({"sampling": {"name": "healpix"}})), ConfigError,
         r"sampling: missing required key\(s\) nside"),
    Case("config-empty", "config", "an empty YAML file (every section missing)",
         lambda f: validate(load_config(f.dir / "empty.yaml")), ConfigError,
         r"sampling: missing required key\(s\) nside"),
    Case("config-bad-nside", "config", "sampling.nside: 3",
         lambda f: _build("sampling", {"sampling": {"name": "healpix", "nside": 3}}), ConfigError,
         r"sampling \(healpix\): nside=3 is not a valid HEALPix resolution"),
    Case("config-data-range", "config", "data.n_train: -3",
         lambda f: _build("data", {"data": {"name": "synthetic_fields", "n_train": -3}}), ConfigError,
         r"data \(synthetic_fields\): n_train must be >= 1"),
    Case("moments-nan-pixel", "files", "a NaN pixel in a patch given to smoothed_moments",
         lambda f: _cosmology().smoothed_moments(
             np.where(np.arange(2 * 1024).reshape(2, 1024) == 1500, np.nan, 1.0),
             _cosmology().healpix_patch(32, 1), [1]), ValueError,
         r"patch 1 has 1 pixels that are not finite or UNSEEN"),
    Case("patch-features-wrong-pixels", "files", "1000-pixel patches for a 1024-pixel patch sampling",
         lambda f: _cosmology().psd_histogram_features(np.zeros((2, 1000)),
                                                       _cosmology().healpix_patch(32, 1), psd="flat"),
         ValueError, r"patches must be \[n_patches, 1024\].*got shape \(2, 1000\)"),
    Case("config-cosmology-spectrum", "config", "data.spectrum: equal (cosmology)",
         lambda f: _build("data", {"data": {"name": "cosmology", "spectrum": "equal"}}), ConfigError,
         r"data \(cosmology\): spectrum must be 'own' .* or 'matched'"),
    Case("config-unknown-model", "config", "model.name: resnet",
         lambda f: _validate({"model": {"name": "resnet"}}), ConfigError,
         r"unknown model 'resnet'; choose from .*package.module:ClassName"),
    Case("config-model-arg-typo", "config", "model.chanels",
         lambda f: _validate({"model": {"name": "cnn", "chanels": [4]}}), ConfigError,
         r"model.chanels: unknown key.*valid keys: channels"),
    Case("config-injected-key", "config", "model.n_classes set by hand",
         lambda f: _validate({"model": {"name": "cnn", "n_classes": 3}}), ConfigError,
         r"model.n_classes: set by the trainer.*remove it"),
    Case("config-plugin-missing", "config", "model.name: nosuch.mod:X",
         lambda f: _validate({"model": {"name": "nosuch.mod:X"}}), ConfigError,
         r"cannot import module 'nosuch.mod'.*PYTHONPATH"),
    Case("config-unknown-metric", "config", "trainer.metrics: [acc]",
         lambda f: _validate({"trainer": {"metrics": ["acc"]}}), ConfigError,
         r"trainer.metrics\[0\]: unknown metric 'acc'; choose from accuracy"),
    Case("config-unknown-loss", "config", "trainer.loss: hinge",
         lambda f: _validate({"trainer": {"loss": "hinge"}}), ConfigError, r"unknown loss 'hinge'"),
    Case("config-epochs-zero", "config", "trainer.epochs: 0",
         lambda f: _validate({"trainer": {"epochs": 0}}), ConfigError, r"trainer.epochs: must be >= 1"),
    Case("config-lr-nan", "config", "optim.lr: .nan",
         lambda f: _validate({"optim": {"lr": float("nan")}}), ConfigError,
         r"optim.lr: must be a finite number > 0"),
    Case("config-lr-zero", "config", "optim.lr: 0",
         lambda f: _validate({"optim": {"lr": 0}}), ConfigError, r"optim.lr: must be a finite number > 0"),
    Case("config-momentum-one", "config", "optim.momentum: 1.0 (SGD never forgets a gradient)",
         lambda f: _validate({"optim": {"name": "sgd", "lr": 0.1, "momentum": 1.0}}), ConfigError,
         r"optim.momentum: must be in \[0, 1\)"),
    Case("config-class-weights-negative", "config", "trainer.class_weights: [1, -0.5]",
         lambda f: _validate({"trainer": {"class_weights": [1, -0.5]}}), ConfigError,
         r"trainer.class_weights: must be finite numbers >= 0"),
    Case("config-weight-decay-negative", "config", "optim.weight_decay: -1",
         lambda f: _validate({"optim": {"weight_decay": -1.0}}), ConfigError,
         r"optim.weight_decay: must be a finite number >= 0"),
    Case("config-betas-range", "config", "optim.betas: [0.9, 1.5]",
         lambda f: _validate({"optim": {"betas": [0.9, 1.5]}}), ConfigError,
         r"optim.betas: must be two numbers in \[0, 1\)"),
    Case("config-gamma-negative", "config", "scheduler.gamma: -1",
         lambda f: _validate({"scheduler": {"name": "step", "gamma": -1.0}}), ConfigError,
         r"scheduler.gamma: must be a finite number > 0"),
    Case("config-grad-clip-negative", "config", "trainer.grad_clip: -1",
         lambda f: _validate({"trainer": {"grad_clip": -1.0}}), ConfigError,
         r"trainer.grad_clip: must be a finite number > 0, or null"),
    Case("config-early-stopping-zero", "config", "trainer.early_stopping: 0",
         lambda f: _validate({"trainer": {"early_stopping": 0}}), ConfigError,
         r"trainer.early_stopping: must be a patience >= 1 epoch, or null"),
    Case("config-device", "config", "trainer.device: gpu",
         lambda f: _validate({"trainer": {"device": "gpu"}}), ConfigError,
         r"'gpu' is not valid; choose from auto, cpu, cuda, cuda:N"),
    Case("config-override-format", "config", "--set trainer.epochs (no value)",
         lambda f: apply_override({}, "trainer.epochs"), ConfigError,
         r"KEY=VALUE.*trainer.epochs=5"),
    Case("config-invalid-yaml", "config", "a YAML syntax error",
         lambda f: load_config(f.dir / "broken.yaml"), ConfigError, r"broken.yaml: not valid YAML"),
    Case("config-python-tag", "config", "a YAML tag that would run code (!!python/object/apply)",
         lambda f: load_config(f.dir / "python_tag.yaml"), ConfigError,
         r"python_tag.yaml: not valid YAML.*constructor"),
    Case("config-missing-file", "config", "a config path that does not exist",
         lambda f: load_config(f.dir / "nope.yaml"), ConfigError, r"nope.yaml' does not exist"),
    Case("config-duplicate-section", "config",
         "a YAML file with two trainer sections (YAML kept the last, dropped the first)",
         lambda f: load_config(f.dir / "dup-trainer.yaml"), ConfigError,
         r"dup-trainer.yaml, line 3: key 'trainer' appears twice in the same mapping \(first on "
         r"line 1\).*Merge the two into one"),
    Case("config-metric-wrong-task", "config",
         "trainer.metrics: [mse] on a classification task (was an error after one epoch)",
         lambda f: _trainer(f, "metric", metrics=["mse"]), ConfigError,
         r"trainer.metrics: 'mse' does not apply to a classification task.*"
         r"classification and segmentation metrics are accuracy"),
    Case("config-monitor-not-logged", "config",
         "trainer.metrics: [iou] with monitor: val_iou (iou is logged per class)",
         lambda f: _trainer(f, "monitor", metrics=["iou"], monitor="val_iou"), ConfigError,
         r"trainer.monitor: 'val_iou' is not a logged value; choose one of .*val_iou_0.*"
         r"per-class metrics are logged as val_<metric>_<class>"),
    Case("config-loss-wrong-task", "config",
         "trainer.loss: mse on a classification task (was a shape error in the first step)",
         lambda f: _trainer(f, "loss", loss="mse"), ConfigError,
         r"trainer.loss: 'mse' is a loss for regression, but data 'synthetic_fields' is a "
         r"classification task; use 'cross_entropy'"),
    # ---- checkpoints -----------------------------------------------------------------------
    Case("atomic-write-link-loop", "files", "writing through a loop of symbolic links",
         lambda f: _write_through_link_loop(f.dir), OSError, r"loop of symbolic links"),
    Case("checkpoint-truncated", "checkpoint", "a checkpoint cut in half",
         lambda f: checkpoint.load(f.dir / "truncated.pt"), ValueError,
         r"truncated.pt: not a readable checkpoint.*truncated.*retrain"),
    Case("checkpoint-empty", "checkpoint", "an empty checkpoint file",
         lambda f: checkpoint.load(f.dir / "empty.pt"), ValueError, r"empty.pt: not a readable checkpoint"),
    Case("checkpoint-not-torch", "checkpoint", "a text file named .pt",
         lambda f: checkpoint.load(f.dir / "text.pt"), ValueError, r"text.pt: not a readable checkpoint"),
    Case("checkpoint-code", "checkpoint", "a checkpoint whose unpickling would run code",
         lambda f: checkpoint.load(f.dir / "evil.pt"), ValueError,
         r"evil.pt: refused to load.*Do not load it with weights_only=False"),
    Case("checkpoint-foreign-object", "checkpoint", "a checkpoint holding a numpy array (pickled)",
         lambda f: checkpoint.load(f.dir / "numpy_object.pt"), ValueError,
         r"refused to load.*not tensors|refused to load.*other than tensors"),
    Case("checkpoint-missing", "checkpoint", "a checkpoint path that does not exist",
         lambda f: checkpoint.load(f.dir / "none.pt"), FileNotFoundError, r"no checkpoint at"),
    # ---- data files (readers of deepsphere.data) ------------------------------------------
    Case("dly-truncated-line", "files", "a .dly file with a line cut short",
         lambda f: __import__("deepsphere.data.stations", fromlist=["read_dly"]).read_dly(
             f.dir / "truncated.dly"), ValueError, r"truncated.dly, line 2: 37 characters, expected 269"),
    Case("dly-not-dly", "files", "a text file named .dly",
         lambda f: __import__("deepsphere.data.stations", fromlist=["read_dly"]).read_dly(
             f.dir / "text.dly"), ValueError, r"text.dly, line 1: .*expected 269"),
    Case("ghcnd-stations-duplicate", "files", "ghcnd-stations.txt listing an ID twice",
         lambda f: __import__("deepsphere.data.stations", fromlist=["x"]).read_ghcnd_stations(
             f.dir / "dup-stations.txt"), ValueError, r"line 2: station USW00000001 already listed on line 1"),
    Case("ghcnd-stations-shifted", "files",
         "a ghcnd-stations.txt line with one blank too many after the ID (was read with digits cut off)",
         lambda f: _stations().read_ghcnd_stations(f.dir / "shifted-stations.txt"), ValueError,
         r"line 1 \(station 'USW00000001'\): column 21, between LATITUDE and LONGITUDE, holds '0'.*"
         r"shifted.*Use the file as NOAA distributes it"),
    Case("dly-value-underscore", "files", "a .dly VALUE '  1_2' (int() read it as 12)",
         lambda f: _stations().read_dly(f.dir / "underscore.dly"), ValueError,
         r"underscore.dly, line 1: VALUE of day 3 '  1_2' is not an integer"),
    Case("ghcn-period-reversed", "files", "a GHCN period whose start is after its end",
         lambda f: _stations().daily_matrix(f.dir, ["USW00000001"], "TMAX", "2010-03-31", "2010-01-01"),
         ValueError, r"start 2010-03-31 is after end 2010-01-01: the period is empty"),
    Case("sao-truncated", "files", "an SAO NetCDF3 file cut in half (was numpy's bare error)",
         lambda f: _stations().read_sao(f.dir / "truncated.cdf"), ValueError,
         r"truncated.cdf: cannot read this NetCDF3 file, it looks truncated or corrupt.*copy or "
         r"download it again"),
    Case("ghcnd-stations-empty", "files", "an empty ghcnd-stations.txt",
         lambda f: __import__("deepsphere.data.stations", fromlist=["x"]).read_ghcnd_stations(
             f.dir / "no-stations.txt"), ValueError, r"no stations"),
    Case("netcdf-not-netcdf", "files", "a text file named .nc",
         lambda f: __import__("deepsphere.data.climate", fromlist=["x"]).read_climatenet(
             f.dir / "text.nc"), ValueError, r"text.nc: not a NetCDF file.*NetCDF3 starts with"),
    Case("netcdf-missing-variable", "files", "a NetCDF file without the variable asked for",
         lambda f: __import__("deepsphere.data.climate", fromlist=["x"]).read_climatenet(
             f.dir / "good.nc", variables=["NOPE"]), KeyError, r"no variable\(s\) NOPE; the file has"),
    Case("npy-map-no-ordering", "files", "a .npy HEALPix map without ordering",
         lambda f: __import__("deepsphere.data.cosmology", fromlist=["x"]).read_healpix_maps(
             f.dir / "map.npy"), ValueError, r"does not record its ordering; pass ordering="),
    Case("npy-map-not-healpix", "files", "a .npy map of 700 pixels",
         lambda f: __import__("deepsphere.data.cosmology", fromlist=["x"]).read_healpix_maps(
             f.dir / "700pix.npy", ordering="RING"), ValueError, r"700 pixels is not a full-sky HEALPix map"),
    Case("npy-map-pickled", "files", "a .npy file of pickled objects (never unpickled)",
         lambda f: __import__("deepsphere.data.cosmology", fromlist=["x"]).read_healpix_maps(
             f.dir / "objects.npy", ordering="RING"), ValueError, r"allow_pickle=False"),
    Case("npy-ring-declared-nested", "files", "a smooth RING .npy map read with ordering='NESTED'",
         lambda f: _cosmology().read_healpix_maps(f.dir / "ring.npy", ordering="NESTED"), ValueError,
         r"ring.npy: declared NESTED .* but looks like RING: it is \d+x rougher.*"
         r"For a .npy file pass ordering='RING'"),
    Case("map-unknown-format", "files", "a map file with an unknown extension",
         lambda f: __import__("deepsphere.data.cosmology", fromlist=["x"]).read_healpix_maps(
             f.dir / "map.txt"), ValueError, r"unknown map format; expected .fits"),
    Case("latlon-grid-radians", "files", "LatLonRegridder with latitudes in radians (was extrapolated)",
         lambda f: _climate().LatLonRegridder(np.radians(np.linspace(-90, 90, 32)),
                                              np.arange(64) * 360 / 64, HEALPix(4)), ValueError,
         r"covers latitudes -1.5708 to 1.5708 degrees, but 176 of the sampling's points lie beyond "
         r"it.*Latitudes must be in degrees \(not radians\)"),
    Case("latlon-cyclic-longitude", "files",
         "a lat-lon grid listing longitude 0 and 360 both (that meridian was counted twice)",
         lambda f: _climate().LatLonRegridder(np.linspace(-90, 90, 91), np.linspace(0, 360, 181),
                                              HEALPix(8)), ValueError,
         r"repeats the first one \(a cyclic point\).*lon\[:-1\]"),
    Case("latlon-unknown-method", "files", "LatLonRegridder(method='nearest')",
         lambda f: _climate().LatLonRegridder(np.linspace(-89, 89, 10), np.linspace(0, 342, 20),
                                              HEALPix(2), method="nearest"), ValueError,
         r"method must be 'conservative' or 'centre'"),
    Case("latlon-subdivisions-zero", "files", "LatLonRegridder(subdivisions=0)",
         lambda f: _climate().LatLonRegridder(np.linspace(-89, 89, 10), np.linspace(0, 342, 20),
                                              HEALPix(2), subdivisions=0), ValueError,
         r"subdivisions must be a positive integer"),
    Case("latlon-subdivisions-centre", "files", "subdivisions with method='centre' (ignored)",
         lambda f: _climate().LatLonRegridder(np.linspace(-89, 89, 10), np.linspace(0, 342, 20),
                                              HEALPix(2), method="centre", subdivisions=4),
         ValueError, r"subdivisions applies to method='conservative' only"),
    Case("latlon-child-levels-negative", "files", "LatLonRegridder(child_levels=-1)",
         lambda f: _climate().LatLonRegridder(np.linspace(-89, 89, 10), np.linspace(0, 342, 20),
                                              HEALPix(2), child_levels=-1), ValueError,
         r"child_levels must be an integer from 0 to 28"),
    Case("latlon-child-levels-not-healpix", "files", "child_levels on an equiangular target",
         lambda f: _climate().LatLonRegridder(np.linspace(-89, 89, 10), np.linspace(0, 342, 20),
                                              Equiangular(4, "DH"), child_levels=2), ValueError,
         r"child_levels applies to method='conservative' on a HEALPix sampling only"),
    Case("config-climate-regrid", "config", "data.regrid: bilinear (climate)",
         lambda f: _build("data", {"data": {"name": "climate", "regrid": "bilinear"}}), ConfigError,
         r"regrid must be 'conservative'"),
    Case("climatenet-test-file-missing-values", "files",
         "a ClimateNet test-split file with PSL fill values over whole pixels (was zero-filled)",
         lambda f: _climate().ClimateSegmentation(HEALPix(2), files=str(f.dir / "climate"),
                                                  variables=["TMQ", "PSL"]), ValueError,
         r"data-2.nc: \['PSL'\] are missing \(fill values\) over whole points of the sampling.*"
         r"fill or drop those fields, or this file"),
    Case("netcdf-truncated", "files", "a NetCDF file cut in half",
         lambda f: __import__("deepsphere.data.climate", fromlist=["x"]).read_climatenet(
             f.dir / "truncated.nc"), ValueError, r"truncated.nc.*(truncated|corrupt)"),
    Case("dly-empty", "files", "an empty .dly file",
         lambda f: __import__("deepsphere.data.stations", fromlist=["x"]).read_dly(f.dir / "empty.dly"),
         ValueError, r"empty.dly.*(empty|no data)"),

    Case("fits-truncated", "files", "a FITS map cut in half",
         lambda f: _cosmology().read_healpix_maps(f.dir / "truncated.fits"), ValueError,
         r"truncated.fits.*(truncated|corrupt)"),
    Case("fits-empty", "files", "an empty .fits file",
         lambda f: _cosmology().read_healpix_maps(f.dir / "empty.fits"), ValueError,
         r"empty.fits.*(empty|corrupt)"),
    Case("fits-not-fits", "files", "a text file named .fits",
         lambda f: _cosmology().read_healpix_maps(f.dir / "text.fits"), ValueError,
         r"text.fits.*not a (valid )?FITS"),
    Case("fits-ordering-contradicts-header", "files",
         "ordering='NESTED' for a FITS map whose header says RING (the argument was dropped silently)",
         lambda f: _cosmology().read_healpix_maps(f.dir / "good.fits", ordering="NESTED"), ValueError,
         r"good.fits: the FITS header says ORDERING = RING, but ordering='NESTED' was passed"),
    Case("partial-fits-no-ordering", "files", "a partial-sky FITS map without ORDERING",
         lambda f: _cosmology().read_healpix_maps(f.dir / "partial-no-ordering.fits"), ValueError,
         r"partial-no-ordering.fits: no ORDERING header.*pass ordering="),
    Case("partial-fits-negative-pixel", "files", "a partial-sky FITS map with a negative PIXEL",
         lambda f: _cosmology().read_healpix_maps(f.dir / "partial-negative.fits"), ValueError,
         r"partial-negative.fits: 1 PIXEL indices are outside \[0, 768\)"),
    Case("partial-fits-repeated-pixel", "files", "a partial-sky FITS map listing a pixel twice",
         lambda f: _cosmology().read_healpix_maps(f.dir / "partial-repeated.fits"), ValueError,
         r"partial-repeated.fits: the PIXEL column repeats 1 indices.*listed once"),
    Case("npy-map-truncated", "files", "a .npy map cut short",
         lambda f: _cosmology().read_healpix_maps(f.dir / "truncated.npy", ordering="RING"), ValueError,
         r"truncated.npy.*(truncated|corrupt)"),
    # ---- regional lat-lon grids ---------------------------------------------------------------
    Case("latlon-regional-full-sky", "files",
         "a full-sky sampling on a grid covering longitudes 0-90 only (was 'bilinear interpolation "
         "needs a global, regular longitude axis')",
         lambda f: _climate().LatLonRegridder(_grid48()[0], _grid48()[1][_grid48()[1] <= 90], HEALPix(8)),
         ValueError, r"covers longitudes 0 to 90 degrees only .*550 of the sampling's points lie "
                     r"outside that window: points \d+ \(lon .*Restrict the sampling to the window"),
    Case("latlon-regional-pokes-out", "files",
         "a partial sky reaching 5-10 degrees beyond a 0-90 longitude window, method='centre' "
         "(the sub-cell path gave those pixels a sliver of the edge column)",
         lambda f: _climate().LatLonRegridder(
             _grid48()[0], _grid48()[1][_grid48()[1] <= 90],
             HEALPix.from_mask((HEALPix(8).lon > -5) & (HEALPix(8).lon < 100), "NESTED"), method="centre"),
         ValueError, r"6 of the sampling's points lie outside that window"),
    Case("latlon-band-beyond", "files",
         "HEALPix(1) on a -10..10 latitude band (its rings at 41.8 degrees got the mean of a sliver)",
         lambda f: _climate().LatLonRegridder(np.array([-10.0, 0.0, 10.0]), np.arange(36) * 10.0, HEALPix(1)),
         ValueError, r"covers latitudes -10 to 10 degrees, but 8 of the sampling's points lie beyond "
                     r"it.*from_mask"),
    Case("latlon-irregular-longitude", "files",
         "longitudes 0, 10, ..., 80, 200 (the two overlap paths disagreed by 11 degrees)",
         lambda f: _climate().LatLonRegridder(_climate().latlon_grid(16, 32)[0],
                                              np.r_[np.arange(0, 90, 10.0), 200.0], HEALPix(2)),
         ValueError, r"lon must be regularly spaced .*steps from 10 to 120 degrees"),
    Case("bilinear-outside-window", "files", "bilinear interpolation at longitude 180 of a 0-90 window",
         lambda f: _climate().bilinear_matrix(_grid48()[0], _grid48()[1][_grid48()[1] <= 90], [0.0], [180.0]),
         ValueError, r"1 of the sampling's points lie outside that window: points 0 \(lon 180.0\)"),
    # ---- user graphs, operators and runs ------------------------------------------------------
    Case("pyg-edge-weight-length", "graph", "from_pyg with 2 weights for 4 edges (was scipy's "
         "'all index and data arrays must have the same length')",
         lambda f: graph.SphereGraph.from_pyg(_pyg_data([[0, 1, 1, 2], [1, 0, 2, 1]], torch.ones(2))),
         ValueError, r"edge_weight must be a tensor of shape \[E\] = \[4\]"),
    Case("pyg-one-direction", "graph", "from_pyg with each edge listed in one direction only",
         lambda f: graph.SphereGraph.from_pyg(_pyg_data([[0, 1], [1, 2]])),
         ValueError, r"not symmetric.*both directions.*to_undirected"),
    Case("conv-unrescaled-laplacian", "nn", "ChebConv given graph.laplacian() instead of the rescaled "
         "operator (T_k grew like 3.7^k)",
         lambda f: nn.ChebConv(1, 2, 3)(torch.randn(1, S8.npix, 1), graph.knn(S8, k=8).laplacian()),
         ValueError, r"spectrum leaves \[-1, 1\].*chebyshev_operator\(\)"),
    Case("conv-unrescaled-sparse-operator", "nn", "ChebConv given SparseOperator(graph.laplacian())",
         lambda f: nn.ChebConv(1, 2, 3)(torch.randn(1, S8.npix, 1),
                                        nn.SparseOperator(graph.knn(S8, k=8).laplacian())),
         ValueError, r"spectrum leaves \[-1, 1\].*chebyshev_operator\(\)"),
    Case("equivariance-other-points", "equivariance",
         "a k-NN graph measured on another sampling with as many points (gave a plausible 0.69)",
         lambda f: _equivariance().equivariance_error(graph.knn(_irregular(), k=8), _irregular(reverse=True),
                                                      [2], 1, 1),
         ValueError, r"whose points differ"),
    Case("predict-full-sky-no-order", "training",
         "full-sky maps to predict without their ordering (a RING map was read as NESTED)",
         lambda f: _predict().as_batch(np.zeros((2, 192)), HEALPix(4), 1), ValueError,
         r"full-sky HEALPix maps \(192 pixels, nside 4\).*pass order='NESTED' or order='RING'"),
    Case("times-year-only", "training", "target times '98' for day-of-year features (read as 1998-01-01)",
         lambda f: _stations().time_features("day_of_year", ["98"], _irregular()), ValueError,
         r"times must be dates .*a year or a month alone"),
    Case("map-files-empty-splits", "files", "2 map files per class (val and test got none, and "
         "training stopped on numpy's 'need at least one array to concatenate')",
         lambda f: _cosmology().ConvergenceMapFiles(
             _cosmology().healpix_patch(8, 1), {"a": str(f.dir / "maps2" / "a*"), "b": str(f.dir / "maps2" / "b*")},
             ordering="NESTED"),
         ValueError, r"class 'a': 2 files give train / val / test 2 / 0 / 0 files; each split needs at least one"),
    Case("map-files-two-classes", "files", "a map file matched by the patterns of two classes",
         lambda f: _cosmology().ConvergenceMapFiles(
             _cosmology().healpix_patch(8, 1),
             {"a": str(f.dir / "maps4" / "a*"), "b": [str(f.dir / "maps4" / "b*"), str(f.dir / "maps4" / "a0.npy")]},
             ordering="NESTED"),
         ValueError, r"a0.npy is matched by classes 'a' and 'b'"),
    Case("climate-file-listed-twice", "files", "a ClimateNet file listed twice in data.files (one "
         "snapshot could land in train and test)",
         lambda f: _climate().ClimateSegmentation(
             HEALPix(2), files=[f.dir / f"snapshot-{k}.nc" for k in range(4)] + [str(f.dir / "." / "snapshot-0.nc")],
             variables=["TMQ"]),
         ValueError, r"snapshot-0.nc is listed twice \(items 1 and 5\)"),
    Case("spectral-equivariance-kind", "spectral", "spectral equivariance_error(kind='S2') (fell through "
         "to SO(3) and failed on the coefficient count)",
         lambda f: __import__("deepsphere.spectral.nonlinear", fromlist=["x"]).equivariance_error(
             lambda c: c, torch.randn(16, dtype=torch.float64), (0.1, 0.2, 0.3), kind="S2"),
         ValueError, r"kind must be 's2' \(sphere coefficients\) or 'so3'"),
    Case("config-missing-relative-file", "config", "a station CSV path that does not exist, relative",
         lambda f: _build("sampling", {"sampling": {"name": "irregular_csv", "path": "missing-stations.csv",
                                                    "units": "deg"}}),
         ConfigError, r"sampling \(irregular_csv\): no such file .*relative paths are read from the "
                      r"current directory"),
]


def _grid48():
    return _climate().latlon_grid(48, 96)


def _pyg_data(edge_index, edge_weight=None):
    from torch_geometric.data import Data

    return Data(edge_index=torch.tensor(edge_index), edge_weight=edge_weight, num_nodes=3)


def _irregular(reverse=False):
    rng = np.random.default_rng(0)
    lon, z = rng.uniform(0, 360, 200), rng.uniform(-1, 1, 200)
    step = -1 if reverse else 1
    return Irregular(lon[::step].copy(), np.degrees(np.arcsin(z))[::step].copy(), units="deg")


def _predict():
    return __import__("deepsphere.training.predict", fromlist=["x"])


def _metrics():
    return __import__("deepsphere.training.metrics", fromlist=["x"])


def _closure():
    return __import__("deepsphere.sampling", fromlist=["x"]).closure


def _equivariance():
    return __import__("deepsphere.equivariance", fromlist=["x"])


def _sweep(config):
    return __import__("deepsphere.equivariance.sweep", fromlist=["x"]).run_sweep(config)


def _cosmology():
    from deepsphere.data import cosmology

    return cosmology


XFAIL_CASES: list = []

_XFAIL_OWNER: dict = {}


def _check(case: Case, files) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(case.exc) as info:
            case.call(files)
    # the first argument is the message, except for OSError(errno, message)
    first = info.value.args[0] if info.value.args else None
    message = first if isinstance(first, str) else str(info.value)
    assert re.search(case.match, message, re.S), (
        f"{case.id}: message does not match {case.match!r}:\n{message}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, files):
    _check(case, files)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=_XFAIL_OWNER[c.id])) for c in XFAIL_CASES],
    ids=[c.id for c in XFAIL_CASES])
def test_bad_input_known_holes(case, files):
    _check(case, files)


def test_catalogue_is_large_and_distinct():
    ids = [c.id for c in CASES + XFAIL_CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    assert len(CASES) >= 40


def test_correctly_declared_orderings_are_accepted():
    """The RING-as-NESTED detector does not flag the same maps declared correctly."""
    ring = _smooth_ring_map()
    nested = hp.reorder(ring, r2n=True)
    s = HEALPix(16)
    np.testing.assert_array_equal(s.take(nested, order="NESTED"), s.take(ring, order="RING"))
    cut = np.arange(3072) < 400  # a cut in NESTED indices
    partial = HEALPix.from_map(np.where(cut, hp.UNSEEN, nested), order="NESTED")
    assert partial.npix == 3072 - 400
    noise = np.random.default_rng(0).standard_normal(3072)  # no structure: never flagged
    s.take(noise, order="NESTED")


def test_corrupt_graph_cache_is_rebuilt(tmp_path):
    """A damaged graph-cache entry is never trusted: a warning, then the same graph rebuilt."""
    s = HEALPix(4)
    g0 = graph.build(s, {"kind": "knn", "k": 8}, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("graph-*.npz")
    entry.write_bytes(b"junk")
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        g1 = graph.build(s, {"kind": "knn", "k": 8}, cache_dir=tmp_path)
    assert abs(g1.adjacency - g0.adjacency).max() == 0
    assert "cached" in graph.build(s, {"kind": "knn", "k": 8}, cache_dir=tmp_path).recipe


def test_refused_checkpoint_ran_no_code(files):
    """Loading the malicious checkpoint (and the YAML with a python tag) must not run it."""
    for name, load in (("evil.pt", checkpoint.load), ("python_tag.yaml", load_config)):
        with pytest.raises(ValueError):
            load(files.dir / name)
    assert not files.marker.exists()


def test_docs_list_every_case():
    """docs/bad_inputs.md lists every case id (and so every known hole)."""
    text = DOCS.read_text()
    missing = [c.id for c in CASES + XFAIL_CASES if f"`{c.id}`" not in text]
    assert not missing, f"add these cases to {DOCS}: {missing}"


def test_good_files_still_read(files):
    """The fixtures are built from valid files: the readers accept the originals, so each
    failure above is caused by the damage alone."""
    from deepsphere.data.climate import read_climatenet
    from deepsphere.data.cosmology import read_healpix_maps
    from deepsphere.data.stations import read_dly

    assert checkpoint.load(files.dir / "good.pt")["epoch"] == 1
    assert read_dly(files.dir / "good.dly")["TMAX"][1].size == 59
    assert read_climatenet(files.dir / "good.nc")[2].shape[1:] == (9, 16)
    assert read_healpix_maps(files.dir / "good.fits").shape == (1, 768)
    assert read_healpix_maps(files.dir / "map.npy", ordering="NESTED").shape == (1, 768)
    assert read_healpix_maps(files.dir / "ring.npy", ordering="RING").shape == (1, 3072)
    assert _stations().read_sao(files.dir / "sao.cdf")["values"].shape == (24, 1)
    assert _stations().read_ghcnd_stations(files.dir / "stations.txt")["id"].size == 1
    climate = _climate().ClimateSegmentation(HEALPix(2), files=str(files.dir / "climate"),
                                             variables=["TMQ"])
    assert [len(v) for v in climate.files.values()] == [1, 1, 1]


def catalogue_markdown() -> str:
    """The table of docs/bad_inputs.md (regenerate with
    ``python -c "import tests.test_bad_inputs as t; print(t.catalogue_markdown())"``)."""
    rows = ["| id | area | bad input | error |", "|---|---|---|---|"]
    for c in CASES:
        rows.append(f"| `{c.id}` | {c.area} | {c.what} | `{c.exc.__name__}` |")
    if XFAIL_CASES:
        rows += ["", "Known holes (strict xfail until fixed):", "",
                 "| id | bad input | owner and current behaviour |", "|---|---|---|"]
        for c in XFAIL_CASES:
            rows.append(f"| `{c.id}` | {c.what} | {_XFAIL_OWNER[c.id]} |")
    return "\n".join(rows)


# ---- the command line: a tiny real run -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from deepsphere.training import train

    out = tmp_path_factory.mktemp("run") / "run"
    config = Config.from_dict({
        "data": {"name": "synthetic_fields", "n_train": 4, "n_val": 2, "n_test": 2},
        "sampling": {"name": "healpix", "nside": 2},
        "model": {"name": "cnn", "channels": [2], "K": 2},
        "trainer": {"epochs": 1, "batch_size": 2, "device": "cpu", "progress": False,
                    "plots": False},
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(config, out=out)
    return out


def test_predict_never_overwrites_its_input(tiny_run, tmp_path, capsys):
    from deepsphere.cli import main as cli

    maps = tmp_path / "maps.npy"
    data = np.random.default_rng(0).standard_normal((3, 48))
    np.save(maps, data)
    before = maps.read_bytes()
    assert cli(["predict", str(tiny_run), str(maps), "--order", "NESTED", "--output", str(maps)]) == 2
    assert "never overwrite input data" in capsys.readouterr().err
    # refused before the maps are read or the model runs
    assert cli(["predict", str(tiny_run), str(maps), "--output", str(maps)]) == 2
    assert "never overwrite input data" in capsys.readouterr().err
    assert maps.read_bytes() == before
    # the same call with another output works and leaves no temporary file behind
    dest = tmp_path / "pred.npy"
    assert cli(["predict", str(tiny_run), str(maps), "--order", "NESTED", "--output", str(dest)]) == 0
    assert np.load(dest).shape == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.npy", "pred.npy"]


def test_evaluate_with_a_corrupt_checkpoint_says_so(tiny_run, capsys):
    from deepsphere.cli import main as cli

    best = tiny_run / "checkpoints" / "best.pt"
    good = best.read_bytes()
    try:
        best.write_bytes(good[: len(good) // 3])
        assert cli(["evaluate", str(tiny_run)]) == 2
        err = capsys.readouterr().err
        assert "best.pt: not a readable checkpoint" in err and "Traceback" not in err
    finally:
        best.write_bytes(good)


def test_train_refuses_to_overwrite_a_run(tiny_run, capsys, tmp_path):
    """A second `deepsphere train` into an existing run directory is refused (no --resume)."""
    from deepsphere.cli import main as cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text((tiny_run / "config.yaml").read_text())
    before = (tiny_run / "checkpoints" / "last.pt").read_bytes()
    assert cli(["train", str(cfg), "--out", str(tiny_run)]) == 2
    assert "resume" in capsys.readouterr().err
    assert (tiny_run / "checkpoints" / "last.pt").read_bytes() == before


def test_source_audit_no_unsafe_loaders():
    """Static audit of the package: YAML only through safe_load, torch.load only with
    weights_only=True, no pickle module, no allow_pickle=True."""
    root = Path(__file__).resolve().parents[1] / "deepsphere"
    rules = [
        (r"\byaml\.(load|unsafe_load|full_load|load_all)\(", "use yaml.safe_load"),
        (r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load needs weights_only=True"),
        (r"^[ \t]*(import pickle|from pickle import|import dill|import cloudpickle)",
         "no pickle of user files"),
        (r"allow_pickle\s*=\s*True", "never allow_pickle=True"),
    ]
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for pattern, why in rules:
            for m in re.finditer(pattern, text, re.M):
                line = text[: m.start()].count("\n") + 1
                src = text.splitlines()[line - 1]
                if path.name == "checkpoint.py" and "import pickle" in src:
                    continue  # only to catch pickle.UnpicklingError from torch's safe loader
                found.append(f"{path.relative_to(root.parent)}:{line}: {why}: {src.strip()}")
    assert not found, "\n".join(found)
