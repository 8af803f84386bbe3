"""DAG factory: landing -> raw ingestion for any declared ``Source``, run when deliveries land.

The DAG is scheduled on the source's landing asset, whose watcher on the triggerer fires when
files land (``lakeforge.orchestration.triggers``). A run takes every delivered day that raw does
not hold yet, however many: ``plan_deliveries`` names them (from the watcher's events and a scan
of the landing area against raw), ``ingest`` publishes each table of each day
(``lakeforge.ingest``) and emits one event per raw asset naming the days it published, and
``refused_deliveries`` fails the run if a file was quarantined. Three task runs per batch of days,
where a sensor and a task per table and day took seven task runs per day.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from lakeforge.orchestration.assets import landing_asset, raw_asset
from lakeforge.orchestration.params import RUN_NOTE, day_param, manual_range
from lakeforge.settings import get_settings
from lakeforge.sources import get_source

log = logging.getLogger(__name__)

DEFAULT_ARGS = {
    "owner": "lakeforge",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}


def _doc(source_name: str, dag_id: str) -> str:
    from lakeforge.orchestration.reports_app import dag_links

    source = get_source(source_name)
    tables = "\n".join(
        f"| `{t.name}` | {t.cadence} | `{t.glob('<ds>')}` | `{source.name}/raw/{t.name}/ds=<ds>/` | {t.description} |"
        for t in source.tables
    )
    return f"""
### {dag_id}: landing -> raw for `{source.name}`

{source.description}

Landing area: `<LAKEFORGE_LANDING_ROOT>/{source.name}/`; lake namespace: `<LAKEFORGE_LAKE_ROOT>/{source.name}/`.

| table | cadence | landing file | lake partition | what |
|---|---|---|---|---|
{tables}

- Runs start when files land: a watcher on Airflow's triggerer lists the landing area every
  {get_settings().delivery_poll_seconds} s (`LAKEFORGE_DELIVERY_POLL_SECONDS`); no worker slot is held while nothing comes.
