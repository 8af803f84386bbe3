"""The batch scoring job of any pipeline: its model's champion applied to its published feature
days, in ONE Spark application.

    spark-submit spark_jobs/score.py --pipeline NAME --dates 2013-02-01,2013-02-02 [--run-id RUN]
    spark-submit spark_jobs/score.py --pipeline NAME --start 2013-02-01 --end 2013-02-28 [--model-version 3]

The pipeline's ``model.py`` (``lakeforge.training.spec.ModelSpec``) says everything specific: the
features table and its key, the label, the task type and the registered model. The model is
resolved ONCE, before anything else: ``models:/<name>@champion`` (or the version
``--model-version`` names, for a rescore) becomes one version number, and that version scores
every row of the run. It is loaded the way training loads a champion: from a local copy of its
artifacts whose digest matches the one recorded at registration
(``lakeforge.training.artifact_digest``); its MLflow signature is the feature contract, checked
against every day's feature columns and types first (fail closed: the message names the day and
each missing or retyped column, and nothing is scored). No champion yet: nothing happens, the
result says ``skipped`` and why (the DAG shows it on the run).

Reads exactly the files of the days' published features partitions (their manifests), scores
them with the model (no pandas; a binary LightGBM champion's Python workers read the files,
score them and write the prediction files themselves: ``stage_in_workers``), and writes ``spec.predictions`` (``predictions/<features
table>``) in the source's namespace with one row per feature row: the key, the task's prediction
columns (``ModelSpec.outputs``: binary ``probability`` and ``decision`` at the version's
``decision_threshold`` tag, else ``LAKEFORGE_SCORE_THRESHOLD``; multiclass the class, its name and
the probabilities; regression the number), ``model_name``, ``model_version``, ``model_run_id``,
``scored_at`` (one instant per run), ``scoring_run_id`` (the Airflow run id). Every row is scored,
also those outside the spec's ``row_filter`` (monitoring leaves them out of its metrics, as
training leaves them out of its own).

Write-audit-publish as in the transform: the predictions are staged, the pipeline's suite
``quality/predictions_<table>.json`` audits the staged days (one row per feature row of the day,
outputs in range and never null, every row carrying the run's one model version) and only
passing days are published, each swapped in atomically with a manifest that records the model
(name, version, run, URI, threshold, artifact digest) and the input features partition (URI,
content hash, rows, quality). A rescore replaces a day whole: readers see the old version's
partition or the new one, never both, never a mix. A day already scored by the same version from
the same feature bytes is left as it is (``--force`` scores it again).

Then, in the same Spark application, monitoring (``lakeforge.monitoring``) of the days this run
published (or an earlier try of the same run did, or that were scored before without a
monitoring record of their version) whose outcomes are in (labels in their features partition,
read from the Parquet footers): evaluation and drift, published to ``monitoring/performance`` and
``monitoring/drift`` and logged to the version's monitoring run; then the retraining decision for
the champion (``monitor.decide_and_record``: a firing is remembered in
``monitoring/retrain_trigger/version=<n>`` so the same evidence never fires twice). The result
(``LAKEFORGE_RESULT`` and the run report) carries the per-day records, the report URIs and the
decision, whose ``retrain`` the DAG turns into the retraining asset event.

MLflow unreachable: the job fails with the tracking URI in the message and writes nothing (the
JVM it starts meanwhile, ``EarlySession``, is stopped); Airflow retries the task.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import Future
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

from lakeforge.dates import add_date_arguments, dates_of
from lakeforge.lake import Lake, source_lake
from lakeforge.lease import LeaseHeld
from lakeforge.publish import partition_name, published_partition, read_manifest, writing
from lakeforge.quality.wap import QualityGateFailed
from lakeforge.reports import write_report
from lakeforge.scoring import ModelRegistryError, NoModel, SignatureMismatch, connect, no_champion_reason, resolve
from lakeforge.settings import get_settings
from lakeforge.training.spec import ModelSpec, load_model_spec

log = logging.getLogger("lakeforge.scoring.job")


def model_info(version, threshold: float | None, threshold_source: str | None) -> dict[str, Any]:
    from lakeforge.training.artifact_digest import DIGEST_TAG

    return {"name": version.name, "version": str(version.version), "run_id": version.run_id,
            "uri": f"models:/{version.name}/{version.version}", "threshold": threshold,
            "threshold_source": threshold_source, "artifact_sha256": (version.tags or {}).get(DIGEST_TAG)}


def load_model(spark, version):
    """(signature, Spark PipelineModel) of ``version``, both read from the one local copy whose
    artifact digest was verified (``load_verified_model``: the bytes checked are the bytes loaded).
    A lightgbm-family pipeline is built from its files without Spark jobs
    (``sparkml_files``); any other model is loaded by ``mlflow.spark``."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from lakeforge.scoring.sparkml_files import build_pipeline, read_lightgbm_stages
    from lakeforge.training import registry
    from lakeforge.training.artifact_digest import load_verified_model
    from lakeforge.training.job import checksummed_local_fs

    def loader(local: str):
        stages = read_lightgbm_stages(local)
        return Model.load(local).signature, build_pipeline(stages) if stages else mlflow.spark.load_model(local)

    uri = f"models:/{version.name}/{version.version}"
    try:
        with checksummed_local_fs(spark):
            return load_verified_model(uri, loader, client=registry.client())
    except MlflowException as exc:
        raise ModelRegistryError(f"loading {uri} from MLflow {get_settings().mlflow_tracking_uri} failed: "
                                 f"{exc}") from exc


