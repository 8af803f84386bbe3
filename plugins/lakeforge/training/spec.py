"""What a pipeline declares for its model, as plain data, and what each task type means.

A pipeline folder ``lakeforge/pipelines/<name>/`` holds a module ``model.py`` with a
``MODEL = ModelSpec(...)``: the features table it trains on, the label and its task type, the
feature columns, the model's name in the registry, the families allowed and the promotion metric.
The generic training job (``lakeforge.training.job``, run as ``spark_jobs/train.py --pipeline
<name>``) does the rest for any pipeline: the time-based split, the search with a baseline as
trial 0, tracking, registration and the registry gate.

A task type fixes the metrics (and which way each is better), the metric the search ranks trials
by, the families that fit it and the baseline trial:

- ``binary``: a probability of the positive class; ROC AUC, PR AUC, log loss, Brier and
  calibration, with the calibration and positive-rate guards at the gate;
- ``multiclass``: class probabilities and the predicted class index (the label is an integer
  ``0..len(classes)-1``); accuracy, weighted F1 and log loss;
- ``regression``: a number; RMSE, MAE and R².

Settings the deployment tunes (window sizes, search budget) fall back to ``lakeforge.settings``
where a spec leaves them ``None``: the reference pipeline keeps its ``LAKEFORGE_*`` variables.

This module imports neither Spark nor MLflow: a DAG file reads a declaration cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

TaskType = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class TaskKind:
    metrics: dict[str, bool]    # metric -> higher is better
    search_metric: str          # trials are ranked by it on the validation days
    families: tuple[str, ...]   # the families that fit the task
    baseline: str               # trial 0 of every search (unless turned off)


TASKS: dict[str, TaskKind] = {
    "binary": TaskKind({"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False},
                       "roc_auc", ("lightgbm", "xgboost", "lr", "gbt"), "lr"),
    "multiclass": TaskKind({"log_loss": False, "accuracy": True, "f1": True},
                           "log_loss", ("lr", "rf"), "lr"),
    "regression": TaskKind({"rmse": False, "mae": False, "r2": True},
                           "rmse", ("gbt", "rf", "linear"), "linear"),
}
# What batch scoring writes per row for each task, besides the key, the model and the run:
# binary: P(label = 1) and the decision at the version's threshold; multiclass: the class index,
# its name, its probability and every class's probability (label index order); regression: the number.
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "binary": ("probability", "decision"),
    "multiclass": ("prediction", "predicted_class", "probability", "probabilities"),
    "regression": ("prediction",),
}
# Every metric a registry gate can promote on, and which way it is better.
HIGHER_IS_BETTER: dict[str, bool] = {m: hi for kind in TASKS.values() for m, hi in kind.metrics.items()}
METRIC_LABELS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss", "brier": "Brier score",
                 "accuracy": "accuracy", "f1": "weighted F1", "rmse": "RMSE", "mae": "MAE", "r2": "R²"}


@dataclass(frozen=True)
class ModelSpec:
    """One pipeline's model. ``columns`` returns (numeric, categorical) feature columns: a function,
    so a declaration whose column lists live beside Spark code is read without importing Spark."""

    source: str                     # the pipeline whose lake namespace holds the features
    features: str                   # the features table, e.g. "features/weather"
    label: str                      # the label column (binary: 0/1; multiclass: a class index)
    task: TaskType
    columns: Callable[[], tuple[Sequence[str], Sequence[str]]]
    key: tuple[str, ...] = ()       # what identifies a row in a partition: predictions join outcomes on it
    time_column: str = "ds"         # the partition day the split is made on
    name: str | None = None         # registered model (None: ``LAKEFORGE_MODEL_NAME``)
    experiment: str | None = None   # MLflow experiment (None: the model's name, or ``LAKEFORGE_MLFLOW_EXPERIMENT``)
    job: str | None = None          # Spark app name and reports folder (None: ``train_<name>``)
    families: tuple[str, ...] | None = None   # allowed (None: every family of the task)
    family: str | None = None       # default family (None: ``LAKEFORGE_TRAIN_MODEL_FAMILY``)
    promotion_metric: str | None = None       # (None: ``LAKEFORGE_PROMOTION_METRIC``)
    window_days: int | None = None
    holdout_days: int | None = None
    validation_days: int | None = None
    row_filter: str | None = None   # Spark SQL predicate: the rows trained and evaluated on
    classes: tuple[str, ...] = ()   # multiclass: the class names, in label index order
    one_hot_numeric: tuple[str, ...] = ()     # numerics the linear families one-hot (not linear in the label)
    time_order: tuple[str, ...] = ()          # numerics LightGBM workers order rows by
    # Retraining policy (lakeforge.monitoring.policy), None: the LAKEFORGE_RETRAIN_* settings.
    retrain_window: int | None = None         # partitions pooled (days; months for a monthly table)
    retrain_max_drop: float | None = None     # allowed worsening of the promotion metric, in its units
    description: str = ""           # what the label is and which rows count (logged with the run)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.source}: unknown task {self.task!r}: one of {', '.join(TASKS)}")
        kind = TASKS[self.task]
        unknown = set(self.families or ()) - set(kind.families)
        if unknown:
            raise ValueError(f"{self.source}: families {sorted(unknown)} do not fit a {self.task} task "
                             f"(one of {', '.join(kind.families)})")
        if self.promotion_metric is not None and self.promotion_metric not in kind.metrics:
            raise ValueError(f"{self.source}: promotion metric {self.promotion_metric!r} is not a {self.task} "
                             f"metric (one of {', '.join(kind.metrics)})")
        if self.task == "multiclass" and len(self.classes) < 3:
            raise ValueError(f"{self.source}: a multiclass model names its classes (3 or more)")
        if not self.key:
            raise ValueError(f"{self.source}: name the key columns of a row (predictions join outcomes on them)")
        if self.retrain_window is not None and self.retrain_window < 1:
            raise ValueError(f"{self.source}: retrain_window is a number of partitions, at least 1")
        if self.retrain_max_drop is not None and self.retrain_max_drop < 0:
            raise ValueError(f"{self.source}: retrain_max_drop cannot be negative")
        if self.task != "binary" and self.retrain_max_drop is None:
            # The settings' drop is for ROC AUC; a log loss or an RMSE (in the label's units) needs its own.
            raise ValueError(f"{self.source}: a {self.task} model sets retrain_max_drop (the worsening of its "
                             f"promotion metric, in that metric's units, that triggers a retraining)")

    @property
    def kind(self) -> TaskKind:
        return TASKS[self.task]

    def resolved(self, settings=None) -> "ModelSpec":
        """The spec with every ``None`` filled from the settings (the job and the DAG read this)."""
        from dataclasses import replace

        from lakeforge.settings import get_settings

        s = settings or get_settings()
        name = self.name or s.model_name
        family = self.family or (s.train_model_family if self.task == "binary" else self.kind.families[0])
        metric = self.promotion_metric or (s.promotion_metric if self.task == "binary" else self.kind.search_metric)
        return replace(
            self, name=name,
            experiment=self.experiment or (s.mlflow_experiment if self.name is None else name),
            job=self.job or f"train_{name}",
            families=self.families or self.kind.families, family=family, promotion_metric=metric,
            window_days=self.window_days or s.train_window_days, holdout_days=self.holdout_days or s.holdout_days,
            validation_days=self.validation_days or s.validation_days,
        )

    @property
    def predictions(self) -> str:
        """The table batch scoring writes: ``predictions/<the features table's name>``."""
        return "predictions/" + self.features.split("/", 1)[-1]

    @property
    def scoring_job(self) -> str:
        """The scoring job's name (Spark app, reports folder): ``score_<predictions table>``."""
        return "score_" + self.predictions.split("/", 1)[-1]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The prediction columns a scored row carries for this task (``lakeforge.scoring.outputs``)."""
        return OUTPUT_COLUMNS[self.task]

    def feature_columns(self) -> tuple[list[str], list[str]]:
        numeric, categorical = self.columns()
        return list(numeric), list(categorical)

    def feature_names(self) -> list[str]:
        """Every feature column, categorical first: the order of the model's signature."""
        numeric, categorical = self.feature_columns()
        return categorical + numeric

    def as_dict(self) -> dict[str, object]:
        """What the training run logs as ``features.json``."""
        numeric, categorical = self.feature_columns()
        return {"task": self.task, "label": self.label, "description": self.description, "key": list(self.key),
                "numeric": numeric, "categorical": categorical, "classes": list(self.classes),
                "rows": self.row_filter or "all"}


def load_model_spec(pipeline: str) -> ModelSpec:
    """The ``MODEL`` of ``lakeforge.pipelines.<pipeline>.model``, resolved against the settings."""
    from lakeforge.sources import pipeline_declaration

    return pipeline_declaration(pipeline, "model", "MODEL", ModelSpec).resolved()


def model_specs() -> list[ModelSpec]:
    """The model of every pipeline that declares one (its folder's ``model.py``), resolved."""
    from lakeforge.sources import pipeline_folders

    return [load_model_spec(name) for name, folder in pipeline_folders().items() if (folder / "model.py").is_file()]
