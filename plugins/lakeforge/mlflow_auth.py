"""MLflow's own basic-auth app for the registry: a generated admin and one account per service, each
with the least rights it needs. Without it anyone who reaches the server can move ``champion``,
delete versions or upload the artifacts that scoring later unpickles.

    python -m lakeforge.mlflow_auth serve --state-dir DIR [--database-uri URI] -- mlflow server ...
    python -m lakeforge.mlflow_auth init --state-dir DIR --tracking-uri http://127.0.0.1:5000
    python -m lakeforge.mlflow_auth rotate --state-dir DIR --tracking-uri URI --account scoring

``serve`` writes the server's ini (``DIR/basic_auth.ini``, 0600) with a generated admin password
(``DIR/admin.password``, 0600, or ``--admin-password-file``), then execs the command with
``MLFLOW_AUTH_CONFIG_PATH`` pointing at it, ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (CSRF, generated in
``DIR/flask-secret-key``) and ``--app-name basic-auth`` appended (the stack's entrypoint and the
tests' server both start this way). MLflow 3.17 creates the admin from the ini on the first start
against an empty auth database and ignores it afterwards; it ships no default password and refuses
the historical ``password1234``. The basic-auth app needs ``mlflow[auth]`` (Flask-WTF).
``init`` (idempotent, as the admin, over the REST API) creates the experiment and the registered
model up-front, then the accounts, each with a generated password in ``DIR/<account>.password``
(0600), and their grants (``default_permission = NO_PERMISSIONS``: an account sees only what it is
granted):

    training  experiment EDIT    create runs, log metrics and model artifacts
              model MANAGE       register versions, set aliases, delete its own half-registered
                                 versions (delete needs MANAGE; EDIT does not include it)
              monitoring READ
    scoring   experiment READ    download model artifacts (the artifact proxy checks the experiment)
              model READ         read versions and aliases; cannot register, tag or move an alias
              monitoring EDIT    batch scoring logs the per-version monitoring runs there
    viewer    experiment READ, model READ, monitoring READ   people; admins get more through the admin account

The monitoring experiment is ``<experiment>-monitoring`` (``lakeforge.monitoring.store``), created
here up front like the training experiment, so no job account ever creates (and manages) it;
both carry ``mlflow.experimentKind = custom_model_development`` (MLflow's model-training view).

A job runs as its own account only: the standard ``MLFLOW_TRACKING_USERNAME`` plus the file of its
password in ``LAKEFORGE_MLFLOW_PASSWORD_FILE`` (never the password itself in a command line or a
shared environment); ``apply_credentials()`` reads that file (refused unless 0600) into
``MLFLOW_TRACKING_PASSWORD`` of the job's own process. ``credentials(account, DIR)`` gives the
environment for a child process.

A process that runs several jobs (the Airflow scheduler's LocalExecutor runs both the training and
the scoring drivers) holds one file per job account, ``LAKEFORGE_MLFLOW_PASSWORD_FILE_<ACCOUNT>``;
each job's entrypoint calls ``use_account("<account>")`` first, so the scoring job acts as
``scoring`` (read-only on the model) even though the same scheduler also launches training.

In the docker stack (docker/mlflow/entrypoint.sh) the passwords are compose secrets mounted as
``/run/secrets/mlflow/<account>.password`` (0400): the server gets the admin's, the
``mlflow-auth-init`` service all of them, the Airflow scheduler (which runs the training and
scoring drivers) training's and scoring's.

Known limit of MLflow's model: with workspaces off, any authenticated account may create NEW
experiments and registered models of its own (it becomes their manager); it gains nothing on the
lakeforge experiment and model, which exist before any account does.
"""

from __future__ import annotations

import argparse
import configparser
import io
import logging
import os
from pathlib import Path

from lakeforge.secrets import generated_secret, read_secret, write_secret

log = logging.getLogger(__name__)

ADMIN = "admin"
CONFIG_NAME = "basic_auth.ini"
FLASK_KEY_NAME = "flask-secret-key"
PASSWORD_FILE_ENV = "LAKEFORGE_MLFLOW_PASSWORD_FILE"
# account -> (permission on the experiment, permission on the registered model)
ACCOUNTS: dict[str, tuple[str, str]] = {
    "training": ("EDIT", "MANAGE"),
    "scoring": ("READ", "READ"),
    "viewer": ("READ", "READ"),
}
# The accounts jobs run as (the scheduler that launches the jobs holds their password files).
JOB_ACCOUNTS = ("training", "scoring")
# account -> permission on the monitoring experiment (``<experiment>-monitoring``)
MONITORING: dict[str, str] = {"training": "READ", "scoring": "EDIT", "viewer": "READ"}
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
DEFAULT_PERMISSION = "NO_PERMISSIONS"
AUTH_CACHE_TTL_S = 60


def password_file(state_dir: Path | str, account: str) -> Path:
    return Path(state_dir) / f"{account}.password"


def _nonempty(path: Path | str, value: str) -> str:
    """A mounted secret left empty (a variable unset in docker/.env) is an error, never a password."""
    if not value:
        raise SystemExit(f"secret file {path} is empty: set its value")
    return value


