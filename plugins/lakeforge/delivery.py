"""File-level checks of a delivered CSV: is this a whole, readable CSV file for the right day?

Row-level problems (a bad number, a missing field in one row) are the clean job's business: it
quarantines rows and counts them. Here a file is rejected as a whole only when no row of it can
be trusted: it is empty, cut short, not CSV at all, or belongs to another day.

What is published is the delivered text minus two harmless exporter habits, recorded in the
file's manifest entry (``CsvSummary.manifest_meta``): a UTF-8 byte-order mark (``bom_stripped``;
Spark's text reader would otherwise see it glued to the header line, which then no longer
matches the manifest's ``columns``) and a declared row-count trailer line (``trailer_rows``).
``CsvSummary.data`` holds those bytes; its ``bytes`` and ``sha256`` describe them, so a resend
that differs only by a BOM is a byte-identical duplicate.

A header that differs from the table's declared ``columns`` is not rejected here (schema drift
is the raw quality gate's business), but ``header_changes`` says how it differs: missing, added,
and which columns moved (``dep_delay <-> arr_delay swapped``), for the manifest and the gate.

What a truncated file can and cannot be caught by
-------------------------------------------------
- Cut inside a line (the usual case: a copy or upload interrupted mid-write): always caught,
  as ``truncated``, by the missing final newline or by a last row with fewer fields than the
  header.
- Cut exactly at a line end: the file is a complete, smaller CSV; nothing in the file itself
  tells it from a quiet day. Only what the exporter states about the file can catch it:
  a table that declares ``row_count_trailer`` (the exporter's last line states the number of
  data rows, e.g. ``#rows=842``) is rejected as ``truncated`` when that line is missing (any
  cut removes it, because it is last) or its count differs from the rows read. The check is in
  the same file, so it is as atomic as the exporter's rename; a separate count file could
  arrive before or after its data file and is not supported.
- Without a trailer, the raw quality gate's ``row_count_vs_trailing`` is the only net: rows
  over the average of the previous 7 days that passed. For the reference suites that fails a
  day only below 0.5 (a cut that loses more than half the day) and warns below 0.7 (the real
  2013 minimum is 0.67, Thanksgiving): a cut losing less than ~30 % of a day's rows, a day
  with no 7-day history, and every snapshot table pass unnoticed. The clean job's row
  accounting (clean + quarantined = raw) cannot see it either: raw is already short.
- Nothing here catches an exporter that writes a complete file of incomplete data (its query
  ran on a partial extract) with a matching trailer: that is the trailing check's, or a
  source-side reconciliation's, job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

from lakeforge.sources import Table

if TYPE_CHECKING:
    from lakeforge.lake import Lake

_HEADER_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]*$")
UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = {b"\xff\xfe": "UTF-16 LE", b"\xfe\xff": "UTF-16 BE"}


def write_atomically(landing: Lake, rel: str, data: bytes) -> None:
    """Deliver ``data`` at ``rel`` of a landing area as a well-behaved exporter does: written under
    a hidden temporary name (``.<name>.inprogress``, which matches no table's file pattern) and renamed
    when complete, replacing an earlier delivery, so the delivery watcher never sees half a file."""
    folder, name = rel.rsplit("/", 1)
    tmp = f"{folder}/.{name}.inprogress"
    landing.write_bytes(tmp, data)
    landing.delete(rel)
    landing.move(tmp, rel)


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
    # Size and hash of ``data``, the bytes to publish.
    bytes: int
    sha256: str
    # Rows whose field count differs from the header's, left for the clean job to quarantine.
    ragged_rows: int
    # The bytes to publish: the delivered bytes without a UTF-8 BOM and without the declared
    # trailer line (identical to the delivered bytes when there was neither).
    data: bytes = field(default=b"", repr=False, compare=False)
    bom_stripped: bool = False
    # The row count the exporter's trailer stated (None: the table declares no trailer).
    trailer_rows: int | None = None
    # How the header differs from the table's declared columns ("" when it matches or none are
    # declared); see ``header_changes``.
    header_changes: str = ""

    @property
    def manifest_meta(self) -> dict[str, Any]:
        """Fields for the file's entry in the raw manifest; the optional ones only when they apply,
        so a plain delivery's manifest is what it always was."""
        meta: dict[str, Any] = {"rows": self.rows, "ragged_rows": self.ragged_rows}
        if self.bom_stripped:
            meta["bom_stripped"] = True
        if self.trailer_rows is not None:
            meta["trailer_rows"] = self.trailer_rows
        if self.header_changes:
            meta["header_changes"] = self.header_changes
        return meta


def _preview(text: str, limit: int = 60) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def _decode(name: str, data: bytes) -> tuple[str, bool]:
    """The text of a delivery and whether a UTF-8 BOM was stripped from it."""
    for mark, encoding in _UTF16_BOMS.items():
        if data.startswith(mark):
            raise DeliveryRejected(
                name, "not_csv",
                f"{encoding} text (starts with the byte-order mark {mark.hex(' ').upper()}), not UTF-8: "
                "the exporter must write UTF-8",
            )
    if b"\x00" in data:
        raise DeliveryRejected(name, "not_csv", "binary content (NUL bytes), not a CSV text file")
    bom = data.startswith(UTF8_BOM)
    try:
        text = data[len(UTF8_BOM):].decode("utf-8") if bom else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + (len(UTF8_BOM) if bom else 0)
        raise DeliveryRejected(name, "not_csv", f"not UTF-8 text ({exc.reason} at byte {at})") from exc
    return text, bom


def inspect_delivery(name: str, data: bytes, table: Table, ds: str | None = None) -> CsvSummary:
    """Check one delivered file; returns its summary (with the bytes to publish) or raises
    ``DeliveryRejected``. ``ds`` (YYYY-MM-DD) enables the wrong-day check."""
    if not data.strip():
        raise DeliveryRejected(name, "empty", f"file is empty ({len(data)} bytes)")
    text, bom = _decode(name, data)
    if not text.strip():
        raise DeliveryRejected(name, "empty", f"file is empty ({len(data)} bytes: a byte-order mark and blank lines)")

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

    trailer_rows = None
    if table.row_count_trailer:
        text, trailer_rows = _split_trailer(name, text, table.row_count_trailer)
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader)

    width = len(header)
    day_test = _day_test(header, table, ds) if ds else None
    rows = ragged = on_date = 0
    first_date: str | None = None
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
            if day_test is not None:
                on_day, show = day_test
                if first_date is None:
                    first_date = show(row)
                on_date += on_day(row)
    except csv.Error as exc:
        raise DeliveryRejected(name, "not_csv", f"unreadable CSV at row {rows + 1}: {exc}") from exc

    if rows == 0:
        raise DeliveryRejected(name, "empty", "header only, no data rows")
    if len(last) < width:
        raise DeliveryRejected(
            name, "truncated", f"last row has {len(last)} of {width} fields, the file was cut short"
        )
    if trailer_rows is not None and trailer_rows != rows:
        raise DeliveryRejected(
            name, "truncated",
            f"the exporter's trailer states {trailer_rows} data rows, the file has {rows}"
            + (": the file was cut short at a line end" if rows < trailer_rows else ""),
        )
    if day_test is not None and on_date == 0:
        raise DeliveryRejected(name, "wrong_date", f"no row is dated {ds} ({_date_source(table)}; "
                                                   f"first row dated {first_date or 'none'})")
    published = data if not bom and trailer_rows is None else text.encode("utf-8")
    return CsvSummary(
        rows=rows,
        columns=tuple(header),
        bytes=len(published),
        sha256=hashlib.sha256(published).hexdigest(),
        ragged_rows=ragged,
        data=published,
        bom_stripped=bom,
        trailer_rows=trailer_rows,
        header_changes=header_changes(header, table.columns),
    )


