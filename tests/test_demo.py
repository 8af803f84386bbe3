"""`make demo` / `make demo-hdfs` (lakeforge.pipelines.nycflights.demo): the HDFS demo keeps its own state, and a demo
run stops at the first failed task instead of waiting out retries meant for a scheduler."""

from lakeforge.pipelines.nycflights import demo
from lakeforge.settings import Settings


def test_the_hdfs_demo_has_its_own_home_and_shares_only_the_caches(tmp_path):
    home = tmp_path / "lf"
    file_demo = Settings.from_env({"LAKEFORGE_HOME": str(home)})
    # What `eval "$(make -s airflow-env)"` exported for `make demo`'s home: derived again.
    env = {"LAKEFORGE_HOME": str(home), "AIRFLOW_HOME": str(file_demo.airflow_home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{file_demo.airflow_home}/airflow.db",
           "MLFLOW_TRACKING_URI": file_demo.mlflow_tracking_uri}
    sub, shared = demo.hdfs_home(env)
    hdfs_demo = Settings.from_env(env)
    assert sub == home / "demo-hdfs" == hdfs_demo.home and shared == []
    assert hdfs_demo.airflow_home == home / "demo-hdfs" / "airflow"
    assert hdfs_demo.mlflow_tracking_uri == f"sqlite:///{home}/demo-hdfs/mlflow.db"
    assert hdfs_demo.mlflow_artifact_root == f"file://{home}/demo-hdfs/mlartifacts"
    assert hdfs_demo.landing_root == f"file://{home}/demo-hdfs/landing"
    assert "AIRFLOW_HOME" not in env and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    # Built for the JDK and pyspark, not for the data: the same jar and class archive.
    assert (hdfs_demo.spark_cds_dir, hdfs_demo.spark_local_fs_dir) == (file_demo.spark_cds_dir,
                                                                       file_demo.spark_local_fs_dir)

    # A tracking server the user chose is theirs: used as is, and named as shared.
    env = {"LAKEFORGE_HOME": str(home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    _, shared = demo.hdfs_home(env)
    assert shared == ["MLFLOW_TRACKING_URI"] and env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


def test_fail_fast_takes_retries_away_inside_its_block_only(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lakeforge.settings import PROJECT_ROOT

    def load():
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "ingest_flights.py"))
        assert bag.import_errors == {}
        return {t.task_id: t for t in bag.dags["ingest_flights"].tasks}

    with demo.fail_fast():
        tasks = load()
    assert {t.retries for t in tasks.values()} == {0}
    tasks = load()
    assert tasks["ingest"].retries > 0 and tasks["plan_deliveries"].retries > 0
    assert tasks["refused_deliveries"].retries == 0  # a quarantined file: retrying cannot help


def test_a_replayed_days_run_shows_its_real_duration(airflow_db, tmp_path, monkeypatch):
    """dag.test starts a 2013 run 'in 2013': the demo puts the wall-clock start back, so the UI
    shows seconds, not ~5,000 days. (The probe: a transform run of a day never ingested, which
    fails at its first task.)"""
    from datetime import datetime, timedelta, timezone

    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from lakeforge.settings import PROJECT_ROOT

    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "transform_flights.py")).dags["transform_flights"]
    started = datetime.now(timezone.utc)
    with demo.fail_fast():
        dr = dag.test(logical_date=pendulum.datetime(2013, 1, 2, tz="UTC"),
                      run_conf={"start": "2013-01-02", "end": "2013-01-02"})
    with create_session() as session:
        before = session.query(DagRun).filter(DagRun.run_id == dr.run_id).one()
        assert before.end_date - before.start_date > timedelta(days=4000)  # the trap, as Airflow has it
    demo.record_real_start(dr, started)
    with create_session() as session:
        after = session.query(DagRun).filter(DagRun.run_id == dr.run_id).one()
        assert timedelta(0) <= after.end_date - after.start_date < timedelta(minutes=5)
        assert after.logical_date.year == 2013
