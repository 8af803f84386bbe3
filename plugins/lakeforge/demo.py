"""``make demo``: a month of real flights from landing through raw, clean, features and a registered
model, via Airflow.

Runs on embedded defaults (file lake and SQLite under ``.lakeforge/``), or with ``--hdfs`` into a
real single-node HDFS started for the run. Each date is a real Airflow DAG run of ``ingest_flights`` (``dag.test``:
metadata DB, task runner, sensors, assets), one after the other as catch-up would run them; then
one ``transform_flights`` run carries the whole range through clean and features (quality-gated)
in ONE Spark application submitted by SparkSubmitOperator; one ``train_delay_model`` run trains
on it, logs to MLflow and registers a champion.

    python -m lakeforge.demo [--start 2013-01-01] [--end 2013-01-31] [--hdfs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from lakeforge.orchestration import airflow_env
from lakeforge.settings import get_settings

def _migrate_airflow_db() -> float:
    started = time.perf_counter()
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def run_ingest(start: date, end: date) -> dict:
    """Deliver and ingest every date in [start, end]; returns timings and run states."""
    from lakeforge.ingest import landing_for
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    timings: dict[str, float] = {}
    timings["airflow_db_migrate_s"] = _migrate_airflow_db()

    t = time.perf_counter()
    report = simulator.deliver(landing_for(SOURCE), start, end)
    timings["deliver_s"] = time.perf_counter() - t
    print(f"exporter delivered {len(report.files)} files ({report.bytes / 1e6:.1f} MB) "
          f"in {timings['deliver_s']:.1f}s to {landing_for(SOURCE).root_uri}")

    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(get_settings().dags_folder / "ingest_flights.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags["ingest_flights"]

    states: Counter[str] = Counter()
    failed: list[str] = []
    t = time.perf_counter()
    day = start
    while day <= end:
        dr = dag.test(logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC"))
        states[str(dr.state)] += 1
        if str(dr.state) != "success":
            failed.append(f"{day}: " + ", ".join(
                f"{ti.task_id}={ti.state}" for ti in dr.get_task_instances() if str(ti.state) != "success"))
        print(f"  run {day}: {dr.state}", flush=True)
        day += timedelta(days=1)
    timings["dag_runs_s"] = time.perf_counter() - t
    return {"timings": timings, "states": dict(states), "failed": failed}


def run_transform(start: date, end: date) -> dict:
    """raw -> clean -> features for the whole range: one Airflow run, one Spark application."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.lake import Lake
    from lakeforge.reports import latest_report

    bag = DagBag(dag_folder=str(get_settings().dags_folder / "transform_flights.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    t = time.perf_counter()
    dr = bag.dags["transform_flights"].test(
        logical_date=pendulum.now("UTC"), run_conf={"start": str(start), "end": str(end)}
    )
    seconds = time.perf_counter() - t
    if str(dr.state) != "success":
        raise SystemExit(f"transform_flights failed: "
                         f"{ {ti.task_id: str(ti.state) for ti in dr.get_task_instances()} }")
    lake = Lake()
    report = latest_report(lake, "transform_flights")
    rows, tm = report["rows"], report["timings"]
    print(f"\ntransform_flights (one Spark app, {get_settings().spark_master}): {seconds:.1f}s in Airflow; "
          f"Spark start {tm['spark_startup_s']:.1f}s, clean {tm['clean_s']:.1f}s, features {tm['features_s']:.1f}s, "
          f"quality gates {tm['quality_s']:.1f}s, publish {tm['publish_s']:.1f}s")
    print(f"{'stage':22} {'rows':>10}")
    for name in ("raw_flights", "clean_flights", "quarantine_flights", "raw_weather", "clean_weather",
                 "quarantine_weather", "features_flights"):
        print(f"{name:22} {rows[name]:>10,}")
    print_quality(lake, start, end, tm)
    return report


def print_quality(lake, start: date, end: date, timings: dict) -> None:
    """The quality_summary view for the processed dates (every partition's latest verdict)."""
    from lakeforge.quality.evidence import format_summary, read_summary, summary_uri

    print(f"\nquality gates ({timings['quality_s']:.1f}s): critical checks block publishing, warnings are recorded")
    print(format_summary(read_summary(lake), str(start), str(end)))
    print(f"quality_summary: {summary_uri(lake)}; "
          f"reports: {lake.uri('quality', '<table>', 'ds=<date>', 'report.html')}")


def summarize(start: date, end: date) -> list[dict]:
    from lakeforge.lake import Lake
    from lakeforge.pipelines.nycflights import SOURCE
    from lakeforge.publish import list_partitions, read_manifest

    lake = Lake()
    rows = []
    for table in SOURCE.tables:
        path = SOURCE.raw_path(table.name)
        parts = [p for p in list_partitions(lake, path) if f"ds={start}" <= p <= f"ds={end}"]
        manifests = [read_manifest(lake, path, p) for p in parts]
        rows.append({
            "table": table.name,
            "partitions": len(parts),
            "rows": sum(m.get("rows", 0) for m in manifests if m),
            "bytes": sum(m["bytes"] for m in manifests if m),
            "uri": lake.uri(path),
        })
    quarantined = lake.files("quarantine")
    print(f"\nlake: {lake.root_uri}")
    print(f"{'table':10} {'partitions':>10} {'rows':>10} {'MB':>8}")
    for r in rows:
        print(f"{r['table']:10} {r['partitions']:>10} {r['rows']:>10,} {r['bytes'] / 1e6:>8.2f}")
    print(f"quarantined files: {len([f for f in quarantined if not f.path.endswith('.reason.json')])}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2013, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2013, 1, 31))
    parser.add_argument("--hdfs", action="store_true", help="ingest into a real HDFS started for the run")
    args = parser.parse_args(argv)

    airflow_env.apply()
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Airflow's own, not ours
    # dag.test logs every task step at INFO; the demo prints its own summary (Airflow's task logs
    # are in the UI for scheduled runs). LAKEFORGE_DEMO_LOG_LEVEL=INFO shows them.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("LAKEFORGE_DEMO_LOG_LEVEL", "WARNING")
    with contextlib.ExitStack() as stack:
        if args.hdfs:
            from lakeforge.hdfs_cluster import MiniHdfs

            hdfs = stack.enter_context(MiniHdfs(Path(tempfile.mkdtemp(prefix="lakeforge-hdfs-"))))
            os.environ["LAKEFORGE_LAKE_ROOT"] = f"{hdfs.uri}/lake"
            os.environ["HADOOP_CONF_DIR"] = str(hdfs.conf_dir)  # Spark's client: replication 2
            print(f"HDFS up at {hdfs.uri} in {hdfs.startup_seconds:.1f}s")
        settings = get_settings()
        print(f"lakeforge demo: {args.start}..{args.end}, lake {settings.lake_root}, "
              f"Airflow home {settings.airflow_home}")
        started = time.perf_counter()
        result = run_ingest(args.start, args.end)
        rows = summarize(args.start, args.end)
        ingest_total = time.perf_counter() - started
        mb = sum(r["bytes"] for r in rows) / 1e6
        t = result["timings"]
        print(f"\nAirflow runs: {result['states']} in {t['dag_runs_s']:.1f}s "
              f"({t['dag_runs_s'] / max(1, sum(result['states'].values())):.2f}s per run; "
              f"db migrate {t['airflow_db_migrate_s']:.1f}s); ingest total {ingest_total:.1f}s; "
              f"ingest {mb / t['dag_runs_s']:.2f} MB/s")
        print(f"finished {datetime.now(timezone.utc):%H:%M:%S} UTC; rerun `make demo`: partitions stay unchanged")
        for line in result["failed"]:
            print(f"  not successful: {line}")
        if result["failed"]:
            raise SystemExit(1)
        run_transform(args.start, args.end)
        from lakeforge.training.demo_step import run_training

        run_training(args.start, args.end)
        print(f"\ndemo total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
