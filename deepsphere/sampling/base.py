"""The contract every sampling of the sphere fulfils."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import numpy as np


def wrap_longitude(phi: np.ndarray, degrees: bool = False) -> np.ndarray:
    r"""Longitudes in radians wrapped into :math:`[0, 2\pi)`, or converted to degrees in
    :math:`[0, 360)`. ``np.mod`` alone rounds a tiny negative angle (-1e-17) up to exactly
    :math:`2\pi`, and the conversion may round an angle just below it up to 360."""
    out = np.mod(phi, 2 * np.pi)
    if degrees:
        out = np.degrees(out)
    out[out >= (360.0 if degrees else 2 * np.pi)] = 0.0
    return out


class Sampling(ABC):
    r"""A finite set of points on the unit sphere :math:`S^2`.

    A sampling is *where* a signal lives. Everything downstream (graphs, convolutions,
    pooling, models) only needs what this class exposes, so a user's own pixelisation
    plugs in by subclassing it and implementing :attr:`vectors`.

    Conventions: ``theta`` is the colatitude in :math:`[0, \pi]`, ``phi`` the longitude in
    :math:`[0, 2\pi)`, ``lat = 90° - theta`` and ``lon = phi`` in degrees (healpy's
    ``lonlat=True`` convention). Vectors are :math:`(\sin\theta\cos\phi, \sin\theta\sin\phi,
    \cos\theta)`.
    """

    #: Whether :meth:`coarsen` and :meth:`parent_index` are defined.
    hierarchical: bool = False

    @property
    @abstractmethod
    def vectors(self) -> np.ndarray:
        """Unit vectors of the points, float64 array of shape ``(npix, 3)``."""

    @property
    def npix(self) -> int:
        """Number of points."""
        return int(self.vectors.shape[0])

    def __len__(self) -> int:
        return self.npix

    @property
    def theta(self) -> np.ndarray:
        """Colatitude in radians, shape ``(npix,)``."""
        z = np.clip(self.vectors[:, 2], -1.0, 1.0)
        return np.arccos(z)

    @property
    def phi(self) -> np.ndarray:
        """Longitude in radians in :math:`[0, 2\\pi)`, shape ``(npix,)``."""
        v = self.vectors
        return wrap_longitude(np.arctan2(v[:, 1], v[:, 0]))

    @property
    def lon(self) -> np.ndarray:
        """Longitude in degrees in :math:`[0, 360)`."""
        v = self.vectors
        return wrap_longitude(np.arctan2(v[:, 1], v[:, 0]), degrees=True)

    @property
    def lat(self) -> np.ndarray:
        """Latitude in degrees in :math:`[-90, 90]`."""
        return 90.0 - np.degrees(self.theta)

    @property
    def areas(self) -> Optional[np.ndarray]:
        r"""Area (quadrature weight) of each point in steradians, summing to :math:`4\pi`
        on a full-sphere sampling; ``None`` where the sampling does not define one."""
        return None

    @property
    def resolution(self) -> float:
        """Typical distance between neighbouring points, in radians: :math:`\\sqrt{4\\pi/n}`
        for a full-sphere sampling. Used to scale kernel widths."""
        return float(np.sqrt(4 * np.pi / self.npix))

    def coarsen(self) -> "Sampling":
        """The next coarser sampling of the hierarchy (pooling by 4 on HEALPix and
        equiangular grids)."""
        raise NotImplementedError(
            f"{type(self).__name__} is not hierarchical: it has no coarser level. Use "
            "deepsphere.nn.RemapPool with an explicit coarser sampling instead."
        )

    def parent_index(self) -> np.ndarray:
        """For each point, the index of its parent in :meth:`coarsen`'s points,
        int64 array of shape ``(npix,)``."""
        raise NotImplementedError(
            f"{type(self).__name__} is not hierarchical: it has no parent map."
        )

    def hierarchy(self, levels: int) -> list:
        """``[self, self.coarsen(), self.coarsen().coarsen(), ...]``, ``levels + 1`` entries."""
        out = [self]
        for _ in range(levels):
            out.append(out[-1].coarsen())
        return out

    def recipe(self) -> dict:
        """A JSON-serialisable description that rebuilds the sampling (used for caching
        and checkpoints).

        The default names the class and identifies the points, ``{"name": class name,
        "npix": n, "points_hash": hash of vectors}``: enough for graph caches and for checking
        a sampling against a model's, not to rebuild the points (pass the sampling to
        ``Model.from_config``). Override it to name a sampling that rebuilds from it."""
        from .healpix import _hash_array

        return {"name": type(self).__name__, "npix": self.npix,
                "points_hash": _hash_array(np.asarray(self.vectors, dtype=np.float64))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(npix={self.npix})"
