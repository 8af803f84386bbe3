"""A real HDFS (one NameNode, two DataNodes, one JVM) on 127.0.0.1, for tests, benchmarks and demos.

It runs Hadoop's own ``MiniDFSCluster`` from the jars that ``make hdfs-jars`` resolves with Maven
(``tools/hdfs-mini``): the same NameNode and DataNode code as a production cluster, without a
Hadoop tarball. The JVM shuts down when its stdin closes, so it cannot outlive the process that
started it by more than a moment; ``stop()`` also kills it by PID if it does not exit in time.

    with MiniHdfs(tmp_dir) as hdfs:
        lake = Lake(hdfs.uri + "/lake")
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import threading
import time
from pathlib import Path

from lakeforge.settings import PROJECT_ROOT

MODULE = PROJECT_ROOT / "tools" / "hdfs-mini"
CLASSPATH_FILE = MODULE / "target" / "classpath.txt"
MAIN_CLASS = "dev.lakeforge.hdfs.MiniHdfs"


class HdfsStartError(RuntimeError):
    pass


def classpath() -> str:
    if not CLASSPATH_FILE.exists():
        raise HdfsStartError(f"{CLASSPATH_FILE} is missing: run `make hdfs-jars` (Maven resolves Hadoop 3.5.0)")
    return f"{MODULE / 'target' / 'classes'}{os.pathsep}{CLASSPATH_FILE.read_text().strip()}"


class MiniHdfs:
    def __init__(self, base_dir: str | Path, rpc_port: int | None = None, http_port: int | None = None,
                 heap: str = "768m"):
        self.base_dir = Path(base_dir)
        # 0: the NameNode binds a port the kernel picks and reports it (READY line). A port probed
        # free beforehand can be taken by another process before the JVM binds it.
        self.rpc_port = rpc_port or 0
        self.http_port = http_port or 0
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self.uri: str | None = None
        self.startup_seconds: float | None = None

    @property
    def log_path(self) -> Path:
        return self.base_dir / "hdfs.log"

    @property
    def conf_dir(self) -> Path:
        """Holds the core-site.xml clients can use (HADOOP_CONF_DIR)."""
        return self.base_dir / "conf"

    def start(self, timeout: float = 180.0) -> str:
        java = shutil.which("java")
        if java is None:
            raise HdfsStartError("java is not on PATH (Java 17 is needed for HDFS; see README)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [java, f"-Xmx{self.heap}", "-Djava.net.preferIPv4Stack=true", "-cp", classpath(), MAIN_CLASS,
             str(self.base_dir), str(self.rpc_port), str(self.http_port)],
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
                    self.uri = line.decode().split()[1]
                    self.rpc_port = int(self.uri.rsplit(":", 1)[1])
                    self.startup_seconds = time.perf_counter() - started
                    # Keep draining stdout: a full pipe would block the JVM (and HDFS with it).
                    threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
                    return self.uri
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise HdfsStartError(f"HDFS did not become ready in {timeout:.0f}s (last stdout {line!r}); log tail:\n{tail}")

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
    import sys

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
