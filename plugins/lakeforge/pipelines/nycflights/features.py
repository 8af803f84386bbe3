"""clean -> features: the one definition of the flight-delay features (training and scoring share it).

Prediction-time contract
------------------------
A flight is scored at its cutoff c = sched_dep_utc - ``cutoff_hours`` (2 h by default). Every
feature of a flight is a function of information observable strictly before c, and nothing else:

1. Timetable and reference data, published in advance: the flight's carrier, flight number,
   origin, destination, distance, scheduled departure and arrival, its aircraft (tailnum, taken as
   assigned by c) with its ``planes`` row, the destination's ``airports`` row, and the calendar.
   Other flights' timetable rows (cancelled ones included: they were scheduled) may be counted, and
   the same aircraft's *earlier* legs may be read. A feature of day D never reads the timetable of
   D + 1, so a one-day run and a backfill give the same values.
2. Other flights' outcomes, each from the moment it becomes observable: a departure and its delay
   at dep_utc ("not departed yet" at any time after the scheduled departure); an arrival and its
   delay at arr_utc ("not arrived yet" after the scheduled arrival); a label (arr_delay > 15,
   cancelled or diverted) at label_known_utc = least(arr_utc, sched_arr_utc + 15 minutes). An
   outcome may be used only if that moment is < c.
3. Daily history: aggregates over the previous N days, as seen at the day snapshot
   S_D = local midnight (America/New_York) of the flight's day D - cutoff, which is <= every cutoff
   of day D. A label counts only if label_known_utc < S_D.
4. Weather at the origin: an hourly observation may be used once its hour has ended
   (time_hour + 1 h < c), and only if at most 4 h old. The observation at the scheduled departure
   hour may not: it is observed after c.

Never a feature (``LEAKY_COLUMNS``): the flight's own outcome (dep_time, dep_delay, arr_time,
arr_delay, air_time, cancelled, diverted, label and anything derived from them), any event at or
after c, the aircraft's later legs, later days. A missing tailnum is not information (in the 2013
data it marks cancelled UA/US/9E/F9 flights): aircraft-derived features treat it as an aircraft
with no earlier legs; training should leave such rows out (``tailnum`` is kept in the table).

``FEATURE_CONTRACT`` states, per feature, where it comes from and when it is known;
tests/test_feature_leakage.py scrambles everything not observable before an instant T and checks
that no feature of a flight with c <= T moves.

Label: ``label = 1`` when the flight arrived more than 15 minutes late, or never arrived as
scheduled: cancelled (no departure) and diverted (no recorded arrival) flights count as delayed.
``label_reason`` says which.

Scalable forms (a one-day run and a year's backfill are the same code): "live" windows are running
sums over the union of events and query rows, partitioned by key and UTC day bucket (events are
copied into the buckets their window can reach), asked once per distinct (carrier, origin, dest,
previous destination, cutoff); history is a running sum over daily +/- deltas; weather is one
broadcast equi-join on the newest candidate observation hour; the aircraft's legs are one window
over the tail, across day boundaries, and the congestion counts windows over the timetable, both
over the few columns they read.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from functools import reduce
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from lakeforge.dates import shift_day
from lakeforge.pipelines.nycflights.schemas import ORIGIN_TZ

DELAY_THRESHOLD_MINUTES = 15
CUTOFF_HOURS_DEFAULT = 2.0
HISTORY_DAYS = 29  # 28-day history windows + the day before (previous legs, windows reaching back)
WEATHER_HISTORY_DAYS = 1  # the cutoff of an early flight and its 3-hour weather windows reach into D - 1
PREVIOUS_LEG_HOURS = 48  # an aircraft's previous leg counts when scheduled at most this long before
PRIOR_WEIGHT = 10.0  # history rates shrink to the NYC-wide rate with this many pseudo-flights
NO_HISTORY_RATE = 0.25  # the NYC-wide prior when no label is known yet (the start of the data)
WEATHER_MAX_AGE_HOURS = 4
_LIVE_MAX_WINDOW_S = 12 * 3600  # the longest "live" window (live_origin_dep_*_720)
_MAX_DELAY_DAYS = 2  # clean flights' delays are at most 48 h: a D - 3 flight can still depart on D - 1
_BUCKET_S = 86400
_SMALL_RUN_DAYS = 3  # up to this many days, the per-flight tables a run joins back are broadcast

# Outcomes: measured at or after departure. Never features.
LEAKY_COLUMNS = frozenset({
    "dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "dep_local", "dep_utc",
    "arr_local", "arr_utc", "cancelled", "diverted", "label", "label_reason",
})

_WX = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
_WX_ROLLING = ["precip_3h", "visib_min_3h", "wind_max_3h", "pressure_d3h"]
_HISTORY_PLAN = [("all", 1), ("all", 7), ("carrier", 1), ("origin", 1), ("carrier", 7), ("origin", 7),
                 ("dest", 7), ("route", 7), ("carrier_route", 7), ("flight", 7), ("tail", 7), ("origin_hour", 7),
                 ("carrier_origin", 7), ("dest", 28), ("carrier_route", 28), ("flight", 28), ("origin_hour", 28)]
_HISTORY_KEYS = {
    "all": [], "carrier": ["carrier"], "origin": ["origin"], "dest": ["dest"], "route": ["origin", "dest"],
    "carrier_route": ["carrier", "origin", "dest"], "flight": ["carrier", "flight"], "tail": ["tailnum"],
    "origin_hour": ["origin", "sched_dep_hour"], "carrier_origin": ["carrier", "origin"],
}


def _history_columns() -> list[str]:
    cols = []
    for name, days in _HISTORY_PLAN:
        cols.append(f"hist_{name}_{days}d_rate")
        if name != "all":
            cols.append(f"hist_{name}_{days}d_n")
    return cols + ["hist_prevdest_7d_rate"]


_LIVE = (
    [f"live_{k}_dep_{m}_{w}" for k in ("origin", "nyc", "carrier") for w in (60, 180) for m in ("n", "mean", "late")]
    + [f"live_{k}_overdue_{w}" for k in ("origin", "nyc") for w in (60, 360)]
    + [f"live_{k}_arr_{m}" for k in ("dest", "prevdest") for m in ("n_180", "mean_180", "late_180", "overdue_360")]
    + [f"live_{k}_known_{m}" for k in ("origin", "carrier") for m in ("n_360", "late_360")]
    + ["live_origin_overdue_frac_60", "live_carrier_overdue_360", "live_carrier_origin_overdue_360",
       "live_origin_dep_mean_720", "live_origin_dep_late_720", "live_destdep_n_180", "live_destdep_mean_180",
       "live_destdep_late_180", "live_destdep_overdue_360"]
)

FEATURE_GROUPS: dict[str, list[str]] = {
    "static": ["carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine", "distance",
               "sched_dep_hour", "sched_dep_minute", "sched_arr_hour", "plane_age", "plane_seats", "plane_engines",
               "dest_lat", "dest_lon", "dest_alt", "dest_tz_offset", "sched_block_min", "sched_speed"],
    "calendar": ["day_of_week", "is_weekend"],
    "congestion": ["cong_origin_hour", "cong_origin_day", "cong_nyc_hour", "cong_carrier_origin_day", "cong_dest_day",
                   "cong_origin_pm30", "cong_dest_arr_hour"],
    "previous_leg": ["prev_gap_min", "prev_block_min", "prev_turn_min", "prev_slack_min", "prev_dep_state",
                     "prev_dep_delay_c", "prev_arr_state", "prev_arr_delay_c", "prev_known_delay_c", "prev_proj_delay",
                     "prev_dest", "prev2_dep_delay_c", "prev2_gap_min", "tail_leg_of_day"],
    "history": _history_columns(),
    "live": _LIVE,
    "weather": [f"wxc_{c}" for c in _WX + _WX_ROLLING],
}
CATEGORICAL_FEATURES = ["carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine", "prev_dest"]
NUMERIC_FEATURES = [c for cols in FEATURE_GROUPS.values() for c in cols if c not in CATEGORICAL_FEATURES]
FEATURE_COLUMNS = CATEGORICAL_FEATURES + NUMERIC_FEATURES
KEY_COLUMNS = ["flight_key", "sched_dep_utc"]
# tailnum is not a feature: training drops tail-less rows (a data artifact, see the contract).
FEATURES_TABLE_COLUMNS = KEY_COLUMNS + ["tailnum"] + FEATURE_COLUMNS + ["label", "label_reason"]

_TIMETABLE = "timetable (the flight's clean row), published in advance"
_PLANE = "planes register via tailnum (assigned by c); null without a tail or register row"
_AIRPORT = "airports row of the destination, static"
_CONG = "count of timetable rows (cancelled included) of days <= D, in advance"
_LEG = ("the same tail's previous NYC departure (within 48 h, may be D - 1/D - 2), timetable fields, "
        "in advance; null without one (no tail = no earlier legs)")
_STATE = "previous leg's {what}: its delay if {t} < c, else c minus its scheduled time if overdue at c; null otherwise"
FEATURE_CONTRACT: dict[str, str] = {
    "carrier": _TIMETABLE, "origin": _TIMETABLE, "dest": _TIMETABLE, "distance": _TIMETABLE,
    "sched_dep_hour": _TIMETABLE + " (local hour)", "sched_dep_minute": _TIMETABLE,
    "sched_arr_hour": _TIMETABLE + " (local hour at the destination)",
    "sched_block_min": "timetable: scheduled arrival - departure (destination zone), in advance",
    "sched_speed": "timetable: distance / scheduled block minutes, in advance",
    "plane_type": _PLANE, "plane_manufacturer": _PLANE, "plane_engine": _PLANE, "plane_age": _PLANE,
    "plane_seats": _PLANE, "plane_engines": _PLANE,
    "dest_lat": _AIRPORT, "dest_lon": _AIRPORT, "dest_alt": _AIRPORT, "dest_tz_offset": _AIRPORT,
    "day_of_week": "calendar of the local scheduled departure (ISO: Monday 1 .. Sunday 7), in advance",
    "is_weekend": "calendar: Saturday or Sunday, in advance",
    "cong_origin_hour": _CONG + ": same origin, day and scheduled hour",
    "cong_origin_day": _CONG + ": same origin and day",
    "cong_nyc_hour": _CONG + ": all three airports, same day and scheduled hour",
    "cong_carrier_origin_day": _CONG + ": same carrier, origin and day",
    "cong_dest_day": _CONG + ": same destination and day",
    "cong_origin_pm30": _CONG + ": same origin, scheduled within +-30 min (D - 1 included, D + 1 not)",
    "cong_dest_arr_hour": _CONG + ": same destination and scheduled arrival hour (UTC)",
    "prev_gap_min": _LEG + ": minutes since its scheduled departure",
    "prev_block_min": _LEG + ": its scheduled block minutes",
    "prev_turn_min": _LEG + ": scheduled departure - its scheduled arrival",
    "prev_slack_min": _LEG + ": turn - block minutes",
    "prev_dest": _LEG + ": its destination",
    "prev2_gap_min": "the leg before the previous one (within 48 h): minutes since its scheduled departure",
    "tail_leg_of_day": "timetable: the tail's earlier departures the same local day (0 without a tail)",
    "prev_dep_state": "previous leg at c: 1 departed (dep_utc < c), 2 overdue, 0 not due, null none",
    "prev_dep_delay_c": _STATE.format(what="departure", t="dep_utc"),
    "prev_arr_state": "previous leg at c: 1 arrived (arr_utc < c), 2 overdue, 0 not due, null none",
    "prev_arr_delay_c": _STATE.format(what="arrival", t="arr_utc"),
    "prev_known_delay_c": "prev_arr_delay_c, else prev_dep_delay_c: known at c",
    "prev_proj_delay": "prev_known_delay_c - prev_slack_min: known at c",
    "prev2_dep_delay_c": _STATE.format(what="departure (the leg before it)", t="dep_utc"),
    "live_origin_overdue_frac_60": "live_origin_overdue_60 / rows scheduled at the origin in [c - 60 min, c)",
    **{f"wxc_{c}": f"origin weather {c}: latest hourly observation with time_hour + 1 h < c (<= 4 h old)"
       for c in _WX},
    "wxc_precip_3h": "sum of precip over the 3 observations up to the wxc_ one (all < c)",
    "wxc_visib_min_3h": "min of visib over the 3 observations up to the wxc_ one (all < c)",
    "wxc_wind_max_3h": "max of wind_speed over the 3 observations up to the wxc_ one (all < c)",
    "wxc_pressure_d3h": "pressure change over the 3 observations before the wxc_ one (all < c)",
}


def _live_contract(name: str) -> str:
    scope = {"origin": "the origin", "nyc": "all three airports", "carrier": "the carrier (all origins)",
             "carrier_origin": "the carrier at the origin", "destdep": "NYC departures to the same destination",
             "dest": "NYC flights to this destination", "prevdest": "NYC flights to the previous leg's destination"}
    parts = name.split("_")
    window = parts[-1]
    key = "carrier_origin" if name.startswith("live_carrier_origin") else parts[1]
    if "_known_" in name:
        what = "labels with label_known_utc" + (" (count)" if "_n_" in name else " (delay rate)")
    elif "_overdue_" in name and "_arr_" in name:
        what = "rows with sched arrival in the window and arr_utc >= c or none (not arrived at c)"
    elif "_overdue_" in name:
        what = "rows scheduled in the window and dep_utc >= c or none (not departed at c)"
    elif "_arr_" in name:
        what = "arrivals (count, mean arr_delay, share > 15) with arr_utc"
    else:
        what = "departures (count, mean dep_delay, share > 15) with dep_utc"
    return f"{scope[key]}: {what} in [c - {window} min, c)"


def _history_contract(name: str) -> str:
    if name == "hist_prevdest_7d_rate":
        return "hist_dest_7d_rate of the previous leg's destination (null without a previous leg)"
    key, days = name.removeprefix("hist_").rsplit("_", 2)[0], name.rsplit("_", 2)[1]
    what = "labels counted" if name.endswith("_n") else "label rate shrunk to the NYC rate ((s + 10 p)/(n + 10))"
    if key == "all":
        what = "NYC-wide label rate"
    return f"{what}, key {key}, flights of [D - {days.rstrip('d')}, D - 1] with label_known_utc < S_D"


FEATURE_CONTRACT.update({c: _live_contract(c) for c in _LIVE if c not in FEATURE_CONTRACT})
FEATURE_CONTRACT.update({c: _history_contract(c) for c in FEATURE_GROUPS["history"]})


# ---------------------------------------------------------------------------------------------
# Preparation: epoch seconds, label, local day number


def _seconds(name: str) -> Column:
    return F.unix_seconds(F.col(name))


def _day_number(ds: Column) -> Column:
    return F.unix_date(F.to_date(ds))


def with_label(flights: DataFrame) -> DataFrame:
    reason = (
        F.when(F.col("cancelled"), "cancelled")
        .when(F.col("diverted"), "diverted")
        .when(F.col("arr_delay") > DELAY_THRESHOLD_MINUTES, "late")
        .otherwise("on_time")
    )
    return flights.withColumn("label_reason", reason) \
        .withColumn("label", (F.col("label_reason") != "on_time").cast("int"))


def with_times(flights: DataFrame, cutoff_s: int) -> DataFrame:
    """Epoch seconds of the schedule and the outcomes, the cutoff ``c``, when the label is known,
    the flight's local day number ``dn`` and the first day whose snapshot knows its label."""
    known = F.least(_seconds("arr_utc"), _seconds("sched_arr_utc") + DELAY_THRESHOLD_MINUTES * 60)  # skips nulls
    # S_D = local midnight of D - cutoff > known  <=>  local date of (known + cutoff) < D
    known_local_day = F.unix_date(F.to_date(F.from_utc_timestamp(F.timestamp_seconds(F.col("t_known") + cutoff_s),
                                                                 ORIGIN_TZ)))
    return with_label(flights).withColumns({
        "t_sched": _seconds("sched_dep_utc"), "t_dep": _seconds("dep_utc"),
        "t_sarr": _seconds("sched_arr_utc"), "t_arr": _seconds("arr_utc"),
        "c": _seconds("sched_dep_utc") - cutoff_s, "t_known": known,
        "dn": _day_number(F.col("ds")),
        "sched_dep_hour": F.hour("sched_dep_local"),
        "late15": (F.col("dep_delay") > DELAY_THRESHOLD_MINUTES).cast("double"),
        "arr_late15": (F.col("arr_delay") > DELAY_THRESHOLD_MINUTES).cast("double"),
    }).withColumn("known_dn", F.greatest(F.col("dn") + 1, known_local_day + 1))


