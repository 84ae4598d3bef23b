"""Cosmology maps: lognormal spectra against healpy's anafast, patches against HEALPix
geometry, the real-map loaders on FITS / npy files written here (RING, NESTED, partial)."""
import healpy as hp
import numpy as np
import pytest
import torch

from deepsphere.data import cosmology as C
from deepsphere.sampling import HEALPix


def test_lognormal_map_has_target_spectrum_and_shifted_support(rng):
    """kappa = lam (exp(g - s2/2) - 1) with C^g from the transform: anafast of the maps
    recovers the target C^kappa, kappa > -lam, and the skewness is positive."""
    nside, lmax, lam = 16, 47, 0.05
    ell = np.arange(lmax + 1)
    cl = np.where(ell >= 2, 3e-4 * (ell + 5.0) ** -1.5, 0.0)  # sigma_kappa ~ lam/2: strongly skewed
    cl_g = C.gaussian_cl_for_lognormal(cl, lam)
    maps = np.stack([C.lognormal_convergence(cl_g, lam, nside, rng) for _ in range(24)])
    assert maps.min() > -lam
    measured = np.mean([hp.anafast(hp.reorder(m, n2r=True), lmax=lmax, iter=0)
                        for m in maps], axis=0)
    # alm2map applies no pixel window, so anafast should return C^kappa itself
    # (the uncorrected C^g = C^kappa / lam^2 gives ratios 1.06 and 1.10 in the upper bins)
    for (a, b), tol in [((2, 8), 0.1), ((8, 20), 0.05), ((20, 40), 0.05)]:
        ratio = measured[a:b].sum() / cl[a:b].sum()
        assert abs(ratio - 1) < tol, (a, b, ratio)
    x = maps - maps.mean(axis=1, keepdims=True)
    assert np.mean(x**3) / np.mean(x**2) ** 1.5 > 0.2
    # without the lognormal correction the Gaussian spectrum would be cl / lam^2: it differs
    assert not np.allclose(cl_g[2:], cl[2:] / lam**2, rtol=0.02, atol=0)


def test_lognormal_transform_is_linear_for_a_large_shift():
    """For lam -> inf, xi_g = ln(1 + xi/lam^2) -> xi/lam^2, so C^g -> C^kappa / lam^2."""
    ell = np.arange(32)
    cl = np.where(ell >= 2, 1e-4 / (ell + 1.0) ** 2, 0.0)
    lam = 100.0
    np.testing.assert_allclose(C.gaussian_cl_for_lognormal(cl, lam)[2:] * lam**2, cl[2:], rtol=1e-5)
    with pytest.raises(ValueError, match="shift"):
        C.gaussian_cl_for_lognormal(cl, 0.0)


def test_shift_and_spectra_depend_on_cosmology():
    (om1, s1), (om2, s2) = C.COSMOLOGIES
    assert C.lognormal_shift(om1) > C.lognormal_shift(om2) > 0  # larger Omega_m, larger shift
    assert C.lognormal_shift(om1, z_source=2.0) > C.lognormal_shift(om1, z_source=1.0)
    a1 = C.limber_cl_analytic(om1, s1, 60)
    a2 = C.limber_cl_analytic(om2, s2, 60)
    assert np.all(a1[:2] == 0) and np.all(a1[2:] > 0)
    assert a2[2] > a1[2]  # higher sigma_8 dominates at low ell
    # the amplitude scales as sigma_8^2 in linear theory
    np.testing.assert_allclose(C.limber_cl_analytic(om1, 2 * s1, 60)[2:], 4 * a1[2:], rtol=1e-10)
    with pytest.raises(ValueError, match="backend"):
        C.convergence_cl(om1, s1, 10, backend="camb")


def test_analytic_spectrum_agrees_with_pyccl():
    pytest.importorskip("pyccl")
    om, s8 = C.COSMOLOGIES[0]
    a = C.convergence_cl(om, s8, 60, backend="analytic")
    b = C.convergence_cl(om, s8, 60, backend="pyccl")
    ratio = a[5:60] / b[5:60]
    assert np.all((ratio > 0.6) & (ratio < 1.4)), ratio


