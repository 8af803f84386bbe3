"""The second pipeline's model through the platform's generic training (issue 20): seattle_weather
declares a multiclass model in ``model.py`` and nothing else; its training DAG, built by the same
factory as nycflights', runs the generic job with a real ``spark-submit`` against a real MLflow
server, registers ``seattle_weather`` and the gate promotes it over the class-share baseline. A
regression spec on the same features runs through the same job in-process. The metrics of both
task types are checked against hand-computed values."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import date

import pendulum
import pytest

from lakeforge.ingest import ingest_partition
from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.seattle_weather import SOURCE, simulator
from lakeforge.settings import PROJECT_ROOT
from lakeforge.training import promotion
from lakeforge.training.spec import load_model_spec
from lakeforge.training.task_metrics import multiclass_metrics, regression_metrics
from lakeforge.transform import job as transform_job
from lakeforge.transform import load_transform
from tests.helpers import environ
from tests.mlflow_server import mlflow_server  # noqa: F401  (fixture)

# 2012-01 .. 2013-06: a year of training (its last 2 months validate the search), a quarter held out.
MONTHS = [date(2012 + m // 12, m % 12 + 1, 1).isoformat() for m in range(18)]
FORM = {"end": "2013-06-01", "window_days": 365, "holdout_days": 91, "validation_days": 61,
        "model_family": "rf", "search_budget": 1, "search_parallelism": 1}


def test_multiclass_metrics_from_the_confusion_cells():
    # 3 classes, 10 rows: (label, predicted, rows, sum of -log p(label))
    cells = [(0, 0, 4, 4 * 0.2), (0, 1, 1, 1.5), (1, 1, 3, 3 * 0.4), (2, 0, 2, 2 * 2.0)]
    m = multiclass_metrics(cells)
    assert m["accuracy"] == pytest.approx(0.7)
    # class 0: P 4/6, R 4/5; class 1: P 3/4, R 3/3; class 2: never predicted -> 0
    f1_0, f1_1 = 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5), 2 * (3 / 4) * 1 / (3 / 4 + 1)
    assert m["f1"] == pytest.approx(0.5 * f1_0 + 0.3 * f1_1)
    assert m["log_loss"] == pytest.approx((0.8 + 1.5 + 1.2 + 4.0) / 10)


def test_regression_metrics_from_sums():
    y, pred = [1.0, 2.0, 4.0], [1.5, 2.0, 3.0]
    sums = {"n": 3, "sse": sum((p - t) ** 2 for p, t in zip(pred, y)), "sae": sum(abs(p - t) for p, t in zip(pred, y)),
            "sy": sum(y), "syy": sum(t * t for t in y)}
    m = regression_metrics(sums)
    mean = sum(y) / 3
    assert m["rmse"] == pytest.approx(math.sqrt(1.25 / 3)) and m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 1.25 / sum((t - mean) ** 2 for t in y))


def test_a_spec_refuses_what_does_not_fit_its_task():
    base = load_model_spec("seattle_weather")
    with pytest.raises(ValueError, match="families \\['lightgbm'\\] do not fit a multiclass task"):
        dataclasses.replace(base, families=("lightgbm",))
    with pytest.raises(ValueError, match="promotion metric 'roc_auc' is not a regression metric"):
        dataclasses.replace(base, task="regression", label="label_temp_max", classes=(), families=None,
                            promotion_metric="roc_auc")
    assert promotion.Policy(metric="rmse").metric == "rmse"  # a regression metric can be promoted on
    # Monitoring needs the key, and a non-binary model its own retraining threshold (in its metric's units).
    with pytest.raises(ValueError, match="name the key columns"):
        dataclasses.replace(base, key=())
    with pytest.raises(ValueError, match="a multiclass model sets retrain_max_drop"):
        dataclasses.replace(base, retrain_max_drop=None)
    with pytest.raises(ValueError, match="retrain_window is a number of partitions"):
        dataclasses.replace(base, retrain_window=0)


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seattle-train")
    with environ({"LAKEFORGE_LAKE_ROOT": f"file://{root}/lake"}):
        yield root


@pytest.fixture(scope="module")
def features_lake(spark, lake_root) -> Lake:
    """18 months delivered, ingested and transformed by the generic job (the DAGs that run these
    steps are tested in test_seattle_weather.py)."""
    lake = source_lake("seattle_weather")
    landing = Lake(f"file://{lake_root}/landing/seattle_weather")
    simulator.deliver(landing, date(2012, 1, 1), date(2013, 6, 30))
    for ds in MONTHS:
        assert ingest_partition(SOURCE, "weather", ds, lake=lake, landing=landing).status == "published"
    result = transform_job.run(spark, lake, load_transform("seattle_weather"), MONTHS, "seattle-train")
    assert result["published"] == MONTHS and result["quality"]["blocked"] == {}
    return lake


def bundle_dag(monkeypatch, file: str):
    """A DAG of seattle_weather's own folder, parsed with the DAG bundles ``make up`` configures."""
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.orchestration.airflow_env import dag_bundles
    from lakeforge.settings import get_settings

    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", dag_bundles(get_settings()))
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "plugins/lakeforge/pipelines/seattle_weather/dags" / file))
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    return dag


