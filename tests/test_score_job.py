"""Batch scoring (spark_jobs/score_flights.py) on a real small lake against a real MLflow server
(basic auth, the job running as the read-only ``scoring`` account): 2 days of January built by the
real ingest and transform; a champion fitted with the lr family, logged with its signature and
registered with its artifact digest as the training job does (the registry gate itself is
tests/test_registry_gate.py's subject); a second version of the same artifacts for a rescore.

Checked: no champion -> the DAG run and the job skip with the reason and write nothing; one
prediction per feature row, one model version per partition, the model's own probabilities and
decisions; a rescore with another version replaces a day whole (old files gone, manifest updated)
and leaves the others; a feature table that no longer matches the signature fails naming the
columns; MLflow down fails with the URI before anything is written; the predictions gate blocks a
day mixing two versions. Monitoring in the same run: every scored day evaluated and checked for
drift (records and reports published, metrics on the version's monitoring run, logged as the
scoring account), the retraining decision for the champion firing once (its claimed holdout AUC is
far above what it does on the days) and not again on the same evidence; the score DAG's
``request_retraining`` turns the run's report into the asset event with the reason. The MLflow
server starts beside the transform (~30 s hidden)."""

from __future__ import annotations

import json
import logging
import time
from datetime import date
from pathlib import Path

import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import list_partitions, read_manifest
from spark_jobs import score_flights, train_delay_model, transform_flights
from tests.helpers import environ, ingest_days

FEATURES, PREDICTIONS = "features/flights", "predictions/flights"  # nycflights' model.py

DAYS = ["2013-01-01", "2013-01-02"]
NAME = "flight_delay"
# The retraining policy over this module's 2 days: both days make the trailing window.
SETTINGS = {"LAKEFORGE_SCORE_THRESHOLD": "0.5", "LAKEFORGE_RETRAIN_WINDOW_DAYS": "2",
            "LAKEFORGE_RETRAIN_MAX_DROP": "0.03", "LAKEFORGE_PROMOTION_METRIC": "roc_auc"}
CLAIMED_HOLDOUT_AUC = 0.99  # logged as the champion's holdout roc_auc: its days fall far below it


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    root = f"file://{tmp_path_factory.mktemp('score')}/lake"
    with environ({**SETTINGS, "LAKEFORGE_LAKE_ROOT": root}):
        yield root


@pytest.fixture(scope="module")
def server_starting():
    """This module's MLflow server (``tests.mlflow_server``: basic auth, as the stack runs it),
    started in a thread so that its ~30 s start-up overlaps the transform that builds the lake."""
    import os
    import tempfile
    import threading
    from pathlib import Path

    from tests.mlflow_server import MlflowServer

    server = MlflowServer(Path(tempfile.mkdtemp(prefix="mlflow-server-", dir=os.environ["LAKEFORGE_HOME"])), auth=True)
    failed: list[BaseException] = []

    def start() -> None:
        try:
            server.start()
        except BaseException as exc:  # re-raised by mlflow_server
            failed.append(exc)

    thread = threading.Thread(target=start, name="mlflow-server-start", daemon=True)
    thread.start()
    try:
        yield server, thread, failed
    finally:
        thread.join(timeout=180)
        server.stop()


@pytest.fixture(scope="module")
def lake(spark, lake_root, server_starting, tmp_path_factory) -> Lake:
    """nycflights' namespace: features/flights of 2013-01-01..02 from the real ingest and transform."""
    lake = source_lake("nycflights", lake_root)
    started = time.perf_counter()
    landing = Lake(f"file://{tmp_path_factory.mktemp('landing')}/nycflights")
    ingest_days(lake, landing, [date.fromisoformat(d) for d in DAYS])
    transform_flights.run(spark, lake, DAYS)
    print(f"\nscore lake: {len(DAYS)} days ingested and transformed in {time.perf_counter() - started:.1f}s")
    return lake


