"""One call per scoring run: evaluate and check drift for its days, then the retraining decision.

Everything is driven by the pipeline's ``ModelSpec`` (tables, key, label, task, row filter,
promotion metric), so every pipeline with a model is monitored the same way:

    spec = load_model_spec("my_pipeline")
    result = monitor_days(spark, lake, spec, ["2013-02-01"])   # in the scoring job's Spark app
    decision = retraining_decision(lake, spec, "3")            # no Spark: reads the small tables
    decision = decide_and_record(lake, spec, "3")              # the same, remembering when it fired

``lake``: the source's namespace (``store.lake_of(spec)``). Days whose predictions or features
are not published are left out (named in the result). The reference profile of each version that
scored the days is read from its run, or built once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lakeforge.lake import Lake
from lakeforge.monitoring import drift, evaluate, store
from lakeforge.monitoring.policy import RetrainDecision, RetrainPolicy, decide
from lakeforge.publish import PartitionFile, partition_dir, publish_partition
from lakeforge.spark_publish import published_files, read_published

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pyspark.sql import DataFrame

    from lakeforge.training.spec import ModelSpec

log = logging.getLogger(__name__)


def read_days(spark, lake: Lake, table: str, days: Sequence[str]) -> tuple["DataFrame | None", list[str]]:
    """A published table's partitions of ``days`` (``ds`` as a string), as one scan, and the days found."""
    return scan_days(spark, lake, table, days)[:2]


def scan_days(spark, lake: Lake, table: str, days: Sequence[str]) -> tuple[
        "DataFrame | None", list[str], dict[str, dict[str, Any]], dict[str, list[str]]]:
    """``read_days``, the manifests of the days found and their files: each manifest read once,
    for its files and whatever else the caller needs from it (the predictions' model)."""
    manifests: dict[str, dict[str, Any]] = {}

    def keep(ds: str, manifest: dict[str, Any]) -> bool:
        manifests[ds] = manifest
        return True

    files = published_files(lake, table, days, accept=keep)
    if not files:
        return None, [], {}, {}
    return read_published(spark, files), sorted(files), {ds: manifests[ds] for ds in sorted(files)}, files


