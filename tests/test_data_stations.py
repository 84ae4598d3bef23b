"""Weather stations: GHCN-Daily fixed-width readers on files written here in the exact
format, gap filling, station samplings, the synthetic advected field and the dataset."""
import numpy as np
import pytest

from deepsphere.data import stations as S
from deepsphere.sampling import Irregular

def station_line(sid, lat, lon, elev, state="", name="", gsn="", hcn="", wmo=""):
    """A ghcnd-stations.txt line built from the documented columns."""
    line = f"{sid:<11} {lat:8.4f} {lon:9.4f} {elev:6.1f} {state:<2} {name:<30} {gsn:<3} {hcn:<3} {wmo:<5}"
    assert line[12:20].strip() == f"{lat:.4f}" and line[41:71].strip() == name and len(line) == 85
    return line


STATIONS_TXT = "\n".join([
    station_line("ACW00011604", 17.1167, -61.7833, 10.1, name="ST JOHNS COOLIDGE FLD"),
    station_line("USW00094728", 40.7789, -73.9692, 39.6, "NY", "NEW YORK CNTRL PK TWR", "GSN", "HCN", "72506"),
    station_line("ZZ000000003", -33.9, 151.2, -999.9, name="SYDNEY TEST"),
]) + "\n"


def dly_line(sid, year, month, element, values, qflags=None):
    """One .dly line built field by field from the documented widths."""
    qflags = qflags or {}
    out = f"{sid:<11}{year:04d}{month:02d}{element:<4}"
    for d in range(31):
        v = values.get(d + 1, -9999)
        out += f"{v:>5}" + " " + qflags.get(d + 1, " ") + " "
    assert len(out) == 269
    return out


def test_read_ghcnd_stations(tmp_path):
    p = tmp_path / "ghcnd-stations.txt"
    p.write_text(STATIONS_TXT)
    st = S.read_ghcnd_stations(p)
    assert list(st["id"]) == ["ACW00011604", "USW00094728", "ZZ000000003"]
    np.testing.assert_allclose(st["lat"], [17.1167, 40.7789, -33.9])
    np.testing.assert_allclose(st["lon"], [-61.7833, -73.9692, 151.2])
    assert st["elev"][1] == 39.6 and np.isnan(st["elev"][2])
    assert st["state"][1] == "NY" and st["state"][0] == ""
    assert st["name"][1] == "NEW YORK CNTRL PK TWR"
    assert st["gsn"][1] == "GSN" and st["hcn"][1] == "HCN" and st["wmo"][1] == "72506"


