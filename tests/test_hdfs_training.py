"""Training on an HDFS lake the way `make demo-hdfs` runs it: HDFS is the default file system of
the submitted Spark job (HADOOP_CONF_DIR), the demo's training step runs the train_delay_model DAG
(dag.test, SparkSubmitOperator, spark_jobs/train_delay_model.py) under the demo's fail-fast
policy, and MLflow's Spark flavor saves the model to HDFS and copies it to local disk through
Hadoop's FileSystem.getLocal: with a raw local file system as fs.file.impl every try failed with
a ClassCastException. Four real days, search budget 1. What the demo's terminal shows: the
search's trials as they finish (through spark-submit, with Airflow's task output hidden), then
the version's one-line decision."""

import re
import uuid
from datetime import date, timedelta

import pytest

from lakeforge.pipelines.nycflights import demo
from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.nycflights import demo_training
from spark_jobs import transform_flights
from tests.helpers import ingest_days

pytestmark = [pytest.mark.hdfs, pytest.mark.airflow]
DAYS = [date(2013, 1, 1) + timedelta(days=i) for i in range(4)]


def test_the_demos_training_step_on_an_hdfs_lake(hdfs, spark, airflow_db, tmp_path, monkeypatch, capsys):
    import mlflow

    root = f"{hdfs.uri}/demo-train-{uuid.uuid4().hex[:8]}/lake"
    lake = source_lake(demo.SOURCE_NAME, root)
    ingest_days(lake, Lake(f"file://{tmp_path}/landing/{demo.SOURCE_NAME}"), DAYS)
    transform_flights.run(spark, lake, [d.isoformat() for d in DAYS])

    # What `make demo-hdfs` sets (lakeforge.pipelines.nycflights.demo.main), with the test's own MLflow store.
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", root)
    monkeypatch.setenv("HADOOP_CONF_DIR", str(hdfs.conf_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("LAKEFORGE_MLFLOW_ARTIFACT_ROOT", f"file://{tmp_path}/mlartifacts")
    # The demo's month, shrunk: 3 training days (the last one validates the trials), 1 holdout day.
    monkeypatch.setattr(demo_training, "DEMO_HOLDOUT_DAYS", 1)
    monkeypatch.setattr(demo_training, "DEMO_VALIDATION_DAYS", 1)
    monkeypatch.setattr(demo_training, "DEMO_SEARCH_BUDGET", 1)
    capsys.readouterr()
    with demo.fail_fast():
        result = demo_training.run_training(DAYS[0], DAYS[-1])
    printed = capsys.readouterr().out.splitlines()

    assert result["decision"]["version"] == "1" and result["decision"]["holdout"] == ["2013-01-04", "2013-01-04"]
    assert result["conf"]["model_family"] == "lightgbm"  # the demo's default family
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert mlflow.MlflowClient(store, registry_uri=store).get_model_version("flight_delay", "1").tags["lakeforge.family"]
    # The terminal: a line per trial (the LR baseline and one LightGBM), before the run's summary.
    trials = [line for line in printed if line.startswith("  trial ")]
    assert len(trials) == 2, printed[-60:]
    assert all(re.match(r"  trial [12]/2: (lr \(baseline\)|lightgbm) .* -> val ROC AUC 0\.\d{4} "
                        r"\(best so far 0\.\d{4}, trial [12]\), fit ", line) for line in trials), trials
    summary = next(i for i, line in enumerate(printed) if line.startswith("train_delay_model (one Spark app"))
    assert printed.index(trials[-1]) < summary
    assert printed[summary + 1].startswith("this run: version 1: Promoted to champion (first model): holdout ROC AUC ")
    artifacts = tmp_path / "mlartifacts"
    (model,) = [p.parent for p in artifacts.rglob("MLmodel")]
    assert (model / "sparkml" / "stages").is_dir()
