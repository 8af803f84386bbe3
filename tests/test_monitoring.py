"""Monitoring: evaluation as outcomes arrive, drift, the retraining policy, MLflow logging, the summary.

Small explicit-schema DataFrames on the session's Spark (``spark`` fixture); MLflow on a real SQLite
store in the test's folder (a server costs ~30 s per module; the training tests cover the server)."""

from __future__ import annotations

import math
import random

import pytest

from lakeforge.lake import Lake
from lakeforge.monitoring import drift, evaluate, policy, store
from lakeforge.monitoring.__main__ import main as summary_main
from lakeforge.training.evaluate import holdout_metrics
from lakeforge.training.spec import ModelSpec
from tests.helpers import environ

DAYS = ["2013-02-01", "2013-02-02"]
NUMERIC = ["num_a", "num_b", "num_zero", "num_shift", "num_day"]
CATEGORICAL = ["cat_a", "cat_b"]
# nycflights' shape (binary, flight_key, tail-less flights left out) over the test's columns; its
# name, experiment and promotion metric come from the settings, as nycflights' do.
SPEC = ModelSpec(source="nycflights", features="features/flights", label="label", task="binary",
                 columns=lambda: (NUMERIC, CATEGORICAL), key=("flight_key",), row_filter="tailnum IS NOT NULL")


def _pred_schema():
    from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType, TimestampType

    return StructType([StructField("flight_key", StringType()), StructField("ds", StringType()),
                       StructField("probability", DoubleType()), StructField("decision", BooleanType()),
                       StructField("model_name", StringType()), StructField("model_version", StringType()),
                       StructField("model_run_id", StringType()), StructField("scored_at", TimestampType()),
                       StructField("scoring_run_id", StringType())])


def _feature_schema():
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    return StructType([StructField("flight_key", StringType()), StructField("ds", StringType()),
                       StructField("tailnum", StringType()), StructField("label", IntegerType()),
                       StructField("label_reason", StringType()),
                       *[StructField(c, DoubleType()) for c in NUMERIC],
                       *[StructField(c, StringType()) for c in CATEGORICAL]])


def _feature_row(rng: random.Random, key: str, ds: str, label: int, shift: float = 0.0, unseen: float = 0.0,
                 tail: bool = True, day_value: float = 0.0):
    return (key, ds, f"N{rng.randint(1, 50)}" if tail else None, label, "late" if label else "on_time",
            rng.gauss(0, 1), rng.gauss(5, 2) if rng.random() > 0.2 else None,  # num_b: 20% missing
            0.0 if rng.random() < 0.6 else rng.expovariate(1.0),  # a point mass at 0
            rng.gauss(0, 1) + shift, day_value,  # num_day: one value per day, like the weekday
            "ZZZ" if rng.random() < unseen else rng.choice(["AA", "AA", "B6", "DL", "UA"]),
            rng.choice(["EWR", "JFK", "LGA"]))


_ROWS: dict[str, list] = {}


@pytest.fixture(scope="module")
def scored(spark):
    """Two days of predictions (v1 scored the first, v2 the second) and their outcomes; a few
    tail-less flights (scored, never evaluated)."""
    rng = random.Random(17)
    preds, feats = [], []
    for i, ds in enumerate(DAYS):
        for j in range(300):
            key, label = f"{ds}-{j}", int(rng.random() < 0.3)
            p = min(max(rng.betavariate(2, 5) + 0.25 * label, 0.0), 1.0)
            tail = j % 50 != 7
            preds.append((key, ds, p, p >= 0.5, "flight_delay", str(i + 1), f"run{i + 1}", None, "score-1"))
            feats.append(_feature_row(rng, key, ds, label, tail=tail))
    _ROWS.update(preds=preds, feats=feats)
    return spark.createDataFrame(preds, _pred_schema()), spark.createDataFrame(feats, _feature_schema())


