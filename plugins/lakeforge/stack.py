"""``make up`` / ``make down`` / ``make status``: the platform as people use it, on one machine.

    python -m lakeforge.stack up       # start (or resume) everything; prints the URLs and, once, the logins
    python -m lakeforge.stack status   # URLs, each service up or down, last DAG runs, newest days, champion
    python -m lakeforge.stack down     # stop what `up` started, by PID; the data stays

``up`` starts, every listening socket on 127.0.0.1:

- PostgreSQL: an embedded cluster in ``$LAKEFORGE_HOME/postgres`` (``lakeforge.postgres``), password
  authentication, one role and database per client: ``airflow`` (Airflow's metadata) and ``mlflow``
  (MLflow's tracking store and registry);
- MLflow's tracking server with its basic-auth app (``lakeforge.mlflow_auth``): a generated admin and
  the accounts ``training`` (the jobs), ``scoring`` and ``viewer`` (people), artifacts proxied from
  ``$LAKEFORGE_HOME/mlflow/artifacts``; the experiment opens in MLflow's model-training view;
- Airflow: api-server (the UI), scheduler (LocalExecutor), dag-processor, triggerer. The scheduler and
  triggerer run without their task-log servers (Airflow binds those on every interface, hard-coded in
  ``airflow.utils.serve_logs``): the api-server reads task logs from ``$AIRFLOW_HOME/logs``.

Every service runs in its own session, recorded in ``$LAKEFORGE_HOME/run/`` and stopped by that record
(``lakeforge.orchestration.services``: nothing is chosen by name); its log is
``$LAKEFORGE_HOME/logs/<service>.log``. A second ``up`` starts only what is not running (a dead
service, or all after ``down``) on the same ports and data.

Secrets are generated on first start, each in a 0600 file, each given only to the service that needs
it: ``$LAKEFORGE_HOME/stack/secrets/`` (database passwords; PostgreSQL's superuser is used by this
module only), ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated`` (the Airflow login),
``$LAKEFORGE_HOME/mlflow/auth/<account>.password`` (MLflow's). Airflow reads its database password
through ``sql_alchemy_conn_cmd``, MLflow through a libpq passfile (``PGPASSFILE``): no password on a
command line or in an environment. The scheduler, which runs the jobs, gets the ``training`` account
(``MLFLOW_TRACKING_USERNAME`` + ``LAKEFORGE_MLFLOW_PASSWORD_FILE``).

Ports (kept in ``$LAKEFORGE_HOME/stack/stack.json`` from the first start): ``LAKEFORGE_AIRFLOW_PORT``
(8085), ``LAKEFORGE_MLFLOW_PORT`` (5000), ``LAKEFORGE_POSTGRES_PORT`` (5433); a default port that is
taken on the first start is replaced by a free one (printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lakeforge.secrets import generated_secret, read_secret, write_secret

log = logging.getLogger(__name__)

AIRFLOW_SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
SERVICES = ("postgres", "mlflow", *AIRFLOW_SERVICES)
PORTS = {  # name -> (variable, default)
    "airflow": ("LAKEFORGE_AIRFLOW_PORT", 8085),
    "mlflow": ("LAKEFORGE_MLFLOW_PORT", 5000),
    "postgres": ("LAKEFORGE_POSTGRES_PORT", 5433),
}
PG_SUPERUSER = "lakeforge"
DB_CLIENTS = ("airflow", "mlflow")  # role = database = the service that uses it
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow's model-training view
MLFLOW_LOGIN = "viewer"  # the account people log in with (read-only); the admin's is in its file
START_TIMEOUT_S = 240
_T0 = time.monotonic()  # this command's start: what `up` prints is timed from it


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def stack(self) -> Path:
        return self.home / "stack"

    @property
    def secrets(self) -> Path:
        return self.stack / "secrets"

    @property
    def state(self) -> Path:
        return self.stack / "stack.json"

    @property
    def run(self) -> Path:  # service records (lakeforge.orchestration.services)
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def postgres(self) -> Path:
        return self.home / "postgres"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_auth(self) -> Path:
        return self.mlflow / "auth"

    def db_password(self, role: str) -> Path:
        return self.secrets / f"{role}-db.password"

    @property
    def pgpass(self) -> Path:
        return self.secrets / "mlflow-db.pgpass"


def _settings():
    from lakeforge.settings import get_settings

    return get_settings()


def paths() -> Paths:
    return Paths(_settings().home)


def _private_dir(path: Path) -> Path:
    """Created owner-only; an existing folder keeps its mode (as root, PostgreSQL's user must be
    able to traverse the home: ``lakeforge.postgres`` adds that)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _load_state(p: Paths) -> dict:
    try:
        return json.loads(p.state.read_text())
    except FileNotFoundError:
        return {}


