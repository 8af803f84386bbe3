"""Progress of long training work, where a person is watching.

The training job reports each search trial as it finishes (``report``): a line on its logger
(``lakeforge.training.search``, INFO), which the job writes to stderr, so it is in the Airflow task
log of ``train_and_register`` (spark-submit's output, line by line) and in the terminal of whoever
runs the job by hand. ``make demo`` runs the DAG with Airflow's logging at WARNING, which hides
task output; there the same lines also go to the file named by ``LAKEFORGE_TRAIN_PROGRESS_FILE``
(inherited by spark-submit and the driver), which the demo follows and prints as they come
(``follow``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from typing import Iterator, TextIO

PROGRESS_FILE_ENV = "LAKEFORGE_TRAIN_PROGRESS_FILE"
_lock = threading.Lock()


def report(logger: logging.Logger, line: str, level: int = logging.INFO) -> None:
    """``line`` on ``logger``, and appended to ``$LAKEFORGE_TRAIN_PROGRESS_FILE`` when it is set
    (a failure to write there is logged, never raised: progress must not fail a training)."""
    logger.log(level, line)
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return
    try:
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(line.replace("\n", " ") + "\n")
    except OSError as exc:
        logger.warning("progress file %s not writable: %s", path, exc)


@contextlib.contextmanager
def follow(out: TextIO | None = None, prefix: str = "  ", interval: float = 0.5) -> Iterator[str]:
    """Inside this block ``$LAKEFORGE_TRAIN_PROGRESS_FILE`` names a new file; every line written
    to it is printed to ``out`` (default stdout) as it comes, from a thread. Yields the path; the
    setting, the file and the thread are gone afterwards (the last lines printed first)."""
    out = out or sys.stdout
    fd, path = tempfile.mkstemp(prefix="lakeforge-train-progress-", suffix=".log")
    os.close(fd)
    saved = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = path
    done = threading.Event()

    def pump(f, final: bool = False) -> None:
        while True:
            line = f.readline()
            if not line:
                return
            if not line.endswith(b"\n") and not final:
                f.seek(-len(line), os.SEEK_CUR)  # half a line: read it again once it is complete
                return
            print(prefix + line.decode("utf-8", "replace").rstrip("\n"), file=out, flush=True)

    def tail() -> None:
        with open(path, "rb") as f:
            while not done.wait(interval):
                pump(f)
            pump(f, final=True)

    thread = threading.Thread(target=tail, name="train-progress", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join(timeout=10)
        if saved is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = saved
        with contextlib.suppress(OSError):
            os.unlink(path)
