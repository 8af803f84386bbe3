"""Drift: each scored day's features and predictions against the model version's training reference.

What a pipeline's model sees and says is compared with what it saw in training, so a changed feed
or a model answering differently shows before the outcomes arrive. The spec (``ModelSpec``) says
which columns: its features (``feature_columns()``: numeric, categorical), the rows its
``row_filter`` keeps (as in training), the ``key`` (+ ``ds``) that ties a prediction to its row,
and the task's prediction (binary: ``probability``, numeric; multiclass: ``predicted_class``,
categorical; regression: ``prediction``, numeric).

Reference profile (once per model version, ``build_profile``; stored as the JSON artifact
``monitoring/reference_profile.json`` of the version's training run by ``ensure_reference_profile``,
read back by every later run: the training data is never read again):

- numeric feature: bin edges at the ``LAKEFORGE_DRIFT_BINS`` quantiles of the training window
  (``approxQuantile``, all features in one pass; repeated edges merged, so a feature with a point
  mass at 0 keeps it as one bin), bins right-closed ``(e[i-1], e[i]]``, plus a ``null`` bucket
  (a feed that stops, e.g. the weather, shows up as drift of its features' null share);
- categorical feature: the share of each category with at least ``MIN_CATEGORY_SHARE`` of the
  rows, the rarer ones together in ``__other__``, ``__null__``; values never seen in training
  fall in ``__unseen__`` (reference share 0). Rare categories are pooled because PSI's sampling
  noise grows with the number of buckets (about (buckets - 1) / rows): a day's ~900 rows over
  ~100 categories would look drifted by chance alone;
- the prediction: the same bins (numeric) or categories (the predicted class) over the model's
  outputs on its holdout days (out-of-sample, like the days it scores; the training window when
  the version has no holdout tags), scored by ``lakeforge.scoring.outputs.model_outputs``.

Per day (``drift_days``): every feature's and the prediction's bucket counts in one Spark job over
the day's partitions: each task counts its rows in its Python worker (``lakeforge.monitoring.buckets``:
the feature files and the day's prediction files read there, only the rows the row filter keeps),
Spark sums the tasks' counts by (day, feature, bucket), and only those rows come back (a frame not
read from files: its columns sent by the JVM, the prediction's counts a second job beside it). Then PSI on the driver: sum((a - e) * ln(a / e)) over buckets, shares floored at ``EPSILON``
so an empty bucket (an unseen category) counts instead of dividing by zero.

A day (a partition: a month where partitions are monthly) is not a window: a feature with one
value per day (the weekday, a history rate over all rows) or tied within a day (the weather) is far
from the window's distribution on EVERY day, the training days included (``day_of_week`` alone:
PSI ~7). So the profile also keeps each feature's usual PSI,
the 95th percentile of the training days' own PSI against the window, and a feature drifts when its
PSI exceeds that by more than ``LAKEFORGE_RETRAIN_DRIFT_PSI`` (``excess``). Both numbers are in the
report.

Evidence per day: ``monitoring/drift/ds=.../report.json`` and ``report.html`` (a plain table of the
features sorted by PSI with their flags, and the buckets of the top ones; no script, no external
asset). Evidently was considered and not used: see ``EVIDENTLY`` below.
"""

from __future__ import annotations

import html
import logging
import math
import threading
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from lakeforge.lake import Lake
from lakeforge.monitoring import buckets, store
from lakeforge.publish import PartitionFile
from lakeforge.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from lakeforge.training.spec import ModelSpec

log = logging.getLogger(__name__)

EVIDENTLY = (
    "Evidently (0.7.x, not installed) computes its drift tests on row-level pandas frames of the reference "
    "and the current data: lakeforge would have to collect samples of both to the driver and would get a second, "
    "sample-based set of numbers beside the exact Spark aggregates the policy uses; its install brings a web "
    "server stack (litestar, uvicorn, watchdog), nltk, statsmodels, plotly<6 and usage telemetry that is on by "
    "default, and each HTML report embeds plotly (megabytes per day). The PSI here is a few lines over the Spark "
    "aggregates and the report a plain table."
)
PROFILE_FORMAT = 1
EPSILON = 1e-4
MIN_CATEGORY_SHARE = 0.005
PREDICTION = "__prediction__"
NULL, OTHER, UNSEEN = "__null__", "__other__", "__unseen__"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
REL_ERROR = 1e-3
# The prediction column whose distribution is profiled, per task, and whether it is categorical.
PREDICTED = {"binary": ("probability", False), "multiclass": ("predicted_class", True),
             "regression": ("prediction", False)}


def _edges(values: Sequence[float]) -> list[float]:
    return sorted({float(v) for v in values if v is not None and not math.isnan(v)})


