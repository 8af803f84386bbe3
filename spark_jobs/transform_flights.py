"""Spark job: raw -> clean -> features for a set of dates, in ONE Spark application.

    spark-submit spark_jobs/transform_flights.py --dates 2013-01-01,2013-01-02
    spark-submit spark_jobs/transform_flights.py --start 2013-01-01 --end 2013-01-31 [--lake URI]

Reads the raw partitions named by their manifests, writes ``clean/flights``, ``clean/weather``,
``quarantine/flights``, ``quarantine/weather`` and ``features/flights``, each partition published
atomically with a manifest (row counts; clean + quarantined = raw rows, checked). Only the given
dates are replaced; a rerun produces identical rows.

One run per table at a time: a run holds the writer lease of every table it writes
(``written_tables``, ``lakeforge.publish.writing``) from before it stages anything until it has
published. A second run (a manual one beside the scheduled one, another Airflow deployment)
exits at once, before Spark starts, with "table X is being written by run Y since T", and
touches nothing of the first; the leases of a run that died are taken over by the next.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import list_partitions, partition_name, read_manifest, writing
from lakeforge.settings import get_settings
from lakeforge.quality.profile import parquet_footer_stats
from lakeforge.spark import size_file_splits
from lakeforge.spark_publish import new_run_staging, published_files, read_published
from lakeforge.transform import steps
# The generic steps (``lakeforge.transform.steps``), shared with the generic job ``spark_jobs/transform.py``.
from lakeforge.transform.steps import (arrow_schema, check_accounting, depends_on, driver_jit,  # noqa: F401
                                       history_days, history_rows, input_bytes, parse_dates, publish,
                                       publish_staged, published_days, quarantine_ratios, raw_lines,
                                       read_staged, run_result, with_rebuilt, write_partitioned)

log = logging.getLogger("lakeforge.transform_flights")

JOB, SOURCE_NAME = "transform_flights", "nycflights"
RAW_FLIGHTS, RAW_WEATHER = "raw/flights", "raw/weather"
# The tables the quality gate audits, in the order ``run`` audits them (one GE validation).
AUDITED_TABLES = (RAW_FLIGHTS, RAW_WEATHER, "clean/flights", "clean/weather", "features/flights")
# A day's label counts per history key (``spark_jobs.features.label_counts``), published with the
# day: what later days' history features read of it. Derived from the day's clean flights, which
# the gate audits; the cutoff they were counted for is in their manifests.
LABEL_COUNTS = "features/label_counts"


def raw_inputs(lake: Lake, dates: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The manifests of every raw partition the run reads, by table and date."""
    return steps.raw_inputs(lake, (RAW_FLIGHTS, RAW_WEATHER), dates)


def history_label_counts(spark, lake: Lake, days: list[str], cutoff_s: int, like):
    """The published ``label_counts`` of ``days``; a day published without them, counted for
    another cutoff, or whose clean flights were republished since (a lake from before they
    existed, a changed setting, a crash between the two publishes) is counted again from its
    published clean flights (``like``: their frame)."""
    from spark_jobs.features import LABEL_COUNTS_SCHEMA, label_counts

    clean = {ds: read_manifest(lake, "clean/flights", partition_name(ds)) for ds in days}
    clean = {ds: m for ds, m in clean.items() if m is not None}  # never published (or blocked): no history
    stored = published_files(lake, LABEL_COUNTS, clean, accept=lambda ds, counts: (
        counts.get("cutoff_s") == cutoff_s and counts.get("clean_sha256") == clean[ds]["content_sha256"]))
    recount = [ds for ds in clean if ds not in stored]
    empty = spark.createDataFrame([], LABEL_COUNTS_SCHEMA)
    counts = read_published(spark, stored, empty.drop("ds").schema).select(*empty.columns) if stored else empty
    if recount:
        flights = published_days(spark, lake, "clean/flights", like, recount)
        counts = counts.unionByName(label_counts(flights, cutoff_s / 3600))
    return counts


REFERENCE_KEYS = {"planes": "tailnum", "airports": "faa", "airlines": "carrier"}


