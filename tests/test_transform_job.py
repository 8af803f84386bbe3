"""The transform job end to end on a local lake: accounting, partial reruns, kill -9 mid-publish,
a second run beside a running one."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakeforge.ingest import ingest_partition
from lakeforge.lake import Lake
from lakeforge.pipelines.nycflights import SOURCE, simulator
from lakeforge.publish import MANIFEST, list_partitions, partition_dir, read_manifest, writing
from lakeforge.pipelines.nycflights.transform import TRANSFORM
from spark_jobs import transform_flights
from tests.helpers import jvm_scratch_in_test_tmp

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
TABLES = ["clean/flights", "clean/weather", "quarantine/flights", "quarantine/weather", "features/flights",
          "features/label_counts"]


def fingerprint(spark, lake: Lake, table: str) -> tuple[int, int]:
    """(rows, order-independent hash of every row)."""
    df = spark.read.parquet(lake.uri(table))
    row_hash = F.conv(F.substring(F.sha2(F.concat_ws("|", *[F.col(c).cast("string") for c in sorted(df.columns)]), 256), 1, 15), 16, 10)
    r = df.agg(F.count("*").alias("n"), F.sum(row_hash.cast("decimal(38,0)")).alias("h")).collect()[0]
    return r.n, int(r.h or 0)


@pytest.fixture
def raw_lake(tmp_path):
    """Three real days ingested into raw/, one bad row added to day 2's flights."""
    lake = Lake(f"file://{tmp_path}/lake")
    landing = Lake(f"file://{tmp_path}/landing/nycflights")
    simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 3))
    header, rest = landing.read_bytes("flights/2013-01-02.csv").split(b"\n", 1)
    day2 = header + b"\n2013,1,2,oops\n" + rest  # a ragged row mid-file: the clean job's business
    simulator.write_atomically(landing, "flights/2013-01-02.csv", day2)
    for ds in DAYS:
        for table in SOURCE.tables:
            ingest_partition(SOURCE, table.name, ds, lake=lake, landing=landing)
    return lake


def test_job_accounts_for_every_row(spark, raw_lake):
    result = transform_flights.run(spark, raw_lake, DAYS)
    rows = result["rows"]
    assert rows["raw_flights"] == 842 + 943 + 914 + 1
    assert rows["clean_flights"] + rows["quarantine_flights"] == rows["raw_flights"]
    assert rows["quarantine_flights"] == 1 and rows["features_flights"] == rows["clean_flights"]
    for table in TABLES:
        assert list_partitions(raw_lake, table) == [f"ds={d}" for d in DAYS]
    bad = spark.read.parquet(raw_lake.uri("quarantine/flights")).collect()
    assert [(b.raw_line, b.reason, b.ds) for b in bad] == [
        ("2013,1,2,oops", "field_count: expected 19, got 4", date(2013, 1, 2))
    ]
    m = read_manifest(raw_lake, "clean/flights", "ds=2013-01-02")
    assert m["rows"] == 943 and m["format"] == "parquet" and len(m["files"]) == 1
    for table, rows in {"planes": 3322, "airports": 1458, "airlines": 16}.items():
        assert read_manifest(raw_lake, f"clean/{table}", "ds=2013-01-01")["rows"] == rows
        assert read_manifest(raw_lake, f"quarantine/{table}", "ds=2013-01-01")["rows"] == 0
    keys = spark.read.parquet(raw_lake.uri("features/flights"))
    assert keys.select("flight_key").distinct().count() == keys.count()  # unique per partition


def test_rerun_of_one_date_touches_only_that_date(spark, raw_lake):
    transform_flights.run(spark, raw_lake, DAYS)
    before = {t: {d: raw_lake.read_bytes(f"{t}/ds={d}/{MANIFEST}") for d in DAYS} for t in TABLES}
    prints = {t: fingerprint(spark, raw_lake, t) for t in TABLES}
    transform_flights.run(spark, raw_lake, ["2013-01-02"])
    for t in TABLES:
        assert raw_lake.read_bytes(f"{t}/ds=2013-01-01/{MANIFEST}") == before[t]["2013-01-01"]
        assert raw_lake.read_bytes(f"{t}/ds=2013-01-03/{MANIFEST}") == before[t]["2013-01-03"]
        assert raw_lake.read_bytes(f"{t}/ds=2013-01-02/{MANIFEST}") != before[t]["2013-01-02"]
        assert fingerprint(spark, raw_lake, t) == prints[t]  # identical rows after the rerun


