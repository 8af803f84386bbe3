"""A class-data-sharing archive for Spark's driver JVM: start-up without re-parsing its classes.

Every lakeforge job starts a JVM that loads and verifies ~10,000 Spark, Hadoop and Parquet
classes before it does any work (session 5.1 s, first query 2.1 s here). A dynamic AppCDS archive
(JDK 13+) holds them already parsed and verified: with it the same start took 3.6 s + 1.2 s.

``python -m lakeforge.spark_cds`` (``make spark-cds``, a step of ``make test``/``demo``/``bench``) records the archive once per JDK and
pyspark install: a short Spark workload (CSV and text reads, Parquet writes, aggregations,
joins) in a JVM started with ``-XX:ArchiveClassesAtExit``; the archive is dumped when that JVM
exits and only then renamed into place, so a half-written archive is never used. ``spark_conf()``
adds ``-XX:SharedArchiveFile`` to the driver's options when the archive for the current JDK and
pyspark exists. The JVM checks the archive itself (JDK build, class path) and runs without it,
with a warning, if it does not match: it can make a start faster, never break it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from lakeforge.settings import get_settings

RECORD_ENV = "LAKEFORGE_SPARK_CDS_RECORD"  # set in the recording child: where its JVM dumps
# Part of the archive's key: an archive recorded by an earlier ``_workload`` lacks the classes a
# newer one added, so changing the workload records it again.
WORKLOAD = "2: + Python workers over Arrow (mapInArrow), StringIndexerModel from labels"


def java_home() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        return Path(home).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def install(tmp: Path, path: Path, family: str) -> None:
    """Move a freshly built artefact into place whole (a reader never sees half of it), then
    delete the other builds matching ``family`` next to it: keyed by what they were built for,
    they are never used again."""
    os.replace(tmp, path)
    for stale in path.parent.glob(family):
        if stale != path:
            stale.unlink(missing_ok=True)


def archive_key() -> str | None:
    """Identity of what the archive depends on: the JDK build (its module image), the JVM options,
    the jars on pyspark's class path and lakeforge's local file system jar (``lakeforge.local_fs``).
    None when there is no JDK or pyspark to speak of."""
    home = java_home()
    spec = importlib.util.find_spec("pyspark")  # located, not imported: DAG files call spark_conf()
    if home is None or spec is None or not spec.submodule_search_locations:
        return None
    modules = home / "lib" / "modules"
    jars = Path(spec.submodule_search_locations[0]) / "jars"
    if not modules.exists() or not jars.is_dir():
        return None
    from lakeforge.local_fs import available_jar
    from lakeforge.spark import DRIVER_JVM_OPTIONS  # recorded and used with the same options (GC...)

    # The class path counts too, each jar as the JVM checks it (size and modification time): an
    # archive recorded without the local file system jar, or against an earlier build of any jar,
    # is not mapped (the JVM then runs without it).
    digest = hashlib.sha256(f"{modules}:{modules.stat().st_size}:{modules.stat().st_mtime_ns}:{DRIVER_JVM_OPTIONS}:"
                            f"{WORKLOAD}".encode())
    local_fs = available_jar()
    for jar in [*sorted(jars.iterdir()), *([Path(local_fs)] if local_fs else [])]:
        stat = jar.stat()
        digest.update(f"{jar}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def archive_path() -> Path | None:
    s = get_settings()
    if s.spark_cds_dir == "off":
        return None
    key = archive_key()
    return Path(s.spark_cds_dir) / f"spark-driver-{key}.jsa" if key else None


def java_options() -> str:
    """Driver JVM options: record (in the recording child) or use the archive, if there is one."""
    recording = os.environ.get(RECORD_ENV)
    if recording:
        # -Xlog: the dump lists every class it could not archive (e.g. optional Ivy/Ant classes).
        return f"-XX:ArchiveClassesAtExit={recording} -Xlog:cds=error,cds+dynamic=error"
    path = archive_path()
    return f"-XX:SharedArchiveFile={path}" if path is not None and path.is_file() else ""


def _workload() -> None:
    """What lakeforge's jobs do, in small: the classes it loads go into the archive."""
    from pyspark.sql import functions as F

    from lakeforge.spark import session, size_file_splits

    spark = session("lakeforge_spark_cds", master="local[2]")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp, "in.csv")
        csv.write_text("a,b,c\n" + "".join(f"{i},x{i % 7},2013-01-0{1 + i % 3} 0{i % 10}:00:00\n" for i in range(500)))
        size_file_splits(spark, [csv.stat().st_size])
        text = spark.read.text(str(csv)).where(F.col("value") != "a,b,c").select(
            F.split("value", ",").alias("f"), F.col("_metadata.file_path").alias("path"))
        parsed = text.select(F.col("f")[0].try_cast("int").alias("a"), F.col("f")[1].alias("b"),
                             F.to_timestamp(F.col("f")[2]).alias("ts"), "path").withColumn(
            "ds", F.date_format("ts", "yyyy-MM-dd")).withColumn(
            "local", F.from_utc_timestamp("ts", "America/New_York")).cache()
        parsed.write.mode("overwrite").option("parquet.enable.dictionary", "false").partitionBy("ds") \
            .parquet(f"{tmp}/out")
        back = spark.read.parquet(f"{tmp}/out")
        typed = spark.read.csv(str(csv), header=True, schema="a int, b string, c timestamp, _corrupt string",
                               mode="PERMISSIVE", columnNameOfCorruptRecord="_corrupt")
        joined = back.join(F.broadcast(typed.select("a", "c")), on="a", how="left")
        joined.groupBy("ds").agg(F.count(F.lit(1)), F.avg("a"), F.min("ts"), F.max("ts"),
                                 F.collect_set(F.xxhash64("a", "b")), F.count_if(F.col("b").isin("x1", "x2"))).collect()
        joined.write.mode("overwrite").json(f"{tmp}/json")
        parsed.unpersist()
        # Scoring and drift: Python workers fed Arrow batches (their first job in a JVM without
        # these classes took 1.9 s here, after a first plain job), and a lightgbm champion's
        # indexers built from their labels (``lakeforge.scoring.sparkml_files``).
        from pyspark.ml.feature import StringIndexerModel

        indexed = StringIndexerModel.from_arrays_of_labels([["x1", "x2"]], inputCols=["b"], outputCols=["b_idx"],
                                                           handleInvalid="keep").transform(back)
        indexed.select("a", "b_idx").mapInArrow(_arrow_batches, "a int, b_idx double").collect()
    spark.stop()


