"""Static checks of docker/ (no Docker engine here): secure by default and consistent with settings."""

import re
import subprocess

import pytest
import yaml

from lakeforge.settings import OPTIONS, PROJECT_ROOT
from lakeforge.spark import CLUSTER_SECURITY_CONF

DOCKER = PROJECT_ROOT / "docker"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|KEYTAB")
INTERPOLATED = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
MOUNTED = re.compile(r"/run/secrets/([A-Za-z0-9_.-]+)")
# Named volumes whose files are secrets: who mounts one sees them.
SECRET_VOLUMES = {"airflow-auth"}  # the Airflow UI/API users' generated passwords

AIRFLOW = {"airflow_db_password", "airflow_fernet_key", "airflow_jwt_secret"}
# Finding 4 (issue 19): which service sees which secret. A service or a secret not listed here
# fails the test: extend it deliberately (the MLflow auth and lake-init services will add theirs).
ALLOWED: dict[str, set[str]] = {
    "postgres": {"postgres_password", "airflow_db_password", "mlflow_db_password"},
    "namenode": set(),
    "datanode-1": set(),
    "datanode-2": set(),
    "spark-master": {"spark_auth_secret"},
    "spark-worker": {"spark_auth_secret"},  # runs the jobs' code: nothing of Airflow or MLflow
    "mlflow": {"mlflow_db_password"},
    "airflow-init": {"airflow_db_password", "airflow_fernet_key"},
    "airflow-apiserver": AIRFLOW | {"volume:airflow-auth"},
    "airflow-scheduler": AIRFLOW | {"spark_auth_secret"},  # runs the tasks, i.e. the Spark drivers
    "airflow-dag-processor": AIRFLOW,
    "airflow-triggerer": AIRFLOW,
}
# Mounted secret files belong to the user the container runs as, readable by it alone.
RUNS_AS = {"postgres": "999"}  # postgres:16-bookworm; every other image's user is given here
LAKEFORGE_UID, HDFS_UID = "50000", "50001"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def env_example() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def _envs(spec: dict) -> dict:
    env = spec.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def _sources(spec: dict) -> list[str]:
    return [s["source"] if isinstance(s, dict) else s for s in spec.get("secrets") or []]


def _env_file(spec: dict) -> dict[str, str]:
    files = spec.get("env_file") or []
    out = {}
    for item in [files] if isinstance(files, (str, dict)) else files:
        path = DOCKER / (item["path"] if isinstance(item, dict) else item)
        assert path.exists(), f"env_file {path} is not in the repository: its contents cannot be checked"
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                out[key.strip()] = value
    return out


def secrets_seen(spec: dict) -> set[str]:
    """What a service can read: compose secrets it mounts, secret-looking variables of docker/.env
    interpolated into its environment or command, secret-looking variables of its env files
    (named by their lower-cased variable, as the compose secrets are) and secret volumes.
    A literal secret-looking variable shows up as ``env:NAME``."""
    seen = set(_sources(spec))
    env = {**_env_file(spec), **_envs(spec)}
    for key, value in env.items():
        if SECRET_NAME.search(key) and not key.endswith(("_FILE", "_CMD")) and not MOUNTED.search(str(value)):
            refs = [v for v in INTERPOLATED.findall(str(value))]
            seen.update(v.lower() for v in refs) if refs else seen.add(f"env:{key}")
    texts = [str(v) for v in env.values()] + [str(p) for p in spec.get("command") or []]
    for text in texts:
        seen.update(v.lower() for v in INTERPOLATED.findall(text) if SECRET_NAME.search(v))
    for volume in spec.get("volumes") or []:
        name = (volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]) or ""
        if name in SECRET_VOLUMES:
            seen.add(f"volume:{name}")
    return seen


def test_each_service_sees_only_its_own_secrets():
    services = compose()["services"]
    assert set(services) == set(ALLOWED), "a service was added or removed: put it in ALLOWED"
    table = {name: secrets_seen(spec) for name, spec in services.items()}
    extra = {name: sorted(seen - ALLOWED[name]) for name, seen in table.items() if seen - ALLOWED[name]}
    assert not extra, f"services see secrets outside their allow-list: {extra}"
    assert table == ALLOWED, {n: sorted(ALLOWED[n] - s) for n, s in table.items() if ALLOWED[n] - s}


