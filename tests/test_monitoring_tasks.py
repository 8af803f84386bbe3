"""Monitoring of multiclass and regression models: the same code as the binary one, driven by the spec.

Small explicit-schema DataFrames on the session's Spark (``spark`` fixture), metrics checked against
numbers worked out by hand (and against a plain-Python reference for the pooled days); the policy on
lower-is-better metrics; drift of a categorical prediction (``predicted_class``); the spec's
``row_filter`` and a two-column ``key``. No MLflow: the binary tests cover the logging."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from lakeforge.lake import Lake
from lakeforge.monitoring import drift, evaluate, policy, store
from lakeforge.training.spec import ModelSpec, load_model_spec

CLASSES = ("sun", "rain", "fog")
# Rows of the city "skip" are outside the row filter: scored, never evaluated, not in drift.
MC = ModelSpec(source="tasks_mc", features="features/days", label="label_index", task="multiclass",
               classes=CLASSES, columns=lambda: (["temp"], ["prev"]), key=("city", "date"),
               row_filter="city <> 'skip'", name="weather_test", experiment="weather_test",
               promotion_metric="log_loss", retrain_max_drop=0.1)
REG = ModelSpec(source="tasks_reg", features="features/sales", label="units", task="regression",
                columns=lambda: (["price"], ["shop"]), key=("shop", "date"), row_filter="shop <> 'closed'",
                name="sales_test", experiment="sales_test", promotion_metric="rmse", retrain_max_drop=0.1)
M1, M2 = "2013-05-01", "2013-06-01"  # monthly partitions, as seattle_weather's


# -- multiclass ------------------------------------------------------------------------------------
def _mc_pred_schema():
    from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, StringType, StructField, StructType,
                                   TimestampType)

    return StructType([StructField("city", StringType()), StructField("date", StringType()),
                       StructField("prediction", IntegerType()), StructField("predicted_class", StringType()),
                       StructField("probability", DoubleType()), StructField("probabilities", ArrayType(DoubleType())),
                       StructField("model_name", StringType()), StructField("model_version", StringType()),
                       StructField("model_run_id", StringType()), StructField("scored_at", TimestampType()),
                       StructField("scoring_run_id", StringType()), StructField("ds", StringType())])


def _mc_feature_schema():
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    return StructType([StructField("city", StringType()), StructField("date", StringType()),
                       StructField("label_index", IntegerType()), StructField("temp", DoubleType()),
                       StructField("prev", StringType()), StructField("ds", StringType())])


def _mc_pred(city: str, date: str, probs: list[float], ds: str, version: str = "1"):
    k = max(range(len(probs)), key=lambda i: probs[i])
    return (city, date, k, CLASSES[k], probs[k], probs, "weather_test", version, f"run{version}", None, "s", ds)


# (city, date, label or None, probabilities); the predicted class is the most probable one.
MC_ROWS = {
    M1: [("A", "2013-05-01", 0, [0.7, 0.2, 0.1]),
         ("A", "2013-05-02", 1, [0.5, 0.4, 0.1]),     # wrong: predicted sun
         ("B", "2013-05-01", 1, [0.2, 0.6, 0.2]),
         ("B", "2013-05-02", 2, [0.1, 0.1, 0.8]),
         ("C", "2013-05-01", None, [0.1, 0.8, 0.1]),  # outcome not known yet: scored only
         ("skip", "2013-05-01", 0, [0.1, 0.1, 0.8])],  # outside the row filter: scored only
    M2: [("A", "2013-06-01", 2, [0.6, 0.1, 0.3]),     # wrong: predicted sun
         ("B", "2013-06-01", 2, [0.3, 0.2, 0.5]),
         ("A", "2013-06-02", 0, [0.9, 0.05, 0.05])],
}


@pytest.fixture(scope="module")
def mc_frames(spark):
    preds = [_mc_pred(c, d, p, ds) for ds, rows in MC_ROWS.items() for c, d, _, p in rows]
    feats = [(c, d, y, 10.0, "sun", ds) for ds, rows in MC_ROWS.items() for c, d, y, _ in rows]
    return spark.createDataFrame(preds, _mc_pred_schema()), spark.createDataFrame(feats, _mc_feature_schema())


def _mc_reference(rows) -> dict[str, float]:
    """Accuracy, support-weighted F1 and log loss of (label, probabilities) rows, written out plainly."""
    pairs = [(y, max(range(3), key=lambda i: p[i]), p) for y, p in rows]
    n = len(pairs)
    f1 = 0.0
    for k in range(3):
        tp = sum(1 for y, q, _ in pairs if y == k and q == k)
        support, predicted = sum(1 for y, _, _ in pairs if y == k), sum(1 for _, q, _ in pairs if q == k)
        if tp:
            f1 += support / n * 2 * (tp / predicted) * (tp / support) / (tp / predicted + tp / support)
    return {"accuracy": sum(1 for y, q, _ in pairs if y == q) / n, "f1": f1,
            "log_loss": -sum(math.log(p[y]) for y, _, p in pairs) / n}


def test_multiclass_day_metrics_by_hand(mc_frames):
    records = evaluate.evaluate_days(MC, *mc_frames)
    assert [(r["ds"], r["model_version"]) for r in records] == [(M1, "1"), (M2, "1")]
    may, june = records
    # May: 4 evaluated of 6 scored (one without its outcome, one outside the row filter); labels
    # 0 1 1 2, predicted 0 0 1 2: accuracy 3/4; F1 per class 2/3, 2/3, 1 weighted 1:2:1 = 3/4.
    assert may["rows_scored"] == 6 and may["rows_evaluated"] == 4
    assert may["accuracy"] == pytest.approx(0.75) and may["f1"] == pytest.approx(0.75)
    assert may["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.4) + math.log(0.6) + math.log(0.8)) / 4)
    # June: labels 2 2 0, predicted 0 2 0: accuracy 2/3; F1 2/3 (sun) and 2/3 (fog) = 2/3.
    assert june["rows_scored"] == june["rows_evaluated"] == 3
    assert june["accuracy"] == pytest.approx(2 / 3) and june["f1"] == pytest.approx(2 / 3)
    assert june["log_loss"] == pytest.approx(-(math.log(0.3) + math.log(0.5) + math.log(0.9)) / 3)
    assert sum(c["rows"] for c in may["confusion"]) == 4
    # Pooled months are exactly the metrics of all their rows together.
    union = [(y, p) for rows in MC_ROWS.values() for c, _, y, p in rows if y is not None and c != "skip"]
    expected = _mc_reference(union)
    assert expected["accuracy"] == pytest.approx(5 / 7) and expected["f1"] == pytest.approx((4 / 3 + 4 / 3 + 2.4) / 7)
    pooled = evaluate.pooled(records)
    for m in ("accuracy", "f1", "log_loss"):
        assert pooled[m] == pytest.approx(expected[m], rel=1e-12), m
        assert may[m] == pytest.approx(_mc_reference([(y, p) for c, _, y, p in MC_ROWS[M1]
                                                      if y is not None and c != "skip"])[m], rel=1e-12), m


def test_multiclass_performance_table_round_trip(mc_frames, tmp_path):
    lake = Lake(f"file://{tmp_path}/lake")
    records = evaluate.evaluate_days(MC, *mc_frames)
    assert set(evaluate.write_performance(lake, MC, records)) == {M1, M2}
    back = evaluate.read_performance(lake)
    assert [{k: r[k] for k in ("ds", "accuracy", "f1", "log_loss", "rows_scored")} for r in back] == \
        [{k: r[k] for k in ("ds", "accuracy", "f1", "log_loss", "rows_scored")} for r in records]
    assert evaluate.pooled(back) == evaluate.pooled(records)
    assert set(back[0]) == set(evaluate.schema("multiclass").names)
    assert "roc_auc" not in back[0] and "histogram" not in back[0]


def test_the_key_is_every_key_column(spark, mc_frames):
    """(city, date) identifies a row: an outcome of the same city on another day is not this row's."""
    preds, feats = mc_frames
    extra = spark.createDataFrame([_mc_pred("A", "2013-05-09", [0.1, 0.1, 0.8], M1)], _mc_pred_schema())
    (may, _) = evaluate.evaluate_days(MC, preds.unionByName(extra), feats)
    assert may["rows_scored"] == 7 and may["rows_evaluated"] == 4


