"""Training logic without Spark or MLflow: the time split, holdout metrics from a histogram, the
promotion rule and its audit log, and the training DAG's plan."""

import json
import time

import pytest

from lakeforge.lake import Lake
from lakeforge.orchestration.train_dag import decide_plan
from lakeforge.training import evaluate, promotion
from lakeforge.training.split import make_split
from lakeforge.training.trainers import candidates

JAN = [f"2013-01-{d:02d}" for d in range(1, 32)]
POLICY = promotion.Policy(metric="roc_auc", margin=0.005, calibration_tolerance=0.02, positive_rate_tolerance=0.02)


def m(auc, ece=0.03, mean_p=0.25, rate=0.25, **extra):
    return {"roc_auc": auc, "pr_auc": 0.4, "log_loss": 0.5, "brier": 0.2, "calibration_error": ece,
            "mean_prediction": mean_p, "positive_rate": rate, **extra}


# -- split ---------------------------------------------------------------------------------------

def test_split_is_time_ordered_and_disjoint():
    s = make_split(JAN, end="2013-01-31", window_days=90, holdout_days=7, validation_days=4)
    assert s.holdout == tuple(JAN[24:])                     # 25..31: the newest 7 days
    assert s.train == tuple(JAN[:24])                       # everything before, within 90 days
    assert s.validation == tuple(JAN[20:24]) and s.search_train == tuple(JAN[:20])
    assert max(s.train) < min(s.holdout) and max(s.search_train) < min(s.validation)
    assert s.boundaries() == {
        "train_start": "2013-01-01", "train_end": "2013-01-24",
        "search_train_start": "2013-01-01", "search_train_end": "2013-01-20",
        "validation_start": "2013-01-21", "validation_end": "2013-01-24",
        "holdout_start": "2013-01-25", "holdout_end": "2013-01-31",
    }


def test_split_window_rolls_and_skips_missing_days():
    days = [d for d in JAN if d != "2013-01-20"]
    s = make_split(days, end="2013-01-28", window_days=10, holdout_days=3, validation_days=2)
    assert s.holdout == ("2013-01-26", "2013-01-27", "2013-01-28")
    assert s.train[0] == "2013-01-16" and "2013-01-20" not in s.train and s.train[-1] == "2013-01-25"
    assert "2013-01-29" not in s.train + s.holdout        # nothing after `end`


def test_split_refuses_too_little_data():
    with pytest.raises(ValueError, match="training window"):
        make_split(JAN[:3], end=None, window_days=90, holdout_days=2, validation_days=1)
    with pytest.raises(ValueError, match="holdout"):
        make_split(JAN, end="2013-03-01", window_days=30, holdout_days=7, validation_days=2)


def test_validation_days_are_never_silently_cut():
    """More validation days than the window holds used to be cut to 1 without a word: a clear
    error now, naming both numbers (the DAG's planning task fails with it, before Spark starts)."""
    with pytest.raises(ValueError, match=r"validation_days \(10\) must be smaller than window_days \(10\)"):
        make_split(JAN, end="2013-01-31", window_days=10, holdout_days=7, validation_days=10)
    with pytest.raises(ValueError, match=r"validation_days \(30\) must be smaller than window_days \(24\)"):
        make_split(JAN, end="2013-01-31", window_days=24, holdout_days=7, validation_days=30)
    with pytest.raises(ValueError, match="must each be >= 1"):
        make_split(JAN, end="2013-01-31", window_days=24, holdout_days=7, validation_days=0)
    # Days missing on one side of the validation boundary: refused, not moved.
    no_search_days = [d for d in JAN if not "2013-01-13" <= d <= "2013-01-18"]
    with pytest.raises(ValueError, match=r"no feature partitions in the training window 2013-01-13..2013-01-18 "
                                         r"before the 2 validation day\(s\)"):
        make_split(no_search_days, end="2013-01-27", window_days=8, holdout_days=7, validation_days=2)
    no_valid_days = [d for d in JAN if d not in ("2013-01-23", "2013-01-24")]
    with pytest.raises(ValueError, match="no feature partitions in the validation days 2013-01-23..2013-01-24"):
        make_split(no_valid_days, end="2013-01-31", window_days=20, holdout_days=7, validation_days=2)
    # The largest allowed: one search-train day left.
    s = make_split(JAN, end="2013-01-31", window_days=10, holdout_days=7, validation_days=9)
    assert s.search_train == ("2013-01-15",) and s.validation == tuple(JAN[15:24])


