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
        promotion.Policy(metric="accuracy")


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
