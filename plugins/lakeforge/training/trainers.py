"""Model families as Spark ML pipelines over a pipeline's features table (its ``ModelSpec``).

- ``lr``: MLlib LogisticRegression, the baseline. Categoricals (and the hour and weekday, which
  are not linear in the delay risk) are string-indexed and one-hot encoded, numerics imputed
  (median) and assembled; LogisticRegression standardizes internally.
- ``xgboost``: ``xgboost.spark.SparkXGBClassifier``, trained across executors (``num_workers``
  = the executor slots given to the trial). Categoricals are string-indexed; the feature columns
  go to xgboost as columns (no assembled vector) and missing numerics stay NaN, which xgboost
  treats as missing.
- ``lightgbm``: LightGBM trained across executors (``lakeforge.training.lightgbm_spark``:
  data-parallel over LightGBM's own network in one barrier stage, ``num_workers`` = the executor
  slots given to the trial). Categoricals are string-indexed (the index is an ordinary numeric
  feature: measured AUC 0.690 on the year vs 0.688 as LightGBM categoricals); each worker orders
  its rows in time before building its Dataset.
- ``gbt``: MLlib GBTClassifier (measured slower and weaker here: kept for comparison), or
  GBTRegressor for a regression task.
- ``rf``: MLlib RandomForestClassifier (multiclass) or RandomForestRegressor; numerics imputed.
- ``linear``: MLlib LinearRegression, the regression baseline (prepared like ``lr``).

``lr`` fits a multinomial model when the label has more than two classes. Every classification
pipeline takes the raw feature columns and outputs ``probability`` (a vector) and ``prediction``;
a regression pipeline outputs ``prediction``: the logged model scores a features DataFrame as it is.
Which columns are features, the label and the task come from the pipeline's spec (``spec=``).
"""

from __future__ import annotations

import random
from typing import Any

from lakeforge.training.spec import TASKS, ModelSpec

# The binary families (the reference model's choices in the settings and its trigger form).
FAMILIES = TASKS["binary"].families

# Search spaces: a fixed first trial (sane defaults), then random draws (seeded per run).
DEFAULTS: dict[str, dict[str, Any]] = {
    "xgboost": {"max_depth": 5, "learning_rate": 0.1, "n_estimators": 100, "min_child_weight": 20.0,
                "reg_lambda": 1.0, "subsample": 0.8, "colsample_bytree": 0.8},
    # Tuned for the pre-departure features (bench/feature_probe: the round count chosen on October,
    # never on the holdout): more rounds at a lower rate, large leaves (min_child_samples 200:
    # January alone, 21k rows, went 0.628 -> 0.664 from 20 to 200), half the columns per tree.
    "lightgbm": {"num_leaves": 63, "learning_rate": 0.05, "n_estimators": 250, "min_child_samples": 200,
                 "reg_lambda": 5.0, "subsample": 0.8, "colsample_bytree": 0.5},
    "lr": {"regParam": 0.001, "elasticNetParam": 0.0, "maxIter": 50},
    "gbt": {"maxDepth": 5, "stepSize": 0.1, "maxIter": 50, "minInstancesPerNode": 20},
    "rf": {"numTrees": 100, "maxDepth": 8, "minInstancesPerNode": 5, "subsamplingRate": 1.0},
    "linear": {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 50},
}
SPACES: dict[str, dict[str, list[Any]]] = {
    "xgboost": {"max_depth": [4, 5, 6, 8], "learning_rate": [0.05, 0.1, 0.2],
                "n_estimators": [60, 100, 150], "min_child_weight": [1.0, 5.0, 20.0],
                "reg_lambda": [0.5, 1.0, 5.0], "subsample": [0.7, 0.9, 1.0], "colsample_bytree": [0.6, 0.8, 1.0]},
    "lightgbm": {"num_leaves": [31, 63, 127], "learning_rate": [0.03, 0.05, 0.1],
                 "n_estimators": [150, 250, 400], "min_child_samples": [100, 200, 400],
                 "reg_lambda": [1.0, 5.0, 10.0], "subsample": [0.7, 0.8, 1.0], "colsample_bytree": [0.3, 0.5, 0.8]},
    "lr": {"regParam": [0.0001, 0.001, 0.01, 0.05], "elasticNetParam": [0.0, 0.1, 0.5], "maxIter": [30, 50, 100]},
    "gbt": {"maxDepth": [4, 5, 6], "stepSize": [0.05, 0.1, 0.2], "maxIter": [30, 50],
            "minInstancesPerNode": [5, 20, 50]},
    "rf": {"numTrees": [50, 100, 200], "maxDepth": [5, 8, 12], "minInstancesPerNode": [1, 5, 20],
           "subsamplingRate": [0.7, 1.0]},
    "linear": {"regParam": [0.0, 0.01, 0.1, 1.0], "elasticNetParam": [0.0, 0.5, 1.0], "maxIter": [50, 100]},
}


