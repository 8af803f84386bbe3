"""Holdout metrics and the curves behind the plots.

Spark does the heavy part in two aggregations over the scored holdout (no rows leave the
executors): sums for log loss, Brier score, positive rate and mean prediction, and a histogram of
the predicted probability in ``BINS`` equal-width bins (count, positives, sum of predictions per
bin). Everything else is computed on the driver from that small histogram by pure functions:
ROC AUC (trapezoids; predictions within one bin count as ties), PR AUC (average precision), the
ROC / PR / calibration curves and the expected calibration error (10 reliability bins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure
    from pyspark.sql import DataFrame

BINS = 10_000
RELIABILITY_BINS = 10
EPS = 1e-15

Histogram = Sequence[tuple[int, int, int, float]]  # (bin, rows, positives, sum of predictions)


def with_probability(scored: "DataFrame", column: str = "probability") -> "DataFrame":
    """Add ``p`` = P(label = 1) from a Spark ML probability vector (no Python UDF)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return scored.withColumn("p", vector_to_array(F.col(column))[1])


def holdout_metrics(scored: "DataFrame", label: str = "label") -> tuple[dict[str, float], list]:
    """Metrics of a scored DataFrame with a ``p`` column; returns (metrics, histogram)."""
    from pyspark.sql import functions as F

    p = F.least(F.greatest(F.col("p"), F.lit(EPS)), F.lit(1 - EPS))
    y = F.col(label).cast("double")
    binned = scored.select(
        F.least(F.floor(F.col("p") * BINS), F.lit(BINS - 1)).cast("int").alias("bin"),
        y.alias("y"), F.col("p").alias("p"),
        (-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("ll"),
        ((F.col("p") - y) ** 2).alias("sq"),
    ).cache()
    try:
        totals = binned.agg(F.count("*").alias("n"), F.sum("ll").alias("ll"), F.sum("sq").alias("sq")).first()
        hist = [(r["bin"], r["n"], int(r["pos"]), float(r["sp"])) for r in
                binned.groupBy("bin").agg(F.count("*").alias("n"), F.sum("y").alias("pos"),
                                          F.sum("p").alias("sp")).collect()]
    finally:
        binned.unpersist()
    n = totals["n"]
    if not n:
        raise ValueError("cannot evaluate on an empty holdout")
    metrics = metrics_from_histogram(hist)
    metrics.update({"log_loss": totals["ll"] / n, "brier": totals["sq"] / n, "rows": float(n)})
    return metrics, sorted(hist)


def roc_points(hist: Histogram) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate), thresholds from high to low."""
    pos = sum(h[2] for h in hist)
    neg = sum(h[1] - h[2] for h in hist)
    if pos == 0 or neg == 0:
        raise ValueError("ROC needs both classes in the holdout")
    tp = fp = 0
    pts = [(0.0, 0.0)]
    for _, rows, positives, _ in sorted(hist, reverse=True):
        tp += positives
        fp += rows - positives
        pts.append((fp / neg, tp / pos))
    return pts


def pr_points(hist: Histogram) -> list[tuple[float, float]]:
    """(recall, precision), thresholds from high to low."""
    pos = sum(h[2] for h in hist)
    tp = seen = 0
    pts = []
    for _, rows, positives, _ in sorted(hist, reverse=True):
        tp += positives
        seen += rows
        pts.append((tp / pos, tp / seen))
    return pts


def reliability(hist: Histogram, bins: int = RELIABILITY_BINS) -> list[tuple[float, float, int]]:
    """(mean prediction, observed rate, rows) per reliability bin with rows."""
    acc: dict[int, list[float]] = {}
    for b, rows, positives, sum_p in hist:
        k = min(int(b * bins / BINS), bins - 1)
        a = acc.setdefault(k, [0.0, 0.0, 0.0])
        a[0] += rows
        a[1] += positives
        a[2] += sum_p
    return [(a[2] / a[0], a[1] / a[0], int(a[0])) for _, a in sorted(acc.items()) if a[0]]


def metrics_from_histogram(hist: Histogram) -> dict[str, float]:
    n = sum(h[1] for h in hist)
    pos = sum(h[2] for h in hist)
    roc = roc_points(hist)
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(roc, roc[1:]))
    pr = pr_points(hist)
    ap, prev_recall = 0.0, 0.0
    for recall, precision in pr:
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    rel = reliability(hist)
    ece = sum(rows / n * abs(mean_p - rate) for mean_p, rate, rows in rel)
    return {
        "roc_auc": auc,
        "pr_auc": ap,
        "positive_rate": pos / n,
        "mean_prediction": sum(h[3] for h in hist) / n,
        "calibration_error": ece,
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_figures(hist: Histogram, title: str) -> dict[str, "Figure"]:
    """ROC, PR and calibration plots as matplotlib figures, by file name (``roc_curve.png``...);
    the caller logs (``mlflow.log_figure``) and closes them."""
    plt = _pyplot()
    roc = roc_points(hist)
    pr = pr_points(hist)
    rel = reliability(hist)
    specs = [
        ("roc_curve.png", "false positive rate", "true positive rate",
         [([x for x, _ in roc], [y for _, y in roc], "model"), ([0, 1], [0, 1], "chance")]),
        ("pr_curve.png", "recall", "precision", [([x for x, _ in pr], [y for _, y in pr], "model")]),
        ("calibration.png", "mean predicted probability", "observed delay rate",
         [([m for m, _, _ in rel], [r for _, r, _ in rel], "model"), ([0, 1], [0, 1], "perfect")]),
    ]
    figures = {}
    for name, xlabel, ylabel, lines in specs:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
        for xs, ys, label in lines:
            ax.plot(xs, ys, label=label, linestyle="--" if label in ("chance", "perfect") else "-")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}: {name[:-4].replace('_', ' ')}")
        ax.legend()
        fig.tight_layout()
        figures[name] = fig
    return figures


def importance_figure(importance: dict[str, float], title: str, top: int = 20) -> "Figure":
    plt = _pyplot()
    items = sorted(importance.items(), key=lambda kv: kv[1])[-top:]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1), dpi=80)
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(title=f"{title}: feature importance")
    fig.tight_layout()
    return fig


def figure_pixels(fig) -> "np.ndarray":
    """The rendered figure as an RGB array (``mlflow.log_image``'s input)."""
    import numpy as np

    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def close(figures) -> None:
    plt = _pyplot()
    for fig in figures:
        plt.close(fig)


def plot_curves(hist: Histogram, out_dir: str, title: str) -> list[str]:
    """ROC, PR and calibration plots as PNG files in ``out_dir``; returns their paths."""
    figures = curve_figures(hist, title)
    paths = []
    for name, fig in figures.items():
        fig.savefig(f"{out_dir}/{name}", dpi=80)
        paths.append(f"{out_dir}/{name}")
    close(figures.values())
    return paths


def plot_importance(importance: dict[str, float], path: str, title: str, top: int = 20) -> str:
    fig = importance_figure(importance, title, top)
    fig.savefig(path, dpi=80)
    close([fig])
    return path
