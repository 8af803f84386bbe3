"""Evaluation as outcomes arrive: predictions joined to the outcomes in ``features/flights``.

Per day and model version: ROC AUC, PR AUC, log loss, Brier, expected calibration error, mean
prediction and share of positive decisions vs the observed positive rate, rows scored and rows
evaluated. Same definitions as the training holdout (``lakeforge.training.evaluate``): Spark
aggregates the probabilities into its ``BINS`` histogram per (day, version) in ONE grouped
aggregation (plus the log-loss and squared-error sums), the driver finishes each group with
``metrics_from_histogram``. Flights without a tail number are left out, as in training (in 2013
they are all cancelled: "no aircraft" is the label in disguise); they still count as scored.

The histogram is kept in the performance table (sparse: only bins with rows), so a trailing window's
pooled metrics (``pooled``, used by the retraining policy) are exact, not an average of daily AUCs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Sequence

from lakeforge.lake import Lake
from lakeforge.monitoring import store
from lakeforge.publish import PartitionFile
from lakeforge.training.evaluate import BINS, EPS, metrics_from_histogram, reliability

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "positive_rate",
           "mean_prediction", "decision_rate")
KEYS = ("ds", "model_name", "model_version", "model_run_id")
FILE = "performance.parquet"
PLOT_DAYS = 180  # the plot's span: half a year of days reads in a second, a decade would not


def _schema():
    import pyarrow as pa

    hist = pa.list_(pa.struct([("bin", pa.int32()), ("rows", pa.int64()), ("positives", pa.int64()),
                               ("sum_p", pa.float64())]))
    return pa.schema([*[(k, pa.string()) for k in KEYS],
                      ("rows_scored", pa.int64()), ("rows_evaluated", pa.int64()), ("positives", pa.int64()),
                      ("predicted_positives", pa.int64()), *[(m, pa.float64()) for m in METRICS],
                      ("log_loss_sum", pa.float64()), ("brier_sum", pa.float64()), ("histogram", hist),
                      ("evaluated_at", pa.string())])


def outcomes(features: "DataFrame") -> "DataFrame":
    """(flight_key, ds, label) of the flights that count: a tail number and a known label."""
    from pyspark.sql import functions as F

    return (features.where(F.col("tailnum").isNotNull() & F.col("label").isNotNull())
            .select("flight_key", F.col("ds").cast("string").alias("ds"), F.col("label").cast("double").alias("y")))


def evaluate_days(predictions: "DataFrame", features: "DataFrame", days: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per (day, model version) of ``predictions`` (restricted to ``days`` if given),
    sorted by day and version. Metrics are None where undefined (no evaluated row; AUCs of a
    day with one class)."""
    from pyspark.sql import functions as F

    preds = predictions.select("flight_key", F.col("ds").cast("string").alias("ds"), "probability", "decision",
                               "model_name", F.col("model_version").cast("string").alias("model_version"),
                               "model_run_id")
    out = outcomes(features)
    if days is not None:
        preds = preds.where(F.col("ds").isin(list(days)))
        out = out.where(F.col("ds").isin(list(days)))
    p = F.col("probability")
    pc = F.least(F.greatest(p, F.lit(EPS)), F.lit(1 - EPS))
    y = F.col("y")  # null: no outcome counted for this prediction
    binned = preds.join(out, ["flight_key", "ds"], "left").select(
        *KEYS, F.least(F.floor(p * BINS), F.lit(BINS - 1)).cast("int").alias("bin"), y,
        F.when(y.isNotNull(), p).alias("pe"),
        F.when(y.isNotNull() & F.col("decision"), 1).alias("de"),
        (-(y * F.log(pc) + (1 - y) * F.log(1 - pc))).alias("ll"),
        ((p - y) ** 2).alias("sq"))
    rows = binned.groupBy(*KEYS, "bin").agg(
        F.count("*").alias("scored"), F.count("y").alias("n"), F.sum("y").alias("pos"), F.sum("pe").alias("sp"),
        F.count("de").alias("dec"), F.sum("ll").alias("ll"), F.sum("sq").alias("sq")).collect()
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in KEYS)].append(r)
    evaluated_at = store.now_iso()
    return [_record(dict(zip(KEYS, key)), group, evaluated_at) for key, group in sorted(groups.items())]


