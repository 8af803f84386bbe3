"""The generic training job: train a pipeline's model, track it in MLflow, register it, run the gate.

    spark-submit spark_jobs/train.py --pipeline seattle_weather --run-key train_seattle_weather/manual__... \\
        [--end 2015-12-01] [--window-days 730] [--holdout-days 92] [--family rf] [--search-budget 4]

What is specific to a pipeline comes from its ``ModelSpec`` (``lakeforge.pipelines.<name>.model``:
the features table, label, task type, feature columns, model name, families, promotion metric;
``lakeforge.training.spec``); everything else is the same for every pipeline.
``spark_jobs/train_delay_model.py`` is this job for nycflights.

ONE Spark application per training run: read the features partitions of the split (time-based:
rolling window, then a holdout of the newest days), fit the task's baseline (MLlib
LogisticRegression, or LinearRegression for a regression) and
search the chosen family (trials in parallel threads, nested MLflow runs), refit the best
configuration on the whole window, score it on the holdout, log everything to one parent MLflow
run, register the model as a ``challenger`` version and let the gate
(``lakeforge.training.promotion``) decide whether it becomes ``champion``: both models are scored
on the holdout days after the champion's last training day only (none left: no decision).

Idempotent per ``--run-key``: a rerun after success changes nothing; a rerun after a crash deletes
the half-registered version first. An unreachable MLflow server fails the job before Spark starts.

A model that is promoted gets its drift reference profile (``lakeforge.monitoring.drift.build_profile``
over the training window and the model's predictions on the holdout) stored on its run as
``monitoring/reference_profile.json`` before the ``champion`` alias moves: batch scoring reads it
there (its account may not write to the training run). A rejected challenger never serves and
gets none (a rescore with it builds one in the scoring run: ``drift.ensure_reference_profile``).

``--trigger-reason`` (the retraining policy's reason, when a retraining request triggered the run)
becomes the run tag ``lakeforge.trigger_reason`` (and the version's) and part of the promotion log
entry's ``trigger``.

What a person sees: every search trial is reported as it finishes ("trial 2/3: lightgbm ... -> val
ROC AUC 0.6740 (best so far 0.6740, trial 2)": ``lakeforge.training.progress``); the parent run's
metrics say what they were measured on (``holdout_*``, ``gate_challenger_*`` / ``gate_champion_*`` /
``gate_baseline_*`` on the gate days, the trials' ``valid_*``); its plots (the ROC, PR and
calibration curves of a binary model, every model's feature importance) show on the run page; the
registered version carries a few tags (``registry.VERSION_TAGS``) and one line saying what was
decided and why (``promotion.describe``), which is also the run's description.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
import warnings
from datetime import datetime, timezone
from typing import Any

from lakeforge.lake import Lake, source_lake
from lakeforge.mlflow_auth import use_account
from lakeforge.settings import get_settings
from lakeforge.training import data, promotion, registry, tracking
from lakeforge.training.evaluate import close, curve_figures, figure_pixels, importance_figure, with_probability
from lakeforge.training.search import fit_and_score, run_search
from lakeforge.training.spec import ModelSpec, load_model_spec
from lakeforge.training.split import Split, make_split
from lakeforge.training.task_metrics import evaluate, label_summary, trivial_baseline
from lakeforge.training.trainers import feature_importance

log = logging.getLogger("lakeforge.training.job")
TRIGGER_REASON_TAG = "lakeforge.trigger_reason"
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value is 8000 (a reason is a line or two)


def reports_dir(spec: ModelSpec) -> str:
    return f"_reports/{spec.job}"


def job_lake(args: argparse.Namespace, spec: ModelSpec) -> Lake:
    """``--lake`` (this source's lake URI) when given, else the source's namespace of the lake root."""
    return Lake(args.lake) if args.lake else source_lake(spec.source)


def load_split(spark, lake: Lake, split: Split, partitions: list[dict[str, Any]], spec: ModelSpec):
    """(train, search_train, validation, holdout) DataFrames of exactly the split's partitions:
    the spec's feature columns, its label and ``ds``, of the rows its ``row_filter`` keeps."""
    from pyspark.sql import functions as F

    by_ds = {p["ds"]: p for p in partitions}
    days = list(split.train) + list(split.holdout)
    df = (spark.read.option("basePath", lake.uri(spec.features))
          .parquet(*[by_ds[d]["uri"] for d in days]))
    if spec.row_filter:
        df = df.where(F.expr(spec.row_filter))
    df = df.select(*spec.feature_names(), spec.label, F.col(spec.time_column).cast("string").alias("ds"))

    def part(ds_list) -> Any:
        return df.filter(F.col("ds").isin(list(ds_list))).cache()

    return part(split.train), part(split.search_train), part(split.validation), part(split.holdout)


@contextlib.contextmanager
def checksummed_local_fs(spark):
    """MLflow's Spark flavor copies models with ``FileSystem.getLocal``, which needs Hadoop's
    checksummed LocalFileSystem; lakeforge sessions use RawLocalFileSystem (no .crc files in the
    lake). Switch only around MLflow's model I/O and restore after (a shared session stays as it was)."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    before = conf.get("fs.file.impl")
    conf.set("fs.file.impl", "org.apache.hadoop.fs.LocalFileSystem")
    try:
        yield
    finally:
        if before is None:
            conf.unset("fs.file.impl")
        else:
            conf.set("fs.file.impl", before)


def score(model, df, spec: ModelSpec) -> dict[str, float]:
    metrics, _ = evaluate(spec, model.transform(df))
    return metrics


def load_version(spark, name: str, version: str):
    """A registered version, loaded only if its artifacts still match the digest recorded at its
    registration (loading a Spark/pyfunc model runs its code)."""
    import mlflow

    from lakeforge.training.artifact_digest import load_verified_model

    with checksummed_local_fs(spark):
        return load_verified_model(f"models:/{name}/{version}", mlflow.spark.load_model)


def gate(spark, spec: ModelSpec, model, metrics: dict[str, float], holdout, split: Split,
         summary: dict[str, Any]):
    """The registry gate's inputs: which holdout days the champion may be scored on (never one it
    trained on: ``promotion.comparison_days``), and both models' metrics on exactly those days.

    Returns (comparison, champion version, its window, challenger metrics, champion metrics,
    baseline), the metrics on ``comparison.days``; the champion is not loaded when there is no
    comparison to make. ``summary``: what the constant baseline learnt from the training rows."""
    name = spec.name
    current = registry.champion_version(name)
    champ_v = None if current is None else str(current.version)
    window = None if current is None else registry.training_window(current)
    comparison = promotion.comparison_days(split.holdout, champ_v, window)
    if champ_v is not None:
        log.info("champion v%s trained on %s; gate days %s (left out: %s)%s", champ_v,
                 window and f"{window.train_start}..{window.train_end} ({window.source})",
                 list(comparison.days), list(comparison.excluded),
                 f"; {comparison.refusal}" if comparison.refusal else "")
    if comparison.refusal:
        return comparison, champ_v, window, metrics, None, trivial_baseline(spec, summary, holdout, metrics)
    if comparison.days == split.holdout:
        days_df, challenger = holdout, metrics
    else:  # the challenger is scored again, on the days the champion never saw
        days_df = holdout.filter(holdout["ds"].isin(list(comparison.days)))
        challenger = score(model, days_df, spec)
    champion = None if champ_v is None else score(load_version(spark, name, champ_v), days_df, spec)
    return comparison, champ_v, window, challenger, champion, trivial_baseline(spec, summary, days_df, challenger)


def run_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The refit model's metrics as the parent run logs them, named by what they were measured on:
    ``holdout_<m>`` (the whole holdout), ``fit_s`` (the refit), ``holdout_roc_auc_per_fit_s``."""
    names = {"fit_s": "fit_s", "auc_per_fit_s": "holdout_roc_auc_per_fit_s"}
    return {names.get(k, f"holdout_{k}"): v for k, v in metrics.items()}