def write_config(state_dir: Path | str, database_uri: str | None = None,
                 admin_password_file: Path | str | None = None) -> Path:
    """``DIR/basic_auth.ini`` (0600) for ``mlflow server --app-name basic-auth``; the admin password
    is read from ``admin_password_file`` (a mounted secret) or generated in ``DIR/admin.password``."""
    state_dir = Path(state_dir)
    source = admin_password_file or password_file(state_dir, ADMIN)
    password = _nonempty(source, read_secret(source) if admin_password_file else generated_secret(source))
    ini = configparser.ConfigParser(interpolation=None)
    ini["mlflow"] = {
        "default_permission": DEFAULT_PERMISSION,
        "database_uri": database_uri or f"sqlite:///{state_dir.resolve()}/basic_auth.db",
        "admin_username": ADMIN,
        "admin_password": password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
        # Every request checks its password with scrypt (~0.1-0.2 s of CPU here): a training run's
        # hundreds of calls would pay it each time. Cached per worker for a minute; a password
        # changed or a user deleted through the API is dropped at once on the worker that did it,
        # on the others within this TTL.
        "auth_cache_ttl_seconds": str(AUTH_CACHE_TTL_S),
    }
    text = io.StringIO()
    ini.write(text)
    return write_secret(state_dir / CONFIG_NAME, text.getvalue(), overwrite=True)


def server_env(state_dir: Path | str, database_uri: str | None = None,
               admin_password_file: Path | str | None = None) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs in its environment (the ini written)."""
    config = write_config(state_dir, database_uri, admin_password_file)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config.resolve()),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": generated_secret(Path(state_dir) / FLASK_KEY_NAME)}


def serve(state_dir: Path | str, command: list[str], database_uri: str | None = None,
          admin_password_file: Path | str | None = None) -> None:
    """Exec ``command`` (``mlflow server ...``) as the basic-auth app (this process becomes it)."""
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise SystemExit("serve: no command (e.g. -- mlflow server --host 127.0.0.1)")
    env = {**os.environ, **server_env(state_dir, database_uri, admin_password_file)}
    os.execvpe(command[0], [*command, "--app-name", "basic-auth"], env)


class AuthAdmin:
    """The admin's REST calls (explicit credentials: nothing read from or left in the environment)."""

    def __init__(self, tracking_uri: str, password: str, username: str = ADMIN):
        from mlflow.utils.rest_utils import MlflowHostCreds

        self.creds = MlflowHostCreds(tracking_uri.rstrip("/"), username=username, password=password)

    def call(self, endpoint: str, method: str = "POST", *, exists_ok: bool = False, **kwargs) -> dict:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        try:
            resp = verify_rest_response(http_request(self.creds, endpoint, method, **kwargs), endpoint)
        except MlflowException as exc:
            if exists_ok and exc.error_code == "RESOURCE_ALREADY_EXISTS":
                return {}
            raise
        return resp.json() if resp.content else {}

    def experiment_id(self, name: str, tags: dict[str, str] | None = None) -> str:
        """The experiment's id (created if missing), with ``tags`` set on it (also if it existed)."""
        self.call("/api/2.0/mlflow/experiments/create", json={"name": name}, exists_ok=True)
        got = self.call("/api/2.0/mlflow/experiments/get-by-name", "GET", params={"experiment_name": name})
        exp_id = got["experiment"]["experiment_id"]
        for key, value in (tags or {}).items():
            self.call("/api/2.0/mlflow/experiments/set-experiment-tag",
                      json={"experiment_id": exp_id, "key": key, "value": value})
        return exp_id

    def ensure_user(self, username: str, password: str) -> None:
        """Create the user, or set its password to ``password`` (the file is the truth)."""
        from mlflow.server.auth.routes import CREATE_USER, UPDATE_USER_PASSWORD

        body = {"username": username, "password": password}
        if not self.call(CREATE_USER, json=body, exists_ok=True):
            if username == self.creds.username:  # one's own password: MLflow wants the current one
                body["current_password"] = self.creds.password
            self.call(UPDATE_USER_PASSWORD, "PATCH", json=body)

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """Exactly ``permission`` (an existing grant of another level is replaced)."""
        from mlflow.server.auth.routes import GRANT_USER_PERMISSION, REVOKE_USER_PERMISSION

        body = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        if not self.call(GRANT_USER_PERMISSION, json={**body, "permission": permission}, exists_ok=True):
            self.call(REVOKE_USER_PERMISSION, json=body)
            self.call(GRANT_USER_PERMISSION, json={**body, "permission": permission})


