"""The registry gate never scores the champion on days it has seen, and only a promotion emits the
model asset event ("the champion changed").

train_delay_model run by Airflow (``dag.test``: the real ``spark-submit`` of the job, a real MLflow
server, a real lake with 8 days of January built by the real ingest and transform): v1 is trained
on 01-01..01-04 and promoted; then a run with the trigger form's defaults (this module's: a 6-day
holdout, as the real 14-day default over a month) holds out 01-03..01-08, two days of which v1
trained on. Then the job itself, against a champion registered without window tags (as before
they existed), with a holdout entirely inside the champion's training window. Through the real
``spark-submit``, the search's trials are reported as they finish to the progress file ``make demo``
prints (the setting reaches the job's driver).
"""


import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import read_manifest
from lakeforge.training import progress, promotion, registry
from spark_jobs import train_delay_model, transform_flights
from tests.helpers import environ, ingest_days
from tests.mlflow_server import mlflow_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.airflow

DAYS = [pendulum.date(2013, 1, d) for d in range(1, 9)]
NAME = "flight_delay"
MODEL_ASSET = f"models.{NAME}"
# The trigger form's defaults, read from the settings when the DAG is built: the default holdout
# (6 days) reaches back into the first model's training window.
FORM_DEFAULTS = {
    "LAKEFORGE_HOLDOUT_DAYS": "6", "LAKEFORGE_VALIDATION_DAYS": "1", "LAKEFORGE_TRAIN_WINDOW_DAYS": "30",
    "LAKEFORGE_TRAIN_MODEL_FAMILY": "lr", "LAKEFORGE_SEARCH_BUDGET": "1", "LAKEFORGE_SEARCH_PARALLELISM": "1",
}


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    root = f"file://{tmp_path_factory.mktemp('gate')}/lake"
    with environ({**FORM_DEFAULTS, "LAKEFORGE_LAKE_ROOT": root}):
        yield root


@pytest.fixture(scope="module")
def lake(spark, lake_root, tmp_path_factory) -> Lake:
    """nycflights' namespace of the lake (where the DAG and the job find the features by default)."""
    lake = source_lake("nycflights", lake_root)
    ingest_days(lake, Lake(f"file://{tmp_path_factory.mktemp('landing')}/nycflights"), DAYS)
    transform_flights.run(spark, lake, [d.isoformat() for d in DAYS])
    return lake


@pytest.fixture
def dag(airflow_db, lake_root):
    """Parsed for each test: ``dag.test(run_conf=...)`` leaves the conf in the DAG's params, and the
    second run must get the form's own defaults."""
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "train_delay_model.py"))
    assert bag.import_errors == {}
    return bag.dags["train_delay_model"]


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)


