"""transform_flights run by Airflow: SparkSubmitOperator with the connection's master deciding
local[*] or a real standalone cluster, on a local lake and on a real HDFS."""

import json
from datetime import date

import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import list_partitions, read_manifest
from lakeforge.reports import read_run_report
from tests.helpers import ingest_days

pytestmark = pytest.mark.airflow
DAYS = [date(2013, 1, 1), date(2013, 1, 2)]


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "transform_flights.py"))
    assert bag.import_errors == {}
    return bag.dags["transform_flights"]


def run_range(dag, start: str, end: str):
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"start": start, "end": end})
    return dr.state, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def check_outputs(lake: Lake) -> None:
    for table in ("clean/flights", "clean/weather", "features/flights"):
        assert list_partitions(lake, table) == ["ds=2013-01-01", "ds=2013-01-02"], table
    rows = read_manifest(lake, "features/flights", "ds=2013-01-02")["rows"]
    assert rows == read_manifest(lake, "raw/flights", "ds=2013-01-02")["rows"] == 943


def test_manual_range_on_local_spark(dag, tmp_path, monkeypatch):
    lake = source_lake("nycflights", f"file://{tmp_path}/lake")
    ingest_days(lake, Lake(f"file://{tmp_path}/landing/nycflights"), DAYS)
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    state, tis = run_range(dag, "2013-01-01", "2013-01-02")
    assert state == "success", tis
    check_outputs(lake)
    run_id = read_manifest(lake, "clean/flights", "ds=2013-01-01")["dag_run_id"]
    assert run_id.startswith("manual__")
    # Two real days (~0.2 MB): plan_dates sized them and the submitted driver JVM runs C1 only
    # (a long run's conf, without the flag, is checked in test_settings).
    assert read_run_report(lake, "transform_flights", run_id)["driver_jit"] == "C1 only"


def test_bad_range_is_rejected_before_spark_starts(dag):
    state, tis = run_range(dag, "2013-01-05", "2013-01-01")
    assert state == "failed" and tis["plan_dates"] == "failed" and tis["spark_transform"] == "upstream_failed"


def test_a_range_never_ingested_fails_at_planning_without_retries(dag, tmp_path, monkeypatch, capfd):
    """A manual run for days that were never ingested: the planning task fails once (no retry,
    no Spark) with the reason first, naming the missing partitions."""
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/empty-lake")
    dr = dag.test(logical_date=pendulum.now("UTC"), run_conf={"start": "2013-03-01", "end": "2013-03-31"})
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert dr.state == "failed"
    assert tis["plan_dates"].state == "failed" and tis["plan_dates"].try_number == 1
    assert tis["spark_transform"].state == "upstream_failed"
    log = "".join(capfd.readouterr())
    assert "not ingested yet, nothing to transform: raw/flights has no partition for 2013-03-01..2013-03-31" in log
    assert "spark-submit" not in log


@pytest.mark.hdfs
def test_same_job_on_standalone_cluster_and_hdfs(dag, hdfs, spark_cluster, tmp_path, monkeypatch):
    lake = source_lake("nycflights", f"{hdfs.uri}/cluster-test/lake")
    ingest_days(lake, Lake(f"file://{tmp_path}/landing/nycflights"), DAYS)
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"{hdfs.uri}/cluster-test/lake")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", spark_cluster.master_url)  # only settings change
    monkeypatch.setenv("HADOOP_CONF_DIR", str(hdfs.conf_dir))
    monkeypatch.setenv("LAKEFORGE_SPARK_AUTH_SECRET", spark_cluster.auth_secret)
    # A short run has at most one day here: the planned days reach the operator (not only the
    # bytes), and two small days start a tiered driver.
    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS", "1")
    state, tis = run_range(dag, "2013-01-01", "2013-01-02")
    assert state == "success", tis
    check_outputs(lake)
    run_id = read_manifest(lake, "clean/flights", "ds=2013-01-01")["dag_run_id"]
    assert read_run_report(lake, "transform_flights", run_id)["driver_jit"] == "tiered"
    # The application really ran on the standalone master.
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{spark_cluster.ui_port}/json/") as r:
        apps = json.load(r)["completedapps"]
    assert any(a["name"] == "transform_flights" for a in apps), apps


