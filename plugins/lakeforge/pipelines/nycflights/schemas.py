"""Explicit schemas of the nycflights tables: what raw CSV columns become (no inference, ever)."""

from __future__ import annotations

from pyspark.sql import types as T

# Raw column -> Spark type, in the delivered column order.
FLIGHTS_RAW = {
    "year": T.IntegerType(), "month": T.IntegerType(), "day": T.IntegerType(),
    "dep_time": T.IntegerType(), "sched_dep_time": T.IntegerType(), "dep_delay": T.DoubleType(),
    "arr_time": T.IntegerType(), "sched_arr_time": T.IntegerType(), "arr_delay": T.DoubleType(),
    "carrier": T.StringType(), "flight": T.IntegerType(), "tailnum": T.StringType(),
    "origin": T.StringType(), "dest": T.StringType(), "air_time": T.DoubleType(),
    "distance": T.DoubleType(), "hour": T.IntegerType(), "minute": T.IntegerType(),
    "time_hour": T.TimestampType(),
}
WEATHER_RAW = {
    "origin": T.StringType(), "year": T.IntegerType(), "month": T.IntegerType(),
    "day": T.IntegerType(), "hour": T.IntegerType(), "temp": T.DoubleType(), "dewp": T.DoubleType(),
    "humid": T.DoubleType(), "wind_dir": T.DoubleType(), "wind_speed": T.DoubleType(),
    "wind_gust": T.DoubleType(), "precip": T.DoubleType(), "pressure": T.DoubleType(),
    "visib": T.DoubleType(), "time_hour": T.TimestampType(),
}
PLANES = T.StructType([
    T.StructField("tailnum", T.StringType()), T.StructField("year", T.IntegerType()),
    T.StructField("type", T.StringType()), T.StructField("manufacturer", T.StringType()),
    T.StructField("model", T.StringType()), T.StructField("engines", T.IntegerType()),
    T.StructField("seats", T.IntegerType()), T.StructField("speed", T.IntegerType()),
    T.StructField("engine", T.StringType()),
])
AIRPORTS = T.StructType([
    T.StructField("faa", T.StringType()), T.StructField("name", T.StringType()),
    T.StructField("lat", T.DoubleType()), T.StructField("lon", T.DoubleType()),
    T.StructField("alt", T.DoubleType()), T.StructField("tz", T.DoubleType()),
    T.StructField("dst", T.StringType()), T.StructField("tzone", T.StringType()),
])
AIRLINES = T.StructType([T.StructField("carrier", T.StringType()), T.StructField("name", T.StringType())])
REFERENCE_SCHEMAS = {"planes": PLANES, "airports": AIRPORTS, "airlines": AIRLINES}

# Raw text lines as read from the lake: the line itself and the partition it came from.
RAW_LINES = T.StructType([T.StructField("value", T.StringType()), T.StructField("ds", T.StringType())])

QUARANTINE = T.StructType([
    T.StructField("raw_line", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("ds", T.StringType()),
])

ORIGIN_TZ = "America/New_York"
ORIGINS = ("EWR", "JFK", "LGA")