def cleaning_fingerprint(table: str, schema) -> str:
    """What a clean reference snapshot depends on besides its raw content: the cleaning code
    (``spark_jobs.clean``, whole), the table's schema and key. A change to any re-cleans it."""
    import hashlib
    import inspect

    from spark_jobs import clean

    parts = [inspect.getsource(clean), schema.json(), REFERENCE_KEYS[table]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cleaned_snapshot(lake: Lake, table: str, snapshot: str, raw: dict[str, Any], cleaned_by: str):
    """The published clean manifest of ``snapshot`` if a run already cleaned exactly this raw
    content with this code (clean + quarantined = raw rows), else None."""
    clean = read_manifest(lake, f"clean/{table}", snapshot)
    bad = read_manifest(lake, f"quarantine/{table}", snapshot)
    if clean is None or bad is None:
        return None
    same = all(m.get("source_sha256") == raw["content_sha256"] and m.get("cleaned_by") == cleaned_by
               for m in (clean, bad))
    return clean if same and clean["rows"] + bad["rows"] == raw["rows"] else None


def clean_snapshot(spark, lake: Lake, table: str, schema, meta: dict[str, Any], as_of: str):
    """Clean the newest reference snapshot on or before ``as_of`` into ``clean/<table>`` (its
    malformed rows into ``quarantine/<table>``) and return (the clean rows, what was done).

    A snapshot is delivered once and then serves every daily run: when its clean version was
    published from the same raw content by the same code, it is read back instead of cleaned
    and published again (a daily run paid ~5 s for the three tables)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from spark_jobs.clean import clean_reference

    candidates = [p for p in list_partitions(lake, f"raw/{table}") if p <= partition_name(as_of)]
    if not candidates:
        raise SystemExit(f"no raw/{table} snapshot on or before {as_of}")
    snapshot = candidates[-1]
    ds = snapshot.split("=", 1)[1]
    manifest = read_manifest(lake, f"raw/{table}", snapshot)
    cleaned_by = cleaning_fingerprint(table, schema)
    published = cleaned_snapshot(lake, table, snapshot, manifest, cleaned_by)
    if published is not None:
        files = [lake.uri("clean", table, snapshot, f["name"]) for f in published["files"]]
        good = spark.read.schema(schema).parquet(*files).withColumn("ds", F.lit(ds))
        return good, {"ds": ds, "rows": published["rows"], "reused": True}
    paths = [lake.uri("raw", table, snapshot, f["name"]) for f in manifest["files"]]
    with_corrupt = T.StructType([*schema.fields, T.StructField("_corrupt", T.StringType())])
    rows = spark.read.csv(paths, schema=with_corrupt, header=True, nullValue="NA", mode="PERMISSIVE",
                          columnNameOfCorruptRecord="_corrupt").withColumn("ds", F.lit(ds)).cache()
    good, bad = clean_reference(rows, REFERENCE_KEYS[table])
    good = good.cache()
    # The quarantine is published last: a run killed in between leaves no match, and re-cleans.
    meta = {**meta, "source_sha256": manifest["content_sha256"], "cleaned_by": cleaned_by}
    n_good = publish(good, lake, f"clean/{table}", [ds], meta)[ds]
    n_bad = publish(bad, lake, f"quarantine/{table}", [ds], meta)[ds]
    check_accounting(table, {ds: manifest["rows"]}, {ds: n_good}, {ds: n_bad})
    rows.unpersist()
    return good, {"ds": ds, "rows": n_good, "reused": False}


def written_tables() -> list[str]:
    """Every table a run writes: its leases are held for the whole run (the quality summary, which
    the scoring job writes too, only while it is updated: ``evidence.update_summary``)."""
    from lakeforge.quality.evidence import QUALITY

    outputs = [f"{layer}/{name}" for layer in ("clean", "quarantine") for name in ("flights", "weather", *REFERENCE_KEYS)]
    return [*outputs, "features/flights", LABEL_COUNTS, *(f"{QUALITY}/{table}" for table in AUDITED_TABLES)]


def run(spark, lake: Lake, dates: list[str], run_id: str | None = None,
        inputs: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """``_run`` holding the writer leases of ``written_tables()`` (``LeaseHeld`` at once if another
    run writes one of them; ``main`` takes them before Spark starts)."""
    with writing(lake, written_tables(), run_id):
        return _run(spark, lake, dates, run_id, inputs)


def _run(spark, lake: Lake, dates: list[str], run_id: str | None = None,
         inputs: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Write, audit, publish: every output is staged, the quality gate audits the staged
    partitions, and only the dates that pass every critical check are published (all their
    tables); the others keep their previous version. Blocked dates are listed in the result's
    ``quality.blocked`` (``main`` then exits non-zero). ``inputs``: the raw manifests
    (``raw_inputs``), when the caller has read them."""
    from lakeforge.quality.wap import QualityGate
    from spark_jobs.clean import clean_flights, clean_weather
    from spark_jobs.features import (HISTORY_DAYS, WEATHER_HISTORY_DAYS, build_features, flight_days_before,
                                     label_counts)
    from spark_jobs.schemas import QUARANTINE, REFERENCE_SCHEMAS

    timings: dict[str, float] = {}
    meta = {"job": "transform_flights", "dag_run_id": run_id}
    gate = QualityGate(lake, SOURCE_NAME, run_id)
    t = time.perf_counter()
    # The three reference snapshots are tiny: their Spark jobs run side by side (each alone
    # leaves a core idle, and a run paid ~9 s for them one after another).
    with ThreadPoolExecutor(max_workers=len(REFERENCE_KEYS)) as pool:
        snapshots = dict(zip(REFERENCE_KEYS, pool.map(
            lambda table: clean_snapshot(spark, lake, table, REFERENCE_SCHEMAS[table], meta=meta, as_of=dates[-1]),
            REFERENCE_KEYS,
        )))
    airports, planes = snapshots["airports"][0], snapshots["planes"][0]
    timings["reference_s"] = time.perf_counter() - t  # part of clean_s
    inputs = inputs or raw_inputs(lake, dates)  # ``main`` read them already, to size the JVM
    flight_manifests, weather_manifests = inputs[RAW_FLIGHTS], inputs[RAW_WEATHER]
    raw = {
        "flights": {ds: m["rows"] for ds, m in flight_manifests.items()},
        "weather": {ds: m["rows"] for ds, m in weather_manifests.items()},
    }
    size_file_splits(spark, [f["bytes"] for m in flight_manifests.values() for f in m["files"]])
    # Flights: one pass over the text writes the clean rows. The quarantine needs a second parse
    # only for the days that lost rows (clean < raw), usually none: parsing once and caching a
    # year of parsed rows cost more than the whole clean write.
    flights, _ = clean_flights(raw_lines(spark, lake, RAW_FLIGHTS, flight_manifests), airports)
    staging = {"clean/flights": write_partitioned(flights, lake, "clean/flights")}
    # Each staged table's Parquet footers are read once (a round trip per file on HDFS): they
    # give the row accounting, the gate's footer statistics and the published manifests' rows.
    footers: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, int]] = {}

    def read_footers(table: str) -> None:
        footers[table] = parquet_footer_stats(lake, staging[table], dates)
        rows[table] = {ds: stats.rows for ds, stats in footers[table].items()}

    read_footers("clean/flights")
    short = {ds: m for ds, m in flight_manifests.items() if rows["clean/flights"][ds] != raw["flights"][ds]}
    flights_bad = (clean_flights(raw_lines(spark, lake, RAW_FLIGHTS, short), airports)[1] if short
                   else spark.createDataFrame([], QUARANTINE))
    # Weather is small (24 rows per origin and day): parsed once, cached for both outputs and features.
    weather, weather_bad = clean_weather(raw_lines(spark, lake, RAW_WEATHER, weather_manifests), persist=True)
    staged = {
        "clean/flights": flights, "quarantine/flights": flights_bad,
        "clean/weather": weather, "quarantine/weather": weather_bad,
    }
    for table in ("quarantine/flights", "clean/weather", "quarantine/weather"):
        nothing = table == "quarantine/flights" and not short  # an empty staging folder: days publish empty
        staging[table] = new_run_staging(lake, table) if nothing else write_partitioned(staged[table], lake, table)
        read_footers(table)
    for name in ("flights", "weather"):
        check_accounting(name, raw[name], rows[f"clean/{name}"], rows[f"quarantine/{name}"])
    timings["clean_s"] = time.perf_counter() - t

    # Features for every date from the staged clean flights (a columnar read, not a re-parse) and
    # the published days before them that the history features read (never a blocked day: it was
    # not published); a date the gate blocks gets none of its tables published.
    t = time.perf_counter()
    size_file_splits(spark, [f.size for f in lake.files(staging["clean/flights"])])
    cutoff_hours = get_settings().feature_cutoff_hours
    cutoff_s = int(round(cutoff_hours * 3600))
    run_flights = read_staged(spark, lake, staging["clean/flights"], flights)
    # one file per day: a few thousand rows each
    counted = time.perf_counter()
    staged[LABEL_COUNTS] = label_counts(run_flights, cutoff_hours).repartition("ds")
    staging[LABEL_COUNTS] = write_partitioned(staged[LABEL_COUNTS], lake, LABEL_COUNTS)
    read_footers(LABEL_COUNTS)
    timings["label_counts_s"] = time.perf_counter() - counted  # part of features_s
    history_counts = read_staged(spark, lake, staging[LABEL_COUNTS], staged[LABEL_COUNTS]).unionByName(
        history_label_counts(spark, lake, history_days(dates, HISTORY_DAYS), cutoff_s, flights))
    flights_seen = run_flights.unionByName(
        published_days(spark, lake, "clean/flights", flights, history_days(dates, flight_days_before(cutoff_hours))))
    weather_seen = weather.unionByName(
        published_days(spark, lake, "clean/weather", weather, history_days(dates, WEATHER_HISTORY_DAYS)))
    features = build_features(flights_seen, weather_seen, planes, airports, dates, cutoff_hours=cutoff_hours,
                              counts=history_counts)
    staged["features/flights"] = features
    staging["features/flights"] = write_partitioned(features, lake, "features/flights")
    read_footers("features/flights")
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
        ("features/flights", staging["features/flights"], dates, {"upstream_rows": rows["clean/flights"]}),
    ], footers=footers)
    # A day blocked upstream has no features to speak of: its features verdict is not recorded.
    gate.discard_downstream("features/flights", upstream=(RAW_FLIGHTS, RAW_WEATHER, "clean/flights", "clean/weather"))
    publishable = gate.passing(dates)
    gate.write_evidence()
    # A passing date whose features read a date of this run that the gate blocked is held back and
    # built again once the others are published: its history then skips the blocked day.
    rebuild = depends_on(publishable, set(dates) - set(publishable), HISTORY_DAYS)
    publishable = [ds for ds in publishable if ds not in rebuild]
    timings["quality_s"] = time.perf_counter() - t

    t = time.perf_counter()
    def partition_meta(table: str, published: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        if table == LABEL_COUNTS:  # what they were counted from: a day republished since is counted again
            return {ds: {"cutoff_s": cutoff_s, "clean_sha256": published["clean/flights"][ds]["content_sha256"]}
                    for ds in publishable}
        return gate.partition_meta(table)

    # clean/flights before the label counts derived from it
    published = publish_staged(lake, staged, staging, footers, publishable, meta, inputs, partition_meta)
    timings["publish_s"] = time.perf_counter() - t
    spark.catalog.clearCache()
    result = {**run_result(dates, publishable, {"flights": raw["flights"], "weather": raw["weather"]},
                           published, timings, gate.summary()),
              "reference": {table: info for table, (_, info) in snapshots.items()}}
    if rebuild:
        log.warning("rebuilding %s without the blocked days in their history", ",".join(rebuild))
        return with_rebuilt(result, rebuild, _run(spark, lake, rebuild, run_id,
                                                  {table: {ds: m[ds] for ds in rebuild} for table, m in inputs.items()}))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", help="comma-separated YYYY-MM-DD or FIRST..LAST ranges (e.g. the new raw partitions)")
    parser.add_argument("--start", help="first date of a range (inclusive)")
    parser.add_argument("--end", help="last date of a range (inclusive)")
    parser.add_argument("--lake", help="the source's lake URI (default: LAKEFORGE_LAKE_ROOT/nycflights)")
    parser.add_argument("--run-id", help="Airflow run id, recorded in the manifests")
    args = parser.parse_args(argv)
    dates = parse_dates(args)

    from lakeforge.quality.spec import load_suite
    from lakeforge.transform.job import execute

    lake = Lake(args.lake) if args.lake else source_lake(SOURCE_NAME)
    # Leases before Spark, Great Expectations preloaded, report, result line, exit 3 when blocked.
    return execute(
        lake, JOB, JOB, written_tables(),
        suites=lambda: [load_suite(SOURCE_NAME, table) for table in AUDITED_TABLES],
        inputs=lambda: raw_inputs(lake, dates),
        run=lambda spark, inputs: run(spark, lake, dates, args.run_id, inputs),
        run_id=args.run_id,
    )


if __name__ == "__main__":
    main()
