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
SECRET_PATH = re.compile(r"/run/secrets/[A-Za-z0-9_./-]*[A-Za-z0-9_-]")
# Volumes (named, or host folders) whose files are secrets: who mounts one sees them.
SECRET_VOLUMES = {
    "airflow-auth",  # the Airflow UI/API users' generated passwords
    "mlflow-auth",   # MLflow's auth ini (admin password), auth database, CSRF key
    "kdc",           # the realm's database, master key and generated master password
    "./secrets",     # the keytabs the KDC exports (the host folder the file secrets read)
}

AIRFLOW = {"airflow_db_password", "airflow_fernet_key", "airflow_jwt_secret"}
# Finding 4 (issue 19): which service sees which secret. A service or a secret not listed here
# fails the test: extend it deliberately (the MLflow auth and lake-init services will add theirs).
MLFLOW_ACCOUNTS = {"mlflow_admin_password", "mlflow_training_password", "mlflow_scoring_password",
                   "mlflow_viewer_password"}
ALLOWED: dict[str, set[str]] = {
    "postgres": {"postgres_password", "airflow_db_password", "mlflow_db_password"},
    "kdc": {"volume:kdc", "volume:./secrets"},  # the realm: every key is its own
    "namenode": {"hdfs_keytab_namenode", "hdfs_keystore_password"},
    "datanode-1": {"hdfs_keytab_datanode-1", "hdfs_keystore_password"},
    "datanode-2": {"hdfs_keytab_datanode-2", "hdfs_keystore_password"},
    "lake-init": {"hdfs_admin_keytab"},  # the HDFS superuser, for the one-shot init only
    "spark-master": {"spark_auth_secret"},
    # runs the jobs' code: the lake's keytab, nothing of Airflow or MLflow
    "spark-worker": {"spark_auth_secret", "lakeforge_keytab"},
    "mlflow": {"mlflow_db_password", "mlflow_admin_password", "volume:mlflow-auth"},
    "mlflow-auth-init": MLFLOW_ACCOUNTS,  # the only holder of scoring's and viewer's passwords
    "airflow-init": {"airflow_db_password", "airflow_fernet_key"},
    "airflow-apiserver": AIRFLOW | {"volume:airflow-auth"},
    # runs the tasks, i.e. the Spark drivers: MLflow's training and scoring accounts (each job picks its own)
    "airflow-scheduler": AIRFLOW | {"spark_auth_secret", "lakeforge_keytab", "mlflow_training_password",
                          "mlflow_scoring_password"},
    "airflow-dag-processor": AIRFLOW,
    "airflow-triggerer": AIRFLOW,
}
LAKEFORGE_UID, HDFS_UID = "50000", "50001"
# Mounted secret files belong to the user the container runs as, readable by it alone.
RUNS_AS = {"postgres": "999",  # postgres:16-bookworm; every other image's user is given here
           "namenode": HDFS_UID, "datanode-1": HDFS_UID, "datanode-2": HDFS_UID,
           "lake-init": "0", "kdc": "0"}


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


def mounted(spec: dict) -> dict[str, str]:
    """Path in the container -> secret, for every secret the service mounts."""
    out = {}
    for s in spec.get("secrets") or []:
        source = s["source"] if isinstance(s, dict) else s
        target = (s.get("target") if isinstance(s, dict) else None) or source
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return out


def reads_mounted(spec: dict, path: str) -> bool:
    """``path`` is a mounted secret file, or a folder of them (``--state-dir /run/secrets/mlflow``)."""
    paths = mounted(spec)
    return path in paths or any(p.startswith(path.rstrip("/") + "/") for p in paths)


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
    from_env = {n for n, spec in stack["secrets"].items() if "environment" in spec}
    for name, spec in stack["secrets"].items():
        # One vocabulary: secret `x` holds docker/.env's `X`, and nothing else defines it; or it is
        # the file `x` the KDC exports into docker/secrets/ (keytabs: binary, not .env values).
        assert spec in ({"environment": name.upper()}, {"file": f"./secrets/{name}"}), f"secret {name}: {spec}"
    assert {n.upper() for n in from_env} == secret_vars, ".env.example and compose secrets differ"
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
            for used in SECRET_PATH.findall(text):
                assert reads_mounted(spec, used), f"{name} reads {used} but does not mount it"


