"""Quality suites, metrics and the Great Expectations gate, on tiny explicit-schema data."""

import json
from datetime import date, timedelta

import pytest
from pyspark.sql import types as T

from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS, WEATHER_COLUMNS
from lakeforge.quality import gate
from lakeforge.quality.profile import LocalScan, dataframe_profiles, manifest_profiles, schema_diff, trailing_ratio
from lakeforge.quality.profile import local_profiles as _local_profiles
from lakeforge.quality.spec import SuiteError, load_suite, parse_suite

TABLES = ["raw/flights", "raw/weather", "clean/flights", "clean/weather", "features/flights"]


@pytest.mark.parametrize("table", TABLES)
def test_every_table_has_a_suite_with_critical_checks(table):
    suite = load_suite("nycflights", table)
    assert suite.table == table
    assert {c.severity for c in suite.checks} == {"critical", "warning"}
    assert any(c.kind in ("schema", "header") and c.severity == "critical" for c in suite.checks)


def test_suite_contracts_match_the_code():
    """The contracts are data, but they must describe what the pipeline really delivers and writes."""
    from lakeforge.pipelines.nycflights.clean import CLEAN_FLIGHTS_COLUMNS, CLEAN_WEATHER_COLUMNS
    from lakeforge.pipelines.nycflights.features import FEATURES_TABLE_COLUMNS

    assert load_suite("nycflights", "raw/flights").contract == list(FLIGHTS_COLUMNS)
    assert load_suite("nycflights", "raw/weather").contract == list(WEATHER_COLUMNS)
    assert list(load_suite("nycflights", "clean/flights").contract) == CLEAN_FLIGHTS_COLUMNS
    assert list(load_suite("nycflights", "clean/weather").contract) == CLEAN_WEATHER_COLUMNS
    assert list(load_suite("nycflights", "features/flights").contract) == FEATURES_TABLE_COLUMNS


