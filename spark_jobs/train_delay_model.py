"""Spark job: the generic training job (``lakeforge.training.job``) for nycflights' model.

    spark-submit spark_jobs/train_delay_model.py --run-key train_delay_model/manual__... \\
        [--end 2013-01-31] [--window-days 90] [--holdout-days 14] [--family lightgbm] [--search-budget 4]

The same as ``spark_jobs/train.py --pipeline nycflights``; what nycflights declares is in
``lakeforge/pipelines/nycflights/model.py``. Kept under this name for the commands and the DAG
that run it and for tests that call its functions on a shared session.
"""

from __future__ import annotations

import argparse
from typing import Any

from lakeforge.spark import end_of_job
from lakeforge.training import job
from lakeforge.training.job import checksummed_local_fs, load_version, run_metrics  # noqa: F401  (re-exported)
from lakeforge.training.spec import ModelSpec, load_model_spec

PIPELINE = "nycflights"


def spec() -> ModelSpec:
    """nycflights' model, resolved against the settings now (tests change them per test)."""
    return load_model_spec(PIPELINE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return job.parse_args(argv, spec())[0]


def train(spark, args: argparse.Namespace) -> dict[str, Any]:
    return job.train(spark, args, spec())


def log_model(model, holdout, family: str):
    return job.log_model(model, holdout, family, spec())


def log_reference_profile(model, train, holdout, name: str, version: str, run_id: str, split) -> None:
    return job.log_reference_profile(spec(), model, train, holdout, name, version, run_id, split)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return job.main(argv, spec())


if __name__ == "__main__":
    main()
    end_of_job()
