"""The gate: Great Expectations checks the per-partition metrics of a run.

GE 1.x, current API: an ephemeral context, a pandas data source with a dataframe asset and a
whole-dataframe batch definition, one ExpectationSuite per lakeforge suite (each check one
expectation on its metric column, with its severity in ``meta``) and a ValidationDefinition.
The batch is the run's profile: one row per partition, so one validation covers every partition
of the run and ``unexpected_index_list`` (keyed by ``ds``) says which partitions failed which
expectation with which observed value.

``import great_expectations`` costs ~7 s of CPU here: ``preload()`` starts it in a thread at the
beginning of a Spark job, while the JVM starts, so the gate rarely waits for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping

from lakeforge.quality.spec import CheckResult, PartitionResult, Suite

log = logging.getLogger(__name__)
_import_lock = threading.Lock()
_preload: threading.Thread | None = None
_context = None
_definitions: dict[str, Any] = {}


def _import_gx():
    with _import_lock:
        for name in ("great_expectations", "py.warnings"):
            logging.getLogger(name).setLevel(logging.WARNING)  # ~200 INFO lines per import otherwise
        import great_expectations as gx

        return gx


def preload() -> None:
    """Import Great Expectations in the background (idempotent)."""
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=_import_gx, name="gx-import", daemon=True)
        _preload.start()


def _get_context():
    global _context
    gx = _import_gx()
    if _context is None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _context.data_sources.add_pandas("lakeforge_profiles")
    return gx, _context


def expectation_for(gx, check) -> Any:
    meta = {"check": check.id, "severity": check.severity, "kind": check.kind,
            "column": check.column, "description": check.description}
    if check.kind in ("schema", "header"):
        return gx.expectations.ExpectColumnValuesToBeInSet(column=check.metric, value_set=["ok"], meta=meta)
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=check.metric, min_value=check.min_value, max_value=check.max_value, meta=meta)


def validation_definition(suite: Suite):
    """The suite as a GE ExpectationSuite + ValidationDefinition (built once per process)."""
    gx, context = _get_context()
    if suite.name not in _definitions:
        asset = context.data_sources.get("lakeforge_profiles").add_dataframe_asset(suite.name)
        batch = asset.add_batch_definition_whole_dataframe(f"{suite.name}_profiles")
        ge_suite = context.suites.add(gx.ExpectationSuite(name=suite.name, meta={"table": suite.table}))
        for check in suite.checks:
            ge_suite.add_expectation(expectation_for(gx, check))
        _definitions[suite.name] = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=ge_suite))
    return _definitions[suite.name]


def validate(suite: Suite, profiles: Mapping[str, Mapping[str, Any]]) -> dict[str, PartitionResult]:
    """Run the suite on the profiles of a run's partitions; a verdict per partition."""
    import pandas as pd

    if not profiles:
        return {}
    frame = pd.DataFrame([{"ds": ds, **profile} for ds, profile in profiles.items()])
    for check in suite.checks:  # every metric column exists, even if no partition had a value
        if check.metric not in frame:
            frame[check.metric] = None
    frame = frame.astype({c: "object" for c in frame.columns if frame[c].isna().all()})
    result = validation_definition(suite).run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["ds"]},
    )
    by_id = {check.id: check for check in suite.checks}
    verdicts = {ds: PartitionResult(table=suite.table, ds=ds, suite=suite.name, metrics=dict(profiles[ds]))
                for ds in profiles}
    for er in result.results:
        check = by_id[er.expectation_config.meta["check"]]
        if er.exception_info and er.exception_info.get("raised_exception"):
            raise RuntimeError(f"{suite.name}: expectation {check.id} could not run: "
                               f"{er.exception_info.get('exception_message')}")
        failing = {item["ds"] for item in (er.result.get("unexpected_index_list") or [])}
        for ds, verdict in verdicts.items():
            verdict.results.append(CheckResult(check, ds not in failing, _plain(profiles[ds].get(check.metric))))
    return verdicts


def _plain(value: Any) -> Any:
    """JSON-friendly observed values (numpy scalars, decimals, NaN)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (int, float, str, bool)):
        return value
    return float(value) if hasattr(value, "__float__") else str(value)
