"""The second real dataset through the generic transform: seattle_weather (vega_datasets), monthly
drops with a YYYY/MM/DD date column, ingest -> clean -> features -> gate -> publish on real Spark,
and under Airflow beside nycflights in the same lake."""

from __future__ import annotations

import json
from datetime import date

import pendulum
import pytest

from lakeforge.ingest import ingest_partition
from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.seattle_weather import SOURCE, simulator
from lakeforge.publish import list_partitions, read_manifest
from lakeforge.settings import PROJECT_ROOT
from lakeforge.transform import job, load_transform

MONTHS = ["2012-01-01", "2012-02-01", "2012-03-01"]
GOOD_LINE = "2012/02/10,2.5,12.8,6.7,3.0,rain"
BAD_LINE = "2012/02/10,2.5,12.8,6.7,3.0,hail"  # a weather class the source does not have


def test_the_dataset_is_what_the_pipeline_says():
    header, months = simulator.lines_by_month()
    assert header.rstrip("\n").split(",") == list(SOURCE.table("weather").columns)
    assert len(months) == 48 and min(months) == date(2012, 1, 1) and max(months) == date(2015, 12, 1)
    assert sum(text.count("\n") for text in months.values()) == 1461
    assert {line.rsplit(",", 1)[1].strip() for text in months.values() for line in text.splitlines()} == {
        "sun", "fog", "rain", "drizzle", "snow"}


def ingest_months(tmp_path, edit_february) -> Lake:
    """January to March 2012 delivered and ingested into raw/, February's file edited first."""
    lake = source_lake("seattle_weather", f"file://{tmp_path}/lake")
    landing = Lake(f"file://{tmp_path}/landing/seattle_weather")
    assert simulator.deliver(landing, date(2012, 1, 1), date(2012, 3, 31)) == [f"weather/{m}.csv" for m in MONTHS]
    february = landing.read_bytes("weather/2012-02-01.csv").decode()
    landing.write_bytes("weather/2012-02-01.csv", edit_february(february).encode())
    for ds in MONTHS:
        assert ingest_partition(SOURCE, "weather", ds, lake=lake, landing=landing).status == "published"
    return lake


@pytest.fixture
def raw_lake(tmp_path) -> Lake:
    """One of February's rows broken."""
    def edit(text: str) -> str:
        assert GOOD_LINE in text
        return text.replace(GOOD_LINE, BAD_LINE)

    return ingest_months(tmp_path, edit)


def test_ingest_clean_features_gate_publish(spark, raw_lake):
    spec = load_transform("seattle_weather")
    first = job.run(spark, raw_lake, spec, MONTHS[:2], "first")
    assert first["published"] == MONTHS[:2] and first["quality"]["blocked"] == {}
    rows = first["rows"]
    assert rows["raw_weather"] == 31 + 29
    assert rows["clean_weather"] + rows["quarantine_weather"] == rows["raw_weather"]
    assert rows["quarantine_weather"] == 1 and rows["features_weather"] == rows["clean_weather"] == 59
    bad = spark.read.parquet(raw_lake.uri("quarantine/weather")).collect()
    assert [(b.raw_line, b.reason, str(b.ds)) for b in bad] == [(BAD_LINE, "unknown weather: hail", "2012-02-01")]
    # The quarantined row is counted by the gate: February is published with a warning.
    warned = read_manifest(raw_lake, "clean/weather", "ds=2012-02-01")["quality"]
    assert warned["status"] == "warned" and any("quarantine_ratio" in w for w in warned["warnings"])
    assert read_manifest(raw_lake, "quarantine/weather", "ds=2012-02-01")["rows"] == 1

    # March on its own: its first days read February's published clean rows as history.
    second = job.run(spark, raw_lake, spec, MONTHS[2:], "second")
    assert second["published"] == MONTHS[2:] and second["rows"]["quarantine_weather"] == 0
    for table in ("clean/weather", "quarantine/weather", "features/weather"):
        assert list_partitions(raw_lake, table) == [f"ds={m}" for m in MONTHS], table
    manifest = read_manifest(raw_lake, "features/weather", "ds=2012-03-01")
    raw = read_manifest(raw_lake, "raw/weather", "ds=2012-03-01")
    assert manifest["rows"] == 31 and manifest["dag_run_id"] == "second" and manifest["job"] == "transform"
    assert manifest["inputs"] == {"raw/weather": {"content_sha256": raw["content_sha256"]}}

    features = {r.date.isoformat(): r for r in spark.read.parquet(raw_lake.uri("features/weather")).collect()}
    assert len(features) == 90
    assert features["2012-01-01"].prev_temp_max is None and features["2012-01-01"].known_days_7 == 0
    # 2012-02-29 (temp_max 5.0, snow) is what 2012-03-01 knows of yesterday; its label is its own day.
    march = features["2012-03-01"]
    assert (march.prev_temp_max, march.prev_weather, march.known_days_7) == (5.0, "snow", 7)
    assert (march.label, march.label_index, march.label_temp_max) == ("sun", 0, 6.1)
    # No leakage: yesterday's label is today's prev_weather, for every day with a yesterday.
    days = sorted(features)
    pairs = [(p, d) for p, d in zip(days, days[1:])
             if date.fromisoformat(d).toordinal() - date.fromisoformat(p).toordinal() == 1]
    assert len(pairs) == 88 and all(features[d].prev_weather == features[p].label for p, d in pairs)
    assert features["2012-02-11"].prev_weather is None  # 2012-02-10 was the quarantined row


