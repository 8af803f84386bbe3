"""Job run reports in the lake: counts, timings and quality verdicts of each run.

``_reports/<job>/<stamp>-<first>-<last>.json`` keeps every run for people and the demo;
``_reports/<job>/runs/<run id>.json`` is the latest report of an Airflow run, which the task's
operator reads back (a job submitted with spark-submit has no other channel to its task).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from lakeforge.lake import Lake


def report_dir(job: str) -> str:
    return f"_reports/{job}"


def run_report_path(job: str, run_id: str) -> str:
    return f"{report_dir(job)}/runs/{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}.json"


def write_report(lake: Lake, job: str, result: dict[str, Any]) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    rel = f"{report_dir(job)}/{stamp}-{result['dates'][0]}-{result['dates'][1]}.json"
    data = json.dumps(result, indent=2).encode()
    lake.write_bytes(rel, data)
    if result.get("run_id"):
        lake.write_bytes(run_report_path(job, result["run_id"]), data)
    return rel


def read_run_report(lake: Lake, job: str, run_id: str) -> dict[str, Any] | None:
    rel = run_report_path(job, run_id)
    return json.loads(lake.read_bytes(rel)) if lake.exists(rel) else None


def latest_report(lake: Lake, job: str) -> dict[str, Any] | None:
    names = sorted(n for n in lake.listdir(report_dir(job)) if n.endswith(".json"))
    return json.loads(lake.read_bytes(f"{report_dir(job)}/{names[-1]}")) if names else None