# -- regression ------------------------------------------------------------------------------------
def _reg_schemas():
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

    preds = StructType([StructField("shop", StringType()), StructField("date", StringType()),
                        StructField("prediction", DoubleType()), StructField("model_name", StringType()),
                        StructField("model_version", StringType()), StructField("model_run_id", StringType()),
                        StructField("scored_at", TimestampType()), StructField("scoring_run_id", StringType()),
                        StructField("ds", StringType())])
    feats = StructType([StructField("shop", StringType()), StructField("date", StringType()),
                        StructField("units", DoubleType()), StructField("price", DoubleType()),
                        StructField("shop_kind", StringType()), StructField("ds", StringType())])
    return preds, feats


# (shop, label or None, prediction) per day; the key is (shop, date) with date = ds here.
REG_ROWS = {"2013-05-01": [("a", 3.0, 2.5), ("b", 5.0, 6.0), ("c", 4.0, 4.0), ("d", None, 9.0), ("closed", 100.0, 0.0)],
            "2013-05-02": [("a", 10.0, 8.0), ("b", 6.0, 7.0)]}


@pytest.fixture(scope="module")
def reg_frames(spark):
    pschema, fschema = _reg_schemas()
    preds = [(s, ds, p, "sales_test", "4", "run4", None, "s", ds) for ds, rows in REG_ROWS.items() for s, _, p in rows]
    feats = [(s, ds, y, 1.0, "x", ds) for ds, rows in REG_ROWS.items() for s, y, _ in rows]
    return spark.createDataFrame(preds, pschema), spark.createDataFrame(feats, fschema)


