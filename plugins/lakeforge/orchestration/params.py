"""What the DAG factories share: trigger-form parameters (an optional day, a manual range of days)
and the XCom key of a run's note."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# A planning task pushes the run's note (which days, or why nothing) under this key: the Task SDK
# cannot set a run's note, the ``lakeforge_run_notes`` plugin copies it onto the run when it ends.
RUN_NOTE = "run_note"
NOTE_MAX_CHARS = 1000  # Airflow's dag_run_note.content column


def day_param(title: str, description: str) -> Param:
    """An optional day (YYYY-MM-DD) on the trigger form; empty means the run's own choice."""
    return Param(None, type=["null", "string"], format="date", pattern=DATE_PATTERN, title=title,
                 description=description)


def manual_range(params: dict[str, Any], every: str = "day") -> list[str] | None:
    """The partitions of the form's ``start``..``end`` (inclusive; ``every="month"``: the first
    days of the months it touches), None when neither is given; ``ValueError`` for only one of
    them or an end before the start."""
    from datetime import date

    from lakeforge.dates import partition_dates

    start, end = params.get("start"), params.get("end")
    if not (start or end):
        return None
    if not (start and end):
        raise ValueError("give both start and end (YYYY-MM-DD) for a manual range")
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    return partition_dates(start, end, every)