@pytest.mark.parametrize("line, match", [
    ("USW00094728  4O.7789  -73.9692   39.6 NY NAME", r"line 2 .*LATITUDE ' 4O.7789' in columns 13-20 is not a number"),
    ("USW00094728  40.7789  -73.9692", r"line 2: 30 characters, but a station line needs at least 37"),
    ("USW00094728  95.0000  -73.9692   39.6 NY NAME", r"line 2 .*LATITUDE 95.0 is out of range"),
    ("ACW00011604  40.7789  -73.9692   39.6 NY NAME", r"line 2: station ACW00011604 already listed on line 1"),
])
def test_bad_station_lines_name_the_line(tmp_path, line, match):
    p = tmp_path / "s.txt"
    p.write_text(STATIONS_TXT.splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        S.read_ghcnd_stations(p)


@pytest.mark.parametrize("line, match", [
    # one blank too many after the ID: was read as lat 40.778, lon -73.969, elevation 39.0
    ("USW00094728   40.7789  -73.9692   39.6 NY NEW YORK", r"line 2 .*column 21, between LATITUDE "
                                                          r"and LONGITUDE, holds '9'.*shifted"),
    # a 10-character ID: was read with state 'Y' and name 'EW YORK'
    ("USW0009472  40.7789  -73.9692   39.6 NY NEW YORK", r"line 2 .*column 38, between ELEVATION "
                                                        r"and STATE, holds 'N'"),
    ("USW00094728 40.7789 -73.9692 39.6 NY NEW YORK", r"line 2 .*column 21.*holds '-'"),
    ("USW00094728\t40.7789\t-73.9692\t39.6\tNY\tNEW YORK", r"line 2 .*column 12, between ID and "
                                                           r"LATITUDE, holds '\\t'"),
])
def test_shifted_station_lines_are_refused(tmp_path, line, match):
    p = tmp_path / "s.txt"
    p.write_text(STATIONS_TXT.splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        S.read_ghcnd_stations(p)


def test_read_dly_units_missing_and_quality_flags(tmp_path):
    p = tmp_path / "USW00094728.dly"
    lines = [
        dly_line("USW00094728", 2020, 2, "TMAX", {1: 56, 2: -13, 3: 250, 29: 100}, {3: "X"}),
        dly_line("USW00094728", 2020, 2, "PRCP", {1: 0, 2: 123}),
        dly_line("USW00094728", 2020, 1, "TMAX", {31: 7}),
    ]
    p.write_text("\n".join(lines) + "\n")
    data = S.read_dly(p)
    dates, tmax = data["TMAX"]
    assert dates[0] == np.datetime64("2020-01-01") and dates[-1] == np.datetime64("2020-02-29")
    assert dates.size == 31 + 29  # sorted, leap February, no invalid days
    i = lambda d: int((np.datetime64(d) - dates[0]).astype(int))  # noqa: E731
    assert tmax[i("2020-02-01")] == pytest.approx(5.6)
    assert tmax[i("2020-02-02")] == pytest.approx(-1.3)
    assert np.isnan(tmax[i("2020-02-03")])  # failed quality control
    assert tmax[i("2020-02-29")] == pytest.approx(10.0)
    assert tmax[i("2020-01-31")] == pytest.approx(0.7)
    assert np.isnan(tmax[i("2020-02-04")])  # -9999
    assert data["PRCP"][1][1] == pytest.approx(12.3)  # tenths of mm
    raw = S.read_dly(p, ["TMAX"], quality_control=False)
    assert set(raw) == {"TMAX"} and raw["TMAX"][1][i("2020-02-03")] == pytest.approx(25.0)


def test_read_dly_units_of_other_elements_follow_noaa(tmp_path):
    """NOAA's readme.txt: water equivalent of snow, ice thickness, gusts, dew point, pressure
    and soil temperatures are stored in tenths too; snowfall and snow depth in whole mm.
    MFLAG and SFLAG (columns 27 and 29 of day 1) do not reject a value, QFLAG does."""
    sid = "USC00000001"
    tenths = {"WESD": 123, "THIC": 45, "WSF2": 178, "ADPT": -56, "ASLP": 10132, "SN32": 215, "SX52": 301}
    whole = {"SNOW": 50, "SNWD": 120, "TSUN": 300}
    lines = [dly_line(sid, 2021, 3, e, {1: v}) for e, v in {**tenths, **whole}.items()]
    day1 = "  250" + "T" + " " + "7"  # VALUE, MFLAG 'T' (trace), QFLAG blank, SFLAG '7'
    lines.append(f"{sid}202103TMAX" + day1 + dly_line(sid, 2021, 3, "TMAX", {})[29:])
    assert len(lines[-1]) == 269 and lines[-1][26] == "T" and lines[-1][28] == "7"
    p = tmp_path / f"{sid}.dly"
    p.write_text("\n".join(lines) + "\n")
    data = S.read_dly(p)
    for e, v in tenths.items():
        assert data[e][1][0] == pytest.approx(v / 10), e
    for e, v in whole.items():
        assert data[e][1][0] == pytest.approx(v), e
    assert data["TMAX"][1][0] == pytest.approx(25.0)
    # and written back in the stored units
    q = S.write_dly(tmp_path / "w.dly", sid, "WESD", data["WESD"][0], data["WESD"][1])
    assert q.read_text().splitlines()[0][21:26] == "  123"


@pytest.mark.parametrize("mutate, match", [
    (lambda l: l[:100], r"line 2: 100 characters, expected 269"),
    (lambda l: l[:11] + "20x0" + l[15:], r"line 2: YEAR '20x0' is not an integer"),
    (lambda l: l[:15] + "13" + l[17:], r"line 2: MONTH 13 is not in 1-12"),
    (lambda l: l[:21 + 8 * 4] + "  1.5" + l[21 + 8 * 4 + 5:], r"line 2: VALUE of day 5 '  1.5' is not an integer"),
    (lambda l: "USW00000001" + l[11:], r"line 2: station 'USW00000001' differs from 'USW00094728'"),
    # int() reads '1_2' as 12
    (lambda l: l[:21 + 8 * 2] + "  1_2" + l[21 + 8 * 2 + 5:], r"line 2: VALUE of day 3 '  1_2' is not an integer"),
    (lambda l: l[:15] + "02" + l[17:21 + 8 * 29] + "   12" + l[21 + 8 * 29 + 5:],
     r"line 2: TMAX 2021-02 has a value \(12\) on day 30, but the month has 28 days"),
])
def test_malformed_dly_lines_name_the_line(tmp_path, mutate, match):
    good = dly_line("USW00094728", 2021, 1, "TMAX", {1: 10})
    second = dly_line("USW00094728", 2021, 3, "TMAX", {1: 10})
    p = tmp_path / "x.dly"
    p.write_text(good + "\n" + mutate(second) + "\n")
    with pytest.raises(ValueError, match=match):
        S.read_dly(p)


def test_dly_duplicate_month_and_stripped_trailing_flags(tmp_path):
    line = dly_line("USW00094728", 2021, 1, "TMAX", {1: 10})
    p = tmp_path / "dup.dly"
    p.write_text(line + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"line 2: TMAX 2021-01 appears twice"):
        S.read_dly(p)
    p.write_text(line.rstrip() + "\n")  # some tools strip the blank flags at the end
    assert S.read_dly(p)["TMAX"][1][0] == pytest.approx(1.0)


def test_write_dly_is_read_back_exactly(tmp_path):
    dates = np.arange(np.datetime64("2019-12-20"), np.datetime64("2020-03-05"))
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(10, 8, dates.size), 1)
    values[[3, 40]] = np.nan
    q = [" "] * dates.size
    q[7] = "I"
    p = S.write_dly(tmp_path / "A.dly", "USC00000001", "TMAX", dates, values, q)
    for line in p.read_text().splitlines():
        assert len(line) == 269
    d, v = S.read_dly(p)["TMAX"]
    sel = (d >= dates[0]) & (d <= dates[-1])
    expect = values.copy()
    expect[7] = np.nan
    np.testing.assert_allclose(v[sel], expect, equal_nan=True)


def test_fill_gaps():
    x = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0, np.nan])[:, None]
    out = S.fill_gaps(x, max_gap=2)
    np.testing.assert_allclose(out[:3, 0], [1, 2, 3])
    assert np.isnan(out[3:6, 0]).all() and np.isnan(out[7, 0])  # too long, and the end
    np.testing.assert_allclose(S.fill_gaps(x, 3)[3:6, 0], [4, 5, 6])