def run(dag, conf: dict):
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf=conf)
    return dr, {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def model_events(run_id: str) -> list[dict]:
    """The model asset's events emitted by one DAG run."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    from sqlalchemy import select

    with Session() as session:
        return [extra for (extra,) in session.execute(
            select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == MODEL_ASSET, AssetEvent.source_run_id == run_id)).all()]


def entry_for(lake: Lake, run_key: str) -> dict:
    (entry,) = [e for e in promotion.read_log(lake, NAME) if e["run_key"] == run_key]
    return entry


def rows(lake: Lake, days) -> float:
    """Feature rows the metrics count: flights with a tail number (training leaves the others out)."""
    import pyarrow.parquet as pq

    total = 0
    for d in days:
        for f in read_manifest(lake, "features/flights", f"ds={d}")["files"]:
            tails = pq.read_table(lake.uri("features/flights", f"ds={d}", f["name"]).removeprefix("file://"),
                                  columns=["tailnum"]).column("tailnum")
            total += len(tails) - tails.null_count
    return float(total)


def test_first_model_is_promoted_and_announced(dag, lake, client, monkeypatch, tmp_path):
    # 01-05's delay rate (13%) is half the training days' (26%): the calibration guard would reject
    # any model trained on 01-01..04. The guards are not what this module is about.
    monkeypatch.setenv("LAKEFORGE_GUARD_CALIBRATION_TOLERANCE", "1.0")
    monkeypatch.setenv("LAKEFORGE_GUARD_POSITIVE_RATE_TOLERANCE", "1.0")
    # What `make demo` sets (progress.follow): the job, under spark-submit, appends its progress there.
    monkeypatch.setenv(progress.PROGRESS_FILE_ENV, str(tmp_path / "progress.log"))
    dr, tis = run(dag, {"end": "2013-01-05", "holdout_days": 1})
    assert str(dr.state) == "success" and tis["publish_champion"] == "success", tis
    lines = (tmp_path / "progress.log").read_text().splitlines()
    assert lines[0].startswith("search: 1 trial(s) (1 lr)") and len(lines) == 2, lines
    assert lines[1].startswith("trial 1/1: lr regParam=") and "-> val ROC AUC 0." in lines[1]
    assert "(best so far 0." in lines[1] and ", trial 1), fit " in lines[1]
    key = f"train_delay_model/{dr.run_id}"
    entry = entry_for(lake, key)
    assert entry["version"] == "1" and entry["decision"] == "promoted" and entry["reference"] == "baseline"
    assert entry["compared_days"] == ["2013-01-05"] and entry["excluded_days"] == []
    assert entry["challenger"]["window"] == {
        "train_start": "2013-01-01", "train_end": "2013-01-04", "validation_start": "2013-01-04",
        "validation_end": "2013-01-04", "holdout_start": "2013-01-05", "holdout_end": "2013-01-05"}
    v1 = client.get_model_version(NAME, "1")
    # The days it saw are its run's params (the gate reads them there), not version tags.
    params = client.get_run(v1.run_id).data.params
    assert {k: params[k] for k in registry.WINDOW_KEYS} == entry["challenger"]["window"]
    assert not {f"lakeforge.{k}" for k in registry.WINDOW_KEYS} & set(v1.tags)
    assert v1.tags["lakeforge.train_window"] == "2013-01-01..2013-01-04"
    assert v1.tags["lakeforge.holdout"] == "2013-01-05..2013-01-05"
    assert v1.description.startswith("Promoted to champion (first model): holdout ROC AUC ")
    assert "vs the trivial baseline 0.5000 (2013-01-05), +" in v1.description
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    # The champion changed: exactly one model event, naming the version.
    assert model_events(dr.run_id) == [{"model": NAME, "version": "1", "run_key": key,
                                        "model_uri": f"models:/{NAME}/1"}]


def test_default_holdout_overlapping_the_champion_is_compared_on_unseen_days_only(
        dag, lake, client, monkeypatch):
    import mlflow

    # Any promotion needs an AUC gain above 1: a certain rejection, so the event check below is not luck.
    monkeypatch.setenv("LAKEFORGE_PROMOTION_MARGIN", "1.0")
    dr, tis = run(dag, {})  # the form's defaults: end = newest day (01-08), 6-day holdout 01-03..01-08
    assert str(dr.state) == "success" and tis["train_and_register"] == "success", tis
    key = f"train_delay_model/{dr.run_id}"
    entry = entry_for(lake, key)
    assert entry["version"] == "2" and entry["holdout"] == ["2013-01-03", "2013-01-08"]
    assert entry["challenger"]["window"]["train_end"] == "2013-01-02"

    # The decision never used a day the champion trained on, or validated its search on: the
    # days are checked against v1's own record of its split (split.json of its run).
    v1 = client.get_model_version(NAME, "1")
    seen_by_v1 = set(mlflow.artifacts.load_dict(f"runs:/{v1.run_id}/split.json")["train"])
    assert seen_by_v1 == {"2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"}
    assert entry["compared_days"] == ["2013-01-05", "2013-01-06", "2013-01-07", "2013-01-08"]
    assert not seen_by_v1 & set(entry["compared_days"])
    assert entry["excluded_days"] == ["2013-01-03", "2013-01-04"]
    # Both models were scored on exactly those days (their row counts), not on the whole holdout.
    compared_rows = rows(lake, entry["compared_days"])
    assert compared_rows < rows(lake, entry["excluded_days"] + entry["compared_days"])
    assert entry["champion_before"]["metrics"]["rows"] == entry["challenger"]["metrics"]["rows"] == compared_rows
    assert entry["champion_before"]["window"] == {
        "train_start": "2013-01-01", "train_end": "2013-01-04", "validation_start": "2013-01-04",
        "validation_end": "2013-01-04", "source": f"run {v1.run_id} params"}
    assert entry["decision"] == "rejected" and entry["champion_after"] == "1"
    assert entry["reasons"][0].startswith("roc_auc ") and "margin 1.0000" in entry["reasons"][0]
    assert entry["reasons"][-1] == (
        "compared on 2013-01-05..2013-01-08 only (4 of the 6 holdout days): 2013-01-03..2013-01-04 left out, "
        "on or before champion v1's last training day 2013-01-04")

    # The same on the version (its few tags, one line saying what and why) and the run (the rest).
    v2 = client.get_model_version(NAME, "2")
    varying = ("lakeforge.artifact_", "lakeforge.data_sha256", "lakeforge.holdout_roc_auc", "lakeforge.trigger")
    assert {k: v for k, v in v2.tags.items() if not k.startswith(varying)} == {
        "lakeforge.run_key": key, "lakeforge.state": "complete", "lakeforge.decision": "rejected",
        "lakeforge.champion_before": "1", "lakeforge.family": "lr",
        "lakeforge.train_window": "2013-01-01..2013-01-02", "lakeforge.holdout": "2013-01-03..2013-01-08",
    }
    assert set(v2.tags) - {k for k in v2.tags if k.startswith("lakeforge.artifact_")} == {
        "lakeforge.run_key", "lakeforge.state", "lakeforge.decision", "lakeforge.champion_before", "lakeforge.family",
        "lakeforge.train_window", "lakeforge.holdout", "lakeforge.holdout_roc_auc", "lakeforge.data_sha256",
        "lakeforge.trigger"}
    assert v2.tags["lakeforge.trigger"] == client.get_run(v2.run_id).data.tags["airflow.triggered_by"] != ""
    run2 = client.get_run(v2.run_id)
    metrics = run2.data.metrics
    gate_auc, champ_auc = entry["challenger"]["metrics"]["roc_auc"], entry["champion_before"]["metrics"]["roc_auc"]
    assert v2.description.startswith(
        f"Kept as challenger: holdout ROC AUC {gate_auc:.4f} vs champion v1 {champ_auc:.4f} on the same days "
        f"(2013-01-05..01-08, 4 of the 6 holdout days: v1 trained on the rest), ")
    assert v2.description.endswith("; v1 stays champion") and run2.data.tags["mlflow.note.content"] == v2.description
    assert v2.tags["lakeforge.holdout_roc_auc"] == f"{metrics['holdout_roc_auc']:.4f}"  # its whole holdout
    assert run2.data.tags["lakeforge.compared_on"] == "2013-01-05..2013-01-08"
    assert metrics["gate_days"] == 4
    assert metrics["gate_champion_rows"] == metrics["gate_challenger_rows"] == compared_rows
    assert metrics["gate_challenger_roc_auc"] == gate_auc and metrics["gate_champion_roc_auc"] == champ_auc
    assert metrics["holdout_rows"] == rows(lake, entry["excluded_days"] + entry["compared_days"])  # its own holdout

    # Rejected: the champion did not change, and nothing tells downstream DAGs it did.
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"
    assert tis["publish_champion"] == "skipped" and model_events(dr.run_id) == []


def test_a_holdout_the_champion_trained_on_is_no_decision(spark, lake, client):
    """The gate reads the champion's window from its run's params; a holdout entirely inside it
    gives no decision, and the champion is not even loaded."""
    v1 = client.get_model_version(NAME, "1")
    assert registry.training_window(v1) == promotion.TrainingWindow(
        "2013-01-01", "2013-01-04", "2013-01-04", "2013-01-04", source=f"run {v1.run_id} params")

    key = "train_delay_model/manual__inside"
    args = train_delay_model.parse_args([
        "--run-key", key, "--lake", lake.root_uri, "--end", "2013-01-04", "--holdout-days", "2",
        "--window-days", "30", "--validation-days", "1", "--family", "lr", "--search-budget", "1"])
    result = train_delay_model.train(spark, args)
    assert result["decision"] == "no_decision" and result["champion_metrics"] is None
    assert result["compared_days"] == [] and result["excluded_days"] == ["2013-01-03", "2013-01-04"]
    assert result["reasons"] == [
        "no decision: every holdout day (2013-01-03..2013-01-04) is on or before champion v1's last training day "
        "2013-01-04 (it trained on 2013-01-01..2013-01-04); a champion is never scored on days it has seen, so "
        "nothing was compared: the challenger is not promoted and v1 stays champion (train with a holdout "
        "reaching past 2013-01-04)"]
    entry = entry_for(lake, key)
    assert entry["decision"] == "no_decision" and entry["improvement"] is None and entry["champion_after"] == "1"
    assert entry["champion_before"] == {"version": "1", "metrics": None, "window": {
        "train_start": "2013-01-01", "train_end": "2013-01-04", "validation_start": "2013-01-04",
        "validation_end": "2013-01-04", "source": f"run {v1.run_id} params"}}
    v = client.get_model_version(NAME, result["version"])
    assert v.tags["lakeforge.decision"] == "no_decision" and v.tags[registry.STATE_TAG] == "complete"
    assert v.tags["lakeforge.champion_before"] == "1"
    assert v.description == (
        "No decision, kept as challenger: every holdout day (2013-01-03..01-04) is on or before champion v1's last "
        "training day 2013-01-04, so the two cannot be compared fairly; v1 stays champion")
    metrics = client.get_run(v.run_id).data.metrics
    assert metrics["gate_days"] == 0 and not any(k.startswith("gate_c") for k in metrics)
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert registry.promoted_version(NAME, key) is None


def test_a_champion_with_no_window_anywhere_is_never_compared(client):
    """Neither a readable run nor window tags: unknown window, so no comparison (pure rule tested in
    test_training_logic). A version registered before the tags were cut is read from its window
    tags; the ``lakeforge.train_window`` tag alone is still enough."""
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    gone = "0" * 32  # a run id the server does not know
    assert registry.training_window(ModelVersion(NAME, "9", 0, run_id=gone)) is None
    assert registry.training_window(ModelVersion(NAME, "9", 0, run_id=None)) is None
    legacy = ModelVersion(NAME, "9", 0, run_id=gone,
                          tags=[ModelVersionTag("lakeforge.train_window", "2013-01-01..2013-01-04")])
    assert registry.training_window(legacy) == promotion.TrainingWindow(
        "2013-01-01", "2013-01-04", source="version tag lakeforge.train_window")
    old = ModelVersion(NAME, "9", 0, run_id=gone, tags=[ModelVersionTag(f"lakeforge.{k}", d) for k, d in (
        ("train_start", "2013-01-01"), ("train_end", "2013-01-04"), ("validation_start", "2013-01-04"),
        ("validation_end", "2013-01-04"), ("holdout_start", "2013-01-05"), ("holdout_end", "2013-01-06"))])
    assert registry.training_window(old) == promotion.TrainingWindow(
        "2013-01-01", "2013-01-04", "2013-01-04", "2013-01-04", source="version tags")
    assert registry.holdout_window(old) == ("2013-01-05", "2013-01-06")
    assert registry.holdout_window(ModelVersion(NAME, "9", 0, run_id=gone)) is None