# Drivers the cluster must refuse: one without the secret (lakeforge's own session, as a job
# started without LAKEFORGE_SPARK_AUTH_SECRET would be), and one holding the secret whose RPC is
# not encrypted (plain SASL authentication: the daemons take no fallback to it).
UNAUTHENTICATED = "from lakeforge.spark import session\ns = session('refused-probe', master={url!r})\n"
UNENCRYPTED = ("import os\nfrom pyspark.sql import SparkSession\n"
               "s = (SparkSession.builder.master({url!r}).appName('refused-probe')"
               ".config('spark.driver.host', '127.0.0.1').config('spark.authenticate', 'true')"
               ".config('spark.authenticate.secret', os.environ['PROBE_SECRET'])"
               ".config('spark.network.crypto.enabled', 'false').getOrCreate())\n")


@pytest.mark.parametrize("driver", [UNAUTHENTICATED, UNENCRYPTED], ids=["without-secret", "unencrypted"])
def test_the_cluster_refuses_drivers_without_the_secret_or_encryption(spark_cluster, tmp_path, driver):
    """The master authenticates every connection and requires encrypted RPC: such a driver never
    registers, and its connection is refused at the handshake."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.helpers import jvm_scratch_in_test_tmp, stop_process_groups

    env = {k: v for k, v in os.environ.items() if k != "LAKEFORGE_SPARK_AUTH_SECRET"}
    env.update(jvm_scratch_in_test_tmp(), PROBE_SECRET=spark_cluster.auth_secret)
    probe = driver.format(url=spark_cluster.master_url) + "print('RAN', s.range(10).count(), flush=True)"
    out = tmp_path / "probe.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its JVM too: the whole group is stopped below
    try:
        deadline = time.time() + 150
        refused = False
        while time.time() < deadline and proc.poll() is None and not refused:
            time.sleep(1)
            refused = _refused(out.read_text(errors="replace"))
        refused = refused or _refused(out.read_text(errors="replace"))
    finally:
        stop_process_groups([proc])
    text = out.read_text(errors="replace")
    master_log = (spark_cluster.work_dir / "master.log").read_text(errors="replace")
    # On failure, show how the attempt ended and what the master saw (the first lines say why).
    evidence = f"driver:\n{_without_stack_frames(text)[-4000:]}\nmaster:\n{master_log[-2000:]}"
    assert refused, evidence
    assert "RAN" not in text, evidence
    # The master's side: the application never registered.
    assert "Registering app refused-probe" not in master_log, evidence
    with urllib.request.urlopen(f"http://127.0.0.1:{spark_cluster.ui_port}/json/") as r:
        state = json.load(r)
    names = [a["name"] for a in state["activeapps"] + state["completedapps"]]
    assert "refused-probe" not in names, names


def _refused(driver_log):
    """The driver was turned away: the master's handler rejected its first message ("Unknown
    challenge message"), or, on a loaded machine where an attempt ends another way, every
    registration attempt failed and the driver gave up without ever registering."""
    return ("Failed to connect to master" in driver_log and "Unknown challenge message" in driver_log) \
        or "All masters are unresponsive" in driver_log


def _without_stack_frames(log):
    return "\n".join(line for line in log.splitlines() if not line.lstrip().startswith("at "))


def test_cluster_readiness_probe_treats_a_page_that_is_not_json_as_not_ready(tmp_path):
    """Right after it binds, the master's web UI once answered /json/ with its HTML page; the
    readiness probe must keep polling instead of failing the cluster start."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from lakeforge.spark_cluster import SparkStandalone

    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<!DOCTYPE html><html></html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cluster = SparkStandalone(tmp_path)
        cluster.ui_port = server.server_address[1]
        assert cluster.alive_workers() == -1
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_cluster_start_stops_the_daemons_it_spawned(tmp_path, monkeypatch):
    """A start that fails for any reason must not leave a master or worker JVM running."""
    import subprocess

    from lakeforge.spark_cluster import SparkStandalone

    cluster = SparkStandalone(tmp_path)
    spawned = []

    def fake_spawn(name, *args):
        if name == "master":  # what a master that bound its ports logs
            (tmp_path / "master.log").write_text(
                "INFO Master: Starting Spark master at spark://127.0.0.1:40001\n"
                "INFO MasterWebUI: Bound MasterWebUI to 127.0.0.1, and started at http://localhost:40002\n")
        proc = subprocess.Popen(["sleep", "60"])
        spawned.append(proc)
        cluster.procs.append(proc)

    def broken_probe():
        raise RuntimeError("probe broke")

    monkeypatch.setattr(cluster, "_spawn", fake_spawn)
    monkeypatch.setattr(cluster, "alive_workers", broken_probe)
    with pytest.raises(RuntimeError, match="probe broke"):
        cluster.start(timeout=5)
    assert len(spawned) == 2 and all(p.poll() is not None for p in spawned) and cluster.procs == []
    assert (cluster.port, cluster.ui_port) == (40001, 40002)
