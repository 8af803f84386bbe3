"""A scaled copy of the nycflights raw layer, built through the real landing -> raw ingestion.

For a scale factor N each day's flights file is the real day's rows repeated N times: copy 0 is
the original, copy k > 0 shifts ``flight`` by ``k * 10000`` (so ``flight_key`` stays unique) and
moves ``dep_delay`` / ``arr_delay`` by a small deterministic offset (-2..+2 minutes). The CSV
format is unchanged (unquoted, ``NA`` for null, same header). Weather stays 1x (it is per airport
and hour); the reference tables are delivered once, on the first day.

The files are dropped into a landing area and published with ``lakeforge.ingest.ingest_partition``
(checks, sha256, manifest), so ``raw/`` is exactly what the pipeline would hold. The generated lake
is cached under ``/tmp`` keyed by scale and date range and reused when present; ``link_run_lake``
gives each benchmark run its own lake whose raw files are hard links into the cache (the transform
job never writes raw/).

    python -m bench.scaled_lake --scale 20 --start 2013-01-01 --end 2013-12-30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from lakeforge.ingest import ingest_partition
from lakeforge.lake import Lake
from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS, SOURCE, simulator

CACHE_ROOT = Path(os.environ.get("LAKEFORGE_BENCH_CACHE", "/tmp/lakeforge-transform-bench"))
MARKER = "_complete.json"
FLIGHT_SHIFT = 10_000
_DEP_DELAY, _ARR_DELAY, _FLIGHT = (FLIGHTS_COLUMNS.index(c) for c in ("dep_delay", "arr_delay", "flight"))


def date_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _shift_int(text: str, by: int) -> str:
    if text == "NA" or by == 0:
        return text
    try:
        return str(int(text) + by)
    except ValueError:  # not an integer: leave the field exactly as delivered
        return text


def scale_flights(data: bytes, scale: int) -> bytes:
    """The day's flights CSV with its rows repeated ``scale`` times (copy 0 untouched)."""
    header, _, body = data.decode("utf-8").partition("\n")
    lines = body.splitlines()
    out = [header, *lines]
    for k in range(1, scale):
        for i, line in enumerate(lines):
            parts = line.split(",")
            if len(parts) != len(FLIGHTS_COLUMNS):
                out.append(line)  # a malformed row stays malformed (quarantined downstream)
                continue
            offset = (k + i) % 5 - 2
            parts[_FLIGHT] = _shift_int(parts[_FLIGHT], k * FLIGHT_SHIFT)
            parts[_DEP_DELAY] = _shift_int(parts[_DEP_DELAY], offset)
            parts[_ARR_DELAY] = _shift_int(parts[_ARR_DELAY], offset)
            out.append(",".join(parts))
    return ("\n".join(out) + "\n").encode("utf-8")


def lake_dir(scale: int, start: date, end: date) -> Path:
    return CACHE_ROOT / f"x{scale}_{start}_{end}"


def find_cached(scale: int, start: date, end: date) -> Path | None:
    """A complete cached lake of this scale whose date range covers [start, end]."""
    if not CACHE_ROOT.exists():
        return None
    for candidate in sorted(CACHE_ROOT.glob(f"x{scale}_*")):
        marker = candidate / MARKER
        if not marker.exists():
            continue
        info = json.loads(marker.read_text())
        if info["scale"] == scale and info["start"] <= start.isoformat() and info["end"] >= end.isoformat():
            return candidate
    return None


def build(scale: int, start: date, end: date, log=print) -> tuple[Path, dict]:
    """The cached raw lake for (scale, range), generating and ingesting it if needed."""
    cached = find_cached(scale, start, end)
    if cached is not None:
        info = json.loads((cached / MARKER).read_text())
        info["reused"] = True
        log(f"reusing cached raw lake {cached} (x{info['scale']} {info['start']}..{info['end']})")
        return cached, info

    root = lake_dir(scale, start, end)
    shutil.rmtree(root, ignore_errors=True)
    landing = Lake(f"file://{root}/landing/{SOURCE.name}")
    lake = Lake(f"file://{root}/lake")
    gen_s = ingest_s = 0.0
    totals = {"flights_rows": 0, "weather_rows": 0, "bytes": 0}
    days = date_range(start, end)
    for n, day in enumerate(days):
        ds = day.isoformat()
        t = time.perf_counter()
        files = {}
        for table in SOURCE.daily_tables:
            data = simulator.day_file(table.name, day)
            if data is None:
                raise SystemExit(f"the source has no {table.name} rows for {ds}: pick another --end")
            files[table.name] = scale_flights(data, scale) if table.name == "flights" else data
        if n == 0:
            for table in SOURCE.snapshot_tables:
                files[table.name] = simulator.snapshot_file(table.name)
        for name, data in files.items():
            landing.write_bytes(f"{SOURCE.table(name).folder}/{ds}.csv", data)
            totals["bytes"] += len(data)
        gen_s += time.perf_counter() - t

        t = time.perf_counter()
        for name in files:
            result = ingest_partition(SOURCE, name, ds, lake=lake, landing=landing)
            if result.status != "published":
                raise RuntimeError(f"ingest of {name} {ds} did not publish: {result}")
            if name in ("flights", "weather"):
                totals[f"{name}_rows"] += result.rows
        ingest_s += time.perf_counter() - t
        for name in files:  # the lake holds the data now; keep /tmp small
            landing.delete(f"{SOURCE.table(name).folder}/{ds}.csv")
        if n % 30 == 29 or n == len(days) - 1:
            log(f"  {ds}: {n + 1}/{len(days)} days, {totals['flights_rows']:,} flights, "
                f"generate {gen_s:.0f}s, ingest {ingest_s:.0f}s")
    shutil.rmtree(root / "landing", ignore_errors=True)
    info = {
        "scale": scale, "start": start.isoformat(), "end": end.isoformat(), "days": len(days),
        **totals, "generate_s": round(gen_s, 2), "ingest_s": round(ingest_s, 2),
        "ingest_mb_per_s": round(totals["bytes"] / 1e6 / ingest_s, 1) if ingest_s else None,
    }
    (root / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    info["reused"] = False
    return root, info


def link_run_lake(cache: Path, target: Path, start: date, end: date) -> str:
    """A fresh lake at ``target`` with the raw partitions of [start, end] (and the reference
    snapshots up to ``end``) hard-linked from the cache. Returns its file:// URI."""
    shutil.rmtree(target, ignore_errors=True)
    src_raw, dst_raw = cache / "lake" / "raw", target / "raw"
    wanted = {f"ds={d}" for d in date_range(start, end)}
    for table_dir in sorted(src_raw.iterdir()):
        daily = SOURCE.table(table_dir.name).cadence == "daily"
        for part in sorted(table_dir.iterdir()):
            if part.name.startswith(("_", ".")):
                continue
            if (daily and part.name not in wanted) or (not daily and part.name > f"ds={end}"):
                continue
            shutil.copytree(part, dst_raw / table_dir.name / part.name, copy_function=os.link)
    return f"file://{target}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2013, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2013, 12, 30))
    args = parser.parse_args(argv)
    root, info = build(args.scale, args.start, args.end)
    print(root, json.dumps(info))


if __name__ == "__main__":
    main()