@pytest.fixture(scope="module")
def mlflow_server(server_starting, lake):
    """The started server; MLFLOW_TRACKING_URI and the training account's credentials in the
    environment for the module, as ``tests.mlflow_server.mlflow_server`` sets them."""
    import os

    server, thread, failed = server_starting
    thread.join(timeout=180)
    if failed or thread.is_alive():
        raise RuntimeError(f"mlflow server did not start: {failed or 'still starting after 180 s'}")
    print(f"\nmlflow server {server.uri} up in {server.startup_seconds:.1f}s (beside the transform)")
    env = {"MLFLOW_TRACKING_URI": server.uri, **server.env("training")}
    with environ(env):
        yield server
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        if key not in env:
            os.environ.pop(key, None)


@pytest.fixture
def as_scoring(mlflow_server, monkeypatch):
    """The job's own account: it may read versions and download artifacts, nothing else."""
    for key, value in mlflow_server.env("scoring").items():
        monkeypatch.setenv(key, value)


def register(spark, lake: Lake, run_key: str):
    """A model version as the training job registers one (as ``training``): the lr pipeline fitted
    on the lake's days (``search.fit_and_score``), logged with its signature
    (``train_delay_model.log_model``), registered with its artifact digest (``registry.register``),
    its drift reference profile on its run (``train_delay_model.log_reference_profile``).
    Returns (version, logged model URI, the fitted pipeline)."""
    from types import SimpleNamespace

    import mlflow
    from pyspark.sql import functions as F

    from lakeforge.training import registry, tracking
    from lakeforge.training.search import observed_numeric
    from lakeforge.training.trainers import DEFAULTS, build_pipeline
    from lakeforge.pipelines.nycflights.features import FEATURE_COLUMNS

    spec = score_flights.spec()
    tracking.setup()
    with tracking.scratch_space(), mlflow.start_run(run_name=f"score tests {run_key}") as run:
        rows = (spark.read.parquet(lake.uri(FEATURES)).where(F.col("tailnum").isNotNull())
                .select(*FEATURE_COLUMNS, "label").cache())
        model = build_pipeline("lr", {**DEFAULTS["lr"], "maxIter": 10}, numeric=observed_numeric(rows, spec),
                               spec=spec).fit(rows)
        model_uri = train_delay_model.log_model(model, rows, "lr").model_uri
        mlflow.log_metric("roc_auc", CLAIMED_HOLDOUT_AUC)
        version = registry.register(NAME, model_uri, run.info.run_id, run_key, {"lakeforge.family": "lr"})
        started = time.perf_counter()
        train_delay_model.log_reference_profile(model, rows, rows, NAME, version, run.info.run_id,
                                                SimpleNamespace(train=DAYS, holdout=DAYS))
        print(f"\nreference profile of v{version}: {time.perf_counter() - started:.1f}s")
        rows.unpersist()
    return version, model_uri, model


@pytest.fixture(scope="module")
def champion(spark, lake, mlflow_server):
    """v1, made champion by the registry's own alias move."""
    from lakeforge.training import registry

    started = time.perf_counter()
    version, model_uri, model = register(spark, lake, "score_tests/v1")
    assert version == "1" and registry.finish_promotion(NAME, version, "promoted", None)
    print(f"\nchampion v1 fitted, logged and registered in {time.perf_counter() - started:.1f}s")
    return {"version": version, "model_uri": model_uri, "model": model,
            "run_id": registry.client().get_model_version(NAME, version).run_id}


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)


def args(lake: Lake, run_id: str, *extra: str):
    return score_flights.parse_args(["--lake", lake.root_uri, "--run-id", run_id, *extra])


def prediction_files(lake: Lake, ds: str) -> list[str]:
    return sorted(f.path for f in lake.files(f"{PREDICTIONS}/ds={ds}"))


def leftovers(lake: Lake) -> list[str]:
    """Staging or trash of the predictions table (a publish that finished leaves none)."""
    return [n for n in lake.listdir(PREDICTIONS) if n.startswith("_") and lake.listdir(f"{PREDICTIONS}/{n}")
            and n != "_leases"]


def loggers() -> list[logging.Logger]:
    return [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]


def log_handlers() -> dict:
    return {lg: lg.handlers[:] for lg in loggers()}


def restore_log_handlers(saved: dict) -> None:
    """Every logger's handlers as they were; a logger configured meanwhile loses the handlers
    that write to a stream closed by now."""
    for lg in loggers():
        if lg in saved:
            lg.handlers[:] = saved[lg]
        else:
            lg.handlers[:] = [h for h in lg.handlers if not getattr(getattr(h, "stream", None), "closed", False)]


