"""A second real dataset: Seattle's daily weather 2012-2015, from the ``vega_datasets`` package.

``vega_datasets`` 0.9.0 (PyPI, MIT) ships ``_data/seattle-weather.csv``: 1,461 daily rows from
2012-01-01 to 2015-12-31, columns ``date`` (written ``YYYY/MM/DD``), ``precipitation`` (mm),
``temp_max``, ``temp_min`` (deg C), ``wind`` (m/s) and ``weather`` (one of sun, fog, rain, drizzle,
snow). Its shape differs from nycflights on purpose:

- cadence: the exporter (``simulator``) drops ONE file per calendar month, named by the month's
  first day (``weather/2012-01-01.csv`` holds January); the ingest DAG runs ``@monthly`` and each
  raw partition ``ds=YYYY-MM-01`` holds a month;
- one date column with another format (``date_column="date"``, ``date_format="%Y/%m/%d"``);
- the label is multiclass: the day's weather class, predicted from what was known the day
  before (``features.py``); ``label_temp_max`` is there for a regression model.

Its transform is declared in ``transform.py`` and run by the platform's generic job
(``spark_jobs/transform.py --pipeline seattle_weather``); its DAG files are in ``dags/``.
"""

from lakeforge.sources import Source, Table

WEATHER_COLUMNS = ("date", "precipitation", "temp_max", "temp_min", "wind", "weather")
WEATHER_CLASSES = ("sun", "fog", "rain", "drizzle", "snow")

SOURCE = Source(
    name="seattle_weather",
    description="Daily weather in Seattle 2012-2015 (vega_datasets, MIT), delivered one file per month.",
    tables=(
        Table("weather", "daily", columns=WEATHER_COLUMNS, date_column="date", date_format="%Y/%m/%d",
              description="One row per day; a month's rows per file, named by the month's first day."),
    ),
)