# ---- a small GHCN archive written here ------------------------------------------------
def write_archive(tmp_path, n_days=120, start="2020-01-01"):
    """Four stations on a line of longitude with a westerly-advected signal."""
    ids = ["AA000000001", "AA000000002", "AA000000003", "AA000000004"]
    lons = [0.0, 5.0, 10.0, 15.0]
    lines = [station_line(sid, 45.0, lon, 100.0, name=f"STATION {k}") for k, (sid, lon) in enumerate(zip(ids, lons))]
    lines.append(station_line("BB000000009", 45.0, 0.0, 100.0, name="CO-LOCATED DUPLICATE"))
    lines.append(station_line("CC000000001", -10.0, 50.0, 100.0, name="NO FILE"))
    (tmp_path / "ghcnd-stations.txt").write_text("\n".join(lines) + "\n")
    dly = tmp_path / "dly"
    dly.mkdir()
    dates = np.arange(np.datetime64(start), np.datetime64(start) + n_days)
    t = np.arange(n_days)
    for k, sid in enumerate(ids):
        v = 15 + 5 * np.sin(2 * np.pi * (t - k) / 17.0)
        v[(t % 29) == k] = np.nan  # scattered missing days
        S.write_dly(dly / f"{sid}.dly", sid, "TMAX", dates, v)
    sparse = np.full(n_days, np.nan)
    sparse[:10] = 1.0
    S.write_dly(dly / "BB000000009.dly", "BB000000009", "TMAX", dates, sparse)
    return tmp_path / "ghcnd-stations.txt", dly, ids