def _numeric_bucket(x: "Column", edges: Sequence[float]) -> "Column":
    """"null", or how many edges lie below x (bins (e[i-1], e[i]]) — a JVM expression, no UDF."""
    from pyspark.sql import functions as F

    x = x.cast("double")
    inner = (F.size(F.filter(F.array(*[F.lit(e) for e in edges]), lambda e: e < x)).cast("string")
             if edges else F.lit("0"))
    return F.when(x.isNull() | F.isnan(x), F.lit("null")).otherwise(inner)


def _categorical_bucket(c: "Column", kept: Sequence[str], other: Sequence[str]) -> "Column":
    from pyspark.sql import functions as F

    c = c.cast("string")
    expr = F.when(c.isNull(), F.lit(NULL))
    if kept:
        expr = expr.when(c.isin(list(kept)), c)
    if other:
        expr = expr.when(c.isin(list(other)), F.lit(OTHER))
    return expr.otherwise(F.lit(UNSEEN))


def _long(df: "DataFrame", buckets: dict[str, "Column"], ds: "Column") -> "DataFrame":
    """(ds, f, b): one row per (row, feature): the rows' buckets, for one grouped count."""
    from pyspark.sql import functions as F

    cells = F.array(*[F.struct(F.lit(name).alias("f"), expr.alias("b")) for name, expr in buckets.items()])
    return df.select(ds.alias("ds"), F.explode(cells).alias("x")).select("ds", "x.f", "x.b")


