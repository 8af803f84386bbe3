"""Landing -> raw ingestion, against a local lake and a real HDFS lake."""

import hashlib
import json
from datetime import date

import pytest

from lakeforge.ingest import NoDelivery, RejectedDelivery, ingest_partition
from lakeforge.lake import Lake
from lakeforge.pipelines.nycflights import SOURCE, simulator
from lakeforge.publish import MANIFEST, list_partitions

D1, D2 = date(2013, 1, 1), date(2013, 1, 2)


def ingest(lake, landing, table, ds, **kw):
    return ingest_partition(SOURCE, table, ds, lake=lake, landing=landing, **kw)


def manifest_bytes(lake, table, ds):
    return lake.read_bytes(f"raw/{table}/ds={ds}/{MANIFEST}")


def test_publishes_day_with_manifest(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1)
    source_bytes = landing.read_bytes("flights/2013-01-01.csv")
    r = ingest(lake, landing, "flights", "2013-01-01", run_id="scheduled__2013-01-01")
    assert r.status == "published"
    assert lake.read_bytes("raw/flights/ds=2013-01-01/2013-01-01.csv") == source_bytes
    m = json.loads(manifest_bytes(lake, "flights", "2013-01-01"))
    f = m["files"][0]
    assert f["sha256"] == hashlib.sha256(source_bytes).hexdigest()
    assert f["bytes"] == len(source_bytes) == r.bytes
    assert f["rows"] == source_bytes.count(b"\n") - 1 == m["rows"] == r.rows == 842
    assert f["source_name"] == "2013-01-01.csv"
    assert m["dag_run_id"] == "scheduled__2013-01-01" and m["ingested_at"]
    assert m["columns"][:3] == ["year", "month", "day"]


def test_rerun_and_duplicate_delivery_change_nothing(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1)
    ingest(lake, landing, "flights", "2013-01-01", run_id="run-1")
    before = manifest_bytes(lake, "flights", "2013-01-01")

    again = ingest(lake, landing, "flights", "2013-01-01", run_id="run-2")
    assert again.status == "unchanged"
    assert manifest_bytes(lake, "flights", "2013-01-01") == before  # ingested_at, run id kept

    simulator.deliver_fault(landing, "duplicate", "flights", D1)  # same bytes, another name
    dup = ingest(lake, landing, "flights", "2013-01-01", run_id="run-3")
    assert dup.status == "unchanged" and dup.rows == 842
    assert manifest_bytes(lake, "flights", "2013-01-01") == before
    assert [f.path for f in lake.files("raw/flights")] == ["ds=2013-01-01/2013-01-01.csv", f"ds=2013-01-01/{MANIFEST}"]


def test_duplicate_in_first_delivery_is_ignored(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1)
    simulator.deliver_fault(landing, "duplicate", "flights", D1)
    r = ingest(lake, landing, "flights", "2013-01-01")
    assert r.rows == 842 and r.files == ["2013-01-01.csv"]
    assert r.duplicates_ignored == ["2013-01-01.resend.csv"]


def test_corrected_redelivery_replaces_partition(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1)
    ingest(lake, landing, "flights", "2013-01-01")
    fixed = landing.read_bytes("flights/2013-01-01.csv").rsplit(b"\n", 2)[0] + b"\n"  # one row fewer
    simulator.write_atomically(landing, "flights/2013-01-01.csv", fixed)
    r = ingest(lake, landing, "flights", "2013-01-01")
    assert (r.status, r.rows) == ("published", 841)
    assert lake.read_bytes("raw/flights/ds=2013-01-01/2013-01-01.csv") == fixed


