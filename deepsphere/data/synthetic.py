"""Synthetic data on any sampling, generated on the fly (nothing is downloaded).

:class:`SyntheticFields` (classification) and :class:`SyntheticSegmentation` (per-pixel
labels) draw Gaussian random fields on the sphere with a power spectrum
:math:`C_\\ell \\propto (\\ell + 1)^{-s}`. The spherical-harmonic coefficients are drawn
with a seeded :class:`numpy.random.Generator` (``healpy.synfast`` would use numpy's global
RNG) and synthesised with ``healpy.alm2map``; maps are returned in the sampling's order
(NESTED for HEALPix; interpolated from a HEALPix map for other samplings).
"""
from __future__ import annotations

import contextlib
from typing import List, Optional

import healpy as hp
import numpy as np
import torch
from torch.utils.data import Dataset

from ..sampling import HEALPix, Sampling
from .base import SPLITS, LabelledDataset



def random_alm(cl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Complex alm (healpy layout) of a Gaussian field with power spectrum ``cl``:
    :math:`a_{\ell 0} \sim N(0, C_\ell)`, and for :math:`m > 0` real and imaginary parts
    :math:`\sim N(0, C_\ell / 2)`, so that :math:`\langle |a_{\ell m}|^2 \rangle = C_\ell`."""
    lmax = len(cl) - 1
    ell, m = hp.Alm.getlm(lmax)
    sd = np.sqrt(cl[ell])
    re = rng.standard_normal(ell.size)
    im = rng.standard_normal(ell.size)
    alm = np.where(m == 0, sd * re, sd * (re + 1j * im) / np.sqrt(2))
    return alm.astype(np.complex128)


def _one_openmp_thread():
    """healpy's transforms run OpenMP threads that spin when the cores are shared (100x
    slower at nside 16 on a busy 2-core machine); small maps are faster on one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="openmp")


