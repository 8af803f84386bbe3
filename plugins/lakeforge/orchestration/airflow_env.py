"""Airflow configuration derived from lakeforge settings, for embedded (one-machine) mode.

``airflow_environ()`` returns ``AIRFLOW__...`` variables: our DAGs folder, no examples, SQLite
metadata DB in ``AIRFLOW_HOME`` (unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` points at
Postgres), LocalExecutor sized for a small machine, the API bound to 127.0.0.1 and the task
execution API URL matching its port, and a JWT secret generated once per AIRFLOW_HOME (never a
default). Anything already set in the environment wins.

    eval "$(python -m lakeforge.orchestration.airflow_env)"   # export into a shell

To run the services themselves with this configuration, use ``lakeforge.orchestration.services``
(``python -m lakeforge.orchestration.services start|stop|restart|status``): it starts each in its
own session and makes a stop or restart end every process of the previous instance, including
the LocalExecutor workers that a scheduler killed with SIGKILL leaves behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
from pathlib import Path

from lakeforge.settings import PROJECT_ROOT, Settings, get_settings

API_PORT_DEFAULT = "8085"


def _jwt_secret(airflow_home: Path) -> str:
    path = airflow_home / ".jwt_secret"
    if not path.exists():
        airflow_home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(64))
    return path.read_text().strip()


def spark_connection(master: str) -> str:
    """AIRFLOW_CONN_SPARK_DEFAULT for a master. A missing or malformed connection makes the Spark
    provider silently fall back to YARN, so it is always set explicitly."""
    if master.startswith("spark://"):
        return master
    return json.dumps({"conn_type": "spark", "host": master})


def airflow_environ(settings: Settings | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to add to ``env`` (default os.environ); keys already present are left alone."""
    settings = settings or get_settings()
    env = dict(os.environ if env is None else env)
    home = settings.airflow_home
    port = env.get("AIRFLOW__API__PORT", API_PORT_DEFAULT)
    wanted = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # 32 workers by default (~1.4 GiB) on a 2-core machine is waste.
        "AIRFLOW__CORE__PARALLELISM": str(max(2, (os.cpu_count() or 2) * 2)),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        # Tasks reach the API server here; it must match the port or every task fails to connect.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(settings.spark_master),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    out = {k: v for k, v in wanted.items() if not env.get(k)}
    # SparkSubmitOperator finds spark-submit on PATH only: put this venv's bin first.
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        out["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    if not env.get("AIRFLOW__API_AUTH__JWT_SECRET"):
        out["AIRFLOW__API_AUTH__JWT_SECRET"] = _jwt_secret(home)
    return out


def apply(settings: Settings | None = None) -> dict[str, str]:
    """Put the Airflow variables into this process's environment (before importing airflow)."""
    added = airflow_environ(settings)
    os.environ.update(added)
    return added


def main() -> None:
    for key, value in airflow_environ().items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
