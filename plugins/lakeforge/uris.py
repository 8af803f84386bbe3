"""URI helpers that need no filesystem client (cheap enough for DAG parse time)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def normalize_root(uri: str) -> str:
    """A lake root as a URI without a trailing slash: bare paths become ``file://`` URIs."""
    if not urlparse(uri).scheme:
        return "file://" + str(Path(uri).expanduser().resolve())
    return uri.rstrip("/")


def join_uri(root: str, *parts: str) -> str:
    return "/".join([normalize_root(root), *(p.strip("/") for p in parts if p.strip("/"))])
