"""clean -> features: the pre-departure rule, the label, and the joins."""

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark_jobs.clean import CLEAN_FLIGHTS_COLUMNS, clean_flights, clean_weather
from spark_jobs.features import FEATURE_COLUMNS, FEATURES_TABLE_COLUMNS, LEAKY_COLUMNS, build_features
from spark_jobs.schemas import AIRPORTS, FLIGHTS_RAW, PLANES, RAW_LINES, WEATHER_RAW

FLIGHTS = [
    "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",  # on time
    "2013,1,1,554,558,-4,740,728,12,UA,1696,N39463,EWR,ORD,150,719,5,58,2013-01-01T10:00:00Z",
    "2013,1,1,811,630,101,1047,830,137,MQ,4576,N531MQ,LGA,CLT,118,544,6,30,2013-01-01T11:00:00Z",  # late
    "2013,1,1,NA,1630,NA,NA,1815,NA,EV,4308,N18120,EWR,RDU,NA,416,16,30,2013-01-01T21:00:00Z",  # cancelled
    "2013,1,1,2056,2045,11,NA,2359,NA,UA,1071,N76515,EWR,IAH,NA,1400,20,45,2013-01-02T01:00:00Z",  # diverted
]
WEATHER = [
    "EWR,2013,1,1,5,39.02,26.06,59.37,270,10.35,NA,0,1012,10,2013-01-01T10:00:00Z",
    "LGA,2013,1,1,6,39.92,24.98,54.81,250,14.96,21.86,0,1011.4,10,2013-01-01T11:00:00Z",
]


@pytest.fixture
def inputs(spark):
    airports = spark.createDataFrame(
        [("IAH", "Houston", 29.98, -95.34, 97.0, -6.0, "A", "America/Chicago"),
         ("ORD", "Chicago", 41.98, -87.90, 668.0, -6.0, "A", "America/Chicago"),
         ("CLT", "Charlotte", 35.21, -80.94, 748.0, -5.0, "A", "America/New_York"),
         ("RDU", "Raleigh", 35.88, -78.79, 435.0, -5.0, "A", "America/New_York")],
        AIRPORTS,
    )
    planes = spark.createDataFrame(
        [("N14228", 1999, "Fixed wing multi engine", "BOEING", "737-824", 2, 149, None, "Turbo-fan")], PLANES
    )
    raw = lambda header, rows: spark.createDataFrame(  # noqa: E731
        [(v, "2013-01-01") for v in (",".join(header), *rows)], RAW_LINES
    )
    flights, _ = clean_flights(raw(FLIGHTS_RAW, FLIGHTS), airports)
    weather, _ = clean_weather(raw(WEATHER_RAW, WEATHER))
    return flights, weather, planes, airports


def test_no_post_departure_column_is_a_feature():
    assert not set(FEATURE_COLUMNS) & LEAKY_COLUMNS


def test_features_do_not_change_when_outcomes_do(spark, inputs):
    """Scramble everything measured at or after departure: no feature may move."""
    flights, weather, planes, airports = inputs
    scrambled = flights.withColumns({
        "dep_time": F.lit(1200), "dep_delay": F.lit(999.0), "arr_time": F.lit(1300),
        "arr_delay": F.lit(-50.0), "air_time": F.lit(1.0), "dep_utc": F.current_timestamp(),
        "arr_utc": F.current_timestamp(), "dep_local": F.lit(None).cast("timestamp_ntz"),
        "arr_local": F.lit(None).cast("timestamp_ntz"),
    }).select(*CLEAN_FLIGHTS_COLUMNS, "ds")
    keys_and_features = ["flight_key", *FEATURE_COLUMNS]
    assertDataFrameEqual(
        build_features(flights, weather, planes, airports).select(*keys_and_features),
        build_features(scrambled, weather, planes, airports).select(*keys_and_features),
    )


def test_labels_and_joins(spark, inputs):
    features = build_features(*inputs)
    assert features.columns == FEATURES_TABLE_COLUMNS + ["ds"]
    rows = {r.flight_key: r for r in features.collect()}
    got = {k.split("-")[4]: (r.label, r.label_reason) for k, r in rows.items()}
    assert got == {
        "1545": (0, "on_time"), "1696": (0, "on_time"), "4576": (1, "late"),
        "4308": (1, "cancelled"), "1071": (1, "diverted"),
    }
    ua = rows["2013-01-01-UA-1545-EWR-515"]
    assert (ua.temp, ua.wind_speed, ua.sched_dep_hour) == (39.02, 10.35, 5)  # EWR at 05:00 local
    assert (ua.plane_age, ua.plane_seats, ua.plane_type) == (14, 149, "Fixed wing multi engine")
    assert (ua.dest_lat, ua.dest_tz_offset, ua.is_weekend, ua.day_of_week) == (29.98, -6.0, 0, 3)
    mq = rows["2013-01-01-MQ-4576-LGA-630"]
    assert (mq.wind_gust, mq.plane_age) == (21.86, None)  # LGA 06:00 weather; unknown plane
