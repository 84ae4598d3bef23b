r"""Climate event segmentation: ClimateNet-style NetCDF fields on any sampling.

ClimateNet (CAM5 simulations labelled for extreme weather) stores one time step per NetCDF
file on a 768 x 1152 latitude-longitude grid: 16 atmospheric variables
(:data:`VARIABLES`) and a ``LABELS`` field (0 background, 1 tropical cyclone, 2
atmospheric river). This module

- reads such files (:func:`read_climatenet`; NetCDF4/HDF5 files need the optional
  ``netCDF4`` or ``h5netcdf`` package, NetCDF3 files are read by scipy),
- writes them (:func:`write_climatenet`, used for synthetic files and tests),
- regrids lat-lon fields to any sampling conservatively, by overlap area
  (:class:`LatLonRegridder`),
- generates physically plausible synthetic snapshots (:func:`synthetic_snapshot`): a
  moist tropical belt, synoptic pressure systems with geostrophic winds, elongated
  atmospheric-river filaments of precipitable water with along-filament winds, and compact
  tropical-cyclone vortices (Holland pressure and wind profiles, warm core, heavy rain),
- and serves either as the segmentation dataset :class:`ClimateSegmentation`.
"""
from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..sampling import HEALPix, Sampling
from .base import SPLITS, LabelledDataset
from ..io import atomic_path

#: The 16 ClimateNet input variables, in ClimateNet's order.
VARIABLES = ("TMQ", "U850", "V850", "UBOT", "VBOT", "QREFHT", "PS", "PSL", "T200", "T500",
             "PRECT", "TS", "TREFHT", "Z1000", "Z200", "ZBOT")
#: Units of the variables (CAM5 conventions).
UNITS = {"TMQ": "kg m-2", "U850": "m s-1", "V850": "m s-1", "UBOT": "m s-1", "VBOT": "m s-1",
         "QREFHT": "kg kg-1", "PS": "Pa", "PSL": "Pa", "T200": "K", "T500": "K",
         "PRECT": "m s-1", "TS": "K", "TREFHT": "K", "Z1000": "m", "Z200": "m", "ZBOT": "m"}
CLASS_NAMES = ["background", "tropical cyclone", "atmospheric river"]
BACKGROUND, TC, AR = 0, 1, 2

_EARTH_RADIUS = 6.371e6  # m
_OMEGA = 7.292e-5  # s-1
_G = 9.81
_RHO = 1.15  # near-surface air density, kg m-3


# --------------------------------------------------------------------------------------
# NetCDF input / output
# --------------------------------------------------------------------------------------
def _netcdf_kind(path: Path) -> str:
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic[:3] == b"CDF":
        return "netcdf3"
    if magic[:8] == b"\x89HDF\r\n\x1a\n":
        return "netcdf4"
    raise ValueError(
        f"{path}: not a NetCDF file (first bytes {magic!r}; NetCDF3 starts with b'CDF', "
        "NetCDF4 with the HDF5 signature)"
    )


def _as_float(values: np.ndarray, attrs: dict) -> np.ndarray:
    """Apply CF packing and fill values by hand (scipy does not)."""
    a = np.array(values, dtype=np.float64)
    fill = attrs.get("_FillValue", attrs.get("missing_value"))
    if fill is not None:
        a[np.asarray(values) == np.asarray(fill).ravel()[0]] = np.nan
    a = a * float(np.asarray(attrs.get("scale_factor", 1.0)).ravel()[0])
    a = a + float(np.asarray(attrs.get("add_offset", 0.0)).ravel()[0])
    return a