# -- metrics from the histogram ------------------------------------------------------------------

def test_histogram_metrics_match_sklearn():
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.15, 5000), 0, 1)
    bins = np.minimum((p * evaluate.BINS).astype(int), evaluate.BINS - 1)
    hist = [(int(b), int((bins == b).sum()), int(y[bins == b].sum()), float(p[bins == b].sum()))
            for b in np.unique(bins)]
    got = evaluate.metrics_from_histogram(hist)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=2e-4)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=2e-3)
    assert got["positive_rate"] == pytest.approx(y.mean()) and got["mean_prediction"] == pytest.approx(p.mean())
    perfect = evaluate.metrics_from_histogram([(100, 10, 0, 0.1), (9000, 5, 5, 4.5)])
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0


def test_histogram_metrics_are_the_curves_sums_bit_for_bit():
    """``metrics_from_histogram`` (numpy) gives exactly the floats the curves' own definitions
    add up one bin at a time (``roc_points``, ``pr_points``, ``reliability``), whatever the
    histogram's order: a monitoring record's metric and the same days pooled later must agree."""
    import random

    rng = random.Random(7)
    for trial in range(25):
        bins = rng.sample(range(evaluate.BINS), rng.choice([2, 3, 40, 1700]))
        hist = []
        for b in bins:
            rows = rng.randint(1, 60)
            hist.append((b, rows, rng.randint(0, rows), rows * (b + rng.random()) / evaluate.BINS))
        hist[0] = (hist[0][0], hist[0][1], 0, hist[0][3])
        hist[1] = (hist[1][0], hist[1][1], hist[1][1], hist[1][3])  # both classes present
        rng.shuffle(hist)
        n = sum(h[1] for h in hist)
        roc, pr = evaluate.roc_points(hist), evaluate.pr_points(hist)
        ap, prev = 0.0, 0.0
        for recall, precision in pr:
            ap += (recall - prev) * precision
            prev = recall
        expected = {
            "roc_auc": sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(roc, roc[1:])),
            "pr_auc": ap,
            "positive_rate": sum(h[2] for h in hist) / n,
            "mean_prediction": sum(h[3] for h in hist) / n,
            "calibration_error": sum(r / n * abs(mp - rate) for mp, rate, r in evaluate.reliability(hist)),
        }
        assert evaluate.metrics_from_histogram(hist) == expected, trial
    with pytest.raises(ValueError, match="both classes"):
        evaluate.metrics_from_histogram([(1, 5, 0, 0.0), (2, 5, 0, 0.01)])


# -- the promotion rule --------------------------------------------------------------------------

def test_better_challenger_is_promoted():
    d = promotion.decide(m(0.70), m(0.68), m(0.5), POLICY)
    assert d.promoted and d.reference == "champion" and d.improvement == pytest.approx(0.02)
    assert d.reasons == ["roc_auc 0.7000 vs champion 0.6800: improvement +0.0200 > margin 0.0050"]


def test_worse_challenger_is_rejected_with_reasons():
    d = promotion.decide(m(0.66, ece=0.09), m(0.68), m(0.5), POLICY)
    assert not d.promoted and d.guards == {"calibration": False, "positive_rate": True}
    assert d.reasons == [
        "roc_auc 0.6600 vs champion 0.6800: not better (-0.0200, margin 0.0050)",
        "guard calibration failed: expected calibration error 0.0900 > champion 0.0300 + tolerance 0.0200",
    ]


def test_tie_within_margin_is_rejected():
    d = promotion.decide(m(0.684), m(0.680), m(0.5), POLICY)
    assert not d.promoted
    assert d.reasons == ["roc_auc 0.6840 vs champion 0.6800: improvement +0.0040 within margin 0.0050"]


