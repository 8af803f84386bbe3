"""Landing -> raw: copy one day's delivery of one table into the lake, whole or not at all.

For a table and a date it takes every landing file of that date, checks each (``delivery``),
drops byte-identical duplicates, and publishes the rest as ``raw/<table>/ds=YYYY-MM-DD/`` in the
source's lake namespace (``<lake root>/<source>/``, ``lakeforge.lake.source_lake``) with a
manifest (sha256, bytes, rows, source file name, ingested_at, DAG run id).

- Idempotent: if the partition already holds exactly this content it is left untouched (the
  manifest, its ``ingested_at`` included, does not change), so reruns and retries are no-ops.
- A file delivered twice (same bytes, same or another name) adds nothing.
- A bad file (empty, truncated, not CSV, another day's) is moved to
  ``quarantine/<raw table>/ds=.../`` next to a ``.reason.json``, nothing is published for that
  day, and ``DeliveryRejected`` names the file. The exporter's corrected redelivery is picked up
  by the next run.
- Snapshot (reference) tables land as dated snapshots; one identical to the previous snapshot is
  not stored again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from lakeforge.delivery import CsvSummary, DeliveryRejected, inspect_delivery
from lakeforge.lake import Lake, source_lake
from lakeforge.publish import (
    TRASH,
    PartitionFile,
    content_sha256,
    list_partitions,
    partition_name,
    publish_partition,
    read_manifest,
    recover,
)
from lakeforge.settings import get_settings
from lakeforge.sources import Source, Table

log = logging.getLogger(__name__)


class NoDelivery(FileNotFoundError):
    """The day's delivery of a required table is not in the landing area."""


class RejectedDelivery(RuntimeError):
    """One or more files of a day's delivery were quarantined; nothing was published."""

    def __init__(self, table: str, ds: str, rejected: list[tuple[DeliveryRejected, str]]):
        self.rejected = rejected
        lines = [f"  - {r.name} ({r.kind}): {r.reason} -> quarantined at {where}" for r, where in rejected]
        super().__init__(
            f"delivery of {table} for {ds} rejected, nothing published:\n" + "\n".join(lines)
        )


@dataclass
class IngestResult:
    source: str
    table: str
    ds: str
    status: str  # published | unchanged | skipped
    uri: str
    rows: int = 0
    bytes: int = 0
    files: list[str] = field(default_factory=list)
    duplicates_ignored: list[str] = field(default_factory=list)
    content_sha256: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def landing_for(source: Source, landing_root: str | None = None) -> Lake:
    """The landing area of one source: ``<landing_root>/<source name>/``."""
    root = (landing_root or get_settings().landing_root).rstrip("/")
    return Lake(f"{root}/{source.name}")


def delivered_files(landing: Lake, table: Table, ds: str) -> list[str]:
    """Landing file names of a table for one date (complete files only, sorted)."""
    return [n for n in landing.listdir(table.folder) if table.matches(n, ds)]


def landing_listing(source: Source, landing: Lake | None = None) -> dict[str, list[int | float]]:
    """Every delivery file in the landing area, ``"<table>/<name>": [bytes, mtime]``: what the
    delivery watcher compares between two looks. Files no table claims (temporary names) are left out."""
    landing = landing or landing_for(source)
    listing: dict[str, list[int | float]] = {}
    for table in source.tables:
        for name, (size, mtime) in landing.file_times(table.folder).items():
            if table.date_of(name) is not None:
                listing[f"{table.name}/{name}"] = [size, mtime]
    return listing


def days_in(source: Source, names: Iterable[str]) -> list[str]:
    """The dates that ``"<table>/<name>"`` keys of a landing listing deliver."""
    days = set()
    for key in names:
        table, _, name = key.partition("/")
        ds = source.table(table).date_of(name)
        if ds:
            days.add(ds)
    return sorted(days)


def pending_days(source: Source, *, lake: Lake | None = None, landing: Lake | None = None) -> list[str]:
    """Dates with a daily-table delivery and no raw partition of that table yet: one listing of
    each daily table's landing folder and of its raw table. A redelivery of a day raw holds is
    named by the delivery watcher's event instead (a new or changed file)."""
    lake = lake or source_lake(source.name)
    landing = landing or landing_for(source)
    pending = set()
    for table in source.daily_tables:
        have = set(list_partitions(lake, source.raw_path(table.name)))
        delivered = {table.date_of(name) for name in landing.listdir(table.folder)} - {None}
        pending |= {ds for ds in delivered if partition_name(ds) not in have}
    return sorted(pending)


