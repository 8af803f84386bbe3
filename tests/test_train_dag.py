"""train_delay_model's shape (schedules, form validation, templated job arguments) and its planning
task under Airflow: a window the data cannot support fails before any Spark application starts."""

import copy

import pendulum
import pytest

from lakeforge.lake import Lake
from lakeforge.publish import PartitionFile, publish_partition

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "train_delay_model.py"))
    assert bag.import_errors == {}
    return bag.dags["train_delay_model"]


def test_scheduled_weekly_and_on_features(dag):
    from airflow.sdk import AssetOrTimeSchedule

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "0 4 * * 1"
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["nycflights.features.flights"]
    assert dag.max_active_runs == 1 and not dag.catchup
    train = dag.get_task("train_and_register")
    assert train.upstream_task_ids == {"anything_to_train"} and [a.name for a in train.outlets] == ["models.flight_delay"]
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


def test_window_without_data_fails_in_planning(dag, tmp_path, monkeypatch):
    lake = Lake(f"file://{tmp_path}/lake")
    for ds in ("2013-01-01", "2013-01-02"):
        publish_partition(lake, "features/flights", f"ds={ds}", [PartitionFile("part-0.parquet", b"x", {"rows": 1})])
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", lake.root_uri)
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"end": "2013-01-02", "holdout_days": 1})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states["plan_training"] == "failed", states
    assert states["train_and_register"] == "upstream_failed"
