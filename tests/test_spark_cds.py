"""The Spark driver's class-data-sharing archive (recorded by `make install`) is really mapped by
the JVMs lakeforge starts, and a broken archive never stops a job from starting."""

import os
import subprocess
import sys
from pathlib import Path

from lakeforge import local_fs, spark_cds

START = ("from lakeforge.spark import session; s = session('cds-check', 'local[1]'); "
         "print('ROWS', s.range(3).count()); s.stop()")


def start_spark(tmp_path: Path, **env: str) -> tuple[str, str]:
    """A Spark session in a fresh process, every JVM logging where its classes came from."""
    logs = tmp_path / "class-load"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ, JDK_JAVA_OPTIONS=f"-Xlog:class+load=info:file={logs}/%p.log", **env)
    done = subprocess.run([sys.executable, "-c", START], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ROWS 3" in done.stdout, done.stderr[-3000:]
    return done.stderr, "".join(p.read_text() for p in logs.glob("*.log"))


def test_the_recorded_archive_is_mapped_by_the_driver(tmp_path):
    path = spark_cds.archive_path()
    assert path is not None and path.is_file(), f"no Spark class archive at {path}: run `make install`"
    assert f"-XX:SharedArchiveFile={path}" in spark_cds.java_options()
    _, loaded = start_spark(tmp_path)
    spark_classes = [line for line in loaded.splitlines() if " org.apache.spark.SparkContext " in line]
    assert spark_classes and all("source: shared objects file (top)" in line for line in spark_classes), spark_classes


def test_a_broken_archive_is_ignored_not_fatal(tmp_path):
    broken = tmp_path / "cds"
    broken.mkdir()
    key = spark_cds.archive_key()
    (broken / f"spark-driver-{key}.jsa").write_bytes(b"\0" * 4096)  # e.g. a truncated copy
    _, loaded = start_spark(tmp_path, LAKEFORGE_SPARK_CDS_DIR=str(broken))
    assert " org.apache.spark.SparkContext source: jar:" in loaded or " org.apache.spark.SparkContext source: file:" in loaded


def test_archive_key_follows_the_jdk_and_the_jars(monkeypatch, tmp_path):
    key = spark_cds.archive_key()
    assert key and len(key) == 16
    monkeypatch.setenv("LAKEFORGE_SPARK_CDS_DIR", "off")
    assert spark_cds.archive_path() is None and spark_cds.java_options() == ""
    fake = tmp_path / "jdk"
    (fake / "lib").mkdir(parents=True)
    (fake / "lib" / "modules").write_bytes(b"another build")
    monkeypatch.setenv("JAVA_HOME", str(fake))
    assert spark_cds.archive_key() not in (None, key)


def test_archive_key_follows_the_local_file_system_jar(monkeypatch, tmp_path):
    # A JVM with lakeforge's file system jar on its class path cannot use an archive recorded
    # without it, or against an earlier build of it (and the reverse): the key tells them apart.
    with_jar = spark_cds.archive_key()
    jar = Path(local_fs.available_jar())
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 1))  # as a rebuild would
    try:
        rebuilt = spark_cds.archive_key()
    finally:
        os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns - 1))
    built_in = os.environ["LAKEFORGE_SPARK_LOCAL_FS_DIR"]
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", "off")
    without = spark_cds.archive_key()
    assert None not in (with_jar, rebuilt, without) and len({with_jar, rebuilt, without}) == 3
    monkeypatch.setenv("LAKEFORGE_SPARK_LOCAL_FS_DIR", built_in)
    assert spark_cds.archive_key() == with_jar  # the same jar again: the same archive


def test_the_driver_runs_the_throughput_collector(spark):
    """lakeforge.spark.DRIVER_JVM_OPTIONS: the driver JVM (local mode: the executors too) uses
    the parallel collector; the class archive is recorded with the same options."""
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert {bean.getName() for bean in beans} == {"PS Scavenge", "PS MarkSweep"}