def test_patches_are_nested_blocks(rng):
    nside, order = 8, 2
    m = rng.standard_normal(12 * nside**2)
    patches = C.cut_patches(m, nside, order)
    assert patches.shape == (48, 16)
    for p in (0, 17, 47):
        pix = C.patch_pixels(nside, order, p)
        np.testing.assert_array_equal(patches[p], m[pix])
        # a patch lies inside one base pixel of order `order`: its pixels' parents coincide
        assert np.unique(hp.nest2ring(order, pix // (nside // order) ** 2)).size == 1
    s = C.healpix_patch(nside, order, patch=3, levels=2)
    assert C.patch_order(s) == order and s.npix == 16
    assert C.patch_order(HEALPix(nside)) == 0
    with pytest.raises(ValueError, match="not one HEALPix patch"):
        C.patch_order(HEALPix(nside, np.arange(5)))
    with pytest.raises(ValueError, match="power of two"):
        C.patch_pixels(nside, 3)


def test_patch_image_is_spatially_coherent():
    """Neighbouring pixels of the 2D CNN's image are neighbours on the sphere."""
    s = C.healpix_patch(16, 2, patch=5)
    idx, side = C.patch_image_index(s)
    v = s.vectors[idx].reshape(side, side, 3)
    step = np.sqrt(hp.nside2pixarea(16))
    for dv in (v[1:] * v[:-1], v[:, 1:] * v[:, :-1]):
        ang = np.arccos(np.clip(dv.sum(-1), -1, 1))
        assert ang.max() < 1.6 * step
    assert sorted(idx.tolist()) == list(range(s.npix))


def test_dataset_splits_noise_and_determinism():
    s = C.healpix_patch(8, 1)
    kw = dict(n_train=2, n_val=1, n_test=1, noise=0.5, backend="analytic", seed=3)
    ds = C.CosmologyPatches(s, **kw)
    tr, va = ds.split("train"), ds.split("val")
    assert len(tr) == 2 * 2 * 12 and len(va) == 2 * 12
    np.testing.assert_array_equal(ds.class_counts(), [24, 24])
    x, y = tr[0]
    assert x.shape == (64, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    tr.set_epoch(1)
    x1, _ = tr[0]
    va.set_epoch(1)
    assert not torch.equal(x, x1)  # training noise redrawn
    assert torch.equal(ds.split("val")[0][0], C.CosmologyPatches(s, **kw).split("val")[0][0])
    # clean maps are in units of the class-averaged rms: order one
    clean = C.CosmologyPatches(s, **{**kw, "noise": 0.0}).split("train").maps
    assert 0.3 < clean.std() < 3
    with pytest.raises(ValueError, match="n_train"):
        C.CosmologyPatches(s, n_train=0)


def _write_fits(path, m_nested, nest):
    m = m_nested if nest else hp.reorder(m_nested, n2r=True)
    hp.write_map(str(path), m, nest=nest, overwrite=True, dtype=np.float64)


def test_read_maps_fits_and_npy_in_both_orderings(tmp_path, rng):
    nside = 8
    m = rng.standard_normal(12 * nside**2)
    _write_fits(tmp_path / "n.fits", m, nest=True)
    _write_fits(tmp_path / "r.fits", m, nest=False)
    np.save(tmp_path / "r.npy", hp.reorder(m, n2r=True))
    np.testing.assert_allclose(C.read_healpix_maps(tmp_path / "n.fits")[0], m)
    np.testing.assert_allclose(C.read_healpix_maps(tmp_path / "r.fits")[0], m)
    np.testing.assert_allclose(C.read_healpix_maps(tmp_path / "r.npy", ordering="RING")[0], m)
    with pytest.raises(ValueError, match="ordering"):
        C.read_healpix_maps(tmp_path / "r.npy")
    np.save(tmp_path / "bad.npy", np.zeros(100))
    with pytest.raises(ValueError, match="full-sky"):
        C.read_healpix_maps(tmp_path / "bad.npy", ordering="NESTED")


def test_ring_map_declared_nested_is_refused(tmp_path, rng):
    # was read silently: patches were cut from a RING map taken for NESTED
    from astropy.io import fits

    nside = 64
    smooth = hp.smoothing(rng.standard_normal(12 * nside**2), fwhm=0.3)  # RING, as healpy makes it
    np.save(tmp_path / "ring.npy", smooth)
    with pytest.raises(ValueError, match=r"ring.npy: declared NESTED .* looks like RING: it is \d+x "
                                         r"rougher.*ordering='RING'"):
        C.read_healpix_maps(tmp_path / "ring.npy", ordering="NESTED")
    _write_fits(tmp_path / "r.fits", hp.reorder(smooth, r2n=True), nest=False)
    with fits.open(tmp_path / "r.fits") as h:
        h[1].header["ORDERING"] = "NESTED"  # a header that lies
        h.writeto(tmp_path / "liar.fits")
    with pytest.raises(ValueError, match=r"liar.fits: declared NESTED .* looks like RING"):
        C.read_healpix_maps(tmp_path / "liar.fits")
    # the same maps said to be RING, and a NESTED white-noise map, are read
    np.testing.assert_allclose(C.read_healpix_maps(tmp_path / "ring.npy", ordering="RING")[0],
                               hp.reorder(smooth, r2n=True))
    np.save(tmp_path / "noise.npy", rng.standard_normal(12 * nside**2))
    C.read_healpix_maps(tmp_path / "noise.npy", ordering="NESTED")


def test_partial_map_keeps_only_observed_patches(tmp_path, rng):
    nside, order = 8, 1
    m = rng.standard_normal(12 * nside**2)
    m[C.patch_pixels(nside, order, 4)[10]] = hp.UNSEEN  # one hole in base pixel 4
    m[C.patch_pixels(nside, order, 9)] = hp.UNSEEN      # base pixel 9 missing
    _write_fits(tmp_path / "p.fits", m, nest=False)
    read = C.read_healpix_maps(tmp_path / "p.fits")[0]
    patches, which = C.observed_patches(read, nside, order)
    assert which.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    np.testing.assert_allclose(patches[4], m[C.patch_pixels(nside, order, 5)])
    # a finer map is downgraded, a hole spreads to its coarse pixel (pessimistic)
    fine = hp.ud_grade(m, 16, order_in="NESTED", order_out="NESTED")
    _, which_fine = C.observed_patches(fine, nside, order)
    assert which_fine.tolist() == which.tolist()


def test_map_files_dataset(tmp_path, rng):
    nside = 8
    for c, amp in (("a", 1.0), ("b", 3.0)):
        for i in range(5):
            m = amp * rng.standard_normal(12 * nside**2)
            _write_fits(tmp_path / f"{c}{i}.fits", m, nest=bool(i % 2))
    s = C.healpix_patch(nside, 1)
    ds = C.ConvergenceMapFiles(s, {"a": [str(tmp_path / "a*.fits")], "b": str(tmp_path / "b*.fits")},
                               val_fraction=0.2, test_fraction=0.2)
    assert len(ds.split("train")) == 2 * 3 * 12 and len(ds.split("test")) == 2 * 12
    # file split: no map is in two splits; the two classes differ by amplitude
    xs, ys = zip(*[ds.split("train")[i] for i in range(len(ds.split("train")))])
    stds = torch.stack(xs)[..., 0].std(dim=1)
    ys = torch.stack(ys)
    assert stds[ys == 1].mean() > 2 * stds[ys == 0].mean()
    with pytest.raises(FileNotFoundError, match="no file"):
        C.ConvergenceMapFiles(s, {"a": [str(tmp_path / "x*.fits")], "b": [str(tmp_path / "b*")]})


# ---- partial-sky FITS (explicit PIXEL column) -------------------------------------------
def _write_partial(path, m_nested, nest, dtype=np.float64):
    """healpy's partial-sky writer: only the pixels that are not UNSEEN are stored, with their
    indices in the file's ordering."""
    maps = np.atleast_2d(m_nested)
    maps = maps if nest else np.stack([hp.reorder(m, n2r=True) for m in maps])
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        hp.write_map(str(path), list(maps) if len(maps) > 1 else maps[0], nest=nest, partial=True,
                     overwrite=True, dtype=dtype)


def _observed_map(rng, nside, order, covered, n_scattered=20):
    """A NESTED map observed on the patches ``covered`` (of ``order``) plus a few scattered
    pixels elsewhere, UNSEEN everywhere else."""
    m = np.full(12 * nside**2, hp.UNSEEN)
    for k in covered:
        idx = C.patch_pixels(nside, order, k)
        m[idx] = rng.standard_normal(idx.size)
    free = np.flatnonzero(m == hp.UNSEEN)
    extra = rng.choice(free, n_scattered, replace=False)
    m[extra] = rng.standard_normal(n_scattered)
    return m


def _edit_header(src, dst, drop=(), set_=None, columns=None):
    """Copy a healpy FITS file with header cards removed / changed, or other table columns."""
    from astropy.io import fits

    with fits.open(src) as hdul:
        hdu = hdul[1] if columns is None else fits.BinTableHDU.from_columns(columns, header=hdul[1].header)
        for key in drop:
            del hdu.header[key]
        for key, value in (set_ or {}).items():
            hdu.header[key] = value
        fits.HDUList([hdul[0], hdu]).writeto(dst, overwrite=True)


@pytest.mark.parametrize("nside", [4, 16])
@pytest.mark.parametrize("nest", [True, False])
def test_partial_fits_reads_as_the_full_sky_map(tmp_path, rng, nside, nest):
    """A partial-sky file (PIXEL column + values) gives the map the full-sky FITS path gives
    for the same observed pixels, and what healpy.read_map(partial=True) returns (NESTED)."""
    m = _observed_map(rng, nside, 1, covered=[2, 7])
    _write_partial(tmp_path / "p.fits", m, nest)
    _write_fits(tmp_path / "f.fits", m, nest)
    from astropy.io import fits

    with fits.open(tmp_path / "p.fits") as hdul:  # really the explicit-index layout
        assert hdul[1].columns.names[0] == "PIXEL" and hdul[1].header["INDXSCHM"] == "EXPLICIT"
        assert len(hdul[1].data) == np.sum(m != hp.UNSEEN) < m.size
    part = C.read_healpix_maps(tmp_path / "p.fits")
    np.testing.assert_array_equal(part, C.read_healpix_maps(tmp_path / "f.fits"))
    np.testing.assert_array_equal(part[0], m)
    ref = hp.read_map(str(tmp_path / "p.fits"), partial=True, nest=True, dtype=np.float64)
    np.testing.assert_array_equal(part[0], ref)
    # the same patches survive, through the same mask handling
    patches, which = C.observed_patches(part[0], nside, 1)
    assert which.tolist() == [2, 7]
    np.testing.assert_array_equal(patches, m.reshape(12, -1)[[2, 7]])


def test_partial_fits_several_maps_gzip_and_float32(tmp_path, rng):
    nside = 8
    m = np.stack([_observed_map(rng, nside, 2, covered=[5, 6], n_scattered=0)] * 2)
    m[1, m[1] != hp.UNSEEN] *= 2.0
    _write_partial(tmp_path / "two.fits.gz", m, nest=False, dtype=np.float32)
    read = C.read_healpix_maps(tmp_path / "two.fits.gz")
    assert read.shape == (2, 12 * nside**2)
    seen = m != hp.UNSEEN
    np.testing.assert_allclose(read[seen], m[seen], rtol=1e-6)
    assert np.all(np.isclose(read[~seen], hp.UNSEEN))
    assert C.observed_patches(read[1], nside, 2)[1].tolist() == [5, 6]


def test_partial_fits_header_rules_and_bad_files(tmp_path, rng):
    nside = 4
    m = _observed_map(rng, nside, 1, covered=[0])
    _write_partial(tmp_path / "p.fits", m, nest=False)
    # no ORDERING: refused unless the caller says it; then used as stated
    _edit_header(tmp_path / "p.fits", tmp_path / "noorder.fits", drop=["ORDERING"])
    with pytest.raises(ValueError, match="noorder.fits: no ORDERING header"):
        C.read_healpix_maps(tmp_path / "noorder.fits")
    np.testing.assert_array_equal(C.read_healpix_maps(tmp_path / "noorder.fits", ordering="RING")[0], m)
    # no NSIDE: the pixel column alone does not give the resolution
    _edit_header(tmp_path / "p.fits", tmp_path / "nonside.fits", drop=["NSIDE"])
    with pytest.raises(ValueError, match="nonside.fits: a partial-sky FITS map needs an NSIDE"):
        C.read_healpix_maps(tmp_path / "nonside.fits")
    # an NSIDE too small for the listed pixels (healpy would raise an IndexError, or wrap
    # negative indices silently)
    _edit_header(tmp_path / "p.fits", tmp_path / "small.fits", set_={"NSIDE": 2})
    with pytest.raises(ValueError, match=r"small.fits: \d+ PIXEL indices are outside \[0, 48\)"):
        C.read_healpix_maps(tmp_path / "small.fits")
    # the partial layout is recognised without OBJECT/INDXSCHM from the PIXEL column
    _edit_header(tmp_path / "p.fits", tmp_path / "nokeys.fits", drop=["OBJECT", "INDXSCHM"])
    np.testing.assert_array_equal(C.read_healpix_maps(tmp_path / "nokeys.fits")[0], m)
    _edit_header(tmp_path / "p.fits", tmp_path / "contra.fits", set_={"OBJECT": "FULLSKY"})
    with pytest.raises(ValueError, match="contra.fits: the header contradicts itself"):
        C.read_healpix_maps(tmp_path / "contra.fits")
    # bad PIXEL columns: negative, repeated, fractional
    from astropy.io import fits

    for name, pix, msg in (("neg.fits", [-1, 3, 5], r"outside \[0, 192\).*\[-1\]"),
                           ("dup.fits", [3, 3, 5], r"repeats 1 indices \(e.g. \[3\]\)"),
                           ("frac.fits", [0.5, 3, 5], "integer pixel indices")):
        fmt = "D" if isinstance(pix[0], float) else "K"
        cols = [fits.Column("PIXEL", fmt, array=np.array(pix)),
                fits.Column("T", "D", array=np.ones(3))]
        _edit_header(tmp_path / "p.fits", tmp_path / name, columns=cols)
        with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": .*" + msg):
            C.read_healpix_maps(tmp_path / name)
    cols = [fits.Column("PIXEL", "K", array=np.array([0, 1]))]
    _edit_header(tmp_path / "p.fits", tmp_path / "novalues.fits", columns=cols)
    with pytest.raises(ValueError, match="needs a PIXEL column and at least one column of values"):
        C.read_healpix_maps(tmp_path / "novalues.fits")


def test_map_files_dataset_from_partial_fits(tmp_path, rng):
    """Partial files give the dataset the patches full-sky UNSEEN files give; a file that
    covers no whole patch of the sampling's order is an error naming it."""
    nside = 8
    for c, amp in (("a", 1.0), ("b", 3.0)):
        for i in range(5):
            m = _observed_map(rng, nside, 2, covered=[3 * i, 3 * i + 1, 40])
            m[m != hp.UNSEEN] *= amp
            _write_partial(tmp_path / f"part_{c}{i}.fits", m, nest=bool(i % 2))
            _write_fits(tmp_path / f"full_{c}{i}.fits", m, nest=not i % 2)
    s = C.healpix_patch(nside, 2)
    kw = dict(val_fraction=0.2, test_fraction=0.2)
    part = C.ConvergenceMapFiles(s, {"a": str(tmp_path / "part_a*"), "b": str(tmp_path / "part_b*")}, **kw)
    full = C.ConvergenceMapFiles(s, {"a": str(tmp_path / "full_a*"), "b": str(tmp_path / "full_b*")}, **kw)
    assert len(part.split("train")) == 2 * 3 * 3  # 3 training files per class, 3 whole patches each
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(part.split(split).maps, full.split(split).maps)
        np.testing.assert_array_equal(part.split(split).labels, full.split(split).labels)
    # order 1 needs a whole base pixel (64 pixels): these files cover only order-2 patches
    with pytest.raises(ValueError, match=r"part_a\d.fits: no map covers a whole patch of order 1"):
        C.ConvergenceMapFiles(C.healpix_patch(nside, 1), {"a": str(tmp_path / "part_a*"),
                                                          "b": str(tmp_path / "part_b*")}, **kw)
    with pytest.raises(ValueError, match="no map covers the full sky"):
        C.ConvergenceMapFiles(HEALPix(nside), {"a": str(tmp_path / "part_a*"),
                                               "b": str(tmp_path / "part_b*")}, **kw)
    with pytest.raises(ValueError, match="coarser than the sampling's 16"):
        C.ConvergenceMapFiles(HEALPix(16), {"a": str(tmp_path / "full_a*"), "b": str(tmp_path / "full_b*")}, **kw)


def test_models_and_linear_baseline():
    torch.manual_seed(0)
    s = C.healpix_patch(8, 1)
    ds = C.CosmologyPatches(s, n_train=2, n_val=1, n_test=1, noise=0.0, backend="analytic")
    x = torch.stack([ds.split("val")[i][0] for i in range(4)])
    assert C.PatchCNN2d(s, 1, 2, channels=(4, 8))(x).shape == (4, 2)
    assert C.EmbeddedSpectralClassifier(s, 1, 2, channels=(2,), lmax=2)(x).shape == (4, 2)
    res = C.linear_baseline(ds, train_epochs=1)
    assert set(res) == {"val_accuracy", "test_accuracy"}
    # the logistic regression itself separates separable data
    r = np.random.default_rng(0)
    X = r.standard_normal((200, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    assert np.mean(C.fit_logistic(X, y, weight_decay=1e-4)(X) == y) > 0.97


def _image_to_patch(img: np.ndarray, sampling) -> np.ndarray:
    idx, side = C.patch_image_index(sampling)
    x = np.empty((len(img), side * side))
    x[:, idx] = img.reshape(len(img), -1)
    return x


def test_flat_psd_recovers_a_known_power_law_and_white_noise_level():
    """The flat-sky spectrum of images drawn with P(k) = k^-2 in Fourier space has slope -2
    in log k; white noise of variance s^2 has power s^2 in every k-bin."""
    s = C.healpix_patch(256, 2)  # 128 x 128 pixels
    idx, side = C.patch_image_index(s)
    r = np.random.default_rng(1)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side), indexing="ij"))
    amp = np.where(k > 0, k, np.inf) ** -1.0  # sqrt of P(k) = k^-2
    imgs = np.fft.ifft2(amp * np.fft.fft2(r.standard_normal((16, side, side)))).real
    n_bins = 8
    feats = C.psd_histogram_features(_image_to_patch(imgs, s), s, n_ell_bins=n_bins, psd="flat")
    logp = feats[:, :n_bins].mean(0)
    edges = np.geomspace(1 / side, 1 / np.sqrt(2), n_bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    slope = np.polyfit(np.log(centres[1:-1]), logp[1:-1], 1)[0]  # edge bins: few modes / corners
    assert abs(slope + 2) < 0.15, slope
    noise = 3.0 * r.standard_normal((32, side * side))
    logp = C.psd_histogram_features(noise, s, n_ell_bins=n_bins, psd="flat")[:, :n_bins]
    np.testing.assert_allclose(np.exp(logp[:, 3:]).mean(0), 9.0, rtol=0.05)  # low bins: few modes
    # the histogram part is the same with either spectrum estimator
    small = C.healpix_patch(16, 2)
    x = r.standard_normal((3, small.npix))
    a = C.psd_histogram_features(x, small, n_ell_bins=4, psd="flat")
    b = C.psd_histogram_features(x, small, n_ell_bins=4, psd="sphere")
    np.testing.assert_array_equal(a[:, 4:], b[:, b.shape[1] - 20:])
    with pytest.raises(ValueError, match="psd must be 'sphere'.*or 'flat'"):
        C.psd_histogram_features(x, small, psd="fft")
    with pytest.raises(ValueError, match="no Fourier mode in some of the 40 k-bins"):
        C.psd_histogram_features(x, small, n_ell_bins=40, psd="flat")


def test_registered_by_name():
    from deepsphere.training import registry

    assert registry.DATASETS.get("cosmology") is C.CosmologyPatches
    assert registry.DATASETS.get("cosmology_files") is C.ConvergenceMapFiles
    assert registry.SAMPLINGS.get("healpix_patch") is C.healpix_patch
    assert registry.MODELS.get("patch_cnn2d") is C.PatchCNN2d


def test_three_cosmologies_and_bad_pairs():
    s = C.healpix_patch(8, 1)
    ds = C.CosmologyPatches(s, n_train=1, n_val=1, n_test=1, backend="analytic",
                            cosmologies=[[0.3, 0.8], [0.25, 0.9], [0.35, 0.75]])
    assert ds.n_classes == 3 and len(ds.class_names) == 3
    np.testing.assert_array_equal(ds.class_counts(), [12, 12, 12])
    with pytest.raises(ValueError, match="cosmologies"):
        C.CosmologyPatches(s, cosmologies=[[0.3, 0.8]])


def _class_moments(ds):
    """Variance and skewness of each class's clean pixels (in convergence units)."""
    tr = ds.split("train")
    out = []
    for c in range(ds.n_classes):
        x = tr.maps[tr.labels == c].ravel() * ds.scale
        x = x - x.mean()
        var = np.mean(x**2)
        out.append((var, np.mean(x**3) / var**1.5))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_matched_spectra_leave_only_the_lognormal_shift(seed):
    """spectrum='matched': both classes get the mean C_l, so their pixel variance
    sum (2l+1)/4pi C_l is the same, while each keeps its shift lam and with it the lognormal
    skewness (e + 2) sqrt(e - 1), e = 1 + sigma^2 / lam^2 (larger for the smaller shift)."""
    s = C.healpix_patch(32, 1)
    kw = dict(n_train=24, n_val=1, n_test=1, noise=0.0, backend="analytic", seed=seed)
    ell = np.arange(96)
    cls = [C.convergence_cl(om, s8, 95, 1.0, "analytic") for om, s8 in C.COSMOLOGIES]
    own = _class_moments(C.CosmologyPatches(s, **kw))
    var_own = [np.sum((2 * ell + 1) / (4 * np.pi) * cl) for cl in cls]
    assert var_own[1] / var_own[0] == pytest.approx(1.109, abs=0.005)
    assert own[1][0] / own[0][0] == pytest.approx(var_own[1] / var_own[0], rel=0.03)

    ds = C.CosmologyPatches(s, spectrum="matched", **kw)
    matched = _class_moments(ds)
    var_th = np.sum((2 * ell + 1) / (4 * np.pi) * np.mean(cls, axis=0))
    for c, (var, skew) in enumerate(matched):
        assert var == pytest.approx(var_th, rel=0.03)
        e = 1 + var_th / ds.shifts[c] ** 2
        assert skew == pytest.approx((e + 2) * np.sqrt(e - 1), rel=0.08)
    assert ds.shifts[0] > ds.shifts[1] and matched[1][1] > 1.08 * matched[0][1]
    with pytest.raises(ValueError, match="spectrum must be 'own'"):
        C.CosmologyPatches(s, spectrum="equal", **kw)


def test_smoothed_moments_follow_the_linear_filter_formula():
    """Independent pixels of skewness g smoothed by h: skewness g sum h^3 / (sum h^2)^(3/2),
    with the 2D Gaussian h = h1 x h1 (scipy's kernel: exp(-t^2 / 2w^2), |t| <= 4w + 0.5);
    white Gaussian noise stays at skewness 0."""
    s = C.healpix_patch(256, 1)
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, size=(6, 256 * 256))  # exponential pixels: skewness 2
    for w in (1, 2):
        t = np.arange(-int(4 * w + 0.5), int(4 * w + 0.5) + 1)
        h = np.exp(-t**2 / (2 * w * w))
        h /= h.sum()
        expected = 2 * (np.sum(h**3) / np.sum(h**2) ** 1.5) ** 2
        got = C.smoothed_moments(x, s, [w])
        assert got.shape == (6, 2)
        assert got[:, 0].mean() == pytest.approx(expected, rel=0.12)
    noise = C.smoothed_moments(rng.normal(size=(6, 256 * 256)), s, [1, 2])
    assert np.all(np.abs(noise[:, [0, 2]].mean(0)) < 0.05)
    feats = C.psd_histogram_features(x[:2], s, psd="flat", moment_scales=[1, 2])
    assert feats.shape == (2, 10 + 20 + 4)
    with pytest.raises(ValueError, match="must be > 0"):
        C.smoothed_moments(x[:1], s, [0])


def test_smoothed_moments_of_a_flat_patch_are_zero_and_bad_values_are_refused():
    """A constant patch has no fluctuation to measure: its moments are 0 (as for a Gaussian),
    not the round-off of the filter divided by itself; NaN or UNSEEN pixels are refused."""
    s = C.healpix_patch(32, 1)
    for value in (0.0, 3.7, -1e5):
        got = C.smoothed_moments(np.full((2, s.npix), value), s, [1, 2])
        assert np.array_equal(got, np.zeros((2, 4)))
    x = np.random.default_rng(0).normal(size=(2, s.npix))
    for bad in (np.nan, np.inf, hp.UNSEEN):
        y = x.copy()
        y[1, 5] = bad
        with pytest.raises(ValueError, match=r"patch 1 .*not finite or UNSEEN"):
            C.smoothed_moments(y, s, [1])


def test_map_files_every_split_gets_a_file_of_each_class(tmp_path, rng):
    """Two files per class gave val and test no file (round(0.2 * 2) = 0): empty splits,
    and training stopped at the first validation on numpy's 'need at least one array to
    concatenate'. Files are split, not patches, so each split needs a file per class."""
    for c in "ab":
        for i in range(2):
            np.save(tmp_path / f"{c}{i}.npy", rng.standard_normal(12 * 8**2))
    s = C.healpix_patch(8, 1)
    with pytest.raises(ValueError, match=r"class 'a': 2 files give train / val / test 2 / 0 / 0 "
                                         r"files; each split needs at least one"):
        C.ConvergenceMapFiles(s, {"a": str(tmp_path / "a*"), "b": str(tmp_path / "b*")}, ordering="NESTED")
    for i in range(2, 4):  # 4 files: 2 / 1 / 1
        for c in "ab":
            np.save(tmp_path / f"{c}{i}.npy", rng.standard_normal(12 * 8**2))
    ds = C.ConvergenceMapFiles(s, {"a": str(tmp_path / "a*"), "b": str(tmp_path / "b*")}, ordering="NESTED")
    for split in ("val", "test"):
        assert np.bincount(ds.split(split).labels).tolist() == [12, 12]


def test_map_files_one_map_is_in_one_split_and_class(tmp_path, rng):
    """A file matched by two patterns ('a*' and './a0.npy') counted twice, and one matched
    by two classes' patterns was a map of both classes: either way the same map could be
    in train and in test."""
    for c in "ab":
        for i in range(3):
            np.save(tmp_path / f"{c}{i}.npy", rng.standard_normal(12 * 8**2))
    s = C.healpix_patch(8, 1)
    kw = dict(ordering="NESTED", val_fraction=0.34, test_fraction=0.34)
    ds = C.ConvergenceMapFiles(s, {"a": [str(tmp_path / "a*"), str(tmp_path / "." / "a0.npy")],
                                   "b": str(tmp_path / "b*")}, **kw)
    assert [len(ds.split(n)) for n in ("train", "val", "test")] == [24, 24, 24]
    with pytest.raises(ValueError, match=r"a0.npy is matched by classes 'a' and 'b'"):
        C.ConvergenceMapFiles(s, {"a": str(tmp_path / "a*"),
                                  "b": [str(tmp_path / "b*"), str(tmp_path / "a0.npy")]}, **kw)


def test_fits_ordering_header_wins_over_the_ordering_argument(tmp_path, rng):
    """``ordering`` only stands in for a missing ORDERING header: a RING file is read as RING
    (healpy.read_map follows the header too), and an ``ordering`` that contradicts the header
    is refused rather than dropped silently."""
    nside = 8
    m = rng.standard_normal(12 * nside**2)
    _write_fits(tmp_path / "r.fits", m, nest=False)
    ref = hp.read_map(str(tmp_path / "r.fits"), nest=True, dtype=np.float64)
    np.testing.assert_array_equal(ref, m)
    for ordering in (None, "RING", "ring"):
        np.testing.assert_array_equal(C.read_healpix_maps(tmp_path / "r.fits", ordering=ordering)[0], m)
    with pytest.raises(ValueError, match=r"r.fits: the FITS header says ORDERING = RING, but "
                                         r"ordering='NESTED' was passed"):
        C.read_healpix_maps(tmp_path / "r.fits", ordering="NESTED")


def test_partial_fits_pixels_in_any_order(tmp_path, rng):
    """A PIXEL column need not be sorted (other writers than healpy's): each value goes to
    its own pixel, as healpy.read_map(partial=True) puts it."""
    from astropy.io import fits

    nside = 4
    m = _observed_map(rng, nside, 1, covered=[0])
    _write_partial(tmp_path / "p.fits", m, nest=True)
    pix = np.array([40, 7, 3, 150, 0])
    vals = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    cols = [fits.Column("PIXEL", "K", array=pix), fits.Column("T", "D", array=vals)]
    _edit_header(tmp_path / "p.fits", tmp_path / "unsorted.fits", columns=cols)
    got = C.read_healpix_maps(tmp_path / "unsorted.fits")[0]
    ref = hp.read_map(str(tmp_path / "unsorted.fits"), partial=True, nest=True, dtype=np.float64)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got[pix], vals)


