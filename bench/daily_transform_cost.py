"""Benchmark: what a daily transform run costs, for two versions of the code side by side.

The daily run is the one the scheduler makes every day: one day at x20 (``--dates D``) on a lake
that already holds the days before it. For each code version (``--code LABEL=DIR``, a checkout;
default: this one), a fresh lake gets the history range transformed once (not measured), then
the day is transformed ``--repeats`` times (each a fresh process, replacing the day as a rerun
does); the median wall time and the job's own timings are reported, and the ratio of every
version to the first one.

    python -m bench.daily_transform_cost                                  # this checkout only
    mkdir /tmp/lf-before && git archive <commit> | tar -x -C /tmp/lf-before
    python -m bench.daily_transform_cost --code before=/tmp/lf-before --code after=.

Every version runs with this checkout's ``LAKEFORGE_HOME`` (unless set): the same Spark class
archive and local file system jar (``make spark-cds``), which a bare checkout lacks (without them
a run starts slower and writes through Hadoop's own local file system: the versions would not be
compared on equal terms). Each run records the 1-minute load average before and after it: other
people's jobs on these 2 cores move the timings.

Writes ``bench/results/daily_transform.json``; the previous file's medians are kept under
``previous``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench import scaled_lake
from bench.transform_bench import wait_for_quiet

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MARK = "LAKEFORGE_RESULT "


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def transform(code: Path, lake_uri: str, dates_args: list[str]) -> dict[str, Any]:
    """``spark_jobs.transform_flights`` from the checkout ``code``, in a fresh process."""
    from lakeforge.settings import get_settings

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code / "plugins"), str(code)]),
           "LAKEFORGE_SPARK_MASTER": "local[2]", "LAKEFORGE_HOME": os.environ.get("LAKEFORGE_HOME", str(get_settings().home))}
    load = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "spark_jobs.transform_flights", *dates_args, "--lake", lake_uri],
                          cwd=code, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"transform {dates_args} from {code} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len(MARK):])
    return {"wall_s": wall, "timings": result["timings"], "rows": result["rows"],
            "load1_before": round(load, 2), "load1_after": round(os.getloadavg()[0], 2)}


def measure(label: str, code: Path, cache: Path, start: date, day: date, repeats: int, workdir: Path) -> dict[str, Any]:
    lake_dir = workdir / label
    shutil.rmtree(lake_dir, ignore_errors=True)
    uri = scaled_lake.link_run_lake(cache, lake_dir, start, day)
    history = transform(code, uri, ["--start", str(start), "--end", str(day - timedelta(days=1))])
    log(f"{label}: history {start}..{day - timedelta(days=1)} in {history['wall_s']:.1f}s "
        f"(load {history['load1_before']:.1f} -> {history['load1_after']:.1f})")
    runs = []
    for i in range(repeats):
        quiet = wait_for_quiet(60.0)
        r = transform(code, uri, ["--dates", str(day)])
        r["quiet"] = quiet
        runs.append(r)
        log(f"{label}: one day, run {i + 1}: wall {r['wall_s']:.1f}s, features {r['timings'].get('features_s', 0):.1f}s "
            f"(load {r['load1_before']:.1f} -> {r['load1_after']:.1f})")
    shutil.rmtree(lake_dir, ignore_errors=True)
    median = statistics.median(r["wall_s"] for r in runs)
    return {"code": str(code), "history_wall_s": history["wall_s"],
            "history_load1": [history["load1_before"], history["load1_after"]], "median_wall_s": median,
            "median_features_s": statistics.median(r["timings"]["features_s"] for r in runs),
            "median_total_s": statistics.median(r["timings"]["total_s"] for r in runs), "runs": runs}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=int, default=20)
    p.add_argument("--day", type=date.fromisoformat, default=date(2013, 2, 1))
    p.add_argument("--history-days", type=int, default=31)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--code", action="append", default=[], help="LABEL=DIR of a checkout (repeatable)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lakeforge-daily-bench"))
    p.add_argument("--note", help="what was measured, stored with the results")
    args = p.parse_args(argv)
    versions = [tuple(c.split("=", 1)) for c in args.code] or [("this", str(REPO))]
    start = args.day - timedelta(days=args.history_days)
    cache, _ = scaled_lake.build(args.scale, start, args.day, log=log)
    results = {label: measure(label, Path(code).resolve(), cache, start, args.day, args.repeats, args.workdir)
               for label, code in versions}
    first = results[versions[0][0]]["median_wall_s"]
    out = {"what": "one-day transform_flights run (x%d, %s) on a lake holding the %d days before it; median of %d"
                   % (args.scale, args.day, args.history_days, args.repeats),
           "versions": results,
           "wall_ratio_vs_first": {label: r["median_wall_s"] / first for label, r in results.items()}}
    if args.note:
        out["note"] = args.note
    path = RESULTS / "daily_transform.json"
    if path.exists():  # the earlier medians stay on record beside the new runs
        before = json.loads(path.read_text())
        out["previous"] = {k: before[k] for k in ("what", "note") if k in before}
        out["previous"]["versions"] = {
            label: {k: r[k] for k in ("code", "history_wall_s", "median_wall_s", "median_features_s") if k in r}
            for label, r in before.get("versions", {}).items()}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    for label, r in results.items():
        log(f"{label}: median wall {r['median_wall_s']:.1f}s (features {r['median_features_s']:.1f}s), "
            f"{r['median_wall_s'] / first:.2f}x")
    return out


if __name__ == "__main__":
    main()
