"""train_seattle_weather (airflow dag): tomorrow's weather class on Spark, tracked in MLflow, champion/challenger gate."""

import pendulum

from lakeforge.orchestration.reports_app import dag_links
from lakeforge.orchestration.train_dag import build_train_dag

DOC = """
### train_seattle_weather: features -> model -> MLflow registry (champion / challenger)

The platform's generic training (`spark_jobs/train.py --pipeline seattle_weather`) on what
`lakeforge/pipelines/seattle_weather/model.py` declares: a multiclass model of the day's weather
class (sun, fog, rain, drizzle, snow) from what was known the day before. Runs weekly, when new
`seattle_weather.features.weather` partitions land and on a retraining request.

- time-based split over the monthly partitions: two years of training by default (its last 92
  days score the search trials), then a held-out quarter;
- the multinomial LogisticRegression baseline and a RandomForest in the search, ranked by
  validation log loss; registered as `seattle_weather`, promoted to `champion` when its holdout log
  loss beats the champion's on the days the champion never saw (or, for the first model, the class
  shares of the training window) by the configured margin.
"""

dag = build_train_dag(
    dag_id="train_seattle_weather",
    source_name="seattle_weather",
    start_date=pendulum.datetime(2012, 1, 1, tz="UTC"),
    doc_md=DOC + "\n" + dag_links("seattle_weather", "seattle_weather"),
)
