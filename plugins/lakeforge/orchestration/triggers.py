"""The delivery watcher: an event trigger on Airflow's triggerer that starts an ingest run when
files land, instead of one sensor per table and day.

``LandingDeliveryTrigger`` lists a source's landing area every ``LAKEFORGE_DELIVERY_POLL_SECONDS``
and fires (an event on the source's ``<source>.landing`` asset, which the ingest DAG is scheduled
on) when a delivery file appeared or changed since its last look. The event names the days those
files deliver. A burst of deliveries between two looks is one event, and events that arrive while
an ingest run is active wait for it as one queued run: a year delivered at once is a handful of
runs, not 365.

Airflow runs a watcher only while its DAG is active, and starts it at a parse of the DAG file
(after an unpause, a triggerer restart). Its first look fires one event naming no day when the
landing area holds any delivery: the run it starts scans the landing area against raw
(``lakeforge.ingest.pending_days``), so days that landed while nothing watched (the DAG paused, the
triggerer down) are not left behind, and nothing already in raw is read again.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class LandingDeliveryTrigger(BaseEventTrigger):
    def __init__(self, *, source_name: str, poll_seconds: float):
        super().__init__()
        self.source_name = source_name
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"source_name": self.source_name, "poll_seconds": self.poll_seconds})

    def _listing(self) -> dict[str, list[int | float]]:
        from lakeforge.ingest import landing_listing
        from lakeforge.sources import get_source

        return landing_listing(get_source(self.source_name))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from lakeforge.ingest import days_in
        from lakeforge.sources import get_source

        source = get_source(self.source_name)
        seen = await asyncio.to_thread(self._listing)
        if seen:  # see the module's doc: the run scans for what landed unwatched
            self.log.info("watching %s's landing area (%d delivery files): a run checks what raw lacks",
                          self.source_name, len(seen))
            yield TriggerEvent({"source": self.source_name, "dates": [], "files": 0, "started": True})
        while True:
            await asyncio.sleep(self.poll_seconds)
            listing = await asyncio.to_thread(self._listing)
            changed = sorted(key for key, stat in listing.items() if seen.get(key) != stat)
            seen = listing
            if changed:
                days = days_in(source, changed)
                self.log.info("%d new or changed delivery files in %s's landing area: %s",
                              len(changed), self.source_name, ", ".join(days[:5]) + (" ..." if len(days) > 5 else ""))
                yield TriggerEvent({"source": self.source_name, "dates": days, "files": len(changed)})
