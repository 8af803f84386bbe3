"""Batch scoring with the registered champion (``lakeforge.scoring.job``, run as
``spark_jobs/score.py --pipeline NAME``; a pipeline's DAG from ``orchestration.score_dag``).

Plain Python (no Spark, no MLflow at import): the model's input contract (its MLflow signature)
checked against the feature table's columns and types, the decision threshold of a version, and
the predictions' quality gate (the pipeline's suite ``predictions_<table>.json`` bound to the
run's model version, so "exactly one model version per partition" is a check on the data).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from lakeforge.quality.spec import Suite
from lakeforge.quality.wap import QualityGate

THRESHOLD_TAG = "decision_threshold"
# In the suite file, an ``in_set`` check's value that stands for the version the run scores with.
RUN_VERSION = "{model_version}"

# MLflow signature type -> the Spark column types (``DataType.simpleString()``) that satisfy it.
# A nullable integer column in the 5-row input example of ``log_model`` becomes float64 in pandas,
# so the signature may say ``double`` for a Spark ``int`` feature: integral columns satisfy a
# floating type (the pipeline's VectorAssembler casts them), never the other way round, and
# nothing crosses between strings, numbers, booleans and timestamps.
_INTEGRAL = ("tinyint", "smallint", "int")
ACCEPTED_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "integer": _INTEGRAL,
    "long": (*_INTEGRAL, "bigint"),
    "float": ("float", *_INTEGRAL),
    "double": ("double", "float", *_INTEGRAL, "bigint"),
    "boolean": ("boolean",),
    "datetime": ("timestamp", "timestamp_ntz", "date"),
    "binary": ("binary",),
}


class SignatureMismatch(RuntimeError):
    """The feature table does not satisfy the model's input signature: nothing was scored."""


class NoModel(RuntimeError):
    """The requested model version does not exist (a typo in a rescore's ``model_version``)."""


class ModelRegistryError(RuntimeError):
    """MLflow answered, but resolving or loading the model failed: named with the tracking URI."""


# -- MLflow: the model is resolved once per run --------------------------------------------------
def connect() -> str:
    """Point MLflow at the configured server as the ``scoring`` account where the runner holds its
    password file (``mlflow_auth.use_account``; else this process's one account);
    ``MlflowUnavailable`` naming the URI when it does not answer (the task fails, Airflow retries it)."""
    import mlflow

    from lakeforge.mlflow_auth import use_account
    from lakeforge.settings import get_settings
    from lakeforge.training.tracking import MlflowUnavailable, check_reachable, configure_client_retries

    use_account("scoring")
    uri = get_settings().mlflow_tracking_uri
    configure_client_retries()
    try:
        check_reachable(uri)
    except MlflowUnavailable as exc:
        raise MlflowUnavailable(
            f"MLflow tracking server {uri} is unreachable ({exc.__cause__ or exc}): the model cannot be "
            f"resolved; nothing was scored or published, the task fails and Airflow retries it") from exc
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def resolve(name: str, version: str | None):
    """The registry's version object: ``version`` when given (a rescore), else the champion's;
    None when there is no champion (``connect`` first)."""
    from mlflow.exceptions import MlflowException

    from lakeforge.settings import get_settings
    from lakeforge.training import registry

    uri = get_settings().mlflow_tracking_uri
    try:
        if version is None:
            return registry.champion_version(name)
        try:
            return registry.client().get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise NoModel(f"model {name} has no version {version} (registry {uri}): nothing was scored") from exc
            raise
    except MlflowException as exc:
        raise ModelRegistryError(f"resolving {name}@{version or 'champion'} at MLflow {uri} failed: {exc}") from exc


def no_champion_reason(name: str) -> str:
    from lakeforge.settings import get_settings

    return (f"skipped: no champion: models:/{name}@champion is not set in {get_settings().mlflow_tracking_uri} "
            f"(no version has been promoted yet); nothing was scored")