@pytest.mark.airflow
def test_dag_run_without_a_champion_is_skipped_with_the_reason(lake, airflow_db, as_scoring, capfd):
    """Under Airflow (``dag.test``): plan_scoring resolves the champion once, finds none, and
    skips the run with the reason; no Spark application starts."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    handlers = log_handlers()
    try:
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "score_flights.py"))
        dr = bag.dags["score_flights"].test(logical_date=pendulum.now("UTC"),
                                            run_conf={"start": DAYS[0], "end": DAYS[1]})
    finally:  # Airflow points loggers at this test's captured output, which is closed after it
        restore_log_handlers(handlers)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert str(dr.state) == "success" and states == {"plan_scoring": "skipped", "spark_score": "skipped",
                                                     "request_retraining": "skipped"}, states
    out, err = capfd.readouterr()
    assert f"skipped: no champion: models:/{NAME}@champion is not set" in out + err
    assert list_partitions(lake, PREDICTIONS) == []


def test_no_champion_skips_with_the_reason_and_writes_nothing(lake, mlflow_server, as_scoring, capsys):
    """Before any model is promoted (this module's server is fresh): a clean, explained skip, no JVM."""
    result = score_flights.main(["--dates", f"{DAYS[0]}..{DAYS[1]}", "--lake", lake.root_uri, "--run-id", "skip_1"])
    assert result["status"] == "skipped" and result["published"] == []
    assert "no champion" in result["reason"] and f"models:/{NAME}@champion" in result["reason"]
    assert mlflow_server.uri in result["reason"]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("LAKEFORGE_RESULT ")]
    assert json.loads(printed[-1].split(" ", 1)[1])["status"] == "skipped"
    from lakeforge.reports import read_run_report

    assert read_run_report(lake, "score_flights", "skip_1")["reason"] == result["reason"]  # what the DAG shows
    assert list_partitions(lake, PREDICTIONS) == []


