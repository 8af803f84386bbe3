"""Per-partition metrics for a suite, computed in ONE pass over a run's data.

Great Expectations on Spark computes each expectation with its own Spark jobs (many passes, and
one validation per partition); here every metric of every partition of the run comes from a
single ``groupBy("ds").agg(...)`` over what the job staged, and the profile (one small row per
partition) is what the expectations check. Metrics that need no data scan (schema, header,
row counts from manifests, quarantine ratios, trailing averages) are filled in from Python.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Mapping, Sequence

from lakeforge.quality.spec import Check, Suite

Profile = dict[str, Any]  # metric name -> value, for one partition


def schema_diff(actual: Mapping[str, str] | Sequence[str], contract: Mapping[str, str] | Sequence[str]) -> str:
    """'ok', or what differs: missing, added (a rename shows as both) and retyped columns."""
    parts = []
    missing = [c for c in contract if c not in actual]
    added = [c for c in actual if c not in contract]
    if missing:
        parts.append("missing " + ", ".join(missing))
    if added:
        parts.append("added " + ", ".join(added))
    if len(missing) == 1 and len(added) == 1:
        parts.append(f"renamed? {missing[0]} -> {added[0]}")
    if isinstance(contract, Mapping) and isinstance(actual, Mapping):
        retyped = [f"{c} {contract[c]}->{actual[c]}" for c in contract if c in actual and actual[c] != contract[c]]
        if retyped:
            parts.append("retyped " + ", ".join(retyped))
    elif not parts and list(actual) != list(contract):
        parts.append("column order differs")
    return "; ".join(parts) or "ok"


def trailing_ratio(rows_by_ds: Mapping[str, int], ds: str, days: int) -> float | None:
    """Rows of ``ds`` over the average of the previous ``days`` dates that have rows (None: no history)."""
    day = date.fromisoformat(ds)
    history = [rows_by_ds[d] for d in ((day - timedelta(days=i)).isoformat() for i in range(1, days + 1))
               if d in rows_by_ds]
    if not history or ds not in rows_by_ds:
        return None
    average = sum(history) / len(history)
    return rows_by_ds[ds] / average if average else None


def _python_metric(check: Check, ds: str, context: Mapping[str, Any]) -> Any:
    """Metrics the job knows without scanning data. ``context`` may hold ``rows_by_ds`` (row
    counts incl. history days) and ``quarantine_ratio`` ({ds: ratio})."""
    if check.kind == "row_count_vs_trailing":
        return trailing_ratio(context.get("rows_by_ds", {}), ds, check.days)
    if check.kind == "quarantine_ratio":
        return context.get("quarantine_ratio", {}).get(ds)
    raise ValueError(f"{check.kind} is not a Python-side metric")


PYTHON_KINDS = ("row_count_vs_trailing", "quarantine_ratio")


def manifest_profiles(suite: Suite, manifests: Mapping[str, dict[str, Any]],
                      history_rows: Mapping[str, int]) -> dict[str, Profile]:
    """Profiles of raw partitions from their manifests alone (header, rows, ragged rows)."""
    rows_by_ds = {**history_rows, **{ds: m["rows"] for ds, m in manifests.items()}}
    profiles: dict[str, Profile] = {}
    for ds, manifest in manifests.items():
        rows = manifest.get("rows", 0)
        profile: Profile = {}
        for check in suite.metrics():
            if check.kind == "header":
                profile[check.metric] = schema_diff(manifest.get("columns", []), check.columns)
            elif check.kind == "row_count":
                profile[check.metric] = rows
            elif check.kind == "ragged_ratio":
                ragged = sum(f.get("ragged_rows", 0) for f in manifest["files"])
                profile[check.metric] = ragged / rows if rows else None
            elif check.kind in PYTHON_KINDS:
                profile[check.metric] = _python_metric(check, ds, {"rows_by_ds": rows_by_ds})
            else:
                raise ValueError(f"{suite.source}: check {check.id}: {check.kind} needs the data, "
                                 "not a manifest")
        profiles[ds] = profile
    return profiles


def _aggregates(check: Check, present: set[str]) -> list:
    """Spark aggregate expressions for one metric (empty if its columns are missing: the schema
    check reports that)."""
    from pyspark.sql import functions as F

    needed = check.columns if check.kind == "unique" else [check.column] if check.column else []
    if any(c not in present for c in needed):
        return []
    rows = F.count(F.lit(1))
    if check.kind == "row_count":
        return [rows.alias(check.metric)]
    if check.kind == "unique":
        return [(rows - F.count_distinct(F.struct(*check.columns))).alias(check.metric)]
    col = F.col(check.column)
    if check.kind == "not_null":
        # count(col) skips nulls and is cheaper than summing a null flag per row
        return [F.try_divide((rows - F.count(col)).cast("double"), rows).alias(check.metric)]
    if check.kind == "in_set":
        outside = F.sum((~col.cast("string").isin(*check.values)).cast("double"))
        return [F.try_divide(outside, F.count(col)).alias(check.metric)]
    number = col.try_cast("double")  # a retyped column yields nulls here, not a failed job
    if check.kind == "between":
        lo, hi = check.range
        outside = F.sum(((number < lo) | (number > hi)).cast("double"))
        return [F.try_divide(outside, F.count(number)).alias(check.metric),
                F.min(number).alias(f"min({check.column})"), F.max(number).alias(f"max({check.column})")]
    if check.kind == "mean":
        return [F.avg(number).alias(check.metric)]
    raise ValueError(f"{check.kind} is not a data metric")


def dataframe_profiles(df, suite: Suite, dates: Sequence[str],
                       context: Mapping[str, Any] | None = None) -> dict[str, Profile]:
    """Profiles of every date in ``dates`` (a date without rows gets row_count 0) from one
    aggregation of ``df`` (which has a ``ds`` column; None when nothing was written) by ``ds``."""
    from pyspark.sql import functions as F

    context = context or {}
    data_columns = {} if df is None else {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name != "ds"}
    aggs = []
    for check in suite.metrics():
        if check.kind not in ("schema", "header") and check.kind not in PYTHON_KINDS:
            aggs += _aggregates(check, set(data_columns))
    by_ds: dict[str, dict[str, Any]] = {}
    if aggs and df is not None:
        grouped = df.groupBy(F.col("ds").cast("string").alias("ds")).agg(*aggs)
        names = [c for c in grouped.columns if c != "ds"]
        for row in grouped.collect():  # one small row per partition
            by_ds[row["ds"]] = {n: row[n] for n in names}
    profiles: dict[str, Profile] = {}
    for ds in dates:
        profile: Profile = dict(by_ds.get(ds, {}))
        for check in suite.metrics():
            if check.kind == "schema":  # df None: nothing written, nothing to compare
                profile[check.metric] = "ok" if df is None else schema_diff(data_columns, check.columns)
            elif check.kind == "row_count":
                profile.setdefault(check.metric, 0)
            elif check.kind in PYTHON_KINDS:
                profile[check.metric] = _python_metric(check, ds, context)
            else:
                profile.setdefault(check.metric, None)
        profiles[ds] = profile
    return profiles
