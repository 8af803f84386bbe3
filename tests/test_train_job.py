"""The training job end to end on real features (6 days of January) against a real MLflow server:
tracking, registration, the champion alias, dedupe by run key, and an outage mid-registration; the
retraining request's reason recorded (run tag, version tag, promotion log) and the version's drift
reference profile stored on its run; what a person sees: a progress line per search trial, the
version's one-line description and its few tags, metrics named by what they were measured on,
plots on the run page."""

import json
import logging
import re
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from lakeforge.lake import Lake
from lakeforge.publish import read_manifest
from lakeforge.training import progress, promotion, registry
from lakeforge.training.spec import load_model_spec
from lakeforge.training.tracking import MlflowUnavailable, pip_requirements, scratch_space, temp_folders_in
from spark_jobs import train_delay_model, transform_flights
from tests.helpers import environ, ingest_days
from tests.mlflow_server import mlflow_server  # noqa: F401  (fixture)

DAYS = [date(2013, 1, 1) + timedelta(days=i) for i in range(6)]
NAME = "flight_delay"
FLIGHTS = load_model_spec("nycflights")  # its columns, label and task (build_pipeline's spec)
REASON = "retrain v0: roc_auc 0.6900 over the last 7 evaluated days (2013-01-01..2013-01-07) vs holdout 0.7700"
# Every tag of a decided version: what a person reads, then what the code needs (registry.VERSION_TAGS).
VERSION_TAG_KEYS = {"lakeforge.decision", "lakeforge.champion_before", "lakeforge.holdout_roc_auc",
                    "lakeforge.holdout", "lakeforge.train_window", "lakeforge.family", "lakeforge.trigger",
                    "lakeforge.data_sha256",
                    "lakeforge.run_key", "lakeforge.state", "lakeforge.artifact_sha256", "lakeforge.artifact_manifest"}
TRIAL_LINE = re.compile(r"^trial (\d+)/(\d+): (\w+)( \(baseline\))? (.*) -> val ROC AUC (0\.\d{4}) "
                        r"\(best so far (0\.\d{4}), trial (\d+)\), fit \d+\.\ds$")


@pytest.fixture(scope="module")
def features_lake(spark, tmp_path_factory):
    """features/flights for 2013-01-01..06, built by the real ingest and transform."""
    root = tmp_path_factory.mktemp("train")
    lake = Lake(f"file://{root}/lake")
    ingest_days(lake, Lake(f"file://{root}/landing/nycflights"), DAYS)
    transform_flights.run(spark, lake, [d.isoformat() for d in DAYS])
    return lake


def args(lake: Lake, run_key: str, **over):
    argv = ["--run-key", run_key, "--lake", lake.root_uri, "--holdout-days", "2", "--validation-days", "1",
            "--window-days", "30", "--dag-id", "train_delay_model", "--dag-run-id", run_key.split("/")[-1],
            "--triggered-by", "manual:tester"]
    for k, v in over.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return train_delay_model.parse_args(argv)


def versions(client, run_key=None):
    filt = f"name = '{NAME}'" + (f" and tags.`{registry.RUN_KEY_TAG}` = '{run_key}'" if run_key else "")
    return sorted(client.search_model_versions(filt), key=lambda v: int(v.version))


def test_xgboost_pipeline_takes_the_feature_columns_and_names_their_importance(spark, features_lake):
    """xgboost.spark gets the feature columns themselves (no assembled vector): the fitted
    pipeline scores a features DataFrame and its importance is keyed by feature names."""
    from lakeforge.training.trainers import build_pipeline, feature_importance
    from lakeforge.pipelines.nycflights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

    df = spark.read.parquet(features_lake.uri("features/flights")).select(*FEATURE_COLUMNS, "label")
    model = build_pipeline("xgboost", {"n_estimators": 5, "max_depth": 3}, num_workers=2, spec=FLIGHTS).fit(df)
    assert [type(s).__name__ for s in model.stages] == ["StringIndexerModel", "SparkXGBClassifierModel"]
    scored = model.transform(df.limit(50)).select("probability").collect()
    assert len(scored) == 50 and all(0 < row.probability[1] < 1 for row in scored)
    importance = feature_importance("xgboost", model)
    assert importance and set(importance) <= set(CATEGORICAL_FEATURES + NUMERIC_FEATURES)


