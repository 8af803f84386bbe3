"""ingest_seattle_weather (airflow dag): the monthly drops of Seattle's weather -> raw/ in the lake."""

import pendulum

from lakeforge.orchestration.ingest_dag import build_ingest_dag

dag = build_ingest_dag(
    "seattle_weather",
    dag_id="ingest_seattle_weather",
    start_date=pendulum.datetime(2012, 1, 1, tz="UTC"),
    every="month",  # one drop per month, named by the month's first day
)