def log_plots(hist, importance: dict[str, float], family: str) -> None:
    """The holdout's ROC, PR and calibration curves (``hist``: a binary model's; None: no curves)
    and the feature importance on the active run:
    each a PNG under ``plots/`` (``mlflow.log_figure``: previewed in the run's Artifacts tab) and an
    image of the same name (``mlflow.log_image`` with a key: the image grid of the run's Model
    metrics tab, no clicking through artifacts)."""
    import mlflow

    figures = {**(curve_figures(hist, f"{family} holdout") if hist is not None else {}),
               "feature_importance.png": importance_figure(importance, family)}
    try:
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}")
            key = name.removesuffix(".png")
            mlflow.log_image(figure_pixels(fig), key=key if key == "feature_importance" else f"holdout_{key}",
                             step=0, synchronous=True)
    finally:
        close(figures.values())


def log_model(model, holdout, family: str, spec: ModelSpec):
    """The fitted pipeline as an MLflow Spark model, with signature, input example and pinned
    requirements (inference is slow and would pick up pyspark-client). The signature's output: the
    positive class's probability (binary), the class index (multiclass) or the prediction."""
    import mlflow
    from mlflow.models import infer_signature
    from pyspark.sql import functions as F

    columns = spec.feature_names()
    scored = model.transform(holdout.limit(5))
    if spec.task == "binary":
        output, name = with_probability(scored).select(*columns, "p"), "probability"
    else:
        output, name = scored.select(*columns, F.col("prediction").alias("p")), "prediction"
    sample = output.toPandas()
    example = sample[columns]
    with warnings.catch_warnings():
        # MLflow's hint about nullable integer columns: the model is scored as a Spark DataFrame,
        # where the feature columns keep their Spark types (nulls included).
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, sample["p"].rename(name))
    with checksummed_local_fs(holdout.sparkSession):
        return mlflow.spark.log_model(
            model, "model", signature=signature, input_example=example,
            pip_requirements=tracking.pip_requirements(), metadata={"family": family},
        )