def test_the_allow_list_check_catches_a_leak():
    """The check above fails on what the stack did before (spark-worker merging Airflow's env)."""
    leaky = {"environment": {"AIRFLOW__CORE__FERNET_KEY": "${AIRFLOW_FERNET_KEY:?set it}",
                             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                                 "postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD:?}@postgres/airflow",
                             "SOME_TOKEN": "literal"},
             "command": ["run", "--password=$MLFLOW_DB_PASSWORD"],
             "secrets": [{"source": "airflow_jwt_secret"}], "volumes": ["airflow-auth:/x"]}
    assert secrets_seen(leaky) == {"airflow_fernet_key", "airflow_db_password", "env:SOME_TOKEN",
                                   "mlflow_db_password", "airflow_jwt_secret", "volume:airflow-auth"}


def test_secrets_are_files_of_the_containers_user_mode_0400_from_docker_env():
    stack = compose()
    example = env_example()
    secret_vars = {k for k in example if SECRET_NAME.search(k)}
    for name, spec in stack["secrets"].items():
        # One vocabulary: secret `x` holds docker/.env's `X`, and nothing else defines it.
        assert spec == {"environment": name.upper()}, f"secret {name}: {spec}"
    assert {n.upper() for n in stack["secrets"]} == secret_vars, ".env.example and compose secrets differ"
    for key in secret_vars:
        assert example[key] == "", f".env.example ships a secret value: {key}"
    for name, spec in stack["services"].items():
        uid = RUNS_AS.get(name, LAKEFORGE_UID)
        for mount in spec.get("secrets") or []:
            assert isinstance(mount, dict), f"{name}: long syntax needed for uid/mode: {mount}"
            assert mount.get("mode") in (0o400, "0400", "0o400"), f"{name}: {mount}"
            assert mount.get("uid") == uid and mount.get("gid") == uid, f"{name}: {mount}"
        # Every /run/secrets file a service's settings or command reads is mounted there.
        texts = [str(v) for v in _envs(spec).values()] + [str(p) for p in spec.get("command") or []]
        for text in texts:
            for used in MOUNTED.findall(text):
                assert used in _sources(spec), f"{name} reads /run/secrets/{used} but does not mount it"


def test_no_secret_in_an_environment_or_on_a_command_line():
    stack = compose()
    for name, spec in stack["services"].items():
        for key, value in _envs(spec).items():
            assert not INTERPOLATED.search(str(value)) or not any(
                SECRET_NAME.search(v) for v in INTERPOLATED.findall(str(value))), f"{name}.{key}: {value}"
            if SECRET_NAME.search(key):  # only where a secret is: a file's path, a command reading one
                assert (key.endswith("_FILE") and str(value).startswith("/")) or (
                    key.endswith("_CMD") and "/run/secrets/" in str(value)), f"{name}.{key}={value}"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"{name}.{key} has a password in a URI"
        for part in spec.get("command") or []:  # a command line is visible to every local user (ps)
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(part)), f"{name} command carries credentials: {part}"
            assert not INTERPOLATED.search(str(part)) or "$@" in str(part), f"{name} command interpolates: {part}"


DEFAULT_PASSWORD = [
    re.compile(r"\b(admin|airflow|mlflow|postgres|hdfs|root|user|guest):\1\b"),  # user:same-as-user
    re.compile(r"password1234|changeme|change_me|passw0rd|secret123|admin123|hunter2", re.I),
    re.compile(r"(password|secret|passwd|pwd)\w*\s*[=:]\s*[\"']?(password|secret|admin|airflow|mlflow|postgres)\b",
               re.I),
]
CONFIG = re.compile(r"\.(ya?ml|toml|ini|cfg|conf|properties|xml|json|env[\w.]*|sh|in|txt)$|(^|/)(Makefile|Dockerfile)")