def test_regression_day_metrics_by_hand(reg_frames):
    first, second = evaluate.evaluate_days(REG, *reg_frames)
    # Day 1: errors -0.5, 1, 0 over y 3, 5, 4 (mean 4, total sum of squares 2).
    assert first["rows_scored"] == 5 and first["rows_evaluated"] == 3
    assert first["rmse"] == pytest.approx(math.sqrt(1.25 / 3)) and first["mae"] == pytest.approx(0.5)
    assert first["r2"] == pytest.approx(1 - 1.25 / 2)
    assert first["mean_label"] == pytest.approx(4.0) and first["mean_prediction"] == pytest.approx(12.5 / 3)
    # Day 2: errors -2, 1 over y 10, 6 (mean 8, SST 8).
    assert second["rmse"] == pytest.approx(math.sqrt(2.5)) and second["mae"] == pytest.approx(1.5)
    assert second["r2"] == pytest.approx(1 - 5 / 8)
    # Both days: y 3 5 4 10 6 (mean 5.6, SST 186 - 5 * 5.6²), SSE 6.25, SAE 4.5.
    both = evaluate.pooled([first, second])
    assert both["rmse"] == pytest.approx(math.sqrt(6.25 / 5)) and both["mae"] == pytest.approx(0.9)
    assert both["r2"] == pytest.approx(1 - 6.25 / (186 - 5 * 5.6 ** 2))
    assert set(evaluate.schema("regression").names) >= {"rmse", "mae", "r2", "sse", "sae", "sy", "syy"}


