"""SparkSession for lakeforge jobs, configured from settings (one JVM per job, tuned for small data).

``spark-submit`` (Airflow's SparkSubmitOperator) sets the master itself; run directly (tests,
notebooks), ``session()`` takes it from ``LAKEFORGE_SPARK_MASTER``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Mapping

from lakeforge.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


# JVM options of the driver and executors. Whole-stage codegen fuses a job's parse, rules and time
# arithmetic into one generated method far above HotSpot's 8 KB JIT limit: left interpreted it ran
# 3x slower (clean flights, 59 days at 20x: 11.3 s vs 3.9 s).
JVM_OPTIONS = "-XX:-DontCompileHugeMethods"
# The driver (in local mode the executors too) runs the throughput collector: a batch job wants
# throughput, not short pauses. x20 year, same session, quiet machine: local[2] compute 55.9 s vs
# 60.1 s with G1, an unpinned local[1] 77.7 vs 82.4 s; all pauses together 2.1 s. (An earlier run
# of older code had an unpinned local[1] 1.9x slower with it: not reproduced.) Executors on a
# cluster keep the JVM's default, G1, suited to their larger heaps.
DRIVER_JVM_OPTIONS = f"{JVM_OPTIONS} -XX:+UseParallelGC"


# What a cluster with a shared secret runs with: the daemons (lakeforge.spark_cluster, the docker
# stack) and every application must agree on all of it. No fallback to SASL: a client that
# authenticates but does not encrypt is refused.
CLUSTER_SECURITY_CONF = {"spark.authenticate": "true", "spark.network.crypto.enabled": "true",
                         "spark.network.crypto.saslFallback": "false"}


# A JVM that lives for a short run spends its CPU warming up: C2 compiles (on the same two cores
# as the tasks) code the run has nearly finished with. C1 alone compiles fast. Measured at x20,
# whole transform run, local[2], C1 only vs tiered: 1 day 11.4-11.8 vs 14.2-16.2 s, 7 days 13.6
# vs 17.1, 31 days (54 MB) 19.7 vs 21.7, 60 days 24.3 vs 25.2, 90 days 31.5 vs 29.4, a year 97 vs 57.
SHORT_RUN_JIT = "-XX:TieredStopAtLevel=1"
# C1 alone reserves only 48 MB for compiled code: the features' generated methods filled it on a
# year at x1 ("CodeCache is full. Compiler has been disabled"), and the rest of the run was
# interpreted. The tiered default's 240 MB is reserved address space, committed as used.
SHORT_RUN_CODE_CACHE = "-XX:ReservedCodeCacheSize=240m"


def short_run_limit() -> int:
    """Input bytes up to which a job is a short run (``LAKEFORGE_SPARK_SHORT_RUN_MB``; 0: none is)."""
    return get_settings().spark_short_run_mb << 20


def short_run_partitions() -> int:
    """Partitions (days) up to which a job can be a short run (``LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS``)."""
    return get_settings().spark_short_run_partitions


def is_short_run(input_bytes: int | None, partitions: int | None = None) -> bool:
    """Whether a job reading ``input_bytes`` over ``partitions`` partitions (None: not counted) is
    short: small input AND few partitions. The bytes alone misjudge a long range of small days: the
    x1 year is 34 MB, and its transform runs for minutes, C2's kind of run (C1 only 307 s, tiered 218 s)."""
    limit = short_run_limit()
    return (input_bytes is not None and 0 < limit and input_bytes <= limit
            and (partitions is None or partitions <= short_run_partitions()))


def jit_options(input_bytes: int | None, partitions: int | None = None) -> str:
    """JIT options for the JVMs of a job reading ``input_bytes`` (None: unknown, tiered) over
    ``partitions`` partitions."""
    return f"{SHORT_RUN_JIT} {SHORT_RUN_CODE_CACHE}" if is_short_run(input_bytes, partitions) else ""


def with_jit(conf: dict[str, str], input_bytes: int | None, partitions: int | None = None) -> dict[str, str]:
    """``conf`` with the driver's and executors' JIT chosen for a job reading ``input_bytes`` over
    ``partitions`` partitions."""
    jit = jit_options(input_bytes, partitions)
    if not jit:
        return dict(conf)
    keys = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
    return {**conf, **{k: " ".join(filter(None, [conf.get(k, ""), jit])) for k in keys}}


