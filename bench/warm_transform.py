"""Benchmark helper: what the transform costs in a JVM that is already warm, and what Spark's Parquet
writer alone costs in it.

``transform_bench`` measures whole jobs, each in a fresh process. This runs ``transform_flights.run``
twice in ONE Spark application, on two lakes built from the same raw cache: the first run pays the
JVM's warm-up (class loading, code generation, JIT compilation), the second does not. Then, still
warm, it reads the published ``clean/flights`` and ``features/flights`` back and writes them twice
(median of ``--repeats``): to Spark's ``noop`` sink and as Parquet the way the job writes it
(``lakeforge.transform.steps.write_partitioned``). The difference is the Parquet writer's own cost
(encoding, compression, file output) for those rows.

    python -m bench.warm_transform --lake-a file:///tmp/a --lake-b file:///tmp/b --start 2013-01-01 --end 2013-12-30

Prints one ``WARM_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from lakeforge.dates import dates_of
from lakeforge.lake import Lake
from lakeforge.quality import gate
from lakeforge.quality.spec import load_suite
from lakeforge.spark import session
from lakeforge.pipelines.nycflights.transform import TRANSFORM
from lakeforge.transform import steps
from spark_jobs import transform_flights as tf


def writer_cost(spark, lake: Lake, table: str, repeats: int) -> dict[str, Any]:
    """Seconds to write ``table`` (all its published rows) to noop and as the job writes it
    (``lakeforge.transform.steps.write_partitioned``, into a scratch table of the lake), warm."""
    df = spark.read.parquet(lake.uri(table))
    rows = df.count()
    times: dict[str, list[float]] = {"noop": [], "parquet": []}
    for _ in range(repeats):
        started = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        times["noop"].append(time.perf_counter() - started)
        started = time.perf_counter()
        staging = steps.write_partitioned(df, lake, f"_bench/{table}")
        times["parquet"].append(time.perf_counter() - started)
        lake.delete(staging)
    noop, parquet = statistics.median(times["noop"]), statistics.median(times["parquet"])
    return {"rows": rows, "columns": len(df.columns), "noop_s": round(noop, 2), "parquet_s": round(parquet, 2),
            "writer_s": round(parquet - noop, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake-a", required=True, help="the first (cold) run's lake")
    parser.add_argument("--lake-b", required=True, help="the second (warm) run's lake")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--repeats", type=int, default=3, help="writes per sink in the writer measurement")
    args = parser.parse_args(argv)
    dates = dates_of(argparse.Namespace(dates=None, start=args.start, end=args.end))
    lakes = [Lake(args.lake_a), Lake(args.lake_b)]
    inputs = [steps.raw_inputs(lake, TRANSFORM.raw_tables, dates) for lake in lakes]
    # As the job does: Great Expectations imports while the JVM starts (the first run's gate).
    gate.preload(lambda: [load_suite(TRANSFORM.source, table) for table in TRANSFORM.audited_tables])
    started = time.perf_counter()
    # Sized like the job sizes itself (the same JIT choice as a fresh run of this input).
    spark = session("transform_flights_warm", input_bytes=steps.input_bytes(inputs[0]))
    startup = time.perf_counter() - started
    try:
        runs = []
        for lake, lake_inputs in zip(lakes, inputs):
            t = time.perf_counter()
            result = tf.run(spark, lake, dates, None, lake_inputs)
            runs.append({"compute_s": round(time.perf_counter() - t, 2),
                         "timings": {k: round(v, 2) for k, v in result["timings"].items()},
                         "rows": result["rows"]})
        writers = {table: writer_cost(spark, lakes[1], table, args.repeats)
                   for table in ("clean/flights", "features/flights")}
    finally:
        spark.stop()
    out = {"spark_startup_s": round(startup, 2), "first_run": runs[0], "second_run": runs[1],
           "parquet_writer": writers}
    print("WARM_RESULT " + json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
