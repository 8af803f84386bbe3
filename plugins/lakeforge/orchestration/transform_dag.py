"""DAG factory: a data-aware Spark transformation over raw partitions.

Scheduled on ANY of the raw assets it reads (an ``AssetAny``): under ``AssetAll`` a day whose
first input's queue row was consumed by a run that had started before its second input arrived
waited for the next delivery. ``plan_run`` turns a run into the dates ONE ``spark-submit``
processes (one JVM per run, not per day or per stage):

- a manual run with the trigger form's ``start``..``end``: exactly that range;
- any other run (a manual one without a range too): the dates of its triggering asset events
  whose inputs are all present (less those already built from exactly these inputs), PLUS every
  *pending* day (``scan_pending``: inputs all published, an output missing or not built from
  their current content). Airflow hands a run only the events up to its ``run_after``: a run
  deferred by ``max_active_runs=1`` drops the later ones with their queue rows, and days delivered
  while the DAG was paused queue nothing; the scan makes every run catch those up. A day the
  quality gate blocked is not retried until its inputs change.

The planning task records what it chose as the run's note (``run_note`` XCom; the
``lakeforge_run_notes`` plugin copies it onto the Airflow run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import DAG, AssetAny, task

from lakeforge.orchestration.assets import lake_asset, raw_asset
from lakeforge.orchestration.params import RUN_NOTE, day_param, manual_range
from lakeforge.settings import PROJECT_ROOT

log = logging.getLogger(__name__)


Manifests = dict[tuple[str, str], dict[str, Any] | None]  # (table, ds) -> manifest (None: absent)

# A partition folder's modification time is when its manifest (written last) was; inputs whose
# folders are older than the output's by more than this are not re-read (clocks and rename lag).
STALE_SLACK_S = 2.0


def cached_manifest(lake, table: str, ds: str, seen: Manifests | None) -> dict[str, Any] | None:
    """A partition's manifest, read once per planning task (``seen`` keeps what was read: a
    round trip per partition on HDFS)."""
    from lakeforge.publish import read_manifest

    if seen is None:
        return read_manifest(lake, table, f"ds={ds}")
    if (table, ds) not in seen:
        seen[(table, ds)] = read_manifest(lake, table, f"ds={ds}")
    return seen[(table, ds)]


def partition_times(lake, table: str) -> dict[str, float | None]:
    """ds -> modification time of its published partition folder (None where the file system
    reports none, e.g. hdfs-native), from ONE listing of the table (``list_partitions``' set when a
    writer may be between its renames)."""
    import posixpath

    import pyarrow.fs as pafs

    from lakeforge.publish import TRASH, list_partitions

    selector = pafs.FileSelector(lake.path(table), allow_not_found=True)
    try:
        infos = lake.fs.get_file_info(selector)
    except FileNotFoundError:  # created while it was listed
        infos = lake.fs.get_file_info(selector)
    names = {posixpath.basename(i.path.rstrip("/")): i for i in infos}
    times = {n[3:]: (i.mtime.timestamp() if i.mtime else None) for n, i in names.items() if n.startswith("ds=")}
    if TRASH in names:
        times = {p[3:]: times.get(p[3:]) for p in list_partitions(lake, table) if p.startswith("ds=")}
    return times


def _at(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else float("-inf")


def blocked_days(lake, days: Sequence[str], verdict_tables: Sequence[str], inputs: Sequence[str],
                 seen: Manifests | None = None) -> dict[str, str]:
    """ds -> why, for the ``days`` whose latest quality verdict of one of ``verdict_tables``
    failed AFTER their ``inputs`` were last published: the gate judged exactly this content, and
    running it again gives the same verdict. New inputs (a corrected redelivery) retry the day.
    Reads the quality summary once, and only the manifests of days with a failed verdict."""
    from lakeforge.quality.evidence import read_summary

    if not days or not verdict_tables:
        return {}
    tables = read_summary(lake).get("tables", {})
    blocked = {}
    for ds in days:
        failed = [(v.get("validated_at"), f"{t}: " + "; ".join(v.get("why") or ["failed"]))
                  for t in verdict_tables if (v := tables.get(t, {}).get(ds)) and v.get("status") == "failed"]
        if not failed:
            continue
        inputs_at = max(_at((cached_manifest(lake, t, ds, seen) or {}).get("published_at")) for t in inputs)
        if max(_at(at) for at, _ in failed) > inputs_at:
            blocked[ds] = "; ".join(why for _, why in failed)
    return blocked


def built_from(output: dict[str, Any] | None, inputs: dict[str, dict[str, Any] | None]) -> bool:
    """Whether an output partition (its manifest) was built from exactly the current ``inputs``
    (table -> manifest): the raw content hashes its job recorded (``inputs``), or, for an output
    from before jobs recorded them, its publish time after theirs."""
    if output is None or any(m is None for m in inputs.values()):
        return False
    recorded = output.get("inputs")  # table -> {"content_sha256": ...}, as the scoring job records its features
    if isinstance(recorded, dict):
        return all((recorded.get(t) or {}).get("content_sha256") == m.get("content_sha256") for t, m in inputs.items())
    return max(_at(m.get("published_at")) for m in inputs.values()) < _at(output.get("published_at"))


def _current(lake, ds: str, inputs: Sequence[str], output: str, seen: Manifests | None) -> bool:
    return built_from(cached_manifest(lake, output, ds, seen), {t: cached_manifest(lake, t, ds, seen) for t in inputs})


def _scan(lake, inputs: Sequence[str], outputs: Sequence[str], verdict_tables: Sequence[str], stale: bool,
          seen: Manifests | None) -> tuple[list[str], dict[str, str], set[str]]:
    """``scan_pending``'s answer and the days every output has."""
    listed = {t: partition_times(lake, t) for t in dict.fromkeys([*inputs, *outputs])}
    ready = set.intersection(*(set(listed[t]) for t in inputs))
    done = set.intersection(*(set(listed[t]) for t in outputs)) if outputs else set()
    candidates = ready - done
    if stale and outputs:
        first, unknown = outputs[0], False
        for ds in sorted(ready & done):
            times = [listed[t][ds] for t in (*inputs, first)]
            if None in times:
                unknown = True  # no folder times: re-reading every manifest would cost a year's round trips
            elif max(times[:-1]) >= times[-1] - STALE_SLACK_S and not _current(lake, ds, inputs, first, seen):
                candidates.add(ds)
        if unknown:
            log.warning("%s reports no modification times: days redelivered after their transform are found "
                        "only through their ingest events", lake.root_uri)
    blocked = blocked_days(lake, sorted(candidates), verdict_tables, inputs, seen)
    return sorted(candidates - set(blocked)), blocked, done


