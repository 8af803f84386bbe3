"""Small helpers shared by tests."""

import contextlib
import os
import signal
import subprocess
import tempfile

from lakeforge.lake import Lake


@contextlib.contextmanager
def environ(values: dict[str, str]):
    """``os.environ`` updated with ``values`` for a block (a module fixture's scope), then
    restored: variables it added are removed again."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stop_process_groups(procs, timeout: float = 30) -> None:
    """Stop processes started with ``start_new_session=True``, children included: SIGTERM to every
    group at once, SIGKILL to a group whose leader outlives ``timeout``, then SIGKILL to whatever
    of a group survived its leader (e.g. task processes a service started)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


AIRFLOW_SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")  # the triggerer: delivery watchers


def migrate_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` with the Airflow of ``env`` (the one its services run)."""
    from lakeforge.orchestration import services

    migrate = subprocess.run([services.airflow_argv("scheduler", env)[0], "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]


def stop_airflow_services(folder) -> None:
    """Stop the services a test started in ``folder`` (scheduler first) and assert that none left a
    process behind in its session."""
    from lakeforge.orchestration import services

    left = {}
    for name in reversed(AIRFLOW_SERVICES):
        record = services.read_record(name, folder)
        services.stop(name, folder=folder, grace=20)
        if record is not None:
            left[name] = [p.pid for p in services.session_members(record.sid)]
    assert left == {n: [] for n in left}, left


def jvm_scratch_in_test_tmp() -> dict[str, str]:
    """Environment for a process whose JVM the test kills: Java's temporary folders (Spark's
    scratch, native libraries) go to the session's temp folder, not /tmp, as it cannot clean up."""
    return {"JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={tempfile.gettempdir()}"}


def ingest_days(lake: Lake, landing: Lake, days) -> None:
    """Deliver and ingest real days into raw/ (the input of the transform tests)."""
    from lakeforge.ingest import ingest_partition
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    simulator.deliver(landing, days[0], days[-1])
    for day in days:
        for table in SOURCE.tables:
            ingest_partition(SOURCE, table.name, day.isoformat(), lake=lake, landing=landing)


def edit_flights_rows(text: str, name: str, value: str, every: int = 1) -> str:
    """A flights CSV with field ``name`` set to ``value`` in every ``every``-th data row."""
    from lakeforge.pipelines.nycflights import FLIGHTS_COLUMNS

    col = FLIGHTS_COLUMNS.index(name)
    header, *rows = text.rstrip("\n").split("\n")
    out = [header]
    for i, line in enumerate(rows):
        fields = line.split(",")
        if i % every == 0:
            fields[col] = value
        out.append(",".join(fields))
    return "\n".join(out) + "\n"


def redeliver_flights(lake: Lake, landing: Lake, ds: str, edit) -> None:
    """The exporter sends ``ds``'s flights again, changed by ``edit`` (text -> text); ingested."""
    from lakeforge.ingest import ingest_partition
    from lakeforge.pipelines.nycflights import SOURCE, simulator

    rel = f"flights/{ds}.csv"
    simulator.write_atomically(landing, rel, edit(landing.read_bytes(rel).decode()).encode())
    ingest_partition(SOURCE, "flights", ds, lake=lake, landing=landing)


class ShortReads:
    """A lake's filesystem, except that the next ``short`` calls of ``method`` (``open_input_stream``
    or ``open_input_file``) on a path ending in ``name`` (any path when None) give an empty file, as
    HDFS may right after a close. Fault injection: a real HDFS does it only rarely."""

    def __init__(self, fs, method: str, short: int, name: str | None = None):
        self._fs, self.method, self.short, self.name = fs, method, short, name

    def __getattr__(self, attr):
        real = getattr(self._fs, attr)
        if attr != self.method:
            return real

        def opened(path):
            if self.short > 0 and (self.name is None or path.endswith(f"/{self.name}")):
                self.short -= 1
                import pyarrow as pa

                return pa.BufferReader(b"")
            return real(path)

        return opened


class FullDisk:
    """A lake's filesystem whose disk is full after ``free`` more bytes: a write past that fails
    with ``ENOSPC`` ("No space left on device"), as a real full disk or an HDFS DataNode out of
    space does. Only writes to paths containing ``under`` (any path when None) count. Fault
    injection: everything else is the real filesystem."""

    def __init__(self, fs, free: int, under: str | None = None):
        self._fs, self.free, self.under = fs, free, under

    def __getattr__(self, attr):
        return getattr(self._fs, attr)

    def open_output_stream(self, path, *args, **kwargs):
        stream = self._fs.open_output_stream(path, *args, **kwargs)
        return stream if self.under is not None and self.under not in path else _Budgeted(stream, self)


class _Budgeted:
    """An output stream that draws on its ``FullDisk``'s free bytes (file-like, for pyarrow too)."""

    def __init__(self, stream, disk: FullDisk):
        self._stream, self._disk, self.closed = stream, disk, False

    def write(self, data) -> int:
        import errno

        size = len(memoryview(data).cast("B"))
        if size > self._disk.free:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.free -= size
        return self._stream.write(data)

    def tell(self) -> int:
        return self._stream.tell()

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