def test_a_blocked_month_is_not_published_nor_read_as_history(spark, tmp_path):
    """Five bad days in February (17% quarantined, over the clean suite's critical 10%): February
    is blocked in every table, and March, whose first week read February as history, is built
    again without it."""
    def edit(text: str) -> str:
        lines = text.split("\n")
        for i in range(2, 7):  # 2012-02-02..06 (the 1st stays: the ingest wants a row of the partition's date)
            lines[i] = lines[i].rsplit(",", 1)[0] + ",hail"
        return "\n".join(lines)

    lake = ingest_months(tmp_path, edit)
    result = job.run(lake=lake, spark=spark, spec=load_transform("seattle_weather"), dates=MONTHS, run_id="blocked")
    assert list(result["quality"]["blocked"]) == ["2012-02-01"]
    assert any("quarantine_ratio" in why for why in result["quality"]["blocked"]["2012-02-01"])
    assert result["published"] == ["2012-01-01", "2012-03-01"] and result["rebuilt"]["dates"] == ["2012-03-01"]
    for table in ("clean/weather", "quarantine/weather", "features/weather"):
        assert list_partitions(lake, table) == ["ds=2012-01-01", "ds=2012-03-01"], table
    march = spark.read.parquet(lake.uri("features/weather", "ds=2012-03-01")).where("day_of_year = 61").collect()[0]
    assert march.known_days_7 == 0 and march.prev_temp_max is None  # February never seen


def test_ranges_become_the_months_they_touch(raw_lake):
    from lakeforge.orchestration.transform_dag import plan_run

    _, spec, dates = job.parse_args(["--pipeline", "seattle_weather", "--start", "2012-01-15", "--end", "2012-03-02"])
    assert spec.every == "month" and dates == MONTHS
    plan = plan_run({"start": "2012-02-20", "end": "2012-03-01"}, None, ["raw/weather"], raw_lake.root_uri,
                    every="month")
    assert plan.manual and plan.dates == MONTHS[1:]
    with pytest.raises(ValueError, match="raw/weather has no partition for 2012-04-01"):
        plan_run({"start": "2012-03-01", "end": "2012-04-30"}, None, ["raw/weather"], raw_lake.root_uri, every="month")


PIPELINE_DAGS = sorted((PROJECT_ROOT / "plugins/lakeforge/pipelines/seattle_weather/dags").glob("*.py"))


@pytest.mark.parametrize("path", PIPELINE_DAGS, ids=lambda p: p.name)
def test_the_pipelines_dag_files_parse_fast_without_heavy_modules(path):
    """The house rules of dags/ (tests/test_dag_integrity.py) hold for the pipeline's DAG files."""
    import subprocess
    import sys

    from tests.test_dag_integrity import HEAVY, PROBE

    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {} and parsed["dags"] == [path.stem] and parsed["heavy"] == []
    assert parsed["seconds"] < 2.0, f"{path.name} took {parsed['seconds']:.2f}s to import"


@pytest.mark.airflow
def test_ingest_and_transform_dags_beside_nycflights(airflow_db, tmp_path, monkeypatch):
    """The pipeline's own DAG files, from a DAG folder of their own, in the lake nycflights uses:
    nycflights' namespace is untouched, byte for byte."""
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.pipelines.nycflights import simulator as flights_simulator
    from lakeforge.sources import get_source

    root, landing_root = f"file://{tmp_path}/lake", f"file://{tmp_path}/landing"
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", root)
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", landing_root)
    flights_simulator.deliver(Lake(f"{landing_root}/nycflights"), date(2013, 1, 1), date(2013, 1, 1), snapshots=False)
    ingest_partition(get_source("nycflights"), "weather", "2013-01-01")
    flights = source_lake("nycflights")
    before = {f.path: flights.read_bytes(f.path) for f in flights.files("")}

    dags = tmp_path / "dags"
    dags.mkdir()
    folder = PROJECT_ROOT / "plugins/lakeforge/pipelines/seattle_weather/dags"
    for name in ("ingest_seattle_weather.py", "transform_seattle_weather.py"):
        (dags / name).write_text((folder / name).read_text())
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {} and sorted(bag.dag_ids) == ["ingest_seattle_weather", "transform_seattle_weather"]
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "seattle-weather", "classpath": local, "kwargs": {"path": str(dags)}},
    ]))

    simulator.deliver(Lake(f"{landing_root}/seattle_weather"), date(2012, 1, 1), date(2012, 2, 29))
    dr = bag.dags["ingest_seattle_weather"].test(logical_date=pendulum.now("UTC"))  # both months, one run
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}
    # A run without a range transforms every pending partition (both months), in one Spark application.
    dr = bag.dags["transform_seattle_weather"].test(logical_date=pendulum.now("UTC"))
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}

    lake = source_lake("seattle_weather")
    for table in ("raw/weather", "clean/weather", "quarantine/weather", "features/weather"):
        assert list_partitions(lake, table) == ["ds=2012-01-01", "ds=2012-02-01"], table
    assert read_manifest(lake, "features/weather", "ds=2012-02-01")["rows"] == 29
    assert lake.exists("_reports/transform")
    assert {f.path: flights.read_bytes(f.path) for f in flights.files("")} == before
    assert sorted(Lake(root).listdir("")) == ["nycflights", "seattle_weather"]
