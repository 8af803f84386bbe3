"""The partial-delivery check's baseline holds only days that passed the gate.

Each "daily run" below is exactly what the transform job does for a raw table: ``history_rows``
from the lake, ``QualityGate.audit_manifests`` (the real suite, a real Great Expectations
validation) and the evidence written for the next run to read.
"""

import json
from datetime import date, timedelta

import pytest

from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS
from lakeforge.publish import PartitionFile, partition_name, publish_partition, read_manifest
from lakeforge.quality.wap import QualityGate
from lakeforge.transform.steps import history_rows

RAW_FLIGHTS = "raw/flights"
FIRST = date(2013, 3, 1)


def day(i: int) -> str:
    return (FIRST + timedelta(days=i)).isoformat()


def deliver(lake, ds: str, rows: int) -> dict:
    publish_partition(lake, RAW_FLIGHTS, partition_name(ds),
                      [PartitionFile(f"{ds}.csv", b"x", {"rows": rows, "ragged_rows": 0})],
                      meta={"ds": ds, "columns": list(FLIGHTS_COLUMNS)})
    return read_manifest(lake, RAW_FLIGHTS, partition_name(ds))


def run(lake, rows_by_day: dict[str, int]) -> dict[str, list[str]]:
    """One transform run's raw audit over these days; returns the blocked days' reasons."""
    dates = sorted(rows_by_day)
    manifests = {ds: deliver(lake, ds, rows) for ds, rows in rows_by_day.items()}
    gate = QualityGate(lake, "nycflights", run_id=f"run-{dates[0]}")
    gate.audit_manifests(RAW_FLIGHTS, manifests, history_rows(lake, RAW_FLIGHTS, dates))
    gate.write_evidence()
    return gate.blocked()


def ratio(lake, ds: str) -> float:
    """The trailing ratio the gate recorded for a day (its evidence)."""
    record = json.loads(lake.read_bytes(f"quality/{RAW_FLIGHTS}/{partition_name(ds)}/validation.json"))
    return record["metrics"]["row_count_vs_trailing(7)"]


@pytest.fixture
def week(local_lake):
    for i in range(7):
        assert run(local_lake, {day(i): 1000}) == {}
    return local_lake


def test_a_blocked_day_does_not_lower_the_bar_for_the_next(week):
    assert day(7) in run(week, {day(7): 50})  # 5% of the rows: blocked
    # 47% of the rows. With the blocked day in the average it would be 470 / 864 = 0.544 and
    # published with a warning; against the days that passed it is 0.47: blocked.
    blocked = run(week, {day(8): 470})
    assert day(8) in blocked and any("row_count_vs_trailing" in r for r in blocked[day(8)])
    assert ratio(week, day(8)) == pytest.approx(0.47)
    assert run(week, {day(9): 980}) == {}  # a normal day still passes
    assert ratio(week, day(9)) == pytest.approx(0.98)


def test_an_exporter_that_keeps_sending_40_percent_is_blocked_every_day(week):
    """Before, such days were blocked three times and published from the fourth on; and after
    seven blocked days the calendar window held no good day at all."""
    for i in range(7, 17):
        assert day(i) in run(week, {day(i): 400}), day(i)
        assert ratio(week, day(i)) == pytest.approx(0.4)


def test_within_one_run_a_failing_day_stays_out_of_the_later_days_baseline(week):
    blocked = run(week, {day(7): 50, day(8): 470, day(9): 1000})
    assert sorted(blocked) == [day(7), day(8)]
    assert ratio(week, day(8)) == pytest.approx(0.47) and ratio(week, day(9)) == pytest.approx(1.0)


def test_a_fixed_redelivery_enters_the_baseline(week):
    assert day(7) in run(week, {day(7): 50})
    assert run(week, {day(7): 1200}) == {}  # the exporter resent the whole day: it passed now
    assert history_rows(week, RAW_FLIGHTS, [day(8)])[day(7)] == 1200