def test_lightgbm_trains_on_every_worker_and_scores_like_its_booster(spark, features_lake, tmp_path):
    """The lightgbm family: one model trained by two barrier tasks together over LightGBM's network
    (each holding half of the rows), scored by Spark exactly as by the booster itself, saved and
    loaded back as part of the pipeline."""
    import lightgbm as lgb
    import numpy as np
    from pyspark.ml import PipelineModel

    from lakeforge.training.evaluate import with_probability
    from lakeforge.training.trainers import build_pipeline, feature_importance
    from lakeforge.pipelines.nycflights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

    df = spark.read.parquet(features_lake.uri("features/flights")).select(*FEATURE_COLUMNS, "label").cache()
    rows = df.count()
    params = {"n_estimators": 5, "num_leaves": 7, "subsample": 1.0, "colsample_bytree": 1.0}
    model = build_pipeline("lightgbm", params, num_workers=2, spec=FLIGHTS).fit(df)
    assert [type(s).__name__ for s in model.stages] == ["StringIndexerModel", "SparkLGBMClassifierModel"]
    stats = model.stages[-1].worker_stats
    assert [w["rank"] for w in stats] == [0, 1] and all(w["rows"] > 0 for w in stats)
    assert sum(w["rows"] for w in stats) == rows
    # Data-parallel: every split is chosen on all workers' rows, so the first tree's root counts them all.
    booster = model.stages[-1].get_booster()
    assert booster.dump_model()["tree_info"][0]["tree_structure"]["internal_count"] == rows

    sample = df.limit(300).cache()
    cols = [f"{c}_idx" for c in CATEGORICAL_FEATURES] + NUMERIC_FEATURES  # the indexed rows the booster saw
    scored = with_probability(model.transform(sample)).select("p", *cols).toPandas()
    x = scored[cols].to_numpy(dtype=np.float32, na_value=np.nan)
    np.testing.assert_allclose(scored["p"], lgb.Booster(model_str=booster.model_to_string()).predict(x), rtol=1e-6)

    model.write().save(str(tmp_path / "model"))
    again = with_probability(PipelineModel.load(str(tmp_path / "model")).transform(sample)).select("p").toPandas()
    np.testing.assert_allclose(again["p"], scored["p"], rtol=1e-12)
    importance = feature_importance("lightgbm", model)
    assert importance and set(importance) <= set(CATEGORICAL_FEATURES + NUMERIC_FEATURES)

    with pytest.raises(Exception, match="got no rows"):  # more workers than rows: a clear error
        build_pipeline("lightgbm", params, num_workers=2, spec=FLIGHTS).fit(df.limit(1))
    sample.unpersist()
    df.unpersist()


CLUSTER_FIT = """
import json, sys
from lakeforge.spark import session
from lakeforge.training.evaluate import with_probability
from lakeforge.training.trainers import build_pipeline
from lakeforge.training.spec import load_model_spec
from lakeforge.pipelines.nycflights.features import FEATURE_COLUMNS
spark = session("lightgbm-on-cluster", master=sys.argv[1])
df = spark.read.parquet(sys.argv[2]).select(*FEATURE_COLUMNS, "label")
model = build_pipeline("lightgbm", {"n_estimators": 5, "num_leaves": 7}, num_workers=2,
                       spec=load_model_spec("nycflights")).fit(df)
p = with_probability(model.transform(df)).selectExpr("count(*) AS n", "min(p) AS lo", "max(p) AS hi").first()
print("RESULT", json.dumps({"stats": model.stages[-1].worker_stats, "rows": df.count(), "scored": p.n,
                            "p": [p.lo, p.hi], "app": spark.sparkContext.applicationId}), flush=True)
spark.stop()
"""


