"""Which dates a data-aware transform run processes."""

from types import SimpleNamespace

import pytest

from lakeforge.lake import Lake
from lakeforge.orchestration.transform_dag import plan_run
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
    got = plan_run({"start": "2013-01-30", "end": "2013-02-02"}, {"a": [event("2013-01-01")]}, INPUTS,
                   lake.root_uri).dates
    assert got == ["2013-01-30", "2013-01-31", "2013-02-01", "2013-02-02"]


def test_a_manual_range_with_days_never_ingested_fails_before_spark_naming_them(lake):
    """The planning task refuses the run (reason first, every missing partition named as ranges);
    the DAG turns this ValueError into a failure without retries, before spark-submit."""
    with pytest.raises(ValueError) as err:
        plan_run({"start": "2013-01-01", "end": "2013-01-05"}, None, INPUTS, lake.root_uri).dates
    message = str(err.value)
    assert message.startswith("not ingested yet, nothing to transform: ")
    assert "raw/flights has no partition for 2013-01-04..2013-01-05" in message
    assert "raw/weather has no partition for 2013-01-02,2013-01-04..2013-01-05" in message


def test_events_give_the_new_dates_whose_inputs_are_all_there(lake):
    events = {"flights": [event("2013-01-03"), event("2013-01-02"), event("2013-01-01")],
              "weather": [event("2013-01-01"), event("2013-01-03")]}
    # 2013-01-02 has no weather yet: it waits for the run its weather will trigger.
    assert plan_run({}, events, INPUTS, lake.root_uri).dates == ["2013-01-01", "2013-01-03"]


