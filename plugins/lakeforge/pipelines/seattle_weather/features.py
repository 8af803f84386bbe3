"""clean -> features for Seattle's weather: what is known BEFORE a day, and the day's weather.

One row per day (key and time column ``date``). Features come only from earlier days, through
window frames that end the day before (``rangeBetween(-n, -1)`` over the day number): the
previous day's readings, 3- and 7-day trailing means, how many of the last 7 days were wet and
how many are known at all (a blocked or missing month leaves them out), plus the calendar. The
labels are the day's own values: ``label`` (the weather class, multiclass; ``label_index`` its
position in ``WEATHER_CLASSES``) and ``label_temp_max`` (regression). A row therefore reads "given
everything up to yesterday, what is today's weather": next-day prediction, with no leakage.

The job hands ``build_features`` the run's clean rows plus the published clean partitions of the
``history_days`` before them (``transform.py``): a month's first days see the previous month.
Training on this table is a later phase; the columns are shaped for it.
"""

from __future__ import annotations

from lakeforge.pipelines.seattle_weather import WEATHER_CLASSES

WET = ("rain", "drizzle", "snow")
NUMERIC = ("precipitation", "temp_max", "temp_min", "wind")


def build_features(frames: dict, dates: list[str]):
    """``frames["weather"]``: clean weather (run partitions + history) -> the features of every day."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    weather = frames["weather"].withColumn("_day", F.unix_date("date"))
    # A few hundred rows per run: one window partition is fine (Spark warns about it).
    by_day = Window.orderBy("_day")

    def before(days: int):
        return by_day.rangeBetween(-days, -1)

    wet = F.col("weather").isin(*WET).cast("int")
    return weather.select(
        "date",
        F.dayofyear("date").alias("day_of_year"),
        F.month("date").alias("month"),
        F.dayofweek("date").alias("day_of_week"),
        *(F.first(c).over(before(1)).alias(f"prev_{c}") for c in (*NUMERIC, "weather")),
        F.avg("temp_max").over(before(3)).alias("avg3_temp_max"),
        F.avg("precipitation").over(before(3)).alias("avg3_precipitation"),
        *(F.avg(c).over(before(7)).alias(f"avg7_{c}") for c in NUMERIC),
        F.coalesce(F.sum(wet).over(before(7)), F.lit(0)).cast("int").alias("wet_days_7"),
        F.count(F.lit(1)).over(before(7)).cast("int").alias("known_days_7"),
        F.col("weather").alias("label"),
        (F.array_position(F.array(*(F.lit(c) for c in WEATHER_CLASSES)), F.col("weather")) - 1)
        .cast("int").alias("label_index"),
        F.col("temp_max").alias("label_temp_max"),
        "ds",
    ).where(F.col("ds").isin(*dates))
