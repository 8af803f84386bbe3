"""Publish what a Spark job wrote, partition by partition, through lakeforge's atomic swap.

A job writes its whole output once, partitioned by ``ds``, into ``<table>/_staging/run-<token>/``
(one Spark write, one pass). Each ``ds=...`` directory is then swapped into place with a manifest
(``lakeforge.publish``): partitions outside the run's dates are never touched, a run killed
midway leaves every partition either old or new, and readers never see a half-written one.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from lakeforge.lake import Lake
from lakeforge.publish import STAGING, partition_name, publish_staged, recover


def new_run_staging(lake: Lake, table: str) -> str:
    """A fresh staging folder for one job's write of a table; stale ones of dead runs go first.

    One transform application per table at a time is assumed (its DAG has max_active_runs=1).
    """
    for name in lake.listdir(f"{table}/{STAGING}"):
        if name.startswith("run-"):
            lake.delete(f"{table}/{STAGING}/{name}")
    return f"{table}/{STAGING}/run-{uuid.uuid4().hex[:12]}"


def parquet_metadata(lake: Lake, rel: str) -> "pq.FileMetaData":
    """A Parquet file's footer (row counts, row groups, column statistics); the data is not read."""
    with lake.fs.open_input_file(lake.path(rel)) as f:
        return pq.read_metadata(f)


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
    manifests = {}
    for ds in dates:
        partition = partition_name(ds)
        recover(lake, table, partition)
        written = f"{run_staging}/{partition}"
        if not lake.exists(written):  # no rows that day (e.g. nothing quarantined): publish it empty
            write_empty_parquet(lake, written, schema)
        staged = f"{table}/{STAGING}/{partition}.{uuid.uuid4().hex[:12]}"
        lake.move(written, staged)
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
    return manifests
