"""docs/new-pipeline.md, followed as a newcomer would: every file it gives (the code blocks after
``<!-- walkthrough:PATH -->``) written into a temporary pipelines folder and landing area, the DAG
files read by Airflow from the pipeline's own folder (the DAG bundles `make up` configures), the
days ingested by the ingest DAG, the transform run as the page's commands say, the model
declaration read as the training DAG reads it, and what the page promises checked. Edit the page,
and this runs the edit."""

from __future__ import annotations

import json
import re
import shlex
import sys

import pendulum
import pytest

from lakeforge.lake import Lake, source_lake
from lakeforge.publish import MANIFEST, list_partitions, read_manifest
from lakeforge.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "new-pipeline.md"
PIPELINE = "bakery"
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
BLOCK = re.compile(r"<!-- walkthrough:(\S+) -->\s*```(\w+)\n(.*?)```", re.S)


def walkthrough_blocks() -> dict[str, tuple[str, str]]:
    """PATH -> (language, content) of every marked block, in the page's order."""
    blocks: dict[str, tuple[str, str]] = {}
    for path, language, content in BLOCK.findall(DOC.read_text()):
        assert path not in blocks, f"docs/new-pipeline.md gives {path} twice"
        blocks[path] = (language, content)
    return blocks


def test_the_page_gives_every_file_of_the_folder_it_shows():
    blocks = walkthrough_blocks()
    files = sorted(p.split("/", 2)[2] for p in blocks if p.startswith(f"pipelines/{PIPELINE}/"))
    assert files == ["__init__.py", "clean.py", "dags/ingest_bakery.py", "dags/score_bakery.py", "dags/train_bakery.py",
                     "dags/transform_bakery.py", "features.py", "model.py", "quality/clean_sales.json",
                     "quality/features_sales.json", "quality/predictions_sales.json", "quality/raw_sales.json",
                     "transform.py"]
    # The folder tree the page draws names the same files.
    tree = DOC.read_text().split("## The folder", 1)[1].split("```")[1]
    assert sorted(re.findall(r"^\s+(\S+\.(?:py|json))", tree, re.M)) == sorted(p.rsplit("/", 1)[-1] for p in files)
    assert sorted(p for p in blocks if p.startswith("landing/")) == [f"landing/{PIPELINE}/sales/{d}.csv" for d in DAYS]
    assert {lang for p, (lang, _) in blocks.items() if p.endswith(".py")} == {"python"}
    assert {lang for p, (lang, _) in blocks.items() if p.endswith(".json")} == {"json"}


def commands(script: str) -> list[list[str]]:
    """The transform job's arguments, one list per ``spark_jobs/transform.py`` line of the page."""
    runs = []
    for line in script.splitlines():
        words = shlex.split(line)
        if "spark_jobs/transform.py" in words:
            runs.append(words[words.index("spark_jobs/transform.py") + 1:])
    return runs


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """The page's ``pipelines/`` and ``landing/`` roots, a lake, and the pipeline forgotten after."""
    monkeypatch.setenv("LAKEFORGE_PIPELINES_PATH", str(tmp_path / "pipelines"))
    monkeypatch.setenv("LAKEFORGE_LANDING_ROOT", f"file://{tmp_path}/landing")
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    yield tmp_path
    for name in [m for m in sys.modules if m == f"lakeforge.pipelines.{PIPELINE}"
                 or m.startswith(f"lakeforge.pipelines.{PIPELINE}.")]:
        del sys.modules[name]


