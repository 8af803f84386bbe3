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
        (gzip.compress(GOOD, mtime=0), "not_csv", "NUL bytes"),  # no timestamp: the same test id in every pytest worker
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


# --- a UTF-8 byte-order mark -------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def test_utf8_bom_is_accepted_and_not_published():
    s = inspect_delivery("f.csv", BOM + GOOD, T, "2013-01-01")
    assert s.columns == ("year", "month", "day", "dep_delay", "carrier")  # no "\ufeffyear"
    assert (s.rows, s.data, s.bom_stripped) == (2, GOOD, True)
    # Bytes and hash describe what is published: a resend without the BOM is a duplicate.
    plain = inspect_delivery("f.csv", GOOD, T, "2013-01-01")
    assert (s.bytes, s.sha256) == (plain.bytes, plain.sha256) == (len(GOOD), plain.sha256)
    assert s.manifest_meta == {"rows": 2, "ragged_rows": 0, "bom_stripped": True}
    assert plain.manifest_meta == {"rows": 2, "ragged_rows": 0} and plain.data == GOOD


@pytest.mark.parametrize(
    "data, kind, words",
    [
        (BOM, "empty", "byte-order mark"),
        (BOM + b"year,month,day,dep_delay,carrier\n", "empty", "no data rows"),
        (BOM + GOOD[:-9], "truncated", "no newline"),
        (BOM + b"<html>oops</html>\n", "not_csv", "'<html>oops</html>'"),
        ("year,month\n".encode("utf-16"), "not_csv",
         "UTF-16 LE text (starts with the byte-order mark FF FE), not UTF-8"),
        (BOM + b"year,month\n\xff\n", "not_csv", "not UTF-8 text (invalid start byte at byte 14)"),
    ],
)
def test_bom_does_not_hide_other_faults_nor_show_in_messages(data, kind, words):
    with pytest.raises(DeliveryRejected) as err:
        inspect_delivery("f.csv", data, T, "2013-01-01")
    assert err.value.kind == kind and words in err.value.reason
    assert "\ufeff" not in str(err.value) and "\\ufeff" not in str(err.value)


# --- a single date column ----------------------------------------------------------------------

ISO = Table("trips", "daily", date_column="date")
SLASH = Table("trips", "daily", date_column="date", date_format="%Y/%m/%d")


@pytest.mark.parametrize(
    "table, value",
    [(ISO, "2013-01-05"), (ISO, "2013-01-05T06:30:00"), (ISO, "2013-01-05 06:30:00+01:00"), (SLASH, "2013/01/05"),
     (Table("t", "daily", date_column="d", date_format="%d.%m.%Y"), "05.01.2013")],
)
def test_single_date_column_accepts_its_day(table, value):
    data = f"id,{table.date_column},v\n1,{value},a\n2,{value},b\n".encode()
    assert inspect_delivery("f.csv", data, table, "2013-01-05").rows == 2


@pytest.mark.parametrize(
    "table, value, words",
    [
        (ISO, "2013-01-06",
         "no row is dated 2013-01-05 (column 'date' read as ISO 8601; first row dated '2013-01-06')"),
        (SLASH, "2013/01/06",
         "no row is dated 2013-01-05 (column 'date' read as %Y/%m/%d; first row dated '2013/01/06')"),
        # Right day, wrong format: no row can be read as this day's.
        (SLASH, "2013-01-05", "read as %Y/%m/%d; first row dated '2013-01-05'"),
        (ISO, "05/01/2013", "first row dated '05/01/2013'"),
    ],
)
def test_single_date_column_rejects_another_day(table, value, words):
    data = f"id,date,v\n1,{value},a\n".encode()
    with pytest.raises(DeliveryRejected) as err:
        inspect_delivery("2013-01-05.csv", data, table, "2013-01-05")
    assert err.value.kind == "wrong_date" and words in err.value.reason


def test_single_date_column_one_row_of_the_day_is_enough_and_missing_column_stands_aside():
    data = b"id,date\n1,2013/01/04\n2,2013/01/05\n"
    assert inspect_delivery("f.csv", data, SLASH, "2013-01-05").rows == 2
    assert inspect_delivery("f.csv", b"id,day\n1,2013/01/04\n", SLASH, "2013-01-05").rows == 1
    assert inspect_delivery("f.csv", b"id,date\n1,2013/01/04\n", SLASH).rows == 1  # snapshot: no day


def test_three_date_columns_message_names_them():
    with pytest.raises(DeliveryRejected, match=r"no row is dated 2013-01-01 \(columns year/month/day; "
                                               r"first row dated 2013-1-2\)"):
        inspect_delivery("f.csv", b"year,month,day,dep_delay,carrier\n2013,1,2,2,UA\n", T, "2013-01-01")


# --- the exporter's row-count trailer (a file cut exactly at a line end) -----------------------

