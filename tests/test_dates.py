"""Compact date lists: how a transform run's days reach spark-submit's command line."""

import argparse
import subprocess
import sys
from datetime import date, timedelta

import pytest

from lakeforge.dates import compact_dates, date_range, dates_of, expand_dates, shift_day


def test_round_trip_of_scattered_days_and_ranges():
    days = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-05", "2013-02-28", "2013-03-01"]
    spec = compact_dates(days)
    assert spec == "2013-01-01..2013-01-03,2013-01-05,2013-02-28..2013-03-01"
    assert expand_dates(spec) == days
    assert expand_dates("2013-01-05, 2013-01-01..2013-01-02,2013-01-02") == ["2013-01-01", "2013-01-02", "2013-01-05"]
    assert compact_dates([]) == "" and expand_dates("") == []


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="before"):
        expand_dates("2013-01-05..2013-01-01")
    with pytest.raises(ValueError):
        expand_dates("2013-13-01")
    with pytest.raises(ValueError):
        date_range("2013-01-02", "2013-01-01")


def test_any_range_fits_a_command_line(tmp_path):
    """Ten years of every other day as one argument: the job's own parser expands it in a real
    process (one argument over 128 KB would fail with 'Argument list too long')."""
    start = date(2010, 1, 1)
    days = [(start + timedelta(days=2 * i)).isoformat() for i in range(1826)]
    spec = compact_dates(days)
    assert len(spec.encode()) < 131072
    decades = date_range("1990-01-01", "2029-12-31")
    assert len(",".join(decades).encode()) > 131072  # as one comma-joined argument: too long for exec
    assert compact_dates(decades) == "1990-01-01..2029-12-31"
    code = ("import sys, argparse; from lakeforge.dates import dates_of; "
            "print(len(dates_of(argparse.Namespace(dates=sys.argv[1], start=None, end=None))))")
    out = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(days))


def test_shift_day_crosses_months_leap_days_and_years():
    assert shift_day("2013-01-01", -1) == "2012-12-31"
    assert shift_day("2012-02-28", 1) == "2012-02-29" and shift_day("2013-02-28", 1) == "2013-03-01"
    assert shift_day("2013-03-01", -29) == "2013-01-31"
    assert shift_day("2013-06-15", 0) == "2013-06-15"


def test_a_range_means_the_partitions_of_the_source_cadence():
    """--start/--end: every day of a daily source, the first days of the months a monthly one's
    range touches; --dates are the partitions as given; anything else exits naming the reason."""
    def args(dates=None, start=None, end=None):
        return argparse.Namespace(dates=dates, start=start, end=end)

    assert dates_of(args(start="2013-01-30", end="2013-02-02")) == date_range("2013-01-30", "2013-02-02")
    assert dates_of(args(start="2013-01-30", end="2013-03-02"), "month") == ["2013-01-01", "2013-02-01", "2013-03-01"]
    assert dates_of(args(dates="2013-02-01,2013-04-01"), "month") == ["2013-02-01", "2013-04-01"]
    with pytest.raises(SystemExit, match="both --start and --end"):
        dates_of(args(start="2013-01-01"), "month")
    with pytest.raises(SystemExit, match="bad dates"):
        dates_of(args(start="2013-03-01", end="2013-01-01"), "month")
