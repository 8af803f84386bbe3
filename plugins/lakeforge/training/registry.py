"""Registry operations for one training run: idempotent registration and the alias moves.

A version is registered with the run key (``<dag_id>/<run_id>``) in tag ``lakeforge.run_key`` and
``lakeforge.state = pending``. The decision is then written (promotion log entry, then the version's
``lakeforge.decision`` / ``lakeforge.champion_before`` tags and its one-line description),
``lakeforge.state`` becomes ``complete``, and only then does ``champion`` move: the alias is the
commit point. A retry of the same run key

- finds a ``complete`` version: nothing is trained again; a promotion whose alias move was lost is
  finished (only if the champion is still the one the decision was made against);
- finds ``pending`` versions (a run that died half-way): they are deleted before training again,
  so exactly one version per run key survives.

A version carries what a person reads (``VERSION_TAGS``: the decision, the champion it was
compared with, its holdout value of the promotion metric, its holdout and training days, family,
trigger, data hash) and what the code needs (run key, state, artifact digest and manifest); the
description says in one line what was decided and why (``promotion.describe``). Everything else
is on its run (params, metrics, tags) and in the promotion log.

The days a version's model saw are read from its run's split params (``train_start`` ... logged by
every training run; versions registered before carry them as tags too): when it is champion, the
gate reads them (``training_window``) so it is never scored on them; monitoring reads its holdout
days (``holdout_window``) for its reference predictions.

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
DECISION_TAG = "lakeforge.decision"
CHAMPION_BEFORE_TAG = "lakeforge.champion_before"
CHAMPION, CHALLENGER = "champion", "challenger"
# The split boundaries of a challenger (its promotion log entry's window; its run's params).
WINDOW_KEYS = ("train_start", "train_end", "validation_start", "validation_end", "holdout_start", "holdout_end")
# What a person reads on a version (``lakeforge.holdout_<metric>``: the promotion metric's name,
# ``lakeforge.trigger_reason`` only when a retraining request triggered the run). With the
# machine's own (run key, state, artifact digest and manifest) they are all its tags.
VERSION_TAGS = ("lakeforge.decision", "lakeforge.champion_before", "lakeforge.holdout_<metric>",
                "lakeforge.holdout", "lakeforge.train_window", "lakeforge.family", "lakeforge.trigger",
                "lakeforge.trigger_reason", "lakeforge.data_sha256")
PENDING_DESCRIPTION = "Pending: registered, the registry gate has not decided yet (run key {run_key})"


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


def version_tags(*, family: str, boundaries: dict[str, str], metric: str, holdout_value: float,
                 data_sha256: str, triggered_by: str, reason: str | None = None) -> dict[str, str]:
    """The tags a version is registered with (``register``): what it is, on which days, measured how.
    ``boundaries``: ``Split.boundaries()``; ``holdout_value``: its ``metric`` on the whole holdout
    (its run's ``holdout_<metric>``, the value monitoring compares its days with)."""
    return {
        "lakeforge.family": family,
        "lakeforge.train_window": f"{boundaries['train_start']}..{boundaries['train_end']}",
        "lakeforge.holdout": f"{boundaries['holdout_start']}..{boundaries['holdout_end']}",
        f"lakeforge.holdout_{metric}": f"{holdout_value:.4f}",
        "lakeforge.data_sha256": data_sha256,
        "lakeforge.trigger": triggered_by or "",
        **({"lakeforge.trigger_reason": reason[:5000]} if reason else {}),
    }


def _run_params(version) -> dict[str, str]:
    """The params of ``version``'s run ({} when it has none or cannot be read, with a warning)."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return {}
    try:
        return dict(client().get_run(version.run_id).data.params)
    except MlflowException as exc:
        log.warning("run %s of %s v%s unreadable (%s): its split is not in its params",
                    version.run_id, version.name, version.version, exc)
        return {}


def training_window(version):
    """The days ``version``'s model trained on (its search validated on their last days), or None
    when nothing says: its run's split params (logged by every training run); else the window tags
    of a version registered before the tags were cut (``lakeforge.train_start`` ...); else its
    ``lakeforge.train_window`` tag (``start..end``)."""
    from lakeforge.training.promotion import TrainingWindow

    params = _run_params(version)
    if params.get("train_start") and params.get("train_end"):
        return TrainingWindow(params["train_start"], params["train_end"], params.get("validation_start"),
                              params.get("validation_end"), source=f"run {version.run_id} params")
    tags = version.tags or {}
    if tags.get("lakeforge.train_start") and tags.get("lakeforge.train_end"):
        return TrainingWindow(tags["lakeforge.train_start"], tags["lakeforge.train_end"],
                              tags.get("lakeforge.validation_start"), tags.get("lakeforge.validation_end"),
                              source="version tags")
    legacy = tags.get("lakeforge.train_window", "")
    if ".." in legacy:
        start, end = legacy.split("..", 1)
        return TrainingWindow(start, end, source="version tag lakeforge.train_window")
    return None


def holdout_window(version) -> tuple[str, str] | None:
    """(first, last) holdout day of ``version`` (the days its run scored it on), or None: its run's
    ``holdout_start`` / ``holdout_end`` params, else the tags of an older version."""
    params = _run_params(version)
    if params.get("holdout_start") and params.get("holdout_end"):
        return params["holdout_start"], params["holdout_end"]
    tags = version.tags or {}
    if tags.get("lakeforge.holdout_start") and tags.get("lakeforge.holdout_end"):
        return tags["lakeforge.holdout_start"], tags["lakeforge.holdout_end"]
    span = tags.get("lakeforge.holdout", "")
    if ".." in span:
        start, end = span.split("..", 1)
        return start, end
    return None


def register(name: str, model_uri: str, run_id: str, run_key: str, tags: dict[str, str],
             description: str = "") -> str:
    """A new pending version, its artifact digest recorded, with alias ``challenger``; returns its
    number. A failure on the way leaves a pending version, which a retry deletes. ``description``:
    the registered model's, where this creates it (what the model predicts)."""
    from mlflow.exceptions import MlflowException

    from lakeforge.training.artifact_digest import record_digest

    c = client()
    try:
        c.create_registered_model(name, description=f"{description} (lakeforge)".lstrip())
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # A logged model's URI (models:/m-...) is accepted only with its model id (MLflow 3.17's server).
    model_id = model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None
    v = c.create_model_version(name, model_uri, run_id=run_id, model_id=model_id,
                               tags={RUN_KEY_TAG: run_key, STATE_TAG: "pending", **tags},
                               description=PENDING_DESCRIPTION.format(run_key=run_key))
    record_digest(c, name, v.version)
    c.set_registered_model_alias(name, CHALLENGER, v.version)
    return str(v.version)


def record_decision(name: str, version: str, entry: dict[str, Any]) -> None:
    """The decision on the version: tags ``lakeforge.decision`` and ``lakeforge.champion_before``,
    its description (``promotion.describe``: what was decided and why, in one line), then
    ``state = complete``. The promotion log entry (reasons, both models' metrics, the days and
    windows) is written before this by the caller."""
    from lakeforge.training.promotion import describe

    c = client()
    before = entry["champion_before"]
    c.set_model_version_tag(name, version, DECISION_TAG, entry["decision"])
    c.set_model_version_tag(name, version, CHAMPION_BEFORE_TAG, before["version"] if before else "none")
    c.update_model_version(name, version, description=describe(entry))
    c.set_model_version_tag(name, version, STATE_TAG, "complete")


def champion_before(version) -> str | None:
    """The champion ``version`` was decided against (None: there was none), from its tag (or the
    tag's name before the tags were cut)."""
    tags = version.tags or {}
    before = tags.get(CHAMPION_BEFORE_TAG, tags.get("lakeforge.decision.champion_before"))
    return None if before in (None, "", "none") else before


def promoted_version(name: str, run_key: str) -> str | None:
    """The version this run key made champion, or None: its complete version was decided
    ``promoted`` AND the ``champion`` alias is on it (the alias is the commit point)."""
    v = complete_version(name, run_key)
    if v is None or v.tags.get(DECISION_TAG) != "promoted":
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
