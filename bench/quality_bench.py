"""Benchmark: what the quality gates add to the transform job's Spark time.

The job times its phases separately (``LAKEFORGE_RESULT`` timings): the work it did before the
gates existed (clean, features, publish) and the gate (``quality_s``: raw checks from the
manifests, one concurrent profiling round over the staged clean flights, clean weather and
features, one Great Expectations validation, the evidence files). The gate's share is
``quality / (clean + features + publish)``; ``quality.timings`` splits the gate into profiling,
validation and evidence. Measured, each in a fresh process (``spark-submit``'s
path: ``python -m spark_jobs.transform_flights``), on the raw lakes of ``bench.scaled_lake``:

1. a full-year range run on the real year (x1) and on the year at x20 (6.7M flights);
2. daily runs: one day reprocessed on the x1 lake holding the year (median of ``--repeats``).

Targets (issue 3): <= 25% on a daily run, <= 15% on a full-year range run.
Writes ``bench/results/quality.json`` and prints a markdown table.

    python -m bench.quality_bench [--scales 1,20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench import scaled_lake
from bench.transform_bench import RESULTS, _machine, log, measured, spark_run

START, END = date(2013, 1, 1), date(2013, 12, 30)
DAILY_TARGET, RANGE_TARGET = 0.25, 0.15


def gate_share(run: dict[str, Any]) -> dict[str, Any]:
    t = run["timings"]
    gate = t["quality_s"]
    work = t["clean_s"] + t["features_s"] + t["publish_s"]
    return {
        "wall_s": round(run["wall_s"], 2),
        "spark_startup_s": round(t["spark_startup_s"], 2),
        "work_without_gate_s": round(work, 2),
        "gate_s": round(gate, 2),
        "gate_share": round(gate / work, 3),
        "gate_share_of_job_incl_startup": round(gate / (t["total_s"] - gate), 3),
        "timings": {k: round(v, 2) for k, v in t.items()},
        "gate_timings": {k: round(v, 2) for k, v in run["quality"]["timings"].items()},
        "quality": run["quality"]["counts"],
        "contention": run["contention"]["foreign_cpu_share"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,20", help="comma-separated scales for the full-year run")
    parser.add_argument("--day", default="2013-06-14", help="the day of the daily runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--output", type=Path, default=RESULTS / "quality.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ranges: dict[str, Any] = {}
    daily: list[dict[str, Any]] = []
    for scale in [int(s) for s in args.scales.split(",")]:
        cache, _ = scaled_lake.build(scale, START, END, log=log)
        work = scaled_lake.CACHE_ROOT / f"quality_x{scale}"
        shutil.rmtree(work, ignore_errors=True)
        lake = scaled_lake.link_run_lake(cache, work / "lake", START, END)
        log(f"x{scale}: full-year range run ...")
        run = spark_run(lake, "local[2]", ["--start", START.isoformat(), "--end", END.isoformat()],
                        work / "logs" / "range.log", args.timeout)
        ranges[f"x{scale}"] = gate_share(run)
        log(f"  {ranges[f'x{scale}']['gate_s']}s gate / {ranges[f'x{scale}']['work_without_gate_s']}s work "
            f"= {ranges[f'x{scale}']['gate_share']:.1%}")
        if scale == 1:
            for i in range(args.repeats):
                r = measured(lambda i=i: spark_run(lake, "local[2]", ["--dates", args.day],
                                                   work / "logs" / f"day_{i + 1}.log", args.timeout),
                             "one day", args.retries)
                daily.append(gate_share(r))
                log(f"  one day {args.day}: gate {daily[-1]['gate_s']}s / work "
                    f"{daily[-1]['work_without_gate_s']}s = {daily[-1]['gate_share']:.1%}")
        shutil.rmtree(work, ignore_errors=True)

    daily_share = statistics.median(d["gate_share"] for d in daily) if daily else None
    worst_range = max(r["gate_share"] for r in ranges.values())
    result = {
        "machine": _machine(),
        "ranges": ranges,
        "daily": daily,
        "daily_gate_share_median": daily_share,
        "targets": {
            "daily_share_max": DAILY_TARGET, "daily_met": daily_share is not None and daily_share <= DAILY_TARGET,
            "range_share_max": RANGE_TARGET, "range_met": worst_range <= RANGE_TARGET,
        },
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = ["| run | wall s | Spark start s | work without gate s | gate s | gate share |", "|---|---|---|---|---|---|"]
    for name, r in result["ranges"].items():
        lines.append(f"| full year {name} | {r['wall_s']} | {r['spark_startup_s']} | {r['work_without_gate_s']} "
                     f"| {r['gate_s']} | {r['gate_share']:.1%} |")
    for i, r in enumerate(result["daily"], 1):
        lines.append(f"| one day (x1, year of history) #{i} | {r['wall_s']} | {r['spark_startup_s']} "
                     f"| {r['work_without_gate_s']} | {r['gate_s']} | {r['gate_share']:.1%} |")
    t = result["targets"]
    lines.append(f"\nTargets: daily <= {t['daily_share_max']:.0%} ({'met' if t['daily_met'] else 'NOT met'}: "
                 f"median {result['daily_gate_share_median']:.1%}), full-year range <= {t['range_share_max']:.0%} "
                 f"({'met' if t['range_met'] else 'NOT met'}).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