def test_ghcn_sampling_filters_coverage_duplicates_and_files(tmp_path):
    stations, dly, ids = write_archive(tmp_path)
    s = S.ghcn_sampling(str(stations), str(dly), "TMAX", "2020-01-01", "2020-04-29", min_coverage=0.9)
    assert isinstance(s, Irregular) and s.names == ids
    np.testing.assert_allclose(s.lat, 45.0)
    # without coverage filtering the co-located sparse station is dropped as a duplicate
    s2 = S.ghcn_sampling(str(stations), str(dly), "TMAX", "2020-01-01", "2020-04-29", min_coverage=0.0)
    assert "BB000000009" not in s2.names and s2.npix == 4
    s3 = S.ghcn_sampling(str(stations), lat_range=[-20, 0])
    assert s3.names == ["CC000000001"]
    with pytest.raises(ValueError, match="min_coverage"):
        S.ghcn_sampling(str(stations), str(dly), "TMAX", "2021-01-01", "2021-02-01")


def causal_window(raw, filled, t, history):
    """The inputs of target time t, ``(n_stations, history)``, written out per value: an
    observation; a fill whose gap closes before t; else the last observation before it."""
    out = np.empty((raw.shape[1], history))
    for j in range(raw.shape[1]):
        for k, s in enumerate(range(t - history, t)):
            if np.isfinite(raw[s, j]):
                out[j, k] = raw[s, j]
            else:
                closes = s + int(np.argmax(np.isfinite(raw[s:, j])))
                before = s - 1 - int(np.argmax(np.isfinite(raw[s - 1::-1, j])))
                out[j, k] = filled[s, j] if closes < t else raw[before, j]
    return out


def test_ghcn_dataset_windows_and_targets(tmp_path):
    stations, dly, ids = write_archive(tmp_path)
    s = S.ghcn_sampling(str(stations), str(dly), "TMAX", "2020-01-01", "2020-04-29")
    ds = S.GHCNDaily(s, str(dly), "2020-01-01", "2020-04-29", history=3, max_gap=1,
                     split_fractions=[0.6, 0.2, 0.2], season=False)
    assert ds.task == "regression" and ds.in_channels == 3 and ds.out_channels == 1
    raw = S.daily_matrix(dly, ids, "TMAX", "2020-01-01", "2020-04-29")
    filled = S.fill_gaps(raw, 1)
    for name in ("train", "val", "test"):
        split = ds.split(name)
        assert len(split) > 5
        for i in (0, len(split) - 1):
            x, y = split[i]
            t = int(split.targets[i])
            assert x.shape == (4, 3) and y.shape == (4, 1)
            np.testing.assert_allclose(y[:, 0].numpy() + ds.mean, filled[t], rtol=1e-5)
            np.testing.assert_allclose(x.numpy() * ds.std + ds.mean, causal_window(raw, filled, t, 3),
                                       rtol=1e-5)
    # target periods are disjoint and ordered in time
    tr, va, te = (ds.split(n).targets for n in ("train", "val", "test"))
    assert tr.max() < va.min() and va.max() < te.min()
    with pytest.raises(ValueError, match="station IDs"):
        S.GHCNDaily(Irregular([0, 1], [0, 1], units="deg"), str(dly), "2020-01-01", "2020-04-29")


def test_no_input_carries_the_target(tmp_path):
    # a one-day gap just before the target day was filled as the mean of the days around it,
    # so the input held half of the value to be predicted: the day before a target's day
    # 20 read (v19 + v20) / 2. The inputs of a target must not change when its value does.
    ids = ["A0000000001", "A0000000002"]
    days = np.arange(np.datetime64("2010-01-01"), np.datetime64("2010-03-02"))
    rng = np.random.default_rng(0)
    base = np.round(10 + rng.standard_normal((days.size, 2)).cumsum(0), 1)  # tenths, as stored
    base[19, 0] = base[40, 1] = base[44:46, 0] = np.nan  # gaps closing on days 20, 41, 46
    sampling = Irregular([0.0, 10.0], [0.0, 10.0], units="deg", names=ids)

    def build(values, sub):
        d = tmp_path / sub
        d.mkdir()
        for j, sid in enumerate(ids):
            S.write_dly(d / f"{sid}.dly", sid, "TMAX", days, values[:, j])
        return S.GHCNDaily(sampling, str(d), "2010-01-01", "2010-03-01", history=3, max_gap=2,
                           split_fractions=[0.5, 0.25, 0.25], season=False)

    ref = build(base, "ref")
    for t, split in ((20, "train"), (41, "val"), (46, "test")):
        sp = ref.split(split)
        i = int(np.flatnonzero(sp.targets == t)[0])
        changed = base.copy()
        changed[t] += 7.0
        other = build(changed, f"t{t}")
        x0 = sp[i][0].numpy() * ref.std + ref.mean
        x1 = other.split(split)[i][0].numpy() * other.std + other.mean
        np.testing.assert_allclose(x1, x0, atol=1e-4)  # inputs blind to the target
        y1 = other.split(split)[i][1].numpy()[:, 0] + other.mean
        np.testing.assert_allclose(y1, changed[t], atol=1e-4)  # the target is day t's value
    # the held value is the last observation before the gap
    x = ref.split("test")[int(np.flatnonzero(ref.split("test").targets == 46)[0])][0].numpy()
    np.testing.assert_allclose(x[0] * ref.std + ref.mean, [base[43, 0]] * 3, atol=1e-4)