def test_scores_every_feature_row_with_the_champion(spark, lake, champion, client, as_scoring):
    from pyspark.sql import functions as F

    from lakeforge.training.evaluate import with_probability

    started = time.perf_counter()
    result = score_flights.score(spark, args(lake, "manual__score_1", "--dates", f"{DAYS[0]},{DAYS[1]}"))
    print(f"\nscoring run (2 days): {time.perf_counter() - started:.1f}s, {result['timings']}, "
          f"monitoring {result['monitoring']['monitor_s']:.1f}s")
    assert result["status"] == "scored" and result["published"] == DAYS, result
    assert result["model"]["version"] == "1" and result["model"]["threshold"] == 0.5
    assert result["model"]["threshold_source"] == "setting LAKEFORGE_SCORE_THRESHOLD"
    assert list_partitions(lake, PREDICTIONS) == [f"ds={d}" for d in DAYS]  # only the days asked for
    assert leftovers(lake) == []

    for ds in DAYS:
        features = read_manifest(lake, FEATURES, f"ds={ds}")
        manifest = read_manifest(lake, PREDICTIONS, f"ds={ds}")
        assert manifest["rows"] == features["rows"] > 0
        assert manifest["model"] == result["model"] and manifest["model"]["run_id"] == champion["run_id"]
        assert manifest["model"]["artifact_sha256"]
        assert manifest["inputs"][FEATURES]["content_sha256"] == features["content_sha256"]
        assert manifest["inputs"][FEATURES]["rows"] == features["rows"]
        assert manifest["quality"]["status"] in ("passed", "warned"), manifest["quality"]
        assert manifest["dag_run_id"] == "manual__score_1" and len(manifest["files"]) == 1
    assert result["rows"]["predictions"] == sum(read_manifest(lake, FEATURES, f"ds={d}")["rows"] for d in DAYS)

    preds = spark.read.parquet(lake.uri(PREDICTIONS))
    assert {f.name: f.dataType.simpleString() for f in preds.schema.fields} == {
        "flight_key": "string", "probability": "double", "decision": "boolean", "model_name": "string",
        "model_version": "string", "model_run_id": "string", "scored_at": "timestamp",
        "scoring_run_id": "string", "ds": "date"}
    per_day = {str(r.ds): r for r in preds.groupBy("ds").agg(
        F.count("*").alias("n"), F.countDistinct("flight_key").alias("keys"),
        F.collect_set("model_version").alias("versions"), F.collect_set("scoring_run_id").alias("runs"),
        F.countDistinct("scored_at").alias("instants")).collect()}
    for ds in DAYS:
        r = per_day[ds]
        assert r.n == r.keys == read_manifest(lake, FEATURES, f"ds={ds}")["rows"]
        assert r.versions == ["1"] and r.runs == ["manual__score_1"] and r.instants == 1

    # Every feature row is scored, flights without a tail number included (monitoring leaves them out).
    feats = spark.read.parquet(*[lake.uri(FEATURES, f"ds={d}") for d in DAYS])
    assert feats.join(preds, "flight_key", "left_anti").count() == 0
    no_tail = feats.where(F.col("tailnum").isNull()).select("flight_key")
    assert no_tail.join(preds, "flight_key").count() == no_tail.count()

    # The probabilities are the model's own transform of the same rows (the pipeline that was
    # fitted and logged, in this process), the decisions its threshold.
    own = with_probability(champion["model"].transform(feats)).select("flight_key", F.col("p").alias("own"))
    diff = preds.join(own, "flight_key").agg(
        F.count("*").alias("n"), F.max(F.abs(F.col("probability") - F.col("own"))).alias("max_diff"),
        F.sum((F.col("decision") != (F.col("own") >= 0.5)).cast("int")).alias("wrong"),
        F.min("probability").alias("lo"), F.max("probability").alias("hi")).first()
    assert diff.n == feats.count() and diff.max_diff == 0.0 and diff.wrong == 0
    assert 0 < diff.lo < diff.hi < 1

    # Again with the same version and the same features: nothing to do, nothing rewritten.
    before = read_manifest(lake, PREDICTIONS, f"ds={DAYS[1]}")
    again = score_flights.score(spark, args(lake, "manual__score_2", "--dates", DAYS[1]))
    assert again["status"] == "unchanged" and again["unchanged"] == [DAYS[1]] and again["published"] == []
    assert read_manifest(lake, PREDICTIONS, f"ds={DAYS[1]}") == before
    # ... and nothing to monitor again (the day's record is of these very predictions), no decision.
    assert again["monitoring"]["days"] == [] and again["retraining"] is None
    check_monitoring(lake, result, client)


def check_monitoring(lake: Lake, result: dict, client) -> None:
    """The scoring run's monitoring: every scored day (outcomes are in) evaluated and checked for
    drift, published and logged; the policy fired for the champion, remembered, never twice."""
    from lakeforge.monitoring import drift, evaluate, store
    from lakeforge.monitoring.monitor import TRIGGERS, decide_and_record, last_fired
    from lakeforge.orchestration.score_dag import retrain_event

    mon = result["monitoring"]
    assert mon["days"] == DAYS and mon["awaiting_outcomes"] == [] and mon["skipped"] == []
    records = {r["ds"]: r for r in mon["records"]}
    assert sorted(records) == DAYS and {r["model_version"] for r in records.values()} == {"1"}
    stored = {r["ds"]: r for r in evaluate.read_performance(lake)}
    for ds in DAYS:
        features = read_manifest(lake, FEATURES, f"ds={ds}")
        assert records[ds]["rows_scored"] == features["rows"] >= records[ds]["rows_evaluated"] > 0
        assert 0.5 < records[ds]["roc_auc"] < CLAIMED_HOLDOUT_AUC - 0.03 and records[ds]["calibration_error"] >= 0
        assert stored[ds]["roc_auc"] == records[ds]["roc_auc"]
        manifest = read_manifest(lake, store.PERFORMANCE, f"ds={ds}")
        assert manifest["model_version"] == "1" and manifest["scored_at"] == result["scored_at"]
        report = drift.read_report(lake, ds)
        assert report["model_version"] == "1" and report["prediction"] is not None
        assert mon["drift"][ds]["report"] == lake.uri(store.DRIFT, f"ds={ds}", drift.REPORT_HTML)
        assert lake.exists(f"{store.DRIFT}/ds={ds}/{drift.REPORT_HTML}")
    # Logged by the scoring account on v1's monitoring run, in the experiment mlflow_auth.init made.
    exp = client.get_experiment_by_name(f"{NAME}-monitoring")
    run = client.search_runs([exp.experiment_id], f"tags.`{store.VERSION_TAG}` = '1'")[0]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "roc_auc")} == {store.day_step(d) for d in DAYS}

    decision = result["retraining"]
    assert decision["retrain"] and decision["trigger"].startswith("performance"), decision
    assert decision["model_version"] == "1" and decision["as_of"] == DAYS[-1]
    assert decision["performance"]["holdout"] == CLAIMED_HOLDOUT_AUC and "more than the allowed 0.03" in decision["reason"]
    assert last_fired(lake, "1")["as_of"] == DAYS[-1] and lake.exists(f"{TRIGGERS}/version=1/trigger.json")
    # The same evidence never fires again.
    again = decide_and_record(lake, score_flights.spec(), "1")
    assert not again.retrain and f"already fired on {DAYS[-1]}" in again.reason
    event = retrain_event(result)
    assert event["reason"] == decision["reason"] and event["model_version"] == "1"
    assert event["monitored_days"] == DAYS and event["scoring_run_id"] == "manual__score_1"
    assert retrain_event(again_result := {**result, "retraining": again.extra()}) is None, again_result


