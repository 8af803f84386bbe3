"""transform_flights (airflow dag): raw -> clean -> features for nycflights, data-aware, on Spark."""

import pendulum

from lakeforge.orchestration.reports_app import dag_links
from lakeforge.orchestration.transform_dag import build_spark_transform_dag

DOC = """
### transform_flights: raw -> clean -> features

Runs when `nycflights.raw.flights` or `nycflights.raw.weather` gets a new partition and processes,
in ONE Spark application (`spark_jobs/transform_flights.py`: the generic transform job running
nycflights' declaration, `plugins/lakeforge/pipelines/nycflights/transform.py`), the event days
whose two inputs are both in plus every pending day (inputs in, output missing or built from other
raw content), so a day whose event was dropped while a run was busy is not left behind. The run's note names the
days and why (`2013-01-02..2013-01-04 (3 days): 1 from events, 2 pending`):

- `clean/flights`, `clean/weather`: explicit schemas, typed, departure/arrival times in local time
  and UTC, cancelled/diverted marked; malformed rows go to `quarantine/<table>/ds=.../` with the raw
  line and a reason (clean + quarantined = raw, checked per partition).
- `features/flights`: the pre-departure features (`plugins/lakeforge/pipelines/nycflights/features.py`) and the label
  (`arr_delay > 15`; cancelled and diverted flights count as delayed).

Quality gates (write-audit-publish): every output is staged and audited by the suites in
`plugins/lakeforge/pipelines/nycflights/quality/` before it is visible. A day failing a critical
check is not published (in any table), the task fails without retries naming the check, column
and observed value; evidence: `quality/<table>/ds=<date>/report.html` (path in the task log),
summary: `quality/_summary/current/quality_summary.json`. Fix the delivery, then clear the task.

Manual reprocessing: trigger with `start` and `end` (YYYY-MM-DD): the whole range in one app.
Only the partitions of the processed dates are replaced, each atomically with a manifest.
The Spark master comes from the `spark_default` connection (`LAKEFORGE_SPARK_MASTER`).
"""

dag = build_spark_transform_dag(
    dag_id="transform_flights",
    source_name="nycflights",
    inputs=["flights", "weather"],
    outputs=[("clean", "flights"), ("clean", "weather"), ("features", "flights")],
    application="spark_jobs/transform_flights.py",
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    doc_md=DOC + "\n" + dag_links("nycflights"),
)