def signature_columns(signature) -> list[tuple[str, str]]:
    """``(name, MLflow type)`` of a model signature's inputs (an ``mlflow.models.ModelSignature``)."""
    if signature is None or signature.inputs is None:
        raise SignatureMismatch("the model has no input signature: its feature contract is unknown, "
                                "refusing to score with it")
    out = []
    for spec in signature.inputs.inputs:
        kind = getattr(spec.type, "name", str(spec.type))
        out.append((spec.name, str(kind)))
    return out


def contract_problems(expected: Iterable[tuple[str, str]], actual: Mapping[str, str]) -> list[str]:
    """What keeps a table with columns ``actual`` ({name: Spark simpleString}) from satisfying the
    signature ``expected`` ([(name, MLflow type)]): one line per missing or retyped column, in
    the signature's order (empty: it satisfies it; extra columns are fine)."""
    problems = []
    for name, kind in expected:
        if name not in actual:
            problems.append(f"{name} missing (the model expects {kind})")
        elif actual[name] not in ACCEPTED_TYPES.get(kind, ()):
            problems.append(f"{name} is {actual[name]}, the model expects {kind}")
    return problems


def mismatch_message(table: str, model: str, problems_by_day: Mapping[str, list[str]]) -> str:
    """One message for every day whose features (``table``) do not satisfy ``model``'s signature;
    days with the same problems are listed together."""
    grouped: dict[tuple[str, ...], list[str]] = {}
    for ds, problems in sorted(problems_by_day.items()):
        grouped.setdefault(tuple(problems), []).append(ds)
    from lakeforge.dates import compact_dates

    lines = [f"{table} does not match the input signature of {model}: nothing was scored"]
    for problems, days in grouped.items():
        lines.append(f"  ds={compact_dates(days)}: " + "; ".join(problems))
    lines.append("  (retrain on the current features, or rebuild the features the model was trained on)")
    return "\n".join(lines)


def decision_threshold(version_tags: Mapping[str, str] | None, default: float) -> tuple[float, str]:
    """The version's ``decision_threshold`` tag if it has one (in [0, 1]), else ``default``
    (the setting ``LAKEFORGE_SCORE_THRESHOLD``); and where it came from."""
    raw = (version_tags or {}).get(THRESHOLD_TAG)
    if raw is None or str(raw).strip() == "":
        return float(default), "setting LAKEFORGE_SCORE_THRESHOLD"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"model version tag {THRESHOLD_TAG}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"model version tag {THRESHOLD_TAG}={raw!r} is outside [0, 1]")
    return value, f"version tag {THRESHOLD_TAG}"


def bind_suite(suite: Suite, version: str) -> Suite:
    """The suite with ``RUN_VERSION`` in its ``in_set`` checks replaced by ``version``."""
    checks = tuple(
        dataclasses.replace(c, values=tuple(version if v == RUN_VERSION else v for v in c.values))
        if c.kind == "in_set" and RUN_VERSION in c.values else c
        for c in suite.checks)
    return dataclasses.replace(suite, checks=checks)


class ScoringGate(QualityGate):
    """The write-audit-publish gate of a scoring run: the predictions suite bound to the run's
    model version (every row must carry it, and none may lack one: one version per partition)."""

    def __init__(self, lake, source_name: str, run_id: str | None, model_version: str, predictions: str):
        super().__init__(lake, source_name, run_id)
        self.model_version = str(model_version)
        self.predictions = predictions

    def suite(self, table: str) -> Suite:
        suite = super().suite(table)
        return bind_suite(suite, self.model_version) if table == self.predictions else suite


def already_scored(manifest: Mapping[str, Any] | None, features: str, version: str, features_sha256: str) -> bool:
    """Whether a published predictions partition holds this version's scores of exactly these
    bytes of the ``features`` table (a rerun has nothing to add)."""
    if not manifest:
        return False
    model = manifest.get("model") or {}
    source = (manifest.get("inputs") or {}).get(features) or {}
    return str(model.get("version")) == str(version) and source.get("content_sha256") == features_sha256
