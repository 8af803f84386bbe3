"""DAG factory: train a pipeline's model (its ``ModelSpec``) on Spark and run the registry gate.

Scheduled weekly OR on either asset (``AssetOrTimeSchedule`` with ``features | retrain_requested``,
an ``AssetAny``: a list would be ``AssetAll``, waiting for both). ``plan_training`` decides
whether there is anything to learn from: a manual run always trains (with the trigger form's
window, family and search budget), a weekly run trains when at least one feature day is newer
than the last training's holdout, a run triggered by batch scoring's retraining request
(``<source>.monitoring.retrain_requested``: the policy fired) too, carrying the event's reason to
the job (``--trigger-reason``: an MLflow tag and the promotion log entry); a features-triggered run
only when ``min_new_days`` have landed (``LAKEFORGE_TRAIN_MIN_NEW_DAYS``), so a daily trickle of
partitions does not retrain daily. A window the lake cannot fill yet (too few feature days for the
configured window and holdout) fails a manual run with the reason, the form asked for it; a scheduled
or asset-triggered run trains nothing and says why (unpausing the DAG starts the last weekly run at
once: on a lake a few days old that is not a failure). A configuration no data can fill
(``validation_days >= window_days``) fails every run. The
training itself is ONE ``spark-submit`` of the generic job (``spark_jobs/train.py --pipeline
<name>``; nycflights' DAG runs it as ``spark_jobs/train_delay_model.py``) whose run key is
``<dag_id>/<run_id>``: a retried task registers no second version. The trigger form's defaults
and family choices are the pipeline's (``lakeforge.pipelines.<name>.model``).

The model asset (``models.<name>``: "the champion changed", what batch scoring schedules on) is the
outlet of ``publish_champion``, not of the training task: it reads this run key's decision from
the registry and emits the event only when the version became champion; otherwise it is skipped,
and a skipped task emits no asset event (a rejected challenger, or no decision, changes nothing
downstream).

``plan_training`` records the window it trains on, or why it does not train, as the run's note
(``training_note``; copied onto the run by the ``lakeforge_run_notes`` plugin).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Sequence

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

from lakeforge.orchestration.assets import lake_asset, model_asset, retrain_asset
from lakeforge.orchestration.params import RUN_NOTE, day_param
from lakeforge.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)


def decide_plan(
    params: dict[str, Any],
    run_type: str,
    available: Sequence[str],
    last_trained_end: str | None,
    min_new_days: int,
    retrain_reasons: Sequence[str] = (),
) -> dict[str, Any]:
    """What this run trains: the job's arguments, or ``train: False`` and why not (pure).
    ``retrain_reasons``: the reasons of the retraining requests that triggered the run (one new
    day is then enough, as for a weekly run)."""
    from lakeforge.training.split import make_split

    end = params.get("end") or (max(available) if available else None)
    plan = {
        "train": False,
        "end": end,
        "window_days": int(params["window_days"]),
        "holdout_days": int(params["holdout_days"]),
        "validation_days": int(params["validation_days"]),
        "family": params["model_family"],
        "search_budget": int(params["search_budget"]),
        "search_parallelism": int(params["search_parallelism"]),
        "trigger_reason": "; ".join(r for r in retrain_reasons if r),
    }
    if end is None:
        plan["reason"] = "no feature partitions yet"
        return plan
    new_days = [d for d in available if last_trained_end is None or d > last_trained_end]
    if run_type != "manual":
        needed = 1 if run_type == "scheduled" or retrain_reasons else min_new_days
        if len(new_days) < needed:
            plan["reason"] = (f"{len(new_days)} feature day(s) newer than the last training "
                              f"(holdout end {last_trained_end}); {run_type} runs need {needed}")
            return plan
    sizes = {k: plan[k] for k in ("window_days", "holdout_days", "validation_days")}
    try:
        split = make_split(available, end=end, **sizes)
    except ValueError as exc:
        # A manual run's form asked for this window, and a configuration no data can ever fill
        # (validation_days >= window_days) is wrong whoever runs it: a clear, non-retryable failure.
        # A scheduled or asset-triggered run on a lake that is still too short for the configured
        # window (the weekly run that unpausing the DAG starts, a few days in) is not a failure:
        # nothing to train yet, and the note says why.
        if run_type == "manual" or not _fits_full_calendar(end, **sizes):
            raise
        plan["reason"] = f"not enough feature days yet for the configured window: {exc}"
        return plan
    plan.update(train=True, reason=f"{len(new_days)} new feature day(s)", split=split.boundaries())
    return plan


FAMILY_HELP = {
    "binary": "LightGBM across executors, xgboost.spark, MLlib LogisticRegression or GBT.",
    "multiclass": "MLlib RandomForestClassifier or multinomial LogisticRegression.",
    "regression": "MLlib GBTRegressor, RandomForestRegressor or LinearRegression.",
}


def _fits_full_calendar(end: str, *, window_days: int, holdout_days: int, validation_days: int) -> bool:
    """Whether the split could be built if every calendar day up to ``end`` had a partition: a
    refusal on the real days is then a shortage of data, not a configuration that cannot work."""
    from datetime import date, timedelta

    from lakeforge.training.split import make_split

    last = date.fromisoformat(end)
    every_day = [(last - timedelta(days=i)).isoformat() for i in range(window_days + holdout_days)]
    try:
        make_split(every_day, end=end, window_days=window_days, holdout_days=holdout_days,
                   validation_days=validation_days)
    except ValueError:
        return False
    return True


def training_note(plan: dict[str, Any]) -> str:
    """The run's note: the window it trains on and why, or why it does not train (pure)."""
    if not plan.get("train"):
        return f"nothing to train: {plan.get('reason')}"
    split = plan.get("split") or {}
    note = (f"{plan['family']} on {split.get('train_start')}..{split.get('train_end')}, holdout "
            f"{split.get('holdout_start')}..{split.get('holdout_end')}: {plan.get('reason')}")
    return note + (f"; requested: {plan['trigger_reason']}" if plan.get("trigger_reason") else "")


