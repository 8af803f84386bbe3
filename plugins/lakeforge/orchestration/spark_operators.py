"""SparkSubmitOperator for lakeforge jobs that audit their output before publishing it.

The job's verdict travels back through its run report in the lake (``lakeforge.reports``):
a quality-gate failure becomes ``AirflowFailException`` (no retries: the same data fails the same
checks) whose message names each failing check, column and observed value and the evidence
pages; on success the evidence of warned partitions is logged and the outlet asset events carry
the published dates. Any other failure (a crashed JVM,
an unreachable cluster) stays an ordinary, retried failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context


class GatedSparkSubmitOperator(SparkSubmitOperator):
    """``input_bytes``, ``partitions`` (templated): how much the job reads, over how many
    partitions (days), when known; a short run's JVMs get the JIT that suits them
    (``lakeforge.spark.with_jit``)."""

    template_fields = (*SparkSubmitOperator.template_fields, "input_bytes", "partitions")

    def __init__(self, *, job: str, source_name: str, input_bytes: int | str | None = None,
                 partitions: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.job = job
        self.source_name = source_name  # the job's reports are in the source's lake namespace
        self.input_bytes = input_bytes
        self.partitions = partitions

    def _report(self, context: "Context") -> dict[str, Any] | None:
        from lakeforge.lake import source_lake
        from lakeforge.reports import read_run_report

        return read_run_report(source_lake(self.source_name), self.job, context["run_id"])

    def execute(self, context: "Context") -> None:
        from lakeforge.spark import with_jit

        size, parts = str(self.input_bytes).strip(), str(self.partitions).strip()
        if size.isdigit():  # a rendered template: "None" when the size is unknown
            partitions = int(parts) if parts.isdigit() else None
            self.conf = with_jit(self.conf or {}, int(size), partitions)
            self.log.info("input %.1f MB in %s partition(s): driver JVM options %s", int(size) / 2**20,
                          partitions if partitions is not None else "?", self.conf.get("spark.driver.extraJavaOptions"))
        try:
            super().execute(context)
        except AirflowException as exc:
            report = self._report(context)
            if report and report.get("quality", {}).get("blocked"):
                from lakeforge.quality.wap import QualityGateFailed

                raise AirflowFailException(str(QualityGateFailed.from_summary(report["quality"]))) from exc
            raise
        report = self._report(context)
        if report is None:
            return
        # Downstream DAGs learn which dates are new from the asset events (blocked dates never are).
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"dates": report.get("published", []), "run_id": context["run_id"]}
        quality = report.get("quality", {})
        self.log.info("published %s of %s day(s); quality: %s", report.get("published_days"),
                      report.get("days"), quality.get("counts"))
        from lakeforge.lake import source_lake
        from lakeforge.quality.evidence import summary_uri

        self.log.info("quality summary: %s; reports: quality/<table>/ds=<date>/report.html",
                      summary_uri(source_lake(self.source_name)))
        for key, evidence in sorted(quality.get("evidence", {}).items()):
            self.log.warning("quality %s %s: %s", evidence["status"], key, evidence["uri"])
