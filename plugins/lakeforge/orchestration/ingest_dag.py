"""DAG factory: landing -> raw ingestion for any declared ``Source``.

Per daily table: a reschedule-mode sensor waits for the day's drop, then an ingest task publishes
``<source>/raw/<table>/ds=<date>/`` (the source's lake namespace) and emits the table's asset. Per snapshot table: an ingest task that
takes the drop if there is one that day and is skipped otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from lakeforge.orchestration.assets import raw_asset
from lakeforge.orchestration.operators import IngestPartitionOperator, LandingDeliverySensor
from lakeforge.settings import get_settings
from lakeforge.sources import get_source

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

- Each run owns the partition of its data interval's first day (`{{{{ data_interval_start | ds }}}}`).
- Daily tables: the sensor waits (reschedule mode: a look every {get_settings().sensor_poke_seconds} s,
  `LAKEFORGE_SENSOR_POKE_SECONDS`, no worker slot held in between) for the drop, then the ingest task publishes
  the partition atomically with a `_manifest.json` (sha256, bytes, rows, source file, run id).
- Reruns are no-ops when the content is unchanged; byte-identical resends add nothing.
- A bad file (empty, truncated, not CSV, another day's rows) goes to
  `{source.name}/quarantine/raw/<table>/ds=<ds>/` with a `.reason.json`; the task fails naming the file and is
  not retried. After a corrected redelivery, clear the task.
- Param `force_republish` rewrites partitions even when unchanged (new manifest, same data).
- Emits one asset per raw table (`{source.name}.raw.<table>`) for data-aware downstream DAGs.

{dag_links(source.name)}
"""


def build_ingest_dag(
    source_name: str,
    *,
    dag_id: str,
    start_date: datetime,
    end_date: datetime | None = None,
    schedule: str = "@daily",
    max_active_runs: int = 4,
) -> DAG:
    source = get_source(source_name)
    settings = get_settings()
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date,
        end_date=end_date,
        catchup=True,
        max_active_runs=max_active_runs,
        default_args=DEFAULT_ARGS,
        tags=["lakeforge", "ingest", source.name],
        doc_md=_doc(source_name, dag_id),
        params={
            "force_republish": Param(
                False,
                type="boolean",
                title="Force republish",
                description="Rewrite the raw partitions even if the delivered content is unchanged.",
            ),
        },
    ) as dag:
        for table in source.daily_tables:
            wait = LandingDeliverySensor(
                task_id=f"wait_for_{table.name}",
                source_name=source.name,
                table=table.name,
                mode="reschedule",
                poke_interval=settings.sensor_poke_seconds,
                timeout=settings.sensor_timeout_seconds,
                # A timed-out wait is final whatever the retries (AirflowSensorTimeout never retries);
                # rerun by clearing once the drop is there. The retries are for the scheduler: on a
                # loaded machine it can requeue a rescheduled poke before it handles that poke's exit,
                # and then fails the try ("finished with state success, but ... queued").
                retries=3,
                retry_delay=timedelta(seconds=settings.sensor_poke_seconds),
                retry_exponential_backoff=False,
            )
            ingest = IngestPartitionOperator(
                task_id=f"ingest_{table.name}",
                source_name=source.name,
                table=table.name,
                outlets=[raw_asset(source.name, table.name)],
            )
            wait >> ingest
        for table in source.snapshot_tables:
            IngestPartitionOperator(
                task_id=f"ingest_{table.name}_snapshot",
                source_name=source.name,
                table=table.name,
                outlets=[raw_asset(source.name, table.name)],
            )
    return dag