def _read_raw(path: Path, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Variables ``names`` of a NetCDF file as float64 arrays (NaN for fill values)."""
    kind = _netcdf_kind(path)
    out = {}
    if kind == "netcdf3":
        from scipy.io import netcdf_file

        try:
            with netcdf_file(str(path), "r", mmap=False) as f:
                _check_names(path, names, f.variables)
                for n in names:
                    v = f.variables[n]
                    out[n] = _as_float(v[:], dict(v._attributes))
        except (ValueError, TypeError, IndexError, EOFError, OSError) as e:
            if isinstance(e, ValueError) and str(path) in str(e):
                raise  # our own message (a missing variable, ...)
            raise ValueError(
                f"{path}: cannot read this NetCDF3 file, it looks truncated or corrupt ({e}). "
                "Copy or download it again."
            ) from None
        return out
    try:
        import netCDF4
    except ImportError:
        netCDF4 = None
    if netCDF4 is not None:
        with netCDF4.Dataset(str(path), "r") as f:
            _check_names(path, names, f.variables)
            for n in names:
                v = f.variables[n]
                v.set_auto_maskandscale(False)
                out[n] = _as_float(v[:], {a: v.getncattr(a) for a in v.ncattrs()})
        return out
    try:
        import h5netcdf
    except ImportError:
        raise ImportError(
            f"{path} is a NetCDF4 (HDF5) file; reading it needs the netCDF4 or h5netcdf package: "
            "pip install 'deepsphere[climate]' (or pip install netCDF4). NetCDF3 files are read "
            "without it."
        ) from None
    with h5netcdf.File(str(path), "r") as f:
        _check_names(path, names, f.variables)
        for n in names:
            v = f.variables[n]
            out[n] = _as_float(v[...], dict(v.attrs))
    return out


def _check_names(path, names, available) -> None:
    missing = [n for n in names if n not in available]
    if missing:
        raise KeyError(
            f"{path}: no variable(s) {', '.join(missing)}; the file has {', '.join(sorted(available))}"
        )


def _squeeze_2d(a: np.ndarray, name: str, shape: Tuple[int, int], path) -> np.ndarray:
    """ClimateNet stores (time=1, lat, lon) or (lat, lon)."""
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.shape != shape:
        raise ValueError(
            f"{path}: variable {name} has shape {a.shape}, expected (lat, lon) = {shape} "
            "(one time step per file)"
        )
    return a


def read_climatenet(path: Union[str, Path], variables: Sequence[str] = VARIABLES,
                    labels: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Read one ClimateNet snapshot.

    Parameters
    ----------
    path : str or Path
        A NetCDF3 or NetCDF4 file with 1-D ``lat`` and ``lon`` (degrees) and 2-D fields
        ``(lat, lon)`` or ``(1, lat, lon)``.
    variables : sequence of str
        Which fields to read, in this order.
    labels : bool
        Also read ``LABELS`` (integers 0, 1, 2).

    Returns
    -------
    lat, lon : ndarray
        Grid coordinates in degrees.
    fields : ndarray, shape ``(len(variables), nlat, nlon)``
        Unpacked values (``scale_factor``/``add_offset`` applied, fill values NaN).
    labels : ndarray of int64, shape ``(nlat, nlon)``, or None
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ClimateNet file {str(path)!r} does not exist")
    names = ["lat", "lon", *variables] + (["LABELS"] if labels else [])
    raw = _read_raw(path, names)
    lat, lon = raw["lat"].ravel(), raw["lon"].ravel()
    shape = (lat.size, lon.size)
    fields = np.stack([_squeeze_2d(raw[v], v, shape, path) for v in variables])
    lab = None
    if labels:
        lab_f = _squeeze_2d(raw["LABELS"], "LABELS", shape, path)
        if not np.all(np.isfinite(lab_f)) or np.any(lab_f != np.round(lab_f)) \
                or lab_f.min() < 0 or lab_f.max() > 2:
            bad = ", ".join(f"{b:g}" for b in np.unique(lab_f[~np.isin(lab_f, (0, 1, 2))])[:5])
            raise ValueError(
                f"{path}: LABELS must be 0 (background), 1 (tropical cyclone) or 2 (atmospheric "
                f"river); found [{bad}]"
            )
        lab = lab_f.astype(np.int64)
    return lat, lon, fields, lab


def write_climatenet(path: Union[str, Path], lat: np.ndarray, lon: np.ndarray,
                     fields: np.ndarray, labels: Optional[np.ndarray] = None,
                     variables: Sequence[str] = VARIABLES, format: str = "NETCDF3_64BIT") -> Path:
    """Write one snapshot in ClimateNet's layout: dimensions ``time`` (1), ``lat``, ``lon``;
    each variable ``(time, lat, lon)`` float32; ``LABELS`` ``(lat, lon)`` int32.

    ``format='NETCDF3_64BIT'`` uses scipy; ``'NETCDF4'`` needs the ``netCDF4`` package.
    """
    path = Path(path)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    fields = np.asarray(fields)
    if fields.shape != (len(variables), lat.size, lon.size):
        raise ValueError(
            f"fields has shape {fields.shape}, expected (variables, lat, lon) = "
            f"{(len(variables), lat.size, lon.size)}"
        )
    if format == "NETCDF3_64BIT":
        from scipy.io import netcdf_file

        with atomic_path(path) as tmp, netcdf_file(str(tmp), "w", version=2) as f:
            f.createDimension("time", 1)
            f.createDimension("lat", lat.size)
            f.createDimension("lon", lon.size)
            for name, val, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
                v = f.createVariable(name, "d", (name,))
                v[:] = val
                v.units = units
            for i, name in enumerate(variables):
                v = f.createVariable(name, "f", ("time", "lat", "lon"))
                v[0] = fields[i].astype(np.float32)
                v.units = UNITS.get(name, "1")
            if labels is not None:
                v = f.createVariable("LABELS", "i", ("lat", "lon"))
                v[:] = np.asarray(labels, dtype=np.int32)
        return path
    if format != "NETCDF4":
        raise ValueError(f"format must be 'NETCDF3_64BIT' or 'NETCDF4', got {format!r}")
    try:
        import netCDF4
    except ImportError:
        raise ImportError("writing NetCDF4 needs the netCDF4 package: pip install netCDF4") from None
    with atomic_path(path) as tmp, netCDF4.Dataset(str(tmp), "w", format="NETCDF4") as f:
        f.createDimension("time", 1)
        f.createDimension("lat", lat.size)
        f.createDimension("lon", lon.size)
        f.createVariable("lat", "f8", ("lat",))[:] = lat
        f.createVariable("lon", "f8", ("lon",))[:] = lon
        for i, name in enumerate(variables):
            v = f.createVariable(name, "f4", ("time", "lat", "lon"), zlib=True)
            v[0] = fields[i].astype(np.float32)
            v.units = UNITS.get(name, "1")
        if labels is not None:
            f.createVariable("LABELS", "i4", ("lat", "lon"))[:] = np.asarray(labels, dtype=np.int32)
    return path


# --------------------------------------------------------------------------------------
# regridding
# --------------------------------------------------------------------------------------
def _cell_edges(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.clip(np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]]), lo, hi)


def _lon_step(lon: np.ndarray) -> float:
    """The longitude spacing of a regular axis (degrees); irregular spacing is refused."""
    d = np.abs(np.diff(np.sort(lon)))
    step = float(np.median(d))
    if np.abs(d - step).max() > 1e-3 * step:
        raise ValueError(
            f"lon must be regularly spaced (equal columns), got steps from {d.min():g} to "
            f"{d.max():g} degrees; interpolate the fields to a regular longitude axis first")
    return step


def _is_global(step: float, nlon: int) -> bool:
    """Whether ``nlon`` columns of ``step`` degrees go round the globe (else a window)."""
    return nlon * step >= 360.0 - 0.5 * step


def _lon_offset(lon: np.ndarray, plon: np.ndarray) -> np.ndarray:
    """Longitudes ``plon`` relative to the westernmost centre of the window ``lon``, in
    degrees: in ``[0, span]`` inside it, above ``span`` east of it, negative west of it
    (points beyond the window go to its nearer side)."""
    west, span = lon.min(), lon.max() - lon.min()
    d = np.mod(np.asarray(plon, dtype=np.float64) - west, 360.0)
    return np.where(d > 0.5 * (span + 360.0), d - 360.0, d)


def _window_offsets(lon: np.ndarray, step: float, plon: np.ndarray) -> np.ndarray:
    """:func:`_lon_offset` of points inside a regional grid's longitude window (``lon``,
    spacing ``step``); points farther than 1.5 columns outside it are refused."""
    plon = np.asarray(plon, dtype=np.float64)
    x = _lon_offset(lon, plon)
    span = lon.max() - lon.min()
    out = (x < -1.5 * step) | (x > span + 1.5 * step)
    if out.any():
        raise _outside_window_error(lon, step, plon[out], np.flatnonzero(out))
    return x


def _outside_window_error(lon: np.ndarray, step: float, plon: np.ndarray,
                          which: np.ndarray) -> ValueError:
    """The error for points (indices ``which``, longitudes ``plon``) farther than 1.5
    columns outside a regional grid's longitude window."""
    shown = ", ".join(f"{i} (lon {x:.1f})" for i, x in zip(which[:5], np.mod(plon[:5], 360.0)))
    more = f" and {which.size - 5} more" if which.size > 5 else ""
    return ValueError(
        f"the lat-lon grid covers longitudes {lon.min():g} to {lon.max():g} degrees only (cells "
        f"from {lon.min() - 0.5 * step:g} to {lon.max() + 0.5 * step:g}), but {which.size} of "
        f"the sampling's points lie outside that window: points {shown}{more}, more than 1.5 "
        "columns beyond its edges (their values would be extrapolated from the edge columns, "
        "or wrapped around). Restrict the sampling to the window (a partial sky: "
        "HEALPix.from_mask(mask, 'NESTED') of the pixels inside, or an Irregular sampling of "
        "points inside), or pass a global grid; longitudes must be in degrees (not radians).")


def bilinear_matrix(lat: np.ndarray, lon: np.ndarray, plat: np.ndarray, plon: np.ndarray):
    """Sparse ``(len(plat), nlat * nlon)`` matrix of the bilinear interpolation of a lat-lon
    grid (cell centres ``lat``, ``lon`` in degrees, monotonic, ``lon`` regular) at points
    ``(plat, plon)``; clamped beyond the outermost latitudes. A global grid is periodic in
    longitude; a regional one (a longitude window) is clamped at its edge columns, and
    points farther than 1.5 columns outside the window are refused (``ValueError``)."""
    from scipy import sparse

    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    plat = np.asarray(plat, dtype=np.float64)
    plon = np.asarray(plon, dtype=np.float64)
    lat_order = np.argsort(lat)
    ls = lat[lat_order]
    i = np.clip(np.searchsorted(ls, plat) - 1, 0, ls.size - 2)
    wy = np.clip((plat - ls[i]) / (ls[i + 1] - ls[i]), 0.0, 1.0)
    i0, i1 = lat_order[i], lat_order[i + 1]
    step = _lon_step(lon)
    nlon = lon.size
    lon_order = np.argsort(lon)
    if _is_global(step, nlon):
        u = np.mod(plon - lon.min(), 360.0) / step
        j = np.floor(u).astype(np.int64)
        wx = u - j
        j0, j1 = lon_order[j % nlon], lon_order[(j + 1) % nlon]
    else:  # a window: never wrapped onto its far side
        u = np.clip(_window_offsets(lon, step, plon) / step, 0.0, nlon - 1.0)
        j = np.minimum(np.floor(u).astype(np.int64), nlon - 2)
        wx = u - j
        j0, j1 = lon_order[j], lon_order[j + 1]
    rows = np.repeat(np.arange(plat.size), 4)
    cols = np.stack([i0 * nlon + j0, i0 * nlon + j1, i1 * nlon + j0, i1 * nlon + j1], 1).ravel()
    w = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], 1).ravel()
    return sparse.csr_matrix((w, (rows, cols)), shape=(plat.size, lat.size * lon.size))


