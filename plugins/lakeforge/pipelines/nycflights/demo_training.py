"""``make demo``'s training step: one run of the ``train_delay_model`` DAG over the demo's features,
then the champion's version, metrics and how to open it in the MLflow UI. The search's trials are
printed as they finish (Airflow's task output is hidden at the demo's log level: the job also
writes them to the file ``progress.follow`` names, which this step prints from).

Called by ``lakeforge.pipelines.nycflights.demo`` after the transform (Airflow's environment already applied):

    from lakeforge.pipelines.nycflights.demo_training import run_training
    run_training(date(2013, 1, 1), date(2013, 1, 31))
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

from lakeforge.settings import get_settings

DEMO_HOLDOUT_DAYS = 7      # a month: the last week is the holdout
DEMO_VALIDATION_DAYS = 4   # the search scores trials on the 4 days before it
DEMO_SEARCH_BUDGET = 2
DEMO_SOURCE = "nycflights"  # the source train_delay_model trains on


def run_training(start: date, end: date, family: str | None = None) -> dict[str, Any]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.lake import source_lake
    from lakeforge.training import progress
    from lakeforge.training.promotion import describe, read_log

    s = get_settings()
    bag = DagBag(dag_folder=str(s.dags_folder / "train_delay_model.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    window_days = max(2, (end - start).days + 1 - DEMO_HOLDOUT_DAYS)
    conf = {
        "end": end.isoformat(),
        "window_days": window_days,
        "holdout_days": DEMO_HOLDOUT_DAYS,
        # The validation days must leave search-train days before them (a shorter demo range).
        "validation_days": min(DEMO_VALIDATION_DAYS, window_days - 1),
        "model_family": family or s.train_model_family,
        "search_budget": DEMO_SEARCH_BUDGET,
        "search_parallelism": s.search_parallelism,
    }
    baseline = ", the LR baseline first" if conf["model_family"] != "lr" else ""
    print(f"\ntraining {conf['model_family']} (search budget {conf['search_budget']}{baseline}); "
          f"trials as they finish:", flush=True)
    t = time.perf_counter()
    with progress.follow():
        dr = bag.dags["train_delay_model"].test(logical_date=pendulum.now("UTC"), run_conf=conf)
    seconds = time.perf_counter() - t
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    if str(dr.state) != "success" or states.get("train_and_register") != "success":
        raise SystemExit(f"train_delay_model failed: {states}")

    lake = source_lake(DEMO_SOURCE)
    entry = read_log(lake, s.model_name)[-1]
    champion = _champion(s.model_name)
    print(f"\ntrain_delay_model (one Spark app, {s.spark_master}): {seconds:.1f}s in Airflow; "
          f"{conf['model_family']} search budget {conf['search_budget']}, holdout {entry['holdout'][0]}.."
          f"{entry['holdout'][1]}")
    print(f"this run: version {entry['version']}: {describe(entry)}")
    print("  reasons: " + "; ".join(entry["reasons"]))
    if entry.get("excluded_days"):
        print(f"  compared on {len(entry['compared_days'])} holdout day(s) only; left out (the champion trained "
              f"on them): {', '.join(entry['excluded_days'])}")
    if champion is None:
        print("no champion yet (no version beat the baseline)")
    else:
        m = champion["metrics"]
        print(f"champion: {s.model_name} v{champion['version']} ({champion['family']}, run {champion['run_id']})")
        print(f"  holdout {champion['holdout']}: " + ", ".join(f"{k} {m[k]:.4f}" for k in
                                       ("roc_auc", "pr_auc", "log_loss", "brier", "positive_rate") if k in m))
    print(f"open it: .venv/bin/mlflow ui --backend-store-uri {s.mlflow_tracking_uri} --host 127.0.0.1 --port 5000"
          f"  ->  http://127.0.0.1:5000/#/models/{s.model_name}")
    print(f"promotion log: {lake.uri('registry', s.model_name, 'promotion_log')}")
    return {"seconds": seconds, "decision": entry, "champion": champion, "conf": conf}


def _champion(name: str) -> dict[str, Any] | None:
    import mlflow

    from lakeforge.monitoring.store import holdout_metrics
    from lakeforge.training import registry

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    v = registry.champion_version(name)
    if v is None:
        return None
    metrics = holdout_metrics(mlflow.MlflowClient(), name, v.version)  # the run's holdout_* metrics
    metrics = {k: metrics[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "positive_rate",
                                       "calibration_error") if k in metrics}
    return {"version": v.version, "run_id": v.run_id, "family": v.tags.get("lakeforge.family"),
            "holdout": v.tags.get("lakeforge.holdout"), "description": v.description,
            "metrics": metrics, "tags": json.loads(json.dumps(dict(v.tags)))}