@pytest.mark.parametrize("kind", ["empty", "truncated", "not_csv", "header_only", "wrong_date"])
def test_bad_file_is_quarantined_and_named(lake: Lake, landing: Lake, kind):
    simulator.deliver(landing, D1, D2, snapshots=False)
    ingest(lake, landing, "flights", "2013-01-02")
    published = manifest_bytes(lake, "flights", "2013-01-02")
    bad_bytes = landing.read_bytes(simulator.deliver_fault(landing, kind, "flights", D2))

    with pytest.raises(RejectedDelivery) as err:
        ingest(lake, landing, "flights", "2013-01-02", run_id="run-bad")
    message = str(err.value)
    assert "2013-01-02.csv" in message and "quarantined at" in message and "nothing published" in message

    # Moved, not copied: out of landing, into quarantine with its reason.
    assert "2013-01-02.csv" not in landing.listdir("flights")
    q = "quarantine/raw/flights/ds=2013-01-02"
    assert lake.read_bytes(f"{q}/2013-01-02.csv") == bad_bytes
    reason = json.loads(lake.read_bytes(f"{q}/2013-01-02.csv.reason.json"))
    expected_kind = {"header_only": "empty"}.get(kind, kind)
    assert reason["kind"] == expected_kind and reason["dag_run_id"] == "run-bad"
    # The published partition is exactly as it was.
    assert manifest_bytes(lake, "flights", "2013-01-02") == published


def test_bad_day_publishes_nothing_even_with_a_good_part(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1, snapshots=False)
    landing.write_bytes("flights/2013-01-01.part-2.csv", b"")
    with pytest.raises(RejectedDelivery, match="2013-01-01.part-2.csv"):
        ingest(lake, landing, "flights", "2013-01-01")
    assert list_partitions(lake, "raw/flights") == []
    assert "2013-01-01.csv" in landing.listdir("flights")  # the good file waits for the fix


def test_missing_daily_delivery_raises_and_snapshot_skips(lake: Lake, landing: Lake):
    with pytest.raises(NoDelivery, match="no delivery of flights for 2013-01-07"):
        ingest(lake, landing, "flights", "2013-01-07")
    assert ingest(lake, landing, "planes", "2013-01-07").status == "skipped"


def test_identical_snapshot_is_not_stored_twice(lake: Lake, landing: Lake):
    simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 1))
    simulator.deliver(landing, date(2013, 2, 1), date(2013, 2, 1))
    assert ingest(lake, landing, "planes", "2013-01-01").status == "published"
    r = ingest(lake, landing, "planes", "2013-02-01")
    assert r.status == "unchanged" and r.uri.endswith("raw/planes/ds=2013-01-01")
    assert list_partitions(lake, "raw/planes") == ["ds=2013-01-01"]
    assert r.rows == 3322


def test_force_republishes_same_content(lake: Lake, landing: Lake):
    simulator.deliver(landing, D1, D1, snapshots=False)
    first = ingest(lake, landing, "weather", "2013-01-01", run_id="a")
    forced = ingest(lake, landing, "weather", "2013-01-01", run_id="b", force=True)
    assert forced.status == "published" and forced.content_sha256 == first.content_sha256
    assert json.loads(manifest_bytes(lake, "weather", "2013-01-01"))["dag_run_id"] == "b"


def test_a_bom_delivery_is_published_without_its_bom_and_reruns_change_nothing(lake: Lake, landing: Lake):
    """A UTF-8 byte-order mark is a harmless exporter habit: accepted, stripped (readers match
    the header line exactly) and recorded; a rerun and a plain resend of the same rows add nothing."""
    simulator.deliver(landing, D1, D1)
    plain = landing.read_bytes("flights/2013-01-01.csv")
    landing.delete("flights/2013-01-01.csv")
    landing.write_bytes("flights/2013-01-01.csv", b"\xef\xbb\xbf" + plain)
    r = ingest(lake, landing, "flights", "2013-01-01")
    assert r.status == "published" and r.rows == 842
    assert lake.read_bytes("raw/flights/ds=2013-01-01/2013-01-01.csv") == plain
    entry = json.loads(manifest_bytes(lake, "flights", "2013-01-01"))["files"][0]
    assert entry["bom_stripped"] is True and entry["sha256"] == hashlib.sha256(plain).hexdigest()
    before = manifest_bytes(lake, "flights", "2013-01-01")
    assert ingest(lake, landing, "flights", "2013-01-01").status == "unchanged"
    landing.write_bytes("flights/2013-01-01.resend.csv", plain)
    resend = ingest(lake, landing, "flights", "2013-01-01")
    assert resend.status == "unchanged" and resend.duplicates_ignored == ["2013-01-01.resend.csv"]
    assert manifest_bytes(lake, "flights", "2013-01-01") == before
