"""The registry gate never scores the champion on days it has seen, and only a promotion emits the
model asset event ("the champion changed").

train_delay_model run by Airflow (``dag.test``: the real ``spark-submit`` of the job, a real MLflow
server, a real lake with 8 days of January built by the real ingest and transform): v1 is trained
on 01-01..01-04 and promoted; then a run with the trigger form's defaults (this module's: a 6-day
holdout, as the real 14-day default over a month) holds out 01-03..01-08, two days of which v1
trained on. Then the job itself, against a champion registered without window tags (as before
they existed), with a holdout entirely inside the champion's training window.
"""


import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import read_manifest
from lakeforge.training import promotion, registry
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


def test_first_model_is_promoted_and_announced(dag, lake, client, monkeypatch):
    # 01-05's delay rate (13%) is half the training days' (26%): the calibration guard would reject
    # any model trained on 01-01..04. The guards are not what this module is about.
    monkeypatch.setenv("LAKEFORGE_GUARD_CALIBRATION_TOLERANCE", "1.0")
    monkeypatch.setenv("LAKEFORGE_GUARD_POSITIVE_RATE_TOLERANCE", "1.0")
    dr, tis = run(dag, {"end": "2013-01-05", "holdout_days": 1})
    assert str(dr.state) == "success" and tis["publish_champion"] == "success", tis
    key = f"train_delay_model/{dr.run_id}"
    entry = entry_for(lake, key)
    assert entry["version"] == "1" and entry["decision"] == "promoted" and entry["reference"] == "baseline"
    assert entry["compared_days"] == ["2013-01-05"] and entry["excluded_days"] == []
    assert entry["challenger"]["window"] == {
        "train_start": "2013-01-01", "train_end": "2013-01-04", "validation_start": "2013-01-04",
        "validation_end": "2013-01-04", "holdout_start": "2013-01-05", "holdout_end": "2013-01-05"}
    v1 = client.get_model_version(NAME, "1")
    assert {k: v1.tags[f"lakeforge.{k}"] for k in registry.WINDOW_KEYS} == entry["challenger"]["window"]
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
        "validation_end": "2013-01-04", "source": "version tags"}
    assert entry["decision"] == "rejected" and entry["champion_after"] == "1"
    assert entry["reasons"][0].startswith("roc_auc ") and "margin 1.0000" in entry["reasons"][0]
    assert entry["reasons"][-1] == (
        "compared on 2013-01-05..2013-01-08 only (4 of the 6 holdout days): 2013-01-03..2013-01-04 left out, "
        "on or before champion v1's last training day 2013-01-04")

    # The same on the version and the run.
    v2 = client.get_model_version(NAME, "2")
    assert {k: v for k, v in v2.tags.items() if k.startswith(("lakeforge.decision.c", "lakeforge.decision.e"))} == {
        "lakeforge.decision.champion_before": "1",
        "lakeforge.decision.compared_on": "2013-01-05..2013-01-08",
        "lakeforge.decision.compared_days": "4",
        "lakeforge.decision.excluded_days": "2013-01-03..2013-01-04",
        "lakeforge.decision.champion_train_start": "2013-01-01",
        "lakeforge.decision.champion_train_end": "2013-01-04",
        "lakeforge.decision.champion_window_source": "version tags",
    }
    assert v2.tags["lakeforge.holdout"] == "2013-01-03..2013-01-08" and v2.tags["lakeforge.train_end"] == "2013-01-02"
    metrics = client.get_run(v2.run_id).data.metrics
    assert metrics["gate_days"] == 4 and metrics["champion_rows"] == metrics["gate_rows"] == compared_rows
    assert metrics["rows"] == rows(lake, entry["excluded_days"] + entry["compared_days"])  # its own holdout

    # Rejected: the champion did not change, and nothing tells downstream DAGs it did.
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"
    assert tis["publish_champion"] == "skipped" and model_events(dr.run_id) == []


def test_champion_without_window_tags_and_a_holdout_it_trained_on_is_no_decision(spark, lake, client):
    """A champion registered before versions carried their window (its tags deleted here): the gate
    reads the window from its run's params; a holdout entirely inside it gives no decision, and
    the champion is not even loaded."""
    for k in registry.WINDOW_KEYS:
        client.delete_model_version_tag(NAME, "1", f"lakeforge.{k}")
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
    assert v.tags["lakeforge.decision.compared_on"] == "none" and v.tags["lakeforge.champion.roc_auc"] == "none"
    assert v.tags["lakeforge.decision.champion_window_source"] == f"run {v1.run_id} params"
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    assert registry.promoted_version(NAME, key) is None


def test_a_champion_with_no_window_anywhere_is_never_compared(client):
    """Neither window tags nor a readable run: unknown window, so no comparison (pure rule tested in
    test_training_logic); the legacy ``lakeforge.train_window`` tag alone is still enough."""
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    gone = "0" * 32  # a run id the server does not know
    assert registry.training_window(ModelVersion(NAME, "9", 0, run_id=gone)) is None
    assert registry.training_window(ModelVersion(NAME, "9", 0, run_id=None)) is None
    legacy = ModelVersion(NAME, "9", 0, run_id=gone,
                          tags=[ModelVersionTag("lakeforge.train_window", "2013-01-01..2013-01-04")])
    assert registry.training_window(legacy) == promotion.TrainingWindow(
        "2013-01-01", "2013-01-04", source="version tag lakeforge.train_window")
