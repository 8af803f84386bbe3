"""nycflights' transform, as the generic job reads it (``lakeforge.transform``).

Daily flights and weather are cleaned (flights read the airports' time zones) and become
``features/flights``; the reference snapshots (planes, airports, airlines) are cleaned once per
delivered content; each day's label counts (``features/label_counts``) are published with it, so
a day's features read 28 small partitions of counts instead of 28 days of flights.

The cleaners and features stay in ``plugins/lakeforge/pipelines/nycflights/clean.py`` and ``plugins/lakeforge/pipelines/nycflights/features.py`` (scoring
reuses them); they import pyspark, so they are imported inside the functions here: a DAG file
that reads this declaration stays cheap.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from lakeforge.transform import Aggregate, Clean, Features, Reference, Transform

# Each reference table's key: a row without it, or with it twice, is quarantined.
REFERENCE_KEYS = {"planes": "tailnum", "airports": "faa", "airlines": "carrier"}


def cutoff_hours() -> float:
    """How long before departure a flight is scored: what its features may know (a setting)."""
    from lakeforge.settings import get_settings

    return get_settings().feature_cutoff_hours


def clean_flights(lines, airports):
    from lakeforge.pipelines.nycflights.clean import clean_flights

    return clean_flights(lines, airports)


def clean_weather(lines):
    from lakeforge.pipelines.nycflights.clean import clean_weather

    return clean_weather(lines)


def reference_schema(table: str):
    from lakeforge.pipelines.nycflights.schemas import REFERENCE_SCHEMAS

    return REFERENCE_SCHEMAS[table]


def clean_reference(table: str, spark, files: list[str], ds: str):
    """A snapshot CSV read with its explicit schema (quoted names contain commas: Spark's CSV
    reader, not a line split); a row it cannot parse keeps its raw line for the quarantine."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from lakeforge.pipelines.nycflights.clean import clean_reference

    schema = reference_schema(table)
    with_corrupt = T.StructType([*schema.fields, T.StructField("_corrupt", T.StringType())])
    rows = spark.read.csv(files, schema=with_corrupt, header=True, nullValue="NA", mode="PERMISSIVE",
                          columnNameOfCorruptRecord="_corrupt").withColumn("ds", F.lit(ds)).cache()
    return clean_reference(rows, REFERENCE_KEYS[table])


def cleaning_fingerprint(table: str) -> str:
    """What a clean reference snapshot depends on besides its raw content: the cleaning code
    (``lakeforge.pipelines.nycflights.clean``, whole), the table's schema and key. A change to any re-cleans it."""
    import hashlib
    import inspect

    from lakeforge.pipelines.nycflights import clean

    parts = [inspect.getsource(clean), reference_schema(table).json(), REFERENCE_KEYS[table]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def label_counts(flights):
    from lakeforge.pipelines.nycflights.features import label_counts

    return label_counts(flights, cutoff_hours())


def label_counts_params() -> dict[str, Any]:
    """The cutoff the counts were made for: counts of another cutoff are counted again."""
    return {"cutoff_s": int(round(cutoff_hours() * 3600))}


def history_days() -> dict[str, int]:
    """Days before a run's first day each input must cover (flights: previous legs and events
    before a cutoff, which follow the cutoff setting)."""
    from lakeforge.pipelines.nycflights.features import HISTORY_DAYS, WEATHER_HISTORY_DAYS, flight_days_before

    return {"flights": flight_days_before(cutoff_hours()), "weather": WEATHER_HISTORY_DAYS,
            "label_counts": HISTORY_DAYS}


def build_features(frames: dict[str, Any], dates: list[str]):
    from lakeforge.pipelines.nycflights.features import build_features

    return build_features(frames["flights"], frames["weather"], frames["planes"], frames["airports"], dates,
                          cutoff_hours=cutoff_hours(), counts=frames["label_counts"])


# lakeforge.pipelines.nycflights.features.HISTORY_DAYS, the longest window (checked by tests/test_transform_history.py)
HISTORY_DAYS = 29

TRANSFORM = Transform(
    source="nycflights",
    reference=tuple(Reference(table, partial(clean_reference, table), partial(reference_schema, table),
                              partial(cleaning_fingerprint, table)) for table in REFERENCE_KEYS),
    clean=(
        Clean("flights", clean_flights, reads=("airports",)),  # arrival times in the destination's zone
        Clean("weather", clean_weather),
    ),
    aggregates=(Aggregate("label_counts", of="flights", fn=label_counts, params=label_counts_params),),
    features=(
        Features("flights", build_features, inputs=("flights", "weather", "planes", "airports", "label_counts"),
                 history_days=HISTORY_DAYS, upstream="flights", input_days=history_days),
    ),
)
