"""The upstream system: replays ``vega_datasets``' Seattle weather as its exporter's monthly drops.

For each calendar month it writes ``weather/YYYY-MM-01.csv`` into the source's landing area: the
package's header and that month's lines, byte for byte, under a temporary name renamed when
complete (``lakeforge.delivery.write_atomically``), so the delivery watcher never sees half a file.

    python -m lakeforge.pipelines.seattle_weather.simulator --start 2012-01-01 --end 2012-03-31 [--landing URI]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

from lakeforge.delivery import write_atomically
from lakeforge.lake import Lake
from lakeforge.pipelines.seattle_weather import SOURCE

TABLE = SOURCE.table("weather")


def data_file() -> Path:
    """The CSV shipped inside the ``vega_datasets`` package (no download: ``vega_datasets`` reads
    this file too, for the datasets it calls local)."""
    spec = importlib.util.find_spec("vega_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the vega_datasets package is not installed (it is in requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "_data" / "seattle-weather.csv"


@functools.lru_cache(maxsize=None)
def lines_by_month() -> tuple[str, dict[date, str]]:
    """(header line, {first day of a month: that month's lines}), lines kept exactly as shipped."""
    header, _, body = data_file().read_text(encoding="utf-8").partition("\n")
    column = header.split(",").index(TABLE.date_column)
    months: dict[date, list[str]] = defaultdict(list)
    for line in body.splitlines(keepends=True):
        day = datetime.strptime(line.split(",")[column], TABLE.date_format).date()
        months[day.replace(day=1)].append(line)
    return header + "\n", {month: "".join(lines) for month, lines in months.items()}


def month_file(month: date) -> bytes | None:
    """The bytes the exporter delivers for the month starting ``month`` (None: no rows)."""
    header, months = lines_by_month()
    body = months.get(month.replace(day=1))
    return None if body is None else (header + body).encode("utf-8")


def months_between(start: date, end: date) -> list[date]:
    first, last = start.replace(day=1), end.replace(day=1)
    out = []
    while first <= last:
        out.append(first)
        first = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return out


def deliver(landing: Lake, start: date, end: date) -> list[str]:
    """Deliver every month touched by ``start``..``end``; the landing paths written."""
    written = []
    for month in months_between(start, end):
        data = month_file(month)
        if data is None:
            continue
        rel = f"{TABLE.folder}/{month.isoformat()}.csv"
        write_atomically(landing, rel, data)
        written.append(rel)
    return written


def main(argv: list[str] | None = None) -> None:
    from lakeforge.ingest import landing_for

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", required=True, type=date.fromisoformat)
    parser.add_argument("--end", required=True, type=date.fromisoformat)
    parser.add_argument("--landing", help="landing root URI (default: LAKEFORGE_LANDING_ROOT)")
    args = parser.parse_args(argv)
    landing = landing_for(SOURCE, args.landing)
    for rel in deliver(landing, args.start, args.end):
        print(f"delivered {landing.uri(rel)}")


if __name__ == "__main__":
    main()