# ---------------------------------------------------------------------------------------------
# Static and calendar


def static_features(flights: DataFrame) -> DataFrame:
    local = F.col("sched_dep_local")
    block = (F.col("t_sarr") - F.col("t_sched")) / 60
    return flights.withColumns({
        "sched_dep_minute": F.minute(local),
        "sched_arr_hour": (F.col("sched_arr_time") / 100).cast("int"),
        "sched_block_min": block,
        "sched_speed": F.col("distance") / block,
        "day_of_week": F.weekday(local) + 1,  # ISO: Monday 1 .. Sunday 7 (the weekend is contiguous)
        "is_weekend": (F.weekday(local) >= 5).cast("int"),
    })


def join_planes(flights: DataFrame, planes: DataFrame) -> DataFrame:
    aircraft = planes.select(
        "tailnum",
        F.col("year").alias("_built"),
        F.col("type").alias("plane_type"),
        F.col("manufacturer").alias("plane_manufacturer"),
        F.col("engine").alias("plane_engine"),
        F.col("seats").alias("plane_seats"),
        F.col("engines").alias("plane_engines"),
    )
    return flights.join(F.broadcast(aircraft), on="tailnum", how="left") \
        .withColumn("plane_age", F.col("year") - F.col("_built")).drop("_built")


