"""DAG factory: a data-aware Spark transformation over raw partitions.

Scheduled on the raw assets it reads (it runs when all of them were updated); ``plan_dates``
turns the triggering asset events into exactly the new dates whose inputs are all present (or, on
a manual run, the ``start``..``end`` range of the trigger form), and ONE ``spark-submit``
processes all of them: one JVM per run, not per day or per stage.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import DAG, task

from lakeforge.orchestration.assets import lake_asset, raw_asset
from lakeforge.orchestration.params import day_param, manual_range
from lakeforge.settings import PROJECT_ROOT

log = logging.getLogger(__name__)


Manifests = dict[tuple[str, str], dict[str, Any] | None]  # (table, ds) -> manifest (None: absent)


def _manifest(lake, table: str, ds: str, seen: Manifests | None) -> dict[str, Any] | None:
    """A raw partition's manifest, read once per planning task (``seen`` keeps what was read:
    a round trip per partition on HDFS)."""
    from lakeforge.publish import read_manifest

    if seen is None:
        return read_manifest(lake, table, f"ds={ds}")
    if (table, ds) not in seen:
        seen[(table, ds)] = read_manifest(lake, table, f"ds={ds}")
    return seen[(table, ds)]


def plan_dates(
    params: dict[str, Any],
    triggering_events: dict[Any, list[Any]] | None,
    inputs: Sequence[str],
    lake_uri: str | None = None,
    seen: Manifests | None = None,
) -> list[str]:
    """Dates to process: the manual range, else the dates of the triggering asset events whose
    raw partitions exist for every input table. ``lake_uri``: the source's lake. ``seen``:
    filled with the manifests read, for ``planned_input_bytes``.

    A manual range with a day whose inputs were never ingested raises ``ValueError`` naming the
    missing partitions, before any Spark starts (retrying cannot help)."""
    from lakeforge.dates import compact_dates
    from lakeforge.lake import Lake

    lake = Lake(lake_uri)
    dates = manual_range(params)
    if dates is not None:
        missing = {t: [ds for ds in dates if not _manifest(lake, t, ds, seen)] for t in inputs}
        missing = {t: days for t, days in missing.items() if days}
        if missing:
            raise ValueError(
                "not ingested yet, nothing to transform: "
                + "; ".join(f"{t} has no partition for {compact_dates(days)}" for t, days in missing.items())
                + f" (in {lake.root_uri}). Ingest those days first (the ingest DAG), then trigger again."
            )
        return dates

    candidates = sorted({
        event.extra["ds"]
        for events in (triggering_events or {}).values()
        for event in events
        if getattr(event, "extra", None) and event.extra.get("ds")
    })
    ready = [ds for ds in candidates if all(_manifest(lake, t, ds, seen) for t in inputs)]
    waiting = sorted(set(candidates) - set(ready))
    if waiting:
        log.warning("waiting for all inputs (%s) of: %s", ", ".join(inputs), ", ".join(waiting))
    return ready


def planned_input_bytes(inputs: Sequence[str], dates: Sequence[str], lake_uri: str | None = None,
                        seen: Manifests | None = None) -> int | None:
    """Bytes of the planned dates' raw inputs, read from their manifests, counted only as far as
    the short-run limit (``LAKEFORGE_SPARK_SHORT_RUN_MB``; past it the exact size does not matter
    and a year of manifests is not read). None when short runs are off. ``seen``: manifests
    ``plan_dates`` already read."""
    from lakeforge.lake import Lake
    from lakeforge.spark import short_run_limit

    limit = short_run_limit()
    if not limit:
        return None
    lake, total = Lake(lake_uri), 0
    for ds in dates:
        for table in inputs:
            manifest = _manifest(lake, table, ds, seen)
            total += manifest["bytes"] if manifest else 0
            if total > limit:
                return total
    return total


def build_spark_transform_dag(
    *,
    dag_id: str,
    source_name: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, str]],
    application: str,
    start_date: datetime,
    doc_md: str,
) -> DAG:
    """``inputs``: raw table names; ``outputs``: (layer, table) the job publishes."""
    from lakeforge.orchestration.spark_operators import GatedSparkSubmitOperator
    from lakeforge.sources import get_source
    from lakeforge.spark import spark_conf

    get_source(source_name)  # a declared source whose namespace no other pipeline claims

    with DAG(
        dag_id=dag_id,
        schedule=[raw_asset(source_name, t) for t in inputs],
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # one writer per table: the job's staging area is per table
        default_args={"owner": "lakeforge", "retries": 2, "retry_delay": timedelta(minutes=2)},
        tags=["lakeforge", "transform", "spark", source_name],
        doc_md=doc_md,
        params={
            "start": day_param("Start date", "Manual reprocessing: first date (inclusive)."),
            "end": day_param("End date", "Manual reprocessing: last date (inclusive)."),
        },
    ) as dag:

        @task(task_id="plan_dates")
        def plan(params=None, triggering_asset_events=None, ti=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowFailException

            from lakeforge.dates import compact_dates
            from lakeforge.lake import source_lake

            tables = [f"raw/{t}" for t in inputs]
            lake_uri = source_lake(source_name).root_uri
            seen: Manifests = {}  # each manifest is read once by the two steps below
            try:
                dates = plan_dates(params or {}, triggering_asset_events, tables, lake_uri, seen=seen)
            except ValueError as exc:  # bad trigger parameters or missing inputs: retrying cannot help
                raise AirflowFailException(str(exc)) from exc
            # How much the Spark job will read: a short run gets JVMs that warm up fast.
            ti.xcom_push(key="input_bytes", value=planned_input_bytes(tables, dates, lake_uri, seen=seen))
            # The job's --dates: ranges, so any set of days fits a command line.
            ti.xcom_push(key="dates_arg", value=compact_dates(dates))
            return dates

        @task.short_circuit(task_id="anything_to_do")
        def anything(dates: list[str]) -> bool:
            return bool(dates)

        dates = plan()
        transform = GatedSparkSubmitOperator(
            task_id="spark_transform",
            job=Path(application).stem,  # its run reports: <source>/_reports/<job>/
            source_name=source_name,
            application=str(PROJECT_ROOT / application),
            conn_id="spark_default",
            name=dag_id,
            conf=spark_conf(),
            input_bytes="{{ ti.xcom_pull(task_ids='plan_dates', key='input_bytes') }}",
            application_args=[
                "--dates", "{{ ti.xcom_pull(task_ids='plan_dates', key='dates_arg') }}",
                "--run-id", "{{ run_id }}",
            ],
            outlets=[lake_asset(source_name, layer, table) for layer, table in outputs],
        )
        anything(dates) >> transform
    return dag