def test_day_metrics_equal_the_training_metrics(scored):
    from pyspark.sql import functions as F

    predictions, features = scored
    records = evaluate.evaluate_days(SPEC, predictions, features)
    assert [(r["ds"], r["model_version"]) for r in records] == [(DAYS[0], "1"), (DAYS[1], "2")]
    joined = predictions.join(features.where(F.col("tailnum").isNotNull()), ["flight_key", "ds"])
    for rec in records:
        day = joined.where(F.col("ds") == rec["ds"]).withColumn("p", F.col("probability"))
        expected, _ = holdout_metrics(day)
        assert rec["rows_scored"] == 300 and rec["rows_evaluated"] == expected["rows"] == 294
        for m in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "positive_rate", "mean_prediction"):
            assert rec[m] == pytest.approx(expected[m], rel=1e-9, abs=1e-12), m
        decisions = sum(1 for p, f in zip(_ROWS["preds"], _ROWS["feats"]) if p[1] == rec["ds"] and p[3] and f[2])
        assert rec["predicted_positives"] == decisions and rec["decision_rate"] == decisions / 294
    # Pooled days are exact: the same as the training metrics over both days' rows.
    both, _ = holdout_metrics(joined.withColumn("p", F.col("probability")))
    for m in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"):
        assert evaluate.pooled(records)[m] == pytest.approx(both[m], rel=1e-9), m
    # Pooling adds the histograms bin by bin (numpy): the very floats of one record holding both days.
    merged: dict[int, list] = {}
    for rec in records:
        for h in rec["histogram"]:
            acc = merged.setdefault(h["bin"], [0, 0, 0.0])
            acc[0], acc[1], acc[2] = acc[0] + h["rows"], acc[1] + h["positives"], acc[2] + h["sum_p"]
    one = {k: sum(r[k] for r in records) for k in evaluate.BINARY_SUMS}
    one["histogram"] = [{"bin": b, "rows": a[0], "positives": a[1], "sum_p": a[2]} for b, a in sorted(merged.items())]
    assert evaluate.pooled(records) == {**evaluate.metrics_of(one), "log_loss": one["log_loss_sum"] / 588,
                                        "brier": one["brier_sum"] / 588, "decision_rate": one["predicted_positives"] / 588}


def test_one_class_day_has_no_auc_but_the_rest(spark):
    preds = spark.createDataFrame([("k1", DAYS[0], 0.2, False, "m", "1", "r", None, "s"),
                                   ("k2", DAYS[0], 0.4, False, "m", "1", "r", None, "s")], _pred_schema())
    feats = spark.createDataFrame([("k1", DAYS[0], "N1", 0, "x", 0.0, 0.0, 0.0, 0.0, 0.0, "AA", "EWR"),
                                   ("k2", DAYS[0], "N2", 0, "x", 0.0, 0.0, 0.0, 0.0, 0.0, "AA", "EWR")], _feature_schema())
    (rec,) = evaluate.evaluate_days(SPEC, preds, feats)
    assert rec["roc_auc"] is None and rec["pr_auc"] is None
    assert rec["positive_rate"] == 0 and rec["brier"] == pytest.approx((0.04 + 0.16) / 2)


def test_performance_table_round_trip(scored, tmp_path):
    lake = Lake(f"file://{tmp_path}/lake")
    records = evaluate.evaluate_days(SPEC, *scored)
    uris = evaluate.write_performance(lake, SPEC, records, {"dag_run_id": "test"})
    assert set(uris) == set(DAYS)
    back = evaluate.read_performance(lake)
    assert [(r["ds"], r["model_version"], r["rows_scored"]) for r in back] == [(DAYS[0], "1", 300), (DAYS[1], "2", 300)]
    assert back[0]["roc_auc"] == records[0]["roc_auc"] and evaluate.pooled(back) == evaluate.pooled(records)
    # A rerun replaces the day whole.
    evaluate.write_performance(lake, SPEC, records[:1])
    assert len(evaluate.read_performance(lake, [DAYS[0]])) == 1


