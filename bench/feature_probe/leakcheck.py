"""Leakage check for the prediction-time contract.

For an instant T, everything not observable before T is scrambled, in the raw inputs, consistently with
what *is* observable at T:
  - every flight's own outcome after T: a flight not departed before T gets a new departure at or after T
    (or is cancelled); a flight not arrived before T gets a new arrival at or after T (or is diverted);
    so its label (and when the label becomes known) changes too -- this covers "the flight's own outcome",
    "same-day later departures' delays" and "later days' labels";
  - the aircraft (tailnum) of every flight whose cutoff is after T: permuted among those flights
    ("later legs": the tail assignment of a flight is taken as known at that flight's own cutoff);
  - every weather observation not known before T (observation hour + 1h >= T): values shuffled.
The timetable (scheduled times, carrier, route) and reference tables stay: they are published in advance.
Then the features are rebuilt and every flight whose cutoff is <= T must have exactly the same feature
values. Flights whose cutoff lies in (T-30min, T] are the strictest targets: all of their own outcomes and
all of their later legs were scrambled. Columns named leaky_* (and the wxs_* sched-hour weather) are
controls that break the contract on purpose: the check must flag them.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

import build as B

INSTANTS_LOCAL = [  # spread over the year; storms, snow, holidays, just before/after midnight
    "2013-01-21 07:10", "2013-02-08 13:00", "2013-03-08 18:40", "2013-04-19 23:50", "2013-05-27 00:20",
    "2013-06-07 16:30", "2013-07-01 21:15", "2013-08-09 10:05", "2013-09-12 03:30", "2013-10-31 19:45",
    "2013-11-28 12:00", "2013-12-14 09:20", "2013-12-24 22:40", "2013-12-29 05:30",
]


def scramble(f: pd.DataFrame, w: pd.DataFrame, ap: pd.DataFrame, T: float, rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    prep = B.prepare(f, ap)
    f = f.copy()
    n = len(f)
    sched, sarr = prep["sched_dep_m"].to_numpy(), prep["sched_arr_m"].to_numpy()
    dep_m, arr_m = prep["dep_m"].to_numpy(), prep["arr_m"].to_numpy()
    departed = dep_m < T          # NaN (cancelled) -> False: "not departed" is what T sees
    arrived = arr_m < T
    # departures not observed before T: new delay putting the departure at or after T, or a cancellation
    new_dd = np.maximum(rng.integers(-15, 300, n), np.ceil(T - sched) + 1)
    cancel = rng.random(n) < 0.1
    redo_dep = ~departed
    dd = f["dep_delay"].to_numpy(copy=True)
    dd[redo_dep] = new_dd[redo_dep]
    dd[redo_dep & cancel] = np.nan
    dep_time = f["dep_time"].to_numpy(copy=True)
    dep_time[redo_dep] = 1.0   # only its presence is used (cancelled = no dep_time)
    dep_time[redo_dep & cancel] = np.nan
    # arrivals not observed before T: new arrival at or after T (and after the new departure), or a diversion
    new_ad = np.maximum(np.nan_to_num(dd) + rng.integers(-30, 60, n), np.ceil(T - sarr) + 1)
    divert = rng.random(n) < 0.05
    redo_arr = ~arrived
    ad = f["arr_delay"].to_numpy(copy=True)
    ad[redo_arr] = new_ad[redo_arr]
    ad[redo_arr & (divert | np.isnan(dd))] = np.nan
    f["dep_delay"], f["dep_time"], f["arr_delay"] = dd, dep_time, ad
    f.loc[redo_arr, "arr_time"] = np.where(np.isnan(ad[redo_arr]), np.nan, 1.0)
    f.loc[redo_arr, "air_time"] = np.nan
    # later legs: tails of flights whose cutoff is after T are permuted among them
    later = (sched - B.CUTOFF_MIN) > T
    f.loc[later, "tailnum"] = rng.permutation(f.loc[later, "tailnum"].to_numpy())
    # weather not known before T
    w = w.copy()
    obs = B._minutes(pd.to_datetime(w["time_hour"], utc=True).dt.tz_localize(None))
    unknown = obs + 60 >= T
    for col in ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]:
        w.loc[unknown, col] = rng.permutation(w.loc[unknown, col].to_numpy())
    return f, w


def random_instants(k=30, seed=11):
    """k more instants, uniformly over the year's days, between 05:00 and 22:00 local (busy hours: many
    flights have their cutoff just before T)."""
    r = np.random.default_rng(seed)
    days = pd.Timestamp("2013-01-02") + pd.to_timedelta(r.integers(0, 363, k), "D")
    mins = pd.to_timedelta(r.integers(5 * 60, 22 * 60, k), "m")
    return [str(d + m)[:16] for d, m in zip(days, mins)]


def main(instants=INSTANTS_LOCAL + random_instants(), seed=7):
    f_all, w_all, pl, ap = B.load()
    date = pd.to_datetime(dict(year=f_all.year, month=f_all.month, day=f_all.day))
    wdate = pd.to_datetime(dict(year=w_all.year, month=w_all.month, day=w_all.day))
    rng = np.random.default_rng(seed)
    rows = []
    changed_by_col = {}
    feature_cols = None
    t0 = time.time()
    for s in instants:
        Tl = pd.Timestamp(s)
        T = float(B._minutes(pd.DatetimeIndex([Tl]).tz_localize("America/New_York").tz_convert("UTC").tz_localize(None))[0])
        lo, hi = Tl.normalize() - pd.Timedelta(days=35), Tl.normalize() + pd.Timedelta(days=2)
        f = f_all[(date >= lo) & (date <= hi)].reset_index(drop=True)
        w = w_all[(wdate >= lo - pd.Timedelta(days=1)) & (wdate <= hi + pd.Timedelta(days=1))].reset_index(drop=True)
        base = B.build(f, w, pl, ap)
        fs, ws = scramble(f, w, ap, T, rng)
        scr = B.build(fs, ws, pl, ap)
        if feature_cols is None:
            feature_cols = [c for c in base.columns if not c.startswith("_") and c not in ("label", "flight_key")]
        known = (base["_cutoff_m"] <= T).to_numpy()
        near = known & (base["_cutoff_m"] > T - 30).to_numpy()
        after = ~known
        n_changed_after = 0
        diff_any_after = np.zeros(len(base), bool)
        for col in feature_cols:
            a, b = base[col], scr[col]
            if a.dtype == object or b.dtype == object:
                same = (a.astype(str) == b.astype(str)).to_numpy()
            else:
                a, b = a.to_numpy("float64"), b.to_numpy("float64")
                same = (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=1e-12, atol=1e-9)
            ch = ~same
            diff_any_after |= ch & after
            changed_by_col.setdefault(col, [0, 0, 0])
            changed_by_col[col][0] += int((ch & known).sum())
            changed_by_col[col][1] += int((ch & near).sum())
            changed_by_col[col][2] += int((ch & after).sum())
        label_changed = (base["label"] != scr["label"]).to_numpy()
        rows.append(dict(T_local=s, flights_checked=int(known.sum()), near_cutoff_targets=int(near.sum()),
                         near_targets_label_changed=int((near & label_changed).sum()),
                         later_flights=int(after.sum()), later_flights_with_changed_features=int(diff_any_after.sum())))
        print(rows[-1], f"{time.time() - t0:.0f}s", flush=True)
    rep = pd.DataFrame(rows)
    cols = pd.DataFrame(changed_by_col, index=["changed_cutoff_le_T", "changed_near_targets", "changed_cutoff_after_T"]).T
    contract = cols[~cols.index.str.startswith("leaky_") & ~cols.index.str.startswith("wxs_")]
    controls = cols[cols.index.str.startswith("leaky_") | cols.index.str.startswith("wxs_")]
    print(rep.to_string(index=False))
    print("\nTotals:", rep[["flights_checked", "near_cutoff_targets", "near_targets_label_changed", "later_flights"]].sum().to_dict())
    bad = contract[contract["changed_cutoff_le_T"] > 0]
    print(f"\nContract features: {len(contract)}; changed for a flight with cutoff <= T: {len(bad)}")
    if len(bad):
        print(bad.to_string())
    print("Contract features never changed even after T (scramble has no power on them: timetable/reference/"
          "calendar):", sorted(contract.index[contract["changed_cutoff_after_T"] == 0]))
    print("\nControls (must be flagged):")
    print(controls.to_string())
    ok = len(bad) == 0 and (controls["changed_cutoff_le_T"] > 0).all()
    print("\nLEAK CHECK", "PASSED" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
