"""Irregular samplings: any set of points given by longitude and latitude (stations,
ocean-only grids, sensor footprints)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .base import Sampling, wrap_longitude

_UNITS = ("deg", "rad")


def lonlat_to_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit vectors from longitude and latitude in radians."""
    clat = np.cos(lat)
    return np.stack([clat * np.cos(lon), clat * np.sin(lon), np.sin(lat)], axis=1)


class Irregular(Sampling):
    r"""Points at arbitrary longitudes and latitudes.

    Parameters
    ----------
    lon, lat : array_like, shape ``(n,)``
        Coordinates, in ``units``. Longitude in :math:`[-180, 360]` degrees
        (:math:`[-\pi, 2\pi]` rad), latitude in :math:`[-90, 90]` degrees.
    units : {'deg', 'rad'}
        Required: the units of ``lon`` and ``lat``. There is no default because a
        silent degree/radian mix-up gives a plausible-looking but wrong graph.
    names : sequence of str, optional
        Labels of the points (e.g. station IDs), used in error messages and kept for
        the user.
    min_separation : float
        Points closer than this (radians) are duplicates and rejected.
    """

    def __init__(self, lon, lat, units: str, names: Optional[Sequence[str]] = None,
                 min_separation: float = 1e-9):
        if not isinstance(units, str) or units not in _UNITS:
            raise ValueError(f"units must be 'deg' or 'rad' (no default on purpose), got {units!r}")
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if lon.ndim != 1 or lat.shape != lon.shape:
            hint = ("; for a grid of points (e.g. from np.meshgrid) pass lon.ravel() and lat.ravel()"
                    if lon.ndim > 1 and lat.shape == lon.shape else "")
            raise ValueError(
                f"lon and lat must be 1-D arrays of equal length, got shapes {lon.shape} and "
                f"{lat.shape}{hint}"
            )
        if lon.size == 0:
            raise ValueError("an Irregular sampling needs at least one point; the list is empty")
        if not (isinstance(min_separation, (int, float, np.integer, np.floating))
                and not isinstance(min_separation, (bool, np.bool_))
                and np.isfinite(min_separation) and min_separation >= 0):
            raise ValueError(
                f"min_separation must be a distance >= 0 in radians, got {min_separation!r}"
            )
        if isinstance(names, (str, bytes)):  # a string would name the points by its letters
            raise TypeError(f"names must be a sequence of labels, one per point, got the string {names!r}")
        self.names = None if names is None else [str(n) for n in names]
        if self.names is not None and len(self.names) != lon.size:
            raise ValueError(f"{len(self.names)} names for {lon.size} points")
        if units == "rad":
            lon_d, lat_d = np.degrees(lon), np.degrees(lat)
        else:
            lon_d, lat_d = lon, lat
        bad = np.flatnonzero(~np.isfinite(lon_d) | ~np.isfinite(lat_d)
                             | (lat_d < -90) | (lat_d > 90) | (lon_d < -180) | (lon_d > 360))
        if bad.size:
            rows = ", ".join(f"row {i}{self._label(i)} (lon={lon[i]}, lat={lat[i]})" for i in bad[:10])
            raise ValueError(
                f"{bad.size} point(s) have coordinates out of range or not finite for units="
                f"{units!r} (lat in [-90, 90], lon in [-180, 360] degrees): {rows}"
                + (". Are the units right, or are lon and lat swapped?" if units == "deg" else
                   ". Are these degrees? Then pass units='deg'.")
            )
        self._lon = np.radians(lon_d)
        self._lat = np.radians(lat_d)
        self._vectors = lonlat_to_vectors(self._lon, self._lat)
        self._min_separation = float(min_separation)
        self._check_duplicates(min_separation)
        self._areas = None

    def _label(self, i: int) -> str:
        return f" [{self.names[i]}]" if self.names is not None else ""

    def _check_duplicates(self, min_sep: float) -> None:
        from scipy.spatial import cKDTree

        tree = cKDTree(self._vectors)
        pairs = tree.query_pairs(2 * np.sin(min_sep / 2) if min_sep > 0 else 0.0, output_type="ndarray")
        if len(pairs):
            shown = ", ".join(f"rows {i}{self._label(i)} and {j}{self._label(j)}" for i, j in pairs[:10])
            raise ValueError(
                f"{len(pairs)} duplicate point pair(s) (closer than {min_sep:g} rad): {shown}. "
                "Merge or drop duplicated stations before building a sampling."
            )

    @classmethod
    def from_csv(cls, path: Union[str, Path], units: str, lon: str = "lon", lat: str = "lat",
                 name: Optional[str] = None, delimiter: str = ",") -> "Irregular":
        """Read points from a CSV file with a header row.

        ``lon``/``lat``/``name`` are column names; ``units`` is required.
        """
        path = Path(path)
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark glued to the first name
        with path.open(newline="", encoding="utf-8-sig") as fh:
            # skipinitialspace: "lon, lat" headers and "1.5, 2.5" rows are common hand-written CSV
            reader = csv.DictReader(fh, delimiter=delimiter, skipinitialspace=True)
            if reader.fieldnames:
                reader.fieldnames = [c.strip() for c in reader.fieldnames]
            cols = reader.fieldnames or []
            for c in (lon, lat) + ((name,) if name else ()):
                if c not in cols:
                    raise ValueError(f"{path}: no column {c!r}; columns are {cols}")
            lons, lats, names = [], [], []
            for i, row in enumerate(reader, start=2):
                try:
                    lons.append(float(row[lon]))
                    lats.append(float(row[lat]))
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{path}, line {i}: cannot read lon={row.get(lon)!r}, lat={row.get(lat)!r} as numbers"
                    ) from None
                names.append(row[name] if name else f"line {i}")
        if not lons:
            raise ValueError(f"{path}: no stations (the file has a header but no rows)")
        return cls(lons, lats, units=units, names=names)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    @property
    def lon(self) -> np.ndarray:
        return wrap_longitude(self._lon, degrees=True)

    @property
    def lat(self) -> np.ndarray:
        return np.degrees(self._lat)

    @property
    def areas(self) -> np.ndarray:
        """Areas of the spherical Voronoi cells of the points (needs >= 4 points)."""
        if self._areas is None:
            if self.npix < 4:
                raise ValueError("Voronoi areas need at least 4 points")
            from scipy.spatial import SphericalVoronoi

            try:
                self._areas = SphericalVoronoi(self._vectors).calculate_areas()
            except ValueError as e:  # scipy's words name neither the cause nor a way out
                raise ValueError(
                    f"cannot compute the Voronoi areas of these {self.npix} points ({e}): they "
                    "need points not all on one plane (e.g. not all on the equator or one "
                    "parallel) and no two closer than about 1e-6 rad (scipy's duplicate "
                    "threshold; min_separation only refuses closer than "
                    f"{self._min_separation:g} rad)"
                ) from None
        return self._areas

    def recipe(self) -> dict:
        from .healpix import _hash_array

        return {"name": "irregular", "npix": self.npix, "points_hash": _hash_array(self._vectors)}
