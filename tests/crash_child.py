"""A writer that kills itself (SIGKILL, no cleanup) right after one step of a publish.

    python -m tests.crash_child SCENARIO LAKE_URI STEP WHERE [ARGS...]

STEP and WHERE are what ``lakeforge.publish.after_step`` is called with ("trashed",
"raw/t/ds=2013-01-02"). The child must be started in its own session (``start_new_session``):
it kills its whole process group, a Spark JVM included, as ``kill -9`` of a task would. If the
step never comes it exits 3. The scenarios' data are built by the functions below, which the
tests use for what they expect.
"""

from __future__ import annotations

import os
import signal
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from lakeforge.lake import Lake
from lakeforge.publish import PartitionFile

TABLE = "raw/t"
DAYS = ["2013-01-01", "2013-01-02"]
SCHEMA = pa.schema([("x", pa.int64()), ("label", pa.string())])


def files(version: str) -> list[PartitionFile]:
    """A partition's files in one version (v2 has a file more than v1)."""
    out = [PartitionFile("a.csv", f"x\n{version}\n".encode(), {"rows": 1})]
    if version == "v2":
        out.append(PartitionFile("b.csv", b"x\nmore\n", {"rows": 1}))
    return out


def stage_spark_output(lake: Lake, table: str, version: str, days=DAYS) -> str:
    """What a Spark job's partitioned write leaves in its run staging folder, without Spark."""
    from lakeforge.spark_publish import new_run_staging

    staging = new_run_staging(lake, table)
    for i, ds in enumerate(days):
        n = i + (3 if version == "v2" else 1)  # day 1: 1 or 3 rows, day 2: 2 or 4
        rows = pa.table({"x": list(range(n)), "label": [version] * n}, schema=SCHEMA)
        lake.makedirs(f"{staging}/ds={ds}")
        with lake.fs.open_output_stream(lake.path(f"{staging}/ds={ds}/part-00000.parquet")) as out:
            pq.write_table(rows, out)
    return staging


def kill_after(step: str, where: str) -> None:
    from lakeforge import publish

    def hook(done: str, at: str) -> None:
        if done == step and at == where:
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    publish.after_step = hook


def main(argv: list[str]) -> None:
    scenario, uri, step, where, *args = argv
    lake = Lake(uri)
    kill_after(step, where)
    if scenario == "publish":
        from lakeforge.publish import publish_partition

        publish_partition(lake, TABLE, where.rsplit("/", 1)[1], files("v2"), {"dag_run_id": "crashing"})
    elif scenario == "spark_publish":
        from lakeforge.spark_publish import publish_written_partitions

        staging = stage_spark_output(lake, TABLE, "v2")
        publish_written_partitions(lake, TABLE, staging, DAYS, SCHEMA, meta={"dag_run_id": "crashing"})
    elif scenario == "ingest":
        from lakeforge.ingest import ingest_partition
        from lakeforge.pipelines.nycflights import SOURCE

        landing, table, ds = args
        ingest_partition(SOURCE, table, ds, lake=lake, landing=Lake(landing), run_id="crashing")
    elif scenario == "transform":
        from spark_jobs import transform_flights

        transform_flights.main(["--lake", uri, "--run-id", "crashing", *args])
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    sys.exit(3)  # the step never came


if __name__ == "__main__":
    main(sys.argv[1:])