# -- the lake ------------------------------------------------------------------------------------
def job_lake(args: argparse.Namespace, spec: ModelSpec) -> Lake:
    return Lake(args.lake) if args.lake else source_lake(spec.source)


def feature_inputs(lake: Lake, dates: list[str], table: str) -> dict[str, dict[str, Any]]:
    """The published partition of ``table`` (the features) of each day: manifest, folder
    (``published_partition``: a partition being swapped by its writer is served from where it is
    whole) and files. A day without one (never built, or blocked by the features gate) stops the
    run before any work."""
    inputs, missing = {}, []
    for ds in dates:
        part = partition_name(ds)
        found = published_partition(lake, table, part)
        if found is None:
            missing.append(ds)
            continue
        folder, manifest = found
        quality = manifest.get("quality") or {}
        inputs[ds] = {
            "ds": ds, "uri": lake.uri(table, part), "content_sha256": manifest["content_sha256"],
            "rows": manifest.get("rows", 0), "bytes": manifest.get("bytes", 0),
            "quality": quality.get("status", "unknown"),
            "files": [lake.uri(folder, f["name"]) for f in manifest["files"]],
            "file_rows": [f.get("rows", 0) for f in manifest["files"]],
            "paths": [f"{folder}/{f['name']}" for f in manifest["files"]],
        }
    if missing:
        from lakeforge.dates import compact_dates

        raise SystemExit(f"scoring: no published {table} partition for {compact_dates(missing)} in "
                         f"{lake.root_uri}: transform those days first")
    return inputs


def feature_types(lake: Lake, paths: list[str]) -> dict[str, str]:
    """A day's columns and Spark types, from its Parquet footers (no Spark job); a column whose
    type differs between the day's files shows as ``a|b`` (satisfies nothing)."""
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import from_arrow_type

    types: dict[str, set[str]] = {}
    for rel in paths:
        with lake.fs.open_input_file(lake.path(rel)) as f:
            schema = pq.read_schema(f)
        for field in schema:
            try:
                name = from_arrow_type(field.type).simpleString()
            except TypeError:
                name = str(field.type)
            types.setdefault(field.name, set()).add(name)
    return {c: "|".join(sorted(t)) for c, t in types.items()}


def check_contract(lake: Lake, spec: ModelSpec, model_label: str, signature,
                   inputs: dict[str, dict[str, Any]]) -> list[str]:
    """The signature's input columns, after checking every day's features satisfy them and carry
    the spec's key (``SignatureMismatch`` naming days and columns otherwise)."""
    from concurrent.futures import ThreadPoolExecutor

    from lakeforge.scoring import contract_problems, mismatch_message, signature_columns

    expected = signature_columns(signature)
    with ThreadPoolExecutor(max_workers=8) as pool:  # one footer per day file (a round trip on HDFS)
        types = dict(zip(inputs, pool.map(lambda i: feature_types(lake, i["paths"]), inputs.values())))
    problems = {ds: contract_problems(expected, t) for ds, t in types.items()}
    problems = {ds: p for ds, p in problems.items() if p}
    if problems:
        raise SignatureMismatch(mismatch_message(spec.features, model_label, problems))
    missing_key = sorted(ds for ds, t in types.items() if not set(spec.key) <= set(t))
    if missing_key:
        raise SignatureMismatch(f"{spec.features} lacks its key {', '.join(spec.key)} on {missing_key}: "
                                f"predictions could not be joined to outcomes; nothing was scored")
    return [name for name, _ in expected]


def written_tables(spec: ModelSpec) -> list[str]:
    """Every table a run writes (its leases are held for the whole run)."""
    from lakeforge.monitoring import store
    from lakeforge.monitoring.monitor import TRIGGERS
    from lakeforge.quality.evidence import QUALITY

    # Not the quality summary: the transform writes it too, so it is held only while updated.
    return [spec.predictions, f"{QUALITY}/{spec.predictions}", store.PERFORMANCE, store.DRIFT, TRIGGERS]


def labelled_rows(lake: Lake, paths: list[str], label: str) -> int | None:
    """Rows of a features day whose outcome (the ``label`` column) is in, from the Parquet
    footers' null counts (no Spark job); None when a footer does not say."""
    import pyarrow.parquet as pq

    total = 0
    for rel in paths:
        with lake.fs.open_input_file(lake.path(rel)) as f:
            md = pq.ParquetFile(f).metadata
        names = [md.schema.column(i).name for i in range(md.num_columns)]
        if label not in names:
            continue
        col = names.index(label)
        for g in range(md.num_row_groups):
            stats = md.row_group(g).column(col).statistics
            if stats is None or not stats.has_null_count:
                return None
            total += md.row_group(g).num_rows - stats.null_count
    return total


