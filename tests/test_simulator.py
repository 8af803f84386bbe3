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


def test_follow_delivers_day_by_day_at_the_pace_and_prints_each_day(landing, monkeypatch):
    """--follow --every: one day, its line, a pause; a fault right after its day."""
    waits, lines = [], []
    monkeypatch.setattr(simulator.threading.Event, "wait", lambda self, seconds: waits.append(seconds))
    report = simulator.follow(landing, date(2013, 1, 1), date(2013, 1, 3), 30,
                              faults=[("truncated", "flights", date(2013, 1, 2))], out=lambda line, flush: lines.append(line))
    assert waits == [30, 30]  # between days, not after the last
    assert [line.split(":")[0] for line in lines] == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert lines[0].startswith("2013-01-01: delivered flights, weather, planes, airports, airlines, ")
    assert lines[1].startswith("2013-01-02: delivered flights, weather, flights, ")  # and the faulty resend
    assert sorted(landing.listdir("flights")) == ["2013-01-01.csv", "2013-01-02.csv", "2013-01-03.csv"]
    assert report.files.index("flights/2013-01-02.csv") < len(report.files) - 3  # the fault came with its day
    assert len(landing.read_bytes("flights/2013-01-02.csv")) < len(simulator.day_file("flights", date(2013, 1, 2)))


def test_ctrl_c_stops_follow_between_days(landing, capsys):
    """SIGINT while following: the day being delivered is finished, no further day starts, and
    the output says where to resume. ``--every 0`` does not pause."""
    import os
    import signal

    delivered = []
    real = simulator.deliver

    def deliver_then_interrupt(landing_, start, end, **kw):
        report = real(landing_, start, end, **kw)
        delivered.append(start)
        if start == date(2013, 1, 2):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the run
        return report

    before = signal.getsignal(signal.SIGINT)
    try:
        simulator.deliver = deliver_then_interrupt
        simulator.main(["--start", "2013-01-01", "--end", "2013-01-05", "--landing", landing.root_uri.rsplit("/", 1)[0],
                        "--follow", "--every", "0", "--no-snapshots"])
    finally:
        simulator.deliver = real
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert delivered == [date(2013, 1, 1), date(2013, 1, 2)]
    assert landing.listdir("flights") == ["2013-01-01.csv", "2013-01-02.csv"]
    out = capsys.readouterr().out
    assert "2013-01-02: delivered flights, weather" in out
    assert "stopped (Ctrl-C) after 2013-01-02; resume with --start 2013-01-03" in out


def test_every_needs_follow(landing):
    with pytest.raises(SystemExit):
        simulator.main(["--start", "2013-01-01", "--end", "2013-01-02", "--landing", landing.root_uri, "--every", "5"])