def retrain_reasons(triggering_asset_events: Any, source_name: str) -> list[str]:
    """The reasons in the retraining requests among a run's triggering asset events."""
    name = retrain_asset(source_name).name
    return [str((getattr(e, "extra", None) or {}).get("reason") or "retraining requested")
            for events in (triggering_asset_events or {}).values() for e in events
            if getattr(getattr(e, "asset", None), "name", None) == name]


def last_trained_end(source_name: str, model_name: str, lake_root: str | None = None) -> str | None:
    from lakeforge.lake import source_lake
    from lakeforge.training.promotion import read_log

    entries = read_log(source_lake(source_name, lake_root), model_name)
    return max(e["holdout"][1] for e in entries) if entries else None


def build_train_dag(
    *,
    dag_id: str,
    source_name: str,
    start_date: datetime,
    doc_md: str,
    application: str = "spark_jobs/train.py",
    cron: str = "0 4 * * 1",
) -> DAG:
    """The training DAG of the pipeline ``source_name`` (its ``model.py`` declares the model)."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from lakeforge.spark import spark_conf
    from lakeforge.training.spec import load_model_spec

    s = get_settings()
    spec = load_model_spec(source_name)
    layer, table = spec.features.split("/", 1)
    features = lake_asset(source_name, layer, table)
    with DAG(
        dag_id=dag_id,
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"),
                                     assets=features | retrain_asset(source_name)),
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # one registry gate at a time: champion moves are decided in order
        default_args={"owner": "lakeforge", "retries": 2, "retry_delay": timedelta(minutes=2)},
        tags=["lakeforge", "training", "spark", "mlflow", source_name],
        doc_md=doc_md,
        params={
            "end": day_param("Last day", "Newest feature day used (the holdout ends here). Empty: the newest published."),
            "window_days": Param(spec.window_days, type="integer", minimum=2, maximum=max(400, spec.window_days),
                                 title="Training window (days)", description="Days of features before the holdout."),
            "holdout_days": Param(spec.holdout_days, type="integer", minimum=1, maximum=max(60, spec.holdout_days),
                                  title="Holdout (days)",
                                  description="Most recent days, never trained on; the gate scores on them."),
            "validation_days": Param(spec.validation_days, type="integer", minimum=1,
                                     maximum=max(60, spec.validation_days),
                                     title="Validation (days)",
                                     description="Last days of the window on which search trials are scored "
                                                 "(fewer than the window's days)."),
            "model_family": Param(spec.family, type="string", enum=list(spec.families), title="Model family",
                                  description=FAMILY_HELP[spec.task]),
            "search_budget": Param(s.search_budget, type="integer", minimum=1, maximum=64, title="Search budget",
                                   description="Hyperparameter trials (each a nested MLflow run)."),
            "search_parallelism": Param(s.search_parallelism, type="integer", minimum=1, maximum=16,
                                        title="Parallel trials", description="Trials fitted at the same time."),
        },
    ) as dag:

        @task(task_id="plan_training")
        def plan(params=None, dag_run=None, triggering_asset_events=None, ti=None) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from lakeforge.lake import source_lake
            from lakeforge.training.data import feature_partitions, usable

            settings = get_settings()
            model_name = load_model_spec(source_name).name  # as the job resolves it, at run time
            days = [p["ds"] for p in usable(feature_partitions(source_lake(source_name), spec.features))]
            run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type)) if dag_run else "manual"
            try:
                result = decide_plan(params or {}, run_type, days, last_trained_end(source_name, model_name),
                                     settings.train_min_new_days,
                                     retrain_reasons(triggering_asset_events, source_name))
            except ValueError as exc:  # a window the data cannot support: retrying cannot help
                ti.xcom_push(key=RUN_NOTE, value=f"failed at planning: {exc}")
                raise AirflowFailException(str(exc)) from exc
            log.info("training plan: %s", result)
            ti.xcom_push(key=RUN_NOTE, value=training_note(result))
            if result["train"]:
                from lakeforge.training.tracking import check_reachable

                check_reachable(settings.mlflow_tracking_uri)  # a clear message here; Airflow retries
            return result

        @task.short_circuit(task_id="anything_to_train")
        def anything(p: dict[str, Any]) -> bool:
            return bool(p["train"])

        planned = plan()
        xcom = "ti.xcom_pull(task_ids='plan_training')"
        train = SparkSubmitOperator(
            task_id="train_and_register",
            application=str(PROJECT_ROOT / application),
            conn_id="spark_default",
            name=dag_id,
            conf=spark_conf(),
            application_args=[
                "--pipeline", source_name,
                "--run-key", "{{ dag.dag_id }}/{{ run_id }}",
                "--dag-id", "{{ dag.dag_id }}",
                "--dag-run-id", "{{ run_id }}",
                # "<run type>:<user>", e.g. manual:admin, asset_triggered, scheduled
                "--triggered-by", "{{ dag_run.run_type | string | replace('DagRunType.', '') | lower }}"
                                  "{% if dag_run.triggering_user_name %}:{{ dag_run.triggering_user_name }}{% endif %}",
                "--end", "{{ %s['end'] }}" % xcom,
                "--window-days", "{{ %s['window_days'] }}" % xcom,
                "--holdout-days", "{{ %s['holdout_days'] }}" % xcom,
                "--validation-days", "{{ %s['validation_days'] }}" % xcom,
                "--family", "{{ %s['family'] }}" % xcom,
                "--search-budget", "{{ %s['search_budget'] }}" % xcom,
                "--search-parallelism", "{{ %s['search_parallelism'] }}" % xcom,
                # The policy's reason (empty unless a retraining request triggered the run): a list
                # element of the command, never parsed by a shell.
                "--trigger-reason", "{{ %s.get('trigger_reason') or '' }}" % xcom,
            ],
        )

        champion_asset = model_asset(spec.name)

        @task(task_id="publish_champion", outlets=[champion_asset])
        def publish_champion(dag_run=None, outlet_events=None) -> str:
            """The model asset's event, only when this run's version became champion."""
            import mlflow
            from airflow.sdk.exceptions import AirflowSkipException

            from lakeforge.training import registry
            from lakeforge.training.tracking import check_reachable, configure_client_retries

            settings = get_settings()
            model_name = load_model_spec(source_name).name
            configure_client_retries()
            check_reachable(settings.mlflow_tracking_uri)
            mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
            mlflow.set_registry_uri(settings.mlflow_tracking_uri)
            run_key = f"{dag_id}/{dag_run.run_id}"
            version = registry.promoted_version(model_name, run_key)
            if version is None:
                done = registry.complete_version(model_name, run_key)
                what = (f"v{done.version} {done.tags.get('lakeforge.decision')}" if done is not None
                        else "no complete version")
                champion = registry.champion_version(model_name)
                stays = f"v{champion.version}" if champion is not None else "none"
                raise AirflowSkipException(f"{model_name} run key {run_key}: {what}; champion stays "
                                           f"{stays}: no {champion_asset.name} event")
            outlet_events[champion_asset].extra = {
                "model": model_name, "version": version, "run_key": run_key,
                "model_uri": f"models:/{model_name}/{version}"}
            log.info("%s v%s is champion: %s event emitted", model_name, version, champion_asset.name)
            return version

        anything(planned) >> train >> publish_champion()
    return dag
