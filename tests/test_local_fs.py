"""lakeforge's file:// file system for Spark (lakeforge.local_fs): built by `make spark-cds`, used by
every lakeforge session, and it leaves the same permissions as Hadoop's RawLocalFileSystem, which
forks a `chmod` process for each."""

import os
import stat
import zipfile

import pytest

from lakeforge import local_fs


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _hadoop(spark):
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return jvm, conf


def test_sessions_use_the_built_file_system(spark):
    jar = local_fs.available_jar()
    assert jar is not None, f"no local file system jar at {local_fs.jar_path()}: run `make spark-cds`"
    jvm, conf = _hadoop(spark)
    assert conf.get("fs.file.impl") == local_fs.CLASS_NAME
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)
    assert fs.getClass().getName() == local_fs.CLASS_NAME


@pytest.mark.parametrize("mode", [0o750, 0o640, 0o700, 0o1777])
def test_permissions_equal_hadoops_own(spark, tmp_path, mode):
    jvm, conf = _hadoop(spark)
    ours = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)
    hadoops = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    hadoops.initialize(jvm.java.net.URI("file:///"), conf)
    permission = jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
    for name, fs in (("ours", ours), ("hadoop", hadoops)):
        target = tmp_path / name
        target.mkdir()
        fs.setPermission(jvm.org.apache.hadoop.fs.Path(target.as_uri()), permission)
    # The sticky bit goes through Hadoop's own chmod (java.nio cannot set it): same result either way.
    assert _mode(tmp_path / "ours") == _mode(tmp_path / "hadoop") == mode


def test_a_partitioned_write_leaves_the_usual_directory_modes(spark, tmp_path):
    out = tmp_path / "table"
    spark.createDataFrame([(1, "2013-01-01"), (2, "2013-01-02")], "x int, ds string") \
        .write.partitionBy("ds").parquet(out.as_uri())
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ds=2013-01-01", "ds=2013-01-02"]
    # Directories: Hadoop's default 0777 less the umask (fs.permissions.umask-mode, 022).
    assert {_mode(p) for p in out.iterdir() if p.is_dir()} == {0o777 & ~0o022}
    assert spark.read.parquet(out.as_uri()).count() == 2


def test_without_the_jar_spark_falls_back_to_hadoops(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", str(tmp_path / "empty"))
    assert local_fs.available_jar() is None
    assert local_fs.file_system_conf() == {"spark.hadoop.fs.file.impl": local_fs.FALLBACK}
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", "off")
    assert local_fs.jar_path() is None and local_fs.build() is None
    from lakeforge.spark import spark_conf

    conf = spark_conf()
    assert conf["spark.hadoop.fs.file.impl"] == local_fs.FALLBACK and "spark.driver.extraClassPath" not in conf


def test_build_compiles_once_and_removes_stale_jars(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", str(tmp_path))
    stale = tmp_path / "lakeforge-local-fs-0000000000000000.jar"
    stale.write_bytes(b"an older build")
    path = local_fs.build()
    assert path == local_fs.jar_path() and path.is_file() and not stale.exists()
    with zipfile.ZipFile(path) as jar:
        assert "lakeforge/hadoop/NioLocalFileSystem.class" in jar.namelist()
    built = path.stat().st_mtime_ns
    assert local_fs.build() == path and path.stat().st_mtime_ns == built  # already there: not rebuilt
    conf = local_fs.file_system_conf()
    assert conf["spark.hadoop.fs.file.impl"] == local_fs.CLASS_NAME
    assert conf["spark.driver.extraClassPath"] == conf["spark.executor.extraClassPath"] == str(path)
