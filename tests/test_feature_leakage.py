"""The prediction-time contract, enforced on real days: scramble everything not observable
before an instant T and no feature of a flight whose cutoff is <= T may move (README section 5 of
bench/feature_probe, in Spark).

Scrambled: every outcome not observed before T (a flight not departed before T departs at or after
T, or is cancelled; one not arrived before T arrives at or after T, or is diverted: its label and
when it is known change with it), the tails of every flight whose cutoff is after T (later legs),
and every weather observation known at or after T. The features of flights whose cutoff is after
T must change (the scramble has power).
"""

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakeforge.pipelines.nycflights.features import CUTOFF_HOURS_DEFAULT, FEATURE_COLUMNS, build_features

DAYS = ["2013-02-08", "2013-02-09"]  # the Nemo snowstorm: many cancellations, long delays
HISTORY = ["2013-02-05", "2013-02-06", "2013-02-07"]
INSTANTS = [
    dt.datetime(2013, 2, 8, 19, 30),  # 14:30 EST: the storm building
    dt.datetime(2013, 2, 9, 5, 10),  # 00:10 EST: just after midnight, all of 02-08 is before it
]
CUTOFF_S = int(CUTOFF_HOURS_DEFAULT * 3600)


@pytest.fixture(scope="module")
def real(spark):
    from bench.feature_parity import clean_tables

    flights, weather, planes, airports, _ = clean_tables(spark, set(HISTORY + DAYS))
    return flights.cache(), weather.cache(), planes, airports


@pytest.fixture(scope="module")
def baseline(real):
    return build_features(*real, DAYS).cache()


def _seconds(name):
    return F.unix_seconds(F.col(name))


def scramble_flights(flights, t):
    """Outcomes not observed before ``t`` redrawn at or after it; tails of flights whose cutoff is
    after ``t`` permuted among them."""
    t_s = int(t.replace(tzinfo=dt.timezone.utc).timestamp())
    u1, u2 = F.rand(1), F.rand(2)
    not_departed = F.col("dep_utc").isNull() | (_seconds("dep_utc") >= t_s)
    not_arrived = F.col("arr_utc").isNull() | (_seconds("arr_utc") >= t_s)
    new_dep = F.greatest(F.lit(t_s), _seconds("sched_dep_utc") - 600) + (u1 * 240).cast("int") * 60
    cancel = not_departed & (u1 < 0.1)
    dep_s = F.when(cancel, None).when(not_departed, new_dep).otherwise(_seconds("dep_utc"))
    divert = not_arrived & ~cancel & (u2 < 0.05)
    new_arr = F.greatest(F.lit(t_s), dep_s + 1800) + (u2 * 300).cast("int") * 60
    arr_s = F.when(cancel | divert, None).when(not_arrived, new_arr).otherwise(_seconds("arr_utc"))
    outcomes = flights.withColumns({"_dep_s": dep_s, "_arr_s": arr_s}).withColumns({
        "dep_utc": F.timestamp_seconds("_dep_s"), "arr_utc": F.timestamp_seconds("_arr_s"),
        "dep_delay": ((F.col("_dep_s") - _seconds("sched_dep_utc")) / 60).cast("double"),
        "arr_delay": ((F.col("_arr_s") - _seconds("sched_arr_utc")) / 60).cast("double"),
        "dep_time": F.when(F.col("_dep_s").isNotNull(), F.lit(1)),
        "cancelled": F.col("_dep_s").isNull(),
        "diverted": F.col("_dep_s").isNotNull() & F.col("_arr_s").isNull(),
    }).drop("_dep_s", "_arr_s")
    later = _seconds("sched_dep_utc") - CUTOFF_S > t_s
    order = Window.partitionBy(later).orderBy("flight_key")
    shuffled = Window.partitionBy(later).orderBy(F.rand(3))
    ranked = outcomes.withColumns({"_i": F.row_number().over(order), "_j": F.row_number().over(shuffled)})
    tails = ranked.select(F.col("_j").alias("_i"), later.alias("_later"), F.col("tailnum").alias("_tail"))
    return ranked.join(tails, on=[ranked["_i"] == tails["_i"], later == tails["_later"]], how="left") \
        .withColumn("tailnum", F.when(later, F.col("_tail")).otherwise(F.col("tailnum"))) \
        .select(*flights.columns)


def scramble_weather(weather, t):
    t_s = int(t.replace(tzinfo=dt.timezone.utc).timestamp())
    unknown = _seconds("time_hour") + 3600 >= t_s
    return weather.withColumns({c: F.when(unknown, F.col(c) + 7.0 + F.rand(4)).otherwise(F.col(c))
                                for c in ("temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib")})


def changed_features(baseline, scrambled, t):
    """(flights with cutoff <= t whose features changed, per feature; share of later flights changed)."""
    t_s = int(t.replace(tzinfo=dt.timezone.utc).timestamp())
    a = baseline.select("flight_key", "sched_dep_utc", *[F.col(c).alias(f"a_{c}") for c in FEATURE_COLUMNS])
    b = scrambled.select("flight_key", *[F.col(c).alias(f"b_{c}") for c in FEATURE_COLUMNS])
    diff = {c: ~F.col(f"a_{c}").eqNullSafe(F.col(f"b_{c}")) for c in FEATURE_COLUMNS}
    before = _seconds("sched_dep_utc") - CUTOFF_S <= t_s
    row = a.join(b, on="flight_key", how="inner").agg(
        F.count(F.when(before, 1)).alias("n_before"), F.count(F.when(~before, 1)).alias("n_after"),
        F.count(F.when(~before & reduce_or(diff.values()), 1)).alias("after_changed"),
        *[F.count(F.when(before & d, 1)).alias(c) for c, d in diff.items()],
    ).collect()[0].asDict()
    moved = {c: row[c] for c in FEATURE_COLUMNS if row[c]}
    return row["n_before"], moved, row["after_changed"] / max(row["n_after"], 1)


def reduce_or(columns):
    out = F.lit(False)
    for c in columns:
        out = out | c
    return out


@pytest.mark.parametrize("instant", INSTANTS, ids=lambda t: t.isoformat())
def test_nothing_after_the_cutoff_moves_a_feature(spark, real, baseline, instant):
    flights, weather, planes, airports = real
    scrambled = build_features(scramble_flights(flights, instant), scramble_weather(weather, instant),
                               planes, airports, DAYS)
    n_before, moved, after_changed = changed_features(baseline, scrambled, instant)
    assert n_before > 500, "the instant leaves too few flights to check"
    assert moved == {}, f"features of flights with cutoff <= {instant} moved: {moved}"
    assert after_changed > 0.9, f"the scramble changed only {after_changed:.0%} of the later flights"
