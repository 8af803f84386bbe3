import errno
import hashlib
import json
import re

import pytest

from lakeforge.lake import Lake
from lakeforge.lease import LeaseError
from lakeforge.publish import (
    MANIFEST,
    STAGING,
    TRASH,
    PartitionFile,
    PublishError,
    list_partitions,
    new_staging,
    publish_partition,
    publish_partitions,
    read_manifest,
    recover,
)
from lakeforge.spark_publish import publish_written_partitions
from tests.crash_child import DAYS, SCHEMA, stage_spark_output
from tests.helpers import FullDisk, ShortReads

T, P = "raw/t", "ds=2013-01-01"


def _publish(lake, payload: bytes, **meta):
    return publish_partition(lake, T, P, [PartitionFile("a.csv", payload, {"rows": 1})], meta)


def test_publish_writes_files_and_manifest(lake: Lake):
    m = _publish(lake, b"h\n1\n", ingested_at="t0")
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"h\n1\n"
    on_disk = json.loads(lake.read_bytes(f"{T}/{P}/{MANIFEST}"))
    assert on_disk == m
    assert m["files"][0]["bytes"] == 4 and m["rows"] == 1 and m["ingested_at"] == "t0"
    assert m["files"][0]["sha256"] == hashlib.sha256(b"h\n1\n").hexdigest()
    assert list_partitions(lake, T) == [P]
    # Nothing left over in staging or trash.
    assert lake.listdir(f"{T}/{STAGING}") == [] and lake.listdir(f"{T}/{TRASH}") == []


def test_a_short_read_is_never_hashed_into_a_manifest(lake: Lake):
    lake.fs = ShortReads(lake.fs, "open_input_stream", short=2, name="a.csv")
    m = _publish(lake, b"h\n1\n")
    assert lake.fs.short == 0  # both short reads happened, and the file was read again
    assert m["files"][0]["sha256"] == hashlib.sha256(b"h\n1\n").hexdigest()
    lake.fs.short = 10**6  # a file that stays short: a clear error, not a wrong hash
    with pytest.raises(OSError, match="read 0 of its 4 bytes"):
        lake.sha256(f"{T}/{P}/a.csv", size=4, timeout=0.05)


def test_republish_replaces_whole_partition(lake: Lake):
    publish_partition(lake, T, P, [PartitionFile("a.csv", b"1"), PartitionFile("b.csv", b"2")])
    _publish(lake, b"3")
    assert sorted(f.path for f in lake.files(f"{T}/{P}")) == [MANIFEST, "a.csv"]
    assert read_manifest(lake, T, P)["files"][0]["sha256"] == hashlib.sha256(b"3").hexdigest()


class Boom(RuntimeError):
    pass


def test_failed_write_leaves_previous_version(lake: Lake, monkeypatch):
    _publish(lake, b"old\n")
    before = read_manifest(lake, T, P)
    real_write = Lake.write_bytes

    def failing_write(self, rel, data, make_parents=True):
        if rel.endswith("b.csv"):
            raise Boom("disk full")
        return real_write(self, rel, data, make_parents)

    monkeypatch.setattr(Lake, "write_bytes", failing_write)
    with pytest.raises(PublishError, match=r"writing .*/b\.csv failed: Boom: disk full") as err:
        publish_partition(lake, T, P, [PartitionFile("a.csv", b"new\n"), PartitionFile("b.csv", b"x")])
    assert isinstance(err.value.__cause__, Boom)
    monkeypatch.undo()
    assert read_manifest(lake, T, P) == before
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n"
    assert lake.listdir(f"{T}/{STAGING}") == []


def test_failed_swap_rolls_back(lake: Lake, monkeypatch):
    _publish(lake, b"old\n")
    real_move = Lake.move

    def failing_move(self, src, dst):
        if STAGING in src:
            raise Boom("namenode went away")
        return real_move(self, src, dst)

    monkeypatch.setattr(Lake, "move", failing_move)
    with pytest.raises(PublishError, match="moving into place .* failed: Boom: namenode went away"):
        _publish(lake, b"new\n")
    monkeypatch.undo()
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n"


def test_crash_between_renames_is_recovered(lake: Lake):
    """A writer killed after moving the old version to trash: the next publish restores it first
    (readers do too: tests/test_crash_publish.py kills real writers after every step)."""
    _publish(lake, b"old\n")
    lake.move(f"{T}/{P}", f"{T}/{TRASH}/{P}.1-dead")  # what the dead writer got done
    staging = new_staging(lake, T, P)  # any next writer starts with recovery
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n"
    assert lake.listdir(f"{T}/{TRASH}") == []
    lake.delete(staging)


