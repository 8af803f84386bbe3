import csv
import io
import zipfile
from collections import Counter
from datetime import date

import pytest

from lakeforge.pipelines.nycflights import SOURCE, simulator

ALL_FLIGHTS = 336_776


@pytest.fixture(scope="module")
def flights_per_day():
    """Counted independently of the simulator: csv module over the package's zip."""
    with zipfile.ZipFile(simulator.data_dir() / "flights.csv.zip") as zf:
        rows = csv.DictReader(io.TextIOWrapper(zf.open(zf.namelist()[0]), encoding="utf-8"))
        return Counter(date(int(r["year"]), int(r["month"]), int(r["day"])) for r in rows)


def test_daily_split_covers_the_real_year(flights_per_day):
    header, days = simulator.lines_by_day("flights")
    assert header.rstrip("\n").split(",") == list(SOURCE.table("flights").columns)
    assert sum(flights_per_day.values()) == ALL_FLIGHTS
    assert len(days) == 365
    assert {d: body.count("\n") for d, body in days.items()} == dict(flights_per_day)


def test_deliver_month_writes_one_file_per_day(landing, flights_per_day):
    report = simulator.deliver(landing, date(2013, 1, 1), date(2013, 1, 31))
    assert len(landing.listdir("flights")) == 31 and len(landing.listdir("weather")) == 31
    assert landing.listdir("planes") == ["2013-01-01.csv"]  # monthly snapshots
    jan5 = landing.read_bytes("flights/2013-01-05.csv").decode()
    assert jan5.count("\n") - 1 == flights_per_day[date(2013, 1, 5)]
    assert report.bytes == sum(f.size for f in landing.files(""))
    assert not any(n.endswith(".inprogress") for n in landing.listdir("flights"))


def test_weather_gap_on_new_years_eve_is_reported(landing):
    report = simulator.deliver(landing, date(2013, 12, 31), date(2013, 12, 31), snapshots=False)
    assert report.missing == ["weather/2013-12-31"]


@pytest.mark.parametrize("kind", simulator.FAULTS)
def test_faults_differ_from_the_good_file(landing, kind):
    good = simulator.day_file("flights", date(2013, 1, 3))
    rel = simulator.deliver_fault(landing, kind, "flights", date(2013, 1, 3))
    data = landing.read_bytes(rel)
    assert (data == good) == (kind == "duplicate")
    if kind == "duplicate":
        assert rel == "flights/2013-01-03.resend.csv"
