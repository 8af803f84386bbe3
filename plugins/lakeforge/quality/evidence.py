"""Evidence of every validation, kept in the lake next to the data.

``quality/<table>/ds=<date>/`` holds ``validation.json`` (every check: metric, observed value,
expected bounds, severity, success) and ``report.html`` (the same for people), published
atomically with a manifest like any partition. The newest validation of a partition replaces
the previous one (a failed day that was fixed shows the passing evidence; the failure stays in
the Airflow log of its run).

``quality/_summary/current/quality_summary.json`` is the ``quality_summary`` view: per table and
partition the latest status (passed / warned / failed), why, and where the evidence is. Jobs do
not hold it for their run: each update takes its lease briefly (``update_summary``).
``python -m lakeforge.quality.evidence`` prints it.
"""

from __future__ import annotations

import argparse
import html
import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable

from lakeforge.lake import Lake, source_lake
from lakeforge.lease import LeaseHeld, hold
from lakeforge.publish import PartitionFile, partition_name, publish_partition, publish_partitions
from lakeforge.quality.spec import PartitionResult, format_value

QUALITY = "quality"
SUMMARY_TABLE, SUMMARY_PARTITION = f"{QUALITY}/_summary", "current"
SUMMARY_FILE = "quality_summary.json"
SUMMARY_WAIT_S = 120.0  # another job's summary update takes under a second; a dead one's lease expires


def evidence_dir(table: str, ds: str) -> str:
    return f"{QUALITY}/{table}/{partition_name(ds)}"


