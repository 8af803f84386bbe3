"""A real ``mlflow server`` on 127.0.0.1 for the training tests (SQLite backend and artifacts in a
temporary folder, job execution off: 2 processes, ~30 s to start). Stopped by its PID.

Import the fixture into a test module: ``from tests.mlflow_server import mlflow_server  # noqa: F401``.
``stop()`` / ``start()`` take the server down and bring it back on the same port and store, which is
how the tests simulate an outage.

``MlflowServer(root, auth=True)`` runs MLflow's basic-auth app as the stack does
(``lakeforge.mlflow_auth``): a generated admin, the accounts and grants made on first start, every
password in a 0600 file under ``root/auth``; ``server.env(account)`` is a client's environment.
Both fixtures start it so: ``mlflow_server`` with the training account's credentials in the
environment, ``mlflow_auth_server`` with none (the test picks an account per call).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from lakeforge.ports import free_loopback_port
from tests.helpers import stop_process_groups

STARTUP_TIMEOUT_S = 120


class MlflowServer:
    def __init__(self, root: Path, backend_uri: str | None = None, auth: bool = False):
        """``backend_uri``: the tracking/registry database (default SQLite in ``root``); ``auth``:
        MLflow's basic-auth app with lakeforge's accounts (``lakeforge.mlflow_auth``)."""
        self.root = root
        self.auth_dir = root / "auth" if auth else None
        self.backend_uri = backend_uri or f"sqlite:///{root}/mlflow.db"
        self.port = free_loopback_port()
        self.started_once = False
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, account: str) -> dict[str, str]:
        """``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` of one account (auth servers only)."""
        from lakeforge.mlflow_auth import credentials

        return credentials(account, self.auth_dir)

    def start(self) -> None:
        """Start and wait until healthy. The first start moves to another free port when the probed
        one was taken before the server bound it; a restart keeps its port (clients hold the URI)."""
        for _ in range(3):
            if self._start_once():
                if self.auth_dir is not None and not self.started_once:
                    from lakeforge.mlflow_auth import init

                    init(self.auth_dir, self.uri)
                self.started_once = True
                return
            self.port = free_loopback_port()
        raise RuntimeError(f"mlflow server found no free port: {self._log_since(0)[-3000:]}")

    def _log_since(self, offset: int) -> str:
        with open(self.root / "server.log", "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def _start_once(self) -> bool:
        """True once healthy; False when the port was taken (first start only); raises otherwise."""
        self.root.mkdir(parents=True, exist_ok=True)
        offset = (self.root / "server.log").stat().st_size if (self.root / "server.log").exists() else 0
        # The database URI (with its password) from the environment, not the command line.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": self.backend_uri}
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server",
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if self.auth_dir is not None:  # as the stack's entrypoint does (it execs the server: same PID)
            cmd = [sys.executable, "-m", "lakeforge.mlflow_auth", "serve", "--state-dir", str(self.auth_dir),
                   "--", *cmd]
        t = time.perf_counter()
        with open(self.root / "server.log", "ab") as log:
            # Own process group: the server forks workers, stop() signals them all.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        while time.perf_counter() - t < STARTUP_TIMEOUT_S:
            if self.proc.poll() is not None:
                log_text = self._log_since(offset)
                if "address already in use" in log_text.lower() and not self.started_once:
                    return False
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}: {log_text[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        self.startup_seconds = time.perf_counter() - t
                        return True
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {STARTUP_TIMEOUT_S}s: "
                           f"{(self.root / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process_groups([self.proc], timeout=30)


@pytest.fixture(scope="module")
def mlflow_server():
    """A running basic-auth server, as the stack runs it; MLFLOW_TRACKING_URI and the training
    account's credentials are in the environment for the module (the training job, and the
    processes Airflow starts for it, run as ``training``)."""
    yield from _serve(account="training")


@pytest.fixture(scope="module")
def mlflow_auth_server():
    """A running basic-auth server with lakeforge's accounts; MLFLOW_TRACKING_URI points at it, no
    credentials are set (a test picks its account with ``server.env(account)``)."""
    yield from _serve(account=None)


def _serve(account: str | None):
    # Under the test session's home (conftest), which goes when the session passes.
    server = MlflowServer(Path(tempfile.mkdtemp(prefix="mlflow-server-", dir=os.environ["LAKEFORGE_HOME"])),
                          auth=True)
    server.start()
    print(f"\nmlflow server {server.uri} up in {server.startup_seconds:.1f}s")
    env = {"MLFLOW_TRACKING_URI": server.uri, **(server.env(account) if account else {})}
    before = {k: os.environ.get(k) for k in (*env, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    for k in before:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield server
    finally:
        server.stop()
        for k, v in before.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