@pytest.mark.parametrize("doc, message", [
    ({"name": "s", "table": "t", "checks": [{"kind": "nope", "severity": "critical"}]}, "unknown kind"),
    ({"name": "s", "table": "t", "checks": [{"kind": "row_count", "severity": "fatal", "min": 1}]}, "severity"),
    ({"name": "s", "table": "t", "checks": [{"kind": "not_null", "severity": "critical", "max": 0}]}, r"needs \['column'\]"),
    ({"name": "s", "table": "t", "checks": [{"kind": "row_count", "severity": "critical"}]}, "min and/or max"),
    ({"name": "s", "table": "t", "checks": [{"kind": "row_count", "severity": "critical", "min": 1}] * 2}, "duplicate id"),
    ({"name": "s", "checks": []}, "missing top-level key"),
])
def test_bad_suite_files_are_rejected_with_a_clear_error(doc, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite(doc, source="x.json")


def test_schema_diff_names_added_missing_renamed_and_retyped_columns():
    contract = {"a": "int", "b": "string", "c": "double"}
    assert schema_diff({"a": "int", "b": "string", "c": "double"}, contract) == "ok"
    assert schema_diff({"a": "int", "b": "string", "c": "double", "d": "int"}, contract) == "added d"
    assert schema_diff({"a": "int", "b": "string"}, contract) == "missing c"
    assert schema_diff({"a": "int", "b": "string", "z": "double"}, contract) == "missing c; added z; renamed? c -> z"
    assert schema_diff({"a": "string", "b": "string", "c": "double"}, contract) == "retyped a int->string"
    # A swapped header says which columns moved (the raw gate's message).
    assert schema_diff(["a", "c", "b"], ["a", "b", "c"]) == "b <-> c swapped (columns 2 and 3)"
    assert schema_diff({"c": "double", "a": "int", "b": "string"}, contract) == "ok"  # typed: by name


def test_trailing_ratio_uses_the_previous_days_only():
    rows = {"2013-01-01": 100, "2013-01-02": 300, "2013-01-03": 20}
    assert trailing_ratio(rows, "2013-01-03", 7) == pytest.approx(20 / 200)
    assert trailing_ratio(rows, "2013-01-03", 1) == pytest.approx(20 / 300)
    assert trailing_ratio(rows, "2013-01-01", 7) is None  # no history: nothing to compare with


SUITE = parse_suite({
    "name": "test.suite", "table": "clean/things",
    "checks": [
        {"id": "schema", "kind": "schema", "columns": {"key": "string", "x": "double"}, "severity": "critical"},
        {"id": "rows", "kind": "row_count", "severity": "critical", "min": 1},
        {"id": "key", "kind": "not_null", "column": "key", "severity": "critical", "max": 0},
        {"id": "x_null", "kind": "not_null", "column": "x", "severity": "warning", "max": 0.2},
        {"id": "x_range", "kind": "between", "column": "x", "range": [0, 10], "severity": "critical", "max": 0.25},
        {"id": "unique", "kind": "unique", "columns": ["key"], "severity": "critical", "max": 0},
        {"id": "x_mean", "kind": "mean", "column": "x", "severity": "warning", "min": 1, "max": 9},
        {"id": "quarantine", "kind": "quarantine_ratio", "severity": "critical", "max": 0.05},
    ],
}, source="test")
SCHEMA = T.StructType([T.StructField("ds", T.StringType()), T.StructField("key", T.StringType()),
                       T.StructField("x", T.DoubleType())])


def verdicts_for(spark, rows, schema=SCHEMA, dates=("d1",), quarantine=None):
    df = spark.createDataFrame(rows, schema)
    profiles = dataframe_profiles(df, SUITE, list(dates), {"quarantine_ratio": quarantine or {}})
    return gate.validate(SUITE, profiles)


def test_clean_partition_passes(spark):
    v = verdicts_for(spark, [("d1", "a", 1.0), ("d1", "b", 5.0)])["d1"]
    assert v.status == "passed", v.reasons()
    assert v.metrics["row_count"] == 2 and v.metrics["mean(x)"] == pytest.approx(3.0)


def test_each_partition_gets_its_own_verdict_from_one_validation(spark):
    rows = [("d1", "a", 1.0), ("d1", "b", 2.0),          # fine
            ("d2", None, 1.0), ("d2", "c", 2.0),          # null key: critical
            ("d3", "e", None), ("d3", "f", 5.0),          # half of x null: warning only
            ("d4", "g", 50.0), ("d4", "h", 60.0)]         # out of range: critical (and mean warns)
    v = verdicts_for(spark, rows, dates=("d1", "d2", "d3", "d4", "d5"))
    assert {ds: r.status for ds, r in v.items()} == {
        "d1": "passed", "d2": "failed", "d3": "warned", "d4": "failed", "d5": "failed"}
    assert [r.check.id for r in v["d2"].failed] == ["key"]
    assert v["d2"].reasons() == ["key [critical]: not_null(key) = 0.5, expected -inf <= not_null(key) <= 0"]
    assert [r.check.id for r in v["d3"].warnings] == ["x_null"]
    assert [r.check.id for r in v["d4"].failed] == ["x_range"] and [r.check.id for r in v["d4"].warnings] == ["x_mean"]
    assert v["d4"].metrics["max(x)"] == 60.0  # the observed extremes are part of the evidence
    assert [r.check.id for r in v["d5"].failed] == ["rows"]  # an empty partition is never published


def test_duplicate_keys_and_quarantine_ratio_fail(spark):
    v = verdicts_for(spark, [("d1", "a", 1.0), ("d1", "a", 2.0)], quarantine={"d1": 0.3})["d1"]
    assert {r.check.id for r in v.failed} == {"unique", "quarantine"}
    assert {r.check.id: r.observed for r in v.failed} == {"unique": 1, "quarantine": 0.3}


@pytest.mark.parametrize("fields, diff", [
    ([("key", T.StringType()), ("x", T.DoubleType()), ("extra", T.IntegerType())], "added extra"),
    ([("key", T.StringType())], "missing x"),
    ([("key", T.StringType()), ("x", T.StringType())], "retyped x double->string"),
    ([("key", T.StringType()), ("y", T.DoubleType())], "missing x; added y; renamed? x -> y"),
])
def test_schema_drift_fails_critical(spark, fields, diff):
    schema = T.StructType([T.StructField("ds", T.StringType())] + [T.StructField(n, t) for n, t in fields])
    row = tuple(["d1"] + [{"string": "k", "double": 1.0, "int": 1}[t.simpleString()] for _, t in fields])
    v = verdicts_for(spark, [row], schema=schema)["d1"]
    assert v.status == "failed"
    schema_result = next(r for r in v.results if r.check.id == "schema")
    assert not schema_result.success and schema_result.observed == diff


def test_footer_statistics_answer_exactly_what_a_scan_would(local_lake, spark):
    """Row counts, null fractions and in-range checks come from the Parquet footers; whatever the
    footers cannot vouch for (values outside the range, NaN, uniqueness, means) is still scanned,
    and the profile is the same either way."""
    from lakeforge.quality.profile import footer_profiles, parquet_footer_stats

    rows = [("d1", "a", 1.0), ("d1", "b", 5.0), ("d1", "c", None),      # in range, one null
            ("d2", "a", 1.0), ("d2", "a", 2.0),                          # duplicate key
            ("d3", None, None), ("d3", "z", None),                       # x all null
            ("d4", "q", float("nan")), ("d4", "r", 3.0)]                 # NaN: footers cannot vouch
    df = spark.createDataFrame(rows, SCHEMA)
    folder = "clean/things/_staging/run-test"
    # two files per day: footers are merged across files
    df.repartition(2).write.partitionBy("ds").option("parquet.enable.dictionary", "false").parquet(local_lake.uri(folder))
    staged = spark.read.schema(SCHEMA).parquet(local_lake.uri(folder))
    dates = ["d1", "d2", "d3", "d4", "d5"]
    footers = parquet_footer_stats(local_lake, folder, dates)
    assert [footers[d].rows for d in dates] == [3, 2, 2, 2, 0]

    def same(profiles):  # NaN != NaN: compare its text
        return {d: {k: "nan" if v != v else v for k, v in p.items()} for d, p in profiles.items()}

    scanned = same(dataframe_profiles(staged, SUITE, dates, {}))
    assert scanned["d4"]["max(x)"] == "nan"  # Spark orders NaN above every number
    assert same(dataframe_profiles(staged, SUITE, dates, {}, footers)) == scanned
    _, answered = footer_profiles(SUITE, {d: footers[d] for d in dates}, {"key": "string", "x": "double"})
    assert answered == {"row_count", "not_null(key)", "not_null(x)"}  # d4's NaN: x's range is scanned
    in_range = {d: footers[d] for d in ("d1", "d2", "d3", "d5")}
    by_ds, answered = footer_profiles(SUITE, in_range, {"key": "string", "x": "double"})
    assert "outside(x,0,10)" in answered and by_ds["d1"]["max(x)"] == 5.0 and by_ds["d3"]["min(x)"] is None
    assert same(dataframe_profiles(staged, SUITE, list(in_range), {}, footers)) == {d: scanned[d] for d in in_range}
    # A small staged table's remaining metrics come from Arrow: the same answers, NaN included.
    local = LocalScan(local_lake, folder, max_bytes=2**30)
    assert same(dataframe_profiles(staged, SUITE, dates, {}, footers, local)) == scanned


ARROW_SUITE = parse_suite({
    "name": "test.arrow", "table": "clean/things",
    "checks": [
        {"id": "rows", "kind": "row_count", "severity": "critical", "min": 1},
        {"id": "key", "kind": "not_null", "column": "key", "severity": "critical", "max": 0},
        {"id": "key_set", "kind": "in_set", "column": "key", "values": ["a", "b", "c"], "severity": "critical", "max": 0},
        {"id": "x_range", "kind": "between", "column": "x", "range": [0, 10], "severity": "critical", "max": 0},
        {"id": "n_range", "kind": "between", "column": "n", "range": [0, 5], "severity": "critical", "max": 0},
        {"id": "unique", "kind": "unique", "columns": ["key"], "severity": "critical", "max": 0},
        {"id": "unique2", "kind": "unique", "columns": ["key", "n"], "severity": "critical", "max": 0},
        {"id": "flag_rate", "kind": "mean", "column": "flag", "severity": "warning", "min": 0, "max": 1},
        {"id": "x_mean", "kind": "mean", "column": "x", "severity": "warning", "min": 0, "max": 10},
    ],
}, source="test")


def test_arrow_profiles_of_a_staged_table_equal_sparks_aggregation(local_lake, spark, monkeypatch):
    """Every metric kind the local Arrow scan computes, against Spark's aggregation of the same
    staged files: nulls, keys outside the set, duplicates (one and two key columns), NaN, values
    out of range (footers cannot vouch: scanned), an all-null column, an empty day."""
    from lakeforge.quality import profile
    from lakeforge.quality.profile import parquet_footer_stats

    schema = T.StructType([T.StructField("ds", T.StringType()), T.StructField("key", T.StringType()),
                           T.StructField("x", T.DoubleType()), T.StructField("n", T.IntegerType()),
                           T.StructField("flag", T.BooleanType())])
    rows = [("d1", "a", 1.0, 1, True), ("d1", "b", 2.5, 2, False), ("d1", "c", 3.0, 3, False),
            ("d2", "a", 1.0, 1, True), ("d2", "a", 2.0, 1, True), ("d2", "a", 2.0, 2, None),
            ("d2", "zz", 4.0, 9, False), ("d2", None, 5.0, None, False), ("d2", None, 6.0, None, True),
            ("d3", "a", None, 0, None), ("d3", "b", None, -1, None),
            ("d4", "a", float("nan"), 1, True), ("d4", "b", 30.0, 2, True), ("d4", "c", -1.0, 3, False)]
    folder = "clean/things/_staging/run-arrow"
    spark.createDataFrame(rows, schema).repartition(2).write.partitionBy("ds") \
        .option("parquet.enable.dictionary", "false").parquet(local_lake.uri(folder))
    staged = spark.read.schema(schema).parquet(local_lake.uri(folder))
    dates = ["d1", "d2", "d3", "d4", "d5"]
    footers = parquet_footer_stats(local_lake, folder, dates)

    def same(profiles):  # NaN != NaN; sums in another order may differ in the last bits
        return {d: {k: "nan" if v != v else round(v, 12) if isinstance(v, float) else v for k, v in p.items()}
                for d, p in profiles.items()}

    by_spark = same(dataframe_profiles(staged, ARROW_SUITE, dates, {}))
    assert by_spark["d2"]["duplicates(key)"] == 3 and by_spark["d2"]["duplicates(key,n)"] == 2
    assert by_spark["d2"]["not_in_set(key)"] == 0.25 and by_spark["d4"]["max(x)"] == "nan"
    calls = []
    monkeypatch.setattr(profile, "local_profiles", lambda *a: calls.append(a) or _local_profiles(*a))
    assert same(dataframe_profiles(staged, ARROW_SUITE, dates, {}, footers,
                                   LocalScan(local_lake, folder, max_bytes=2**30))) == by_spark
    assert len(calls) == 1
    # Above the size limit, Spark aggregates (same answers).
    assert same(dataframe_profiles(staged, ARROW_SUITE, dates, {}, footers,
                                   LocalScan(local_lake, folder, max_bytes=1))) == by_spark
    assert len(calls) == 1


def test_rows_vs_upstream_catches_lost_and_multiplied_rows(spark):
    """A derived table (features) must keep exactly the rows of the table it is built from: a
    join that drops or multiplies flights fails, without scanning the data for duplicates."""
    suite = parse_suite({"name": "s", "table": "features/things", "checks": [
        {"id": "rows", "kind": "row_count", "severity": "critical", "min": 1},
        {"id": "same_rows", "kind": "rows_vs_upstream", "upstream": "clean/things", "severity": "critical",
         "min": 1, "max": 1},
    ]}, source="test")
    df = spark.createDataFrame([("d1", "a", 1.0), ("d2", "a", 1.0), ("d2", "a", 1.0), ("d3", "b", 2.0)], SCHEMA)
    profiles = dataframe_profiles(df, suite, ["d1", "d2", "d3"], {"upstream_rows": {"d1": 1, "d2": 1, "d3": 2}})
    assert [profiles[d]["rows_vs_upstream(clean/things)"] for d in ("d1", "d2", "d3")] == [1.0, 2.0, 0.5]
    v = gate.validate(suite, profiles)
    assert {d: r.status for d, r in v.items()} == {"d1": "passed", "d2": "failed", "d3": "failed"}
    with pytest.raises(SuiteError, match="add a row_count check"):
        parse_suite({"name": "s", "table": "t", "checks": [
            {"kind": "rows_vs_upstream", "upstream": "u", "severity": "critical", "min": 1}]}, source="x")


def test_raw_suite_reads_manifests_only():
    suite = load_suite("nycflights", "raw/flights")
    day = date(2013, 1, 8)
    history = {(day - timedelta(days=i)).isoformat(): 1000 for i in range(1, 8)}
    good = {"rows": 950, "columns": list(FLIGHTS_COLUMNS), "files": [{"ragged_rows": 0}]}
    partial = {**good, "rows": 100}
    drifted = {**good, "columns": [c for c in FLIGHTS_COLUMNS if c != "air_time"] + ["gate"]}
    ragged = {**good, "files": [{"ragged_rows": 200}]}
    v = gate.validate(suite, manifest_profiles(
        suite, {"2013-01-08": good}, history))["2013-01-08"]
    assert v.status == "passed", v.reasons()
    for manifest, check_id in ((partial, "row_count_vs_trailing"), (drifted, "header"), (ragged, "ragged_ratio")):
        v = gate.validate(suite, manifest_profiles(suite, {"2013-01-08": manifest}, history))["2013-01-08"]
        assert check_id in [r.check.id for r in v.failed], v.reasons()
    v = gate.validate(suite, manifest_profiles(suite, {"2013-01-08": drifted}, history))["2013-01-08"]
    assert "missing air_time; added gate; renamed? air_time -> gate" in v.reasons()[0]


def test_evidence_is_published_and_summarised(local_lake, spark):
    from lakeforge.quality.evidence import evidence_dir, format_summary, read_summary, write_evidence
    from lakeforge.publish import read_manifest

    v = verdicts_for(spark, [("d1", "a", 1.0), ("d2", None, 1.0), ("d3", "e", None), ("d3", "f", 2.0)],
                     dates=("d1", "d2", "d3"))
    records = write_evidence(local_lake, v.values(), run_id="run-1")
    report = local_lake.read_bytes(f"{evidence_dir('clean/things', 'd2')}/report.html").decode()
    assert report.startswith("<!DOCTYPE html>") and "not_null(key)" in report and "failed" in report
    stored = json.loads(local_lake.read_bytes(f"{evidence_dir('clean/things', 'd2')}/validation.json"))
    assert stored["status"] == "failed" and stored["failed"] == v["d2"].reasons()
    assert read_manifest(local_lake, "quality/clean/things", "ds=d2")["status"] == "failed"
    assert records["clean/things/d3"]["status"] == "warned"
    summary = read_summary(local_lake)
    assert {ds: p["status"] for ds, p in summary["tables"]["clean/things"].items()} == {
        "d1": "passed", "d2": "failed", "d3": "warned"}
    text = format_summary(summary)
    assert "clean/things" in text and "failed clean/things ds=d2: key [critical]" in text