# -- scoring ---------------------------------------------------------------------------------------
def lightgbm_parts(model):
    """(the stages before it as one PipelineModel, the ``SparkLGBMClassifierModel``) when the
    model is a pipeline ending in LightGBM (the ``lightgbm`` family); else None."""
    from pyspark.ml import PipelineModel

    from lakeforge.training.lightgbm_spark import SparkLGBMClassifierModel

    stages = getattr(model, "stages", None)
    if not stages or not isinstance(stages[-1], SparkLGBMClassifierModel):
        return None
    return PipelineModel(stages=list(stages[:-1])), stages[-1]


# Rows per Arrow batch to the Python workers (Spark's default 10,000): fewer, larger predict calls.
ARROW_BATCH_ROWS = 65536
# The scoring job's Spark conf on top of the jobs' (``lakeforge.spark.spark_conf``), set where its
# session is built (``job_session``); a caller scoring in a session of its own sets it there too.
SPARK_CONF = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS)}


def job_session(spec: ModelSpec, input_bytes: int | None = None, partitions: int | None = None):
    """The job's session (``lakeforge.spark.session``) with ``SPARK_CONF``."""
    from lakeforge.spark import session

    return session(spec.scoring_job, input_bytes=input_bytes, conf=SPARK_CONF, partitions=partitions)


def indexer_labels(prep, schema) -> dict[str, tuple[str, list[str]]] | None:
    """{indexed column: (its string column, the labels)} when every stage of ``prep`` is a
    StringIndexerModel with ``handleInvalid=keep`` over string columns of ``schema`` (what the
    lightgbm family trains): stages a Python worker applies to Arrow columns exactly as the JVM
    does (``arrow.indexed_matrix``). None for anything else."""
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.sql.types import StringType

    out: dict[str, tuple[str, list[str]]] = {}
    for stage in prep.stages:
        if not isinstance(stage, StringIndexerModel) or stage.getHandleInvalid() != "keep":
            return None
        if stage.isSet("inputCols"):
            pairs = list(zip(stage.getInputCols(), stage.getOutputCols()))
        else:
            pairs = [(stage.getInputCol(), stage.getOutputCol())]
        for (source, name), labels in zip(pairs, stage.labelsArray):
            if source not in schema.names or schema[source].dataType != StringType():
                return None
            out[name] = (source, list(labels))
    return out


def file_scoring(model, schema) -> tuple[Any, dict[str, tuple[str, list[str]]]] | None:
    """(the LightGBM stage, its indexers' labels) when ``model``'s rows can be scored from the
    feature files (``schema``: theirs) in the Python workers: a LightGBM pipeline whose other
    stages are StringIndexers a worker applies exactly (``indexer_labels``); else None."""
    parts = lightgbm_parts(model)
    if parts is None:
        return None
    prep, lgbm = parts
    indexers = indexer_labels(prep, schema)
    return None if indexers is None else (lgbm, indexers)