def repo_config_files() -> list:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    out = []
    for rel in listed:
        path = PROJECT_ROOT / rel
        if not path.is_file() or rel.startswith(("tests/", "bench/", "docs/")):
            continue
        if rel.startswith("docker/") or CONFIG.search(rel):
            out.append(path)
    return out


def test_no_default_password_in_docker_or_the_repo_config():
    files = repo_config_files()
    assert DOCKER / "compose.yaml" in files and PROJECT_ROOT / "pyproject.toml" in files
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(p.search(line) for p in DEFAULT_PASSWORD):
                hits.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert not hits, "default passwords:\n" + "\n".join(hits)


@pytest.mark.parametrize("line", ["AIRFLOW_USERS=admin:admin", "admin_password = password1234",
                                  "url: postgresql://airflow:airflow@db/airflow", "POSTGRES_PASSWORD=postgres"])
def test_the_default_password_check_catches(line):
    assert any(p.search(line) for p in DEFAULT_PASSWORD)


def test_spark_cluster_authenticates_with_a_secret_from_a_file():
    stack = compose()
    master, worker = stack["services"]["spark-master"], stack["services"]["spark-worker"]
    security = {f"-D{k}={v}" for k, v in CLUSTER_SECURITY_CONF.items()}  # what the jobs run with
    assert security <= set(_envs(master)["SPARK_MASTER_OPTS"].split())
    assert "-Dspark.master.rest.enabled=false" in _envs(master)["SPARK_MASTER_OPTS"].split()
    assert security <= set(_envs(worker)["SPARK_WORKER_OPTS"].split())
    # One secret for the daemons (their environment, from the file) and the jobs (the scheduler's).
    daemon = "_SPARK_AUTH_SECRET=/run/secrets/spark_auth_secret"
    assert daemon in master["command"] and daemon in worker["command"]
    assert "LAKEFORGE_SPARK_AUTH_SECRET=/run/secrets/spark_auth_secret" in stack["services"]["airflow-scheduler"]["command"]
    for spec in (master, worker):
        argv = spec["command"]
        assert argv[:4] == ["python", "-m", "lakeforge.orchestration.airflow_env", "run"]
        assert argv[argv.index("--") + 1] == "spark-class"


def test_published_ports_are_loopback_only():
    for name, spec in compose()["services"].items():
        for port in spec.get("ports") or []:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1" and (isinstance(port, dict) or str(port).count(":") == 2), \
                f"{name} publishes {port} beyond 127.0.0.1"


def test_cluster_mode_is_only_settings():
    stack = compose()
    env = stack["x-lakeforge-env"]
    known = {o.env for o in OPTIONS.values()}
    lakeforge_vars = {k for k in env if k.startswith("LAKEFORGE_")}
    assert lakeforge_vars <= known, lakeforge_vars - known
    assert env["LAKEFORGE_LAKE_ROOT"].startswith("hdfs://")
    assert env["LAKEFORGE_SPARK_MASTER"].startswith("spark://")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://")
    airflow = stack["x-airflow-env"]
    assert "postgresql" in airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in airflow  # only through the command


def test_images_install_the_lock_and_scripts_parse():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "uv pip sync" in dockerfile and "requirements.txt" in dockerfile
    # javac builds the local file system jar before the class archive is recorded against it.
    assert "openjdk-17-jdk-headless" in dockerfile
    assert dockerfile.index("lakeforge.local_fs") < dockerfile.index("lakeforge.spark_cds")
    assert f"--uid {LAKEFORGE_UID} lakeforge" in dockerfile and "umask 077" in dockerfile
    assert not re.search(r"^\s*(ARG|ENV)\s+\S*(PASSWORD|SECRET|FERNET|TOKEN)", dockerfile, re.M | re.I)
    hadoop = (DOCKER / "hadoop" / "Dockerfile").read_text()
    assert "tools/hdfs-mini/pom.xml" in hadoop
    assert f"--uid {HDFS_UID} hdfs" in hadoop
    for script in DOCKER.rglob("*.sh"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