# -- the policy on lower-is-better metrics ---------------------------------------------------------
def test_policy_fires_when_a_lower_is_better_metric_rises(mc_frames, reg_frames):
    records = evaluate.evaluate_days(MC, *mc_frames)
    value = evaluate.pooled(records)["log_loss"]
    p = policy.RetrainPolicy(metric="log_loss", window_days=2, max_drop=0.05, drift_psi=0.25, drift_days=3)
    worse = policy.decide(records, [], value - 0.06, "1", p)  # the loss rose 0.06 above the holdout's
    assert worse.retrain and worse.trigger == "performance" and worse.performance["drop"] == pytest.approx(0.06)
    assert f"vs holdout {value - 0.06:.4f}: up 0.0600, more than the allowed 0.05" in worse.reason
    better = policy.decide(records, [], value + 0.5, "1", p)  # it fell: better than in training
    assert not better.retrain and "down 0.5000" in better.reason
    assert not policy.decide(records, [], value - 0.04, "1", p).retrain  # within the allowed rise
    # RMSE the same way.
    reg = evaluate.evaluate_days(REG, *reg_frames)
    rmse = evaluate.pooled(reg)["rmse"]
    pr = policy.RetrainPolicy(metric="rmse", window_days=2, max_drop=0.1, drift_psi=0.25, drift_days=3)
    assert policy.decide(reg, [], rmse - 0.2, "4", pr).retrain
    assert not policy.decide(reg, [], rmse + 0.2, "4", pr).retrain


def test_policy_for_a_spec_uses_its_promotion_metric():
    assert policy.RetrainPolicy.for_spec(MC).metric == "log_loss"
    assert policy.RetrainPolicy.for_spec(REG).metric == "rmse"
    default = policy.RetrainPolicy.from_settings()
    assert policy.RetrainPolicy.for_spec(REG).window_days == default.window_days
    # A spec's own window and drop (a monthly table pools months; RMSE is in the label's units).
    own = policy.RetrainPolicy.for_spec(dataclasses.replace(REG, retrain_window=3, retrain_max_drop=0.0))
    assert (own.window_days, own.max_drop, own.drift_psi) == (3, 0.0, default.drift_psi)
    seattle = policy.RetrainPolicy.for_spec(load_model_spec("seattle_weather"))
    assert (seattle.metric, seattle.window_days, seattle.max_drop) == ("log_loss", 3, 0.25)