def join_destinations(flights: DataFrame, airports: DataFrame) -> DataFrame:
    dests = airports.select(
        F.col("faa").alias("dest"),
        F.col("lat").alias("dest_lat"),
        F.col("lon").alias("dest_lon"),
        F.col("alt").alias("dest_alt"),
        F.col("tz").alias("dest_tz_offset"),
    )
    return flights.join(F.broadcast(dests), on="dest", how="left")


# ---------------------------------------------------------------------------------------------
# Previous legs of the same aircraft


def previous_leg_features(flights: DataFrame) -> DataFrame:
    """The aircraft's previous two legs by ``lag`` over its legs in time order, across day
    boundaries (a red-eye's previous leg is yesterday's). Rows without a tail get no previous leg:
    the window pairs them among themselves (one partition of every tail-less flight) and their
    values are nulled (a filter and a union instead read the flights twice)."""
    legs = Window.partitionBy("tailnum").orderBy("ds", "t_sched", "flight", "flight_key")
    of_day = Window.partitionBy("tailnum", "ds").orderBy("t_sched", "flight", "flight_key")  # same sort
    lookback = PREVIOUS_LEG_HOURS * 3600
    has_tail = F.col("tailnum").isNotNull()

    def lagged(k: int, name: str) -> Column:
        recent = F.col("t_sched") - F.lag("t_sched", k).over(legs) <= lookback
        return F.when(has_tail & recent, F.lag(name, k).over(legs))

    return flights.withColumns({
        **{f"p1_{n}": lagged(1, n) for n in ("t_sched", "t_dep", "t_sarr", "t_arr", "dep_delay", "arr_delay", "dest")},
        **{f"p2_{n}": lagged(2, n) for n in ("t_sched", "t_dep", "dep_delay")},
        "tail_leg_of_day": F.when(has_tail, F.row_number().over(of_day) - 1),
    })


