"""Monitoring of the served models: evaluation as outcomes arrive, drift, the retraining policy.

Driven by a pipeline's ``ModelSpec`` (``lakeforge.training.spec``): its tables, key, label, task
and row filter; every pipeline with a model is monitored the same way. Everything lives in the
namespace of the spec's source (``source_lake(spec.source)``), so pipelines never collide:

    predictions/<table>/ds=...            written by batch scoring (``spec.predictions``)
    monitoring/performance/ds=...         one Parquet row per (day, model version): the task's metrics,
                                          counts, and what pools them exactly (``evaluate``)
    monitoring/drift/ds=.../report.json   PSI per feature and of the prediction (``drift``)
    monitoring/drift/ds=.../report.html   the same for a person, features sorted by PSI
    monitoring/retrain_trigger/version=<n>  when the policy last fired for a version (``monitor``)

Each is a published partition (``lakeforge.publish``): whole or absent, with a manifest.

MLflow: one monitoring run per model version in the experiment ``<spec.experiment>-monitoring``
(found by its tag ``lakeforge.monitoring.model_version``), metrics stepped by day (step = days since
1970-01-01, timestamp = the day's midnight UTC) so the UI draws them over time, and a plot
``plots/performance.png``. A version's reference profile for drift is an artifact of its *training*
run, ``monitoring/reference_profile.json``, computed once (``drift.ensure_reference_profile``).

The retraining decision (``policy.decide``) is a pure function of those records.

Spark does all the row work (aggregates only, nothing row-level is collected); the driver finishes
the small aggregates with the training metrics' own functions (``lakeforge.training.evaluate``,
``lakeforge.training.task_metrics``).
"""
