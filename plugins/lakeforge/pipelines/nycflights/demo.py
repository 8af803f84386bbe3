"""``make demo``: a month of real flights from landing through raw, clean, features and a registered
model, via Airflow.

Runs on embedded defaults (file lake and SQLite under ``.lakeforge/``), or with ``--hdfs`` into a
real HDFS (NameNode + 2 DataNodes) started for the run. The exporter delivers the range, and one
real Airflow DAG run of ``ingest_flights`` (``dag.test``: metadata DB, task runner, assets) takes
every delivered day, as the run its delivery watcher starts would; then one ``transform_flights`` run carries the whole range through
clean and features (quality-gated) in ONE Spark application submitted by SparkSubmitOperator; one
``train_delay_model`` run trains on it, logs to MLflow and registers a champion. Then the days after
it (``--score-end``, default the next 28 days: February after January) are ingested and transformed
the same way and scored with the champion by one ``score_flights`` run, which also evaluates the days
whose outcomes are in and checks them for drift: a per-day table and where the reports are.

A demo runs each DAG once, in this process: a failed task stops it at once, its error printed
(``fail_fast``: no retries; those are for the scheduler).

``--hdfs`` keeps its own state in ``<LAKEFORGE_HOME>/demo-hdfs/`` (Airflow DB, MLflow registry and
artifacts, landing; ``hdfs_home``), apart from ``make demo``'s: an HDFS-lake model is never
compared with a file-lake champion. Its HDFS lake lasts for the run.

    python -m lakeforge.pipelines.nycflights.demo [--start 2013-01-01] [--end 2013-01-31] [--score-end 2013-02-28] [--hdfs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from lakeforge.orchestration import airflow_env
from lakeforge.settings import Settings, get_settings

SOURCE_NAME = "nycflights"
HDFS_SUBHOME = "demo-hdfs"
# The state a lakeforge home holds for a demo, by the variable that can move it elsewhere.
HOME_STATE = ("LAKEFORGE_LANDING_ROOT", "MLFLOW_TRACKING_URI", "LAKEFORGE_MLFLOW_ARTIFACT_ROOT", "AIRFLOW_HOME",
              "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")


def hdfs_home(environ: dict[str, str] | None = None) -> tuple[Path, list[str]]:
    """Point ``environ`` (default os.environ) at ``make demo-hdfs``'s own home,
    ``<LAKEFORGE_HOME>/demo-hdfs``: its Airflow DB, MLflow registry and artifacts and landing are
    derived from it, apart from ``make demo``'s. The caches (Spark class archive, local file system
    jar) stay shared: they depend on the JDK and pyspark, not on the data. A variable of
    ``HOME_STATE`` that holds exactly what ``make demo``'s home derives (e.g. exported by
    ``make airflow-env``) is derived again for the sub-home; any other value set there is the
    user's choice, used as is: returns the sub-home and those variables (shared with ``make demo``)."""
    env = os.environ if environ is None else environ
    parent = Settings.from_env(env)
    home = parent.home / HDFS_SUBHOME
    defaults = Settings.from_env({"LAKEFORGE_HOME": str(parent.home)})
    derived = {"LAKEFORGE_LANDING_ROOT": defaults.landing_root, "MLFLOW_TRACKING_URI": defaults.mlflow_tracking_uri,
               "LAKEFORGE_MLFLOW_ARTIFACT_ROOT": defaults.mlflow_artifact_root,
               "AIRFLOW_HOME": str(defaults.airflow_home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{defaults.airflow_home}/airflow.db"}
    for key in HOME_STATE:
        if env.get(key) == derived[key]:
            del env[key]
    env["LAKEFORGE_HOME"] = str(home)
    env["LAKEFORGE_SPARK_CDS_DIR"] = parent.spark_cds_dir
    env["LAKEFORGE_SPARK_LOCAL_FS_DIR"] = parent.spark_local_fs_dir
    return home, [key for key in HOME_STATE if env.get(key)]


def fail_fast_policy(task) -> None:
    """Airflow task policy for DAGs run once with ``dag.test`` (the demo): a task that fails stops
    the run at once, with its error, instead of retrying after ``retry_delay`` (meanwhile the run
    loop prints "No tasks to run" every second)."""
    task.retries = 0


@contextlib.contextmanager
def fail_fast():
    """``fail_fast_policy`` for every DAG loaded (``DagBag``) inside the block, registered as an
    Airflow cluster policy and removed after. Airflow must be configured (``airflow_env.apply()``)."""
    from airflow.policies import hookimpl
    from airflow.settings import get_policy_plugin_manager

    class DemoPolicy:
        task_policy = staticmethod(hookimpl(fail_fast_policy))

    manager = get_policy_plugin_manager()
    manager.register(DemoPolicy)
    try:
        yield
    finally:
        manager.unregister(DemoPolicy)


def failed_tasks(dr) -> str:
    return ", ".join(f"{ti.task_id}={ti.state}" for ti in dr.get_task_instances()
                     if str(ti.state) not in ("success", "skipped"))


def record_real_start(dr, started: datetime) -> None:
    """``dag.test`` records a run's start as its logical date (2013 for the replayed days), so the UI
    showed runs lasting ~5,000 days; put the wall-clock start back on the run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == dr.dag_id, DagRun.run_id == dr.run_id).update(
            {DagRun.start_date: started}, synchronize_session=False)


def _migrate_airflow_db() -> float:
    started = time.perf_counter()
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def run_ingest(start: date, end: date, migrate: bool = True) -> dict:
    """Deliver and ingest every date in [start, end]; returns timings and run states."""
    from lakeforge.ingest import landing_for
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    timings: dict[str, float] = {}
    timings["airflow_db_migrate_s"] = _migrate_airflow_db() if migrate else 0.0

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
    t = time.perf_counter()
    started = datetime.now(timezone.utc)
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"start": start.isoformat(), "end": end.isoformat()})
    record_real_start(dr, started)
    states[str(dr.state)] += 1
    print(f"  run {start}..{end}: {dr.state}", flush=True)
    if str(dr.state) != "success":
        raise SystemExit(f"ingest_flights failed for {start}..{end} ({failed_tasks(dr)}): the task's error is above")
    timings["dag_runs_s"] = time.perf_counter() - t
    return {"timings": timings, "states": dict(states)}


def run_transform(start: date, end: date) -> dict:
    """raw -> clean -> features for the whole range: one Airflow run, one Spark application."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.lake import source_lake
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
        raise SystemExit(f"transform_flights failed ({failed_tasks(dr)}): the task's error is above")
    lake = source_lake(SOURCE_NAME)
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
    from lakeforge.lake import source_lake
    from lakeforge.pipelines.nycflights import SOURCE
    from lakeforge.publish import list_partitions, read_manifest

    lake = source_lake(SOURCE.name)
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


def score_days(start: date, end: date) -> None:
    """The days after training through the same DAGs (ingest, transform), then scored and
    monitored by one ``score_flights`` run."""
    from lakeforge.pipelines.nycflights.demo_scoring import run_scoring

    t = time.perf_counter()
    print(f"\n== {start}..{end}: new days for the champion ==")
    run_ingest(start, end, migrate=False)
    ingest_s = time.perf_counter() - t
    run_transform(start, end)
    print(f"ingest {ingest_s:.1f}s, transform {time.perf_counter() - t - ingest_s:.1f}s")
    run_scoring(start, end)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2013, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2013, 1, 31))
    parser.add_argument("--score-end", type=date.fromisoformat,
                        help="after training: ingest, transform and score the days after --end up to this one "
                             "(default: 28 days after --end; --end itself: no scoring)")
    parser.add_argument("--hdfs", action="store_true",
                        help="ingest into a real HDFS started for the run; state in <LAKEFORGE_HOME>/demo-hdfs")
    args = parser.parse_args(argv)
    args.score_end = args.score_end or args.end + timedelta(days=28)

    shared: list[str] = []
    if args.hdfs:  # before Airflow's environment: its home and DB are derived from it
        home, shared = hdfs_home()
    airflow_env.apply()
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Airflow's own, not ours
    # dag.test logs every task step at INFO; the demo prints its own summary (Airflow's task logs
    # are in the UI for scheduled runs). LAKEFORGE_DEMO_LOG_LEVEL=INFO shows them.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("LAKEFORGE_DEMO_LOG_LEVEL", "WARNING")
    with contextlib.ExitStack() as stack:
        if args.hdfs:
            from lakeforge.hdfs_cluster import MiniHdfs

            base = home / "hdfs"
            shutil.rmtree(base, ignore_errors=True)  # the lake of an earlier run is not reused
            hdfs = stack.enter_context(MiniHdfs(base))
            os.environ["LAKEFORGE_LAKE_ROOT"] = f"{hdfs.uri}/lake"
            os.environ["HADOOP_CONF_DIR"] = str(hdfs.conf_dir)  # Spark's client: HDFS is the default FS
            print(f"HDFS up at {hdfs.uri} in {hdfs.startup_seconds:.1f}s (data and log: {base})")
        settings = get_settings()
        print(f"lakeforge demo: {args.start}..{args.end}, lake {settings.lake_root}")
        print(f"  home {settings.home}: Airflow {settings.airflow_home}, MLflow {settings.mlflow_tracking_uri}, "
              f"landing {settings.landing_root}")
        if args.hdfs:
            print(f"  `make demo-hdfs` keeps its own Airflow DB, MLflow registry and landing in {settings.home}, "
                  f"apart from `make demo`'s; the HDFS lake lasts for this run")
            if shared:  # names only: a database URL may hold a password
                print(f"  note: {', '.join(shared)} set in your environment: that state is shared with `make demo`")
        started = time.perf_counter()
        with fail_fast():
            result = run_ingest(args.start, args.end)
            rows = summarize(args.start, args.end)
            ingest_total = time.perf_counter() - started
            mb = sum(r["bytes"] for r in rows) / 1e6
            t = result["timings"]
            print(f"\nAirflow runs: {result['states']} in {t['dag_runs_s']:.1f}s "
                  f"({t['dag_runs_s'] / max(1, sum(result['states'].values())):.2f}s per run; "
                  f"db migrate {t['airflow_db_migrate_s']:.1f}s); ingest total {ingest_total:.1f}s; "
                  f"ingest {mb / t['dag_runs_s']:.2f} MB/s")
            run_transform(args.start, args.end)
            from lakeforge.pipelines.nycflights.demo_training import run_training

            run_training(args.start, args.end)
            if args.score_end > args.end:
                score_days(args.end + timedelta(days=1), args.score_end)
        rerun = ("`make demo-hdfs` ingests again into a new HDFS lake" if args.hdfs
                 else "`make demo` leaves the partitions unchanged")
        print(f"\ndemo total {time.perf_counter() - started:.1f}s; finished {datetime.now(timezone.utc):%H:%M:%S} UTC; "
              f"a rerun of {rerun}")
    if args.hdfs:
        shutil.rmtree(home / "hdfs", ignore_errors=True)  # its lake went with it; kept after a failure


if __name__ == "__main__":
    main()
