"""Airflow configuration derived from lakeforge settings, for embedded (one-machine) mode.

``airflow_environ()`` returns ``AIRFLOW__...`` variables: our DAGs folder, no examples, SQLite
metadata DB in ``AIRFLOW_HOME`` (unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` points at
Postgres), LocalExecutor sized for a small machine, the API bound to 127.0.0.1 and the task
execution API URL matching its port, and a JWT secret generated once per AIRFLOW_HOME (never a
default). Anything already set in the environment wins.

Files that hold a secret or a database are created by lakeforge, owner-only, before Airflow
touches them (Airflow keeps the mode of a file that exists): ``AIRFLOW_HOME`` (0700 when created
here), ``.jwt_secret``, the SQLite ``airflow.db`` and the simple auth manager's passwords file
(0600). The passwords are generated here, one per configured user
(``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``, Airflow's default ``admin``), so Airflow never
generates one itself and never prints one to its log; read yours with
``python -m lakeforge.orchestration.airflow_env password [USER]``.

    eval "$(python -m lakeforge.orchestration.airflow_env)"   # export into a shell

To run the services themselves with this configuration, use ``lakeforge.orchestration.services``
(``python -m lakeforge.orchestration.services start|stop|restart|status``): it starts each in its
own session and makes a stop or restart end every process of the previous instance, including
the LocalExecutor workers that a scheduler killed with SIGKILL leaves behind.

The docker stack (``docker/compose.yaml``) reads its secrets from files mounted 0400
(``/run/secrets/<name>``) through the other commands of this module, never from variables:

    AIRFLOW__CORE__FERNET_KEY_CMD="python -m lakeforge.orchestration.airflow_env secret /run/secrets/x"
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD="python -m lakeforge.orchestration.airflow_env \
        database-uri postgresql+psycopg2://airflow@postgres:5432/airflow /run/secrets/airflow_db_password"
    python -m lakeforge.orchestration.airflow_env run VAR=/run/secrets/x ... -- COMMAND...
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from lakeforge.secrets import SECRET_MODE, generated_secret, read_secret
from lakeforge.settings import PROJECT_ROOT, Settings, get_settings

API_PORT_DEFAULT = "8085"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # Airflow's own default name
DEFAULT_USERS = "admin:ADMIN"  # Airflow's default users: "admin", role admin (user:role, no password)
USERS_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
PASSWORDS_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700 (its missing parents with the umask's mode); an existing folder is
    left as it is (it may be shared on purpose): the files that matter are 0600 anyway."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass


def private_file(path: Path) -> Path:
    """An owner-only (0600) file at ``path``: created empty with that mode (never readable by
    others, not even for an instant), or tightened if it exists with more."""
    _private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE))
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, SECRET_MODE)
    return path


def _jwt_secret(airflow_home: Path) -> str:
    _private_dir(airflow_home)
    return generated_secret(airflow_home / ".jwt_secret", nbytes=64)


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` SQLAlchemy URI (None for any other database or in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def user_names(users: str) -> list[str]:
    """The user names of a ``simple_auth_manager_users`` value (``user:role[:teams],...``)."""
    return [u.split(":")[0].strip() for u in users.split(",") if u.strip()]


def ensure_passwords(path: Path, users: list[str]) -> dict[str, str]:
    """The simple auth manager's passwords file, 0600, with a generated password for each of
    ``users`` that has none (existing ones are kept). Locked like Airflow locks it."""
    import secrets

    private_file(path)
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            text = f.read().strip()
            passwords = json.loads(text) if text else {}
            missing = [u for u in users if u not in passwords]
            for user in missing:
                passwords[user] = secrets.token_urlsafe(18)
            if missing or not text:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(passwords) + "\n")
                f.flush()
                os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return passwords


def prepare_home(env: dict[str, str]) -> None:
    """Create what Airflow would otherwise create world-readable: the SQLite DB (SQLite gives its
    journal and WAL files the DB's mode) and the passwords file, both 0600."""
    db = sqlite_path(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or "")
    if db is not None:
        private_file(db)
    if env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() != "true":
        ensure_passwords(Path(env[PASSWORDS_VAR]), user_names(env.get(USERS_VAR) or DEFAULT_USERS))


def spark_connection(master: str) -> str:
    """AIRFLOW_CONN_SPARK_DEFAULT for a master. A missing or malformed connection makes the Spark
    provider silently fall back to YARN, so it is always set explicitly."""
    if master.startswith("spark://"):
        return master
    return json.dumps({"conn_type": "spark", "host": master})


LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


def pipeline_dag_folders() -> dict[str, Path]:
    """Each pipeline's own DAG folder (``<pipeline folder>/dags/``, ``LAKEFORGE_PIPELINES_PATH``'s
    pipelines included), by pipeline."""
    from lakeforge.sources import pipeline_folders

    return {name: folder / "dags" for name, folder in pipeline_folders().items()
            if any((folder / "dags").glob("*.py"))}


def dag_bundles(settings: Settings) -> str:
    """Airflow's DAG bundles: ``dags/`` and every pipeline's DAG folder, so a pipeline's DAGs are
    in the same Airflow as soon as its folder has them (no copy into ``dags/``)."""
    bundles = [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(settings.dags_folder)}}]
    bundles += [{"name": f"pipeline-{name.replace('_', '-')}", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(path)}}
                for name, path in pipeline_dag_folders().items()]
    return json.dumps(bundles)