def _save_state(p: Paths, state: dict) -> None:
    tmp = p.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, p.state)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ports(p: Paths, env: Mapping[str, str] | None = None, choose: bool = False) -> dict[str, int]:
    """The stack's ports: the variable if set, else what the first start recorded, else (``choose``)
    the default if free now, or a free one."""
    from lakeforge.ports import free_loopback_port

    env = os.environ if env is None else env
    recorded = _load_state(p).get("ports", {})
    out = {}
    for name, (var, default) in PORTS.items():
        if env.get(var):
            out[name] = int(env[var])
        elif name in recorded:
            out[name] = int(recorded[name])
        elif choose:
            out[name] = default if _port_free(default) else free_loopback_port()
        else:
            out[name] = default
    return out


def urls(port: dict[str, int]) -> dict[str, str]:
    return {"airflow": f"http://127.0.0.1:{port['airflow']}", "mlflow": f"http://127.0.0.1:{port['mlflow']}"}


def cluster(p: Paths, port: int):
    from lakeforge.postgres import PostgresCluster

    pg = PostgresCluster(p.postgres, generated_secret(p.secrets / "postgres-superuser.password"), PG_SUPERUSER)
    pg.port = port
    return pg


# --- environments: each service gets only its own secrets ---------------------------------------

_CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "LAKEFORGE_MLFLOW_PASSWORD_FILE",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
                    "PGPASSWORD", "PGPASSFILE", "MLFLOW_BACKEND_STORE_URI")


def base_env(p: Paths, port: dict[str, int]) -> dict[str, str]:
    """This process's environment without any credential, pointed at the stack."""
    env = {k: v for k, v in os.environ.items()
           if k not in _CREDENTIAL_VARS and not k.startswith("LAKEFORGE_MLFLOW_PASSWORD_FILE_")}
    env.update({"LAKEFORGE_HOME": str(p.home), "MLFLOW_TRACKING_URI": urls(port)["mlflow"]})
    return env


def airflow_env(p: Paths, port: dict[str, int], service: str | None = None) -> dict[str, str]:
    """An Airflow service's environment: lakeforge's Airflow configuration (``airflow_env``), the
    metadata database on the stack's PostgreSQL (password read by a command from its file), and for
    the scheduler (it runs the jobs) the MLflow accounts of the jobs (``training`` by default,
``scoring`` for the scoring job: ``mlflow_auth.use_account``)."""
    from lakeforge.mlflow_auth import JOB_ACCOUNTS, PASSWORD_FILE_ENV, account_file_env, password_file
    from lakeforge.orchestration.services import airflow_env as with_airflow

    env = base_env(p, port)
    env["AIRFLOW__API__PORT"] = str(port["airflow"])
    for key in ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__API__BASE_URL", "AIRFLOW__API__HOST"):
        env.pop(key, None)  # derived from the port by airflow_env
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] = (
        f"{sys.executable} -m lakeforge.orchestration.airflow_env database-uri "
        f"postgresql+psycopg2://airflow@127.0.0.1:{port['postgres']}/airflow {p.db_password('airflow')}")
    env = with_airflow(env)
    if service == "scheduler":  # it runs the jobs: training's and scoring's accounts, nothing else
        env.update({"MLFLOW_TRACKING_USERNAME": "training",
                    PASSWORD_FILE_ENV: str(password_file(p.mlflow_auth, "training"))})
        env.update({account_file_env(a): str(password_file(p.mlflow_auth, a)) for a in JOB_ACCOUNTS})
    return env