def test_a_half_deleted_backup_is_never_restored(lake: Lake):
    """A backup whose manifest is gone (a local delete walks the tree; it was being deleted) is
    garbage, never the partition."""
    _publish(lake, b"v1\n")
    lake.write_bytes(f"{T}/{TRASH}/{P}.1-older/a.csv", b"half")  # no manifest
    lake.move(f"{T}/{P}", f"{T}/{TRASH}/{P}.0-whole")
    assert read_manifest(lake, T, P)["files"][0]["sha256"] == hashlib.sha256(b"v1\n").hexdigest()
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"v1\n"
    assert lake.listdir(f"{T}/{TRASH}") == []


def test_stale_staging_is_invisible_and_cleaned(lake: Lake):
    _publish(lake, b"v1\n")
    lake.write_bytes(f"{T}/{STAGING}/{P}.0-dead/a.csv", b"half")  # a writer died mid-write
    assert list_partitions(lake, T) == [P]
    assert recover(lake, T, P) is False
    assert lake.listdir(f"{T}/{STAGING}") == []


def test_rejects_bad_file_names(lake: Lake):
    with pytest.raises(ValueError, match="unique"):
        publish_partition(lake, T, P, [PartitionFile("a", b""), PartitionFile("a", b"")])
    with pytest.raises(ValueError):
        publish_partition(lake, T, P, [PartitionFile(MANIFEST, b"{}")])


def test_publish_partitions_is_publish_partition_for_many(lake: Lake, monkeypatch):
    """The batch publish (evidence for a year of days) writes exactly what one-by-one publishing
    writes, replaces old versions, recovers what a dead writer left, and a failing partition
    keeps its previous version while the others publish."""
    parts = {f"ds=2013-01-{d:02d}": [PartitionFile("v.json", f"{d}".encode(), {"rows": d}),
                                     PartitionFile("r.html", b"<p>")] for d in range(1, 6)}
    publish_partition(lake, "one/t", "ds=2013-01-01", parts["ds=2013-01-01"], {"status": "passed"})
    manifests = publish_partitions(lake, "many/t", parts, {p: {"status": "passed"} for p in parts})
    strip = lambda m: {k: v for k, v in m.items() if k not in ("published_at", "table")}  # noqa: E731
    assert strip(manifests["ds=2013-01-01"]) == strip(read_manifest(lake, "one/t", "ds=2013-01-01"))
    assert list_partitions(lake, "many/t") == sorted(parts)
    for p, m in manifests.items():
        assert read_manifest(lake, "many/t", p) == m
        assert lake.read_bytes(f"many/t/{p}/v.json") == parts[p][0].data
        assert {f["name"]: f["sha256"] for f in m["files"]} == {
            name: lake.sha256(f"many/t/{p}/{name}") for name in ("v.json", "r.html")}

    # A dead writer left ds=2013-01-02 in the trash and a half-written staging of ds=2013-01-03.
    lake.move("many/t/ds=2013-01-02", f"many/t/{TRASH}/ds=2013-01-02.1-dead")
    lake.write_bytes(f"many/t/{STAGING}/ds=2013-01-03.0-dead/v.json", b"half")
    real_write = Lake.write_bytes

    def failing_write(self, rel, data, make_parents=True):
        if "ds=2013-01-04" in rel:
            raise Boom("disk full")
        return real_write(self, rel, data, make_parents)

    monkeypatch.setattr(Lake, "write_bytes", failing_write)
    new = {p: [PartitionFile("v.json", b"new")] for p in parts}
    with pytest.raises(PublishError, match="many/t/ds=2013-01-04"):
        publish_partitions(lake, "many/t", new)
    monkeypatch.undo()
    assert lake.read_bytes("many/t/ds=2013-01-04/v.json") == b"4"  # the failed one: old version, whole
    assert sorted(f.path for f in lake.files("many/t/ds=2013-01-04")) == [MANIFEST, "r.html", "v.json"]
    for p in set(parts) - {"ds=2013-01-04"}:
        assert sorted(f.path for f in lake.files(f"many/t/{p}")) == [MANIFEST, "v.json"]
        assert lake.read_bytes(f"many/t/{p}/v.json") == b"new"
    assert lake.listdir(f"many/t/{TRASH}") == [] and lake.listdir(f"many/t/{STAGING}") == []


