"""The one place for lakeforge configuration.

Every value comes from an environment variable with an embedded default, so one machine runs with
no configuration at all (a file lake and SQLite under ``.lakeforge/``) and a cluster changes only
environment variables (``hdfs://`` lake, ``spark://`` master, Postgres, an MLflow server).

Settings are read when asked for (``get_settings()``), never cached at import, so a DAG file, a
Spark job and a test all see the environment they run in.

``python -m lakeforge.settings`` prints the effective values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

# plugins/lakeforge/settings.py -> the checkout root (editable install / Airflow plugins folder).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Option:
    """One setting: its environment variable, how its default is derived, and what it is for."""

    env: str
    default: str
    help: str


# The defaults may name other settings in braces ({home}); they are filled in order.
OPTIONS: dict[str, Option] = {
    "home": Option(
        "LAKEFORGE_HOME", str(PROJECT_ROOT / ".lakeforge"),
        "Working directory for embedded mode: lake, landing, SQLite databases, Airflow home.",
    ),
    "lake_root": Option(
        "LAKEFORGE_LAKE_ROOT", "file://{home}/lake",
        "Root URI of the lake: `file:///...` or a bare path (local), `hdfs://host:port/path` (HDFS).",
    ),
    "landing_root": Option(
        "LAKEFORGE_LANDING_ROOT", "file://{home}/landing",
        "Where upstream systems drop their deliveries (any URI the lake understands).",
    ),
    "spark_master": Option(
        "LAKEFORGE_SPARK_MASTER", "local[*]",
        "Spark master for jobs: `local[*]` or `spark://host:7077`.",
    ),
    "spark_shuffle_partitions": Option(
        "LAKEFORGE_SPARK_SHUFFLE_PARTITIONS", "8",
        "spark.sql.shuffle.partitions for lakeforge jobs (Spark's 200 is far too many for daily data).",
    ),
    "spark_driver_memory": Option(
        "LAKEFORGE_SPARK_DRIVER_MEMORY", "4g",
        "Driver memory for Spark jobs (local mode runs the executors in the driver).",
    ),
    "spark_cds_dir": Option(
        "LAKEFORGE_SPARK_CDS_DIR", "{home}/cache/spark-cds",
        "Where the Spark driver's class-data-sharing archive lives (recorded once by `make spark-cds`, which `make test`/`demo`/`bench` run; ~2.5 s faster JVM start-up); `off` disables it.",
    ),
    "spark_local_fs_dir": Option(
        "LAKEFORGE_SPARK_LOCAL_FS_DIR", "{home}/cache/spark-local-fs",
        "Where the jar of lakeforge's `file://` file system for Spark lives (built by `make spark-cds`: directory permissions set in-process instead of a `chmod` process each, 4-7 s on the x20 year); it is a Hadoop `LocalFileSystem`, so `FileSystem.getLocal` works, and writes no `.crc` files); `off` uses Hadoop's RawLocalFileSystem for a file lake, its LocalFileSystem for an HDFS lake.",
    ),
    "spark_short_run_mb": Option(
        "LAKEFORGE_SPARK_SHORT_RUN_MB", "64",
        "A Spark job whose input is at most this many MB (a daily run) starts its JVMs with the C1 compiler only (`-XX:TieredStopAtLevel=1`): a short run never repays C2's compile time (one day at x20: ~12 s vs ~15 s; past ~100 MB C2 wins, a year at x20 takes 97 s instead of 57 s with C1 only). 0: never.",
    ),
    "spark_short_run_partitions": Option(
        "LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS", "90",
        "A short run (C1 only, above) also covers at most this many partitions (days): the features' work grows with the days, not only with the bytes. x1 transform, C1 only vs tiered: 31 days 54 vs 66 s, 90 days 95 vs 99 s, the year (364 days, 34 MB) 307 vs 218 s.",
    ),
    "spark_auth_secret": Option(
        "LAKEFORGE_SPARK_AUTH_SECRET", "",
        "Shared secret of a Spark standalone cluster that runs with `spark.authenticate` (its master and workers read the same secret as `_SPARK_AUTH_SECRET`); jobs then authenticate with it and encrypt their RPC. Empty: no authentication (local mode needs none). Never printed.",
    ),
    "mlflow_tracking_uri": Option(
        "MLFLOW_TRACKING_URI", "sqlite:///{home}/mlflow.db",
        "MLflow tracking/registry URI: SQLite by default, `http://mlflow:5000` for a server.",
    ),
    "mlflow_artifact_root": Option(
        "LAKEFORGE_MLFLOW_ARTIFACT_ROOT", "file://{home}/mlartifacts",
        "Artifact location for new MLflow experiments (pinned, never `<cwd>/mlruns`).",
    ),
    "model_name": Option(
        "LAKEFORGE_MODEL_NAME", "flight_delay",
        "Registered model name in the MLflow registry (aliases `champion` / `challenger`).",
    ),
    "mlflow_experiment": Option(
        "LAKEFORGE_MLFLOW_EXPERIMENT", "flight_delay",
        "MLflow experiment that holds the training runs.",
    ),
    "feature_cutoff_hours": Option(
        "LAKEFORGE_FEATURE_CUTOFF_HOURS", "2",
        "Prediction-time contract: a flight is scored this many hours before its scheduled departure, and its features use only what is known by then (`lakeforge.pipelines.nycflights.features`).",
    ),
    "train_window_days": Option(
        "LAKEFORGE_TRAIN_WINDOW_DAYS", "90",
        "Rolling training window: days of features before the holdout.",
    ),
    "holdout_days": Option(
        "LAKEFORGE_HOLDOUT_DAYS", "14",
        "Most recent days kept out of training; challenger and champion are scored on those the champion never trained on.",
    ),
    "validation_days": Option(
        "LAKEFORGE_VALIDATION_DAYS", "7",
        "Last days of the training window that the hyperparameter search scores trials on.",
    ),
    "train_model_family": Option(
        "LAKEFORGE_TRAIN_MODEL_FAMILY", "lightgbm",
        "Model family of the challenger: `lightgbm` (LightGBM data-parallel across executors), `xgboost` "
        "(xgboost.spark), `lr` (MLlib LogisticRegression), `gbt` (MLlib GBT).",
    ),
    "search_budget": Option(
        "LAKEFORGE_SEARCH_BUDGET", "4",
        "Hyperparameter search: trials per training run (each a nested MLflow run).",
    ),
    "search_parallelism": Option(
        "LAKEFORGE_SEARCH_PARALLELISM", "2",
        "Trials fitted at the same time inside the Spark app (executor slots are shared between them).",
    ),
    "train_min_new_days": Option(
        "LAKEFORGE_TRAIN_MIN_NEW_DAYS", "7",
        "Asset-triggered training starts only when at least this many feature days are newer than the last training.",
    ),
    "promotion_metric": Option(
        "LAKEFORGE_PROMOTION_METRIC", "roc_auc",
        "Primary holdout metric of the registry gate: `roc_auc`, `pr_auc` (higher wins), `log_loss`, `brier` (lower wins).",
    ),
    "promotion_margin": Option(
        "LAKEFORGE_PROMOTION_MARGIN", "0.002",
        "A challenger must beat the champion (or the trivial baseline) by more than this on the primary metric.",
    ),
    "guard_calibration_tolerance": Option(
        "LAKEFORGE_GUARD_CALIBRATION_TOLERANCE", "0.02",
        "Guard: the challenger's expected calibration error on the holdout may exceed the champion's (or baseline's) by at most this.",
    ),
    "guard_positive_rate_tolerance": Option(
        "LAKEFORGE_GUARD_POSITIVE_RATE_TOLERANCE", "0.02",
        "Guard: the challenger's gap between mean prediction and observed positive rate may exceed the champion's (or baseline's) by at most this.",
    ),
    "score_threshold": Option(
        "LAKEFORGE_SCORE_THRESHOLD", "0.5",
        "Batch scoring: a prediction row's decision is `probability >= threshold`; a model version's `decision_threshold` tag overrides it.",
    ),
    "drift_bins": Option(
        "LAKEFORGE_DRIFT_BINS", "10",
        "Drift: numeric features are binned at this many quantiles of the champion's training window (PSI per feature).",
    ),
    "retrain_window_days": Option(
        "LAKEFORGE_RETRAIN_WINDOW_DAYS", "7",
        "Retraining policy: trailing days of evaluated outcomes whose pooled performance is compared with the champion's holdout value.",
    ),
    "retrain_max_drop": Option(
        "LAKEFORGE_RETRAIN_MAX_DROP", "0.03",
        "Retraining policy: retrain when the trailing window's promotion metric is worse than the champion's holdout value by more than this.",
    ),
    "retrain_drift_psi": Option(
        "LAKEFORGE_RETRAIN_DRIFT_PSI", "0.25",
        "Retraining policy: a day drifts when a feature's (or the prediction's) PSI against the training reference exceeds its usual PSI on a training day (95th percentile of the training days' own PSI) by more than this.",
    ),
    "retrain_drift_days": Option(
        "LAKEFORGE_RETRAIN_DRIFT_DAYS", "3",
        "Retraining policy: retrain when this many consecutive scored days drift.",
    ),
    "quality_local_scan_max_mb": Option(
        "LAKEFORGE_QUALITY_LOCAL_SCAN_MAX_MB", "1024",
        "Quality gate: a run's staged table up to this size (MB of Parquet) is profiled with Arrow in the job's driver; a bigger one by Spark (0: always Spark).",
    ),
    "airflow_home": Option(
        "AIRFLOW_HOME", "{home}/airflow",
        "Airflow home (config, SQLite metadata DB and logs in embedded mode).",
    ),
    "dags_folder": Option(
        "LAKEFORGE_DAGS_FOLDER", str(PROJECT_ROOT / "dags"),
        "Folder with the DAG definitions Airflow parses.",
    ),
    "hdfs_client": Option(
        "LAKEFORGE_HDFS_CLIENT", "auto",
        "HDFS client for Python I/O: `auto` (libhdfs if present, else hdfs-native), `libhdfs`, `native`.",
    ),
    "pipelines_path": Option(
        "LAKEFORGE_PIPELINES_PATH", "",
        "Extra folders (`:`-separated) holding pipeline packages `<name>/__init__.py`, importable as `lakeforge.pipelines.<name>` beside the built-in ones; a name in two folders is refused.",
    ),
    "delivery_poll_seconds": Option(
        "LAKEFORGE_DELIVERY_POLL_SECONDS", "5",
        "How often the ingest DAGs' delivery watcher (on Airflow's triggerer) lists the landing area; a new or changed file there starts an ingest run.",
    ),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_root: str
    landing_root: str
    spark_master: str
    spark_shuffle_partitions: int
    spark_driver_memory: str
    spark_cds_dir: str
    spark_local_fs_dir: str
    spark_short_run_mb: int
    spark_short_run_partitions: int
    spark_auth_secret: str = field(repr=False)
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    model_name: str
    mlflow_experiment: str
    feature_cutoff_hours: float
    train_window_days: int
    holdout_days: int
    validation_days: int
    train_model_family: str
    search_budget: int
    search_parallelism: int
    train_min_new_days: int
    promotion_metric: str
    promotion_margin: float
    guard_calibration_tolerance: float
    guard_positive_rate_tolerance: float
    score_threshold: float
    drift_bins: int
    retrain_window_days: int
    retrain_max_drop: float
    retrain_drift_psi: float
    retrain_drift_days: int
    quality_local_scan_max_mb: int
    airflow_home: Path
    dags_folder: Path
    hdfs_client: str
    pipelines_path: str
    delivery_poll_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        raw: dict[str, str] = {}
        for name, opt in OPTIONS.items():
            value = env.get(opt.env)
            raw[name] = value if value not in (None, "") else opt.default.format(**raw)
        values: dict[str, object] = {}
        for f in fields(cls):
            text = raw[f.name]
            if f.type in ("Path",):
                values[f.name] = Path(text).expanduser().resolve()
            elif f.type in ("int",):
                try:
                    values[f.name] = int(text)
                except ValueError:
                    raise ValueError(f"{OPTIONS[f.name].env} must be an integer, got {text!r}") from None
            elif f.type in ("float",):
                try:
                    values[f.name] = float(text)
                except ValueError:
                    raise ValueError(f"{OPTIONS[f.name].env} must be a number, got {text!r}") from None
            else:
                values[f.name] = text
        if values["hdfs_client"] not in ("auto", "libhdfs", "native"):
            raise ValueError(
                f"LAKEFORGE_HDFS_CLIENT must be auto, libhdfs or native, got {values['hdfs_client']!r}"
            )
        choices = {
            "train_model_family": ("lightgbm", "xgboost", "lr", "gbt"),
            "promotion_metric": ("roc_auc", "pr_auc", "log_loss", "brier"),
        }
        for name, allowed in choices.items():
            if values[name] not in allowed:
                raise ValueError(f"{OPTIONS[name].env} must be one of {', '.join(allowed)}, got {values[name]!r}")
        if values["feature_cutoff_hours"] <= 0:  # type: ignore[operator]
            raise ValueError(f"LAKEFORGE_FEATURE_CUTOFF_HOURS must be more than 0, got {values['feature_cutoff_hours']}")
        if values["spark_short_run_mb"] < 0:  # type: ignore[operator]
            raise ValueError(f"LAKEFORGE_SPARK_SHORT_RUN_MB must be 0 or more, got {values['spark_short_run_mb']}")
        if values["spark_short_run_partitions"] < 1:  # type: ignore[operator]
            raise ValueError("LAKEFORGE_SPARK_SHORT_RUN_PARTITIONS must be 1 or more, "
                             f"got {values['spark_short_run_partitions']}")
        if values["quality_local_scan_max_mb"] < 0:  # type: ignore[operator]
            raise ValueError(f"LAKEFORGE_QUALITY_LOCAL_SCAN_MAX_MB must be 0 or more, got {values['quality_local_scan_max_mb']}")
        if not 0.0 <= values["score_threshold"] <= 1.0:  # type: ignore[operator]
            raise ValueError(f"LAKEFORGE_SCORE_THRESHOLD must be in [0, 1], got {values['score_threshold']}")
        if values["drift_bins"] < 2:  # type: ignore[operator]
            raise ValueError(f"LAKEFORGE_DRIFT_BINS must be at least 2, got {values['drift_bins']}")
        for name in ("train_window_days", "holdout_days", "search_budget", "search_parallelism",
                     "retrain_window_days", "retrain_drift_days"):
            if values[name] < 1:  # type: ignore[operator]
                raise ValueError(f"{OPTIONS[name].env} must be at least 1, got {values[name]}")
        return cls(**values)  # type: ignore[arg-type]


def get_settings() -> Settings:
    """The effective settings, read from the environment now."""
    return Settings.from_env()


def markdown_table() -> str:
    """The README table of settings, generated from OPTIONS so docs cannot drift."""
    rows = ["| Variable | Default | What it is for |", "|---|---|---|"]
    for opt in OPTIONS.values():
        default = opt.default.replace(str(PROJECT_ROOT), "<checkout>")
        rows.append(f"| `{opt.env}` | {f'`{default}`' if default else '(empty)'} | {opt.help} |")
    return "\n".join(rows)


def main() -> None:
    s = get_settings()
    for f in fields(s):
        value = getattr(s, f.name)
        if not f.repr and value:
            value = "(set)"  # a secret
        print(f"{OPTIONS[f.name].env:32} {value}")


if __name__ == "__main__":
    main()