def test_daily_matrix_period_is_checked(tmp_path):
    # start after end was an IndexError deep in the windowing
    with pytest.raises(ValueError, match=r"start 2010-03-31 is after end 2010-01-01"):
        S.daily_matrix(tmp_path, ["X"], "TMAX", "2010-03-31", "2010-01-01")
    with pytest.raises(ValueError, match=r"end '2010-13-01' is not a date"):
        S.daily_matrix(tmp_path, ["X"], "TMAX", "2010-01-01", "2010-13-01")


def test_season_channels(tmp_path):
    stations, dly, ids = write_archive(tmp_path)
    s = S.ghcn_sampling(str(stations), str(dly), "TMAX", "2020-01-01", "2020-04-29")
    ds = S.GHCNDaily(s, str(dly), "2020-01-01", "2020-04-29", history=2)
    x, _ = ds.split("train")[0]
    t = int(ds.split("train").targets[0])
    a = 2 * np.pi * t / 365.25  # the series starts on 1 January
    np.testing.assert_allclose(x[:, 2:].numpy(), np.tile([np.sin(a), np.cos(a)], (4, 1)), atol=1e-6)


def test_day_of_year_times_must_name_the_day():
    """``predict --times`` passes strings, and numpy reads '98' or '2001' as a year and
    '2001-04' as a month: a day number (or an hour meant for local-time features) became
    January 1st, silently."""
    s = S.random_stations(5)
    d = 97  # 2001-04-08 is day 97 of the year, counted from 0
    want = [np.sin(2 * np.pi * d / 365.25), np.cos(2 * np.pi * d / 365.25)]
    for t in (["2001-04-08"], np.array(["2001-04-08T13"], "datetime64[h]")):
        np.testing.assert_allclose(S.time_features("day_of_year", t, s), np.tile(want, (1, 5, 1)))
    for t in (["98"], ["13"], ["2001"], ["2001-04"], np.array(["2001-04"], "datetime64[M]")):
        with pytest.raises(ValueError, match=r"times must be dates .*year or a month alone"):
            S.time_features("day_of_year", t, s)


# ---- synthetic stations ---------------------------------------------------------------
def test_random_stations():
    s = S.random_stations(200, seed=1, lat_range=[-50, 60])
    assert s.npix == 200 and s.names[0] == "S0000"
    assert s.lat.min() >= -50 and s.lat.max() <= 60
    again = S.random_stations(200, seed=1, lat_range=[-50, 60])
    np.testing.assert_array_equal(s.vectors, again.vectors)


def test_synthetic_field_is_advected_eastward():
    """Points along a parallel, 8 degrees apart: the weather anomaly tomorrow at a point
    correlates best with today's anomaly at the point 8 degrees west (the advection),
    better than with today's own value."""
    lon = np.arange(0, 360, 8.0)
    s = Irregular(lon, np.zeros_like(lon), units="deg")
    rng = np.random.default_rng(0)
    T = S.synthetic_temperature(s, 400, rng, wind=8.0, rho=0.95, noise=0.0)
    a = T - T.mean(0)  # remove climatology and offsets (no seasons on the equator)
    today, tomorrow = a[:-1], a[1:]
    same = np.corrcoef(today.ravel(), tomorrow.ravel())[0, 1]
    upwind = np.corrcoef(np.roll(today, 1, axis=1).ravel(), tomorrow.ravel())[0, 1]
    downwind = np.corrcoef(np.roll(today, -1, axis=1).ravel(), tomorrow.ravel())[0, 1]
    assert upwind > 0.9 > same and upwind > downwind + 0.1


