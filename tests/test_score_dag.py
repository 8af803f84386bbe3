"""score_flights' shape (scheduled on the features asset, emits the predictions asset, trigger form,
templated job arguments), its day planning over a real lake's manifests, and the retraining loop:
``request_retraining`` emits the retraining asset with the reason only when the run's decision
fired, and train_delay_model runs on it beside its weekly schedule, passing the reason to the job.
The DAG run itself (no champion: skipped with the reason) and the job: tests/test_score_job.py."""

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
    from airflow.sdk.definitions.asset import AssetAny

    # New feature days, or a new champion: the days published before the first champion get scored
    # without waiting for another delivery (plan_scoring's pending days).
    assert isinstance(dag.timetable.asset_condition, AssetAny)
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["nycflights.features.flights",
                                                                       "models.flight_delay"]
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
    assert score.application.endswith("spark_jobs/score.py")
    assert args[args.index("--pipeline") + 1] == "nycflights"
    assert score.conf["spark.sql.shuffle.partitions"]
    # Its own task: the scoring task succeeds without a retraining decision too (outlets always emit).
    request = dag.get_task("request_retraining")
    assert request.upstream_task_ids == {"spark_score"} and request.trigger_rule == "none_failed"
    assert [a.name for a in request.outlets] == ["nycflights.monitoring.retrain_requested"]


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
    from lakeforge.orchestration.score_dag import plan_dates as score_dates

    def plan_dates(params, triggering, lake_uri):
        return score_dates(params, triggering, "features/flights", "predictions/flights", lake_uri)

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


def test_request_retraining_emits_the_reason_only_when_the_policy_fired(dag, tmp_path, monkeypatch):
    """The task reads the scoring run's report (as the job wrote it) and sets the event's extra; a run
    whose decision did not fire (or that took none) is skipped: no event."""
    from collections import defaultdict

    from airflow.sdk.exceptions import AirflowSkipException

    from lakeforge.reports import write_report

    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    lake = source_lake("nycflights")
    reason = "retrain v3: roc_auc 0.7012 over the last 7 evaluated days (2013-02-01..2013-02-07) vs holdout 0.7700"
    fired = {"retrain": True, "reason": reason, "trigger": "performance", "model_version": "3", "as_of": "2013-02-07",
             "policy": {"metric": "roc_auc"}, "performance": {"drop": 0.0688}, "drift": {}}
    base = {"dates": ["2013-02-07", "2013-02-07"], "model": {"name": "flight_delay", "version": "3"},
            "monitoring": {"days": ["2013-02-07"]}}
    write_report(lake, "score_flights", {**base, "run_id": "fired", "retraining": fired})
    write_report(lake, "score_flights", {**base, "run_id": "quiet", "retraining": {
        **fired, "retrain": False, "reason": "no retraining of v3: within 0.03", "trigger": None}})
    task = dag.get_task("request_retraining")
    events = defaultdict(SimpleNamespace)
    assert task.python_callable(run_id="fired", outlet_events=events) == reason
    (asset,) = events
    extra = events[asset].extra
    assert asset.name == "nycflights.monitoring.retrain_requested"
    assert extra["reason"] == reason and extra["model_version"] == "3" and extra["trigger"] == "performance"
    assert extra["scoring_run_id"] == "fired" and extra["monitored_days"] == ["2013-02-07"]
    for run_id, why in (("quiet", "within 0.03"), ("no-report", "no retraining decision")):
        events = defaultdict(SimpleNamespace)
        with pytest.raises(AirflowSkipException, match=why):
            task.python_callable(run_id=run_id, outlet_events=events)
        assert not events


def test_training_runs_on_a_retraining_request_with_its_reason():
    """train_delay_model: weekly OR features OR a retraining request (an AssetAny: a list would wait
    for both); a request trains with one new day (a features event needs min_new_days) and hands
    its reason to the job's command line."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.sdk.definitions.asset import AssetAny

    from lakeforge.orchestration.train_dag import decide_plan, retrain_reasons
    from lakeforge.settings import PROJECT_ROOT
    from spark_jobs.train_delay_model import parse_args

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "train_delay_model.py"))
    train = bag.dags["train_delay_model"]
    assert isinstance(train.timetable, AssetOrTimeSchedule) and isinstance(train.timetable.asset_condition, AssetAny)
    assert [a.name for a in train.timetable.asset_condition.objects] == [
        "nycflights.features.flights", "nycflights.monitoring.retrain_requested"]
    argv = train.get_task("train_and_register").application_args
    assert argv[argv.index("--trigger-reason") + 1] == "{{ ti.xcom_pull(task_ids='plan_training').get('trigger_reason') or '' }}"

    def event(name, extra):
        return SimpleNamespace(asset=SimpleNamespace(name=name), extra=extra)

    reason = "retrain v3: drift: PSI more than 0.25 above usual on 3 consecutive scored days"
    triggering = {"a": [event("nycflights.features.flights", {"dates": ["2013-02-08"]})],
                  "b": [event("nycflights.monitoring.retrain_requested", {"reason": reason})]}
    assert retrain_reasons(triggering, "nycflights") == [reason]
    assert retrain_reasons({"a": triggering["a"]}, "nycflights") == []
    params = {"end": None, "window_days": 14, "holdout_days": 7, "validation_days": 4, "model_family": "lr",
              "search_budget": 1, "search_parallelism": 1}
    days = [f"2013-01-{d:02d}" for d in range(1, 32)] + ["2013-02-01"]
    plan = decide_plan(params, "asset_triggered", days, "2013-01-31", 7, [reason])
    assert plan["train"] and plan["trigger_reason"] == reason
    plan = decide_plan(params, "asset_triggered", days, "2013-01-31", 7)
    assert not plan["train"] and plan["trigger_reason"] == ""
    assert parse_args(["--run-key", "k", "--trigger-reason", reason]).trigger_reason == reason
    assert parse_args(["--run-key", "k", "--trigger-reason", ""]).trigger_reason == ""
