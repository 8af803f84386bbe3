"""Batch scoring's LightGBM path (``lakeforge.scoring.arrow`` via ``score_flights.probabilities``):
the same probabilities, bit for bit, as the model's own ``transform`` (its pandas UDF), nulls,
NaN, unseen categories and integer columns included; booster and worker helpers; the job's Spark
conf (its Arrow batch size) and the Python workers' warm-up."""

from __future__ import annotations

import math
import posixpath
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



@pytest.mark.parametrize("run_id", ["manual__2013-03-01", None])
def test_workers_stage_the_prediction_files_spark_would_and_only_their_successful_attempts(
        spark, lgbm_model, lake, monkeypatch, run_id):
    """The job's staging of a [StringIndexer, LightGBM] champion's predictions on a local and on
    an HDFS lake (``stage_in_workers``: the Python workers write the files): the same rows, values,
    Spark schema and Parquet schema as Spark's own write of the same DataFrame (``stage``), NaN,
    unseen categories, a decision at the threshold's edge and a null scoring run included; one
    file a day. A file in the staging that no successful task attempt reported (what a failed
    attempt leaves) is deleted, so no row is staged twice."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.testing import assertDataFrameEqual

    from lakeforge import spark_publish
    from lakeforge.scoring import job

    model, df = lgbm_model
    extra = spark.createDataFrame([("u1", "2013-01-02", float("nan"), "never-seen", None, 0),
                                   ("u2", "2013-01-02", 1e30, None, 2**31 - 1, 1),
                                   ("u3", "2013-01-03", -1.5, "x", 3, 1)], df.schema)
    files = _written_days(spark, df.unionByName(extra), lake)
    inputs: dict = {}
    for uri, ds, rows in files:
        day = inputs.setdefault(ds, {"files": [], "file_rows": [], "bytes": 0})
        day["files"].append(uri)
        day["file_rows"].append(rows)
    spec = SimpleNamespace(key=["flight_key"], task="binary", predictions="predictions/t",
                           outputs=["probability", "decision"])
    features = job.feature_rows(spark, spec, inputs, ["a", "cat", "n"])
    p = job.probabilities(spark, model, features, ["flight_key", "ds"], job.day_files(inputs))
    threshold = sorted(r["p"] for r in p.collect())[1500]  # a row's probability: >= keeps it
    info = {"name": "flight_delay", "version": "3", "run_id": "abc123", "threshold": threshold}
    scored_at = datetime(2013, 3, 1, 6, 30, 15, 123456, tzinfo=timezone.utc)
    predictions = job.predictions(spark, spec, model, features, inputs, info, scored_at, run_id)

    leftover = {}
    new_staging = spark_publish.new_run_staging

    def staging_with_a_dead_attempt(lake_, table):  # a failed attempt's file is there before the job's
        folder = new_staging(lake_, table)
        leftover["path"] = f"{folder}/ds=2013-01-02/part-00000-0-deadbeef.zstd.parquet"
        lake_.fs.create_dir(lake_.path(posixpath.dirname(leftover["path"])), recursive=True)
        with lake_.fs.open_output_stream(lake_.path(leftover["path"])) as f:
            pq.write_table(pa.table({"flight_key": ["k1"], "probability": [0.5]}), f)
        return folder

    monkeypatch.setattr(spark_publish, "new_run_staging", staging_with_a_dead_attempt)
    mine = job.stage_in_workers(spark, lake, spec, model, features, inputs, info, scored_at, run_id, predictions)
    monkeypatch.setattr(spark_publish, "new_run_staging", new_staging)
    assert mine is not None and not lake.exists(leftover["path"])
    theirs = job.stage(predictions, lake, spec.predictions)

    def files_of(staging):
        return {ds: [f.path for f in lake.files(f"{staging}/ds={ds}") if f.path.endswith(".parquet")]
                for ds in inputs}

    assert all(len(names) == 1 for names in files_of(mine).values())  # one file a day
    for ds, names in files_of(mine).items():
        ours = pq.read_schema(lake.fs.open_input_file(lake.path(f"{mine}/ds={ds}/{names[0]}")))
        spark_ = pq.read_schema(lake.fs.open_input_file(lake.path(f"{theirs}/ds={ds}/{files_of(theirs)[ds][0]}")))
        assert ours.remove_metadata() == spark_.remove_metadata()  # types and nullability
    got, want = spark.read.parquet(lake.uri(mine)), spark.read.parquet(lake.uri(theirs))
    assert got.schema == want.schema
    assert got.count() == want.count() == 3003
    assertDataFrameEqual(got, want)  # every value, NaN and the threshold's own row included
    row = got.where("flight_key = 'u1'").collect()[0]
    assert math.isnan(row["probability"]) is False and row["scoring_run_id"] == run_id
    assert got.where(got.probability == threshold).first()["decision"] is True


def test_lightgbm_pipeline_read_from_its_files_is_the_one_mlflow_loads(spark, lgbm_model, tmp_path):
    """``sparkml_files`` (the scoring job's load of a lightgbm champion, no Spark jobs) builds the
    pipeline MLflow's Spark flavor loads from the same folder: the same stages and params, and the
    same probabilities on every row, nulls, NaN and unseen categories included. Any other model,
    or a folder missing a stage's data, is left to MLflow (None)."""
    import shutil

    import mlflow.spark
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    from lakeforge.scoring.sparkml_files import build_pipeline, read_lightgbm_stages
    from lakeforge.training.evaluate import with_probability
    from lakeforge.training.job import checksummed_local_fs

    no_inference = ["pyspark"]  # MLflow would load each model in a child process to infer them: ~20 s each
    model, df = lgbm_model
    saved = str(tmp_path / "lgbm")
    with checksummed_local_fs(spark):
        mlflow.spark.save_model(model, saved, pip_requirements=no_inference)
        theirs = mlflow.spark.load_model(saved)
    stages = read_lightgbm_stages(saved)
    assert [s["class"].rsplit(".", 1)[1] for s in stages] == ["StringIndexerModel", "SparkLGBMClassifierModel"]
    mine = build_pipeline(stages)
    for a, b in zip(mine.stages, theirs.stages, strict=True):
        assert type(a) is type(b)
        params = {p.name: a.getOrDefault(p) for p in a.params if a.isDefined(p) and p.name != "outputCol"}
        assert params == {p.name: b.getOrDefault(p) for p in b.params if b.isDefined(p) and p.name != "outputCol"}
    assert mine.stages[0].labelsArray == theirs.stages[0].labelsArray
    extra = spark.createDataFrame([("u1", "2013-01-02", float("nan"), "never-seen", None, 0),
                                   ("u2", "2013-01-02", 1e30, None, 2**31 - 1, 1)], df.schema)
    rows = df.unionByName(extra)

    def probabilities(m):
        return {r["flight_key"]: r["p"] for r in
                with_probability(m.transform(rows)).select("flight_key", F.col("p").cast("double")).collect()}

    assert probabilities(mine) == probabilities(theirs)  # exact, all 3002 rows

    # Not a lightgbm pipeline, or not only indexers before the booster: MLflow loads it.
    lr_df = spark.createDataFrame([(float(i % 5), i % 2) for i in range(40)], "a double, label int")
    lr = Pipeline(stages=[VectorAssembler(inputCols=["a"], outputCol="x"),
                          LogisticRegression(featuresCol="x", labelCol="label", maxIter=3)]).fit(lr_df)
    with checksummed_local_fs(spark):
        mlflow.spark.save_model(lr, str(tmp_path / "lr"), pip_requirements=no_inference)
        mixed = Pipeline(stages=[VectorAssembler(inputCols=["a"], outputCol="x"), *model.stages]).fit(
            df.withColumn("a", F.coalesce("a", F.lit(0.0))))
        mlflow.spark.save_model(mixed, str(tmp_path / "mixed"), pip_requirements=no_inference)
    assert read_lightgbm_stages(str(tmp_path / "lr")) is None
    assert read_lightgbm_stages(str(tmp_path / "mixed")) is None
    for data in (tmp_path / "lgbm" / "sparkml" / "stages").glob("0_*/data"):
        shutil.rmtree(data)  # an indexer without its labels
    assert read_lightgbm_stages(saved) is None


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