def test_better_auc_but_failed_positive_rate_guard_is_rejected():
    d = promotion.decide(m(0.75, mean_p=0.40, rate=0.25), m(0.68), m(0.5), POLICY)
    assert not d.promoted and d.guards == {"calibration": True, "positive_rate": False}
    assert d.reasons[1] == ("guard positive_rate failed: mean prediction 0.4000 vs observed 0.2500 "
                            "(gap 0.1500 > champion gap 0.0000 + tolerance 0.0200)")


def test_first_model_against_trivial_baseline():
    base = promotion.trivial_baseline(train_positive_rate=0.22, holdout_positive_rate=0.33)
    assert base["roc_auc"] == 0.5 and base["calibration_error"] == pytest.approx(0.11)
    assert promotion.decide(m(0.66, ece=0.10, mean_p=0.30, rate=0.33), None, base, POLICY).promoted
    useless = promotion.decide(m(0.503, ece=0.10, mean_p=0.30, rate=0.33), None, base, POLICY)
    assert not useless.promoted and useless.reference == "baseline"
    assert useless.reasons == ["roc_auc 0.5030 vs baseline 0.5000: improvement +0.0030 within margin 0.0050"]


def test_lower_is_better_metrics():
    policy = promotion.Policy(metric="log_loss", margin=0.01)
    assert promotion.decide(m(0.6, log_loss=0.45), m(0.6, log_loss=0.50), m(0.5), policy).promoted
    assert not promotion.decide(m(0.6, log_loss=0.495), m(0.6, log_loss=0.50), m(0.5), policy).promoted
    with pytest.raises(ValueError, match="unknown promotion metric"):
        promotion.Policy(metric="precision_at_10")


def window(start, end, valid_start, holdout_start, holdout_end):
    return {"train_start": start, "train_end": end, "validation_start": valid_start, "validation_end": end,
            "holdout_start": holdout_start, "holdout_end": holdout_end}


def test_promotion_log_entries_are_exact_and_answer_who_was_champion(tmp_path):
    lake = Lake(f"file://{tmp_path}/lake")
    trig = {"run_key": "k1", "dag_id": "train_delay_model", "dag_run_id": "manual__1", "triggered_by": "manual"}
    base = m(0.5)
    h1 = tuple(JAN[24:])
    first = promotion.decide(m(0.66), None, base, POLICY)
    e1 = promotion.log_entry(model_name="flight_delay", version="1", run_id="r1", run_key="k1", decision=first,
                             policy=POLICY, challenger=m(0.66), champion_version=None, champion=None, baseline=base,
                             comparison=promotion.comparison_days(h1, None, None),
                             challenger_window=window("2013-01-01", "2013-01-24", "2013-01-21", h1[0], h1[-1]),
                             champion_window=None, trigger=trig, decided_at="2013-02-01T04:00:00+00:00")
    promotion.write_entry(lake, e1)
    h2 = ("2013-02-01", "2013-02-02", "2013-02-03", "2013-02-04", "2013-02-05", "2013-02-06", "2013-02-07")
    champ_window = promotion.TrainingWindow("2013-01-01", "2013-01-24", "2013-01-21", "2013-01-24", "version tags")
    cmp2 = promotion.comparison_days(h2, "1", champ_window)
    worse = promotion.decide(m(0.65), m(0.66), base, POLICY, cmp2)
    e2 = promotion.log_entry(model_name="flight_delay", version="2", run_id="r2", run_key="k2", decision=worse,
                             policy=POLICY, challenger=m(0.65), champion_version="1", champion=m(0.66), baseline=base,
                             comparison=cmp2,
                             challenger_window=window("2013-01-02", "2013-01-31", "2013-01-28", h2[0], h2[-1]),
                             champion_window=champ_window, trigger={**trig, "run_key": "k2"},
                             decided_at="2013-02-08T04:00:00+00:00")
    promotion.write_entry(lake, e2)
    promotion.write_entry(lake, e2)  # a retried run replaces its own entry
    log = promotion.read_log(lake, "flight_delay")
    assert [json.dumps(e, sort_keys=True) for e in log] == [json.dumps(e, sort_keys=True) for e in (e1, e2)]
    assert e1["compared_days"] == list(h1) and e1["excluded_days"] == [] and e1["champion_before"] is None
    assert e2 == {
        "model": "flight_delay", "version": "2", "run_id": "r2", "run_key": "k2",
        "decided_at": "2013-02-08T04:00:00+00:00", "decision": "rejected",
        "reasons": ["roc_auc 0.6500 vs champion 0.6600: not better (-0.0100, margin 0.0050)"],
        "reference": "champion", "improvement": -0.01, "guards": {"calibration": True, "positive_rate": True},
        "policy": {"metric": "roc_auc", "margin": 0.005, "calibration_tolerance": 0.02,
                   "positive_rate_tolerance": 0.02},
        "challenger": {"version": "2", "metrics": m(0.65),
                       "window": window("2013-01-02", "2013-01-31", "2013-01-28", "2013-02-01", "2013-02-07")},
        "champion_before": {"version": "1", "metrics": m(0.66), "window": {
            "train_start": "2013-01-01", "train_end": "2013-01-24", "validation_start": "2013-01-21",
            "validation_end": "2013-01-24", "source": "version tags"}},
        "baseline": base, "champion_after": "1",
        "holdout": ["2013-02-01", "2013-02-07"], "compared_days": list(h2), "excluded_days": [],
        "trigger": {**trig, "run_key": "k2"},
    }
    assert promotion.champion_on(lake, "flight_delay", "2013-01-31T00:00:00+00:00") is None
    on_feb_10 = promotion.champion_on(lake, "flight_delay", "2013-02-10T00:00:00+00:00")
    assert on_feb_10["version"] == "1" and on_feb_10["reasons"] == first.reasons