# -- drift -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drift_data(spark):
    """A reference window of ten days, and four days: one feature shifted / nothing / an unseen
    category / the predictions shifted. ``num_day`` has one value per day (0..9 in the window, 4 on
    every later day): far from the window on every day, the training days too, never drift."""
    rng = random.Random(3)
    ref_days = [f"2013-01-{d:02d}" for d in range(1, 11)]
    ref = [_feature_row(rng, f"r{i}", ref_days[i // 300], 0, day_value=float(i // 300)) for i in range(3000)]
    ref += [_feature_row(rng, f"t{i}", "2013-01-01", 0, shift=9.0, tail=False) for i in range(300)]  # not counted
    days = {"2013-03-01": {"shift": 1.0}, "2013-03-02": {}, "2013-03-03": {"unseen": 0.1}, "2013-03-04": {}}
    rows, preds = [], []
    for ds, kw in days.items():
        for i in range(1000):
            rows.append(_feature_row(rng, f"{ds}-{i}", ds, 0, day_value=4.0, **kw))
            p = rng.betavariate(2, 5) + (0.3 if ds == "2013-03-04" else 0.0)
            preds.append((f"{ds}-{i}", ds, min(p, 1.0), p >= 0.5, "flight_delay", "3", "run3", None, "s"))
    ref_preds = spark.createDataFrame([(f"r{i}", ref_days[i // 300], rng.betavariate(2, 5), False, "flight_delay", "3",
                                        "run3", None, "s") for i in range(3000)], _pred_schema())
    profile = drift.build_profile(SPEC, spark.createDataFrame(ref, _feature_schema()), ref_preds,
                                  bins=10, meta={"model_name": "flight_delay", "model_version": "3", "run_id": "run3"})
    current = spark.createDataFrame(rows, _feature_schema())
    return profile, drift.drift_days(SPEC, current, spark.createDataFrame(preds, _pred_schema()), profile,
                                     threshold=0.25)


def test_reference_profile(drift_data):
    profile, _ = drift_data
    assert profile["rows"] == 3000 and profile["days"] == 10  # tail-less flights left out, as in training
    a = profile["numeric"]["num_a"]
    assert len(a["edges"]) == 9 and sum(a["shares"].values()) == pytest.approx(1)
    assert all(s == pytest.approx(0.1, abs=0.02) for s in a["shares"].values())
    assert profile["numeric"]["num_b"]["shares"]["null"] == pytest.approx(0.2, abs=0.03)
    # A point mass is one bin (repeated quantiles merged), not five empty ones.
    zero = profile["numeric"]["num_zero"]
    assert zero["shares"]["0"] == pytest.approx(0.6, abs=0.03) and len(zero["edges"]) < 9
    assert sorted(profile["categorical"]["cat_a"]["categories"]) == ["AA", "B6", "DL", "UA"]
    assert profile["prediction"]["rows"] == 3000 and len(profile["prediction"]["edges"]) == 9
    # A training day's own PSI against the window: sampling noise for most, huge for num_day.
    assert profile["numeric"]["num_a"]["usual_psi"] < 0.1 and profile["numeric"]["num_day"]["usual_psi"] > 5


def test_shift_in_one_feature_flags_exactly_that_feature(drift_data):
    _, reports = drift_data
    assert sorted(reports) == ["2013-03-01", "2013-03-02", "2013-03-03", "2013-03-04"]
    assert reports["2013-03-01"]["drifting"] == ["num_shift"]
    by_name = {e["feature"]: e for e in reports["2013-03-01"]["features"]}
    assert by_name["num_shift"]["excess"] > 0.25
    assert all(e["excess"] < 0.1 for name, e in by_name.items() if name != "num_shift")
    # Its raw PSI is as large as on every training day: not drift.
    assert by_name["num_day"]["psi"] > 5 and not by_name["num_day"]["drift"]
    assert reports["2013-03-01"]["features"][0]["feature"] == "num_shift"  # sorted by PSI
    assert reports["2013-03-02"]["drifting"] == [] and not reports["2013-03-02"]["drift"]
    assert reports["2013-03-04"]["drifting"] == ["__prediction__"]
    assert reports["2013-03-02"]["prediction"]["excess"] < 0.1


def test_unseen_category_is_its_own_bucket(drift_data):
    _, reports = drift_data
    day = reports["2013-03-03"]
    cat = next(e for e in day["features"] if e["feature"] == "cat_a")
    assert cat["unseen_share"] == pytest.approx(0.1, abs=0.02)
    # Its reference share is 0, floored at epsilon: (a - eps) * ln(a / eps) alone is about 0.8.
    expected = (cat["unseen_share"] - drift.EPSILON) * math.log(cat["unseen_share"] / drift.EPSILON)
    assert cat["psi"] > expected * 0.9 and day["drifting"] == ["cat_a"]


def test_reports_published_and_the_summary_prints_them(drift_data, scored, tmp_path, capsys):
    _, reports = drift_data
    lake = Lake(f"file://{tmp_path}/lake")
    uris = drift.write_reports(lake, reports)
    html = lake.read_bytes(f"{store.DRIFT}/ds=2013-03-01/{drift.REPORT_HTML}").decode()
    assert "num_shift" in html and "DRIFT" in html and "<script" not in html
    assert html.index("num_shift") < html.index("num_a")  # sorted by PSI
    assert drift.read_report(lake, "2013-03-01")["drifting"] == ["num_shift"]
    assert uris["2013-03-03"].endswith("monitoring/drift/ds=2013-03-03/report.html")
    evaluate.write_performance(lake, SPEC, evaluate.evaluate_days(SPEC, *scored))
    assert summary_main(["--days", "5", "--lake", lake.root_uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["day", "version", "scored", "evaluated"]
    assert "2013-02-02  2" in out and "300" in out  # evaluation rows
    row = next(line for line in lines if line.startswith("2013-03-01"))
    assert "DRIFT" in row and "num_shift" in row
    assert "2013-03-02" in out and "2013-02-01" not in out  # the newest 5 days only
    assert uris["2013-03-01"] in out


# -- policy (pure) ---------------------------------------------------------------------------------
def _perf(ds: str, version: str = "1", hi=(3, 1), lo=(1, 3)) -> dict:
    """A day whose ROC AUC is exactly 0.75 by default: (pos, neg) rows at p 0.9 and at p 0.1."""
    hist = [{"bin": 1000, "rows": sum(lo), "positives": lo[0], "sum_p": 0.1 * sum(lo)},
            {"bin": 9000, "rows": sum(hi), "positives": hi[0], "sum_p": 0.9 * sum(hi)}]
    rec = {"ds": ds, "model_version": version, "rows_evaluated": sum(hi) + sum(lo), "positives": hi[0] + lo[0],
           "predicted_positives": sum(hi), "log_loss_sum": 4.0, "brier_sum": 1.0, "histogram": hist}
    return {**rec, **evaluate.metrics_of(rec)}


def _days(n: int, start: int = 1) -> list[str]:
    return [f"2013-04-{d:02d}" for d in range(start, start + n)]


P = policy.RetrainPolicy(metric="roc_auc", window_days=7, max_drop=0.03, drift_psi=0.25, drift_days=3)


def test_policy_performance_boundaries():
    week = [_perf(d) for d in _days(7)]
    assert evaluate.pooled(week)["roc_auc"] == 0.75
    at = policy.decide(week, [], 0.78, "1", P)  # a drop of exactly 0.03 is not "more than"
    assert not at.retrain and "within 0.03" in at.reason
    over = policy.decide(week, [], 0.7801, "1", P)
    assert over.retrain and over.trigger == "performance" and over.as_of == "2013-04-07"
    assert "roc_auc 0.7500 over the last 7 evaluated days (2013-04-01..2013-04-07) vs holdout 0.7801" in over.reason
    short = policy.decide(week[:6], [], 0.9, "1", P)
    assert not short.retrain and "6 of 7 evaluated days" in short.reason
    # Another version's days do not count; nor does a day without evaluated rows.
    other = policy.decide(week[:6] + [_perf("2013-04-07", "2")], [], 0.9, "1", P)
    assert not other.retrain
    # The trailing window is the newest 7 days: an old bad day has left it.
    bad_then_good = [_perf("2013-03-31", hi=(1, 3), lo=(3, 1))] + week
    assert policy.decide(bad_then_good, [], 0.76, "1", P).retrain is False
    # Lower is better for log loss: 4 / 8 = 0.5 per row.
    ll = policy.RetrainPolicy(metric="log_loss", window_days=7, max_drop=0.05, drift_psi=0.25, drift_days=3)
    assert not policy.decide(week, [], 0.45, "1", ll).retrain
    assert policy.decide(week, [], 0.449, "1", ll).retrain
    # Fired already on these days: not again until the window has moved past that day.
    assert not policy.decide(week, [], 0.9, "1", P, last_fired="2013-04-07").retrain
    assert policy.decide(week + [_perf(d) for d in _days(7, 8)], [], 0.9, "1", P, last_fired="2013-04-07").retrain


def _drift_day(ds: str, psi: float, version: str = "1") -> dict:
    return {"ds": ds, "model_version": version, "max_excess": psi, "prediction_excess": 0.01, "drift": psi > 0.25,
            "drifting": [], "top": [("wxc_precip", psi), ("num_a", 0.02)]}


def test_policy_drift_boundaries():
    days = _days(4)
    at = [_drift_day(d, 0.25) for d in days]
    assert not policy.decide([], at, None, "1", P).retrain  # exactly the threshold is not above it
    two = [_drift_day(days[0], 0.9), _drift_day(days[1], 0.1)] + [_drift_day(d, 0.26) for d in days[2:]]
    d2 = policy.decide([], two, None, "1", P)
    assert not d2.retrain and "2 of 3 consecutive" in d2.reason
    three = [_drift_day(days[0], 0.1)] + [_drift_day(d, 0.2501) for d in days[1:]]
    d3 = policy.decide([], three, None, "1", P)
    assert d3.retrain and d3.trigger == "drift" and d3.drift["streak"] == days[1:]
    assert "2013-04-02..2013-04-04" in d3.reason and "wxc_precip 0.25" in d3.reason
    assert d3.extra()["trigger"] == "drift"
    # Only the champion's days: a streak of version 2 does not fire for version 1.
    assert not policy.decide([], [_drift_day(d, 0.9, "2") for d in days], None, "1", P).retrain
    # Both at once.
    both = policy.decide([_perf(d) for d in _days(7)], three, 0.9, "1", P)
    assert both.trigger == "performance+drift" and both.reason.startswith("retrain v1: roc_auc")


def test_policy_leaves_out_the_days_the_champion_trained_on():
    """The first champion scores every pending day, its training days too: there it looks better
    than it is (and drifts from nothing). Those days are not evidence, and the reason says so."""
    week = [_perf(d) for d in _days(7)]  # AUC 0.75 each, holdout 0.9: fires on its own
    assert policy.decide(week, [], 0.9, "1", P).retrain
    seen = policy.decide(week, [], 0.9, "1", P, trained_through="2013-04-03")
    assert not seen.retrain and "4 of 7 evaluated days" in seen.reason
    assert "3 day(s) of its own training window left out (2013-04-01..2013-04-03)" in seen.reason
    assert seen.performance["days"] == _days(4, 4) and seen.performance["trained_on_days_left_out"] == 3
    streak = [_drift_day(d, 0.9) for d in _days(4)]
    assert policy.decide([], streak, None, "1", P).retrain
    short = policy.decide([], streak, None, "1", P, trained_through="2013-04-02")
    assert not short.retrain and short.drift["streak"] == _days(2, 3)
    # Days after the window count as before.
    later = policy.decide(week + [_perf(d) for d in _days(7, 8)], [], 0.9, "1", P, trained_through="2013-04-07")
    assert later.retrain and later.performance["days"] == _days(7, 8)


def test_policy_on_real_reports(drift_data):
    _, reports = drift_data
    p = policy.RetrainPolicy(drift_days=2, drift_psi=0.25)
    as_reports = [{**r, "model_version": "3"} for r in reports.values()]
    # 03-03 (unseen category) and 03-04 (predictions) drift in a row; 03-02 broke the first streak.
    d = policy.decide([], as_reports, None, "3", p)
    assert d.retrain and d.drift["streak"] == ["2013-03-03", "2013-03-04"]
    assert "cat_a" in d.reason and "__prediction__" in d.reason
    summaries = [drift.summary(r) for r in reports.values()]
    assert policy.decide([], summaries, None, "3", p).drift["streak"] == d.drift["streak"]


# -- MLflow ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with environ({"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                  "LAKEFORGE_MLFLOW_ARTIFACT_ROOT": str(root / "artifacts")}):
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        client = store.mlflow_client()
        exp = client.create_experiment("flight_delay", artifact_location=str(root / "artifacts" / "flight_delay"))
        client.create_registered_model("flight_delay")
        window = {"lakeforge.train_start": "2013-01-01", "lakeforge.train_end": "2013-01-02",
                  "lakeforge.holdout_start": "2013-01-03", "lakeforge.holdout_end": "2013-01-03"}
        for v, auc in (("1", 0.74), ("2", 0.76)):
            run = client.create_run(exp)
            client.log_metric(run.info.run_id, "roc_auc", auc)
            client.set_terminated(run.info.run_id)
            mv = client.create_model_version("flight_delay", str(root / "model"), run_id=run.info.run_id, tags=window)
            assert str(mv.version) == v
        yield client


def test_the_plot_shows_what_the_lake_holds_once_the_records_are_published(scored, tmp_path, monkeypatch):
    """``monitor_days`` draws the plot before publishing (while the drift is computed):
    ``plot_history`` must be exactly what ``read_performance`` gives once the records are
    published, the newest ``PLOT_DAYS`` days, a rescored day's new record in place of its old one."""
    lake = Lake(f"file://{tmp_path}/lake")
    records = evaluate.evaluate_days(SPEC, *scored)
    assert len({r["ds"] for r in records}) >= 2
    first, rest = [r for r in records if r["ds"] == records[0]["ds"]], [r for r in records if r["ds"] != records[0]["ds"]]
    evaluate.write_performance(lake, SPEC, [{**r, "roc_auc": 0.123} for r in first])  # an older score of day 1
    assert evaluate.plot_history(lake, []) == evaluate.read_performance(lake)
    monkeypatch.setattr(evaluate, "PLOT_DAYS", 2)
    for new in (rest, records):
        expected = evaluate.plot_history(lake, new)
        evaluate.write_performance(lake, SPEC, new)
        published = evaluate.read_performance(lake)
        assert expected == [r for r in published if r["ds"] in sorted({q["ds"] for q in published})[-2:]]
    assert 0.123 not in [r["roc_auc"] for r in evaluate.read_performance(lake)]


def test_mlflow_monitoring_runs_and_profile(mlflow_store, scored, drift_data, tmp_path):
    client = mlflow_store
    lake = Lake(f"file://{tmp_path}/lake")
    records = evaluate.evaluate_days(SPEC, *scored)
    evaluate.write_performance(lake, SPEC, records)
    runs = evaluate.log_performance(lake, SPEC, records)
    assert evaluate.log_performance(lake, SPEC, records) == runs  # found again by its tag, not duplicated
    exp = client.get_experiment_by_name("flight_delay-monitoring")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(runs["2"])
    assert run.data.tags[store.VERSION_TAG] == "2" and run.data.tags[store.MODEL_TAG] == "flight_delay"
    history = client.get_metric_history(runs["1"], "roc_auc")  # logged twice, the same values: stored once
    assert [m.step for m in history] == [store.day_step(DAYS[0])] and history[0].value == records[0]["roc_auc"]
    assert history[0].timestamp == store.day_timestamp_ms(DAYS[0])
    assert "plots/performance.png" in {a.path for a in client.list_artifacts(runs["2"], "plots")}
    # Drift metrics go to the same run; the reference profile to the version's training run.
    profile, reports = drift_data
    drift_runs = drift.log_drift(SPEC, {ds: {**r, "model_version": "2"} for ds, r in reports.items()}, lake)
    assert drift_runs == {"2": runs["2"]}
    assert len(client.get_metric_history(runs["2"], "drift_max_excess_psi")) == 4
    assert drift.load_reference_profile(client, "flight_delay", "2") is None
    client.log_dict(store.version_run_id(client, "flight_delay", "2"), profile, store.PROFILE_ARTIFACT)
    assert drift.load_reference_profile(client, "flight_delay", "2") == profile
    # Stored once: later runs read it back without Spark or the training data.
    assert drift.ensure_reference_profile(None, lake, SPEC, "flight_delay", "2") == profile
    assert store.holdout_metrics(client, "flight_delay", "1")["roc_auc"] == 0.74


def test_a_prefetched_profile_is_taken_once(mlflow_store, drift_data, tmp_path, monkeypatch):
    """The scoring job reads the version's profile while its JVM starts (``monitor.prepare``):
    ``ensure_reference_profile`` takes that answer without asking MLflow again, once; a failed
    prefetch is asked again (and fails there, with the real error, if it still fails)."""
    client = mlflow_store
    lake = Lake(f"file://{tmp_path}/lake")
    profile, _ = drift_data
    # A model of its own: the other tests' versions keep their profiles (or their lack of one).
    run = client.create_run(client.get_experiment_by_name("flight_delay").experiment_id)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("prefetch_test")
    client.create_model_version("prefetch_test", str(tmp_path / "model"), run_id=run.info.run_id)
    client.log_dict(run.info.run_id, profile, store.PROFILE_ARTIFACT)
    real = drift.load_reference_profile
    asked = []

    def counted(*args):
        asked.append(args[1:])
        return real(*args)

    monkeypatch.setattr(drift, "load_reference_profile", counted)
    drift.prefetch_reference_profile("prefetch_test", "1")
    assert drift.ensure_reference_profile(None, lake, SPEC, "prefetch_test", "1") == profile
    assert asked == [("prefetch_test", "1")]  # the prefetch's one question
    assert drift.ensure_reference_profile(None, lake, SPEC, "prefetch_test", "1") == profile
    assert asked == [("prefetch_test", "1")] * 2  # taken once: the next call asks itself

    failures = iter([OSError("MLflow hiccup")])

    def flaky(*args):
        for exc in failures:
            raise exc
        return counted(*args)

    monkeypatch.setattr(drift, "load_reference_profile", flaky)
    drift.prefetch_reference_profile("prefetch_test", "1")
    assert drift.ensure_reference_profile(None, lake, SPEC, "prefetch_test", "1") == profile
    assert len(asked) == 3  # the failed prefetch, then the caller's own question


def test_day_versions_come_from_the_manifests_read():
    from lakeforge.monitoring.monitor import day_versions

    manifests = {"2013-01-03": {"model": {"name": "flight_delay", "version": 3}},
                 "2013-01-04": {"model": {"name": "flight_delay", "version": "4"}}}
    assert day_versions(manifests, ["2013-01-03", "2013-01-04"]) == {"2013-01-03": ("flight_delay", "3"),
                                                                    "2013-01-04": ("flight_delay", "4")}
    # A manifest without the model (a hand-made partition): the versions come from the evaluation.
    assert day_versions({**manifests, "2013-01-05": {"files": []}}, ["2013-01-03", "2013-01-05"]) is None
    assert day_versions(manifests, ["2013-01-06"]) is None


def test_reference_profile_and_monitor_days_on_the_lake(mlflow_store, spark, tmp_path, monkeypatch, caplog):
    """The profile from the published features of v1's training window (its version tags) and its
    predictions on its holdout day by a real fitted Spark model, logged on its run and read back;
    then ``monitor_days`` over published predictions (each day's predictions manifest read once)
    and the retraining decision from the tables."""
    from collections import Counter

    import pyarrow as pa
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from lakeforge.publish import MANIFEST, PartitionFile, publish_partition

    lake = Lake(f"file://{tmp_path}/lake")
    rng = random.Random(5)
    schema = pa.schema([(f.name, pa.string() if f.dataType.typeName() == "string" else
                         pa.int32() if f.name == "label" else pa.float64())
                        for f in _feature_schema().fields if f.name != "ds"])
    rows = {}
    for ds, n in (("2013-01-01", 200), ("2013-01-02", 200), ("2013-01-03", 100), ("2013-01-04", 100)):
        rows[ds] = [dict(zip(schema.names, (r[0], *r[2:]))) for r in
                    (_feature_row(rng, f"{ds}-{i}", ds, int(rng.random() < 0.3)) for i in range(n))]
        publish_partition(lake, SPEC.features, f"ds={ds}",
                          [PartitionFile("part-0.parquet", store.parquet_bytes(rows[ds], schema), {"rows": n})])
    train = spark.createDataFrame([(*[r[c] for c in ("num_a", "num_shift")], r["label"]) for r in rows["2013-01-01"]],
                                  "num_a double, num_shift double, label int")
    model = Pipeline(stages=[VectorAssembler(inputCols=["num_a", "num_shift"], outputCol="x", handleInvalid="keep"),
                             LogisticRegression(featuresCol="x", labelCol="label", maxIter=5)]).fit(train)
    profile = drift.ensure_reference_profile(spark, lake, SPEC, "flight_delay", "1", model=model)
    assert profile["rows"] == 400 - sum(r["tailnum"] is None for d in ("2013-01-01", "2013-01-02") for r in rows[d])
    assert profile["window"] == {"train_start": "2013-01-01", "train_end": "2013-01-02"}
    assert profile["prediction_days"] == ["2013-01-03", "2013-01-03"] and profile["prediction"]["rows"] == 100
    assert profile["model_version"] == "1" and set(profile["numeric"]) == set(NUMERIC)
    # Stored on the version's run; the next call reads it (no Spark needed).
    assert drift.load_reference_profile(mlflow_store, "flight_delay", "1") == profile
    assert drift.ensure_reference_profile(None, lake, SPEC, "flight_delay", "1") == profile

    # Two days scored by v1 (random probabilities: far below its holdout AUC of 0.74), one not scored.
    from lakeforge.monitoring.monitor import monitor_days, retraining_decision

    pschema = pa.schema([("flight_key", pa.string()), ("probability", pa.float64()), ("decision", pa.bool_()),
                         ("model_name", pa.string()), ("model_version", pa.string()), ("model_run_id", pa.string()),
                         ("scored_at", pa.timestamp("us", tz="UTC")), ("scoring_run_id", pa.string())])
    for ds in ("2013-01-03", "2013-01-04"):
        preds = [{"flight_key": r["flight_key"], "probability": rng.random(), "decision": False,
                  "model_name": "flight_delay", "model_version": "1", "model_run_id": "r", "scored_at": None,
                  "scoring_run_id": "s"} for r in rows[ds]]
        publish_partition(lake, SPEC.predictions, f"ds={ds}", [PartitionFile(
            "part-0.parquet", store.parquet_bytes(preds, pschema), {"rows": len(preds)})])
    manifest_reads: Counter[str] = Counter()
    read_bytes = lake.read_bytes

    def counting_read(rel: str) -> bytes:
        data = read_bytes(rel)
        if rel.startswith(f"{SPEC.predictions}/") and rel.endswith(f"/{MANIFEST}"):
            manifest_reads[rel] += 1
        return data

    monkeypatch.setattr(lake, "read_bytes", counting_read)
    out = monitor_days(spark, lake, SPEC, ["2013-01-03", "2013-01-04", "2013-01-05"], meta={"dag_run_id": "t"})
    # One read per scored day serves its files and its model version (day_versions).
    assert manifest_reads == {f"{SPEC.predictions}/ds={ds}/{MANIFEST}": 1 for ds in ("2013-01-03", "2013-01-04")}
    assert out["days"] == ["2013-01-03", "2013-01-04"] and out["skipped"] == ["2013-01-05"]
    assert [r["rows_evaluated"] for r in out["performance"]] == [100, 100]
    assert sorted(out["drift"]) == ["2013-01-03", "2013-01-04"] and out["drift"]["2013-01-03"]["prediction"]
    assert evaluate.read_performance(lake) == out["performance"]
    run_id = store.monitoring_run(mlflow_store, store.monitoring_experiment(mlflow_store, SPEC), "flight_delay", "1")
    steps = {m.step for m in mlflow_store.get_metric_history(run_id, "roc_auc")}
    assert {store.day_step("2013-01-03"), store.day_step("2013-01-04")} <= steps
    decision = retraining_decision(lake, SPEC, "1", policy.RetrainPolicy(window_days=2, drift_days=2))
    assert decision.retrain and decision.trigger.startswith("performance") and decision.performance["holdout"] == 0.74
    assert decision.as_of == "2013-01-04"

    # A short scoring run rehearses the evaluation on the latest day scored before its own.
    from lakeforge.monitoring.monitor import rehearse_evaluation

    rehearsed, evaluate_days = [], evaluate.evaluate_days
    monkeypatch.setattr(evaluate, "evaluate_days",
                        lambda spec, p, f, days: rehearsed.append(list(days)) or evaluate_days(spec, p, f, days))
    assert rehearse_evaluation(spark, lake, SPEC, ["2013-01-03"]) is None  # nothing scored before it
    assert rehearse_evaluation(spark, lake, SPEC, ["2013-01-05"]).result(timeout=120) > 0
    assert rehearse_evaluation(spark, lake, SPEC, ["2013-01-04", "2013-01-05"]).result(timeout=120) > 0
    assert rehearsed == [["2013-01-04"], ["2013-01-03"]]
    assert evaluate.read_performance(lake) == out["performance"]  # nothing written by a rehearsal

    def broken(*args):
        raise RuntimeError("no evaluation today")

    monkeypatch.setattr(evaluate, "evaluate_days", broken)
    with caplog.at_level("WARNING", logger="lakeforge.monitoring.monitor"):
        assert rehearse_evaluation(spark, lake, SPEC, ["2013-01-05"]).result(timeout=120) >= 0
    assert "rehearsing the evaluation on 2013-01-04 failed: no evaluation today" in caplog.text
