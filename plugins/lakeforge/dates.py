"""Sets of days as compact text: how DAGs hand a run's dates to a job's command line.

``2013-01-01,2013-01-05..2013-01-31``: single days and inclusive ranges, so any set of days fits
a command line (a year of scattered single days is ~4 KB, a year of consecutive days 22 bytes;
the kernel refuses one argument over 128 KB).
"""

from __future__ import annotations

from datetime import date, timedelta


def expand_dates(spec: str) -> list[str]:
    """The days of a compact list (sorted, unique); a malformed day or range raises ValueError."""
    days: set[str] = set()
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        first, _, last = item.partition("..")
        start, end = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
        if end < start:
            raise ValueError(f"range {item}: {end} is before {start}")
        days.update((start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1))
    return sorted(days)


def compact_dates(dates: list[str]) -> str:
    """The inverse of ``expand_dates``: runs of consecutive days as ``first..last``."""
    runs: list[list[date]] = []
    for d in sorted({date.fromisoformat(d) for d in dates}):
        if runs and d - runs[-1][1] == timedelta(days=1):
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ",".join(a.isoformat() if a == b else f"{a.isoformat()}..{b.isoformat()}" for a, b in runs)


def date_range(start: str, end: str) -> list[str]:
    """Every day from ``start`` to ``end`` (inclusive); ValueError if ``end`` is before ``start``."""
    return expand_dates(f"{start}..{end}")


def partition_dates(start: str, end: str, every: str = "day") -> list[str]:
    """The partitions of ``start``..``end``: every day, or (``every="month"``) the first day of
    every month the range touches."""
    days = date_range(start, end)
    return days if every == "day" else sorted({date.fromisoformat(d).replace(day=1).isoformat() for d in days})


def shift_day(ds: str, days: int) -> str:
    """The day ``days`` after ``ds`` (before it when negative)."""
    return (date.fromisoformat(ds) + timedelta(days=days)).isoformat()


def add_date_arguments(parser, what: str = "days") -> None:
    """A job's ``--dates`` / ``--start`` / ``--end`` (read back by ``dates_of``)."""
    parser.add_argument("--dates", help=f"comma-separated YYYY-MM-DD or FIRST..LAST ranges ({what})")
    parser.add_argument("--start", help="first date of a range (inclusive)")
    parser.add_argument("--end", help="last date of a range (inclusive)")


def dates_of(args, every: str = "day") -> list[str]:
    """``--dates`` (``expand_dates``, the partitions as given) or ``--start`` and ``--end`` (the
    partitions of the range by ``every``: a monthly source's are the first days of its months);
    SystemExit with the reason otherwise."""
    try:
        if args.dates:
            return expand_dates(args.dates)
        if not (args.start and args.end):
            raise SystemExit("give --dates or both --start and --end")
        return partition_dates(args.start, args.end, every)
    except ValueError as exc:
        raise SystemExit(f"bad dates: {exc}") from None