# -- the champion is never scored on days it has seen ----------------------------------------------

CHAMP = promotion.TrainingWindow("2013-01-01", "2013-01-24", "2013-01-21", "2013-01-24", "version tags")


def test_gate_days_leave_out_every_day_the_champion_trained_or_validated_on():
    """The issue's case: v1 trained on ..01-24 (validation 01-21..24); a run from the form with the
    default 14-day holdout ends 01-31, so 01-18..24 of its holdout are days v1 has seen."""
    holdout = tuple(JAN[17:])  # 01-18..31
    c = promotion.comparison_days(holdout, "1", CHAMP)
    assert c.days == tuple(JAN[24:]) and c.excluded == tuple(JAN[17:24]) and c.refusal is None
    assert min(c.days) > CHAMP.train_end
    assert c.note == ("compared on 2013-01-25..2013-01-31 only (7 of the 14 holdout days): 2013-01-18..2013-01-24 "
                      "left out, on or before champion v1's last training day 2013-01-24")
    d = promotion.decide(m(0.66), m(0.64), m(0.5), POLICY, c)
    assert d.outcome == "promoted" and d.reasons == [
        "roc_auc 0.6600 vs champion 0.6400: improvement +0.0200 > margin 0.0050", c.note]
    # Nothing to leave out: the whole holdout, no note.
    later = promotion.comparison_days(tuple(JAN[24:]), "1", CHAMP)
    assert later.days == tuple(JAN[24:]) and later.excluded == () and later.note is None
    assert promotion.decide(m(0.66), m(0.64), m(0.5), POLICY, later).reasons == [
        "roc_auc 0.6600 vs champion 0.6400: improvement +0.0200 > margin 0.0050"]
    # No champion: the trivial baseline saw nothing; the whole holdout counts.
    first = promotion.comparison_days(holdout, None, None)
    assert first.days == holdout and first.excluded == () and first.refusal is None