def _arrow_batches(batches):
    """``mapInArrow`` function of the workload: the batches as they came."""
    yield from batches


def _record_child(target: str) -> None:
    """The recording process: run the workload, then end the JVM and wait until it has dumped."""
    from pyspark import SparkContext

    _workload()
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:
        proc.stdin.close()  # the gateway JVM exits when its stdin closes, dumping the archive
        proc.wait(timeout=300)


def build(force: bool = False) -> Path | None:
    """Record the archive if the current JDK + pyspark has none yet; returns its path."""
    path = archive_path()
    if path is None or (path.is_file() and not force):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    started = time.perf_counter()
    env = dict(os.environ, **{RECORD_ENV: str(tmp)})
    done = subprocess.run([sys.executable, "-m", "lakeforge.spark_cds", "--record-child"], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"recording the Spark class archive failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    # Whole or absent: the JVM reads the archive only under its final name. Archives of an older
    # JDK / pyspark / options are 170 MB each and never used again.
    install(tmp, path, "spark-driver-*.jsa")
    print(f"Spark class archive {path} ({path.stat().st_size >> 20} MB) recorded in "
          f"{time.perf_counter() - started:.0f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record the Spark driver's class-data-sharing archive.")
    parser.add_argument("--force", action="store_true", help="record again even if it exists")
    parser.add_argument("--record-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.record_child:
        _record_child(os.environ[RECORD_ENV])
        return
    existed = (archive_path() or Path("/nonexistent")).is_file()
    path = build(force=args.force)
    if path is None:
        print("Spark class archive: off (LAKEFORGE_SPARK_CDS_DIR=off, or no JDK / pyspark found)")
    elif existed and not args.force:
        print(f"Spark class archive: {path} (up to date)")


if __name__ == "__main__":
    main()
