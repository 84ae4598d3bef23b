r"""Weather stations: GHCN-Daily files, a synthetic station generator, and the task of
predicting tomorrow's maximum temperature at every station from the past days.

GHCN-Daily formats (fixed width, read exactly as NOAA documents them):

- ``ghcnd-stations.txt``: one station per line; columns (Python slices) ID ``[0:11]``,
  LATITUDE ``[12:20]``, LONGITUDE ``[21:30]``, ELEVATION ``[31:37]`` (-999.9 missing),
  STATE ``[38:40]``, NAME ``[41:71]``, GSN FLAG ``[72:75]``, HCN/CRN FLAG ``[76:79]``,
  WMO ID ``[80:85]`` (:func:`read_ghcnd_stations`).
- ``<ID>.dly``: one station-month-element per line, widths ``[11, 4, 2, 4]`` (ID, YEAR,
  MONTH, ELEMENT) then ``[5, 1, 1, 1]`` x 31 (VALUE, MFLAG, QFLAG, SFLAG per day); VALUE
  -9999 is missing; TMAX/TMIN/TAVG in tenths of degrees C, PRCP in tenths of mm; a
  non-blank QFLAG means the value failed quality control (:func:`read_dly`).

The stations become an :class:`~deepsphere.sampling.Irregular` sampling (its ``names`` are
the station IDs), on which :class:`GHCNDaily` and :class:`SyntheticStations` serve the same
regression task: inputs are the last ``history`` days of the variable (standardised) and
the day of the year; the target is the next day's value in physical units.
"""
from __future__ import annotations

import calendar
import datetime
import functools
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

Date = Union[str, datetime.date]

import numpy as np
import torch
from torch.utils.data import Dataset

from ..sampling import Irregular, Sampling
from .base import SPLITS, SplitDataset
from ..io import atomic_path

DLY_LINE_LENGTH = 269  # 11 + 4 + 2 + 4 + 31 * 8
MISSING = -9999
#: Physical value per stored unit for elements GHCN stores in tenths (NOAA's readme.txt:
#: degrees C, mm, m s-1, hPa); soil temperatures ``SN*#``/``SX*#`` too (:func:`element_scale`).
SCALE = {"TMAX": 0.1, "TMIN": 0.1, "TAVG": 0.1, "TOBS": 0.1, "TAXN": 0.1, "PRCP": 0.1,
         "MDPR": 0.1, "EVAP": 0.1, "MDEV": 0.1, "MNPN": 0.1, "MXPN": 0.1, "MDTN": 0.1,
         "MDTX": 0.1, "ADPT": 0.1, "AWBT": 0.1, "ASLP": 0.1, "ASTP": 0.1, "AWND": 0.1,
         "WSFG": 0.1, "WSF1": 0.1, "WSF2": 0.1, "WSF5": 0.1, "WSFI": 0.1, "WSFM": 0.1,
         "WESD": 0.1, "WESF": 0.1, "THIC": 0.1}


def element_scale(element: str) -> float:
    """Physical value per stored unit of a GHCN-Daily element: 0.1 for the elements
    stored in tenths (:data:`SCALE`, soil temperatures ``SN*#``/``SX*#``), else 1 (SNOW
    and SNWD in mm, percentages, minutes, day counts)."""
    if element in SCALE:
        return SCALE[element]
    if len(element) == 4 and element[:2] in ("SN", "SX") and element[2:].isdigit():
        return 0.1
    return 1.0


# --------------------------------------------------------------------------------------
# ghcnd-stations.txt
# --------------------------------------------------------------------------------------
# the blank columns (0-based) between the fields of ghcnd-stations.txt: a shifted line would
# otherwise still parse, with digits cut off the coordinates
_STATION_SEPARATORS = {11: ("ID", "LATITUDE"), 20: ("LATITUDE", "LONGITUDE"),
                       30: ("LONGITUDE", "ELEVATION"), 37: ("ELEVATION", "STATE"),
                       40: ("STATE", "NAME"), 71: ("NAME", "GSN FLAG"),
                       75: ("GSN FLAG", "HCN/CRN FLAG"), 79: ("HCN/CRN FLAG", "WMO ID")}