# -- drift of a categorical prediction -------------------------------------------------------------
@pytest.fixture(scope="module")
def mc_drift(spark):
    """A reference window of four days (sun 60% / rain 40% predicted, never fog) and three days:
    as usual / fog predicted for 30% (a class the reference never predicted) / as usual, with
    predictions of rows outside the row filter and of keys without a feature row, all fog."""
    rng = random.Random(11)

    def row(city, date, ds):
        return (city, date, rng.randrange(3), rng.gauss(10, 3), rng.choice(["sun", "rain"]), ds)

    def probs(cls):
        p = [0.1, 0.1, 0.1]
        p[CLASSES.index(cls)] = 0.8
        return p

    ref_days = [f"2013-01-0{d}" for d in range(1, 5)]
    ref, ref_preds = [], []
    for i in range(400):
        ds = ref_days[i // 100]
        ref.append(row(f"c{i}", ds, ds))
        ref_preds.append(_mc_pred(f"c{i}", ds, probs("sun" if rng.random() < 0.6 else "rain"), ds, "2"))
    ref += [("skip", f"2013-01-0{d}", 0, 500.0, "snow", f"2013-01-0{d}") for d in range(1, 5)]  # left out
    days = {"2013-03-01": 0.0, "2013-03-02": 0.3, "2013-03-03": 0.0}
    feats, preds = [], []
    for ds, fog in days.items():
        for i in range(300):
            feats.append(row(f"c{i}", ds, ds))
            cls = "fog" if rng.random() < fog else ("sun" if rng.random() < 0.6 else "rain")
            preds.append(_mc_pred(f"c{i}", ds, probs(cls), ds, "2"))
        feats.append(("skip", ds, 0, 500.0, "snow", ds))
        preds.append(_mc_pred("skip", ds, probs("fog"), ds, "2"))  # outside the row filter
        preds += [_mc_pred(f"c{i}", "1999-01-01", probs("fog"), ds, "2") for i in range(50)]  # no such row
    profile = drift.build_profile(MC, spark.createDataFrame(ref, _mc_feature_schema()),
                                  spark.createDataFrame(ref_preds, _mc_pred_schema()), bins=5,
                                  meta={"model_name": "weather_test", "model_version": "2", "run_id": "run2"})
    reports = drift.drift_days(MC, spark.createDataFrame(feats, _mc_feature_schema()),
                               spark.createDataFrame(preds, _mc_pred_schema()), profile, threshold=0.25)
    return profile, reports


def test_categorical_prediction_profile(mc_drift):
    profile, _ = mc_drift
    assert profile["rows"] == 400 and profile["days"] == 4  # the "skip" rows are outside the row filter
    assert set(profile["categorical"]["prev"]["categories"]) == {"sun", "rain"}  # no "snow": filtered out
    assert max(profile["numeric"]["temp"]["edges"]) < 100  # no 500 from the filtered rows
    pred = profile["prediction"]
    assert pred["rows"] == 400 and "edges" not in pred and pred["categories"][0] == "sun"
    assert set(pred["categories"]) == {"sun", "rain"} and pred["shares"]["sun"] == pytest.approx(0.6, abs=0.07)


def test_unseen_predicted_class_drifts(mc_drift, tmp_path):
    _, reports = mc_drift
    assert sorted(reports) == ["2013-03-01", "2013-03-02", "2013-03-03"]
    quiet, fog = reports["2013-03-01"], reports["2013-03-02"]
    # Only the 300 rows of the day count: not the row outside the filter nor the keys without a row.
    assert quiet["prediction"]["rows"] == 300 and quiet["rows"] == 300
    assert quiet["prediction"]["unseen_share"] == 0 and not quiet["drift"]
    assert fog["prediction"]["kind"] == "prediction"
    assert fog["prediction"]["unseen_share"] == pytest.approx(0.3, abs=0.06)
    assert fog["drifting"] == ["__prediction__"] and fog["prediction"]["excess"] > 0.25
    assert {b["bucket"] for b in fog["prediction"]["buckets"]} == {"sun", "rain", "__unseen__"}
    lake = Lake(f"file://{tmp_path}/lake")
    uris = drift.write_reports(lake, reports)
    assert uris["2013-03-02"].endswith("monitoring/drift/ds=2013-03-02/report.html")
    html = lake.read_bytes(f"{store.DRIFT}/ds=2013-03-02/{drift.REPORT_HTML}").decode()
    assert "300 rows against" in html and "__unseen__" in html and "DRIFT" in html
    assert drift.summary(fog)["prediction_excess"] == fog["prediction"]["excess"]


def test_profile_of_a_fitted_multiclass_model(spark):
    """The reference prediction of a real model is its predicted class, named from the spec's classes
    (``lakeforge.scoring.outputs.model_outputs``, as batch scoring writes it)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from lakeforge.scoring.outputs import model_outputs

    rng = random.Random(5)
    rows = []
    for i in range(120):
        y = i % 3
        rows.append((f"c{i}", "2013-01-01", y, y * 5 + rng.gauss(0, 1), "sun", f"2013-01-0{1 + i % 2}"))
    feats = spark.createDataFrame(rows, _mc_feature_schema())
    model = Pipeline(stages=[VectorAssembler(inputCols=["temp"], outputCol="x"),
                             LogisticRegression(featuresCol="x", labelCol="label_index", maxIter=20)]).fit(feats)
    profile = drift.build_profile(MC, feats, model_outputs(MC, model, feats, ["ds"]), bins=5)
    assert set(profile["prediction"]["categories"]) == set(CLASSES) and profile["prediction"]["rows"] == 120


def test_regression_prediction_is_numeric(spark, reg_frames):
    preds, feats = reg_frames
    profile = drift.build_profile(REG, feats, preds, bins=4)
    assert profile["rows"] == 6 and profile["prediction"]["rows"] == 7  # "closed" rows left out of the features
    assert "edges" in profile["prediction"] and profile["categorical"]["shop"]
    reports = drift.drift_days(REG, feats, preds, profile, threshold=0.25)
    assert reports["2013-05-01"]["prediction"]["rows"] == 4  # the "closed" shop's prediction is not counted
