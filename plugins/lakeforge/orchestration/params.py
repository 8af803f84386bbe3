"""Trigger-form parameters the DAG factories share: an optional day, and a manual range of days."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def day_param(title: str, description: str) -> Param:
    """An optional day (YYYY-MM-DD) on the trigger form; empty means the run's own choice."""
    return Param(None, type=["null", "string"], format="date", pattern=DATE_PATTERN, title=title,
                 description=description)


def manual_range(params: dict[str, Any]) -> list[str] | None:
    """The days of the form's ``start``..``end`` (inclusive), None when neither is given;
    ``ValueError`` for only one of them or an end before the start."""
    from datetime import date

    from lakeforge.dates import date_range

    start, end = params.get("start"), params.get("end")
    if not (start or end):
        return None
    if not (start and end):
        raise ValueError("give both start and end (YYYY-MM-DD) for a manual range")
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    return date_range(start, end)
