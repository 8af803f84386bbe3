"""A second source beside nycflights: its own lake namespace, the README's recipe as written,
name collisions refused, and the one-time migration of the old flat layout."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import date

import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.pipelines.nycflights import simulator
from lakeforge.publish import MANIFEST, PartitionFile, list_partitions, publish_partition, read_manifest
from lakeforge.settings import PROJECT_ROOT
from lakeforge.sources import SourceConflict, get_source

STATIONS_CSV = b"station,year,month,day,hour,temp\nS1,2024,1,1,0,3.5\nS1,2024,1,1,1,3.1\nS2,2024,1,1,0,-1.0\n"


def readme_block(name: str) -> str:
    """The code block after ``<!-- recipe:NAME -->`` in the README: the test runs what users read."""
    text = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(rf"<!-- recipe:{name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no recipe:{name} block"
    return match.group(1)


@pytest.fixture
def pipelines(tmp_path, monkeypatch):
    """A pipelines folder outside the checkout (``LAKEFORGE_PIPELINES_PATH``)."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    monkeypatch.setenv("LAKEFORGE_PIPELINES_PATH", str(folder))
    return folder


def add_pipeline(folder, name: str, code: str) -> None:
    (folder / name).mkdir()
    (folder / name / "__init__.py").write_text(textwrap.dedent(code))


@pytest.mark.airflow
def test_the_readme_recipe_is_discovered_and_ingests_beside_nycflights(airflow_db, pipelines, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import list_py_file_paths

    from lakeforge.ingest import ingest_partition

    root, landing_root = f"file://{tmp_path}/lake", f"file://{tmp_path}/landing"
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", root)
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", landing_root)
    # nycflights' weather first, through the same entry point its DAG uses.
    flights_landing = Lake(f"{landing_root}/nycflights")
    simulator.deliver(flights_landing, date(2013, 1, 1), date(2013, 1, 1), snapshots=False)
    ingest_partition(get_source("nycflights"), "weather", "2013-01-01")
    flights_lake = source_lake("nycflights")
    before = {f.path: flights_lake.read_bytes(f.path) for f in flights_lake.files("")}
    assert "raw/weather/ds=2013-01-01/2013-01-01.csv" in before

    add_pipeline(pipelines, "stations", readme_block("pipeline"))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ingest_stations.py").write_text(readme_block("dag"))
    # Discovered the way the dag-processor lists files (safe mode), then parsed without errors.
    assert list_py_file_paths(str(dags), safe_mode=True) == [str(dags / "ingest_stations.py")]
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {} and list(bag.dag_ids) == ["ingest_stations"]

    Lake(f"{landing_root}/stations").write_bytes("weather/2024-01-01.csv", STATIONS_CSV)
    # The run is made from a DAG bundle of this folder, as the dag-processor serializes it.
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "second-source-recipe", "classpath": local, "kwargs": {"path": str(dags)}},
    ]))
    dr = bag.dags["ingest_stations"].test(logical_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}

    stations = source_lake("stations")
    assert stations.root_uri == f"{root}/stations"
    assert read_manifest(stations, "raw/weather", "ds=2024-01-01")["rows"] == 3
    # nycflights' table of the same name is untouched, byte for byte, and nothing went to the trash.
    assert {f.path: flights_lake.read_bytes(f.path) for f in flights_lake.files("")} == before
    assert sorted(Lake(root).listdir("")) == ["nycflights", "stations"]


def test_safe_mode_skips_a_dag_file_without_the_words(tmp_path):
    """Why the recipe keeps its docstring: the same three lines without it are skipped silently."""
    from airflow.utils.file import list_py_file_paths

    body = readme_block("dag").split('"""', 2)[2]  # the recipe less its docstring
    assert "airflow" not in body.lower()
    (tmp_path / "ingest_x.py").write_text(body)
    assert list_py_file_paths(str(tmp_path), safe_mode=True) == []


def test_every_dag_file_of_the_checkout_is_discovered_in_safe_mode():
    from airflow.utils.file import list_py_file_paths

    files = sorted(str(p) for p in (PROJECT_ROOT / "dags").glob("*.py"))
    assert sorted(list_py_file_paths(str(PROJECT_ROOT / "dags"), safe_mode=True)) == files