def test_nothing_new_and_bad_ranges(lake):
    assert plan_run({}, {}, INPUTS, lake.root_uri).dates == []
    with pytest.raises(ValueError, match="both start and end"):
        plan_run({"start": "2013-01-01"}, None, INPUTS, lake.root_uri).dates
    with pytest.raises(ValueError, match="before start"):
        plan_run({"start": "2013-01-02", "end": "2013-01-01"}, None, INPUTS, lake.root_uri).dates


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
    """plan_run checks the inputs' manifests, planned_input_bytes sizes the run from the same
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
    dates = plan_run({}, events, INPUTS, lake.root_uri, seen=seen).dates
    assert dates == ["2013-01-01", "2013-01-03"]
    assert planned_input_bytes(INPUTS, dates, lake.root_uri, seen=seen) == 4 * len(b"a,b\n1,2\n")
    assert sorted(reads) == sorted({(t, f"ds={d}") for t in INPUTS for d in dates}) and len(reads) == 4
    # Without the shared map the sizing reads them again.
    reads.clear()
    planned_input_bytes(INPUTS, dates, lake.root_uri)
    assert len(reads) == 4


# -- pending days: what a scheduled run catches up without an event ------------------------------
OUTPUTS = ["clean/flights", "clean/weather", "features/flights"]


def publish_day(lake, tables, ds, data=b"a,b\n1,2\n"):
    for table in tables:
        publish_partition(lake, table, f"ds={ds}", [PartitionFile("x.csv", data)])


def age(lake, table, ds, seconds):
    """Make a published partition look ``seconds`` older (its manifest's time and its folder's)."""
    import json
    import os
    from datetime import datetime, timedelta

    rel = f"{table}/ds={ds}/_manifest.json"
    manifest = json.loads(lake.read_bytes(rel))
    manifest["published_at"] = (datetime.fromisoformat(manifest["published_at"]) - timedelta(seconds=seconds)).isoformat()
    lake.write_bytes(rel, json.dumps(manifest).encode())
    folder = lake.path(f"{table}/ds={ds}")
    t = os.stat(folder).st_mtime - seconds
    os.utime(folder, (t, t))


def blocked_verdict(lake, table, ds, validated_at, why="rows_vs_trailing: 12 < 0.5 x trailing"):
    from lakeforge.quality.evidence import update_summary

    update_summary(lake, [{"table": table, "ds": ds, "status": "failed", "failed": [why], "warnings": [],
                           "run_id": "r", "validated_at": validated_at, "evidence": "report.html"}])


@pytest.fixture
def transformed(lake):
    """2013-01-01 transformed (well after its inputs), 2013-01-02 lacks weather, 2013-01-03 raw only."""
    for ds in ("2013-01-01", "2013-01-03"):
        age(lake, "raw/flights", ds, 60)
        age(lake, "raw/weather", ds, 60)
    publish_day(lake, OUTPUTS, "2013-01-01")
    return lake


def test_a_scheduled_run_adds_the_pending_days_to_its_events(transformed):
    lake = transformed
    from lakeforge.orchestration.transform_dag import plan_run

    # No event names 2013-01-03 (a deferred run dropped it): the scan finds it, not 2013-01-01 (done)
    # nor 2013-01-02 (weather missing).
    plan = plan_run({}, {}, INPUTS, lake.root_uri, outputs=OUTPUTS)
    assert plan.dates == ["2013-01-03"] and plan.pending == ["2013-01-03"] and plan.from_events == []
    assert plan.note() == "2013-01-03 (1 day): 1 pending"
    for ds in ("2013-01-04", "2013-01-05"):
        publish_day(lake, INPUTS, ds)
    events = {"flights": [event("2013-01-04"), event("2013-01-02")], "weather": [event("2013-01-04")]}
    plan = plan_run({}, events, INPUTS, lake.root_uri, outputs=OUTPUTS)
    assert plan.dates == ["2013-01-03", "2013-01-04", "2013-01-05"]
    assert (plan.from_events, plan.pending, plan.waiting) == (["2013-01-04"], ["2013-01-03", "2013-01-05"], ["2013-01-02"])
    assert plan.note() == ("2013-01-03..2013-01-05 (3 days): 1 from events, 2 pending; "
                           "waiting for all inputs: 2013-01-02")
    # A day missing from only one output (a crash between two tables' publishes) is pending too.
    publish_day(lake, ["clean/flights", "clean/weather"], "2013-01-03")
    assert "2013-01-03" in plan_run({}, {}, INPUTS, lake.root_uri, outputs=OUTPUTS).pending
    # Manual ranges and callers without outputs are exactly what they were.
    assert plan_run({"start": "2013-01-01", "end": "2013-01-01"}, {}, INPUTS, lake.root_uri, outputs=OUTPUTS).dates \
        == ["2013-01-01"]
    assert plan_run({}, {}, INPUTS, lake.root_uri).dates == []


def test_a_redelivered_day_is_pending_again(transformed):
    """Raw republished after its transform (a corrected delivery whose event a deferred run
    dropped): the output is older than its inputs, the day is pending."""
    from lakeforge.orchestration.transform_dag import scan_pending

    lake = transformed
    assert scan_pending(lake, INPUTS, OUTPUTS) == (["2013-01-03"], {})
    publish_day(lake, ["raw/flights"], "2013-01-01", b"a,b\n1,3\n")  # now: newer than the outputs
    assert scan_pending(lake, INPUTS, OUTPUTS) == (["2013-01-01", "2013-01-03"], {})
    age(lake, "raw/flights", "2013-01-01", 60)
    publish_day(lake, OUTPUTS, "2013-01-01")  # transformed again, a minute later
    assert scan_pending(lake, INPUTS, OUTPUTS) == (["2013-01-03"], {})


def test_a_day_blocked_for_the_same_inputs_is_not_retried_until_redelivered(transformed):
    from datetime import datetime, timedelta, timezone

    from lakeforge.orchestration.transform_dag import plan_run, scan_pending

    lake = transformed
    now = datetime.now(timezone.utc)
    # The gate judged 2013-01-03's current raw content (its verdict is newer than the inputs).
    blocked_verdict(lake, "raw/flights", "2013-01-03", (now - timedelta(seconds=10)).isoformat(timespec="seconds"))
    pending, blocked = scan_pending(lake, INPUTS, OUTPUTS, verdict_tables=[*INPUTS, *OUTPUTS])
    assert pending == [] and blocked == {"2013-01-03": "raw/flights: rows_vs_trailing: 12 < 0.5 x trailing"}
    plan = plan_run({}, {}, INPUTS, lake.root_uri, outputs=OUTPUTS)
    assert plan.dates == [] and plan.note() == ("nothing to transform: no new day ready; blocked by the quality "
                                                "gate, inputs unchanged since: 2013-01-03")
    # Its event (an ingest rerun) still runs it: events are always processed.
    assert plan_run({}, {"flights": [event("2013-01-03")]}, INPUTS, lake.root_uri, outputs=OUTPUTS).dates \
        == ["2013-01-03"]
    # Another table's verdict does not count; a corrected redelivery (inputs newer) is retried.
    assert scan_pending(lake, INPUTS, OUTPUTS, verdict_tables=["clean/weather"]) == (["2013-01-03"], {})
    publish_day(lake, ["raw/flights"], "2013-01-03", b"a,b\n1,3\n")
    assert scan_pending(lake, INPUTS, OUTPUTS, verdict_tables=[*INPUTS, *OUTPUTS]) == (["2013-01-03"], {})
    # A verdict older than the inputs (the day's earlier content failed) does not block either.
    blocked_verdict(lake, "clean/flights", "2013-01-03", (now - timedelta(hours=1)).isoformat(timespec="seconds"))
    assert scan_pending(lake, INPUTS, OUTPUTS, verdict_tables=[*INPUTS, *OUTPUTS])[0] == ["2013-01-03"]


def test_the_pending_scan_of_a_year_lists_the_tables_and_reads_almost_no_manifest(tmp_path, monkeypatch):
    """A year of transformed days, the inputs older than the outputs, and the newest day raw
    only: the scan lists each table once and reads no manifest of the done days."""
    import os
    import time
    from datetime import date, timedelta

    from lakeforge import publish
    from lakeforge.orchestration.transform_dag import plan_run

    lake = Lake(f"file://{tmp_path}/lake")
    days = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(365)]
    old = time.time() - 3600
    for table in [*INPUTS, *OUTPUTS]:  # the partition folders alone (the scan reads none of them)
        for d in (days if table in INPUTS else days[:-1]):
            folder = tmp_path / "lake" / table / f"ds={d}"
            folder.mkdir(parents=True)
            if table in INPUTS:
                os.utime(folder, (old, old))
    reads = []
    real = publish.read_manifest
    monkeypatch.setattr(publish, "read_manifest", lambda *a: reads.append(a[1:]) or real(*a))
    t = time.perf_counter()
    plan = plan_run({}, {}, INPUTS, lake.root_uri, outputs=OUTPUTS)
    seconds = time.perf_counter() - t
    assert plan.dates == ["2013-12-31"] and reads == []
    assert seconds < 0.5, seconds


def test_scoring_catches_up_the_feature_days_never_scored(tmp_path):
    """score_flights' plan: the events' days plus every published feature day without a
    predictions partition; a day scored by an older champion is not pending (a rescore is a
    manual run), nor is a day without feature rows, nor one the predictions suite blocked for
    these features."""
    from datetime import datetime, timedelta, timezone

    from lakeforge.lake import source_lake
    from lakeforge.orchestration.score_dag import plan_dates as score_dates, plan_run as score_plan

    TABLES = ("features/flights", "predictions/flights")
    lake = source_lake("nycflights", f"file://{tmp_path}/lake")
    for ds in ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"):
        rows = 0 if ds == "2013-01-04" else 900
        publish_partition(lake, "features/flights", f"ds={ds}", [PartitionFile("p.parquet", b"x" * 10, {"rows": rows})])
    publish_partition(lake, "predictions/flights", "ds=2013-01-01",  # scored by v1; the champion is v2 now
                      [PartitionFile("p.parquet", b"y", {"rows": 900})], meta={"model": {"version": "1"}})
    later = (datetime.now(timezone.utc) + timedelta(seconds=5)).isoformat(timespec="seconds")
    blocked_verdict(lake, "predictions/flights", "2013-01-05", later, "probability_range: 1.2 > 1")
    features = {"f": [SimpleNamespace(extra={"dates": ["2013-01-02"]})]}
    plan, size = score_plan({}, features, *TABLES, lake.root_uri)
    assert (plan.dates, plan.from_events, plan.pending) == (["2013-01-02", "2013-01-03"], ["2013-01-02"], ["2013-01-03"])
    assert plan.blocked == {"2013-01-05": "predictions/flights: probability_range: 1.2 > 1"} and size == 20
    assert plan.note("score") == ("2013-01-02..2013-01-03 (2 days): 1 from events, 1 pending; "
                                  "blocked by the quality gate, inputs unchanged since: 2013-01-05")
    # Without the scan (plan_dates' default) and for a manual rescore: the events, the range.
    assert score_dates({}, features, *TABLES, lake.root_uri) == (["2013-01-02"], 10)
    assert score_plan({"start": "2013-01-01", "end": "2013-01-01"}, None, *TABLES, lake.root_uri)[0].dates == ["2013-01-01"]


def test_an_event_for_a_day_already_built_from_its_inputs_runs_nothing_again(transformed):
    """Under AssetAny a day's second input (or an earlier run's catch-up) may already have
    transformed it: its event adds nothing. The job records the raw content each output was
    built from, so a redelivery published while the day's transform ran (its output newer, yet
    built from the old content) is told apart exactly."""
    import json

    from lakeforge.orchestration.transform_dag import plan_run

    lake = transformed

    def record_inputs(ds):
        for table in OUTPUTS:
            rel = f"{table}/ds={ds}/_manifest.json"
            manifest = json.loads(lake.read_bytes(rel))
            manifest["inputs"] = {t: {"content_sha256": json.loads(lake.read_bytes(f"{t}/ds={ds}/_manifest.json"))
                                      ["content_sha256"]} for t in INPUTS}
            lake.write_bytes(rel, json.dumps(manifest).encode())

    record_inputs("2013-01-01")
    events = {"flights": [event("2013-01-01")], "weather": [event("2013-01-01")]}
    plan = plan_run({}, events, INPUTS, lake.root_uri, outputs=OUTPUTS)
    assert plan.current == ["2013-01-01"] and "2013-01-01" not in plan.dates
    assert plan.note() == "2013-01-03 (1 day): 1 pending; already transformed from the same inputs: 2013-01-01"
    # A redelivery during that day's transform: the output (published later) holds the old content.
    publish_day(lake, ["raw/flights"], "2013-01-01", b"a,b\n1,3\n")
    age(lake, "raw/flights", "2013-01-01", 30)  # folders: the raw one clearly older, the scan skips it
    plan = plan_run({}, events, INPUTS, lake.root_uri, outputs=OUTPUTS)
    assert plan.from_events == ["2013-01-01"] and plan.current == []
    record_inputs("2013-01-01")  # transformed again, from the new content
    assert plan_run({}, events, INPUTS, lake.root_uri, outputs=OUTPUTS).current == ["2013-01-01"]


def test_a_training_run_note_names_its_window_or_why_not():
    from lakeforge.orchestration.train_dag import training_note

    assert training_note({"train": False, "reason": "3 feature day(s) newer than the last training"}) == \
        "nothing to train: 3 feature day(s) newer than the last training"
    plan = {"train": True, "family": "lightgbm", "reason": "9 new feature day(s)", "trigger_reason": "",
            "split": {"train_start": "2013-01-01", "train_end": "2013-03-17",
                      "holdout_start": "2013-03-18", "holdout_end": "2013-03-31"}}
    assert training_note(plan) == ("lightgbm on 2013-01-01..2013-03-17, holdout 2013-03-18..2013-03-31: "
                                   "9 new feature day(s)")
    assert training_note({**plan, "trigger_reason": "ROC AUC dropped"}).endswith("; requested: ROC AUC dropped")


def test_a_monthly_source_note_counts_months():
    """A monthly source's run note says months, not days (its partitions are the months' first days)."""
    from lakeforge.orchestration.transform_dag import Plan

    plan = Plan(["2013-01-01", "2013-02-01"], from_events=["2013-02-01"], pending=["2013-01-01"], every="month")
    assert plan.note() == "2013-01-01,2013-02-01 (2 months): 1 from events, 1 pending"
    assert Plan(["2013-03-01"], manual=True, every="month").note("score") == "2013-03-01 (1 month): manual range"
    assert Plan([], waiting=["2013-04-01"], every="month").note() == (
        "nothing to transform: no new month ready; waiting for all inputs: 2013-04-01")
