"""score_seattle_weather (airflow dag): the weather champion's predictions of new feature months, on Spark."""

import pendulum

from lakeforge.orchestration.reports_app import dag_links
from lakeforge.orchestration.score_dag import build_score_dag

DOC = """
### score_seattle_weather: features -> predictions (champion model)

The platform's generic scoring (`spark_jobs/score.py --pipeline seattle_weather`) on what
`lakeforge/pipelines/seattle_weather/model.py` declares. Runs when `transform_seattle_weather`
publishes `seattle_weather.features.weather` months, or when a new `seattle_weather` champion is
promoted (it scores every month never scored).

- `plan_scoring` resolves `models:/seattle_weather@champion` once; no champion yet: skipped, with
  the reason on the run.
- `predictions/weather/ds=<month>` in seattle_weather's lake: `date`, `prediction` (class index),
  `predicted_class`, `probability` (of that class), `probabilities` (every class, in label order),
  the model version and the run; audited by `quality/predictions_weather.json` before publishing.
- Monitoring in the same Spark application: months whose outcomes are in are evaluated (accuracy,
  weighted F1, log loss per month and model version) and checked for drift against the
  version's training reference; the retraining policy decides on the champion's log loss and
  emits `seattle_weather.monitoring.retrain_requested` (training runs on it) when it fires.

Rescore: trigger with `start`, `end` (first days of months) and optionally `model_version`.
"""

dag = build_score_dag(
    dag_id="score_seattle_weather",
    source_name="seattle_weather",
    start_date=pendulum.datetime(2012, 1, 1, tz="UTC"),
    doc_md=DOC + "\n" + dag_links("seattle_weather", "seattle_weather"),
)
