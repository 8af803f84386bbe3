"""Scheduled runs that flow: a burst of deliveries while a transform run is in progress, through
the REAL scheduler (API server, DAG processor and scheduler as their own processes, SQLite
metadata DB, LocalExecutor: embedded mode) running the project's own ingest and transform DAG
files. Day 1 is delivered; once its transform's Spark task runs, days 2..4 land at once.
Airflow hands the next run only the events up to its ``run_after`` (the others are dropped with
their queue rows while ``max_active_runs=1`` defers it), yet with no further delivery every
ingested day must end up transformed, and the runs' notes must name the days.

Deliveries start ingest runs through the delivery watcher on the triggerer (a look every 2 s here):
the burst of days 2..4 is one or two ingest runs, not three.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from datetime import date
from pathlib import Path

import pytest

from lakeforge.dates import expand_dates
from lakeforge.ingest import landing_for
from lakeforge.lake import Lake, source_lake
from lakeforge.orchestration import services
from lakeforge.pipelines.nycflights import SOURCE, simulator
from lakeforge.ports import free_loopback_port
from lakeforge.publish import list_partitions, read_manifest
from lakeforge.settings import PROJECT_ROOT, Settings
from tests.helpers import AIRFLOW_SERVICES, migrate_airflow_db, stop_airflow_services

pytestmark = pytest.mark.airflow

DAYS = [date(2013, 1, d) for d in (1, 2, 3, 4)]
OUTPUTS = ("clean/flights", "clean/weather", "features/flights")
FLOW_TIMEOUT_S = 420  # two or three Spark runs on a busy 2-core machine, with margin


def dags_folder(root: Path) -> Path:
    """The project's ingest and transform DAG files."""
    folder = root / "dags"
    folder.mkdir()
    for name in ("ingest_flights.py", "transform_flights.py"):
        (folder / name).write_text((PROJECT_ROOT / "dags" / name).read_text())
    return folder


def flow_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "LAKEFORGE_HOME": str(root / "home"),
        "AIRFLOW_HOME": str(root / "airflow"),
        "LAKEFORGE_DAGS_FOLDER": str(dags_folder(root)),
        "AIRFLOW__API__PORT": str(free_loopback_port()),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # both run as soon as they are parsed
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "LAKEFORGE_DELIVERY_POLL_SECONDS": "2",
        "LAKEFORGE_SPARK_SHUFFLE_PARTITIONS": "2",
        "LAKEFORGE_SPARK_DRIVER_MEMORY": "1g",
    })
    return services.airflow_env(env)


def query(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet, or locked by a writer
        return []


def transform_runs(db: Path) -> list[tuple[str, str, str | None]]:
    """(run_id, state, note) of every transform run, oldest first."""
    return query(db, "SELECT r.run_id, r.state, n.content FROM dag_run r LEFT JOIN dag_run_note n "
                     "ON n.dag_run_id = r.id WHERE r.dag_id = 'transform_flights' ORDER BY r.id")


def transformed(lake: Lake) -> list[str]:
    published = [set(list_partitions(lake, t)) for t in OUTPUTS]
    return sorted(p[3:] for p in set.intersection(*published))


def wait_for(what: str, done, timeout: float, logs: Path, db: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))
    states = query(db, "SELECT dag_id, run_id, task_id, state, try_number FROM task_instance ORDER BY dag_id, run_id")
    raise AssertionError(f"timed out waiting for {what}\nruns: {transform_runs(db)}\ntasks: {states}\n{tails}")