def test_rescore_with_another_version_replaces_the_day_whole(spark, lake, champion, client, mlflow_server,
                                                              monkeypatch):
    from pyspark.sql import functions as F

    from lakeforge.training import registry

    # v2 (as training): v1's artifacts registered again, with a decision threshold of its own.
    for key, value in mlflow_server.env("training").items():
        monkeypatch.setenv(key, value)
    v2 = registry.register(NAME, champion["model_uri"], champion["run_id"], "score_tests/v2", {})
    client.set_model_version_tag(NAME, v2, "decision_threshold", "0.3")
    assert v2 == "2" and client.get_model_version_by_alias(NAME, "champion").version == "1"
    for key, value in mlflow_server.env("scoring").items():
        monkeypatch.setenv(key, value)

    if not list_partitions(lake, PREDICTIONS):  # this test alone: both days scored by v1 first
        score_flights.score(spark, args(lake, "manual__score_1", "--dates", f"{DAYS[0]},{DAYS[1]}"))
    kept = read_manifest(lake, PREDICTIONS, f"ds={DAYS[0]}")
    old = read_manifest(lake, PREDICTIONS, f"ds={DAYS[1]}")
    old_files = prediction_files(lake, DAYS[1])
    assert old["model"]["version"] == "1"

    result = score_flights.score(spark, args(lake, "manual__rescore", "--dates", DAYS[1], "--model-version", "2"))
    assert result["published"] == [DAYS[1]] and result["model"]["version"] == "2"
    assert result["model"]["threshold"] == 0.3
    assert result["model"]["threshold_source"] == "version tag decision_threshold"
    new = read_manifest(lake, PREDICTIONS, f"ds={DAYS[1]}")
    assert new["model"]["version"] == "2" and new["dag_run_id"] == "manual__rescore"
    assert new["rows"] == old["rows"] and new["inputs"] == old["inputs"]
    assert new["content_sha256"] != old["content_sha256"]
    files = prediction_files(lake, DAYS[1])
    assert not set(files) & set(f for f in old_files if f != "_manifest.json")  # the old files are gone
    assert sorted(f["name"] for f in new["files"]) == [f for f in files if f != "_manifest.json"]
    assert read_manifest(lake, PREDICTIONS, f"ds={DAYS[0]}") == kept  # the other day is untouched
    assert leftovers(lake) == []
    day = spark.read.parquet(lake.uri(PREDICTIONS, f"ds={DAYS[1]}"))
    r = day.agg(F.collect_set("model_version").alias("v"), F.count("*").alias("n"),
                F.sum((F.col("decision") != (F.col("probability") >= 0.3)).cast("int")).alias("wrong")).first()
    assert r.v == ["2"] and r.n == old["rows"] and r.wrong == 0  # never two versions in a day
    # Monitored as v2's day (its own record replaces v1's); the decision stays about the champion, v1,
    # which has one evaluated day left in the window: no verdict.
    assert [(m["ds"], m["model_version"]) for m in result["monitoring"]["records"]] == [(DAYS[1], "2")]
    assert result["retraining"]["model_version"] == "1" and not result["retraining"]["retrain"]

    with pytest.raises(score_flights.NoModel, match="no version 9"):
        score_flights.score(spark, args(lake, "manual__typo", "--dates", DAYS[1], "--model-version", "9"))


