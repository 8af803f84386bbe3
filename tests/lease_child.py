"""A writer process for the lease tests.

    python -m tests.lease_child hold LAKE_URI TABLE RUN_ID
        take the table's lease, stage a file and move the published ds=2013-01-01 to the trash
        (as a writer between its two renames), print "HELD", hold until stdin closes or says
        "release", put the partition back, release, exit 0
    python -m tests.lease_child write LAKE_URI TABLE RUN_ID [START_AT]
        (at START_AT, epoch seconds) ``writing(lake, [TABLE])`` as a job does; print "WON" and
        hold it 2 s, or print the ``LeaseHeld`` message on stderr and exit 4
"""

from __future__ import annotations

import sys
import time

from lakeforge.lake import Lake
from lakeforge.lease import LeaseHeld, hold
from lakeforge.publish import STAGING, TRASH, writing

PARTITION = "ds=2013-01-01"


def main(argv: list[str]) -> None:
    mode, uri, table, run_id, *rest = argv
    lake = Lake(uri)
    if mode == "hold":
        with hold(lake, table, run_id=run_id, ttl=float(rest[0]) if rest else None):
            lake.write_bytes(f"{table}/{STAGING}/run-{run_id}/{PARTITION}/part-0.parquet", b"staged")
            lake.move(f"{table}/{PARTITION}", f"{table}/{TRASH}/{PARTITION}.1-{run_id}")
            print("HELD", flush=True)
            for line in sys.stdin:
                if line.strip() == "release":
                    break
            lake.move(f"{table}/{TRASH}/{PARTITION}.1-{run_id}", f"{table}/{PARTITION}")
            lake.delete(f"{table}/{STAGING}/run-{run_id}")
        return
    if mode == "write":
        if rest:
            time.sleep(max(0.0, float(rest[0]) - time.time()))
        try:
            with writing(lake, [table], run_id=run_id):
                print("WON", flush=True)
                time.sleep(2)
        except LeaseHeld as held:
            print(held, file=sys.stderr, flush=True)
            raise SystemExit(4)
        return
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
