"""Writer leases: one writer per table (or per partition) at a time, on HDFS and on a local lake.

A writer holds a lease before it stages or publishes anything: ``<table>/_leases/_table.json`` for
a whole table (the transform job, one per output table) or ``<table>/_leases/<partition>.json``
for one partition (an ingest of one day). The file holds the owner (run id, host, pid), when it
was acquired and when it expires::

    with hold(lake, "clean/flights", run_id="scheduled__2013-01-02"):
        ...  # stage, publish, recover

- Exclusive: the lease file is created whole under a temporary name and linked (local disk) or
  renamed (HDFS, which refuses a rename onto an existing file) into place, so of two writers
  exactly one gets it. The other fails at once with ``LeaseHeld``: "table X is being written by
  run Y since T", and touches nothing.
- Table and partition leases of one table exclude each other: a writer creates its own lease,
  then looks for the other kind, and gives its own back if it finds a live one (so at least one
  of two racing writers sees the other; at worst both fail and retry).
- Renewed: a daemon thread renews every lease the process holds every ``ttl/6`` seconds (the file
  is replaced atomically), so long runs never expire. A writer that could not renew for
  ``ttl - ttl/4`` seconds, or finds its lease taken over, considers it lost: ``check()`` (called
  before every rename of a publish) raises ``LeaseLost`` and it stops before touching the lake.
- Stale leases of dead writers are taken over: a lease is stale once it expired, or at once
  when its owner ran on this machine (same kernel boot and pid namespace) and that process is
  gone. The taker renames the stale lease to a name derived from its token, which only one
  contender can do (a second rename finds the name taken), checks it moved the stale lease and
  not a newer one (putting a newer one back), then creates its own.
- Reentrant within a process: holding a table lease covers every partition of it, and nested
  ``hold`` calls for what the process already holds cost nothing (the transform job leases its
  tables once; the publish functions it calls hold the same leases again).

Assumptions (as for any lease without fencing tokens): hosts' clocks agree within ``ttl/4``
(30 s by default), and a writer does not stall for longer than that between checking its lease
and renaming; a writer that does may overlap its successor for that stall.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from lakeforge.lake import Lake

log = logging.getLogger(__name__)

LEASES = "_leases"
TABLE_KEY = "_table"  # partitions never start with "_" (they would be invisible to Spark)
DEFAULT_TTL = 120.0
TMP, STALE = ".tmp-", ".stale-"


class LeaseError(RuntimeError):
    """A writer lease cannot be had or was lost."""


class LeaseHeld(LeaseError):
    """Another live writer holds the lease: nothing was touched."""

    def __init__(self, table: str, partition: str | None, holder: dict[str, Any] | None, uri: str):
        self.table, self.partition, self.holder, self.uri = table, partition, holder, uri
        what = f"table {table}" + (f" ({partition})" if partition else "")
        if holder is None:
            super().__init__(f"{what} is being written by an unknown run: its lease {uri} cannot be read "
                             "(delete it if no writer runs)")
            return
        held = f" ({holder['partition']})" if holder.get("partition") and not partition else ""
        super().__init__(
            f"{what} is being written by run {holder.get('run_id') or '(no run id)'}{held} since "
            f"{holder.get('acquired_at')} (host {holder.get('host')}, pid {holder.get('pid')}; lease {uri} "
            f"expires {holder.get('expires_at')} unless renewed)")


class LeaseLost(LeaseError):
    """This writer's lease expired before it could be renewed, or was taken over."""


def _token() -> str:
    return f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def lease_path(table: str, partition: str | None = None) -> str:
    return f"{table}/{LEASES}/{partition or TABLE_KEY}.json"


# -- exclusive file primitives -------------------------------------------------------------------
def _is_local(lake: Lake) -> bool:
    return lake.root_uri.startswith("file:")


