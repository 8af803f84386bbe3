#!/usr/bin/env python3
"""Create the lake's directories with their owners and modes; safe to run again (one-shot).

The docker stack runs it once before anything writes the lake (service ``lake-init``), the native
topology the tests start runs it the same way (``tests/test_hdfs_security.py``). It must run as the
HDFS superuser: with Kerberos, the ``hdfs`` principal's keytab (``KRB5_CLIENT_KTNAME``, never on a
command line); without, the user that started the NameNode.

HDFS (the lake root from ``LAKEFORGE_LAKE_ROOT``, e.g. ``hdfs://namenode:8020/lake``):

    /                      hdfs:supergroup       0755  nobody but the superuser creates top-level paths
    /user                  hdfs:supergroup       0755
    /user/<owner>          <owner>:<owner>       0700  the service user's home (trash, staging)
    /lake                  <owner>:<owner>       0750  only the lake's owner writes; its group reads
    /lake/<source>         <owner>:<owner>       0750  one per pipeline folder (lakeforge.sources)

Local folders given with ``--local`` (the docker volumes ``/landing``, ``/mlartifacts``, created
root-owned by Docker): chowned to the owner's uid/gid, mode 0750 (needs root).

    python lake_init.py [--owner lakeforge] [--wait 120] [--local /landing /mlartifacts ...]
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import time
from urllib.parse import urlparse

SUPERUSER, SUPERGROUP = "hdfs", "supergroup"


def layout(lake_path: str, owner: str, sources: list[str]) -> list[tuple[str, str, str, int]]:
    """(path, owner, group, mode) for every HDFS directory the init owns, parents first."""
    lake_path = posixpath.normpath(lake_path)
    if lake_path == "/":
        raise SystemExit("the lake root must not be / (give it its own directory, e.g. /lake)")
    dirs = [("/", SUPERUSER, SUPERGROUP, 0o755), ("/user", SUPERUSER, SUPERGROUP, 0o755),
            (f"/user/{owner}", owner, owner, 0o700)]
    # Parents between / and the lake root stay the superuser's (nobody else creates siblings).
    parts = lake_path.strip("/").split("/")
    for i in range(1, len(parts)):
        dirs.append(("/" + "/".join(parts[:i]), SUPERUSER, SUPERGROUP, 0o755))
    dirs.append((lake_path, owner, owner, 0o750))
    dirs += [(posixpath.join(lake_path, s), owner, owner, 0o750) for s in sources]
    return dirs


def pipeline_sources() -> list[str]:
    """The lake namespaces lakeforge expects (its pipeline folders); none if lakeforge is absent."""
    try:
        from lakeforge.sources import pipeline_folders
    except ImportError:
        return []
    return sorted(pipeline_folders())


def _client(lake_root: str, wait: float):
    from hdfs_native import Client

    url = urlparse(lake_root)
    if url.scheme != "hdfs" or not url.hostname:
        raise SystemExit(f"LAKEFORGE_LAKE_ROOT must be hdfs://host:port/path, got {lake_root!r}")
    client = Client(f"hdfs://{url.hostname}:{url.port or 8020}")
    deadline, pause = time.monotonic() + wait, 0.5
    while True:  # the NameNode may still be starting or in safe mode: the stack starts us together
        try:
            client.get_file_info("/")
            return client, url.path or "/"
        except Exception as exc:  # noqa: BLE001 - connection refused, safe mode, ...
            if time.monotonic() > deadline:
                raise SystemExit(f"HDFS at {url.hostname}:{url.port} not reachable after {wait:.0f}s: {exc}")
            time.sleep(pause)
            pause = min(pause * 2, 5)


def apply(client, dirs: list[tuple[str, str, str, int]]) -> None:
    for path, owner, group, mode in dirs:
        try:
            st = client.get_file_info(path)
        except FileNotFoundError:
            client.mkdirs(path, permission=mode, create_parent=False)
            st = client.get_file_info(path)
        if not st.isdir:
            raise SystemExit(f"{path} exists and is not a directory")
        if (st.owner, st.group) != (owner, group):
            client.set_owner(path, owner, group)
        if st.permission != mode:  # also undoes a chmod by hand: the init is the source of truth
            client.set_permission(path, mode)
        print(f"hdfs {path} {owner}:{group} {mode:04o}")


def fix_local(paths: list[str], owner: str) -> None:
    import pwd

    entry = pwd.getpwnam(owner)
    for path in paths:
        os.makedirs(path, exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(path, 0o750)
        print(f"local {path} {owner} 0750")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake-root", default=os.environ.get("LAKEFORGE_LAKE_ROOT"),
                    help="hdfs://host:port/path (default: LAKEFORGE_LAKE_ROOT)")
    ap.add_argument("--owner", default=os.environ.get("LAKEFORGE_LAKE_OWNER", "lakeforge"))
    ap.add_argument("--source", action="append", default=None,
                    help="a source namespace to create (default: lakeforge's pipeline folders)")
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the NameNode")
    ap.add_argument("--local", nargs="*", default=[], help="local folders to hand to the owner")
    args = ap.parse_args(argv)
    if args.local:
        fix_local(args.local, args.owner)
    if not args.lake_root:
        raise SystemExit("no lake root: set LAKEFORGE_LAKE_ROOT or pass --lake-root")
    if not args.lake_root.startswith("hdfs://"):
        print(f"lake root {args.lake_root} is not on HDFS: nothing to create there")
        return 0
    client, lake_path = _client(args.lake_root, args.wait)
    sources = args.source if args.source is not None else pipeline_sources()
    apply(client, layout(lake_path, args.owner, sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