def test_no_secret_in_an_environment_or_on_a_command_line():
    stack = compose()
    for name, spec in stack["services"].items():
        for key, value in _envs(spec).items():
            assert not INTERPOLATED.search(str(value)) or not any(
                SECRET_NAME.search(v) for v in INTERPOLATED.findall(str(value))), f"{name}.{key}: {value}"
            if SECRET_NAME.search(key):  # only where a secret is: a file's path, a command reading one
                assert (key.endswith("_FILE") and str(value).startswith("/")) or (
                    str(value).startswith("/run/secrets/")) or (
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
    assert "libgssapi-krb5-2" in dockerfile  # MIT Kerberos, which hdfs-native dlopens
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


# -- Kerberized HDFS: the KDC, the keytabs, lake-init (issue 19, finding 2 and 3) ------------------

KDC_ENTRYPOINT = DOCKER / "kdc" / "entrypoint.sh"
CLIENT_CONF = DOCKER / "hadoop" / "client"
HDFS_DAEMONS = ("namenode", "datanode-1", "datanode-2")


def _script_default(script: str, var: str) -> str:
    match = re.search(rf'{var}="\$\{{\w+:-([^}}]*)\}}"', script)
    assert match, f"{var} has no default in the KDC entrypoint"
    return match.group(1)


def keytab_owners() -> dict[str, str]:
    """Keytab file -> the uid the KDC exports it for (docker/kdc/entrypoint.sh and its service)."""
    script = KDC_ENTRYPOINT.read_text()
    kdc_env = _envs(compose()["services"]["kdc"])
    hosts = kdc_env.get("KDC_HDFS_HOSTS", _script_default(script, "HOSTS")).split()
    owners = {f"hdfs_keytab_{h}": _script_default(script, "HDFS_UID") for h in hosts}
    owners["hdfs_admin_keytab"] = _script_default(script, "ADMIN_UID")
    owners["lakeforge_keytab"] = _script_default(script, "LAKEFORGE_UID")
    for name in owners:  # the script names each of these
        assert name in script or name.startswith("hdfs_keytab_"), name
    assert 'export_keytab "hdfs_keytab_$host"' in script
    return owners


def test_keytabs_are_exported_by_the_kdc_for_their_reader_into_a_git_ignored_folder():
    stack = compose()
    files = {n: spec["file"] for n, spec in stack["secrets"].items() if "file" in spec}
    owners = keytab_owners()
    assert set(files) == set(owners), "compose's keytab secrets and the KDC's exports differ"
    kdc = stack["services"]["kdc"]
    export = _envs(kdc).get("KDC_EXPORT_DIR", _script_default(KDC_ENTRYPOINT.read_text(), "EXPORT"))
    assert f"./secrets:{export}" in kdc["volumes"]
    for name, path in files.items():
        ignored = subprocess.run(["git", "check-ignore", "-q", f"docker/{path[2:]}"], cwd=PROJECT_ROOT)
        assert ignored.returncode == 0, f"docker/{path[2:]} is not git-ignored"
        # Compose bind-mounts a file secret as it is: the KDC's owner must be its reader's uid.
        readers = {svc: RUNS_AS.get(svc, LAKEFORGE_UID) for svc, spec in stack["services"].items()
                   if name in _sources(spec)}
        assert readers and set(readers.values()) == {owners[name]}, (name, owners[name], readers)
    assert 'chmod 0400 "$tmp"' in KDC_ENTRYPOINT.read_text()


def test_kdc_keeps_keys_off_command_lines_out_of_images_and_off_the_host_ports():
    kdc = compose()["services"]["kdc"]
    assert not kdc.get("ports"), "the KDC publishes a port: only the compose network needs it"
    script = KDC_ENTRYPOINT.read_text()
    code = "\n".join(re.sub(r"\s#\s.*$", "", line) for line in script.splitlines()
                     if not line.lstrip().startswith("#"))  # without comments
    # No password option anywhere (kdb5_util -P, kadmin -w, addprinc -pw): random keys, stdin.
    assert not re.search(r"\s-(P|pw|w)\s", code), "a password on a command line"
    assert re.findall(r"addprinc (\S+)", code) == ["-randkey"]
    assert "| kdb5_util" in code and "create -s" in code  # master password on stdin, key stashed
    assert "kadmind" not in code  # no remote administration port
    assert re.search(r"^\s*umask 077", script, re.M)
    dockerfile = (DOCKER / "kdc" / "Dockerfile").read_text()
    assert not re.search(r"kdb5_util|kadmin|ktadd|addprinc", "\n".join(
        line for line in dockerfile.splitlines() if line.startswith("RUN"))), "a realm made at build time"


def _dockerfile_sources(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if re.match(r"^\s*(COPY|ADD)\s", line, re.I) and "--from=" not in line:
            out += [p for p in line.split()[1:-1] if not p.startswith("--")]
    return out


def test_no_secret_can_enter_an_image():
    """Dockerfiles copy named files only, never secrets, and each build context (the repository
    root) leaves docker/.env and docker/secrets/ out (a `<Dockerfile>.dockerignore` beside it)."""
    dockerfiles = sorted(DOCKER.rglob("Dockerfile"))
    assert {p.parent.name for p in dockerfiles} == {"docker", "hadoop", "kdc"}
    for path in dockerfiles:
        text = path.read_text()
        for source in _dockerfile_sources(text):
            assert source not in (".", "./", "docker", "docker/"), f"{path}: copies a whole tree: {source}"
            assert not re.search(r"secret|keytab|\.env|password|\.jks", source, re.I), f"{path}: {source}"
        assert not re.search(r"^\s*(ARG|ENV)\s+\S*(PASSWORD|SECRET|FERNET|TOKEN|KEYTAB)", text, re.M | re.I), path
        ignore = [line.strip() for line in path.with_name("Dockerfile.dockerignore").read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
        if "*" in ignore:  # an allow-list: nothing of docker/ but the named files
            assert all(not re.match(r"!docker/?$|!docker/(secrets|\.env)", line) for line in ignore), path
        else:
            assert {"docker/.env", "docker/secrets"} <= set(ignore), path


def test_hdfs_daemons_and_clients_share_one_realm_and_protection():
    stack = compose()
    services = stack["services"]
    realm = _envs(services["kdc"])["KDC_REALM"]
    hosts = _envs(services["kdc"])["KDC_HDFS_HOSTS"].split()
    assert sorted(hosts) == sorted(HDFS_DAEMONS)
    for name in HDFS_DAEMONS:
        spec = services[name]
        env = _envs(spec)
        assert env["HDFS_KERBEROS_REALM"] == realm and env["HDFS_KDC_HOST"] == "kdc"
        # The keytab holds hdfs/<hostname>: the container's hostname is the principal's host.
        assert spec["hostname"] == name
        assert mounted(spec).get(env["HDFS_KEYTAB"]) == f"hdfs_keytab_{name}"
        assert mounted(spec).get(env["HDFS_KEYSTORE_PASSWORD_FILE"]) == "hdfs_keystore_password"
        assert spec["depends_on"]["kdc"] == {"condition": "service_healthy"}
    # HTTPS only (SPNEGO): the plain HTTP port is gone from the host.
    assert services["namenode"]["ports"] == ["127.0.0.1:9871:9871"]
    entrypoint = (DOCKER / "hadoop" / "entrypoint.sh").read_text()
    assert 'PROTECTION="${HDFS_PROTECTION:-privacy}"' in entrypoint

    core = (CLIENT_CONF / "core-site.xml").read_text()
    props = dict(re.findall(r"<name>([^<]+)</name><value>([^<]*)</value>", core))
    assert props["hadoop.security.authentication"] == "kerberos"
    assert props["hadoop.rpc.protection"] == props["dfs.data.transfer.protection"] == "privacy"
    assert props["dfs.namenode.kerberos.principal"] == f"hdfs/_HOST@{realm}"
    assert "fs.defaultFS" not in props  # the lake's address stays LAKEFORGE_LAKE_ROOT
    krb5 = (CLIENT_CONF / "krb5.conf").read_text()
    assert re.search(rf"default_realm = {re.escape(realm)}\b", krb5) and "kdc = kdc" in krb5
    spark = dict(line.split(None, 1) for line in (DOCKER / "spark" / "spark-defaults.conf").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    assert spark["spark.kerberos.principal"].strip() == f"lakeforge@{realm}"

    # Every HDFS client: the client configuration, and the keytab it names, mounted.
    clients = {"lake-init": "hdfs_admin_keytab", "airflow-scheduler": "lakeforge_keytab",
               "spark-worker": "lakeforge_keytab"}
    for name, keytab in clients.items():
        spec = services[name]
        env = _envs(spec)
        assert mounted(spec).get(env["KRB5_CLIENT_KTNAME"]) == keytab, name
        assert env["KRB5CCNAME"].startswith("MEMORY:"), name  # the ticket never lands on disk
        assert f"./hadoop/client:{env['HADOOP_CONF_DIR']}:ro" in spec["volumes"], name
        assert env["KRB5_CONFIG"] == f"{env['HADOOP_CONF_DIR']}/krb5.conf", name
    for name in ("airflow-scheduler", "spark-worker"):  # JVMs read /etc/krb5.conf
        assert "./hadoop/client/krb5.conf:/etc/krb5.conf:ro" in services[name]["volumes"]
    scheduler = services["airflow-scheduler"]
    assert f"./spark:{_envs(scheduler)['SPARK_CONF_DIR']}:ro" in scheduler["volumes"]
    assert spark["spark.kerberos.keytab"].strip() == _envs(scheduler)["KRB5_CLIENT_KTNAME"]


def test_lake_init_runs_the_script_the_tests_run_before_every_writer():
    from lakeforge.hdfs_cluster import INIT_SCRIPT

    assert INIT_SCRIPT == DOCKER / "init" / "lake_init.py"  # tests/test_hdfs_security.py runs it
    services = compose()["services"]
    init = services["lake-init"]
    script = init["command"][1]
    assert init["command"][0] == "python" and f"./init/lake_init.py:{script}:ro" in init["volumes"]
    assert init["command"][2:] == ["--local", "/landing", "/mlartifacts"]
    assert {v.split(":")[1] for v in init["volumes"] if v.startswith(("landing:", "mlartifacts:"))} == {
        "/landing", "/mlartifacts"}
    assert init["user"] == "root" and init.get("restart") == "no"
    assert _envs(init)["LAKEFORGE_LAKE_ROOT"].startswith("hdfs://")
    assert set(init["depends_on"]) == set(HDFS_DAEMONS)
    # Everything that writes the lake or the local volumes waits for it.
    writers = [n for n in services if n.startswith("airflow-") and n != "airflow-init"] + ["spark-worker", "mlflow"]
    for name in writers:
        assert services[name]["depends_on"].get("lake-init") == {"condition": "service_completed_successfully"}, name


# -- MLflow behind its basic-auth app (issue 19, finding 1) ----------------------------------------

def test_mlflow_serves_behind_basic_auth_with_one_account_per_service():
    from lakeforge.mlflow_auth import ACCOUNTS, ADMIN, JOB_ACCOUNTS, PASSWORD_FILE_ENV, account_file_env, password_file

    services = compose()["services"]
    mlflow, init, scheduler = services["mlflow"], services["mlflow-auth-init"], services["airflow-scheduler"]
    entrypoint = mlflow["command"][-1]
    assert mlflow["command"][-2:] == ["sh", entrypoint]
    assert f"./mlflow/entrypoint.sh:{entrypoint}:ro" in mlflow["volumes"]
    assert "python -m lakeforge.mlflow_auth serve" in (DOCKER / "mlflow" / "entrypoint.sh").read_text()
    env = _envs(mlflow)
    assert mounted(mlflow).get(env["MLFLOW_ADMIN_PASSWORD_FILE"]) == "mlflow_admin_password"
    assert env["MLFLOW_AUTH_STATE_DIR"].startswith("/var/lib/lakeforge/") and "mlflow-auth:/var/lib/lakeforge" in mlflow["volumes"]
    assert "http://127.0.0.1:5000/health" in " ".join(mlflow["healthcheck"]["test"])

    # The init: as the admin, each account from its own secret, once the server is healthy.
    argv = init["command"]
    assert argv[:4] == ["python", "-m", "lakeforge.mlflow_auth", "init"]
    state_dir = argv[argv.index("--state-dir") + 1]
    assert mounted(init) == {str(password_file(state_dir, a)): f"mlflow_{a}_password" for a in [ADMIN, *ACCOUNTS]}
    assert init["depends_on"]["mlflow"] == {"condition": "service_healthy"}

    # The scheduler runs the training and scoring drivers: training by default, and each job's
    # own account from the file of its password only (never a password in the environment).
    env = _envs(scheduler)
    assert env["MLFLOW_TRACKING_USERNAME"] == "training" and "MLFLOW_TRACKING_PASSWORD" not in env
    assert mounted(scheduler).get(env[PASSWORD_FILE_ENV]) == "mlflow_training_password"
    for account in JOB_ACCOUNTS:
        assert mounted(scheduler).get(env[account_file_env(account)]) == f"mlflow_{account}_password"
    assert scheduler["depends_on"]["mlflow-auth-init"] == {"condition": "service_completed_successfully"}
    holders = {n for n, spec in services.items() if "mlflow_scoring_password" in _sources(spec)}
    assert holders == {"mlflow-auth-init", "airflow-scheduler"}
    holders = {n for n, spec in services.items() if "mlflow_viewer_password" in _sources(spec)}
    assert holders == {"mlflow-auth-init"}  # viewer is for people


def test_airflow_reads_dags_and_every_pipelines_dag_folder():
    """The stack's DAG bundles are the ones `make up` configures (``airflow_env.dag_bundles``),
    with the checkout at /opt/lakeforge: a pipeline's DAG folder is not left out of either."""
    import json

    from lakeforge.orchestration.airflow_env import dag_bundles
    from lakeforge.settings import get_settings

    configured = json.loads(compose()["x-airflow-env"]["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    here = json.loads(dag_bundles(get_settings()).replace(str(PROJECT_ROOT), "/opt/lakeforge"))
    assert configured == here
    assert [b["name"] for b in configured] == ["dags-folder", "pipeline-seattle-weather"]