def create_exclusive(lake: Lake, rel: str, data: bytes) -> bool:
    """Create ``rel`` holding ``data`` unless something is there already; True if this call created
    it. The file appears whole or not at all: it is written under a temporary name first, then
    hard-linked (local disk: ``link(2)`` fails if the name exists) or renamed (HDFS: the NameNode
    refuses a rename onto an existing file) into place."""
    tmp = f"{rel}{TMP}{_token()}"
    try:
        lake.write_bytes(tmp, data)
    except BaseException:
        _delete_quietly(lake, tmp)
        raise
    if _is_local(lake):
        try:
            os.link(lake.path(tmp), lake.path(rel))
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(lake.path(tmp))
    try:
        lake.fs.move(lake.path(tmp), lake.path(rel))
        return True
    except FileExistsError:  # hdfs-native
        _delete_quietly(lake, tmp)
        return False
    except OSError:
        _delete_quietly(lake, tmp)
        if lake.exists(rel):  # libhdfs says only that the rename failed
            return False
        raise


def _delete_quietly(lake: Lake, rel: str) -> None:
    try:
        lake.delete(rel)
    except Exception as exc:
        log.warning("could not delete %s: %s", lake.uri(rel), exc)


def _rename_noreplace(lake: Lake, src: str, dst: str) -> bool:
    """Rename a file unless ``dst`` exists; False if ``dst`` exists or ``src`` is gone."""
    if _is_local(lake):
        try:
            os.link(lake.path(src), lake.path(dst))
        except (FileExistsError, FileNotFoundError):
            return False
        try:
            os.unlink(lake.path(src))
        except FileNotFoundError:
            pass
        return True
    try:
        lake.fs.move(lake.path(src), lake.path(dst))
        return True
    except (FileExistsError, FileNotFoundError):
        return False
    except OSError:
        if not lake.exists(src) or lake.exists(dst):
            return False
        raise


def _replace(lake: Lake, src: str, dst: str) -> None:
    """Rename a file over ``dst`` atomically (local ``rename(2)``; HDFS rename with overwrite)."""
    if _is_local(lake):
        os.replace(lake.path(src), lake.path(dst))
        return
    client = getattr(getattr(getattr(lake.fs, "handler", None), "fs", None), "client", None)
    if client is not None and hasattr(client, "rename"):  # hdfs-native
        client.rename(lake.path(src), lake.path(dst), True)
        return
    lake.delete(dst)  # libhdfs has no overwriting rename: a contender could slip in (then renew fails)
    lake.fs.move(lake.path(src), lake.path(dst))


def _read(lake: Lake, rel: str) -> dict[str, Any] | None:
    """A lease record; None if there is none; ``{}`` if the file cannot be parsed."""
    try:
        data = lake.read_bytes(rel)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(data)
        return record if isinstance(record, dict) and "token" in record else {}
    except ValueError:
        return {}