def test_map_files_val_and_test_fractions_are_not_swapped(tmp_path, rng):
    """10 files per class with val_fraction 0.1 and test_fraction 0.3: 6 / 1 / 3 files
    (12 patches of order 1 each) in train / val / test."""
    for c in "ab":
        for i in range(10):
            np.save(tmp_path / f"{c}{i}.npy", rng.standard_normal(12 * 8**2))
    ds = C.ConvergenceMapFiles(C.healpix_patch(8, 1), {"a": str(tmp_path / "a*"), "b": str(tmp_path / "b*")},
                               ordering="NESTED", val_fraction=0.1, test_fraction=0.3)
    for split, n_files in (("train", 6), ("val", 1), ("test", 3)):
        assert np.bincount(ds.split(split).labels).tolist() == [12 * n_files] * 2


def test_nan_pixels_read_as_unseen_and_leave_their_patch_out(tmp_path, rng):
    """NaN pixels become UNSEEN; a patch with one missing pixel is not observed, also after
    downgrading (a coarse pixel with an unseen child is unseen, healpy's pess=True)."""
    nside, order = 8, 1
    m = rng.standard_normal(12 * (2 * nside) ** 2)  # nside 16, NESTED
    m[5] = np.nan  # in patch 0 of order 1
    np.save(tmp_path / "m.npy", m)
    got = C.read_healpix_maps(tmp_path / "m.npy", ordering="NESTED")[0]
    assert got[5] == hp.UNSEEN and np.isfinite(got).all()
    np.testing.assert_array_equal(np.delete(got, 5), np.delete(m, 5))
    patches, idx = C.observed_patches(got, nside, order)
    assert idx.tolist() == list(range(1, 12))
    ref = hp.ud_grade(np.where(np.isnan(m), 0.0, m), nside, order_in="NESTED", order_out="NESTED")
    np.testing.assert_allclose(patches, ref.reshape(12, -1)[1:])


def test_map_files_scale_is_the_training_maps_std(tmp_path, rng):
    """scale=None divides by the standard deviation of the training patches only (the
    validation and test maps must not inform the normalisation): training inputs have unit
    standard deviation, whatever the amplitudes of the held-out files."""
    for c in "ab":
        for i in range(5):  # every file its own amplitude, so the splits' std differ
            np.save(tmp_path / f"{c}{i}.npy", (1 + 3 * i) * rng.standard_normal(12 * 8**2))
    ds = C.ConvergenceMapFiles(C.healpix_patch(8, 1), {"a": str(tmp_path / "a*"), "b": str(tmp_path / "b*")},
                               ordering="NESTED")
    train = ds.split("train").maps.astype(np.float64)
    held_out = np.concatenate([ds.split(s).maps for s in ("val", "test")]).astype(np.float64)
    assert train.std() == pytest.approx(1.0, rel=1e-5)
    assert abs(np.concatenate([train, held_out]).std() - 1.0) > 0.01  # the check can fail
