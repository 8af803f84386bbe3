"""A scheduler killed with SIGKILL while a task runs leaves its LocalExecutor workers (and the
task) alive: Airflow's behaviour (see lakeforge.orchestration.services). The lakeforge restart
step must end every process of the old scheduler, by its session, and let the interrupted task
instance fail at once instead of waiting out the heartbeat timeout. Real Airflow: API server, DAG
processor and scheduler as their own processes, SQLite metadata DB (embedded mode)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from lakeforge.orchestration import services
from lakeforge.ports import free_loopback_port
from tests.helpers import AIRFLOW_SERVICES, migrate_airflow_db, stop_airflow_services

pytestmark = pytest.mark.airflow

PARALLELISM = 3

PROBE_DAG = '''
"""One task that sleeps: the DAG (airflow) whose scheduler is killed mid-task."""
import os
import time
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule="@once", start_date=datetime(2024, 1, 1), catchup=False, is_paused_upon_creation=False,
     default_args={"retries": 0})
def orphan_probe():
    @task
    def sleeper():
        with open(os.environ["LAKEFORGE_TEST_PROBE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(900)

    sleeper()


orphan_probe()
'''


def _env(root: Path) -> dict[str, str]:
    (root / "dags").mkdir()
    (root / "dags" / "orphan_probe.py").write_text(PROBE_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "LAKEFORGE_HOME": str(root / "home"),
        "AIRFLOW_HOME": str(root / "airflow"),
        "LAKEFORGE_DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__API__PORT": str(free_loopback_port()),
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "LAKEFORGE_TEST_PROBE": str(root / "task.pid"),
    })
    return services.airflow_env(env)


def _task_state(db: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT state FROM task_instance WHERE dag_id = 'orphan_probe'").fetchone()
    except sqlite3.OperationalError:  # not created yet, or locked by a writer
        return None
    return row[0] if row else None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(what: str, done, timeout: float, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_restart_after_scheduler_sigkill_mid_task_leaves_no_worker(tmp_path):
    env = _env(tmp_path)
    folder = services.services_dir(env)
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    migrate_airflow_db(env)
    probe = Path(env["LAKEFORGE_TEST_PROBE"])
    try:
        for name in AIRFLOW_SERVICES:
            services.start(name, env=env, folder=folder, grace=10)
        old = services.read_record("scheduler", folder)

        # Deterministic: the task instance is running (metadata DB) and its process is up.
        _wait_for("the task to run", lambda: _task_state(db) == "running" and probe.exists() and probe.read_text(),
                  300, folder)
        task = psutil.Process(int(probe.read_text()))
        members = services.session_members(old.sid)
        assert task.pid in {p.pid for p in members}, "the task process is in the scheduler's session"
        assert os.getpgid(task.pid) != old.sid, "... but in its own process group: killpg would miss it"

        leader = psutil.Process(old.pid)
        os.kill(old.pid, signal.SIGKILL)
        _wait_for("the scheduler to die", lambda: services._reap_child(old.pid) or not _alive(leader), 30, folder)
        time.sleep(2)
        orphans = [p for p in members if p.pid != old.pid and _alive(p)]
        # Airflow's behaviour (3.3.2): every worker, and the task, outlive the scheduler. Should
        # this fail because they no longer do, services' clean-up is no longer needed for them.
        assert len(orphans) >= PARALLELISM + 1 and task in orphans, [p.pid for p in orphans]
        assert _task_state(db) == "running"

        t0 = time.monotonic()
        new = services.start("scheduler", env=env, folder=folder, grace=10)  # the restart step
        restart_s = time.monotonic() - t0
        assert [p.pid for p in orphans if _alive(p)] == []
        assert services.session_members(old.sid) == []
        assert new.pid != old.pid and psutil.pid_exists(new.pid)
        # The task's worker reported it before being killed: failed now (retries=0), not in 5 minutes.
        assert _task_state(db) == "failed", _task_state(db)
        assert restart_s < 30, restart_s
    finally:
        stop_airflow_services(folder)