def _counts(long: "DataFrame") -> dict[str, dict[str, dict[str, int]]]:
    """{ds: {feature: {bucket: rows}}} (a small collect: at most features x buckets rows per day)."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in long.groupBy("ds", "f", "b").count().collect():
        out[r["ds"]][r["f"]][r["b"]] = r["count"]
    return out


# The buckets' codes of the scored days' counts (``buckets``), mapped back to the buckets' names
# on the driver. Numeric: the bin index, or _NULL_CODE; categorical: the index in the kept
# categories, or one of the three below.
_NULL_CODE, _OTHER_CODE, _UNSEEN_CODE = buckets.NULL_CODE, buckets.OTHER_CODE, buckets.UNSEEN_CODE


def _sql_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


FILE_BATCH_ROWS = 65536  # rows a worker reads from a feature file at a time


def _bucketed(df: "DataFrame", numeric: Sequence[tuple[str, Sequence[float]]],
              categorical: Sequence[tuple[str, Sequence[str], Sequence[str]]], first: int = 0,
              predictions: dict[str, Any] | None = None) -> tuple["DataFrame", bool]:
    """((ds, f, b, n): each task's rows per (day, feature index ``first + i``, bucket code) of
    ``df``'s ``numeric`` ((column, edges)) then ``categorical`` ((column, kept, other)) columns,
    counted in the Python workers; whether the prediction's counts are in it). Read from
    ``df``'s own Parquet files where it is a file scan whose columns the workers cast as Spark
    would (``buckets.count_files``; with ``predictions``, ``buckets.prediction_spec``, the
    prediction's counts too), else sent by the JVM (``buckets.count_batches``)."""
    from functools import partial

    located = _file_rows(df, [c for c, _ in numeric], [c for c, _, _ in categorical])
    if located is not None:
        fn = partial(buckets.count_files, numeric=[(c, list(e)) for c, e in numeric],
                     categorical=[(c, list(kept), list(other)) for c, kept, other in categorical], first=first,
                     batch_rows=FILE_BATCH_ROWS, predictions=predictions)
        return located.mapInArrow(fn, buckets.OUTPUT), predictions is not None
    # SQL text, one Py4J call: ~130 Column objects took ~0.7 s of the driver.
    columns = ["CAST(ds AS STRING) AS ds",
               *[f"CAST({_sql_name(c)} AS DOUBLE) AS n{i}" for i, (c, _) in enumerate(numeric)],
               *[f"CAST({_sql_name(c)} AS STRING) AS c{j}" for j, (c, _, _) in enumerate(categorical)]]
    fn = partial(buckets.count_batches, numeric=[list(e) for _, e in numeric],
                 categorical=[(list(kept), list(other)) for _, kept, other in categorical], first=first)
    return df.selectExpr(*columns).mapInArrow(fn, buckets.OUTPUT), False


def _file_rows(df: "DataFrame", numeric: Sequence[str], categorical: Sequence[str]) -> "DataFrame | None":
    """(path, i, ds): the file and row index of each of ``df``'s rows, when ``df`` is a Parquet
    scan (filtered, with a ``ds`` column) whose ``numeric`` columns are numbers and ``categorical``
    ones strings (what a worker casts exactly as Spark's CAST does); else None."""
    from pyspark.errors import AnalysisException
    from pyspark.sql.types import BooleanType, NumericType, StringType

    types = {f.name: f.dataType for f in df.schema.fields}
    if (not all(isinstance(types.get(c), (NumericType, BooleanType)) for c in numeric)
            or not all(isinstance(types.get(c), StringType) for c in categorical)):
        return None
    if not df.inputFiles():  # built in memory: no files to read (and no error logged for trying)
        return None
    try:
        return df.selectExpr("_metadata.file_path AS path", "_metadata.row_index AS i", "CAST(ds AS STRING) AS ds")
    except AnalysisException:  # files somewhere below, but not a plain scan of them
        return None


def _coded_counts(long: "DataFrame") -> dict[str, dict[int, dict[int, int]]]:
    """{ds: {feature index: {bucket code: rows}}}: the tasks' counts summed (a small collect)."""
    from pyspark.sql import functions as F

    out: dict[str, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in long.groupBy("ds", "f", "b").agg(F.sum("n").alias("n")).collect():
        out[r["ds"]][r["f"]][r["b"]] = r["n"]
    return out


def _numeric_names(counts: dict[int, int]) -> dict[str, int]:
    return {("null" if b == _NULL_CODE else str(b)): n for b, n in counts.items()}


def _categorical_names(counts: dict[int, int], kept: Sequence[str]) -> dict[str, int]:
    names = {_NULL_CODE: NULL, _OTHER_CODE: OTHER, _UNSEEN_CODE: UNSEEN}
    return {(kept[b] if b >= 0 else names[b]): n for b, n in counts.items()}


def _shares(counts: dict[str, int]) -> dict[str, float]:
    n = sum(counts.values())
    return {b: c / n for b, c in counts.items()} if n else {}


def _rows(features: "DataFrame", spec: "ModelSpec") -> "DataFrame":
    """The rows the spec's ``row_filter`` keeps (all without one)."""
    from pyspark.sql import functions as F

    return features.where(F.expr(spec.row_filter)) if spec.row_filter else features


def _prediction(spec: "ModelSpec", scored: "DataFrame") -> "Column":
    """The task's profiled prediction (``PREDICTED``) of a scored frame."""
    from pyspark.sql import functions as F

    column, categorical = PREDICTED[spec.task]
    if spec.task == "binary":
        return _probability(scored)
    return F.col(column).cast("string" if categorical else "double")


def _probability(scored: "DataFrame") -> "Column":
    """The predicted probability: a double (predictions table), or MLlib's vector (a model's output)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    if isinstance(scored.schema["probability"].dataType, DoubleType):
        return F.col("probability")
    return vector_to_array(F.col("probability"))[1]


# -- reference profile ---------------------------------------------------------------------------
def build_profile(spec: "ModelSpec", features: "DataFrame", predictions: "DataFrame | None" = None,
                  numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                  bins: int | None = None, meta: dict[str, Any] | None = None,
                  filtered: bool = False) -> dict[str, Any]:
    """The reference profile of a training window's feature rows (those the spec's ``row_filter``
    keeps, unless ``filtered``: the frame holds only those already, like the training job's) and,
    if given, of the task's prediction in ``predictions`` (``model_outputs``' columns; a binary
    ``probability`` may also be MLlib's vector). ``numeric`` / ``categorical``: the features
    profiled (default: the spec's). Two Spark jobs over the features: the quantiles (all columns at
    once), the bucket counts per day; two over the predictions."""
    from pyspark.sql import functions as F

    spec_numeric, spec_categorical = spec.feature_columns()
    numeric = spec_numeric if numeric is None else list(numeric)
    categorical = spec_categorical if categorical is None else list(categorical)
    bins = bins or get_settings().drift_bins
    probs = [i / bins for i in range(1, bins)]
    day = F.col("ds").cast("string") if "ds" in features.columns else F.lit("all")
    rows = (features if filtered else _rows(features, spec)).select(
        day.alias("ds"), *[F.col(c).cast("double").alias(c) for c in numeric], *categorical).cache()
    try:
        edges = dict(zip(numeric, map(_edges, rows.approxQuantile(list(numeric), probs, REL_ERROR)))) if numeric else {}
        # Categories raw here (their buckets depend on the window's shares), mapped on the driver.
        buckets = {c: _numeric_bucket(F.col(c), edges[c]) for c in numeric}
        buckets.update({c: F.coalesce(F.col(c).cast("string"), F.lit(NULL)) for c in categorical})
        by_day = _counts(_long(rows, buckets, F.col("ds")))
    finally:
        rows.unpersist()
    n = sum(sum(c.get(next(iter(buckets)), {}).values()) for c in by_day.values())
    if not n:
        raise ValueError("cannot build a reference profile from no rows")
    cat_spec = {c: _pool_categories(by_day, c, n) for c in categorical}
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT, "bins": bins, "rows": n, "days": len(by_day), "created_at": store.now_iso(),
        **(meta or {}),
        "numeric": {c: {"edges": edges[c], **_reference(by_day, c)} for c in numeric},
        "categorical": {c: {**cat_spec[c], **_reference(by_day, c)} for c in categorical},
        "prediction": None,
    }
    if predictions is not None:
        profile["prediction"] = _prediction_profile(spec, predictions, probs)
    return profile


def _pool_categories(by_day: dict[str, dict[str, dict[str, int]]], column: str, n: int) -> dict[str, list[str]]:
    """The categories of ``column`` kept (at least ``MIN_CATEGORY_SHARE`` of the ``n`` rows) and the
    rarer ones; ``by_day``'s counts of the rarer ones pooled in ``OTHER``, as ``_categorical_bucket``
    does on scored days."""
    totals: dict[str, int] = defaultdict(int)
    for counts in by_day.values():
        for v, k in counts.get(column, {}).items():
            totals[v] += k
    seen = sorted((v for v in totals if v != NULL), key=lambda v: (-totals[v], v))
    kept = [v for v in seen if totals[v] / n >= MIN_CATEGORY_SHARE]
    for counts in by_day.values():
        raw = counts.get(column, {})
        pooled = {v: k for v, k in raw.items() if v in kept or v == NULL}
        if len(pooled) < len(raw):
            pooled[OTHER] = sum(k for v, k in raw.items() if v not in pooled)
        counts[column] = pooled
    return {"categories": kept, "other": seen[len(kept):]}


def _prediction_profile(spec: "ModelSpec", predictions: "DataFrame", probs: Sequence[float]) -> dict[str, Any]:
    """The prediction's reference: quantile bins (``edges``) of a numeric one, the categories of the
    predicted class."""
    from pyspark.sql import functions as F

    pday = F.col("ds").cast("string") if "ds" in predictions.columns else F.lit("all")
    p = predictions.select(pday.alias("ds"), _prediction(spec, predictions).alias("p")).cache()
    try:
        if PREDICTED[spec.task][1]:
            pc = _counts(_long(p, {PREDICTION: F.coalesce(F.col("p"), F.lit(NULL))}, F.col("ds")))
            rows = sum(sum(c.get(PREDICTION, {}).values()) for c in pc.values())
            if not rows:
                raise ValueError("cannot build a reference profile of no predictions")
            return {**_pool_categories(pc, PREDICTION, rows), **_reference(pc, PREDICTION), "rows": rows}
        p_edges = _edges(p.approxQuantile("p", probs, REL_ERROR))
        pc = _counts(_long(p, {PREDICTION: _numeric_bucket(F.col("p"), p_edges)}, F.col("ds")))
    finally:
        p.unpersist()
    ref = _reference(pc, PREDICTION)
    rows = sum(c.get(PREDICTION, {}).get(b, 0) for c in pc.values() for b in ref["shares"])
    return {"edges": p_edges, **ref, "rows": rows}


def _reference(by_day: dict[str, dict[str, dict[str, int]]], feature: str) -> dict[str, Any]:
    """A feature's shares over the whole window, and how far its single days already were from them:
    the 95th percentile of the reference days' own PSI against the window (``usual_psi``). A day is
    judged by its PSI above that: a feature with one value per day (the weekday, NYC-wide history
    rates) or strongly tied within a day (the weather) differs from the window on every day, the
    training days included, and is not drift for it."""
    total: dict[str, int] = defaultdict(int)
    for counts in by_day.values():
        for b, c in counts.get(feature, {}).items():
            total[b] += c
    shares = _shares(total)
    daily = sorted(psi(shares, _shares(c[feature])) for c in by_day.values() if c.get(feature))
    usual = daily[max(0, math.ceil(0.95 * len(daily)) - 1)] if daily else 0.0
    return {"shares": shares, "usual_psi": usual}


def read_features(spark, lake: Lake, spec: "ModelSpec", start: str, end: str) -> "DataFrame":
    """The spec's published, usable features partitions from ``start`` to ``end`` (their ``ds``,
    inclusive; with ``ds``), read by Spark."""
    from pyspark.sql import functions as F

    from lakeforge.training import data

    uris = [p["uri"] for p in data.usable(data.feature_partitions(lake, spec.features)) if start <= p["ds"] <= end]
    if not uris:
        raise ValueError(f"no usable features partition in {start}..{end} of {lake.uri(spec.features)}")
    return (spark.read.option("basePath", lake.uri(spec.features)).parquet(*uris)
            .withColumn("ds", F.col("ds").cast("string")))


def load_reference_profile(client, model_name: str, version: str) -> dict[str, Any] | None:
    """The stored profile of a version (None if it has none yet)."""
    import json

    from mlflow.exceptions import MlflowException

    run_id = store.version_run_id(client, model_name, version)
    try:
        names = {a.path for a in client.list_artifacts(run_id, "monitoring")}
    except MlflowException:
        return None
    if store.PROFILE_ARTIFACT not in names:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with open(client.download_artifacts(run_id, store.PROFILE_ARTIFACT, tmp)) as f:
            profile = json.load(f)
    return profile if profile.get("format") == PROFILE_FORMAT else None


_prefetched: dict[tuple[str, str, str], Future] = {}


def prefetch_reference_profile(model_name: str, version: str) -> None:
    """Start reading the version's stored profile in a background thread (the scoring job does it
    while its JVM starts, when the cores are half idle); the next ``ensure_reference_profile`` of
    that version takes the answer instead of asking MLflow again."""
    key = (get_settings().mlflow_tracking_uri, model_name, str(version))
    done: Future = Future()
    _prefetched[key] = done

    def work() -> None:
        try:
            done.set_result(load_reference_profile(store.mlflow_client(), model_name, str(version)))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the answer
            done.set_exception(exc)

    threading.Thread(target=work, name="drift-profile-prefetch", daemon=True).start()


def _take_prefetched(model_name: str, version: str) -> dict[str, Any] | None:
    """The prefetched profile of the version (once), or None (none prefetched, none stored, or
    the prefetch failed: the caller asks MLflow itself and gets the real error there)."""
    done = _prefetched.pop((get_settings().mlflow_tracking_uri, model_name, str(version)), None)
    if done is None:
        return None
    try:
        return done.result()
    except Exception as exc:  # noqa: BLE001 - asked again by the caller
        log.warning("prefetching the reference profile of %s v%s failed (%s): asking again", model_name, version, exc)
        return None


def ensure_reference_profile(spark, lake: Lake, spec: "ModelSpec", model_name: str, version: str,
                             model=None) -> dict[str, Any]:
    """The version's reference profile: read from its run, or computed once from its training
    window (and its predictions on its holdout days) and logged there. ``model``: the loaded Spark
    model if the caller has it (else it is loaded, digest-verified). Logging needs write access to
    the training experiment (the ``training`` account); reading needs only READ."""
    from lakeforge.scoring.outputs import model_outputs
    from lakeforge.training import registry

    found = _take_prefetched(model_name, version)
    if found is not None:
        return found
    client = store.mlflow_client()
    found = load_reference_profile(client, model_name, version)
    if found is not None:
        return found
    mv = client.get_model_version(model_name, str(version))
    window = registry.training_window(mv)
    if window is None:
        raise ValueError(f"{model_name} v{version}: no training window recorded, no reference profile possible")
    features = read_features(spark, lake, spec, window.train_start, window.train_end)
    held_out = registry.holdout_window(mv)  # its run's holdout_start / holdout_end
    ref_start, ref_end = held_out or (window.train_start, window.train_end)
    if model is None:
        import mlflow

        from lakeforge.training.artifact_digest import load_verified_model
        from lakeforge.training.tracking import scratch_space

        with scratch_space():
            model = load_verified_model(f"models:/{model_name}/{version}", loader=mlflow.spark.load_model, client=client)
    scored = model_outputs(spec, model, _rows(read_features(spark, lake, spec, ref_start, ref_end), spec), ["ds"])
    profile = build_profile(spec, features, scored, meta={
        "model_name": model_name, "model_version": str(version), "run_id": mv.run_id,
        "window": {"train_start": window.train_start, "train_end": window.train_end},
        "prediction_days": [ref_start, ref_end]})
    try:
        client.log_dict(mv.run_id, profile, store.PROFILE_ARTIFACT)
        log.info("reference profile of %s v%s logged to run %s", model_name, version, mv.run_id)
    except Exception as exc:  # an account that may only read the training experiment (scoring)
        if not store.forbidden(exc):
            raise
        log.warning("reference profile of %s v%s computed but not stored (this account cannot write run %s: "
                    "the training job stores it); it is computed again next time", model_name, version, mv.run_id)
    return profile


# -- per day ---------------------------------------------------------------------------------------
def psi(expected: dict[str, float], actual: dict[str, float], eps: float = EPSILON) -> float:
    """Population stability index over the union of buckets (shares floored at ``eps``)."""
    total = 0.0
    for b in sorted(set(expected) | set(actual)):  # one order: the same sum in every process
        e, a = max(expected.get(b, 0.0), eps), max(actual.get(b, 0.0), eps)
        total += (a - e) * math.log(a / e)
    return total


def _bucket_labels(edges: Sequence[float]) -> dict[str, str]:
    bounds = ["-inf", *[f"{e:.4g}" for e in edges], "inf"]
    labels = {str(i): f"({bounds[i]}, {bounds[i + 1]}{')' if i == len(edges) else ']'}" for i in range(len(edges) + 1)}
    return {**labels, "null": "null"}


def _entry(name: str, kind: str, ref: dict[str, Any], counts: dict[str, int], threshold: float,
           categorical: bool | None = None) -> dict[str, Any]:
    """A feature's (or the prediction's: ``kind`` "prediction") line of a day's report;
    ``categorical``: bucketed by category (default: ``kind == "categorical"``)."""
    categorical = kind == "categorical" if categorical is None else categorical
    actual = _shares(counts)
    expected = ref["shares"]
    value = psi(expected, actual) if actual else None
    usual = ref.get("usual_psi", 0.0)
    excess = None if value is None else value - usual
    labels = {} if categorical else _bucket_labels(ref["edges"])
    buckets = [{"bucket": b, "label": labels.get(b, b), "expected": expected.get(b, 0.0), "actual": actual.get(b, 0.0)}
               for b in sorted(set(expected) | set(actual), key=lambda b: (b == "null", int(b) if b.isdigit() else 0, b))]
    entry = {"feature": name, "kind": kind, "psi": value, "usual_psi": usual, "excess": excess,
             "rows": sum(counts.values()), "drift": excess is not None and excess > threshold, "buckets": buckets,
             "null_share": actual.get(NULL if categorical else "null", 0.0),
             "reference_null_share": expected.get(NULL if categorical else "null", 0.0)}
    if categorical:
        entry["unseen_share"] = actual.get(UNSEEN, 0.0)
    return entry


def drift_days(spec: "ModelSpec", features: "DataFrame", predictions: "DataFrame | None", profile: dict[str, Any],
               days: Sequence[str] | None = None, threshold: float | None = None,
               prediction_files: dict[str, Sequence[str]] | None = None) -> dict[str, dict[str, Any]]:
    """The drift report of each day of ``features`` (or of ``days``; the rows the spec's
    ``row_filter`` keeps) against ``profile``: the bucket counts of the days' feature rows and of
    the version's predictions of them (joined on the spec's ``key`` and ``ds``), Spark
    aggregations of the workers' counts (``_bucketed``). ``prediction_files``: the files
    ``predictions`` was read from, by day (``published_files``): the workers then count the
    prediction from them beside the features, without a Spark join."""
    from pyspark.sql import functions as F

    threshold = get_settings().retrain_drift_psi if threshold is None else threshold
    rows = _rows(features, spec).withColumn("ds", F.col("ds").cast("string"))
    if days is not None:
        rows = rows.where(F.col("ds").isin(list(days)))
    numeric, categorical = list(profile["numeric"].items()), list(profile["categorical"].items())
    n_features = len(numeric) + len(categorical)
    pred_ref = profile.get("prediction")
    pred_categorical = bool(pred_ref) and "categories" in pred_ref
    in_files = None
    if predictions is not None and pred_ref and prediction_files is not None:
        in_files = buckets.prediction_spec(
            prediction_files, spec.key, PREDICTED[spec.task][0], profile.get("model_version"), n_features,
            edges=None if pred_categorical else pred_ref["edges"],
            categories=(pred_ref["categories"], pred_ref["other"]) if pred_categorical else None)
    features_long, counted = _bucketed(rows, [(c, ref["edges"]) for c, ref in numeric],
                                       [(c, ref["categories"], ref["other"]) for c, ref in categorical],
                                       predictions=in_files)
    predicted = None
    if predictions is not None and pred_ref and not counted:
        preds = predictions.withColumn("ds", F.col("ds").cast("string"))
        if profile.get("model_version") is not None:
            preds = preds.where(F.col("model_version").cast("string") == str(profile["model_version"]))
        keys = [*spec.key, "ds"]
        preds = preds.join(rows.select(*keys), keys, how="left_semi")
        preds = preds.select("ds", _prediction(spec, preds).alias("p"))
        predicted = (_bucketed(preds, [], [("p", pred_ref["categories"], pred_ref["other"])], first=n_features)[0]
                     if pred_categorical else _bucketed(preds, [("p", pred_ref["edges"])], [], first=n_features)[0])
    # Two jobs at once, not one over a union: the predictions' semi join is a broadcast that a
    # union's one stage would wait for before reading a single feature row. (Given the days'
    # prediction files, the workers reading the feature files count the prediction too: one job.)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-predictions") as pool:
        pending = pool.submit(_coded_counts, predicted) if predicted is not None else None
        coded = _coded_counts(features_long)
        if pending is not None:
            for ds, by_f in pending.result().items():
                coded[ds].update(by_f)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for ds, by_f in coded.items():
        c = counts[ds] = {}
        for i, (name, _) in enumerate(numeric):
            if i in by_f:
                c[name] = _numeric_names(by_f[i])
        for j, (name, ref) in enumerate(categorical):
            if len(numeric) + j in by_f:
                c[name] = _categorical_names(by_f[len(numeric) + j], ref["categories"])
        if n_features in by_f:
            c[PREDICTION] = (_categorical_names(by_f[n_features], pred_ref["categories"]) if pred_categorical
                             else _numeric_names(by_f[n_features]))
    reports = {}
    for ds in sorted(counts if days is None else [d for d in days if d in counts]):
        c = counts[ds]
        entries = [_entry(f, "numeric", ref, c.get(f, {}), threshold) for f, ref in profile["numeric"].items()]
        entries += [_entry(f, "categorical", ref, c.get(f, {}), threshold) for f, ref in profile["categorical"].items()]
        entries.sort(key=lambda e: (-(e["excess"] if e["excess"] is not None else -math.inf), e["feature"]))
        pred = (_entry(PREDICTION, "prediction", pred_ref, c[PREDICTION], threshold, pred_categorical)
                if PREDICTION in c and pred_ref else None)
        judged = [e for e in entries + ([pred] if pred else []) if e["psi"] is not None]
        reports[ds] = {
            "ds": ds, "model_name": profile.get("model_name"), "model_version": profile.get("model_version"),
            "reference": {k: profile.get(k) for k in ("run_id", "window", "prediction_days", "rows", "days", "bins",
                                                      "created_at")},
            "threshold": threshold, "epsilon": EPSILON, "rows": max((e["rows"] for e in entries), default=0),
            "max_psi": max((e["psi"] for e in judged), default=None),
            "max_excess": max((e["excess"] for e in judged), default=None), "prediction": pred, "features": entries,
            "drifting": [e["feature"] for e in entries if e["drift"]] + ([PREDICTION] if pred and pred["drift"] else []),
            "computed_at": store.now_iso(),
        }
        reports[ds]["drift"] = bool(reports[ds]["drifting"])
    return reports


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the policy and the summary table need of a day's report (no buckets)."""
    pred = report.get("prediction") or {}
    return {"ds": report["ds"], "model_version": report.get("model_version"), "max_psi": report["max_psi"],
            "max_excess": report["max_excess"], "prediction_excess": pred.get("excess"), "drift": report["drift"],
            "drifting": report["drifting"], "top": [(e["feature"], e["excess"]) for e in report["features"][:5]]}