def airflow_environ(settings: Settings | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to add to ``env`` (default os.environ); keys already present are left alone.
    Creates the secret and database files they name, owner-only (``prepare_home``)."""
    settings = settings or get_settings()
    env = dict(os.environ if env is None else env)
    home = settings.airflow_home
    port = env.get("AIRFLOW__API__PORT", API_PORT_DEFAULT)
    wanted = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": dag_bundles(settings),
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
        # An unchanged DAG file is parsed again every 5 min, not every 30 s (11% of a core while the
        # stack idles, measured: 10.2 s vs 0.8 s of CPU in 90 s); an edited one at once (the DAG
        # processor's default modified_time order re-queues a file whose mtime is newer).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
        # Named explicitly so that every process (and `password` below) finds the same file.
        PASSWORDS_VAR: str(home / PASSWORDS_FILE),
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(settings.spark_master),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    # A value Airflow reads through a command (``AIRFLOW__..._CMD``, as the docker stack does) is set.
    out = {k: v for k, v in wanted.items() if not env.get(k) and not env.get(f"{k}_CMD")}
    # SparkSubmitOperator finds spark-submit on PATH only: put this venv's bin first.
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        out["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    if not env.get("AIRFLOW__API_AUTH__JWT_SECRET") and not env.get("AIRFLOW__API_AUTH__JWT_SECRET_CMD"):
        out["AIRFLOW__API_AUTH__JWT_SECRET"] = _jwt_secret(home)
    prepare_home({**env, **out})
    return out


def apply(settings: Settings | None = None) -> dict[str, str]:
    """Put the Airflow variables into this process's environment (before importing airflow)."""
    added = airflow_environ(settings)
    os.environ.update(added)
    return added


# --- secrets from files (the docker stack) ------------------------------------------------------

def secret_value(path: str | Path) -> str:
    """A mounted secret: refused if others may read it (``read_secret``) or if it is empty (an
    unset variable in docker/.env gives an empty file: never start with an empty key)."""
    value = read_secret(path)
    if not value:
        raise SystemExit(f"secret file {path} is empty: set its value (docker/.env)")
    return value


def database_uri(uri: str, password_file: str | Path) -> str:
    """``uri`` (user, no password) with the password from ``password_file``, URL-quoted."""
    parts = urlsplit(uri)
    if not parts.username or parts.password is not None:
        raise SystemExit(f"database-uri wants a URI with a user and no password, got {uri!r}")
    netloc = f"{parts.username}:{quote(secret_value(password_file), safe='')}@{parts.netloc.split('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def run_with_secrets(assignments: list[str], argv: list[str]) -> None:
    """exec ``argv`` with ``VAR=<content of FILE>`` for each ``VAR=FILE``: for programs that only
    read a secret from their environment (Spark's daemons, MLflow's database URI via PGPASSWORD)."""
    env = dict(os.environ)
    for item in assignments:
        var, sep, path = item.partition("=")
        if not sep or not var or not path:
            raise SystemExit(f"run: expected VAR=FILE, got {item!r}")
        env[var] = secret_value(path)
    if not argv:
        raise SystemExit("run: no command after --")
    os.execvpe(argv[0], argv, env)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        for key, value in airflow_environ().items():
            print(f"export {key}={shlex.quote(value)}")
        return
    command, rest = args[0], args[1:]
    if command == "password":  # the generated password of a user (default: the first one)
        env = {**os.environ, **airflow_environ()}
        names = rest or user_names(env.get(USERS_VAR) or DEFAULT_USERS)[:1]
        print(json.loads(read_secret(env[PASSWORDS_VAR]))[names[0]])
    elif command == "passwords" and not rest:  # the stack's api-server: generate before it starts
        env = dict(os.environ)
        home = Path(env.get("AIRFLOW_HOME") or get_settings().airflow_home)
        path = Path(env.get(PASSWORDS_VAR) or home / PASSWORDS_FILE)
        ensure_passwords(path, user_names(env.get(USERS_VAR) or DEFAULT_USERS))
    elif command == "secret" and len(rest) == 1:  # for AIRFLOW__..._CMD: no trailing newline
        sys.stdout.write(secret_value(rest[0]))
    elif command == "database-uri" and len(rest) == 2:
        sys.stdout.write(database_uri(rest[0], rest[1]))
    elif command == "run" and "--" in rest:
        i = rest.index("--")
        run_with_secrets(rest[:i], rest[i + 1:])
    else:
        raise SystemExit("usage: python -m lakeforge.orchestration.airflow_env "
                         "[password [USER] | passwords | secret FILE | database-uri URI FILE | run VAR=FILE... -- CMD...]")


if __name__ == "__main__":
    main()
