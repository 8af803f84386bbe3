"""Writer leases (lakeforge.lease) with real processes, on a local lake and on HDFS: a second writer
fails at once and touches nothing; a dead writer's lease is taken over (by exactly one of many);
renewal keeps a long writer's lease; a writer that lost its lease renames nothing more."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lakeforge.lake import Lake
from lakeforge.lease import LeaseHeld, LeaseLost, create_exclusive, hold, lease_path
from lakeforge.publish import (
    STAGING,
    TRASH,
    PartitionFile,
    partition_dir,
    publish_partition,
    read_manifest,
    recover,
)
from tests.helpers import stop_process_groups

ROOT = Path(__file__).resolve().parents[1]
T, P = "clean/flights", "ds=2013-01-01"


def child(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.lease_child", *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kwargs)


def write(lake: Lake, run_id: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.lease_child", "write", lake.root_uri, T, run_id, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def wait_held(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "HELD", f"{line!r}\n{proc.stderr.read() if proc.poll() is not None else ''}"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def foreign(table: str, partition: str | None, run_id: str, expires: float) -> bytes:
    """The lease record of a writer on another machine."""
    return json.dumps({"table": table, "partition": partition, "run_id": run_id, "host": "elsewhere", "pid": 1,
                       "machine": "another-boot/1", "pid_start": "1", "process": "x", "token": f"1-{run_id}",
                       "acquired_at": iso(expires - 60), "renewed_at": iso(expires - 60),
                       "expires_at": iso(expires), "ttl_s": 60}).encode()


def test_create_exclusive_creates_once(lake: Lake):
    assert create_exclusive(lake, "x/_leases/a.json", b"first")
    assert not create_exclusive(lake, "x/_leases/a.json", b"second")
    assert lake.read_bytes("x/_leases/a.json") == b"first"
    assert lake.listdir("x/_leases") == ["a.json"]  # no temporary files left


def test_a_second_writer_fails_at_once_and_touches_nothing(lake: Lake):
    publish_partition(lake, T, P, [PartitionFile("a.parquet", b"v1")])
    first = child("hold", lake.root_uri, T, "run-A")
    try:
        wait_held(first)  # run-A is between its two renames of ds=2013-01-01
        lease = lake.read_bytes(lease_path(T))
        started = time.monotonic()
        second = write(lake, "run-B")
        assert second.returncode == 4, second.stderr
        assert f"table {T} is being written by run run-A since " in second.stderr
        assert time.monotonic() - started < 30  # at once: a Python start-up, no waiting on the lease
        # Nothing of run-A was touched: its lease, its staging, its backup (not "recovered").
        assert lake.read_bytes(lease_path(T)) == lease
        assert lake.listdir(f"{T}/{STAGING}") == ["run-run-A"]
        assert not lake.exists(f"{T}/{P}") and lake.listdir(f"{T}/{TRASH}") == [f"{P}.1-run-A"]
        with pytest.raises(LeaseHeld, match="being written by run run-A"):
            recover(lake, T, P)
        # Readers meanwhile get the published version from where it is.
        assert read_manifest(lake, T, P)["files"][0]["name"] == "a.parquet"
        assert partition_dir(lake, T, P) == f"{TRASH_DIR}/{P}.1-run-A"
        assert not lake.exists(f"{T}/{P}")
        first.stdin.write("release\n")
        first.stdin.flush()
        assert first.wait(timeout=60) == 0, first.stderr.read()
    finally:
        stop_process_groups([first])
    assert lake.listdir(f"{T}/_leases") == []
    assert write(lake, "run-B").returncode == 0  # free again
    assert lake.read_bytes(f"{T}/{P}/a.parquet") == b"v1"


TRASH_DIR = f"{T}/{TRASH}"


def test_a_killed_writers_lease_is_taken_over_and_its_leftovers_recovered(lake: Lake):
    publish_partition(lake, T, P, [PartitionFile("a.parquet", b"v1")])
    first = child("hold", lake.root_uri, T, "run-A", "600")
    try:
        wait_held(first)
        os.killpg(first.pid, signal.SIGKILL)  # between its renames, its lease valid for 10 minutes
        first.wait(timeout=30)
    finally:
        stop_process_groups([first])
    second = write(lake, "run-B")  # on this machine a dead owner is seen at once
    assert second.returncode == 0, second.stderr
    assert "took over the stale lease" in second.stderr and "run run-A" in second.stderr
    assert lake.read_bytes(f"{T}/{P}/a.parquet") == b"v1"  # run-B's start put it back
    assert lake.listdir(f"{T}/{STAGING}") == [] and lake.listdir(f"{T}/{TRASH}") == []
    assert lake.listdir(f"{T}/_leases") == []


def test_exactly_one_of_many_takes_over_a_stale_lease(lake: Lake):
    lake.write_bytes(lease_path(T), foreign(T, None, "run-dead", expires=time.time() - 5))
    start = time.time() + (6 if lake.root_uri.startswith("hdfs") else 4)  # after every child's imports
    procs = [subprocess.Popen([sys.executable, "-m", "tests.lease_child", "write", lake.root_uri, T, f"run-{i}", str(start)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
             for i in range(4)]
    try:
        results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    finally:
        stop_process_groups(procs)
    assert time.time() > start
    winners = [i for i, (rc, out, _) in enumerate(results) if rc == 0 and out.strip() == "WON"]
    assert len(winners) == 1, results
    for i, (rc, _, err) in enumerate(results):
        if i != winners[0]:
            assert rc == 4 and f"being written by run run-{winners[0]} since" in err, (i, rc, err)
    assert lake.listdir(f"{T}/_leases") == []


def test_renewal_keeps_a_long_writers_lease(lake: Lake):
    with hold(lake, T, run_id="long", ttl=1.2) as lease:
        first = json.loads(lake.read_bytes(lease_path(T)))["expires_at"]
        time.sleep(2.5)  # twice the lease's ttl
        lease.check()
        renewed = json.loads(lake.read_bytes(lease_path(T)))
        assert renewed["expires_at"] > first and renewed["token"] == lease.token
        other = write(lake, "run-B")
        assert other.returncode == 4 and "being written by run long since" in other.stderr
    assert lake.listdir(f"{T}/_leases") == []


def test_a_writer_that_lost_its_lease_renames_nothing(lake: Lake):
    publish_partition(lake, T, P, [PartitionFile("a.parquet", b"v1")])
    with hold(lake, T, run_id="slow", ttl=1.2) as lease:
        # Another writer took the table over (as if this one had stalled past its lease).
        theirs = foreign(T, None, "run-new", expires=time.time() + 60)
        lake.write_bytes(lease_path(T), theirs)
        deadline = time.monotonic() + 10
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "taken over by run run-new" in lease.lost
        with pytest.raises(LeaseLost, match="lost"):
            publish_partition(lake, T, P, [PartitionFile("a.parquet", b"v2")])
    assert lake.read_bytes(f"{T}/{P}/a.parquet") == b"v1"
    assert lake.read_bytes(lease_path(T)) == theirs  # not released: it is not this writer's
    assert lake.listdir(f"{T}/{STAGING}") == []


def test_table_and_partition_leases_exclude_each_other(lake: Lake):
    lake.write_bytes(lease_path(T, P), foreign(T, P, "ingest-1", expires=time.time() + 60))
    with pytest.raises(LeaseHeld, match=rf"table {T} is being written by run ingest-1 \({P}\) since"):
        with hold(lake, T):
            pass
    assert lake.listdir(f"{T}/_leases") == [f"{P}.json"]  # its own attempt taken back
    lake.delete(lease_path(T, P))
    lake.write_bytes(lease_path(T), foreign(T, None, "transform-1", expires=time.time() + 60))
    with pytest.raises(LeaseHeld, match=rf"table {T} \({P}\) is being written by run transform-1 since"):
        with hold(lake, T, P):
            pass
    assert lake.listdir(f"{T}/_leases") == ["_table.json"]
    # Expired: a dead writer's lease of the other kind is cleared out of the way.
    lake.write_bytes(lease_path(T), foreign(T, None, "transform-1", expires=time.time() - 1))
    with hold(lake, T, P):
        assert lake.listdir(f"{T}/_leases") == [f"{P}.json"]
    assert lake.listdir(f"{T}/_leases") == []


def test_nested_holds_reuse_the_lease(lake: Lake):
    with hold(lake, T, run_id="job") as outer:
        with hold(lake, T, P) as inner:
            assert inner is outer
        publish_partition(lake, T, P, [PartitionFile("a.parquet", b"v1")])
        assert lake.listdir(f"{T}/_leases") == ["_table.json"]
    assert lake.listdir(f"{T}/_leases") == []


def test_the_quality_summary_waits_for_another_jobs_update(local_lake):
    """The transform and the scoring job both fold verdicts into quality/_summary: while another
    process holds its lease (2 s), an update waits and then lands, keeping the other's verdicts;
    with no patience it fails naming the holder instead of overwriting."""
    from lakeforge.quality.evidence import SUMMARY_TABLE, read_summary, update_summary

    def record(table: str) -> dict:
        return {"table": table, "ds": "2013-01-01", "status": "passed", "failed": [], "warnings": [],
                "run_id": f"run-{table}", "validated_at": "2026-12-05T00:00:00+00:00", "evidence": "x"}

    update_summary(local_lake, [record("clean/flights")])
    other = subprocess.Popen([sys.executable, "-m", "tests.lease_child", "write", local_lake.root_uri, SUMMARY_TABLE,
                              "scoring-run"], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert other.stdout.readline().strip() == "WON", other.stderr.read()
        with pytest.raises(LeaseHeld, match="scoring-run"):
            update_summary(local_lake, [record("features/flights")], wait_s=0)
        started = time.monotonic()
        update_summary(local_lake, [record("predictions/flights")])
        assert time.monotonic() - started > 0.5  # it waited for the other writer
    finally:
        stop_process_groups([other])
    assert sorted(read_summary(local_lake)["tables"]) == ["clean/flights", "predictions/flights"]
    assert local_lake.listdir(f"{SUMMARY_TABLE}/_leases") == []
