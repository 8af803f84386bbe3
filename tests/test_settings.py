from pathlib import Path

import pytest

from lakeforge.settings import OPTIONS, PROJECT_ROOT, Settings, markdown_table


def test_embedded_defaults_live_under_home():
    s = Settings.from_env({})
    home = PROJECT_ROOT / ".lakeforge"
    assert s.home == home
    assert s.lake_root == f"file://{home}/lake"
    assert s.landing_root == f"file://{home}/landing"
    assert s.spark_master == "local[*]"
    assert s.mlflow_tracking_uri == f"sqlite:///{home}/mlflow.db"
    assert s.airflow_home == home / "airflow"
    assert s.dags_folder == PROJECT_ROOT / "dags"


def test_cluster_mode_is_only_environment():
    env = {
        "LAKEFORGE_HOME": "/srv/lf",
        "LAKEFORGE_LAKE_ROOT": "hdfs://namenode:8020/lake",
        "LAKEFORGE_SPARK_MASTER": "spark://master:7077",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    s = Settings.from_env(env)
    assert s.lake_root == "hdfs://namenode:8020/lake"
    assert s.spark_master == "spark://master:7077"
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    # Derived defaults follow the home that was set.
    assert s.landing_root == "file:///srv/lf/landing"
    assert s.airflow_home == Path("/srv/lf/airflow")


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="LAKEFORGE_DELIVERY_POLL_SECONDS"):
        Settings.from_env({"LAKEFORGE_DELIVERY_POLL_SECONDS": "a day"})
    with pytest.raises(ValueError, match="LAKEFORGE_HDFS_CLIENT"):
        Settings.from_env({"LAKEFORGE_HDFS_CLIENT": "webhdfs"})


def test_readme_lists_every_setting():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README settings table is stale: paste `markdown_table()`"
    for opt in OPTIONS.values():
        assert opt.env in readme


def test_the_spark_secret_turns_on_authentication_and_stays_out_of_conf_and_output(monkeypatch, capsys):
    from lakeforge import settings
    from lakeforge.spark import CLUSTER_SECURITY_CONF, spark_conf

    monkeypatch.delenv("LAKEFORGE_SPARK_AUTH_SECRET", raising=False)
    assert "spark.authenticate" not in spark_conf()  # local mode: nothing to authenticate
    monkeypatch.setenv("LAKEFORGE_SPARK_AUTH_SECRET", "s3cret-value")
    conf = spark_conf()  # what DAG files pass to SparkSubmitOperator (serialized, on a command line)
    assert conf["spark.authenticate"] == "true"
    assert conf["spark.network.crypto.enabled"] == "true"  # rows crossing hosts are encrypted
    assert CLUSTER_SECURITY_CONF.items() <= conf.items()  # what the cluster's daemons run with
    assert not any("s3cret-value" in v for v in conf.values())
    assert settings.get_settings().spark_auth_secret == "s3cret-value"
    assert "s3cret-value" not in repr(settings.get_settings())
    settings.main()
    assert "s3cret-value" not in capsys.readouterr().out


def test_short_runs_get_jvms_with_the_c1_compiler_only(monkeypatch):
    from lakeforge.spark import SHORT_RUN_CODE_CACHE, SHORT_RUN_JIT, spark_conf

    monkeypatch.delenv("LAKEFORGE_SPARK_SHORT_RUN_MB", raising=False)  # default: 64 MB
    keys = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
    tiered = spark_conf()  # size unknown (what a DAG file passes at parse time)
    assert not any(SHORT_RUN_JIT in tiered[k] for k in keys)
    short = spark_conf(input_bytes=64 << 20)
    for k in keys:  # the JIT (with room for its code) is added to the JVM options, which stay
        assert short[k] == f"{tiered[k]} {SHORT_RUN_JIT} {SHORT_RUN_CODE_CACHE}".strip()
    assert not any(SHORT_RUN_JIT in spark_conf(input_bytes=(64 << 20) + 1)[k] for k in keys)
    # Few bytes over many days is a long run all the same (the x1 year: 34 MB, ~6 min).
    monkeypatch.delenv("LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS", raising=False)  # default: 90
    for k in keys:
        assert SHORT_RUN_JIT in spark_conf(input_bytes=1 << 20, partitions=90)[k]
        assert SHORT_RUN_JIT not in spark_conf(input_bytes=1 << 20, partitions=91)[k]
    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS", "0")
    with pytest.raises(ValueError, match="LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS must be 1 or more"):
        spark_conf(input_bytes=1)
    monkeypatch.delenv("LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS")
    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_MB", "0")  # never
    assert not any(SHORT_RUN_JIT in spark_conf(input_bytes=0)[k] for k in keys)
    monkeypatch.setenv("LAKEFORGE_SPARK_SHORT_RUN_MB", "-1")
    with pytest.raises(ValueError, match="LAKEFORGE_SPARK_SHORT_RUN_MB must be 0 or more"):
        spark_conf(input_bytes=1)
