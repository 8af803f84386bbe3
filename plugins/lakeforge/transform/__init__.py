"""What a pipeline declares for its transform, as plain data and functions.

A pipeline folder ``lakeforge/pipelines/<name>/`` holds a module ``transform.py`` with a
``TRANSFORM = Transform(...)``: which raw tables it cleans, with which function, and which feature
tables it builds from the clean ones. The generic job (``lakeforge.transform.job``, run as
``spark_jobs/transform.py --pipeline <name>``) does the rest for any pipeline: it reads the raw
partitions by their manifests, stages every output, checks the row accounting (clean +
quarantined = raw rows), runs the pipeline's quality suites (``quality/<layer>_<table>.json``)
through the gate and publishes each partition whole or not at all, with manifests.

The functions are pure Spark DataFrame transforms with explicit schemas:

- ``Clean.fn(lines) -> (good, bad)``: ``lines`` has ``value`` (one raw CSV line, header lines
  removed) and ``ds`` (the partition, a string); ``good`` the typed rows plus ``ds``; ``bad`` the
  columns ``raw_line``, ``reason``, ``ds``. Every line goes to exactly one of them.
- ``Features.fn(frames, dates) -> features``: ``frames`` maps each clean table it reads to its
  rows of the run's partitions plus the published partitions of the ``history_days`` before them;
  the result has a ``ds`` column and the rows of ``dates`` (the job keeps only those).

This module imports neither Spark nor Great Expectations: a DAG file reads a declaration cheaply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Literal

# The columns of every quarantine table: the raw line, why it was refused, its partition.
QUARANTINE_COLUMNS = ("raw_line", "reason", "ds")

Every = Literal["day", "month"]


@dataclass(frozen=True)
class Clean:
    """``raw/<raw>`` -> ``clean/<name>`` and ``quarantine/<name>`` (``name``: ``raw`` unless set)."""

    raw: str
    fn: Callable[[Any], tuple[Any, Any]]
    table: str = ""

    @property
    def name(self) -> str:
        return self.table or self.raw


@dataclass(frozen=True)
class Features:
    """``features/<table>`` from the clean tables ``inputs``. ``history_days``: how many days before
    each run date it reads from the published clean tables (0: the run's own partitions only);
    a day the gate blocked is not published, so it is never read as history. ``upstream``: the
    clean table it has one row per row of, for the suite's ``rows_vs_upstream`` check."""

    table: str
    fn: Callable[[dict[str, Any], list[str]], Any]
    inputs: tuple[str, ...]
    history_days: int = 0
    upstream: str | None = None


@dataclass(frozen=True)
class Transform:
    """A pipeline's transform. ``every``: the step between its partitions (``day``; ``month``:
    one partition per month, named by its first day), which turns a ``--start``/``--end`` range
    into partition dates."""

    source: str
    clean: tuple[Clean, ...]
    features: tuple[Features, ...] = ()
    every: Every = "day"

    def __post_init__(self) -> None:
        names = [c.name for c in self.clean]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.source!r}: a clean table is declared twice: {names}")
        for f in self.features:
            unknown = [t for t in (*f.inputs, *([f.upstream] if f.upstream else [])) if t not in names]
            if unknown:
                raise ValueError(f"pipeline {self.source!r}: features/{f.table} reads {unknown}, "
                                 f"which it does not clean (clean tables: {names})")
        if self.every not in ("day", "month"):
            raise ValueError(f"pipeline {self.source!r}: every must be 'day' or 'month', not {self.every!r}")

    @property
    def raw_tables(self) -> list[str]:
        return list(dict.fromkeys(f"raw/{c.raw}" for c in self.clean))

    @property
    def clean_tables(self) -> list[str]:
        return [f"clean/{c.name}" for c in self.clean]

    @property
    def feature_tables(self) -> list[str]:
        return [f"features/{f.table}" for f in self.features]

    @property
    def audited_tables(self) -> list[str]:
        """The tables the quality gate audits (each needs its suite), in the order it audits them."""
        return [*self.raw_tables, *self.clean_tables, *self.feature_tables]

    @property
    def outputs(self) -> list[tuple[str, str]]:
        """(layer, table) of what a run publishes that downstream reads (not the quarantine)."""
        return [tuple(t.split("/", 1)) for t in (*self.clean_tables, *self.feature_tables)]

    @property
    def history_days(self) -> int:
        return max([f.history_days for f in self.features] or [0])

    def written_tables(self) -> list[str]:
        """Every table a run writes: its writer leases are held for the whole run."""
        from lakeforge.quality.evidence import QUALITY

        quarantine = [f"quarantine/{c.name}" for c in self.clean]
        return [*self.clean_tables, *quarantine, *self.feature_tables,
                *(f"{QUALITY}/{t}" for t in self.audited_tables)]

    def partition_dates(self, start: str, end: str) -> list[str]:
        """The partitions of ``start``..``end``: every day, or the first day of every month touched."""
        return partition_dates(start, end, self.every)


def partition_dates(start: str, end: str, every: Every = "day") -> list[str]:
    from lakeforge.dates import date_range

    days = date_range(start, end)
    return days if every == "day" else sorted({date.fromisoformat(d).replace(day=1).isoformat() for d in days})


def load_transform(pipeline: str) -> Transform:
    """The ``TRANSFORM`` of ``lakeforge.pipelines.<pipeline>.transform`` (its source checked first:
    declared, named after its folder, claimed by no other pipeline)."""
    from lakeforge.sources import get_source

    get_source(pipeline)
    module = importlib.import_module(f"lakeforge.pipelines.{pipeline}.transform")
    spec = getattr(module, "TRANSFORM", None)
    if not isinstance(spec, Transform):
        raise LookupError(f"{module.__name__} declares no TRANSFORM (a lakeforge.transform.Transform)")
    if spec.source != pipeline:
        raise ValueError(f"{module.__file__}: TRANSFORM.source is {spec.source!r}, expected {pipeline!r}")
    return spec
