"""Which published days a run's features read, and which of its own days it must build again."""

from lakeforge.transform.steps import depends_on, history_days


def test_history_days_are_the_days_before_each_run_date_that_the_run_does_not_stage():
    assert history_days(["2013-03-01"], 3) == ["2013-02-26", "2013-02-27", "2013-02-28"]
    assert history_days(["2013-01-02", "2013-01-03"], 2) == ["2012-12-31", "2013-01-01"]
    # a gap between run dates is read from the lake, the run's own dates from its staging
    assert history_days(["2013-01-01", "2013-01-04"], 2) == ["2012-12-30", "2012-12-31", "2013-01-02", "2013-01-03"]


def test_a_passing_day_depends_on_a_blocked_day_within_its_history_only():
    run = ["2013-01-05", "2013-01-06", "2013-01-07", "2013-02-20"]
    assert depends_on(run, {"2013-01-05"}, 29) == ["2013-01-06", "2013-01-07"]
    assert depends_on(run, {"2013-01-05"}, 1) == ["2013-01-06"]
    assert depends_on(run, set(), 29) == []
    assert depends_on(run, {"2013-02-20"}, 29) == []  # nothing after it


def test_nycflights_reads_the_history_its_features_need():
    """The declaration's history windows are the features' own (``lakeforge.pipelines.nycflights.features``)."""
    from lakeforge.settings import get_settings
    from lakeforge.transform import load_transform
    from lakeforge.pipelines.nycflights.features import HISTORY_DAYS, WEATHER_HISTORY_DAYS, flight_days_before

    spec = load_transform("nycflights")
    features = spec.features[0]
    assert spec.history_days == HISTORY_DAYS
    assert {name: features.days(name) for name in ("flights", "weather", "label_counts")} == {
        "flights": flight_days_before(get_settings().feature_cutoff_hours), "weather": WEATHER_HISTORY_DAYS, "label_counts": HISTORY_DAYS}
