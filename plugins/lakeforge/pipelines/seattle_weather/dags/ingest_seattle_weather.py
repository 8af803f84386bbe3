"""ingest_seattle_weather (airflow dag): the monthly drops of Seattle's weather -> raw/ in the lake."""

import pendulum

from lakeforge.orchestration.ingest_dag import build_ingest_dag

dag = build_ingest_dag(
    "seattle_weather",
    dag_id="ingest_seattle_weather",
    schedule="@monthly",  # one drop per month: each run owns the partition of the month's first day
    start_date=pendulum.datetime(2012, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2015, 12, 1, tz="UTC"),  # the data ends with 2015
    max_active_runs=2,
)
