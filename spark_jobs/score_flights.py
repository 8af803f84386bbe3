"""Spark job: the generic scoring job (``lakeforge.scoring.job``) for nycflights' model.

    spark-submit spark_jobs/score_flights.py --dates 2013-02-01,2013-02-02 [--run-id RUN]
    spark-submit spark_jobs/score_flights.py --start 2013-02-01 --end 2013-02-28 [--model-version 3] [--lake URI]

The same as ``spark_jobs/score.py --pipeline nycflights``: ``predictions/flights`` from
``features/flights`` with ``flight_delay``'s champion. Kept under this name for the commands and
the DAG that run it and for tests that call its functions on a shared session.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lakeforge.lake import Lake
from lakeforge.scoring import job
from lakeforge.scoring.job import (SPARK_CONF, ModelRegistryError, NoModel, SignatureMismatch,  # noqa: F401
                                   arrow_schema, lightgbm_parts, parse_dates, probabilities, score,
                                   warm_python_workers)  # re-exported
from lakeforge.spark import end_of_job
from lakeforge.training.spec import ModelSpec, load_model_spec

PIPELINE = "nycflights"


def spec() -> ModelSpec:
    """nycflights' model, resolved against the settings now (tests change them per test)."""
    return load_model_spec(PIPELINE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return job.parse_args(["--pipeline", PIPELINE, *(sys.argv[1:] if argv is None else argv)])


def feature_inputs(lake: Lake, dates: list[str]) -> dict[str, dict[str, Any]]:
    return job.feature_inputs(lake, dates, spec().features)


def job_session(input_bytes: int | None = None, partitions: int | None = None):
    return job.job_session(spec(), input_bytes, partitions)


def stage(df, lake: Lake) -> str:
    return job.stage(df, lake, spec().predictions)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return job.main(["--pipeline", PIPELINE, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
    end_of_job()
