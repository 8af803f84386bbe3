"""Static checks of docker/ (no Docker engine here): secure by default and consistent with settings."""

import re
import subprocess

import yaml

from lakeforge.settings import OPTIONS, PROJECT_ROOT
from lakeforge.spark import CLUSTER_SECURITY_CONF

DOCKER = PROJECT_ROOT / "docker"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
REQUIRED_VAR = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _envs(spec: dict) -> dict:
    env = spec.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_secrets_are_required_from_the_environment():
    stack = compose()
    for name, spec in stack["services"].items():
        for key, value in _envs(spec).items():
            if SECRET_NAME.search(key) or "PASSWORD" in str(value).upper() and "://" in str(value):
                assert REQUIRED_VAR.search(str(value)), f"{name}.{key} has a literal secret: {value!r}"
        for part in spec.get("command") or []:  # a command line is visible to every local user (ps)
            assert not ("://" in str(part) and "@" in str(part)), f"{name} command carries credentials: {part}"
            assert not REQUIRED_VAR.search(str(part)), f"{name} command carries a secret: {part}"
    example = (DOCKER / ".env.example").read_text()
    for line in example.splitlines():
        if "=" in line and not line.startswith("#") and SECRET_NAME.search(line.split("=")[0]):
            assert line.split("=", 1)[1] == "", f".env.example ships a secret value: {line}"


def test_spark_cluster_authenticates_with_a_secret_from_the_environment():
    stack = compose()
    master, worker = _envs(stack["services"]["spark-master"]), _envs(stack["services"]["spark-worker"])
    security = {f"-D{k}={v}" for k, v in CLUSTER_SECURITY_CONF.items()}  # what the jobs run with
    assert security <= set(master["SPARK_MASTER_OPTS"].split())
    assert "-Dspark.master.rest.enabled=false" in master["SPARK_MASTER_OPTS"].split()
    assert security <= set(worker["SPARK_WORKER_OPTS"].split())
    jobs = stack["x-lakeforge-env"]["LAKEFORGE_SPARK_AUTH_SECRET"]
    # One secret, required from docker/.env, for the daemons and for the jobs (Airflow's workers).
    assert master["_SPARK_AUTH_SECRET"] == worker["_SPARK_AUTH_SECRET"] == jobs
    assert REQUIRED_VAR.fullmatch(jobs) and "SPARK_AUTH_SECRET" in jobs
    assert "secret" not in " ".join(map(str, stack["services"]["spark-master"]["command"])).lower()


def test_published_ports_are_loopback_only():
    for name, spec in compose()["services"].items():
        for port in spec.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_cluster_mode_is_only_settings():
    env = compose()["x-lakeforge-env"]
    known = {o.env for o in OPTIONS.values()}
    lakeforge_vars = {k for k in env if k.startswith("LAKEFORGE_")}
    assert lakeforge_vars <= known, lakeforge_vars - known
    assert env["LAKEFORGE_LAKE_ROOT"].startswith("hdfs://")
    assert env["LAKEFORGE_SPARK_MASTER"].startswith("spark://")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")


def test_images_install_the_lock_and_scripts_parse():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "uv pip sync" in dockerfile and "requirements.txt" in dockerfile
    # javac builds the local file system jar before the class archive is recorded against it.
    assert "openjdk-17-jdk-headless" in dockerfile
    assert dockerfile.index("lakeforge.local_fs") < dockerfile.index("lakeforge.spark_cds")
    assert "tools/hdfs-mini/pom.xml" in (DOCKER / "hadoop" / "Dockerfile").read_text()
    for script in DOCKER.rglob("*.sh"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
