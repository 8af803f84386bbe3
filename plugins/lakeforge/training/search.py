"""Hyperparameter search inside the training's Spark application: trials run in parallel threads
(each a Spark job; Spark schedules them side by side), each one a nested MLflow run of the parent.

Unless ``baseline`` is off, the MLlib LogisticRegression baseline (default parameters) is trial 0
of every search, so the registered challenger is whichever of baseline and tuned family scored
best on the validation days. The executor slots are shared: with ``parallelism`` trials at a time an xgboost trial gets
``slots // parallelism`` workers (at least one), so concurrent barrier stages never wait on each
other for slots. Trials fit on the search-train days and are scored on the validation days; the
best configuration (validation ROC AUC) is returned for the refit on the whole window.

Each finished trial is reported as it finishes (``progress.report``: the task log, and the
terminal of ``make demo``), e.g.
``trial 2/3: lightgbm num_leaves=63 learning_rate=0.05 ... -> val ROC AUC 0.6740 (best so far 0.6740, trial 2), fit 5.1s``;
trials are numbered from 1 as their nested runs are named (``trial-02-lightgbm``), "best so far"
is over the trials finished by then.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lakeforge.training import progress
from lakeforge.training.spec import HIGHER_IS_BETTER, METRIC_LABELS, ModelSpec
from lakeforge.training.task_metrics import evaluate
from lakeforge.training.trainers import DEFAULTS, IMPUTING_FAMILIES, build_pipeline, candidates, observed_numeric

log = logging.getLogger(__name__)


@dataclass
class Trial:
    index: int
    family: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_s: float
    run_id: str


def workers_per_trial(slots: int, parallelism: int) -> int:
    return max(1, slots // max(1, parallelism))


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def trial_line(number: int, total: int, family: str, params: dict[str, Any], value: float,
               best: float, best_number: int, fit_s: float, baseline: bool = False, metric: str = "roc_auc") -> str:
    """The progress line of one finished trial (numbers from 1)."""
    name = f"{family} (baseline)" if baseline else family
    return (f"trial {number}/{total}: {name} {format_params(params)} -> val {METRIC_LABELS.get(metric, metric)} "
            f"{value:.4f} (best so far {best:.4f}, trial {best_number}), fit {fit_s:.1f}s")


def fit_and_score(family: str, params: dict[str, Any], train, score, num_workers: int, spec: ModelSpec):
    """Fit one configuration and score it: (model, metrics, histogram or None, fit seconds)."""
    t = time.perf_counter()
    numeric = observed_numeric(train, spec) if family in IMPUTING_FAMILIES else None
    model = build_pipeline(family, params, num_workers=num_workers, numeric=numeric, spec=spec).fit(train)
    fit_s = time.perf_counter() - t
    metrics, hist = evaluate(spec, model.transform(score))
    return model, metrics, hist, fit_s


def rank_key(metric: str):
    """Sort key putting the best trial first (ties: the earlier trial)."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return lambda t: (sign * t.metrics[metric], t.index)


def run_search(
    *,
    family: str,
    budget: int,
    parallelism: int,
    slots: int,
    train,
    validation,
    experiment_id: str,
    parent_run_id: str,
    spec: ModelSpec,
    baseline: bool = True,
    seed: int = 13,
) -> list[Trial]:
    """Every trial, best first (by the task's search metric)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    metric, base = spec.kind.search_metric, spec.kind.baseline
    best_first = rank_key(metric)
    client = MlflowClient()
    configs = [(family, c) for c in candidates(family, budget, seed)]
    if baseline and family != base:
        configs.insert(0, (base, dict(DEFAULTS[base])))
    parallelism = max(1, min(parallelism, len(configs)))
    workers = workers_per_trial(slots, parallelism)
    total = len(configs)
    lock = threading.Lock()
    finished: list[Trial] = []
    tuned = sum(1 for f, _ in configs if f == family)
    what = f"{tuned} {family}" + (f" + the {base} baseline" if tuned < total else "")
    progress.report(log, f"search: {total} trial(s) ({what}), {parallelism} at a time, scored on the validation days")

    def one(item: tuple[int, tuple[str, dict[str, Any]]]) -> Trial:
        i, (fam, params) = item
        baseline_trial = baseline and fam == base and family != base and i == 0
        run = client.create_run(experiment_id, run_name=f"trial-{i + 1:02d}-{fam}", tags={
            "mlflow.parentRunId": parent_run_id, "lakeforge.kind": "search_trial", "lakeforge.family": fam})
        rid = run.info.run_id
        try:
            client.log_batch(rid, params=[Param(k, str(v)) for k, v in
                                          {**params, "family": fam, "num_workers": workers}.items()])
            _, metrics, _, fit_s = fit_and_score(fam, params, train, validation, workers, spec)
            now = int(time.time() * 1000)
            client.log_batch(rid, metrics=[Metric(f"valid_{k}", v, now, 0) for k, v in metrics.items()]
                             + [Metric("fit_s", fit_s, now, 0)], tags=[RunTag("lakeforge.trial", str(i + 1))])
            client.set_terminated(rid, "FINISHED")
        except BaseException as exc:
            client.set_terminated(rid, "FAILED")
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            progress.report(log, f"trial {i + 1}/{total}: {fam} {format_params(params)} failed: "
                                 f"{type(exc).__name__}: {first}", logging.ERROR)
            raise
        trial = Trial(i, fam, params, metrics, fit_s, rid)
        with lock:
            finished.append(trial)
            best = min(finished, key=best_first)
            progress.report(log, trial_line(i + 1, total, fam, params, metrics[metric], best.metrics[metric],
                                            best.index + 1, fit_s, baseline_trial, metric))
        return trial

    for fam in {f for f, _ in configs}:  # imports happen here, not racing in the trial threads
        build_pipeline(fam, dict(DEFAULTS[fam]), num_workers=workers, spec=spec)
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="trial") as pool:
        trials = list(pool.map(one, enumerate(configs)))
    return sorted(trials, key=best_first)
