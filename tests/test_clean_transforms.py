"""raw -> clean transforms on tiny DataFrames with explicit schemas."""

import datetime as dt

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from lakeforge.pipelines.nycflights.clean import clean_flights, clean_weather
from lakeforge.pipelines.nycflights.schemas import AIRPORTS, FLIGHTS_RAW, QUARANTINE, RAW_LINES, WEATHER_RAW

HEADER = ",".join(FLIGHTS_RAW)
GOOD = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z"
CANCELLED = "2013,1,1,NA,1630,NA,NA,1815,NA,EV,4308,N18120,EWR,RDU,NA,416,16,30,2013-01-01T21:00:00Z"
OVERNIGHT = "2013,1,1,2353,2359,-6,425,445,-20,B6,739,N591JB,JFK,PSE,195,1617,23,59,2013-01-02T04:00:00Z"


@pytest.fixture
def airports(spark):
    return spark.createDataFrame(
        [("IAH", "Houston", 29.98, -95.34, 97.0, -6.0, "A", "America/Chicago"),
         ("RDU", "Raleigh", 35.88, -78.79, 435.0, -5.0, "A", "America/New_York")],
        AIRPORTS,
    )


def lines(spark, *values, ds="2013-01-01"):
    return spark.createDataFrame([(v, ds) for v in (HEADER, *values)], RAW_LINES)


def test_good_row_gets_types_and_times(spark, airports):
    clean, bad = clean_flights(lines(spark, GOOD), airports)
    assert bad.count() == 0
    row = clean.collect()[0]
    assert (row.dep_delay, row.distance, row.flight) == (2.0, 1400.0, 1545)
    assert row.sched_dep_local == dt.datetime(2013, 1, 1, 5, 15)
    assert row.sched_dep_utc == dt.datetime(2013, 1, 1, 10, 15)  # EST = UTC-5
    assert row.dep_utc == dt.datetime(2013, 1, 1, 10, 17)
    assert row.sched_arr_local == dt.datetime(2013, 1, 1, 8, 19)  # Houston wall clock
    assert row.sched_arr_utc == dt.datetime(2013, 1, 1, 14, 19)  # CST = UTC-6
    assert row.arr_local == dt.datetime(2013, 1, 1, 8, 30)
    assert (row.cancelled, row.diverted) == (False, False)
    assert row.flight_key == "2013-01-01-UA-1545-EWR-515"


def test_cancelled_and_overnight(spark, airports):
    clean, _ = clean_flights(lines(spark, CANCELLED, OVERNIGHT), airports)
    rows = {r.carrier: r for r in clean.collect()}
    assert rows["EV"].cancelled and rows["EV"].dep_utc is None
    # Left before midnight, early: actual departure is still on the scheduled day.
    assert rows["B6"].dep_local == dt.datetime(2013, 1, 1, 23, 53)
    # PSE is not in the airports table: its zone comes from EXTRA_AIRPORT_ZONES (AST, UTC-4).
    assert rows["B6"].sched_arr_utc == dt.datetime(2013, 1, 2, 8, 45)
    assert rows["B6"].arr_local == dt.datetime(2013, 1, 2, 4, 25)


def test_airports_missing_from_the_table_get_their_zones(spark, airports):
    """BQN, PSE, SJU (America/Puerto_Rico) and STT (America/St_Thomas) are not in airports.csv;
    an airport the table lacks and EXTRA_AIRPORT_ZONES does not know keeps null arrival times."""
    from lakeforge.pipelines.nycflights.clean import EXTRA_AIRPORT_ZONES, destination_zones

    assert EXTRA_AIRPORT_ZONES == {"BQN": "America/Puerto_Rico", "PSE": "America/Puerto_Rico",
                                   "SJU": "America/Puerto_Rico", "STT": "America/St_Thomas"}
    zones = {r.dest: r._dest_tz for r in destination_zones(airports).collect()}
    assert zones == {"IAH": "America/Chicago", "RDU": "America/New_York", **EXTRA_AIRPORT_ZONES}
    to = lambda dest: GOOD.replace(",IAH,", f",{dest},")  # noqa: E731  (EWR 05:15 EST, arrives 08:19 local)
    clean, _ = clean_flights(lines(spark, to("STT"), to("SJU"), to("XYZ")), airports)
    got = {r.dest: (r.sched_arr_utc, r.arr_utc) for r in clean.collect()}
    assert got["STT"] == got["SJU"] == (dt.datetime(2013, 1, 1, 12, 19), dt.datetime(2013, 1, 1, 12, 30))
    assert got["XYZ"] == (None, None)