def test_features_not_matching_the_signature_fail_naming_the_columns(spark, lake, champion, as_scoring, tmp_path):
    """A features day with a column dropped and one retyped (as a features change would leave it),
    in a lake of its own: the run fails before scoring anything, naming both columns."""
    from pyspark.sql import functions as F

    from lakeforge.spark_publish import new_run_staging, publish_written_partitions
    from lakeforge.transform.steps import arrow_schema

    other = Lake(f"file://{tmp_path}/lake/nycflights")
    changed = (spark.read.parquet(lake.uri(FEATURES, f"ds={DAYS[1]}")).drop("hist_carrier_7d_rate")
               .withColumn("distance", F.col("distance").cast("string")).withColumn("ds", F.lit(DAYS[1])))
    staging = new_run_staging(other, FEATURES)
    changed.write.partitionBy("ds").parquet(other.uri(staging))
    publish_written_partitions(other, FEATURES, staging, [DAYS[1]], arrow_schema(changed))

    with pytest.raises(score_flights.SignatureMismatch) as failed:
        score_flights.score(spark, args(other, "manual__drifted", "--dates", DAYS[1]))
    message = str(failed.value)
    assert f"{NAME} v1" in message and f"ds={DAYS[1]}" in message
    assert "hist_carrier_7d_rate missing" in message and "distance is string, the model expects double" in message
    assert list_partitions(other, PREDICTIONS) == [] and leftovers(other) == []


def test_mlflow_down_fails_with_the_uri_and_writes_nothing(lake, champion, as_scoring, monkeypatch):
    from lakeforge.ports import free_loopback_port
    from lakeforge.training.tracking import MlflowUnavailable

    down = f"http://127.0.0.1:{free_loopback_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    before = {p: read_manifest(lake, PREDICTIONS, p) for p in list_partitions(lake, PREDICTIONS)}
    with pytest.raises(MlflowUnavailable, match=down.replace(".", r"\.")) as failed:
        score_flights.main(["--dates", f"{DAYS[0]}..{DAYS[1]}", "--lake", lake.root_uri, "--run-id", "manual__down",
                            "--force"])
    assert "nothing was scored" in str(failed.value)
    assert {p: read_manifest(lake, PREDICTIONS, p) for p in list_partitions(lake, PREDICTIONS)} == before
    assert leftovers(lake) == []
    from lakeforge.reports import read_run_report

    assert read_run_report(lake, "score_flights", "manual__down") is None