@dataclass
class BatchResult:
    """One ingest run over several days: what each table got, and what was refused."""

    results: list[IngestResult] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one line per refused delivery, naming the files
    missing: dict[str, list[str]] = field(default_factory=dict)  # daily table -> days not delivered yet

    def published(self, table: str) -> list[IngestResult]:
        return [r for r in self.results if r.table == table and r.status == "published"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def ingest_days(
    source: Source,
    days: Iterable[str],
    *,
    run_id: str | None = None,
    force: bool = False,
    lake: Lake | None = None,
    landing: Lake | None = None,
    progress_every: int = 30,
) -> BatchResult:
    """Ingest every table of ``source`` for each of ``days`` (``ingest_partition`` per table and
    day). A refused delivery is quarantined and reported, the other days and tables go on; a
    daily table with no delivery yet for a day is reported as missing (the next delivery's run
    takes it)."""
    lake = lake or source_lake(source.name)
    landing = landing or landing_for(source)
    days = list(days)
    batch = BatchResult()
    started = time.perf_counter()
    for i, ds in enumerate(days, start=1):
        for table in source.tables:
            try:
                batch.results.append(ingest_partition(source, table.name, ds, lake=lake, landing=landing,
                                                      run_id=run_id, force=force))
            except NoDelivery:
                batch.missing.setdefault(table.name, []).append(ds)
            except RejectedDelivery as exc:
                batch.rejected.append(str(exc))
        if i % progress_every == 0 or i == len(days):
            log.info("ingested %d/%d days (%.1fs): %s", i, len(days), time.perf_counter() - started, batch.counts())
    return batch


def quarantine_file(
    lake: Lake, landing: Lake, table_path: str, ds: str, name: str, data: bytes,
    rejection: DeliveryRejected, run_id: str | None, src: str,
) -> str:
    """Move a rejected landing file into the lake's quarantine, with the reason beside it."""
    folder = f"quarantine/{table_path}/{partition_name(ds)}"
    target = f"{folder}/{name}"
    if lake.exists(target):  # the same bad name delivered again: keep both
        target = f"{folder}/{int(time.time() * 1000)}-{name}"
    lake.write_bytes(target, data)
    reason = {
        "file": name,
        "landing_uri": landing.uri(src),
        "kind": rejection.kind,
        "reason": rejection.reason,
        "bytes": len(data),
        "quarantined_at": _now(),
        "dag_run_id": run_id,
    }
    lake.write_bytes(target + ".reason.json", json.dumps(reason, indent=2).encode())
    landing.delete(src)  # only after the copy and its reason are safely in the lake
    return lake.uri(target)


def ingest_partition(
    source: Source,
    table_name: str,
    ds: str,
    *,
    lake: Lake | None = None,
    landing: Lake | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> IngestResult:
    """Ingest one table's delivery for date ``ds`` (YYYY-MM-DD). See the module docstring."""
    started = time.perf_counter()
    table = source.table(table_name)
    lake = lake or source_lake(source.name)
    landing = landing or landing_for(source)
    table_path = source.raw_path(table.name)
    partition = partition_name(ds)
    result = IngestResult(source.name, table.name, ds, "skipped", lake.uri(table_path, partition))

    names = delivered_files(landing, table, ds)
    if not names:
        if table.cadence == "snapshot":
            result.seconds = time.perf_counter() - started
            return result
        raise NoDelivery(f"no delivery of {table.name} for {ds} at {landing.uri(table.glob(ds))}")

    accepted: list[tuple[str, bytes, CsvSummary]] = []
    rejected: list[tuple[DeliveryRejected, str]] = []
    for name in names:
        src = f"{table.folder}/{name}"
        data = landing.read_bytes(src)
        try:
            summary = inspect_delivery(name, data, table, ds if table.cadence == "daily" else None)
        except DeliveryRejected as bad:
            where = quarantine_file(lake, landing, table_path, ds, name, data, bad, run_id, src)
            log.error("quarantined %s: %s", name, bad)
            rejected.append((bad, where))
            continue
        accepted.append((name, summary.data, summary))  # without a BOM or trailer: what readers get
    if rejected:
        raise RejectedDelivery(table.name, ds, rejected)

    unique: dict[str, tuple[str, bytes, CsvSummary]] = {}
    for name, data, summary in accepted:
        if summary.sha256 in unique:
            result.duplicates_ignored.append(name)
            log.warning("%s is byte-identical to %s: ignored", name, unique[summary.sha256][0])
        else:
            unique[summary.sha256] = (name, data, summary)
    content = content_sha256(list(unique))

    # A writer of this day that died between its renames left the old copy in the trash: put it
    # back or delete it now, since an unchanged rerun below publishes nothing (``LeaseHeld`` if
    # another ingest of this day is running). One listing when there is nothing to do.
    if any(n.startswith(partition + ".") for n in lake.listdir(f"{table_path}/{TRASH}")):
        recover(lake, table_path, partition)
    current = read_manifest(lake, table_path, partition)
    same_as = None
    if current and current["content_sha256"] == content:
        same_as = current
    elif table.cadence == "snapshot":
        same_as = _previous_snapshot_if_same(lake, table_path, partition, content)
    if same_as is not None and not force:
        log.info("%s %s: content unchanged (%s), nothing to do", table.name, ds, same_as["partition"])
        result.status = "unchanged"
        result.uri = lake.uri(table_path, same_as["partition"])
        _fill_from_manifest(result, same_as)
        result.seconds = time.perf_counter() - started
        return result

    files = [
        PartitionFile(
            name,
            data,
            {"source_name": name, **s.manifest_meta},
        )
        for name, data, s in unique.values()
    ]
    first = next(iter(unique.values()))[2]
    manifest = publish_partition(
        lake,
        table_path,
        partition,
        files,
        meta={
            "source": source.name,
            "layer": "raw",
            "ds": ds,
            "format": "csv",
            "columns": list(first.columns),
            "ingested_at": _now(),
            "dag_run_id": run_id,
            "duplicates_ignored": result.duplicates_ignored,
        },
    )
    result.status = "published"
    _fill_from_manifest(result, manifest)
    result.seconds = time.perf_counter() - started
    log.info(
        "published %s: %d files, %d rows, %d bytes in %.2fs",
        result.uri, len(files), result.rows, result.bytes, result.seconds,
    )
    return result


def _previous_snapshot_if_same(lake: Lake, table_path: str, partition: str, content: str) -> dict | None:
    earlier = [p for p in list_partitions(lake, table_path) if p < partition]
    if not earlier:
        return None
    prev = read_manifest(lake, table_path, earlier[-1])
    return prev if prev and prev["content_sha256"] == content else None


def _fill_from_manifest(result: IngestResult, manifest: dict[str, Any]) -> None:
    result.rows = manifest.get("rows", 0)
    result.bytes = manifest["bytes"]
    result.files = [f["name"] for f in manifest["files"]]
    result.content_sha256 = manifest["content_sha256"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
