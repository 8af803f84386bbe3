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


def _written_days(spark, df, lake, files_per_day: int = 2):
    """``df``'s rows (less ``ds``) as Parquet files per day under ``features/`` of ``lake`` (a
    ``lakeforge.lake.Lake``), the way the transform publishes them: [(file URI, day, rows)]."""
    out = []
    for ds in sorted(r["ds"] for r in df.select("ds").distinct().collect()):
        folder = f"features/ds={ds}"
        df.where(df.ds == ds).drop("ds").repartition(files_per_day).write.parquet(lake.uri(folder))
        for name in lake.listdir(folder):
            if name.startswith("part-") and name.endswith(".parquet"):
                out.append((lake.uri(folder, name), ds, spark.read.parquet(lake.uri(folder, name)).count()))
    return out


def test_file_path_reads_each_file_in_the_workers_and_gives_the_models_own_probabilities(
        spark, lgbm_model, lake, monkeypatch):
    """The job's path for a [StringIndexer, LightGBM] champion, on a local and on an HDFS lake:
    the features files read by the Python workers through the lake's file system
    (``file_probabilities``: no JVM scan), the categoricals indexed there as the StringIndexer does
    (null, unseen), NaN and extreme values: the model's own probabilities, exactly, for every row
    of every file, each row once, with its file's day."""
    from pyspark.sql import functions as F

    from lakeforge.scoring import job
    from lakeforge.training.evaluate import with_probability

    model, df = lgbm_model
    extra = spark.createDataFrame([("u1", "2013-01-02", float("nan"), "never-seen", None, 0),
                                   ("u2", "2013-01-02", 1e30, None, 2**31 - 1, 1),
                                   ("u3", "2013-01-03", -1.5, "x", 3, 1)], df.schema)
    rows = df.unionByName(extra)
    files = _written_days(spark, rows, lake)
    assert all(uri.startswith(lake.root_uri) for uri, _, _ in files)
    assert len({ds for _, ds, _ in files}) == 3 and len(files) > 3
    features = spark.read.parquet(*[uri for uri, _, _ in files]).select(
        "flight_key", "a", "cat", "n", F.regexp_extract(F.col("_metadata.file_path"), r"ds=([^/]+)/", 1).alias("ds"))
    taken, original = [], job.file_probabilities
    monkeypatch.setattr(job, "file_probabilities", lambda *a, **kw: taken.append(a[1]) or original(*a, **kw))
    out = job.probabilities(spark, model, features, ["flight_key", "ds"], files)
    assert taken == [files] and "Scan parquet" not in out._jdf.queryExecution().executedPlan().toString()
    got = out.collect()
    mine = {r["flight_key"]: (r["ds"], r["p"]) for r in got}
    theirs = {r["flight_key"]: (r["ds"], r["p"]) for r in
              with_probability(model.transform(features)).select("flight_key", "ds", F.col("p").cast("double"))
              .collect()}
    assert len(got) == len(mine) == len(theirs) == 3003  # every row once
    assert mine == theirs  # exact, and each row carries its file's day



def test_stages_a_worker_cannot_apply_exactly_go_through_the_jvm(spark, tmp_path):
    """``indexer_labels`` accepts only StringIndexers (handleInvalid=keep) over string columns:
    an indexed integer column (Spark casts it to a string its own way) or another invalid-value
    policy is scored through the JVM path, with the same probabilities as the model's transform."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    from lakeforge.lake import Lake
    from lakeforge.scoring import job
    from lakeforge.training.evaluate import with_probability
    from lakeforge.training.lightgbm_spark import SparkLGBMClassifier

    df = spark.createDataFrame([(f"k{i}", "2013-01-01", i % 7, float(i % 11), int(i % 3 == 0)) for i in range(300)],
                               "flight_key string, ds string, code int, a double, label int")
    lgbm = SparkLGBMClassifier(featuresCols=["code_idx", "a"], labelCol="label", numWorkers=1,
                               lgbParams='{"n_estimators": 5, "num_leaves": 4, "seed": 1}')
    by_int = Pipeline(stages=[StringIndexer(inputCol="code", outputCol="code_idx", handleInvalid="keep"), lgbm]).fit(df)
    prep, _ = job.lightgbm_parts(by_int)
    assert job.indexer_labels(prep, df.schema) is None
    strict = Pipeline(stages=[StringIndexer(inputCol="code", outputCol="code_idx", handleInvalid="error"), lgbm]).fit(
        df.withColumn("code", F.col("code").cast("string")))
    as_text = df.withColumn("code", F.col("code").cast("string"))
    assert job.indexer_labels(job.lightgbm_parts(strict)[0], as_text.schema) is None
    files = _written_days(spark, df, Lake(f"file://{tmp_path}/lake"), files_per_day=1)
    for model, rows in ((by_int, df), (strict, as_text)):
        out = job.probabilities(spark, model, rows, ["flight_key", "ds"], files)
        assert "MapInArrow" in out._jdf.queryExecution().executedPlan().toString()
        assert "Range" not in out._jdf.queryExecution().executedPlan().toString()
        theirs = with_probability(model.transform(rows)).select("flight_key", F.col("p").cast("double"))
        assert {r["flight_key"]: r["p"] for r in out.collect()} == {r["flight_key"]: r["p"] for r in theirs.collect()}


def test_file_groups_keep_days_whole_and_balance_rows():
    from lakeforge.scoring.arrow import file_groups

    files = [("f/a1", "2013-01-01", 100), ("f/a2", "2013-01-01", 50), ("f/b", "2013-01-02", 160),
             ("f/c", "2013-01-03", 40), ("f/d1", "2013-01-04", 30), ("f/d2", "2013-01-04", 30)]
    groups = file_groups(files, 2)
    assert len(groups) == 2
    assert sorted(f for g in groups for f in g) == sorted((u, d) for u, d, _ in files)  # each file once
    for g in groups:
        days = [d for _, d in g]
        assert days == sorted(days)  # in day order
        for d in set(days):  # a day's files in one group
            assert all(d not in [x for _, x in other] for other in groups if other is not g)
    rows = {u: r for u, _, r in files}
    assert sorted(sum(rows[u] for u, _ in g) for g in groups) == [200, 210]  # largest day first, lightest group
    assert len(file_groups(files, 8)) == 4  # never more groups than days
    assert file_groups(files[:1], 2) == [[("f/a1", "2013-01-01")]]
