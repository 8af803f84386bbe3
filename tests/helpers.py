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


def edit_flights_rows(text: str, name: str, value: str, every: int = 1) -> str:
    """A flights CSV with field ``name`` set to ``value`` in every ``every``-th data row."""
    from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS

    col = FLIGHTS_COLUMNS.index(name)
    header, *rows = text.rstrip("\n").split("\n")
    out = [header]
    for i, line in enumerate(rows):
        fields = line.split(",")
        if i % every == 0:
            fields[col] = value
        out.append(",".join(fields))
    return "\n".join(out) + "\n"


def redeliver_flights(lake: Lake, landing: Lake, ds: str, edit) -> None:
    """The exporter sends ``ds``'s flights again, changed by ``edit`` (text -> text); ingested."""
    from lakeforge.ingest import ingest_partition
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    rel = f"flights/{ds}.csv"
    simulator.write_atomically(landing, rel, edit(landing.read_bytes(rel).decode()).encode())
    ingest_partition(SOURCE, "flights", ds, lake=lake, landing=landing)