def test_a_job_process_with_mlflow_down_stops_the_jvm_it_started_and_writes_nothing(lake, tmp_path):
    """The job as Airflow runs it (its own process, no Spark yet) starts its JVM while it asks
    MLflow (``EarlySession``). MLflow down: it fails with the URI, having stopped that JVM: no
    process of its session is left, and nothing is written."""
    import os
    import signal
    import subprocess
    import sys

    from lakeforge.ports import free_loopback_port
    from lakeforge.settings import PROJECT_ROOT

    down = f"http://127.0.0.1:{free_loopback_port()}"
    before = {p: read_manifest(lake, PREDICTIONS, p) for p in list_partitions(lake, PREDICTIONS)}
    env = {**os.environ, "MLFLOW_TRACKING_URI": down, "LAKEFORGE_SPARK_MASTER": "local[1]"}
    job = subprocess.Popen([sys.executable, "-m", "spark_jobs.score_flights", "--dates", f"{DAYS[0]}..{DAYS[1]}",
                            "--lake", lake.root_uri, "--run-id", "manual__down_process", "--force"],
                           cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        out, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 1, out[-3000:]
    assert f"MLflow tracking server {down} is unreachable" in out
    assert "stopping the Spark session started for this run" in out  # it had started one

    def session_processes() -> list[str]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == job.pid:  # the session id: the job's own session
                found.append(stat.parent.name)
        return found

    deadline = time.monotonic() + 30
    while session_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = session_processes()
    for pid in left:  # never leave them running, whatever the assertion says
        os.kill(int(pid), signal.SIGKILL)
    assert left == []
    assert {p: read_manifest(lake, PREDICTIONS, p) for p in list_partitions(lake, PREDICTIONS)} == before
    assert leftovers(lake) == []


def test_signature_contract_accepts_only_lossless_types():
    """The signature's integer columns stay integral; a floating one accepts an integral column
    (pandas widens a nullable int to float64 in the logged input example); strings stay strings."""
    from lakeforge.scoring import contract_problems, decision_threshold

    expected = [("carrier", "string"), ("distance", "double"), ("plane_age", "integer"), ("hist_n", "long")]
    ok = {"carrier": "string", "distance": "int", "plane_age": "int", "hist_n": "int", "extra": "string"}
    assert contract_problems(expected, ok) == []
    bad = {"carrier": "int", "distance": "string", "plane_age": "double"}
    assert contract_problems(expected, bad) == [
        "carrier is int, the model expects string", "distance is string, the model expects double",
        "plane_age is double, the model expects integer", "hist_n missing (the model expects long)"]
    assert decision_threshold({}, 0.5) == (0.5, "setting LAKEFORGE_SCORE_THRESHOLD")
    assert decision_threshold({"decision_threshold": "0.25"}, 0.5) == (0.25, "version tag decision_threshold")
    with pytest.raises(ValueError, match="outside"):
        decision_threshold({"decision_threshold": "1.5"}, 0.5)


def test_gate_publishes_only_days_with_one_version_and_valid_probabilities(spark, tmp_path):
    """The predictions suite on staged rows (no model needed): a day mixing two versions, a day
    with a probability outside [0, 1] and a day short of its feature rows are blocked; only the
    sound day is published."""
    from datetime import datetime, timezone

    from pyspark.sql import functions as F

    from lakeforge.scoring import ScoringGate
    from lakeforge.spark_publish import publish_written_partitions

    lake = Lake(f"file://{tmp_path}/lake/nycflights")
    at = datetime(2013, 1, 5, tzinfo=timezone.utc)
    rows = [(f"k{ds}{i}", p, v, ds) for ds, probs, versions in [
        ("2013-01-01", [0.1, 0.2, 0.3], ["1", "2", "1"]),  # two versions in a day
        ("2013-01-02", [0.1, 1.5, 0.3], ["1", "1", "1"]),  # not a probability
        ("2013-01-03", [0.1, 0.2], ["1", "1"]),            # 2 predictions for 3 feature rows
        ("2013-01-04", [0.1, 0.7, 0.3], ["1", "1", "1"]),  # sound
    ] for i, (p, v) in enumerate(zip(probs, versions))]
    df = (spark.createDataFrame(rows, "flight_key string, probability double, model_version string, ds string")
          .select("flight_key", "probability", (F.col("probability") >= 0.5).alias("decision"),
                  F.lit(NAME).alias("model_name"), "model_version", F.lit("r").alias("model_run_id"),
                  F.lit(at).alias("scored_at"), F.lit("t").alias("scoring_run_id"), "ds").coalesce(1))
    days = sorted({r[3] for r in rows})
    staging = score_flights.stage(df, lake)
    gate = ScoringGate(lake, "nycflights", "t", "1", PREDICTIONS)
    gate.audit_staged(spark, [(PREDICTIONS, staging, days, {"upstream_rows": {ds: 3 for ds in days}})])
    blocked = gate.blocked()
    assert sorted(blocked) == days[:3]
    assert any("in_set:model_version" in r for r in blocked["2013-01-01"])
    assert any("between:probability" in r for r in blocked["2013-01-02"])
    assert any("rows_vs_upstream:features/flights" in r for r in blocked["2013-01-03"])
    published = publish_written_partitions(lake, PREDICTIONS, staging, gate.passing(days),
                                           score_flights.arrow_schema(df))
    assert sorted(published) == ["2013-01-04"] and list_partitions(lake, PREDICTIONS) == ["ds=2013-01-04"]
    assert leftovers(lake) == []
