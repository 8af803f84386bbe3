"""score_flights' shape (scheduled on the features asset, emits the predictions asset, trigger form,
templated job arguments) and its day planning over a real lake's manifests. The DAG run itself
(no champion: skipped with the reason) and the job: tests/test_score_job.py."""

import copy
from types import SimpleNamespace

import pytest

from lakeforge.lake import source_lake
from lakeforge.publish import PartitionFile, publish_partition

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "score_flights.py"))
    assert bag.import_errors == {}
    return bag.dags["score_flights"]


def test_scheduled_on_features_emitting_predictions(dag):
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["nycflights.features.flights"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert {"lakeforge", "scoring", "spark"} <= set(dag.tags) and "model_version" in dag.doc_md
    score = dag.get_task("spark_score")
    assert score.upstream_task_ids == {"plan_scoring"}
    assert [a.name for a in score.outlets] == ["nycflights.predictions.flights"]
    assert dag.get_task("plan_scoring").outlets == []
    for task in dag.tasks:
        assert task.owner == "lakeforge" and task.retries >= 1
    args = score.application_args
    assert args[args.index("--model-version") + 1] == "{{ ti.xcom_pull(task_ids='plan_scoring')['model_version'] }}"
    assert args[args.index("--run-id") + 1] == "{{ run_id }}"
    assert score.application.endswith("spark_jobs/score_flights.py")
    assert score.conf["spark.sql.shuffle.partitions"]


def test_job_arguments_the_dag_renders_parse():
    """What the templates render to (a champion run, then a forced rescore) is what the job accepts."""
    from spark_jobs.score_flights import parse_args, parse_dates

    a = parse_args(["--dates", "2013-01-01..2013-01-03", "--model-version", "3", "--run-id", "r", "--no-force"])
    assert parse_dates(a) == ["2013-01-01", "2013-01-02", "2013-01-03"] and a.model_version == "3" and not a.force
    assert parse_args(["--dates", "2013-01-01", "--force"]).force
    assert parse_args(["--dates", "2013-01-01", "--model-version", ""]).model_version is None


@pytest.mark.parametrize("key, bad", [("model_version", "v3"), ("start", "31/01/2013"), ("force", "yes")])
def test_trigger_form_rejects_bad_values(dag, key, bad):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=key):
        params[key] = bad


def publish_features(root: str, days) -> None:
    lake = source_lake("nycflights", root)
    for ds in days:
        publish_partition(lake, "features/flights", f"ds={ds}",
                          [PartitionFile("part-0.parquet", b"x" * 10, {"rows": 1})])


def events(*extras):
    return {"nycflights.features.flights": [SimpleNamespace(extra=e) for e in extras]}


def test_plan_dates_from_events_and_from_the_form(tmp_path):
    from lakeforge.orchestration.score_dag import plan_dates

    root = f"file://{tmp_path}/lake"
    publish_features(root, ["2013-01-01", "2013-01-02"])
    uri = source_lake("nycflights", root).root_uri
    # The transform's events name the published days; one not published (any more) is left out.
    days, size = plan_dates({}, events({"dates": ["2013-01-02", "2013-01-01"], "run_id": "a"},
                                       {"dates": ["2013-01-03"]}, None), uri)
    assert days == ["2013-01-01", "2013-01-02"] and size > 0
    assert plan_dates({}, None, uri) == ([], 0)
    # A manual range must be wholly published: the missing days are named, before any Spark.
    assert plan_dates({"start": "2013-01-01", "end": "2013-01-02"}, None, uri)[0] == ["2013-01-01", "2013-01-02"]
    with pytest.raises(ValueError, match=r"features/flights partition for 2013-01-03\.\.2013-01-04"):
        plan_dates({"start": "2013-01-01", "end": "2013-01-04"}, None, uri)
    with pytest.raises(ValueError, match="before start"):
        plan_dates({"start": "2013-01-02", "end": "2013-01-01"}, None, uri)
    with pytest.raises(ValueError, match="both start and end"):
        plan_dates({"start": "2013-01-02"}, None, uri)