def test_history_counts_missing_or_stale_are_counted_again(spark, raw_lake):
    """A daily run reads the days before it as their published label counts; a day without them
    (a lake from before they existed) or whose clean flights were republished since is counted
    again from its clean flights, never read stale: the features equal the backfill's."""
    transform_flights.run(spark, raw_lake, DAYS)
    features = fingerprint(spark, raw_lake, "features/flights")
    counts = "features/label_counts"
    raw_lake.delete(f"{counts}/ds=2013-01-01")
    # day 2's counts: wrong numbers (day 1's file under day 2's name), from "another" clean version
    manifest = read_manifest(raw_lake, counts, "ds=2013-01-02")
    day1 = read_manifest(raw_lake, "clean/flights", "ds=2013-01-01")["content_sha256"]
    assert manifest["clean_sha256"] != day1 and manifest["cutoff_s"] == 7200
    wrong = spark.read.parquet(raw_lake.uri(counts, "ds=2013-01-02")).withColumn("n", F.col("n") + 1)
    wrong.coalesce(1).write.parquet(raw_lake.uri("wrong"))
    target = f"{counts}/ds=2013-01-02/{manifest['files'][0]['name']}"
    raw_lake.delete(target)
    raw_lake.move(next(f"wrong/{f.path}" for f in raw_lake.files("wrong") if f.path.endswith(".parquet")), target)
    raw_lake.write_bytes(f"{counts}/ds=2013-01-02/{MANIFEST}", json.dumps({**manifest, "clean_sha256": day1}).encode())

    transform_flights.run(spark, raw_lake, ["2013-01-03"])
    assert fingerprint(spark, raw_lake, "features/flights") == features
    # the control: the same wrong counts with a current manifest are read, and move the features
    raw_lake.write_bytes(f"{counts}/ds=2013-01-02/{MANIFEST}", json.dumps(manifest).encode())
    transform_flights.run(spark, raw_lake, ["2013-01-03"])
    assert fingerprint(spark, raw_lake, "features/flights") != features


REFERENCE = ["planes", "airports", "airlines"]


def test_reference_snapshots_are_cleaned_once_per_content(spark, raw_lake, tmp_path):
    """A snapshot delivered once serves every daily run: cleaned by the first, read back by the
    next; a re-delivery with other content, or other cleaning code, cleans it again."""
    def manifests(layer: str) -> dict[str, bytes]:
        return {t: raw_lake.read_bytes(f"{layer}/{t}/ds=2013-01-01/{MANIFEST}") for t in REFERENCE}

    first = transform_flights.run(spark, raw_lake, ["2013-01-01"])
    assert {t: info["reused"] for t, info in first["reference"].items()} == dict.fromkeys(REFERENCE, False)
    cleaned, quarantined = manifests("clean"), manifests("quarantine")
    features = fingerprint(spark, raw_lake, "features/flights")

    second = transform_flights.run(spark, raw_lake, ["2013-01-01"])
    assert {t: info["reused"] for t, info in second["reference"].items()} == dict.fromkeys(REFERENCE, True)
    assert second["reference"]["airports"]["rows"] == 1458
    assert manifests("clean") == cleaned and manifests("quarantine") == quarantined  # not republished
    assert fingerprint(spark, raw_lake, "features/flights") == features  # same joins from the read-back rows

    # Re-delivered airports with one duplicated key: a new raw content, cleaned again (1 quarantined).
    landing = Lake(f"file://{tmp_path}/landing/nycflights")
    airports = simulator.snapshot_file("airports")
    rows = airports.rstrip(b"\n")
    simulator.write_atomically(landing, "airports/2013-01-01.csv", rows + b"\n" + rows.rsplit(b"\n", 1)[1] + b"\n")
    assert ingest_partition(SOURCE, "airports", "2013-01-01", lake=raw_lake, landing=landing).status == "published"
    third = transform_flights.run(spark, raw_lake, ["2013-01-01"])
    assert third["reference"]["airports"] == {"ds": "2013-01-01", "rows": 1457, "reused": False}
    assert read_manifest(raw_lake, "quarantine/airports", "ds=2013-01-01")["rows"] == 2  # both copies of the key
    assert third["reference"]["planes"]["reused"] and manifests("clean")["planes"] == cleaned["planes"]

    # Other cleaning code (its fingerprint recorded in the manifests): cleaned again.
    manifest = read_manifest(raw_lake, "clean/planes", "ds=2013-01-01")
    raw_lake.write_bytes(f"clean/planes/ds=2013-01-01/{MANIFEST}",
                         json.dumps({**manifest, "cleaned_by": "an older version"}).encode())
    fourth = transform_flights.run(spark, raw_lake, ["2013-01-01"])
    assert fourth["reference"]["planes"] == {"ds": "2013-01-01", "rows": 3322, "reused": False}
    assert read_manifest(raw_lake, "clean/planes", "ds=2013-01-01")["cleaned_by"] != "an older version"