def monitor_days(spark, lake: Lake, spec: "ModelSpec", days: Sequence[str], log_to_mlflow: bool = True,
                 meta: dict[str, Any] | None = None, models: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``days`` (the spec's predictions joined to the outcomes in its features), compute
    their drift against each scoring version's reference profile, publish ``monitoring/performance``
    and ``monitoring/drift`` and log both to the versions' monitoring runs. ``meta``: extra manifest
    fields (e.g. ``dag_run_id``); ``models``: Spark models already loaded, by version (the scoring
    job's champion), used if a version's reference profile must be built. The result's
    ``timings``: seconds per step (``read_s``, ``profile_s``, ``drift_s``, ``evaluate_s``: until
    the evaluation ended, concurrently with the drift, then ``plot_s``, the plot drawn meanwhile;
    ``publish_s``, ``mlflow_s``)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    predictions, scored, manifests, prediction_files = scan_days(spark, lake, spec.predictions, days)
    features, featured = read_days(spark, lake, spec.features, scored)
    skipped = sorted(set(days) - set(featured))
    if predictions is None or features is None:
        return {"days": [], "skipped": skipped, "performance": [], "drift": {}}
    warm_plotting()  # imported while Spark works (the plot is drawn once the evaluation is in)
    versions = day_versions(manifests, featured)
    plots = tempfile.TemporaryDirectory(prefix="lakeforge-monitor-plot-")
    try:
        # Evaluation and drift are independent Spark jobs over the same days: run together (each
        # small job leaves cores idle between its stages). Nothing is cached: they read different
        # columns (caching a day's ~130 feature columns cost more than both reads). The versions
        # come from the predictions' manifests; without them (hand-made partitions), from the
        # evaluation.
        timings["read_s"] = time.perf_counter() - t
        started = time.perf_counter()

        def evaluate_timed() -> list[dict[str, Any]]:
            try:
                return evaluate.evaluate_days(spec, predictions, features, featured)
            finally:
                timings["evaluate_s"] = time.perf_counter() - started

        def plot_when_evaluated() -> str | None:  # the driver draws while the JVM computes the drift
            records = evaluated.result()
            t = time.perf_counter()
            try:
                return evaluate.draw_performance(lake, spec, records, plots.name)
            finally:
                timings["plot_s"] = time.perf_counter() - t

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-evaluate") as pool:
            evaluated = pool.submit(evaluate_timed)
            plotted = pool.submit(plot_when_evaluated) if log_to_mlflow else None
            if versions is None:
                versions = {r["ds"]: (r["model_name"], r["model_version"]) for r in evaluated.result()}
            reports: dict[str, dict[str, Any]] = {}
            for name, version in sorted(set(versions.values())):
                t = time.perf_counter()
                profile = drift.ensure_reference_profile(spark, lake, spec, name, version, (models or {}).get(version))
                timings["profile_s"] = timings.get("profile_s", 0.0) + time.perf_counter() - t
                t = time.perf_counter()
                # Two versions may share a training run (the same artifacts registered again): the
                # profile is the run's, the report names the version that scored.
                profile = {**profile, "model_version": str(version)}
                version_days = sorted(ds for ds, nv in versions.items() if nv == (name, version))
                reports.update(drift.drift_days(spec, features, predictions, profile, version_days,
                                                prediction_files=prediction_files))
                timings["drift_s"] = timings.get("drift_s", 0.0) + time.perf_counter() - t
            records = evaluated.result()
            plot = plotted.result() if plotted is not None else None
        t = time.perf_counter()
        perf_uris = evaluate.write_performance(lake, spec, records, meta)
        report_uris = drift.write_reports(lake, reports, meta)
        timings["publish_s"] = time.perf_counter() - t
        if log_to_mlflow:  # one batch per version: performance and drift metrics, tags; then the plot
            t = time.perf_counter()
            evaluate.log_performance(lake, spec, records, drift_reports=reports, plot=plot)
            timings["mlflow_s"] = time.perf_counter() - t
    finally:
        plots.cleanup()
    return {"days": featured, "skipped": skipped, "performance": records, "drift": reports,
            "performance_uris": perf_uris, "report_uris": report_uris,
            "timings": {k: round(v, 3) for k, v in timings.items()}}


def day_versions(manifests: Mapping[str, dict[str, Any]], days: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """{day: (model name, version)} from the published predictions' ``manifests`` of ``days``
    (the scoring job records its one model there; those whose files were read); None when a
    manifest does not say."""
    out = {}
    for ds in days:
        model = (manifests.get(ds) or {}).get("model") or {}
        if not model.get("name") or model.get("version") is None:
            return None
        out[ds] = (str(model["name"]), str(model["version"]))
    return out


def prepare(model_name: str, version: str) -> None:
    """What monitoring can start before its Spark work, in background threads (the scoring job
    calls it as its JVM starts, when the cores are half idle): matplotlib imported, the version's
    reference profile read from MLflow."""
    warm_plotting()
    drift.prefetch_reference_profile(model_name, version)


def rehearse_evaluation(spark, lake: Lake, spec: "ModelSpec", days: Sequence[str]) -> "Future[float] | None":
    """Run the evaluation's query once, result discarded, on the latest day scored before
    ``days`` whose predictions and features are published, in a background thread; a Future of
    its seconds (None: no such day). For a short scoring run (one day): a fresh JVM generates,
    compiles and warms the evaluation's scan, broadcast join and aggregation the first time it
    runs them (2.4 s on a day at x20, 0.8 s the second time, also on another day), and the
    scoring job's JVM is idle while its Python workers start and score. Optional: a failure is
    logged (the evaluation proper would report the same cause)."""
    import threading
    from concurrent.futures import Future

    from lakeforge.publish import list_partitions

    earlier = [p.split("=", 1)[1] for p in list_partitions(lake, spec.predictions) if p < f"ds={min(days)}"]
    if not earlier:
        return None
    done: Future[float] = Future()

    def work() -> None:
        t = time.perf_counter()
        try:
            predictions, scored = read_days(spark, lake, spec.predictions, earlier[-1:])
            features, featured = read_days(spark, lake, spec.features, scored)
            if predictions is not None and features is not None:
                evaluate.evaluate_days(spec, predictions, features, featured)
        except Exception as exc:  # noqa: BLE001 - only a rehearsal
            log.warning("rehearsing the evaluation on %s failed: %s", earlier[-1], exc)
        finally:  # always answered: the job waits on it before monitoring
            done.set_result(time.perf_counter() - t)

    threading.Thread(target=work, name="monitor-rehearsal", daemon=True).start()
    return done


def warm_plotting() -> None:
    """Import matplotlib (about a second) in a background thread, once per process."""
    global _warming
    if _warming is None:
        def work() -> None:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot  # noqa: F401
            except Exception as exc:  # noqa: BLE001 - only a warm-up: drawing the plot imports it again and fails there
                log.warning("importing matplotlib ahead of the plot failed: %s", exc)

        _warming = threading.Thread(target=work, name="monitor-matplotlib", daemon=True)
        _warming.start()


_warming: threading.Thread | None = None


def retraining_decision(lake: Lake, spec: "ModelSpec", version: str, policy: RetrainPolicy | None = None,
                        last_fired: str | None = None, holdout_value: float | None = None,
                        trained_through: str | None = None) -> RetrainDecision:
    """``policy.decide`` (default: ``RetrainPolicy.for_spec(spec)``) over the published monitoring
    records of version ``version`` of the spec's model; its holdout value and the last day of its
    training window are read from the registry unless given."""
    policy = policy or RetrainPolicy.for_spec(spec)
    model_name = spec.name or spec.resolved().name
    if holdout_value is None or trained_through is None:
        from lakeforge.training import registry

        client = store.mlflow_client()
        if holdout_value is None:
            holdout_value = store.holdout_metrics(client, model_name, version).get(policy.metric)
        if trained_through is None:
            window = registry.training_window(client.get_model_version(model_name, str(version)))
            trained_through = window.train_end if window else None
    # Only the newest days count (the trailing window, the streak): a year of files is not read.
    recent = store.published_days(lake, store.PERFORMANCE)[-(policy.window_days + 30):]
    performance = [r for r in evaluate.read_performance(lake, recent) if r["model_version"] == str(version)]
    recent = store.published_days(lake, store.DRIFT)[-(policy.drift_days + 30):]
    reports = [r for r in (drift.read_report(lake, ds) for ds in recent) if r is not None]
    return decide(performance, [drift.summary(r) for r in reports], holdout_value, version, policy, last_fired,
                  trained_through)


# -- "don't fire twice on the same evidence" ------------------------------------------------------
TRIGGERS = store.TRIGGERS  # version=<n>/trigger.json: when the policy last fired for it
TRIGGER_FILE = "trigger.json"


def last_fired(lake: Lake, version: str) -> dict[str, Any] | None:
    """The version's last firing (``as_of``: the newest day of its evidence), or None."""
    import json

    folder = partition_dir(lake, TRIGGERS, f"version={version}")
    if folder is None:
        return None
    try:
        return json.loads(lake.read_bytes(f"{folder}/{TRIGGER_FILE}"))
    except FileNotFoundError:
        return None


def decide_and_record(lake: Lake, spec: "ModelSpec", version: str, run_id: str | None = None,
                      policy: RetrainPolicy | None = None) -> RetrainDecision:
    """``retraining_decision`` given the version's last firing; when it fires, the firing is
    published (``monitoring/retrain_trigger/version=<n>/trigger.json``, whole or absent) so the same
    evidence never fires again."""
    before = last_fired(lake, str(version))
    decision = retraining_decision(lake, spec, str(version), policy, before and before["as_of"])
    if decision.retrain:
        doc = {**decision.extra(), "fired_at": store.now_iso(), "run_id": run_id}
        publish_partition(lake, TRIGGERS, f"version={version}", [PartitionFile(TRIGGER_FILE, store.json_bytes(doc))],
                          {"dag_run_id": run_id, "as_of": decision.as_of})
    return decision