def spark_conf(input_bytes: int | None = None, partitions: int | None = None) -> dict[str, str]:
    """The jobs' Spark conf; ``input_bytes``, ``partitions``: how much the job reads, over how
    many partitions, when known (its JIT)."""
    from lakeforge.local_fs import file_system_conf
    from lakeforge.spark_cds import java_options

    s = get_settings()
    # The driver JVM maps its class archive, when one was recorded (lakeforge.spark_cds).
    driver_java = " ".join(filter(None, [DRIVER_JVM_OPTIONS, java_options()]))
    return with_jit({
        # Daily partitions are a few MB: a handful of shuffle partitions, adaptive coalescing on.
        "spark.sql.shuffle.partitions": str(s.spark_shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # A table of a few hundred ds=... folders is listed by the driver: the default (a Spark
        # job once a folder has > 32 entries) cost 0.9 s per read of a year-long table here.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
        # Partitioned writes without a sort or a shuffle: a task holding several days keeps one
        # Parquet writer open per day (plannedWrite would insert a sort by ds before every write).
        "spark.sql.optimizer.plannedWrite.enabled": "false",
        "spark.sql.maxConcurrentOutputFileWriters": "64",
        # Replace only the partitions a run writes, never the whole table.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not legacy INT96
        "spark.ui.showConsoleProgress": "false",
        # PySpark records the Python call site of every Column function for error messages: ~5
        # extra JVM round trips per call (the session, a reflected class, a conf read). The
        # features and clean steps make ~20,000 such calls: off, a one-day transform at x1 took
        # 33-34 s instead of 38-40 s. An error still names the failing expression, not the line.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # No delay scheduling: a task here reads a day (well under a second of work), so waiting
        # 3 s per locality level for a preferred host never pays; and on an HDFS lake in local
        # mode (blocks on 127.0.0.1, the executor named localhost) the features stage stalled
        # with tasks pending and both cores idle until it was off.
        "spark.locality.wait": "0s",
        "spark.driver.memory": s.spark_driver_memory,
        "spark.driver.extraJavaOptions": driver_java,
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # No .crc side files on local disks (lakeforge.local_fs: a LocalFileSystem, as Hadoop's
        # FileSystem.getLocal requires, that writes no checksums and sets permissions without a
        # chmod process), no _SUCCESS files: lakeforge's manifest is the commit marker and lists
        # exactly the data files.
        **file_system_conf(),
        "spark.hadoop.fs.file.impl.disable.cache": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        # A cluster with a shared secret: every connection of the application authenticates and
        # its RPC traffic (task closures, results, shuffle and broadcast blocks) is encrypted (AES,
        # keys derived from the secret): rows of the lake cross the network between hosts. The
        # secret itself is never part of this conf (it ends up in DAG serializations and on
        # spark-submit's command line); session() hands it to the driver from the environment.
        **(CLUSTER_SECURITY_CONF if s.spark_auth_secret else {}),
    }, input_bytes, partitions)


def size_file_splits(spark: "SparkSession", file_sizes: list[int], tasks_per_core: int = 8,
                     cores: int | None = None) -> None:
    """Size the file scans that follow to the data: whole files per task (a day's file is never
    split, so a task holds whole days and a partitioned write needs no shuffle) and several tasks
    per core, so the last tasks do not leave cores idle. Spark's defaults (128 MB splits, 4 MB
    counted per opened file) gave 5 tasks for 90 days of raw flights at 20x, and 2 for a year of
    its Parquet. ``cores``: the application's, when there is no SparkContext to ask (a Spark
    Connect client)."""
    sizes = file_sizes or [0]
    slots = (cores or spark.sparkContext.defaultParallelism) * tasks_per_core
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(max(sizes), sum(sizes) // slots, 1 << 20)))
    spark.conf.set("spark.sql.files.openCostInBytes", str(64 << 10))


def session(app_name: str, master: str | None = None, input_bytes: int | None = None,
            conf: Mapping[str, str] | None = None, partitions: int | None = None) -> "SparkSession":
    """The job's session. ``input_bytes``, ``partitions``: how much it reads, over how many
    partitions, when known (see ``jit_options``;
    under spark-submit the JVM is already up, and the submitter chose). ``conf``: the job's own
    settings on top of ``spark_conf`` (e.g. scoring's Arrow batch size)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (xgboost.spark, pandas-based stages) must run this venv's interpreter; a
    # session started in-process reads only PYSPARK_PYTHON (spark-submit maps spark.pyspark.python).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = get_settings()
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (PYSPARK_GATEWAY_PORT set) the submitter already chose the master.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or settings.spark_master)
    for key, value in {**spark_conf(input_bytes, partitions), **(conf or {})}.items():
        builder = builder.config(key, value)
    secret = settings.spark_auth_secret
    if secret:
        # A standalone driver must hold the secret in its conf (Spark redacts it in the UI, the
        # event log and its own logs); executors get it from their worker.
        builder = builder.config("spark.authenticate.secret", secret)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    # Parquet warns each time a task with many open day files shrinks its (unused, 128 MB) row
    # group budget: one line per opened file, noise in every task log.
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.parquet.hadoop.MemoryManager", jvm.org.apache.logging.log4j.Level.ERROR
    )
    return spark


def end_of_job() -> None:
    """Called by a job's ``__main__`` once its work is done and reported: ``gc.freeze()``, so
    the interpreter's exit does not walk the ~500,000 objects PySpark, MLflow and their imports
    leave behind in a last garbage collection (1.3 s of every scoring run here, measured with
    py-spy in ``gc_collect_main``; 0.1 s frozen). Nothing else changes: atexit handlers still run,
    streams are still flushed, and memory goes back to the OS with the process."""
    import gc

    gc.freeze()
