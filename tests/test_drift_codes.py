"""Drift's per-day bucket counts, taken in the Python workers (``lakeforge.monitoring.buckets``),
equal what the Column-built string buckets count in Spark (``drift._numeric_bucket`` /
``_categorical_bucket``, also used by the reference profile): edges hit exactly, nulls, NaN,
infinities, -0.0, integers cast to double, kept / rare / unseen categories, values needing SQL
escapes. Both ways in: the rows' columns sent by the JVM (a frame built in memory), and the
workers reading the published Parquet files themselves (only the rows the row filter keeps; files
of several row groups and batches, two files a day, a folder whose name needs URL encoding, a
column one file lacks)."""

from __future__ import annotations

import random

import pytest

NUMERIC = [f"n{i}" for i in range(5)] + ["odd`name", "count"]
KEPT, OTHER = ["O'Hare", "a\\b", "plain"], ["rare 'x'", "rare\\y"]
DAYS = ["2013-01-01", "2013-01-02"]


def _rows(seed: int, n: int) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        nums = [rng.choice([None, float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1.0, 2.5,
                            rng.uniform(-3, 3)]) for _ in NUMERIC[:-1]]
        out.append((i, rng.choice(DAYS), *nums, rng.choice([None, -1, 0, 1, 2, 3, 7]),
                    rng.choice([None, *KEPT, *OTHER, "never seen", "it's new"]), rng.random() < 0.8))
    return out


def _edges() -> dict[str, list[float]]:
    edges = {c: [-1.0, 0.0, 1.0, 2.5] if i % 2 else [0.0] for i, c in enumerate(NUMERIC)}
    edges[NUMERIC[-2]] = []  # a constant reference feature: one bin
    edges["count"] = [0.0, 1.0, 3.0]
    return edges


def _expected(df) -> dict:
    """{ds: {feature: {bucket: rows}}} by the string buckets, over the rows ``keep`` is true."""
    from pyspark.sql import functions as F

    from lakeforge.monitoring import drift

    buckets = {c: drift._numeric_bucket(F.col(drift._sql_name(c)), e) for c, e in _edges().items()}
    buckets["cat"] = drift._categorical_bucket(F.col("cat"), KEPT, OTHER)
    kept = df.where("keep")
    return {ds: dict(v) for ds, v in drift._counts(drift._long(kept, buckets, F.col("ds"))).items()}


def _counted(df) -> dict:
    """The same by ``drift._bucketed`` (what ``drift_days`` runs) over the rows ``keep`` is true."""
    from lakeforge.monitoring import drift

    edges = _edges()
    coded = drift._coded_counts(drift._bucketed(df.where("keep"), list(edges.items()), [("cat", KEPT, OTHER)])[0])
    return {ds: {**{c: drift._numeric_names(by_f[i]) for i, c in enumerate(edges)},
                 "cat": drift._categorical_names(by_f[len(edges)], KEPT)} for ds, by_f in coded.items()}


def _schema():
    from pyspark.sql.types import (BooleanType, DoubleType, LongType, StringType, StructField, StructType)

    return StructType([StructField("k", LongType()), StructField("ds", StringType()),
                       *[StructField(c, DoubleType()) for c in NUMERIC[:-1]], StructField("count", LongType()),
                       StructField("cat", StringType()), StructField("keep", BooleanType())])


def test_counts_of_rows_sent_by_the_jvm_equal_the_string_buckets(spark, monkeypatch):
    from lakeforge.monitoring import buckets, drift

    df = spark.createDataFrame(_rows(3, 400), _schema())
    assert drift._file_rows(df, NUMERIC, ["cat"]) is None  # not a file scan: the columns come from the JVM
    monkeypatch.setattr(buckets, "count_files", None)  # and the file path cannot have been taken
    got = _counted(df)
    assert got == _expected(df)
    assert {"__unseen__", "__other__", "__null__", "O'Hare", "a\\b"} <= set(got[DAYS[0]]["cat"]) | set(got[DAYS[1]]["cat"])
    assert {"null", "0", "4"} <= set(got[DAYS[0]]["n1"])