def _consistent(lake: Lake, table: str) -> None:
    """Every partition is whole: exactly the files its manifest lists, with those sizes."""
    for part in list_partitions(lake, table):
        manifest = read_manifest(lake, table, part)
        assert manifest is not None, f"{table}/{part} has no manifest"
        on_disk = {f.path: f.size for f in lake.files(partition_dir(lake, table, part)) if f.path != MANIFEST}
        assert on_disk == {f["name"]: f["bytes"] for f in manifest["files"]}, f"{table}/{part} is torn"


ROOT = Path(__file__).resolve().parents[1]


def test_a_run_killed_between_the_renames_of_a_day_loses_no_day(spark, raw_lake):
    """The job killed (kill -9, its JVM too) right after moving clean/flights' published
    2013-01-02 to the trash: readers still get every day of every table, whole and unchanged;
    the rerun publishes the same rows and leaves nothing of the dead run. (Kills after every step
    of the publish, on both lakes: tests/test_crash_publish.py.)"""
    transform_flights.run(spark, raw_lake, DAYS)
    prints = {t: fingerprint(spark, raw_lake, t) for t in TABLES}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.crash_child", "transform", raw_lake.root_uri, "trashed",
         "clean/flights/ds=2013-01-02", "--dates", f"{DAYS[0]}..{DAYS[-1]}"],
        env={**os.environ, "LAKEFORGE_SPARK_MASTER": "local[2]", **jvm_scratch_in_test_tmp()},
        cwd=ROOT, capture_output=True, text=True, start_new_session=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not raw_lake.exists("clean/flights/ds=2013-01-02")  # where the run died
    for table in TABLES:
        assert list_partitions(raw_lake, table) == [f"ds={d}" for d in DAYS]
        _consistent(raw_lake, table)
        assert fingerprint(spark, raw_lake, table) == prints[table]

    transform_flights.run(spark, raw_lake, DAYS)  # the retry
    for table in TRANSFORM.written_tables():
        assert raw_lake.listdir(f"{table}/_staging") == [] and not raw_lake.exists(f"{table}/_trash")
        assert raw_lake.listdir(f"{table}/_leases") == []
    for table in TABLES:
        _consistent(raw_lake, table)
        assert fingerprint(spark, raw_lake, table) == prints[table]


def test_a_second_run_fails_at_once_and_touches_nothing(raw_lake):
    """A run of the job while another writes one of its tables exits before Spark starts, naming
    the other run; the first run's staging and lease are untouched, and the second gives back the
    leases it had taken."""
    staged = "features/flights/_staging/run-first/ds=2013-01-01/part-0.parquet"
    with writing(raw_lake, ["features/flights"], run_id="manual__first"):
        lease = raw_lake.read_bytes("features/flights/_leases/_table.json")
        raw_lake.write_bytes(staged, b"the first run's output")
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "spark_jobs.transform_flights", "--dates", DAYS[0], "--lake", raw_lake.root_uri,
             "--run-id", "scheduled__second"],
            env={**os.environ, "LAKEFORGE_SPARK_MASTER": "local[2]"}, cwd=ROOT, capture_output=True, text=True,
            timeout=300,
        )
        took = time.monotonic() - started
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("transform_flights: table features/flights is being written by run manual__first since "), last
        assert "SparkContext" not in proc.stderr and took < 60, took
        assert raw_lake.read_bytes(staged) == b"the first run's output"
        assert raw_lake.read_bytes("features/flights/_leases/_table.json") == lease
        for table in TRANSFORM.written_tables():
            if table != "features/flights":
                assert raw_lake.listdir(f"{table}/_leases") == [], table