def over_file_groups(spark, files: list[tuple[str, str, int]], lgbm, indexers, fn, schema, **kwargs):
    """``fn`` (``arrow.score_files`` or ``arrow.write_file_scores``, given ``kwargs`` besides the
    model) as a ``mapInArrow`` over one row per group of ``files``' whole days ((URI, day, rows) of
    each features file; ``arrow.file_groups``: at most one task per core), each task reading its
    days' files in its Python worker. LightGBM's own threads only where the tasks leave cores idle."""
    from functools import partial

    from lakeforge.scoring.arrow import file_groups

    slots = spark.sparkContext.defaultParallelism
    groups = file_groups(files, slots)
    bound = partial(fn, groups=groups, text=lgbm.getOrDefault(lgbm.modelString),
                    features=list(lgbm.getOrDefault(lgbm.featuresCols)), indexers=indexers,
                    threads=max(1, slots // len(groups)), batch_rows=ARROW_BATCH_ROWS, **kwargs)
    return spark.range(0, len(groups), 1, len(groups)).mapInArrow(bound, schema)


def file_probabilities(spark, files: list[tuple[str, str, int]], key_fields: list, lgbm, indexers):
    """The keys, ``ds`` and ``p`` of every row of ``files`` ((URI, day, rows) of each features
    file), scored in the Python workers (``over_file_groups``, ``arrow.score_files``), so the
    feature columns go from Parquet to the booster without the JVM decoding them and converting
    them to Arrow row by row."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from lakeforge.scoring.arrow import score_files

    schema = StructType([*key_fields, StructField("ds", StringType(), True), StructField("p", DoubleType(), True)])
    return over_file_groups(spark, files, lgbm, indexers, score_files, schema, keys=[f.name for f in key_fields],
                            output="p")


def probabilities(spark, model, features, keys: list[str], files: list[tuple[str, str, int]] | None = None):
    """``keys`` + ``p`` (P(label = 1), double) of every row of ``features``. A LightGBM pipeline
    whose other stages are StringIndexers (``indexer_labels``), given ``features``' ``files``
    ((URI, day, rows); ``keys`` then ends with ``ds``): the files read and scored in the Python
    workers (``file_probabilities``). Otherwise a LightGBM pipeline: its StringIndexers in the JVM,
    then the booster over Arrow batches (``lakeforge.scoring.arrow``: no pandas; batches as
    ``spark``'s conf sizes them: ``SPARK_CONF``). Both give the same probabilities as the model's
    own ``transform``. Any other model: its ``transform``."""
    from pyspark.sql import functions as F

    from lakeforge.training.evaluate import with_probability

    parts = lightgbm_parts(model)
    if parts is None:
        return with_probability(model.transform(features)).select(*keys, F.col("p").cast("double").alias("p"))
    from functools import partial

    from pyspark.sql.types import DoubleType, StructField, StructType

    from lakeforge.scoring.arrow import score_batches

    worker = file_scoring(model, features.schema) if files and keys[-1] == "ds" else None
    if worker is not None:
        return file_probabilities(spark, files, [features.schema[k] for k in keys[:-1]], *worker)
    prep, lgbm = parts
    names = lgbm.getOrDefault(lgbm.featuresCols)
    indexed = prep.transform(features) if prep.stages else features
    # The columns go as they are (Arrow casts them to float32 in the worker, as the UDF's cast does).
    rows = indexed.select(*keys, *[F.col(c).alias(f"_f{j}") for j, c in enumerate(names)])
    # One task per core or more: LightGBM's own threads only where the tasks leave cores idle.
    slots = spark.sparkContext.defaultParallelism
    threads = max(1, slots // max(1, rows.rdd.getNumPartitions()))
    schema = StructType([*[rows.schema[k] for k in keys], StructField("p", DoubleType(), True)])
    fn = partial(score_batches, text=lgbm.getOrDefault(lgbm.modelString), keys=list(keys), features=len(names),
                 output="p", threads=threads)
    return rows.mapInArrow(fn, schema)


def warm_python_workers(spark, files: int) -> Future[float]:
    """Start the Python workers the scoring tasks will use (and import lightgbm in them) while the
    driver loads the model: a thread running one tiny ``mapInArrow`` task per worker the scoring
    stage can use (Spark reuses idle workers). Returns a Future of the seconds it took. Optional:
    a failure is logged (the Future still gets its seconds), the scoring stage would report the
    same cause."""
    import threading

    done: Future[float] = Future()

    def work() -> None:
        t = time.perf_counter()
        try:
            from lakeforge.scoring.arrow import warm_up_batches

            n = max(1, min(files, spark.sparkContext.defaultParallelism))
            spark.range(0, n, 1, n).mapInArrow(warm_up_batches, "id long").collect()
        except Exception as exc:  # noqa: BLE001 - only a warm-up
            log.warning("warming the Python workers failed: %s", exc)
        finally:  # always answered: the job waits on it
            done.set_result(time.perf_counter() - t)

    # A daemon thread: a run failing while it works does not wait for it to exit.
    threading.Thread(target=work, name="score-warm-workers", daemon=True).start()
    return done


def run_columns(info: dict[str, Any], scored_at: datetime, run_id: str | None) -> dict[str, tuple[Any, str]]:
    """The columns every prediction row of a run carries after its outputs, in order: {name:
    (value, Spark type)}."""
    return {"model_name": (info["name"], "string"), "model_version": (info["version"], "string"),
            "model_run_id": (info["run_id"], "string"), "scored_at": (scored_at, "timestamp"),
            "scoring_run_id": (run_id, "string")}


def feature_rows(spark, spec: ModelSpec, inputs: dict[str, dict[str, Any]], columns: list[str]):
    """The features of every day: the key, ``columns`` and ``ds`` (a string, from the file's path)."""
    from pyspark.sql import functions as F

    from lakeforge.spark import size_file_splits

    # A task reads whole day files: the scoring stages are narrow, so a day is written as one file.
    size_file_splits(spark, [i["bytes"] for i in inputs.values()])
    files = [f for i in inputs.values() for f in i["files"]]
    path = F.col("_metadata.file_path")
    return spark.read.parquet(*files).select(
        *spec.key, *[c for c in columns if c not in spec.key],
        F.regexp_extract(path, r"/ds=(\d{4}-\d{2}-\d{2})[^/]*/[^/]+$", 1).alias("ds"))


def day_files(inputs: dict[str, dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(URI, day, rows) of every features file of ``inputs``."""
    return [(f, ds, rows) for ds, i in inputs.items() for f, rows in zip(i["files"], i["file_rows"])]


def predictions(spark, spec: ModelSpec, model, features, inputs: dict[str, dict[str, Any]],
                info: dict[str, Any], scored_at: datetime, run_id: str | None):
    """The prediction rows of every day of ``inputs`` (a DataFrame; ``ds`` a string column) from
    their ``features`` (``feature_rows``): the key, the task's outputs (``ModelSpec.outputs``), the
    model and the run (``run_columns``)."""
    from pyspark.sql import functions as F

    from lakeforge.scoring.outputs import model_outputs

    keys = [*spec.key, "ds"]
    if spec.task == "binary":
        probability = F.col("p")
        scored = probabilities(spark, model, features, keys, day_files(inputs)).select(
            *spec.key, probability.alias("probability"), (probability >= F.lit(info["threshold"])).alias("decision"),
            "ds")
    else:
        scored = model_outputs(spec, model, features, keys)
    return scored.select(
        *spec.key,
        *spec.outputs,
        *[F.lit(value).cast(kind).alias(name) for name, (value, kind) in run_columns(info, scored_at, run_id).items()],
        "ds",
    )


def stage_in_workers(spark, lake: Lake, spec: ModelSpec, model, features, inputs: dict[str, dict[str, Any]],
                     info: dict[str, Any], scored_at: datetime, run_id: str | None, df) -> str | None:
    """Stage a binary LightGBM champion's predictions (``df``'s rows, the same values) written by
    the Python workers that score them (``arrow.write_file_scores``): the JVM neither receives
    the probabilities back nor encodes them as Parquet (docs/scoring.md: the scope's scoring step
    at x20, 1.04M rows, 17.9 s -> 15.0 s). ``features``: ``feature_rows`` of ``inputs`` (its
    schema says whether the workers can index the categoricals). One task per group of whole days
    (``over_file_groups``), each day one file. Only the files
    the successful task attempts report are kept: whatever a failed attempt left is deleted
    before the audit. Returns the staging folder, or None where the workers cannot do it (not
    ``file_scoring``'s kind of model, or speculative tasks, whose losing attempts could still be
    writing after the job ends): the caller then stages ``df`` (``stage``)."""
    from lakeforge.scoring.arrow import write_file_scores
    from lakeforge.spark_publish import new_run_staging

    if spec.task != "binary" or spark.conf.get("spark.speculation", "false").lower() == "true":
        return None
    worker = file_scoring(model, features.schema)
    if worker is None:
        return None
    staging = new_run_staging(lake, spec.predictions)
    try:
        written = over_file_groups(
            spark, day_files(inputs), *worker, write_file_scores, "ds string, file string, rows long",
            keys=list(spec.key), schema_ipc=arrow_schema(df).serialize().to_pybytes(), threshold=info["threshold"],
            constants={name: value for name, (value, _) in run_columns(info, scored_at, run_id).items()},
            folder=lake.uri(staging)).collect()
    except Exception as exc:
        exc.add_note(f"while staging {spec.predictions} at {lake.uri(staging)} in the Python workers")
        raise
    keep = {(r.ds, r.file) for r in written}
    for ds in sorted(inputs):
        folder = f"{staging}/{partition_name(ds)}"
        for f in (lake.files(folder) if lake.exists(folder) else []):
            if (ds, f.path) not in keep:
                log.warning("deleting %s: written by a task attempt that did not succeed", lake.uri(folder, f.path))
                lake.delete(f"{folder}/{f.path}")
    return staging


def arrow_schema(df):
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.drop("ds").schema, timezone="UTC")


def stage(df, lake: Lake, table: str) -> str:
    from lakeforge.spark_publish import new_run_staging

    staging = new_run_staging(lake, table)
    try:
        df.write.mode("overwrite").partitionBy("ds").parquet(lake.uri(staging))
    except Exception as exc:
        exc.add_note(f"while staging {table} at {lake.uri(staging)}")
        raise
    return staging


def score(spark, args: argparse.Namespace, version=None) -> dict[str, Any]:
    """Entry for an existing session (the tests; one carrying ``SPARK_CONF``, as ``job_session``
    builds it): connect to MLflow, resolve the model once (unless the caller did: ``version``),
    then score under the writer leases."""
    spec = load_model_spec(args.pipeline)
    dates = parse_dates(args, partition_step(spec))
    if version is None:
        connect()
        version = resolve(spec.name, args.model_version)
    if version is None:
        return skipped(spec.name, dates, args.run_id)
    lake = job_lake(args, spec)
    with writing(lake, written_tables(spec), args.run_id):
        return run(spark, lake, spec, dates, version, args.run_id, force=args.force,
                   champion=champion_of(args, spec, version))


def champion_of(args: argparse.Namespace, spec: ModelSpec, version):
    """The champion's version object (the retraining decision is about it): the version scoring
    with, unless a rescore named another one."""
    return version if args.model_version is None else resolve(spec.name, None)


def skipped(name: str, dates: list[str], run_id: str | None) -> dict[str, Any]:
    reason = no_champion_reason(name)
    log.warning(reason)
    return {"status": "skipped", "reason": reason, "dates": [dates[0], dates[-1]], "days": len(dates),
            "published": [], "published_days": 0, "run_id": run_id, "quality": {"blocked": {}}}


def run(spark, lake: Lake, spec: ModelSpec, dates: list[str], version, run_id: str | None = None,
        force: bool = False, champion=None) -> dict[str, Any]:
    """Score ``dates`` of ``spec``'s features with ``version`` (a registry version object): check,
    score, stage, audit, publish; then monitor the days and decide on retraining ``champion`` (a
    version object; None: no decision). Hold the leases of ``written_tables(spec)`` around it
    (``score`` does)."""
    from lakeforge.monitoring.monitor import rehearse_evaluation
    from lakeforge.quality.profile import parquet_footer_stats
    from lakeforge.scoring import ScoringGate, already_scored, decision_threshold
    from lakeforge.spark import is_short_run
    from lakeforge.spark_publish import publish_written_partitions
    from lakeforge.training.tracking import scratch_space

    s = get_settings()
    timings: dict[str, float] = {}
    t0 = t = time.perf_counter()
    # A decision threshold is a binary model's (its version's tag, else the setting).
    threshold, threshold_source = (decision_threshold(version.tags, s.score_threshold) if spec.task == "binary"
                                   else (None, None))
    info = model_info(version, threshold, threshold_source)
    inputs = feature_inputs(lake, dates, spec.features)
    empty = [ds for ds, i in inputs.items() if not i["rows"]]
    scored = {} if force else {ds: read_manifest(lake, spec.predictions, partition_name(ds)) for ds in inputs}
    unchanged = [ds for ds, m in scored.items()
                 if already_scored(m, spec.features, info["version"], inputs[ds]["content_sha256"])]
    todo = {ds: i for ds, i in inputs.items() if ds not in empty and ds not in unchanged}
    result: dict[str, Any] = {
        "status": "scored", "dates": [dates[0], dates[-1]], "days": len(dates), "run_id": run_id, "model": info,
        "unchanged": unchanged, "empty": empty, "published": [], "published_days": 0,
        "rows": {"features": 0, "predictions": 0}, "timings": timings, "quality": {"blocked": {}},
    }
    if empty:
        log.warning("no feature rows on %s: nothing to score there", ", ".join(empty))
    if unchanged:
        log.info("already scored by %s v%s from the same features: %s", info["name"], info["version"],
                 ", ".join(unchanged))
    # An earlier try of this run published them (then failed, e.g. in monitoring): still its days.
    earlier = [ds for ds in unchanged if run_id is not None and scored[ds].get("dag_run_id") == run_id]
    if not todo:
        result.update(status="unchanged", reason=f"every day is already scored by {info['name']} v{info['version']}"
                      f" from the same features (or has none)", published=earlier, published_days=len(earlier))
        result.update(monitor(spark, lake, spec, inputs, {ds: scored[ds].get("scored_at") for ds in unchanged},
                              info, run_id, None, champion))
        return result
    days = sorted(todo)
    label = f"{info['name']} v{info['version']}"
    timings["prepare_s"] = time.perf_counter() - t

    with scratch_space(prefix="lakeforge-score-"):  # mlflow.spark's model copies go with it
        t = time.perf_counter()
        # A LightGBM champion (its version's family tag) scores in Python workers: start them now.
        lightgbm = (version.tags or {}).get("lakeforge.family") == "lightgbm"
        warm = warm_python_workers(spark, sum(len(i["files"]) for i in todo.values())) if lightgbm else None
        # A short run (a day): the evaluation's first run in this JVM rehearsed on an earlier day
        # meanwhile (its JVM work is cold-start cost; the JVM is idle while the workers start).
        rehearsal = (rehearse_evaluation(spark, lake, spec, days)
                     if is_short_run(sum(i["bytes"] for i in todo.values()), len(todo)) else None)
        signature, model = load_model(spark, version)
        timings["load_model_s"] = time.perf_counter() - t
        t = time.perf_counter()
        columns = check_contract(lake, spec, label, signature, todo)
        timings["contract_s"] = time.perf_counter() - t

        t = time.perf_counter()
        scored_at = datetime.now(timezone.utc)
        # PipelineModel keeps its stages in memory: usable by monitoring after the copy is gone.
        features = feature_rows(spark, spec, todo, columns)
        df = predictions(spark, spec, model, features, todo, info, scored_at, run_id)
        staging = (stage_in_workers(spark, lake, spec, model, features, todo, info, scored_at, run_id, df)
                   or stage(df, lake, spec.predictions))
        footers = parquet_footer_stats(lake, staging, days)
        timings["score_s"] = time.perf_counter() - t
        if warm is not None:  # started with the model's load; done before the scoring tasks ran
            timings["python_workers_warm_s"] = warm.result()

    if rehearsal is not None:  # done by now on a day's run; never beside the monitoring
        timings["evaluation_rehearsal_s"] = rehearsal.result()
    t = time.perf_counter()
    gate = ScoringGate(lake, spec.source, run_id, info["version"], spec.predictions)
    gate.audit_staged(spark, [(spec.predictions, staging, days,
                               {"upstream_rows": {ds: todo[ds]["rows"] for ds in days}})],
                      footers={spec.predictions: footers})
    publishable = gate.passing(days)
    gate.write_evidence()
    timings["quality_s"] = time.perf_counter() - t

    t = time.perf_counter()
    verdicts = gate.partition_meta(spec.predictions)
    source_keys = ("uri", "content_sha256", "rows", "quality")
    manifests = publish_written_partitions(
        lake, spec.predictions, staging, publishable, arrow_schema(df),
        meta={"job": spec.scoring_job, "dag_run_id": run_id, "model": info,
              "scored_at": scored_at.isoformat(timespec="seconds")},
        partition_meta={ds: {**verdicts.get(ds, {}), "inputs": {spec.features: {k: todo[ds][k] for k in source_keys}}}
                        for ds in days},
        file_rows={ds: stats.files for ds, stats in footers.items()},
    )
    timings["publish_s"] = time.perf_counter() - t
    published = sorted({*manifests, *earlier})
    result.update(
        published=published, published_days=len(published), quality=gate.summary(),
        rows={"features": sum(todo[ds]["rows"] for ds in days),
              "predictions": sum(m["rows"] for m in manifests.values())},
        scored_at=scored_at.isoformat(timespec="seconds"),
    )
    log.info("%s: published %d of %d day(s), %d predictions%s", label, len(manifests), len(days),
             result["rows"]["predictions"],
             f" (threshold {threshold:.3f} from {threshold_source})" if spec.task == "binary" else "")
    at = result["scored_at"]
    result.update(monitor(spark, lake, spec, inputs, {**{ds: scored[ds].get("scored_at") for ds in unchanged},
                                                      **dict.fromkeys(manifests, at)},
                          info, run_id, model, champion))
    timings["total_in_app_s"] = time.perf_counter() - t0
    return result


# -- monitoring and the retraining decision ------------------------------------------------------------
# What the run's result keeps of each day's performance record (besides the task's metrics).
RECORD_KEYS = ("ds", "model_version", "rows_scored", "rows_evaluated")
BINARY_RECORD_KEYS = ("positives", "calibration_error", "positive_rate", "mean_prediction", "decision_rate")


def record_keys(spec: ModelSpec) -> tuple[str, ...]:
    return (*RECORD_KEYS, *spec.kind.metrics, *(BINARY_RECORD_KEYS if spec.task == "binary" else ()))


def to_monitor(lake: Lake, spec: ModelSpec, inputs: dict[str, dict[str, Any]], scored_at: dict[str, str | None],
               version: str) -> tuple[dict[str, list[str]], list[str]]:
    """({scored_at: days to monitor}, days whose outcomes are not in yet) among the days of
    ``scored_at`` ({day: the scoring instant of its published predictions by ``version``, from
    their manifests}): those with labelled feature rows and no monitoring record of exactly these
    predictions (version and scoring instant) yet."""
    from lakeforge.monitoring import store

    todo: dict[str | None, list[str]] = {}
    waiting = []
    for ds, at in sorted(scored_at.items()):
        perf = read_manifest(lake, store.PERFORMANCE, partition_name(ds)) or {}
        if perf.get("model_version") == version and perf.get("scored_at") == at:
            continue  # monitored already, from these very predictions
        if labelled_rows(lake, inputs[ds]["paths"], spec.label) == 0:
            waiting.append(ds)
        else:
            todo.setdefault(at, []).append(ds)
    return todo, waiting


def monitor(spark, lake: Lake, spec: ModelSpec, inputs: dict[str, dict[str, Any]], scored_at: dict[str, str | None],
            info: dict[str, Any], run_id: str | None, model, champion) -> dict[str, Any]:
    """Evaluation and drift of the days of ``scored_at`` (``lakeforge.monitoring.monitor_days``),
    then the retraining decision for ``champion``: the result's ``monitoring`` and ``retraining``
    (small: no histograms, no buckets; the reports are in the lake)."""
    from lakeforge.monitoring import drift, store
    from lakeforge.monitoring.monitor import decide_and_record, monitor_days

    t = time.perf_counter()
    version = info["version"]
    todo, waiting = to_monitor(lake, spec, inputs, scored_at, version)
    out: dict[str, Any] = {"days": [], "skipped": [], "awaiting_outcomes": waiting, "records": [], "drift": {},
                           "performance_uris": {}}
    timings: dict[str, float] = {}  # monitor_days' steps, summed over the calls
    # One call per scoring instant (normally one: this run's); the manifests record which predictions.
    for scored_at, group in sorted(todo.items(), key=lambda kv: str(kv[0])):
        meta = {"job": spec.scoring_job, "dag_run_id": run_id, "model_version": version, "scored_at": scored_at}
        got = monitor_days(spark, lake, spec, group, meta=meta, models={version: model} if model is not None else None)
        out["days"] += got["days"]
        out["skipped"] += got["skipped"]
        out["records"] += [{k: r.get(k) for k in record_keys(spec)} for r in got["performance"]]
        out["drift"].update({ds: {**drift.summary(r), "report": got.get("report_uris", {}).get(ds)}
                             for ds, r in got["drift"].items()})
        out["performance_uris"].update(got.get("performance_uris", {}))
        for step, seconds in got.get("timings", {}).items():
            timings[step] = round(timings.get(step, 0.0) + seconds, 3)
    if timings:
        out["timings"] = timings
    out["days"].sort()
    out["records"].sort(key=lambda r: (r["ds"], r["model_version"]))
    out["monitor_s"] = time.perf_counter() - t
    retraining = None
    if champion is not None and out["days"]:
        t = time.perf_counter()
        retraining = decide_and_record(lake, spec, str(champion.version), run_id).extra()
        retraining["decision_s"] = time.perf_counter() - t
        log.info("%s", retraining["reason"])
    if out["days"]:
        log.info("monitored %s (v%s); awaiting outcomes: %s; drift reports: %s", ", ".join(out["days"]), version,
                 ", ".join(waiting) or "none", lake.uri(store.DRIFT))
    return {"monitoring": out, "retraining": retraining}


# -- command line -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", required=True, help="the pipeline whose model scores (lakeforge/pipelines/NAME/model.py)")
    add_date_arguments(p, "e.g. the new feature days")
    p.add_argument("--model-version", help="score with this registered version (a rescore); default: the champion")
    p.add_argument("--lake", help="the source's lake URI (default: <LAKEFORGE_LAKE_ROOT>/<the pipeline's source>)")
    p.add_argument("--run-id", help="Airflow run id: each row's scoring_run_id, recorded in the manifests")
    p.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                   help="score days already scored by the same version from the same features again")
    args = p.parse_args(argv)
    if args.model_version is not None and not str(args.model_version).strip():
        args.model_version = None  # an empty template value: the champion
    return args


def partition_step(spec: ModelSpec) -> str:
    """``day`` or ``month``: the step between the source's partitions (its transform's ``every``)."""
    from lakeforge.transform import load_transform

    return load_transform(spec.source).every


def parse_dates(args: argparse.Namespace, every: str = "day") -> list[str]:
    """The run's partitions: ``--dates``, or ``--start``..``--end`` by ``every`` (a monthly
    source's range is the first days of the months it touches)."""
    dates = dates_of(args, every)
    if not dates:
        raise SystemExit("no dates to score")
    return dates


class EarlySession:
    """The job's Spark session started in a background thread as soon as the run knows how much
    it reads, so the JVM's start (4.6 s here, one core busy) overlaps asking MLflow for the model
    (importing mlflow alone is over a second). Only where this process has no Spark yet: a caller
    with a session of its own (the tests) gets it from ``session()`` when needed, as before.

    ``session()`` waits for it (or gets one now); ``close()`` stops it, as a job ends its Spark
    application, also when the run ends before using it (MLflow down, no champion, another run's
    lease): such a run still writes nothing, and leaves no JVM behind."""

    def __init__(self, spec: ModelSpec, inputs: dict[str, dict[str, Any]]):
        from pyspark import SparkContext

        self.spec, self.inputs = spec, inputs
        self.future: Future | None = None
        self.waited_s = 0.0
        self.started_s: float | None = None  # the background start's seconds (started early)
        self.used = False
        if SparkContext._active_spark_context is None:
            import threading

            self.future = Future()
            threading.Thread(target=self._start, name="score-spark-start", daemon=True).start()

    def _start(self) -> None:
        t = time.perf_counter()
        try:
            spark = self._build()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that needs the session
            self.future.set_exception(exc)
        else:
            self.started_s = time.perf_counter() - t
            self.future.set_result(spark)

    def _build(self):
        return job_session(self.spec, input_bytes=sum(i["bytes"] for i in self.inputs.values()),
                           partitions=len(self.inputs))

    def session(self):
        t = time.perf_counter()
        if self.future is None:
            self.future = Future()
            self.future.set_result(self._build())
        spark = self.future.result()
        self.waited_s = time.perf_counter() - t
        self.used = True
        return spark

    def close(self) -> None:
        if self.future is None:
            return
        try:
            spark = self.future.result()
        except BaseException:  # noqa: BLE001 - it never started: nothing to stop (the run reports its own error)
            return
        if not self.used:
            log.info("stopping the Spark session started for this run: the run ended before any Spark work")
        spark.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    spec = load_model_spec(args.pipeline)
    dates = parse_dates(args, partition_step(spec))
    started = time.perf_counter()
    lake = job_lake(args, spec)
    inputs = feature_inputs(lake, dates, spec.features)  # a missing day fails here, before the JVM starts
    spark_session = EarlySession(spec, inputs)  # the JVM starts while MLflow is asked
    try:
        connect()  # MLflow down: fails here with the URI, nothing written (the JVM is stopped)
        version = resolve(spec.name, args.model_version)  # the one resolution of this run
        if version is None:
            result = skipped(spec.name, dates, args.run_id)
        else:
            result = leased_run(spark_session, lake, spec, dates, version, args)
    finally:
        spark_session.close()
    if version is not None:
        result["timings"]["spark_startup_s"] = spark_session.waited_s
        if spark_session.started_s is not None:
            result["timings"]["spark_started_early_s"] = spark_session.started_s
        result["timings"]["total_s"] = time.perf_counter() - started
    write_report(lake, spec.scoring_job, result)
    print("LAKEFORGE_RESULT " + json.dumps(result, default=str), flush=True)
    if result["quality"].get("blocked"):
        print(QualityGateFailed.from_summary(result["quality"]), file=sys.stderr, flush=True)
        raise SystemExit(3)
    return result


def leased_run(spark_session: EarlySession, lake: Lake, spec: ModelSpec, dates: list[str], version,
               args: argparse.Namespace) -> dict[str, Any]:
    """``run`` under the writer leases of ``written_tables``, in ``spark_session``'s session."""
    from lakeforge.monitoring.monitor import prepare
    from lakeforge.quality import gate
    from lakeforge.quality.spec import load_suite

    with ExitStack() as leases:
        try:  # another run writing predictions: exit now, before any Spark work
            leases.enter_context(writing(lake, written_tables(spec), args.run_id))
        except LeaseHeld as held:
            raise SystemExit(f"{spec.scoring_job}: {held}") from None
        gate.preload(lambda: [load_suite(spec.source, spec.predictions)])
        champion = champion_of(args, spec, version)  # before any Spark work, like the version
        prepare(version.name, str(version.version))  # while the JVM starts
        return run(spark_session.session(), lake, spec, dates, version, args.run_id, force=args.force,
                   champion=champion)


__all__ = ["NoModel", "SignatureMismatch", "ModelRegistryError", "main", "score", "run"]