# -- evidence ----------------------------------------------------------------------------------------
def write_reports(lake: Lake, reports: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, str]:
    """``monitoring/drift/ds=.../{report.json,report.html}``, each day published whole; returns
    the HTML report's lake URI per day."""
    store.publish_days(lake, store.DRIFT, {
        ds: [PartitionFile(REPORT_JSON, store.json_bytes(r)), PartitionFile(REPORT_HTML, render_html(r).encode())]
        for ds, r in reports.items()}, meta)
    return {ds: lake.uri(store.DRIFT, f"ds={ds}", REPORT_HTML) for ds in reports}


def read_report(lake: Lake, ds: str) -> dict[str, Any] | None:
    import json

    data = store.read_day_file(lake, store.DRIFT, ds, REPORT_JSON)
    return None if data is None else json.loads(data)


def drift_metrics(reports: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, float | None]]]:
    """{(model name, version): {day: metrics}}: per day the largest PSI, the prediction's, how many
    features drift."""
    by_version: dict[tuple[str, str], dict] = defaultdict(dict)
    for ds, r in reports.items():
        by_version[(r["model_name"], r["model_version"])][ds] = {
            "drift_max_psi": r["max_psi"], "drift_max_excess_psi": r["max_excess"],
            "drift_prediction_psi": (r.get("prediction") or {}).get("psi"),
            "drift_features": float(len(r["drifting"]))}
    return by_version