def test_no_day_left_or_unknown_champion_window_is_no_decision():
    inside = promotion.comparison_days(tuple(JAN[17:24]), "1", CHAMP)  # 01-18..24: all seen by v1
    assert inside.days == () and inside.excluded == tuple(JAN[17:24])
    d = promotion.decide(m(0.99), None, m(0.5), POLICY, inside)
    assert not d.promoted and d.outcome == "no_decision" and d.improvement is None and d.guards == {}
    assert d.reasons == [
        "no decision: every holdout day (2013-01-18..2013-01-24) is on or before champion v1's last training day "
        "2013-01-24 (it trained on 2013-01-01..2013-01-24); a champion is never scored on days it has seen, so "
        "nothing was compared: the challenger is not promoted and v1 stays champion (train with a holdout "
        "reaching past 2013-01-24)"]
    unknown = promotion.comparison_days(tuple(JAN[24:]), "3", None)
    assert unknown.days == () and unknown.excluded == tuple(JAN[24:])
    d = promotion.decide(m(0.99), None, m(0.5), POLICY, unknown)
    assert d.outcome == "no_decision" and d.reasons[0].startswith(
        "no decision: champion v3 has no recorded training window")
    entry = promotion.log_entry(model_name="flight_delay", version="4", run_id="r4", run_key="k4", decision=d,
                                policy=POLICY, challenger=m(0.99), champion_version="3", champion=None,
                                baseline=m(0.5), comparison=unknown,
                                challenger_window=window("2013-01-01", "2013-01-24", "2013-01-21", JAN[24], JAN[30]),
                                champion_window=None, trigger={}, decided_at="2013-02-01T00:00:00+00:00")
    assert entry["decision"] == "no_decision" and entry["improvement"] is None and entry["champion_after"] == "3"
    assert entry["compared_days"] == [] and entry["champion_before"] == {"version": "3", "metrics": None,
                                                                          "window": None}


# -- what a person reads: the version's description and tags, the run's metric names ----------------

def entry_for(decision, chal, champ_version, champ, comparison, champ_window=None, base=None, version="4"):
    return promotion.log_entry(model_name="flight_delay", version=version, run_id="r", run_key="k",
                               decision=decision, policy=POLICY, challenger=chal, champion_version=champ_version,
                               champion=champ, baseline=base or m(0.5), comparison=comparison,
                               challenger_window={}, champion_window=champ_window, trigger={},
                               decided_at="2013-04-01T04:00:00+00:00")


def test_version_description_says_in_one_line_what_was_decided_and_why():
    holdout = tuple(f"2013-03-{d:02d}" for d in range(18, 32))
    window = promotion.TrainingWindow("2013-01-01", "2013-03-17", "2013-03-11", "2013-03-17", "run r3 params")
    same = promotion.comparison_days(holdout, "3", window)

    def described(chal, champ, comparison=same, champ_window=window, champ_version="3"):
        d = promotion.decide(chal, champ, m(0.5), POLICY, comparison)
        return promotion.describe(entry_for(d, chal, champ_version, champ, comparison, champ_window))

    assert described(m(0.781), m(0.772)) == (
        "Promoted to champion: holdout ROC AUC 0.7810 vs champion v3 0.7720 on the same days (2013-03-18..03-31), "
        "+0.0090 > margin 0.0050")
    assert described(m(0.765), m(0.772)) == (
        "Kept as challenger: holdout ROC AUC 0.7650 vs champion v3 0.7720 on the same days (2013-03-18..03-31), "
        "below champion v3 by 0.0070; v3 stays champion")
    assert described(m(0.775), m(0.772)) == (
        "Kept as challenger: holdout ROC AUC 0.7750 vs champion v3 0.7720 on the same days (2013-03-18..03-31), "
        "+0.0030, not above the margin 0.0050; v3 stays champion")
    assert described(m(0.790, ece=0.2), m(0.772)).endswith(
        "+0.0180 > margin 0.0050, guard calibration failed; v3 stays champion")
    # The first model, against the trivial baseline.
    first = promotion.comparison_days(holdout, None, None)
    assert described(m(0.66), None, first, None, None) == (
        "Promoted to champion (first model): holdout ROC AUC 0.6600 vs the trivial baseline 0.5000 "
        "(2013-03-18..03-31), +0.1600 > margin 0.0050")
    # Days the champion trained on are left out, and the line says so.
    overlap = promotion.comparison_days(holdout, "3", promotion.TrainingWindow("2013-01-01", "2013-03-24"))
    assert "on the same days (2013-03-25..03-31, 7 of the 14 holdout days: v3 trained on the rest)" in described(
        m(0.781), m(0.772), overlap)
    # No decision: why, and who stays champion.
    inside = promotion.comparison_days(holdout, "3", promotion.TrainingWindow("2013-01-01", "2013-04-30"))
    assert described(m(0.99), None, inside, promotion.TrainingWindow("2013-01-01", "2013-04-30")) == (
        "No decision, kept as challenger: every holdout day (2013-03-18..03-31) is on or before champion v3's last "
        "training day 2013-04-30, so the two cannot be compared fairly; v3 stays champion")
    unknown = promotion.comparison_days(holdout, "3", None)
    assert described(m(0.99), None, unknown, None) == (
        "No decision, kept as challenger: champion v3's training window is unknown, so it cannot be scored fairly; "
        "v3 stays champion")
    assert promotion.short_span(["2013-12-30", "2014-01-02"]) == "2013-12-30..2014-01-02"
    assert promotion.short_span(["2013-03-18"]) == "2013-03-18"


