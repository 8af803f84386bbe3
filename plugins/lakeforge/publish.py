"""Atomic partition publish (write, then rename into place) with a manifest.

A partition ``<table>/ds=YYYY-MM-DD/`` is built in ``<table>/_staging/<partition>.<token>/``,
its ``_manifest.json`` written last, and the directory renamed into place. Replacing a partition
takes two renames: the old version to ``<table>/_trash/<partition>.<token>/``, then the new one
into place, then the old one is deleted. Names starting with ``_`` are invisible to Spark and
Hive readers, so staging, trash and leases never leak into queries.

One writer at a time: every publish holds the writer lease (``lakeforge.lease``) of its table or
partition; a second writer fails at once, naming the run that writes. ``writing()`` holds the
leases of many tables for a whole job and first recovers whatever dead writers left in them.

Crash windows (a writer killed at any point; ``tests/test_crash_publish.py`` kills one after
every step, on a local lake and on HDFS):

- before the first rename: readers see the old version; staging garbage is deleted by the next
  writer of the partition (or of the table, which recovers every partition's leftovers).
- between the renames: the day is not at ``<table>/<partition>`` but whole in ``_trash``. Readers
  never see it disappear: ``read_manifest`` and ``list_partitions`` find it there, restore it
  when no live writer holds the lease (its writer died: it is gone on this machine, or its lease
  expired), and otherwise serve the backup (``partition_dir`` says where its files are: a reader
  that hands a partition's folder to Spark should take it from there) until that lease's writer
  finishes or expires.
- after the second rename: readers see the new version; the old copy left in ``_trash`` is
  deleted by the next writer of the partition or table, and by ``recover``, which a rerun that
  publishes nothing (an ingest of unchanged content) calls: no crash leaks data past the rerun.

Errors of the filesystem during a publish (a full disk, an HDFS error) are raised as
``PublishError`` (an ``OSError`` with the cause's errno), naming the lake URIs of the partition
and of the file being written. ``after_step`` is a fault-injection point for tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from lakeforge.lake import Lake
from lakeforge.lease import LeaseError, LeaseHeld, check_held, held, hold

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
STAGING = "_staging"
TRASH = "_trash"

#: Fault injection for tests: called as ``after_step(step, "<table>/<partition>")`` after each step
#: of a publish: "staged" (files written), "moved" (Spark output moved to its staging),
#: "manifest" (manifest written), "trashed" (old version in _trash), "placed" (new version in
#: place), "cleaned" (old version deleted), "restored" (recover put a backup back).
after_step: Callable[[str, str], None] | None = None


def _after(step: str, table: str, partition: str) -> None:
    if after_step is not None:
        after_step(step, f"{table}/{partition}")


class PublishError(OSError):
    """A filesystem error during a publish; the message names the partition and the file."""


@contextmanager
def _naming(lake: Lake, table: str, partition: str, action: str, rel: str) -> Iterator[None]:
    """Re-raise a filesystem error of ``action`` on ``rel`` as a ``PublishError`` naming the lake
    URIs (a full disk said "No space left on device" and nothing else)."""
    try:
        yield
    except (LeaseError, PublishError):
        raise
    except (OSError, RuntimeError) as exc:  # pyarrow/local: OSError; hdfs-native: RuntimeError too
        error = PublishError(f"publishing {lake.uri(table, partition)}: {action} {lake.uri(rel)} failed: "
                             f"{type(exc).__name__}: {exc}")
        error.errno = getattr(exc, "errno", None)
        raise error from exc


def partition_name(ds: str) -> str:
    return f"ds={ds}"


def _partition_of(entry: str) -> str:
    """The partition a staging or trash entry (``<partition>.<token>``) belongs to."""
    return entry.rsplit(".", 1)[0]


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


# -- reading -------------------------------------------------------------------------------------
def _manifest_in(lake: Lake, folder: str) -> dict[str, Any] | None:
    try:
        return json.loads(lake.read_bytes(f"{folder}/{MANIFEST}"))
    except FileNotFoundError:
        return None


def _backups(lake: Lake, table: str, partition: str) -> list[str]:
    """Whole copies of a partition in the trash (with their manifest), oldest first."""
    names = sorted(n for n in lake.listdir(f"{table}/{TRASH}") if _partition_of(n) == partition)
    return [f"{table}/{TRASH}/{n}" for n in names if lake.exists(f"{table}/{TRASH}/{n}/{MANIFEST}")]


def heal(lake: Lake, table: str, partition: str) -> bool:
    """Put back a partition whose writer died between its two renames, unless a live writer holds
    its lease (then that writer finishes, or its lease expires first). True if nothing live was
    in the way."""
    if held(lake, table, partition) is not None:
        return False  # this process writes it: it is between its own renames
    try:
        with hold(lake, table, partition):
            recover(lake, table, partition)
            return True
    except LeaseHeld:
        return False
    except (OSError, RuntimeError) as exc:  # e.g. a reader without write access: serve the backup
        log.warning("could not recover %s: %s", lake.uri(table, partition), exc)
        return False


def _locate(lake: Lake, table: str, partition: str) -> tuple[str, dict[str, Any]] | None:
    final = f"{table}/{partition}"
    manifest = _manifest_in(lake, final)
    if manifest is not None:
        return final, manifest
    backups = _backups(lake, table, partition)
    if backups:  # a writer died between its renames, or is between them right now
        log.warning("%s is missing but whole in %s", lake.uri(final), lake.uri(backups[-1]))
        heal(lake, table, partition)
    manifest = _manifest_in(lake, final)  # restored, or a live writer finished meanwhile
    if manifest is not None:
        return final, manifest
    for backup in reversed(backups):  # a live writer's lease: its backup is the published version
        manifest = _manifest_in(lake, backup)
        if manifest is not None:
            return backup, manifest
    return None


def published_partition(lake: Lake, table: str, partition: str) -> tuple[str, dict[str, Any]] | None:
    """(folder, manifest) of the published version, in one lookup (``partition_dir`` and
    ``read_manifest`` each make one); None if unpublished."""
    return _locate(lake, table, partition)


def read_manifest(lake: Lake, table: str, partition: str) -> dict[str, Any] | None:
    """The published partition's manifest (None if there is none). A partition whose writer died
    between its renames is restored first, or read from its backup while a live lease holds it."""
    found = _locate(lake, table, partition)
    return found[1] if found else None


def partition_dir(lake: Lake, table: str, partition: str) -> str | None:
    """Where the published version's files are: ``<table>/<partition>``, or its backup in
    ``_trash`` while a live writer holds it between its renames. None if unpublished."""
    found = _locate(lake, table, partition)
    return found[0] if found else None


def list_partitions(lake: Lake, table: str) -> list[str]:
    """Published partitions of a table (``ds=...`` names), oldest first.

    A table with a ``_trash`` folder may have a writer between its two renames: the table is
    listed again after the trash, and a partition found only in the trash is restored or served
    from there (``read_manifest``), so a published day is always listed."""
    first = lake.listdir(table)
    parts = {n for n in first if not n.startswith(("_", "."))}
    if TRASH not in first:
        return sorted(parts)
    orphans = {_partition_of(n) for n in lake.listdir(f"{table}/{TRASH}")}
    parts |= {n for n in lake.listdir(table) if not n.startswith(("_", "."))}
    parts |= {p for p in orphans - parts if _locate(lake, table, p) is not None}
    return sorted(parts)


# -- recovery ------------------------------------------------------------------------------------
def _delete_backup(lake: Lake, rel: str) -> None:
    # The manifest first: a backup half deleted (a local delete is a walk) is never restored.
    lake.delete(f"{rel}/{MANIFEST}")
    lake.delete(rel)


def _recover(lake: Lake, table: str, partition: str, trash: Iterable[str], staging: Iterable[str]) -> bool:
    final = f"{table}/{partition}"
    backups = sorted(n for n in trash if _partition_of(n) == partition)
    restored = False
    if backups and not lake.exists(final):
        # Died between "old -> trash" and "staging -> final": the newest whole backup is the live one.
        whole = [n for n in backups if lake.exists(f"{table}/{TRASH}/{n}/{MANIFEST}")]
        if whole:
            with _naming(lake, table, partition, "restoring", f"{table}/{TRASH}/{whole[-1]}"):
                lake.move(f"{table}/{TRASH}/{whole[-1]}", final)
            backups.remove(whole[-1])
            restored = True
            log.warning("restored %s from the trash (its writer died mid-publish)", lake.uri(final))
            _after("restored", table, partition)
    for name in backups:
        _delete_backup(lake, f"{table}/{TRASH}/{name}")
    for name in staging:
        if _partition_of(name) == partition:
            lake.delete(f"{table}/{STAGING}/{name}")
    return restored


def recover(lake: Lake, table: str, partition: str) -> bool:
    """Undo what a writer that died mid-publish left of a partition: a backup in the trash is put
    back if the partition is missing, other backups and staging are deleted. Holds the
    partition's lease (``LeaseHeld`` if a live writer has it). Returns True if it restored data."""
    with hold(lake, table, partition):
        return _recover(lake, table, partition, lake.listdir(f"{table}/{TRASH}"), lake.listdir(f"{table}/{STAGING}"))