def _record(keys: dict[str, Any], group: list, evaluated_at: str) -> dict[str, Any]:
    hist = sorted((r["bin"], r["n"], int(r["pos"] or 0), float(r["sp"] or 0.0))
                  for r in group if r["n"] and r["bin"] is not None)
    rec = {**keys, "rows_scored": sum(r["scored"] for r in group), "rows_evaluated": sum(r["n"] for r in group),
           "positives": sum(h[2] for h in hist), "predicted_positives": sum(r["dec"] for r in group),
           "log_loss_sum": sum(r["ll"] or 0.0 for r in group), "brier_sum": sum(r["sq"] or 0.0 for r in group),
           "histogram": [{"bin": b, "rows": n, "positives": pos, "sum_p": sp} for b, n, pos, sp in hist],
           "evaluated_at": evaluated_at}
    rec.update(metrics_of(rec))
    return rec


def metrics_of(rec: dict[str, Any]) -> dict[str, float | None]:
    """The metrics of a record (or of pooled records: ``pooled``) from its histogram and sums."""
    n = rec["rows_evaluated"]
    if not n:
        return dict.fromkeys(METRICS)
    hist = [(h["bin"], h["rows"], h["positives"], h["sum_p"]) for h in rec["histogram"]]
    if 0 < rec["positives"] < n:
        m: dict[str, float | None] = dict(metrics_from_histogram(hist))
    else:  # one class: no ROC / PR curve, the rest is still defined
        m = {"roc_auc": None, "pr_auc": None, "positive_rate": rec["positives"] / n,
             "mean_prediction": sum(h[3] for h in hist) / n,
             "calibration_error": sum(rows / n * abs(mp - rate) for mp, rate, rows in reliability(hist))}
    m.update(log_loss=rec["log_loss_sum"] / n, brier=rec["brier_sum"] / n, decision_rate=rec["predicted_positives"] / n)
    return m


