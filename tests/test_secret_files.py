"""Finding 5 (issue 19): every secret or database file lakeforge creates is owner-only (0600),
in embedded mode and in what Airflow writes next to them; a secret others can read is refused."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lakeforge.orchestration import airflow_env
from lakeforge.orchestration.airflow_env import PASSWORDS_FILE, airflow_environ
from lakeforge.secrets import InsecureSecretFile, read_secret, write_secret
from lakeforge.settings import Settings

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """A fresh embedded-mode environment of its own LAKEFORGE_HOME, as `make airflow-env` gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LAKEFORGE_HOME"))}
    env["LAKEFORGE_HOME"] = str(tmp_path / "lakeforge")
    env.update(airflow_environ(Settings.from_env(env), env))
    return env


def test_embedded_setup_creates_the_airflow_home_db_and_secrets_owner_only(tmp_path):
    env = embedded_env(tmp_path)
    home = Path(env["AIRFLOW_HOME"])
    assert mode(home) == 0o700
    for name in (".jwt_secret", "airflow.db", PASSWORDS_FILE):
        assert mode(home / name) == 0o600, name
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home}/airflow.db"
    passwords = json.loads(read_secret(home / PASSWORDS_FILE))
    assert set(passwords) == {"admin"} and len(passwords["admin"]) >= 20  # generated, never a default
    # Idempotent: a second set-up (every process runs it) keeps the secrets it made.
    again = embedded_env(tmp_path)
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert json.loads(read_secret(home / PASSWORDS_FILE)) == passwords


def test_files_left_world_readable_by_an_older_setup_are_tightened(tmp_path):
    home = tmp_path / "lakeforge" / "airflow"
    home.mkdir(parents=True)
    for name in ("airflow.db", PASSWORDS_FILE):
        (home / name).write_text("")
        os.chmod(home / name, 0o644)
    embedded_env(tmp_path)
    assert mode(home / "airflow.db") == 0o600
    assert mode(home / PASSWORDS_FILE) == 0o600
    assert "admin" in json.loads((home / PASSWORDS_FILE).read_text())


def test_airflow_keeps_them_private_and_prints_no_password(tmp_path):
    """What Airflow itself then writes: `db migrate` (airflow.cfg with its generated keys, the DB)
    and the API server's auth manager start-up (which generates and prints a password for any
    user without one): nothing under AIRFLOW_HOME is readable by others, no password is printed."""
    env = embedded_env(tmp_path)
    home = Path(env["AIRFLOW_HOME"])
    passwords = json.loads(read_secret(home / PASSWORDS_FILE))
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    init = subprocess.run(
        [sys.executable, "-c", "from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import "
                               "SimpleAuthManager as M; M().init(); print(sorted(M.get_passwords()))"],
        env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-2000:]
    assert init.stdout.strip().endswith("['admin']")
    assert passwords["admin"] not in init.stdout + init.stderr
    assert "Password for user" not in init.stdout + init.stderr
    assert json.loads(read_secret(home / PASSWORDS_FILE)) == passwords  # Airflow kept ours
    secret_or_db = {".jwt_secret", "airflow.cfg", "airflow.db", PASSWORDS_FILE}
    assert secret_or_db <= {p.name for p in home.iterdir()}
    for path in home.rglob("*"):
        if path.is_file():
            assert mode(path) & 0o077 == 0, f"{path.relative_to(home)} is {mode(path):04o}"
    assert mode(home) == 0o700


def test_read_secret_refuses_a_group_or_world_readable_secret(tmp_path):
    path = write_secret(tmp_path / "db.password", "s3cret-value")
    assert read_secret(path) == "s3cret-value"
    for loose in (0o644, 0o640, 0o604):
        os.chmod(path, loose)
        with pytest.raises(InsecureSecretFile, match="chmod 600"):
            read_secret(path)


def test_stack_secret_helpers_read_owner_only_non_empty_files(tmp_path, capsys):
    password = write_secret(tmp_path / "pw", "p@ss/word:1")
    os.chmod(password, 0o400)  # as compose mounts it
    uri = airflow_env.database_uri("postgresql+psycopg2://airflow@postgres:5432/airflow", password)
    assert uri == "postgresql+psycopg2://airflow:p%40ss%2Fword%3A1@postgres:5432/airflow"
    airflow_env.main(["secret", str(password)])
    assert capsys.readouterr().out == "p@ss/word:1"  # no newline: Airflow's _CMD keeps stdout as is
    empty = write_secret(tmp_path / "empty", "")
    with pytest.raises(SystemExit, match="empty"):
        airflow_env.secret_value(empty)
    os.chmod(password, 0o444)
    with pytest.raises(InsecureSecretFile):
        airflow_env.secret_value(password)
    with pytest.raises(SystemExit, match="no password"):
        airflow_env.database_uri("postgresql://airflow:inline@postgres/airflow", empty)


def test_run_puts_file_secrets_into_the_programs_environment_only(tmp_path):
    secret = write_secret(tmp_path / "spark", "shared-secret")
    out = subprocess.run(
        [sys.executable, "-m", "lakeforge.orchestration.airflow_env", "run", f"_SPARK_AUTH_SECRET={secret}", "--",
         sys.executable, "-c", "import os, sys; print(os.environ['_SPARK_AUTH_SECRET'], sys.argv[1:])", "x"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "shared-secret ['x']"