def run(spark, lake: Lake, args: argparse.Namespace, spec: ModelSpec) -> dict[str, Any]:
    import mlflow

    s = get_settings()
    name = spec.name
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    partitions = data.usable(data.feature_partitions(lake, spec.features))
    split = make_split([p["ds"] for p in partitions], end=args.end, window_days=args.window_days,
                       holdout_days=args.holdout_days, validation_days=args.validation_days)
    by_ds = {p["ds"]: p for p in partitions}
    train_parts = [by_ds[d] for d in split.train]
    holdout_parts = [by_ds[d] for d in split.holdout]
    log.info("split %s", split.boundaries())
    train, search_train, validation, holdout = load_split(spark, lake, split, partitions, spec)
    summary = label_summary(spec, train)
    n_train = summary["rows"]
    data_hash = data.data_sha256(train_parts + holdout_parts)
    slots = spark.sparkContext.defaultParallelism
    trigger = {"run_key": args.run_key, "dag_id": args.dag_id, "dag_run_id": args.dag_run_id,
               "triggered_by": args.triggered_by, "reason": args.trigger_reason or None}
    experiment_id = tracking.setup(spec.experiment)
    parent_tags = {
        registry.RUN_KEY_TAG: args.run_key,
        "airflow.dag_id": args.dag_id or "",
        "airflow.dag_run_id": args.dag_run_id or "",
        "airflow.triggered_by": args.triggered_by or "",
        "mlflow.source.git.commit": tracking.git_commit(),
        "lakeforge.quality": data.quality_summary(train_parts + holdout_parts),
        "lakeforge.family": args.family,
        "lakeforge.pipeline": spec.source,
        "lakeforge.task": spec.task,
        **({TRIGGER_REASON_TAG: args.trigger_reason[:MAX_TAG_CHARS]} if args.trigger_reason else {}),
    }
    run_name = f"{args.family} {split.train[0]}..{split.holdout[-1]}"
    with mlflow.start_run(run_name=run_name, tags=parent_tags) as parent:
        rid = parent.info.run_id
        mlflow.log_params({
            "family": args.family, "window_days": args.window_days, "holdout_days": args.holdout_days,
            "validation_days": args.validation_days, "search_budget": args.search_budget,
            "search_parallelism": args.search_parallelism, "executor_slots": slots,
            "train_rows": n_train, "n_features": len(spec.feature_names()), "run_key": args.run_key,
            "task": spec.task, "label": spec.label,
            "shuffle_partitions": s.spark_shuffle_partitions, "data_sha256": data_hash, **split.boundaries(),
        })
        mlflow.log_dict(split.as_dict(), "split.json")
        mlflow.log_dict(feature_spec(spec), "features.json")
        mlflow.log_dict({p["ds"]: {k: p[k] for k in ("uri", "content_sha256", "rows", "quality",
                                                      "quality_evidence")} for p in train_parts + holdout_parts},
                        "input_partitions.json")
        tracking.log_partition_inputs(rid, train_parts, "training", spec.features)
        tracking.log_partition_inputs(rid, holdout_parts, "evaluation", spec.features)
        timings["prepare_s"] = time.perf_counter() - t0

        t = time.perf_counter()
        trials = run_search(family=args.family, budget=args.search_budget, parallelism=args.search_parallelism,
                            slots=slots, train=search_train, validation=validation, experiment_id=experiment_id,
                            parent_run_id=rid, baseline=not args.no_baseline, spec=spec)
        timings["search_s"] = time.perf_counter() - t
        best = trials[0]
        family = best.family
        mlflow.set_tag("lakeforge.chosen_family", family)
        mlflow.log_params({"chosen_family": family, **{f"best_{k}": v for k, v in best.params.items()}})
        base, search_metric = spec.kind.baseline, spec.kind.search_metric
        for tr in trials:
            if tr.family == base and args.family != base:
                mlflow.log_metrics({f"baseline_{base}_valid_{k}": v for k, v in tr.metrics.items()})
        mlflow.log_metric(f"best_valid_{search_metric}", best.metrics[search_metric])

        t = time.perf_counter()
        model, metrics, hist, fit_s = fit_and_score(family, best.params, train, holdout, slots, spec)
        timings["refit_s"] = time.perf_counter() - t
        metrics["fit_s"] = fit_s
        if "roc_auc" in metrics:
            metrics["auc_per_fit_s"] = metrics["roc_auc"] / fit_s
        mlflow.log_metrics(run_metrics(metrics))
        log.info("refit %s on %s..%s (%d rows): holdout %s %.4f, fit %.1fs", family, split.train[0],
                 split.train[-1], n_train, search_metric, metrics[search_metric], fit_s)
        importance = feature_importance(family, model)
        log_plots(hist, importance, family)
        mlflow.log_dict(importance, "feature_importance.json")

        t = time.perf_counter()
        info = log_model(model, holdout, family, spec)
        timings["log_model_s"] = time.perf_counter() - t
        policy = promotion.Policy.from_settings(metric=spec.promotion_metric)
        version = registry.register(name, info.model_uri, rid, args.run_key, registry.version_tags(
            family=family, boundaries=split.boundaries(), metric=policy.metric, holdout_value=metrics[policy.metric],
            data_sha256=data_hash, triggered_by=args.triggered_by, reason=args.trigger_reason),
            description=spec.description)

        t = time.perf_counter()
        comparison, champ_v, champ_window, gate_m, champ_m, baseline = gate(
            spark, spec, model, metrics, holdout, split, summary)
        timings["champion_score_s"] = time.perf_counter() - t
        decision = promotion.decide(gate_m, champ_m, baseline, policy, comparison)
        challenger_window = {k: v for k, v in split.boundaries().items() if k in registry.WINDOW_KEYS}
        entry = promotion.log_entry(
            model_name=name, version=version, run_id=rid, run_key=args.run_key, decision=decision,
            policy=policy, challenger=gate_m, champion_version=champ_v, champion=champ_m, baseline=baseline,
            comparison=comparison, challenger_window=challenger_window, champion_window=champ_window,
            trigger=trigger, decided_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        # Before the alias moves: a champion is scored with its profile.
        if entry["decision"] == "promoted":
            t = time.perf_counter()
            log_reference_profile(spec, model, train, holdout, name, version, rid, split)
            timings["reference_profile_s"] = time.perf_counter() - t
        log_path = promotion.write_entry(lake, entry)
        registry.record_decision(name, version, entry)
        registry.finish_promotion(name, version, entry["decision"], champ_v)
        summary = promotion.describe(entry)
        log.info("%s v%s: %s", name, version, summary)
        mlflow.set_tags({"lakeforge.decision": entry["decision"], "lakeforge.model_version": version,
                         "lakeforge.promotion_log": lake.uri(log_path),
                         "lakeforge.compared_on": (f"{comparison.days[0]}..{comparison.days[-1]}"
                                                   if comparison.days else "none"),
                         "mlflow.note.content": summary})  # the run page's description
        # The gate's inputs, all on the gate days (``gate_days`` of them): the challenger, the
        # champion (when it was scored) and the trivial baseline.
        mlflow.log_metric("gate_days", len(comparison.days))
        if comparison.days:
            mlflow.log_metrics({f"gate_challenger_{k}": v for k, v in gate_m.items()
                                if k not in ("fit_s", "auc_per_fit_s")})
            mlflow.log_metrics({f"gate_baseline_{k}": v for k, v in baseline.items()})
        if champ_m:
            mlflow.log_metrics({f"gate_champion_{k}": v for k, v in champ_m.items()})
        timings["total_in_app_s"] = time.perf_counter() - t0
        mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
    spark.catalog.clearCache()
    return {
        "run_id": rid, "experiment_id": experiment_id, "model": name, "version": version,
        "decision": entry["decision"], "reasons": entry["reasons"], "champion_before": champ_v,
        "metrics": metrics, "gate_metrics": gate_m, "champion_metrics": champ_m,
        "compared_days": list(comparison.days), "excluded_days": list(comparison.excluded),
        "champion_window": None if champ_window is None else champ_window.as_dict(),
        "baseline": baseline, "family": family,
        "trials": [{"family": tr.family, "params": tr.params, "valid": tr.metrics, "fit_s": tr.fit_s} for tr in trials],
        "split": split.boundaries(), "train_rows": n_train, "timings": timings, "promotion_log": log_path,
        "model_uri": info.model_uri,
    }


def log_reference_profile(spec: ModelSpec, model, train, holdout, name: str, version: str, run_id: str,
                          split: Split) -> None:
    """The version's drift reference profile on its (active) run: the training window's feature
    distributions and the model's predictions on the holdout days (out of sample, like the days it
    will score; the task's output columns, as batch scoring writes them). Two Spark passes over
    each of the cached frames (already the spec's rows)."""
    import mlflow

    from lakeforge.monitoring.drift import build_profile
    from lakeforge.monitoring.store import PROFILE_ARTIFACT
    from lakeforge.scoring.outputs import model_outputs

    days = [c for c in ("ds",) if c in holdout.columns]  # per day when the frame says which
    profile = build_profile(spec, train, model_outputs(spec, model, holdout, days), filtered=True, meta={
        "model_name": name, "model_version": str(version), "run_id": run_id,
        "window": {"train_start": split.train[0], "train_end": split.train[-1]},
        "prediction_days": [split.holdout[0], split.holdout[-1]]})
    mlflow.log_dict(profile, PROFILE_ARTIFACT)


def feature_spec(spec: ModelSpec) -> dict[str, Any]:
    return {**spec.as_dict(), "table": spec.features}


def already_done(name: str, run_key: str) -> dict[str, Any] | None:
    """The outcome of an earlier, completed run of this run key (its alias move finished)."""
    v = registry.complete_version(name, run_key)
    if v is None:
        return None
    decision = v.tags.get(registry.DECISION_TAG, "")
    registry.finish_promotion(name, str(v.version), decision, registry.champion_before(v))
    return {"run_id": v.run_id, "model": name, "version": str(v.version), "decision": decision, "reused": True}


def parse_args(argv: list[str] | None, spec: ModelSpec | None = None) -> tuple[argparse.Namespace, ModelSpec]:
    """The job's arguments and the pipeline's spec (``--pipeline``, unless ``spec`` is given)."""
    s = get_settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", required=spec is None, default=spec and spec.source,
                   help="the pipeline folder whose MODEL is trained")
    if spec is None:
        spec = load_model_spec(p.parse_known_args(argv)[0].pipeline)
    p.add_argument("--run-key", required=True, help="dedupe key: one registered version per key")
    p.add_argument("--end", help="newest feature day to use (default: the newest published)")
    p.add_argument("--window-days", type=int, default=spec.window_days)
    p.add_argument("--holdout-days", type=int, default=spec.holdout_days)
    p.add_argument("--validation-days", type=int, default=spec.validation_days)
    p.add_argument("--family", choices=spec.families, default=spec.family)
    p.add_argument("--search-budget", type=int, default=s.search_budget)
    p.add_argument("--search-parallelism", type=int, default=s.search_parallelism)
    p.add_argument("--no-baseline", action="store_true",
                   help=f"leave the baseline ({spec.kind.baseline}) out of the search")
    p.add_argument("--lake", help=f"this source's lake URI (default: <LAKEFORGE_LAKE_ROOT>/{spec.source})")
    p.add_argument("--dag-id")
    p.add_argument("--dag-run-id")
    p.add_argument("--triggered-by", default="manual")
    p.add_argument("--trigger-reason", default="",
                   help="why the run was requested (the retraining policy's reason): a run tag and in the promotion log")
    args = p.parse_args(argv)
    if args.pipeline != spec.source:
        p.error(f"--pipeline {args.pipeline}: this entry trains {spec.source}'s model")
    return args, spec


