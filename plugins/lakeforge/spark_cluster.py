"""A real Spark standalone cluster (master + worker) on 127.0.0.1 from pyspark's own jars.

pip's pyspark ships no start-master.sh, but ``spark-class`` runs the daemons' main classes
(it execs java, so the PID we hold is the JVM). Used by the cluster tests and benchmarks:

    with SparkStandalone(work_dir) as cluster:
        spark-submit --master cluster.master_url ...
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lakeforge.hdfs_cluster import free_port


class SparkClusterError(RuntimeError):
    pass


def _spark_class() -> str:
    found = shutil.which("spark-class") or str(Path(sys.executable).parent / "spark-class")
    if not Path(found).exists():
        raise SparkClusterError("spark-class not found (it comes with the pyspark package)")
    return found


class SparkStandalone:
    def __init__(self, work_dir: str | Path, cores: int = 2, memory: str = "2g"):
        self.work_dir = Path(work_dir)
        self.cores, self.memory = cores, memory
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.startup_seconds: float | None = None

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(self.work_dir / "work"),
               "SPARK_LOG_DIR": str(self.work_dir)}
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen([_spark_class(), *args], stdout=log, stderr=log,
                                               stdin=subprocess.DEVNULL, env=env))

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
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._spawn("worker", "org.apache.spark.deploy.worker.Worker", self.master_url, "--host", "127.0.0.1",
                    "--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(self.worker_ui_port))
        try:
            while time.perf_counter() - started < timeout:
                if any(p.poll() is not None for p in self.procs):
                    break
                if self.alive_workers() >= 1:
                    self.startup_seconds = time.perf_counter() - started
                    return self.master_url
                time.sleep(0.5)
        except BaseException:
            self.stop()  # never leave the daemons running behind a failed start
            raise
        logs = "\n".join((self.work_dir / f"{n}.log").read_text(errors="replace")[-1500:] for n in ("master", "worker"))
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
