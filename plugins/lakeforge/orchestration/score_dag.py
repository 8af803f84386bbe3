"""DAG factory: batch scoring of a pipeline's new feature days with its champion model, on Spark.

The pipeline's ``model.py`` (``ModelSpec``) names the features table, the predictions table and
the registered model. Scheduled on the features asset (``<source>.features.<table>``) or a new champion
(``models.<name>``): the transform's asset events name the days it published (``extra["dates"]``),
and ``plan_scoring`` turns them into the days to score, plus every pending day: features published
but never scored (no predictions partition), which catches up the events a run deferred by
``max_active_runs=1`` never saw, and the days published before the first champion existed. A manual run scores the
trigger form's ``start``..``end`` (e.g. a rescore with another ``model_version``: a day scored by
an older champion is not pending), or, without a range, the pending days. The run's note says
which days and why. ``plan_scoring`` also resolves the model ONCE: ``models:/<name>@champion`` (or
the form's version) becomes a version number that the job scores every row with. No champion yet:
the run is skipped with the reason on ``plan_scoring`` (a skip, not a failure: nothing is wrong,
there is just nothing to score with). MLflow unreachable: ``plan_scoring`` fails naming the URI and
Airflow retries it; nothing was written.

The scoring itself is ONE ``spark-submit`` of ``spark_jobs/score.py --pipeline <name>`` (write-audit-publish
like the transform: a day failing the predictions suite is not published and the task fails
without retries, naming the check). Its outlet, ``<source>.predictions.<table>``, gets one event per
run naming the published days and the model version; a run that published nothing (every day
already scored by that version from the same features) is skipped and emits none.

The job also monitors the days whose outcomes are in and takes the retraining decision for the
champion (``lakeforge.monitoring``). When it fires, ``request_retraining`` emits
``<source>.monitoring.retrain_requested`` (the pipeline's training DAG is scheduled on it beside
its weekly timetable) with the reason in the event's extra; otherwise it is skipped and emits nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import DAG, Param, task

from lakeforge.orchestration.assets import lake_asset, model_asset, retrain_asset
from lakeforge.orchestration.params import RUN_NOTE, day_param, manual_range
from lakeforge.orchestration.transform_dag import Plan, cached_manifest, days_text, event_days, scan_pending
from lakeforge.orchestration.spark_operators import GatedSparkSubmitOperator
from lakeforge.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def event_dates(triggering_events: dict[Any, list[Any]] | None) -> list[str]:
    """The days named by asset events: ``extra["dates"]`` (the transform's) or ``extra["ds"]``."""
    return event_days(triggering_events)


def plan_run(params: dict[str, Any], triggering_events: dict[Any, list[Any]] | None, features: str, predictions: str,
             lake_uri: str | None = None, scan: bool = True, every: str = "day") -> tuple[Plan, int]:
    """(the run's ``Plan``, bytes of its days' features). A manual range: every day in it, each
    of which must have a published features partition (``ValueError`` naming the missing ones:
    retrying cannot help). Any other run: the events' days that have one, plus (``scan``) the
    pending days: published features, no predictions partition (never scored), not empty, and
    not blocked by the predictions suite since the features were published. A day scored by an
    older champion is not pending: rescoring stays a manual run. ``features`` / ``predictions``:
    the tables (``ModelSpec.features``, ``ModelSpec.predictions``); ``every``: the step between
    the source's partitions (``lakeforge.transform.Transform.every``): ``month`` turns a manual
    range into the first days of the months it touches."""
    from lakeforge.dates import compact_dates
    from lakeforge.lake import Lake

    lake = Lake(lake_uri)
    candidates = manual_range(params, every)
    manual = candidates is not None
    if not manual:
        candidates = event_dates(triggering_events)
    seen: dict[tuple[str, str], dict[str, Any] | None] = {}
    manifests = {ds: cached_manifest(lake, features, ds, seen) for ds in candidates}
    missing = [ds for ds, m in manifests.items() if m is None]
    if missing and manual:
        raise ValueError(f"no published {features} partition for {compact_dates(missing)} (in {lake.root_uri}): "
                         f"transform those days first, then trigger again")
    if missing:
        log.warning("not published (any more): %s", compact_dates(missing))
    ready = [ds for ds, m in manifests.items() if m is not None]
    pending, blocked = [], {}
    if scan and not manual:
        found, blocked = scan_pending(lake, [features], [predictions], verdict_tables=[predictions], stale=False,
                                      seen=seen)
        found = [ds for ds in found if ds not in manifests]
        manifests.update({ds: cached_manifest(lake, features, ds, seen) for ds in found})
        # A day without feature rows is never scored (the job leaves it out): not pending for ever.
        pending = [ds for ds in found if (manifests[ds] or {}).get("rows", 1)]
    days = sorted({*ready, *pending})
    size = sum((manifests[ds] or {}).get("bytes", 0) for ds in days)
    plan = Plan(days, manual=manual, from_events=[] if manual else ready, pending=pending, blocked=blocked,
                every=every)
    return plan, size


def plan_dates(params: dict[str, Any], triggering_events: dict[Any, list[Any]] | None, features: str,
               predictions: str, lake_uri: str | None = None, scan: bool = False,
               every: str = "day") -> tuple[list[str], int]:
    """(days to score, bytes of their features): ``plan_run``'s, from the events or the form
    only unless ``scan`` (the DAG's planning task scans)."""
    plan, size = plan_run(params, triggering_events, features, predictions, lake_uri, scan, every)
    return plan.dates, size


def resolve_model(name: str, model_version: str | None) -> tuple[str | None, str]:
    """(version to score with, why): the form's version if it exists, else the champion's;
    None when there is no champion. ``MlflowUnavailable`` (retried) naming the URI when the
    registry does not answer; ``ValueError`` for a version that does not exist."""
    from lakeforge.scoring import NoModel, connect, no_champion_reason, resolve

    connect()
    try:
        version = resolve(name, model_version or None)
    except NoModel as exc:
        raise ValueError(str(exc)) from exc
    if version is None:
        return None, no_champion_reason(name)
    how = "the trigger form's model_version" if model_version else f"models:/{name}@champion"
    return str(version.version), f"{name} v{version.version} ({how})"


def retrain_event(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The retraining asset event's extra from a scoring run's report, or None when the policy did
    not fire (or the run took no decision)."""
    decision = (report or {}).get("retraining") or {}
    if not decision.get("retrain"):
        return None
    keep = ("reason", "trigger", "model_version", "as_of", "policy", "performance", "drift")
    model = (report.get("model") or {}).get("name")
    return {**{k: decision.get(k) for k in keep}, "model": model, "scoring_run_id": report.get("run_id"),
            "monitored_days": (report.get("monitoring") or {}).get("days", [])}


class ScoreSparkSubmitOperator(GatedSparkSubmitOperator):
    """The scoring job's task: a job that skipped (no champion when it started) or published
    nothing is a skipped task (no asset event); otherwise the event names the published days and
    the model version."""

    def execute(self, context: "Context") -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        super().execute(context)
        report = self._report(context) or {}
        if report.get("status") == "skipped":
            raise AirflowSkipException(report.get("reason", "skipped"))
        if not report.get("published"):
            raise AirflowSkipException(f"nothing published: {report.get('reason', 'no day to score')}")
        model = report.get("model") or {}
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {
                "dates": report["published"], "run_id": context["run_id"], "model": model.get("name"),
                "model_version": model.get("version")}
        self.log.info("published predictions of %s with %s v%s", ",".join(report["published"]), model.get("name"),
                      model.get("version"))


def build_score_dag(
    *,
    dag_id: str,
    source_name: str,
    start_date: datetime,
    doc_md: str,
    application: str = "spark_jobs/score.py",
) -> DAG:
    """The scoring DAG of the pipeline ``source_name`` (its ``model.py`` declares the model)."""
    from lakeforge.spark import spark_conf
    from lakeforge.training.spec import load_model_spec
    from lakeforge.transform import load_transform

    spec = load_model_spec(source_name)
    features, predictions = spec.features, spec.predictions
    every = load_transform(source_name).every  # a monthly source's manual range means its months
    with DAG(
        dag_id=dag_id,
        # New feature days, or a new champion (the first one scores the days published before it).
        schedule=lake_asset(source_name, *features.split("/", 1)) | model_asset(spec.name),
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # one writer of the predictions table
        default_args={"owner": "lakeforge", "retries": 2, "retry_delay": timedelta(minutes=2)},
        tags=["lakeforge", "scoring", "spark", "mlflow", source_name],
        doc_md=doc_md,
        params={
            "start": day_param("Start date", "Manual scoring or rescore: first day (inclusive)."),
            "end": day_param("End date", "Manual scoring or rescore: last day (inclusive)."),
            "model_version": Param(None, type=["null", "string"], pattern=r"^[0-9]+$", title="Model version",
                                   description="Score with this registered version (a rescore). Empty: the champion."),
            "force": Param(False, type="boolean", title="Score again",
                           description="Also rescore days this version already scored from the same features."),
        },
    ) as dag:

        @task(task_id="plan_scoring")
        def plan(params=None, triggering_asset_events=None, ti=None) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from lakeforge.dates import compact_dates
            from lakeforge.lake import source_lake

            params = params or {}

            def stop(exc: Exception, note: str) -> NoReturn:
                ti.xcom_push(key=RUN_NOTE, value=note)
                log.info("run note: %s", note)
                raise exc

            try:
                planned, size = plan_run(params, triggering_asset_events, features, predictions,
                                         source_lake(source_name).root_uri, every=every)
            except ValueError as exc:  # bad trigger parameters or missing features: retrying cannot help
                stop(AirflowFailException(str(exc)), f"failed at planning: {exc}")
            days = planned.dates
            if not days:
                note = planned.note("score")
                stop(AirflowSkipException(note), note)
            try:
                # The name as the job reads it (the settings, at run time), not as parsed.
                version, why = resolve_model(load_model_spec(source_name).name, params.get("model_version"))
            except ValueError as exc:
                stop(AirflowFailException(str(exc)), f"failed at planning: {exc}")
            if version is None:
                stop(AirflowSkipException(why), f"nothing to score with: {why} ({len(days)} day(s) waiting: "
                                                f"{days_text(days)})")
            note = f"{planned.note('score')}; with {why}"
            ti.xcom_push(key=RUN_NOTE, value=note)
            log.info("run note: %s", note)
            return {"dates": compact_dates(days), "days": len(days), "model_version": version,
                    "input_bytes": size, "force": bool(params.get("force"))}

        planned = plan()
        xcom = "ti.xcom_pull(task_ids='plan_scoring')"
        score = ScoreSparkSubmitOperator(
            task_id="spark_score",
            job=spec.scoring_job,
            source_name=source_name,
            application=str(PROJECT_ROOT / application),
            conn_id="spark_default",
            name=dag_id,
            conf=spark_conf(),
            input_bytes="{{ %s['input_bytes'] }}" % xcom,
            partitions="{{ %s['days'] }}" % xcom,
            application_args=[
                "--pipeline", source_name,
                "--dates", "{{ %s['dates'] }}" % xcom,
                "--model-version", "{{ %s['model_version'] }}" % xcom,
                "--run-id", "{{ run_id }}",
                "{{ '--force' if %s['force'] else '--no-force' }}" % xcom,
            ],
            outlets=[lake_asset(source_name, *predictions.split("/", 1))],
        )
        requested = retrain_asset(source_name)

        @task(task_id="request_retraining", outlets=[requested], trigger_rule="none_failed")
        def request_retraining(run_id=None, outlet_events=None) -> str:
            """The retraining event, only when this run's decision fired (a skipped task emits none)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from lakeforge.lake import source_lake
            from lakeforge.reports import read_run_report

            report = read_run_report(source_lake(source_name), spec.scoring_job, run_id)
            extra = retrain_event(report)
            if extra is None:
                decision = (report or {}).get("retraining") or {}
                raise AirflowSkipException(decision.get("reason") or "no retraining decision in this run")
            outlet_events[requested].extra = extra
            log.warning("%s: %s event emitted", extra["reason"], requested.name)
            return extra["reason"]

        planned >> score >> request_retraining()
    return dag
