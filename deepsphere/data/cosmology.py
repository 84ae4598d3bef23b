r"""Weak-lensing convergence maps of two cosmologies, cut into HEALPix patches.

The task of Perraudin et al. (2019, DeepSphere): tell apart two cosmological models whose
convergence power spectra are nearly degenerate,

====================  ============  ==============
class                 :math:`\Omega_m`  :math:`\sigma_8`
====================  ============  ==============
0                     0.31          0.82
1                     0.26          0.91
====================  ============  ==============

from partial-sky patches seen through noise.

Generation (everything seeded; nothing is downloaded):

1. :func:`convergence_cl`: :math:`C_\ell^{\kappa\kappa}` for sources on one plane at
   ``z_source``, from pyccl (Eisenstein–Hu transfer function, halofit) when it is installed,
   else from the analytic approximation :func:`limber_cl_analytic` (Limber integral of a
   BBKS linear power spectrum normalised to :math:`\sigma_8`; documented, not a substitute
   for a Boltzmann code). :func:`spectra_backend` says which one is used.
2. :func:`lognormal_shift`: the shift :math:`\lambda` of the shifted lognormal is the
   magnitude of the empty-beam convergence
   :math:`\kappa_{min} = -\tfrac32 \Omega_m (H_0/c)^2 \int_0^{\chi_s}
   \chi (\chi_s - \chi)/\chi_s \,(1+z)\, d\chi` (Hilbert et al. 2011): it grows with
   :math:`\Omega_m`, so the one-point distribution carries class information beyond
   :math:`C_\ell`.
3. :func:`gaussian_cl_for_lognormal`: the Gaussian field :math:`g` whose transform
   :math:`\kappa = \lambda\,(e^{g - \sigma_g^2/2} - 1)` has the target spectrum: in real space
   :math:`\xi_\kappa = \lambda^2 (e^{\xi_g} - 1)`, so
   :math:`\xi_g(\theta) = \ln(1 + \xi_\kappa(\theta)/\lambda^2)`, with the Legendre transforms
   done by Gauss–Legendre quadrature up to the map's band limit (an approximation: the
   truncation at :math:`\ell_{max}` and clipping of negative :math:`C^g_\ell` are ignored).
4. Full-sky maps at ``nside`` (NESTED), scaled by one constant (the rms of the clean
   convergence averaged over the two classes, so amplitudes still differ between classes),
   cut into the :math:`12\,o^2` patches of order :math:`o` (each a NESTED block of
   :math:`(n_{side}/o)^2` pixels), plus white noise of standard deviation ``noise`` (in
   those units), redrawn every epoch for training.

Real maps (FITS or ``.npy``, RING or NESTED, partial skies as ``UNSEEN`` pixels or as
healpy's explicit-index partial FITS) enter through :func:`read_healpix_maps` and
:class:`ConvergenceMapFiles`.

The baselines of the comparison table live here too: :func:`psd_histogram_features` and
:func:`linear_baseline` (power spectrum + histogram features, logistic regression), and the
models :class:`PatchCNN2d` (a planar CNN on the square patch) and
:class:`EmbeddedSpectralClassifier` (the spectral model on the patch zero-padded to the sphere).
"""
from __future__ import annotations

import glob
import math
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import healpy as hp
import numpy as np
import torch
from torch import nn

from ..sampling import HEALPix, Sampling
from .synthetic import _MapSplit, _one_openmp_thread, random_alm
from .base import SPLITS, LabelledDataset


#: the two cosmologies of DeepSphere's discrimination task: (Omega_m, sigma_8)
COSMOLOGIES: Tuple[Tuple[float, float], ...] = ((0.31, 0.82), (0.26, 0.91))

_C_KM_S = 299792.458
_H = 0.7
_OMEGA_B = 0.049
_N_S = 0.96


# --------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------
def spectra_backend() -> str:
    """``"pyccl"`` if pyccl imports, else ``"analytic"``."""
    try:
        import pyccl  # noqa: F401
    except ImportError:
        return "analytic"
    return "pyccl"


def _efunc(z, omega_m):
    return np.sqrt(omega_m * (1 + z) ** 3 + 1 - omega_m)


def _chi(z, omega_m, n=2048):
    """Comoving distance in Mpc (flat LCDM), vectorised by trapezoid on a fine grid."""
    zz = np.linspace(0, np.max(z), n)
    integrand = 1.0 / _efunc(zz, omega_m)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(zz))])
    return (_C_KM_S / (100 * _H)) * np.interp(z, zz, cum)


def lognormal_shift(omega_m: float, z_source: float = 1.0) -> float:
    r"""Shift :math:`\lambda = |\kappa_{min}|` of the shifted lognormal convergence: the
    empty-beam convergence for sources at ``z_source`` (flat ΛCDM, :math:`h = 0.7`),
    :math:`\tfrac32 \Omega_m (H_0/c)^2 \int_0^{\chi_s} \chi(\chi_s-\chi)/\chi_s\,(1+z)\,d\chi`."""
    z = np.linspace(0, z_source, 1024)
    chi = _chi(z, omega_m)
    chis = chi[-1]
    f = chi * (chis - chi) / chis * (1 + z)
    integral = np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(chi))
    h0_c = 100 * _H / _C_KM_S
    return float(1.5 * omega_m * h0_c**2 * integral)


def _growth(z, omega_m):
    """Linear growth factor normalised to 1 today (Carroll, Press & Turner 1992 fit)."""
    a = 1.0 / (1 + z)
    om = omega_m / (omega_m + (1 - omega_m) * a**3)
    ol = 1 - om

    def g(om_, ol_):
        return 2.5 * om_ / (om_ ** (4 / 7) - ol_ + (1 + om_ / 2) * (1 + ol_ / 70))

    return a * g(om, ol) / g(omega_m, 1 - omega_m)


def _bbks_pk(k, omega_m, sigma8):
    """Linear P(k) today, k in h/Mpc, P in (Mpc/h)^3: BBKS transfer function with Sugiyama's
    shape parameter, normalised to sigma8 by a top-hat of 8 Mpc/h."""
    gamma = omega_m * _H * np.exp(-_OMEGA_B * (1 + np.sqrt(2 * _H) / omega_m))

    def shape(kk):
        q = kk / gamma
        t = np.log(1 + 2.34 * q) / (2.34 * q) * (1 + 3.89 * q + (16.1 * q) ** 2
                                                 + (5.46 * q) ** 3 + (6.71 * q) ** 4) ** -0.25
        return kk**_N_S * t**2

    kk = np.logspace(-4, 2, 4000)
    x = kk * 8.0
    w = 3 * (np.sin(x) - x * np.cos(x)) / x**3
    s2 = np.trapezoid(shape(kk) * w**2 * kk**3 / (2 * np.pi**2), np.log(kk))
    return sigma8**2 / s2 * shape(k)


