"""Drift's per-day aggregation (SQL bucket codes, ``drift._coded_long``) counts exactly what the
Column-built string buckets count (``_numeric_bucket`` / ``_categorical_bucket``, also used by the
reference profile): edges hit exactly, nulls, NaN, infinities, kept / rare / unseen categories,
values needing SQL escapes, and more features than one ``stack`` chunk."""

from __future__ import annotations

import math
import random


def test_coded_counts_equal_the_string_buckets(spark, monkeypatch):
    from pyspark.sql import functions as F

    from lakeforge.monitoring import drift

    monkeypatch.setattr(drift, "_STACK_FEATURES", 3)  # several chunks, as with the real ~130 features
    rng = random.Random(3)
    numeric = [f"n{i}" for i in range(5)] + ["odd`name"]
    kept, other = ["O'Hare", "a\\b", "plain"], ["rare 'x'", "rare\\y"]
    rows = []
    for i in range(400):
        nums = [rng.choice([None, float("nan"), float("inf"), -float("inf"), 0.0, 1.0, 2.5, rng.uniform(-3, 3)])
                for _ in numeric]
        cat = rng.choice([None, *kept, *other, "never seen", "it's new"])
        rows.append((rng.choice(["2013-01-01", "2013-01-02"]), *nums, cat))
    schema = "ds string, " + ", ".join(f"{drift._sql_name(c)} double" for c in numeric) + ", cat string"
    df = spark.createDataFrame(rows, schema)
    edges = {c: [-1.0, 0.0, 1.0, 2.5] if i % 2 else [0.0] for i, c in enumerate(numeric)}
    edges[numeric[-1]] = []  # a constant reference feature: one bin

    expected_buckets = {c: drift._numeric_bucket(F.col(drift._sql_name(c)), e) for c, e in edges.items()}
    expected_buckets["cat"] = drift._categorical_bucket(F.col("cat"), kept, other)
    expected = drift._counts(drift._long(df, expected_buckets, F.col("ds")))

    codes = [drift._numeric_index_sql(c, e) for c, e in edges.items()]
    codes.append(drift._categorical_index_sql("cat", kept, other))
    coded = drift._coded_counts(drift._coded_long(df, codes))
    got = {ds: {**{c: drift._numeric_names(by_f[i]) for i, c in enumerate(numeric)},
                "cat": drift._categorical_names(by_f[len(numeric)], kept)} for ds, by_f in coded.items()}
    assert got == {ds: dict(v) for ds, v in expected.items()}
    assert math.isclose(sum(got["2013-01-01"]["cat"].values()) + sum(got["2013-01-02"]["cat"].values()), 400)
    assert {"__unseen__", "__other__", "__null__", "O'Hare", "a\\b"} <= set(got["2013-01-01"]["cat"]) | set(
        got["2013-01-02"]["cat"])