def test_synthetic_dataset_contract_and_climatology():
    s = S.random_stations(60, seed=0)
    ds = S.SyntheticStations(s, n_days=400, history=4, seed=3)
    assert ds.in_channels == 6 and ds.out_channels == 1
    x, y = ds.split("test")[0]
    assert x.shape == (60, 6) and y.shape == (60, 1) and x.dtype == y.dtype
    # warm tropics, cold high latitudes
    tr = ds.split("train")
    mean_t = tr.raw[tr.targets].mean(0) + ds.mean
    tropics, high = np.abs(s.lat) < 20, np.abs(s.lat) > 50
    assert mean_t[tropics].mean() > mean_t[high].mean() + 10
    again = S.SyntheticStations(s, n_days=400, history=4, seed=3)
    np.testing.assert_array_equal(again.split("val").raw, ds.split("val").raw)


def test_config_names():
    from deepsphere.training import registry

    assert registry.DATASETS.get("ghcn") is S.GHCNDaily
    assert registry.DATASETS.get("synthetic_stations") is S.SyntheticStations
    assert registry.SAMPLINGS.get("ghcn_stations") is S.ghcn_sampling


# ---- hourly SAO reports ------------------------------------------------------------
def write_sao(path, reports, n_hours=8):
    """reports: list of rows; each row a list of n_hours (id, lat, lon, T) or None."""
    from scipy.io import netcdf_file

    with netcdf_file(str(path), "w") as f:
        f.createDimension("report", len(reports))
        f.createDimension("hour", n_hours)
        f.createDimension("id_len", 12)
        ids = f.createVariable("id", "c", ("report", "hour", "id_len"))
        lat = f.createVariable("lat", "f", ("report", "hour"))
        lon = f.createVariable("lon", "f", ("report", "hour"))
        T = f.createVariable("T", "f", ("report", "hour"))
        T._FillValue = np.float32(-9999.0)
        a_id = np.full((len(reports), n_hours, 12), b" ", dtype="S1")
        a = np.full((3, len(reports), n_hours), -9999.0, dtype=np.float32)
        for r, row in enumerate(reports):
            for h, cell in enumerate(row):
                if cell is None:
                    continue
                sid, la, lo, t = cell
                a_id[r, h, :len(sid)] = np.frombuffer(sid.encode(), dtype="S1")
                a[:, r, h] = la, lo, t
        ids[:] = a_id
        lat[:], lon[:], T[:] = a