class LatLonRegridder:
    r"""Conservative regridding from a regular latitude-longitude grid to a sampling.

    A point's value is the mean of the grid over the point's cell, each grid cell weighted by
    the area it shares with the point's cell (first-order conservative remapping):

    .. math:: f_p = \frac{\sum_c W_{pc} f_c}{\sum_c W_{pc}}, \qquad
              W_{pc} = |C_c \cap P_p|, \qquad
              |C_c| = \Delta\lambda\,(\sin\varphi_c^{+} - \sin\varphi_c^{-}),

    with :math:`C_c` the grid cell (edges half-way between centres, clipped at the poles)
    and :math:`P_p` the point's cell: its HEALPix pixel (``healpy.ang2pix``) for
    :class:`~deepsphere.sampling.HEALPix`, its Voronoi cell (nearest point) for any other
    sampling. The overlaps are computed by cutting every grid cell into :math:`s \times s`
    sub-cells, equal steps in latitude and longitude, each with its exact area
    :math:`\frac{\Delta\lambda}{s}(\sin\varphi_{k+1} - \sin\varphi_k)`, and giving
    each sub-cell to the point whose cell contains its centre. A grid cell's sub-cells add
    up to its area, so wherever the points' cells cover the grid

    .. math:: \sum_p R_p f_p = \sum_c |C_c| f_c, \qquad R_p = \sum_c W_{pc}

    holds to rounding (the area-weighted integral is conserved), where :math:`R_p`
    (:attr:`received_area`) is the area point :math:`p` received; only the sub-cells that a
    pixel boundary crosses are misplaced, so :math:`R_p` tends to :math:`|P_p|` as
    :math:`s` grows (error :math:`O(1/s)` per pixel, smaller on average). The default
    :math:`s` makes a sub-cell at most 1/1024 of a point's cell (32 sub-cells across a
    HEALPix pixel): ClimateNet's 768 x 1152 grid gets :math:`s` = 3 / 5 / 10 at nside
    16 / 32 / 64, and the pixels receive their true area :math:`4\pi/12N_\text{side}^2`
    to within 1-1.5 % (0.2 % r.m.s.).

    For a :class:`~deepsphere.sampling.HEALPix` target finer than the grid the sub-cells
    would have to be tiny (1/1024 of a pixel), so the same matrix is computed from the
    other side when that is cheaper: each pixel is split into its :math:`4^j` NESTED
    children at :math:`N_\text{side} 2^j`, of exactly equal areas
    :math:`4\pi / (12 (N_\text{side} 2^j)^2)`, and each child goes to the grid cell
    holding its centre (found by index arithmetic: ``searchsorted`` on the sines of the
    latitude edges, longitudes wrapped onto the regular columns),

    .. math:: W_{pc} \approx \frac{4\pi}{12 (N_\text{side} 2^j)^2}\,
              \#\{q \in \operatorname{children}_j(p) : \hat n_q \in C_c\}.

    The children tile their pixel, so :math:`R_p = |P_p|` exactly wherever the grid covers
    the pixel (children whose centre lies beyond the grid's outermost latitude edges get no
    cell); now the children cut by a cell edge are misplaced, between neighbouring cells
    of the same pixel (error :math:`O(2^{-j})`). A block of descendants whose centres all
    lie in one cell goes to it whole, which gives the same matrix with work growing with
    the length of the cell edges instead of the number of children: the centres of a
    NESTED block fill a square of face coordinates on which :math:`z` grows along both
    axes and :math:`\phi` along one and falls along the other, so the block's corner
    descendants bound them. The default :math:`j` makes a child at most 1/1024 of the
    largest grid cell (32 children across it), at most 6; the path whose estimated work is
    smaller is taken (sub-cells :math:`N_\text{cells} s^2` against about 9 evaluations
    per child side along the cell edges), except that sub-cells capped at 64 per side
    (grid cells larger than 4 pixels, where they would miss their 1/1024 target) are never
    taken by default. ClimateNet's grid takes the children from nside 256 on (:math:`j` =
    5 / 4 at nside 256 / 512).

    ``method="centre"`` is the earlier scheme: each grid cell goes whole to the point whose
    cell contains the grid cell's centre, so pixels receive 0.78-1.20 times their area
    (768 x 1152 grid, nside 64); kept to reproduce results made with it.

    Points that receive no area (``method="centre"`` with a target finer than the grid, or
    a grid that stops short of the poles) take the bilinear interpolation of the grid at
    the point; points farther than 1.5 grid spacings beyond the grid's outermost latitudes
    are refused (a regional grid, or latitudes in radians). A regional grid may also cover a
    window of longitudes: points farther than 1.5 columns outside it are refused whatever
    the method (restrict the sampling to the window, e.g. a partial HEALPix sky), and inside
    it the interpolation is clamped at the edge columns, never wrapped around. Labels are
    regridded by class area fraction (:meth:`labels`). NaN cells (missing values) are left
    out of the means.

    Parameters
    ----------
    lat, lon : array_like
        Cell centres in degrees, 1-D, strictly monotonic; ``lon`` regular, spanning the
        globe (periodic) or a window of it (a regional grid).
    sampling : Sampling
    method : {"conservative", "centre"}
        Split grid cells by overlap area (default), or give each whole to one point.
    subdivisions : int, optional
        :math:`s`, sub-cells per grid cell along each axis (``"conservative"`` only);
        default the smallest :math:`s` with sub-cells at most 1/1024 of a point's cell
        (a HEALPix pixel, else the median of ``sampling.areas``), at most 64. Setup
        time grows as :math:`s^2`; memory does not (blocks of sub-rows, about 150 MB
        at most). 768 x 1152 grid, one core: 0.5 / 0.9 / 4.1 / 14.8 s at nside 16 / 32 /
        64 / 128 (the children take 22 s at nside 256 and 512, where sub-cells took 58 and
        163 s). Given, it forces the sub-cells.
    child_levels : int, optional
        :math:`j`, levels of NESTED children per HEALPix pixel (``"conservative"`` on a
        :class:`~deepsphere.sampling.HEALPix` only, not with ``subdivisions``); given, it
        forces the children. Default: chosen with the path, see above.

    Attributes
    ----------
    cell_area : ndarray
        :math:`|C_c|`, ``(nlat, nlon)``, steradians.
    received_area : ndarray
        :math:`R_p`, ``(npix,)``, steradians.
    subdivisions : int or None
        The :math:`s` used (1 for ``"centre"``, None with children).
    child_levels : int or None
        The :math:`j` used (None with sub-cells).
    """

    #: Sub-cells per point's cell that the default ``subdivisions`` aims at.
    SUBCELLS_PER_PIXEL = 1024
    MAX_SUBDIVISIONS = 64
    #: Children per (largest) grid cell that the default ``child_levels`` aims at.
    CHILDREN_PER_CELL = 1024
    MAX_CHILD_LEVELS = 6
    _TEST_BELOW = 4.0  # test blocks for lying in one cell once smaller than 1/4 cell
    _CHILD_COST = 9.0  # measured: time per child side of cell edge / time per sub-cell
    _CHUNK = 1 << 21  # sub-cells per block of sub-rows: bounds setup memory (~150 MB)

    def __init__(self, lat, lon, sampling: Sampling, method: str = "conservative",
                 subdivisions: Optional[int] = None, child_levels: Optional[int] = None):
        from scipy import sparse

        if method not in ("conservative", "centre"):
            raise ValueError(f"method must be 'conservative' or 'centre', got {method!r}")
        if subdivisions is not None:
            if method != "conservative":
                raise ValueError("subdivisions applies to method='conservative' only "
                                 "(method='centre' gives each grid cell whole to one point)")
            if isinstance(subdivisions, bool) or not isinstance(subdivisions, (int, np.integer)) \
                    or subdivisions < 1:
                raise ValueError(f"subdivisions must be a positive integer, got {subdivisions!r}")
        if child_levels is not None:
            if method != "conservative" or not isinstance(sampling, HEALPix) or subdivisions is not None:
                raise ValueError("child_levels applies to method='conservative' on a HEALPix sampling "
                                 "only, without subdivisions (it splits HEALPix pixels, subdivisions "
                                 "split grid cells)")
            if isinstance(child_levels, bool) or not isinstance(child_levels, (int, np.integer)) \
                    or not 0 <= child_levels <= 29 - int(np.log2(sampling.nside)):
                raise ValueError(f"child_levels must be an integer from 0 to "
                                 f"{29 - int(np.log2(sampling.nside))} (nside * 2**child_levels "
                                 f"at most 2**29), got {child_levels!r}")
        lat = np.asarray(lat, dtype=np.float64).ravel()
        lon = np.asarray(lon, dtype=np.float64).ravel()
        for name, a in (("lat", lat), ("lon", lon)):
            if a.size < 2 or not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must have at least 2 finite values, got {a.size}")
            d = np.diff(a)
            if not (np.all(d > 0) or np.all(d < 0)):
                raise ValueError(f"{name} must be strictly monotonic")
        if lat.min() < -90 or lat.max() > 90:
            raise ValueError(f"latitudes must be in [-90, 90] degrees, got [{lat.min()}, {lat.max()}]")
        step = _lon_step(lon)
        if abs(lon[-1] - lon[0]) > 360.0 - 0.5 * step:
            # a cyclic column (0 and 360 both present) would count its meridian twice
            raise ValueError(
                f"lon spans {lon[0]:g} to {lon[-1]:g} degrees: the last longitude repeats the "
                "first one (a cyclic point), so that meridian would be counted twice. Each "
                "longitude must appear once: drop the last column (lon[:-1], fields[..., :-1])."
            )
        self.lat, self.lon, self.sampling, self.method = lat, lon, sampling, method
        self._step = step  # longitude spacing, degrees
        self._check_window(sampling.lon)
        self._check_covered(sampling.lat)
        self.shape = (lat.size, lon.size)
        # cell edges and areas, rows in the given (possibly descending) order
        order = np.argsort(lat)
        edges = _cell_edges(lat[order], -90.0, 90.0)
        lo, hi = np.empty_like(lat), np.empty_like(lat)
        lo[order], hi[order] = edges[:-1], edges[1:]
        dlon = np.radians(step)
        self.cell_area = np.outer(np.sin(np.radians(hi)) - np.sin(np.radians(lo)),
                                  np.full(lon.size, dlon))  # (nlat, nlon), sr
        locate = self._locator(sampling)
        if method == "centre":
            s = 1
            LAT, LON = np.meshgrid(lat, lon, indexing="ij")
            target, keep = locate(np.radians(90.0 - LAT.ravel()), np.radians(np.mod(LON.ravel(), 360.0)))
            cells = np.flatnonzero(keep)
            self._assign = sparse.csr_matrix(
                (self.cell_area.ravel()[cells], (target[keep], cells)),
                shape=(sampling.npix, lat.size * lon.size))
        else:
            s = self._default_subdivisions(sampling) if subdivisions is None else int(subdivisions)
            if child_levels is None and subdivisions is None and isinstance(sampling, HEALPix):
                j = self._default_child_levels(sampling)
                # capped sub-cells miss their target (grid cells over 4 pixels): pixels
                # receive 0.7-1.3 times their area, or none; the children (then j <= 4) meet it
                capped = self._needed_subdivisions(sampling) > s
                if capped or self._child_work(edges, sampling, j) < self.cell_area.size * s**2:
                    child_levels = j
            if child_levels is not None:
                s = None
                self._assign = self._child_overlaps(order, edges, int(child_levels))
            else:
                self._assign = self._overlaps(lo, hi, locate, s)
        self.subdivisions = s
        self.child_levels = None if child_levels is None else int(child_levels)
        self.received_area = np.asarray(self._assign.sum(axis=1)).ravel()
        self.empty = np.flatnonzero(self.received_area == 0)
        self._interp = self._bilinear(sampling.lat[self.empty], sampling.lon[self.empty]) if self.empty.size else None

    @staticmethod
    def _locator(sampling: Sampling):
        """``(theta, phi) -> (index of the point whose cell holds it, inside the sampling)``."""
        if isinstance(sampling, HEALPix):
            import healpy as hp

            def locate(theta, phi):
                pix = hp.ang2pix(sampling.nside, theta, phi, nest=True)
                if sampling.full_sky:
                    return pix, np.ones(pix.size, bool)
                pos = np.minimum(np.searchsorted(sampling.pixels, pix), sampling.npix - 1)
                return pos, sampling.pixels[pos] == pix
        else:
            from scipy.spatial import cKDTree

            tree = cKDTree(sampling.vectors)

            def locate(theta, phi):
                st = np.sin(theta)
                xyz = np.stack([st * np.cos(phi), st * np.sin(phi), np.cos(theta)], axis=1)
                return tree.query(xyz)[1], np.ones(theta.size, bool)
        return locate

    def _needed_subdivisions(self, sampling: Sampling) -> int:
        """Smallest :math:`s` with sub-cells at most 1/``SUBCELLS_PER_PIXEL`` of a point's
        cell, uncapped."""
        if isinstance(sampling, HEALPix):
            pixel = 4 * np.pi / (12 * sampling.nside**2)
        else:
            try:
                pixel = float(np.median(sampling.areas))
            except (ValueError, TypeError, AttributeError):  # no areas: the mean cell
                pixel = 4 * np.pi / sampling.npix
        return max(1, int(np.ceil(np.sqrt(self.SUBCELLS_PER_PIXEL * self.cell_area.max() / pixel))))

    def _default_subdivisions(self, sampling: Sampling) -> int:
        return min(self._needed_subdivisions(sampling), self.MAX_SUBDIVISIONS)

    def _child_work(self, edges: np.ndarray, sampling: HEALPix, j: int) -> float:
        """Children the refinement of :meth:`_child_overlaps` visits, in sub-cell
        equivalents: about ``_CHILD_COST`` per child side along the cell edges (the blocks
        that straddle an edge, at every level), on the sampling's share of the sphere.
        With ``j = 0`` nothing is refined: one centre per pixel."""
        if j == 0:
            return float(sampling.npix)
        b = np.radians(edges)
        length = 2 * np.pi * np.cos(b).sum() + self.shape[1] * (b[-1] - b[0])  # radians
        side = np.sqrt(4 * np.pi / (12.0 * (sampling.nside * 2**j) ** 2))
        share = sampling.npix / (12.0 * sampling.nside**2)
        return self._CHILD_COST * share * length / side + sampling.npix

    def _default_child_levels(self, sampling: HEALPix) -> int:
        """Smallest :math:`j` with children at most 1/``CHILDREN_PER_CELL`` of the largest
        grid cell, at most ``MAX_CHILD_LEVELS``."""
        cell = float(self.cell_area.max())
        pixel = 4 * np.pi / (12 * sampling.nside**2)
        j = np.ceil(0.5 * np.log2(max(self.CHILDREN_PER_CELL * pixel / cell, 1.0)) - 1e-9)
        return int(np.clip(j, 0, min(self.MAX_CHILD_LEVELS, 29 - int(np.log2(sampling.nside)))))

    def _child_overlaps(self, order: np.ndarray, edges: np.ndarray, j: int):
        """Sparse ``(npix, ncells)`` overlap areas from the ``4**j`` NESTED children of each
        HEALPix pixel, each given to the grid cell holding its centre.

        A pixel (or an intermediate descendant) whose level-``j`` descendants' centres all
        lie in one grid cell goes to that cell whole, which is what its children would give:
        the centres of a NESTED block of descendants fill a square of the base face's
        coordinates, on which :math:`z` and :math:`\\phi` are monotonic along both axes,
        so their extremes are the block's four corner descendants. Only the blocks that
        straddle a cell edge are split further, so the work grows with the length of the
        cell edges, not with the number of children."""
        import healpy as hp
        from scipy import sparse

        nlat, nlon = self.shape
        nside = self.sampling.nside
        fine = nside * 2**j
        child_area = 4 * np.pi / (12.0 * fine**2)
        z_edges = np.sin(np.radians(edges))  # ascending, rows in the order of lat[order]
        lon_order = np.argsort(self.lon)
        step = self._step
        start = self.lon[lon_order[0]] - 0.5 * step  # western edge of the first sorted column
        pixels = self.sampling.pixels
        per_chunk = max(1, self._CHUNK // 4**j)
        first_test = float(np.median(self.cell_area)) / self._TEST_BELOW
        out_rows, out_cols, out_vals = [], [], []

        def row_of(z):  # index into the sorted rows: -1 south of the grid, nlat north of it
            return np.searchsorted(z_edges, z, side="right") - 1

        # a longitude window (regional grid) leaves columns nlon .. 360/step - 1 off the grid
        window = not _is_global(step, nlon)

        def column_of(u):  # u in units of columns from ``start``; periodic; -1 off the grid
            k = np.floor(u)
            if window:
                return np.where(k < nlon, k, -1).astype(np.int64)
            return np.mod(k, nlon).astype(np.int64)

        def u_of(phi):
            return np.mod(np.degrees(phi) - start, 360.0) / step

        def emit(owner, i, k, area):
            keep = (i >= 0) & (i < nlat) & (k >= 0)
            out_rows.append(owner[keep])
            out_cols.append(order[i[keep]] * nlon + lon_order[k[keep]])
            out_vals.append(np.full(int(keep.sum()), area))

        for p0 in range(0, pixels.size, per_chunk):
            owner = np.arange(p0, min(pixels.size, p0 + per_chunk))
            pix = pixels[owner].astype(np.int64)
            rows0 = len(out_rows)
            for level in range(j):
                if 4 * np.pi / (12.0 * (nside * 2**level) ** 2) > first_test:
                    # blocks larger than a cell straddle its edges: split without testing
                    pix = ((pix << 2)[:, None] + np.arange(4)).ravel()
                    owner = np.repeat(owner, 4)
                    continue
                left = j - level  # levels of descendants below these pixels
                n_desc = 4**left
                # corner descendants: (0, 0) and (max, max) bound z, (max, 0) and (0, max) phi
                corners = (pix << (2 * left))[:, None] + np.array(
                    [0, n_desc - 1, (n_desc - 1) // 3, 2 * (n_desc - 1) // 3])
                theta, phi = hp.pix2ang(fine, corners.ravel(), nest=True)
                theta, phi = theta.reshape(-1, 4), phi.reshape(-1, 4)
                z0, z1 = np.cos(theta[:, 0]), np.cos(theta[:, 1])
                ilo, ihi = row_of(np.minimum(z0, z1)), row_of(np.maximum(z0, z1))
                # each corner's column exactly as its child alone would get it (u_of), so
                # that a centre on a column edge goes the same way in a block as alone
                u2, u3 = u_of(phi[:, 2]), u_of(phi[:, 3])
                d = np.mod(phi[:, 3] - phi[:, 2] + np.pi, 2 * np.pi) - np.pi  # corner 2 -> 3
                west, east = np.where(d < 0, u3, u2), np.where(d < 0, u2, u3)
                wraps = east < west  # the block crosses ``start``, where u goes back to 0
                kw, ke = np.floor(west), np.floor(east)
                beyond = (ilo == ihi) & ((ilo < 0) | (ilo >= nlat))  # wholly off the grid
                if window:  # wholly in the gap east of the window
                    beyond |= (kw >= nlon) & ~wraps
                whole = (ilo == ihi) & (kw == ke) & ~wraps & ~beyond  # in one cell
                emit(owner[whole], ilo[whole], column_of(kw[whole]), child_area * n_desc)
                split = ~whole & ~beyond
                pix = ((pix[split] << 2)[:, None] + np.arange(4)).ravel()
                owner = np.repeat(owner[split], 4)
            theta, phi = hp.pix2ang(fine, pix, nest=True)
            emit(owner, row_of(np.cos(theta)), column_of(u_of(phi)), child_area)
            if len(out_rows) > rows0:  # sum duplicates chunk by chunk: bounded memory
                block = sparse.coo_matrix(
                    (np.concatenate(out_vals[rows0:]),
                     (np.concatenate(out_rows[rows0:]) - p0, np.concatenate(out_cols[rows0:]))),
                    shape=(per_chunk, nlat * nlon)).tocsr().tocoo()
                out_rows[rows0:] = [block.row + p0]
                out_cols[rows0:] = [block.col]
                out_vals[rows0:] = [block.data]
        if not out_rows:
            out_rows, out_cols, out_vals = [np.zeros(0, np.int64)] * 2 + [np.zeros(0)]
        return sparse.csr_matrix((np.concatenate(out_vals), (np.concatenate(out_rows),
                                                             np.concatenate(out_cols))),
                                 shape=(self.sampling.npix, nlat * nlon))

    def _overlaps(self, lo: np.ndarray, hi: np.ndarray, locate, s: int):
        """Sparse ``(npix, ncells)`` overlap areas from ``s x s`` sub-cells per grid cell,
        built a block of sub-rows at a time (a grid row may span blocks)."""
        from scipy import sparse

        nlat, nlon = self.shape
        step = self._step
        frac = (np.arange(s) + 0.5) / s
        phi = np.radians(np.mod((self.lon[:, None] + step * (frac - 0.5)).ravel(), 360.0))
        col = np.repeat(np.arange(nlon), s)  # grid column of each sub-column
        # sub-row k of grid row i = k // s spans latitudes e0[k] .. e1[k]
        t = np.arange(s + 1) / s
        e = lo[:, None] + (hi - lo)[:, None] * t  # (nlat, s + 1)
        e0, e1 = e[:, :-1].ravel(), e[:, 1:].ravel()
        sub_area = (np.sin(np.radians(e1)) - np.sin(np.radians(e0))) * (np.radians(step) / s)
        sub_theta = np.radians(90.0 - 0.5 * (e0 + e1))
        per_block = max(1, self._CHUNK // phi.size)
        rows, cols, vals = [], [], []
        for k0 in range(0, nlat * s, per_block):
            k = np.arange(k0, min(nlat * s, k0 + per_block))
            target, keep = locate(np.repeat(sub_theta[k], phi.size), np.tile(phi, k.size))
            i0 = k[0] // s
            cell = ((k // s - i0)[:, None] * nlon + col).ravel()
            block = sparse.coo_matrix(
                (np.repeat(sub_area[k], phi.size)[keep], (cell[keep], target[keep])),
                shape=((k[-1] // s - i0 + 1) * nlon, self.sampling.npix)).tocsr().tocoo()
            rows.append(block.row + i0 * nlon)  # duplicates summed: one entry per (cell, point)
            cols.append(block.col)
            vals.append(block.data)
        return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(cols), np.concatenate(rows))),
                                 shape=(self.sampling.npix, nlat * nlon))

    def _check_window(self, plon: np.ndarray) -> None:
        """A regional grid (a longitude window) refuses points whose position lies farther
        than 1.5 columns outside it, whatever their cells receive: the answer must not
        depend on the method (a pixel straddling the edge gets a sliver from the sub-cells
        and nothing from whole cells), and no value is wrapped or extrapolated."""
        if not _is_global(self._step, self.lon.size):
            _window_offsets(self.lon, self._step, plon)

    def _check_covered(self, plat: np.ndarray) -> None:
        """Points farther than 1.5 grid spacings beyond the outermost latitudes are refused
        by position, as :meth:`_check_window` refuses longitudes, whatever their cells
        receive: a pixel centred beyond a regional grid's edge would get the mean of the
        sliver it overlaps, or, with no cell at all, a value clamped from the edge row.
        A global grid's points between its last centre and the pole pass (latitudes in
        radians do not)."""
        ls = np.sort(self.lat)
        lo = ls[0] - 1.5 * (ls[1] - ls[0])
        hi = ls[-1] + 1.5 * (ls[-1] - ls[-2])
        outside = (plat < lo) | (plat > hi)
        if outside.any():
            far = plat[outside][np.argmax(np.abs(plat[outside]))]
            raise ValueError(
                f"the lat-lon grid covers latitudes {ls[0]:g} to {ls[-1]:g} degrees, but "
                f"{int(outside.sum())} of the sampling's points lie beyond it (up to latitude "
                f"{far:.1f}), more than 1.5 rows beyond its edges (their values would be "
                "extrapolated from the edge rows, or averaged over the sliver they overlap). "
                "Latitudes must be in degrees (not radians); for a regional grid, restrict the "
                "sampling to its area (a partial sky: HEALPix.from_mask(mask, 'NESTED') of the "
                "pixels inside, or an Irregular sampling of points inside)."
            )

    def _bilinear(self, plat: np.ndarray, plon: np.ndarray):
        return bilinear_matrix(self.lat, self.lon, plat, plon)

    def __call__(self, fields: np.ndarray) -> np.ndarray:
        """Regrid ``(..., nlat, nlon)`` fields to ``(..., npix)``."""
        fields = np.asarray(fields, dtype=np.float64)
        if fields.shape[-2:] != self.shape:
            raise ValueError(f"fields end in shape {fields.shape[-2:]}, the grid is {self.shape}")
        lead = fields.shape[:-2]
        flat = fields.reshape(-1, self.shape[0] * self.shape[1]).T  # (ncells, m)
        ok = np.isfinite(flat)
        num = self._assign @ np.where(ok, flat, 0.0)
        den = self._assign @ ok.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num / den
        if self._interp is not None:
            out[self.empty] = self._interp @ np.where(ok, flat, np.nan)
        return out.T.reshape(*lead, -1)

    def fractions(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """Area fraction of each class in each point's cell, ``(npix, n_classes)``."""
        labels = np.asarray(labels)
        if labels.shape != self.shape:
            raise ValueError(f"labels have shape {labels.shape}, the grid is {self.shape}")
        onehot = (labels.reshape(-1, 1) == np.arange(n_classes)[None, :]).astype(np.float64)
        num = self._assign @ onehot
        den = num.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = num / den
        if self._interp is not None:  # points without a cell: the label of the closest corner
            best = np.asarray(self._interp.argmax(axis=1)).ravel()
            frac[self.empty] = onehot[best]
        return frac

    def labels(self, labels: np.ndarray, n_classes: int = 3, event_fraction: float = 0.5) -> np.ndarray:
        r"""Per-point labels: the event class (any class but 0) with the largest area
        fraction, if that fraction is at least ``event_fraction``, else background 0.
        ``event_fraction=0.5`` is a majority vote; smaller values keep small events (a
        cyclone narrower than a pixel) at the cost of inflating their area."""
        frac = self.fractions(labels, n_classes)
        ev = frac[:, 1:]
        best = ev.argmax(axis=1)
        take = ev[np.arange(ev.shape[0]), best] >= event_fraction
        return np.where(take, best + 1, 0).astype(np.int64)


# --------------------------------------------------------------------------------------
# synthetic snapshots
# --------------------------------------------------------------------------------------
def latlon_grid(nlat: int, nlon: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cell centres of a regular global grid like ClimateNet's: ``nlat`` latitudes from
    -90 to 90 inclusive, ``nlon`` longitudes from 0 (ClimateNet: 768 x 1152)."""
    return np.linspace(-90.0, 90.0, nlat), np.arange(nlon) * (360.0 / nlon)


def _unit(lat_deg, lon_deg):
    la, lo = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _smooth_field(xyz: np.ndarray, rng: np.random.Generator, n: int = 24,
                  radius_deg: Tuple[float, float] = (12.0, 30.0)) -> np.ndarray:
    """A smooth random field of unit standard deviation: a sum of Gaussian bumps with random
    centres, widths and signs."""
    c = rng.standard_normal((n, 3))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    r = np.radians(rng.uniform(*radius_deg, n))
    amp = rng.standard_normal(n)
    d2 = np.maximum(2.0 - 2.0 * xyz.astype(np.float32) @ c.T.astype(np.float32), 0.0)  # chord^2
    f = (np.exp(-d2 / (2 * r**2).astype(np.float32)) @ amp.astype(np.float32)).astype(np.float64)
    return (f - f.mean()) / (f.std() + 1e-12)


def _local_offsets(lat, lon, lat0, lon0):
    """East and north offsets (degrees of arc) of grid points from (lat0, lon0), on the
    local tangent plane (azimuthal equidistant), and the distance in degrees."""
    p = _unit(lat, lon)
    c = _unit(lat0, lon0)
    east = np.array([-np.sin(np.radians(lon0)), np.cos(np.radians(lon0)), 0.0])
    north = np.cross(c, east)
    cosd = np.clip(p @ c, -1, 1)
    d = np.degrees(np.arccos(cosd))
    x, y = p @ east, p @ north
    h = np.hypot(x, y) + 1e-12
    return d * x / h, d * y / h, d


def _geostrophic(psl: np.ndarray, lat: np.ndarray, lon: np.ndarray):
    """Geostrophic wind :math:`u = -\\partial_y p/(\\rho f)`, :math:`v = \\partial_x p/(\\rho f)`,
    with :math:`|f|` floored at its 12-degree value so the tropics do not blow up."""
    la = np.radians(lat)[:, None]
    f = 2 * _OMEGA * np.sin(la)
    fmin = 2 * _OMEGA * np.sin(np.radians(12.0))
    f = np.where(np.abs(f) < fmin, np.where(f >= 0, fmin, -fmin), f)
    dy = np.gradient(psl, np.radians(lat), axis=0) / _EARTH_RADIUS
    dpdl = (np.roll(psl, -1, 1) - np.roll(psl, 1, 1)) / (2 * np.radians(360.0 / lon.size))
    dx = dpdl / (_EARTH_RADIUS * np.maximum(np.cos(la), np.cos(np.radians(80.0))))
    return -dy / (_RHO * f), dx / (_RHO * f)


def synthetic_snapshot(lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator,
                       n_rivers: float = 3.6, n_cyclones: float = 2.0,
                       noise: float = 0.05, pressure_pattern: Optional[np.ndarray] = None
                       ) -> Tuple[np.ndarray, np.ndarray]:
    r"""One physically plausible ClimateNet-like snapshot on a lat-lon grid.

    Background: a moist tropical belt (TMQ ~ 50 kg m\ :sup:`-2` at the equator) and
    temperature decreasing poleward, modulated by smooth random anomalies; sea-level
    pressure with subtropical highs, subpolar lows and random synoptic systems; winds in
    geostrophic balance with that pressure plus mid-latitude westerlies and trade easterlies.

    Atmospheric rivers (label 2, ``Poisson(n_rivers)`` per map): filaments from the
    subtropics (15-30 degrees) poleward and eastward, 25-55 degrees long and 2-3.5
    degrees wide (Gaussian cross-section), adding 15-28 kg m\ :sup:`-2` of precipitable
    water, moisture, rain, and a 10-18 m s\ :sup:`-1` jet along the filament. Labelled
    where the enhancement exceeds 40 % of its peak.

    Tropical cyclones (label 1, ``Poisson(n_cyclones)``): vortices at 8-28 degrees latitude,
    radius of maximum wind 0.4-0.8 degrees, central pressure deficit 25-60 hPa,
    with a Holland (1980) profile :math:`p(r) = p_c + \Delta p\, e^{-(R_m/r)^B}` and gradient
    wind :math:`V(r) = \sqrt{B \Delta p/\rho\,(R_m/r)^B e^{-(R_m/r)^B}}` (B = 2), cyclonic in each
    hemisphere, a warm core aloft, a moist core and heavy rain. Labelled where
    :math:`V \geq 17` m s\ :sup:`-1` (gale force).

    With the defaults, labels cover about 97.7 % / 0.1 % / 2.2 % of the sphere's area
    (background / TC / AR), ClimateNet's balance.

    ``pressure_pattern`` (unit standard deviation, on the grid) replaces the random synoptic
    pressure anomaly, e.g. a real field (see :class:`RealPatterns`); the winds follow it
    through geostrophy.

    Returns
    -------
    fields : ndarray float32, ``(16, nlat, nlon)`` in :data:`VARIABLES` order and CAM5 units
    labels : ndarray int64, ``(nlat, nlon)``
    """
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    xyz = _unit(LAT, LON)
    la = np.radians(LAT)
    s2 = np.sin(la) ** 2
    a_temp = _smooth_field(xyz, rng)
    a_moist = 0.6 * a_temp + 0.8 * _smooth_field(xyz, rng)
    if pressure_pattern is None:
        a_pres = _smooth_field(xyz, rng, n=40, radius_deg=(8.0, 20.0))
    else:
        if pressure_pattern.shape != LAT.shape:
            raise ValueError(f"pressure_pattern has shape {pressure_pattern.shape}, the grid is {LAT.shape}")
        a_pres = pressure_pattern

    ts = 301.0 - 48.0 * s2 + 3.0 * a_temp
    tmq = np.maximum(6.0 + 44.0 * np.exp(-(LAT / 24.0) ** 2) + 6.0 * a_moist, 1.0)
    psl = (101300.0 + 900.0 * np.exp(-((np.abs(LAT) - 30.0) / 10.0) ** 2)
           - 1400.0 * np.exp(-((np.abs(LAT) - 60.0) / 10.0) ** 2) + 900.0 * a_pres)
    ug, vg = _geostrophic(psl, lat, lon)
    scale = np.clip(np.abs(LAT) / 20.0, 0.0, 1.0)  # geostrophy fades in the deep tropics
    u850 = 12.0 * np.exp(-((np.abs(LAT) - 45.0) / 12.0) ** 2) - 6.0 * np.exp(-(LAT / 15.0) ** 2) + scale * ug
    v850 = scale * vg
    t500 = 268.0 - 26.0 * s2 + 2.0 * a_temp
    t200 = 218.0 + 6.0 * s2 + 1.0 * a_temp
    prect = 2.0e-8 * np.maximum(tmq - 30.0, 0.0) * (1.0 + 0.5 * np.maximum(a_moist, 0))
    labels = np.zeros(LAT.shape, np.int64)

    # atmospheric rivers
    for _ in range(rng.poisson(n_rivers)):
        h = rng.choice([-1.0, 1.0])
        lat0, lon0 = h * rng.uniform(15.0, 30.0), rng.uniform(0.0, 360.0)
        length, width = rng.uniform(25.0, 55.0), rng.uniform(2.0, 3.5)
        bearing = np.radians(rng.uniform(20.0, 60.0))  # from east, towards the pole
        bend = rng.uniform(-0.5, 0.5)
        s = np.linspace(0.0, length, 64)
        ang = bearing + bend * s / length
        dlat = h * np.cumsum(np.sin(ang)) * (s[1] - s[0])
        plat = np.clip(lat0 + dlat, -80, 80)
        dlon = np.cumsum(np.cos(ang)) * (s[1] - s[0]) / np.cos(np.radians(plat))
        plon = lon0 + dlon
        pts = _unit(plat, plon)  # (64, 3)
        cosd = np.clip(xyz @ pts.T, -1, 1)
        k = cosd.argmax(-1)
        d = np.degrees(np.arccos(cosd.max(-1)))
        taper = np.sin(np.pi * (k + 0.5) / len(s)) ** 0.5
        prof = taper * np.exp(-0.5 * (d / width) ** 2)
        amp = rng.uniform(15.0, 28.0)
        tmq += amp * prof
        prect += 6e-8 * prof * amp / 20.0
        # along-filament jet: direction of the path at the nearest point
        ue, vn = np.cos(ang)[k], h * np.sin(ang)[k]
        speed = rng.uniform(10.0, 18.0) * prof
        u850 += speed * ue
        v850 += speed * vn
        ts += 1.5 * prof
        labels[(prof >= 0.4) & (labels == BACKGROUND)] = AR

    # tropical cyclones
    B = 2.0
    for _ in range(rng.poisson(n_cyclones)):
        h = rng.choice([-1.0, 1.0])
        lat0, lon0 = h * rng.uniform(8.0, 28.0), rng.uniform(0.0, 360.0)
        rm = rng.uniform(0.4, 0.8)  # radius of maximum wind, degrees
        dp = rng.uniform(2500.0, 6000.0)
        x, y, r = _local_offsets(LAT, LON, lat0, lon0)
        near = r < 15 * rm
        rr = np.maximum(r[near], 1e-3)
        e = np.exp(-(rm / rr) ** B)
        psl[near] -= dp * (1.0 - e)
        v = np.sqrt(B * dp / _RHO * (rm / rr) ** B * e)
        tx, ty = -y[near] / rr, x[near] / rr  # counter-clockwise: cyclonic in the north
        tx, ty = h * tx, h * ty
        u850[near] += v * tx
        v850[near] += v * ty
        core = np.exp(-(rr / (3 * rm)) ** 2)
        tmq[near] += rng.uniform(15.0, 30.0) * core
        prect[near] += 2.5e-6 * core
        t500[near] += 5.0 * core
        t200[near] += 3.0 * core
        ts[near] += 0.5 * core
        lab = labels[near]
        lab[v >= 17.0] = TC
        labels[near] = lab

    # friction: weaker, turned towards low pressure, i.e. to the left of the wind in the
    # north and to the right in the south (a rotation by +-15 degrees)
    hemi = np.sign(LAT + 1e-9)
    ubot = 0.75 * u850 - 0.2 * hemi * v850
    vbot = 0.75 * v850 + 0.2 * hemi * u850
    ps = psl - 60.0
    trefht = ts - 1.2
    qrefht = 3.4e-4 * tmq
    z1000 = (psl - 100000.0) / (_RHO * _G)
    zbot = 62.0 + 0.2 * (ts - 288.0)
    z200 = 12300.0 - 1500.0 * s2 + 30.0 * (t500 - 268.0 + 26.0 * s2) + z1000
    fields = {"TMQ": tmq, "U850": u850, "V850": v850, "UBOT": ubot, "VBOT": vbot,
              "QREFHT": qrefht, "PS": ps, "PSL": psl, "T200": t200, "T500": t500,
              "PRECT": prect, "TS": ts, "TREFHT": trefht, "Z1000": z1000, "Z200": z200,
              "ZBOT": zbot}
    out = np.stack([fields[v] for v in VARIABLES])
    if noise > 0:  # small-scale variability, relative to each field's spatial spread
        sd = out.reshape(len(VARIABLES), -1).std(1)[:, None, None]
        out = out + noise * sd * rng.standard_normal(out.shape)
    for v in ("TMQ", "QREFHT", "PRECT"):  # non-negative quantities
        out[VARIABLES.index(v)] = np.maximum(out[VARIABLES.index(v)], 0.0)
    return out.astype(np.float32), labels


class RealPatterns:
    r"""Large-scale patterns from a real gridded field, e.g. the monthly 500 hPa geopotential
    height of NCL's ``hgt.nc`` (Debian package ``libncarg-data``), as pressure backgrounds
    for :func:`synthetic_snapshot`.

    Each draw takes a random time step, removes its zonal mean, scales it to unit standard
    deviation (area-weighted), rolls it by a random longitude and interpolates it
    bilinearly to the target grid.

    Parameters
    ----------
    spec : str
        ``"FILE:VARIABLE"`` with VARIABLE of shape ``(time, lat, lon)`` or ``(lat, lon)``
        and coordinates named ``lat``/``latitude`` and ``lon``/``longitude``.
    lat, lon : ndarray
        The target grid (cell centres, degrees).
    """

    def __init__(self, spec: str, lat: np.ndarray, lon: np.ndarray):
        if not isinstance(spec, str) or spec.count(":") != 1:
            raise ValueError(f"background must be 'FILE:VARIABLE', e.g. '/usr/share/ncarg/data/cdf/hgt.nc:HGT', got {spec!r}")
        path, var = spec.split(":")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"background file {str(path)!r} does not exist")
        names = self._coordinate_names(path)
        raw = _read_raw(path, [names[0], names[1], var])
        slat, slon, f = raw[names[0]].ravel(), raw[names[1]].ravel(), raw[var]
        if f.ndim == 2:
            f = f[None]
        if f.ndim != 3 or f.shape[1:] != (slat.size, slon.size):
            raise ValueError(f"{path}: {var} has shape {f.shape}, expected (time, lat, lon) = (T, {slat.size}, {slon.size})")
        f = f - np.nanmean(f, axis=2, keepdims=True)
        w = np.cos(np.radians(slat))[None, :, None]
        sd = np.sqrt(np.nansum(w * f**2, axis=(1, 2), keepdims=True) / np.nansum(w * np.isfinite(f), axis=(1, 2), keepdims=True))
        self.fields = np.nan_to_num(f / np.where(sd > 0, sd, 1.0))
        self.step = 360.0 / slon.size
        LAT, LON = np.meshgrid(lat, lon, indexing="ij")
        self._interp = bilinear_matrix(slat, slon, LAT.ravel(), LON.ravel())
        self.shape = LAT.shape

    @staticmethod
    def _coordinate_names(path: Path):
        for la, lo in (("lat", "lon"), ("latitude", "longitude")):
            try:
                _read_raw(path, [la, lo])
                return la, lo
            except KeyError:
                continue
        raise KeyError(f"{path}: no lat/lon or latitude/longitude coordinates")

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        f = self.fields[rng.integers(len(self.fields))]
        f = np.roll(f, rng.integers(f.shape[1]), axis=1)
        out = (self._interp @ f.ravel()).reshape(self.shape)
        return out / (out.std() + 1e-12)


# --------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------
class _Split(Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.labels = np.ascontiguousarray(y, dtype=np.int64)
        self._y = torch.from_numpy(self.labels)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self._y[i]


def _list_files(files) -> List[Path]:
    if isinstance(files, (str, os.PathLike)):
        p = Path(files)
        if p.is_dir():
            out = sorted(p.glob("*.nc"))
        elif any(ch in str(files) for ch in "*?["):
            out = sorted(Path(f) for f in _glob.glob(str(files)))
        else:
            out = [p]
    else:
        out = [Path(f) for f in files]
        seen = {}
        for k, f in enumerate(out):  # one snapshot in two splits would leak
            first = seen.setdefault(f.resolve(), k)
            if first != k:
                raise ValueError(f"{f} is listed twice (items {first + 1} and {k + 1}) in files; "
                                 "list each snapshot once")
    if not out:
        raise FileNotFoundError(f"no NetCDF files found for files={files!r}")
    return out


class ClimateSegmentation(LabelledDataset):
    r"""Per-pixel segmentation of tropical cyclones and atmospheric rivers.

    With ``files``: ClimateNet NetCDF snapshots (one per file), regridded to the sampling
    by :class:`LatLonRegridder` and split in file order into train / val / test by
    ``split_fractions``: sorted names for a folder or a glob (time order for ClimateNet's
    names), the order given for a list (put it in time order), so neighbouring time steps
    do not leak between splits. Without ``files``: synthetic snapshots
    (:func:`synthetic_snapshot`) on a lat-lon grid of ``grid`` = (nlat, nlon), regridded the
    same way.

    Each input channel is standardised with the mean and standard deviation over the
    training split (``channel_mean``, ``channel_std``).

    Parameters
    ----------
    sampling : Sampling
    files : str, list of str, or None
        A folder (all ``*.nc``) or a glob pattern, taken in name order, or a list of files,
        taken in the order given.
    variables : list of str
        Input channels (default: all 16).
    split_fractions : list of 3 floats
        Train / val / test shares of the files.
    n_train, n_val, n_test : int
        Synthetic snapshots per split (ignored with ``files``).
    grid : [nlat, nlon], optional
        Synthetic grid; default about 10 grid cells per sampling point.
    n_rivers, n_cyclones : float
        Mean events per synthetic map (Poisson).
    background : str, optional
        ``"FILE:VARIABLE"``: real large-scale patterns for the synthetic pressure field
        (:class:`RealPatterns`), e.g. ``/usr/share/ncarg/data/cdf/hgt.nc:HGT``.
    event_fraction : float
        Smallest class area fraction for an event label in a pixel
        (see :meth:`LatLonRegridder.labels`).
    regrid : {'conservative', 'centre'}
        :class:`LatLonRegridder`'s ``method``: overlap areas (default) or each grid cell
        whole to the point holding its centre (the earlier scheme).
    seed : int

    Items are ``(x, y)``: ``x`` float32 ``[npix, len(variables)]``, ``y`` int64 ``[npix]``.
    """

    task = "segmentation"
    n_classes = 3
    class_names = CLASS_NAMES

    def __init__(self, sampling: Sampling, files: Union[None, str, List[str]] = None,
                 variables: Optional[List[str]] = None,
                 split_fractions: List[float] = (0.7, 0.1, 0.2),
                 n_train: int = 300, n_val: int = 50, n_test: int = 100,
                 grid: Optional[List[int]] = None, n_rivers: float = 3.6, n_cyclones: float = 2.0,
                 event_fraction: float = 0.5, background: Optional[str] = None,
                 regrid: str = "conservative", seed: int = 0):
        self.sampling = sampling
        self.variables = list(VARIABLES if variables is None else variables)
        unknown = [v for v in self.variables if v not in VARIABLES]
        if files is None and unknown:
            raise ValueError(f"synthetic data has no variable(s) {unknown}; choose from {list(VARIABLES)}")
        self.in_channels = len(self.variables)
        if not 0.0 < event_fraction <= 1.0:
            raise ValueError(f"event_fraction must be in (0, 1], got {event_fraction}")
        if regrid not in ("conservative", "centre"):
            raise ValueError(f"regrid must be 'conservative' (overlap areas) or 'centre' (each "
                             f"grid cell whole to one point), got {regrid!r}")
        data = {}
        if files is not None:
            paths = _list_files(files)
            fr = np.asarray(split_fractions, dtype=np.float64)
            if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
                raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {list(split_fractions)}")
            if len(paths) < 3:
                raise ValueError(f"need at least 3 files (train, val, test), found {len(paths)}: {paths}")
            cuts = np.round(np.cumsum(fr)[:2] * len(paths)).astype(int)
            cuts = np.clip(cuts, [1, 2], [len(paths) - 2, len(paths) - 1])
            cuts[1] = max(cuts[1], cuts[0] + 1)
            groups = np.split(np.arange(len(paths)), cuts)
            regridder = None
            xs, ys = [], []
            for p in paths:
                lat, lon, f, lab = read_climatenet(p, self.variables)
                if regridder is None or regridder.shape != f.shape[1:] \
                        or not (np.array_equal(regridder.lat, lat) and np.array_equal(regridder.lon, lon)):
                    regridder = LatLonRegridder(lat, lon, sampling, method=regrid)
                x = regridder(f).T
                if not np.all(np.isfinite(x)):  # would become 0 silently in val/test
                    bad = [self.variables[c] for c in np.flatnonzero(~np.isfinite(x).all(0))]
                    raise ValueError(
                        f"{p}: {bad} are missing (fill values) over whole points of the "
                        "sampling after regridding; fill or drop those fields, or this file"
                    )
                xs.append(x)
                ys.append(regridder.labels(lab, 3, event_fraction))
            self.files = {s: [paths[i] for i in g] for s, g in zip(SPLITS, groups)}
            for s, g in zip(SPLITS, groups):
                data[s] = (np.stack([xs[i] for i in g]), np.stack([ys[i] for i in g]))
        else:
            if grid is None:
                nlat = int(np.ceil(np.sqrt(10 * sampling.npix / 2)))
                grid = [nlat, 2 * nlat]
            if len(grid) != 2 or min(grid) < 4:
                raise ValueError(f"grid must be [nlat, nlon] with each >= 4, got {grid}")
            lat, lon = latlon_grid(int(grid[0]), int(grid[1]))
            regridder = LatLonRegridder(lat, lon, sampling, method=regrid)
            patterns = None if background is None else RealPatterns(background, lat, lon)
            idx = [VARIABLES.index(v) for v in self.variables]
            for s, n in zip(SPLITS, (n_train, n_val, n_test)):
                if n < 1:
                    raise ValueError(f"n_{s} must be >= 1, got {n}")
                rng = np.random.default_rng([seed, 300 + SPLITS.index(s)])
                xs, ys = [], []
                for _ in range(n):
                    pattern = None if patterns is None else patterns.draw(rng)
                    f, lab = synthetic_snapshot(lat, lon, rng, n_rivers, n_cyclones,
                                                pressure_pattern=pattern)
                    xs.append(regridder(f[idx]).T)
                    ys.append(regridder.labels(lab, 3, event_fraction))
                data[s] = (np.stack(xs), np.stack(ys))
        x_train = data["train"][0]
        if not np.all(np.isfinite(x_train)):
            bad = sorted({self.variables[c] for c in np.nonzero(~np.isfinite(x_train))[2]})
            raise ValueError(f"training inputs have missing values in {bad} after regridding")
        self.channel_mean = x_train.reshape(-1, self.in_channels).mean(0)
        self.channel_std = x_train.reshape(-1, self.in_channels).std(0)
        self.channel_std[self.channel_std == 0] = 1.0
        self._splits = {
            s: _Split(np.nan_to_num((x - self.channel_mean) / self.channel_std), y)
            for s, (x, y) in data.items()
        }

    def input_transform(self) -> dict:
        """Items are standardised per channel (see :mod:`deepsphere.data`)."""
        return {"shift": self.channel_mean.tolist(), "scale": self.channel_std.tolist()}