def _split_trailer(name: str, text: str, pattern: str) -> tuple[str, int]:
    """The text without its trailer line, and the row count the trailer states."""
    body, _, last = text[:-1].rpartition("\n")
    match = re.fullmatch(pattern, last.rstrip("\r"))
    if not match:
        raise DeliveryRejected(
            name, "truncated",
            f"the exporter's row-count trailer (a last line matching {pattern!r}) is missing; last line is "
            f"{_preview(last)!r}: the file was cut short at a line end",
        )
    return body + "\n", int(match.group(1))


# --- the wrong-day check -------------------------------------------------------------------

# (row -> is it dated the day?, row -> its date as the message shows it)
DayTest = tuple[Callable[[Sequence[str]], bool], Callable[[Sequence[str]], str]]


def _day_test(header: Sequence[str], table: Table, ds: str) -> DayTest | None:
    """A per-row test "is this row dated ``ds``?", or None when the table declares no date
    column or the header lacks one (schema drift: the quality gate reports it, this check
    stands aside)."""
    if table.date_columns:
        if not all(c in header for c in table.date_columns):
            return None
        idx = [list(header).index(c) for c in table.date_columns]
        want = tuple(int(p) for p in ds.split("-"))

        return (lambda row: _as_date([row[i] for i in idx]) == want), (lambda row: "-".join(row[i] for i in idx))
    if table.date_column:
        if table.date_column not in header:
            return None
        i = list(header).index(table.date_column)
        want_day = date.fromisoformat(ds)
        parse = _date_parser(table.date_format)
        seen: dict[str, bool] = {}  # a day file repeats a handful of values: parse each once

        def on_day(row: Sequence[str]) -> bool:
            hit = seen.get(row[i])
            if hit is None:
                hit = seen[row[i]] = parse(row[i]) == want_day
            return hit

        return on_day, (lambda row: repr(row[i]))
    return None