def _leg_state(t_sched: str, t_done: str, delay: str) -> tuple[Column, Column]:
    """(state, delay known at c) of a leg's departure or arrival: 1 done before c (its delay),
    2 overdue at c (c - scheduled), 0 not due yet (null delay), null when there is no leg."""
    c = F.col("c")
    exists = F.col(t_sched).isNotNull()
    done = exists & F.coalesce(F.col(t_done) < c, F.lit(False))
    overdue = exists & ~done & (F.col(t_sched) < c)
    state = F.when(done, 1).when(overdue, 2).when(exists, 0)
    known = F.when(done, F.col(delay)).when(overdue, (c - F.col(t_sched)) / 60)
    return state, known


def previous_leg_columns(flights: DataFrame) -> DataFrame:
    dep_state, dep_delay = _leg_state("p1_t_sched", "p1_t_dep", "p1_dep_delay")
    arr_state, arr_delay = _leg_state("p1_t_sarr", "p1_t_arr", "p1_arr_delay")
    arr_state = F.when(F.col("p1_t_sched").isNotNull(), F.coalesce(arr_state, F.lit(0)))
    _, dep2_delay = _leg_state("p2_t_sched", "p2_t_dep", "p2_dep_delay")
    turn = (F.col("t_sched") - F.col("p1_t_sarr")) / 60
    block = (F.col("p1_t_sarr") - F.col("p1_t_sched")) / 60
    return flights.withColumns({
        "prev_gap_min": (F.col("t_sched") - F.col("p1_t_sched")) / 60,
        "prev_block_min": block,
        "prev_turn_min": turn,
        "prev_slack_min": turn - block,
        "prev_dep_state": dep_state.cast("int"),
        "prev_dep_delay_c": dep_delay.cast("double"),
        "prev_arr_state": arr_state.cast("int"),
        "prev_arr_delay_c": arr_delay.cast("double"),
        "prev_dest": F.col("p1_dest"),
        "prev2_dep_delay_c": dep2_delay.cast("double"),
        "prev2_gap_min": (F.col("t_sched") - F.col("p2_t_sched")) / 60,
        "tail_leg_of_day": F.coalesce(F.col("tail_leg_of_day"), F.lit(0)),
    }).withColumn("prev_known_delay_c", F.coalesce("prev_arr_delay_c", "prev_dep_delay_c")) \
        .withColumn("prev_proj_delay", F.col("prev_known_delay_c") - F.col("prev_slack_min"))


# ---------------------------------------------------------------------------------------------
# Congestion: counts of timetable rows (days <= D only)


# What the legs' and congestion windows read of a flight.
_WINDOW_INPUTS = ["flight_key", "tailnum", "ds", "dn", "flight", "carrier", "origin", "dest", "sched_dep_hour",
                  "t_sched", "t_dep", "t_sarr", "t_arr", "dep_delay", "arr_delay"]


def congestion_features(flights: DataFrame) -> DataFrame:
    """Window counts over the timetable. ``flights`` holds the target days and the day before; a
    count never looks at D + 1 (not published when day D runs: a backfill would differ). The
    counts within a day all run over one partitioning by day (a sort each, no shuffle)."""
    count = F.count(F.lit(1))
    by_origin_time = Window.partitionBy("origin").orderBy("t_sched")
    by_origin_day_time = Window.partitionBy("origin", "dn").orderBy("t_sched")
    # arrivals in the hour, of days up to the flight's own (a D + 1 red-eye may land in it too)
    by_dest_arr_hour = Window.partitionBy("dest", F.floor(F.col("t_sarr") / 3600)).orderBy("dn") \
        .rangeBetween(Window.unboundedPreceding, 0)
    across_days = flights.withColumns({
        # [t - 30 min, t) over the days before too; [t, t + 30 min) within the flight's day below
        "_pm30_before": F.coalesce(count.over(by_origin_time.rangeBetween(-1800, -1)), F.lit(0)),
        "cong_dest_arr_hour": F.when(F.col("t_sarr").isNotNull(), count.over(by_dest_arr_hour)).cast("int"),
    })
    counts = {
        "cong_origin_pm30": F.col("_pm30_before") + count.over(by_origin_day_time.rangeBetween(0, 1799)),
        "cong_origin_day": count.over(Window.partitionBy("origin", "dn")),
        "cong_origin_hour": count.over(Window.partitionBy("origin", "dn", "sched_dep_hour")),
        "cong_nyc_hour": count.over(Window.partitionBy("dn", "sched_dep_hour")),
        "cong_carrier_origin_day": count.over(Window.partitionBy("carrier", "origin", "dn")),
        "cong_dest_day": count.over(Window.partitionBy("dest", "dn")),
    }
    return across_days.repartition("dn").withColumns({name: value.cast("int") for name, value in counts.items()}) \
        .drop("_pm30_before")


# ---------------------------------------------------------------------------------------------
# Same day before the cutoff ("live"): one running-sum pass over events + queries

# Event streams: name -> (time column, values (at most 3, in slots v0..v2), window s, done column).
# A plain stream (no window) has one row per event: its sum over [c - W, c) is run(c) - run(c - W),
# so one row serves every window W. An overdue stream counts rows due in [c - W, c) and not done
# before c: +1 when due, -1 once done or past its window (a 2-D condition: one stream per window).
_STREAMS = {
    "dep": ("t_dep", ("1", "dep_delay", "late15"), None, None),
    "sched": ("t_sched", ("1",), None, None),
    "known": ("t_known", ("1", "label"), None, None),
    "arr": ("t_arr", ("1", "arr_delay", "arr_late15"), None, None),
    "over60": ("t_sched", ("1",), 3600, "t_dep"),
    "over360": ("t_sched", ("1",), 6 * 3600, "t_dep"),
    "aover360": ("t_sarr", ("1",), 6 * 3600, "t_arr"),
}
# Key families: name -> key columns (the same on the event and the query side).
_LIVE_KEYS = {"origin": ["origin"], "nyc": [], "carrier": ["carrier"], "carrier_origin": ["carrier", "origin"],
              "dest": ["dest"]}