def test_read_sao_quality_control(tmp_path):
    n = 8
    base = 10.0 + np.arange(n)
    rows = [
        [("AAA", 40.0, -100.0, base[h]) for h in range(n)],
        # the same station reported twice in hour 2 (averaged), with a spike in hour 5
        [("BBB", 41.0, -99.0, (30.0 if h == 5 else base[h] + 1)) for h in range(n)],
        [("BBB", 41.0, -99.0, base[2] + 3)] * 1 + [None] * (n - 1),
        # a report of AAA with wrong coordinates (dropped) and an impossible value
        [("AAA", 10.0, 20.0, 99.0), ("CCC", 42.0, -98.0, 80.0)] + [("CCC", 42.0, -98.0, 5.0)] * (n - 2),
    ]
    rows[2] = [None, None, ("BBB", 41.0, -99.0, base[2] + 3)] + [None] * (n - 3)
    # reports without coordinates take the station's position; a station never located is dropped
    rows.append([("DDD", 43.0, -97.0, 1.0)] + [("DDD", -9999.0, -9999.0, 2.0)] * (n - 1))
    rows.append([("EEE", -9999.0, -9999.0, 2.0)] * n)
    p = tmp_path / "sao.cdf"
    write_sao(p, rows, n)
    d = S.read_sao(p)
    assert list(d["id"]) == ["AAA", "BBB", "CCC", "DDD"]
    assert d["lat"][3] == 43.0 and np.isfinite(d["values"][:, 3]).all()
    assert d["n_dropped"] == 1 + n  # AAA's misplaced report and EEE's
    v = d["values"]
    np.testing.assert_allclose(v[:, 0], base)  # the misplaced report did not overwrite hour 0
    np.testing.assert_allclose(d["lat"], [40, 41, 42, 43])
    assert v[2, 1] == pytest.approx(base[2] + 2)  # mean of the two reports
    assert np.isnan(v[5, 1])  # spike
    assert np.isnan(v[1, 2]) and v[2, 2] == pytest.approx(5.0)  # 80 degrees C: out of range
    cut = tmp_path / "cut.cdf"  # a truncated file: was numpy's "buffer size must be a multiple"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut.cdf: cannot read this NetCDF3 file, it looks truncated"):
        S.read_sao(cut)
    with pytest.raises(KeyError, match=r"no variable 'NOPE'"):
        S.read_sao(p, variable="NOPE")
    assert S.sao_sampling(str(p), min_hours=7).names == ["AAA", "BBB", "DDD"]  # CCC has 6 hours
    s = S.sao_sampling(str(p), min_hours=6)
    assert s.names == ["AAA", "BBB", "CCC", "DDD"]
    ds = S.SAOHourly(s, str(p), history=1, max_gap=1, split_fractions=[0.5, 0.25, 0.25])
    assert [list(ds.split(k).targets) for k in ("train", "val", "test")] == [[3], [4, 5], [6, 7]]
    x, y = ds.split("train")[0]
    t = 3
    assert x.shape == (4, 3) and y.shape == (4, 1)
    a = 2 * np.pi * (t + s.lon / 15.0) / 24.0  # local solar time of the target hour
    np.testing.assert_allclose(x[:, 1].numpy(), np.sin(a), atol=1e-5)
    np.testing.assert_allclose(y[0, 0].item() + ds.mean, base[t], rtol=1e-5)


def test_read_sao_station_on_the_antimeridian(tmp_path):
    # reports at 179.9 and -179.9 are 0.2 degrees apart: the plain median put the station at
    # longitude 0 and dropped every report as too far from it (or, with an odd count, those
    # on the other side of +-180)
    n = 6
    lons = [179.9, -179.9, 179.95, -179.85, 179.9, -179.9]
    rows = [[("FIJ", -17.0, lons[h], 20.0 + h) for h in range(n)],
            [("ODD", 52.0, [179.9, 179.95, -179.9, 179.9, 179.95, 179.9][h], 1.0 + h) for h in range(n)],
            [("AAA", 40.0, 10.0, 5.0)] * n]
    p = tmp_path / "sao.cdf"
    write_sao(p, rows, n)
    d = S.read_sao(p)
    assert list(d["id"]) == ["AAA", "FIJ", "ODD"]
    assert d["n_dropped"] == 0
    # 179.9 + the median of the reports' offsets east of 179.9, wrapped to [-180, 180):
    # FIJ (0, 0.2, 0.05, 0.25, 0, 0.2) -> 0.125, ODD (0, 0.05, 0.2, 0, 0.05, 0) -> 0.025
    np.testing.assert_allclose(d["lon"], [10.0, -179.975, 179.925], atol=1e-4)
    np.testing.assert_allclose(d["values"][:, 1], 20.0 + np.arange(n))
    np.testing.assert_allclose(d["values"][:, 2], 1.0 + np.arange(n))
    # a report truly elsewhere is still dropped
    rows[1][3] = ("ODD", 52.0, -170.0, 99.0)
    write_sao(p, rows, n)
    d = S.read_sao(p)
    assert d["n_dropped"] == 1 and np.isnan(d["values"][3, 2])
    s = S.sao_sampling(str(p), min_hours=5)
    assert s.names == ["AAA", "FIJ", "ODD"]


REAL_SAO = "/usr/share/ncarg/data/cdf/950318_sao.cdf"


@pytest.mark.skipif(not __import__("os").path.exists(REAL_SAO), reason="needs Debian's libncarg-data")
def test_real_sao_file():
    s = S.sao_sampling(REAL_SAO, min_hours=22)
    assert 500 < s.npix < 2000 and s.lat.min() > 0  # northern hemisphere stations
    d = S.read_sao(REAL_SAO)
    v = d["values"][np.isfinite(d["values"])]
    assert -45 < v.min() and v.max() < 45
    assert d["n_dropped"] > 0  # e.g. reports of stations never given coordinates


