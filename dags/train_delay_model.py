"""train_delay_model (airflow dag): flight-delay model on Spark, tracked in MLflow, champion/challenger gate."""

import pendulum

from lakeforge.orchestration.reports_app import dag_links
from lakeforge.orchestration.train_dag import build_train_dag

DOC = """
### train_delay_model: features -> model -> MLflow registry (champion / challenger)

Runs weekly (Monday 04:00 UTC), when new `nycflights.features.flights` partitions land
(features-triggered runs train only once `LAKEFORGE_TRAIN_MIN_NEW_DAYS` new days are there), and
when batch scoring's retraining policy fires (`nycflights.monitoring.retrain_requested`: one new
day is enough; the event's reason becomes the run tag `lakeforge.trigger_reason` and part of the
promotion log entry). ONE Spark application (`spark_jobs/train_delay_model.py`):

- time-based split, no shuffling: a rolling window of `window_days` for training (its last
  `validation_days` score the search trials), then the newest `holdout_days` days, never trained on;
- the MLlib LogisticRegression baseline and the chosen family (LightGBM trained across the executors by default; `xgboost`,
  `lr` and `gbt` in the trigger form) in a
  hyperparameter search, trials in parallel, each a nested MLflow run; the best is refitted on the
  whole window;
- one parent MLflow run: params, split boundaries, holdout metrics, plots, the input partitions
  (lake URI + content hash + quality status) as dataset inputs, Airflow run and git commit tags;
- registered as `flight_delay` with alias `challenger`, its drift reference profile (training
  window + holdout predictions) stored on its run for batch scoring's monitoring; it becomes `champion` only if it beats the
  champion (or, for the first model, a constant baseline) by the configured margin and no guard
  fails, both scored on the holdout days after the champion's last training day only (a champion
  is never scored on days it trained on; none left: `no_decision`, the champion stays). Every
  decision (with both training windows and the days compared) is tagged on the version and written
  to `registry/flight_delay/promotion_log/` in nycflights' lake;
- `publish_champion` emits the `models.flight_delay` asset event only when this run's version
  became champion (skipped otherwise: a rejected challenger changes nothing downstream).

Manual runs: set the last day, window, family and search budget in the trigger form (validation
days must be fewer than the window's days). A retry of the
same DAG run registers no second version (run key `<dag_id>/<run_id>`).
"""

dag = build_train_dag(
    dag_id="train_delay_model",
    source_name="nycflights",
    application="spark_jobs/train_delay_model.py",
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    doc_md=DOC + "\n" + dag_links("nycflights", "flight_delay"),
)
