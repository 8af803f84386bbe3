"""Per-partition metrics for a suite, computed in one aggregation pass over a run's data.

Great Expectations on Spark computes each expectation with its own Spark jobs (many passes, and
one validation per partition); here every row-level metric of every partition of the run comes
from a single ``groupBy("ds").agg(...)`` over what the job staged (uniqueness checks get one
small aggregation each, run concurrently), and the profile (one small row per partition) is what
the expectations check. Metrics that need no data scan (schema, header,
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

    if check.column and check.column not in present:
        return []
    rows = F.count(F.lit(1))
    if check.kind == "row_count":
        return [rows.alias(check.metric)]
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


def _queries(df, suite: Suite, present: set[str]) -> list:
    """The aggregations that compute a suite's data metrics, each grouped by ``ds``: one for
    all row-level metrics, and one per uniqueness check. Uniqueness is counted apart on a 64-bit
    hash of the key (rows - distinct hashes): a distinct-count inside the big aggregation makes
    Spark carry every other aggregate's input through the key shuffle (measured 3.5x slower on
    the year at x20). A real duplicate always shows; a hash collision (p ~ 1e-11 for a day's
    keys) could only report a duplicate that is not there, i.e. fail closed."""
    from pyspark.sql import functions as F

    ds = F.col("ds").cast("string").alias("ds")
    aggs = [a for check in suite.metrics() if check.kind not in ("schema", "header", "unique", *PYTHON_KINDS)
            for a in _aggregates(check, present)]
    queries = [df.groupBy(ds).agg(*aggs)] if aggs else []
    for check in suite.metrics():
        if check.kind == "unique" and all(c in present for c in check.columns):
            per_key = df.groupBy(ds, F.xxhash64(*check.columns).alias("_key")).agg(F.count(F.lit(1)).alias("_n"))
            queries.append(per_key.groupBy("ds").agg(F.sum(F.col("_n") - 1).alias(check.metric)))
    return queries


def dataframe_profiles(df, suite: Suite, dates: Sequence[str],
                       context: Mapping[str, Any] | None = None) -> dict[str, Profile]:
    """Profiles of every date in ``dates`` (a date without rows gets row_count 0) from the
    aggregations of ``df`` (which has a ``ds`` column; None when nothing was written) by ``ds``,
    run concurrently."""
    context = context or {}
    data_columns = {} if df is None else {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name != "ds"}
    by_ds: dict[str, dict[str, Any]] = {}
    if df is not None:
        from concurrent.futures import ThreadPoolExecutor

        queries = _queries(df, suite, set(data_columns))
        with ThreadPoolExecutor(max_workers=max(1, len(queries))) as pool:
            for rows in pool.map(lambda q: q.collect(), queries):  # one small row per partition
                for row in rows:
                    by_ds.setdefault(row["ds"], {}).update({k: v for k, v in row.asDict().items() if k != "ds"})
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
