"""The ingest DAG run by Airflow itself (dag.test: real metadata DB, real task runner), and its
delivery watcher (the trigger the triggerer runs) on a real landing area."""

import asyncio
import json
import os
from datetime import date

import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.nycflights import simulator
from lakeforge.publish import MANIFEST, list_partitions

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "ingest_flights.py"))
    assert bag.import_errors == {}
    return bag.dags["ingest_flights"]


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A fresh lake and landing area for one test (tasks read settings when they run)."""
    lake_root, landing_root = f"file://{tmp_path}/lake", f"file://{tmp_path}/landing"
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", lake_root)
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", landing_root)
    return source_lake("nycflights", lake_root), Lake(f"{landing_root}/nycflights")


def run(dag, conf: dict | None = None):
    """One run as the scheduler would start it with no event (the run scans the landing area)."""
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # Every parameter given: dag.test keeps an earlier run's conf in the DAG's params otherwise.
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"start": None, "end": None, **(conf or {})})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    with create_session() as session:
        note = session.scalar(select(DagRunNote.content).join(DagRun, DagRun.id == DagRunNote.dag_run_id)
                              .where(DagRun.dag_id == dr.dag_id, DagRun.run_id == dr.run_id))
    return str(dr.state), states, note


def snapshot(lake: Lake) -> dict[str, bytes]:
    """Every file of raw/ with its bytes: equal snapshots mean an unchanged lake."""
    return {f.path: lake.read_bytes(f"raw/{f.path}") for f in lake.files("raw")}


def test_days_delivered_at_once_are_one_run_and_reruns_change_nothing(dag, roots):
    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 3))
    state, tis, note = run(dag)
    assert state == "success", tis
    assert note.startswith("ingested 2013-01-01..2013-01-03 (3 days): 9 published"), note  # 3 x 2 daily + 3 snapshots
    assert list_partitions(lake, "raw/flights") == ["ds=2013-01-01", "ds=2013-01-02", "ds=2013-01-03"]
    assert list_partitions(lake, "raw/weather") == list_partitions(lake, "raw/flights")
    assert list_partitions(lake, "raw/planes") == ["ds=2013-01-01"]  # snapshots come with the 1st
    for ds in ("2013-01-01", "2013-01-02", "2013-01-03"):
        manifest = json.loads(lake.read_bytes(f"raw/flights/ds={ds}/{MANIFEST}"))
        delivered = landing.read_bytes(f"flights/{ds}.csv")
        assert manifest["rows"] == delivered.count(b"\n") - 1
        assert manifest["dag_run_id"].startswith("manual__")  # the Airflow run that wrote it

    before = snapshot(lake)
    state, tis, note = run(dag)  # nothing new: the run says so and wakes nothing downstream
    assert state == "success" and tis["ingest"] == "skipped" and snapshot(lake) == before
    assert note == "nothing to ingest: no new day in the events and none pending", note
    state, tis, note = run(dag, {"start": "2013-01-02", "end": "2013-01-03"})  # a manual re-ingest
    assert state == "success" and snapshot(lake) == before, tis
    assert note.startswith("ingested 2013-01-02..2013-01-03 (2 days): "), note
    simulator.deliver_fault(landing, "duplicate", "flights", date(2013, 1, 3))  # resend, new name
    state, _, _ = run(dag, {"start": "2013-01-03", "end": "2013-01-03"})
    assert state == "success" and snapshot(lake) == before


def test_asset_events_name_the_days_published(dag, roots):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    from sqlalchemy import select

    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 4), date(2013, 1, 5), snapshots=False)
    assert run(dag)[0] == "success"
    with Session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "nycflights.raw.flights").order_by(AssetEvent.id)
        ).all()
    extra = rows[-1][1]
    assert extra["dates"] == ["2013-01-04", "2013-01-05"]
    assert extra["rows"] == sum(json.loads(lake.read_bytes(f"raw/flights/ds={ds}/{MANIFEST}"))["rows"]
                                for ds in extra["dates"])


def test_a_bad_delivery_is_quarantined_the_rest_published_and_the_run_fails(dag, roots):
    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 5), date(2013, 1, 6), snapshots=False)
    simulator.deliver_fault(landing, "truncated", "flights", date(2013, 1, 5))
    state, tis, note = run(dag)
    assert state == "failed"
    assert tis["ingest"] == "success" and tis["refused_deliveries"] == "failed", tis
    assert "1 deliveries refused and quarantined" in note, note
    assert list_partitions(lake, "raw/flights") == ["ds=2013-01-06"]  # the good day went on
    assert list_partitions(lake, "raw/weather") == ["ds=2013-01-05", "ds=2013-01-06"]
    reason = json.loads(lake.read_bytes("quarantine/raw/flights/ds=2013-01-05/2013-01-05.csv.reason.json"))
    assert reason["kind"] == "truncated"

    # The exporter redelivers a good file: the next run finds the day pending and publishes it.
    simulator.deliver(landing, date(2013, 1, 5), date(2013, 1, 5), snapshots=False)
    state, _, note = run(dag)
    assert state == "success" and list_partitions(lake, "raw/flights") == ["ds=2013-01-05", "ds=2013-01-06"]
    assert note.startswith("ingested 2013-01-05 (1 day): 1 published, 1 unchanged"), note


def test_a_day_without_its_flights_is_taken_when_they_land(dag, roots):
    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 7), date(2013, 1, 7), snapshots=False)
    landing.delete("flights/2013-01-07.csv")
    state, tis, note = run(dag)
    assert state == "success", tis
    assert "flights not delivered yet: 2013-01-07" in note, note
    assert list_partitions(lake, "raw/flights") == [] and list_partitions(lake, "raw/weather") == ["ds=2013-01-07"]
    simulator.deliver(landing, date(2013, 1, 7), date(2013, 1, 7), snapshots=False)
    state, _, note = run(dag)
    assert state == "success" and list_partitions(lake, "raw/flights") == ["ds=2013-01-07"], note


def test_the_watcher_fires_for_new_and_changed_files_only(roots):
    """The trigger as the triggerer runs it (its event loop), on the real landing area."""
    from lakeforge.orchestration.triggers import LandingDeliveryTrigger

    _, landing = roots
    trigger = LandingDeliveryTrigger(source_name="nycflights", poll_seconds=0.05)
    assert trigger.serialize() == ("lakeforge.orchestration.triggers.LandingDeliveryTrigger",
                                   {"source_name": "nycflights", "poll_seconds": 0.05})

    async def watch():
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(trigger):  # the triggerer's loop: every event the trigger yields, in order
            async for event in trigger.run():
                queue.put_nowait(event.payload)

        async def next_event(timeout: float = 2.0):
            try:
                return await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                return None

        running = asyncio.create_task(pump(trigger))
        started_on_nothing = await next_event(0.3)  # an empty landing area: nothing to check
        simulator.deliver(landing, date(2013, 1, 8), date(2013, 1, 9), snapshots=False)
        first = await next_event()
        quiet = await next_event(0.3)  # nothing landed since: no event
        landing.write_bytes("flights/.2013-01-10.csv.tmp", b"year,month\n")  # still being written
        still_quiet = await next_event(0.3)
        path = landing.path("weather/2013-01-09.csv")  # a same-name redelivery: a newer file
        os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime + 5))
        changed = await next_event()
        running.cancel()
        # A watcher started over a landing area with files (an unpause, a triggerer restart):
        # one event naming no day, for the run's scan of what raw lacks.
        again = asyncio.create_task(pump(LandingDeliveryTrigger(source_name="nycflights", poll_seconds=0.05)))
        restarted = await next_event()
        after_restart = await next_event(0.3)
        again.cancel()
        return started_on_nothing, first, quiet, still_quiet, changed, restarted, after_restart

    started_on_nothing, first, quiet, still_quiet, changed, restarted, after_restart = asyncio.run(watch())
    assert started_on_nothing is None
    assert first == {"source": "nycflights", "dates": ["2013-01-08", "2013-01-09"], "files": 4}
    assert quiet is None and still_quiet is None
    assert changed == {"source": "nycflights", "dates": ["2013-01-09"], "files": 1}
    assert restarted == {"source": "nycflights", "dates": [], "files": 0, "started": True}
    assert after_restart is None


@pytest.mark.hdfs
def test_dag_ingests_into_hdfs(dag, hdfs, tmp_path, monkeypatch):
    lake = source_lake("nycflights", f"{hdfs.uri}/dagtest/lake")
    landing = Lake(f"file://{tmp_path}/landing/nycflights")
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"{hdfs.uri}/dagtest/lake")
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", f"file://{tmp_path}/landing")
    simulator.deliver(landing, date(2013, 1, 7), date(2013, 1, 7), snapshots=False)
    state, tis, _ = run(dag)
    assert state == "success", tis
    assert lake.read_bytes("raw/flights/ds=2013-01-07/2013-01-07.csv") == landing.read_bytes("flights/2013-01-07.csv")