def evidence_record(result: PartitionResult, run_id: str | None, validated_at: str) -> dict[str, Any]:
    return {
        "table": result.table,
        "ds": result.ds,
        "suite": result.suite,
        "status": result.status,
        "run_id": run_id,
        "validated_at": validated_at,
        "failed": result.reasons(result.failed),
        "warnings": result.reasons(result.warnings),
        "checks": [r.as_dict() for r in result.results],
        "metrics": {k: _jsonable(v) for k, v in result.metrics.items()},
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.passed{background:#e6f4ea}.warned{background:#fef7e0}.failed{background:#fce8e6}
.badge{padding:2px 8px;border-radius:4px;font-weight:bold}code{font-size:90%}"""


def render_html(record: dict[str, Any]) -> str:
    esc = html.escape
    rows = []
    for c in record["checks"]:
        state = "passed" if c["success"] else ("failed" if c["severity"] == "critical" else "warned")
        rows.append(
            f"<tr class='{state}'><td>{esc(c['id'])}</td><td>{esc(c['severity'])}</td>"
            f"<td>{esc(str(c['column'] or ''))}</td><td><code>{esc(c['metric'])}</code></td>"
            f"<td>{esc(format_value(c['observed']))}</td><td>{esc(c['expected'])}</td>"
            f"<td>{state}</td><td>{esc(c['description'])}</td></tr>")
    reasons = "".join(f"<li>{esc(r)}</li>" for r in record["failed"] + record["warnings"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Quality: {esc(record['table'])} ds={esc(record['ds'])} ({esc(record['status'])})</title>
<style>{_STYLE}</style></head><body>
<h1>{esc(record['table'])} <small>ds={esc(record['ds'])}</small>
 <span class="badge {esc(record['status'])}">{esc(record['status'])}</span></h1>
<p>Suite <code>{esc(record['suite'])}</code>, run <code>{esc(str(record['run_id']))}</code>,
 validated {esc(record['validated_at'])}. Critical checks block publishing; warnings are recorded.</p>
{f'<h2>Why</h2><ul>{reasons}</ul>' if reasons else ''}
<h2>Checks</h2>
<table><tr><th>check</th><th>severity</th><th>column</th><th>metric</th><th>observed</th>
<th>expected</th><th>result</th><th>what it means</th></tr>
{''.join(rows)}
</table></body></html>
"""


def write_evidence(lake: Lake, results: Iterable[PartitionResult], run_id: str | None) -> dict[str, dict]:
    """Publish each partition's evidence and fold it into the summary; returns the records by
    ``table/ds``. A year's range run writes thousands of these small partitions: each table's
    are published together (``publish_partitions``: folders listed once, files written by a
    thread pool)."""
    validated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    by_table: dict[str, dict[str, dict]] = {}
    for result in results:
        record = evidence_record(result, run_id, validated_at)
        record["evidence"] = lake.uri(evidence_dir(result.table, result.ds), "report.html")
        by_table.setdefault(result.table, {})[partition_name(result.ds)] = record
    for table, records in by_table.items():
        # Without indent: json's C encoder (indented, the pure-Python one took ~0.7 s of a year's
        # 1,820 partitions at x1); report.html is the readable view.
        publish_partitions(
            lake, f"{QUALITY}/{table}",
            {partition: [PartitionFile("validation.json", json.dumps(r).encode()),
                         PartitionFile("report.html", render_html(r).encode())]
             for partition, r in records.items()},
            meta={partition: {"status": r["status"], "run_id": run_id} for partition, r in records.items()},
        )
    records = {f"{r['table']}/{r['ds']}": r for per_table in by_table.values() for r in per_table.values()}
    if records:
        update_summary(lake, records.values())
    return records


def summary_uri(lake: Lake) -> str:
    return lake.uri(SUMMARY_TABLE, SUMMARY_PARTITION, SUMMARY_FILE)


def read_summary(lake: Lake) -> dict[str, Any]:
    rel = f"{SUMMARY_TABLE}/{SUMMARY_PARTITION}/{SUMMARY_FILE}"
    if not lake.exists(rel):
        return {"tables": {}}
    return json.loads(lake.read_bytes(rel))


def update_summary(lake: Lake, records: Iterable[dict[str, Any]], wait_s: float = SUMMARY_WAIT_S) -> dict[str, Any]:
    """Fold new verdicts into the summary: read, merge and publish under the summary's own lease,
    held for well under a second. The transform and the scoring job both write it and may run at
    once, so a writer that finds the lease held waits for it (up to ``wait_s``) instead of failing
    its whole run over a shared index."""
    records = list(records)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with hold(lake, SUMMARY_TABLE):
                summary = read_summary(lake)
                for r in records:
                    summary["tables"].setdefault(r["table"], {})[r["ds"]] = {
                        "status": r["status"], "why": r["failed"] + r["warnings"], "run_id": r["run_id"],
                        "validated_at": r["validated_at"], "evidence": r["evidence"],
                    }
                summary["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                publish_partition(lake, SUMMARY_TABLE, SUMMARY_PARTITION,
                                  [PartitionFile(SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True).encode())])
                return summary
        except LeaseHeld:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


def format_summary(summary: dict[str, Any], start: str | None = None, end: str | None = None) -> str:
    """The quality_summary view as text: counts per table, then every failed or warned partition."""
    lines = [f"{'table':18} {'passed':>7} {'warned':>7} {'failed':>7}"]
    notes = []
    for table, parts in sorted(summary["tables"].items()):
        chosen = {ds: p for ds, p in parts.items() if (not start or ds >= start) and (not end or ds <= end)}
        counts = {s: sum(p["status"] == s for p in chosen.values()) for s in ("passed", "warned", "failed")}
        lines.append(f"{table:18} {counts['passed']:>7} {counts['warned']:>7} {counts['failed']:>7}")
        for ds, p in sorted(chosen.items()):
            if p["status"] != "passed":
                notes.append(f"  {p['status']:6} {table} ds={ds}: " + "; ".join(p["why"]))
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the quality_summary view of the lake.")
    parser.add_argument("--source", help="the source whose lake namespace to read (default: every pipeline's)")
    parser.add_argument("--lake", help="lake root URI (default: LAKEFORGE_LAKE_ROOT)")
    parser.add_argument("--start")
    parser.add_argument("--end")
    args = parser.parse_args(argv)
    from lakeforge.sources import pipeline_folders

    sources = [args.source] if args.source else sorted(pipeline_folders())
    for name in sources:
        if len(sources) > 1:
            print(f"== {name} ==")
        print(format_summary(read_summary(source_lake(name, args.lake)), args.start, args.end))


if __name__ == "__main__":
    main()
