"""HDFS refuses whoever cannot prove who they are, and the lake's owners and modes hold (issue 19).

One Kerberized HDFS for the module, started by the same launcher as every other HDFS here
(``MiniHdfs(secure=True)``: Hadoop's MiniKdc, keytabs, block access tokens, SASL-protected RPC and
data transfer, HTTPS only with SPNEGO), then set up by the stack's own init script
(``docker/init/lake_init.py``, as the docker stack's ``lake-init`` service runs it). Every client is
its own process, with only the environment a service of the stack would have.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lakeforge.hdfs_cluster import INIT_SCRIPT, SUPERUSER, MiniHdfs, classpath

pytestmark = pytest.mark.hdfs

SOURCE = "nycflights"
# Runs in a client process: each (op, path) -> "ok" or the refusal's first line.
CLIENT = r"""
import json, sys
from hdfs_native import Client
client = Client(sys.argv[1])
out = []
for op, path in json.loads(sys.argv[2]):
    try:
        if op == "write":
            with client.create(path) as f:
                f.write(b"x")
        elif op == "mkdir":
            client.mkdirs(path)
        elif op == "list":
            list(client.list_status(path))
        elif op == "read":
            client.read(path).read()
        elif op == "delete":
            client.delete(path, True)
        out.append("ok")
    except Exception as exc:
        out.append(str(exc).splitlines()[0][:300])
print(json.dumps(out))
"""


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "HADOOP_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def secure_hdfs(session_home):
    cluster = MiniHdfs(session_home / "hdfs-secure", secure=True, users=("lakeforge", "other"))
    cluster.start()
    started = time.perf_counter()
    cluster.init_lake()
    print(f"\nKerberized HDFS {cluster.uri} started in {cluster.startup_seconds:.1f}s, "
          f"lake initialised in {time.perf_counter() - started:.1f}s")
    yield cluster
    cluster.stop()


def run_as(cluster: MiniHdfs, env: dict[str, str], *ops: tuple[str, str], timeout: float = 60) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", CLIENT, cluster.uri, json.dumps(ops)],
                          env=_clean_env(env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def as_user(cluster: MiniHdfs, user: str | None, *ops: tuple[str, str]) -> list[str]:
    return run_as(cluster, cluster.client_env(user), *ops)


def test_init_creates_the_lake_with_owners_and_modes(secure_hdfs):
    listing = secure_hdfs.init_lake()  # a second run: idempotent, prints what holds now
    lines = {line.split()[1]: " ".join(line.split()[2:]) for line in listing.splitlines()}
    assert lines["/"] == "hdfs:supergroup 0755"
    assert lines["/lake"] == "lakeforge:lakeforge 0750"
    assert lines[f"/lake/{SOURCE}"] == "lakeforge:lakeforge 0750"  # every pipeline's namespace
    assert lines["/user/lakeforge"] == "lakeforge:lakeforge 0700"


def test_keytab_client_reads_and_writes_the_lake_through_lakeforge(secure_hdfs):
    """lakeforge's own lake code (hdfs-native under pyarrow), unchanged: only the environment says
    who the process is."""
    code = (
        "import sys\nfrom lakeforge.lake import Lake\n"
        "lake = Lake(sys.argv[1])\nlake.write_bytes('raw/probe.bin', b'kerberos')\n"
        "print(lake.read_bytes('raw/probe.bin').decode(), lake.listdir('raw'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, f"{secure_hdfs.uri}/lake/{SOURCE}"],
                          env=_clean_env(secure_hdfs.client_env("lakeforge")), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["kerberos", "['probe.bin']"]


def test_client_without_credentials_is_refused(secure_hdfs):
    results = as_user(secure_hdfs, None, ("list", "/lake"), ("write", f"/lake/{SOURCE}/anon"))
    assert all("No Kerberos credentials available" in r for r in results), results


def test_client_claiming_the_superuser_is_refused(secure_hdfs, tmp_path):
    """Simple authentication (``HADOOP_USER_NAME=hdfs``, what any client could claim before) is
    refused by the NameNode, from Hadoop's Java client (Spark's) and from hdfs-native."""
    simple = tmp_path / "conf"
    simple.mkdir()
    (simple / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name>"
        f"<value>{secure_hdfs.uri}</value></property></configuration>")
    java = subprocess.run(
        ["java", "-cp", f"{simple}{os.pathsep}{classpath()}", "org.apache.hadoop.fs.FsShell",
         "-rm", "-r", "-skipTrash", "/lake"],
        env=_clean_env({"HADOOP_USER_NAME": SUPERUSER}), capture_output=True, text=True, timeout=120)
    assert java.returncode != 0
    assert "SIMPLE authentication is not enabled" in java.stderr, java.stderr[-2000:]

    # hdfs-native is refused the same way but retries the refused connection for ever: its log
    # shows the NameNode's answer; the test gives it a few seconds.
    code = ("import sys\nfrom hdfs_native import Client\n"
            "Client(sys.argv[1]).delete('/lake', True)\nprint('DELETED')\n")
    native = subprocess.run(["timeout", "6", sys.executable, "-c", code, secure_hdfs.uri],
                            env=_clean_env({"HADOOP_USER_NAME": SUPERUSER, "RUST_LOG": "hdfs_native=debug"}),
                            capture_output=True, text=True, timeout=60)
    assert "DELETED" not in native.stdout
    assert "SIMPLE authentication is not enabled" in native.stderr, native.stderr[-2000:]
    assert as_user(secure_hdfs, "lakeforge", ("list", "/lake")) == ["ok"]  # /lake is still there


def test_each_user_writes_exactly_what_it_must(secure_hdfs):
    lake = f"/lake/{SOURCE}"
    assert as_user(secure_hdfs, "lakeforge", ("write", f"{lake}/owned"), ("mkdir", f"{lake}/raw/x"),
                   ("read", f"{lake}/owned")) == ["ok", "ok", "ok"]
    results = as_user(secure_hdfs, "lakeforge", ("write", "/top-level"), ("mkdir", "/user/other"))
    assert all("Permission denied: user=lakeforge, access=WRITE" in r for r in results), results
    # Another authenticated user sees nothing of the lake and writes nowhere.
    results = as_user(secure_hdfs, "other", ("list", "/lake"), ("read", f"{lake}/owned"),
                      ("write", f"{lake}/intruder"), ("delete", f"{lake}/owned"), ("write", "/top-level"))
    assert all("Permission denied: user=other" in r for r in results), results
    # Only the superuser writes /.
    assert as_user(secure_hdfs, SUPERUSER, ("mkdir", "/admin-only"), ("delete", "/admin-only")) == ["ok", "ok"]


def test_init_repairs_a_loosened_lake(secure_hdfs):
    """The lake's owner can chmod its root; the next init (every stack start) puts it back."""
    code = ("import sys\nfrom hdfs_native import Client\n"
            "Client(sys.argv[1]).set_permission('/lake', 0o777)\n")
    subprocess.run([sys.executable, "-c", code, secure_hdfs.uri], check=True, timeout=60,
                   env=_clean_env(secure_hdfs.client_env("lakeforge")))
    assert "Permission denied" not in as_user(secure_hdfs, "other", ("list", "/lake"))[0]
    secure_hdfs.init_lake()
    assert "Permission denied" in as_user(secure_hdfs, "other", ("list", "/lake"))[0]