def test_times_across_dst_changes_and_midnight(spark, airports):
    def row(day, sched, delay, carrier):
        y, m, d = day.split("-")
        return (f"{int(y)},{int(m)},{int(d)},{sched % 2400},{sched},{delay},NA,1200,NA,{carrier},1,N1,EWR,RDU,NA,416,0,0,"
                f"{day}T05:00:00Z")

    days = {"2013-03-10": [row("2013-03-10", 159, 0, "AA"), row("2013-03-10", 230, 0, "BB"),
                           row("2013-03-10", 300, 0, "CC")],
            "2013-11-03": [row("2013-11-03", 130, 0, "DD"), row("2013-11-03", 230, 0, "EE")],
            "2013-01-01": [row("2013-01-01", 2400, 0, "FF"), row("2013-01-01", 2359, 10, "GG")]}
    raw = None
    for ds, values in days.items():
        part = lines(spark, *values, ds=ds)
        raw = part if raw is None else raw.unionByName(part)
    clean, bad = clean_flights(raw, airports)
    assert bad.count() == 0
    got = {r.carrier: (r.sched_dep_local, r.sched_dep_utc, r.dep_local, r.dep_utc) for r in clean.collect()}
    t = dt.datetime
    assert got == {
        "AA": (t(2013, 3, 10, 1, 59), t(2013, 3, 10, 6, 59), t(2013, 3, 10, 1, 59), t(2013, 3, 10, 6, 59)),  # EST
        # 02:30 does not exist that night: read as 03:30 EDT (java.time moves a gap time forward).
        "BB": (t(2013, 3, 10, 2, 30), t(2013, 3, 10, 7, 30), t(2013, 3, 10, 2, 30), t(2013, 3, 10, 7, 30)),
        "CC": (t(2013, 3, 10, 3, 0), t(2013, 3, 10, 7, 0), t(2013, 3, 10, 3, 0), t(2013, 3, 10, 7, 0)),  # EDT
        # 01:30 happens twice that night: the earlier one (EDT) is taken.
        "DD": (t(2013, 11, 3, 1, 30), t(2013, 11, 3, 5, 30), t(2013, 11, 3, 1, 30), t(2013, 11, 3, 5, 30)),
        "EE": (t(2013, 11, 3, 2, 30), t(2013, 11, 3, 7, 30), t(2013, 11, 3, 2, 30), t(2013, 11, 3, 7, 30)),  # EST
        # 2400 is the next day's midnight; a delay carries the actual departure past midnight.
        "FF": (t(2013, 1, 2, 0, 0), t(2013, 1, 2, 5, 0), t(2013, 1, 2, 0, 0), t(2013, 1, 2, 5, 0)),
        "GG": (t(2013, 1, 1, 23, 59), t(2013, 1, 2, 4, 59), t(2013, 1, 2, 0, 9), t(2013, 1, 2, 5, 9)),
    }


@pytest.mark.parametrize(
    "line, reason",
    [
        ("2013,1,1,517,515,2", "field_count: expected 19, got 6"),
        (GOOD + ",extra", "field_count: expected 19, got 20"),
        (GOOD.replace(",2,830,", ",two,830,"), "unparsable dep_delay: 'two'"),
        (GOOD.replace("2013-01-01T10:00:00Z", "yesterday"), "unparsable time_hour: 'yesterday'"),
        (GOOD.replace("2013,1,1,", "2013,1,2,", 1), "row dated 2013-01-02 in partition 2013-01-01"),
        (GOOD.replace(",EWR,", ",XXX,"), "unknown origin: XXX"),
        (GOOD.replace(",515,", ",575,"), "impossible sched_dep_time: 575"),
        (GOOD.replace(",1400,", ",0,"), "impossible distance: 0.0 (allowed 1..6000)"),
        (GOOD.replace(",2,830,", ",9999,830,"), "impossible dep_delay: 9999.0 (allowed -2880..2880)"),
        (GOOD.replace(",UA,", ",NA,"), "missing carrier, flight or dest"),
    ],
)
def test_malformed_rows_are_quarantined_with_reason(spark, airports, line, reason):
    clean, bad = clean_flights(lines(spark, GOOD, line), airports)
    assert clean.count() == 1
    assertDataFrameEqual(bad, spark.createDataFrame([(line, reason, "2013-01-01")], QUARANTINE))


