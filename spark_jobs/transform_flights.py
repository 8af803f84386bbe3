"""Spark job: raw -> clean -> features for a set of dates, in ONE Spark application.

    spark-submit spark_jobs/transform_flights.py --dates 2013-01-01,2013-01-02
    spark-submit spark_jobs/transform_flights.py --start 2013-01-01 --end 2013-01-31 [--lake URI]

Reads the raw partitions named by their manifests, writes ``clean/flights``, ``clean/weather``,
``quarantine/flights``, ``quarantine/weather`` and ``features/flights``, each partition published
atomically with a manifest (row counts; clean + quarantined = raw rows, checked). Only the given
dates are replaced; a rerun produces identical rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date, timedelta
from typing import Any

from lakeforge.lake import Lake
from lakeforge.publish import list_partitions, partition_name, read_manifest
from lakeforge.reports import write_report
from lakeforge.spark_publish import new_run_staging, publish_written_partitions, staged_rows

log = logging.getLogger("lakeforge.transform_flights")

JOB, SOURCE_NAME = "transform_flights", "nycflights"
RAW_FLIGHTS, RAW_WEATHER = "raw/flights", "raw/weather"


def parse_dates(args: argparse.Namespace) -> list[str]:
    if args.dates:
        dates = sorted({d.strip() for d in args.dates.split(",") if d.strip()})
        for d in dates:
            date.fromisoformat(d)  # a clear error for a malformed date
        return dates
    if not (args.start and args.end):
        raise SystemExit("give --dates or both --start and --end")
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def raw_lines(spark, lake: Lake, table: str, dates: list[str]):
    """Text lines of the raw partitions of ``dates`` (exactly the files their manifests list),
    and the manifests themselves (row counts, header, ragged rows: the raw gate reads them)."""
    from pyspark.sql import functions as F

    paths, manifests = [], {}
    for ds in dates:
        manifest = read_manifest(lake, table, partition_name(ds))
        if manifest is None:
            raise SystemExit(f"no raw partition {table}/ds={ds}: ingest it first")
        paths += [lake.uri(table, partition_name(ds), f["name"]) for f in manifest["files"]]
        manifests[ds] = manifest
    # Header lines go by the headers actually delivered (a drifted header is the raw gate's
    # business; it must not turn into a "malformed row" and upset the row accounting).
    headers = sorted({",".join(m["columns"]) for m in manifests.values() if m.get("columns")})
    lines = spark.read.text(paths).where(~F.col("value").isin(*headers)).select(
        "value", F.regexp_extract(F.input_file_name(), r"ds=(\d{4}-\d{2}-\d{2})", 1).alias("ds")
    )
    return lines, manifests


def history_rows(lake: Lake, table: str, dates: list[str], days: int = 7) -> dict[str, int]:
    """Row counts of the ``days`` partitions before the run (the trailing average's history)."""
    first = date.fromisoformat(dates[0])
    rows = {}
    for i in range(1, days + 1):
        ds = (first - timedelta(days=i)).isoformat()
        manifest = read_manifest(lake, table, partition_name(ds))
        if manifest is not None:
            rows[ds] = manifest.get("rows", 0)
    return rows


REFERENCE_KEYS = {"planes": "tailnum", "airports": "faa", "airlines": "carrier"}


def clean_snapshot(spark, lake: Lake, table: str, as_of: str, schema, meta: dict[str, Any]):
    """Clean the newest reference snapshot on or before ``as_of`` into ``clean/<table>`` (its
    malformed rows into ``quarantine/<table>``) and return the clean rows."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from spark_jobs.clean import clean_reference

    candidates = [p for p in list_partitions(lake, f"raw/{table}") if p <= partition_name(as_of)]
    if not candidates:
        raise SystemExit(f"no raw/{table} snapshot on or before {as_of}")
    snapshot = candidates[-1]
    ds = snapshot.split("=", 1)[1]
    manifest = read_manifest(lake, f"raw/{table}", snapshot)
    paths = [lake.uri("raw", table, snapshot, f["name"]) for f in manifest["files"]]
    with_corrupt = T.StructType([*schema.fields, T.StructField("_corrupt", T.StringType())])
    rows = spark.read.csv(paths, schema=with_corrupt, header=True, nullValue="NA", mode="PERMISSIVE",
                          columnNameOfCorruptRecord="_corrupt").withColumn("ds", F.lit(ds)).cache()
    good, bad = clean_reference(rows, REFERENCE_KEYS[table])
    good = good.cache()
    n_good = publish(good, lake, f"clean/{table}", [ds], meta)[ds]
    n_bad = publish(bad, lake, f"quarantine/{table}", [ds], meta)[ds]
    check_accounting(table, {ds: manifest["rows"]}, {ds: n_good}, {ds: n_bad})
    rows.unpersist()
    return good


def write_partitioned(df, lake: Lake, table: str) -> str:
    """One Spark write of all dates into a run staging folder, one file per ds.

    The repartition by ds costs a shuffle but measured faster than writing straight from the
    input tasks (which each hold ~20 days and must sort them for the partitioned writer):
    full year at 20x, local[2], 137 s with it vs 150 s without (one run each, bench/transform_bench).
    """
    staging = new_run_staging(lake, table)
    df.repartition("ds").write.mode("overwrite").partitionBy("ds").parquet(lake.uri(staging))
    return staging


def arrow_schema(df):
    """The Arrow schema of a DataFrame's data columns (``ds`` lives in the path)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.drop("ds").schema, timezone="UTC")


def publish(df, lake: Lake, table: str, dates: list[str], meta: dict[str, Any]) -> dict[str, int]:
    """Stage and publish at once (reference snapshots: no gate of their own)."""
    staging = write_partitioned(df, lake, table)
    manifests = publish_written_partitions(lake, table, staging, dates, arrow_schema(df), meta=meta)
    return {ds: m["rows"] for ds, m in manifests.items()}


def check_accounting(table: str, raw: dict[str, int], good: dict[str, int], bad: dict[str, int]) -> None:
    """Every raw row is either clean or quarantined: nothing is lost or invented."""
    wrong = {ds: (raw[ds], good[ds], bad[ds]) for ds in raw if raw[ds] != good[ds] + bad[ds]}
    if wrong:
        raise RuntimeError(f"{table}: raw != clean + quarantined for {wrong}")


def quarantine_ratios(raw: dict[str, int], bad: dict[str, int]) -> dict[str, float | None]:
    return {ds: (bad[ds] / raw[ds] if raw[ds] else None) for ds in raw}


def run(spark, lake: Lake, dates: list[str], run_id: str | None = None) -> dict[str, Any]:
    """Write, audit, publish: every output is staged, the quality gate audits the staged
    partitions, and only the dates that pass every critical check are published (all their
    tables); the others keep their previous version. Blocked dates are listed in the result's
    ``quality.blocked`` (``main`` then exits non-zero)."""
    from lakeforge.quality.wap import QualityGate
    from spark_jobs.clean import clean_flights, clean_weather
    from spark_jobs.features import build_features
    from spark_jobs.schemas import AIRLINES, AIRPORTS, PLANES

    timings: dict[str, float] = {}
    meta = {"job": "transform_flights", "dag_run_id": run_id}
    gate = QualityGate(lake, SOURCE_NAME, run_id)
    t = time.perf_counter()
    airports = clean_snapshot(spark, lake, "airports", dates[-1], AIRPORTS, meta)
    planes = clean_snapshot(spark, lake, "planes", dates[-1], PLANES, meta)
    clean_snapshot(spark, lake, "airlines", dates[-1], AIRLINES, meta)
    flight_lines, flight_manifests = raw_lines(spark, lake, RAW_FLIGHTS, dates)
    weather_lines, weather_manifests = raw_lines(spark, lake, RAW_WEATHER, dates)
    raw = {
        "flights": {ds: m["rows"] for ds, m in flight_manifests.items()},
        "weather": {ds: m["rows"] for ds, m in weather_manifests.items()},
    }
    # Parsed rows are cached: clean and quarantine outputs come from one parse of the text, and
    # the clean frames feed the features without a re-read.
    flights, flights_bad = clean_flights(flight_lines, airports, persist=True)
    weather, weather_bad = clean_weather(weather_lines, persist=True)
    staged = {
        "clean/flights": flights, "quarantine/flights": flights_bad,
        "clean/weather": weather, "quarantine/weather": weather_bad,
    }
    staging = {table: write_partitioned(df, lake, table) for table, df in staged.items()}
    rows = {table: staged_rows(lake, staging[table], dates) for table in staged}
    for name in ("flights", "weather"):
        check_accounting(name, raw[name], rows[f"clean/{name}"], rows[f"quarantine/{name}"])
    timings["clean_s"] = time.perf_counter() - t

    # Features for every date; a date the gate blocks gets none of its tables published.
    t = time.perf_counter()
    features = build_features(flights, weather, planes, airports)
    staged["features/flights"] = features
    staging["features/flights"] = write_partitioned(features, lake, "features/flights")
    timings["features_s"] = time.perf_counter() - t

    # Audit: raw from the manifests, the staged tables in one concurrent profiling round, then
    # one Great Expectations validation for all of them.
    t = time.perf_counter()
    gate.audit_manifests(RAW_FLIGHTS, flight_manifests, history_rows(lake, RAW_FLIGHTS, dates))
    gate.audit_manifests(RAW_WEATHER, weather_manifests, history_rows(lake, RAW_WEATHER, dates))
    gate.audit_staged(spark, [
        *((f"clean/{name}", staging[f"clean/{name}"], dates,
           {"quarantine_ratio": quarantine_ratios(raw[name], rows[f"quarantine/{name}"])})
          for name in ("flights", "weather")),
        ("features/flights", staging["features/flights"], dates, None),
    ])
    # A day blocked upstream has no features to speak of: its features verdict is not recorded.
    gate.discard_downstream("features/flights", upstream=(RAW_FLIGHTS, RAW_WEATHER, "clean/flights", "clean/weather"))
    publishable = gate.passing(dates)
    gate.write_evidence()
    timings["quality_s"] = time.perf_counter() - t

    t = time.perf_counter()
    counts: dict[str, dict[str, int]] = {"raw_flights": raw["flights"], "raw_weather": raw["weather"]}
    for table, df in staged.items():
        manifests = publish_written_partitions(
            lake, table, staging[table], publishable, arrow_schema(df), meta=meta,
            partition_meta=gate.partition_meta(table),
        )
        counts[table.replace("/", "_")] = {ds: m["rows"] for ds, m in manifests.items()}
    timings["publish_s"] = time.perf_counter() - t
    spark.catalog.clearCache()
    totals = {name: sum(per_ds.values()) for name, per_ds in counts.items()}
    return {
        "dates": [dates[0], dates[-1]], "days": len(dates), "published_days": len(publishable),
        "published": publishable,
        "rows": totals, "timings": timings, "quality": gate.summary(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", help="comma-separated YYYY-MM-DD (e.g. the new raw partitions)")
    parser.add_argument("--start", help="first date of a range (inclusive)")
    parser.add_argument("--end", help="last date of a range (inclusive)")
    parser.add_argument("--lake", help="lake root URI (default: LAKEFORGE_LAKE_ROOT)")
    parser.add_argument("--run-id", help="Airflow run id, recorded in the manifests")
    args = parser.parse_args(argv)
    dates = parse_dates(args)

    from lakeforge.quality import gate
    from lakeforge.quality.wap import QualityGateFailed
    from lakeforge.spark import session

    gate.preload()  # Great Expectations imports while the JVM starts
    started = time.perf_counter()
    spark = session("transform_flights")
    startup = time.perf_counter() - started
    try:
        result = run(spark, Lake(args.lake), dates, args.run_id)
    finally:
        spark.stop()
    result["timings"]["spark_startup_s"] = startup
    result["timings"]["total_s"] = time.perf_counter() - started
    result["run_id"] = args.run_id
    write_report(Lake(args.lake), JOB, result)
    print("LAKEFORGE_RESULT " + json.dumps(result), flush=True)
    if result["quality"]["blocked"]:
        # Non-zero exit: the Airflow task fails (without retries: see GatedSparkSubmitOperator).
        print(QualityGateFailed.from_summary(result["quality"]), file=sys.stderr, flush=True)
        raise SystemExit(3)
    return result


if __name__ == "__main__":
    main()
