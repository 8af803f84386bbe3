"""Which dates a data-aware transform run processes."""

from types import SimpleNamespace

import pytest

from lakeforge.lake import Lake
from lakeforge.orchestration.transform_dag import plan_dates
from lakeforge.publish import PartitionFile, publish_partition

INPUTS = ["raw/flights", "raw/weather"]


def event(ds):
    return SimpleNamespace(extra={"ds": ds, "status": "published"})


@pytest.fixture
def lake(tmp_path):
    lake = Lake(f"file://{tmp_path}/lake")
    for table, days in {"raw/flights": ["2013-01-01", "2013-01-02", "2013-01-03"],
                        "raw/weather": ["2013-01-01", "2013-01-03"]}.items():
        for ds in days:
            publish_partition(lake, table, f"ds={ds}", [PartitionFile("x.csv", b"a,b\n1,2\n")])
    return lake


def test_manual_range_wins(lake):
    for ds in ("2013-01-30", "2013-01-31", "2013-02-01", "2013-02-02"):
        for table in INPUTS:
            publish_partition(lake, table, f"ds={ds}", [PartitionFile("x.csv", b"a,b\n1,2\n")])
    got = plan_dates({"start": "2013-01-30", "end": "2013-02-02"}, {"a": [event("2013-01-01")]}, INPUTS, lake.root_uri)
    assert got == ["2013-01-30", "2013-01-31", "2013-02-01", "2013-02-02"]


def test_a_manual_range_with_days_never_ingested_fails_before_spark_naming_them(lake):
    """The planning task refuses the run (reason first, every missing partition named as ranges);
    the DAG turns this ValueError into a failure without retries, before spark-submit."""
    with pytest.raises(ValueError) as err:
        plan_dates({"start": "2013-01-01", "end": "2013-01-05"}, None, INPUTS, lake.root_uri)
    message = str(err.value)
    assert message.startswith("not ingested yet, nothing to transform: ")
    assert "raw/flights has no partition for 2013-01-04..2013-01-05" in message
    assert "raw/weather has no partition for 2013-01-02,2013-01-04..2013-01-05" in message


def test_events_give_the_new_dates_whose_inputs_are_all_there(lake):
    events = {"flights": [event("2013-01-03"), event("2013-01-02"), event("2013-01-01")],
              "weather": [event("2013-01-01"), event("2013-01-03")]}
    # 2013-01-02 has no weather yet: it waits for the run its weather will trigger.
    assert plan_dates({}, events, INPUTS, lake.root_uri) == ["2013-01-01", "2013-01-03"]


def test_nothing_new_and_bad_ranges(lake):
    assert plan_dates({}, {}, INPUTS, lake.root_uri) == []
    with pytest.raises(ValueError, match="both start and end"):
        plan_dates({"start": "2013-01-01"}, None, INPUTS, lake.root_uri)
    with pytest.raises(ValueError, match="before start"):
        plan_dates({"start": "2013-01-02", "end": "2013-01-01"}, None, INPUTS, lake.root_uri)


def test_planned_input_bytes_are_counted_up_to_the_short_run_limit(lake, monkeypatch):
    from lakeforge.orchestration.transform_dag import planned_input_bytes

    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_MB", "1")
    dates = ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert planned_input_bytes(INPUTS, dates, lake.root_uri) == 5 * len(b"a,b\n1,2\n")  # 2013-01-02 lacks weather
    big = PartitionFile("x.csv", b"1,2\n" * (200 << 10))  # 0.8 MB
    for ds in ("2013-02-01", "2013-02-02", "2013-02-03"):
        publish_partition(lake, "raw/flights", f"ds={ds}", [big])
    # Past the limit the count stops: two of the three partitions are enough to know.
    assert planned_input_bytes(INPUTS, ["2013-02-01", "2013-02-02", "2013-02-03"], lake.root_uri) == 2 * len(big.data)
    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_MB", "0")  # short runs off: nothing to read
    assert planned_input_bytes(INPUTS, dates, lake.root_uri) is None


def test_an_event_run_reads_each_manifest_once(lake, monkeypatch):
    """plan_dates checks the inputs' manifests, planned_input_bytes sizes the run from the same
    ones: a planning task reads each (a round trip per partition on HDFS) once, not twice."""
    from lakeforge import publish
    from lakeforge.orchestration.transform_dag import planned_input_bytes

    reads = []
    real = publish.read_manifest
    def counted(lake, table, part):
        reads.append((table, part))
        return real(lake, table, part)

    monkeypatch.setattr(publish, "read_manifest", counted)
    events = {"flights": [event("2013-01-01"), event("2013-01-03")], "weather": [event("2013-01-01"), event("2013-01-03")]}
    seen = {}
    dates = plan_dates({}, events, INPUTS, lake.root_uri, seen=seen)
    assert dates == ["2013-01-01", "2013-01-03"]
    assert planned_input_bytes(INPUTS, dates, lake.root_uri, seen=seen) == 4 * len(b"a,b\n1,2\n")
    assert sorted(reads) == sorted({(t, f"ds={d}") for t in INPUTS for d in dates}) and len(reads) == 4
    # Without the shared map the sizing reads them again.
    reads.clear()
    planned_input_bytes(INPUTS, dates, lake.root_uri)
    assert len(reads) == 4
