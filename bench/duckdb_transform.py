"""The transform job's logic (raw -> clean -> features) in DuckDB SQL, for the benchmark.

A deliberately faithful port of ``plugins/lakeforge/pipelines/nycflights/clean.py`` and ``plugins/lakeforge/pipelines/nycflights/features.py``:

- the same input: the raw files named by the raw partitions' manifests, read as text lines (the
  partition ``ds`` taken from the file path), the header line dropped;
- the same parsing: split on ``,``, ``NA`` / empty -> NULL, typed with TRY_CAST (integers only
  from integer text, as Spark's ``try_cast``), the same quarantine checks in the same order (field
  count, unparsable field, row dated in another partition, unknown origin, missing keys, impossible
  clock times / delays / air time / distance, weather ranges), first failing check wins, the same
  reason texts;
- the same derived timestamps: local wall clock from date + hhmm (2400 = next midnight), UTC via
  the ICU time zones bundled in DuckDB, ambiguous local times (DST fall-back) resolved to the
  earlier instant and skipped ones (spring-forward) pushed forward, as Java's ``atZone`` does;
  arrival in the destination's zone from the airports snapshot, next day when it would be before
  the departure; minutes added as truncated seconds;
- the same reference cleaning: the newest airports / planes / airlines snapshot on or before the
  last date, malformed rows, rows without their key and duplicated keys quarantined, published as
  clean/<table> and quarantine/<table> (ds = the snapshot's date); the joins use the clean rows;
- the same features: calendar of the scheduled local departure, weather at origin + ds + scheduled
  hour (one row per key), aircraft, destination, label and label_reason;
- Parquet (zstd) out, partitioned by ds: clean/flights, quarantine/flights, clean/weather,
  quarantine/weather, features/flights, and clean/ + quarantine/ of the three reference tables. Row accounting is checked (clean + quarantined = raw
  rows per ds, features = clean flights).

No lakeforge manifests are written for the outputs (the Spark job's per-partition atomic publish
with sha256 is part of its time; see the benchmark's notes).

    python -m bench.duckdb_transform --lake file:///... --out /tmp/out --start 2013-01-01 --end 2013-01-31
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakeforge.lake import Lake
from lakeforge.publish import list_partitions, partition_name, read_manifest

INT, DBL, STR, TS = "INTEGER", "DOUBLE", "VARCHAR", "TIMESTAMPTZ"

# Raw column -> DuckDB type, in the delivered order (bench.transform_bench checks these against
# lakeforge.pipelines.nycflights.schemas so the two cannot drift apart silently).
FLIGHTS_RAW = {
    "year": INT, "month": INT, "day": INT, "dep_time": INT, "sched_dep_time": INT,
    "dep_delay": DBL, "arr_time": INT, "sched_arr_time": INT, "arr_delay": DBL, "carrier": STR,
    "flight": INT, "tailnum": STR, "origin": STR, "dest": STR, "air_time": DBL, "distance": DBL,
    "hour": INT, "minute": INT, "time_hour": TS,
}
WEATHER_RAW = {
    "origin": STR, "year": INT, "month": INT, "day": INT, "hour": INT, "temp": DBL, "dewp": DBL,
    "humid": DBL, "wind_dir": DBL, "wind_speed": DBL, "wind_gust": DBL, "precip": DBL,
    "pressure": DBL, "visib": DBL, "time_hour": TS,
}
PLANES = {
    "tailnum": STR, "year": INT, "type": STR, "manufacturer": STR, "model": STR, "engines": INT,
    "seats": INT, "speed": INT, "engine": STR,
}
AIRPORTS = {
    "faa": STR, "name": STR, "lat": DBL, "lon": DBL, "alt": DBL, "tz": DBL, "dst": STR, "tzone": STR,
}
AIRLINES = {"carrier": STR, "name": STR}
REFERENCE = {"airports": AIRPORTS, "planes": PLANES, "airlines": AIRLINES}
REFERENCE_KEYS = {"planes": "tailnum", "airports": "faa", "airlines": "carrier"}
ORIGIN_TZ = "America/New_York"
ORIGINS = ("EWR", "JFK", "LGA")
MAX_DELAY_MINUTES = 48 * 60
DELAY_THRESHOLD_MINUTES = 15

CLEAN_FLIGHTS_COLUMNS = [
    "flight_key", "year", "month", "day", "carrier", "flight", "tailnum", "origin", "dest",
    "distance", "sched_dep_time", "sched_arr_time", "dep_time", "arr_time", "dep_delay",
    "arr_delay", "air_time", "sched_dep_local", "sched_dep_utc", "dep_local", "dep_utc",
    "sched_arr_local", "sched_arr_utc", "arr_local", "arr_utc", "cancelled", "diverted",
]
CLEAN_WEATHER_COLUMNS = [
    "origin", "year", "month", "day", "hour", "time_hour", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib",
]
FEATURES_TABLE_COLUMNS = [
    "flight_key", "sched_dep_utc",
    "carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine",
    "distance", "sched_dep_hour", "sched_dep_minute", "sched_arr_hour", "day_of_week", "month",
    "day_of_month", "day_of_year", "is_weekend", "temp", "dewp", "humid", "wind_dir", "wind_speed",
    "wind_gust", "precip", "pressure", "visib", "plane_age", "plane_seats", "plane_engines",
    "dest_lat", "dest_lon", "dest_alt", "dest_tz_offset",
    "label", "label_reason",
]
OUTPUTS = ("clean/flights", "quarantine/flights", "clean/weather", "quarantine/weather", "features/flights")
REFERENCE_OUTPUTS = tuple(f"{layer}/{t}" for t in REFERENCE for layer in ("clean", "quarantine"))

MACROS = [
    # Spark's try_cast(string as int) takes only integer text (no '1.0', '1e2', '0x10', '1_000').
    r"CREATE OR REPLACE MACRO try_int(x) AS "
    r"CASE WHEN regexp_full_match(x, '\s*[+-]?[0-9]+\s*') THEN TRY_CAST(x AS INTEGER) END",
    "CREATE OR REPLACE MACRO na(x) AS CASE WHEN x IN ('NA', '') THEN NULL ELSE x END",
    "CREATE OR REPLACE MACRO txt(x) AS coalesce(CAST(x AS VARCHAR), 'null')",
    # Local wall clock from a date's fields and an hhmm integer (2400 = next day's 00:00).
    "CREATE OR REPLACE MACRO clock(y, m, d, hhmm) AS "
    "CAST(make_date(y, m, d) AS TIMESTAMP) + to_minutes(CAST((hhmm // 100) * 60 + hhmm % 100 AS BIGINT))",
    # Local wall time in zone tz -> instant, like Spark's to_utc_timestamp (java.time atZone): a
    # skipped time moves forward by the gap (ICU does the same), a repeated time takes the EARLIER
    # offset (ICU takes the later one: step back an hour when that is the same wall time).
    "CREATE OR REPLACE MACRO to_utc(local, tz) AS "
    "CASE WHEN timezone(tz, timezone(tz, local) - INTERVAL 1 HOUR) = local "
    "THEN timezone(tz, local) - INTERVAL 1 HOUR ELSE timezone(tz, local) END",
    # Spark's _plus_minutes: whole seconds, (minutes * 60) truncated toward zero.
    "CREATE OR REPLACE MACRO plus_minutes(ts, minutes) AS ts + to_seconds(CAST(trunc(minutes * 60) AS BIGINT))",
]


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _outside(name: str, low: float, high: float, nullable: bool = True) -> tuple[str, str]:
    bad = f"({name} < {low} OR {name} > {high})"
    if not nullable:
        bad = f"({name} IS NULL OR {bad})"
    return bad, f"{_q(f'impossible {name}: ')} || txt({name}) || {_q(f' (allowed {low}..{high})')}"


def _bad_clock(name: str, nullable: bool = True) -> tuple[str, str]:
    bad = f"({name} < 0 OR {name} > 2400 OR {name} % 100 > 59)"
    if not nullable:
        bad = f"({name} IS NULL OR {bad})"
    return bad, f"{_q(f'impossible {name}: ')} || txt({name})"


def _dated_in_partition() -> tuple[str, str]:
    dated = ("coalesce(printf('%04d', year), 'null') || '-' || coalesce(printf('%02d', month), 'null')"
             " || '-' || coalesce(printf('%02d', day), 'null')")
    return f"({dated}) <> ds", f"'row dated ' || ({dated}) || ' in partition ' || ds"


def _unknown_origin() -> tuple[str, str]:
    origins = ", ".join(_q(o) for o in ORIGINS)
    return f"(origin NOT IN ({origins}) OR origin IS NULL)", "'unknown origin: ' || txt(origin)"


def flight_rules() -> list[tuple[str, str]]:
    return [
        _dated_in_partition(),
        _unknown_origin(),
        ("(carrier IS NULL OR flight IS NULL OR dest IS NULL)", "'missing carrier, flight or dest'"),
        _bad_clock("sched_dep_time", nullable=False),
        _bad_clock("sched_arr_time", nullable=False),
        _bad_clock("dep_time"),
        _bad_clock("arr_time"),
        _outside("dep_delay", -MAX_DELAY_MINUTES, MAX_DELAY_MINUTES),
        _outside("arr_delay", -MAX_DELAY_MINUTES, MAX_DELAY_MINUTES),
        _outside("air_time", 1, 1500),
        _outside("distance", 1, 6000, nullable=False),
    ]


def weather_rules() -> list[tuple[str, str]]:
    return [
        _dated_in_partition(),
        _unknown_origin(),
        _outside("hour", 0, 23, nullable=False),
        _outside("temp", -60, 140),
        _outside("dewp", -80, 100),
        _outside("humid", 0, 100),
        _outside("wind_dir", 0, 360),
        _outside("wind_speed", 0, 150),
        _outside("wind_gust", 0, 200),
        _outside("precip", 0, 10),
        _outside("pressure", 900, 1100),
        _outside("visib", 0, 100),
    ]


def _typed(raw: str, dtype: str) -> str:
    if dtype == STR:
        return raw
    if dtype == INT:
        return f"try_int({raw})"
    return f"TRY_CAST({raw} AS {dtype})"


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def parse_sql(table: str, files: list[str], schema: dict[str, str], rules: list[tuple[str, str]]) -> str:
    """``CREATE TABLE <table>_parsed``: raw_line, ds, typed columns, reason (NULL = good)."""
    width = len(schema)
    header = ",".join(schema)
    raw_cols = ",\n      ".join(f"na(f[{i + 1}]) AS _raw_{name}" for i, name in enumerate(schema))
    typed_cols = ",\n      ".join(f"{_typed(f'_raw_{name}', t)} AS {name}" for name, t in schema.items())
    checks = [(f"_width <> {width}", f"'field_count: expected {width}, got ' || _width")]
    checks += [
        (f"(_raw_{name} IS NOT NULL AND {name} IS NULL)", f"{_q(f'unparsable {name}: ')} || '''' || _raw_{name} || ''''")
        for name in schema
    ]
    checks += rules
    reason = "CASE\n      " + "\n      ".join(f"WHEN {bad} THEN {text}" for bad, text in checks) + "\n    END"
    return f"""
