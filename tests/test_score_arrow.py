"""Batch scoring's LightGBM path (``lakeforge.scoring.arrow`` via ``score_flights.probabilities``):
the same probabilities, bit for bit, as the model's own ``transform`` (its pandas UDF), nulls,
NaN, unseen categories and integer columns included; booster and worker helpers; the job's Spark
conf (its Arrow batch size) and the Python workers' warm-up."""

from __future__ import annotations

import math
import random
import sys

import pytest


@pytest.fixture(scope="module", autouse=True)
def job_conf(spark):
    """The scoring job's own conf (``score_flights.SPARK_CONF``, as ``job_session`` sets it) on the
    shared session for this module; the session's values as they were afterwards."""
    from spark_jobs.score_flights import SPARK_CONF

    before = {key: spark.conf.get(key, None) for key in SPARK_CONF}
    for key, value in SPARK_CONF.items():
        spark.conf.set(key, value)
    yield SPARK_CONF
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


@pytest.fixture(scope="module")
def lgbm_model(spark):
    """A small fitted [StringIndexer, SparkLGBMClassifier] pipeline and its training frame."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer

    from lakeforge.training.lightgbm_spark import SparkLGBMClassifier

    rng = random.Random(7)
    rows = []
    for i in range(3000):
        a = rng.gauss(0, 1)
        cat = rng.choice(["x", "y", "z", None])
        n = rng.randint(0, 50)
        label = int(a + (cat == "x") + n / 50 + rng.gauss(0, 1) > 1.0)
        rows.append((f"k{i}", "2013-01-01", a if i % 17 else None, cat, n, label))
    df = spark.createDataFrame(rows, "flight_key string, ds string, a double, cat string, n int, label int")
    pipe = Pipeline(stages=[
        StringIndexer(inputCols=["cat"], outputCols=["cat_idx"], handleInvalid="keep"),
        SparkLGBMClassifier(featuresCols=["cat_idx", "a", "n"], labelCol="label", numWorkers=1,
                            lgbParams='{"n_estimators": 20, "num_leaves": 7, "seed": 1}'),
    ])
    return pipe.fit(df), df


def test_arrow_path_gives_the_models_own_probabilities(spark, lgbm_model):
    from pyspark.sql import functions as F

    from lakeforge.training.evaluate import with_probability
    from spark_jobs.score_flights import lightgbm_parts, probabilities

    model, df = lgbm_model
    assert lightgbm_parts(model) is not None
    extra = spark.createDataFrame([("u1", "2013-01-02", float("nan"), "never-seen", None, 0),
                                   ("u2", "2013-01-02", 1e30, None, 2**31 - 1, 1)], df.schema)
    scored_on = df.unionByName(extra).repartition(3)
    conf = dict(spark.conf.getAll)
    mine = {r["flight_key"]: r["p"] for r in probabilities(spark, model, scored_on, ["flight_key", "ds"]).collect()}
    assert dict(spark.conf.getAll) == conf  # scoring leaves the session's conf as it is
    theirs = {r["flight_key"]: r["p"] for r in
              with_probability(model.transform(scored_on)).select("flight_key", F.col("p").cast("double")).collect()}
    assert len(mine) == len(theirs) == 3002
    assert all(not math.isnan(p) and 0.0 <= p <= 1.0 for p in mine.values())
    assert mine == theirs  # exact


def test_other_models_score_through_their_transform(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from spark_jobs.score_flights import lightgbm_parts, probabilities

    df = spark.createDataFrame([(f"k{i}", "d", float(i % 5), i % 2) for i in range(40)],
                               "flight_key string, ds string, a double, label int")
    model = Pipeline(stages=[VectorAssembler(inputCols=["a"], outputCol="x"),
                             LogisticRegression(featuresCol="x", labelCol="label", maxIter=3)]).fit(df)
    assert lightgbm_parts(model) is None
    out = probabilities(spark, model, df, ["flight_key", "ds"])
    assert out.columns == ["flight_key", "ds", "p"] and out.count() == 40


def test_the_jobs_session_carries_its_arrow_batch_size(monkeypatch):
    from types import SimpleNamespace

    from spark_jobs import score_flights

    built, fake = {}, SimpleNamespace()
    monkeypatch.setattr("lakeforge.spark.session", lambda name, **kw: built.update(name=name, **kw) or fake)
    assert score_flights.job_session(input_bytes=123, partitions=4) is fake
    assert built == {"name": "score_flights", "input_bytes": 123, "partitions": 4, "conf": score_flights.SPARK_CONF}
    assert score_flights.SPARK_CONF == {"spark.sql.execution.arrow.maxRecordsPerBatch": "65536"}


def test_python_workers_warm_up_answers_its_seconds(spark, caplog):
    from spark_jobs import score_flights

    assert not hasattr(score_flights, "warm_s")  # no module state: the Future carries the time
    warm = score_flights.warm_python_workers(spark, files=2)
    assert 0 < warm.result(timeout=300)

    class Broken:
        @property
        def sparkContext(self):
            raise RuntimeError("no context")

    with caplog.at_level("WARNING", logger="lakeforge.scoring.job"):
        assert 0 <= score_flights.warm_python_workers(Broken(), files=2).result(timeout=60)
    assert "warming the Python workers failed: no context" in caplog.text


def test_lightgbm_import_hides_only_what_the_process_lacks(monkeypatch):
    from lakeforge.scoring import arrow

    monkeypatch.delitem(sys.modules, "lightgbm", raising=False)
    before = {m: sys.modules.get(m) for m in arrow._UNUSED_BY_PREDICT}
    lgb = arrow.import_lightgbm()
    assert hasattr(lgb, "Booster")
    # Nothing stays hidden: a module the process had is still there, one it lacked is importable.
    assert all(sys.modules.get(m) is before[m] or m not in sys.modules for m in arrow._UNUSED_BY_PREDICT)
    assert all(sys.modules.get(m, ...) is not None for m in arrow._UNUSED_BY_PREDICT)
