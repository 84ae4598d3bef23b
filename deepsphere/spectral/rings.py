"""Iso-latitude ring geometry of a sampling: what a spherical harmonic transform needs.

A ring sampling is a set of rings of constant colatitude :math:`\\theta_r`, each with
:math:`n_r` equispaced longitudes :math:`\\phi_{rj} = \\phi_{0,r} + 2\\pi j / n_r` and a
quadrature weight :math:`w_r` per pixel. HEALPix (full sky) and the equiangular grids
(DH, SOFT, CC, GL) are ring samplings; partial skies and irregular point sets are not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import healpy as hp
import numpy as np

from ..sampling import Equiangular, HEALPix, Sampling


@dataclass
class RingGroup:
    """Rings sharing one number of longitudes ``nphi`` (so one batched FFT serves them)."""

    rings: np.ndarray    #: ring numbers, shape ``(R_g,)``
    nphi: int            #: longitudes per ring
    pixels: np.ndarray   #: sampling index of pixel ``j`` of ring ``rings[i]``, shape ``(R_g, nphi)``


@dataclass
class RingGeometry:
    """Rings of a sampling, with pixel indices *in the sampling's own order* (NESTED for
    HEALPix, ring-major for equiangular grids)."""

    theta: np.ndarray    #: colatitude of each ring, shape ``(R,)``
    phi0: np.ndarray     #: longitude of the first pixel of each ring, shape ``(R,)``
    nphi: np.ndarray     #: longitudes per ring, shape ``(R,)``
    weight: np.ndarray   #: quadrature weight of each pixel of a ring (steradians), shape ``(R,)``
    groups: List[RingGroup]
    npix: int
    #: largest degree the quadrature integrates exactly (products of two harmonics of this
    #: degree); ``None`` where no degree is exact (HEALPix).
    exact_lmax: int | None

    @property
    def nrings(self) -> int:
        return len(self.theta)


def ring_geometry(sampling: Sampling) -> RingGeometry:
    """The :class:`RingGeometry` of a full-sky HEALPix or an equiangular sampling."""
    if isinstance(sampling, HEALPix):
        return _healpix_rings(sampling)
    if isinstance(sampling, Equiangular):
        return _equiangular_rings(sampling)
    raise TypeError(
        f"spherical harmonic transforms need an iso-latitude ring sampling (full-sky HEALPix "
        f"or Equiangular), got {type(sampling).__name__}. For irregular points, interpolate to "
        "a grid first."
    )


def _healpix_rings(s: HEALPix) -> RingGeometry:
    if not s.full_sky:
        raise ValueError(
            f"the spherical harmonic transform needs a full-sky HEALPix sampling; this one has "
            f"{s.npix} of {12 * s.nside ** 2} pixels. Fill the missing pixels (e.g. with zeros "
            "through HEALPix(nside).take(map, order, unseen='zero')) to transform a masked map."
        )
    nside = s.nside
    rings = np.arange(1, 4 * nside)
    start, ringpix, costheta, _, _ = hp.ringinfo(nside, rings)
    start = np.asarray(start, dtype=np.int64)
    ringpix = np.asarray(ringpix, dtype=np.int64)
    theta = np.arccos(np.clip(np.asarray(costheta, dtype=np.float64), -1, 1))
    _, phi0 = hp.pix2ang(nside, start)
    groups = []
    for n in np.unique(ringpix):
        rs = np.flatnonzero(ringpix == n)
        ring_pix = start[rs][:, None] + np.arange(n)[None, :]
        groups.append(RingGroup(rs, int(n), hp.ring2nest(nside, ring_pix).astype(np.int64)))
    w = np.full(len(rings), 4 * np.pi / (12 * nside ** 2))
    return RingGeometry(theta, np.asarray(phi0, dtype=np.float64), ringpix, w, groups,
                        12 * nside ** 2, None)


def _equiangular_rings(s: Equiangular) -> RingGeometry:
    nlat, nlon = s.nlat, s.nlon
    pixels = np.arange(nlat * nlon, dtype=np.int64).reshape(nlat, nlon)
    group = RingGroup(np.arange(nlat), nlon, pixels)
    w = s.ring_weights * (2 * np.pi / nlon)
    # DH/SOFT/CC integrate polynomials of degree < 2b in cos(theta), GL of degree <= 2b+1; the
    # 2b longitudes separate orders |m - m'| < 2b: products of degree <= b-1 are exact on all.
    return RingGeometry(s.theta_rings.copy(), np.zeros(nlat), np.full(nlat, nlon), w, [group],
                        s.npix, s.bandwidth - 1)
