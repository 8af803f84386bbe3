"""Airflow as it runs for real: scheduler, DAG processor and API server as their own processes, the
metadata database on PostgreSQL, tasks through the LocalExecutor. Only settings differ from
embedded mode. The ingest DAG is unpaused with two days delivered: the scheduler's catch-up
must ingest exactly those days into the lake."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.nycflights import simulator
from lakeforge.ports import free_loopback_port
from lakeforge.publish import list_partitions
from tests.helpers import stop_process_groups

pytestmark = pytest.mark.airflow

DAYS = ["2013-01-01", "2013-01-02"]
RUNS_TIMEOUT_S = 420


def airflow_cli() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def service_env(postgres, root: Path) -> dict[str, str]:
    """Embedded mode's environment with cluster mode's database: PostgreSQL, its own AIRFLOW_HOME
    and ports the kernel found free."""
    from lakeforge.orchestration.airflow_env import airflow_environ
    from lakeforge.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    port = str(free_loopback_port())
    env.update({
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow"),
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__PARALLELISM": "4",
        "LAKEFORGE_LAKE_ROOT": f"file://{root}/lake",
        "LAKEFORGE_LANDING_ROOT": f"file://{root}/landing",
    })
    env.update(airflow_environ(Settings.from_env(env), env))
    return env


def dag_runs(postgres, dag_id: str) -> dict[str, str]:
    rows = postgres.query("airflow", f"SELECT data_interval_start::date::text, state FROM dag_run "
                                     f"WHERE dag_id = '{dag_id}'")
    return dict(rows)


def test_the_scheduler_ingests_the_delivered_days_with_postgres_metadata(postgres, tmp_path):
    postgres.create_database("airflow")
    env = service_env(postgres, tmp_path)
    simulator.deliver(Lake(f"{env['LAKEFORGE_LANDING_ROOT']}/nycflights"), date(2013, 1, 1), date(2013, 1, 2))
    migrate = subprocess.run([airflow_cli(), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]

    procs: dict[str, subprocess.Popen] = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        for name, args in (("api-server", ["api-server", "--port", env["AIRFLOW__API__PORT"]]),
                           # Its task log server binds every interface (hard-coded): not started;
                           # the API server reads the task logs from the shared folder.
                           ("scheduler", ["scheduler", "--skip-serve-logs"]), ("dag-processor", ["dag-processor"])):
            with open(logs / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen([airflow_cli(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)

        def wait_for(what: str, done, timeout: float):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
                assert not dead, f"{dead} exited while waiting for {what}: " + service_logs(logs)
                value = done()
                if value:
                    return value
                time.sleep(2)
            raise AssertionError(f"timed out waiting for {what}: " + service_logs(logs))

        # The DAG processor serializes the DAGs into the database; they start paused.
        wait_for("the serialized ingest DAG",
                 lambda: postgres.query("airflow", "SELECT is_paused FROM dag WHERE dag_id = 'ingest_flights'"), 240)
        unpause = subprocess.run([airflow_cli(), "dags", "unpause", "ingest_flights"], env=env,
                                 capture_output=True, text=True, timeout=300)
        assert unpause.returncode == 0, unpause.stdout[-2000:] + unpause.stderr[-2000:]

        def delivered_days_finished():
            runs = dag_runs(postgres, "ingest_flights")
            if any(runs.get(d) == "failed" for d in DAYS):
                raise AssertionError(f"a delivered day failed: {runs}\n" + task_states(postgres))
            return all(runs.get(d) == "success" for d in DAYS) and runs

        runs = wait_for("the delivered days' runs", delivered_days_finished, RUNS_TIMEOUT_S)
        assert listening_addresses(procs.values()) <= {"127.0.0.1"}  # services on loopback only
    finally:
        stop_process_groups(procs.values(), timeout=60)  # the services and any task process they left

    # Catch-up from the DAG's start date: the delivered days succeeded, in order, into the lake.
    assert min(runs) == DAYS[0], runs
    lake = source_lake("nycflights", env["LAKEFORGE_LAKE_ROOT"])
    for table in ("flights", "weather"):
        assert list_partitions(lake, f"raw/{table}")[:2] == [f"ds={d}" for d in DAYS]


def listening_addresses(procs) -> set[str]:
    """The addresses the services (and their children) listen on."""
    import psutil

    pids = set()
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            pids |= {parent.pid, *(c.pid for c in parent.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids}
    assert listening, "no listening socket found: the API server should have one"
    return listening


def task_states(postgres) -> str:
    rows = postgres.query("airflow", "SELECT r.data_interval_start::date::text, t.task_id, t.state, t.try_number "
                                     "FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id "
                                     "WHERE t.dag_id = 'ingest_flights' ORDER BY 1, 2")
    return "\n".join(" ".join(map(str, row)) for row in rows)


def service_logs(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