def fields_on(sampling: Sampling, cls_per_map: List[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Gaussian random fields with the given spectra, evaluated on ``sampling``'s points:
    array ``(n_maps, sampling.npix)``."""
    if isinstance(sampling, HEALPix):
        nside = sampling.nside
    else:  # a HEALPix map at least as fine as the sampling, then bilinear interpolation
        nside = 1
        while 12 * nside**2 < 4 * sampling.npix:
            nside *= 2
    theta, phi = (None, None) if isinstance(sampling, HEALPix) else (sampling.theta, sampling.phi)
    out = np.empty((len(cls_per_map), sampling.npix))
    if theta is None:
        ring_of_nested = hp.nest2ring(nside, sampling.pixels)
    with _one_openmp_thread():
        for i, cl in enumerate(cls_per_map):
            ring = hp.alm2map(random_alm(cl, rng), nside, lmax=len(cl) - 1)
            out[i] = ring[ring_of_nested] if theta is None else hp.get_interp_val(ring, theta, phi)
    return out


def power_law(lmax: int, slope: float) -> np.ndarray:
    r""":math:`C_\ell = (\ell + 1)^{-s}` for :math:`\ell \geq 1`, no monopole."""
    ell = np.arange(lmax + 1, dtype=np.float64)
    cl = (ell + 1.0) ** (-float(slope))
    cl[0] = 0.0
    return cl


def _default_lmax(sampling: Sampling) -> int:
    if isinstance(sampling, HEALPix):
        return 3 * sampling.nside - 1
    return max(int(np.sqrt(sampling.npix / 2)), 2)  # about the band limit the points carry


class _MapSplit(Dataset):
    """One split: fixed clean maps plus white noise, redrawn each epoch for training
    (noise of item i in epoch e comes from a generator seeded by (seed, e, i), so runs,
    resumed runs and distributed runs see the same noise)."""

    def __init__(self, maps: np.ndarray, labels: np.ndarray, noise: float, seed: int,
                 split: str, redraw: bool):
        self.maps = maps.astype(np.float32)
        self.labels = labels
        self.noise = float(noise)
        self.seed = int(seed)
        self.split_id = SPLITS.index(split)
        self.redraw = redraw
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, i: int):
        x = self.maps[i]
        if self.noise > 0:
            epoch = self.epoch if self.redraw else 0
            rng = np.random.default_rng([self.seed, 1 + self.split_id, epoch, int(i)])
            x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x[:, None])), torch.as_tensor(self.labels[i])


class SyntheticFields(LabelledDataset):
    r"""Classify Gaussian random fields by the slope of their power spectrum.

    Class :math:`c` has :math:`C_\ell \propto (\ell+1)^{-s_c}` with ``slopes[c]``. Every
    map is scaled to unit standard deviation over the sampling's points, so only the
    spectral *shape* tells the classes apart (small scales are relatively stronger for a
    shallower slope), then white noise of standard deviation ``noise`` is added.

    Parameters
    ----------
    sampling : Sampling
        Where the maps live (HEALPix full or partial sky, or any other sampling).
    n_train, n_val, n_test : int
        Number of maps per split, balanced over classes.
    slopes : list of float
        One spectral slope per class.
    noise : float
        Standard deviation of the additive white noise.
    redraw_noise : bool
        Draw new training noise every epoch (validation and test noise stay fixed).
    lmax : int, optional
        Band limit of the fields; default ``3 nside - 1`` on HEALPix.
    seed : int
        Everything (maps, labels, noise) is a function of this seed.

    Items are ``(x, y)`` with ``x`` float32 ``[npix, 1]`` and ``y`` an int64 label.
    """

    task = "classification"
    in_channels = 1

    def __init__(self, sampling: Sampling, n_train: int = 400, n_val: int = 100, n_test: int = 200,
                 slopes: List[float] = (2.0, 2.5), noise: float = 0.5, redraw_noise: bool = True,
                 lmax: Optional[int] = None, seed: int = 0):
        if len(slopes) < 2:
            raise ValueError(f"slopes needs one value per class (at least 2), got {list(slopes)}")
        for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if n < 1:
                raise ValueError(f"{name} must be >= 1, got {n}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.sampling = sampling
        self.slopes = [float(s) for s in slopes]
        self.n_classes = len(self.slopes)
        self.class_names = [f"slope {s:g}" for s in self.slopes]
        lmax = _default_lmax(sampling) if lmax is None else int(lmax)
        spectra = [power_law(lmax, s) for s in self.slopes]
        self._splits = {}
        for split, n in zip(SPLITS, (n_train, n_val, n_test)):
            rng = np.random.default_rng([seed, 100 + SPLITS.index(split)])
            labels = rng.permutation(np.arange(n) % self.n_classes).astype(np.int64)
            maps = fields_on(sampling, [spectra[c] for c in labels], rng)
            maps /= maps.std(axis=1, keepdims=True)
            self._splits[split] = _MapSplit(maps, labels, noise, seed, split,
                                            redraw=redraw_noise and split == "train")



class SyntheticSegmentation(LabelledDataset):
    r"""Segment the high peaks of a smooth random field seen through noise.

    The clean field has :math:`C_\ell \propto (\ell+1)^{-s}`, unit variance; pixel label
    1 where it exceeds ``threshold`` (about 16 % of pixels for a threshold of 1: an
    imbalanced task for class-weighted cross-entropy), else 0. The input is the field
    plus white noise of standard deviation ``noise``.

    Items are ``(x, y)`` with ``x`` float32 ``[npix, 1]`` and ``y`` int64 ``[npix]``.
    """

    task = "segmentation"
    in_channels = 1
    n_classes = 2
    class_names = ["background", "peak"]

    def __init__(self, sampling: Sampling, n_train: int = 200, n_val: int = 50, n_test: int = 50,
                 slope: float = 3.0, threshold: float = 1.0, noise: float = 0.5,
                 redraw_noise: bool = True, lmax: Optional[int] = None, seed: int = 0):
        self.sampling = sampling
        lmax = _default_lmax(sampling) if lmax is None else int(lmax)
        cl = power_law(lmax, slope)
        self._splits = {}
        for split, n in zip(SPLITS, (n_train, n_val, n_test)):
            rng = np.random.default_rng([seed, 200 + SPLITS.index(split)])
            maps = fields_on(sampling, [cl] * n, rng)
            maps /= maps.std(axis=1, keepdims=True)
            labels = (maps > threshold).astype(np.int64)
            self._splits[split] = _MapSplit(maps, labels, noise, seed, split,
                                            redraw=redraw_noise and split == "train")