# Queries: output name -> (family, stream, window s; None for an overdue stream). prevdest asks the
# dest family's arrival streams with the previous leg's destination.
_LIVE_QUERIES = {
    **{f"{fam}.dep{w // 60}": (fam, "dep", w) for fam, ws in (("origin", (3600, 3 * 3600, 12 * 3600)),
                                                               ("nyc", (3600, 3 * 3600)), ("carrier", (3600, 3 * 3600)),
                                                               ("dest", (3 * 3600,))) for w in ws},
    "origin.sched60": ("origin", "sched", 3600),
    "origin.known360": ("origin", "known", 6 * 3600), "carrier.known360": ("carrier", "known", 6 * 3600),
    "dest.arr180": ("dest", "arr", 3 * 3600), "prevdest.arr180": ("dest", "arr", 3 * 3600),
    **{f"{fam}.{stream}": ("dest" if fam == "prevdest" else fam, stream, None) for fam, streams in (
        ("origin", ("over60", "over360")), ("nyc", ("over60", "over360")), ("carrier", ("over360",)),
        ("carrier_origin", ("over360",)), ("dest", ("over360", "aover360")), ("prevdest", ("aover360",)))
       for stream in streams},
}
# Streams each family emits: those its queries read.
_LIVE_EVENTS = {fam: sorted({stream for f, stream, _ in _LIVE_QUERIES.values() if f == fam}) for fam in _LIVE_KEYS}


def _query_columns(name: str) -> list[str]:
    return ["prev_dest"] if name.startswith("prevdest.") else _LIVE_KEYS[_LIVE_QUERIES[name][0]]


def _query_points(name: str) -> list[str]:
    """The query rows a feature reads: ``prefix.stream@offset`` (the sum before c - offset)."""
    fam, stream, window = _LIVE_QUERIES[name]
    prefix = f"{name.split('.')[0]}.{stream}"
    return [f"{prefix}@0"] + ([f"{prefix}@{window}"] if window else [])


def _live_key(family: str, stream: str, columns: list[str]) -> Column:
    """``family|stream|values``; null when a key column is (no previous leg: no query)."""
    key = F.concat_ws("|", F.lit(family), F.lit(stream), *columns)
    return reduce(lambda k, c: F.when(F.col(c).isNotNull(), k), columns, key)


def live_events(events: DataFrame, lo: int, hi: int) -> DataFrame:
    """``k, anchor, t, v0..v2``: every event as +values at its time; an overdue row also as -values
    when it leaves its window (once done or past it). Both rows carry the + row's time as
    ``anchor``: they land in the same buckets. Only events that can differ between the queries
    (cutoffs in [lo, hi)) are kept: one whose reach ends before ``lo`` adds the same to every
    running sum (its - row too, or its c - W query), one at or after ``hi`` to none."""
    rows = []
    for family, streams in _LIVE_EVENTS.items():
        for stream in streams:
            t_col, values, width, t_done = _STREAMS[stream]
            start = F.col(t_col)
            end = start + _LIVE_MAX_WINDOW_S if t_done is None else \
                F.least(F.greatest(F.coalesce(F.col(t_done), F.lit(2 ** 40)), start), start + width)
            slots = [(F.lit(1.0) if v == "1" else F.col(v).cast("double")) for v in values]
            slots += [F.lit(None).cast("double")] * (3 - len(slots))
            rows.append(F.struct(_live_key(family, stream, _LIVE_KEYS[family]).alias("k"), start.alias("anchor"),
                                 end.alias("end"), F.lit(t_done is not None).alias("leaves"),
                                 *[v.alias(f"v{i}") for i, v in enumerate(slots)]))
    # A flight none of whose events reaches [lo, hi) is left out before the explode (an event
    # reaches at most _LIVE_MAX_WINDOW_S past its time): the same events survive, fewer rows explode.
    anchors = sorted({_STREAMS[stream][0] for streams in _LIVE_EVENTS.values() for stream in streams})
    events = events.where((F.greatest(*anchors) + _LIVE_MAX_WINDOW_S >= lo) & (F.least(*anchors) < hi))
    one = events.select(F.explode(F.array(*rows)).alias("e")).select("e.*") \
        .where((F.col("anchor") < hi) & (F.col("end") >= lo))
    # the -values row at ``end`` of an overdue row (an explode, not a second scan of the events)
    signed = one.select("k", "anchor", F.explode(F.array(
        F.struct(F.col("anchor").alias("t"), *[F.col(f"v{i}").alias(f"v{i}") for i in range(3)]),
        F.struct(F.when(F.col("leaves"), F.col("end")).alias("t"), *[(-F.col(f"v{i}")).alias(f"v{i}") for i in range(3)]),
    )).alias("r")).select("k", "anchor", "r.*").where(F.col("t").isNotNull())
    return signed


# Query points by number (``q``: an int compares cheaper than the point's name in the regrouping).
_POINT_ID = {p: i for i, p in enumerate(dict.fromkeys(p for name in _LIVE_QUERIES for p in _query_points(name)))}


