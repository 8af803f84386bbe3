"""Spark job: train any pipeline's model (``lakeforge.training.job``), e.g.

    spark-submit spark_jobs/train.py --pipeline seattle_weather --run-key train_seattle_weather/manual__1
"""

from lakeforge.spark import end_of_job
from lakeforge.training.job import main

if __name__ == "__main__":
    main()
    end_of_job()
