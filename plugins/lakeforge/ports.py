"""A free TCP port on 127.0.0.1, for services that cannot be started on port 0.

The port is free when this returns and may be taken before the caller binds it: a service that
reports the port it bound (Spark's master, MiniDFSCluster) is better started on port 0, and a
caller of this retries on "address already in use" (see tests/mlflow_server.py).
"""

from __future__ import annotations

import socket


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