CREATE OR REPLACE TEMP TABLE {table}_parsed AS
SELECT raw_line, ds, {", ".join(schema)},
    {reason} AS reason
FROM (
  SELECT raw_line, ds, _width, {", ".join(f"_raw_{n}" for n in schema)},
      {typed_cols}
  FROM (
    SELECT raw_line, ds, len(f) AS _width,
      {raw_cols}
    FROM (
      SELECT coalesce(value, '') AS raw_line,
             regexp_extract(filename, 'ds=(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS ds,
             string_split(coalesce(value, ''), ',') AS f
      FROM read_csv({_sql_list(files)}, columns={{'value': 'VARCHAR'}}, delim='\\x01', quote='',
                    escape='', header=false, auto_detect=false, new_line='\\n', filename=true)
      WHERE value IS DISTINCT FROM {_q(header)}
    )
  )
)"""


def reference_sql(table: str, files: list[str], schema: dict[str, str], key: str, ds: str) -> list[str]:
    """Statements that clean a reference snapshot like lakeforge.pipelines.nycflights.clean.clean_reference.

    Spark reads it with its CSV reader (PERMISSIVE, ``_corrupt`` = the raw line of a row with the
    wrong number of fields or a value that does not convert), then quarantines malformed rows, rows
    without their key, and every row of a key that occurs more than once. Here: DuckDB's CSV reader
    with every column as VARCHAR (rows with the wrong field count land in its rejects table, their
    key taken from the line's first field as Spark's partial row has it), typed with TRY_CAST.
    Creates ``<table>`` (the good rows, used by the joins) and ``<table>_bad``.
    """
    assert list(schema)[0] == key, "the key is the first column of every reference table"
    varchar = "{" + ", ".join(f"{_q(n)}: 'VARCHAR'" for n in schema) + "}"
    strict = {INT: "CASE WHEN regexp_full_match({x}, '[+-]?[0-9]+') THEN TRY_CAST({x} AS INTEGER) END",
              DBL: "TRY_CAST(trim({x}) AS DOUBLE)", STR: "{x}"}
    typed = ", ".join(f"{strict[t].format(x=f'_t.{n}')} AS {n}" for n, t in schema.items())
    failed = " OR ".join(f"(_t.{n} IS NOT NULL AND {strict[t].format(x=f'_t.{n}')} IS NULL)"
                         for n, t in schema.items() if t != STR) or "false"
    rejoined = " || ',' || ".join(f"coalesce(_t.{n}, 'NA')" for n in schema)
    nulls = ", ".join(f"NULL::{t} AS {n}" for n, t in list(schema.items())[1:])
    data = ", ".join(schema)
    return [
        f"""CREATE OR REPLACE TEMP TABLE {table}_read AS
            SELECT * FROM read_csv({_sql_list(files)}, columns={varchar}, header=true, nullstr=['NA', ''],
                allow_quoted_nulls=false, auto_detect=false, quote='"', escape='"', delim=',',
                null_padding=false, ignore_errors=true, store_rejects=true,
                rejects_table='{table}_rejects', rejects_scan='{table}_rejects_scan')""",
        f"""CREATE OR REPLACE TEMP TABLE {table}_checked AS
            WITH parsed AS (
              SELECT {typed}, ({failed}) AS _malformed, ({rejoined}) AS _line FROM {table}_read _t
              UNION ALL
              SELECT na(split_part(any_value(csv_line), ',', 1)) AS {key}, {nulls}, true, any_value(csv_line)
              FROM {table}_rejects GROUP BY file_id, line
            )
            SELECT *, CASE WHEN _malformed THEN 'malformed row'
                           WHEN {key} IS NULL THEN 'missing {key}'
                           WHEN count(*) OVER (PARTITION BY {key}) > 1 THEN 'duplicate {key}: ' || {key}
                      END AS reason
            FROM parsed""",
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {data}, {_q(ds)} AS ds FROM {table}_checked WHERE reason IS NULL",
        f"""CREATE OR REPLACE TEMP TABLE {table}_bad AS
            SELECT CASE WHEN _malformed THEN _line ELSE concat_ws(',', {data}) END AS raw_line, reason, {_q(ds)} AS ds
            FROM {table}_checked WHERE reason IS NOT NULL""",
    ]


CLEAN_FLIGHTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE clean_flights AS
WITH dep AS (
  SELECT g.* EXCLUDE (raw_line, reason),
         clock(year, month, day, sched_dep_time) AS sched_dep_local,
         to_utc(clock(year, month, day, sched_dep_time), '{ORIGIN_TZ}') AS sched_dep_utc
  FROM flights_parsed g
  WHERE reason IS NULL
), arr AS (
  SELECT dep.*, z.tzone AS _dest_tz,
         to_utc(clock(year, month, day, sched_arr_time), z.tzone) AS _same_day_utc
  FROM dep LEFT JOIN airports z ON z.faa = dep.dest
), sched AS (
  SELECT arr.*,
         CASE WHEN _same_day_utc < sched_dep_utc THEN _same_day_utc + INTERVAL 1440 MINUTE
              ELSE _same_day_utc END AS sched_arr_utc
  FROM arr
), timed AS (
  SELECT sched.*,
         plus_minutes(sched_dep_utc, dep_delay) AS dep_utc,
         plus_minutes(sched_dep_local, dep_delay) AS dep_local,
         timezone(_dest_tz, sched_arr_utc) AS sched_arr_local,
         plus_minutes(sched_arr_utc, arr_delay) AS arr_utc
  FROM sched
)
SELECT concat_ws('-', ds, carrier, flight, origin, sched_dep_time) AS flight_key,
       year, month, day, carrier, flight, tailnum, origin, dest, distance, sched_dep_time,
       sched_arr_time, dep_time, arr_time, dep_delay, arr_delay, air_time, sched_dep_local,
       sched_dep_utc, dep_local, dep_utc, sched_arr_local, sched_arr_utc,
       timezone(_dest_tz, arr_utc) AS arr_local, arr_utc,
       dep_time IS NULL AS cancelled,
       dep_time IS NOT NULL AND arr_delay IS NULL AS diverted,
       ds
FROM timed
"""

CLEAN_WEATHER_SQL = f"""
CREATE OR REPLACE TEMP TABLE clean_weather AS
SELECT {", ".join(CLEAN_WEATHER_COLUMNS)}, ds FROM weather_parsed WHERE reason IS NULL
"""

FEATURES_SQL = f"""
CREATE OR REPLACE TEMP TABLE features AS
WITH cal AS (
  SELECT f.*,
         CAST(hour(sched_dep_local) AS INTEGER) AS sched_dep_hour,
         CAST(minute(sched_dep_local) AS INTEGER) AS sched_dep_minute,
         sched_arr_time // 100 AS sched_arr_hour,
         CAST(dayofweek(sched_dep_local) + 1 AS INTEGER) AS day_of_week,
         CAST(dayofmonth(sched_dep_local) AS INTEGER) AS day_of_month,
         CAST(dayofyear(sched_dep_local) AS INTEGER) AS day_of_year,
         CAST(dayofweek(sched_dep_local) IN (0, 6) AS INTEGER) AS is_weekend
  FROM clean_flights f
), hourly AS (
  SELECT origin, ds, hour AS sched_dep_hour,
         temp, dewp, humid, wind_dir, wind_speed, wind_gust, precip, pressure, visib
  FROM clean_weather
  QUALIFY row_number() OVER (PARTITION BY origin, ds, hour) = 1
), joined AS (
  SELECT cal.*,
         w.temp, w.dewp, w.humid, w.wind_dir, w.wind_speed, w.wind_gust, w.precip, w.pressure, w.visib,
         p.type AS plane_type, p.manufacturer AS plane_manufacturer, p.engine AS plane_engine,
         p.seats AS plane_seats, p.engines AS plane_engines, cal.year - p.year AS plane_age,
         a.lat AS dest_lat, a.lon AS dest_lon, a.alt AS dest_alt, a.tz AS dest_tz_offset,
         CASE WHEN cancelled THEN 'cancelled' WHEN diverted THEN 'diverted'
              WHEN arr_delay > {DELAY_THRESHOLD_MINUTES} THEN 'late' ELSE 'on_time' END AS label_reason
  FROM cal
  LEFT JOIN hourly w ON w.origin = cal.origin AND w.ds = cal.ds AND w.sched_dep_hour = cal.sched_dep_hour
  LEFT JOIN planes p ON p.tailnum = cal.tailnum
  LEFT JOIN airports a ON a.faa = cal.dest
)
SELECT {", ".join("CAST(label_reason <> 'on_time' AS INTEGER) AS label" if c == "label" else c
                  for c in FEATURES_TABLE_COLUMNS)}, ds
FROM joined
"""


def raw_files(lake: Lake, table: str, dates: list[str]) -> tuple[list[str], dict[str, int]]:
    """Local paths of the files the raw partitions' manifests list, and their row counts."""
    files, rows = [], {}
    for ds in dates:
        manifest = read_manifest(lake, table, partition_name(ds))
        if manifest is None:
            raise SystemExit(f"no raw partition {table}/ds={ds}: ingest it first")
        files += [lake.path(table, partition_name(ds), f["name"]) for f in manifest["files"]]
        rows[ds] = manifest["rows"]
    return files, rows


def snapshot_files(lake: Lake, table: str, as_of: str) -> tuple[list[str], str, int]:
    """The newest snapshot on or before ``as_of``: its files, its ds and its raw row count."""
    candidates = [p for p in list_partitions(lake, f"raw/{table}") if p <= partition_name(as_of)]
    if not candidates:
        raise SystemExit(f"no raw/{table} snapshot on or before {as_of}")
    manifest = read_manifest(lake, f"raw/{table}", candidates[-1])
    files = [lake.path("raw", table, candidates[-1], f["name"]) for f in manifest["files"]]
    return files, candidates[-1].split("=", 1)[1], manifest["rows"]


def _counts(con, sql: str) -> dict[str, int]:
    return dict(con.execute(f"SELECT ds, count(*) FROM ({sql}) GROUP BY ds").fetchall())


def _copy(con, sql: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO {_q(str(target))} "
                "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (ds), OVERWRITE_OR_IGNORE true)")


def run(lake_uri: str, out: Path, dates: list[str], threads: int = 2, memory_limit: str | None = None) -> dict[str, Any]:
    import duckdb

    started = time.perf_counter()
    lake = Lake(lake_uri)
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = {_q(str(out / '_duckdb_tmp'))}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_q(memory_limit)}")
    for macro in MACROS:
        con.execute(macro)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    flights_files, raw_flights = raw_files(lake, "raw/flights", dates)
    weather_files, raw_weather = raw_files(lake, "raw/weather", dates)
    reference_rows = {}
    for table, schema in REFERENCE.items():
        files, snap_ds, raw_rows = snapshot_files(lake, table, dates[-1])
        for statement in reference_sql(table, files, schema, REFERENCE_KEYS[table], snap_ds):
            con.execute(statement)
        _copy(con, f"SELECT * FROM {table}", out / "clean" / table)
        _copy(con, f"SELECT * FROM {table}_bad", out / "quarantine" / table)
        good, bad = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (table, f"{table}_bad"))
        if good + bad != raw_rows:
            raise RuntimeError(f"{table}: raw {raw_rows} != clean {good} + quarantined {bad}")
        reference_rows[table] = {"ds": snap_ds, "raw": raw_rows, "clean": good, "quarantine": bad}
    con.execute(parse_sql("flights", flights_files, FLIGHTS_RAW, flight_rules()))
    con.execute(parse_sql("weather", weather_files, WEATHER_RAW, weather_rules()))
    con.execute(CLEAN_FLIGHTS_SQL)
    con.execute(CLEAN_WEATHER_SQL)
    timings["parse_clean_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _copy(con, "SELECT * FROM clean_flights", out / "clean" / "flights")
    _copy(con, "SELECT raw_line, reason, ds FROM flights_parsed WHERE reason IS NOT NULL", out / "quarantine" / "flights")
    _copy(con, "SELECT * FROM clean_weather", out / "clean" / "weather")
    _copy(con, "SELECT raw_line, reason, ds FROM weather_parsed WHERE reason IS NOT NULL", out / "quarantine" / "weather")
    timings["write_clean_s"] = time.perf_counter() - t

    t = time.perf_counter()
    con.execute(FEATURES_SQL)
    _copy(con, "SELECT * FROM features", out / "features" / "flights")
    timings["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    counts = {
        "raw_flights": raw_flights,
        "raw_weather": raw_weather,
        "clean_flights": _counts(con, "SELECT ds FROM clean_flights"),
        "quarantine_flights": _counts(con, "SELECT ds FROM flights_parsed WHERE reason IS NOT NULL"),
        "clean_weather": _counts(con, "SELECT ds FROM clean_weather"),
        "quarantine_weather": _counts(con, "SELECT ds FROM weather_parsed WHERE reason IS NOT NULL"),
        "features_flights": _counts(con, "SELECT ds FROM features"),
    }
    for table in ("flights", "weather"):
        raw, good, bad = counts[f"raw_{table}"], counts[f"clean_{table}"], counts[f"quarantine_{table}"]
        wrong = {ds: (raw[ds], good.get(ds, 0), bad.get(ds, 0)) for ds in raw
                 if raw[ds] != good.get(ds, 0) + bad.get(ds, 0)}
        if wrong:
            raise RuntimeError(f"{table}: raw != clean + quarantined for {wrong}")
    if counts["features_flights"] != counts["clean_flights"]:
        raise RuntimeError("features rows != clean flights rows")
    timings["accounting_s"] = time.perf_counter() - t
    con.close()
    shutil.rmtree(out / "_duckdb_tmp", ignore_errors=True)
    timings["total_s"] = time.perf_counter() - started
    totals = {name: sum(per_ds.values()) for name, per_ds in counts.items()}
    return {
        "dates": [dates[0], dates[-1]], "days": len(dates), "rows": totals, "timings": timings,
        "reference_rows": reference_rows, "duckdb": duckdb.__version__, "threads": threads,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", required=True, help="lake root URI (file://...)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (replaced)")
    parser.add_argument("--dates", help="comma-separated YYYY-MM-DD")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit")
    args = parser.parse_args(argv)
    if args.dates:
        dates = sorted({d.strip() for d in args.dates.split(",") if d.strip()})
    else:
        start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
        dates = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    result = run(args.lake, args.out, dates, args.threads, args.memory_limit)
    print("DUCKDB_RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
