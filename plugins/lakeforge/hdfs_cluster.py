"""A real HDFS (one NameNode, two DataNodes, one JVM) on 127.0.0.1, for tests, benchmarks and demos.

It runs Hadoop's own ``MiniDFSCluster`` from the jars that ``make hdfs-jars`` resolves with Maven
(``tools/hdfs-mini``): the same NameNode and DataNode code as a production cluster, without a
Hadoop tarball. The JVM shuts down when its stdin closes, so it cannot outlive the process that
started it by more than a moment; ``stop()`` also kills it by PID if it does not exit in time.

    with MiniHdfs(tmp_dir) as hdfs:
        lake = Lake(hdfs.uri + "/lake")

``secure=True`` runs it as a Kerberized cluster: Hadoop's MiniKdc in the same JVM, NameNode and
DataNodes logged in from a keytab, block access tokens, SASL-protected RPC and data transfer
(``protection``), HTTPS only with SPNEGO (WebHDFS included), permissions enforced. One keytab per
client principal (``users``, plus the superuser ``hdfs``) lands in ``<base_dir>/krb`` (0700; keytabs 0600), and
``client_env(user)`` gives the environment a process needs to authenticate as that user (no
secret on any command line). ``permissions=True`` alone enforces owners and modes without Kerberos
(then anyone can claim any user name: it stops accidents, not attackers).

``init_lake()`` runs the stack's one-shot init script (``docker/init/lake_init.py``) as the
superuser: the lake's directories with their owners and modes.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from lakeforge.settings import PROJECT_ROOT

MODULE = PROJECT_ROOT / "tools" / "hdfs-mini"
CLASSPATH_FILE = MODULE / "target" / "classpath.txt"
MAIN_CLASS = "dev.lakeforge.hdfs.MiniHdfs"
INIT_SCRIPT = PROJECT_ROOT / "docker" / "init" / "lake_init.py"
SUPERUSER = "hdfs"


class HdfsStartError(RuntimeError):
    pass


def classpath() -> str:
    if not CLASSPATH_FILE.exists():
        raise HdfsStartError(f"{CLASSPATH_FILE} is missing: run `make hdfs-jars` (Maven resolves Hadoop 3.5.0)")
    return f"{MODULE / 'target' / 'classes'}{os.pathsep}{CLASSPATH_FILE.read_text().strip()}"


class MiniHdfs:
    def __init__(self, base_dir: str | Path, rpc_port: int | None = None, http_port: int | None = None,
                 heap: str = "768m", *, secure: bool = False, permissions: bool = False,
                 users: tuple[str, ...] = ("lakeforge",), protection: str = "privacy"):
        self.base_dir = Path(base_dir)
        self.secure = secure
        self.permissions = permissions or secure
        self.users = tuple(users)
        self.protection = protection
        # 0: the NameNode binds a port the kernel picks and reports it (READY line). A port probed
        # free beforehand can be taken by another process before the JVM binds it.
        self.rpc_port = rpc_port or 0
        self.http_port = http_port or 0
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self.uri: str | None = None
        self.web_url: str | None = None
        self.startup_seconds: float | None = None

    @property
    def log_path(self) -> Path:
        return self.base_dir / "hdfs.log"

    @property
    def conf_dir(self) -> Path:
        """Holds the core-site.xml clients can use (HADOOP_CONF_DIR)."""
        return self.base_dir / "conf"

    # -- Kerberos (secure=True) ------------------------------------------------------------------
    @property
    def krb_dir(self) -> Path:
        return self.base_dir / "krb"

    @property
    def krb5_conf(self) -> Path:
        return self.krb_dir / "krb5.conf"

    @property
    def realm(self) -> str:
        for line in self.krb5_conf.read_text().splitlines():
            if line.strip().startswith("default_realm"):
                return line.split("=", 1)[1].strip()
        raise HdfsStartError(f"no default_realm in {self.krb5_conf}")

    def keytab(self, user: str) -> Path:
        """The keytab (0600) of ``user@REALM``: ``hdfs`` (the superuser) or one of ``users``."""
        return self.krb_dir / f"{user}.keytab"

    def principal(self, user: str) -> str:
        return f"{user}@{self.realm}"

    def client_env(self, user: str | None = None) -> dict[str, str]:
        """Environment variables for a client process of this cluster (hdfs-native, the Hadoop
        Java client via HADOOP_CONF_DIR). Secure: authenticated as ``user`` from its keytab (MIT
        krb5 gets the ticket itself from ``KRB5_CLIENT_KTNAME``; the ticket stays in the process's
        memory). Not secure: ``user`` becomes ``HADOOP_USER_NAME`` (a claim nobody checks)."""
        env = {"HADOOP_CONF_DIR": str(self.conf_dir)}
        if self.secure:
            env.update(KRB5_CONFIG=str(self.krb5_conf), KRB5CCNAME="MEMORY:lakeforge")
            if user is not None:
                env["KRB5_CLIENT_KTNAME"] = str(self.keytab(user))
        elif user is not None:
            env["HADOOP_USER_NAME"] = user
        return env

    def init_lake(self, lake_path: str = "/lake", owner: str = "lakeforge", sources: list[str] | None = None,
                  timeout: float = 60.0) -> str:
        """Run the stack's init script against this cluster as the superuser; returns its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "HADOOP_"))}
        env.update(self.client_env(SUPERUSER if self.secure else None))
        cmd = [sys.executable, str(INIT_SCRIPT), "--lake-root", f"{self.uri}{lake_path}", "--owner", owner,
               "--wait", "30"]
        for source in sources or []:
            cmd += ["--source", source]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise HdfsStartError(f"lake init failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def start(self, timeout: float = 180.0) -> str:
        java = shutil.which("java")
        if java is None:
            raise HdfsStartError("java is not on PATH (Java 17 is needed for HDFS; see README)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [java, f"-Xmx{self.heap}", "-Djava.net.preferIPv4Stack=true", "-cp", classpath(), MAIN_CLASS,
             str(self.base_dir), str(self.rpc_port), str(self.http_port), *self._options()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        )
        log.close()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                break
            if sel.select(timeout=0.5):
                line = self.proc.stdout.readline()
                if line.startswith(b"READY "):
                    words = line.decode().split()
                    self.uri = words[1]
                    self.web_url = words[2] if len(words) > 2 else None  # NameNode web UI (and WebHDFS)
                    self.rpc_port = int(self.uri.rsplit(":", 1)[1])
                    self.startup_seconds = time.perf_counter() - started
                    # Keep draining stdout: a full pipe would block the JVM (and HDFS with it).
                    threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
                    return self.uri
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise HdfsStartError(f"HDFS did not become ready in {timeout:.0f}s (last stdout {line!r}); log tail:\n{tail}")

    def _options(self) -> list[str]:
        if self.secure:
            return ["--secure", "--users", ",".join(self.users), "--protection", self.protection]
        return ["--permissions"] if self.permissions else []

    def _drain(self, stream) -> None:
        with open(self.log_path, "ab") as log:
            for chunk in iter(lambda: stream.read1(65536), b""):
                log.write(chunk)

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # the JVM's signal to shut the cluster down cleanly
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> "MiniHdfs":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """Run HDFS in the foreground until Ctrl-C: ``python -m lakeforge.hdfs_cluster [DIR]``."""
    base = Path(sys.argv[1] if len(sys.argv) > 1 else PROJECT_ROOT / ".lakeforge" / "hdfs")
    with MiniHdfs(base, rpc_port=int(os.environ.get("LAKEFORGE_HDFS_PORT", "9000"))) as hdfs:
        print(f"HDFS up at {hdfs.uri} in {hdfs.startup_seconds:.1f}s (conf: {hdfs.conf_dir}); Ctrl-C stops it")
        try:
            while hdfs.proc and hdfs.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
