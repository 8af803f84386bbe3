"""Every kind of bad batch through the real transform job: the gate fails closed, the lake keeps
what it had, and the evidence says why.

Two weeks of real days are transformed and published first. Then each of days 5..13 is
redelivered broken in one way (through the real landing -> ingest path) and day 14 arrives with a
single bad row (a warning, not a blocker); ONE job run over days 5..14 must publish day 14 only.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from lakeforge.ingest import ingest_partition
from lakeforge.lake import Lake
from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS, SOURCE, simulator
from lakeforge.publish import MANIFEST, read_manifest
from lakeforge.quality.evidence import evidence_dir, read_summary
from lakeforge.quality.wap import QualityGateFailed
from spark_jobs import transform_flights
from tests.helpers import edit_flights_rows, redeliver_flights

COL = {name: i for i, name in enumerate(FLIGHTS_COLUMNS)}
OUTPUTS = ["clean/flights", "clean/weather", "quarantine/flights", "quarantine/weather", "features/flights"]


def set_field(name, value, every=1):
    return lambda text: edit_flights_rows(text, name, value, every)


def drop_column(name):
    def edit(text):
        return "\n".join(",".join(f for j, f in enumerate(line.split(",")) if j != COL[name])
                         for line in text.rstrip("\n").split("\n")) + "\n"
    return edit


def add_column(text):
    header, *rows = text.rstrip("\n").split("\n")
    return "\n".join([header + ",gate"] + [r + ",B12" for r in rows]) + "\n"


def keep_fraction(fraction):
    def edit(text):
        header, *rows = text.rstrip("\n").split("\n")
        return "\n".join([header] + rows[: max(1, int(len(rows) * fraction))]) + "\n"
    return edit


def duplicate_some(text):
    header, *rows = text.rstrip("\n").split("\n")
    return "\n".join([header] + rows + rows[::10]) + "\n"


def one_bad_row(text):
    header, rest = text.split("\n", 1)
    return header + "\n2013,1,14,oops\n" + rest


# kind -> (day of January, edit of that day's flights CSV, the check that must block it)
BAD = {
    "nulls_above_threshold": (5, set_field("tailnum", "NA"), "clean/flights: not_null:tailnum"),
    "out_of_range_values": (6, set_field("distance", "5500", every=10), "clean/flights: between:distance"),
    "added_column": (7, add_column, "raw/flights: header"),
    "missing_column": (8, drop_column("air_time"), "raw/flights: header"),
    "retyped_column": (9, set_field("flight", "UA1545"), "clean/flights: quarantine_ratio"),
    "empty_partition": (10, set_field("sched_dep_time", "9999"), "clean/flights: row_count"),
    "duplicated_keys": (11, duplicate_some, "clean/flights: unique:flight_key"),
    "row_count_collapse": (12, keep_fraction(0.1), "raw/flights: row_count_vs_trailing"),
    "too_many_quarantined": (13, set_field("dep_time", "2599", every=10), "clean/flights: quarantine_ratio"),
}
WARNED_DAY = "2013-01-14"


def day(n: int) -> str:
    return date(2013, 1, n).isoformat()


def published_state(lake: Lake, ds: str) -> dict[str, bytes | None]:
    return {t: (lake.read_bytes(f"{t}/ds={ds}/{MANIFEST}") if lake.exists(f"{t}/ds={ds}/{MANIFEST}") else None)
            for t in OUTPUTS}


@pytest.fixture(scope="module")
def bad_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    lake, landing = Lake(f"file://{root}/lake"), Lake(f"file://{root}/landing/nycflights")
    simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 14))
    for n in range(1, 15):
        for table in SOURCE.tables:
            ingest_partition(SOURCE, table.name, day(n), lake=lake, landing=landing)
    first = transform_flights.run(spark, lake, [day(n) for n in range(1, 14)], "good-run")
    assert first["quality"]["blocked"] == {}, first["quality"]
    before = {day(n): published_state(lake, day(n)) for n in range(5, 15)}
    for n, edit, _ in BAD.values():
        redeliver_flights(lake, landing, day(n), edit)
    redeliver_flights(lake, landing, WARNED_DAY, one_bad_row)
    result = transform_flights.run(spark, lake, [day(n) for n in range(5, 15)], "bad-run")
    return lake, before, result


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_batch_fails_closed_and_leaves_the_lake_unchanged(bad_run, kind):
    lake, before, result = bad_run
    n, _, blocker = BAD[kind]
    ds = day(n)
    reasons = result["quality"]["blocked"].get(ds)
    assert reasons, f"{kind}: day {ds} was published"
    assert any(r.startswith(blocker + " [critical]") for r in reasons), reasons
    # Every table of the day still has exactly what it had before the bad run.
    assert published_state(lake, ds) == before[ds]
    assert ds not in result["published"]


def test_failure_message_names_check_column_and_observed_value(bad_run):
    _, _, result = bad_run
    message = str(QualityGateFailed.from_summary(result["quality"]))
    assert "9 partition(s) not published" in message
    assert "ds=2013-01-06: clean/flights: between:distance [critical]: outside(distance,17,5000) = 0.1" in message
    assert "ds=2013-01-08: raw/flights: header [critical]: header = missing air_time" in message
    assert "evidence: file://" in message and "report.html" in message


def test_warning_is_recorded_and_the_day_published(bad_run):
    lake, before, result = bad_run
    assert result["published"] == [WARNED_DAY]
    manifest = read_manifest(lake, "clean/flights", f"ds={WARNED_DAY}")
    assert manifest["quality"]["status"] == "warned"
    assert manifest["quality"]["warnings"][0].startswith("quarantine_ratio:warn [warning]")
    assert before[WARNED_DAY]["clean/flights"] != published_state(lake, WARNED_DAY)["clean/flights"]
    assert read_manifest(lake, "features/flights", f"ds={WARNED_DAY}")["quality"]["status"] == "passed"


def test_evidence_for_failed_and_passed_partitions(bad_run):
    lake, _, _ = bad_run
    failed = json.loads(lake.read_bytes(f"{evidence_dir('clean/flights', day(5))}/validation.json"))
    assert failed["status"] == "failed" and failed["run_id"] == "bad-run"
    check = next(c for c in failed["checks"] if c["id"] == "not_null:tailnum")
    assert check["column"] == "tailnum" and check["observed"] > 0.5 and not check["success"]
    html = lake.read_bytes(f"{evidence_dir('features/flights', day(3))}/report.html").decode()
    assert html.startswith("<!DOCTYPE html>") and "passed" in html and "mean(label)" in html
    summary = read_summary(lake)["tables"]
    assert summary["clean/flights"][day(5)]["status"] == "failed"
    assert summary["raw/flights"][day(7)]["status"] == "failed"
    assert summary["features/flights"][day(3)]["status"] == "passed"
    # A blocked day gets no new features: nothing was even validated for it in the bad run.
    assert summary["features/flights"][day(5)]["run_id"] == "good-run"


def test_a_day_whose_history_was_blocked_is_built_again_without_it(spark, bad_run):
    """Day 14 passed, but its history features had read days 5..13 as this run staged them (all
    blocked): it was held back and built again once, reading the published (good) versions. A run
    of day 14 alone, which can only read what is published, gives the very same features."""
    lake, _, result = bad_run
    assert result["rebuilt"]["dates"] == [WARNED_DAY]
    assert result["rebuilt"]["quality"]["blocked"] == {}
    published = read_manifest(lake, "features/flights", f"ds={WARNED_DAY}")["content_sha256"]
    alone = transform_flights.run(spark, lake, [WARNED_DAY], "day-14-alone")
    assert alone["published"] == [WARNED_DAY] and "rebuilt" not in alone
    assert read_manifest(lake, "features/flights", f"ds={WARNED_DAY}")["content_sha256"] == published
