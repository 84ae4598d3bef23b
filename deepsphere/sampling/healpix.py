"""HEALPix sampling (NESTED ordering inside), full or partial sky."""
from __future__ import annotations

from typing import Optional, Sequence

import healpy as hp
import numpy as np

from .base import Sampling

UNSEEN = hp.UNSEEN
MAX_NSIDE = 8192
_ORDERS = ("NESTED", "RING")


def check_nside(nside) -> int:
    """Return ``nside`` as an int, or raise if it is not a power of two in [1, 8192]."""
    if isinstance(nside, (bool, np.bool_)):  # int(True) == 1 would pass silently
        raise TypeError(f"nside must be an integer power of two, got the boolean {nside!r}")
    try:
        n = int(nside)
    except (TypeError, ValueError):
        raise TypeError(f"nside must be an integer power of two, got {nside!r}") from None
    if n != nside or n < 1 or n > MAX_NSIDE or (n & (n - 1)) != 0:
        valid = ", ".join(str(2**i) for i in range(14))
        raise ValueError(
            f"nside={nside!r} is not a valid HEALPix resolution: it must be a power of two "
            f"between 1 and {MAX_NSIDE} ({valid}). For a map with npix pixels, nside = "
            "sqrt(npix / 12)."
        )
    return n


def nside_from_npix(npix: int) -> int:
    """The nside of a full-sky map with ``npix`` pixels, or a clear error."""
    nside = int(round(np.sqrt(npix / 12)))
    if 12 * nside * nside != npix:
        raise ValueError(
            f"a full-sky HEALPix map has 12*nside**2 pixels; {npix} is not of that form "
            "(is this a partial map? then pass its pixel indices)."
        )
    return check_nside(nside)


def check_order(order: str) -> str:
    if not isinstance(order, str) or order.upper() not in _ORDERS:
        raise ValueError(
            f"order must be 'NESTED' or 'RING' (healpy's ORDERING header), got {order!r}"
        )
    return order.upper()


def to_nested(m: np.ndarray, order: str) -> np.ndarray:
    """Reorder a full-sky map (last axis = pixels) from ``order`` to NESTED."""
    order = check_order(order)
    m = np.asarray(m)
    if order == "NESTED":
        return m
    nside = nside_from_npix(m.shape[-1])
    return m[..., hp.nest2ring(nside, np.arange(m.shape[-1]))]


def _pixel_indices(pixels, nside: int) -> np.ndarray:
    """``pixels`` as int64 NESTED indices of ``nside``, refusing what a cast would silently
    turn into other pixels: a boolean mask (True, False -> pixels 1, 0), fractional values
    (2.7 -> pixel 2) and indices outside ``[0, 12 nside^2)``."""
    p = np.asarray(pixels)
    if p.size == 0:
        return p.astype(np.int64).ravel()
    if p.dtype == bool:
        raise TypeError(
            "pixels must be integer NESTED indices, got a boolean array; for a boolean mask use "
            "HEALPix.from_mask(mask, order) or np.flatnonzero(mask)"
        )
    if not np.issubdtype(p.dtype, np.integer):
        raise TypeError(
            f"pixels must be integer NESTED indices, got dtype {p.dtype}; for a boolean mask use "
            "HEALPix.from_mask"
        )
    p = p.astype(np.int64)
    full = 12 * nside * nside
    bad = np.flatnonzero((p < 0) | (p >= full))
    if bad.size:
        raise ValueError(
            f"pixel indices out of range [0, {full}) for nside={nside}: {p.ravel()[bad[:10]].tolist()}"
        )
    return p