def pooled(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Metrics of several days together, exactly (histograms and sums added, not averages)."""
    bins: dict[int, list] = {}
    for rec in records:
        for h in rec["histogram"]:
            acc = bins.setdefault(h["bin"], [0, 0, 0.0])
            acc[0] += h["rows"]
            acc[1] += h["positives"]
            acc[2] += h["sum_p"]
    total = {k: sum(r[k] for r in records) for k in
             ("rows_evaluated", "positives", "predicted_positives", "log_loss_sum", "brier_sum")}
    total["histogram"] = [{"bin": b, "rows": a[0], "positives": a[1], "sum_p": a[2]} for b, a in sorted(bins.items())]
    return metrics_of(total)


# -- the table -------------------------------------------------------------------------------------
def write_performance(lake: Lake, records: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, str]:
    """``monitoring/performance/ds=...``: one partition per day (all its versions' rows), each
    published whole; returns the lake URI per day."""
    schema = _schema()
    by_day: dict[str, list] = defaultdict(list)
    for rec in records:
        by_day[rec["ds"]].append({k: rec.get(k) for k in schema.names})
    store.publish_days(lake, store.PERFORMANCE, {
        ds: [PartitionFile(FILE, store.parquet_bytes(rows, schema), {"rows": len(rows)})] for ds, rows in by_day.items()},
        meta)
    return {ds: lake.uri(store.PERFORMANCE, f"ds={ds}") for ds in by_day}


def read_performance(lake: Lake, days: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Records of the published days (all, or ``days``), oldest first."""
    wanted = store.published_days(lake, store.PERFORMANCE)
    if days is not None:
        wanted = [d for d in wanted if d in set(days)]
    out = []
    for ds in wanted:
        data = store.read_day_file(lake, store.PERFORMANCE, ds, FILE)
        if data is not None:
            out.extend(store.read_parquet_rows(data))
    return sorted(out, key=lambda r: (r["ds"], int(r["model_version"])))


# -- MLflow ----------------------------------------------------------------------------------------
def log_performance(lake: Lake, records: Sequence[dict[str, Any]], metric: str | None = None,
                    drift_reports: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Log the records' metrics on each version's monitoring run (stepped by day), then the plot of
    every published day (with the versions' holdout values) on the newest version's run. Returns
    the run id per version. ``drift_reports``: the same days' drift reports, whose metrics and tag
    (``drift.log_drift``'s) go in the same batch: one ``log_batch`` per version and 1,000 metrics."""
    from lakeforge.monitoring import drift
    from lakeforge.settings import get_settings

    if not records:
        return {}
    s = get_settings()
    metric = metric or s.promotion_metric
    client = store.mlflow_client()
    exp_id = store.monitoring_experiment(client)
    runs: dict[str, str] = {}
    by_version: dict[tuple[str, str], dict] = defaultdict(lambda: defaultdict(dict))
    tags: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for rec in records:
        by_version[(rec["model_name"], rec["model_version"])][rec["ds"]].update({
            **{m: rec[m] for m in METRICS}, "rows_scored": rec["rows_scored"], "rows_evaluated": rec["rows_evaluated"]})
    for key, by_day in by_version.items():
        tags[key]["lakeforge.monitoring.last_evaluated_day"] = max(by_day)
    for key, by_day in drift.drift_metrics(drift_reports or {}).items():
        for ds, values in by_day.items():
            by_version[key][ds].update(values)
        tags[key].update(drift.drift_tags(by_day, lake))
    for (name, version), by_day in by_version.items():
        runs[version] = run_id = store.monitoring_run(client, exp_id, name, version)
        store.log_day_metrics(client, run_id, by_day, tags[(name, version)])
    newest = max(records, key=lambda r: (r["ds"], int(r["model_version"])))
    history = read_performance(lake, store.published_days(lake, store.PERFORMANCE)[-PLOT_DAYS:]) or list(records)
    holdout = {}
    for v in store.distinct(r["model_version"] for r in history):
        try:
            holdout[v] = store.holdout_metrics(client, newest["model_name"], v).get(metric)
        except Exception as exc:  # a deleted version: its line is left out, the plot still helps
            log.warning("holdout metrics of %s v%s unreadable: %s", newest["model_name"], v, exc)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_performance(history, holdout, os.path.join(tmp, "performance.png"), metric,
                                s.retrain_window_days, s.retrain_max_drop)
        client.log_artifact(runs[newest["model_version"]], path, "plots")
    return runs


def plot_performance(records: Sequence[dict[str, Any]], holdout: dict[str, float | None], path: str,
                     metric: str = "roc_auc", window_days: int = 7, max_drop: float | None = None) -> str:
    """``metric`` and the calibration error per day, the trailing pooled ``metric`` the policy
    compares, the holdout value of the version that scored each day as a dashed reference (and the
    retraining threshold under it), a vertical line where the version changed."""
    from lakeforge.training.promotion import HIGHER_IS_BETTER
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import date

    rows = sorted(records, key=lambda r: r["ds"])
    days = [date.fromisoformat(r["ds"]) for r in rows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    ax.plot(days, [r[metric] for r in rows], marker=".", alpha=0.6, label=f"{metric}, per day")
    if all(r.get("histogram") is not None for r in rows):  # what the retraining policy compares
        trailing = [pooled([q for q in rows[:i + 1] if q["model_version"] == r["model_version"]][-window_days:])[metric]
                    for i, r in enumerate(rows)]
        ax.plot(days, trailing, color="black", label=f"{metric}, pooled over the last {window_days} days")
    ax2.plot(days, [r["calibration_error"] for r in rows], marker=".", color="tab:orange", label="calibration error")
    seen = set()
    for i, r in enumerate(rows):
        v = r["model_version"]
        if v in seen:
            continue
        seen.add(v)
        span = [d for d, q in zip(days, rows) if q["model_version"] == v]
        if holdout.get(v) is not None:
            ax.hlines(holdout[v], span[0], span[-1], colors="tab:green", linestyles="--",
                      label="holdout of the version" if len(seen) == 1 else None)
            if max_drop is not None:
                sign = -1 if HIGHER_IS_BETTER.get(metric, True) else 1
                ax.hlines(holdout[v] + sign * max_drop, span[0], span[-1], colors="tab:red", linestyles=":",
                          label="retraining threshold" if len(seen) == 1 else None)
        if i:
            for a in (ax, ax2):
                a.axvline(days[i], color="grey", linestyle=":")
        ax.annotate(f"v{v}", (days[i], 1), xycoords=("data", "axes fraction"), va="top", fontsize=8)
    ax.set(ylabel=metric, title=f"{rows[0]['model_name']}: {metric} as outcomes arrive")
    ax2.set(ylabel="ECE")
    ax.legend(loc="lower left", fontsize=8)
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
