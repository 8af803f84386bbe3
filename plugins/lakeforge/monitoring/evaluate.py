"""Evaluation as outcomes arrive: a pipeline's predictions joined to the outcomes in its features table.

A model is judged on the days it scores with the definitions its training holdout used, so the
retraining policy compares like with like. The outcome is the spec's ``label`` in the features
table (null: not known yet); the rows evaluated are those its ``row_filter`` keeps with a label,
joined on its ``key`` and ``ds``; every prediction counts as scored. Per (day, model version),
with the task's metrics (``ModelSpec.kind``):

- binary: ROC AUC, PR AUC, log loss, Brier, expected calibration error, mean prediction and share
  of positive decisions vs the observed positive rate. Spark aggregates the probabilities into
  ``BINS`` histogram bins (plus the log-loss and squared-error sums), the driver finishes each
  group with ``metrics_from_arrays`` (``lakeforge.training.evaluate``);
- multiclass: accuracy, weighted F1, log loss from the confusion cells (label, predicted class,
  rows, log-loss sum), finished by ``task_metrics.multiclass_metrics``;
- regression: RMSE, MAE, R² (and the mean prediction vs the mean outcome) from the sums
  (n, squared and absolute errors, y, y²), finished by ``task_metrics.regression_metrics``.

Each task is ONE grouped Spark aggregation over all days and versions (no row leaves the
executors). What the metrics are made of (histogram, cells, sums) is kept in the performance
table, so a trailing window's pooled metrics (``pooled``, used by the retraining policy) are
exact, not an average of daily values.
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
from lakeforge.training.evaluate import BINS, EPS, histogram_arrays, metrics_from_arrays, reliability

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from lakeforge.training.spec import ModelSpec

log = logging.getLogger(__name__)

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "positive_rate",
           "mean_prediction", "decision_rate")  # binary
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": METRICS,
    "multiclass": ("accuracy", "f1", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mean_prediction", "mean_label"),
}
REGRESSION_SUMS = ("sse", "sae", "sy", "syy", "sum_prediction")
KEYS = ("ds", "model_name", "model_version", "model_run_id")
FILE = "performance.parquet"
PLOT_DAYS = 180  # the plot's span: half a year of days reads in a second, a decade would not


def schema(task: str):
    """The performance table's Arrow schema for a task (the binary one as it has always been)."""
    import pyarrow as pa

    head = [*[(k, pa.string()) for k in KEYS], ("rows_scored", pa.int64()), ("rows_evaluated", pa.int64())]
    if task == "binary":
        hist = pa.list_(pa.struct([("bin", pa.int32()), ("rows", pa.int64()), ("positives", pa.int64()),
                                   ("sum_p", pa.float64())]))
        body = [("positives", pa.int64()), ("predicted_positives", pa.int64()), *[(m, pa.float64()) for m in METRICS],
                ("log_loss_sum", pa.float64()), ("brier_sum", pa.float64()), ("histogram", hist)]
    elif task == "multiclass":
        cells = pa.list_(pa.struct([("label", pa.int32()), ("predicted", pa.int32()), ("rows", pa.int64()),
                                    ("log_loss_sum", pa.float64())]))
        body = [*[(m, pa.float64()) for m in TASK_METRICS[task]], ("confusion", cells)]
    elif task == "regression":
        body = [(m, pa.float64()) for m in (*TASK_METRICS[task], *REGRESSION_SUMS)]
    else:
        raise ValueError(f"unknown task {task!r}")
    return pa.schema([*head, *body, ("evaluated_at", pa.string())])


def task_of(rec: dict[str, Any]) -> str:
    """The task a record was evaluated for, from what its metrics are made of."""
    return "multiclass" if "confusion" in rec else "regression" if "sse" in rec else "binary"


def outcomes(features: "DataFrame", spec: "ModelSpec") -> "DataFrame":
    """(key..., ds, y) of the rows that count: the spec's ``row_filter`` and a known label
    (binary and regression: y a double; multiclass: the class index)."""
    from pyspark.sql import functions as F

    rows = features.where(F.expr(spec.row_filter)) if spec.row_filter else features
    y = F.col(spec.label).cast("int" if spec.task == "multiclass" else "double")
    return rows.where(F.col(spec.label).isNotNull()).select(*spec.key, F.col("ds").cast("string").alias("ds"),
                                                            y.alias("y"))