def recover_table(lake: Lake, table: str, keep: Iterable[str] = ()) -> list[str]:
    """``recover`` for every partition of a table with leftovers, and delete the staging of dead
    Spark runs (``run-*``) except ``keep``. Holds the table's lease (every other writer of the
    table is dead then). Returns the partitions it restored."""
    with hold(lake, table):
        trash, staging = lake.listdir(f"{table}/{TRASH}"), lake.listdir(f"{table}/{STAGING}")
        restored = [p for p in sorted({_partition_of(n) for n in trash + staging if not n.startswith("run-")})
                    if _recover(lake, table, p, trash, staging)]
        for name in staging:
            if name.startswith("run-") and name not in set(keep):
                lake.delete(f"{table}/{STAGING}/{name}")
        _drop_empty_trash(lake, table, trash and lake.listdir(f"{table}/{TRASH}"))
        return restored


def _drop_empty_trash(lake: Lake, table: str, entries: list[str] | None) -> None:
    """Under the table's lease: an empty ``_trash`` folder goes, so readers of a table that no
    writer is replacing list it once (``list_partitions``)."""
    if not entries and lake.is_dir(f"{table}/{TRASH}"):
        lake.delete(f"{table}/{TRASH}")


@contextmanager
def writing(lake: Lake, tables: Sequence[str], run_id: str | None = None, ttl: float | None = None) -> Iterator[None]:
    """Hold the writer leases of ``tables`` for a job (``LeaseHeld`` at once, before anything is
    touched, if another run writes one of them) and recover what dead writers left in each."""
    from concurrent.futures import ThreadPoolExecutor

    def enter(table: str) -> tuple[Any, bool]:
        lease = hold(lake, table, run_id=run_id, ttl=ttl)
        return lease, lease.__enter__().depth == 1

    def recovered(table: str) -> None:
        restored = recover_table(lake, table)
        if restored:
            log.warning("%s: restored %s, left by a writer that died", lake.uri(table), restored)

    with ExitStack() as stack:
        # In parallel: a few HDFS round trips per table, ~30 ms each (0.5 s for a job's 17 tables in a row).
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(tables)))) as pool:
            futures = [pool.submit(enter, table) for table in tables]
            fresh, failed = [], None
            for table, future in zip(tables, futures):
                try:
                    lease, new = future.result()
                except BaseException as exc:
                    failed = failed or exc
                    continue
                stack.push(lease)  # released when the block ends (or now, if another lease failed)
                if new:
                    fresh.append(table)
            if failed is not None:
                raise failed
            list(pool.map(recovered, fresh))
        yield


