"""score_flights (airflow dag): batch predictions of new feature days with the champion model, on Spark."""

import pendulum

from lakeforge.orchestration.reports_app import dag_links
from lakeforge.orchestration.score_dag import build_score_dag

DOC = """
### score_flights: features -> predictions (champion model)

Runs when `transform_flights` publishes `nycflights.features.flights` partitions and scores
exactly those days in ONE Spark application (`spark_jobs/score.py --pipeline nycflights`):

- `plan_scoring` resolves `models:/flight_delay@champion` ONCE to a version number; every row of
  the run is scored by that version (a champion moved meanwhile waits for the next run or a
  rescore). No champion yet: the run is **skipped**, the reason on `plan_scoring`. MLflow down: the
  task fails naming the tracking URI, Airflow retries it, nothing is written.
- The model is loaded only if its artifacts match the digest recorded at registration, and its
  MLflow signature must match the day's feature columns and types: otherwise the task fails naming
  the columns (retrain, or rebuild the features it was trained on).
- `predictions/flights/ds=...` in nycflights' lake: `flight_key`, `ds`, `probability`, `decision`
  (probability >= the version's `decision_threshold` tag, else `LAKEFORGE_SCORE_THRESHOLD`),
  `model_name`, `model_version`, `model_run_id`, `scored_at`, `scoring_run_id`. Flights without a
  tail number are scored too; monitoring leaves them out of its evaluation.
- Write-audit-publish: the suite `plugins/lakeforge/pipelines/nycflights/quality/predictions_flights.json`
  (one prediction per feature row, probability in [0, 1] and not null, one model version per
  partition) audits the staged days; a failing day is not published and the task fails without
  retries, naming the check (evidence: `quality/predictions/flights/ds=<date>/report.html`). Each
  manifest records the model version and the input feature partition's content hash.
- Emits `nycflights.predictions.flights` with the published days and the model version.
- Monitoring, in the same Spark application: the scored days whose outcomes are in are evaluated
  (`monitoring/performance/ds=...`: ROC AUC, PR AUC, log loss, Brier, calibration, rates) and
  checked for drift against the version's training reference (`monitoring/drift/ds=.../report.html`),
  logged to the version's run in the `flight_delay-monitoring` MLflow experiment; then the
  retraining policy decides for the champion. When it fires, `request_retraining` emits
  `nycflights.monitoring.retrain_requested` with the reason (`train_delay_model` runs on it); the
  same evidence never fires twice (`monitoring/retrain_trigger/version=<n>/trigger.json`).

Rescore: trigger with `start`, `end` and optionally `model_version` (default: the champion). Each
day is replaced whole and atomically: never two versions in a day. Days already scored by that
version from the same features are left alone unless `force` is set.
"""

dag = build_score_dag(
    dag_id="score_flights",
    source_name="nycflights",
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    doc_md=DOC + "\n" + dag_links("nycflights", "flight_delay"),
)