def closure(pixels: np.ndarray, nside: int, levels: int) -> np.ndarray:
    """Smallest superset of ``pixels`` that is closed under the NESTED hierarchy for
    ``levels`` poolings: every parent at level ``levels`` brings all its
    ``4**levels`` descendants. Returns sorted unique NESTED indices."""
    nside = check_nside(nside)
    pixels = np.unique(_pixel_indices(pixels, nside))
    if isinstance(levels, (bool, np.bool_)) or not isinstance(levels, (int, np.integer)):
        raise TypeError(f"levels must be an int (number of poolings), got {levels!r}")
    if levels <= 0:
        return pixels
    if nside >> levels < 1:
        raise ValueError(f"cannot pool nside={nside} {levels} times (nside would drop below 1)")
    f = 4**levels
    parents = np.unique(pixels // f)
    return (parents[:, None] * f + np.arange(f)[None, :]).ravel()


def is_closed(pixels: np.ndarray, levels: int) -> bool:
    """Whether a sorted unique NESTED pixel set is closed for ``levels`` poolings."""
    if levels <= 0:
        return True
    f = 4**levels
    pixels = np.asarray(pixels, dtype=np.int64)
    if len(pixels) % f:
        return False
    parents, counts = np.unique(pixels // f, return_counts=True)
    return bool(np.all(counts == f))


class HEALPix(Sampling):
    r"""HEALPix sampling in NESTED ordering, full sky or a subset of pixels.

    Parameters
    ----------
    nside : int
        Resolution, a power of two in :math:`[1, 8192]`; :math:`n_{pix} = 12\,n_{side}^2`.
    pixels : array of int, optional
        NESTED indices of the pixels kept (partial sky). ``None`` means the full sphere.
    levels : int
        Number of poolings (by 4) this sampling must support. A partial set must be closed
        under the NESTED parent/child relation for that many levels; use
        :func:`closure` (or ``HEALPix.from_pixels(..., extend=True)``) to extend a set.

    Notes
    -----
    Pixel ``i`` of a signal on this sampling is NESTED pixel ``self.pixels[i]``. Data in RING
    ordering enters only through :meth:`take` with ``order="RING"``.
    """

    hierarchical = True

    def __init__(self, nside: int, pixels: Optional[Sequence[int]] = None, levels: int = 0):
        self.nside = check_nside(nside)
        if isinstance(levels, (bool, np.bool_)) or not isinstance(levels, (int, np.integer)):
            # int(1.5) == 1 and int("2") == 2 would pass silently
            raise TypeError(f"levels must be an int (number of poolings), got {levels!r}")
        self.levels = int(levels)
        if self.levels < 0 or (self.nside >> self.levels) < 1:
            raise ValueError(
                f"levels={levels} poolings are impossible from nside={self.nside}: at most "
                f"{int(np.log2(self.nside))}."
            )
        full = 12 * self.nside**2
        if pixels is None:
            self._pixels = None
        else:
            p = np.asarray(pixels)
            if p.ndim != 1 or p.size == 0:
                raise ValueError("pixels must be a non-empty 1-D array of NESTED pixel indices")
            if not np.issubdtype(p.dtype, np.integer):
                raise TypeError(
                    f"pixels must be integer NESTED indices, got dtype {p.dtype}; for a boolean "
                    "mask use HEALPix.from_mask"
                )
            p = p.astype(np.int64)
            bad = np.flatnonzero((p < 0) | (p >= full))
            if bad.size:
                raise ValueError(
                    f"pixel indices out of range [0, {full}) for nside={self.nside} at positions "
                    f"{bad[:10].tolist()} (values {p[bad[:10]].tolist()})"
                )
            u = np.unique(p)
            if u.size != p.size:
                raise ValueError("pixels contains duplicate indices; pass each pixel once")
            if not np.array_equal(u, p):
                raise ValueError(
                    "pixels must be sorted in increasing NESTED order (np.sort them, and reorder "
                    "the data the same way)"
                )
            self._pixels = None if u.size == full else u
        if self._pixels is not None and not is_closed(self._pixels, self.levels):
            need = closure(self._pixels, self.nside, self.levels)
            raise ValueError(
                f"the partial-sky pixel set ({len(self._pixels)} pixels) is not closed under the "
                f"NESTED hierarchy for levels={self.levels}: pooling would mix missing pixels. "
                f"Extend it with deepsphere.sampling.healpix.closure(pixels, {self.nside}, "
                f"{self.levels}) ({len(need)} pixels) or HEALPix.from_pixels(..., extend=True)."
            )
        self._vectors = None

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def from_pixels(cls, nside: int, pixels, levels: int = 0, extend: bool = False) -> "HEALPix":
        """Partial sky from NESTED indices in any order; ``extend=True`` adds the pixels
        needed to close the set for ``levels`` poolings."""
        nside = check_nside(nside)
        p = np.unique(_pixel_indices(pixels, nside))
        if extend:
            p = closure(p, nside, levels)
        return cls(nside, p, levels)

    @classmethod
    def from_mask(cls, mask, order: str, levels: int = 0, extend: bool = False) -> "HEALPix":
        """Partial sky from a full-sky boolean mask (True = kept) in ``order`` ordering."""
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be boolean (True = pixel kept), got dtype {mask.dtype}")
        if mask.ndim != 1:  # a stack of maps would read as one map of a finer nside
            raise ValueError(
                f"mask must be one full-sky map, shape (12*nside**2,), got shape {mask.shape}; "
                "for a stack of masks pass their union, e.g. mask.any(axis=0)"
            )
        nside = nside_from_npix(mask.size)
        if not mask.any():
            raise ValueError(
                "the mask keeps no pixel (all False, or the map is entirely UNSEEN/NaN): there is "
                "nothing to build a sampling on. Check the mask polarity (True = pixel kept)."
            )
        mask = to_nested(mask, order)
        return cls.from_pixels(nside, np.flatnonzero(mask), levels, extend)

    @classmethod
    def from_map(cls, m, order: str, levels: int = 0, extend: bool = False) -> "HEALPix":
        """Partial sky from a full-sky map whose missing pixels are ``UNSEEN`` (or NaN)."""
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 1:  # a stack of maps would read as one map of a finer nside
            raise ValueError(
                f"from_map takes one full-sky map, shape (12*nside**2,), got shape {m.shape}; "
                "for a stack of maps observed on the same pixels pass one of them, else build "
                "the sampling from the union of their masks with HEALPix.from_mask"
            )
        if check_order(order) == "NESTED":
            # a RING map declared NESTED would keep the wrong pixels, silently
            check_nested_plausible(m, nside_from_npix(m.size))
        seen = ~(np.isclose(m, UNSEEN) | ~np.isfinite(m))
        return cls.from_mask(seen, order, levels, extend)

    # ---- geometry ----------------------------------------------------------------
    @property
    def full_sky(self) -> bool:
        return self._pixels is None

    @property
    def pixels(self) -> np.ndarray:
        """NESTED indices of the points, sorted."""
        if self._pixels is None:
            return np.arange(12 * self.nside**2, dtype=np.int64)
        return self._pixels

    @property
    def npix(self) -> int:
        return 12 * self.nside**2 if self._pixels is None else len(self._pixels)

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = np.stack(hp.pix2vec(self.nside, self.pixels, nest=True), axis=1)
        return self._vectors

    @property
    def areas(self) -> np.ndarray:
        return np.full(self.npix, hp.nside2pixarea(self.nside))

    @property
    def resolution(self) -> float:
        return float(np.sqrt(hp.nside2pixarea(self.nside)))

    # ---- hierarchy ---------------------------------------------------------------
    def coarsen(self) -> "HEALPix":
        if self.nside == 1:
            raise ValueError("nside=1 is the coarsest HEALPix level: cannot pool further")
        if not is_closed(self.pixels, 1):
            raise ValueError(
                "this partial-sky set is not closed for one pooling; build it with levels>=1"
            )
        coarse = None if self._pixels is None else np.unique(self._pixels // 4)
        return HEALPix(self.nside // 2, coarse, max(self.levels - 1, 0))

    def parent_index(self) -> np.ndarray:
        if self._pixels is None:
            return np.arange(self.npix, dtype=np.int64) // 4
        coarse = np.unique(self._pixels // 4)
        return np.searchsorted(coarse, self._pixels // 4).astype(np.int64)

    # ---- data --------------------------------------------------------------------
    def take(self, m, order: str, unseen: str = "raise") -> np.ndarray:
        """The values of a map on this sampling's pixels, in this sampling's order.

        Parameters
        ----------
        m : array, shape ``(..., 12*nside**2)`` (full sky) or ``(..., npix)`` (already restricted)
            The map; the last axis is pixels.
        order : {'NESTED', 'RING'}
            Ordering of ``m``; required because a RING map read as NESTED gives silent
            garbage. Only full-sky maps can be RING.
        unseen : {'raise', 'zero'}
            What to do with ``UNSEEN``/NaN/inf on this sampling's pixels: raise a clear
            error, or set them to zero (masking them; the pixels stay in the graph).
        """
        order = check_order(order)
        if unseen not in ("raise", "zero"):  # checked even when the map has no UNSEEN value
            raise ValueError(f"unseen must be 'raise' or 'zero', got {unseen!r}")
        m = np.asarray(m)
        if m.ndim == 0 or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise TypeError(
                f"a map must be a numeric array with pixels on its last axis, got dtype {m.dtype} "
                f"and shape {m.shape}; convert it with np.asarray(m, dtype=float)"
            )
        full = 12 * self.nside**2
        if m.shape[-1] == full:
            m = to_nested(m, order)
            if order == "NESTED":
                check_nested_plausible(m, self.nside)
            if self._pixels is not None:
                m = m[..., self._pixels]
        elif m.shape[-1] == self.npix:
            if order != "NESTED":
                raise ValueError(
                    "a partial map (one value per kept pixel) must be in this sampling's NESTED "
                    "order; RING conversion needs the full-sky map"
                )
        else:
            raise ValueError(
                f"map has {m.shape[-1]} pixels on its last axis; expected {full} (full sky at "
                f"nside={self.nside}) or {self.npix} (this sampling's pixels). Wrong nside? A map "
                f"with {m.shape[-1]} pixels has nside={np.sqrt(m.shape[-1] / 12):g}."
            )
        # UNSEEN (-1.6e30) overflows float16 to -inf, where isclose holds for every value
        bad = ~np.isfinite(m) | np.isclose(m if m.dtype.itemsize >= 4 else m.astype(np.float32), UNSEEN)
        if bad.any():
            if unseen == "raise":
                idx = np.flatnonzero(bad.reshape(-1, m.shape[-1]).any(0))
                raise ValueError(
                    f"map has {int(bad.sum())} UNSEEN/NaN/inf values on the sampling's pixels "
                    f"(first pixel positions {idx[:10].tolist()}). Restrict the sampling to the "
                    "observed pixels (HEALPix.from_map) or pass unseen='zero' to mask them."
                )
            m = np.where(bad, 0.0, m)
        return m

    def recipe(self) -> dict:
        r = {"name": "healpix", "nside": self.nside, "levels": self.levels}
        if self._pixels is not None:
            r["pixels_hash"] = _hash_array(self._pixels)
        return r

    def __repr__(self) -> str:
        sky = "full sky" if self.full_sky else f"{self.npix} pixels"
        return f"HEALPix(nside={self.nside}, {sky}, levels={self.levels})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, HEALPix) and other.nside == self.nside
                and np.array_equal(other.pixels, self.pixels))

    def __hash__(self) -> int:
        return hash((self.nside, self.npix))


def _hash_array(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


# Pixel values are clipped to these quantiles of the probed values (and 1 - them) before the
# differences: a few point sources then weigh like ordinary pixels in both orderings.
_CLIP_QUANTILE = 0.01
# Fewer seen neighbour pairs than this (in either ordering) cannot tell the orders apart.
_MIN_PAIRS = 256


def roughness_ratio(m: np.ndarray, nside: int, n_probe: int = 1 << 18, seed: int = 0) -> float:
    r"""How much rougher a full-sky map is read as NESTED than read as RING.

    With :math:`\tilde m` the map clipped to the 1st and 99th percentiles of its probed seen
    values, :math:`N_\mathrm{o}(p)` the 8 (or 7) neighbours of pixel :math:`p` in ordering
    :math:`\mathrm{o}`, and the means over the probed pixels :math:`p` and the pairs where both
    pixels are seen (not ``UNSEEN``/NaN/inf),

    .. math::
        R = \frac{\operatorname{mean}_{p,\, q \in N_\mathrm{NESTED}(p)} (\tilde m_p - \tilde m_q)^2}
                 {\operatorname{mean}_{p,\, q \in N_\mathrm{RING}(p)} (\tilde m_p - \tilde m_q)^2}.

    A smooth RING map read as NESTED gives a large :math:`R` (its NESTED "neighbours" are
    strangers); a correctly NESTED map gives :math:`R < 1` when smooth and about 1 when white
    noise, which looks the same in either order.

    Every pixel is probed when the map has at most ``n_probe`` pixels (up to nside 128), a
    random ``n_probe`` of them (drawn with ``seed``) otherwise, which keeps the cost near
    0.15 s at nside 1024 and 2048 (probing all pixels took 6 s at nside 1024). Probing every pixel makes an isolated bright pixel weigh the same in
    both orderings (it has 7 or 8 neighbours either way); a subset of probes did not, and one
    point source next to a probe could give any ratio. The clipping bounds what the pairs that
    touch a bright pixel can add: it matters for subsampled maps, for sources near a mask edge,
    and for a smooth RING map with sources, which stays detectable. A constant map, or one with
    fewer than 256 seen neighbour pairs in either ordering, gives 1 (undecidable).

    Returns
    -------
    float
        :math:`R`; only the first map along the leading axes is used.
    """
    m = np.asarray(m)
    if m.ndim > 1:
        m = m.reshape(-1, m.shape[-1])[0]
    npix = m.size
    if npix <= n_probe:
        pix = np.arange(npix)
    else:  # sorted: the gathers below then walk the map in order
        pix = np.sort(np.random.default_rng(seed).choice(npix, size=n_probe, replace=False))
    # values gathered before the float64 cast: a nside-2048 map is never copied whole
    centre = m[pix].astype(np.float64)
    seen = np.isfinite(centre) & (np.abs(centre) < 1e29)  # UNSEEN is -1.6375e30
    if seen.sum() < 2:
        return 1.0
    lo, hi = np.quantile(centre[seen], [_CLIP_QUANTILE, 1 - _CLIP_QUANTILE])
    d2 = []
    for nest in (True, False):
        nb = hp.get_all_neighbours(nside, pix, nest=nest)
        ok = nb >= 0
        near = m[np.where(ok, nb, 0)].astype(np.float64)
        ok &= np.isfinite(near) & (np.abs(near) < 1e29) & seen[None, :]
        d = np.clip(near, lo, hi) - np.clip(centre, lo, hi)[None, :]
        d2.append(d[ok] ** 2)
    if min(d2[0].size, d2[1].size) < _MIN_PAIRS:
        return 1.0
    rough = [float(np.mean(d)) for d in d2]
    return rough[0] / rough[1] if rough[1] > 0 else 1.0


def ring_roughness_if_suspect(m: np.ndarray, nside: int,
                              threshold: float = 2.5) -> Optional[float]:
    """The :func:`roughness_ratio` of a map declared NESTED when it is above ``threshold`` (the
    map almost surely is RING), else None. Maps below nside 4 are never flagged: too few
    neighbours to tell.

    The default 2.5 comes from measuring thousands of maps from nside 4 to 1024. Correctly
    ordered maps stay below 1.2 (Gaussian fields from white to very red spectra and beams up to
    1 rad, blue and high-pass fields, lognormal, binary and count maps, masked skies, 1-10 point
    sources), 1.55 for the most pixel-scale pattern there is (alternating +-1 pixels) and 2.0
    for up to 10 bright sources crowded into a small observed patch. RING maps smoothed over
    3 pixels or more give at least 3 read as NESTED from nside 8 on (3.5 for a beam of 0.2 rad
    at nside 16).
    Maps smoothed over less than about 2 pixels, and white noise, look alike in both orders
    and are not flagged."""
    if nside < 4:
        return None
    r = roughness_ratio(m, nside)
    return r if r > threshold else None


def check_nested_plausible(m: np.ndarray, nside: int, threshold: float = 2.5) -> None:
    """Raise if a map declared NESTED is much smoother when read as RING (so it almost
    surely is RING), see :func:`ring_roughness_if_suspect`. Maps with structure below the
    pixel scale are never flagged."""
    r = ring_roughness_if_suspect(m, nside, threshold)
    if r is not None:
        raise ValueError(
            f"this map was declared NESTED but looks like RING ordering: it is {r:.0f}x "
            "rougher between NESTED neighbours than between RING neighbours. Pass "
            "order='RING' (healpy.read_map returns RING unless nest=True), or check the "
            "FITS header ORDERING."
        )
