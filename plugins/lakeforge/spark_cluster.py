"""A real Spark standalone cluster (master + worker) on 127.0.0.1 from pyspark's own jars.

pip's pyspark ships no start-master.sh, but ``spark-class`` runs the daemons' main classes
(it execs java, so the PID we hold is the JVM). Used by the cluster tests and benchmarks:

    with SparkStandalone(work_dir) as cluster:
        spark-submit --master cluster.master_url ...
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lakeforge.spark import CLUSTER_SECURITY_CONF


class SparkClusterError(RuntimeError):
    pass


def _spark_class() -> str:
    found = shutil.which("spark-class") or str(Path(sys.executable).parent / "spark-class")
    if not Path(found).exists():
        raise SparkClusterError("spark-class not found (it comes with the pyspark package)")
    return found


class SparkStandalone:
    def __init__(self, work_dir: str | Path, cores: int = 2, memory: str = "2g", auth_secret: str | None = None):
        """``auth_secret``: run with ``spark.authenticate`` and encrypted RPC
        (``lakeforge.spark.CLUSTER_SECURITY_CONF``); applications must present the same secret
        (lakeforge jobs: ``LAKEFORGE_SPARK_AUTH_SECRET``)."""
        self.work_dir = Path(work_dir)
        self.cores, self.memory = cores, memory
        self.auth_secret = auth_secret
        # Known once the master has bound them: it is started on port 0 (the kernel picks), because
        # a port probed free beforehand can be taken by another JVM before the master binds it; the
        # master then silently moves to the next port while the worker dials the old one (a CI failure).
        self.port: int | None = None
        self.ui_port: int | None = None
        self.procs: list[subprocess.Popen] = []
        self.startup_seconds: float | None = None

    @property
    def master_url(self) -> str:
        if self.port is None:
            raise SparkClusterError("the master has not started yet")
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(self.work_dir / "work"),
               "SPARK_LOG_DIR": str(self.work_dir),
               # The REST submission server takes unauthenticated jobs on a fixed port: not wanted.
               "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
        if self.auth_secret:
            # The daemons read the secret from the environment, not from their command line.
            env["_SPARK_AUTH_SECRET"] = self.auth_secret
            security = " ".join(f"-D{k}={v}" for k, v in CLUSTER_SECURITY_CONF.items())
            env["SPARK_MASTER_OPTS"] += f" {security}"
            env["SPARK_WORKER_OPTS"] = security
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen([_spark_class(), *args], stdout=log, stderr=log,
                                               stdin=subprocess.DEVNULL, env=env))

    def _bound_master(self) -> bool:
        """Read the master's RPC and web UI ports from its log once it has bound them."""
        log = self.work_dir / "master.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        # The log is appended to across starts in one folder: the last start's lines count.
        rpc = re.findall(r"Starting Spark master at spark://[^:\s]+:(\d+)", text)
        ui = re.findall(r"Bound MasterWebUI to \S+, and started at https?://[^:\s]+:(\d+)", text)
        if rpc and ui:
            self.port, self.ui_port = int(rpc[-1]), int(ui[-1])
        return bool(rpc and ui)

    def alive_workers(self) -> int:
        """Workers the master reports alive; -1 while its web UI is not up or not answering JSON
        yet (right after binding, the UI once served its HTML page for /json/: a CI failure)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except (OSError, ValueError):
            return -1

    def start(self, timeout: float = 120.0) -> str:
        started = time.perf_counter()
        self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", "0", "--webui-port", "0")
        try:
            while time.perf_counter() - started < timeout:
                if any(p.poll() is not None for p in self.procs):
                    break
                if len(self.procs) == 1:
                    if self._bound_master():
                        self._spawn("worker", "org.apache.spark.deploy.worker.Worker", self.master_url,
                                    "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                                    "--webui-port", "0")
                elif self.alive_workers() >= 1:
                    self.startup_seconds = time.perf_counter() - started
                    return self.master_url
                time.sleep(0.25)
        except BaseException:
            self.stop()  # never leave the daemons running behind a failed start
            raise
        logs = "\n".join(log.read_text(errors="replace")[-3000:]
                         for log in (self.work_dir / "master.log", self.work_dir / "worker.log") if log.exists())
        self.stop()
        raise SparkClusterError(f"Spark standalone not ready in {timeout:.0f}s:\n{logs}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs = []

    def __enter__(self) -> "SparkStandalone":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
