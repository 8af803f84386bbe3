"""Registry operations for one training run: idempotent registration and the alias moves.

A version is registered with the run key (``<dag_id>/<run_id>``) in tag ``lakeforge.run_key`` and
``lakeforge.state = pending``. The decision is then written (version tags + promotion log entry),
``lakeforge.state`` becomes ``complete``, and only then does ``champion`` move: the alias is the
commit point. A retry of the same run key

- finds a ``complete`` version: nothing is trained again; a promotion whose alias move was lost is
  finished (only if the champion is still the one the decision was made against);
- finds ``pending`` versions (a run that died half-way): they are deleted before training again,
  so exactly one version per run key survives.

Every version records the days its model saw (``window_tags``: ``lakeforge.train_start`` /
``train_end`` / ``validation_start`` / ``validation_end``, and its ``holdout_start`` / ``holdout_end``):
when it is champion, the gate reads them (``training_window``) so it is never scored on them.

Every version's artifact digest is recorded before its first alias (``artifact_digest``): a model
whose artifacts changed since is refused by ``artifact_digest.load_verified_model``.

Aliases only (``champion``, ``challenger``); registry stages are deprecated.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

RUN_KEY_TAG = "lakeforge.run_key"
STATE_TAG = "lakeforge.state"
CHAMPION, CHALLENGER = "champion", "challenger"
# The split boundaries recorded on every version (the champion's are read back by the gate).
WINDOW_KEYS = ("train_start", "train_end", "validation_start", "validation_end", "holdout_start", "holdout_end")
# Holdout metrics of both models written on every decided version.
TAGGED_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "positive_rate", "mean_prediction")


def client():
    """The process-wide client, as this job's MLflow account (``lakeforge.mlflow_auth``)."""
    from mlflow import MlflowClient

    from lakeforge.mlflow_auth import apply_credentials

    apply_credentials()
    return MlflowClient()


def versions_for_run_key(name: str, run_key: str) -> list:
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        c.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    found = c.search_model_versions(f"name = '{name}' and tags.`{RUN_KEY_TAG}` = '{run_key}'")
    return sorted(found, key=lambda v: int(v.version))


def remove_half_registered(name: str, run_key: str) -> list[str]:
    """Delete the pending versions of a run key (left by a run that died); returns their numbers."""
    removed = []
    for v in versions_for_run_key(name, run_key):
        if v.tags.get(STATE_TAG) != "complete":
            client().delete_model_version(name, v.version)
            removed.append(str(v.version))
    if removed:
        log.warning("deleted half-registered version(s) %s of %s (run key %s)", removed, name, run_key)
    return removed


def complete_version(name: str, run_key: str):
    done = [v for v in versions_for_run_key(name, run_key) if v.tags.get(STATE_TAG) == "complete"]
    return done[-1] if done else None