# -- who is alive --------------------------------------------------------------------------------
def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _machine() -> str | None:
    """This kernel boot and pid namespace: pids are comparable only between processes sharing it
    (two containers on one host share the boot id, not the pid namespace)."""
    boot = _read_text("/proc/sys/kernel/random/boot_id")
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{ns}" if boot else None


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), None if it is gone or a zombie."""
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


_PROCESS = uuid.uuid4().hex  # this process (regenerated in a forked child)


def _identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "machine": _machine(), "pid_start": _start_time(pid),
            "process": _PROCESS}


def is_live(record: dict[str, Any], now: float | None = None) -> bool:
    """Whether a lease record's writer may still be writing: not expired, and (on this machine)
    its process still runs (the same pid started at the same time)."""
    now = time.time() if now is None else now
    if now > _epoch(record["expires_at"]):
        return False
    if record.get("machine") and record["machine"] == _machine():
        return _start_time(record["pid"]) == record.get("pid_start")
    return True


# -- leases --------------------------------------------------------------------------------------
class Lease:
    """A lease this process holds (see ``hold``)."""

    def __init__(self, lake: Lake, table: str, partition: str | None, record: dict[str, Any], ttl: float):
        self.lake, self.table, self.partition, self.record, self.ttl = lake, table, partition, record, ttl
        self.rel = lease_path(table, partition)
        self.token = record["token"]
        self.expires = _epoch(record["expires_at"])
        self.depth = 0  # nested holds
        self.lost: str | None = None
        self.released = False
        self.next_renewal = time.time() + self.interval
        self._mutex = threading.Lock()  # a renewal never runs beside the release

    @property
    def interval(self) -> float:
        return self.ttl / 6

    @property
    def margin(self) -> float:
        return self.ttl / 4

    @property
    def uri(self) -> str:
        return self.lake.uri(self.rel)

    def __repr__(self) -> str:
        return f"Lease({self.uri}, run {self.record.get('run_id')})"

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this lease is certainly still this writer's."""
        if self.lost is None and time.time() >= self.expires - self.margin:
            self.lost = f"not renewed since {self.record['renewed_at']}"
        if self.lost is not None:
            raise LeaseLost(f"lease {self.uri} of run {self.record.get('run_id')} lost ({self.lost}): "
                            "another writer may own the table now; nothing more is published")

    def renew(self) -> None:
        with self._mutex:
            if not self.released:
                self._renew()

    def _renew(self) -> None:
        now = time.time()
        if self.lost is not None:
            return
        if now >= self.expires - self.margin:
            self.lost = f"not renewed since {self.record['renewed_at']}"
            return
        current = _read(self.lake, self.rel)
        if not current or current.get("token") != self.token:
            self.lost = "taken over by " + (f"run {current.get('run_id')} (pid {current.get('pid')} on "
                                             f"{current.get('host')})" if current else "nobody (it is gone)")
            return
        record = {**self.record, "renewed_at": _iso(now), "expires_at": _iso(now + self.ttl)}
        tmp = f"{self.rel}{TMP}{_token()}"
        try:
            self.lake.write_bytes(tmp, json.dumps(record, indent=2).encode())
            _replace(self.lake, tmp, self.rel)
        except BaseException:
            _delete_quietly(self.lake, tmp)
            raise
        self.record, self.expires = record, now + self.ttl
        self.next_renewal = now + self.interval

    def release(self) -> None:
        """Delete the lease file if it is still this writer's (and the markers of takeovers)."""
        with self._mutex:
            self.released = True
        if self.lost is None:
            current = _read(self.lake, self.rel)
            if current and current.get("token") == self.token:
                self.lake.delete(self.rel)
        _clean_markers(self.lake, self.table, self.partition)


def _clean_markers(lake: Lake, table: str, partition: str | None, max_age: float = 60.0) -> None:
    """Delete what takeovers and died creations left beside a lease: markers of taken-over
    leases, and temporary files older than ``max_age`` seconds."""
    name = f"{partition or TABLE_KEY}.json"
    now = time.time_ns()
    for entry in lake.listdir(f"{table}/{LEASES}"):
        if entry.startswith(name + STALE):
            lake.delete(f"{table}/{LEASES}/{entry}")
        elif entry.startswith(name + TMP):
            stamp = entry[len(name + TMP):].split("-", 1)[0]
            if stamp.isdigit() and now - int(stamp) > max_age * 1e9:
                lake.delete(f"{table}/{LEASES}/{entry}")