def test_good_plus_quarantined_is_input(spark, airports):
    inputs = [GOOD, CANCELLED, "garbage", GOOD.replace(",EWR,", ",ZZZ,"), OVERNIGHT]
    clean, bad = clean_flights(lines(spark, *inputs), airports)
    assert (clean.count(), bad.count()) == (3, 2)


def test_weather_outlier_is_quarantined(spark):
    header = ",".join(WEATHER_RAW)
    good = "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.35,NA,0,1012,10,2013-01-01T06:00:00Z"
    storm = "EWR,2013,1,1,2,39.02,26.06,59.37,270,1048.36,NA,0,1012,10,2013-01-01T07:00:00Z"
    weather, bad = clean_weather(
        spark.createDataFrame([(v, "2013-01-01") for v in (header, good, storm)], RAW_LINES)
    )
    expected = spark.createDataFrame(
        [Row(origin="EWR", hour=1, wind_speed=10.35, wind_gust=None, ds="2013-01-01")],
        "origin string, hour int, wind_speed double, wind_gust double, ds string",
    )
    assertDataFrameEqual(weather.select("origin", "hour", "wind_speed", "wind_gust", "ds"), expected)
    assert [r.reason for r in bad.collect()] == ["impossible wind_speed: 1048.36 (allowed 0..150)"]


def test_reference_snapshot_rows(spark):
    from lakeforge.pipelines.nycflights.clean import clean_reference

    rows = spark.createDataFrame(
        [("9E", "Endeavor Air Inc.", None, "2013-01-01"),
         ("AA", "American Airlines Inc.", None, "2013-01-01"),
         ("AA", "American Airlines again", None, "2013-01-01"),
         (None, "No code", None, "2013-01-01"),
         (None, None, 'ZZ,"unterminated', "2013-01-01")],
        "carrier string, name string, _corrupt string, ds string",
    )
    good, bad = clean_reference(rows, "carrier")
    assertDataFrameEqual(good, spark.createDataFrame([("9E", "Endeavor Air Inc.", "2013-01-01")],
                                                     "carrier string, name string, ds string"))
    assert sorted(r.reason for r in bad.collect()) == [
        "duplicate carrier: AA", "duplicate carrier: AA", "malformed row", "missing carrier"]


def test_column_calls_do_not_record_their_python_call_site(spark, monkeypatch):
    """The jobs' sessions turn off PySpark's call-site capture (lakeforge.spark.spark_conf): with
    it, every Column function makes extra JVM round trips (seconds per transform run)."""
    import gc
    import threading

    import pyspark.errors.utils as origin
    from py4j import protocol as proto
    from pyspark.sql import functions as F

    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
    assert not origin.is_debugging_enabled()
    client = spark.sparkContext._gateway._gateway_client
    send = client.send_command

    here = threading.get_ident()
    release = proto.MEMORY_COMMAND_NAME + proto.MEMORY_DEL_SUBCOMMAND_NAME

    def counted(command, *args, **kwargs):
        # Only this thread's calls for the expression: not another thread's, and not the object
        # releases py4j sends when a garbage collection frees earlier tests' JavaObjects (a CI run
        # once counted 107 "calls" with capture off that way, against 51 with it on).
        if threading.get_ident() == here and not command.startswith(release):
            calls.append(command)
        return send(command, *args, **kwargs)

    def round_trips() -> int:
        calls.clear()
        gc.collect()
        gc.disable()
        monkeypatch.setattr(client, "send_command", counted)
        try:
            F.col("a") + F.lit(1) > F.col("b")
        finally:
            monkeypatch.setattr(client, "send_command", send)
            gc.enable()
        return len(calls)

    calls: list[str] = []

    off = round_trips()
    monkeypatch.setattr(origin, "_enable_debugging_cache", True)  # PySpark's default
    on = round_trips()
    assert 0 < off and on >= 2 * off, (off, on)