def test_a_burst_during_a_transform_run_is_transformed_with_no_further_delivery(tmp_path):
    t0 = time.monotonic()
    env = flow_env(tmp_path)
    folder = services.services_dir(env)
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    settings = Settings.from_env(env)
    landing, lake = landing_for(SOURCE, settings.landing_root), source_lake("nycflights", settings.lake_root)
    simulator.deliver(landing, DAYS[0], DAYS[0])
    migrate_airflow_db(env)
    timings = {"migrate_s": time.monotonic() - t0}
    try:
        for name in AIRFLOW_SERVICES:
            services.start(name, env=env, folder=folder, grace=10)

        # The chosen point: day 1's transform is in its Spark task (not planning, not done).
        wait_for("day 1's transform to run Spark",
                 lambda: query(db, "SELECT 1 FROM task_instance WHERE dag_id = 'transform_flights' "
                                   "AND task_id = 'spark_transform' AND state = 'running'"), 300, folder, db)
        timings["first_spark_s"] = time.monotonic() - t0
        assert transformed(lake) == []
        simulator.deliver(landing, DAYS[1], DAYS[-1])  # the burst, while that run holds max_active_runs=1
        burst = time.monotonic()

        want = [d.isoformat() for d in DAYS]

        def settled():
            runs = transform_runs(db)
            busy = [r for r in runs if r[1] in ("queued", "running")]
            return transformed(lake) == want and not busy and all(note for _, _, note in runs) and runs

        runs = wait_for("every delivered day transformed, no transform run left", settled, FLOW_TIMEOUT_S, folder, db)
        timings["burst_to_done_s"] = time.monotonic() - burst
        timeline = query(db, "SELECT dag_id, substr(run_id, 1, 38), task_id, start_date, end_date, state "
                             "FROM task_instance WHERE start_date IS NOT NULL ORDER BY start_date")
    finally:
        stop_airflow_services(folder)
    timings["total_s"] = time.monotonic() - t0
    print("\ntimings:", {k: round(v, 1) for k, v in timings.items()})
    print("transform runs:\n" + "\n".join(f"  {state:8} {note}" for _, state, note in runs))
    print("tasks (start, end, state):\n" + "\n".join(
        f"  {start[11:19]} {(end or '')[11:19]:8} {state:8} {dag} {run} {task}"
        for dag, run, task, start, end, state in timeline))

    # Every run succeeded; the notes name every day, each processed at least once.
    assert [state for _, state, _ in runs] == ["success"] * len(runs), runs
    named = set()
    for _, _, note in runs:
        head = note.split(" (")[0] if re.match(r"\d{4}-\d{2}-\d{2}", note) else ""
        named |= set(expand_dates(head)) if head else set()
        assert re.match(r"(\d{4}-\d{2}-\d{2}\S* \(\d+ days?\): .*(from events|pending)|nothing to transform: )",
                        note), note
    assert named == set(want), runs
    # The catch-up needs no run per day: day 1's run, at most one run between, the catch-up.
    assert sum(not note.startswith("nothing") for _, _, note in runs) <= 3, runs
    # Each output records the raw content it was built from: what tells a later run it is current.
    for ds in want:
        out = read_manifest(lake, "features/flights", f"ds={ds}")
        assert out["inputs"] == {t: {"content_sha256": read_manifest(lake, t, f"ds={ds}")["content_sha256"]}
                                 for t in ("raw/flights", "raw/weather")}, out


def test_a_run_with_nothing_to_do_says_so_in_its_note(airflow_db, tmp_path, monkeypatch):
    """In-process (``dag.test``): the planning task's note reaches the run through the
    ``lakeforge_run_notes`` listener, for a run that skips and for one that fails at planning."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def note(dr) -> str | None:
        with create_session() as session:
            return session.scalar(select(DagRunNote.content).join(DagRun, DagRun.id == DagRunNote.dag_run_id)
                                  .where(DagRun.dag_id == dr.dag_id, DagRun.run_id == dr.run_id))

    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "transform_flights.py"))
    dag = bag.dags["transform_flights"]
    dr = dag.test(logical_date=pendulum.now("UTC"))  # no range, no event, an empty lake
    assert str(dr.state) == "success" and note(dr) == "nothing to transform: no new day in the events and none pending"
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"start": "2013-01-01", "end": "2013-01-02"})
    assert str(dr.state) == "failed"
    assert note(dr).startswith("failed at planning: not ingested yet, nothing to transform: raw/flights has no "
                               "partition for 2013-01-01..2013-01-02"), note(dr)
