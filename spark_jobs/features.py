"""clean -> features: the one definition of the flight-delay features (training and scoring share it).

Only what is known before departure is a feature: the schedule, the carrier and route, the
aircraft, the calendar, and the weather at the origin at the scheduled departure hour (observed
weather stands in for the forecast a scheduler would have). Nothing measured at or after
departure (``LEAKY_COLUMNS``) may become a feature; a test enforces it.

Label: ``label = 1`` when the flight arrived more than 15 minutes late, or never arrived as
scheduled: cancelled (no departure) and diverted (no recorded arrival) flights count as delayed,
as they do for the passenger. ``label_reason`` says which.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

DELAY_THRESHOLD_MINUTES = 15

# Outcomes: measured at or after departure. Never features.
LEAKY_COLUMNS = frozenset({
    "dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "dep_local", "dep_utc",
    "arr_local", "arr_utc", "cancelled", "diverted", "label", "label_reason",
})

CATEGORICAL_FEATURES = ["carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine"]
NUMERIC_FEATURES = [
    "distance", "sched_dep_hour", "sched_dep_minute", "sched_arr_hour", "day_of_week", "month",
    "day_of_month", "day_of_year", "is_weekend", "temp", "dewp", "humid", "wind_dir", "wind_speed",
    "wind_gust", "precip", "pressure", "visib", "plane_age", "plane_seats", "plane_engines",
    "dest_lat", "dest_lon", "dest_alt", "dest_tz_offset",
]
FEATURE_COLUMNS = CATEGORICAL_FEATURES + NUMERIC_FEATURES
KEY_COLUMNS = ["flight_key", "sched_dep_utc"]
FEATURES_TABLE_COLUMNS = KEY_COLUMNS + FEATURE_COLUMNS + ["label", "label_reason"]


def calendar_features(flights: DataFrame) -> DataFrame:
    local = F.col("sched_dep_local")
    return flights.withColumns({
        "sched_dep_hour": F.hour(local),
        "sched_dep_minute": F.minute(local),
        "sched_arr_hour": (F.col("sched_arr_time") / 100).cast("int"),
        "day_of_week": F.dayofweek(local),
        "day_of_month": F.dayofmonth(local),
        "day_of_year": F.dayofyear(local),
        "is_weekend": F.dayofweek(local).isin(1, 7).cast("int"),
    })


def join_weather(flights: DataFrame, weather: DataFrame) -> DataFrame:
    """Weather at the origin in the scheduled departure hour (same local day and hour). Broadcast:
    a year of hourly weather is ~26k rows, the flights side is never shuffled."""
    hourly = weather.select(
        "origin", "ds", F.col("hour").alias("sched_dep_hour"),
        "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    ).dropDuplicates(["origin", "ds", "sched_dep_hour"])
    return flights.join(F.broadcast(hourly), on=["origin", "ds", "sched_dep_hour"], how="left")


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


def with_label(flights: DataFrame) -> DataFrame:
    reason = (
        F.when(F.col("cancelled"), "cancelled")
        .when(F.col("diverted"), "diverted")
        .when(F.col("arr_delay") > DELAY_THRESHOLD_MINUTES, "late")
        .otherwise("on_time")
    )
    return flights.withColumn("label_reason", reason) \
        .withColumn("label", (F.col("label_reason") != "on_time").cast("int"))


def build_features(flights: DataFrame, weather: DataFrame, planes: DataFrame, airports: DataFrame) -> DataFrame:
    """Clean flights (+ clean weather, reference tables) -> one feature row per flight."""
    enriched = join_destinations(
        join_planes(join_weather(calendar_features(flights), weather), planes), airports
    )
    return with_label(enriched).select(*FEATURES_TABLE_COLUMNS, "ds")