def live_sums(day: DataFrame, events: DataFrame, lo: int, hi: int) -> DataFrame:
    """``_live_id, q, v0..v2``: per query row of ``day`` (``_live_id``, ``c`` and the key columns
    ``_LIVE_INPUTS``) and query point (``_query_points``) the running sums of its stream before
    that time; every cutoff of ``day`` lies in [lo, hi).

    Query points sort before events of the same time, so a running sum at c counts events
    strictly before c. Rows are partitioned by key and UTC day bucket, an event copied into every bucket
    whose cutoffs its window can reach: a year runs as many small sorts. A run of a few days is
    one bucket (no copies).
    """
    one_bucket = hi - lo <= 3 * _BUCKET_S
    first_b, last_b = lo // _BUCKET_S, (hi - 1) // _BUCKET_S

    def bucket(t: Column) -> Column:
        return F.lit(0).cast("long") if one_bucket else F.floor(t / _BUCKET_S)

    reach = F.sequence(F.greatest(bucket(F.col("anchor")), F.lit(first_b)),
                       F.least(bucket(F.col("anchor") + _LIVE_MAX_WINDOW_S), F.lit(last_b)))
    # Events of one key at the same second add up before the sort (a bank's scheduled departures;
    # x20 copies): the running sums only ever see their total.
    ev = live_events(events, lo, hi).select(
        "k", "t", "v0", "v1", "v2", (F.lit(0).cast("long") if one_bucket else F.explode(reach)).alias("bucket")) \
        .groupBy("k", "t", "bucket").agg(*[F.sum(f"v{i}").alias(f"v{i}") for i in range(3)]) \
        .withColumn("is_ev", F.lit(1))
    points = {p: (name, int(p.rsplit("@", 1)[1])) for name in _LIVE_QUERIES for p in _query_points(name)}
    queries = F.array(*[F.struct(F.lit(_POINT_ID[p]).alias("q"),
                                 _live_key(_LIVE_QUERIES[name][0], p.split(".")[1].split("@")[0],
                                           _query_columns(name)).alias("k"),
                                 (F.col("c") - offset).alias("t"))
                        for p, (name, offset) in points.items()])
    asked = day.select(_LIVE_ID, "c", F.explode(queries).alias("x")).where(F.col("x.k").isNotNull()).select(
        _LIVE_ID, F.col("x.q").alias("q"), F.col("x.k").alias("k"), F.col("x.t").alias("t"),
        bucket(F.col("c")).alias("bucket"))
    # Flights of the same key and cutoff ask the same sum (a bank of departures at one minute;
    # x20 copies of a day): the running sums are taken once per distinct point, then joined back.
    points = asked.select("k", "t", "bucket").distinct().select(
        "k", "t", F.lit(0).alias("is_ev"), *[F.lit(None).cast("double").alias(f"v{i}") for i in range(3)], "bucket")
    running = Window.partitionBy("k", "bucket").orderBy("t", "is_ev").rowsBetween(Window.unboundedPreceding, 0)
    summed = points.unionByName(ev).select(
        "k", "t", "bucket", "is_ev", *[F.coalesce(F.sum(f"v{i}").over(running), F.lit(0.0)).alias(f"v{i}")
                                       for i in range(3)])
    at_points = summed.where(F.col("is_ev") == 0).drop("is_ev")
    return asked.join(at_points, on=["k", "t", "bucket"], how="inner").select(_LIVE_ID, "q", "v0", "v1", "v2")


def _mean(total: Column | str, n: Column | str) -> Column:
    total, n = F.col(total) if isinstance(total, str) else total, F.col(n) if isinstance(n, str) else n
    return F.when(n > 0, total / n)


# What a flight's "live" features depend on: the key columns its queries read, and its cutoff.
_LIVE_INPUTS = sorted({c for name in _LIVE_QUERIES for c in _query_columns(name)}) + ["c"]
_LIVE_ID = "_live_id"


def live_id() -> Column:
    """One string per distinct ``_LIVE_INPUTS`` (a null is a NUL character: no code is one)."""
    return F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in _LIVE_INPUTS])


def live_features(day: DataFrame, events: DataFrame, lo: int, hi: int) -> DataFrame:
    """``_live_id`` (``live_id()``) + the "live" features of ``day``'s flights (same day, before
    the cutoff, in [lo, hi)) from ``events`` (the flights whose departures, arrivals and labels can
    fall before them). They are functions of ``_LIVE_INPUTS`` alone: computed once per distinct
    combination (flights of one carrier, route and minute; x20's copies), joined back on the id."""
    queries = day.select(*_LIVE_INPUTS).distinct().withColumn(_LIVE_ID, live_id())
    sums = live_sums(queries, events, lo, hi)

    def v(query: str, slot: int = 0) -> Column:
        """The stream's sum over the query's window: run(c), or run(c) - run(c - W)."""
        at = [F.max(F.when(F.col("q") == _POINT_ID[p], F.col(f"v{slot}"))) for p in _query_points(query)]
        return at[0] if len(at) == 1 else at[0] - at[1]

    def stream_stats(name: str, query: str, minutes: int, count: bool = True) -> list[Column]:
        n, total, late = v(query, 0), v(query, 1), v(query, 2)
        return ([n.cast("int").alias(f"{name}_n_{minutes}")] if count else []) + [
            _mean(total, n).alias(f"{name}_mean_{minutes}"), _mean(late, n).alias(f"{name}_late_{minutes}")]

    aggs = [
        *stream_stats("live_origin_dep", "origin.dep60", 60), *stream_stats("live_origin_dep", "origin.dep180", 180),
        *stream_stats("live_origin_dep", "origin.dep720", 720, count=False),
        *stream_stats("live_nyc_dep", "nyc.dep60", 60), *stream_stats("live_nyc_dep", "nyc.dep180", 180),
        *stream_stats("live_carrier_dep", "carrier.dep60", 60), *stream_stats("live_carrier_dep", "carrier.dep180", 180),
        *stream_stats("live_destdep", "dest.dep180", 180),
        *stream_stats("live_dest_arr", "dest.arr180", 180), *stream_stats("live_prevdest_arr", "prevdest.arr180", 180),
        *[v(f"{fam}.over{w}").cast("int").alias(f"live_{fam}_overdue_{w}")
          for fam, w in (("origin", 60), ("origin", 360), ("nyc", 60), ("nyc", 360), ("carrier", 360),
                         ("carrier_origin", 360))],
        v("dest.over360").cast("int").alias("live_destdep_overdue_360"),
        v("dest.aover360").cast("int").alias("live_dest_arr_overdue_360"),
        v("prevdest.aover360").cast("int").alias("live_prevdest_arr_overdue_360"),
        _mean(v("origin.over60"), v("origin.sched60")).alias("live_origin_overdue_frac_60"),
        *[x for fam in ("origin", "carrier") for x in (
            v(f"{fam}.known360").cast("int").alias(f"live_{fam}_known_n_360"),
            _mean(v(f"{fam}.known360", 1), v(f"{fam}.known360")).alias(f"live_{fam}_known_late_360"))],
    ]
    return sums.groupBy(_LIVE_ID).agg(*aggs)


# ---------------------------------------------------------------------------------------------
# History: daily snapshots at S_D, one running sum over daily deltas

_HISTORY_WINDOWS = (1, 7, 28)


