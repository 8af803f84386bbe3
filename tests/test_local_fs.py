"""lakeforge's file:// file system for Spark (lakeforge.local_fs): built by `make spark-cds`, used by
every lakeforge session, and it leaves the same permissions as Hadoop's RawLocalFileSystem, which
forks a `chmod` process for each. It is a LocalFileSystem writing no .crc files: Hadoop's
FileSystem.getLocal casts to that class (copies between HDFS and local disk, as MLflow's Spark
flavor makes them when HDFS is the default file system)."""

import os
import stat
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from py4j.protocol import Py4JJavaError

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
    # What Hadoop casts to a LocalFileSystem, with the in-process raw file system inside.
    local = jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf)
    assert local.getClass().getName() == local_fs.CLASS_NAME
    assert local.getRawFileSystem().getClass().getName() == f"{local_fs.CLASS_NAME}$Raw"


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
    assert [p for p in out.rglob("*") if p.name.endswith(".crc")] == []  # no checksum side files


def test_a_stale_checksum_file_is_neither_checked_nor_kept(spark, tmp_path):
    """Files another tool wrote with a .crc beside them read as they are (nothing is verified,
    as with RawLocalFileSystem); an overwrite drops the stale .crc."""
    jvm, conf = _hadoop(spark)
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)
    target = tmp_path / "data.txt"
    target.write_text("lakeforge")
    (tmp_path / ".data.txt.crc").write_bytes(b"crc\0not a checksum of anything")
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(jvm.org.apache.hadoop.fs.Path(target.as_uri()))))
    try:
        assert reader.readLine() == "lakeforge"  # a checked read fails: ChecksumException
    finally:
        reader.close()
    fs.create(jvm.org.apache.hadoop.fs.Path(target.as_uri()), True).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]


@pytest.mark.hdfs
def test_copies_between_hdfs_and_local_disk(spark, hdfs, tmp_path):
    """HDFS's copyToLocalFile / copyFromLocalFile take the local side from FileSystem.getLocal,
    which casts the file:// file system to LocalFileSystem: the path MLflow's Spark model logging
    and loading take when HDFS is the default file system. A raw file system there fails."""
    jvm, conf = _hadoop(spark)
    HPath = jvm.org.apache.hadoop.fs.Path
    remote = f"{hdfs.uri}/local-fs-{uuid.uuid4().hex[:8]}"
    # A fresh HDFS client holding the session's configuration (its fs.file.impl).
    dfs = jvm.org.apache.hadoop.fs.FileSystem.newInstance(jvm.java.net.URI(hdfs.uri), conf)
    try:
        out = dfs.create(HPath(f"{remote}/model/part-0"))
        out.write(bytearray(b"a model"))
        out.close()
        dfs.copyToLocalFile(False, HPath(f"{remote}/model"), HPath((tmp_path / "model").as_uri()))
        assert (tmp_path / "model" / "part-0").read_bytes() == b"a model"
        assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["part-0"]  # no .crc
        dfs.copyFromLocalFile(False, True, HPath((tmp_path / "model").as_uri()), HPath(f"{remote}/back"))
        assert dfs.getFileStatus(HPath(f"{remote}/back/part-0")).getLen() == len(b"a model")

        # The bug this guards against: RawLocalFileSystem (or a subclass) as fs.file.impl.
        raw_conf = jvm.org.apache.hadoop.conf.Configuration(conf)
        raw_conf.set("fs.file.impl", local_fs.FALLBACK)
        raw = jvm.org.apache.hadoop.fs.FileSystem.newInstance(jvm.java.net.URI(hdfs.uri), raw_conf)
        try:
            with pytest.raises(Py4JJavaError, match="ClassCastException"):
                raw.copyToLocalFile(False, HPath(f"{remote}/model"), HPath((tmp_path / "again").as_uri()))
        finally:
            raw.close()
        dfs.delete(HPath(remote), True)
    finally:
        dfs.close()


PROBE = """
from lakeforge import local_fs
from lakeforge.spark import session
spark = session("local-fs-probe")
conf = spark.sparkContext._jsc.hadoopConfiguration()
local = spark.sparkContext._jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf)
print("PROBE", local_fs.available_jar(), conf.get("fs.file.impl"), local.getClass().getName())
spark.stop()
"""


def test_a_submitted_job_keeps_it(tmp_path):
    """Under spark-submit (every job Airflow runs) pyspark is imported from pyspark.zip; the job's
    session() still finds the jar and keeps the file system the submitter chose (it used to put
    RawLocalFileSystem back, which failed HDFS-lake training at FileSystem.getLocal)."""
    from lakeforge.spark import spark_conf

    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    conf = spark_conf()
    submit = [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]"]
    for key, value in conf.items():
        submit += ["--conf", f"{key}={value}"]
    proc = subprocess.run([*submit, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("PROBE ")]
    assert line.split()[1:] == [local_fs.available_jar(), local_fs.CLASS_NAME, local_fs.CLASS_NAME]


def test_without_the_jar_spark_falls_back_to_hadoops(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", str(tmp_path / "empty"))
    assert local_fs.available_jar() is None
    assert local_fs.file_system_conf() == {"spark.hadoop.fs.file.impl": local_fs.FALLBACK}
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", "off")
    assert local_fs.jar_path() is None and local_fs.build() is None
    from lakeforge.spark import spark_conf

    conf = spark_conf()
    assert conf["spark.hadoop.fs.file.impl"] == local_fs.FALLBACK and "spark.driver.extraClassPath" not in conf
    # A lake on HDFS: local disk holds only scratch, and FileSystem.getLocal needs a LocalFileSystem.
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", "hdfs://127.0.0.1:9000/lake")
    assert spark_conf()["spark.hadoop.fs.file.impl"] == local_fs.CHECKSUMMED == "org.apache.hadoop.fs.LocalFileSystem"
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", str(tmp_path / "lake"))  # a bare path is local
    assert spark_conf()["spark.hadoop.fs.file.impl"] == local_fs.FALLBACK


def test_build_compiles_once_and_removes_stale_jars(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", str(tmp_path))
    stale = tmp_path / "lakeforge-local-fs-0000000000000000.jar"
    stale.write_bytes(b"an older build")
    path = local_fs.build()
    assert path == local_fs.jar_path() and path.is_file() and not stale.exists()
    with zipfile.ZipFile(path) as jar:
        assert {"lakeforge/hadoop/NioLocalFileSystem.class", "lakeforge/hadoop/NioLocalFileSystem$Raw.class"} <= set(
            jar.namelist())
    built = path.stat().st_mtime_ns
    assert local_fs.build() == path and path.stat().st_mtime_ns == built  # already there: not rebuilt
    conf = local_fs.file_system_conf()
    assert conf["spark.hadoop.fs.file.impl"] == local_fs.CLASS_NAME
    assert conf["spark.driver.extraClassPath"] == conf["spark.executor.extraClassPath"] == str(path)