# -- publishing ----------------------------------------------------------------------------------
def new_staging(lake: Lake, table: str, partition: str) -> str:
    """A fresh staging directory for a partition (for writers that write files themselves; hold
    the partition's or table's lease until ``publish_staged``)."""
    recover(lake, table, partition)
    rel = f"{table}/{STAGING}/{partition}.{_token()}"
    with _naming(lake, table, partition, "creating", rel):
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
    with hold(lake, table, partition, run_id=(meta or {}).get("dag_run_id")):
        entries = []
        with _naming(lake, table, partition, "reading", staging):
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
        _write(lake, table, partition, f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())
        _after("manifest", table, partition)
        _swap_into_place(lake, table, partition, staging, replaces=lake.exists(f"{table}/{partition}"))
        return manifest


def _write(lake: Lake, table: str, partition: str, rel: str, data: bytes, make_parents: bool = True) -> None:
    with _naming(lake, table, partition, "writing", rel):
        lake.write_bytes(rel, data, make_parents=make_parents)


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
    the second rename fails (readers and ``recover`` do the same for a writer that died in between).
    The writer's lease is checked before each rename: a writer that lost it touches nothing more."""
    final = f"{table}/{partition}"
    backup = None
    if replaces:
        check_held(lake, table, partition)
        backup = f"{table}/{TRASH}/{partition}.{_token()}"
        with _naming(lake, table, partition, "moving the old version to", backup):
            lake.move(final, backup)
        _after("trashed", table, partition)
    try:
        check_held(lake, table, partition)
        with _naming(lake, table, partition, "moving into place", staging):
            lake.move(staging, final)
    except BaseException:
        if backup is not None and not lake.exists(final):
            lake.move(backup, final)
        raise
    _after("placed", table, partition)
    if backup is not None:
        with _naming(lake, table, partition, "deleting the old version", backup):
            _delete_backup(lake, backup)
        _after("cleaned", table, partition)