def limber_cl_analytic(omega_m: float, sigma8: float, lmax: int, z_source: float = 1.0) -> np.ndarray:
    r"""Analytic approximation of :math:`C_\ell^{\kappa\kappa}` (fallback without pyccl).

    Limber: :math:`C_\ell = \int_0^{\chi_s} d\chi\, W(\chi)^2/\chi^2\, P_{lin}(k=(\ell+\tfrac12)/\chi, z)`
    with :math:`W = \tfrac32\Omega_m (H_0/c)^2 \chi(\chi_s-\chi)/\chi_s\,(1+z)`,
    BBKS linear spectrum, growth from the Carroll–Press–Turner fit. Linear theory only
    (no halofit): within about 10 % of pyccl's halofit spectrum at :math:`\ell \lesssim 100`
    for sources at z = 1, increasingly low beyond."""
    z = np.linspace(1e-3, z_source, 400)
    chi = _chi(z, omega_m)  # Mpc
    chis = _chi(np.array([z_source]), omega_m)[0]
    h0_c = 100 * _H / _C_KM_S
    W = 1.5 * omega_m * h0_c**2 * chi * (chis - chi) / chis * (1 + z)
    D2 = _growth(z, omega_m) ** 2
    ell = np.arange(2, lmax + 1)
    k = (ell[:, None] + 0.5) / chi[None, :] / _H  # h/Mpc, (ell, z)
    pk = _bbks_pk(k, omega_m, sigma8) / _H**3 * D2  # Mpc^3
    cl = np.zeros(lmax + 1)
    cl[2:] = np.trapezoid(W**2 / chi**2 * pk, chi, axis=1)
    return cl


def convergence_cl(omega_m: float, sigma8: float, lmax: int, z_source: float = 1.0,
                   backend: str = "auto") -> np.ndarray:
    return _convergence_cl(float(omega_m), float(sigma8), int(lmax), float(z_source), backend).copy()


@lru_cache(maxsize=64)
def _convergence_cl(omega_m: float, sigma8: float, lmax: int, z_source: float, backend: str) -> np.ndarray:
    r""":math:`C_\ell^{\kappa\kappa}` for :math:`\ell = 0..l_{max}` (zero for
    :math:`\ell < 2`), sources on one plane at ``z_source``.

    ``backend``: ``"pyccl"`` (``CMBLensingTracer`` with ``z_source``, Eisenstein–Hu transfer
    function, halofit; needs ``pip install pyccl``), ``"analytic"``
    (:func:`limber_cl_analytic`) or ``"auto"`` (pyccl if installed)."""
    if backend not in ("auto", "pyccl", "analytic"):  # cached: pyccl takes seconds
        raise ValueError(f"backend must be 'auto', 'pyccl' or 'analytic', got {backend!r}")
    if backend == "auto":
        backend = spectra_backend()
    if backend == "analytic":
        return limber_cl_analytic(omega_m, sigma8, lmax, z_source)
    try:
        import pyccl as ccl
    except ImportError:
        raise ImportError("backend='pyccl' needs pyccl (pip install pyccl); or use "
                          "backend='analytic'") from None
    cosmo = ccl.Cosmology(Omega_c=omega_m - _OMEGA_B, Omega_b=_OMEGA_B, h=_H, sigma8=sigma8,
                          n_s=_N_S, transfer_function="eisenstein_hu",
                          matter_power_spectrum="halofit")
    tracer = ccl.CMBLensingTracer(cosmo, z_source=z_source)
    cl = np.zeros(lmax + 1)
    ell = np.arange(2, lmax + 1)
    cl[2:] = ccl.angular_cl(cosmo, tracer, tracer, ell)
    return cl


convergence_cl.__doc__ = _convergence_cl.__doc__


# --------------------------------------------------------------------------------------
# shifted lognormal
# --------------------------------------------------------------------------------------
def _legendre_table(lmax: int, x: np.ndarray) -> np.ndarray:
    """P_l(x) for l = 0..lmax, shape (lmax+1, len(x)), by the three-term recursion."""
    P = np.empty((lmax + 1, x.size))
    P[0] = 1.0
    if lmax > 0:
        P[1] = x
    for l in range(2, lmax + 1):
        P[l] = ((2 * l - 1) * x * P[l - 1] - (l - 1) * P[l - 2]) / l
    return P


def gaussian_cl_for_lognormal(cl_kappa: np.ndarray, shift: float) -> np.ndarray:
    r"""Spectrum :math:`C^g_\ell` of the Gaussian field :math:`g` such that
    :math:`\kappa = \lambda (e^{g-\sigma_g^2/2} - 1)` has spectrum ``cl_kappa``:
    :math:`\xi_g = \ln(1 + \xi_\kappa/\lambda^2)`, Legendre transforms by Gauss–Legendre
    quadrature (exact for the band-limited :math:`\xi_\kappa`; :math:`\xi_g` is truncated
    at the same :math:`\ell_{max}`). Negative values (rare, at high :math:`\ell`) are
    clipped to zero; :math:`\ell < 2` are set to zero."""
    cl_kappa = np.asarray(cl_kappa, dtype=np.float64)
    if shift <= 0:
        raise ValueError(f"the lognormal shift must be > 0, got {shift}")
    lmax = len(cl_kappa) - 1
    x, w = np.polynomial.legendre.leggauss(2 * lmax + 2)
    P = _legendre_table(lmax, x)
    ell = np.arange(lmax + 1)
    xi_k = ((2 * ell + 1) / (4 * np.pi) * cl_kappa) @ P
    xi_g = np.log1p(xi_k / shift**2)
    cl_g = 2 * np.pi * (P * w) @ xi_g
    cl_g[:2] = 0.0
    return np.clip(cl_g, 0.0, None)


def lognormal_convergence(cl_g: np.ndarray, shift: float, nside: int, rng: np.random.Generator) -> np.ndarray:
    """One shifted-lognormal convergence map, NESTED, from the Gaussian spectrum ``cl_g``."""
    lmax = len(cl_g) - 1
    sigma2 = float(np.sum((2 * np.arange(lmax + 1) + 1) / (4 * np.pi) * cl_g))
    with _one_openmp_thread():
        g = hp.alm2map(random_alm(cl_g, rng), nside, lmax=lmax)
    kappa = shift * (np.exp(g - sigma2 / 2) - 1)
    return hp.reorder(kappa, r2n=True)


