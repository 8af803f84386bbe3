"""Benchmark: a small transform run as its own Spark application vs. through a long-lived Spark
Connect server ("or use a long-lived Spark Connect server: measure and decide").

On a lake holding a month of x20 history (``bench.scaled_lake``), one day (the month's last) is
reprocessed, each run in a fresh Python process, as a daily run would be:

1. ``app``: ``python -m spark_jobs.transform_flights --dates ...``, its own ``local[2]`` application,
   as Airflow runs it (JVM start-up and a cold JIT in every run);
2. ``connect``: the same job's ``run()`` in a Python process connected with ``sc://`` to a Spark
   Connect server (``local[2]``, the same ``lakeforge.spark.spark_conf()``, bound to 127.0.0.1)
   started from pyspark's jars before the runs and stopped after them. The first run after the
   server starts is reported apart: it pays the JIT warm-up a long-lived server pays once.

The job itself is unchanged; only ``size_file_splits`` gets the core count (``--slots``) in the
client, because a Connect client has no SparkContext to ask for it.
Writes ``bench/results/connect.json``.

    python -m bench.connect_bench [--runs 3] [--scale 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench import scaled_lake
from bench.transform_bench import RESULTS, log, run_subprocess, wait_for_quiet
from lakeforge.ports import free_loopback_port

MONTH = (date(2013, 1, 1), date(2013, 1, 31))
CLIENT_MARK = "LAKEFORGE_RESULT "  # what run_subprocess reads, as from the job itself


def client(remote: str, lake: str, dates: list[str], slots: int) -> dict[str, Any]:
    """One run of ``transform_flights.run`` through a Connect server (in a fresh process)."""
    started = time.perf_counter()
    import spark_jobs.transform_flights as job
    from lakeforge.lake import Lake
    from lakeforge.quality import gate
    from lakeforge.quality.spec import load_suite

    import lakeforge.spark
    from lakeforge.pipelines.nycflights.transform import TRANSFORM

    # no SparkContext here (the job imports it from lakeforge.spark at run time)
    lakeforge.spark.size_file_splits = functools.partial(lakeforge.spark.size_file_splits, cores=slots)
    gate.preload(lambda: [load_suite(TRANSFORM.source, table) for table in TRANSFORM.audited_tables])
    from pyspark.sql import SparkSession

    t = time.perf_counter()
    spark = SparkSession.builder.remote(remote).getOrCreate()
    connect_s = time.perf_counter() - t
    try:
        result = job.run(spark, Lake(lake), dates)
    finally:
        spark.stop()
    result["timings"]["spark_startup_s"] = connect_s  # connecting is this mode's start-up
    result["timings"]["total_s"] = time.perf_counter() - started
    return result


COMPARED = ("clean/flights", "clean/weather", "features/flights")


def same_rows(app_lake: str, connect_lake: str, table: str, ds: str) -> bool:
    """The day's published rows are identical in both lakes (file bytes differ: writer metadata)."""
    import pyarrow.dataset as pads

    def rows(lake: str):
        path = f"{lake[len('file://'):]}/{table}/ds={ds}"
        data = pads.dataset(path, format="parquet", exclude_invalid_files=True).to_table()
        return data.sort_by([(c, "ascending") for c in data.column_names])

    return rows(app_lake).equals(rows(connect_lake))


