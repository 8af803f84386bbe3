"""Spark job: nycflights' raw -> clean -> features, in ONE Spark application.

    spark-submit spark_jobs/transform_flights.py --dates 2013-01-01,2013-01-02
    spark-submit spark_jobs/transform_flights.py --start 2013-01-01 --end 2013-01-31 [--lake URI]

The generic job (``lakeforge.transform.job``, also ``spark_jobs/transform.py --pipeline nycflights``)
running nycflights' declaration (``lakeforge/pipelines/nycflights/transform.py``). This entry point
only keeps the job's name, ``transform_flights``: its Spark app, its run reports
(``_reports/transform_flights/``, where the DAG reads them) and the ``job`` of its manifests.
"""

from __future__ import annotations

import sys
from typing import Any

from lakeforge.pipelines.nycflights.transform import TRANSFORM
from lakeforge.spark import end_of_job
from lakeforge.transform import job

JOB = "transform_flights"


def run(spark, lake, dates: list[str], run_id: str | None = None,
        inputs: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """One run in an existing Spark session (``lakeforge.transform.job.run``)."""
    return job.run(spark, lake, TRANSFORM, dates, run_id, inputs, JOB)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return job.main(["--pipeline", TRANSFORM.source, *(sys.argv[1:] if argv is None else argv)], job=JOB)


if __name__ == "__main__":
    main()
    end_of_job()