def champion_version(name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def window_tags(boundaries: dict[str, str]) -> dict[str, str]:
    """Version tags for a split's boundaries (``Split.boundaries()``)."""
    return {f"lakeforge.{k}": boundaries[k] for k in WINDOW_KEYS}


def training_window(version):
    """The days ``version``'s model trained on (its search validated on their last days), or None
    when nothing says: its window tags; for a version registered before they existed, its run's
    split params (logged by every training run), else its ``lakeforge.train_window`` tag."""
    from mlflow.exceptions import MlflowException

    from lakeforge.training.promotion import TrainingWindow

    tags = version.tags or {}
    if tags.get("lakeforge.train_start") and tags.get("lakeforge.train_end"):
        return TrainingWindow(tags["lakeforge.train_start"], tags["lakeforge.train_end"],
                              tags.get("lakeforge.validation_start"), tags.get("lakeforge.validation_end"),
                              source="version tags")
    params: dict[str, str] = {}
    if version.run_id:
        try:
            params = client().get_run(version.run_id).data.params
        except MlflowException as exc:
            log.warning("run %s of %s v%s unreadable (%s): its training window is not in its params",
                        version.run_id, version.name, version.version, exc)
    if params.get("train_start") and params.get("train_end"):
        return TrainingWindow(params["train_start"], params["train_end"], params.get("validation_start"),
                              params.get("validation_end"), source=f"run {version.run_id} params")
    legacy = tags.get("lakeforge.train_window", "")
    if ".." in legacy:
        start, end = legacy.split("..", 1)
        return TrainingWindow(start, end, source="version tag lakeforge.train_window")
    return None


def register(name: str, model_uri: str, run_id: str, run_key: str, tags: dict[str, str]) -> str:
    """A new pending version, its artifact digest recorded, with alias ``challenger``; returns its
    number. A failure on the way leaves a pending version, which a retry deletes."""
    from mlflow.exceptions import MlflowException

    from lakeforge.training.artifact_digest import record_digest

    c = client()
    try:
        c.create_registered_model(name, description="Flight arrival delay > 15 min (lakeforge)")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # A logged model's URI (models:/m-...) is accepted only with its model id (MLflow 3.17's server).
    model_id = model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None
    v = c.create_model_version(name, model_uri, run_id=run_id, model_id=model_id,
                               tags={RUN_KEY_TAG: run_key, STATE_TAG: "pending", **tags})
    record_digest(c, name, v.version)
    c.set_registered_model_alias(name, CHALLENGER, v.version)
    return str(v.version)


def record_decision(name: str, version: str, entry: dict[str, Any]) -> None:
    """Decision tags on the version, then ``state = complete`` (the promotion log entry is written
    before this by the caller)."""
    c = client()
    m = entry["policy"]["metric"]
    before = entry["champion_before"]
    window = (before or {}).get("window") or {}
    compared, excluded = entry["compared_days"], entry["excluded_days"]

    def span(days: list[str]) -> str:
        return f"{days[0]}..{days[-1]}" if days else "none"

    def metric(metrics: dict[str, float] | None, k: str) -> str:
        return f"{metrics[k]:.6f}" if metrics else "none"

    tags = {
        "lakeforge.decision": entry["decision"],
        "lakeforge.decision.reasons": " | ".join(entry["reasons"]),
        "lakeforge.decision.reference": entry["reference"],
        "lakeforge.decision.metric": m,
        "lakeforge.decision.margin": str(entry["policy"]["margin"]),
        "lakeforge.decision.improvement": ("none" if entry["improvement"] is None
                                           else f"{entry['improvement']:.6f}"),
        "lakeforge.decision.guards": ",".join(f"{k}={'ok' if ok else 'failed'}" for k, ok in entry["guards"].items()),
        "lakeforge.decision.decided_at": entry["decided_at"],
        "lakeforge.decision.champion_before": before["version"] if before else "none",
        # The days the decision used, and the champion's window they were kept clear of.
        "lakeforge.decision.compared_on": span(compared),
        "lakeforge.decision.compared_days": str(len(compared)),
        "lakeforge.decision.excluded_days": span(excluded),
        "lakeforge.decision.champion_train_start": window.get("train_start") or ("unknown" if before else "none"),
        "lakeforge.decision.champion_train_end": window.get("train_end") or ("unknown" if before else "none"),
        "lakeforge.decision.champion_window_source": window.get("source") or ("unknown" if before else "none"),
        **{f"lakeforge.challenger.{k}": metric(entry["challenger"]["metrics"], k) for k in TAGGED_METRICS},
        **{f"lakeforge.champion.{k}": metric(before and before["metrics"], k) for k in TAGGED_METRICS},
        f"lakeforge.baseline.{m}": f"{entry['baseline'][m]:.6f}",
        "lakeforge.holdout": "..".join(entry["holdout"]),
        "lakeforge.trigger": entry["trigger"].get("triggered_by", ""),
        "lakeforge.dag_id": entry["trigger"].get("dag_id") or "",
        "lakeforge.dag_run_id": entry["trigger"].get("dag_run_id") or "",
        # Why the run was requested: the retraining policy's reason (absent for other runs).
        **({"lakeforge.trigger_reason": entry["trigger"]["reason"][:5000]} if entry["trigger"].get("reason") else {}),
    }
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
    c.set_model_version_tag(name, version, STATE_TAG, "complete")


def promoted_version(name: str, run_key: str) -> str | None:
    """The version this run key made champion, or None: its complete version was decided
    ``promoted`` AND the ``champion`` alias is on it (the alias is the commit point)."""
    v = complete_version(name, run_key)
    if v is None or v.tags.get("lakeforge.decision") != "promoted":
        return None
    current = champion_version(name)
    return str(v.version) if current is not None and str(current.version) == str(v.version) else None


def finish_promotion(name: str, version: str, decision: str, champion_before: str | None) -> bool:
    """Move ``champion`` to ``version`` if the decision says so and nobody moved it meanwhile."""
    if decision != "promoted":
        return False
    current = champion_version(name)
    current_v = str(current.version) if current else None
    if current_v == str(version):
        return True
    if current_v != champion_before:
        log.warning("champion is %s, not %s as when %s was decided: alias left alone",
                    current_v, champion_before, version)
        return False
    client().set_registered_model_alias(name, CHAMPION, version)
    return True
