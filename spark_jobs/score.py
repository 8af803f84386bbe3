"""Spark job: score any pipeline's published feature days with its champion (``lakeforge.scoring.job``), e.g.

    spark-submit spark_jobs/score.py --pipeline seattle_weather --dates 2013-07-01 --run-id scheduled__...
"""

from lakeforge.scoring.job import main
from lakeforge.spark import end_of_job

if __name__ == "__main__":
    main()
    end_of_job()