def read_ghcnd_stations(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Read a ``ghcnd-stations.txt`` file.

    Returns a dict of equal-length arrays: ``id``, ``name``, ``state``, ``gsn``, ``hcn``,
    ``wmo`` (str), ``lat``, ``lon`` (degrees), ``elev`` (m, NaN where -999.9).

    Raises ``ValueError`` naming the line for a short line, a non-blank column between two
    fields (a line shifted by re-spacing, which would otherwise parse with digits cut off),
    a coordinate that is not a number or out of range, or a repeated ID.
    """
    path = Path(path)
    cols = {k: [] for k in ("id", "lat", "lon", "elev", "state", "name", "gsn", "hcn", "wmo")}
    seen = {}
    with path.open("r", encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if len(line) < 37:
                raise ValueError(
                    f"{path}, line {lineno}: {len(line)} characters, but a station line needs at "
                    f"least 37 (ID, LATITUDE, LONGITUDE, ELEVATION in columns 1-37): {line!r}"
                )
            sid = line[0:11].strip()
            for pos, (left, right) in _STATION_SEPARATORS.items():
                if pos < len(line) and line[pos] != " ":
                    raise ValueError(
                        f"{path}, line {lineno} (station {sid!r}): column {pos + 1}, between {left} "
                        f"and {right}, holds {line[pos]!r} where the format has a blank: the fixed-"
                        "width fields are shifted (ID 1-11, LATITUDE 13-20, LONGITUDE 22-30, "
                        "ELEVATION 32-37, STATE 39-40, NAME 42-71, GSN 73-75, HCN/CRN 77-79, WMO "
                        "81-85). Use the file as NOAA distributes it, not re-spaced or re-saved."
                    )
            vals = {}
            for key, label, sl, lo, hi in (("lat", "LATITUDE", slice(12, 20), -90, 90),
                                           ("lon", "LONGITUDE", slice(21, 30), -180, 360),
                                           ("elev", "ELEVATION", slice(31, 37), -1000, 9000)):
                text = line[sl]
                try:
                    v = float(text)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {lineno} (station {sid!r}): {label} {text!r} in columns "
                        f"{sl.start + 1}-{sl.stop} is not a number"
                    ) from None
                if key == "elev" and v == -999.9:
                    v = np.nan
                elif not (lo <= v <= hi):
                    raise ValueError(
                        f"{path}, line {lineno} (station {sid!r}): {label} {v} is out of range "
                        f"[{lo}, {hi}]"
                    )
                vals[key] = v
            if not sid:
                raise ValueError(f"{path}, line {lineno}: empty station ID in columns 1-11")
            if sid in seen:
                raise ValueError(f"{path}, line {lineno}: station {sid} already listed on line {seen[sid]}")
            seen[sid] = lineno
            padded = line.ljust(85)
            cols["id"].append(sid)
            for k in ("lat", "lon", "elev"):
                cols[k].append(vals[k])
            cols["state"].append(padded[38:40].strip())
            cols["name"].append(padded[41:71].strip())
            cols["gsn"].append(padded[72:75].strip())
            cols["hcn"].append(padded[76:79].strip())
            cols["wmo"].append(padded[80:85].strip())
    if not cols["id"]:
        raise ValueError(f"{path}: no stations")
    return {k: np.asarray(v, dtype=np.float64 if k in ("lat", "lon", "elev") else object)
            for k, v in cols.items()}


# --------------------------------------------------------------------------------------
# .dly files
# --------------------------------------------------------------------------------------
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _int_field(text: str, path, lineno: int, what: str) -> int:
    # int() alone also takes '1_2' (as 12) and non-ASCII digits
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{path}, line {lineno}: {what} {text!r} is not an integer")
    return int(text)


def read_dly(path: Union[str, Path], elements: Optional[Sequence[str]] = None,
             quality_control: bool = True) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Read one GHCN-Daily ``.dly`` file.

    Parameters
    ----------
    path : str or Path
    elements : sequence of str, optional
        Keep only these elements (e.g. ``["TMAX", "TMIN"]``); default all.
    quality_control : bool
        Treat values with a non-blank QFLAG (failed a quality check) as missing.

    Returns
    -------
    dict
        ``element -> (dates, values)``: ``dates`` sorted ``datetime64[D]``, ``values`` float64
        in physical units (tenths converted: degrees C, mm), NaN where missing or flagged.

    Raises ``ValueError`` naming the line for a malformed line (wrong length, non-numeric
    year/month/value, a month outside 1-12, a value on a day the month does not have, a
    station ID differing from the first line's, a repeated station-month-element).
    """
    path = Path(path)
    keep = None if elements is None else set(elements)
    out: Dict[str, Dict[np.datetime64, float]] = {}
    first_id = None
    seen = set()
    with path.open("r", encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if len(line) > DLY_LINE_LENGTH or len(line) < DLY_LINE_LENGTH - 3:
                raise ValueError(
                    f"{path}, line {lineno}: {len(line)} characters, expected {DLY_LINE_LENGTH} "
                    "(ID 11, YEAR 4, MONTH 2, ELEMENT 4, then 31 x (VALUE 5, MFLAG, QFLAG, SFLAG))"
                )
            line = line.ljust(DLY_LINE_LENGTH)  # trailing blank flags may have been stripped
            sid = line[0:11]
            if first_id is None:
                first_id = sid
            elif sid != first_id:
                raise ValueError(
                    f"{path}, line {lineno}: station {sid.strip()!r} differs from {first_id.strip()!r} on "
                    "the first line; a .dly file holds one station"
                )
            year = _int_field(line[11:15], path, lineno, "YEAR")
            month = _int_field(line[15:17], path, lineno, "MONTH")
            element = line[17:21]
            if not element.strip() or not element.isalnum():
                raise ValueError(f"{path}, line {lineno}: ELEMENT {element!r} is not a 4-character code")
            if not 1 <= month <= 12:
                raise ValueError(f"{path}, line {lineno}: MONTH {month} is not in 1-12")
            key = (year, month, element)
            if key in seen:
                raise ValueError(f"{path}, line {lineno}: {element} {year}-{month:02d} appears twice")
            seen.add(key)
            if keep is not None and element not in keep:
                continue
            ndays = calendar.monthrange(year, month)[1]
            scale = element_scale(element)
            series = out.setdefault(element, {})
            base = np.datetime64(f"{year:04d}-{month:02d}-01", "D")
            for d in range(31):
                o = 21 + 8 * d
                value = _int_field(line[o:o + 5], path, lineno, f"VALUE of day {d + 1}")
                qflag = line[o + 6]
                if d >= ndays:
                    if value != MISSING:
                        raise ValueError(
                            f"{path}, line {lineno}: {element} {year}-{month:02d} has a value ({value}) "
                            f"on day {d + 1}, but the month has {ndays} days"
                        )
                    continue
                v = np.nan if value == MISSING or (quality_control and qflag != " ") else value * scale
                series[base + d] = v
    if first_id is None:
        raise ValueError(f"{path}: the .dly file is empty (no data lines); is the download complete?")
    result = {}
    for element, series in out.items():
        dates = np.array(sorted(series), dtype="datetime64[D]")
        result[element] = (dates, np.array([series[d] for d in dates], dtype=np.float64))
    return result


def write_dly(path: Union[str, Path], station_id: str, element: str, dates: np.ndarray,
              values: np.ndarray, qflags: Optional[Sequence[str]] = None, mode: str = "w") -> Path:
    """Write daily values of one element in the exact ``.dly`` layout (the inverse of
    :func:`read_dly`): NaN becomes -9999, values are stored in GHCN units (tenths where
    :data:`SCALE` says so). ``qflags`` gives a QFLAG character per value (blank: passed)."""
    path = Path(path)
    if len(station_id) > 11:
        raise ValueError(f"station ID {station_id!r} is longer than 11 characters")
    dates = np.asarray(dates, dtype="datetime64[D]")
    values = np.asarray(values, dtype=np.float64)
    qflags = [" "] * len(dates) if qflags is None else list(qflags)
    scale = element_scale(element)
    months: Dict[Tuple[int, int], dict] = {}
    for d, v, q in zip(dates, values, qflags):
        y, m, day = (int(x) for x in str(d).split("-"))
        months.setdefault((y, m), {})[day] = (v, q)
    lines = []
    for (y, m) in sorted(months):
        parts = [f"{station_id:<11}{y:04d}{m:02d}{element:<4}"]
        for day in range(1, 32):
            v, q = months[(y, m)].get(day, (np.nan, " "))
            iv = MISSING if not np.isfinite(v) else int(round(v / scale))
            parts.append(f"{iv:5d} {q or ' '} ")
        lines.append("".join(parts))
    previous = path.read_text() if mode == "a" and path.exists() else ""
    with atomic_path(path) as tmp:  # appending included: the old file stays whole until done
        tmp.write_text(previous + "\n".join(lines) + "\n")
    return path


@functools.lru_cache(maxsize=8)
def _daily_matrix_cached(dly_dir: str, ids: Tuple[str, ...], element: str, start: str,
                         end: str, quality_control: bool, mtime_key: tuple) -> np.ndarray:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    out = np.full((days.size, len(ids)), np.nan)
    for j, sid in enumerate(ids):
        p = Path(dly_dir) / f"{sid}.dly"
        if not p.is_file():
            raise FileNotFoundError(f"no file {p} for station {sid}")
        data = read_dly(p, [element], quality_control)
        if element not in data:
            continue
        dates, values = data[element]
        idx = (dates - days[0]).astype(np.int64)
        ok = (idx >= 0) & (idx < days.size)
        out[idx[ok], j] = values[ok]
    out.setflags(write=False)
    return out


def _day(value: Date, what: str) -> np.datetime64:
    try:
        return np.datetime64(str(value), "D")
    except ValueError as e:
        raise ValueError(f"{what} {str(value)!r} is not a date ({e}); use ISO dates, e.g. '2010-01-31'") from None


def daily_matrix(dly_dir: Union[str, Path], station_ids: Sequence[str], element: str,
                 start: Date, end: Date, quality_control: bool = True) -> np.ndarray:
    """Values of ``element`` for every day from ``start`` to ``end`` (inclusive, ISO dates)
    at each station, ``(n_days, n_stations)`` float64, NaN where missing. Reads
    ``dly_dir/<ID>.dly``; repeated calls with the same files are served from a cache."""
    ids = tuple(str(s) for s in station_ids)
    first, last = _day(start, "start"), _day(end, "end")
    if first > last:
        raise ValueError(f"start {first} is after end {last}: the period is empty")
    start, end = str(first), str(last)
    key = tuple(os.stat(Path(dly_dir) / f"{s}.dly").st_mtime_ns if (Path(dly_dir) / f"{s}.dly").is_file()
                else None for s in ids)
    return np.array(_daily_matrix_cached(str(dly_dir), ids, element, str(start), str(end),
                                         bool(quality_control), key))


def fill_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation in time (axis 0) across runs of at most ``max_gap`` missing
    days bounded by observations on both sides; longer gaps and the ends stay NaN."""
    out = np.array(values, dtype=np.float64)
    t = np.arange(out.shape[0])
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = np.isfinite(col)
        if ok.sum() < 2 or ok.all():
            continue
        interp = np.interp(t, t[ok], col[ok])
        # length of the missing run each day belongs to
        miss = ~ok
        run_id = np.cumsum(np.r_[True, miss[1:] != miss[:-1]])
        lengths = np.bincount(run_id)[run_id]
        inside = (t > t[ok][0]) & (t < t[ok][-1])
        fill = miss & inside & (lengths <= max_gap)
        col[fill] = interp[fill]
    return out


# --------------------------------------------------------------------------------------
# samplings (registered for configs)
# --------------------------------------------------------------------------------------
def _degree_range(r, name: str) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [first, last] in degrees, got {r!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {r!r}")
    return lo, hi


def ghcn_sampling(stations: str, dly_dir: Optional[str] = None, element: str = "TMAX",
                  start: Optional[str] = None, end: Optional[str] = None,
                  min_coverage: float = 0.9, lat_range: Optional[List[float]] = None,
                  lon_range: Optional[List[float]] = None, max_stations: Optional[int] = None,
                  min_separation_km: float = 1.0) -> Irregular:
    """GHCN stations as an :class:`~deepsphere.sampling.Irregular` sampling (names = IDs).

    With ``dly_dir``, only stations that have ``<ID>.dly`` there and at least
    ``min_coverage`` of the days from ``start`` to ``end`` with a valid ``element`` value
    are kept. Stations within ``min_separation_km`` of a station kept before are dropped
    (co-located stations would be duplicate graph vertices). ``lat_range``/``lon_range``
    (degrees, ``[min, max]``) select a region; ``lon_range`` runs eastward from its first
    value to its second, so ``[170, -170]`` is the 20 degrees across the antimeridian (either
    longitude convention works). ``max_stations`` keeps the best covered.
    """
    st = read_ghcnd_stations(stations)
    keep = np.ones(st["id"].size, bool)
    if lat_range is not None:
        lo, hi = _degree_range(lat_range, "lat_range")
        if not -90 <= lo <= hi <= 90:
            raise ValueError(f"lat_range must be [min, max] with -90 <= min <= max <= 90, got {lat_range}")
        keep &= (st["lat"] >= lo) & (st["lat"] <= hi)
    if lon_range is not None:
        lo, hi = _degree_range(lon_range, "lon_range")
        if hi - lo < 360:  # else the whole circle
            keep &= np.mod(st["lon"] - lo, 360.0) <= np.mod(hi - lo, 360.0)
    idx = np.flatnonzero(keep)
    coverage = np.ones(idx.size)
    if dly_dir is not None:
        have = np.array([(Path(dly_dir) / f"{st['id'][i]}.dly").is_file() for i in idx], bool)
        idx = idx[have]
        if idx.size == 0:
            raise ValueError(f"none of the selected stations of {stations} has a .dly file in {dly_dir}")
        if start is None or end is None:
            raise ValueError("ghcn_sampling with dly_dir needs start and end dates (e.g. '2010-01-01')")
        m = daily_matrix(dly_dir, st["id"][idx].tolist(), element, start, end)
        coverage = np.isfinite(m).mean(0)
        good = coverage >= min_coverage
        idx, coverage = idx[good], coverage[good]
        if idx.size == 0:
            raise ValueError(
                f"no station has {element} on at least {min_coverage:.0%} of the days {start}..{end}; "
                "lower min_coverage or change the period"
            )
    order = np.argsort(-coverage, kind="stable")
    idx = idx[order]
    # drop near-duplicates, keeping the better covered
    from scipy.spatial import cKDTree

    lat, lon = np.radians(st["lat"][idx]), np.radians(st["lon"][idx])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
    tree = cKDTree(xyz)
    chord = 2 * np.sin(min_separation_km / 6371.0 / 2)
    dropped = np.zeros(idx.size, bool)
    for i, j in sorted(tree.query_pairs(chord)):
        if not dropped[i]:
            dropped[j] = True
    idx = idx[~dropped]
    if max_stations is not None:
        idx = idx[: int(max_stations)]
    idx = np.sort(idx)
    return Irregular(st["lon"][idx], st["lat"][idx], units="deg", names=st["id"][idx].tolist())


def random_stations(n: int = 400, seed: int = 0, lat_range: List[float] = (-60.0, 75.0),
                    min_separation_deg: Optional[float] = None) -> Irregular:
    """``n`` stations at random positions, uniform over the sphere's area within
    ``lat_range``, no two closer than ``min_separation_deg`` (default half the mean
    spacing; dart throwing), named ``S0000``, ``S0001``, ..."""
    rng = np.random.default_rng([seed, 77])
    lo, hi = np.sin(np.radians(lat_range[0])), np.sin(np.radians(lat_range[1]))
    frac = (hi - lo) / 2
    if min_separation_deg is None:
        min_separation_deg = 0.5 * np.degrees(np.sqrt(4 * np.pi * frac / n))
    cmin = 2 * np.sin(np.radians(min_separation_deg) / 2)
    pts = []
    for _ in range(200 * n):
        z = rng.uniform(lo, hi)
        phi = rng.uniform(0, 2 * np.pi)
        r = np.sqrt(1 - z * z)
        p = np.array([r * np.cos(phi), r * np.sin(phi), z])
        if not pts or np.min(np.linalg.norm(np.asarray(pts) - p, axis=1)) >= cmin:
            pts.append(p)
            if len(pts) == n:
                break
    if len(pts) < n:
        raise ValueError(f"could only place {len(pts)} of {n} stations {min_separation_deg} degrees apart")
    pts = np.asarray(pts)
    lat = np.degrees(np.arcsin(pts[:, 2]))
    lon = np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
    return Irregular(lon, lat, units="deg", names=[f"S{i:04d}" for i in range(n)])


# --------------------------------------------------------------------------------------
# the regression task
# --------------------------------------------------------------------------------------
class _WindowSplit(Dataset):
    """Items for times ``t`` in ``targets``: ``x`` = standardised values at times
    ``t-history .. t-1`` followed by the known features of time ``t`` (day of the year,
    local hour), ``y`` = centred values at time ``t``.

    ``causal = (held, next_obs)``, when values were gap-filled: a filled input at time s
    whose gap closes only at or after ``t`` (``next_obs[s] >= t``) takes ``held[s]``, the
    last observation before it, since its interpolation used the target time's value."""

    def __init__(self, z: np.ndarray, raw: np.ndarray, targets: np.ndarray, history: int,
                 features: Optional[np.ndarray], causal: Optional[tuple] = None):
        self.z = z.astype(np.float32)
        self.raw = raw.astype(np.float32)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.history = history
        self.features = None if features is None else features.astype(np.float32)
        self.causal = causal

    def __len__(self) -> int:
        return self.targets.size

    def __getitem__(self, i: int):
        t = int(self.targets[i])
        x = self.z[t - self.history:t]
        if self.causal is not None:
            held, next_obs = self.causal
            x = np.where(next_obs[t - self.history:t] >= t, held[t - self.history:t], x)
        x = x.T  # (n_stations, history)
        if self.features is not None:
            f = np.broadcast_to(self.features[t], (x.shape[0], self.features.shape[-1]))
            x = np.concatenate([x, f], axis=1)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(self.raw[t][:, None].copy())


def day_of_year_features(days: np.ndarray) -> np.ndarray:
    """``(n_days, 1, 2)``: sine and cosine of :math:`2\\pi d / 365.25`, d = day of the year
    from 0 (the same for every station)."""
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64).astype(np.float64)
    a = 2 * np.pi * doy / 365.25
    return np.stack([np.sin(a), np.cos(a)], axis=-1)[:, None, :]


def local_time_features(hours: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(n_hours, n_stations, 2)``: sine and cosine of the local solar time
    :math:`2\\pi (h + \\lambda / 15°) / 24`, h = hour of the day (UTC), :math:`\\lambda` the
    station's longitude in degrees."""
    a = 2 * np.pi * (np.asarray(hours, dtype=np.float64)[:, None] + np.asarray(lon)[None, :] / 15.0) / 24.0
    return np.stack([np.sin(a), np.cos(a)], axis=-1)


#: The known features of the target time a station dataset appends to the history channels:
#: what :func:`time_features` needs to rebuild them, and how a user builds them by hand.
TIME_FEATURES = {
    "day_of_year": ("the date of the day each map predicts (e.g. '2020-03-01')",
                    "np.broadcast_to(day_of_year_features(np.array(dates, 'datetime64[D]')), "
                    "(n, n_stations, 2)), sin and cos of 2 pi d / 365.25 with d the day of the "
                    "year from 0"),
    "local_time": ("the hour of the day (UTC) each map predicts (e.g. 13)",
                   "local_time_features(hours, sampling.lon), sin and cos of "
                   "2 pi (h + lon / 15) / 24"),
}


def time_features(kind: str, times, sampling: Sampling) -> np.ndarray:
    """The known-feature channels ``(len(times), sampling.npix, 2)`` of a station dataset
    (``kind`` from its ``known_features``) for the given target times: dates for
    ``'day_of_year'`` (:func:`day_of_year_features`), hours of the day (UTC) for
    ``'local_time'`` (:func:`local_time_features`)."""
    if kind not in TIME_FEATURES:
        raise ValueError(f"unknown time features {kind!r}; known: {sorted(TIME_FEATURES)}")
    t = np.atleast_1d(np.asarray(times))
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty list, one per map, got shape {np.shape(times)}")
    if kind == "day_of_year":
        days, coarse = None, False
        try:
            if t.dtype.kind in "MU" or t.dtype == object:
                days = t.astype("datetime64[D]")
                # numpy reads '98' or '2001' as a year and '2001-04' as a month, i.e. their
                # first day: a day number or an hour given by mistake became January 1st
                units = ([np.datetime_data(t.dtype)[0]] if t.dtype.kind == "M" else
                         [np.datetime_data(np.datetime64(str(v)).dtype)[0] for v in t])
                coarse = any(u in ("Y", "M") for u in units)
        except ValueError:
            days = None
        if days is None or coarse or np.isnat(days).any():
            raise ValueError(f"times must be dates ('YYYY-MM-DD' or numpy datetime64 in days or "
                             f"finer) for day-of-year features, got {t[:3].tolist()}"
                             + (": a year or a month alone does not say the day" if coarse else ""))
        return np.broadcast_to(day_of_year_features(days), (t.size, sampling.npix, 2))
    try:
        hours = t.astype(np.float64)
    except (ValueError, TypeError):
        hours = np.array([np.nan])
    if not np.isfinite(hours).all():
        raise ValueError(f"times must be hours of the day (numbers, UTC) for local-time features, "
                         f"got {t[:3].tolist()}")
    return local_time_features(hours, sampling.lon)


def _causal_fill(values: np.ndarray, observed: np.ndarray, mean: float, std: float):
    """``(held, next_obs)`` for :class:`_WindowSplit`: ``held[s]`` the last observation at
    or before time s, standardised (float32), and ``next_obs[s]`` the first observed time
    at or after s (``n_times`` where none), per station."""
    n = values.shape[0]
    obs = np.asarray(observed, bool)
    t = np.arange(n)[:, None]
    last = np.maximum.accumulate(np.where(obs, t, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(obs, t, n)[::-1], axis=0)[::-1]
    cols = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    held = np.where(last >= 0, values[np.maximum(last, 0), cols], np.nan)
    return (np.nan_to_num((held - mean) / std).astype(np.float32),
            nxt.astype(np.int64))


class _StationTask(SplitDataset):
    """Shared by the station datasets: given a matrix ``(n_times, n_stations)`` (NaN where
    missing), build windows and split the target times into consecutive periods."""

    task = "regression"
    out_channels = 1
    #: ``{"kind": ..., "channels": n}`` of the known features of the target time appended
    #: to the history (a key of :data:`TIME_FEATURES`), None without; stored in checkpoints
    #: so that ``predict`` can compute them from the target times.
    known_features: Optional[dict] = None

    def _setup(self, values: np.ndarray, history: int, split_fractions: Sequence[float],
               features: Optional[np.ndarray] = None, feature_kind: Optional[str] = None,
               observed: Optional[np.ndarray] = None) -> None:
        """``observed``: where ``values`` are observations rather than gap fills
        (:func:`fill_gaps`); inputs never use a fill interpolated from the target time."""
        if history < 1:
            raise ValueError(f"history must be >= 1 time step, got {history}")
        fr = np.asarray(split_fractions, dtype=np.float64)
        if fr.shape != (3,) or np.any(fr <= 0) or not np.isclose(fr.sum(), 1.0):
            raise ValueError(f"split_fractions must be 3 positive numbers summing to 1, got {list(split_fractions)}")
        n_times = values.shape[0]
        # a target time t is usable if times t-history..t are all observed (after gap filling)
        ok = np.isfinite(values).all(axis=1)
        win = np.convolve(ok.astype(int), np.ones(history + 1, int), "valid") == history + 1
        usable = np.flatnonzero(win) + history
        if usable.size < 3:
            raise ValueError(
                f"only {usable.size} time steps have {history} complete previous steps at every "
                "station; lower history, raise max_gap or select better covered stations"
            )
        # consecutive periods of target times; inputs may reach back into the previous period
        # (past observations are known when forecasting), targets never overlap
        cuts = np.round(np.cumsum(fr)[:2] * n_times).astype(int)
        bounds = [(0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n_times)]
        self.history = history
        self.in_channels = history + (0 if features is None else features.shape[-1])
        self.known_features = None if features is None else {"kind": feature_kind,
                                                              "channels": int(features.shape[-1])}
        train = values[:bounds[0][1]]
        train = train[np.isfinite(train)]
        self.mean, self.std = float(train.mean()), float(train.std() or 1.0)
        z = np.nan_to_num((values - self.mean) / self.std)
        causal = None
        if observed is not None and (np.isfinite(values) & ~observed).any():
            causal = _causal_fill(values, observed, self.mean, self.std)
        self._splits = {}
        for name, (a, b) in zip(SPLITS, bounds):
            t = usable[(usable >= a) & (usable < b)]
            if t.size == 0:
                raise ValueError(f"the {name} period (time steps {a}..{b - 1}) has no usable target")
            self._splits[name] = _WindowSplit(z, np.nan_to_num(values - self.mean), t, history, features,
                                              causal)

    def input_transform(self) -> dict:
        """The history channels are standardised, the known features (season, hour) are
        not; targets are centred on ``mean`` (see :mod:`deepsphere.data`)."""
        extra = self.in_channels - self.history
        return {"shift": [self.mean] * self.history + [0.0] * extra,
                "scale": [self.std] * self.history + [1.0] * extra, "target_shift": self.mean}



class GHCNDaily(_StationTask):
    r"""Predict the next day's ``element`` (default TMAX, degrees C) at every station from
    its last ``history`` days, on GHCN-Daily ``.dly`` files.

    The sampling's ``names`` are the station IDs (see :func:`ghcn_sampling`); values that
    failed quality control count as missing, gaps of at most ``max_gap`` days are filled
    by linear interpolation in time, and only target days whose whole input window and
    target are observed (or filled) at every station are used. An input day filled from a
    gap that closes on the target day or later holds the last observation instead: its
    interpolation would carry the value to be predicted. Train / val / test are
    consecutive periods (``split_fractions``). Inputs are standardised with the training
    period's mean :math:`\mu` (``dataset.mean``) and standard deviation; targets are in
    physical units centred on :math:`\mu` (add ``dataset.mean`` for absolute values), so
    MSE, MAE and :math:`R^2` are those of the temperature in degrees C.

    Items: ``x`` float32 ``[n_stations, history (+2)]``, ``y`` float32 ``[n_stations, 1]``.
    """

    def __init__(self, sampling: Sampling, dly_dir: str, start: str, end: str,
                 element: str = "TMAX", history: int = 5, max_gap: int = 3,
                 split_fractions: List[float] = (0.7, 0.15, 0.15), season: bool = True,
                 quality_control: bool = True):
        names = getattr(sampling, "names", None)
        if not names:
            raise ValueError(
                "GHCNDaily needs a sampling whose names are station IDs (use the 'ghcn_stations' "
                "sampling, or Irregular(..., names=ids))"
            )
        self.sampling = sampling
        self.element = element
        values = daily_matrix(dly_dir, names, element, start, end, quality_control)
        observed = np.isfinite(values)
        values = fill_gaps(values, max_gap)
        days = np.arange(_day(start, "start"), _day(end, "end") + 1)
        self._setup(values, history, split_fractions, day_of_year_features(days) if season else None,
                    "day_of_year", observed)


class SyntheticStations(_StationTask):
    r"""Daily maximum temperature at the sampling's stations from a smooth, advected field.

    .. math:: T(x, t) = \bar T(\varphi, t) + o(x) + A(x, t) + \epsilon(x, t)

    - climatology :math:`\bar T = 28 - 32 \sin^2\varphi + 14\,\sin\varphi\,
      \cos(2\pi (d - 200)/365.25)` (degrees C; warm equator, seasons opposite in the two
      hemispheres);
    - a fixed per-station offset :math:`o \sim N(0, 2^2)` (elevation, local climate);
    - weather :math:`A`, a Gaussian random field of band limit ``lmax`` with
      :math:`C_\ell \propto (\ell + 1)^{-2}`, standard deviation ``anomaly_std``, carried
      eastward by solid-body rotation about the pole at ``wind`` degrees per day and
      renewed as an AR(1) process, exactly in harmonic space:
      :math:`a_{\ell m}(t+1) = \rho\, e^{-i m \omega} a_{\ell m}(t) + \sqrt{1-\rho^2}\,\xi_{\ell m}`;
    - station noise :math:`\epsilon \sim N(0,` ``noise``:math:`^2)`.

    Tomorrow's weather at a station is today's weather upwind (about ``wind`` x cos(lat)
    degrees west), so a graph convolution that sees the neighbours predicts it better
    than the station's own history can.

    Parameters
    ----------
    sampling : Sampling
        Station positions (any sampling; e.g. ``random_stations`` or ``ghcn_stations``).
    n_days : int
        Length of the series; split in time by ``split_fractions``.
    history : int
        Days of input.
    wind : float
        Advection, degrees of longitude per day.
    rho : float
        Day-to-day memory of the weather field, in (0, 1).
    """

    def __init__(self, sampling: Sampling, n_days: int = 1460, history: int = 5,
                 wind: float = 8.0, rho: float = 0.95, anomaly_std: float = 5.0,
                 noise: float = 1.0, lmax: int = 20, start: str = "2001-01-01",
                 split_fractions: List[float] = (0.7, 0.15, 0.15), season: bool = True,
                 seed: int = 0):
        if not 0 < rho < 1:
            raise ValueError(f"rho must be in (0, 1), got {rho}")
        if n_days < 3 * (history + 2):
            raise ValueError(f"n_days={n_days} is too short for history={history} and three splits")
        self.sampling = sampling
        self.element = "TMAX"
        rng = np.random.default_rng([seed, 500])
        values = synthetic_temperature(sampling, n_days, rng, wind, rho, anomaly_std, noise, lmax,
                                       np.datetime64(start, "D"))
        days = np.arange(np.datetime64(start, "D"), np.datetime64(start, "D") + n_days)
        self._setup(values, history, split_fractions, day_of_year_features(days) if season else None,
                    "day_of_year")


def _real_harmonics(lmax: int, theta: np.ndarray, phi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Complex :math:`Y_{\\ell m}(\\theta, \\phi)` for ``0 <= m <= l <= lmax``: matrix
    ``(npoints, n_lm)``, and the ``m`` and ``l`` of each column."""
    from scipy.special import sph_harm_y

    ls, ms = [], []
    for l in range(lmax + 1):
        for m in range(l + 1):
            ls.append(l)
            ms.append(m)
    ls, ms = np.array(ls), np.array(ms)
    Y = sph_harm_y(ls[None, :], ms[None, :], theta[:, None], phi[:, None])
    return Y, ms, ls


def synthetic_temperature(sampling: Sampling, n_days: int, rng: np.random.Generator,
                          wind: float = 8.0, rho: float = 0.95, anomaly_std: float = 5.0,
                          noise: float = 1.0, lmax: int = 20,
                          start: np.datetime64 = np.datetime64("2001-01-01")) -> np.ndarray:
    """The daily field of :class:`SyntheticStations` at the sampling's points,
    ``(n_days, npix)`` in degrees C."""
    Y, m, ell = _real_harmonics(int(lmax), sampling.theta, sampling.phi)
    cl = np.where(ell >= 1, (ell + 1.0) ** -2.0, 0.0)
    sd = np.sqrt(cl)
    # real field f = sum_l [a_l0 Y_l0 + 2 Re sum_{m>0} a_lm Y_lm]; normalise its variance
    weight = np.where(m == 0, 1.0, 2.0)
    rot = np.exp(-1j * m * np.radians(wind))
    innov = np.sqrt(1 - rho**2)

    def draw():
        re, im = rng.standard_normal(m.size), rng.standard_normal(m.size)
        return np.where(m == 0, sd * re, sd * (re + 1j * im) / np.sqrt(2))

    a = draw()
    field = np.empty((n_days, sampling.npix))
    for t in range(n_days):
        field[t] = np.real(Y @ (weight * a))
        a = rho * rot * a + innov * draw()
    field *= anomaly_std / field.std()
    lat = np.radians(sampling.lat)
    days = start + np.arange(n_days)
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64)
    season = np.cos(2 * np.pi * (doy - 200) / 365.25)
    clim = 28.0 - 32.0 * np.sin(lat)[None, :] ** 2 + 14.0 * np.sin(lat)[None, :] * season[:, None]
    offset = 2.0 * rng.standard_normal(sampling.npix)
    return clim + offset[None, :] + field + noise * rng.standard_normal(field.shape)


# --------------------------------------------------------------------------------------
# hourly surface reports (NetCDF "SAO" files, e.g. 950318_sao.cdf from NCL's data)
# --------------------------------------------------------------------------------------
#: Plausible ranges of the SAO variables, for the range check.
SAO_RANGES = {"T": (-60.0, 50.0), "TD": (-70.0, 35.0), "PSL": (900.0, 1080.0),
              "SPD": (0.0, 80.0)}


def read_sao(path: Union[str, Path], variable: str = "T", max_coordinate_spread: float = 0.2,
             spike: float = 10.0) -> Dict[str, np.ndarray]:
    r"""Read hourly station reports from an SAO-style NetCDF file and quality-control them.

    The file has dimensions ``(report, hour)``: each cell is one report with its own
    station ``id`` (characters), ``lat``, ``lon`` and values (fill -9999), slot ``hour``
    = hour of the day. Reports are gathered per station ID. Quality control:

    - a station's position is the median of its reports' valid coordinates (longitudes
      taken across the antimeridian, returned in [-180, 180)); a report
      without coordinates (fill value) takes it, one with coordinates out of range or
      farther than ``max_coordinate_spread`` degrees from it is dropped (a mislabelled
      report), as are the reports of a station with no valid coordinate at all;
    - values outside :data:`SAO_RANGES` are missing;
    - a spike (a value differing from both hourly neighbours by more than ``spike`` in the
      same direction) is missing;
    - repeated reports of one station in one hour are averaged.

    Returns a dict: ``id`` (str array), ``lat``, ``lon`` (degrees), ``values`` float64
    ``(24, n_stations)`` with NaN where missing, and ``n_dropped`` (station reports dropped
    by the coordinate checks).
    """
    from scipy.io import netcdf_file

    path = Path(path)
    if _sniff(path) != "netcdf3":
        raise ValueError(f"{path}: expected a NetCDF3 file (starting with b'CDF')")
    try:
        with netcdf_file(str(path), "r", mmap=False) as f:
            for name in ("id", "lat", "lon", variable):
                if name not in f.variables:
                    raise KeyError(f"{path}: no variable {name!r}; the file has {', '.join(sorted(f.variables))}")
            ids = f.variables["id"][:]
            lat = f.variables["lat"][:].astype(np.float64)
            lon = f.variables["lon"][:].astype(np.float64)
            var = f.variables[variable]
            vals = var[:].astype(np.float64)
            fill = float(getattr(var, "_FillValue", -9999.0))
    except (ValueError, TypeError, IndexError, EOFError, OSError) as e:  # scipy's, without the path
        raise ValueError(f"{path}: cannot read this NetCDF3 file, it looks truncated or corrupt "
                         f"({e}); copy or download it again") from None
    if ids.ndim != 3 or lat.shape != ids.shape[:2] or vals.shape != lat.shape:
        raise ValueError(f"{path}: expected id (report, hour, chars) and (report, hour) fields")
    n_hours = vals.shape[1]
    names = np.array([b"".join(r).decode("ascii", "replace").strip() for r in ids.reshape(-1, ids.shape[2])])
    hour = np.tile(np.arange(n_hours), lat.shape[0])
    lat, lon, vals = lat.ravel(), lon.ravel(), vals.ravel()
    vals[(vals == fill) | (vals == -9999.0)] = np.nan
    lo, hi = SAO_RANGES.get(variable, (-np.inf, np.inf))
    vals[(vals < lo) | (vals > hi)] = np.nan
    named = names != ""
    names, hour, lat, lon, vals = names[named], hour[named], lat[named], lon[named], vals[named]
    # a report without coordinates (fill value) takes its station's position; one with
    # coordinates out of range or off the station's position is dropped
    absent = (lat == fill) | (lon == fill) | (lat == -9999.0) | (lon == -9999.0)
    valid = ~absent & (np.abs(lat) <= 90) & (lon >= -180) & (lon <= 360)
    lon = np.where(lon > 180, lon - 360, lon)
    uniq, inv = np.unique(names, return_inverse=True)
    med_lat = np.full(uniq.size, np.nan)
    med_lon = np.full(uniq.size, np.nan)
    order = np.argsort(inv[valid], kind="stable")
    groups = np.split(np.flatnonzero(valid)[order], np.flatnonzero(np.diff(inv[valid][order])) + 1)
    for g in groups:
        if g.size:
            med_lat[inv[g[0]]] = np.median(lat[g])
            # longitudes unwrapped around the first report: reports at 179.9 and -179.9 are
            # 0.2 degrees apart, and their plain median 0 is on the other side of the Earth
            lon0 = lon[g[0]]
            med_lon[inv[g[0]]] = _wrap_lon(lon0 + np.median(_wrap_lon(lon[g] - lon0)))
    near = valid & (np.abs(lat - med_lat[inv]) <= max_coordinate_spread) & \
        (np.abs(_wrap_lon(lon - med_lon[inv])) <= max_coordinate_spread)
    keep = (near | absent) & np.isfinite(med_lat[inv])
    n_dropped = int((~keep).sum())
    inv, hour, vals = inv[keep], hour[keep], vals[keep]
    total = np.zeros((n_hours, uniq.size))
    count = np.zeros((n_hours, uniq.size))
    ok = np.isfinite(vals)
    np.add.at(total, (hour[ok], inv[ok]), vals[ok])
    np.add.at(count, (hour[ok], inv[ok]), 1)
    with np.errstate(invalid="ignore"):
        out = total / count
    # spikes: both neighbours differ by more than `spike` in the same direction
    d_prev = out[1:-1] - out[:-2]
    d_next = out[1:-1] - out[2:]
    spikes = (np.abs(d_prev) > spike) & (np.abs(d_next) > spike) & (np.sign(d_prev) == np.sign(d_next))
    out[1:-1][spikes] = np.nan
    has = np.isfinite(med_lat)  # stations with at least one valid position
    return {"id": uniq[has], "lat": med_lat[has], "lon": med_lon[has], "values": out[:, has],
            "n_dropped": n_dropped}


def _wrap_lon(lon):
    """Longitudes (or their differences) in degrees, wrapped into [-180, 180)."""
    return (np.asarray(lon) + 180.0) % 360.0 - 180.0


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        return "netcdf3" if fh.read(3) == b"CDF" else "other"


def sao_sampling(path: str, variable: str = "T", min_hours: int = 22,
                 min_separation_km: float = 1.0) -> Irregular:
    """Stations of an SAO file that report ``variable`` (after quality control) in at
    least ``min_hours`` hours, as an :class:`~deepsphere.sampling.Irregular` sampling
    (names = station IDs); of stations closer than ``min_separation_km`` the better covered
    is kept."""
    d = read_sao(path, variable)
    cover = np.isfinite(d["values"]).sum(0)
    idx = np.flatnonzero(cover >= min_hours)
    if idx.size == 0:
        raise ValueError(f"{path}: no station reports {variable} in >= {min_hours} hours")
    idx = idx[np.argsort(-cover[idx], kind="stable")]
    from scipy.spatial import cKDTree

    la, lo = np.radians(d["lat"][idx]), np.radians(d["lon"][idx])
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], 1)
    dropped = np.zeros(idx.size, bool)
    for i, j in sorted(cKDTree(xyz).query_pairs(2 * np.sin(min_separation_km / 6371.0 / 2))):
        if not dropped[i]:
            dropped[j] = True
    idx = np.sort(idx[~dropped])
    return Irregular(d["lon"][idx], d["lat"][idx], units="deg", names=d["id"][idx].tolist())


class SAOHourly(_StationTask):
    r"""Predict the next hour's ``variable`` (default temperature, degrees C) at every
    station from its last ``history`` hours, on an SAO file of hourly reports
    (:func:`read_sao`, quality-controlled).

    The sampling's ``names`` are station IDs (:func:`sao_sampling`). Gaps of at most
    ``max_gap`` hours are filled linearly in time (in an input window, a gap that closes at
    the target hour or later holds the last observation: no input carries the target).
    Besides the past values each station gets the sine and cosine of its local solar time
    at the target hour, :math:`2\pi (h + \lambda / 15°) / 24` (the diurnal cycle). Target
    hours are split into consecutive periods by ``split_fractions``.
    """

    def __init__(self, sampling: Sampling, path: str, variable: str = "T", history: int = 3,
                 max_gap: int = 2, split_fractions: List[float] = (0.6, 0.2, 0.2),
                 local_time: bool = True):
        names = getattr(sampling, "names", None)
        if not names:
            raise ValueError("SAOHourly needs a sampling whose names are station IDs (use 'sao_stations')")
        d = read_sao(path, variable)
        pos = {sid: k for k, sid in enumerate(d["id"].tolist())}
        missing = [n for n in names if n not in pos]
        if missing:
            raise ValueError(f"{path}: no reports of station(s) {missing[:10]}")
        cols = [pos[n] for n in names]
        self.sampling = sampling
        observed = np.isfinite(d["values"][:, cols])
        values = fill_gaps(d["values"][:, cols], max_gap)
        features = local_time_features(np.arange(values.shape[0]), sampling.lon) if local_time else None
        self._setup(values, history, split_fractions, features, "local_time", observed)
