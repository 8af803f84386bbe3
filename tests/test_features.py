"""clean -> features: the contract, the label, the joins, and the aircraft's legs across days."""

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeforge.pipelines.nycflights.clean import CLEAN_FLIGHTS_COLUMNS, clean_flights, clean_weather
from lakeforge.pipelines.nycflights.features import (
    CATEGORICAL_FEATURES, FEATURE_COLUMNS, FEATURE_CONTRACT, FEATURE_GROUPS, FEATURES_TABLE_COLUMNS, LEAKY_COLUMNS,
    build_features,
)
from lakeforge.pipelines.nycflights.schemas import AIRPORTS, FLIGHTS_RAW, PLANES, RAW_LINES, WEATHER_RAW


def flight(day, sched, delay, carrier, number, tail, origin="EWR", dest="BOS", sched_arr=None, arr_delay=None):
    """A raw flights line: ``sched`` hhmm local, ``delay`` minutes (None = cancelled)."""
    y, m, d = (int(x) for x in day.split("-"))
    sched_arr = sched_arr if sched_arr is not None else (sched + 100) % 2400
    dep = "NA" if delay is None else (sched + delay // 60 * 100 + delay % 60) % 2400
    arr_delay = delay if arr_delay is None else arr_delay
    arr = "NA" if delay is None else (sched_arr + arr_delay // 60 * 100 + arr_delay % 60) % 2400
    delays = ("NA", "NA") if delay is None else (delay, arr_delay)
    return (f"{y},{m},{d},{dep},{sched},{delays[0]},{arr},{sched_arr},{delays[1]},{carrier},{number},"
            f"{tail or 'NA'},{origin},{dest},NA,200,{sched // 100},{sched % 100},{day}T00:00:00Z")


FLIGHTS = [
    "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",  # on time
    "2013,1,1,554,558,-4,740,728,12,UA,1696,N39463,EWR,ORD,150,719,5,58,2013-01-01T10:00:00Z",
    "2013,1,1,811,630,101,1047,830,137,MQ,4576,N531MQ,LGA,CLT,118,544,6,30,2013-01-01T11:00:00Z",  # late
    "2013,1,1,NA,1630,NA,NA,1815,NA,EV,4308,N18120,EWR,RDU,NA,416,16,30,2013-01-01T21:00:00Z",  # cancelled
    "2013,1,1,2056,2045,11,NA,2359,NA,UA,1071,N76515,EWR,IAH,NA,1400,20,45,2013-01-02T01:00:00Z",  # diverted
]
LEGS = [
    # N1: a late evening leg on 01-01, then 01-02's first leg (its previous leg is yesterday's) and a second
    flight("2013-01-01", 2100, 30, "B6", 1, "N1"),
    flight("2013-01-02", 600, 0, "B6", 2, "N1", dest="SJU", sched_arr=1000),
    flight("2013-01-02", 1500, 5, "B6", 3, "N1", origin="JFK"),
    # N2: the previous leg is overdue at the cutoff (due 10:00, departs 11:40; cutoff 10:30)
    flight("2013-01-02", 1000, 100, "DL", 10, "N2"),
    flight("2013-01-02", 1230, 0, "DL", 11, "N2"),
    # N3: the previous leg is not due yet at the cutoff (due 11:00; cutoff 10:00): its state only
    flight("2013-01-02", 1100, 50, "AA", 20, "N3"),
    flight("2013-01-02", 1200, 0, "AA", 21, "N3"),
    # no tail: never one aircraft
    flight("2013-01-02", 700, None, "UA", 30, None),
    flight("2013-01-02", 900, None, "UA", 31, None),
]
WEATHER = [
    "EWR,2013,1,1,1,30.0,20.0,50.0,200,5.0,NA,0,1010,10,2013-01-01T06:00:00Z",
    "EWR,2013,1,1,2,39.02,26.06,59.37,270,10.35,NA,0,1012,10,2013-01-01T07:00:00Z",
    "EWR,2013,1,1,5,99.0,26.06,59.37,270,99.0,NA,0,1012,10,2013-01-01T10:00:00Z",  # the scheduled hour
    "LGA,2013,1,1,3,39.92,24.98,54.81,250,14.96,21.86,0,1011.4,10,2013-01-01T08:00:00Z",
]


def ds_of(line: str, first: int = 0) -> str:
    y, m, d = line.split(",")[first:first + 3]
    return f"{int(y):04d}-{int(m):02d}-{int(d):02d}"


@pytest.fixture(scope="module")
def reference(spark):
    airports = spark.createDataFrame(
        [("IAH", "Houston", 29.98, -95.34, 97.0, -6.0, "A", "America/Chicago"),
         ("ORD", "Chicago", 41.98, -87.90, 668.0, -6.0, "A", "America/Chicago"),
         ("CLT", "Charlotte", 35.21, -80.94, 748.0, -5.0, "A", "America/New_York"),
         ("RDU", "Raleigh", 35.88, -78.79, 435.0, -5.0, "A", "America/New_York"),
         ("BOS", "Boston", 42.36, -71.01, 19.0, -5.0, "A", "America/New_York")],
        AIRPORTS,
    )
    planes = spark.createDataFrame(
        [("N14228", 1999, "Fixed wing multi engine", "BOEING", "737-824", 2, 149, None, "Turbo-fan")], PLANES
    )
    return planes, airports


def clean_inputs(spark, airports, flights, weather=()):
    raw = lambda header, rows, first: spark.createDataFrame(  # noqa: E731
        [(",".join(header), "2013-01-01"), *[(v, ds_of(v, first)) for v in rows]], RAW_LINES)
    clean, bad = clean_flights(raw(FLIGHTS_RAW, flights, 0), airports)
    assert bad.count() == 0
    return clean, clean_weather(raw(WEATHER_RAW, weather, 1))[0]


@pytest.fixture(scope="module")
def inputs(spark, reference):
    planes, airports = reference
    flights, weather = clean_inputs(spark, airports, FLIGHTS, WEATHER)
    return flights, weather, planes, airports


@pytest.fixture(scope="module")
def features(inputs):
    return build_features(*inputs, ["2013-01-01"]).cache()


@pytest.fixture(scope="module")
def legs(spark, reference):
    planes, airports = reference
    flights, weather = clean_inputs(spark, airports, LEGS)
    rows = build_features(flights, weather, planes, airports, ["2013-01-01", "2013-01-02"]).collect()
    return {(r.carrier, r.flight_key.split("-")[4]): r for r in rows}


def test_contract_covers_every_feature_and_no_outcome_is_one():
    assert not set(FEATURE_COLUMNS) & LEAKY_COLUMNS
    assert set(FEATURE_COLUMNS) <= set(FEATURE_CONTRACT) and all(FEATURE_CONTRACT[c] for c in FEATURE_COLUMNS)
    grouped = [c for cols in FEATURE_GROUPS.values() for c in cols]
    assert sorted(grouped) == sorted(FEATURE_COLUMNS) and len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert set(CATEGORICAL_FEATURES) <= set(FEATURE_COLUMNS)
    assert not {"month", "day_of_month", "day_of_year", "temp", "wind_speed"} & set(FEATURE_COLUMNS)


def test_features_do_not_change_when_own_outcomes_do(spark, inputs, features):
    """Scramble every flight's own outcome: no feature of a flight whose cutoff is before every
    departure may move (here: the whole day's first flights)."""
    flights, weather, planes, airports = inputs
    scrambled = flights.withColumns({
        "dep_time": F.lit(1200), "dep_delay": F.lit(999.0), "arr_time": F.lit(1300),
        "arr_delay": F.lit(-50.0), "air_time": F.lit(1.0),
        "dep_utc": F.timestamp_seconds(F.unix_seconds("sched_dep_utc") + 999 * 60),
        "arr_utc": F.timestamp_seconds(F.unix_seconds("sched_arr_utc") - 50 * 60),
        "dep_local": F.lit(None).cast("timestamp_ntz"), "arr_local": F.lit(None).cast("timestamp_ntz"),
        "cancelled": F.lit(False), "diverted": F.lit(False),
    }).select(*CLEAN_FLIGHTS_COLUMNS, "ds")
    keys_and_features = ["flight_key", *FEATURE_COLUMNS]
    first_cutoff = F.col("sched_dep_utc") < F.lit(dt.datetime(2013, 1, 1, 12, 0))  # before any outcome
    assertDataFrameEqual(
        features.where(first_cutoff).select(*keys_and_features),
        build_features(scrambled, weather, planes, airports, ["2013-01-01"]).where(first_cutoff)
        .select(*keys_and_features),
    )


def test_labels_and_joins(features):
    assert features.columns == FEATURES_TABLE_COLUMNS + ["ds"]
    rows = {r.flight_key: r for r in features.collect()}
    got = {k.split("-")[4]: (r.label, r.label_reason) for k, r in rows.items()}
    assert got == {
        "1545": (0, "on_time"), "1696": (0, "on_time"), "4576": (1, "late"),
        "4308": (1, "cancelled"), "1071": (1, "diverted"),
    }
    ua = rows["2013-01-01-UA-1545-EWR-515"]
    # cutoff 03:15 local: the 02:00 observation (known at 03:00), never the 05:00 one (the scheduled hour)
    assert (ua.wxc_temp, ua.wxc_wind_speed, ua.sched_dep_hour) == (39.02, 10.35, 5)
    assert ua.wxc_precip_3h == 0 and ua.wxc_wind_max_3h == 10.35 and ua.wxc_pressure_d3h is None
    assert (ua.plane_age, ua.plane_seats, ua.plane_type) == (14, 149, "Fixed wing multi engine")
    assert (ua.dest_lat, ua.dest_tz_offset, ua.is_weekend, ua.day_of_week) == (29.98, -6.0, 0, 2)  # a Tuesday
    assert (ua.sched_block_min, ua.cong_origin_day, ua.cong_origin_hour) == (244.0, 4, 2)
    mq = rows["2013-01-01-MQ-4576-LGA-630"]
    assert (mq.wxc_wind_gust, mq.plane_age) == (21.86, None)  # LGA 03:00 weather (cutoff 04:30); unknown plane
    assert rows["2013-01-01-EV-4308-EWR-1630"].live_origin_dep_n_180 == 0  # 11:30..14:30: nothing departed
    diverted_cutoff = rows["2013-01-01-UA-1071-EWR-2045"]
    # cutoff 18:45: departed before it: 517 (10:17 UTC) .. 811; not departed yet: the cancelled 16:30
    assert (diverted_cutoff.live_nyc_dep_n_180, diverted_cutoff.live_origin_overdue_360) == (0, 1)


def test_previous_leg_across_midnight_and_first_leg_of_day(legs):
    red_eye, second = legs[("B6", "2")], legs[("B6", "3")]
    assert (red_eye.tail_leg_of_day, red_eye.prev_gap_min, red_eye.prev_dest) == (0, 540.0, "BOS")
    assert (red_eye.prev_dep_state, red_eye.prev_dep_delay_c, red_eye.prev_arr_state) == (1, 30.0, 1)
    assert (red_eye.prev_turn_min, red_eye.prev_block_min, red_eye.prev_slack_min) == (480.0, 60.0, 420.0)
    assert (red_eye.prev2_gap_min, red_eye.prev2_dep_delay_c) == (None, None)
    assert (second.tail_leg_of_day, second.prev_gap_min, second.prev_dest, second.prev2_gap_min) == (1, 540.0, "SJU", 1080.0)
    # SJU has no airports row: its zone comes from clean.EXTRA_AIRPORT_ZONES (10:00 AST = 14:00 UTC)
    assert second.prev_block_min == 180.0  # 06:00 EST -> 10:00 AST
    first = legs[("B6", "1")]
    assert (first.tail_leg_of_day, first.prev_gap_min, first.prev_dep_state) == (0, None, None)


def test_previous_leg_after_the_cutoff_gives_its_state_not_its_delay(legs):
    overdue, not_due = legs[("DL", "11")], legs[("AA", "21")]
    assert (overdue.prev_dep_state, overdue.prev_dep_delay_c) == (2, 30.0)  # c - due, not the 100 it had
    assert (overdue.prev_arr_state, overdue.prev_known_delay_c) == (0, 30.0)
    assert (not_due.prev_dep_state, not_due.prev_dep_delay_c, not_due.prev_known_delay_c) == (0, None, None)
    assert not_due.prev_gap_min == 60.0


def test_missing_tailnum_is_an_aircraft_without_legs(legs):
    for number in ("30", "31"):
        row = legs[("UA", number)]
        assert row.tailnum is None and row.label_reason == "cancelled"
        assert (row.prev_gap_min, row.prev_dep_state, row.tail_leg_of_day) == (None, None, 0)
        assert (row.hist_tail_7d_n, row.prev_dest, row.hist_prevdest_7d_rate) == (0, None, None)
        assert row.hist_tail_7d_rate is not None  # the prior: the history of an aircraft without legs
