"""File-level checks of a delivered CSV: is this a whole, readable CSV file for the right day?

Row-level problems (a bad number, a missing field in one row) are the clean job's business: it
quarantines rows and counts them. Here a file is rejected as a whole only when no row of it can
be trusted: it is empty, cut short, not CSV at all, or belongs to another day.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from typing import Sequence

from lakeforge.sources import Table

_HEADER_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]*$")


class DeliveryRejected(ValueError):
    """A delivered file that cannot be ingested. ``kind`` is a stable machine-readable reason."""

    KINDS = ("empty", "truncated", "not_csv", "wrong_date")

    def __init__(self, name: str, kind: str, reason: str):
        assert kind in self.KINDS, kind
        self.name, self.kind, self.reason = name, kind, reason
        super().__init__(f"{name}: {kind}: {reason}")


@dataclass(frozen=True)
class CsvSummary:
    rows: int
    columns: tuple[str, ...]
    bytes: int
    sha256: str
    # Rows whose field count differs from the header's, left for the clean job to quarantine.
    ragged_rows: int


def _preview(text: str, limit: int = 60) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def inspect_delivery(name: str, data: bytes, table: Table, ds: str | None = None) -> CsvSummary:
    """Check one delivered file; returns its summary or raises ``DeliveryRejected``."""
    if not data.strip():
        raise DeliveryRejected(name, "empty", f"file is empty ({len(data)} bytes)")
    if b"\x00" in data:
        raise DeliveryRejected(name, "not_csv", "binary content (NUL bytes), not a CSV text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeliveryRejected(name, "not_csv", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DeliveryRejected(name, "not_csv", f"unreadable CSV header: {exc}") from exc
    if len(header) < 2 or not all(_HEADER_FIELD.match(h) for h in header):
        first_line = text.split("\n", 1)[0]
        raise DeliveryRejected(name, "not_csv", f"first line is not a CSV header: {_preview(first_line)!r}")
    if not text.endswith("\n"):
        tail = text.rsplit("\n", 1)[-1]
        raise DeliveryRejected(
            name, "truncated", f"last line has no newline, the file was cut short: {_preview(tail)!r}"
        )

    width = len(header)
    date_idx = _date_indexes(header, table.date_columns) if ds else None
    want = tuple(int(p) for p in ds.split("-")) if ds else None
    rows = ragged = on_date = 0
    first_date: Sequence[str] | None = None
    last: list[str] = header
    try:
        for row in reader:
            if not row:
                continue
            rows += 1
            last = row
            if len(row) != width:
                ragged += 1
                continue
            if date_idx is not None:
                parts = [row[i] for i in date_idx]
                first_date = first_date or parts
                if _as_date(parts) == want:
                    on_date += 1
    except csv.Error as exc:
        raise DeliveryRejected(name, "not_csv", f"unreadable CSV at row {rows + 1}: {exc}") from exc

    if rows == 0:
        raise DeliveryRejected(name, "empty", "header only, no data rows")
    if len(last) < width:
        raise DeliveryRejected(
            name, "truncated", f"last row has {len(last)} of {width} fields, the file was cut short"
        )
    if date_idx is not None and on_date == 0:
        seen = "-".join(first_date) if first_date else "none"
        raise DeliveryRejected(name, "wrong_date", f"no row is dated {ds} (first row dated {seen})")
    return CsvSummary(
        rows=rows,
        columns=tuple(header),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ragged_rows=ragged,
    )


def _date_indexes(header: list[str], date_columns: tuple[str, str, str] | None) -> list[int] | None:
    # A missing date column is schema drift: the quality gate reports it, this check stands aside.
    if not date_columns or not all(c in header for c in date_columns):
        return None
    return [header.index(c) for c in date_columns]


def _as_date(parts: Sequence[str]) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None