def _take_over(lake: Lake, rel: str, stale: dict[str, Any]) -> bool:
    """Move a stale lease out of the way; True if this call moved exactly that lease."""
    marker = f"{rel}{STALE}{stale['token']}"
    if _is_local(lake):
        # link, check the linked file is the stale one, then unlink the lease name if it still
        # names the same file: a newer lease at ``rel`` is never removed.
        try:
            os.link(lake.path(rel), lake.path(marker))
        except FileNotFoundError:
            return False
        except FileExistsError:  # another taker's link: go on if it still names the stale lease
            if not _same_file(lake, rel, marker):
                _delete_quietly(lake, marker)  # left by a taker that died
                return False
        moved = _read(lake, marker)
        try:
            if moved and moved.get("token") == stale["token"] and _same_file(lake, rel, marker):
                os.unlink(lake.path(rel))
                return True
        except FileNotFoundError:
            pass
        _delete_quietly(lake, marker)
        return False
    if not _rename_noreplace(lake, rel, marker):
        return False
    moved = _read(lake, marker)
    if moved and moved.get("token") == stale["token"]:
        return True
    # A newer lease was renamed (its writer took over in between): put it back.
    if not _rename_noreplace(lake, marker, rel):
        log.warning("lease %s was taken over while it was being put back", lake.uri(rel))
    return False


def _same_file(lake: Lake, a: str, b: str) -> bool:
    try:
        return os.stat(lake.path(a)).st_ino == os.stat(lake.path(b)).st_ino
    except FileNotFoundError:
        return False


def _describe(record: dict[str, Any]) -> str:
    return (f"run {record.get('run_id')} (host {record.get('host')}, pid {record.get('pid')}, "
            f"since {record.get('acquired_at')}, lease until {record.get('expires_at')})")


def _acquire(lake: Lake, table: str, partition: str | None, run_id: str | None, ttl: float) -> Lease:
    rel = lease_path(table, partition)
    try:
        return _try_acquire(lake, table, partition, run_id, ttl, rel)
    except LeaseError:
        raise
    except (OSError, RuntimeError) as exc:  # a full disk, HDFS away: name the file
        raise LeaseError(f"cannot take the writer lease {lake.uri(rel)}: {type(exc).__name__}: {exc}") from exc


def _try_acquire(lake: Lake, table: str, partition: str | None, run_id: str | None, ttl: float, rel: str) -> Lease:
    for _ in range(20):
        now = time.time()
        record = {"table": table, "partition": partition, "run_id": run_id, **_identity(), "token": _token(),
                  "acquired_at": _iso(now), "renewed_at": _iso(now), "expires_at": _iso(now + ttl), "ttl_s": ttl}
        if create_exclusive(lake, rel, json.dumps(record, indent=2).encode()):
            break
        current = _read(lake, rel)
        if current is None:  # released meanwhile
            continue
        if _refuse_or_take_over(lake, rel, current, table, partition):
            log.warning("took over the stale lease %s of %s", lake.uri(rel), _describe(current))
    else:
        raise LeaseError(f"could not acquire {lake.uri(rel)}: it kept changing hands")
    lease = Lease(lake, table, partition, record, ttl)
    try:
        _check_other_scope(lake, table, partition)
    except BaseException:
        lease.release()
        raise
    return lease


def _refuse_or_take_over(lake: Lake, rel: str, record: dict, table: str, partition: str | None) -> bool:
    """``LeaseHeld`` if the lease at ``rel`` is live (or unreadable: being written); else take the
    dead writer's lease over. True if this call took it."""
    if not record:
        raise LeaseHeld(table, partition, None, lake.uri(rel))
    if is_live(record):
        raise LeaseHeld(table, partition, record, lake.uri(rel))
    return _take_over(lake, rel, record)


def _check_other_scope(lake: Lake, table: str, partition: str | None) -> None:
    """A table lease excludes every partition lease of the table and the other way round. Stale
    leases of the other kind (dead writers) are removed."""
    if partition is None:
        others = [n[:-len(".json")] for n in lake.listdir(f"{table}/{LEASES}")
                  if n.endswith(".json") and not n.startswith(TABLE_KEY)]
    else:
        others = [None]
    for other in others:
        rel = lease_path(table, other)
        record = _read(lake, rel)
        if record is None or record.get("process") == _PROCESS:
            continue
        if _refuse_or_take_over(lake, rel, record, table, partition):
            log.warning("removed the stale lease %s of %s", lake.uri(rel), _describe(record))
            lake.delete(f"{rel}{STALE}{record['token']}")


