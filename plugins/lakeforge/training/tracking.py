"""MLflow plumbing: reachability check, experiment, dataset inputs, requirements, provenance.

The tracking URI comes from ``lakeforge.settings`` (SQLite + a pinned artifact folder by default,
an ``mlflow server`` for real). An unreachable server is reported as ``MlflowUnavailable`` before
any training starts, with the URI in the message; the task fails and Airflow retries it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterable, Iterator

from lakeforge.settings import PROJECT_ROOT, get_settings

# What the logged model needs to load and score (explicit: inference costs ~25-30 s per log_model).
MODEL_PACKAGES = ("mlflow", "pyspark", "xgboost-cpu", "lightgbm", "pandas", "numpy", "scikit-learn", "pyarrow")


class MlflowUnavailable(RuntimeError):
    """The tracking server cannot be reached: nothing was trained or registered."""


def configure_client_retries() -> None:
    """Fail in seconds, not minutes, when the server is down (Airflow does the retrying); and
    authenticate as this job's MLflow account (``lakeforge.mlflow_auth``)."""
    from lakeforge.mlflow_auth import apply_credentials

    apply_credentials()  # MLFLOW_TRACKING_PASSWORD from LAKEFORGE_MLFLOW_PASSWORD_FILE (this process only)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


@contextmanager
def temp_folders_in(folder: str) -> Iterator[None]:
    """Inside this block, ``tempfile``'s folders and MLflow's ``MLFLOW_DFS_TMP`` copies go into
    ``folder``; both settings are restored afterwards."""
    saved_tempdir, saved_dfs = tempfile.tempdir, os.environ.get("MLFLOW_DFS_TMP")
    tempfile.tempdir = folder
    os.environ["MLFLOW_DFS_TMP"] = os.path.join(folder, "dfs")
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_dfs is None:
            os.environ.pop("MLFLOW_DFS_TMP", None)
        else:
            os.environ["MLFLOW_DFS_TMP"] = saved_dfs


@contextmanager
def scratch_space(prefix: str = "lakeforge-mlflow-") -> Iterator[str]:
    """One temporary folder for everything MLflow writes on the way, removed afterwards.

    mlflow.spark leaves its copies behind: ``log_model`` saves the pipeline to a ``tempfile``
    folder and ``load_model`` downloads it to another and copies it on to ``MLFLOW_DFS_TMP``
    (default /tmp/mlflow); none is removed, so every training run left ~3 model copies on the
    Airflow worker. Inside this block both point into one folder that goes when the block ends."""
    scratch = tempfile.mkdtemp(prefix=prefix)
    try:
        with temp_folders_in(scratch):
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise MlflowUnavailable unless an http(s) tracking server answers its health check."""
    if not uri.startswith(("http://", "https://")):
        return  # a database URI: the client opens it itself (and fails loudly if it cannot)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise MlflowUnavailable(f"MLflow server {uri} answered /health with HTTP {r.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise MlflowUnavailable(
            f"MLflow tracking server {uri} is unreachable ({exc}); nothing was trained or registered, "
            f"the task fails and Airflow retries it"
        ) from exc


def setup(experiment: str | None = None) -> str:
    """Point mlflow at the configured server and experiment (artifact location pinned); returns its id."""
    import mlflow

    s = get_settings()
    configure_client_retries()
    check_reachable(s.mlflow_tracking_uri)
    mlflow.set_tracking_uri(s.mlflow_tracking_uri)
    mlflow.set_registry_uri(s.mlflow_tracking_uri)
    name = experiment or s.mlflow_experiment
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        # A server proxies artifacts (its own --artifacts-destination); locally we pin the folder.
        location = None if s.mlflow_tracking_uri.startswith("http") else f"{s.mlflow_artifact_root}/{name}"
        # the model-training view, not the GenAI one MLflow 3 opens by default (STACK_NOTES)
        exp_id = client.create_experiment(name, artifact_location=location,
                                          tags={"mlflow.experimentKind": "custom_model_development"})
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, from this environment's installed versions."""
    out = []
    for name in MODEL_PACKAGES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str:
    if os.environ.get("LAKEFORGE_GIT_COMMIT"):
        return os.environ["LAKEFORGE_GIT_COMMIT"]
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10)
    except OSError:
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def log_partition_inputs(run_id: str, partitions: Iterable[dict[str, Any]], context: str, table: str) -> None:
    """Each input partition of ``table`` as an MLflow dataset input: its lake URI, content hash,
    rows, quality."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for p in partitions:
        profile = {"rows": p["rows"], "content_sha256": p["content_sha256"], "quality": p["quality"]}
        ds = Dataset(
            name=f"{table}/ds={p['ds']}",
            digest=p["content_sha256"][:32],  # the store keeps 36 chars; the full hash is in the profile
            source_type="lakeforge_lake",
            source=json.dumps({"uri": p["uri"]}),
            profile=json.dumps(profile),
        )
        inputs.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)]))
    MlflowClient().log_inputs(run_id, datasets=inputs)


def fail_stale_runs(experiment_id: str, run_key: str) -> list[str]:
    """Parent runs of this run key still RUNNING (their process died with the server away):
    marked FAILED so the UI does not show them as in progress. Returns their ids."""
    from mlflow import MlflowClient

    client = MlflowClient()
    stale = client.search_runs([experiment_id], f"tags.`lakeforge.run_key` = '{run_key}' and "
                                                "attributes.status = 'RUNNING'")
    for run in stale:
        client.set_tag(run.info.run_id, "lakeforge.superseded", "true")
        client.set_terminated(run.info.run_id, "FAILED")
    return [r.info.run_id for r in stale]
