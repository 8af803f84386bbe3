"""An embedded PostgreSQL cluster on 127.0.0.1 (Debian's postgresql package, installed by
tools/bootstrap-system.sh): a cluster in a folder of its own, password authentication
(scram-sha-256) for every connection, TCP on 127.0.0.1 only and its Unix socket inside that folder.

Two users of it: ``make up`` (``lakeforge.stack``), which runs the server in the foreground as a
service it records and stops by PID (``postgres_argv``), and the tests' throwaway server
(``tests/postgres_server.py``), which starts it with ``pg_ctl`` (``start`` / ``stop``).

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` system user
(created by the package), and the folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from lakeforge.ports import free_loopback_port

SYSTEM_USER = "postgres"


def bin_dir() -> Path:
    """The folder of PostgreSQL's server binaries (``initdb``, ``postgres``, ``pg_ctl``)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: run tools/bootstrap-system.sh (Debian's postgresql)")
    return Path(versions[-1]).parent


def as_root() -> bool:
    return os.geteuid() == 0


class PostgresCluster:
    """A cluster in ``root/data``; its Unix socket and server log in ``root``. ``password`` is the
    superuser's (``user``), set when the cluster is created."""

    def __init__(self, root: Path, password: str, user: str = "lakeforge"):
        self.root = Path(root)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = user
        self.password = password
        self.port: int | None = None
        self.bin = bin_dir()

    # --- as the server's system user ---------------------------------------------------------------

    def _run(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", SYSTEM_USER, "--"] if as_root() else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=check, timeout=timeout)

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self, *, no_sync: bool = False) -> None:
        """``initdb``: the superuser with its password, scram-sha-256 for every connection."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pwfile = self.root / ".initdb-pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        try:
            if as_root():
                # The postgres user must reach its folder: traverse-only on the folders above.
                for parent in self.root.parents:
                    if parent == Path("/"):
                        break
                    parent.chmod(parent.stat().st_mode | 0o111)
                shutil.chown(self.root, SYSTEM_USER)
                shutil.chown(pwfile, SYSTEM_USER)
            done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                             f"--pwfile={pwfile}", "-E", "UTF8", *(["--no-sync"] if no_sync else []), check=False)
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        finally:
            pwfile.unlink(missing_ok=True)

    def options(self, port: int, extra: tuple[str, ...] = ()) -> list[str]:
        """Server options: TCP on 127.0.0.1 only, the Unix socket in the cluster's folder."""
        return ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(self.root), *extra]

    def postgres_argv(self, port: int, extra: tuple[str, ...] = ()) -> list[str]:
        """The server in the foreground (the postmaster is the process this argv starts: as root,
        ``setpriv`` becomes the postgres user and execs it, no process in between)."""
        prefix = (["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--"]
                  if as_root() else [])
        return [*prefix, str(self.bin / "postgres"), "-D", str(self.data), *self.options(port, extra)]

    def start(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        """Start it in the background with ``pg_ctl`` (the tests' way), on ``port`` or a free one."""
        done = None
        for _ in range(3):  # a port probed free can be taken before the server binds it
            self.port = port or free_loopback_port()
            opts = " ".join(self.options(self.port, extra))
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                             "-o", opts, "start", check=False)
            if done.returncode == 0:
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if port is not None or ("could not bind" not in log and "Address already in use" not in log):
                break
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``: ``fast`` ends the sessions and shuts down cleanly (no recovery next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    # --- as a client ------------------------------------------------------------------------------

    def url(self, database: str, driver: str = "postgresql+psycopg2", user: str | None = None,
            password: str | None = None) -> str:
        """A SQLAlchemy URL; ``password=""`` leaves the password out (read from a passfile)."""
        user = user or self.user
        password = self.password if password is None else password
        auth = f"{user}:{password}" if password else user
        return f"{driver}://{auth}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", user: str | None = None, password: str | None = None):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=user or self.user,
                                password=self.password if password is None else password, dbname=database,
                                connect_timeout=5)

    def wait_ready(self, timeout: float = 60.0, alive=None) -> float:
        """Wait until the server accepts a login; ``alive()`` False (the process died) fails at once."""
        import psycopg2

        t = time.monotonic()
        while True:
            try:
                self.connect().close()
                return time.monotonic() - t
            except psycopg2.OperationalError as exc:
                if alive is not None and not alive():
                    raise RuntimeError(f"PostgreSQL exited while starting: {exc}") from exc
                if time.monotonic() - t > timeout:
                    raise RuntimeError(f"PostgreSQL on 127.0.0.1:{self.port} not ready after {timeout:.0f}s: {exc}")
                time.sleep(0.3)

    def create_database(self, name: str, owner: str | None = None, exists_ok: bool = False) -> bool:
        """Create a database (owned by ``owner``); False if it existed and ``exists_ok``."""
        from psycopg2 import sql

        conn = self.connect("postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                if exists_ok:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone():
                        return False
                stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if owner:
                    stmt = stmt + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
                cur.execute(stmt)
                return True
        finally:
            conn.close()

    def private_database(self, name: str) -> None:
        """Only the database's owner (and the superuser) may connect to it: ``PUBLIC``'s default
        CONNECT and TEMPORARY rights are revoked."""
        from psycopg2 import sql

        conn = self.connect("postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        finally:
            conn.close()

    def ensure_role(self, name: str, password: str) -> None:
        """A login role with ``password`` (created, or its password set: the file is the truth)."""
        from psycopg2 import sql

        conn = self.connect("postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                                sql.Literal(password)))
        finally:
            conn.close()

    def query(self, database: str, sql_text: str, params=None) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql_text, params)
                return cur.fetchall()
        finally:
            conn.close()