# --------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------
def patch_pixels(nside: int, order: int, patch: int = 0) -> np.ndarray:
    """NESTED indices of patch ``patch`` of order ``order``: the sphere is cut into
    :math:`12\\,o^2` patches, each a contiguous NESTED block of :math:`(n_{side}/o)^2`
    pixels (order 1: the 12 base pixels)."""
    _check_order_nside(nside, order)
    if not 0 <= patch < 12 * order**2:
        raise ValueError(f"patch must be in [0, {12 * order**2}) for order {order}, got {patch}")
    n = (nside // order) ** 2
    return patch * n + np.arange(n, dtype=np.int64)


def _check_order_nside(nside: int, order: int) -> None:
    if order < 1 or order & (order - 1) or order > nside:
        raise ValueError(f"order must be a power of two between 1 and nside={nside}, got {order}")


def healpix_patch(nside: int, order: int = 1, patch: int = 0, levels: int = 0) -> HEALPix:
    """Sampling of one patch (see :func:`patch_pixels`); registered as sampling
    ``healpix_patch``. Every patch of an order has the same NESTED layout, so a model built
    on patch 0 applies to all of them (as in DeepSphere)."""
    return HEALPix(nside, patch_pixels(nside, order, patch), levels=levels)


def patch_order(sampling: Sampling) -> int:
    """Order :math:`o` of a patch sampling (0 for the full sphere), or a clear error."""
    if not isinstance(sampling, HEALPix):
        raise TypeError(f"cosmology patches need a HEALPix sampling, got {type(sampling).__name__}")
    if sampling.full_sky:
        return 0
    n = sampling.npix
    side = int(round(math.sqrt(n)))
    p = sampling.pixels
    if side * side != n or sampling.nside % side or p[0] % n or not np.array_equal(p, p[0] + np.arange(n)):
        raise ValueError(
            "the sampling is a partial sky that is not one HEALPix patch (a contiguous NESTED "
            "block of (nside/order)^2 pixels); use sampling {name: healpix_patch, nside: ..., "
            "order: ...}"
        )
    return sampling.nside // side


def cut_patches(maps_nested: np.ndarray, nside: int, order: int) -> np.ndarray:
    """``(n_maps, 12 nside^2)`` NESTED maps -> ``(n_maps * 12 order^2, (nside/order)^2)``
    patches (order 0: the full maps)."""
    maps_nested = np.atleast_2d(maps_nested)
    if order == 0:
        return maps_nested
    _check_order_nside(nside, order)
    return maps_nested.reshape(-1, (nside // order) ** 2)


def kappa_scale(lmax: int, z_source: float = 1.0, backend: str = "auto",
                cosmologies: Sequence[Tuple[float, float]] = COSMOLOGIES) -> float:
    """rms of the clean convergence at band limit ``lmax``, averaged over the classes: the
    unit in which maps and noise are expressed."""
    var = []
    ell = np.arange(lmax + 1)
    for om, s8 in cosmologies:
        cl = convergence_cl(om, s8, lmax, z_source, backend)
        var.append(np.sum((2 * ell + 1) / (4 * np.pi) * cl))
    return float(np.sqrt(np.mean(var)))


class CosmologyPatches(LabelledDataset):
    r"""Two-class cosmology discrimination on HEALPix patches (see the module docstring).

    Parameters
    ----------
    sampling : HEALPix
        Full sky, or one patch (sampling ``healpix_patch`` with ``order`` 1, 2, 4, ...): the
        patch order is read from it.
    n_train, n_val, n_test : int
        Full-sky maps per class and split; each gives :math:`12\,o^2` patches.
    cosmologies : list of [Omega_m, sigma_8], optional
        One class per pair; default :data:`COSMOLOGIES` (DeepSphere's two models).
    noise : float
        Standard deviation of the white noise, in units of the clean convergence rms.
    redraw_noise : bool
        New training noise every epoch (validation and test noise stay fixed).
    z_source : float
        Source redshift.
    lognormal : bool
        Shifted-lognormal maps (default) or Gaussian maps with the same spectra.
    spectrum : {'own', 'matched'}
        ``'own'`` (default): each class has its cosmology's :math:`C_\ell^{\kappa\kappa}`.
        ``'matched'``: every class gets the mean of the classes' spectra and keeps its own
        lognormal shift, so the power spectrum carries no class information by construction
        and only the non-Gaussian (one-point and higher-order) signature separates the
        classes. This is the premise of DeepSphere's task ("near-identical power spectra")
        made exact; with ``lognormal=False`` the classes are indistinguishable.
    backend : {'auto', 'pyccl', 'analytic'}
        Where the spectra come from (:func:`convergence_cl`).
    lmax : int, optional
        Band limit; default ``3 nside - 1``.
    seed : int

    Items are ``(x, y)``: ``x`` float32 ``[patch pixels, 1]``, ``y`` the class (0 or 1).
    """

    task = "classification"
    in_channels = 1

    def __init__(self, sampling: Sampling, n_train: int = 16, n_val: int = 4, n_test: int = 8,
                 cosmologies: Optional[List[List[float]]] = None, noise: float = 1.0, redraw_noise: bool = True, z_source: float = 1.0,
                 lognormal: bool = True, spectrum: str = "own", backend: str = "auto",
                 lmax: Optional[int] = None, seed: int = 0):
        for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if n < 1:
                raise ValueError(f"{name} (full-sky maps per class) must be >= 1, got {n}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if spectrum not in ("own", "matched"):
            raise ValueError(f"spectrum must be 'own' (each cosmology's C_l) or 'matched' (one "
                             f"mean C_l for every class), got {spectrum!r}")
        cosmo = [tuple(map(float, c)) for c in (COSMOLOGIES if cosmologies is None else cosmologies)]
        if len(cosmo) < 2 or any(len(c) != 2 or c[0] <= 0 or c[1] <= 0 for c in cosmo):
            raise ValueError(f"cosmologies must list at least two [Omega_m, sigma_8] pairs of "
                             f"positive numbers, got {cosmologies!r}")
        self.cosmologies = cosmo
        self.n_classes = len(cosmo)
        self.class_names = [f"Om={om:g} s8={s8:g}" for om, s8 in cosmo]
        self.sampling = sampling
        self.order = patch_order(sampling)
        nside = sampling.nside
        lmax = 3 * nside - 1 if lmax is None else int(lmax)
        self.backend = spectra_backend() if backend == "auto" else backend
        self.scale = kappa_scale(lmax, z_source, self.backend, cosmo)
        self.shifts = [lognormal_shift(om, z_source) for om, _ in cosmo]
        cls = [convergence_cl(om, s8, lmax, z_source, self.backend) for om, s8 in cosmo]
        if spectrum == "matched":
            cls = [np.mean(cls, axis=0)] * len(cls)
        self.spectrum = spectrum
        gcls = [gaussian_cl_for_lognormal(c, s) for c, s in zip(cls, self.shifts)]
        self._splits = {}
        for split, n in zip(SPLITS, (n_train, n_val, n_test)):
            rng = np.random.default_rng([seed, 300 + SPLITS.index(split)])
            maps, labels = [], []
            for c in range(self.n_classes):
                for _ in range(n):
                    if lognormal:
                        m = lognormal_convergence(gcls[c], self.shifts[c], nside, rng)
                    else:
                        with _one_openmp_thread():
                            m = hp.reorder(hp.alm2map(random_alm(cls[c], rng), nside, lmax=lmax), r2n=True)
                    p = cut_patches(m / self.scale, nside, self.order)
                    maps.append(p)
                    labels.append(np.full(len(p), c, dtype=np.int64))
            maps, labels = np.concatenate(maps), np.concatenate(labels)
            perm = rng.permutation(len(labels))
            self._splits[split] = _MapSplit(maps[perm], labels[perm], noise, seed, split,
                                            redraw=redraw_noise and split == "train")

    def input_transform(self) -> dict:
        """Items are maps divided by ``scale`` (see :mod:`deepsphere.data`)."""
        return {"shift": [0.0], "scale": [float(self.scale)]}



# --------------------------------------------------------------------------------------
# real maps
# --------------------------------------------------------------------------------------
_FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz")


def read_healpix_maps(path: Union[str, Path], ordering: Optional[str] = None) -> np.ndarray:
    """Read one file of HEALPix maps and return them NESTED, ``(n_maps, npix)`` float64,
    missing pixels as ``UNSEEN``.

    - Full-sky FITS (``.fits``, ``.fits.gz``, ``.fit``): read with healpy, which follows the
      ``ORDERING`` header (``ordering`` stands in for a missing header, and one that
      contradicts the header is refused); every column is a map.
    - Partial-sky FITS with explicit indexing, as written by
      ``healpy.write_map(path, m, partial=True)``: a ``PIXEL`` column of indices in the file's
      ``ORDERING``, then one column per map; ``NSIDE`` comes from the header. The file is
      recognised as healpy does (``OBJECT = 'PARTIAL'`` or ``INDXSCHM = 'EXPLICIT'``; with
      neither keyword, a first column named ``PIXEL``). The maps come back full size with
      ``UNSEEN`` on the pixels the file does not list, i.e. as
      ``healpy.read_map(path, partial=True)`` returns them, so partial files go through the
      same masks as full-sky maps with ``UNSEEN`` (:func:`observed_patches`).
    - ``.npy``: an array ``(npix,)`` or ``(n_maps, npix)``; ``ordering`` ('RING' or
      'NESTED') is required, since the file does not say.
    NaN are turned into ``UNSEEN``.

    Raises ``ValueError`` naming the file for a missing ``ORDERING`` (without ``ordering``),
    a partial file without a valid ``NSIDE``, pixel indices that are not integers, out of
    ``[0, 12 nside^2)`` or repeated, and files that are empty, truncated or not FITS.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".npy"):
        if ordering is None:
            raise ValueError(f"{path}: a .npy map does not record its ordering; pass "
                             "ordering='RING' or 'NESTED'")
        try:
            m = np.atleast_2d(np.load(path, allow_pickle=False)).astype(np.float64)
        except (ValueError, EOFError, OSError) as e:
            raise ValueError(f"{path}: cannot read this .npy map, it looks truncated or corrupt "
                             f"({e}); write or copy it again") from None
        order = ordering.upper()
    elif name.endswith(_FITS_SUFFIXES):
        m, order = _read_fits_maps(path, ordering)
    else:
        raise ValueError(f"{path}: unknown map format; expected .fits, .fits.gz or .npy")
    if order not in ("RING", "NESTED"):
        raise ValueError(f"ordering must be 'RING' or 'NESTED', got {ordering!r}")
    npix = m.shape[-1]
    nside = hp.npix2nside(npix) if hp.isnpixok(npix) else None
    if nside is None:
        raise ValueError(f"{path}: {npix} pixels is not a full-sky HEALPix map (12 nside^2)")
    m = np.where(np.isfinite(m), m, hp.UNSEEN)
    if order == "RING":
        m = m[:, hp.nest2ring(nside, np.arange(npix))]
    else:  # a smooth RING map said to be NESTED (ordering= or a wrong header)
        from ..sampling.healpix import ring_roughness_if_suspect

        r = ring_roughness_if_suspect(m[0], nside)
        if r is not None:
            raise ValueError(
                f"{path}: declared NESTED (by ordering= or the FITS header ORDERING) but looks "
                f"like RING: it is {r:.0f}x rougher between NESTED neighbours than between RING "
                "neighbours. For a .npy file pass ordering='RING'; for a FITS file check how it "
                "was written (healpy.write_map writes RING unless nest=True)."
            )
    return m


def _read_fits_maps(path: Path, ordering: Optional[str]) -> Tuple[np.ndarray, str]:
    """``(maps in the file's ordering (n_maps, npix), 'RING' | 'NESTED')`` of a HEALPix FITS
    file, full sky or explicit-index partial sky (see :func:`read_healpix_maps`)."""
    import warnings

    from astropy.io import fits

    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path}: the FITS file is empty (0 bytes); write or copy it again")
    header, columns, layout = None, [], None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                if len(hdul) > 1 and isinstance(hdul[1], fits.BinTableHDU):
                    header = dict(hdul[1].header)
                    columns = [c.strip() for c in hdul[1].columns.names]
                    layout = _fits_layout(header, columns)
                    if layout == "partial" and len(columns) > 1:
                        data = hdul[1].data
                        pix = np.asarray(data.field(0)).ravel()
                        values = [np.asarray(data.field(i), dtype=np.float64).ravel()
                                  for i in range(1, len(columns))]
            if layout == "full":
                m = np.atleast_2d(hp.read_map(str(path), field=None, nest=None, partial=False,
                                              dtype=np.float64))
    except (OSError, ValueError, TypeError, IndexError, KeyError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        what = ("not a valid FITS file" if "SIMPLE" in str(e) or "header" in str(e).lower()
                else "truncated or corrupt")
        raise ValueError(f"{path}: cannot read this HEALPix FITS map, it is {what} ({e})") from None
    if header is None:
        raise ValueError(f"{path}: not a HEALPix FITS map: HDU 1 is not the binary table that "
                         "holds the pixels (healpy.write_map writes one)")
    if layout not in ("full", "partial"):
        raise ValueError(f"{path}: the header contradicts itself ({layout}); a partial-sky file has "
                         "OBJECT = 'PARTIAL' and INDXSCHM = 'EXPLICIT', a full-sky file 'FULLSKY' "
                         "and 'IMPLICIT'")
    order = str(header.get("ORDERING", ordering or "")).strip().upper()
    if ordering is not None and "ORDERING" in header and order != str(ordering).strip().upper():
        # the header wins (as in healpy): an explicit argument must not be dropped silently
        raise ValueError(f"{path}: the FITS header says ORDERING = {order}, but ordering="
                         f"{ordering!r} was passed; the header is what the file holds. Leave "
                         "ordering out for FITS files with an ORDERING header, or fix the header "
                         "if it is wrong")
    if order not in ("RING", "NESTED"):
        raise ValueError(f"{path}: no ORDERING header (RING or NESTED); pass ordering='RING' or "
                         "'NESTED' if you know how the file was written")
    if layout == "partial":
        if len(columns) < 2:
            raise ValueError(f"{path}: a partial-sky FITS map needs a PIXEL column and at least one "
                             f"column of values; it has {columns}")
        m = _partial_to_full(path, header, pix, values)
    return m, order


def _fits_layout(header: dict, columns: List[str]) -> str:
    """``'partial'`` (explicit indexing) or ``'full'``, decided as healpy does: ``OBJECT``,
    then ``INDXSCHM``; with neither keyword, a first column named ``PIXEL`` (which healpy
    would read as a map). A contradiction is returned as its description."""
    obj = str(header.get("OBJECT", "")).strip().upper()
    schm = str(header.get("INDXSCHM", "")).strip().upper()
    if (obj, schm) in (("PARTIAL", "IMPLICIT"), ("FULLSKY", "EXPLICIT")):
        return f"OBJECT = {obj!r} but INDXSCHM = {schm!r}"
    if obj in ("PARTIAL", "FULLSKY"):
        return "partial" if obj == "PARTIAL" else "full"
    if schm in ("EXPLICIT", "IMPLICIT"):
        return "partial" if schm == "EXPLICIT" else "full"
    return "partial" if len(columns) > 1 and columns[0].upper() == "PIXEL" else "full"


def _partial_to_full(path: Path, header: dict, pix: np.ndarray, values: List[np.ndarray]) -> np.ndarray:
    """Scatter the listed pixels into full-size maps, ``UNSEEN`` elsewhere (what
    ``healpy.read_map(partial=True)`` does), after checking the indices it would not."""
    nside = header.get("NSIDE")
    if isinstance(nside, bool) or not isinstance(nside, (int, np.integer)) or not hp.isnsideok(int(nside)):
        raise ValueError(f"{path}: a partial-sky FITS map needs an NSIDE header (a power of 2) to "
                         f"know the full sky its PIXEL column indexes; got NSIDE = {nside!r}. "
                         "healpy.write_map(..., partial=True) writes it")
    npix = hp.nside2npix(int(nside))
    if pix.size == 0:
        raise ValueError(f"{path}: the partial-sky FITS map lists no pixel")
    if not np.issubdtype(pix.dtype, np.integer):
        if not (np.issubdtype(pix.dtype, np.floating) and np.all(np.isfinite(pix))
                and np.all(pix == np.round(pix))):
            raise ValueError(f"{path}: the PIXEL column must hold integer pixel indices, "
                             f"got {pix.dtype} values such as {pix[:3].tolist()}")
    pix = pix.astype(np.int64)
    bad = (pix < 0) | (pix >= npix)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} PIXEL indices are outside [0, {npix}) for "
                         f"NSIDE = {int(nside)} (e.g. {pix[bad][:3].tolist()}); the NSIDE header "
                         "does not match the pixels")
    uniq, counts = np.unique(pix, return_counts=True)
    if uniq.size != pix.size:
        raise ValueError(f"{path}: the PIXEL column repeats {int((counts > 1).sum())} indices "
                         f"(e.g. {uniq[counts > 1][:3].tolist()}); each pixel may be listed once")
    for v in values:
        if v.size != pix.size:
            raise ValueError(f"{path}: a column has {v.size} values for {pix.size} pixels")
    m = np.full((len(values), npix), hp.UNSEEN, dtype=np.float64)
    m[:, pix] = np.stack(values)
    return m


def observed_patches(m_nested: np.ndarray, nside: int, order: int) -> Tuple[np.ndarray, np.ndarray]:
    """Patches of order ``order`` of one NESTED map (downgraded to ``nside`` if finer) with
    no missing pixel: ``(patches (n, (nside/order)^2), patch indices (n,))``."""
    m = np.asarray(m_nested, dtype=np.float64)
    nside_in = hp.npix2nside(m.size)
    if nside_in < nside:
        raise ValueError(f"map has nside {nside_in}, coarser than the sampling's {nside}; "
                         "upsampling is not done")
    if nside_in > nside:  # pess: a coarse pixel is missing if any child is
        m = hp.ud_grade(m, nside, order_in="NESTED", order_out="NESTED", pess=True)
    p = cut_patches(m[None], nside, order)
    seen = np.all(~np.isclose(p, hp.UNSEEN), axis=1)
    return p[seen], np.flatnonzero(seen)


def _file_patches(path: Union[str, Path], ordering: Optional[str], nside: int, order: int) -> np.ndarray:
    """The fully observed patches of order ``order`` (0: whole maps) of every map of one file,
    at ``nside``; a file that has none is an error (a mask or partial sky that misses them)."""
    patches = []
    maps = read_healpix_maps(path, ordering)
    for m in maps:
        if order == 0:
            nside_in = hp.npix2nside(m.size)
            if nside_in < nside:
                raise ValueError(f"{path}: map has nside {nside_in}, coarser than the sampling's "
                                 f"{nside}; upsampling is not done")
            if np.any(np.isclose(m, hp.UNSEEN)):
                continue
            if nside_in != nside:
                m = hp.ud_grade(m, nside, order_in="NESTED", order_out="NESTED")
            patches.append(m[None])
        else:
            patches.append(observed_patches(m, nside, order)[0])
    if not sum(len(p) for p in patches):
        seen = int(np.sum(~np.isclose(maps, hp.UNSEEN)))
        want = ("the full sky" if order == 0 else
                f"a whole patch of order {order} (one of the {12 * order ** 2} NESTED blocks of "
                f"{(nside // order) ** 2} pixels at nside {nside})")
        raise ValueError(f"{path}: no map covers {want}: the file observes {seen} of "
                         f"{maps.size} pixels ({len(maps)} map(s) at nside {hp.npix2nside(maps.shape[1])}). "
                         "Use a sampling whose patches the maps cover (a higher order, "
                         "sampling {name: healpix_patch, order: ...}), or files that cover them")
    return np.concatenate(patches)


class ConvergenceMapFiles(LabelledDataset):
    """Classification of real (or externally simulated) convergence maps from files.

    Parameters
    ----------
    sampling : HEALPix
        Full sky or one patch (``healpix_patch``); files finer than its nside are downgraded.
    classes : dict
        Class name -> list of paths or glob patterns (FITS or ``.npy``), e.g.
        ``{"Om0.31_s8.82": ["maps/a/*.fits"], "Om0.26_s8.91": ["maps/b/*.fits"]}``. Files are
        read by :func:`read_healpix_maps` (full-sky or partial-sky FITS, ``.npy``); only the
        fully observed patches of each map are kept (:func:`observed_patches`; on a full-sky
        sampling, only maps without ``UNSEEN``), and a file that has none is an error.
    ordering : {'RING', 'NESTED'}, optional
        Ordering of ``.npy`` files (FITS files carry it in their header).
    scale : float, optional
        Divide all maps by this (default: the rms of the training patches).
    noise, redraw_noise, seed : as :class:`CosmologyPatches`
    val_fraction, test_fraction : float
        Files (not patches) are split, so patches of one map never straddle splits.
    """

    task = "classification"
    in_channels = 1

    def __init__(self, sampling: Sampling, classes: Dict[str, List[str]], ordering: Optional[str] = None,
                 scale: Optional[float] = None, noise: float = 0.0, redraw_noise: bool = True,
                 val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0):
        if not isinstance(classes, dict) or len(classes) < 2:
            raise ValueError("classes must map at least two class names to lists of files/globs")
        self.sampling = sampling
        self.order = patch_order(sampling)
        self.class_names = list(classes)
        self.n_classes = len(classes)
        rng = np.random.default_rng([seed, 400])
        per_split = {s: ([], []) for s in SPLITS}
        owner: Dict[Path, str] = {}  # one map in two classes (or splits) would leak
        for c, (name, patterns) in enumerate(classes.items()):
            if isinstance(patterns, str):
                patterns = [patterns]
            found = {Path(f).resolve(): f for p in patterns for f in sorted(glob.glob(str(p)) or [])}
            if not found:
                raise FileNotFoundError(f"class {name!r}: no file matches {list(patterns)}")
            for key, f in found.items():
                other = owner.setdefault(key, name)
                if other != name:
                    raise ValueError(f"{f} is matched by classes {other!r} and {name!r}; a map "
                                     "belongs to one class")
            files = sorted(found.values())
            files = [files[i] for i in rng.permutation(len(files))]
            n_test = int(round(test_fraction * len(files)))
            n_val = int(round(val_fraction * len(files)))
            groups = {"test": files[:n_test], "val": files[n_test:n_test + n_val],
                      "train": files[n_test + n_val:]}
            if not groups["train"]:
                raise ValueError(f"class {name!r}: {len(files)} files leave none for training")
            if not groups["val"] or not groups["test"]:  # an empty split stopped training later
                raise ValueError(
                    f"class {name!r}: {len(files)} files give train / val / test "
                    f"{len(groups['train'])} / {n_val} / {n_test} files; each split needs at least "
                    "one file of every class (files are split, not patches): give 3 or more "
                    "files per class, or raise val_fraction / test_fraction"
                )
            for split, fs in groups.items():
                for f in fs:
                    p = _file_patches(f, ordering, sampling.nside, self.order)
                    per_split[split][0].append(p)
                    per_split[split][1].append(np.full(len(p), c, dtype=np.int64))
        if not per_split["train"][0] or not sum(len(p) for p in per_split["train"][0]):
            raise ValueError("no fully observed patch in the training files")
        train = np.concatenate(per_split["train"][0])
        self.scale = float(train.std()) if scale is None else float(scale)
        self._splits = {}
        for split in SPLITS:
            maps, labels = per_split[split]
            npix = self.sampling.npix
            maps = np.concatenate(maps) if maps else np.zeros((0, npix))
            labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
            self._splits[split] = _MapSplit(maps / self.scale, labels, noise, seed, split,
                                            redraw=redraw_noise and split == "train")

    def input_transform(self) -> dict:
        """Items are maps divided by ``scale`` (see :mod:`deepsphere.data`)."""
        return {"shift": [0.0], "scale": [float(self.scale)]}



# --------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------
def _as_patches(patches: np.ndarray, sampling: HEALPix) -> np.ndarray:
    """``[n_patches, sampling.npix]`` float array from one patch, a stack of them, or a
    stack with a trailing channel axis of size 1 (the datasets' items)."""
    x = np.asarray(patches, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    x = np.atleast_2d(x)
    if x.ndim != 2 or x.shape[1] != sampling.npix:
        raise ValueError(f"patches must be [n_patches, {sampling.npix}] (the sampling's pixels), "
                         f"got shape {np.shape(patches)}")
    return x


def psd_histogram_features(patches: np.ndarray, sampling: HEALPix, n_ell_bins: int = 10,
                           hist_range: float = 5.0, n_hist_bins: int = 20,
                           psd: str = "sphere", moment_scales: Sequence[float] = ()) -> np.ndarray:
    r"""Per patch: the log of the binned power spectrum (``n_ell_bins`` log-spaced bins) and
    the normalised histogram of pixel values in ``n_hist_bins`` bins over
    ``[-hist_range, hist_range]`` — the features of DeepSphere's SVM baseline.

    ``psd`` chooses the spectrum estimator:

    - ``"sphere"``: pseudo-:math:`C_\ell` by anafast of the patch zero-padded to the sphere,
      :math:`2 \le \ell \le 3 n_{side} - 1`; one full-sky transform per patch, so slow
      beyond nside ~256.
    - ``"flat"``: the periodogram :math:`|\hat x(\mathbf k)|^2` of the patch read as a
      square image in HEALPix face coordinates (:func:`patch_image_index`), averaged in
      rings of :math:`|\mathbf k|` from the fundamental :math:`1/\text{side}` to the
      corner :math:`1/\sqrt 2` (cycles per pixel); the flat-sky approximation, exact up to
      the face's small distortion, and cheap at any nside (an FFT of the patch).

    ``moment_scales`` (widths in pixels, e.g. ``(1, 2, 4, 8)``) appends, for each width
    :math:`w`, the skewness and excess kurtosis of the patch image smoothed by a Gaussian of
    standard deviation :math:`w` pixels (:func:`smoothed_moments`). The pixel histogram loses
    the skewness under white noise (by :math:`(1 + \sigma_n^2/\sigma^2)^{-3/2}`); smoothing
    first keeps more of it, which is what a network can learn to do.
    """
    if psd not in ("sphere", "flat"):
        raise ValueError(f"psd must be 'sphere' (anafast of the zero-padded patch) or 'flat' "
                         f"(FFT of the patch image), got {psd!r}")
    patches = _as_patches(patches, sampling)
    hb = np.linspace(-hist_range, hist_range, n_hist_bins + 1)
    hist = np.stack([np.histogram(np.clip(x, -hist_range, hist_range), bins=hb)[0] / len(x)
                     for x in patches])
    spec = _flat_psd(patches, sampling, n_ell_bins) if psd == "flat" else \
        _sphere_psd(patches, sampling, n_ell_bins)
    feats = [spec, hist]
    if len(moment_scales):
        feats.append(smoothed_moments(patches, sampling, moment_scales))
    return np.concatenate(feats, axis=1)


def smoothed_moments(patches: np.ndarray, sampling: HEALPix,
                     scales: Sequence[float] = (1, 2, 4, 8)) -> np.ndarray:
    r"""Skewness and excess kurtosis of each patch after Gaussian smoothing at each scale.

    The patch is read as its square face image (:func:`patch_image_index`) and convolved with
    a Gaussian of standard deviation :math:`w` pixels (``scipy.ndimage.gaussian_filter``,
    edges reflected), then :math:`\gamma_1 = \langle y^3 \rangle / \langle y^2 \rangle^{3/2}`
    and :math:`\gamma_2 = \langle y^4 \rangle / \langle y^2 \rangle^2 - 3` of the centred
    image :math:`y`. For independent pixels of skewness :math:`\gamma` and a filter
    :math:`h`, :math:`\gamma_1 = \gamma \sum h^3 / (\sum h^2)^{3/2}`.

    A patch without fluctuations (its smoothed variance at round-off level) gets 0 and 0,
    the values of a Gaussian field.

    Returns ``[n_patches, 2 len(scales)]``: (skewness, kurtosis) per scale.
    """
    from scipy.ndimage import gaussian_filter

    scales = [float(w) for w in scales]
    if any(not w > 0 for w in scales):
        raise ValueError(f"moment scales are Gaussian widths in pixels and must be > 0, got {scales}")
    idx, side = patch_image_index(sampling)
    patches = _as_patches(patches, sampling)
    out = np.empty((len(patches), 2 * len(scales)))
    for i, x in enumerate(patches):
        img = np.asarray(x, dtype=np.float64)[idx].reshape(side, side)
        bad = ~np.isfinite(img) | (img == hp.UNSEEN)
        if bad.any():  # one such pixel would set every moment of the patch
            raise ValueError(f"patch {i} has {int(bad.sum())} pixels that are not finite or UNSEEN "
                             "(masked): smoothed moments need a fully observed patch")
        # the filter's round-off on a constant image is ~1e-16 of its level
        floor = (1e-12 * np.max(np.abs(img))) ** 2
        for j, w in enumerate(scales):
            y = gaussian_filter(img, w, mode="reflect").ravel()
            y = y - y.mean()
            m2 = np.mean(y**2)
            if m2 <= floor:
                out[i, 2 * j: 2 * j + 2] = 0.0
                continue
            out[i, 2 * j] = np.mean(y**3) / m2**1.5
            out[i, 2 * j + 1] = np.mean(y**4) / m2**2 - 3.0
    return out


def _sphere_psd(patches: np.ndarray, sampling: HEALPix, n_bins: int) -> np.ndarray:
    nside = sampling.nside
    lmax = 3 * nside - 1
    edges = np.unique(np.geomspace(2, lmax + 1, n_bins + 1).astype(int))
    ring = hp.nest2ring(nside, sampling.pixels)
    full = np.zeros(12 * nside**2)
    out = []
    with _one_openmp_thread():
        for x in patches:
            full[ring] = x
            cl = hp.anafast(full, lmax=lmax, use_pixel_weights=False, iter=0)
            out.append([np.log(cl[a:b].mean() + 1e-30) for a, b in zip(edges[:-1], edges[1:])])
    return np.asarray(out)


def _flat_psd(patches: np.ndarray, sampling: HEALPix, n_bins: int) -> np.ndarray:
    idx, side = patch_image_index(sampling)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side), indexing="ij"))
    edges = np.geomspace(1.0 / side, 1.0 / math.sqrt(2) + 1e-9, n_bins + 1)
    which = np.digitize(k.ravel(), edges) - 1  # -1: the mean (k = 0), n_bins: none
    counts = np.bincount(which[which >= 0], minlength=n_bins + 1)[:n_bins]
    if np.any(counts == 0):
        raise ValueError(f"a {side}x{side} patch has no Fourier mode in some of the {n_bins} "
                         f"k-bins; use fewer bins (n_ell_bins) or a larger patch")
    out = np.empty((len(patches), n_bins))
    for i in range(0, len(patches), 64):  # bounded memory for large patches
        img = patches[i:i + 64][:, idx].reshape(-1, side, side)
        power = np.abs(np.fft.fft2(img)).reshape(len(img), -1) ** 2 / side**2
        keep = (which >= 0) & (which < n_bins)
        sums = np.stack([np.bincount(which[keep], weights=p[keep], minlength=n_bins)[:n_bins]
                         for p in power])
        out[i:i + 64] = np.log(sums / counts + 1e-30)
    return out


def fit_logistic(X: np.ndarray, y: np.ndarray, weight_decay: float = 1e-2, n_classes: int = 2):
    """Multinomial logistic regression on standardised features (L-BFGS, L2 penalty);
    returns ``predict(X) -> labels``."""
    mu, sd = X.mean(0), X.std(0) + 1e-12
    Xt = torch.as_tensor((X - mu) / sd, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    lin = nn.Linear(X.shape[1], n_classes).double()
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=100, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(Xt), yt) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(Z):
        with torch.no_grad():
            return lin(torch.as_tensor((Z - mu) / sd, dtype=torch.float64)).argmax(1).numpy()

    return predict


def linear_baseline(dataset, train_epochs: int = 2, **feature_kw) -> Dict[str, float]:
    """Power spectrum + histogram features and logistic regression on a cosmology dataset
    (:class:`CosmologyPatches` or :class:`ConvergenceMapFiles`); the training set is seen
    with ``train_epochs`` noise draws. ``feature_kw`` go to :func:`psd_histogram_features`
    (e.g. ``psd="flat"`` for large patches). Returns validation and test accuracy."""
    def feats(split, epochs):
        ds = dataset.split(split)
        X, y = [], []
        for e in range(epochs):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(e)
            xs = np.stack([ds[i][0][:, 0].numpy() for i in range(len(ds))])
            X.append(psd_histogram_features(xs, dataset.sampling, **feature_kw))
            y.append(np.asarray(ds.labels))
        return np.concatenate(X), np.concatenate(y)

    predict = fit_logistic(*feats("train", train_epochs), n_classes=dataset.n_classes)
    out = {}
    for split in ("val", "test"):
        X, y = feats(split, 1)
        out[f"{split}_accuracy"] = float(np.mean(predict(X) == y))
    return out


# --------------------------------------------------------------------------------------
# models for the comparison
# --------------------------------------------------------------------------------------
def _require_healpix(sampling: Sampling, model: str) -> None:
    if not isinstance(sampling, HEALPix):
        raise TypeError(
            f"model {model!r} works on HEALPix patches, got a {type(sampling).__name__} sampling; "
            "use sampling {name: healpix_patch, nside: ..., order: ...} (or healpix for the full sky)"
        )


def patch_image_index(sampling: HEALPix) -> Tuple[np.ndarray, int]:
    """For a patch sampling, ``(idx, side)`` with ``idx[r * side + c]`` the vertex at row
    ``r``, column ``c`` of the square patch (HEALPix face coordinates)."""
    _require_healpix(sampling, "patch_cnn2d")
    x, y, f = hp.pix2xyf(sampling.nside, sampling.pixels, nest=True)
    if np.unique(f).size != 1:
        raise ValueError("the patch spans several HEALPix base pixels: it is not a square image")
    side = int(round(math.sqrt(sampling.npix)))
    r, c = x - x.min(), y - y.min()
    if r.max() >= side or c.max() >= side:
        raise ValueError("the patch is not a square block of pixels")
    idx = np.empty(side * side, dtype=np.int64)
    idx[r * side + c] = np.arange(sampling.npix)
    return idx, side


class PatchCNN2d(nn.Module):
    """Planar CNN on a square HEALPix patch (DeepSphere's 2D CNN baseline): the patch is
    read as a ``side x side`` image in face coordinates, then ``len(channels)`` blocks of
    3x3 convolution, batch norm, ReLU and 2x2 pooling, global average, linear head.

    Shape: ``[B, npix, in_channels] -> [B, n_classes]``.
    """

    def __init__(self, sampling: HEALPix, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 32, 64), pooling: str = "average"):
        super().__init__()
        idx, self.side = patch_image_index(sampling)
        self.register_buffer("index", torch.as_tensor(idx), persistent=False)
        layers, c_in = [], int(in_channels)
        pool = nn.AvgPool2d(2) if pooling == "average" else nn.MaxPool2d(2)
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), pool]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, int(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = x[:, self.index].transpose(1, 2).reshape(x.shape[0], x.shape[2], self.side, self.side)
        return self.head(self.body(img).mean(dim=(2, 3)))


class _OnFullSphere(nn.Module):
    """A full-sphere model ``self.model`` applied to a partial-sky HEALPix signal,
    zero-padded to the full sphere of the same nside (spherical transforms need the whole
    sphere)."""

    def __init__(self, sampling: HEALPix, name: str):
        super().__init__()
        _require_healpix(sampling, name)
        self.npix_full = 12 * sampling.nside**2
        self.register_buffer("pixels", torch.as_tensor(sampling.pixels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.pixels.numel()
        if x.dim() != 3 or x.shape[1] != n:
            raise ValueError(f"expected a patch signal [batch, vertices={n}, channels], got shape "
                             f"{tuple(x.shape)}" + ("; add a batch axis with x.unsqueeze(0)"
                                                     if x.dim() == 2 and x.shape[0] == n else ""))
        full = x.new_zeros(x.shape[0], self.npix_full, x.shape[2])
        full[:, self.pixels] = x
        return self.model(full)


class EmbeddedSpectralClassifier(_OnFullSphere):
    """:class:`deepsphere.spectral.SpectralClassifier` on a partial-sky HEALPix signal,
    zero-padded to the full sphere of the same nside. The other parameters are the spectral
    classifier's."""

    def __init__(self, sampling: HEALPix, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (8, 16), lmax: int = 8, oversampling: float = 1.0,
                 iterations: int = 0):
        super().__init__(sampling, "patch_spectral")
        from ..spectral import SpectralClassifier

        self.model = SpectralClassifier(HEALPix(sampling.nside), in_channels, n_classes, channels, lmax,
                                        oversampling, iterations)


class EmbeddedZonalClassifier(_OnFullSphere):
    """:class:`deepsphere.spectral.ZonalClassifier` on a partial-sky HEALPix signal:
    zero-padded to the full sphere of the same nside, filtered there by isotropic spectral
    convolutions, and averaged over the patch's own vertices. The other parameters are the
    zonal classifier's; ``lmax`` defaults to ``2 nside``."""

    def __init__(self, sampling: HEALPix, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 16), lmax: Optional[int] = None,
                 n_anchors: Optional[int] = 16, iterations: int = 0, backend: str = "torch",
                 batchnorm: bool = True):
        super().__init__(sampling, "patch_zonal")
        from ..spectral import ZonalClassifier

        self.model = ZonalClassifier(HEALPix(sampling.nside), in_channels, n_classes, channels,
                                     2 * sampling.nside if lmax is None else lmax, n_anchors,
                                     iterations, backend, readout=sampling.pixels,
                                     batchnorm=batchnorm)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m deepsphere.data.cosmology CONFIG [--set k=v ...]``: the power spectrum +
    histogram linear baseline on the dataset a training config describes."""
    import argparse
    import json
    import time

    from ..training.builders import build_dataset, build_sampling
    from ..training.config import load_config

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--psd", choices=("sphere", "flat"), default="sphere",
                   help="power spectrum estimator: anafast of the zero-padded patch (default; "
                        "slow beyond nside ~256) or the FFT of the patch image (flat sky)")
    p.add_argument("--moments", type=float, nargs="+", default=[], metavar="W",
                   help="also the skewness and kurtosis of the patch smoothed by Gaussians of "
                        "these widths in pixels (e.g. --moments 1 2 4 8)")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    t0 = time.time()
    ds = build_dataset(config, build_sampling(config))
    res = linear_baseline(ds, psd=args.psd, moment_scales=args.moments)
    res["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
