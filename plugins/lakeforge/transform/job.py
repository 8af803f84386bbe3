"""The generic transform job: raw -> clean (+ quarantine) -> features for any pipeline, in one
Spark application, driven by the pipeline's ``TRANSFORM`` declaration (``lakeforge.transform``).

    spark-submit spark_jobs/transform.py --pipeline seattle_weather --dates 2012-01-01,2012-02-01
    spark-submit spark_jobs/transform.py --pipeline seattle_weather --start 2012-01-01 --end 2012-06-30 [--lake URI]

Write, audit, publish: every output is staged (``lakeforge.spark_publish``), the row accounting is
checked per partition (clean + quarantined = raw rows), the quality gate audits the raw manifests
and the staged tables with the pipeline's suites, and only the partitions that pass every critical
check are published, all their tables, each with a manifest recording the raw content it was built
from; the others keep their previous version. The run holds the writer lease of every table it
writes (``lakeforge.publish.writing``): a second run of the same pipeline exits at once. Its report
goes to ``<source>/_reports/transform/`` and its last stdout line is ``LAKEFORGE_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Callable

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import writing
from lakeforge.transform import QUARANTINE_COLUMNS, Transform, load_transform
from lakeforge.spark_publish import new_run_staging
from lakeforge.transform.steps import (check_accounting, clean_snapshot, depends_on, driver_jit, history_days,
                                       history_rows, input_bytes, input_partitions, publish_staged, published_aggregate,
                                       published_days, quarantine_ratios, raw_inputs, raw_lines, read_staged,
                                       run_result, with_rebuilt, write_partitioned)

log = logging.getLogger("lakeforge.transform")

JOB = "transform"  # its run reports: <source>/_reports/transform/


def run(spark, lake: Lake, spec: Transform, dates: list[str], run_id: str | None = None,
        inputs: dict[str, dict[str, dict[str, Any]]] | None = None, job: str = JOB) -> dict[str, Any]:
    """``_run`` holding the writer leases of ``spec.written_tables()`` (``LeaseHeld`` at once if
    another run writes one of them; ``main`` takes them before Spark starts)."""
    with writing(lake, spec.written_tables(), run_id):
        return _run(spark, lake, spec, dates, run_id, inputs, job)


def _run(spark, lake: Lake, spec: Transform, dates: list[str], run_id: str | None = None,
         inputs: dict[str, dict[str, dict[str, Any]]] | None = None, job: str = JOB) -> dict[str, Any]:
    """Stage, check, audit, publish ``dates``. Blocked partitions are listed in the result's
    ``quality.blocked`` (``main`` then exits non-zero). ``inputs``: the raw manifests
    (``raw_inputs``), when the caller has read them. ``job``: recorded in the manifests."""
    from pyspark.sql import functions as F

    from lakeforge.quality.profile import parquet_footer_stats
    from lakeforge.quality.wap import QualityGate
    from lakeforge.spark import size_file_splits

    dates = sorted(dates)
    timings: dict[str, float] = {}
    meta = {"job": job, "pipeline": spec.source, "dag_run_id": run_id}
    gate = QualityGate(lake, spec.source, run_id)
    inputs = inputs or raw_inputs(lake, spec.raw_tables, dates)
    staged: dict[str, Any] = {}  # table -> the frame staged (its schema is the table's)
    staging: dict[str, str] = {}  # table -> its run staging folder
    footers: dict[str, dict[str, Any]] = {}  # table -> ds -> Parquet footer statistics
    rows: dict[str, dict[str, int]] = {}  # table -> ds -> rows staged

    def stage(table: str, df, empty: bool = False) -> None:
        """``empty``: nothing to write, an empty staging folder (every partition publishes empty)."""
        staged[table] = df
        staging[table] = new_run_staging(lake, table) if empty else write_partitioned(df, lake, table)
        # The footers give the accounting, the gate's statistics and the manifests' row counts.
        footers[table] = parquet_footer_stats(lake, staging[table], dates)
        rows[table] = {ds: stats.rows for ds, stats in footers[table].items()}

    t = time.perf_counter()
    # The reference snapshots are tiny: their Spark jobs run side by side (each alone leaves a core idle).
    with ThreadPoolExecutor(max_workers=max(len(spec.reference), 1)) as pool:
        snapshots = dict(zip((r.table for r in spec.reference), pool.map(
            lambda ref: clean_snapshot(spark, lake, ref, meta, as_of=dates[-1]), spec.reference)))
    references = {table: good for table, (good, _) in snapshots.items()}
    if spec.reference:
        timings["reference_s"] = time.perf_counter() - t  # part of clean_s
    raw_rows: dict[str, dict[str, int]] = {}
    for clean in spec.clean:
        manifests = inputs[f"raw/{clean.raw}"]
        size_file_splits(spark, [f["bytes"] for m in manifests.values() for f in m["files"]])
        reads = {name: references[name] for name in clean.reads}
        good, bad = clean.fn(raw_lines(spark, lake, f"raw/{clean.raw}", manifests), **reads)
        if tuple(bad.columns) != QUARANTINE_COLUMNS:
            raise ValueError(f"{spec.source}: the clean function of {clean.raw} returned quarantine columns "
                             f"{bad.columns}, expected {list(QUARANTINE_COLUMNS)}")
        stage(f"clean/{clean.name}", good)
        raw_rows[clean.name] = {ds: m["rows"] for ds, m in manifests.items()}
        # One pass over the text stages the clean rows; the quarantine is parsed again only for the
        # partitions that lost rows (clean < raw), usually none: parsing once and caching a year of
        # parsed nycflights rows cost more than its whole clean write.
        short = {ds: m for ds, m in manifests.items() if rows[f"clean/{clean.name}"][ds] != raw_rows[clean.name][ds]}
        if short:
            bad = clean.fn(raw_lines(spark, lake, f"raw/{clean.raw}", short), **reads)[1]
        stage(f"quarantine/{clean.name}", bad, empty=not short)
        check_accounting(clean.name, raw_rows[clean.name], rows[f"clean/{clean.name}"],
                         rows[f"quarantine/{clean.name}"])
    timings["clean_s"] = time.perf_counter() - t

    # Features from the staged clean rows (a columnar read, not a re-parse) and the published
    # partitions before them that they read as history (never a blocked one: it was not published).
    t = time.perf_counter()
    size_file_splits(spark, [f.size for c in spec.clean for f in lake.files(staging[f"clean/{c.name}"])])
    # Aggregates first: the features read this run's from staging, the earlier days' published.
    params = {a.table: a.params() for a in spec.aggregates}
    for agg in spec.aggregates:
        clean = f"clean/{agg.of}"
        # one file per partition: aggregates are small
        stage(f"features/{agg.table}", agg.fn(read_staged(spark, lake, staging[clean], staged[clean])).repartition("ds"))
    if spec.aggregates:
        timings["aggregates_s"] = time.perf_counter() - t  # part of features_s
    tables = {**{c.name: f"clean/{c.name}" for c in spec.clean}, **{a.table: f"features/{a.table}" for a in spec.aggregates}}
    aggregates = {a.table: a for a in spec.aggregates}
    for features in spec.features:
        frames = {}
        for name in features.inputs:
            if name in references:  # a snapshot: no history
                frames[name] = references[name]
                continue
            table = tables[name]
            frame = read_staged(spark, lake, staging[table], staged[table])
            days = history_days(dates, features.days(name)) if features.days(name) else []
            if days and name in aggregates:
                agg, clean = aggregates[name], f"clean/{aggregates[name].of}"
                frame = frame.unionByName(published_aggregate(spark, lake, table, clean, days, frame, staged[clean],
                                                              agg.fn, params[name]))
            elif days:
                frame = frame.unionByName(published_days(spark, lake, table, staged[table], days))
            frames[name] = frame
        built = features.fn(frames, list(dates))
        stage(f"features/{features.table}", built.where(F.col("ds").isin(*dates)))
    timings["features_s"] = time.perf_counter() - t

    # Audit: raw from the manifests, the staged tables in one concurrent profiling round, then one
    # Great Expectations validation for all of them.
    t = time.perf_counter()
    lookback = 35 if spec.every == "day" else 7 * 31
    for table in spec.raw_tables:
        gate.audit_manifests(table, inputs[table], history_rows(lake, table, dates, lookback=lookback))
    gate.audit_staged(spark, [
        *((f"clean/{c.name}", staging[f"clean/{c.name}"], dates,
           {"quarantine_ratio": quarantine_ratios(raw_rows[c.name], rows[f"quarantine/{c.name}"])})
          for c in spec.clean),
        *((f"features/{f.table}", staging[f"features/{f.table}"], dates,
           {"upstream_rows": rows[f"clean/{f.upstream}"]} if f.upstream else None)
          for f in spec.features),
    ], footers=footers)
    # A partition blocked upstream has no features to speak of: its features verdict is not recorded.
    for table in spec.feature_tables:
        gate.discard_downstream(table, upstream=(*spec.raw_tables, *spec.clean_tables))
    publishable = gate.passing(dates)
    gate.write_evidence()
    # A passing date whose features read a date of this run that the gate blocked is held back and
    # built again once the others are published: its history then skips the blocked one.
    rebuild = depends_on(publishable, set(dates) - set(publishable), spec.history_days) if spec.history_days else []
    publishable = [ds for ds in publishable if ds not in rebuild]
    timings["quality_s"] = time.perf_counter() - t

    def partition_meta(table: str, published: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        agg = aggregates.get(table.removeprefix("features/")) if table in spec.aggregate_tables else None
        if agg is None:
            return gate.partition_meta(table)
        # what it was derived from: a partition whose clean rows are republished is derived again
        return {ds: {**params[agg.table], "clean_sha256": published[f"clean/{agg.of}"][ds]["content_sha256"]}
                for ds in publishable}

    t = time.perf_counter()
    # clean and quarantine first, then the aggregates derived from them, features last
    published = publish_staged(lake, staged, staging, footers, publishable, meta, inputs, partition_meta)
    timings["publish_s"] = time.perf_counter() - t
    spark.catalog.clearCache()
    result = {"pipeline": spec.source,
              **run_result(dates, publishable, raw_rows, published, timings, gate.summary())}
    if spec.reference:
        result["reference"] = {table: info for table, (_, info) in snapshots.items()}
    if rebuild:
        log.warning("rebuilding %s without the blocked partitions in their history", ",".join(rebuild))
        return with_rebuilt(result, rebuild, _run(spark, lake, spec, rebuild, run_id, {
            table: {ds: m[ds] for ds in rebuild} for table, m in inputs.items()}, job))
    return result


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Transform, list[str]]:
    from lakeforge.dates import add_date_arguments, dates_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="the pipeline folder's name (lakeforge.pipelines.<name>)")
    add_date_arguments(parser, "partition dates")
    parser.add_argument("--lake", help="the source's lake URI (default: LAKEFORGE_LAKE_ROOT/<pipeline>)")
    parser.add_argument("--run-id", help="Airflow run id, recorded in the manifests")
    args = parser.parse_args(argv)
    spec = load_transform(args.pipeline)
    return args, spec, dates_of(args, spec.every)


def execute(lake: Lake, job: str, app_name: str, tables: list[str], *, suites: Callable[[], list],
            inputs: Callable[[], dict[str, dict[str, dict[str, Any]]]], run: Callable[..., dict[str, Any]],
            run_id: str | None = None) -> dict[str, Any]:
    """What every transform job's ``main`` does around its run: the writer leases of ``tables``
    before Spark starts (another run writing one: exit at once, naming it), Great Expectations
    imported and ``suites()``' validation built while the JVM starts, the JVM sized by the raw
    ``inputs()``, then ``run(spark, inputs)``; the run report (``<lake>/_reports/<job>/``), the
    ``LAKEFORGE_RESULT`` line, and exit status 3 when the quality gate blocked a partition."""
    from lakeforge.lease import LeaseHeld
    from lakeforge.quality import gate
    from lakeforge.quality.wap import QualityGateFailed
    from lakeforge.reports import write_report
    from lakeforge.spark import session

    with ExitStack() as leases:
        try:  # another run writing any of the tables: exit now, before Spark or Great Expectations start
            leases.enter_context(writing(lake, tables, run_id))
        except LeaseHeld as held:
            raise SystemExit(f"{app_name}: {held}") from None
        # Great Expectations imports, and the run's validation definition is built, while the JVM starts.
        gate.preload(suites)
        raw = inputs()  # a missing raw partition fails here, before the JVM starts
        started = time.perf_counter()
        # Under spark-submit (Airflow) the JVM is up already: its submitter chose the same way.
        spark = session(app_name, input_bytes=input_bytes(raw), partitions=input_partitions(raw))
        startup = time.perf_counter() - started
        try:
            result = run(spark, raw)
            result["driver_jit"] = driver_jit(spark)
        finally:
            spark.stop()
    result["timings"]["spark_startup_s"] = startup
    result["timings"]["total_s"] = time.perf_counter() - started
    result["run_id"] = run_id
    write_report(lake, job, result)
    print("LAKEFORGE_RESULT " + json.dumps(result), flush=True)
    if result["quality"]["blocked"]:
        # Non-zero exit: the Airflow task fails (without retries: see GatedSparkSubmitOperator).
        print(QualityGateFailed.from_summary(result["quality"]), file=sys.stderr, flush=True)
        raise SystemExit(3)
    return result


def main(argv: list[str] | None = None, job: str | None = None) -> dict[str, Any]:
    """``job``: the name of a pipeline's own entry point (``spark_jobs/<job>.py``, whose stem the
    DAG reads the reports under), used as the app name, report folder and manifests' ``job``;
    default ``transform`` (app ``transform_<pipeline>``)."""
    from lakeforge.quality.spec import load_suite

    args, spec, dates = parse_args(argv)
    lake = Lake(args.lake) if args.lake else source_lake(spec.source)
    return execute(
        lake, job or JOB, job or f"{JOB}_{spec.source}", spec.written_tables(),
        suites=lambda: [load_suite(spec.source, table) for table in spec.audited_tables],
        inputs=lambda: raw_inputs(lake, spec.raw_tables, dates),
        run=lambda spark, inputs: run(spark, lake, spec, dates, args.run_id, inputs, job or JOB),
        run_id=args.run_id,
    )