def _history_key(name: str, columns: list[str]) -> Column:
    key = F.concat_ws("|", F.lit(name), *columns)
    return reduce(lambda k, c: F.when(F.col(c).isNotNull(), k), columns, key)


LABEL_COUNTS_SCHEMA = T.StructType([
    T.StructField("ds", T.StringType()), T.StructField("hk", T.StringType()), T.StructField("dn", T.IntegerType()),
    T.StructField("known_dn", T.IntegerType()), T.StructField("n", T.DoubleType()), T.StructField("s", T.DoubleType()),
])
LABEL_COUNTS_COLUMNS = LABEL_COUNTS_SCHEMA.fieldNames()


def label_counts(flights: DataFrame, cutoff_hours: float = CUTOFF_HOURS_DEFAULT) -> DataFrame:
    """``ds, hk, dn, known_dn, n, s``: per history key, flight day and first snapshot day that
    knows them, the labels counted and their sum: everything the history features read of a past
    day. The transform publishes them with the day (``features/label_counts``), so a daily run
    reads 28 small partitions of counts instead of 28 days of flights."""
    timed = with_times(flights, int(round(cutoff_hours * 3600)))
    keys = F.array(*[_history_key(name, cols) for name, cols in _HISTORY_KEYS.items()])
    return timed.where(F.col("t_known").isNotNull()) \
        .select("ds", F.explode(keys).alias("hk"), "dn", "known_dn", "label").where(F.col("hk").isNotNull()) \
        .groupBy("ds", "hk", "dn", "known_dn") \
        .agg(F.count(F.lit(1)).cast("double").alias("n"), F.sum("label").cast("double").alias("s")) \
        .select(*LABEL_COUNTS_COLUMNS)


def history_deltas(counts: DataFrame) -> DataFrame:
    """``hk, day, n_W, s_W``: how the label counts a snapshot sees change on ``day``. A flight of
    day d whose label the snapshot of day ``known_dn`` first knows counts for [known_dn, d + W]."""
    per_day = counts.groupBy("hk", "dn", "known_dn").agg(F.sum("n").alias("n"), F.sum("s").alias("s"))
    zero = F.lit(0.0)
    counted = {w: F.col("known_dn") <= F.col("dn") + w for w in _HISTORY_WINDOWS}  # known while still in it
    start = F.struct(F.col("known_dn").alias("day"), *[F.when(counted[w], F.col(v)).otherwise(zero).alias(f"{v}_{w}")
                                                       for w in _HISTORY_WINDOWS for v in ("n", "s")])
    ends = [F.struct((F.col("dn") + w + 1).alias("day"),
                     *[F.when(counted[w] & F.lit(w == x), -F.col(v)).otherwise(zero).alias(f"{v}_{x}")
                       for x in _HISTORY_WINDOWS for v in ("n", "s")]) for w in _HISTORY_WINDOWS]
    return per_day.select("hk", F.explode(F.array(start, *ends)).alias("d")).select("hk", "d.*")


def history_on_day(counts: DataFrame, day_number: int) -> DataFrame:
    """``hk, day, n_W, s_W`` as the snapshot of one day sees them: the flights of [D - W, D - 1]
    whose label it knows (the running sum of ``history_deltas`` at D, as one filtered groupBy)."""
    seen = counts.where((F.col("known_dn") <= day_number) & (F.col("dn") >= day_number - max(_HISTORY_WINDOWS)))
    recent = {w: F.col("dn") >= day_number - w for w in _HISTORY_WINDOWS}
    return seen.groupBy("hk").agg(*[F.sum(F.when(recent[w], F.col(v))).alias(f"{v}_{w}")
                                    for w in _HISTORY_WINDOWS for v in ("n", "s")]) \
        .withColumn("day", F.lit(day_number))


def history_features(day: DataFrame, counts: DataFrame, days: list[str]) -> DataFrame:
    """``flight_key`` + the ``hist_*`` features of ``day``'s flights (of ``days``) from the
    ``label_counts`` of the days before, restricted to the keys they ask: a running sum over the
    days of the deltas per key (the query days join in with zero deltas, so every queried (key,
    day) has a row); a one-day run sums its snapshot directly."""
    sums = [f"{v}_{w}" for w in _HISTORY_WINDOWS for v in ("n", "s")]
    names = {name: i for i, name in enumerate([*_HISTORY_KEYS, "prevdest"])}  # by number: cheaper to compare
    keys = F.array(*[F.struct(F.lit(names[name]).alias("name"), _history_key(name, cols).alias("hk"))
                     for name, cols in _HISTORY_KEYS.items()],
                   F.struct(F.lit(names["prevdest"]).alias("name"), _history_key("dest", ["prev_dest"]).alias("hk")))
    queries = day.select("flight_key", "dn", F.explode(keys).alias("x")).select(
        "flight_key", F.col("dn").alias("day"), "x.*").where(F.col("hk").isNotNull())
    rows = counts.join(F.broadcast(queries.select("hk").distinct()), on="hk", how="left_semi")
    if len(days) == 1:
        counts = queries.join(history_on_day(rows, (date.fromisoformat(days[0]) - date(1970, 1, 1)).days),
                              on=["hk", "day"], how="left")
    else:
        zeros = queries.select("hk", "day").distinct()
        running = Window.partitionBy("hk").orderBy("day").rowsBetween(Window.unboundedPreceding, 0)
        daily = history_deltas(rows).unionByName(zeros, allowMissingColumns=True).groupBy("hk", "day") \
            .agg(*[F.sum(c).alias(c) for c in sums]).select("hk", "day", *[F.sum(c).over(running).alias(c) for c in sums])
        counts = queries.join(daily, on=["hk", "day"], how="inner")

    def get(name: str, col: str) -> Column:
        return F.max(F.when(F.col("name") == names[name], F.coalesce(F.col(col), F.lit(0.0))))

    prior = {w: F.coalesce(_mean(get("all", f"s_{w}"), get("all", f"n_{w}")), F.lit(NO_HISTORY_RATE))
             for w in _HISTORY_WINDOWS}
    aggs = []
    for name, w in _HISTORY_PLAN:
        n, s = get(name, f"n_{w}"), get(name, f"s_{w}")
        if name == "all":
            aggs.append(_mean(s, n).alias(f"hist_all_{w}d_rate"))
            continue
        if name == "tail":  # no tail = an aircraft without history
            n, s = F.coalesce(n, F.lit(0.0)), F.coalesce(s, F.lit(0.0))
        aggs += [((s + PRIOR_WEIGHT * prior[w]) / (n + PRIOR_WEIGHT)).alias(f"hist_{name}_{w}d_rate"),
                 n.cast("int").alias(f"hist_{name}_{w}d_n")]
    n, s = get("prevdest", "n_7"), get("prevdest", "s_7")
    aggs.append(((s + PRIOR_WEIGHT * prior[7]) / (n + PRIOR_WEIGHT)).alias("hist_prevdest_7d_rate"))
    return counts.groupBy("flight_key").agg(*aggs)


