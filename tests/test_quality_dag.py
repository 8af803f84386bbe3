"""The gate inside Airflow: day N is bad, days before and after publish, day N does not, nothing
downstream hears of it; fixing the source and clearing the task publishes it."""

from datetime import date

import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.nycflights import simulator
from lakeforge.publish import list_partitions, read_manifest
from tests.helpers import edit_flights_rows, ingest_days, redeliver_flights

pytestmark = pytest.mark.airflow
DAYS = [date(2013, 1, 1), date(2013, 1, 2), date(2013, 1, 3)]
BAD = "2013-01-02"


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "transform_flights.py"))
    assert bag.import_errors == {}
    return bag.dags["transform_flights"]


def run_day(dag, ds: str):
    """One run per day, as the asset schedule gives; the same logical date again = clear + rerun."""
    d = date.fromisoformat(ds)
    dr = dag.test(logical_date=pendulum.datetime(d.year, d.month, d.day, 6, tz="UTC"),
                  run_conf={"start": ds, "end": ds})
    return dr, {ti.task_id: ti for ti in dr.get_task_instances()}


def features_events() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    from sqlalchemy import select

    with Session() as session:
        return [extra for (extra,) in session.execute(
            select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "nycflights.features.flights")).all()]


def test_bad_day_is_blocked_then_published_after_the_fix(dag, tmp_path, monkeypatch, capfd):
    lake, landing = source_lake("nycflights", f"file://{tmp_path}/lake"), Lake(f"file://{tmp_path}/landing/nycflights")
    ingest_days(lake, landing, DAYS)
    redeliver_flights(lake, landing, BAD, lambda text: edit_flights_rows(text, "tailnum", "NA"))
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    events_before = len(features_events())

    states = {}
    for d in DAYS:
        dr, tis = run_day(dag, d.isoformat())
        states[d.isoformat()] = (str(dr.state), str(tis["spark_transform"].state), tis["spark_transform"].try_number)
    assert states == {
        "2013-01-01": ("success", "success", 1),
        BAD: ("failed", "failed", 1),  # failed closed, and not retried: the same data fails the same checks
        "2013-01-03": ("success", "success", 1),
    }
    # The task fails with the check, the column's metric and the observed value in its log.
    log = "".join(capfd.readouterr())
    assert "AirflowFailException" in log and "quality gate failed: 1 partition(s) not published" in log
    assert "clean/flights: not_null:tailnum [critical]: not_null(tailnum) = 1, expected" in log
    for table in ("clean/flights", "clean/weather", "features/flights"):
        assert list_partitions(lake, table) == ["ds=2013-01-01", "ds=2013-01-03"], table
    # Downstream DAGs only hear of published dates: the bad run emitted no asset event.
    new_events = features_events()[events_before:]
    assert sorted(d for e in new_events for d in e["dates"]) == ["2013-01-01", "2013-01-03"]

    # The exporter sends the day again, correct this time; clearing the failed run publishes it.
    simulator.deliver(landing, DAYS[1], DAYS[1], snapshots=False)
    redeliver_flights(lake, landing, BAD, lambda text: text)
    dr, tis = run_day(dag, BAD)
    assert str(dr.state) == "success"
    assert list_partitions(lake, "features/flights") == ["ds=2013-01-01", "ds=2013-01-02", "ds=2013-01-03"]
    assert read_manifest(lake, "clean/flights", f"ds={BAD}")["quality"]["status"] == "passed"
    assert features_events()[-1]["dates"] == [BAD]