# ---- configs and an end-to-end run ---------------------------------------------------
CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_validate():
    from deepsphere.training.config import load_config, validate

    for name in ("stations_synthetic.yaml", "stations_ghcn.yaml", "stations_sao.yaml"):
        cfg = load_config(CONFIGS / name)
        validate(cfg)  # names and argument types only: no data are read
        assert cfg.model.name == "station"


@pytest.mark.parametrize("K", [1, 5])
def test_tiny_training_run(tmp_path, K):
    from deepsphere.training import train
    from deepsphere.training.config import load_config

    cfg = load_config(CONFIGS / "stations_synthetic.yaml", [
        "sampling.n=40", "data.n_days=120", "model.channels=[8]", f"model.K={K}",
        "trainer.epochs=1", "trainer.progress=false", "trainer.plots=false",
        f"trainer.out={tmp_path / 'run'}"])
    trainer = train(cfg)
    assert {"val_mse", "val_mae", "val_r2"} <= set(trainer.history[-1])
    assert len(trainer.model.operators) == (0 if K == 1 else 1)  # K=1 builds no graph


def test_ghcn_sampling_longitude_range_across_the_antimeridian(tmp_path):
    """lon_range [170, -170] selected nothing (min > max); it is the 20 degrees across 180."""
    lines = [station_line(f"DD00000000{k}", 0.0, lon, 10.0, name=f"S{k}")
             for k, lon in enumerate([175.0, -175.0, 0.0, 165.0, -179.9])]
    (tmp_path / "st.txt").write_text("\n".join(lines) + "\n")
    s = S.ghcn_sampling(str(tmp_path / "st.txt"), lon_range=[170, -170])
    assert s.names == ["DD000000000", "DD000000001", "DD000000004"]
    assert S.ghcn_sampling(str(tmp_path / "st.txt"), lon_range=[170, 190]).names == s.names  # 0..360 style
    assert S.ghcn_sampling(str(tmp_path / "st.txt"), lon_range=[-10, 10]).names == ["DD000000002"]
    assert S.ghcn_sampling(str(tmp_path / "st.txt"), lon_range=[-180, 180]).npix == 5
    with pytest.raises(ValueError, match=r"lat_range must be \[min, max\]"):
        S.ghcn_sampling(str(tmp_path / "st.txt"), lat_range=[10, -10])
    with pytest.raises(ValueError, match=r"lon_range must be two numbers"):
        S.ghcn_sampling(str(tmp_path / "st.txt"), lon_range=[170])


def test_read_sao_keeps_a_steep_ramp_and_drops_a_dip(tmp_path):
    """A spike departs from both hourly neighbours in the same direction; a value on a
    steep but steady change (a front passing, 11 degrees an hour) differs from both by more
    than ``spike`` too, in opposite directions, and is a real observation."""
    n = 8
    ramp = -30.0 + 11.0 * np.arange(n)
    dip = np.full(n, 20.0)
    dip[4] = 5.0
    rows = [[("RMP", 40.0, -100.0, ramp[h]) for h in range(n)],
            [("DIP", 41.0, -99.0, dip[h]) for h in range(n)]]
    p = tmp_path / "sao.cdf"
    write_sao(p, rows, n)
    d = S.read_sao(p, spike=10.0)
    assert list(d["id"]) == ["DIP", "RMP"]
    np.testing.assert_allclose(d["values"][:, 1], ramp)
    assert np.isnan(d["values"][4, 0]) and np.isfinite(np.delete(d["values"][:, 0], 4)).all()


def test_read_sao_drops_a_report_misplaced_in_latitude_only(tmp_path):
    """The position check applies to each coordinate: a report 5 degrees north of its
    station, at the station's own longitude, is a mislabelled report and is dropped."""
    n = 6
    rows = [[("AAA", 40.0, -100.0, 10.0 + h) for h in range(n)],
            [None, None, ("AAA", 45.0, -100.0, 30.0)] + [None] * (n - 3)]
    p = tmp_path / "sao.cdf"
    write_sao(p, rows, n)
    d = S.read_sao(p, max_coordinate_spread=0.2)
    assert d["n_dropped"] == 1 and d["lat"][0] == 40.0
    np.testing.assert_allclose(d["values"][:, 0], 10.0 + np.arange(n))  # hour 2 not averaged with 30