@pytest.mark.airflow
def test_the_walkthrough_ingests_cleans_and_builds_features(airflow_db, spark, workspace, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import list_py_file_paths

    from lakeforge.transform import job

    blocks = walkthrough_blocks()
    for path, (language, content) in blocks.items():
        if path.startswith(("pipelines/", "landing/")):
            target = workspace / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if language == "json":
                json.loads(content)  # a suite the page gives is valid JSON

    # "Airflow reads every pipeline folder's dags/ as a DAG bundle of its own": the bundles `make up`
    # configures, with this pipeline's folder among them (it is on LAKEFORGE_PIPELINES_PATH).
    from lakeforge.orchestration.airflow_env import dag_bundles
    from lakeforge.settings import get_settings

    bundles = json.loads(dag_bundles(get_settings()))
    dags = workspace / "pipelines" / PIPELINE / "dags"
    assert {"name": "pipeline-bakery", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(dags)}} in bundles
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    assert sorted(list_py_file_paths(str(dags), safe_mode=True)) == sorted(str(p) for p in dags.iterdir())
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {} and sorted(bag.dag_ids) == ["ingest_bakery", "score_bakery", "train_bakery",
                                                                   "transform_bakery"]
    transform_dag = bag.dags["transform_bakery"]
    assert [a.name for a in transform_dag.timetable.asset_condition.objects] == ["bakery.raw.sales"]
    assert {t.task_id for t in transform_dag.tasks} == {"plan_dates", "anything_to_do", "spark_transform"}

    # The model: a regression on the features table; the training DAG's form and schedule are its.
    from lakeforge.training.spec import load_model_spec

    model = load_model_spec(PIPELINE)
    assert (model.task, model.label, model.name, model.experiment) == ("regression", "label_sold", "bakery_sales",
                                                                        "bakery_sales")
    assert model.promotion_metric == "rmse" and model.families == ("gbt", "rf", "linear")
    train_dag = bag.dags["train_bakery"]
    assert train_dag.params["model_family"] == "rf" and train_dag.params["window_days"] == 56
    assert [a.name for a in train_dag.timetable.asset_condition.objects] == [
        "bakery.features.sales", "bakery.monitoring.retrain_requested"]
    assert train_dag.get_task("train_and_register").application_args[:2] == ["--pipeline", PIPELINE]
    from lakeforge.quality.spec import load_suite

    assert model.predictions == "predictions/sales" and load_suite(PIPELINE, model.predictions).checks
    score_dag = bag.dags["score_bakery"]
    assert [a.name for a in score_dag.timetable.asset_condition.objects] == ["bakery.features.sales",
                                                                             "models.bakery_sales"]
    assert [a.name for a in score_dag.get_task("spark_score").outlets] == ["bakery.predictions.sales"]
    assert score_dag.get_task("spark_score").application_args[:2] == ["--pipeline", PIPELINE]

    # The ingest DAG: one run takes every delivered day, as the run its delivery watcher starts
    # (from the pipeline's bundle, as the dag-processor serializes it).
    dr = bag.dags["ingest_bakery"].test(logical_date=pendulum.now("UTC"))
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}
    lake = source_lake(PIPELINE)
    assert lake.root_uri == f"file://{workspace}/lake/{PIPELINE}"
    assert [read_manifest(lake, "raw/sales", f"ds={d}")["rows"] for d in DAYS] == [3, 3, 3]

    # The transform, as the page's commands say (the job in the tests' Spark session: its `main`
    # would start and stop a JVM of its own).
    runs = commands(blocks["run"][1])
    assert len(runs) == 2
    results = []
    for i, argv in enumerate(runs):
        args, spec, dates = job.parse_args(argv)
        assert args.pipeline == PIPELINE and args.lake is None
        results.append(job.run(spark, lake, spec, dates, f"walkthrough-{i}"))
    first, second = results
    assert first["published"] == DAYS[:2] and second["published"] == DAYS[2:]
    assert first["quality"]["blocked"] == {} == second["quality"]["blocked"]
    assert first["rows"] == {"raw_sales": 6, "clean_sales": 6, "quarantine_sales": 0, "features_sales": 6}
    assert second["rows"] == {"raw_sales": 3, "clean_sales": 2, "quarantine_sales": 1, "features_sales": 2}

    # Every day's clean, quarantine and features partitions published whole, with manifests.
    for table in ("clean/sales", "quarantine/sales", "features/sales"):
        assert list_partitions(lake, table) == [f"ds={d}" for d in DAYS], table
        for day in DAYS:
            assert lake.exists(f"{table}/ds={day}/{MANIFEST}"), (table, day)
    clean = read_manifest(lake, "clean/sales", "ds=2024-03-03")
    features = read_manifest(lake, "features/sales", "ds=2024-03-03")
    raw = read_manifest(lake, "raw/sales", "ds=2024-03-03")
    assert clean["rows"] == features["rows"] == 2 and features["dag_run_id"] == "walkthrough-1"
    assert features["inputs"] == {"raw/sales": {"content_sha256": raw["content_sha256"]}}
    # The refund is quarantined with its raw line and reason, and counted: published with a warning.
    assert read_manifest(lake, "quarantine/sales", "ds=2024-03-03")["rows"] == 1
    bad = spark.read.parquet(lake.uri("quarantine/sales")).collect()
    assert [(b.raw_line, b.reason, str(b.ds)) for b in bad] == [
        ("2024-03-03,croissant,-4,1.8", "sold must be 0 or more: -4", "2024-03-03")]
    assert clean["quality"]["status"] == "warned"
    assert any("quarantine_ratio:warn" in w for w in clean["quality"]["warnings"])
    assert read_manifest(lake, "clean/sales", "ds=2024-03-02")["quality"]["status"] == "passed"

    # The third day read the first two from the published lake (the second run's history).
    rows = {(str(r.day), r.product): r for r in spark.read.parquet(lake.uri("features/sales")).collect()}
    assert len(rows) == 8 and ("2024-03-03", "croissant") not in rows
    bread = rows[("2024-03-03", "bread")]
    assert (bread.sold_yesterday, bread.avg7_sold, bread.label_sold) == (38, 40.0, 45)
    assert rows[("2024-03-01", "cake")].sold_yesterday is None
    assert rows[("2024-03-03", "cake")].avg7_sold == 8.0
    # (The run reports under _reports/transform/ are written by the job's main, around job.run:
    # tests/test_seattle_weather.py sees them under Airflow.)

    # Nothing outside the pipeline's namespace: the lake and the landing area hold only bakery.
    assert Lake(f"file://{workspace}/lake").listdir("") == [PIPELINE]
    assert Lake(f"file://{workspace}/landing").listdir("") == [PIPELINE]
