"""SparkSession for lakeforge jobs, configured from settings (one JVM per job, tuned for small data).

``spark-submit`` (Airflow's SparkSubmitOperator) sets the master itself; run directly (tests,
notebooks), ``session()`` takes it from ``LAKEFORGE_SPARK_MASTER``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lakeforge.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_conf() -> dict[str, str]:
    s = get_settings()
    return {
        # Daily partitions are a few MB: a handful of shuffle partitions, adaptive coalescing on.
        "spark.sql.shuffle.partitions": str(s.spark_shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # A table of a few hundred ds=... folders is listed by the driver: the default (a Spark
        # job once a folder has > 32 entries) cost 0.9 s per read of a year-long table here.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
        # Replace only the partitions a run writes, never the whole table.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not legacy INT96
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": s.spark_driver_memory,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # No .crc side files on local disks, no _SUCCESS files: lakeforge's manifest is the commit
        # marker and lists exactly the data files.
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
        "spark.hadoop.fs.file.impl.disable.cache": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    }


def session(app_name: str, master: str | None = None) -> "SparkSession":
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (xgboost.spark, pandas-based stages) must run this venv's interpreter; a
    # session started in-process reads only PYSPARK_PYTHON (spark-submit maps spark.pyspark.python).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (PYSPARK_GATEWAY_PORT set) the submitter already chose the master.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or get_settings().spark_master)
    for key, value in spark_conf().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
