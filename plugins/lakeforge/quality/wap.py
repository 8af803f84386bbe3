"""Write-audit-publish for Spark jobs: staged output is validated before any of it is visible.

A job stages each output table (``lakeforge.spark_publish``), asks the ``QualityGate`` to audit
the staged partitions (raw inputs are audited from their manifests), and publishes only the
dates the gate lets through; the rest of the staging is discarded, so a rejected partition keeps
its previous published version (or stays absent). A day is published whole or not at all: a
critical failure in any of its tables blocks all of them. Evidence for every audited partition
goes to ``quality/`` (``lakeforge.quality.evidence``); a blocked run ends with
``QualityGateFailed`` naming each failing check, its column and the observed value.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Sequence

from lakeforge.lake import Lake
from lakeforge.quality.spec import PartitionResult, Suite, load_suite

log = logging.getLogger(__name__)


class QualityGateFailed(RuntimeError):
    """Critical checks failed: the named partitions were not published."""

    def __init__(self, blocked: Mapping[str, list[str]], evidence: Mapping[str, str]):
        self.blocked = dict(blocked)
        self.evidence = dict(evidence)
        lines = [f"quality gate failed: {len(blocked)} partition(s) not published"]
        for ds, reasons in sorted(blocked.items()):
            lines += [f"  ds={ds}: {r}" for r in reasons]
        lines += [f"  evidence: {uri}" for uri in sorted(set(self.evidence.values()))]
        super().__init__("\n".join(lines))

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "QualityGateFailed":
        """From ``QualityGate.summary()`` (e.g. read back from a job's run report)."""
        failed = {k: e["uri"] for k, e in summary["evidence"].items() if e["status"] == "failed"}
        return cls(summary["blocked"], failed)


class QualityGate:
    """Audits a run's partitions table by table and decides which dates may be published."""

    def __init__(self, lake: Lake, source_name: str, run_id: str | None = None):
        self.lake, self.source_name, self.run_id = lake, source_name, run_id
        self.verdicts: list[PartitionResult] = []
        self.pending: list[tuple[Suite, dict]] = []  # profiled, not yet validated
        self.records: dict[str, dict] = {}
        # Where the gate's time goes: profiling (Spark), Great Expectations, evidence writes.
        self.timings = {"profile_s": 0.0, "validate_s": 0.0, "evidence_s": 0.0}

    def suite(self, table: str) -> Suite:
        return load_suite(self.source_name, table)

    def audit_manifests(self, table: str, manifests: Mapping[str, dict], history: Mapping[str, int]) -> None:
        """A raw table, from the manifests of its partitions (header, rows, ragged rows)."""
        from lakeforge.quality.profile import manifest_profiles

        suite = self.suite(table)
        self.pending.append((suite, manifest_profiles(suite, manifests, history)))

    def audit_staged(self, spark, tables: Sequence[tuple[str, str, Sequence[str], Mapping[str, Any] | None]],
                     footers: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Tables a Spark job staged, each ``(table, staging folder, dates, context)``: one
        aggregation pass over each staged table, the passes running concurrently (small jobs
        leave cores idle between their stages). Validation happens when verdicts are asked for
        (``blocked``, ``passing``...): one GE validation for all tables audited until then."""
        from concurrent.futures import ThreadPoolExecutor

        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, len(tables))) as pool:
            profiles = list(pool.map(lambda item: self._profile_staged(spark, *item, (footers or {}).get(item[0])),
                                     tables))
        self.timings["profile_s"] += time.perf_counter() - t
        self.pending += [(self.suite(table), p) for (table, *_), p in zip(tables, profiles)]

    def _profile_staged(self, spark, table: str, staging: str, dates: Sequence[str],
                        context: Mapping[str, Any] | None, footers: Mapping[str, Any] | None = None):
        from lakeforge.quality.profile import LocalScan, dataframe_profiles, parquet_footer_stats
        from lakeforge.settings import get_settings

        # The staging folder holds exactly this run's ds=... folders: reading the folder is much
        # cheaper than listing hundreds of partition paths. Nothing staged at all: every date is
        # an empty partition (and there is no schema to check).
        written = any(name.startswith("ds=") for name in self.lake.listdir(staging))
        df = spark.read.parquet(self.lake.uri(staging)) if written else None
        if not written:
            footers = None
        elif footers is None:  # the job did not read them already
            footers = parquet_footer_stats(self.lake, staging, dates)
        local = LocalScan(self.lake, staging, get_settings().quality_local_scan_max_mb * 2**20)
        return dataframe_profiles(df, self.suite(table), dates, context, footers, local)

    def _validate_pending(self) -> None:
        """One Great Expectations validation for everything audited since the last verdicts."""
        from lakeforge.quality import gate

        if not self.pending:
            return
        t = time.perf_counter()
        verdicts = gate.validate_many(self.pending)
        self.pending = []
        self.timings["validate_s"] += time.perf_counter() - t
        for per_ds in verdicts.values():
            for v in per_ds.values():
                self.verdicts.append(v)
                level = logging.WARNING if v.status != "passed" else logging.INFO
                log.log(level, "quality %s ds=%s: %s%s", v.table, v.ds, v.status,
                        "".join(f"\n  {r}" for r in v.reasons()))

    def discard_downstream(self, table: str, upstream: Sequence[str]) -> None:
        """Forget ``table``'s verdicts for dates that an ``upstream`` table already blocks."""
        self._validate_pending()
        blocked = {v.ds for v in self.verdicts if v.table in upstream and v.failed}
        self.verdicts = [v for v in self.verdicts if not (v.table == table and v.ds in blocked)]

    def blocked(self) -> dict[str, list[str]]:
        """ds -> the critical failures (of any table) that keep it from being published."""
        self._validate_pending()
        out: dict[str, list[str]] = {}
        for v in self.verdicts:
            if v.failed:
                out.setdefault(v.ds, []).extend(f"{v.table}: {r}" for r in v.reasons(v.failed))
        return out

    def passing(self, dates: Sequence[str]) -> list[str]:
        blocked = self.blocked()
        return [ds for ds in dates if ds not in blocked]

    def write_evidence(self) -> None:
        from lakeforge.quality.evidence import write_evidence

        self._validate_pending()
        t = time.perf_counter()
        self.records = write_evidence(self.lake, self.verdicts, self.run_id)
        self.timings["evidence_s"] += time.perf_counter() - t

    def partition_meta(self, table: str) -> dict[str, dict[str, Any]]:
        """Manifest fields per ds: the partition's verdict and where its evidence is."""
        return {
            r["ds"]: {"quality": {"status": r["status"], "suite": r["suite"], "evidence": r["evidence"],
                                  "warnings": r["warnings"]}}
            for r in self.records.values() if r["table"] == table
        }

    def summary(self) -> dict[str, Any]:
        self._validate_pending()
        counts: dict[str, dict[str, int]] = {}
        for v in self.verdicts:
            per = counts.setdefault(v.table, {"passed": 0, "warned": 0, "failed": 0})
            per[v.status] += 1
        return {
            "counts": counts,
            "timings": dict(self.timings),
            "blocked": self.blocked(),
            "warnings": {f"{v.table}/{v.ds}": v.reasons(v.warnings) for v in self.verdicts if v.warnings},
            "evidence": {key: {"status": r["status"], "uri": r["evidence"]}
                         for key, r in self.records.items() if r["status"] != "passed"},
        }

