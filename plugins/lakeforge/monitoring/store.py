"""Where monitoring records live: small published lake partitions and per-version MLflow runs.

The tables are in the namespace of the pipeline's source (``lake_of``): two pipelines never share one.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import PartitionFile, list_partitions, partition_dir, partition_name, publish_partitions
from lakeforge.settings import get_settings

if TYPE_CHECKING:
    from lakeforge.training.spec import ModelSpec

log = logging.getLogger(__name__)

PERFORMANCE = "monitoring/performance"
DRIFT = "monitoring/drift"
TRIGGERS = "monitoring/retrain_trigger"  # version=<n>/trigger.json (``monitor.decide_and_record``)
VERSION_TAG = "lakeforge.monitoring.model_version"
MODEL_TAG = "lakeforge.monitoring.model"
PROFILE_ARTIFACT = "monitoring/reference_profile.json"


def lake_of(spec: "ModelSpec") -> Lake:
    """The lake namespace of the spec's source: its features, predictions and monitoring tables."""
    return source_lake(spec.source)


def day_step(ds: str) -> int:
    """MLflow step of a day: days since 1970-01-01 (monotonic, so the UI draws a curve over time)."""
    return (date.fromisoformat(ds) - date(1970, 1, 1)).days


def day_timestamp_ms(ds: str) -> int:
    return int(datetime.fromisoformat(ds).replace(tzinfo=timezone.utc).timestamp() * 1000)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def published_days(lake: Lake, table: str) -> list[str]:
    return [p.split("=", 1)[1] for p in list_partitions(lake, table) if p.startswith("ds=")]


# -- lake ----------------------------------------------------------------------------------------
def publish_days(lake: Lake, table: str, files_by_day: dict[str, Sequence[PartitionFile]],
                 meta: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Each day one partition, published whole or not at all (a rerun replaces it atomically)."""
    return publish_partitions(lake, table, {partition_name(ds): files for ds, files in files_by_day.items()},
                              {partition_name(ds): dict(meta or {}) for ds in files_by_day})


def read_day_file(lake: Lake, table: str, ds: str, name: str) -> bytes | None:
    """A file of a published day (from its backup while a writer is between its renames), or None."""
    folder = partition_dir(lake, table, partition_name(ds))
    if folder is None:
        return None
    try:
        return lake.read_bytes(f"{folder}/{name}")
    except FileNotFoundError:
        return None


def parquet_bytes(rows: list[dict[str, Any]], schema) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


def read_parquet_rows(data: bytes) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True, default=str).encode()


# -- MLflow --------------------------------------------------------------------------------------
def mlflow_client():
    """A client of the configured server as this job's account, failing fast when it is down."""
    from mlflow import MlflowClient

    from lakeforge.training import tracking

    uri = get_settings().mlflow_tracking_uri
    tracking.configure_client_retries()
    tracking.check_reachable(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def monitoring_experiment(client, spec: "ModelSpec") -> str:
    """Id of ``<the spec's experiment>-monitoring`` (``mlflow_auth.init`` provisions it; created
    here on first use otherwise, artifacts pinned as training's are). Its own experiment:
    monitoring runs never mix with the training runs the gate searches."""
    s = get_settings()
    name = f"{(spec.experiment or spec.resolved().experiment)}-monitoring"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None if s.mlflow_tracking_uri.startswith("http") else f"{s.mlflow_artifact_root}/{name}"
    # The UI opens an untagged experiment in its GenAI view (STACK_NOTES): this one is for models.
    return client.create_experiment(name, artifact_location=location,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def monitoring_run(client, experiment_id: str, model_name: str, version: str) -> str:
    """The run of one model version's monitoring, found by its tags or created (idempotent)."""
    found = client.search_runs([experiment_id], f"tags.`{VERSION_TAG}` = '{version}' and "
                                                f"tags.`{MODEL_TAG}` = '{model_name}'",
                               order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"monitoring {model_name} v{version}",
                            tags={VERSION_TAG: version, MODEL_TAG: model_name})
    # Finished at once: it is appended to by every evaluation (allowed on a finished run) and
    # would otherwise show as "running" forever.
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def log_day_metrics(client, run_id: str, by_day: dict[str, dict[str, float | None]],
                    tags: dict[str, str] | None = None) -> None:
    """Metrics per day on the monitoring run (None values are skipped: e.g. AUC of a one-class day),
    and ``tags``, in as few ``log_batch`` calls as the server's limit allows (one per 1,000 metrics)."""
    from mlflow.entities import Metric, RunTag

    metrics = [Metric(k, float(v), day_timestamp_ms(ds), day_step(ds))
               for ds, values in sorted(by_day.items()) for k, v in values.items() if v is not None]
    run_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(metrics), 1), 1000):  # the server's batch limit
        client.log_batch(run_id, metrics=metrics[i:i + 1000], tags=run_tags if i == 0 else [])


def forbidden(exc: BaseException) -> bool:
    """The server refused this account (the REST API says PERMISSION_DENIED, the artifact proxy 403)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code == "PERMISSION_DENIED"
    return getattr(getattr(exc, "response", None), "status_code", None) == 403


def version_run_id(client, model_name: str, version: str) -> str:
    return client.get_model_version(model_name, str(version)).run_id


def holdout_metrics(client, model_name: str, version: str) -> dict[str, float]:
    """The metrics its training run logged on its holdout, by their plain names (``roc_auc``,
    ``calibration_error``...): the run's ``holdout_<m>`` metrics; a run logged before they were
    named so (plain ``roc_auc``...) is read as it is."""
    metrics = client.get_run(version_run_id(client, model_name, version)).data.metrics
    named = {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}
    return named or dict(metrics)


def distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(values))