# -- the process's leases: reentrancy and renewal ------------------------------------------------
_lock = threading.RLock()
_held: dict[tuple[str, str | None], Lease] = {}
_acquiring: dict[tuple[str, str | None], threading.Lock] = {}
_wake = threading.Event()
_renewer: threading.Thread | None = None


def _key(lake: Lake, table: str, partition: str | None) -> tuple[str, str | None]:
    return lake.uri(table), partition


def held(lake: Lake, table: str, partition: str | None = None) -> Lease | None:
    """The lease this process holds that covers ``table`` (or its ``partition``), if any."""
    with _lock:
        return _held.get(_key(lake, table, None)) or (
            _held.get(_key(lake, table, partition)) if partition is not None else None)


def check_held(lake: Lake, table: str, partition: str | None = None) -> None:
    """Before a rename of a publish: raise ``LeaseLost`` if the covering lease was lost."""
    lease = held(lake, table, partition)
    if lease is not None:
        lease.check()


@contextmanager
def hold(lake: Lake, table: str, partition: str | None = None, *, run_id: str | None = None,
         ttl: float | None = None) -> Iterator[Lease]:
    """Hold the writer lease of ``table`` (or of one ``partition`` of it) for the block; raise
    ``LeaseHeld`` at once if another live writer has it. Nested holds of what this process
    already holds (a partition of a held table included) reuse that lease. Threads may take
    different leases at once (``lakeforge.publish.writing`` takes a job's in parallel)."""
    key = _key(lake, table, partition)
    lease = _reuse(lake, table, partition)
    if lease is None:
        with _lock:
            acquiring = _acquiring.setdefault(key, threading.Lock())
        with acquiring:  # one thread per lease file; the lake's I/O outside the process lock
            lease = _reuse(lake, table, partition)
            if lease is None:
                lease = _acquire(lake, table, partition, run_id, ttl or DEFAULT_TTL)
                with _lock:
                    _held[key] = lease
                    lease.depth += 1
                    _start_renewer()
    try:
        yield lease
    finally:
        with _lock:
            lease.depth -= 1
            done = lease.depth == 0
            if done:
                _held.pop(_key(lake, table, lease.partition), None)
        if done:
            try:
                lease.release()
            except Exception as exc:  # the lease expires by itself; never hide the block's error
                log.warning("could not release %s: %s", lease.uri, exc)


def _reuse(lake: Lake, table: str, partition: str | None) -> Lease | None:
    with _lock:
        lease = held(lake, table, partition)
        if lease is not None:
            lease.check()
            lease.depth += 1
        return lease


def _start_renewer() -> None:
    """Called with ``_lock`` held, after a lease was added."""
    global _renewer
    if _renewer is None:
        _renewer = threading.Thread(target=_renew_loop, name="lakeforge-lease-renewer", daemon=True)
        _renewer.start()
    _wake.set()


def _renew_loop() -> None:
    global _renewer
    while True:
        _wake.clear()
        with _lock:
            leases = list(_held.values())
            if not leases:
                _renewer = None  # the next hold starts a new one
                return
        now = time.time()
        for lease in leases:
            if lease.next_renewal <= now and lease.lost is None:
                try:
                    lease.renew()
                except Exception as exc:  # HDFS away for a moment: try again soon
                    log.warning("could not renew %s: %s", lease.uri, exc)
                    lease.next_renewal = now + min(lease.interval, 5.0)
                if lease.lost is not None:
                    log.error("lease %s lost: %s", lease.uri, lease.lost)
        live = [lease.next_renewal for lease in leases if lease.lost is None]
        _wake.wait(max(0.05, min(live) - time.time()) if live else 1.0)


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's leases (and no renewer thread)."""
    global _PROCESS, _renewer, _lock, _wake
    _PROCESS = uuid.uuid4().hex
    _held.clear()
    _acquiring.clear()
    _renewer = None
    _lock, _wake = threading.RLock(), threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)
