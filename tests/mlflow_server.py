"""A real ``mlflow server`` on 127.0.0.1 for the training tests (SQLite backend and artifacts in a
temporary folder, job execution off: 2 processes, ~30 s to start). Stopped by its PID.

Import the fixture into a test module: ``from tests.mlflow_server import mlflow_server  # noqa: F401``.
``stop()`` / ``start()`` take the server down and bring it back on the same port and store, which is
how the tests simulate an outage.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server",
               "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        log = open(self.root / "server.log", "ab")
        t = time.perf_counter()
        # Own process group: the server forks workers, stop() signals them all.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while time.perf_counter() - t < STARTUP_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}: "
                                   f"{(self.root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        self.startup_seconds = time.perf_counter() - t
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {STARTUP_TIMEOUT_S}s: "
                           f"{(self.root / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mlflow_server():
    """A running server; MLFLOW_TRACKING_URI points at it for the module."""
    # Under the test session's home (conftest), which goes when the session passes.
    server = MlflowServer(Path(tempfile.mkdtemp(prefix="mlflow-server-", dir=os.environ["LAKEFORGE_HOME"])))
    server.start()
    print(f"\nmlflow server {server.uri} up in {server.startup_seconds:.1f}s")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.uri
    try:
        yield server
    finally:
        server.stop()
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