def test_version_tags_are_the_cut_set():
    from lakeforge.training import registry

    boundaries = make_split(JAN, end="2013-01-31", window_days=90, holdout_days=7, validation_days=4).boundaries()
    tags = registry.version_tags(family="lightgbm", boundaries=boundaries, metric="roc_auc", holdout_value=0.78123,
                                 data_sha256="ab" * 32, triggered_by="manual:admin")
    assert tags == {"lakeforge.family": "lightgbm", "lakeforge.train_window": "2013-01-01..2013-01-24",
                    "lakeforge.holdout": "2013-01-25..2013-01-31", "lakeforge.holdout_roc_auc": "0.7812",
                    "lakeforge.data_sha256": "ab" * 32, "lakeforge.trigger": "manual:admin"}
    reason = registry.version_tags(family="lr", boundaries=boundaries, metric="log_loss", holdout_value=0.5,
                                   data_sha256="0" * 64, triggered_by="asset_triggered", reason="drift")
    assert reason["lakeforge.trigger_reason"] == "drift" and reason["lakeforge.holdout_log_loss"] == "0.5000"


def test_the_data_hash_names_the_exact_partitions():
    from lakeforge.training.data import data_sha256

    parts = [{"ds": "2013-01-01", "content_sha256": "a"}, {"ds": "2013-01-02", "content_sha256": "b"}]
    assert data_sha256(parts) == data_sha256(parts[::-1]) and len(data_sha256(parts)) == 64
    assert data_sha256(parts) != data_sha256([parts[0], {**parts[1], "content_sha256": "c"}])
    assert data_sha256(parts) != data_sha256(parts[:1])


def test_run_metrics_name_what_they_were_measured_on():
    from spark_jobs.train_delay_model import run_metrics

    refit = {**m(0.7), "rows": 100.0, "fit_s": 2.0, "auc_per_fit_s": 0.35}
    assert run_metrics(refit) == {
        "holdout_roc_auc": 0.7, "holdout_pr_auc": 0.4, "holdout_log_loss": 0.5, "holdout_brier": 0.2,
        "holdout_calibration_error": 0.03, "holdout_mean_prediction": 0.25, "holdout_positive_rate": 0.25,
        "holdout_rows": 100.0, "fit_s": 2.0, "holdout_roc_auc_per_fit_s": 0.35}


def test_monitoring_reads_the_holdout_value_by_its_new_name_and_from_older_runs():
    """Monitoring's reference line is the champion's holdout value: the run's ``holdout_roc_auc``
    (and a run logged before the names said so: its plain ``roc_auc``)."""
    from types import SimpleNamespace

    from lakeforge.monitoring import store

    def client(metrics):
        run = SimpleNamespace(data=SimpleNamespace(metrics=metrics))
        return SimpleNamespace(get_model_version=lambda name, v: SimpleNamespace(run_id="r"),
                               get_run=lambda run_id: run)

    new = {"holdout_roc_auc": 0.78, "holdout_calibration_error": 0.01, "gate_champion_roc_auc": 0.77,
           "gate_challenger_roc_auc": 0.79, "best_valid_roc_auc": 0.8, "fit_s": 3.0}
    assert store.holdout_metrics(client(new), "flight_delay", "2") == {"roc_auc": 0.78, "calibration_error": 0.01}
    assert store.holdout_metrics(client({"roc_auc": 0.74}), "flight_delay", "1")["roc_auc"] == 0.74