- A run takes every delivered day raw does not hold yet (the run's note names them), however many:
  a year delivered at once is a few runs. Each table of each day is published atomically with a
  `_manifest.json` (sha256, bytes, rows, source file, run id). A day whose daily table has not landed
  yet is named in the note and taken by the run of its delivery.
- Trigger form: `start`/`end` re-ingest a range of days, whatever the landing area's state.
- Reruns are no-ops when the content is unchanged; byte-identical resends add nothing.
- A bad file (empty, truncated, not CSV, another day's rows) goes to
  `{source.name}/quarantine/raw/<table>/ds=<ds>/` with a `.reason.json`; the other days and tables are
  published, and `refused_deliveries` fails the run naming the file. A corrected redelivery starts a new run.
- Param `force_republish` rewrites partitions even when unchanged (new manifest, same data).
- Emits one asset per raw table (`{source.name}.raw.<table>`) for data-aware downstream DAGs.

{dag_links(source.name)}
"""


def build_ingest_dag(
    source_name: str,
    *,
    dag_id: str,
    start_date: datetime,
    every: str = "day",
) -> DAG:
    """``every``: the step between the source's partitions (a monthly source's notes and manual
    ranges count months)."""
    source = get_source(source_name)
    raw_assets = {t.name: raw_asset(source.name, t.name) for t in source.tables}
    with DAG(
        dag_id=dag_id,
        schedule=landing_asset(source.name),
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # deliveries that land during a run wait for it as one queued run
        # Active from the start: delivered files reach raw with no click (transform, training and
        # scoring start paused). Airflow runs an asset's watcher only for an active DAG, and starts
        # it at the DAG file's next parse: up to AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL
        # (300 s in make up) after an unpause.
        is_paused_upon_creation=False,
        default_args=DEFAULT_ARGS,
        tags=["lakeforge", "ingest", source.name],
        doc_md=_doc(source_name, dag_id),
        params={
            "start": day_param("Start date", "Re-ingest a range: first date (inclusive)."),
            "end": day_param("End date", "Re-ingest a range: last date (inclusive)."),
            "force_republish": Param(
                False,
                type="boolean",
                title="Force republish",
                description="Rewrite the raw partitions even if the delivered content is unchanged.",
            ),
        },
    ) as dag:

        @task(task_id="plan_deliveries")
        def plan(params=None, triggering_asset_events=None, ti=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowFailException

            from lakeforge.ingest import pending_days
            from lakeforge.orchestration.transform_dag import Plan, event_days

            try:
                manual = manual_range(params or {}, every)
            except ValueError as exc:
                ti.xcom_push(key=RUN_NOTE, value=f"failed at planning: {exc}")
                raise AirflowFailException(str(exc)) from exc
            if manual is not None:
                planned = Plan(dates=manual, manual=True, every=every)
            else:
                from_events = event_days(triggering_asset_events)
                named = set(from_events)
                pending = [d for d in pending_days(source) if d not in named]
                planned = Plan(dates=sorted({*from_events, *pending}), from_events=from_events, pending=pending,
                               every=every)
            note = planned.note("ingest")
            ti.xcom_push(key=RUN_NOTE, value=note)
            log.info("run note: %s", note)
            return planned.dates

        @task(task_id="ingest", outlets=list(raw_assets.values()))
        def ingest(days: list[str], params=None, outlet_events=None, run_id=None, ti=None) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowSkipException

            from lakeforge.ingest import ingest_days

            if not days:
                raise AirflowSkipException("nothing delivered that raw does not hold")
            batch = ingest_days(source, days, run_id=run_id, force=bool((params or {}).get("force_republish")))
            summary = {"days": len(days), "counts": batch.counts(), "missing": batch.missing,
                       "refused": batch.rejected}
            ti.xcom_push(key=RUN_NOTE, value=ingest_note(days, batch, every))
            ti.xcom_push(key="refused", value=batch.rejected)
            published = {t: batch.published(t) for t in raw_assets}
            if not any(published.values()):
                # Skipped, so no asset events: a rerun that changed nothing wakes nothing downstream.
                raise AirflowSkipException(f"nothing new published: {batch.counts() or 'no file'}")
            for table, asset in raw_assets.items():
                outlet_events[asset].extra = {"dates": sorted(r.ds for r in published[table]),
                                              "rows": sum(r.rows for r in published[table])}
            return summary

        @task(task_id="refused_deliveries", trigger_rule="all_done", retries=0)
        def refused(ti=None) -> None:
            from airflow.sdk.exceptions import AirflowFailException

            lines = ti.xcom_pull(task_ids="ingest", key="refused") or []
            if lines:  # quarantined with the reason beside them; retrying cannot help
                raise AirflowFailException("\n".join(lines))

        ingest(plan()) >> refused()
    return dag


def ingest_note(days: list[str], batch, every: str = "day") -> str:
    """The run's note once ingested, e.g. ``ingested 2013-01-01..2013-01-31 (31 days): 65
    published; flights not delivered yet: 2013-02-01`` (partitions: a table's day)."""
    from lakeforge.dates import compact_dates
    from lakeforge.orchestration.transform_dag import days_text

    counts = ", ".join(f"{n} {status}" for status, n in sorted(batch.counts().items())
                       if status != "skipped") or "no file"  # skipped: a snapshot table not delivered
    parts = [f"ingested {days_text(days)} ({len(days)} {every}{'s' if len(days) != 1 else ''}): {counts}"]
    for table, missing in sorted(batch.missing.items()):
        parts.append(f"{table} not delivered yet: {compact_dates(missing)}")
    if batch.rejected:
        parts.append(f"{len(batch.rejected)} deliveries refused and quarantined (see refused_deliveries)")
    return "; ".join(parts)