def init(state_dir: Path | str, tracking_uri: str, experiment: str | None = None,
         model: str | None = None) -> dict[str, Path]:
    """Experiment, registered model, accounts and grants on a running basic-auth server
    (idempotent); returns each account's password file."""
    from lakeforge.settings import get_settings

    from lakeforge.training.spec import model_specs

    s = get_settings()
    # Every pipeline's experiment and model (``lakeforge/pipelines/*/model.py``), made here up
    # front so no job account creates (and so manages) one; ``experiment`` / ``model``: one pair only.
    if experiment or model:
        targets = [(experiment or s.mlflow_experiment, model or s.model_name, "")]
    else:
        targets = [(spec.experiment, spec.name, spec.description) for spec in model_specs()]
    admin_file = password_file(state_dir, ADMIN)
    admin = AuthAdmin(tracking_uri, _nonempty(admin_file, read_secret(admin_file)))
    files = {account: password_file(state_dir, account) for account in ACCOUNTS}
    for account, path in files.items():
        admin.ensure_user(account, _nonempty(path, generated_secret(path)))
    for experiment_name, model_name, description in targets:
        exp_id = admin.experiment_id(experiment_name, dict([EXPERIMENT_KIND]))  # the model-training view
        monitoring_id = admin.experiment_id(f"{experiment_name}-monitoring", dict([EXPERIMENT_KIND]))
        admin.call("/api/2.0/mlflow/registered-models/create", exists_ok=True,
                   json={"name": model_name, "description": f"{description} (lakeforge)".lstrip()})
        for account, (on_experiment, on_model) in ACCOUNTS.items():
            admin.grant(account, "experiment", exp_id, on_experiment)
            admin.grant(account, "registered_model", model_name, on_model)
            admin.grant(account, "experiment", monitoring_id, MONITORING[account])
        log.info("MLflow accounts %s on %s (experiment %s = %s, model %s)", sorted(files), tracking_uri,
                 experiment_name, exp_id, model_name)
    return files


def rotate(state_dir: Path | str, tracking_uri: str, account: str) -> Path:
    """A new password for ``account`` (admin included): the server first, then the file."""
    import secrets

    new = secrets.token_urlsafe(32)
    AuthAdmin(tracking_uri, read_secret(password_file(state_dir, ADMIN))).ensure_user(account, new)
    path = write_secret(password_file(state_dir, account), new, overwrite=True)
    ini = Path(state_dir) / CONFIG_NAME
    if account == ADMIN and ini.exists():  # the server ignores it once the admin exists: no stale copy
        config = configparser.ConfigParser(interpolation=None)
        config.read_string(read_secret(ini))
        write_config(state_dir, config["mlflow"]["database_uri"])
    return path


def credentials(account: str, state_dir: Path | str) -> dict[str, str]:
    """The environment of a process that acts as ``account`` (and only as it)."""
    return {"MLFLOW_TRACKING_USERNAME": account,
            "MLFLOW_TRACKING_PASSWORD": read_secret(password_file(state_dir, account))}


def account_file_env(account: str) -> str:
    """The variable naming ``account``'s password file in a process that runs several jobs."""
    return f"{PASSWORD_FILE_ENV}_{account.upper()}"


def use_account(account: str, environ=os.environ) -> str | None:
    """Make this (job) process act as ``account`` when its runner provides that account's password
    file (``LAKEFORGE_MLFLOW_PASSWORD_FILE_<ACCOUNT>``); otherwise leave the process's one account
    (``MLFLOW_TRACKING_USERNAME`` + ``LAKEFORGE_MLFLOW_PASSWORD_FILE``, or none) as it is. Another
    account's explicit password never carries over. Returns the username in use."""
    path = environ.get(account_file_env(account))
    if path:
        environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        environ.update({"MLFLOW_TRACKING_USERNAME": account, PASSWORD_FILE_ENV: path})
    return apply_credentials(environ)


def apply_credentials(environ=os.environ) -> str | None:
    """``MLFLOW_TRACKING_PASSWORD`` from the file named by ``LAKEFORGE_MLFLOW_PASSWORD_FILE``
    (this process only; an explicit password wins). Returns the username in use, or None."""
    path = environ.get(PASSWORD_FILE_ENV)
    if path and not environ.get("MLFLOW_TRACKING_PASSWORD"):
        if not environ.get("MLFLOW_TRACKING_USERNAME"):
            raise RuntimeError(f"{PASSWORD_FILE_ENV} is set but MLFLOW_TRACKING_USERNAME is not")
        environ["MLFLOW_TRACKING_PASSWORD"] = read_secret(path)
    return environ.get("MLFLOW_TRACKING_USERNAME")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("serve", help="write DIR/basic_auth.ini (0600), then exec the server command")
    c.add_argument("--state-dir", required=True)
    c.add_argument("--database-uri", help="the auth database (default: SQLite in DIR)")
    c.add_argument("--admin-password-file", help="use this secret file instead of generating one")
    c.add_argument("command", nargs=argparse.REMAINDER, help="-- mlflow server ...")
    for name in ("init", "rotate"):
        a = sub.add_parser(name)
        a.add_argument("--state-dir", required=True)
        a.add_argument("--tracking-uri", required=True)
        if name == "rotate":
            a.add_argument("--account", required=True, choices=[ADMIN, *ACCOUNTS])
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.state_dir, args.command, args.database_uri, args.admin_password_file)
    elif args.cmd == "init":
        for account, path in init(args.state_dir, args.tracking_uri).items():
            print(f"{account}: {path}")
    else:
        print(rotate(args.state_dir, args.tracking_uri, args.account))


if __name__ == "__main__":
    main()