def test_a_progress_line_per_trial_and_make_demo_prints_them_as_they_come():
    import io
    import logging
    import os
    import subprocess
    import sys

    from lakeforge.training import progress
    from lakeforge.training.search import trial_line

    assert trial_line(2, 3, "lightgbm", {"num_leaves": 63, "learning_rate": 0.05}, 0.67412, 0.67412, 2, 5.06) == (
        "trial 2/3: lightgbm num_leaves=63 learning_rate=0.05 -> val ROC AUC 0.6741 (best so far 0.6741, trial 2), "
        "fit 5.1s")
    assert trial_line(1, 3, "lr", {"regParam": 0.001}, 0.65, 0.65, 1, 1.0, baseline=True).startswith(
        "trial 1/3: lr (baseline) regParam=0.001 -> val ROC AUC 0.6500")

    out = io.StringIO()
    logger = logging.getLogger("lakeforge.test.progress")
    with progress.follow(out=out, interval=0.05) as path:
        progress.report(logger, "trial 1/2: lr regParam=0.001 -> val ROC AUC 0.6500 (best so far 0.6500, trial 1)")
        # The job runs in spark-submit's driver: a process that inherited the setting.
        code = ("from lakeforge.training import progress; import logging; "
                "progress.report(logging.getLogger('x'), 'trial 2/2: lightgbm -> val ROC AUC 0.6600')")
        subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
        deadline = time.time() + 10
        while out.getvalue().count("\n") < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert out.getvalue().splitlines() == [
            "  trial 1/2: lr regParam=0.001 -> val ROC AUC 0.6500 (best so far 0.6500, trial 1)",
            "  trial 2/2: lightgbm -> val ROC AUC 0.6600"]  # while the block runs, not at its end
        with open(path, "a") as f:
            f.write("trial 3/3: the last line")  # no newline yet: printed when the block ends
    assert out.getvalue().splitlines()[-1] == "  trial 3/3: the last line"
    assert progress.PROGRESS_FILE_ENV not in os.environ and not os.path.exists(path)


# -- search candidates and the DAG's plan --------------------------------------------------------

def test_search_candidates_are_distinct_and_sized_by_budget():
    c = candidates("xgboost", 5)
    assert len(c) == 5 and len({json.dumps(x, sort_keys=True) for x in c}) == 5
    assert c == candidates("xgboost", 5)  # seeded: a rerun searches the same configurations
    with pytest.raises(ValueError, match="unknown model family"):
        candidates("svm", 2)


PARAMS = {"end": None, "window_days": 90, "holdout_days": 7, "validation_days": 4, "model_family": "xgboost",
          "search_budget": 2, "search_parallelism": 2}


def test_plan_manual_scheduled_and_asset_runs():
    manual = decide_plan(PARAMS, "manual", JAN, last_trained_end="2013-01-31", min_new_days=7)
    assert manual["train"] and manual["end"] == "2013-01-31" and manual["split"]["holdout_start"] == "2013-01-25"
    three_new = JAN[:28]
    assert not decide_plan(PARAMS, "asset_triggered", three_new, "2013-01-25", 7)["train"]
    assert decide_plan(PARAMS, "scheduled", three_new, "2013-01-25", 7)["train"]
    assert decide_plan(PARAMS, "asset_triggered", JAN, "2013-01-24", 7)["train"]
    assert not decide_plan(PARAMS, "scheduled", JAN, "2013-01-31", 7)["train"]
    assert not decide_plan(PARAMS, "manual", [], None, 7)["train"]
    with pytest.raises(ValueError, match="training window"):
        decide_plan({**PARAMS, "end": "2013-01-03"}, "manual", JAN, None, 7)
    with pytest.raises(ValueError, match=r"validation_days \(12\) must be smaller than window_days \(12\)"):
        decide_plan({**PARAMS, "window_days": 12, "validation_days": 12}, "manual", JAN, None, 7)