TRAILED = Table("flights", "daily", date_columns=("year", "month", "day"), row_count_trailer=r"#rows=(\d+)")


def test_trailer_is_checked_and_not_published():
    s = inspect_delivery("f.csv", GOOD + b"#rows=2\n", TRAILED, "2013-01-01")
    assert (s.rows, s.trailer_rows, s.data, s.ragged_rows) == (2, 2, GOOD, 0)
    assert s.sha256 == inspect_delivery("f.csv", GOOD, T, "2013-01-01").sha256
    assert s.manifest_meta == {"rows": 2, "ragged_rows": 0, "trailer_rows": 2}
    crlf = inspect_delivery("f.csv", GOOD.replace(b"\n", b"\r\n") + b"#rows=2\r\n", TRAILED, "2013-01-01")
    assert crlf.rows == 2 and crlf.data == GOOD.replace(b"\n", b"\r\n")
    both = inspect_delivery("f.csv", BOM + GOOD + b"#rows=2\n", TRAILED, "2013-01-01")
    assert (both.data, both.bom_stripped, both.trailer_rows) == (GOOD, True, 2)


@pytest.mark.parametrize(
    "data, words",
    [
        # Cut exactly at a line end: a whole, smaller CSV, caught only by the missing trailer.
        (GOOD, "trailer (a last line matching '#rows=(\\\\d+)') is missing; last line is '2013,1,1,-4,AA'"),
        (GOOD.rsplit(b"\n", 2)[0] + b"\n", "trailer"),
        (GOOD + b"#rows=3\n", "trailer states 3 data rows, the file has 2: the file was cut short at a line end"),
        (GOOD + b"#rows=1\n", "trailer states 1 data rows, the file has 2"),
        (GOOD + b"#rows=", "no newline"),  # cut inside the trailer
        (b"year,month,day,dep_delay,carrier\n", "trailer"),
    ],
)
def test_trailer_catches_a_cut_at_a_line_end(data, words):
    with pytest.raises(DeliveryRejected) as err:
        inspect_delivery("f.csv", data, TRAILED, "2013-01-01")
    assert err.value.kind == "truncated" and words in err.value.reason
    # Without a declared trailer the same cut file passes: nothing in it tells it from a quiet day.
    if data in (GOOD, GOOD.rsplit(b"\n", 2)[0] + b"\n"):
        assert inspect_delivery("f.csv", data, T, "2013-01-01").rows in (1, 2)


def test_trailer_with_header_only_body_is_empty():
    with pytest.raises(DeliveryRejected, match="empty: header only"):
        inspect_delivery("f.csv", b"year,month,day,dep_delay,carrier\n#rows=0\n", TRAILED, "2013-01-01")


# --- header drift is described, not rejected ---------------------------------------------------

COLS = ("year", "month", "day", "dep_time", "dep_delay", "arr_time", "arr_delay", "carrier")
CONTRACT = Table("flights", "daily", columns=COLS, date_columns=("year", "month", "day"))


def _file(header):
    return (",".join(header) + "\n" + ",".join("2013" if c == "year" else "1" for c in header) + "\n").encode()


@pytest.mark.parametrize(
    "header, words",
    [
        (COLS, ""),
        (("year", "month", "day", "dep_time", "arr_delay", "arr_time", "dep_delay", "carrier"),
         "dep_delay <-> arr_delay swapped (columns 5 and 7)"),
        (("year", "month", "day", "dep_time", "dep_delay", "arr_time", "carrier", "arr_delay"),
         "arr_delay <-> carrier swapped (columns 7 and 8)"),
        (("carrier", "year", "month", "day", "dep_time", "dep_delay", "arr_time", "arr_delay"),
         "moved carrier (column 8 -> 1)"),
        (("year", "month", "day", "dep_time", "dep_delay", "arr_time", "arr_delay", "airline"),
         "missing carrier; added airline; renamed? carrier -> airline"),
        (("year", "month", "day", "dep_time", "dep_delay", "arr_time", "arr_delay"), "missing carrier"),
    ],
)
def test_header_changes_name_the_columns_that_moved(header, words):
    s = inspect_delivery("f.csv", _file(header), CONTRACT, "2013-01-01")
    assert s.header_changes == words
    assert s.manifest_meta.get("header_changes", "") == words


def test_header_changes_function():
    from lakeforge.delivery import header_changes

    assert header_changes(["a", "b"], ()) == ""  # no contract declared
    assert header_changes(["b", "a", "d", "c"], ["a", "b", "c", "d"]) == \
        "a <-> b swapped (columns 1 and 2); c <-> d swapped (columns 3 and 4)"
    assert header_changes(["a", "c", "d", "b"], ["a", "b", "c", "d"]) == "moved b (column 2 -> 4)"
    assert header_changes(["a", "b", "a"], ["a", "b"]) == "duplicate columns a"