def test_counts_of_rows_read_from_the_files_equal_the_string_buckets(spark, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.types import StructType

    from lakeforge.monitoring import buckets, drift
    from lakeforge.spark_publish import read_published

    schema = _schema()
    arrow = pa.schema([pa.field(f.name, {"LongType()": pa.int64(), "StringType()": pa.string(),
                                         "BooleanType()": pa.bool_()}.get(str(f.dataType), pa.float64()))
                       for f in schema.fields if f.name != "ds"])
    files: dict[str, list[str]] = {}
    rows = _rows(5, 3000)
    for d, ds in enumerate(DAYS):
        folder = tmp_path / "lake 1" / f"ds={ds}"
        folder.mkdir(parents=True)
        day = [r for r in rows if r[1] == ds]
        for part, chunk in enumerate([day[: len(day) // 3], day[len(day) // 3:]]):
            table = pa.Table.from_pylist([dict(zip([f.name for f in schema.fields], r)) for r in chunk], arrow)
            if d == 1 and part == 0:
                table = table.drop_columns(["n3"])  # an older file without a newer column: nulls, as Spark reads it
            path = folder / f"part-{part}.parquet"
            pq.write_table(table, path, row_group_size=257)
            files.setdefault(ds, []).append(f"file://{path}")  # as the lake writes URIs: not encoded
    df = read_published(spark, files, StructType([f for f in schema.fields if f.name != "ds"]))

    located = []
    real = drift._file_rows

    def spy(*args):
        located.append(real(*args))
        return located[-1]

    monkeypatch.setattr(drift, "_file_rows", spy)
    monkeypatch.setattr(drift, "FILE_BATCH_ROWS", 100)  # several batches per row group and file
    monkeypatch.setattr(buckets, "count_batches", None)  # the JVM does not send the columns
    got = _counted(df)
    assert located and located[0] is not None, "the workers did not read the files"
    expected = _expected(df)
    assert got == expected
    assert sum(got[DAYS[1]]["n3"].values()) == sum(1 for r in rows if r[1] == DAYS[1] and r[-1])
    assert got[DAYS[1]]["n3"]["null"] >= len([r for r in rows if r[1] == DAYS[1]]) // 3 * 0.7  # the file without n3
    assert sum(got[DAYS[0]]["cat"].values()) == sum(1 for r in rows if r[1] == DAYS[0] and r[-1])


@pytest.mark.parametrize("values, edges, expected", [
    ([None, float("nan"), -0.0, 0.0, 1e-300, 1.0, float("inf"), -float("inf")], [0.0, 1.0], [-1, -1, 0, 0, 1, 1, 2, 0]),
    ([1, 2, 3], [], [0, 0, 0]),
])
def test_numeric_codes(values, edges, expected):
    import pyarrow as pa

    from lakeforge.monitoring.buckets import numeric_codes

    assert numeric_codes(pa.array(values), edges).tolist() == expected


def _parquet(table) -> bytes:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=100)
    return buf.getvalue()


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_prediction_counts_read_by_the_workers_equal_spark_s_semi_join(spark, lake, task):
    """Given the days' prediction files (``monitor_days`` passes them), the workers reading the
    feature files count the prediction too (``buckets.count_files``: a semi join of the day's
    predictions on the rows' key): the same reports as Spark's semi join of the predictions
    frame on the kept rows. A two-column key (one row with a null part: never matched), rows the
    row filter drops, another version's predictions and a prediction of no row in the same
    files, two feature files a day; on a local and on an HDFS lake (the workers read both through
    the lake's file system)."""
    import pyarrow as pa

    from lakeforge.monitoring import drift
    from lakeforge.spark_publish import read_published
    from lakeforge.training.spec import ModelSpec

    spec = ModelSpec(source="t", features="features/t", label="label", task=task, key=("shop", "n"),
                     classes=("sun", "rain", "fog") if task == "multiclass" else None,
                     columns=lambda: (["x"], ["cat"]), row_filter="keep",
                     retrain_max_drop=None if task == "binary" else 0.1)
    rng = random.Random(11)
    feature_files: dict[str, list[str]] = {}
    prediction_files: dict[str, list[str]] = {}
    for ds in DAYS:
        rows = [{"shop": None if i == 7 else f"s{i % 5}", "n": i, "x": rng.uniform(-2, 2),
                 "cat": rng.choice(KEPT + ["never"]), "keep": rng.random() < 0.7, "label": 0} for i in range(600)]
        for part, chunk in enumerate([rows[:250], rows[250:]]):
            lake.write_bytes(f"features/ds={ds}/part-{part}.parquet", _parquet(pa.Table.from_pylist(chunk)))
            feature_files.setdefault(ds, []).append(lake.uri(f"features/ds={ds}/part-{part}.parquet"))
        preds = [{"shop": r["shop"], "n": r["n"], "model_version": "3" if r["n"] % 9 else "4",
                  "probability": rng.random(), "predicted_class": rng.choice(["sun", "rain", "fog", "hail"])}
                 for r in rows] + [{"shop": "s1", "n": 10_000, "model_version": "3", "probability": 0.5,
                                    "predicted_class": "sun"}]
        lake.write_bytes(f"predictions/ds={ds}/part-0.parquet", _parquet(pa.Table.from_pylist(preds)))
        prediction_files[ds] = [lake.uri(f"predictions/ds={ds}/part-0.parquet")]
    features = read_published(spark, feature_files)
    predictions = read_published(spark, prediction_files)
    prediction = ({"categories": ["sun", "rain"], "other": ["fog"], "shares": {"sun": 0.5, "rain": 0.4, "fog": 0.1}}
                  if task == "multiclass" else {"edges": [0.2, 0.5, 0.8], "shares": {"0": 0.2, "1": 0.3, "2": 0.3,
                                                                                     "3": 0.2}})
    profile = {"model_version": "3", "numeric": {"x": {"edges": [-1.0, 0.0, 1.0], "shares": {"0": 0.25, "1": 0.25,
                                                                                            "2": 0.25, "3": 0.25}}},
               "categorical": {"cat": {"categories": KEPT[:2], "other": KEPT[2:], "shares": {KEPT[0]: 0.5,
                                                                                          KEPT[1]: 0.5}}},
               "prediction": {**prediction, "usual_psi": 0.0}}
    by_spark = drift.drift_days(spec, features, predictions, profile, threshold=0.25)
    by_files = drift.drift_days(spec, features, predictions, profile, threshold=0.25, prediction_files=prediction_files)
    for reports in (by_spark, by_files):
        for r in reports.values():
            r.pop("computed_at")
    assert by_files == by_spark
    for ds in DAYS:
        pred = by_files[ds]["prediction"]
        kept = len([1 for i in range(600) if i != 7 and i % 9]) * 0.7
        assert 0.5 * kept < pred["rows"] < 1.5 * kept and pred["rows"] < by_files[ds]["rows"]