def test_a_pipeline_declaring_another_pipelines_source_is_refused(pipelines):
    from lakeforge.orchestration.ingest_dag import build_ingest_dag

    add_pipeline(pipelines, "impostor", """
        from lakeforge.sources import Source, Table
        SOURCE = Source(name="nycflights", tables=(Table("weather", "daily"),))
    """)
    with pytest.raises(SourceConflict) as err:
        get_source("impostor")
    assert "declares source 'nycflights'" in str(err.value)
    assert str(PROJECT_ROOT / "plugins/lakeforge/pipelines/nycflights") in str(err.value)
    with pytest.raises(SourceConflict):
        build_ingest_dag("impostor", dag_id="ingest_impostor", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))


def test_a_source_name_found_in_two_pipeline_folders_is_refused(pipelines):
    add_pipeline(pipelines, "nycflights", """
        from lakeforge.sources import Source, Table
        SOURCE = Source(name="nycflights", tables=(Table("flights", "daily"),))
    """)
    with pytest.raises(SourceConflict) as err:
        get_source("nycflights")
    message = str(err.value)
    assert "two pipelines declare source 'nycflights'" in message
    assert str(pipelines / "nycflights") in message and "plugins/lakeforge/pipelines/nycflights" in message


@pytest.mark.parametrize("name", ["raw", "Flights", "quality", "../x", ""])
def test_names_that_cannot_be_a_namespace_are_refused(name):
    with pytest.raises(ValueError, match="must be a lower-case identifier"):
        source_lake(name)


def legacy_layout(root: Lake) -> dict[str, bytes]:
    """A lake as the pre-namespace code wrote it (raw, clean, quality, reports, registry log)."""
    for table, files in {
        "raw/flights": [PartitionFile("2013-01-01.csv", b"year,month\n2013,1\n", {"rows": 1})],
        "clean/flights": [PartitionFile("part-0.parquet", b"PAR1")],
        "quality/raw/flights": [PartitionFile("validation.json", b"{}")],
        "registry/flight_delay/promotion_log": [PartitionFile("v1.json", b"{}")],
    }.items():
        publish_partition(root, table, "ds=2013-01-01", files)
    root.write_bytes("_reports/transform_flights/runs/r1.json", b"{}")
    return {f.path: root.read_bytes(f.path) for f in root.files("")}


def test_migration_moves_the_old_layout_into_the_namespace_once(lake, capsys):
    from lakeforge.migrate import main

    files = legacy_layout(lake)
    dry = main(["--source", "nycflights", "--root", lake.root_uri, "--dry-run"])
    assert sorted(dry.moved) == ["_reports", "clean", "quality", "raw", "registry"]
    assert {f.path: lake.read_bytes(f.path) for f in lake.files("")} == files  # a dry run moves nothing

    done = main(["--source", "nycflights", "--root", lake.root_uri])
    assert sorted(done.moved) == sorted(dry.moved) and done.conflicts == []
    assert lake.listdir("") == ["nycflights"]
    moved = source_lake("nycflights", lake.root_uri)
    assert {f.path: moved.read_bytes(f.path) for f in moved.files("")} == files
    assert read_manifest(moved, "raw/flights", "ds=2013-01-01")["rows"] == 1
    assert list_partitions(moved, "clean/flights") == ["ds=2013-01-01"]

    again = main(["--source", "nycflights", "--root", lake.root_uri])
    assert again.moved == [] and "nothing to move" in capsys.readouterr().out


def test_migration_merges_tables_and_never_overwrites(local_lake):
    """New runs wrote into the namespace before the migration: tables move one by one, and a
    table present on both sides is left alone and reported (exit status 2)."""
    from lakeforge.migrate import main

    legacy_layout(local_lake)
    moved = source_lake("nycflights", local_lake.root_uri)
    publish_partition(moved, "raw/flights", "ds=2013-01-02", [PartitionFile("new.csv", b"new")])
    publish_partition(moved, "raw/weather", "ds=2013-01-02", [PartitionFile("w.csv", b"w")])
    local_lake.write_bytes("raw/weather/ds=2013-01-01/old.csv", b"old")  # no clash: raw/weather is in both...
    with pytest.raises(SystemExit) as exit_:
        main(["--source", "nycflights", "--root", local_lake.root_uri])
    assert exit_.value.code == 2
    # ...both tables exist on both sides: left where they are, new data untouched.
    assert local_lake.exists("raw/flights/ds=2013-01-01/2013-01-01.csv")
    assert moved.read_bytes("raw/flights/ds=2013-01-02/new.csv") == b"new"
    assert json.loads(moved.read_bytes(f"raw/flights/ds=2013-01-02/{MANIFEST}"))["partition"] == "ds=2013-01-02"
    # The folders without a clash moved whole.
    assert moved.exists("clean/flights/ds=2013-01-01") and not local_lake.exists("clean")