def drift_tags(by_day: dict[str, Any], lake: Lake | None) -> dict[str, str]:
    """The monitoring run's tag naming the newest day's report."""
    if lake is None or not by_day:
        return {}
    return {"lakeforge.monitoring.drift_report": lake.uri(store.DRIFT, f"ds={max(by_day)}", REPORT_HTML)}


def log_drift(spec: "ModelSpec", reports: dict[str, dict[str, Any]], lake: Lake | None = None) -> dict[str, str]:
    """Per day on the version's monitoring run: the largest PSI, the prediction's, how many
    features drift; the newest report's URI as a tag. Returns the run id per version.
    (``monitor_days`` logs them with the performance metrics: ``evaluate.log_performance``.)"""
    if not reports:
        return {}
    client = store.mlflow_client()
    exp_id = store.monitoring_experiment(client, spec)
    runs: dict[str, str] = {}
    for (name, version), by_day in drift_metrics(reports).items():
        runs[version] = run_id = store.monitoring_run(client, exp_id, name, version)
        store.log_day_metrics(client, run_id, by_day, drift_tags(by_day, lake))
    return runs


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def render_html(report: dict[str, Any], top: int = 8) -> str:
    """A self-contained page: verdict, the features sorted by PSI with flags, the buckets of the top ones."""
    esc = html.escape
    entries = ([report["prediction"]] if report.get("prediction") else []) + report["features"]
    rows = "\n".join(
        f"<tr class='{'drift' if e['drift'] else ''}'><td>{esc(e['feature'])}</td><td>{esc(e['kind'])}</td>"
        f"<td class='n'>{_fmt(e['psi'])}</td><td class='n'>{_fmt(e['usual_psi'])}</td>"
        f"<td class='n'>{_fmt(e['excess'])}</td><td>{'DRIFT' if e['drift'] else ''}</td>"
        f"<td class='n'>{_fmt(e['null_share'])} / {_fmt(e['reference_null_share'])}</td>"
        f"<td class='n'>{_fmt(e.get('unseen_share'))}</td><td class='n'>{e['rows']}</td></tr>" for e in entries)

    def bars(e: dict[str, Any]) -> str:
        lines = "".join(
            f"<tr><td>{esc(str(b['label']))}</td><td class='n'>{b['expected']:.3f}</td><td class='n'>{b['actual']:.3f}</td>"
            f"<td><div class='bar ref' style='width:{200 * b['expected']:.0f}px'></div>"
            f"<div class='bar cur' style='width:{200 * b['actual']:.0f}px'></div></td></tr>" for b in e["buckets"])
        return (f"<h3>{esc(e['feature'])} (PSI {_fmt(e['psi'])})</h3><table><tr><th>bucket</th><th>reference</th>"
                f"<th>this day</th><th></th></tr>{lines}</table>")

    detail = "\n".join(bars(e) for e in sorted(entries, key=lambda e: -(e["excess"] or 0.0))[:top])
    ref = report.get("reference") or {}
    window = ref.get("window") or {}
    verdict = (f"<p class='verdict drift'>Drift: {len(report['drifting'])} more than {report['threshold']} above "
               f"their usual PSI: {esc(', '.join(report['drifting']))}</p>" if report["drift"]
               else f"<p class='verdict'>No drift: every PSI at most {report['threshold']} above its usual value.</p>")
    span = f"the training window {window['train_start']}..{window['train_end']}" if window else "the reference"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift {esc(report['ds'])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}} td.n{{text-align:right}}
