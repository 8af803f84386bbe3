"""The declarations of a source are checked when it is built: a mistake fails at import of the
pipeline, naming the table, not at the first delivery."""

import pytest

from lakeforge.sources import Source, Table


def test_single_date_column_with_or_without_format():
    assert Table("t", "daily", date_column="date").date_format is None  # ISO 8601
    assert Table("t", "daily", columns=("id", "date"), date_column="date", date_format="%Y/%m/%d").date_column == "date"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(date_columns=("year", "month", "day"), date_column="date"), "not both"),
        (dict(date_format="%Y/%m/%d"), "without a date_column"),
        (dict(date_column="date", date_format="%Y/%m"), "does not identify a day"),
        (dict(date_column="date", date_format="%m/%d"), "does not identify a day"),
        (dict(date_column="date", date_format="%Y-%m-%d %Q"), "does not read back"),
        (dict(date_columns=("year", "month")), "three distinct columns"),
        (dict(date_columns=("year", "year", "day")), "three distinct columns"),
        (dict(columns=("id", "when"), date_column="date"), "date column(s) date not among its columns"),
        (dict(columns=("a", "b", "a")), "columns declared twice: a"),
        (dict(row_count_trailer=r"#rows=\d+"), "exactly one group"),
        (dict(row_count_trailer=r"#rows=(\d+"), "not a regular expression"),
    ],
)
def test_bad_table_declarations_are_refused(kwargs, words):
    with pytest.raises(ValueError) as err:
        Table("trips", "daily", **kwargs)
    assert words in str(err.value) and "table 'trips'" in str(err.value)


def test_a_source_cannot_declare_a_table_twice():
    with pytest.raises(ValueError, match="tables declared twice: a"):
        Source("s", (Table("a", "daily"), Table("b", "daily"), Table("a", "snapshot")))


def test_the_reference_source_is_valid():
    from lakeforge.pipelines.nycflights import SOURCE

    assert SOURCE.table("flights").date_columns == ("year", "month", "day")


def test_a_landing_file_name_gives_its_date_or_none():
    """What the delivery watcher and the ingest run's scan read from a landing listing."""
    daily = Table("flights", "daily")  # "{ds}*.csv"
    assert daily.date_of("2013-01-05.csv") == "2013-01-05"
    assert daily.date_of("2013-01-05.part-2.csv") == "2013-01-05"  # still that day's delivery
    for name in ("x.csv", "2013-01-05.csv.tmp", ".2013-01-05.csv.tmp", "2013-13-05.csv", "13-01-05.csv"):
        assert daily.date_of(name) is None, name
    named = Table("weather", "daily", filename="seattle_{ds}_v?.csv")
    assert named.date_of("seattle_2012-02-01_v2.csv") == "2012-02-01"
    assert named.date_of("seattle_2012-02-01_v22.csv") is None and named.date_of("2012-02-01.csv") is None
