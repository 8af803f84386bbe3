"""``make demo``'s scoring step: one run of the ``score_flights`` DAG over the days after training
(ONE Spark application: predictions with the champion, then their monitoring), then the per-day
table of what monitoring found and where its reports are.

Called by ``lakeforge.pipelines.nycflights.demo`` after training (Airflow's environment already applied):

    from lakeforge.pipelines.nycflights.demo_scoring import run_scoring
    run_scoring(date(2013, 2, 1), date(2013, 2, 28))
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from lakeforge.settings import get_settings

DEMO_SOURCE = "nycflights"


def run_scoring(start: date, end: date) -> dict[str, Any]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.lake import source_lake
    from lakeforge.monitoring import store
    from lakeforge.monitoring.__main__ import rows, table
    from lakeforge.reports import read_run_report

    s = get_settings()
    bag = DagBag(dag_folder=str(s.dags_folder / "score_flights.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    t = time.perf_counter()
    dr = bag.dags["score_flights"].test(logical_date=pendulum.now("UTC"),
                                        run_conf={"start": start.isoformat(), "end": end.isoformat()})
    seconds = time.perf_counter() - t
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    if str(dr.state) != "success" or states.get("plan_scoring") != "success":
        raise SystemExit(f"score_flights failed or skipped: {states} (the task's error or reason is above)")

    lake = source_lake(DEMO_SOURCE)
    report = read_run_report(lake, "score_flights", dr.run_id) or {}
    model, tm = report.get("model") or {}, report.get("timings") or {}
    mon = report.get("monitoring") or {}
    print(f"\nscore_flights (one Spark app, {s.spark_master}): {seconds:.1f}s in Airflow; "
          f"{model.get('name')} v{model.get('version')}; {report.get('status')}: {len(report.get('published', []))} "
          f"day(s) published, {report.get('rows', {}).get('predictions', 0):,} predictions; score "
          f"{tm.get('score_s', 0):.1f}s, monitoring {mon.get('monitor_s', 0):.1f}s")
    if mon.get("awaiting_outcomes"):
        print(f"  outcomes not in yet: {', '.join(mon['awaiting_outcomes'])}")
    wanted = {str(date.fromordinal(d)) for d in range(start.toordinal(), end.toordinal() + 1)}
    lines = [r for r in rows(lake, len(wanted) + 60) if r["ds"] in wanted]
    print(table(lines) if lines else "nothing monitored in these days")
    decision = report.get("retraining")
    if decision:
        print(f"retraining policy: {decision['reason']}"
              + (f"  ->  {states.get('request_retraining')}: nycflights.monitoring.retrain_requested"
                 if decision.get("retrain") else ""))
    print(f"predictions: {lake.uri('predictions', 'flights')}; performance: {lake.uri(store.PERFORMANCE)}")
    print(f"drift reports: {lake.uri(store.DRIFT, 'ds=<date>', 'report.html')}; "
          f"summary: .venv/bin/python -m lakeforge.monitoring --days {len(wanted)}; MLflow: experiment "
          f"{s.mlflow_experiment}-monitoring (one run per model version, metrics by day)")
    return {"seconds": seconds, "report": report, "rows": lines, "states": states}