# ---------------------------------------------------------------------------------------------
# Weather at the cutoff


def hourly_weather(weather: DataFrame) -> DataFrame:
    """One observation per origin and hour with its 3-observation aggregates."""
    recent = Window.partitionBy("origin").orderBy("t_obs")
    last3 = recent.rowsBetween(-2, 0)
    return weather.dropDuplicates(["origin", "time_hour"]).withColumn("t_obs", _seconds("time_hour")).select(
        "origin", "t_obs", *_WX,
        F.sum("precip").over(last3).alias("precip_3h"),
        F.min("visib").over(last3).alias("visib_min_3h"),
        F.max("wind_speed").over(last3).alias("wind_max_3h"),
        (F.col("pressure") - F.lag("pressure", 3).over(recent)).alias("pressure_d3h"),
    )


def weather_at_cutoff(flights: DataFrame, weather: DataFrame) -> DataFrame:
    """``wxc_*``: the latest hourly observation known before c (time_hour + 1 h < c), at most
    4 h old. The candidates are the four whole hours before c - 1 h: each observation is listed
    under the four candidate hours it can serve (its own and the three after it), the newest one
    kept per origin and hour (the weather is a few rows a day), and the flights look up their
    newest candidate hour: one broadcast equi-join, no shuffle of the flights."""
    obs = hourly_weather(weather)
    served = obs.select("origin", F.struct(*_WX, *_WX_ROLLING).alias("wx"),
                        F.explode(F.sequence(F.lit(0), F.lit(WEATHER_MAX_AGE_HOURS - 1))).alias("_age"),
                        "t_obs").withColumn("_t_obs", F.col("t_obs") + F.col("_age") * 3600)
    newest_obs = served.groupBy("origin", "_t_obs").agg(F.min_by("wx", "_age").alias("_wx"))
    newest = (F.ceil((F.col("c") - 3600) / 3600) - 1) * 3600  # latest whole hour strictly before c - 1 h
    out = flights.withColumn("_t_obs", newest).join(F.broadcast(newest_obs), on=["origin", "_t_obs"], how="left")
    return out.withColumns({f"wxc_{c}": F.col("_wx")[c] for c in _WX + _WX_ROLLING}).drop("_t_obs", "_wx")


# ---------------------------------------------------------------------------------------------


def _local_midnight(ds: str) -> int:
    """Epoch seconds of 00:00 of ``ds`` at the origins (America/New_York)."""
    return int(datetime.combine(date.fromisoformat(ds), time(0), ZoneInfo(ORIGIN_TZ)).timestamp())


def flight_days_before(cutoff_hours: float = CUTOFF_HOURS_DEFAULT) -> int:
    """How many days before a run's first day its flights must include: the aircraft's previous
    legs (48 h) and the events that can fall before a cutoff (delays up to 48 h, windows up to 12 h)."""
    cutoff_s = int(round(cutoff_hours * 3600))
    return _MAX_DELAY_DAYS + math.ceil((cutoff_s + _LIVE_MAX_WINDOW_S) / 86400)


def build_features(flights: DataFrame, weather: DataFrame, planes: DataFrame, airports: DataFrame,
                   days: list[str], cutoff_hours: float = CUTOFF_HOURS_DEFAULT,
                   counts: DataFrame | None = None) -> DataFrame:
    """One feature row per clean flight of ``days`` (``FEATURES_TABLE_COLUMNS`` + ``ds``).

    ``flights``: clean flights of any days in [min(days) - HISTORY_DAYS, max(days)] (a missing day
    is missing history), or only of [min(days) - ``flight_days_before``, max(days)] when
    ``counts`` gives the ``label_counts`` of the days before (the transform reads them published);
    ``weather``: clean weather of [min(days) - WEATHER_HISTORY_DAYS, max(days)].
    """
    cutoff_s = int(round(cutoff_hours * 3600))
    first, last = min(days), max(days)
    flights = flights.where(F.col("ds") <= last)
    if counts is None:
        counts = label_counts(flights, cutoff_hours)
    timed = with_times(flights.where(F.col("ds") >= shift_day(first, -flight_days_before(cutoff_hours))), cutoff_s)
    # The aircraft's legs and the congestion counts are windows (a shuffle and a sort each) over the
    # days before too: taken over the few columns they read, then joined to the run's own rows.
    legs = previous_leg_features(timed.select(*_WINDOW_INPUTS))
    windowed = congestion_features(legs.where(F.col("ds") >= shift_day(first, -1))).where(F.col("ds").isin(days)) \
        .drop(*[c for c in _WINDOW_INPUTS if c != "flight_key"])
    if len(days) <= _SMALL_RUN_DAYS:
        windowed = F.broadcast(windowed)
    day = previous_leg_columns(timed.where(F.col("ds").isin(days)).join(windowed, on="flight_key", how="inner"))
    # Three branches read the day's rows (live queries, history queries, the output): computed once.
    day = day.select(*[c for c in day.columns if not c.startswith(("p1_", "p2_"))]).localCheckpoint(eager=True)
    # every cutoff of the run lies in [lo, hi) (local midnights of its days, 24:00 flights included)
    lo = _local_midnight(first) - cutoff_s - 3600
    hi = _local_midnight(shift_day(last, 1)) - cutoff_s + 3600
    live = live_features(day, timed, lo, hi)
    history = history_features(day, counts, days)
    if len(days) <= _SMALL_RUN_DAYS:  # a few thousand rows a day: no shuffle of the day's rows to join them
        live, history = F.broadcast(live), F.broadcast(history)
    enriched = weather_at_cutoff(
        join_destinations(join_planes(static_features(day), planes), airports), weather,
    ).withColumn(_LIVE_ID, live_id()).join(live, on=_LIVE_ID, how="left") \
        .join(history, on="flight_key", how="left")
    return enriched.select(*FEATURES_TABLE_COLUMNS, "ds")