def scan_pending(lake, inputs: Sequence[str], outputs: Sequence[str], *, verdict_tables: Sequence[str] = (),
                 stale: bool = True, seen: Manifests | None = None) -> tuple[list[str], dict[str, str]]:
    """(pending days, blocked days left out -> why). Pending: every input has the day's
    partition and an output has not, or (``stale``) the first output was not built from the
    inputs' current content (``built_from``: a redelivery since). Cheap on a year: one listing
    per table; manifests are read only for days whose input folders are not clearly older than
    the output's (``STALE_SLACK_S``) and for blocked candidates (``blocked_days``)."""
    pending, blocked, _ = _scan(lake, inputs, outputs, verdict_tables, stale, seen)
    return pending, blocked


@dataclass
class Plan:
    """What a run processes and why: ``dates`` go to the job; the rest explains them."""

    dates: list[str]
    manual: bool = False
    from_events: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # found by the scan, not named by an event
    waiting: list[str] = field(default_factory=list)  # named by an event, an input still missing
    blocked: dict[str, str] = field(default_factory=dict)  # pending, but blocked for this very content
    current: list[str] = field(default_factory=list)  # named by an event, already built from these inputs
    every: str = "day"  # the source's partition step: a monthly source's note counts months

    def note(self, what: str = "transform") -> str:
        """The run's note: which partitions and where they came from, or why there is nothing to
        do, e.g. ``2013-01-03..2013-01-05 (3 days): 2 from events, 1 pending``."""
        from lakeforge.dates import compact_dates

        unit = self.every
        if self.dates:
            n = len(self.dates)
            sources = "manual range" if self.manual else ", ".join(
                f"{len(d)} {label}" for d, label in ((self.from_events, "from events"), (self.pending, "pending")) if d)
            parts = [f"{days_text(self.dates)} ({n} {unit}{'s' if n != 1 else ''}): {sources}"]
        else:
            parts = [f"nothing to {what}: no new {unit} " + ("ready" if self.waiting or self.blocked or self.current
                                                             else "in the events and none pending")]
        if self.current:
            parts.append(f"already transformed from the same inputs: {compact_dates(self.current)}")
        if self.waiting:
            parts.append(f"waiting for all inputs: {compact_dates(self.waiting)}")
        if self.blocked:
            parts.append(f"blocked by the quality gate, inputs unchanged since: {compact_dates(list(self.blocked))}")
        return "; ".join(parts)


