"""Quality suites as data: which checks guard a table, with which thresholds and severity.

A suite is a JSON file in version control next to the pipeline it guards
(``lakeforge/pipelines/<source>/quality/<layer>_<table>.json``). Each check is ``critical`` (a
failing partition is not published) or ``warning`` (recorded, published anyway): the choice is a
field in the file, not code.

Every check is evaluated on ONE aggregate metric per partition (a null fraction, a share of
values out of range, a duplicate count, a row count against the trailing average...). The
metrics of all partitions of a run are computed in one pass over the data
(``lakeforge.quality.profile``); Great Expectations then checks them (``lakeforge.quality.gate``).
This module is plain Python: no Spark, no Great Expectations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

SEVERITIES = ("critical", "warning")

# kind -> (what the metric is, the keys a check of this kind needs)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "schema": ("columns and types of the data vs the contract ('ok' or the difference)", ("columns",)),
    "header": ("CSV header of the delivery vs the contract ('ok' or the difference)", ("columns",)),
    "row_count": ("rows in the partition", ()),
    "row_count_vs_trailing": ("rows / average rows of the previous `days` partitions", ("days",)),
    "not_null": ("fraction of rows where the column is null", ("column",)),
    "between": ("fraction of non-null values outside [min, max]", ("column",)),
    "in_set": ("fraction of non-null values not in `values`", ("column", "values")),
    "unique": ("rows minus distinct values of `columns` (duplicate keys)", ("columns",)),
    "rows_vs_upstream": ("rows / rows of the same partition of the `upstream` table the job built it from",
                         ("upstream",)),
    "mean": ("mean of the column", ("column",)),
    "quarantine_ratio": ("quarantined rows / raw rows of the partition", ()),
    "ragged_ratio": ("delivered rows whose field count differs from the header's / rows", ()),
}


class SuiteError(ValueError):
    """A suite file that cannot be used: named with the file and the check."""


@dataclass(frozen=True)
class Check:
    id: str
    kind: str
    severity: str
    description: str
    # Bounds on the metric (either may be None); for schema/header the metric must equal "ok".
    min_value: float | None = None
    max_value: float | None = None
    column: str | None = None
    columns: Any = None  # list of names (unique, header) or {name: type} (schema)
    values: tuple[str, ...] = ()
    range: tuple[float, float] | None = None  # between: the plausible value range
    days: int | None = None
    upstream: str | None = None  # rows_vs_upstream: the table this one is derived from

    @property
    def metric(self) -> str:
        """Name of the metric column this check reads (checks of one kind and column share it)."""
        if self.kind == "unique":
            return f"duplicates({','.join(self.columns)})"
        if self.kind == "between":
            return f"outside({self.column},{self.range[0]:g},{self.range[1]:g})"
        if self.kind == "in_set":
            return f"not_in_set({self.column})"
        if self.kind == "row_count_vs_trailing":
            return f"row_count_vs_trailing({self.days})"
        if self.kind == "rows_vs_upstream":
            return f"rows_vs_upstream({self.upstream})"
        if self.column:
            return f"{self.kind}({self.column})"
        return self.kind

    @property
    def expected(self) -> str:
        if self.kind in ("schema", "header"):
            return "matches the contract"
        lo = "-inf" if self.min_value is None else f"{self.min_value:g}"
        hi = "inf" if self.max_value is None else f"{self.max_value:g}"
        return f"{lo} <= {self.metric} <= {hi}"


@dataclass(frozen=True)
class Suite:
    name: str
    table: str  # lake table, e.g. "clean/flights"
    checks: tuple[Check, ...]
    source: str = ""  # the file it came from
    description: str = ""

    @property
    def contract(self) -> Any:
        """The declared columns (schema or header check), or None."""
        for check in self.checks:
            if check.kind in ("schema", "header"):
                return check.columns
        return None

    def metrics(self) -> list[Check]:
        """One check per distinct metric (the profile computes each metric once)."""
        seen: dict[str, Check] = {}
        for check in self.checks:
            seen.setdefault(check.metric, check)
        return list(seen.values())


def parse_suite(doc: dict[str, Any], source: str = "<dict>") -> Suite:
    try:
        name, table, raw_checks = doc["name"], doc["table"], doc["checks"]
    except KeyError as exc:
        raise SuiteError(f"{source}: missing top-level key {exc}") from exc
    checks, ids = [], set()
    for i, raw in enumerate(raw_checks):
        where = f"{source}: check #{i} ({raw.get('id', '?')})"
        kind, severity = raw.get("kind"), raw.get("severity")
        if kind not in KINDS:
            raise SuiteError(f"{where}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        if severity not in SEVERITIES:
            raise SuiteError(f"{where}: severity must be one of {SEVERITIES}, not {severity!r}")
        missing = [k for k in KINDS[kind][1] if k not in raw]
        if missing:
            raise SuiteError(f"{where}: kind {kind} needs {missing}")
        if kind == "between" and len(raw.get("range", ())) != 2:
            raise SuiteError(f"{where}: between needs range: [min, max]")
        if kind not in ("schema", "header") and raw.get("min") is None and raw.get("max") is None:
            raise SuiteError(f"{where}: give min and/or max for the metric")
        check_id = raw.get("id") or f"{kind}:{raw.get('column') or ','.join(raw.get('columns') or [])}"
        if check_id in ids:
            raise SuiteError(f"{where}: duplicate id {check_id!r}")
        ids.add(check_id)
        checks.append(Check(
            id=check_id,
            kind=kind,
            severity=severity,
            description=raw.get("description", KINDS[kind][0]),
            min_value=raw.get("min"),
            max_value=raw.get("max"),
            column=raw.get("column"),
            columns=raw.get("columns"),
            values=tuple(raw.get("values", ())),
            range=tuple(raw["range"]) if "range" in raw else None,
            days=raw.get("days"),
            upstream=raw.get("upstream"),
        ))
    if any(c.kind == "rows_vs_upstream" for c in checks) and not any(c.kind == "row_count" for c in checks):
        raise SuiteError(f"{source}: rows_vs_upstream compares the row_count metric: add a row_count check")
    return Suite(name=name, table=table, checks=tuple(checks), source=source,
                 description=doc.get("description", ""))


def suite_file(table: str) -> str:
    """``raw/flights`` -> ``raw_flights.json`` (in lakeforge/pipelines/<source>/quality/)."""
    return f"{table.replace('/', '_')}.json"


def load_suite(source_name: str, table: str) -> Suite:
    """The suite guarding ``table`` (e.g. ``clean/flights``) of a source's pipeline."""
    package = f"lakeforge.pipelines.{source_name}"
    ref = resources.files(package).joinpath("quality", suite_file(table))
    if not ref.is_file():
        raise SuiteError(f"no quality suite for {table}: expected {package}/quality/{suite_file(table)}")
    suite = parse_suite(json.loads(ref.read_text()), source=str(ref))
    if suite.table != table:
        raise SuiteError(f"{ref}: guards {suite.table!r}, expected {table!r}")
    return suite


@dataclass
class CheckResult:
    check: Check
    success: bool
    observed: Any

    def as_dict(self) -> dict[str, Any]:
        c = self.check
        return {
            "id": c.id, "kind": c.kind, "severity": c.severity,
            "column": c.column or (",".join(c.columns) if c.kind == "unique" else None),
            "metric": c.metric, "expected": c.expected, "observed": self.observed,
            "success": self.success, "description": c.description,
        }


@dataclass
class PartitionResult:
    """The gate's verdict on one partition."""

    table: str
    ds: str
    suite: str
    results: list[CheckResult] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.check.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.check.severity == "warning"]

    @property
    def status(self) -> str:
        return "failed" if self.failed else "warned" if self.warnings else "passed"

    def reasons(self, results: list[CheckResult] | None = None) -> list[str]:
        """One line per failing check: the expectation, the column, the observed value."""
        return [
            f"{r.check.id} [{r.check.severity}]: {r.check.metric} = {format_value(r.observed)}, "
            f"expected {r.check.expected}"
            for r in (self.failed + self.warnings if results is None else results)
        ]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