def _discard(lake: Lake, rel: str) -> None:
    """Delete a failed publish's staging; a failure here must not hide the publish's error."""
    try:
        lake.delete(rel)
    except Exception as exc:
        log.warning("could not delete %s: %s", lake.uri(rel), exc)


def publish_partition(
    lake: Lake,
    table: str,
    partition: str,
    files: Sequence[PartitionFile],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish whole files as one partition, atomically; returns the manifest. Holds the
    partition's lease (or the caller's lease of the table)."""
    _check_names(files)
    with hold(lake, table, partition, run_id=(meta or {}).get("dag_run_id")):
        staging = new_staging(lake, table, partition)
        try:
            for f in files:
                _write(lake, table, partition, f"{staging}/{f.name}", f.data)
            _after("staged", table, partition)
            manifest = publish_staged(lake, table, partition, staging, meta, {f.name: f.meta for f in files})
        except BaseException:
            _discard(lake, staging)
            raise
        if held(lake, table) is not None:  # a table lease: no other writer's trash to race with
            _drop_empty_trash(lake, table, lake.listdir(f"{table}/{TRASH}"))
        return manifest


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
    manifests by partition name. Holds the table's lease."""
    from concurrent.futures import ThreadPoolExecutor

    for files in partitions.values():
        _check_names(files)
    with hold(lake, table):
        recover_table(lake, table)  # leftovers of writers that died (the table's lease is held)
        published = set(list_partitions(lake, table))
        lake.makedirs(f"{table}/{STAGING}")

        def one(partition: str) -> dict[str, Any]:
            staging = f"{table}/{STAGING}/{partition}.{_token()}"
            with _naming(lake, table, partition, "creating", staging):
                lake.makedirs(staging)
            try:
                entries = []
                for f in partitions[partition]:
                    _write(lake, table, partition, f"{staging}/{f.name}", f.data, make_parents=False)
                    entries.append({"name": f.name, "bytes": len(f.data), "sha256": hashlib.sha256(f.data).hexdigest(),
                                    **f.meta})
                _after("staged", table, partition)
                entries.sort(key=lambda e: e["name"])  # as a listing of the partition orders them
                manifest = _manifest(table, partition, entries, (meta or {}).get(partition))
                _write(lake, table, partition, f"{staging}/{MANIFEST}",
                       json.dumps(manifest, indent=2, sort_keys=True).encode(), make_parents=False)
                _after("manifest", table, partition)
                _swap_into_place(lake, table, partition, staging, replaces=partition in published)
                return manifest
            except BaseException:
                _discard(lake, staging)
                raise

        # Every partition is tried even if one fails (``map`` would cancel those not yet started).
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {partition: pool.submit(one, partition) for partition in partitions}
        manifests = {partition: future.result() for partition, future in futures.items()}
        if published & set(partitions):  # replaced partitions went through the trash
            _drop_empty_trash(lake, table, lake.listdir(f"{table}/{TRASH}"))
        return manifests