def days_text(dates: Sequence[str], limit: int = 120) -> str:
    """Days as ``compact_dates`` writes them, or ``first..last (with gaps)`` when that is long."""
    from lakeforge.dates import compact_dates

    text = compact_dates(list(dates))
    return text if len(text) <= limit else f"{min(dates)}..{max(dates)} (with gaps)"


def event_days(triggering_events: dict[Any, list[Any]] | None) -> list[str]:
    """The days named by asset events: ``extra["ds"]`` (one partition's), ``extra["dates"]`` (a
    job's or an ingest run's) or ``extra["payload"]["dates"]`` (the delivery watcher's)."""
    days: set[str] = set()
    for events in (triggering_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            days.update(extra.get("dates") or [])
            days.update((extra.get("payload") or {}).get("dates") or [])
            if extra.get("ds"):
                days.add(extra["ds"])
    return sorted(days)


def plan_run(
    params: dict[str, Any],
    triggering_events: dict[Any, list[Any]] | None,
    inputs: Sequence[str],
    lake_uri: str | None = None,
    seen: Manifests | None = None,
    outputs: Sequence[str] | None = None,
    verdict_tables: Sequence[str] | None = None,
    every: str = "day",
) -> Plan:
    """The run's ``Plan``: the manual range, else the triggering events' dates whose raw
    partitions exist for every input table plus the pending days (``outputs`` given: the scan;
    ``verdict_tables``: whose failed verdicts hold a day back, default inputs and outputs).
    ``lake_uri``: the source's lake. ``seen``: filled with the manifests read, for
    ``planned_input_bytes``. ``every``: the step between the source's partitions
    (``lakeforge.transform.Transform.every``): ``month`` turns a manual range into the first days
    of the months it touches.

    A manual range with a day whose inputs were never ingested raises ``ValueError`` naming the
    missing partitions, before any Spark starts (retrying cannot help)."""
    from lakeforge.dates import compact_dates
    from lakeforge.lake import Lake

    lake = Lake(lake_uri)
    dates = manual_range(params, every)
    if dates is not None:
        missing = {t: [ds for ds in dates if not cached_manifest(lake, t, ds, seen)] for t in inputs}
        missing = {t: days for t, days in missing.items() if days}
        if missing:
            raise ValueError(
                "not ingested yet, nothing to transform: "
                + "; ".join(f"{t} has no partition for {compact_dates(days)}" for t, days in missing.items())
                + f" (in {lake.root_uri}). Ingest those days first (the ingest DAG), then trigger again."
            )
        return Plan(dates, manual=True, every=every)

    candidates = event_days(triggering_events)
    ready = [ds for ds in candidates if all(cached_manifest(lake, t, ds, seen) for t in inputs)]
    waiting = sorted(set(candidates) - set(ready))
    pending, blocked, current = [], {}, []
    if outputs:
        verdicts = list(verdict_tables) if verdict_tables is not None else [*inputs, *outputs]
        found, blocked, done = _scan(lake, inputs, outputs, verdicts, True, seen)
        # An event for a day a run already transformed from these very inputs (its catch-up, or
        # the other input's run under AssetAny): nothing to do again.
        current = [ds for ds in ready
                   if ds in done and ds not in found and _current(lake, ds, inputs, outputs[0], seen)]
        ready = [ds for ds in ready if ds not in current]
        pending = sorted(set(found) - set(ready))
    if waiting:
        log.warning("waiting for all inputs (%s) of: %s", ", ".join(inputs), ", ".join(waiting))
    if pending:
        log.info("pending (inputs published, output missing or older): %s", compact_dates(pending))
    if blocked:
        log.warning("left out, blocked by the quality gate for the same inputs: %s",
                    "; ".join(f"{ds}: {why}" for ds, why in blocked.items()))
    return Plan(sorted({*ready, *pending}), from_events=ready, pending=pending, waiting=waiting, blocked=blocked,
                current=current, every=every)


def planned_input_bytes(inputs: Sequence[str], dates: Sequence[str], lake_uri: str | None = None,
                        seen: Manifests | None = None) -> int | None:
    """Bytes of the planned dates' raw inputs, read from their manifests, counted only as far as
    the short-run limit (``LAKEFORGE_SPARK_SHORT_RUN_MB``; past it the exact size does not matter
    and a year of manifests is not read). None when short runs are off. ``seen``: manifests
    ``plan_run`` already read. (The day count is the operator's other half: ``partitions``.)"""
    from lakeforge.lake import Lake
    from lakeforge.spark import short_run_limit

    limit = short_run_limit()
    if not limit:
        return None
    lake, total = Lake(lake_uri), 0
    for ds in dates:
        for table in inputs:
            manifest = cached_manifest(lake, table, ds, seen)
            total += manifest["bytes"] if manifest else 0
            if total > limit:
                return total
    return total


def build_spark_transform_dag(
    *,
    dag_id: str,
    source_name: str,
    inputs: Sequence[str],
    outputs: Sequence[tuple[str, str]],
    application: str,
    start_date: datetime,
    doc_md: str,
    application_args: Sequence[str] = (),
    every: str = "day",
) -> DAG:
    """``inputs``: raw table names; ``outputs``: (layer, table) the job publishes;
    ``application_args``: the job's arguments besides ``--dates`` and ``--run-id``; ``every``: the
    step between partitions (``plan_run``)."""
    from lakeforge.orchestration.spark_operators import GatedSparkSubmitOperator
    from lakeforge.sources import get_source
    from lakeforge.spark import spark_conf

    get_source(source_name)  # a declared source whose namespace no other pipeline claims

    with DAG(
        dag_id=dag_id,
        schedule=AssetAny(*(raw_asset(source_name, t) for t in inputs)),  # see the module's doc
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # one writer per table: the job's staging area is per table
        default_args={"owner": "lakeforge", "retries": 2, "retry_delay": timedelta(minutes=2)},
        tags=["lakeforge", "transform", "spark", source_name],
        doc_md=doc_md,
        params={
            "start": day_param("Start date", "Manual reprocessing: first date (inclusive)."),
            "end": day_param("End date", "Manual reprocessing: last date (inclusive)."),
        },
    ) as dag:

        @task(task_id="plan_dates")
        def plan(params=None, triggering_asset_events=None, ti=None) -> list[str]:
            from airflow.sdk.exceptions import AirflowFailException

            from lakeforge.dates import compact_dates
            from lakeforge.lake import source_lake

            tables = [f"raw/{t}" for t in inputs]
            lake_uri = source_lake(source_name).root_uri
            seen: Manifests = {}  # each manifest is read once by the steps below
            try:
                planned = plan_run(params or {}, triggering_asset_events, tables, lake_uri, seen=seen,
                                   outputs=[f"{layer}/{table}" for layer, table in outputs], every=every)
            except ValueError as exc:  # bad trigger parameters or missing inputs: retrying cannot help
                ti.xcom_push(key=RUN_NOTE, value=f"failed at planning: {exc}")
                raise AirflowFailException(str(exc)) from exc
            dates = planned.dates
            ti.xcom_push(key=RUN_NOTE, value=planned.note())
            log.info("run note: %s", planned.note())
            # How much the Spark job will read: a short run gets JVMs that warm up fast.
            ti.xcom_push(key="input_bytes", value=planned_input_bytes(tables, dates, lake_uri, seen=seen))
            # The job's --dates: ranges, so any set of days fits a command line.
            ti.xcom_push(key="dates_arg", value=compact_dates(dates))
            return dates

        @task.short_circuit(task_id="anything_to_do")
        def anything(dates: list[str]) -> bool:
            return bool(dates)

        dates = plan()
        transform = GatedSparkSubmitOperator(
            task_id="spark_transform",
            job=Path(application).stem,  # its run reports: <source>/_reports/<job>/
            source_name=source_name,
            application=str(PROJECT_ROOT / application),
            conn_id="spark_default",
            name=dag_id,
            conf=spark_conf(),
            input_bytes="{{ ti.xcom_pull(task_ids='plan_dates', key='input_bytes') }}",
            partitions="{{ ti.xcom_pull(task_ids='plan_dates') | length }}",
            application_args=[
                *application_args,
                "--dates", "{{ ti.xcom_pull(task_ids='plan_dates', key='dates_arg') }}",
                "--run-id", "{{ run_id }}",
            ],
            outlets=[lake_asset(source_name, layer, table) for layer, table in outputs],
        )
        anything(dates) >> transform
    return dag


GENERIC_APPLICATION = "spark_jobs/transform.py"


def build_pipeline_transform_dag(pipeline: str, *, dag_id: str, start_date: datetime,
                                 doc_md: str | None = None) -> DAG:
    """The transform DAG of any pipeline that declares a ``TRANSFORM`` (``lakeforge.transform``):
    scheduled on its raw assets, planning as ``plan_run`` does, running the generic job
    (``spark_jobs/transform.py --pipeline <pipeline>``) in one Spark application per run."""
    from lakeforge.orchestration.reports_app import dag_links
    from lakeforge.transform import load_transform

    spec = load_transform(pipeline)
    tables = ", ".join(f"`{layer}/{table}`" for layer, table in spec.outputs)
    months = " (the months they touch)" if spec.every == "month" else ""
    doc = doc_md or f"""
### {dag_id}: raw -> clean -> features for `{pipeline}`

Runs when one of `{pipeline}`'s raw tables gets a new partition and processes, in ONE Spark
application (`{GENERIC_APPLICATION} --pipeline {pipeline}`), the event partitions whose inputs are
all in plus every pending one. Publishes {tables} (and `quarantine/<table>`: malformed rows with
their raw line and reason; clean + quarantined = raw, checked per partition).

Quality gates (write-audit-publish): every output is staged and audited by the suites in
`lakeforge/pipelines/{pipeline}/quality/` before it is visible; a partition failing a critical
check is not published (in any table) and the task fails without retries, naming the check.
Manual reprocessing: trigger with `start` and `end` (YYYY-MM-DD){months}.
"""
    return build_spark_transform_dag(
        dag_id=dag_id,
        source_name=pipeline,
        inputs=[t.split("/", 1)[1] for t in spec.raw_tables],
        outputs=spec.outputs,
        application=GENERIC_APPLICATION,
        start_date=start_date,
        doc_md=doc + "\n" + dag_links(pipeline),
        application_args=["--pipeline", pipeline],
        every=spec.every,
    )
