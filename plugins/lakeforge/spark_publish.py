"""Publish what a Spark job wrote, partition by partition, through lakeforge's atomic swap.

A job writes its whole output once, partitioned by ``ds``, into ``<table>/_staging/run-<token>/``
(one Spark write, one pass). Each ``ds=...`` directory is then swapped into place with a manifest
(``lakeforge.publish``): partitions outside the run's dates are never touched, a run killed
midway leaves every partition either old or new, and readers never see a half-written one.

The job holds the table's writer lease (``lakeforge.publish.writing``) from before it stages
until it has published: another run's staging is never deleted while that run lives, and a
second run of the same table fails at once instead of with a raw ``FileNotFoundException``.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from lakeforge.lake import Lake
from lakeforge.lease import held, hold
from lakeforge.publish import (STAGING, TRASH, _after, _drop_empty_trash, _naming, partition_name, publish_staged,
                               published_partition, recover_table)


def new_run_staging(lake: Lake, table: str) -> str:
    """A fresh staging folder for one job's write of a table. Under the table's lease (held by
    this process) the staging of dead runs goes first; without it, nothing of anyone else's is
    touched (``writing()`` cleans up when the next job leases the table)."""
    if held(lake, table) is not None:
        for name in lake.listdir(f"{table}/{STAGING}"):
            if name.startswith("run-"):
                lake.delete(f"{table}/{STAGING}/{name}")
    return f"{table}/{STAGING}/run-{uuid.uuid4().hex[:12]}"


def parquet_metadata(lake: Lake, rel: str, timeout: float = 10.0) -> "pq.FileMetaData":
    """A Parquet file's footer (row counts, row groups, column statistics); the data is not read.

    On HDFS a file Spark has just closed can still read short (its last block committed, not yet
    readable: once seen as 0 bytes), so an unreadable footer is read again, backing off, for up to
    ``timeout`` s before the error (with the file's URI) is raised."""
    from lakeforge.lake import _until_whole

    def attempt() -> tuple["pq.FileMetaData | None", str]:
        try:
            with lake.fs.open_input_file(lake.path(rel)) as f:
                return pq.read_metadata(f), ""
        except pa.ArrowInvalid as exc:
            return None, str(exc)

    metadata, _ = _until_whole(attempt, lambda r: r[0] is not None, timeout,
                               lambda r: f"{lake.uri(rel)}: no readable Parquet footer ({r[1]})")
    return metadata


def parquet_rows(lake: Lake, rel: str) -> int:
    return parquet_metadata(lake, rel).num_rows


def write_empty_parquet(lake: Lake, rel: str, schema: pa.Schema) -> None:
    """A 0-row file carrying the schema, so readers of an all-empty table still know its columns."""
    lake.makedirs(rel)
    with lake.fs.open_output_stream(lake.path(f"{rel}/part-00000-empty.parquet")) as out:
        pq.write_table(schema.empty_table(), out)


def publish_written_partitions(
    lake: Lake,
    table: str,
    run_staging: str,
    dates: Iterable[str],
    schema: pa.Schema,
    meta: dict[str, Any] | None = None,
    partition_meta: dict[str, dict[str, Any]] | None = None,
    file_rows: dict[str, dict[str, int]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Swap each ``ds`` in ``dates`` into place (an empty one if it wrote no rows); what the job
    staged for other dates (e.g. partitions a quality gate rejected) is discarded.
    ``partition_meta`` adds manifest fields per ds (e.g. its quality verdict); ``file_rows``
    (ds -> file name -> rows, from footers the job already read) saves reading them again."""
    run = posixpath.basename(run_staging.rstrip("/"))
    with hold(lake, table, run_id=(meta or {}).get("dag_run_id")) as lease:
        if lease.depth == 1:  # not leased by the job (``writing`` recovers the table when it is)
            recover_table(lake, table, keep=[run])
        manifests = {}
        for ds in dates:
            partition = partition_name(ds)
            written = f"{run_staging}/{partition}"
            if not lake.exists(written):  # no rows that day (e.g. nothing quarantined): publish it empty
                with _naming(lake, table, partition, "writing", f"{written}/part-00000-empty.parquet"):
                    write_empty_parquet(lake, written, schema)
            staged = f"{table}/{STAGING}/{partition}.{uuid.uuid4().hex[:12]}"
            with _naming(lake, table, partition, "moving", written):
                lake.move(written, staged)
            _after("moved", table, partition)
            with _naming(lake, table, partition, "reading", staged):
                files = [f.path for f in lake.files(staged)]
                known = (file_rows or {}).get(ds, {})
                file_meta = {name: {"rows": known[name] if name in known else parquet_rows(lake, f"{staged}/{name}")}
                             for name in files}
            manifests[ds] = publish_staged(
                lake, table, partition, staged,
                meta={"ds": ds, "format": "parquet", **(meta or {}), **(partition_meta or {}).get(ds, {})},
                file_meta=file_meta,
            )
        lake.delete(run_staging)
        if manifests:
            _drop_empty_trash(lake, table, lake.listdir(f"{table}/{TRASH}"))
        return manifests


def published_files(lake: Lake, table: str, days: Iterable[str],
                    accept: Callable[[str, dict[str, Any]], bool] | None = None) -> dict[str, list[str]]:
    """ds -> the URIs of the files its published partition's manifest lists (from the backup while
    a writer is between its renames); a day not published (or blocked by a gate and so never
    published), or whose manifest ``accept(ds, manifest)`` refuses, is absent."""
    out = {}
    for ds in days:
        found = published_partition(lake, table, partition_name(ds))
        if found is None or not found[1].get("files") or (accept is not None and not accept(ds, found[1])):
            continue
        folder, manifest = found
        out[ds] = [lake.uri(folder, f["name"]) for f in manifest["files"]]
    return out


def read_published(spark, files: dict[str, list[str]], schema=None):
    """One scan of ``published_files``, ``ds`` (a string) read from each file's path: a folder
    ``ds=...``, or its backup ``_trash/ds=....<token>``. A scan per day made a month's history
    ~10x slower to plan. ``schema``: of the data columns (no ``ds``); None: read from the files."""
    from pyspark.sql import functions as F

    reader = spark.read if schema is None else spark.read.schema(schema)
    ds = F.regexp_extract(F.col("_metadata.file_path"), r"/ds=(\d{4}-\d{2}-\d{2})[^/]*/[^/]+$", 1)
    return reader.parquet(*[uri for uris in files.values() for uri in uris]).withColumn("ds", ds)
