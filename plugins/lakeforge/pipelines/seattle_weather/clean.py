"""raw -> clean for Seattle's weather: a pure DataFrame transform with an explicit schema.

``clean_weather(lines) -> (good, bad)``: ``lines`` are the raw CSV lines (``value``, ``ds``) of the
run's monthly partitions; every field is typed with ``try_cast`` (no inference), the date is read
as ``YYYY/MM/DD``, and a row that breaks a rule goes to the quarantine with its raw line and the
first reason (``raw_line``, ``reason``, ``ds``). Good + quarantined = input, row for row.

The line parser is the platform's (``lakeforge.transform.parse``: ``parse_delimited`` over a
schema and rules, ``split_good_bad``); pyspark is imported inside the functions, so that reading
the pipeline's declaration (a DAG file does) stays cheap.
"""

from __future__ import annotations

from lakeforge.pipelines.seattle_weather import WEATHER_CLASSES

DATE_PATTERN = "yyyy/MM/dd"  # Spark's spelling of the source's date_format, %Y/%m/%d
CLEAN_COLUMNS = ("date", "precipitation", "temp_max", "temp_min", "wind", "weather")


def raw_schema() -> dict:
    """Raw column -> Spark type, in the delivered order (the date is text until its rule reads it)."""
    from pyspark.sql import types as T

    return {"date": T.StringType(), "precipitation": T.DoubleType(), "temp_max": T.DoubleType(),
            "temp_min": T.DoubleType(), "wind": T.DoubleType(), "weather": T.StringType()}


def rules() -> list:
    """(row is bad, reason) pairs; the first that applies is the row's reason."""
    from pyspark.sql import functions as F

    day = F.try_to_date(F.col("date"), DATE_PATTERN)

    def outside(name: str, low: float, high: float):
        value = F.col(name)
        return (value.isNull() | (value < low) | (value > high),
                F.format_string(f"impossible {name}: %s (allowed {low:g}..{high:g})",
                                F.coalesce(value.cast("string"), F.lit("null"))))

    return [
        (day.isNull(), F.format_string("unparsable date: '%s' (expected YYYY/MM/DD)",
                                       F.coalesce(F.col("date"), F.lit("")))),
        # A monthly partition holds its month's days only (the delivery check wants one row of its first day).
        (F.trunc(day, "month") != F.to_date(F.col("ds")),
         F.format_string("row dated %s in partition %s", F.col("date"), F.col("ds"))),
        (F.col("weather").isNull() | ~F.col("weather").isin(*WEATHER_CLASSES),
         F.format_string("unknown weather: %s", F.coalesce(F.col("weather"), F.lit("null")))),
        outside("precipitation", 0, 200),
        outside("temp_max", -30, 50),
        outside("temp_min", -30, 50),
        (F.col("temp_min") > F.col("temp_max"), F.lit("temp_min above temp_max")),
        outside("wind", 0, 40),
    ]


def clean_weather(lines):
    """(good rows: ``CLEAN_COLUMNS`` typed + ``ds``; quarantine rows: ``raw_line``, ``reason``, ``ds``)."""
    from pyspark.sql import functions as F

    from lakeforge.transform.parse import parse_delimited, split_good_bad

    parsed = parse_delimited(lines, raw_schema(), rules())
    parsed = parsed.withColumn("date", F.try_to_date(F.col("date"), DATE_PATTERN))
    return split_good_bad(parsed, CLEAN_COLUMNS)
