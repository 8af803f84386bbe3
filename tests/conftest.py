"""Shared fixtures: an isolated lakeforge home, Airflow metadata DB, and a real HDFS.

The environment is fixed here, before anything imports Airflow: the tests never touch the
developer's ``.lakeforge/`` or ``AIRFLOW_HOME``. Services are started by the tests themselves on
127.0.0.1 and stopped after; if one cannot start, the tests that need it fail (never skip).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="lakeforge-tests-"))
# The Spark class archive `make spark-cds` recorded (lakeforge.spark_cds) stays in use: every test
# JVM starts ~2.5 s faster, and test_spark_cds checks that it is really mapped.
from lakeforge.settings import Settings  # noqa: E402

_SPARK_CDS_DIR = Settings.from_env().spark_cds_dir
_SPARK_LOCAL_FS_DIR = Settings.from_env().spark_local_fs_dir  # and the local file system jar with it
for _key in list(os.environ):
    if _key.startswith(("LAKEFORGE_", "AIRFLOW")) or _key == "MLFLOW_TRACKING_URI":
        del os.environ[_key]
os.environ["LAKEFORGE_HOME"] = str(_SESSION_HOME)
# Temporary files of the tests and of every process they start (Python's tempfile, Spark's scratch
# folders) live in the session home too, so a passing session leaves nothing behind: a Spark driver
# killed on purpose leaves its block manager and scratch folders, MLflow its model copies.
(_SESSION_HOME / "tmp").mkdir()
os.environ["TMPDIR"] = str(_SESSION_HOME / "tmp")
tempfile.tempdir = None  # re-read TMPDIR
os.environ["SPARK_LOCAL_DIRS"] = str(_SESSION_HOME / "spark-local")
os.environ["LAKEFORGE_SPARK_CDS_DIR"] = _SPARK_CDS_DIR
os.environ["LAKEFORGE_SPARK_LOCAL_FS_DIR"] = _SPARK_LOCAL_FS_DIR
# The delivery watcher looks every second in tests (5 s by default).
os.environ["LAKEFORGE_DELIVERY_POLL_SECONDS"] = "1"

from lakeforge.orchestration import airflow_env  # noqa: E402  (must follow the env set-up)

airflow_env.apply()

from lakeforge.hdfs_cluster import MiniHdfs  # noqa: E402
from lakeforge.lake import Lake  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """Session fixtures (Spark, HDFS, PostgreSQL, MLflow servers) are stopped by now: the session's
    home goes with them, unless something failed and it is worth a look."""
    if exitstatus == 0:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)
    else:
        print(f"\ntest session home kept for inspection: {_SESSION_HOME}")


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def hdfs(session_home):
    """A real HDFS (NameNode + 2 DataNodes) for the whole session (started on first use)."""
    cluster = MiniHdfs(session_home / "hdfs")
    cluster.start()
    print(f"\nHDFS {cluster.uri} started in {cluster.startup_seconds:.1f}s")
    yield cluster
    cluster.stop()


@pytest.fixture
def local_lake(tmp_path) -> Lake:
    return Lake(f"file://{tmp_path}/lake")


@pytest.fixture
def hdfs_lake(hdfs) -> Lake:
    return Lake(f"{hdfs.uri}/t-{uuid.uuid4().hex[:8]}/lake")


@pytest.fixture(params=["local", pytest.param("hdfs", marks=pytest.mark.hdfs)])
def lake(request, tmp_path) -> Lake:
    """The same test against a local-directory lake and a real HDFS lake."""
    if request.param == "local":
        return Lake(f"file://{tmp_path}/lake")
    hdfs = request.getfixturevalue("hdfs")
    return Lake(f"{hdfs.uri}/t-{uuid.uuid4().hex[:8]}/lake")


@pytest.fixture
def landing(tmp_path) -> Lake:
    return Lake(f"file://{tmp_path}/landing/nycflights")


@pytest.fixture(scope="session")
def airflow_db(session_home):
    """A migrated Airflow metadata DB (SQLite in the session's AIRFLOW_HOME)."""
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the transform tests (a JVM start costs ~15 s here)."""
    import logging

    from lakeforge.spark import session

    logging.getLogger("py4j").setLevel(logging.WARNING)  # no "closing connection" noise at exit
    os.environ["LAKEFORGE_SPARK_SHUFFLE_PARTITIONS"] = "2"
    spark = session("lakeforge-tests", master="local[2]")
    yield spark
    spark.stop()


@pytest.fixture(scope="session")
def postgres(session_home):
    """A real PostgreSQL cluster on 127.0.0.1 (started on first use): cluster mode's database."""
    from tests.postgres_server import PostgresServer

    server = PostgresServer(session_home / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark_cluster(session_home):
    """A real Spark standalone master + worker on 127.0.0.1 (started on first use)."""
    from lakeforge.spark_cluster import SparkStandalone

    # With a shared secret, as the docker stack runs it: an unauthenticated master runs anyone's code.
    cluster = SparkStandalone(session_home / "spark-cluster", cores=2, memory="2g",
                              auth_secret=secrets.token_urlsafe(32))
    cluster.start()
    print(f"\nSpark standalone {cluster.master_url} up in {cluster.startup_seconds:.1f}s")
    yield cluster
    cluster.stop()



@pytest.fixture(scope="module", autouse=True)
def mlflow_uris_stay_in_their_module():
    """In-process code (Airflow tasks run by ``dag.test``, the demo's training step) sets MLflow's
    process-wide tracking and registry URIs, as a task process should; a test module must not
    inherit another module's: a process-wide registry URI wins over the one an ``MlflowClient``
    is given (it once sent a module's registry reads to the previous module's SQLite registry)."""
    yield
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None
