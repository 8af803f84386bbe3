"""The ingest_flights DAG run by Airflow itself (dag.test: real metadata DB, real task runner)."""

import json
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


def run(dag, day: int):
    dr = dag.test(logical_date=pendulum.datetime(2013, 1, day, tz="UTC"))
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    return dr.state, states


def snapshot(lake: Lake) -> dict[str, bytes]:
    """Every file of raw/ with its bytes: equal snapshots mean an unchanged lake."""
    return {f.path: lake.read_bytes(f"raw/{f.path}") for f in lake.files("raw")}


def test_consecutive_days_rerun_and_duplicate(dag, roots):
    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 3))
    for day in (1, 2, 3):
        state, tis = run(dag, day)
        assert state == "success", tis
    assert list_partitions(lake, "raw/flights") == ["ds=2013-01-01", "ds=2013-01-02", "ds=2013-01-03"]
    assert list_partitions(lake, "raw/weather") == list_partitions(lake, "raw/flights")
    assert list_partitions(lake, "raw/planes") == ["ds=2013-01-01"]
    for ds in ("2013-01-01", "2013-01-02", "2013-01-03"):
        manifest = json.loads(lake.read_bytes(f"raw/flights/ds={ds}/{MANIFEST}"))
        delivered = landing.read_bytes(f"flights/{ds}.csv")
        assert manifest["rows"] == delivered.count(b"\n") - 1
        assert manifest["dag_run_id"].startswith("manual__")  # the Airflow run that wrote it
    # Snapshot tables are skipped on days without a snapshot delivery.
    _, tis = run(dag, 2)
    assert tis["ingest_planes_snapshot"] == "skipped"

    before = snapshot(lake)
    state, _ = run(dag, 2)  # rerun of a date
    assert state == "success" and snapshot(lake) == before
    simulator.deliver_fault(landing, "duplicate", "flights", date(2013, 1, 3))  # resend, new name
    state, _ = run(dag, 3)
    assert state == "success" and snapshot(lake) == before


def test_asset_events_carry_the_partition(dag, roots):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    from sqlalchemy import select

    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 4), date(2013, 1, 4), snapshots=False)
    assert run(dag, 4)[0] == "success"
    with Session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "nycflights.raw.flights")
        ).all()
    extras = [extra for _, extra in rows if extra.get("ds") == "2013-01-04"]
    assert extras and extras[-1]["status"] == "published"
    assert extras[-1]["rows"] == json.loads(lake.read_bytes(f"raw/flights/ds=2013-01-04/{MANIFEST}"))["rows"]


def test_bad_delivery_fails_the_run_and_quarantines(dag, roots):
    lake, landing = roots
    simulator.deliver(landing, date(2013, 1, 5), date(2013, 1, 5), snapshots=False)
    simulator.deliver_fault(landing, "truncated", "flights", date(2013, 1, 5))
    state, tis = run(dag, 5)
    assert state == "failed"
    assert tis["ingest_flights"] == "failed" and tis["ingest_weather"] == "success"
    assert list_partitions(lake, "raw/flights") == []
    reason = json.loads(lake.read_bytes("quarantine/raw/flights/ds=2013-01-05/2013-01-05.csv.reason.json"))
    assert reason["kind"] == "truncated"

    # The exporter redelivers a good file; rerunning the date publishes it.
    simulator.deliver(landing, date(2013, 1, 5), date(2013, 1, 5), snapshots=False)
    state, _ = run(dag, 5)
    assert state == "success" and list_partitions(lake, "raw/flights") == ["ds=2013-01-05"]


def test_missing_delivery_times_out_with_a_clear_message(dag, roots):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from lakeforge.orchestration.operators import LandingDeliverySensor

    _, landing = roots
    simulator.deliver(landing, date(2013, 1, 6), date(2013, 1, 6), snapshots=False)
    landing.delete("flights/2013-01-06.csv")
    state, tis = run(dag, 6)  # sensor timeout is 3 s in tests
    assert state == "failed"
    assert tis["wait_for_flights"] == "failed" and tis["ingest_flights"] == "upstream_failed"

    sensor = LandingDeliverySensor(
        task_id="probe", source_name="nycflights", table="flights", partition_date="2013-01-06",
        mode="poke", poke_interval=0, timeout=0,
    )
    with pytest.raises(AirflowSensorTimeout) as err:
        sensor.execute(context={})
    assert "No delivery of nycflights.flights for 2013-01-06" in str(err.value)
    assert "landing/nycflights/flights/2013-01-06*.csv" in str(err.value)


@pytest.mark.hdfs
def test_dag_ingests_into_hdfs(dag, hdfs, tmp_path, monkeypatch):
    lake = source_lake("nycflights", f"{hdfs.uri}/dagtest/lake")
    landing = Lake(f"file://{tmp_path}/landing/nycflights")
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"{hdfs.uri}/dagtest/lake")
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", f"file://{tmp_path}/landing")
    simulator.deliver(landing, date(2013, 1, 7), date(2013, 1, 7), snapshots=False)
    state, tis = run(dag, 7)
    assert state == "success", tis
    assert lake.read_bytes("raw/flights/ds=2013-01-07/2013-01-07.csv") == landing.read_bytes("flights/2013-01-07.csv")