def test_a_full_disk_names_the_partition_and_the_file(lake: Lake):
    """Disk full during a publish: the error names the lake URIs of the partition and of the
    file being written, keeps ENOSPC, and the previous version stays."""
    _publish(lake, b"old\n")
    real = lake.fs
    lake.fs = FullDisk(real, free=10, under=f"/{STAGING}/")  # a.csv fits, b.csv does not
    with pytest.raises(PublishError) as err:
        publish_partition(lake, T, P, [PartitionFile("a.csv", b"new\n"), PartitionFile("b.csv", b"0123456789")])
    lake.fs = real
    message = str(err.value)
    assert message.startswith(f"publishing {lake.uri(T, P)}: writing {lake.uri(T, STAGING)}/{P}.")
    assert re.search(r"/b\.csv failed: OSError: \[Errno 28\] No space left on device$", message), message
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n" and lake.listdir(f"{T}/{STAGING}") == []

    # The manifest does not fit: named too.
    lake.fs = FullDisk(real, free=len(b"new\n"), under=f"/{STAGING}/")
    with pytest.raises(PublishError, match=rf"publishing {re.escape(lake.uri(T, P))}: writing .*/_manifest\.json failed"):
        _publish(lake, b"new\n")
    lake.fs = real
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n" and lake.listdir(f"{T}/{STAGING}") == []

    # Full before anything was staged: taking the writer lease fails, naming it.
    lake.fs = FullDisk(real, free=0)
    with pytest.raises(LeaseError, match=rf"cannot take the writer lease {re.escape(lake.uri(T, '_leases', P))}"
                                         r"\.json: OSError: \[Errno 28\] No space left on device"):
        _publish(lake, b"new\n")
    lake.fs = real
    assert lake.read_bytes(f"{T}/{P}/a.csv") == b"old\n" and lake.listdir(f"{T}/_leases") == []


def test_a_full_disk_during_the_spark_publish_names_the_partition(lake: Lake):
    """The job's publish writes a manifest per day (and an empty Parquet file for a day without
    rows): a full disk names the day it was publishing and the file; published days stay whole."""
    table = "clean/t"
    publish_written_partitions(lake, table, stage_spark_output(lake, table, "v1"), DAYS, SCHEMA)
    staging = stage_spark_output(lake, table, "v2", days=DAYS[:1])  # no rows on the second day
    real = lake.fs
    lake.fs = FullDisk(real, free=0, under=f"{lake.path(staging)}/")  # only the empty file lands there
    with pytest.raises(PublishError) as err:
        publish_written_partitions(lake, table, staging, DAYS, SCHEMA)
    lake.fs = real
    assert str(err.value).startswith(f"publishing {lake.uri(table, 'ds=' + DAYS[1])}: writing "
                                     f"{lake.uri(staging, 'ds=' + DAYS[1], 'part-00000-empty.parquet')} failed")
    assert "No space left on device" in str(err.value) and err.value.errno == errno.ENOSPC
    assert read_manifest(lake, table, f"ds={DAYS[0]}")["rows"] == 3  # published before the disk filled
    assert read_manifest(lake, table, f"ds={DAYS[1]}")["rows"] == 2  # the previous version, whole

    staging = stage_spark_output(lake, table, "v1")
    lake.fs = FullDisk(real, free=0, under=f"/{STAGING}/ds=")  # manifests are written there
    with pytest.raises(PublishError, match=rf"^publishing {re.escape(lake.uri(table, 'ds=' + DAYS[0]))}: writing "
                                           rf"{re.escape(lake.uri(table, STAGING))}/ds={DAYS[0]}\.\w+/_manifest\.json failed"):
        publish_written_partitions(lake, table, staging, DAYS, SCHEMA)
    lake.fs = real
    assert read_manifest(lake, table, f"ds={DAYS[0]}")["rows"] == 3


def test_a_parquet_footer_that_reads_short_right_after_the_write_is_read_again(local_lake, monkeypatch):
    """HDFS once gave a reader 0 bytes of a Parquet file Spark had just closed (its last block not
    yet readable): the footer read backs off until the file reads whole, and names the file if it
    never does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakeforge import spark_publish

    local_lake.makedirs("t")
    with local_lake.fs.open_output_stream(local_lake.path("t/part-0.parquet")) as out:
        pq.write_table(pa.table({"x": [1, 2, 3]}), out)
    real, calls = pq.read_metadata, []

    def short_twice(f, *args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise pa.ArrowInvalid("Parquet file size is 0 bytes")
        return real(f, *args, **kwargs)

    monkeypatch.setattr(spark_publish.pq, "read_metadata", short_twice)
    assert spark_publish.parquet_rows(local_lake, "t/part-0.parquet") == 3 and len(calls) == 3
    monkeypatch.setattr(spark_publish.pq, "read_metadata", lambda f: (_ for _ in ()).throw(pa.ArrowInvalid("bad")))
    with pytest.raises(OSError, match=r"t/part-0.parquet: no readable Parquet footer \(bad\) after 0s"):
        spark_publish.parquet_metadata(local_lake, "t/part-0.parquet", timeout=0.05)
