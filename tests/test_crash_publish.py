"""A writer killed (SIGKILL, in a real child process) right after each step of a publish: what a
reader sees before the rerun, and after it; on a local lake and on HDFS.

A reader never sees a published day disappear, never sees half of one, and after the rerun (or
``recover``, which an unchanged-content rerun calls) nothing of the dead writer is left."""

import json
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakeforge.lake import Lake
from lakeforge.lease import lease_path
from lakeforge.publish import (
    STAGING,
    TRASH,
    list_partitions,
    partition_dir,
    publish_partition,
    read_manifest,
    recover,
)
from lakeforge.spark_publish import publish_written_partitions
from tests.crash_child import DAYS, SCHEMA, TABLE, files, stage_spark_output

ROOT = Path(__file__).resolve().parents[1]
P = f"ds={DAYS[1]}"
WHERE = f"{TABLE}/{P}"


def crash(lake: Lake, scenario: str, step: str, where: str, *args: str, timeout: float = 120) -> None:
    """Run the writer in a child process that SIGKILLs itself right after ``step`` at ``where``."""
    proc = subprocess.run([sys.executable, "-m", "tests.crash_child", scenario, lake.root_uri, step, where, *args],
                          cwd=ROOT, start_new_session=True, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"


def version_at(lake: Lake, folder: str, manifest: dict) -> str:
    """The version a reader gets from a partition's files, each checked against its manifest."""
    versions = set()
    for f in manifest["files"]:
        rel = f"{folder}/{f['name']}"
        assert lake.sha256(rel) == f["sha256"], f"{rel} is not what its manifest says"
        if f["name"].endswith(".parquet"):
            with lake.fs.open_input_file(lake.path(rel)) as src:
                versions |= set(pq.read_table(src).column("label").to_pylist())
        elif f["name"] == "a.csv":
            versions.add(lake.read_bytes(rel).decode().split("\n")[1])
    assert len(versions) == 1, versions
    return versions.pop()


def reader_sees(lake: Lake, table: str = TABLE) -> dict[str, str]:
    """Every listed partition of ``table`` and the version its files hold, as a reader gets them
    (manifest, then the files it lists where ``partition_dir`` says they are)."""
    seen = {}
    for partition in list_partitions(lake, table):
        manifest = read_manifest(lake, table, partition)
        assert manifest is not None, f"{partition} is listed but has no manifest"
        seen[partition] = version_at(lake, partition_dir(lake, table, partition), manifest)
    return seen


def assert_no_leftovers(lake: Lake, table: str = TABLE) -> None:
    assert lake.listdir(f"{table}/{STAGING}") == []
    assert lake.listdir(f"{table}/{TRASH}") == []
    assert lake.listdir(f"{table}/_leases") == []


PUBLISH_STEPS = ["staged", "manifest", "trashed", "placed", "cleaned"]


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_publish_killed_after_each_step(lake: Lake, step: str):
    publish_partition(lake, TABLE, P, files("v1"))
    crash(lake, "publish", step, WHERE)
    new = PUBLISH_STEPS.index(step) >= PUBLISH_STEPS.index("placed")
    assert reader_sees(lake) == {P: "v2" if new else "v1"}
    assert lake.exists(f"{TABLE}/{P}")  # the reader put back what the dead writer had moved away
    if new:
        # The rerun finds the content unchanged and publishes nothing: recover() is what it calls.
        recover(lake, TABLE, P)
        assert_no_leftovers(lake)
    publish_partition(lake, TABLE, P, files("v2"))
    assert reader_sees(lake) == {P: "v2"}
    assert_no_leftovers(lake)


SPARK_STEPS = ["moved", "manifest", "trashed", "placed", "cleaned"]


@pytest.mark.parametrize("step", SPARK_STEPS)
def test_spark_publish_killed_after_each_step(lake: Lake, step: str):
    """The job's per-partition publish of its staged Spark output, killed on the second day."""
    publish_written_partitions(lake, TABLE, stage_spark_output(lake, TABLE, "v1"), DAYS, SCHEMA)
    crash(lake, "spark_publish", step, WHERE)
    new = SPARK_STEPS.index(step) >= SPARK_STEPS.index("placed")
    assert reader_sees(lake) == {f"ds={DAYS[0]}": "v2", P: "v2" if new else "v1"}
    publish_written_partitions(lake, TABLE, stage_spark_output(lake, TABLE, "v2"), DAYS, SCHEMA)
    assert reader_sees(lake) == {f"ds={d}": "v2" for d in DAYS}
    assert_no_leftovers(lake)


def _set_lease(lake: Lake, rel: str, **fields) -> None:
    record = json.loads(lake.read_bytes(rel))
    lake.write_bytes(rel, json.dumps({**record, **fields}).encode())


def test_a_dead_writers_unexpired_lease_serves_the_backup(lake: Lake):
    """Killed between the renames on another machine (its lease runs on): readers get the old
    version from the trash, untouched; once the lease expired the first reader puts it back."""
    publish_partition(lake, TABLE, P, files("v1"))
    crash(lake, "publish", "trashed", WHERE)
    lease = lease_path(TABLE, P)

    def iso(t):
        return datetime.fromtimestamp(t, timezone.utc).isoformat()

    _set_lease(lake, lease, machine="another-host/1", host="another-host", expires_at=iso(time.time() + 60))
    assert reader_sees(lake) == {P: "v1"}
    assert partition_dir(lake, TABLE, P).startswith(f"{TABLE}/{TRASH}/{P}.")
    assert not lake.exists(f"{TABLE}/{P}")  # a live lease: nothing was moved
    _set_lease(lake, lease, expires_at=iso(time.time() - 1))
    assert reader_sees(lake) == {P: "v1"}
    assert partition_dir(lake, TABLE, P) == f"{TABLE}/{P}"  # restored
    assert lake.listdir(f"{TABLE}/{TRASH}") == [] and lake.listdir(f"{TABLE}/_leases") == []


def test_ingest_killed_after_placing_leaves_nothing_after_an_unchanged_rerun(tmp_path):
    """The rerun of an ingest killed after its second rename finds the content unchanged: it
    publishes nothing, and must still delete the old copy the dead writer left in the trash."""
    from lakeforge.ingest import ingest_partition
    from lakeforge.pipelines.nycflights import SOURCE, simulator
    from tests.helpers import edit_flights_rows

    lake, landing = Lake(f"file://{tmp_path}/lake"), Lake(f"file://{tmp_path}/landing/nycflights")
    simulator.deliver(landing, date(2013, 1, 2), date(2013, 1, 2))
    table = SOURCE.raw_path("flights")
    assert ingest_partition(SOURCE, "flights", DAYS[1], lake=lake, landing=landing).status == "published"
    rel = f"flights/{DAYS[1]}.csv"
    simulator.write_atomically(landing, rel, edit_flights_rows(landing.read_bytes(rel).decode(), "dep_delay", "7").encode())
    crash(lake, "ingest", "placed", f"{table}/{P}", landing.root_uri, "flights", DAYS[1])
    assert ingest_partition(SOURCE, "flights", DAYS[1], lake=lake, landing=landing).status == "unchanged"
    assert_no_leftovers(lake, table)