def evaluate_days(spec: "ModelSpec", predictions: "DataFrame", features: "DataFrame",
                  days: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per (day, model version) of ``predictions`` (restricted to ``days`` if given),
    sorted by day and version. Metrics are None where undefined (no evaluated row; AUCs of a
    day with one class)."""
    from pyspark.sql import functions as F

    if not spec.key:
        raise ValueError(f"{spec.source}: a spec without a key cannot join predictions to outcomes")
    preds = predictions.select(*spec.key, F.col("ds").cast("string").alias("ds"), *spec.outputs, "model_name",
                               F.col("model_version").cast("string").alias("model_version"), "model_run_id")
    out = outcomes(features, spec)
    if days is not None:
        preds = preds.where(F.col("ds").isin(list(days)))
        out = out.where(F.col("ds").isin(list(days)))
    joined = preds.join(out, [*spec.key, "ds"], how="left")  # y null: no outcome counted for this prediction
    aggregate = {"binary": _binary_groups, "multiclass": _multiclass_groups, "regression": _regression_groups}
    groups: dict[tuple, list] = defaultdict(list)
    for r in aggregate[spec.task](joined).collect():
        groups[tuple(r[k] for k in KEYS)].append(r)
    evaluated_at = store.now_iso()
    record = {"binary": _binary_record, "multiclass": _multiclass_record, "regression": _regression_record}[spec.task]
    return [record(dict(zip(KEYS, key)), group, evaluated_at) for key, group in sorted(groups.items())]


def _binary_groups(joined: "DataFrame") -> "DataFrame":
    """Per (keys, probability bin): scored, evaluated, positives, sum of p, decisions, log-loss and
    squared-error sums."""
    from pyspark.sql import functions as F

    p = F.col("probability")
    pc = F.least(F.greatest(p, F.lit(EPS)), F.lit(1 - EPS))
    y = F.col("y")
    binned = joined.select(
        *KEYS, F.least(F.floor(p * BINS), F.lit(BINS - 1)).cast("int").alias("bin"), y,
        F.when(y.isNotNull(), p).alias("pe"),
        F.when(y.isNotNull() & F.col("decision"), 1).alias("de"),
        (-(y * F.log(pc) + (1 - y) * F.log(1 - pc))).alias("ll"),
        ((p - y) ** 2).alias("sq"))
    return binned.groupBy(*KEYS, "bin").agg(
        F.count("*").alias("scored"), F.count("y").alias("n"), F.sum("y").alias("pos"), F.sum("pe").alias("sp"),
        F.count("de").alias("dec"), F.sum("ll").alias("ll"), F.sum("sq").alias("sq"))


def _binary_record(keys: dict[str, Any], group: list, evaluated_at: str) -> dict[str, Any]:
    hist = sorted((r["bin"], r["n"], int(r["pos"] or 0), float(r["sp"] or 0.0))
                  for r in group if r["n"] and r["bin"] is not None)
    rec = {**keys, "rows_scored": sum(r["scored"] for r in group), "rows_evaluated": sum(r["n"] for r in group),
           "positives": sum(h[2] for h in hist), "predicted_positives": sum(r["dec"] for r in group),
           "log_loss_sum": sum(r["ll"] or 0.0 for r in group), "brier_sum": sum(r["sq"] or 0.0 for r in group),
           "histogram": [{"bin": b, "rows": n, "positives": pos, "sum_p": sp} for b, n, pos, sp in hist],
           "evaluated_at": evaluated_at}
    rec.update(metrics_of(rec))
    return rec


def _multiclass_groups(joined: "DataFrame") -> "DataFrame":
    """Per (keys, label, predicted class): rows and the sum of -log p(label) (clipped as in training;
    label null: scored, not evaluated)."""
    from pyspark.sql import functions as F

    y = F.col("y")
    # try_: a class the model never saw in training has no probability (null: clipped to EPS below).
    p_true = F.try_element_at(F.col("probabilities"), y + 1)
    ll = -F.log(F.least(F.greatest(p_true, F.lit(EPS)), F.lit(1 - EPS)))
    return (joined.select(*KEYS, y, F.col("prediction").cast("int").alias("pred"), ll.alias("ll"))
            .groupBy(*KEYS, "y", "pred").agg(F.count("*").alias("scored"), F.sum("ll").alias("ll")))


def _multiclass_record(keys: dict[str, Any], group: list, evaluated_at: str) -> dict[str, Any]:
    cells = sorted((r["y"], r["pred"], r["scored"], float(r["ll"] or 0.0)) for r in group if r["y"] is not None)
    rec = {**keys, "rows_scored": sum(r["scored"] for r in group), "rows_evaluated": sum(c[2] for c in cells),
           "confusion": [{"label": y, "predicted": p, "rows": n, "log_loss_sum": ll} for y, p, n, ll in cells],
           "evaluated_at": evaluated_at}
    rec.update(metrics_of(rec))
    return rec


def _regression_groups(joined: "DataFrame") -> "DataFrame":
    """Per keys: scored, evaluated, and the sums of squared and absolute errors, y, y², predictions."""
    from pyspark.sql import functions as F

    y, pred = F.col("y"), F.col("prediction").cast("double")
    err = pred - y
    return joined.groupBy(*KEYS).agg(
        F.count("*").alias("scored"), F.count("y").alias("n"), F.sum(err * err).alias("sse"),
        F.sum(F.abs(err)).alias("sae"), F.sum(y).alias("sy"), F.sum(y * y).alias("syy"),
        F.sum(F.when(y.isNotNull(), pred)).alias("sum_prediction"))


def _regression_record(keys: dict[str, Any], group: list, evaluated_at: str) -> dict[str, Any]:
    (r,) = group
    rec = {**keys, "rows_scored": r["scored"], "rows_evaluated": r["n"],
           **{k: float(r[k] or 0.0) for k in REGRESSION_SUMS}, "evaluated_at": evaluated_at}
    rec.update(metrics_of(rec))
    return rec


def metrics_of(rec: dict[str, Any]) -> dict[str, float | None]:
    """The metrics of a record (or of pooled records: ``pooled``) from what they are made of."""
    from lakeforge.training.task_metrics import multiclass_metrics, regression_metrics

    task = task_of(rec)
    n = rec["rows_evaluated"]
    if not n:
        return dict.fromkeys(TASK_METRICS[task])
    if task == "multiclass":
        cells = [(c["label"], c["predicted"], c["rows"], c["log_loss_sum"]) for c in rec["confusion"]]
        return {m: v for m, v in multiclass_metrics(cells).items() if m in TASK_METRICS[task]}
    if task == "regression":
        m = regression_metrics({"n": float(n), **{k: rec[k] for k in ("sse", "sae", "sy", "syy")}})
        return {"rmse": m["rmse"], "mae": m["mae"], "r2": m["r2"], "mean_prediction": rec["sum_prediction"] / n,
                "mean_label": rec["sy"] / n}
    return _binary_metrics(rec, histogram_arrays([(h["bin"], h["rows"], h["positives"], h["sum_p"])
                                                  for h in rec["histogram"]]))


def _binary_metrics(sums: dict[str, Any], hist: tuple) -> dict[str, float | None]:
    """A binary record's metrics (``rows_evaluated`` > 0) from its ``BINARY_SUMS`` and its
    histogram as arrays (``histogram_arrays``): a day's record or pooled days (``pooled_binary``)."""
    n = sums["rows_evaluated"]
    if 0 < sums["positives"] < n:
        m: dict[str, float | None] = dict(metrics_from_arrays(*hist))
    else:  # one class: no ROC / PR curve, the rest is still defined
        entries = list(zip(*(a.tolist() for a in hist)))
        m = {"roc_auc": None, "pr_auc": None, "positive_rate": sums["positives"] / n,
             "mean_prediction": sum(h[3] for h in entries) / n,
             "calibration_error": sum(rows / n * abs(mp - rate) for mp, rate, rows in reliability(entries))}
    m.update(log_loss=sums["log_loss_sum"] / n, brier=sums["brier_sum"] / n,
             decision_rate=sums["predicted_positives"] / n)
    return m


def pooled(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Metrics of several days together, exactly (histograms, confusion cells and sums added, not
    averages). The records are of one task."""
    tasks = {task_of(r) for r in records}
    if len(tasks) > 1:
        raise ValueError(f"cannot pool records of different tasks: {sorted(tasks)}")
    task = tasks.pop() if tasks else "binary"
    total: dict[str, Any] = {"rows_evaluated": sum(r["rows_evaluated"] for r in records)}
    if task == "regression":
        total.update({k: sum(r[k] for r in records) for k in REGRESSION_SUMS})
        return metrics_of(total)
    if task == "multiclass":
        cells: dict[tuple[int, int], list] = {}
        for rec in records:
            for c in rec["confusion"]:
                acc = cells.setdefault((c["label"], c["predicted"]), [0, 0.0])
                acc[0] += c["rows"]
                acc[1] += c["log_loss_sum"]
        total["confusion"] = [{"label": y, "predicted": p, "rows": a[0], "log_loss_sum": a[1]}
                              for (y, p), a in sorted(cells.items())]
        return metrics_of(total)
    return pooled_binary([binary_parts(r) for r in records])


BINARY_SUMS = ("rows_evaluated", "positives", "predicted_positives", "log_loss_sum", "brier_sum")


def binary_parts(rec: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
    """What a binary record's pooled metrics are made of: its sums and its histogram as arrays
    (``histogram_arrays``): converted once when a plot pools each day into several windows."""
    return ({k: rec[k] for k in BINARY_SUMS},
            histogram_arrays([(h["bin"], h["rows"], h["positives"], h["sum_p"]) for h in rec["histogram"]]))


def pooled_binary(parts: Sequence[tuple[dict[str, Any], tuple]]) -> dict[str, float | None]:
    """``pooled`` of binary records given as ``binary_parts``: the histograms added bin by bin in
    the records' order (the same floats as adding them one entry at a time), then the metrics of
    one record (``_binary_metrics``)."""
    import numpy as np

    total = {k: sum(p[0][k] for p in parts) for k in BINARY_SUMS}
    n = total["rows_evaluated"]
    if not n:
        return dict.fromkeys(TASK_METRICS["binary"])
    bins, rows, positives, sum_p = (np.concatenate([p[1][i] for p in parts]) for i in range(4))
    present = np.flatnonzero(np.bincount(bins, minlength=BINS))
    hist = (present, np.bincount(bins, weights=rows, minlength=BINS)[present].astype(np.int64),
            np.bincount(bins, weights=positives, minlength=BINS)[present].astype(np.int64),
            np.bincount(bins, weights=sum_p, minlength=BINS)[present])
    return _binary_metrics(total, hist)


# -- the table -------------------------------------------------------------------------------------
def write_performance(lake: Lake, spec: "ModelSpec", records: Sequence[dict[str, Any]],
                      meta: dict[str, Any] | None = None) -> dict[str, str]:
    """``monitoring/performance/ds=...``: one partition per day (all its versions' rows, in the
    task's schema), each published whole; returns the lake URI per day."""
    table_schema = schema(spec.task)
    by_day: dict[str, list] = defaultdict(list)
    for rec in records:
        by_day[rec["ds"]].append({k: rec.get(k) for k in table_schema.names})
    store.publish_days(lake, store.PERFORMANCE, {
        ds: [PartitionFile(FILE, store.parquet_bytes(rows, table_schema), {"rows": len(rows)})]
        for ds, rows in by_day.items()}, meta)
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
def plot_history(lake: Lake, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records the plot shows once ``records`` are published: the newest ``PLOT_DAYS``
    days of ``monitoring/performance`` with ``records`` in place of their days' records."""
    mine = {r["ds"] for r in records}
    days = set(sorted(set(store.published_days(lake, store.PERFORMANCE)) | mine)[-PLOT_DAYS:])
    history = read_performance(lake, sorted(days - mine)) + [r for r in records if r["ds"] in days]
    return sorted(history, key=lambda r: (r["ds"], int(r["model_version"])))


def draw_performance(lake: Lake, spec: "ModelSpec", records: Sequence[dict[str, Any]], folder: str,
                     client=None) -> str | None:
    """``folder``/performance.png, the plot ``log_performance`` logs (``plot_history`` with each
    version's holdout value and the policy's threshold): drawn as soon as the records are known,
    before they are published (``monitor_days`` draws it while the drift is computed)."""
    from lakeforge.monitoring.policy import RetrainPolicy

    if not records:
        return None
    metric = spec.promotion_metric or spec.resolved().promotion_metric
    client = client or store.mlflow_client()
    newest = max(records, key=lambda r: (r["ds"], int(r["model_version"])))
    history = plot_history(lake, records)
    holdout = {}
    for v in store.distinct(r["model_version"] for r in history):
        try:
            holdout[v] = store.holdout_metrics(client, newest["model_name"], v).get(metric)
        except Exception as exc:  # a deleted version: its line is left out, the plot still helps
            log.warning("holdout metrics of %s v%s unreadable: %s", newest["model_name"], v, exc)
    policy = RetrainPolicy.for_spec(spec)  # the window and threshold the decision uses
    return plot_performance(history, holdout, os.path.join(folder, "performance.png"), metric,
                            policy.window_days, policy.max_drop)


def log_performance(lake: Lake, spec: "ModelSpec", records: Sequence[dict[str, Any]],
                    drift_reports: dict[str, dict[str, Any]] | None = None, plot: str | None = None) -> dict[str, str]:
    """Log the records' metrics on each version's monitoring run (stepped by day), then the plot of
    the published days (``draw_performance``; ``plot``: that plot already drawn) on the newest
    version's run. Returns the run id per version. ``drift_reports``: the same days' drift
    reports, whose metrics and tag (``drift.log_drift``'s) go in the same batch: one ``log_batch``
    per version and 1,000 metrics."""
    from lakeforge.monitoring import drift

    if not records:
        return {}
    client = store.mlflow_client()
    exp_id = store.monitoring_experiment(client, spec)
    runs: dict[str, str] = {}
    by_version: dict[tuple[str, str], dict] = defaultdict(lambda: defaultdict(dict))
    tags: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for rec in records:
        by_version[(rec["model_name"], rec["model_version"])][rec["ds"]].update({
            **{m: rec[m] for m in TASK_METRICS[spec.task]}, "rows_scored": rec["rows_scored"],
            "rows_evaluated": rec["rows_evaluated"]})
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
    with tempfile.TemporaryDirectory() as tmp:
        path = plot or draw_performance(lake, spec, records, tmp, client)
        client.log_artifact(runs[newest["model_version"]], path, "plots")
    return runs


def plot_performance(records: Sequence[dict[str, Any]], holdout: dict[str, float | None], path: str,
                     metric: str = "roc_auc", window_days: int = 7, max_drop: float | None = None) -> str:
    """``metric`` per day (and, for a binary model, the calibration error under it), the trailing
    pooled ``metric`` the policy compares, the holdout value of the version that scored each day as
    a dashed reference (and the retraining threshold beside it), a vertical line where the version
    changed."""
    from lakeforge.training.promotion import HIGHER_IS_BETTER
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import date

    rows = sorted(records, key=lambda r: r["ds"])
    days = [date.fromisoformat(r["ds"]) for r in rows]
    calibrated = all(task_of(r) == "binary" for r in rows)
    if calibrated:
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
        axes = (ax, ax2)
    else:
        fig, ax = plt.subplots(1, 1, figsize=(9, 4.5))
        axes = (ax,)
    ax.plot(days, [r[metric] for r in rows], marker=".", alpha=0.6, label=f"{metric}, per partition")
    sums = {"binary": "histogram", "multiclass": "confusion", "regression": "sse"}
    if all(r.get(sums[task_of(r)]) is not None for r in rows):  # what the retraining policy compares
        if calibrated:  # each day's histogram converted once, not once per window it is in
            parts = [binary_parts(r) for r in rows]
            trailing = [pooled_binary([p for q, p in zip(rows[:i + 1], parts)
                                       if q["model_version"] == r["model_version"]][-window_days:])[metric]
                        for i, r in enumerate(rows)]
        else:
            trailing = [pooled([q for q in rows[:i + 1] if q["model_version"] == r["model_version"]][-window_days:])[metric]
                        for i, r in enumerate(rows)]
        ax.plot(days, trailing, color="black", label=f"{metric}, pooled over the last {window_days} partitions")
    if calibrated:
        ax2.plot(days, [r["calibration_error"] for r in rows], marker=".", color="tab:orange",
                 label="calibration error")
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
            for a in axes:
                a.axvline(days[i], color="grey", linestyle=":")
        ax.annotate(f"v{v}", (days[i], 1), xycoords=("data", "axes fraction"), va="top", fontsize=8)
    ax.set(ylabel=metric, title=f"{rows[0]['model_name']}: {metric} as outcomes arrive")
    if calibrated:
        ax2.set(ylabel="ECE")
    ax.legend(loc="lower left", fontsize=8)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