def start_server(master: str, port: int, workdir: Path) -> tuple[subprocess.Popen, float]:
    """A Spark Connect server from pyspark's own jars, on 127.0.0.1 only; returns it once it listens."""
    import pyspark

    from lakeforge.spark import spark_conf

    home = Path(pyspark.__file__).parent
    conf = {**spark_conf(), "spark.master": master, "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port)}
    props = workdir / "connect-server.conf"
    props.write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    out = open(workdir / "connect-server.log", "w")
    t = time.perf_counter()
    proc = subprocess.Popen(
        [str(home / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
         "--name", "lakeforge-connect-bench", "--properties-file", str(props), "spark-internal"],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark Connect server exited ({proc.returncode}): see {workdir / 'connect-server.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, time.perf_counter() - t
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("Spark Connect server did not listen within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def slots(master: str) -> int:
    inner = master[len("local["):-1] if master.startswith("local[") else ""
    return int(inner) if inner.isdigit() else os.cpu_count() or 1


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    return {"wall_s": [round(w, 2) for w in walls], "median_wall_s": round(statistics.median(walls), 2),
            "timings": [{k: round(v, 2) for k, v in r["timings"].items()} for r in runs],
            "foreign_cpu_share": [r["contention"]["foreign_cpu_share"] for r in runs]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remote", help=argparse.SUPPRESS)
    p.add_argument("--lake", help=argparse.SUPPRESS)
    p.add_argument("--dates", help=argparse.SUPPRESS)
    p.add_argument("--slots", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, default=3, help="measured one-day runs per mode")
    p.add_argument("--scale", type=int, default=20)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args(argv)
    if args.client:
        result = client(args.remote, args.lake, args.dates.split(","), args.slots)
        print(CLIENT_MARK + json.dumps(result, default=str), flush=True)
        return result

    started = time.perf_counter()
    cache, _ = scaled_lake.build(args.scale, *MONTH, log=log)
    work = Path(f"/tmp/lakeforge-connect-bench/x{args.scale}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    one_day = MONTH[1].isoformat()
    job = [sys.executable, "-m", "spark_jobs.transform_flights"]
    env = {**os.environ, "LAKEFORGE_SPARK_MASTER": args.master}
    lakes = {}
    for mode in ("app", "connect"):  # each mode replaces the day in its own lake
        lakes[mode] = scaled_lake.link_run_lake(cache, work / f"lake_{mode}", *MONTH)
        log(f"{mode}: the month's history ({MONTH[0]}..{MONTH[1]}) ...")
        run_subprocess("spark", [*job, "--start", MONTH[0].isoformat(), "--end", one_day, "--lake", lakes[mode]],
                       env, work / f"{mode}_month.log", args.timeout)

    app = []
    for i in range(args.runs):
        r = run_subprocess("spark", [*job, "--dates", one_day, "--lake", lakes["app"]], env,
                           work / f"app_{i}.log", args.timeout)
        log(f"app run {i + 1}: wall {r['wall_s']:.1f}s (start-up {r['timings']['spark_startup_s']:.1f}s)")
        app.append(r)

    port = free_loopback_port()
    wait_for_quiet(120)
    server, server_start_s = start_server(args.master, port, work)
    connect = []
    try:
        log(f"Spark Connect server on 127.0.0.1:{port} after {server_start_s:.1f}s")
        cmd = [sys.executable, "-m", "bench.connect_bench", "--client", "--remote", f"sc://127.0.0.1:{port}",
               "--lake", lakes["connect"], "--dates", one_day, "--slots", str(slots(args.master))]
        for i in range(args.runs + 1):
            # The server is outside the run's process group: its CPU counts as "foreign" here.
            r = run_subprocess("spark", cmd, dict(os.environ), work / f"connect_{i}.log", args.timeout)
            log(f"connect run {i + 1}: wall {r['wall_s']:.1f}s")
            connect.append(r)
    finally:
        stop_server(server)
    same = {table: same_rows(lakes["app"], lakes["connect"], table, one_day) for table in COMPARED}
    result = {
        "benchmark": "connect",
        "what": "one-day transform_flights run (x%d month of history) as its own Spark application vs. "
                "through a long-lived Spark Connect server" % args.scale,
        "master": args.master, "date": one_day, "rows": app[0]["rows"],
        "app": summary(app),
        "connect_server_start_s": round(server_start_s, 2),
        "connect_first_run": summary(connect[:1]),
        "connect_warm": summary(connect[1:]),
        "same_rows": same,
        "notes": ["foreign_cpu_share of the connect runs includes the server's CPU: it runs outside the "
                  "client's process group, and its work for the run is counted there"],
        "bench_s": round(time.perf_counter() - started, 1),
    }
    result["warm_connect_over_app"] = round(result["connect_warm"]["median_wall_s"] / result["app"]["median_wall_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "connect.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"app median {result['app']['median_wall_s']}s; connect first {connect[0]['wall_s']:.1f}s, warm median "
        f"{result['connect_warm']['median_wall_s']}s ({result['warm_connect_over_app']}x); same rows: "
        f"{same}")
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
