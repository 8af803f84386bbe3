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
- ``Features.fn(frames, dates) -> features``: ``frames`` maps each table it reads to its
  rows of the run's partitions plus the published partitions of the ``history_days`` before them;
  the result has a ``ds`` column and the rows of ``dates`` (the job keeps only those).

Three optional parts, for a pipeline with more than daily tables (nycflights):

- ``Reference``: a table delivered as snapshots (an aircraft register), cleaned once per raw
  content and read back by the runs after; clean functions (``Clean.reads``) and features read it.
- ``Aggregate``: a small table derived from a clean table's partition and published with it (label
  counts), which later runs' features read as history instead of that many days of clean rows.
- ``Features.input_days``: fewer history days for some inputs than ``history_days``.

This module imports neither Spark nor Great Expectations: a DAG file reads a declaration cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

# The columns of every quarantine table: the raw line, why it was refused, its partition.
QUARANTINE_COLUMNS = ("raw_line", "reason", "ds")

Every = Literal["day", "month"]


@dataclass(frozen=True)
class Clean:
    """``raw/<raw>`` -> ``clean/<name>`` and ``quarantine/<name>`` (``name``: ``raw`` unless set).
    ``reads``: reference tables ``fn`` needs besides the lines, passed by name (``fn(lines, airports=...)``)."""

    raw: str
    fn: Callable[..., tuple[Any, Any]]
    table: str = ""
    reads: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.table or self.raw


@dataclass(frozen=True)
class Features:
    """``features/<table>`` from the tables ``inputs`` (clean tables, aggregates, reference tables).
    ``history_days``: how many days before each run date it reads from the published tables (0:
    the run's own partitions only); a day the gate blocked is not published, so it is never read
    as history. ``upstream``: the clean table it has one row per row of, for the suite's
    ``rows_vs_upstream`` check."""

    table: str
    fn: Callable[[dict[str, Any], list[str]], Any]
    inputs: tuple[str, ...]
    history_days: int = 0
    upstream: str | None = None
    # Inputs that need fewer history days than ``history_days`` (a reference table has none):
    # called at run time, as the days may follow settings.
    input_days: Callable[[], dict[str, int]] | None = None

    def days(self, name: str) -> int:
        """How many days before the run's dates ``frames[name]`` holds."""
        return min(self.history_days, (self.input_days() if self.input_days else {}).get(name, self.history_days))


@dataclass(frozen=True)
class Reference:
    """``raw/<table>`` delivered as snapshots -> ``clean/<table>`` + ``quarantine/<table>``: a run
    cleans the newest snapshot on or before its last date and publishes it at once (no gate of its
    own: the tables built from it are audited). A snapshot serves many runs, so one already cleaned
    from the same raw content with the same ``version()`` is read back instead (by ``schema()``).

    ``fn(spark, files, ds) -> (good, bad)``: the snapshot's raw file URIs -> its clean rows (the
    columns of ``schema()`` plus ``ds``) and its quarantine (``QUARANTINE_COLUMNS``).
    ``version()``: what the clean rows depend on besides the raw content (code, schema, key)."""

    table: str
    fn: Callable[[Any, list[str], str], tuple[Any, Any]]
    schema: Callable[[], Any]
    version: Callable[[], str]


@dataclass(frozen=True)
class Aggregate:
    """``features/<table>``: ``fn(clean rows of <of>)`` staged and published with each partition of
    ``clean/<of>`` (not audited: derived from an audited table), so that later runs' features read
    it as history instead of the clean rows it sums up. A published partition is read only when it
    was derived from the clean partition published now with the same ``params()`` (recorded in its
    manifest); else it is derived again from the published clean rows."""

    table: str
    of: str
    fn: Callable[[Any], Any]
    params: Callable[[], dict[str, Any]] = dict


@dataclass(frozen=True)
class Transform:
    """A pipeline's transform. ``every``: the step between its partitions (``day``; ``month``:
    one partition per month, named by its first day), which turns a ``--start``/``--end`` range
    into partition dates."""

    source: str
    clean: tuple[Clean, ...]
    features: tuple[Features, ...] = ()
    every: Every = "day"
    reference: tuple[Reference, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.clean]
        refs = [r.table for r in self.reference]
        readable = [*names, *refs, *(a.table for a in self.aggregates)]
        if len(set(readable)) != len(readable):
            raise ValueError(f"pipeline {self.source!r}: a table is declared twice: {readable}")
        wrong = {f"clean/{c.name}": [t for t in c.reads if t not in refs] for c in self.clean}
        wrong |= {f"features/{a.table}": [a.of] for a in self.aggregates if a.of not in names}
        wrong |= {f"features/{f.table}": [t for t in (*f.inputs, *([f.upstream] if f.upstream else []))
                                          if t not in readable or (t == f.upstream and t not in names)]
                  for f in self.features}
        for table, unknown in wrong.items():
            if unknown:
                raise ValueError(f"pipeline {self.source!r}: {table} reads {unknown}, which it does not "
                                 f"clean or derive (clean: {names}, reference: {refs})")
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
    def aggregate_tables(self) -> list[str]:
        return [f"features/{a.table}" for a in self.aggregates]

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

        references = [r.table for r in self.reference]
        quarantine = [f"quarantine/{name}" for name in (*(c.name for c in self.clean), *references)]
        return [*self.clean_tables, *(f"clean/{name}" for name in references), *quarantine, *self.feature_tables,
                *self.aggregate_tables, *(f"{QUALITY}/{t}" for t in self.audited_tables)]


def load_transform(pipeline: str) -> Transform:
    """The ``TRANSFORM`` of ``lakeforge.pipelines.<pipeline>.transform`` (its source checked first:
    declared, named after its folder, claimed by no other pipeline)."""
    from lakeforge.sources import pipeline_declaration

    return pipeline_declaration(pipeline, "transform", "TRANSFORM", Transform)