@pytest.fixture(scope="module")
def trained(features_lake, airflow_db, mlflow_server):
    """``train_seattle_weather`` run once under Airflow (``dag.test``) with the trigger form's values."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        dag = bundle_dag(monkeypatch, "train_seattle_weather.py")
        dr = dag.test(logical_date=pendulum.now("UTC"), run_conf=FORM)
    return dag, dr, {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


@pytest.mark.airflow
def test_the_training_dag_registers_and_promotes_the_multiclass_model(features_lake, trained, mlflow_server):
    """The trigger form's defaults and family choices are the pipeline's; the run registers
    ``seattle_weather`` v1 as champion (log loss beats the class shares of the training window),
    logs multiclass metrics, and leaves nycflights' model and promotion log alone."""
    from mlflow import MlflowClient

    dag, dr, states = trained
    assert dag.params["model_family"] == "rf" and dag.params["window_days"] == 730
    assert dag.params.get_param("model_family").schema["enum"] == ["lr", "rf"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == [
        "seattle_weather.features.weather", "seattle_weather.monitoring.retrain_requested"]
    assert dr.state == "success", states
    assert states["publish_champion"] == "success", states

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    champion = client.get_model_version_by_alias("seattle_weather", "champion")
    assert champion.version == "1" and champion.tags["lakeforge.decision"] == "promoted"
    assert champion.description.startswith("Promoted to champion (first model): holdout log loss")
    run = client.get_run(champion.run_id)
    assert run.data.tags["lakeforge.task"] == "multiclass" and run.data.tags["lakeforge.pipeline"] == "seattle_weather"
    metrics = run.data.metrics
    assert {"holdout_log_loss", "holdout_accuracy", "holdout_f1", "gate_baseline_log_loss"} <= set(metrics)
    print(f"\nseattle_weather v1 ({run.data.params['chosen_family']}): holdout log loss "
          f"{metrics['holdout_log_loss']:.4f} (class shares {metrics['gate_baseline_log_loss']:.4f}), accuracy "
          f"{metrics['holdout_accuracy']:.4f} (always the commonest class {metrics['gate_baseline_accuracy']:.4f})")
    assert metrics["holdout_log_loss"] < metrics["gate_baseline_log_loss"]
    assert 0.3 < metrics["holdout_accuracy"] <= 1.0
    assert run.data.params["train_start"] >= "2012-03-01" and run.data.params["holdout_end"] == "2013-06-01"
    assert {d.dataset.name for d in run.inputs.dataset_inputs} >= {"features/weather/ds=2013-06-01"}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "seattle_weather"

    (entry,) = promotion.read_log(features_lake, "seattle_weather")
    assert entry["decision"] == "promoted" and entry["policy"]["metric"] == "log_loss"
    assert entry["guards"] == {}  # calibration guards are for a probability of one class
    assert Lake(os.environ["LAKEFORGE_LAKE_ROOT"]).listdir("") == ["seattle_weather"]
    assert client.search_model_versions("name = 'flight_delay'") == []  # the other pipeline's model


@pytest.mark.airflow
def test_the_scoring_dag_scores_and_monitors_with_the_multiclass_champion(spark, features_lake, trained, mlflow_server,
                                                                        monkeypatch):
    """``score_seattle_weather`` (the same factory and generic job as nycflights' scoring) under
    Airflow, as the ``scoring`` account: every month never scored is scored by the champion
    v1 (a pending scan: no event, no form), audited by the pipeline's predictions suite, and
    monitored: per month accuracy, weighted F1 and log loss, a drift report with the predicted
    class's distribution, and the retraining decision on log loss."""
    from pyspark.sql import functions as F

    from lakeforge.monitoring import store
    from lakeforge.publish import list_partitions, read_manifest
    from lakeforge.reports import read_run_report
    from lakeforge.pipelines.seattle_weather import WEATHER_CLASSES

    assert trained[1].state == "success"
    for key, value in mlflow_server.env("scoring").items():
        monkeypatch.setenv(key, value)
    dag = bundle_dag(monkeypatch, "score_seattle_weather.py")
    assert [a.name for a in dag.timetable.asset_condition.objects] == [
        "seattle_weather.features.weather", "models.seattle_weather"]
    assert [a.name for a in dag.get_task("spark_score").outlets] == ["seattle_weather.predictions.weather"]
    dr = dag.test(logical_date=pendulum.now("UTC"))
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert dr.state == "success" and states["spark_score"] == "success", states

    lake = features_lake
    assert list_partitions(lake, "predictions/weather") == [f"ds={m}" for m in MONTHS]
    report = read_run_report(lake, "score_weather", dr.run_id)
    assert report["model"]["name"] == "seattle_weather" and report["model"]["version"] == "1"
    assert report["model"]["threshold"] is None  # a decision threshold is a binary model's
    preds = spark.read.parquet(lake.uri("predictions/weather"))
    assert preds.columns == ["date", "prediction", "predicted_class", "probability", "probabilities", "model_name",
                             "model_version", "model_run_id", "scored_at", "scoring_run_id", "ds"]
    features = spark.read.parquet(lake.uri("features/weather"))
    scored = preds.count()
    assert scored == features.count() == sum(read_manifest(lake, "features/weather", f"ds={m}")["rows"]
                                                    for m in MONTHS)
    # The class is the argmax of the probabilities, named as the spec's classes; they sum to 1.
    bad = preds.where(
        (F.col("probability") != F.array_max("probabilities"))
        | (F.col("predicted_class") != F.element_at(F.array(*[F.lit(c) for c in WEATHER_CLASSES]), F.col("prediction") + 1))
        | (F.abs(F.aggregate("probabilities", F.lit(0.0), lambda acc, x: acc + x) - 1) > 1e-6)
        | (F.size("probabilities") != len(WEATHER_CLASSES)) | (F.col("model_version") != "1"))
    assert bad.count() == 0
    assert read_manifest(lake, "predictions/weather", f"ds={MONTHS[-1]}")["quality"]["status"] == "passed"

    # Monitoring: every month's outcomes are in; accuracy as a person would count it.
    mon = report["monitoring"]
    assert mon["days"] == MONTHS and mon["awaiting_outcomes"] == []
    records = {r["ds"]: r for r in mon["records"]}
    month = MONTHS[-1]
    joined = (preds.where(F.col("ds") == month).join(features.where(F.col("ds") == month), ["date", "ds"], how="inner")
              .agg(F.avg((F.col("prediction") == F.col("label_index")).cast("double")).alias("accuracy"),
                   F.count("*").alias("rows")).first())
    assert records[month]["rows_evaluated"] == joined["rows"] == records[month]["rows_scored"]
    assert records[month]["accuracy"] == pytest.approx(joined["accuracy"])
    assert 0 <= records[month]["f1"] <= 1 and records[month]["log_loss"] > 0
    assert read_manifest(lake, store.PERFORMANCE, f"ds={month}")["model_version"] == "1"
    assert mon["drift"][month]["report"].endswith(f"monitoring/drift/ds={month}/report.html")
    # The decision pools the spec's 3 months after the training window: the holdout months, on
    # which monitoring's log loss (same model, same rows, same definition) is training's.
    from mlflow import MlflowClient

    run = MlflowClient(mlflow_server.uri).get_run(report["model"]["run_id"])
    holdout_months = [m for m in MONTHS if m >= run.data.params["holdout_start"]]
    decision = report["retraining"]
    assert decision["model_version"] == "1", decision
    assert (decision["policy"]["metric"], decision["policy"]["window_days"], decision["policy"]["max_drop"]) == (
        "log_loss", 3, 0.25)
    assert decision["performance"]["days"] == holdout_months == ["2013-04-01", "2013-05-01", "2013-06-01"]
    assert decision["performance"]["value"] == pytest.approx(run.data.metrics["holdout_log_loss"], rel=1e-9)
    assert decision["performance"]["drop"] == pytest.approx(0.0, abs=1e-9)  # the holdout itself: no decay
    # ... but the months after the window drift from it (the dataset's labelling changes in 2013-04:
    # seattle_weather/model.py): the policy asks for a retraining on drift, which is what it is for.
    assert decision["retrain"] and decision["trigger"] == "drift", decision
    assert decision["drift"]["streak"][-3:] == holdout_months, decision

    # A manual rescore of a range from the trigger form scores the months it touches, whole.
    before = read_manifest(lake, "predictions/weather", f"ds={MONTHS[0]}")
    again = dag.test(logical_date=pendulum.now("UTC"),
                     run_conf={"start": "2013-04-15", "end": "2013-06-01", "force": True})
    assert again.state == "success", {ti.task_id: str(ti.state) for ti in again.get_task_instances()}
    rescored = read_run_report(lake, "score_weather", again.run_id)
    assert rescored["published"] == holdout_months and rescored["days"] == 3, rescored  # 04-15 is April's
    assert read_manifest(lake, "predictions/weather", f"ds={MONTHS[0]}") == before  # untouched
    assert read_manifest(lake, "predictions/weather", "ds=2013-06-01")["dag_run_id"] == again.run_id
    print(f"\nscore_seattle_weather: {scored} days scored by v1; {month}: accuracy "
          f"{records[month]['accuracy']:.3f}, log loss {records[month]['log_loss']:.3f}; retraining: {decision['reason']}")


def test_a_regression_model_through_the_same_job(spark, features_lake, mlflow_server, tmp_path):
    """The same features, a regression spec (tomorrow's maximum temperature): the generic job
    searches the LinearRegression baseline and a GBT, registers the model and the gate compares
    RMSE with the training mean's."""
    from lakeforge.mlflow_auth import init
    from lakeforge.training import job

    spec = dataclasses.replace(load_model_spec("seattle_weather"), task="regression", label="label_temp_max",
                               classes=(), families=None, family="gbt", promotion_metric=None,
                               name="seattle_temp_max", experiment="seattle_temp_max", job=None).resolved()
    assert spec.promotion_metric == "rmse" and spec.families == ("gbt", "rf", "linear")
    # Not a pipeline's MODEL, so `make up` did not provision it: the admin grants it as init does
    # for every declared model (the job's account may not even read a model it was not granted).
    init(mlflow_server.auth_dir, mlflow_server.uri, experiment=spec.experiment, model=spec.name)
    args, _ = job.parse_args(["--run-key", "regression/1", "--end", "2013-06-01", "--window-days", "365",
                              "--holdout-days", "91", "--validation-days", "61", "--search-budget", "1",
                              "--search-parallelism", "1"], spec)
    result = job.train(spark, args, spec)
    assert result["decision"] == "promoted", result["reasons"]
    assert [t["family"] for t in result["trials"]][-1] in ("gbt", "linear") and len(result["trials"]) == 2
    m, base = result["metrics"], result["baseline"]
    # The training mean is a constant: no better than the holdout's own mean (R² <= 0).
    print(f"\nseattle_temp_max v{result['version']} ({result['family']}): holdout RMSE {m['rmse']:.2f} "
          f"(training mean {base['rmse']:.2f}), R² {m['r2']:.3f}")
    assert m["rmse"] < base["rmse"] and m["r2"] > 0.5 and base["r2"] <= 0.0
    again = job.train(spark, args, spec)  # the run key is done: nothing registered twice
    assert again["reused"] and again["version"] == result["version"]
