"""A real PostgreSQL server on 127.0.0.1 for the tests: a fresh cluster in a temporary folder
(``lakeforge.postgres``, as ``make up`` runs it), password authentication (scram-sha-256) with a
generated password, no Unix socket outside that folder. Stopped by ``pg_ctl stop``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from lakeforge.postgres import PostgresCluster, bin_dir  # noqa: F401  (bin_dir: for the tests that need it)


class PostgresServer(PostgresCluster):
    def __init__(self, root: Path, user: str = "lakeforge"):
        super().__init__(root, secrets.token_urlsafe(24), user)

    def start(self) -> None:  # type: ignore[override]
        self.init(no_sync=True)
        super().start(extra=("-c", "fsync=off"))

    def stop(self) -> None:  # type: ignore[override]
        if self.port is not None:
            super().stop()
