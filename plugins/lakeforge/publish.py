"""Atomic partition publish (write, then rename into place) with a manifest.

A partition ``<table>/ds=YYYY-MM-DD/`` is built in ``<table>/_staging/<partition>.<token>/``,
its ``_manifest.json`` written last, and the directory renamed into place. Readers therefore see
the old partition or the new one, never half of one; a writer that dies leaves only staging
garbage, which the next publish of that partition removes. Replacing a partition moves the old
one to ``<table>/_trash/`` first; if the process dies between the two renames, the next publish
(or ``recover``) puts the old version back before doing anything else.

Names starting with ``_`` are invisible to Spark and Hive readers, so staging and trash never leak
into queries. One writer per partition at a time is assumed (Airflow runs one task instance per
partition and date).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from lakeforge.lake import Lake

MANIFEST = "_manifest.json"
STAGING = "_staging"
TRASH = "_trash"


def partition_name(ds: str) -> str:
    return f"ds={ds}"


@dataclass(frozen=True)
class PartitionFile:
    """One file to publish: its name inside the partition, its bytes, extra manifest fields."""

    name: str
    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)


def _token() -> str:
    # Sortable by creation time, unique across processes.
    return f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"


def content_sha256(file_shas: Sequence[str]) -> str:
    """One hash for a partition's content, independent of file names and order."""
    return hashlib.sha256("\n".join(sorted(file_shas)).encode()).hexdigest()


def read_manifest(lake: Lake, table: str, partition: str) -> dict[str, Any] | None:
    rel = f"{table}/{partition}/{MANIFEST}"
    if not lake.exists(rel):
        return None
    return json.loads(lake.read_bytes(rel))


def list_partitions(lake: Lake, table: str) -> list[str]:
    """Published partitions of a table (``ds=...`` names), oldest first."""
    return [n for n in lake.listdir(table) if not n.startswith(("_", "."))]


def recover(lake: Lake, table: str, partition: str) -> bool:
    """Undo what a writer that died mid-publish left behind. Returns True if it restored data."""
    final = f"{table}/{partition}"
    backups = sorted(n for n in lake.listdir(f"{table}/{TRASH}") if n.startswith(partition + "."))
    restored = False
    if backups and not lake.exists(final):
        # Died between "old -> trash" and "staging -> final": the newest backup is the live one.
        lake.move(f"{table}/{TRASH}/{backups.pop()}", final)
        restored = True
    for name in backups:
        lake.delete(f"{table}/{TRASH}/{name}")
    for name in lake.listdir(f"{table}/{STAGING}"):
        if name.startswith(partition + "."):
            lake.delete(f"{table}/{STAGING}/{name}")
    return restored


def new_staging(lake: Lake, table: str, partition: str) -> str:
    """A fresh staging directory for a partition (for writers that write files themselves)."""
    recover(lake, table, partition)
    rel = f"{table}/{STAGING}/{partition}.{_token()}"
    lake.makedirs(rel)
    return rel


def publish_staged(
    lake: Lake,
    table: str,
    partition: str,
    staging: str,
    meta: dict[str, Any] | None = None,
    file_meta: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the manifest into a filled staging directory and swap it into place.

    ``file_meta`` adds fields per file name (e.g. row counts); sizes and sha256 are computed here
    from what is actually in staging, so the manifest describes the bytes readers will get.
    """
    file_meta = file_meta or {}
    entries = []
    for stat in lake.files(staging):
        if stat.path == MANIFEST:
            continue
        entries.append(
            {
                "name": stat.path,
                "bytes": stat.size,
                "sha256": lake.sha256(f"{staging}/{stat.path}", size=stat.size),
                **file_meta.get(stat.path, {}),
            }
        )
    manifest = _manifest(table, partition, entries, meta)
    lake.write_bytes(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())
    _swap_into_place(lake, table, partition, staging, replaces=lake.exists(f"{table}/{partition}"))
    return manifest


def _manifest(table: str, partition: str, entries: list[dict[str, Any]], meta: dict[str, Any] | None) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "table": table,
        "partition": partition,
        "files": entries,
        "bytes": sum(e["bytes"] for e in entries),
        "content_sha256": content_sha256([e["sha256"] for e in entries]),
        "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(meta or {}),
    }
    if all("rows" in e for e in entries):
        manifest["rows"] = sum(e["rows"] for e in entries)
    return manifest


def _swap_into_place(lake: Lake, table: str, partition: str, staging: str, replaces: bool) -> None:
    """Staging -> final; a partition being replaced goes to the trash first and is put back if
    the second rename fails (``recover`` does the same for a writer that died in between)."""
    final = f"{table}/{partition}"
    backup = None
    if replaces:
        backup = f"{table}/{TRASH}/{partition}.{_token()}"
        lake.move(final, backup)
    try:
        lake.move(staging, final)
    except BaseException:
        if backup is not None:
            lake.move(backup, final)
        raise
    if backup is not None:
        lake.delete(backup)


def publish_partition(
    lake: Lake,
    table: str,
    partition: str,
    files: Sequence[PartitionFile],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish whole files as one partition, atomically; returns the manifest."""
    _check_names(files)
    staging = new_staging(lake, table, partition)
    try:
        for f in files:
            lake.write_bytes(f"{staging}/{f.name}", f.data)
        return publish_staged(lake, table, partition, staging, meta, {f.name: f.meta for f in files})
    except BaseException:
        lake.delete(staging)
        raise


def _check_names(files: Sequence[PartitionFile]) -> None:
    names = [f.name for f in files]
    if len(set(names)) != len(names) or MANIFEST in names:
        raise ValueError(f"partition file names must be unique and not {MANIFEST}: {names}")


def publish_partitions(
    lake: Lake,
    table: str,
    partitions: Mapping[str, Sequence[PartitionFile]],
    meta: Mapping[str, dict[str, Any]] | None = None,
    workers: int = 8,
) -> dict[str, dict[str, Any]]:
    """Many small partitions of one table (e.g. a year of quality evidence), each published
    atomically exactly as ``publish_partition`` does, with a third of its filesystem calls: the
    table's folders are listed once, not per partition, and sizes and hashes are taken from the
    bytes in memory instead of read back. Partitions are written concurrently; returns the
    manifests by partition name."""
    from concurrent.futures import ThreadPoolExecutor

    for files in partitions.values():
        _check_names(files)
    # Leftovers of a writer that died: only those partitions need recover()'s per-partition work.
    leftovers = {name.split(".", 1)[0] for name in lake.listdir(f"{table}/{TRASH}") + lake.listdir(f"{table}/{STAGING}")}
    for partition in leftovers & set(partitions):
        recover(lake, table, partition)
    published = set(list_partitions(lake, table))
    lake.makedirs(f"{table}/{STAGING}")

    def one(partition: str) -> dict[str, Any]:
        staging = f"{table}/{STAGING}/{partition}.{_token()}"
        lake.makedirs(staging)
        try:
            entries = []
            for f in partitions[partition]:
                lake.write_bytes(f"{staging}/{f.name}", f.data, make_parents=False)
                entries.append({"name": f.name, "bytes": len(f.data), "sha256": hashlib.sha256(f.data).hexdigest(), **f.meta})
            entries.sort(key=lambda e: e["name"])  # as a listing of the partition orders them
            manifest = _manifest(table, partition, entries, (meta or {}).get(partition))
            lake.write_bytes(f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode(),
                             make_parents=False)
            _swap_into_place(lake, table, partition, staging, replaces=partition in published)
            return manifest
        except BaseException:
            lake.delete(staging)
            raise

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(partitions, pool.map(one, list(partitions))))
