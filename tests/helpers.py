"""Small helpers shared by tests."""

from lakeforge.lake import Lake


def ingest_days(lake: Lake, landing: Lake, days) -> None:
    """Deliver and ingest real days into raw/ (the input of the transform tests)."""
    from lakeforge.ingest import ingest_partition
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    simulator.deliver(landing, days[0], days[-1])
    for day in days:
        for table in SOURCE.tables:
            ingest_partition(SOURCE, table.name, day.isoformat(), lake=lake, landing=landing)
