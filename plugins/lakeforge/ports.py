"""A free TCP port (on 127.0.0.1 for lakeforge's own services), for services that cannot be
started on port 0.

The port is free when this returns and may be taken before the caller binds it: a service that
reports the port it bound (Spark's master, MiniDFSCluster) is better started on port 0, and a
caller of this retries on "address already in use" (see tests/mlflow_server.py).
"""

from __future__ import annotations

import socket


def free_port(host: str) -> int:
    """A port free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_loopback_port() -> int:
    return free_port("127.0.0.1")