def mlflow_env(p: Paths, port: dict[str, int]) -> dict[str, str]:
    env = base_env(p, port)
    env.update({
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://mlflow@127.0.0.1:{port['postgres']}/mlflow",
        "PGPASSFILE": str(p.pgpass),
        # No job-consumer processes (~1.3 GiB, ~50 s to start): 2 processes, ~520 MiB.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    return env


def mlflow_argv(p: Paths, port: dict[str, int]) -> list[str]:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [sys.executable, "-m", "lakeforge.mlflow_auth", "serve", "--state-dir", str(p.mlflow_auth), "--",
            mlflow, "server", "--host", "127.0.0.1", "--port", str(port["mlflow"]), "--workers", "1",
            "--artifacts-destination", str(p.mlflow / "artifacts")]


# --- up -----------------------------------------------------------------------------------------

def _service_state(name: str, p: Paths) -> dict:
    from lakeforge.orchestration import services

    return services.status(name, p.run)


def _start(name: str, argv: list[str], env: dict[str, str], p: Paths) -> bool:
    """Start ``name`` unless it runs; True if it was started now."""
    from lakeforge.orchestration import services

    if _service_state(name, p)["state"] == "running":
        return False
    record = services.start(name, argv, env=env, folder=p.run)
    link = p.logs / f"{name}.log"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(record.log, p.logs))
    print(f"  {name:14} started (pid {record.pid}) at +{time.monotonic() - _T0:.0f}s", flush=True)
    return True


def _wait(what: str, check, services: tuple[str, ...], p: Paths, timeout: float = START_TIMEOUT_S) -> None:
    """Wait for ``check()``; fail at once with the log's tail if one of ``services`` died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001  (not ready yet: retried until the deadline)
            last = exc
        else:
            last = None
        for name in services:
            state = _service_state(name, p)
            if state["state"] != "running":
                raise SystemExit(f"{name} is {state['state']} while waiting for {what}; its log "
                                 f"{p.logs / (name + '.log')} ends with:\n{_tail(p.logs / (name + '.log'))}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what} ({last})")
        time.sleep(0.5)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({exc})"


def _http_ok(url: str, timeout: float = 3.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status == 200


def _write_pgpass(p: Paths, port: dict[str, int]) -> None:
    password = read_secret(p.db_password("mlflow"))
    write_secret(p.pgpass, f"127.0.0.1:{port['postgres']}:*:mlflow:{password}\n", overwrite=True)


def up(p: Paths | None = None) -> int:
    p = p or paths()
    for folder in (p.home, p.stack, p.secrets, p.run, p.logs, p.mlflow):
        _private_dir(folder)
    os.chmod(p.secrets, 0o700)
    state = _load_state(p)
    port = ports(p, choose=True)
    state["ports"] = port
    _save_state(p, state)
    u = urls(port)
    airflow_login = Path(_settings().airflow_home) / "simple_auth_manager_passwords.json.generated"
    mlflow_login = p.mlflow_auth / f"{MLFLOW_LOGIN}.password"
    first = not airflow_login.exists() or not mlflow_login.exists()
    print(f"lakeforge stack in {p.home}", flush=True)
    if not state.get("mlflow_experiment_id"):
        # MLflow's client and auth modules (~10 s of imports) load while the services start.
        import threading
        import warnings

        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        threading.Thread(target=_preload_mlflow, daemon=True).start()

    # 1. PostgreSQL, and a role + database per client.
    pg = cluster(p, port["postgres"])
    if not pg.initialized:
        pg.init()
    _start("postgres", pg.postgres_argv(port["postgres"]), base_env(p, port), p)
    pg.wait_ready(alive=lambda: _service_state("postgres", p)["state"] == "running")
    for role in DB_CLIENTS:
        pg.ensure_role(role, generated_secret(p.db_password(role)))
        pg.create_database(role, owner=role, exists_ok=True)
        pg.private_database(role)  # the other client's role cannot even connect
    _write_pgpass(p, port)

    # 2. MLflow (the slowest to start) boots while Airflow's database is migrated.
    _start("mlflow", mlflow_argv(p, port), mlflow_env(p, port), p)
    env = airflow_env(p, port)  # also generates the Airflow login (0600) on first use
    from importlib.metadata import version

    if state.get("airflow_db_migrated") != version("apache-airflow"):
        t = time.monotonic()
        migrate_log = os.open(p.logs / "airflow-db-migrate.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(migrate_log, "ab") as out:
            done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"airflow db migrate failed: {_tail(p.logs / 'airflow-db-migrate.log')}")
        state["airflow_db_migrated"] = version("apache-airflow")
        _save_state(p, state)
        print(f"  {'airflow db':14} migrated in {time.monotonic() - t:.0f}s (+{time.monotonic() - _T0:.0f}s)", flush=True)
    from lakeforge.orchestration.services import airflow_argv

    for name in AIRFLOW_SERVICES:
        service_env = airflow_env(p, port, name)
        _start(name, airflow_argv(name, service_env), service_env, p)

    # 3. MLflow's accounts, experiment and model (idempotent), then Airflow's API.
    _wait("MLflow", lambda: _http_ok(f"{u['mlflow']}/health"), ("postgres", "mlflow"), p)
    from lakeforge.mlflow_auth import ACCOUNTS, password_file

    if not state.get("mlflow_experiment_id") or not all(password_file(p.mlflow_auth, a).exists() for a in ACCOUNTS):
        state["mlflow_experiment_id"] = mlflow_init(p, u["mlflow"])  # once: kept in MLflow's database
        _save_state(p, state)
    print(f"  {'mlflow':14} ready at +{time.monotonic() - _T0:.0f}s", flush=True)
    _wait("Airflow's API server", lambda: _http_ok(f"{u['airflow']}/api/v2/monitor/health"),
          ("postgres", *AIRFLOW_SERVICES), p)
    print(f"  {'api-server':14} ready at +{time.monotonic() - _T0:.0f}s", flush=True)
    print(f"up in {time.monotonic() - _T0:.0f}s\n", flush=True)
    print(summary(p, port, show_passwords=first))
    return 0


def _preload_mlflow() -> None:
    try:
        import lakeforge.mlflow_auth  # noqa: F401
        import mlflow.server.auth.routes  # noqa: F401
        import mlflow.utils.rest_utils  # noqa: F401
    except Exception:  # noqa: BLE001  (mlflow_init imports them again and reports)
        pass


def mlflow_init(p: Paths, uri: str) -> str:
    """Accounts and grants (``mlflow_auth.init``), and the experiment's kind (model training, not
    GenAI); returns the experiment's id. MLflow 3.17's UI also has a global GenAI / Model training
    switch (default GenAI, kept in the browser): the printed link selects the model-training side
    (``experiment_url``)."""
    import warnings

    with warnings.catch_warnings():  # MLflow's server modules import starlette's deprecated WSGI shim
        warnings.simplefilter("ignore")
        from lakeforge.mlflow_auth import ADMIN, AuthAdmin, init, password_file

        init(p.mlflow_auth, uri)
    s = _settings()
    admin = AuthAdmin(uri, read_secret(password_file(p.mlflow_auth, ADMIN)))
    exp_id = admin.experiment_id(s.mlflow_experiment)
    admin.call("/api/2.0/mlflow/experiments/set-experiment-tag",
               json={"experiment_id": exp_id, "key": EXPERIMENT_KIND[0], "value": EXPERIMENT_KIND[1]})
    return exp_id


def experiment_url(p: Paths, base: str) -> str:
    """The experiment's page in MLflow's model-training view (runs, models, registry)."""
    exp_id = _load_state(p).get("mlflow_experiment_id")
    return f"{base}/#/experiments/{exp_id}?workflowType=machine_learning" if exp_id else base


def logins(p: Paths) -> dict[str, tuple[str, Path]]:
    """Who logs in where: (user, file holding the password)."""
    from lakeforge.orchestration.airflow_env import PASSWORDS_FILE

    return {"airflow": ("admin", Path(_settings().airflow_home) / PASSWORDS_FILE),
            "mlflow": (MLFLOW_LOGIN, p.mlflow_auth / f"{MLFLOW_LOGIN}.password")}


def airflow_password(p: Paths) -> str:
    user, path = logins(p)["airflow"]
    return json.loads(read_secret(path))[user]


def summary(p: Paths, port: dict[str, int], show_passwords: bool) -> str:
    u, who = urls(port), logins(p)
    py = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    if show_passwords:
        af = f"user admin, password {airflow_password(p)}"
        ml = f"user {MLFLOW_LOGIN}, password {read_secret(who['mlflow'][1])}"
        note = "  (printed this once; kept in the files below, 0600)\n"
    else:
        af = f"user admin, password: {py} -m lakeforge.stack password airflow"
        ml = f"user {MLFLOW_LOGIN}, password: {py} -m lakeforge.stack password mlflow"
        note = ""
    return (
        f"  Airflow  {u['airflow']}   {af}\n"
        f"  MLflow   {experiment_url(p, u['mlflow'])}\n"
        f"           {ml} (read-only)\n{note}"
        f"  logins   {who['airflow'][1]}\n"
        f"           {who['mlflow'][1]}   (MLflow admin: {p.mlflow_auth / 'admin.password'})\n"
        f"  logs     {p.logs}/<service>.log\n"
        f"  PostgreSQL 127.0.0.1:{port['postgres']} (databases airflow, mlflow)\n\n"
        f"Deliver days:  {Path(sys.executable).with_name('lakeforge-simulate')} --start 2013-01-01 --end 2013-01-31\n"
        f"Then unpause the DAGs in the Airflow UI (ingest_flights takes the days in; the others follow the data).\n"
        f"make status: what runs and what landed; make down: stop (the data stays).\n")


# --- down ---------------------------------------------------------------------------------------

def down(p: Paths | None = None, grace: float = 30.0) -> int:
    """Stop every service ``up`` started, by its record (Airflow first, PostgreSQL last); keep the data."""
    from lakeforge.orchestration import services

    p = p or paths()
    if not p.run.exists():
        print("nothing to stop")
        return 0
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.monotonic()

    def stop(name: str) -> None:
        t = time.monotonic()
        st = _service_state(name, p)
        if name == "postgres" and st["state"] == "running":
            cluster(p, ports(p)["postgres"]).stop("fast")  # a clean shutdown: no recovery on the next start
        pids = set(services.stop(name, folder=p.run, grace=grace)) | set(st.get("pids", ()))
        if pids:
            print(f"  {name:14} stopped (pids {', '.join(map(str, sorted(pids)))}) in {time.monotonic() - t:.1f}s",
                  flush=True)

    # The services that run or parse DAG code first (their tasks report to the api-server), and MLflow
    # beside them; then the api-server; PostgreSQL last.
    for wave in (("triggerer", "scheduler", "dag-processor", "mlflow"), ("api-server",), ("postgres",)):
        with ThreadPoolExecutor(len(wave)) as pool:
            list(pool.map(stop, wave))  # re-raises a failure
    print(f"down in {time.monotonic() - t0:.0f}s; data kept in {p.home}")
    return 0


# --- status -------------------------------------------------------------------------------------

def _get_json(url: str, headers: dict[str, str] | None = None, data: bytes | None = None, timeout: float = 10) -> dict:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def airflow_token(base: str, user: str, password: str) -> str:
    body = json.dumps({"username": user, "password": password}).encode()
    return _get_json(f"{base}/auth/token", {"Content-Type": "application/json"}, body)["access_token"]


def dag_runs(p: Paths, base: str) -> list[dict]:
    """Each DAG with its paused flag and its last run (Airflow's REST API, as admin)."""
    headers = {"Authorization": f"Bearer {airflow_token(base, 'admin', airflow_password(p))}"}
    out = []
    for dag in _get_json(f"{base}/api/v2/dags?limit=100&order_by=dag_id", headers)["dags"]:
        runs = _get_json(f"{base}/api/v2/dags/{dag['dag_id']}/dagRuns?limit=1&order_by=-run_after", headers)
        out.append({"dag_id": dag["dag_id"], "is_paused": dag["is_paused"],
                    "last_run": (runs["dag_runs"] or [None])[0]})
    return out


def newest_days() -> dict[str, str]:
    """``layer/table`` -> the newest published day, per source's namespace in the lake."""
    from lakeforge.lake import source_lake
    from lakeforge.publish import list_partitions
    from lakeforge.sources import pipeline_folders

    out = {}
    for source in pipeline_folders():
        lake = source_lake(source)
        for layer in ("raw", "clean", "features", "predictions", "monitoring"):
            try:
                tables = [t for t in lake.listdir(layer) if not t.startswith(("_", "."))]
            except (FileNotFoundError, OSError):
                continue
            for table in sorted(tables):
                try:
                    parts = [d for d in list_partitions(lake, f"{layer}/{table}") if d.startswith("ds=")]
                except (FileNotFoundError, OSError):
                    continue
                if parts:
                    out[f"{source}/{layer}/{table}"] = f"{parts[-1][3:]} ({len(parts)} days)"
    return out


def champions(p: Paths, base: str) -> list[str]:
    """One line per pipeline's model (``model.py``): its champion, or that there is none yet."""
    from lakeforge.training.spec import model_specs

    return [champion(p, base, spec.name, spec.job) for spec in model_specs()]


def champion(p: Paths, base: str, name: str, trainer: str) -> str:
    user, path = logins(p)["mlflow"]
    auth = b64encode(f"{user}:{read_secret(path)}".encode()).decode()
    q = urllib.parse.urlencode({"name": name, "alias": "champion"})
    try:
        v = _get_json(f"{base}/api/2.0/mlflow/registered-models/alias?{q}",
                      {"Authorization": f"Basic {auth}"})["model_version"]
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if exc.code == 404 or "not found" in body:  # MLflow 3.17: 400 INVALID_PARAMETER_VALUE "... not found"
            return f"{name}@champion: none yet ({trainer} registers one)"
        raise RuntimeError(f"HTTP {exc.code}: {body[:300]}") from exc
    return f"{name}@champion = version {v['version']} (run {v.get('run_id', '?')})"


def status(p: Paths | None = None) -> int:
    p = p or paths()
    port = ports(p)
    u = urls(port)
    down_services = []
    print(f"lakeforge stack in {p.home}")
    for name in SERVICES:
        st = _service_state(name, p)
        state = st["state"]
        if state == "running":
            line = f"up (pid {st['pid']})"
        elif state == "not started":  # never started, or stopped by `down`
            down_services.append(name)
            line = "stopped"
        else:  # it died: its record is there, its leader is not
            down_services.append(name)
            line = f"DOWN ({state}), see {p.logs / (name + '.log')}"
        print(f"  {name:14} {line}")
    print(f"\n  Airflow  {u['airflow']}   login: admin, password in {logins(p)['airflow'][1]}")
    print(f"  MLflow   {experiment_url(p, u['mlflow'])}   login: {MLFLOW_LOGIN}, password in "
          f"{logins(p)['mlflow'][1]}")
    print(f"  (or: {sys.executable} -m lakeforge.stack password airflow|mlflow)\n")
    print("DAGs (last run):")
    try:
        for d in dag_runs(p, u["airflow"]):
            r = d["last_run"]
            # The note names the data days (a run's logical date is when it was queued, for a run
            # started by data).
            note = f": {r['note'][:90]}" if r and r.get("note") else ""
            run = (f"{r['state']:8} {r['dag_run_id']}  (ended {str(r.get('end_date') or '-')[:19]}){note}"
                   if r else "no run yet")
            print(f"  {d['dag_id']:20} {'paused ' if d['is_paused'] else 'active '} {run}")
    except Exception as exc:  # noqa: BLE001
        print(f"  (Airflow's API is not answering: {exc})")
    print("Newest day per layer:")
    days = newest_days()
    for key, day in days.items():
        print(f"  {key:32} {day}")
    if not days:
        print("  nothing in the lake yet")
    print("Models:")
    try:
        for line in champions(p, u["mlflow"]):
            print(f"  {line}")
    except Exception as exc:  # noqa: BLE001
        print(f"  (MLflow is not answering: {exc})")
    if down_services:
        print(f"\nnot running: {', '.join(down_services)} (`make up` starts what is down)")
    return 1 if down_services else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakeforge.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "password"))
    parser.add_argument("which", nargs="?", choices=("airflow", "mlflow"), help="password: whose login")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.action == "up":
        return up()
    if args.action == "down":
        return down()
    if args.action == "status":
        return status()
    p = paths()
    user, path = logins(p)[args.which or "airflow"]
    print(airflow_password(p) if (args.which or "airflow") == "airflow" else read_secret(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
