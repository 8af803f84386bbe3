"""Monitoring of the served model: evaluation as outcomes arrive, drift, the retraining policy.

Everything lives in the source's namespace of the lake (``source_lake("nycflights")``):

    predictions/flights/ds=...            written by batch scoring (spark_jobs/score_flights.py)
    monitoring/performance/ds=...         one Parquet row per (day, model version): metrics, counts,
                                          and the day's probability histogram (``evaluate``)
    monitoring/drift/ds=.../report.json   PSI per feature and of the prediction (``drift``)
    monitoring/drift/ds=.../report.html   the same for a person, features sorted by PSI

Each is a published partition (``lakeforge.publish``): whole or absent, with a manifest.

MLflow: one monitoring run per model version in the experiment ``<LAKEFORGE_MLFLOW_EXPERIMENT>-monitoring``
(found by its tag ``lakeforge.monitoring.model_version``), metrics stepped by day (step = days since
1970-01-01, timestamp = the day's midnight UTC) so the UI draws them over time, and a plot
``plots/performance.png``. A version's reference profile for drift is an artifact of its *training*
run, ``monitoring/reference_profile.json``, computed once (``drift.ensure_reference_profile``).

The retraining decision (``policy.decide``) is a pure function of those records.

Spark does all the row work (aggregates only, nothing row-level is collected); the driver finishes
the small aggregates with the training metrics' own functions (``lakeforge.training.evaluate``).
"""
