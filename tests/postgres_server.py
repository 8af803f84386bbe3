"""A real PostgreSQL server on 127.0.0.1 for the tests (Debian's postgresql package, installed by
tools/bootstrap-system.sh): a fresh cluster in a temporary folder, password authentication
(scram-sha-256) with a generated password, no Unix socket outside that folder. Stopped by
``pg_ctl stop``.

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` system user
(created by the package), and the folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from lakeforge.ports import free_loopback_port


def bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: run tools/bootstrap-system.sh (Debian's postgresql)")
    return Path(versions[-1]).parent


class PostgresServer:
    def __init__(self, root: Path, user: str = "lakeforge"):
        self.root = root
        self.data = root / "data"
        self.user = user
        self.password = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.bin = bin_dir()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=check, timeout=120)

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._as_postgres:
            # The postgres user must reach its folder: traverse-only on the folders above.
            for parent in [self.root, *self.root.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o111)
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        for _ in range(3):  # a port probed free can be taken before the server binds it
            self.port = free_loopback_port()
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                             "-w", "-t", "60", "-o",
                             f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off",
                             "start", check=False)
            if done.returncode == 0:
                return
            log = (self.root / "server.log").read_text(errors="replace")
            if "could not bind" not in log and "Address already in use" not in log:
                break
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}\n"
                           f"{(self.root / 'server.log').read_text(errors='replace')[-3000:]}")

    def _connect(self, database: str):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname=database)

    def create_database(self, name: str) -> None:
        conn = self._connect("postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def query(self, database: str, sql: str) -> list[tuple]:
        conn = self._connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.port is not None and (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
