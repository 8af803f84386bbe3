"""Metrics of a scored DataFrame and of the trivial baseline, for each task type (``spec.TASKS``).

Spark does the pass over the rows (one aggregation each; no rows leave the executors), the
driver finishes from the small result:

- binary: ``evaluate.holdout_metrics`` (a histogram of the probability: ROC AUC, PR AUC, log loss,
  Brier, calibration);
- multiclass: the confusion counts with the log-loss sum per cell -> accuracy, weighted F1, log loss;
- regression: sums -> RMSE, MAE, R².

The trivial baseline is what a constant model, fitted on the training window, scores on the
same rows: the training positive rate (binary), the training class shares (multiclass: log loss
of the shares, accuracy and F1 of always answering the most frequent class), the training mean
(regression). A first model must beat it to become champion.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lakeforge.training.evaluate import EPS, holdout_metrics, with_probability
from lakeforge.training.spec import ModelSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def evaluate(spec: ModelSpec, scored: "DataFrame") -> tuple[dict[str, float], list | None]:
    """(metrics, histogram) of a model's output on labelled rows; the histogram (for the ROC, PR
    and calibration plots) only for a binary task."""
    if spec.task == "binary":
        return holdout_metrics(with_probability(scored), label=spec.label)
    if spec.task == "multiclass":
        return multiclass_metrics(confusion(scored, spec.label)), None
    return regression_metrics(regression_sums(scored, spec.label)), None


def confusion(scored: "DataFrame", label: str) -> list[tuple[int, int, int, float]]:
    """(label, predicted class, rows, sum of -log p(label)) per cell: one Spark aggregation."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    y = F.col(label).cast("int")
    # try_: a class the model never saw has no probability (null: clipped to EPS, a large loss).
    p_true = F.try_element_at(vector_to_array("probability"), y + 1)
    ll = -F.log(F.least(F.greatest(p_true, F.lit(EPS)), F.lit(1 - EPS)))
    rows = (scored.select(y.alias("y"), F.col("prediction").cast("int").alias("pred"), ll.alias("ll"))
            .groupBy("y", "pred").agg(F.count("*").alias("n"), F.sum("ll").alias("ll")).collect())
    return [(r["y"], r["pred"], r["n"], float(r["ll"])) for r in rows]


def multiclass_metrics(cells: list[tuple[int, int, int, float]]) -> dict[str, float]:
    """Accuracy, support-weighted F1 and log loss from the confusion cells (pure)."""
    n = sum(c[2] for c in cells)
    if not n:
        raise ValueError("cannot evaluate on an empty holdout")
    classes = {c[0] for c in cells} | {c[1] for c in cells}
    support = {k: sum(c[2] for c in cells if c[0] == k) for k in classes}
    predicted = {k: sum(c[2] for c in cells if c[1] == k) for k in classes}
    hits = {k: sum(c[2] for c in cells if c[0] == k and c[1] == k) for k in classes}
    f1 = 0.0
    for k in classes:
        if support[k] and hits[k]:
            precision, recall = hits[k] / predicted[k], hits[k] / support[k]
            f1 += support[k] / n * 2 * precision * recall / (precision + recall)
    return {"accuracy": sum(hits.values()) / n, "f1": f1, "log_loss": sum(c[3] for c in cells) / n,
            "rows": float(n)}


def regression_sums(scored: "DataFrame", label: str) -> dict[str, float]:
    from pyspark.sql import functions as F

    y, err = F.col(label).cast("double"), F.col("prediction") - F.col(label).cast("double")
    r = scored.agg(F.count("*").alias("n"), F.sum(err * err).alias("sse"), F.sum(F.abs(err)).alias("sae"),
                   F.sum(y).alias("sy"), F.sum(y * y).alias("syy")).first()
    return {k: float(r[k] or 0.0) for k in ("n", "sse", "sae", "sy", "syy")}


def regression_metrics(sums: dict[str, float]) -> dict[str, float]:
    """RMSE, MAE and R² (against the rows' own mean) from the sums (pure)."""
    n = sums["n"]
    if not n:
        raise ValueError("cannot evaluate on an empty holdout")
    sst = sums["syy"] - sums["sy"] ** 2 / n
    return {"rmse": math.sqrt(sums["sse"] / n), "mae": sums["sae"] / n,
            "r2": 1.0 - sums["sse"] / sst if sst > 0 else 0.0, "rows": n}


def label_summary(spec: ModelSpec, train: "DataFrame") -> dict[str, Any]:
    """What the constant baseline learns from the training rows, in one aggregation: the row
    count, and the positive rate (binary), the class shares (multiclass) or the mean (regression)."""
    from pyspark.sql import functions as F

    y = F.col(spec.label)
    if spec.task == "multiclass":
        counts = class_counts(train, spec.label)
        n = sum(counts.values())
        return {"rows": n, "shares": {int(k): v / n for k, v in counts.items()} if n else {}}
    r = train.agg(F.count("*").alias("n"), F.avg(y.cast("double")).alias("mean")).first()
    return {"rows": r["n"], "mean": r["mean"]}


def class_counts(rows: "DataFrame", label: str) -> dict[int, int]:
    """Rows per class index: one Spark aggregation."""
    from pyspark.sql import functions as F

    return {r[0]: r[1] for r in rows.groupBy(F.col(label).cast("int")).count().collect()}


def trivial_baseline(spec: ModelSpec, summary: dict[str, Any], rows: "DataFrame | None" = None,
                     challenger: dict[str, float] | None = None) -> dict[str, float]:
    """The constant model's metrics on ``rows`` (a binary task reads the observed positive rate
    from ``challenger``'s metrics on the same rows instead: no pass over them)."""
    from lakeforge.training.promotion import trivial_baseline as binary_baseline

    if spec.task == "binary":
        return binary_baseline(summary["mean"], challenger["positive_rate"])
    from pyspark.sql import functions as F

    if spec.task == "multiclass":
        shares = summary["shares"]
        majority = max(shares, key=lambda k: (shares[k], -k))
        counts = class_counts(rows, spec.label)
        n = sum(counts.values())
        cells = [(k, majority, c, -c * math.log(min(max(shares.get(k, 0.0), EPS), 1 - EPS)))
                 for k, c in counts.items()]
        return multiclass_metrics(cells) if n else {}
    # The training mean as every row's prediction, scored as a model's predictions are.
    constant = rows.withColumn("prediction", F.lit(float(summary["mean"])))
    return regression_metrics(regression_sums(constant, spec.label))