def train(spark, args: argparse.Namespace, spec: ModelSpec) -> dict[str, Any]:
    """Idempotent entry for an existing session (the job's main and the tests use it)."""
    name = spec.name
    experiment_id = tracking.setup(spec.experiment)  # MlflowUnavailable before any work
    done = already_done(name, args.run_key)
    if done is not None:
        log.warning("run key %s already registered as %s v%s: nothing to do", args.run_key, name, done["version"])
        return done
    registry.remove_half_registered(name, args.run_key)
    tracking.fail_stale_runs(experiment_id, args.run_key)
    with tracking.scratch_space():
        return run(spark, job_lake(args, spec), args, spec)


def main(argv: list[str] | None = None, spec: ModelSpec | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, spec = parse_args(argv, spec)
    started = time.perf_counter()
    use_account("training")  # this job's MLflow account, where the runner holds several
    tracking.setup(spec.experiment)  # fail before the JVM starts when MLflow is down
    result = already_done(spec.name, args.run_key)
    if result is None:
        from lakeforge.spark import session

        spark = session(spec.job)
        startup = time.perf_counter() - started
        try:
            result = train(spark, args, spec)
        finally:
            spark.stop()
        result.setdefault("timings", {})["spark_startup_s"] = startup
        result["timings"]["total_s"] = time.perf_counter() - started
    if not result.get("reused"):
        lake = job_lake(args, spec)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        lake.write_bytes(f"{reports_dir(spec)}/{stamp}-v{result['version']}.json", json.dumps(result, indent=2, default=str).encode())
    print("LAKEFORGE_RESULT " + json.dumps(result, default=str), flush=True)
    return result
