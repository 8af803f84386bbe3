"""A ``file://`` Hadoop file system for Spark that sets permissions without forking ``chmod``.

Spark writes local files through Hadoop's local file system. Without Hadoop's native library
(pyspark ships none), ``RawLocalFileSystem`` sets the permission of every directory and file it
creates by running ``chmod`` in a child process of the driver JVM: ~3 ms each, and a partitioned
write creates several per task and day (911 ``chmod`` processes in a 4-month run at x20).
``lakeforge.hadoop.NioLocalFileSystem`` (``java/``) sets them in-process with ``java.nio``: the x20
year ran 4-7 s faster (68-73 s -> 61-65 s).

It is a ``LocalFileSystem`` (Hadoop's checksummed file system) over that in-process raw file
system, writing and verifying no ``.crc`` side files: Hadoop casts the ``file://`` file system to
``LocalFileSystem`` in ``FileSystem.getLocal``, which ``copyToLocalFile`` uses, e.g. MLflow's Spark
model logging when the default file system is HDFS. (A ``RawLocalFileSystem`` subclass there failed
every HDFS-lake training with a ``ClassCastException``.)

``python -m lakeforge.local_fs`` (a step of ``make spark-cds``) compiles it with ``javac`` against
pyspark's own Hadoop API jar into ``LAKEFORGE_SPARK_LOCAL_FS_DIR``. ``spark_conf()`` uses the jar
when the one for the current pyspark exists, and Hadoop's own classes otherwise (``fallback()``):
a missing jar makes jobs slower, never broken.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from lakeforge.settings import get_settings

CLASS_NAME = "lakeforge.hadoop.NioLocalFileSystem"
SOURCE = Path(__file__).parent / "java" / "lakeforge" / "hadoop" / "NioLocalFileSystem.java"
FALLBACK = "org.apache.hadoop.fs.RawLocalFileSystem"  # without the jar, for a lake on local disk
CHECKSUMMED = "org.apache.hadoop.fs.LocalFileSystem"  # Hadoop's default: without the jar, otherwise


def hadoop_api_jar() -> Path | None:
    """pyspark's Hadoop client API jar (located, not imported: DAG files call spark_conf()).

    Under spark-submit (every job Airflow runs) pyspark is imported from
    ``<SPARK_HOME>/python/lib/pyspark.zip``, whose pip package holds ``jars/`` a few folders up:
    found there too, so a job's ``session()`` keeps the file system its submitter chose (it set
    ``RawLocalFileSystem`` instead, and training on an HDFS lake failed in MLflow's model copy)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    location = Path(spec.submodule_search_locations[0])
    for folder in (location, *location.parents):
        jars = sorted((folder / "jars").glob("hadoop-client-api-*.jar"))
        if jars:
            return jars[-1]
    return None


def jar_path() -> Path | None:
    """Where the jar for this source and pyspark's Hadoop lives (None: disabled or no pyspark)."""
    directory = get_settings().spark_local_fs_dir
    api = hadoop_api_jar()
    if directory == "off" or api is None:
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + f"{api.name}:{api.stat().st_size}".encode()).hexdigest()[:16]
    return Path(directory) / f"lakeforge-local-fs-{key}.jar"


def available_jar() -> str | None:
    path = jar_path()
    return str(path) if path is not None and path.is_file() else None


def fallback() -> str:
    """``file://`` without the jar. A lake on local disk gets ``RawLocalFileSystem``: no ``.crc``
    side files among the partitions' data files (manifests list every file). Any other lake
    (``hdfs://``) gets Hadoop's own ``LocalFileSystem``: local disk then holds only scratch, and
    ``FileSystem.getLocal`` (MLflow's Spark model copies from the default file system) needs that
    class; a raw one there fails with a ``ClassCastException``."""
    from lakeforge.uris import normalize_root

    return FALLBACK if normalize_root(get_settings().lake_root).startswith("file:") else CHECKSUMMED


def file_system_conf() -> dict[str, str]:
    """The Spark settings for ``file://``: the in-process file system when its jar is built."""
    jar = available_jar()
    if jar is None:
        return {"spark.hadoop.fs.file.impl": fallback()}
    # On the driver's and the executors' class path: Hadoop loads the class by name from both.
    return {"spark.hadoop.fs.file.impl": CLASS_NAME, "spark.driver.extraClassPath": jar,
            "spark.executor.extraClassPath": jar}


def build(force: bool = False) -> Path | None:
    """Compile the class into its jar if this source + pyspark has none yet; returns its path."""
    path = jar_path()
    if path is None or (path.is_file() and not force):
        return path
    from lakeforge.spark_cds import install, java_home

    home = java_home()  # the JDK Spark runs on
    javac = home / "bin" / "javac" if home is not None else None
    if javac is None or not javac.is_file():
        raise RuntimeError("javac (a JDK) is needed to build lakeforge's local file system jar; "
                           "or set LAKEFORGE_SPARK_LOCAL_FS_DIR=off to use Hadoop's own local file system")
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run([str(javac), "--release", "17", "-nowarn", "-cp", str(hadoop_api_jar()), "-d", classes, str(SOURCE)],
                       check=True, capture_output=True, text=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: lakeforge.local_fs\n\n")
            for f in sorted(Path(classes).rglob("*.class")):
                jar.write(f, f.relative_to(classes).as_posix())
    install(tmp, path, "lakeforge-local-fs-*.jar")
    print(f"local file system jar {path} built in {time.perf_counter() - started:.1f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build lakeforge's in-process local file system jar for Spark.")
    parser.add_argument("--force", action="store_true", help="build again even if it exists")
    args = parser.parse_args(argv)
    path = build(force=args.force)
    print(f"local file system jar: {path if path is not None else 'disabled (LAKEFORGE_SPARK_LOCAL_FS_DIR=off)'}")


if __name__ == "__main__":
    main()
