import gzip

import pytest

from lakeforge.delivery import DeliveryRejected, inspect_delivery
from lakeforge.sources import Table

T = Table("flights", "daily", date_columns=("year", "month", "day"))
GOOD = b"year,month,day,dep_delay,carrier\n2013,1,1,2,UA\n2013,1,1,-4,AA\n"


def test_good_file_summary():
    s = inspect_delivery("f.csv", GOOD, T, "2013-01-01")
    assert (s.rows, s.columns, s.bytes, s.ragged_rows) == (2, ("year", "month", "day", "dep_delay", "carrier"), len(GOOD), 0)


@pytest.mark.parametrize(
    "data, kind, words",
    [
        (b"", "empty", "0 bytes"),
        (b"\n\n", "empty", "empty"),
        (b"year,month,day,dep_delay,carrier\n", "empty", "no data rows"),
        (GOOD[:-9], "truncated", "no newline"),
        (GOOD[:-5] + b"\n", "truncated", "4 of 5 fields"),
        (gzip.compress(GOOD), "not_csv", "NUL bytes"),
        (b"\xff\xfe" + GOOD, "not_csv", "not UTF-8"),
        (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>\n", "not_csv", "not a CSV header"),
        (b'{"year": 2013, "month": 1}\n', "not_csv", "not a CSV header"),
        (b"year,month,day,dep_delay,carrier\n2013,1,2,2,UA\n", "wrong_date", "no row is dated 2013-01-01"),
    ],
)
def test_rejections_name_file_and_kind(data, kind, words):
    with pytest.raises(DeliveryRejected) as err:
        inspect_delivery("2013-01-01.csv", data, T, "2013-01-01")
    assert err.value.kind == kind
    assert words in str(err.value)
    assert str(err.value).startswith("2013-01-01.csv: ")


def test_ragged_rows_inside_the_file_are_counted_not_rejected():
    data = GOOD + b"2013,1,1,oops\n2013,1,1,5,B6\n"
    s = inspect_delivery("f.csv", data, T, "2013-01-01")
    assert (s.rows, s.ragged_rows) == (4, 1)


def test_missing_date_columns_leave_drift_to_quality_gate():
    data = b"yr,month,day,x\n2013,1,9,1\n"
    assert inspect_delivery("f.csv", data, T, "2013-01-01").rows == 1