def test_keytabs_are_private_and_off_command_lines(secure_hdfs):
    krb = secure_hdfs.krb_dir
    assert stat.S_IMODE(krb.stat().st_mode) == 0o700
    keytabs = sorted(krb.glob("*.keytab"))
    assert {k.stem for k in keytabs} == {"service", SUPERUSER, "lakeforge", "other"}
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keytabs)
    cmdline = Path(f"/proc/{secure_hdfs.proc.pid}/cmdline").read_bytes().decode()
    assert ".keytab" not in cmdline and "--secure" in cmdline
    # The client environment names a keytab file; the key itself is in no variable.
    env = secure_hdfs.client_env("lakeforge")
    assert env["KRB5_CLIENT_KTNAME"] == str(secure_hdfs.keytab("lakeforge"))


def test_webhdfs_refuses_a_claimed_user(secure_hdfs):
    """WebHDFS cannot be switched off in Hadoop 3.5; secured, it is HTTPS only and believes no
    ``?user.name=``: without a Kerberos ticket (SPNEGO) the NameNode answers 401."""
    import ssl

    assert secure_hdfs.web_url and secure_hdfs.web_url.startswith("https://127.0.0.1:")
    insecure_tls = ssl.create_default_context()
    insecure_tls.check_hostname, insecure_tls.verify_mode = False, ssl.CERT_NONE  # test keystore
    for op in ("LISTSTATUS", "DELETE&recursive=true"):
        method = "DELETE" if op.startswith("DELETE") else "GET"
        req = urllib.request.Request(f"{secure_hdfs.web_url}/webhdfs/v1/lake?op={op}&user.name=hdfs", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10, context=insecure_tls)
        assert err.value.code == 401
    assert as_user(secure_hdfs, "lakeforge", ("list", "/lake")) == ["ok"]


def test_spark_authenticates_with_a_keytab(secure_hdfs, session_home):
    """Spark's bundled Hadoop client logs in from the keytab (``--principal/--keytab``: a path, never
    the key) and writes and reads the lake through SASL-protected data transfer."""
    job = session_home / "krb_spark_job.py"
    job.write_text(
        "import sys\nfrom pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.config('spark.ui.enabled', 'false').getOrCreate()\n"
        "spark.range(10).write.mode('overwrite').parquet(sys.argv[1])\n"
        "print('COUNT', spark.read.parquet(sys.argv[1]).count())\nspark.stop()\n")
    env = _clean_env({"HADOOP_CONF_DIR": str(secure_hdfs.conf_dir), "SPARK_LOCAL_IP": "127.0.0.1",
                      "PYSPARK_PYTHON": sys.executable})
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]",
         "--principal", secure_hdfs.principal("lakeforge"), "--keytab", str(secure_hdfs.keytab("lakeforge")),
         "--driver-java-options", f"-Djava.security.krb5.conf={secure_hdfs.krb5_conf}",
         str(job), f"{secure_hdfs.uri}/lake/{SOURCE}/spark-probe"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COUNT 10" in proc.stdout


def test_local_volumes_are_handed_to_the_owner(tmp_path):
    """The init's ``--local`` (docker volumes are created root-owned): owner's uid/gid, 0750."""
    import getpass

    me = getpass.getuser()
    target = tmp_path / "landing"
    target.mkdir(mode=0o777)
    proc = subprocess.run([sys.executable, str(INIT_SCRIPT), "--owner", me, "--local", str(target),
                           "--lake-root", "file:///nowhere"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert target.stat().st_uid == os.getuid()
