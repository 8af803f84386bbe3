"""Thin Airflow operators over lakeforge's ingestion code.

They hold no logic of their own: the work is in ``lakeforge.ingest`` (testable without Airflow),
imported inside ``execute``/``poke`` so a DAG file that uses them stays cheap to parse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

# The data interval's first day, as YYYY-MM-DD: the partition a run owns.
INTERVAL_DATE = "{{ data_interval_start | ds }}"


class LandingDeliverySensor(BaseSensorOperator):
    """Waits for a table's delivery for the run's date in the source's landing area.

    Use ``mode="reschedule"`` (the DAG factory does): between pokes the task gives its worker
    slot back, so a month of catch-up runs waiting for drops does not block the executor. Not
    deferrable: its trigger would look from the triggerer, which the docker stack does not give
    the landing area and ``services start`` does not start by default.
    """

    template_fields: Sequence[str] = ("partition_date",)
    ui_color = "#e8f4fd"

    def __init__(self, *, source_name: str, table: str, partition_date: str = INTERVAL_DATE, **kwargs):
        super().__init__(**kwargs)
        self.source_name = source_name
        self.table = table
        self.partition_date = partition_date

    def _landing(self):
        from lakeforge.ingest import landing_for
        from lakeforge.sources import get_source

        source = get_source(self.source_name)
        return landing_for(source), source.table(self.table)

    def _where(self, landing, table) -> str:
        return landing.uri(table.glob(self.partition_date))

    def poke(self, context: Context) -> bool:
        from lakeforge.ingest import delivered_files

        landing, table = self._landing()
        names = delivered_files(landing, table, self.partition_date)
        self.log.info("looking for %s: found %s", self._where(landing, table), names or "nothing yet")
        return bool(names)

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(
                f"No delivery of {self.source_name}.{self.table} for {self.partition_date}: nothing "
                f"matches {self._where(*self._landing())} after waiting {self.timeout:.0f}s. Ask the exporter to "
                f"(re)deliver, then clear this task. ({exc})"
            ) from exc


class IngestPartitionOperator(BaseOperator):
    """Copies one table's delivery for the run's date into ``raw/`` (see ``lakeforge.ingest``).

    Emits an event on its outlet asset with the manifest summary. A rejected delivery fails the
    task without retries (the bad file is in quarantine; retrying cannot help) and names the file.
    A snapshot table with no delivery that day is skipped.
    """

    template_fields: Sequence[str] = ("partition_date",)
    ui_color = "#e6f5e6"

    def __init__(self, *, source_name: str, table: str, partition_date: str = INTERVAL_DATE, **kwargs):
        super().__init__(**kwargs)
        self.source_name = source_name
        self.table = table
        self.partition_date = partition_date

    def execute(self, context: Context) -> dict[str, Any]:
        from lakeforge.ingest import RejectedDelivery, ingest_partition
        from lakeforge.sources import get_source

        force = bool(context["params"].get("force_republish", False))
        try:
            result = ingest_partition(
                get_source(self.source_name),
                self.table,
                self.partition_date,
                run_id=context["run_id"],
                force=force,
            )
        except RejectedDelivery as exc:
            raise AirflowFailException(str(exc)) from exc
        if result.status == "skipped":
            raise AirflowSkipException(f"no {self.table} snapshot delivered for {self.partition_date}")
        self.log.info(
            "%s %s -> %s (%d rows, %d bytes, %.2fs)",
            result.status, self.table, result.uri, result.rows, result.bytes, result.seconds,
        )
        summary = {k: v for k, v in result.to_dict().items() if k != "files"}
        for asset in self.outlets:
            context["outlet_events"][asset].extra = summary
        return result.to_dict()