tr.drift td{{background:#fde2e1}} .verdict.drift{{color:#b00}} .bar{{height:6px;margin:1px 0}}
.bar.ref{{background:#999}} .bar.cur{{background:#1f77b4}}</style></head><body>
<h1>Drift on {esc(report['ds'])}: {esc(str(report.get('model_name')))} v{esc(str(report.get('model_version')))}</h1>
{verdict}
<p>{report['rows']} rows against {esc(span)} ({ref.get('rows')} rows over {ref.get('days')} days,
run {esc(str(ref.get('run_id')))}); prediction reference: days {esc(str(ref.get('prediction_days')))}.
PSI = sum((a - e) ln(a / e)) over the buckets, shares floored at {report['epsilon']}; numeric features in
{ref.get('bins')} quantile bins of the reference, categorical ones by category (rare ones pooled, unseen ones
in their own bucket). "Usual": the 95th percentile of the training days' own PSI against the whole window
(a feature with one value per day, like the weekday, is far from the window on every day); a feature is
flagged when its PSI exceeds that by more than {report['threshold']}.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>usual PSI of a training day</th><th>PSI above usual</th><th>flag</th><th>null share (day / ref)</th><th>unseen share</th><th>rows</th></tr>
{rows}
</table>
<h2>Buckets of the top {top}</h2>
{detail}
</body></html>
"""
