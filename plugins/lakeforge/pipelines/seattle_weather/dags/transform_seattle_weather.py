"""transform_seattle_weather (airflow dag): raw -> clean -> features for seattle_weather, on Spark."""

import pendulum

from lakeforge.orchestration.transform_dag import build_pipeline_transform_dag

dag = build_pipeline_transform_dag(
    "seattle_weather",
    dag_id="transform_seattle_weather",
    start_date=pendulum.datetime(2012, 1, 1, tz="UTC"),
)