def candidates(family: str, budget: int, seed: int = 13) -> list[dict[str, Any]]:
    """``budget`` distinct configurations: the defaults first, then random draws."""
    if family not in DEFAULTS:
        raise ValueError(f"unknown model family {family!r}: one of {', '.join(DEFAULTS)}")
    rng = random.Random(seed)
    out = [dict(DEFAULTS[family])]
    space = SPACES[family]
    size = 1
    for values in space.values():
        size *= len(values)
    while len(out) < min(budget, size):
        c = {k: rng.choice(v) for k, v in space.items()}
        if c not in out:
            out.append(c)
    return out[:budget]


def _indexers(columns: list[str]):
    from pyspark.ml.feature import StringIndexer

    # "keep": unseen categories and nulls get their own index at scoring time.
    return StringIndexer(inputCols=columns, outputCols=[f"{c}_idx" for c in columns],
                         handleInvalid="keep", stringOrderType="frequencyDesc")


# Families whose pipeline imputes numerics (MLlib's Imputer cannot fit a column with no value).
IMPUTING_FAMILIES = ("lr", "gbt", "rf", "linear")


def observed_numeric(df, spec: ModelSpec) -> list[str]:
    """The numeric features with at least one value in ``df``: a window too short for a feature
    (the first days of the data have no history) leaves it all null, and an imputing family
    leaves it out instead of failing. One aggregate over the rows."""
    from pyspark.sql import functions as F

    numeric, _ = spec.feature_columns()
    counts = df.agg(*[F.count(c).alias(c) for c in numeric]).first().asDict()
    return [c for c in numeric if counts[c]]


