"""Spark job: raw -> clean -> features for ANY pipeline, in ONE Spark application.

    spark-submit spark_jobs/transform.py --pipeline seattle_weather --dates 2012-01-01,2012-02-01
    spark-submit spark_jobs/transform.py --pipeline seattle_weather --start 2012-01-01 --end 2012-12-31 [--lake URI]

What it does is the pipeline's declaration (``lakeforge.pipelines.<name>.transform.TRANSFORM``)
run by the platform's job, ``lakeforge.transform.job``: staging, row accounting, quality gate,
write-audit-publish with manifests, run report, and the ``LAKEFORGE_RESULT {json}`` line.
nycflights' DAG submits ``spark_jobs/transform_flights.py``: the same job under its own name.
"""

from lakeforge.spark import end_of_job
from lakeforge.transform.job import main

if __name__ == "__main__":
    main()
    end_of_job()