def _date_parser(fmt: str | None) -> Callable[[str], date | None]:
    def parse(value: str) -> date | None:
        value = value.strip()
        try:
            if fmt is None:  # ISO 8601: a date, or a date-time whose date part counts
                return datetime.fromisoformat(value).date()
            return datetime.strptime(value, fmt).date()
        except ValueError:
            return None

    return parse


def _date_source(table: Table) -> str:
    if table.date_column:
        return f"column {table.date_column!r} read as {table.date_format or 'ISO 8601'}"
    return "columns " + "/".join(table.date_columns or ())


def _as_date(parts: Sequence[str]) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None


# --- header drift ----------------------------------------------------------------------------

def header_changes(header: Sequence[str], contract: Sequence[str]) -> str:
    """'' when ``header`` equals ``contract`` (or no contract is declared); else what differs:
    missing and added columns, a likely rename, and which columns moved. Two columns that traded
    places are named as a swap (``dep_delay <-> arr_delay swapped (columns 6 and 9)``); any other
    reordering names the fewest columns whose move explains it, with their contract and
    delivered positions (1-based)."""
    header, contract = list(header), list(contract)
    if not contract or header == contract:
        return ""
    parts = []
    missing = [c for c in contract if c not in header]
    added = [c for c in header if c not in contract]
    if missing:
        parts.append("missing " + ", ".join(missing))
    if added:
        parts.append("added " + ", ".join(added))
    if len(missing) == 1 and len(added) == 1:
        parts.append(f"renamed? {missing[0]} -> {added[0]}")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        parts.append("duplicate columns " + ", ".join(duplicates))
    delivered = list(dict.fromkeys(c for c in header if c in contract))
    expected = [c for c in contract if c in header]
    if delivered != expected:
        parts.append(_moves(delivered, expected, contract, header))
    return "; ".join(parts)


def _moves(delivered: list[str], expected: list[str], contract: list[str], header: list[str]) -> str:
    """Which of the common columns moved (``delivered`` and ``expected`` hold the same names)."""
    where = {c: i for i, c in enumerate(delivered)}
    differ = [i for i, c in enumerate(expected) if delivered[i] != c]
    swaps, rest = [], []
    for i in differ:
        j = where[expected[i]]
        if delivered[j] == expected[i] and delivered[i] == expected[j]:
            if i < j:
                swaps.append((expected[i], expected[j]))
        else:
            rest.append(i)
    out = [f"{a} <-> {b} swapped (columns {contract.index(a) + 1} and {contract.index(b) + 1})" for a, b in swaps]
    if rest:
        moved = _not_in_longest_kept_order(delivered, expected)
        out.append("moved " + ", ".join(
            f"{c} (column {contract.index(c) + 1} -> {header.index(c) + 1})"
            for c in expected if c in moved and not any(c in s for s in swaps)))
    return "; ".join(out)


def _not_in_longest_kept_order(delivered: list[str], expected: list[str]) -> set[str]:
    """Columns outside a longest subsequence that kept the contract's order: the fewest moves."""
    rank = {c: i for i, c in enumerate(expected)}
    seq = [rank[c] for c in delivered]
    # Longest increasing subsequence, O(n^2): headers are short.
    best = [1] * len(seq)
    prev = [-1] * len(seq)
    for i in range(len(seq)):
        for j in range(i):
            if seq[j] < seq[i] and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    i = max(range(len(seq)), key=best.__getitem__)
    kept = set()
    while i != -1:
        kept.add(delivered[i])
        i = prev[i]
    return {c for c in delivered if c not in kept}