def test_a_lake_too_short_for_the_window_skips_scheduled_runs_and_fails_manual_ones():
    """Unpausing the DAG starts the last weekly run at once: on a lake a few days old it trains
    nothing and says why (not a red run); a manual run asked for that window and fails; a window no
    data can ever fill fails every run."""
    four_days = JAN[:4]
    for run_type in ("scheduled", "asset_triggered"):
        plan = decide_plan(PARAMS, run_type, four_days, None, 1)
        assert not plan["train"] and plan["reason"].startswith("not enough feature days yet"), plan
    with pytest.raises(ValueError, match="training window"):
        decide_plan(PARAMS, "manual", four_days, None, 1)
    with pytest.raises(ValueError, match="must be smaller than window_days"):
        decide_plan({**PARAMS, "window_days": 12, "validation_days": 12}, "scheduled", four_days, None, 1)
    assert decide_plan({**PARAMS, "window_days": 3, "holdout_days": 1, "validation_days": 1},
                       "scheduled", four_days, None, 1)["train"]


def test_mlflow_scratch_space_is_removed_and_the_process_settings_restored(tmp_path, monkeypatch):
    import os
    import tempfile

    from lakeforge.training.tracking import scratch_space

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("MLFLOW_DFS_TMP", "/somewhere/else")
    with pytest.raises(RuntimeError, match="boom"), scratch_space() as scratch:
        assert os.path.dirname(scratch) == str(tmp_path)
        assert tempfile.mkdtemp().startswith(scratch + os.sep)  # libraries' temp folders land inside
        assert os.environ["MLFLOW_DFS_TMP"].startswith(scratch + os.sep)
        raise RuntimeError("boom")  # removed on failure too
    assert list(tmp_path.iterdir()) == []
    assert tempfile.tempdir == str(tmp_path) and os.environ["MLFLOW_DFS_TMP"] == "/somewhere/else"


def test_lightgbm_rendezvous_hands_every_worker_all_addresses_in_rank_order():
    """The driver-side rendezvous of LightGBM-on-Spark: every worker gets the whole list in rank
    order once all have registered; a wrong token is turned away; a retried rank replaces its
    earlier registration; a registration whose task died never completes a group."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from lakeforge.training.lightgbm_spark import _exchange, _Rendezvous

    def registered(rdv, rank, timeout=10.0):
        deadline = time.time() + timeout
        while rank not in rdv._pending and time.time() < deadline:
            time.sleep(0.01)
        return rank in rdv._pending

    rdv = _Rendezvous("127.0.0.1", 3)
    try:
        assert _exchange(rdv.address, "not-the-token", 0, "127.0.0.1:1") == []
        with ThreadPoolExecutor(3) as pool:
            stale = pool.submit(_exchange, rdv.address, rdv.token, 2, "127.0.0.1:999")  # a failed attempt
            assert registered(rdv, 2)
            futures = [pool.submit(_exchange, rdv.address, rdv.token, 2, "127.0.0.1:9002")]
            assert stale.result(timeout=30) == []  # its connection was closed when rank 2 registered again
            futures += [pool.submit(_exchange, rdv.address, rdv.token, rank, f"127.0.0.1:{9000 + rank}")
                        for rank in (0, 1)]
            lists = [f.result(timeout=30) for f in futures]
        assert lists == [["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"]] * 3

        # A task that registered, then died (Spark killed its attempt): 0 and 1 of the retry do not
        # complete the group with it; they wait for the retried rank 2.
        with socket.create_connection(rdv.address) as dead:
            dead.sendall(f"{rdv.token} 2 127.0.0.1:998\n".encode())
            assert registered(rdv, 2)
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(_exchange, rdv.address, rdv.token, rank, f"127.0.0.1:{8000 + rank}")
                       for rank in (0, 1)]
            assert registered(rdv, 0) and registered(rdv, 1)
            time.sleep(0.2)
            assert not any(f.done() for f in futures)
            futures.append(pool.submit(_exchange, rdv.address, rdv.token, 2, "127.0.0.1:8002"))
            lists = [f.result(timeout=30) for f in futures]
        assert lists == [["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]] * 3
    finally:
        rdv.close()