def test_lightgbm_trains_across_the_executors_of_a_standalone_cluster(spark_cluster, features_lake, tmp_path):
    """On a real standalone cluster (authenticated, encrypted RPC) the barrier tasks run in the
    worker's executor JVM, not the driver: LightGBM's network forms there and the model comes back."""
    import os
    import subprocess
    import sys

    from tests.helpers import jvm_scratch_in_test_tmp, stop_process_groups

    env = {**os.environ, **jvm_scratch_in_test_tmp(), "LAKEFORGE_SPARK_AUTH_SECRET": spark_cluster.auth_secret}
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER_FIT, spark_cluster.master_url,
                             features_lake.uri("features/flights")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        stop_process_groups([proc])
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, out[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert [w["rank"] for w in result["stats"]] == [0, 1]
    assert sum(w["rows"] for w in result["stats"]) == result["rows"] == result["scored"]
    assert 0 < result["p"][0] < result["p"][1] < 1
    assert result["app"].startswith("app-")  # a standalone application (local mode names it local-...)


def train_leaving_nothing_behind(spark, a, folder: Path) -> dict:
    """Train, and check the run left nothing in the temporary folders (mlflow.spark leaves its
    model copies in tempfile's folder and in MLFLOW_DFS_TMP unless the job cleans up after it)."""
    folder.mkdir()
    with temp_folders_in(str(folder)):
        result = train_delay_model.train(spark, a)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == []
    return result


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def first_run(spark, features_lake, mlflow_server, tmp_path_factory):
    """The first run, with what it reported as it went: the lines on the search's logger (the task
    log) and those written to the progress file (what ``make demo`` prints)."""
    folder = tmp_path_factory.mktemp("first")
    handler, logger = Lines(), logging.getLogger("lakeforge.training.search")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        with environ({progress.PROGRESS_FILE_ENV: str(folder / "progress.log")}):
            result = train_leaving_nothing_behind(
                spark, args(features_lake, "train_delay_model/manual__1", family="xgboost", search_budget=1,
                            search_parallelism=2, trigger_reason=REASON), folder / "tmp")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    print(f"\nfirst training run: {time.perf_counter() - started:.1f}s, {result['family']} "
          f"holdout AUC {result['metrics']['roc_auc']:.4f}, decision {result['decision']}")
    result["progress"] = {"log": handler.lines, "file": (folder / "progress.log").read_text().splitlines()}
    return result


def test_training_run_is_tracked_registered_and_champion(spark, features_lake, mlflow_server, first_run):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    r = first_run
    assert r["version"] == "1" and r["decision"] == "promoted"
    assert r["reasons"][0].startswith("roc_auc ") and "vs baseline 0.5000" in r["reasons"][0]
    assert r["split"]["holdout_start"] == "2013-01-05" and r["split"]["train_end"] == "2013-01-04"

    run = client.get_run(r["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["holdout_start"] == "2013-01-05" and run.data.params["validation_start"] == "2013-01-04"
    # Metrics named by what they were measured on: the whole holdout, the gate days, the validation days.
    metrics = run.data.metrics
    holdout = ("roc_auc", "pr_auc", "log_loss", "brier", "positive_rate", "mean_prediction", "calibration_error",
               "rows")
    assert {f"holdout_{k}" for k in holdout} | {"fit_s", "holdout_roc_auc_per_fit_s", "best_valid_roc_auc",
                                                "gate_days"} <= set(metrics)
    assert not set(holdout) & set(metrics) and "auc_per_fit_s" not in metrics  # no unqualified name left
    assert {f"gate_challenger_{k}" for k in holdout} | {f"gate_baseline_{k}" for k in holdout if k != "rows"} <= set(
        metrics) and not any(k.startswith("gate_champion_") for k in metrics)  # no champion yet
    assert metrics["gate_days"] == 2 and metrics["gate_challenger_roc_auc"] == metrics["holdout_roc_auc"]
    assert metrics["gate_baseline_roc_auc"] == 0.5
    assert {f"baseline_lr_valid_{k}" for k in holdout} <= set(metrics)
    assert 0.55 < metrics["holdout_roc_auc"] < 0.95 and 0 < metrics["holdout_log_loss"] < 1
    assert metrics["holdout_roc_auc"] == r["metrics"]["roc_auc"]
    tags = run.data.tags
    assert tags["airflow.dag_run_id"] == "manual__1" and tags["airflow.triggered_by"] == "manual:tester"
    assert len(tags["mlflow.source.git.commit"]) == 40
    statuses = [read_manifest(features_lake, "features/flights", f"ds={d}").get("quality", {}).get("status", "unknown")
                for d in DAYS]
    from collections import Counter

    assert tags["lakeforge.quality"] == ",".join(f"{k}={v}" for k, v in sorted(Counter(statuses).items()))
    assert set(statuses) <= {"passed", "warned"}
    artifacts = {a.path for a in client.list_artifacts(r["run_id"])}
    assert {"features.json", "split.json", "input_partitions.json", "feature_importance.json", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(r["run_id"], "plots")} == {
        "plots/roc_curve.png", "plots/pr_curve.png", "plots/calibration.png", "plots/feature_importance.png"}
    # ... and the same plots as keyed images: the run page's image grid (MLflow's tag says there are some).
    images = {a.path.split("/", 1)[1].split("+", 1)[0] for a in client.list_artifacts(r["run_id"], "images")
              if a.path.endswith(".png")}
    assert images == {"holdout_roc_curve", "holdout_pr_curve", "holdout_calibration", "feature_importance"}
    assert tags["mlflow.loggedImages"] == "True"

    # The exact input partitions: lake URI + content hash, per context.
    inputs = {(d.dataset.name, d.tags[0].value): d.dataset for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == sorted([(f"features/flights/ds={d}", "training") for d in DAYS[:4]]
                                    + [(f"features/flights/ds={d}", "evaluation") for d in DAYS[4:]])
    ds5 = inputs[("features/flights/ds=2013-01-05", "evaluation")]
    manifest = read_manifest(features_lake, "features/flights", "ds=2013-01-05")
    assert json.loads(ds5.profile)["content_sha256"] == manifest["content_sha256"]
    assert json.loads(ds5.source)["uri"] == features_lake.uri("features/flights", "ds=2013-01-05")

    # Search trials, fitted side by side: nested runs of the parent (the LR baseline + the budget).
    trials = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{r['run_id']}'")
    assert sorted(t.data.tags["lakeforge.family"] for t in trials) == ["lr", "xgboost"]
    assert r["family"] == max(r["trials"], key=lambda t: t["valid"]["roc_auc"])["family"]
    assert all(t.info.status == "FINISHED" and "valid_roc_auc" in t.data.metrics for t in trials)

    # Progress: one line per trial as it finished, on the search's logger (the task log) and in the
    # progress file (what `make demo` prints); the numbers are the trial runs' own.
    reported = [line for line in r["progress"]["log"] if line.startswith("trial ")]
    assert r["progress"]["file"] == [line for line in r["progress"]["log"]]
    assert r["progress"]["log"][0] == ("search: 2 trial(s) (1 xgboost + the lr baseline), 2 at a time, "
                                       "scored on the validation days")
    parsed = [TRIAL_LINE.match(line) for line in reported]
    assert len(parsed) == 2 and all(parsed), reported
    by_number = {int(p.group(1)): p for p in parsed}
    assert sorted(by_number) == [1, 2] and {p.group(2) for p in parsed} == {"2"}
    assert by_number[1].group(3) == "lr" and by_number[1].group(4) == " (baseline)"
    assert by_number[2].group(3) == "xgboost"
    runs = {t.info.run_name: t for t in trials}
    assert set(runs) == {"trial-01-lr", "trial-02-xgboost"}
    for number, p in by_number.items():
        run_auc = runs[f"trial-{number:02d}-{p.group(3)}"].data.metrics["valid_roc_auc"]
        assert p.group(6) == f"{run_auc:.4f}"
    last = parsed[-1]  # the best so far, once both finished: the better one
    best = max(by_number.items(), key=lambda kv: (float(kv[1].group(6)), -kv[0]))
    assert (last.group(7), int(last.group(8))) == (best[1].group(6), best[0])

    # Registry: one complete version carrying the decision, both aliases on it; its tags are the few a
    # person reads (and the code needs), its description says what was decided and why.
    (v,) = versions(client)
    assert set(v.tags) == VERSION_TAG_KEYS | {"lakeforge.trigger_reason"}
    assert v.tags[registry.STATE_TAG] == "complete" and v.tags["lakeforge.decision"] == "promoted"
    assert v.tags["lakeforge.champion_before"] == "none" and v.tags["lakeforge.family"] == r["family"]
    assert v.tags["lakeforge.trigger"] == "manual:tester"
    assert v.tags["lakeforge.train_window"] == "2013-01-01..2013-01-04"
    assert v.tags["lakeforge.holdout"] == "2013-01-05..2013-01-06"
    assert v.tags["lakeforge.holdout_roc_auc"] == f"{metrics['holdout_roc_auc']:.4f}"
    from lakeforge.training.data import data_sha256, feature_partitions

    assert v.tags["lakeforge.data_sha256"] == data_sha256(feature_partitions(features_lake, "features/flights"))
    assert v.tags["lakeforge.data_sha256"] == run.data.params["data_sha256"]
    assert v.description == (
        f"Promoted to champion (first model): holdout ROC AUC {metrics['holdout_roc_auc']:.4f} vs the trivial baseline "
        f"0.5000 (2013-01-05..01-06), {metrics['holdout_roc_auc'] - 0.5:+.4f} > margin 0.0020")
    assert tags["mlflow.note.content"] == v.description  # the run page says the same
    # The days the model saw, read back (from its run's params) by the gate when it is champion.
    assert registry.training_window(v) == promotion.TrainingWindow(
        "2013-01-01", "2013-01-04", "2013-01-04", "2013-01-04", source=f"run {r['run_id']} params")
    assert registry.holdout_window(v) == ("2013-01-05", "2013-01-06")
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert client.get_model_version_by_alias(NAME, "challenger").version == "1"
    entry = promotion.read_log(features_lake, NAME)[-1]
    assert entry["version"] == "1" and entry["decision"] == "promoted" and entry["champion_after"] == "1"
    assert entry["trigger"]["dag_run_id"] == "manual__1"
    # Why it ran (the retraining policy's reason): on the run, the version and in the promotion log.
    assert tags["lakeforge.trigger_reason"] == v.tags["lakeforge.trigger_reason"] == entry["trigger"]["reason"] == REASON
    # The drift reference profile, on the version's run: the window's features, the holdout's predictions.
    from lakeforge.monitoring import drift, store

    profile = drift.load_reference_profile(client, NAME, "1")
    assert profile["window"] == {"train_start": "2013-01-01", "train_end": "2013-01-04"}
    assert profile["prediction_days"] == ["2013-01-05", "2013-01-06"] and profile["model_version"] == "1"
    assert profile["days"] == 4 and profile["rows"] == r["train_rows"] and profile["prediction"]["rows"] > 0
    assert store.PROFILE_ARTIFACT in {a.path for a in client.list_artifacts(r["run_id"], "monitoring")}
    print(f"\nreference profile: {r['timings']['reference_profile_s']:.1f}s of {r['timings']['total_in_app_s']:.1f}s")
    assert entry["compared_days"] == ["2013-01-05", "2013-01-06"] and entry["excluded_days"] == []


def test_champion_loads_back_and_scores_a_spark_dataframe(spark, features_lake, mlflow_server, first_run):
    import mlflow
    from mlflow.models import get_model_info

    from lakeforge.training.evaluate import with_probability
    from lakeforge.pipelines.nycflights.features import FEATURE_COLUMNS

    with scratch_space():  # what a scorer does too: MLflow's downloads go when it is done
        info = get_model_info(f"models:/{NAME}@champion")
        assert info.signature is not None and [c.name for c in info.signature.inputs] == FEATURE_COLUMNS
        assert info.saved_input_example_info is not None
        reqs = mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion/requirements.txt")
        assert open(reqs).read().split() == pip_requirements()
        with train_delay_model.checksummed_local_fs(spark):
            model = mlflow.spark.load_model(f"models:/{NAME}@champion")
        features = spark.read.parquet(features_lake.uri("features/flights")).select(*FEATURE_COLUMNS)
        scored = with_probability(model.transform(features))
        stats = scored.selectExpr("count(*) AS n", "min(p) AS lo", "max(p) AS hi").first()
    assert stats.n == features.count() and 0 <= stats.lo < stats.hi <= 1


def test_rerun_of_same_run_key_registers_nothing_new(spark, features_lake, mlflow_server, first_run):
    from mlflow import MlflowClient

    again = train_delay_model.train(spark, args(features_lake, "train_delay_model/manual__1", family="xgboost"))
    assert again["reused"] and again["version"] == "1"
    assert [v.version for v in versions(MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri))] == ["1"]


def test_mlflow_down_then_crash_mid_registration_then_retry(spark, features_lake, mlflow_server, first_run,
                                                            tmp_path):
    from mlflow import MlflowClient

    key = "train_delay_model/manual__2"
    # The default family (LightGBM across executors) this time: its model is registered and loaded back.
    quick = {"family": "lightgbm", "search_budget": 1, "no_baseline": True}
    mlflow_server.stop()
    t = time.perf_counter()
    with pytest.raises(MlflowUnavailable, match=f"{mlflow_server.uri} is unreachable"):
        train_delay_model.train(spark, args(features_lake, key, **quick))
    assert time.perf_counter() - t < 15  # fails fast: Airflow does the retrying
    mlflow_server.start()
    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    assert versions(client, key) == []  # nothing was registered

    # The server dies again right after the version is created (while the champion is scored).
    def kill_when_registered():
        deadline = time.time() + 300
        while time.time() < deadline:
            if versions(client, key):
                mlflow_server.stop()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_when_registered, daemon=True)
    watcher.start()
    with pytest.raises(Exception):  # noqa: B017  (whatever the client raises on a dead server)
        train_delay_model.train(spark, args(features_lake, key, **quick))
    watcher.join(timeout=10)
    mlflow_server.start()
    (half,) = versions(client, key)
    assert half.tags[registry.STATE_TAG] == "pending"  # what a crash leaves behind

    # Airflow's retry: the half-registered version is removed, exactly one complete version remains.
    # It scores the champion too (mlflow.spark.load_model): still nothing left in temp folders.
    retry = train_leaving_nothing_behind(spark, args(features_lake, key, **quick), tmp_path / "tmp")
    (v,) = versions(client, key)
    assert v.version == retry["version"] != half.version and v.tags[registry.STATE_TAG] == "complete"
    assert v.tags["lakeforge.decision"] == retry["decision"] and v.tags["lakeforge.champion_before"] == "1"
    assert set(v.tags) == VERSION_TAG_KEYS  # no retraining reason this time
    assert v.description.startswith("Promoted to champion: " if retry["decision"] == "promoted"
                                    else "Kept as challenger: ")
    assert "vs champion v1 " in v.description and "on the same days (2013-01-05..01-06)" in v.description
    assert [x.version for x in versions(client)] == ["1", retry["version"]]
    champion = client.get_model_version_by_alias(NAME, "champion").version
    assert champion == (retry["version"] if retry["decision"] == "promoted" else "1")
    stale = client.search_runs([client.get_run(retry["run_id"]).info.experiment_id],
                               f"tags.`lakeforge.run_key` = '{key}'")
    assert sorted(r.info.status for r in stale) == ["FAILED", "FINISHED"]
    log = [e for e in promotion.read_log(features_lake, NAME) if e["run_key"] == key]
    assert len(log) == 1 and log[0]["version"] == retry["version"] and log[0]["champion_before"]["version"] == "1"
    # v1 trained on 01-01..04: the whole holdout 01-05..06 is new to it, nothing left out.
    assert log[0]["champion_before"]["window"]["train_end"] == "2013-01-04" and log[0]["excluded_days"] == []
    assert log[0]["compared_days"] == ["2013-01-05", "2013-01-06"]

    import mlflow

    from lakeforge.training.evaluate import with_probability
    from lakeforge.pipelines.nycflights.features import FEATURE_COLUMNS

    assert retry["family"] == "lightgbm"
    with scratch_space(), train_delay_model.checksummed_local_fs(spark):
        model = mlflow.spark.load_model(f"models:/{NAME}/{retry['version']}")
        assert type(model.stages[-1]).__name__ == "SparkLGBMClassifierModel"
        features = spark.read.parquet(features_lake.uri("features/flights")).select(*FEATURE_COLUMNS)
        stats = with_probability(model.transform(features)).selectExpr("count(*) AS n", "min(p) AS lo",
                                                                       "max(p) AS hi").first()
    assert stats.n == features.count() and 0 < stats.lo < stats.hi < 1
