"""train_delay_model's shape (schedules, form validation, templated job arguments, the model asset
emitted by ``publish_champion`` only) and its planning task under Airflow: a window the data cannot
support fails before any Spark application starts. The DAG run end to end (promotion, rejection,
their asset events): tests/test_registry_gate.py."""

import copy

import pendulum
import pytest

from lakeforge.lake import source_lake
from lakeforge.publish import PartitionFile, publish_partition

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "train_delay_model.py"))
    assert bag.import_errors == {}
    return bag.dags["train_delay_model"]


def test_scheduled_weekly_and_on_features_or_a_retraining_request(dag):
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.sdk.definitions.asset import AssetAny

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "0 4 * * 1"
    assert isinstance(dag.timetable.asset_condition, AssetAny)  # either asset, not both
    assert [a.name for a in dag.timetable.asset_condition.objects] == [
        "nycflights.features.flights", "nycflights.monitoring.retrain_requested"]
    assert dag.max_active_runs == 1 and not dag.catchup
    train = dag.get_task("train_and_register")
    assert train.upstream_task_ids == {"anything_to_train"}
    # "The champion changed" comes from a task of its own, skipped unless this run promoted: the
    # training task succeeds on a rejection too and would emit its outlets every time.
    assert train.outlets == []
    publish = dag.get_task("publish_champion")
    assert publish.upstream_task_ids == {"train_and_register"}
    assert [a.name for a in publish.outlets] == ["models.flight_delay"]
    args = train.application_args
    assert args[args.index("--run-key") + 1] == "{{ dag.dag_id }}/{{ run_id }}"
    assert train.conf["spark.sql.shuffle.partitions"]  # from settings, like every lakeforge job


@pytest.mark.parametrize("key, bad", [("model_family", "svm"), ("search_budget", 0), ("window_days", 1000),
                                      ("end", "31/01/2013")])
def test_trigger_form_rejects_bad_values(dag, key, bad):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=key):
        params[key] = bad


def publish_two_days(root: str) -> None:
    lake = source_lake("nycflights", root)  # the source's namespace of the lake, where the DAG reads
    for ds in ("2013-01-01", "2013-01-02"):
        publish_partition(lake, "features/flights", f"ds={ds}", [PartitionFile("part-0.parquet", b"x", {"rows": 1})])


def test_window_without_data_fails_in_planning(dag, tmp_path, monkeypatch):
    root = f"file://{tmp_path}/lake"
    publish_two_days(root)
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", root)
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"end": "2013-01-02", "holdout_days": 1})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states["plan_training"] == "failed", states
    assert states["train_and_register"] == "upstream_failed" and states["publish_champion"] == "upstream_failed"


def test_more_validation_days_than_the_window_fails_in_planning_with_the_reason(dag, tmp_path, monkeypatch, capfd):
    """Used to be cut to one validation day without a word; the form accepts each value alone."""
    root = f"file://{tmp_path}/lake"
    publish_two_days(root)
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", root)
    dr = dag.test(logical_date=pendulum.now("UTC"),
                  run_conf={"end": "2013-01-02", "holdout_days": 1, "window_days": 5, "validation_days": 5})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states["plan_training"] == "failed", states
    assert states["train_and_register"] == "upstream_failed"
    out, err = capfd.readouterr()
    assert "validation_days (5) must be smaller than window_days (5)" in out + err