def build_pipeline(family: str, params: dict[str, Any], num_workers: int = 1, seed: int = 13,
                   categorical: list[str] | None = None, numeric: list[str] | None = None, *,
                   spec: ModelSpec):
    """An unfitted Pipeline: raw feature columns in, ``probability`` (classification) or
    ``prediction`` (regression) out. ``categorical`` / ``numeric``: a subset of the spec's
    features (ablations, or the observed ones); all of them by default."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Imputer, OneHotEncoder, VectorAssembler

    all_numeric, all_categorical = spec.feature_columns()
    categorical = all_categorical if categorical is None else categorical
    numeric_all = all_numeric if numeric is None else numeric
    label = spec.label
    regression = spec.task == "regression"
    if family not in spec.kind.families:
        raise ValueError(f"family {family!r} does not fit a {spec.task} task: one of {', '.join(spec.kind.families)}")

    if family in ("lr", "linear"):
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.regression import LinearRegression

        one_hot_numeric = list(spec.one_hot_numeric)
        onehot = categorical + [c for c in one_hot_numeric if c in numeric_all]
        numeric = [c for c in numeric_all if c not in one_hot_numeric]
        imputed = [f"{c}_imp" for c in numeric]
        estimator = (LinearRegression(featuresCol="features", labelCol=label, **params) if family == "linear"
                     else LogisticRegression(featuresCol="features", labelCol=label, **params))
        stages = [
            _indexers(onehot),
            OneHotEncoder(inputCols=[f"{c}_idx" for c in onehot], outputCols=[f"{c}_oh" for c in onehot],
                          handleInvalid="keep"),
            Imputer(inputCols=numeric, outputCols=imputed, strategy="median"),
            VectorAssembler(inputCols=[f"{c}_oh" for c in onehot] + imputed, outputCol="features"),
            estimator,
        ]
        return Pipeline(stages=stages)

    assembled = [f"{c}_idx" for c in categorical] + numeric_all
    prep = [_indexers(categorical),
            VectorAssembler(inputCols=assembled, outputCol="features", handleInvalid="keep")]
    if family == "xgboost":
        from xgboost.spark import SparkXGBClassifier

        # The feature columns go to the workers as they are (Arrow float columns, nulls as NaN =
        # missing) instead of one assembled vector each worker unpacks row by row: fit 6.6 -> 5.7 s
        # on the year, 23.3 -> 21.8 s on it repeated 8x (local[2]).
        # xgboost.spark always evaluates the training set after every round; with no metric to
        # compute that is skipped (nothing reads the per-round history): fit 22.5 -> 21.5 s at 8x.
        model = SparkXGBClassifier(features_col=assembled, label_col=label, num_workers=num_workers,
                                   missing=float("nan"), tree_method="hist", random_state=seed, verbose=False,
                                   disable_default_eval_metric=True, **params)
        return Pipeline(stages=[_indexers(categorical), model])
    if family == "lightgbm":
        import json

        from lakeforge.training.lightgbm_spark import SparkLGBMClassifier

        lgb_params = {"seed": seed, **params}
        if lgb_params.get("subsample", 1.0) < 1.0:
            lgb_params.setdefault("subsample_freq", 1)  # LightGBM bags rows only with a frequency set
        model = SparkLGBMClassifier(featuresCols=assembled, labelCol=label, numWorkers=num_workers,
                                    lgbParams=json.dumps(lgb_params),
                                    sortCols=[c for c in spec.time_order if c in numeric_all])
        return Pipeline(stages=[_indexers(categorical), model])
    elif family in ("gbt", "rf"):
        from pyspark.ml import classification, regression as reg

        # MLlib's trees cannot take NaN: impute first (numerics only; indices are never null).
        prep = [_indexers(categorical),
                Imputer(inputCols=numeric_all, outputCols=[f"{c}_imp" for c in numeric_all],
                        strategy="median"),
                VectorAssembler(inputCols=[f"{c}_idx" for c in categorical]
                                + [f"{c}_imp" for c in numeric_all], outputCol="features")]
        estimator = {("gbt", False): classification.GBTClassifier, ("gbt", True): reg.GBTRegressor,
                     ("rf", False): classification.RandomForestClassifier,
                     ("rf", True): reg.RandomForestRegressor}[family, regression]
        model = estimator(featuresCol="features", labelCol=label, seed=seed, maxBins=128, **params)
    else:
        raise ValueError(f"unknown model family {family!r}")
    return Pipeline(stages=[*prep, model])


def feature_importance(family: str, model) -> dict[str, float]:
    """Importance per input feature (one-hot blocks summed back to their column)."""
    last = model.stages[-1]
    if family == "xgboost":
        # The booster's features are the input columns (categoricals as their ``_idx`` column).
        gain = last.get_booster().get_score(importance_type="total_gain")
        return {k.removesuffix("_idx"): float(v) for k, v in gain.items()}
    if family == "lightgbm":
        booster = last.get_booster()
        gain = booster.feature_importance(importance_type="gain")
        return {k.removesuffix("_idx"): float(v) for k, v in zip(booster.feature_name(), gain) if v > 0}
    if family in ("gbt", "rf"):
        names = [c.removesuffix("_idx").removesuffix("_imp") for c in model.stages[2].getInputCols()]
        return {n: float(v) for n, v in zip(names, last.featureImportances.toArray())}
    # lr / linear: |coefficient| summed per source column (and over the classes of a multinomial
    # model), from the assembler's metadata.
    import numpy as np

    coefs = (np.abs(last.coefficientMatrix.toArray()).sum(axis=0) if _multinomial(last)
             else np.abs(last.coefficients.toArray()))
    out: dict[str, float] = {}
    pos = 0
    for name, size in _lr_block_sizes(model):
        out[name] = float(coefs[pos:pos + size].sum())
        pos += size
    return out


def _multinomial(model) -> bool:
    return getattr(model, "numClasses", 2) > 2


def _lr_block_sizes(model) -> list[tuple[str, int]]:
    """(source column, width in the assembled vector) for the lr pipeline, in assembler order."""
    indexer, imputer = model.stages[0], model.stages[2]  # the columns it was built on (observed_numeric)
    onehot, numeric = indexer.getInputCols(), imputer.getInputCols()
    # One-hot with handleInvalid="keep" and dropLast=True: width = number of labels.
    widths = [len(labels) for labels in indexer.labelsArray]
    return list(zip(onehot, widths)) + [(c, 1) for c in numeric]

