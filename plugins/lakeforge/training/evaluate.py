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
    """ROC AUC, PR AUC, positive rate, mean prediction and calibration error of a histogram
    (both classes present)."""
    return metrics_from_arrays(*histogram_arrays(hist))


def histogram_arrays(hist: Histogram) -> tuple["np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray"]:
    """A histogram's (bin, rows, positives, sum of predictions) as numpy arrays, in its order."""
    import numpy as np

    n = len(hist)
    return (np.fromiter((h[0] for h in hist), np.int64, n), np.fromiter((h[1] for h in hist), np.int64, n),
            np.fromiter((h[2] for h in hist), np.int64, n), np.fromiter((h[3] for h in hist), np.float64, n))


def metrics_from_arrays(bins: "np.ndarray", rows: "np.ndarray", positives: "np.ndarray",
                        sum_p: "np.ndarray") -> dict[str, float]:
    """``metrics_from_histogram`` over the histogram's arrays (distinct bins, any order): the same
    operations in the same order as ``roc_points`` / ``pr_points`` / ``reliability`` and their
    sums (``cumsum`` adds left to right like Python's ``sum``), so the same floats, bit for bit,
    without a Python loop over the bins (a trailing window of a plot pools thousands of them per
    day)."""
    import numpy as np

    n, pos = int(rows.sum()), int(positives.sum())
    neg = n - pos
    if pos == 0 or neg == 0:
        raise ValueError("ROC needs both classes in the holdout")
    order = np.argsort(-bins, kind="stable")  # thresholds from high to low
    tp, seen = np.cumsum(positives[order]), np.cumsum(rows[order])
    fpr = np.concatenate([[0.0], (seen - tp) / neg])
    tpr = np.concatenate([[0.0], tp / pos])
    auc = float(np.cumsum((fpr[1:] - fpr[:-1]) * (tpr[:-1] + tpr[1:]) / 2)[-1])
    recall, precision = tp / pos, tp / seen
    ap = float(np.cumsum((recall - np.concatenate([[0.0], recall[:-1]])) * precision)[-1])
    k = np.minimum((bins * RELIABILITY_BINS / BINS).astype(np.int64), RELIABILITY_BINS - 1)
    k_rows = np.bincount(k, weights=rows, minlength=RELIABILITY_BINS)
    k_pos = np.bincount(k, weights=positives, minlength=RELIABILITY_BINS)
    k_sum_p = np.bincount(k, weights=sum_p, minlength=RELIABILITY_BINS)  # in the histogram's order
    used = k_rows > 0
    mean_p, rate = k_sum_p[used] / k_rows[used], k_pos[used] / k_rows[used]
    ece = float(np.cumsum(k_rows[used].astype(np.int64) / n * np.abs(mean_p - rate))[-1])
    return {
        "roc_auc": auc,
        "pr_auc": ap,
        "positive_rate": pos / n,
        "mean_prediction": float(np.cumsum(sum_p)[-1]) / n,
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
