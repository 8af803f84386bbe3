"""A lightgbm-family champion read from its saved Spark ML files without Spark jobs.

``mlflow.spark.load_model`` reads a ``PipelineModel`` through Spark: every stage's metadata is a
text file read by a Spark job, every ``StringIndexerModel``'s labels a Parquet file read by
another, each in the run's fresh JVM. That took 2.8 s of every scoring run here (4.7 s while
the Python workers start beside it), for a model whose files are one JSON line per stage and a
few labels.

``read_lightgbm_pipeline`` reads the same files the way Spark ML's own readers do
(``DefaultParamsReader``: the JSON metadata and its params; ``StringIndexerModel``: the
``labelsArray`` column of its data) and builds the same stages: the indexers as JVM
``StringIndexerModel``s from their labels (``from_arrays_of_labels``), the booster stage as its
Python class with its params set as ``DefaultParamsReader`` sets them. Only for pipelines made of
exactly those two kinds of stages (what the lightgbm family trains); any other model, or a file
that is not there, is read by MLflow as before (``None`` here).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

INDEXER = "org.apache.spark.ml.feature.StringIndexerModel"
LIGHTGBM = "lakeforge.training.lightgbm_spark.SparkLGBMClassifierModel"
PIPELINE = "pyspark.ml.pipeline.PipelineModel"


def _metadata(folder: str) -> dict[str, Any] | None:
    """A stage's metadata: the one JSON line Spark ML writes in ``<folder>/metadata/part-*``."""
    parts = sorted(p for p in glob.glob(os.path.join(folder, "metadata", "part-*")))
    if len(parts) != 1:
        return None
    with open(parts[0], encoding="utf-8") as f:
        return json.loads(f.readline())


def _labels(folder: str) -> list[list[str]] | None:
    """A ``StringIndexerModel``'s ``labelsArray`` (Spark 3+: one row, one list per input column)."""
    import pyarrow.parquet as pq

    parts = sorted(glob.glob(os.path.join(folder, "data", "*.parquet")))
    if len(parts) != 1:
        return None
    table = pq.read_table(parts[0])
    if "labelsArray" not in table.column_names or table.num_rows != 1:
        return None
    return table.column("labelsArray")[0].as_py()


def read_lightgbm_stages(model_dir: str) -> list[dict[str, Any]] | None:
    """The stages of the Spark ML pipeline saved in the MLflow model folder ``model_dir``, read
    from its files (no JVM): [{"class", "metadata", "labels" (indexers)}], in pipeline order; None
    unless it is a pipeline of StringIndexerModels followed by one SparkLGBMClassifierModel."""
    from mlflow.models import Model

    spark_flavor = Model.load(model_dir).flavors.get("spark") or {}
    root = os.path.join(model_dir, spark_flavor.get("model_data", "sparkml"))
    pipeline = _metadata(root)
    if pipeline is None or pipeline.get("class") != PIPELINE:
        return None
    uids = pipeline["paramMap"].get("stageUids") or []
    folders = {os.path.basename(p).split("_", 1)[1]: p for p in glob.glob(os.path.join(root, "stages", "*_*"))}
    stages = []
    for i, uid in enumerate(uids):
        folder = os.path.join(root, "stages", f"{i}_{uid}")
        meta = _metadata(folder) if folders.get(uid) == folder else None
        if meta is None or meta.get("uid") != uid:
            return None
        stage = {"class": meta["class"], "metadata": meta}
        if meta["class"] == INDEXER:
            stage["labels"] = _labels(folder)
            if stage["labels"] is None:
                return None
        stages.append(stage)
    classes = [s["class"] for s in stages]
    if not classes or classes[-1] != LIGHTGBM or any(c != INDEXER for c in classes[:-1]):
        return None
    return stages


def build_pipeline(stages: list[dict[str, Any]]):
    """The ``PipelineModel`` of ``read_lightgbm_stages``' stages (needs a running Spark session:
    the indexers are JVM objects)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.ml.util import DefaultParamsReader

    from lakeforge.training.lightgbm_spark import SparkLGBMClassifierModel

    built = []
    for stage in stages:
        meta = stage["metadata"]
        params = {**meta.get("defaultParamMap", {}), **meta.get("paramMap", {})}
        if stage["class"] == INDEXER:
            if "inputCols" in meta.get("paramMap", {}):
                inputs, outputs = params["inputCols"], params["outputCols"]
            else:
                inputs, outputs = [params["inputCol"]], [params["outputCol"]]
            built.append(StringIndexerModel.from_arrays_of_labels(stage["labels"], inputCols=inputs, outputCols=outputs,
                                                                  handleInvalid=params.get("handleInvalid")))
        else:
            lgbm = SparkLGBMClassifierModel()
            lgbm._resetUid(meta["uid"])
            DefaultParamsReader.getAndSetParams(lgbm, meta)
            built.append(lgbm)
    return PipelineModel(stages=built)
