"""Start, stop and restart Airflow's services (scheduler, API server, DAG processor, triggerer) in
embedded mode so that a restart leaves no process of the previous instance behind.

Why this exists: a scheduler killed with SIGKILL (OOM killer, ``kill -9``, a crashed terminal)
leaves its LocalExecutor workers alive, ~140 MB each, for good. That is Airflow's behaviour,
not our configuration (measured on 3.3.2): the workers are ``multiprocessing`` children forked
by ``LocalExecutor.start()`` (all ``parallelism`` of them at once under ``fork``), not daemonic,
with no parent-death signal (no ``PR_SET_PDEATHSIG``); they block reading the task queue, a pipe
whose write end every sibling inherited, so the EOF that would end them never comes; they
inherited the scheduler's SIGTERM handler, which does nothing outside the scheduler process, and
ignore SIGINT, so only SIGKILL ends them. A worker that was running a task keeps supervising it
(the task process is in its own process group, but in the scheduler's session) and then idles
like the others. Airflow's own cleanup (``executor.end()``: poison pills, join) runs only on a
graceful exit. Upstream: apache/airflow#47011 (open: "Kill running tasks when LocalExecutor is
shutdown/ctrl-c'd"), and #880 for the same orphans under ``systemctl stop`` in 2016.

What this module does about it: every service runs as the leader of its own session
(``setsid``), with a unique ``LAKEFORGE_SERVICE_TOKEN`` in its environment and an inherited
descriptor of a lock file it holds an exclusive ``flock`` on (shared by every forked
descendant), and is recorded in ``$AIRFLOW_HOME/services/<name>.json`` (pid = session id, start
time, boot time, token, lock file). Stopping a service, and starting one (which first stops what
the record names, dead leader or not):

1. SIGTERM to the leader if it is alive, and up to ``grace`` seconds for a graceful exit;
2. SIGKILL to the task processes still running in the session (a process whose parent is a
   session member other than the leader: under the LocalExecutor, a task below its worker), and
   up to ``grace`` seconds for their workers to report them failed through the API server (the
   task instance then fails or retries at once, instead of waiting out the heartbeat timeout);
3. SIGKILL to every process left in the session, and to any process that left the session
   (``setsid``) but carries the token; then waits until they are gone.

A process is never chosen by its name. The recorded session is trusted only if its leader is
alive with the recorded start time, or the recorded lock is still held (only descendants of the
recorded leader can hold it), or a member's environment carries the recorded token (Airflow's
forked processes mostly hide it: ``setproctitle`` writes the process title over the
environment, and a worker that ran a task makes itself non-dumpable); one proof covers the whole
session, since a session id cannot be reused while any member of it is alive. Without one, or
with a member older than the recorded leader, the record is stale (the pid was reused): nothing
is killed and ``StaleRecord`` says why. A record from an earlier boot is discarded.

    python -m lakeforge.orchestration.services start          # api-server, dag-processor, scheduler
    python -m lakeforge.orchestration.services restart scheduler  # also what to run after a kill -9
    python -m lakeforge.orchestration.services stop
    python -m lakeforge.orchestration.services status

Logs go to ``$AIRFLOW_HOME/services/<name>.log``. The scheduler and triggerer run with
``--skip-serve-logs``: their log server binds every interface, and in embedded mode the API server
reads task logs from the shared folder. Containers (``docker/compose.yaml``) do not need this
module: a container's processes all end with it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import psutil

log = logging.getLogger(__name__)

TOKEN_VAR = "LAKEFORGE_SERVICE_TOKEN"
SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
DEFAULT_SERVICES = ("api-server", "dag-processor", "scheduler")


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot: exact, and unmoved by clock changes
    (unlike a wall-clock start time derived from it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


class StaleRecord(RuntimeError):
    """A service record whose session can no longer be shown to be that service's."""


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    pid: int  # the session leader: its pid is the session id
    start_ticks: int  # the leader's start, in clock ticks since boot (/proc/<pid>/stat)
    boot_id: str  # /proc/sys/kernel/random/boot_id: which boot the record is from
    token: str
    argv: list[str] = field(default_factory=list)
    log: str = ""
    # A file the leader was started holding an exclusive flock on, through an inherited
    # descriptor: every forked descendant shares the lock, so "the lock is held" means some
    # process of this instance is alive, whatever became of the leader.
    lock: str = ""

    @property
    def sid(self) -> int:
        return self.pid


def services_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$AIRFLOW_HOME/services``: records and logs of the services started here."""
    env = os.environ if env is None else env
    home = env.get("AIRFLOW_HOME")
    if not home:
        from lakeforge.settings import get_settings

        home = str(get_settings().airflow_home)
    return Path(home) / "services"


def airflow_argv(service: str, env: Mapping[str, str]) -> list[str]:
    if service not in SERVICES:
        raise ValueError(f"unknown Airflow service {service!r}: one of {', '.join(SERVICES)}")
    airflow = str(Path(sys.executable).with_name("airflow"))
    extra = {
        "api-server": ["--port", env.get("AIRFLOW__API__PORT", "8085")],
        "scheduler": ["--skip-serve-logs"],
        "triggerer": ["--skip-serve-logs"],
    }.get(service, [])
    return [airflow, service, *extra]


def airflow_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus lakeforge's Airflow configuration."""
    from lakeforge.orchestration.airflow_env import airflow_environ
    from lakeforge.settings import Settings

    env = dict(os.environ if base is None else base)
    env.update(airflow_environ(Settings.from_env(env), env))
    return env


# --- records ------------------------------------------------------------------------------------

def _record_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def read_record(name: str, folder: Path) -> ServiceRecord | None:
    path = _record_path(folder, name)
    try:
        return ServiceRecord(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unreadable service record %s: %s", path, exc)
        return None


def _write_record(record: ServiceRecord, folder: Path) -> None:
    path = _record_path(folder, record.name)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    os.replace(tmp, path)


def _drop_record(name: str, folder: Path) -> None:
    record = read_record(name, folder)
    if record is not None and record.lock and not lock_held(Path(record.lock)):
        Path(record.lock).unlink(missing_ok=True)
    _record_path(folder, name).unlink(missing_ok=True)


# --- the processes of a record ------------------------------------------------------------------

def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _environ(proc: psutil.Process) -> dict[str, str] | None:
    """The process's environment, or None where it cannot be read (non-dumpable, another user)."""
    try:
        return proc.environ()
    except (psutil.Error, OSError):  # AccessDenied, a zombie, a kernel thread, gone
        return None


def session_members(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for proc in psutil.process_iter():
        if _sid(proc.pid) == sid and _alive(proc):
            out.append(proc)
    return out


def _escaped(record: ServiceRecord) -> list[psutil.Process]:
    """Processes outside the session that carry its token (a descendant that called setsid)."""
    me = os.getuid()
    out = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != me or _sid(proc.pid) == record.sid:
                continue
        except psutil.Error:
            continue
        env = _environ(proc)
        if env and env.get(TOKEN_VAR) == record.token and _alive(proc):
            out.append(proc)
    return out


def leftovers(record: ServiceRecord) -> list[psutil.Process]:
    """The live processes of a recorded service: its session, and whatever escaped it with its
    token. Raises ``StaleRecord`` when the session cannot be shown to be the record's."""
    if record.boot_id != boot_id():
        raise StaleRecord(f"{record.name}: the record is from an earlier boot")
    members = session_members(record.sid)
    if members and not _owned(record, members):
        raise StaleRecord(
            f"{record.name}: session {record.sid} now holds processes that are not this service's "
            f"(pids {', '.join(str(p.pid) for p in members)}: its leader is gone, its lock is free and none "
            "carries its token): nothing killed"
        )
    seen = {p.pid for p in members}
    return members + [p for p in _escaped(record) if p.pid not in seen]


def _owned(record: ServiceRecord, members: Sequence[psutil.Process]) -> bool:
    """Whether the session's members are the recorded instance's: its leader alive (same start
    time), or its lock still held, or a member carrying its token; never a member older than the
    recorded leader (a session id cannot be reused while any member of it lives, so one proof for
    the session holds for all its members)."""
    ticks = {p.pid: t for p in members if (t := start_ticks(p.pid)) is not None}
    if any(t < record.start_ticks for t in ticks.values()):
        return False
    if ticks.get(record.pid) == record.start_ticks:
        return True  # the leader itself, alive
    if record.lock and lock_held(Path(record.lock)):
        return True
    # Forked Airflow processes rewrite their title over their environment (setproctitle), and
    # non-dumpable ones hide it: the token is only found in some.
    return any((_environ(p) or {}).get(TOKEN_VAR) == record.token for p in members)


def lock_held(path: Path) -> bool:
    """Whether some process holds the flock on ``path`` (the lock of a started instance)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if this took it
    return False


# --- start / stop -------------------------------------------------------------------------------

def start(
    name: str,
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    folder: Path | None = None,
    grace: float = 30.0,
) -> ServiceRecord:
    """Start a service as the leader of a new session, after stopping whatever its record names
    (a live instance, or the leftovers of one that was killed). ``argv`` defaults to the Airflow
    service of that name; ``env`` to this process's environment plus lakeforge's Airflow
    configuration."""
    env = airflow_env() if env is None else dict(env)
    folder = folder or services_dir(env)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop(name, folder=folder, grace=grace)
    argv = list(argv) if argv is not None else airflow_argv(name, env)
    token = f"{name}-{uuid.uuid4().hex}"
    log_path = folder / f"{name}.log"
    lock = folder / f"{token}.lock"
    lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Owner-only: a service's log and every file it creates (umask) can hold secrets.
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            proc = subprocess.Popen(argv, env={**env, TOKEN_VAR: token}, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock_fd,),
                                    umask=0o077)
    finally:
        os.close(lock_fd)  # the child's inherited descriptor keeps the lock
    _CHILDREN[proc.pid] = proc
    # (A leader that died at once is a zombie until reaped: its start is still readable.)
    record = ServiceRecord(name, proc.pid, start_ticks(proc.pid) or 0, boot_id(), token, list(argv), str(log_path),
                           str(lock))
    _write_record(record, folder)
    log.info("started %s: pid %d, log %s", name, proc.pid, log_path)
    return record


def stop(name: str, *, folder: Path | None = None, grace: float = 30.0) -> list[int]:
    """Stop a recorded service and every process it left (see the module docstring). Returns the
    pids that were still alive when it began; the record is removed once none is left."""
    folder = folder or services_dir()
    record = read_record(name, folder)
    if record is None:
        return []
    try:
        procs = leftovers(record)
    except StaleRecord as exc:
        log.warning("%s; record %s removed", exc, _record_path(folder, name))
        _drop_record(name, folder)
        return []
    pids = [p.pid for p in procs]
    if procs:
        _end(record, procs, grace)
    _reap_child(record.pid)
    _drop_record(name, folder)
    if pids:
        log.info("stopped %s: ended pids %s", name, pids)
    return pids


def restart(name: str, argv: Sequence[str] | None = None, **kwargs) -> ServiceRecord:
    return start(name, argv, **kwargs)


def status(name: str, folder: Path | None = None) -> dict:
    folder = folder or services_dir()
    record = read_record(name, folder)
    if record is None:
        return {"name": name, "state": "not started"}
    try:
        procs = leftovers(record)
    except StaleRecord as exc:
        return {"name": name, "state": "stale record", "why": str(exc)}
    leader = any(p.pid == record.pid for p in procs)
    state = "running" if leader else ("dead, left processes" if procs else "dead")
    return {"name": name, "state": state, "pid": record.pid, "pids": sorted(p.pid for p in procs), "log": record.log}


def _end(record: ServiceRecord, procs: list[psutil.Process], grace: float) -> None:
    leader = next((p for p in procs if p.pid == record.pid), None)
    # 1. A graceful exit: the scheduler ends its executor (idle workers take a poison pill).
    if leader is not None:
        _signal([leader], signal.SIGTERM)
        _wait(lambda: not _alive(leader), grace, record)
    # 2. Tasks still running: killed one level below their workers, which report them failed.
    left = _still(record, procs)
    members = {p.pid for p in left}
    tasks = [p for p in left if _parent_pid(p) in members - {record.pid}]
    if tasks:
        supervisors = {_parent_pid(p) for p in tasks}
        _signal(tasks, signal.SIGKILL)
        _wait(lambda: all(not _alive(p) for p in tasks) and _reported(supervisors), grace, record)
    # 3. Everything else of the service.
    left = _still(record, procs)
    _signal(left, signal.SIGKILL)
    if not _wait(lambda: not _still(record, procs), 30.0, record):
        raise RuntimeError(f"{record.name}: processes survived SIGKILL: {[p.pid for p in _still(record, procs)]}")


def _still(record: ServiceRecord, known: Iterable[psutil.Process]) -> list[psutil.Process]:
    """What is left: the known processes still alive, and any new member of the session (a
    worker can still fork while we wait)."""
    alive = {p.pid: p for p in known if _alive(p)}
    for p in session_members(record.sid):
        alive.setdefault(p.pid, p)
    return list(alive.values())


def _parent_pid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _reported(supervisors: set[int | None]) -> bool:
    """Whether the workers whose task was killed are done with it: exited, or back to waiting for
    work. Only a hint to stop waiting early (Airflow's process title marks an idle worker);
    waiting ends after ``grace`` anyway."""
    for pid in supervisors:
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            if _alive(proc) and "<idle>" not in " ".join(proc.cmdline()):
                return False
        except psutil.Error:
            continue
    return True


def _signal(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the pid still names the same process
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass


def _wait(done, timeout: float, record: ServiceRecord) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap_child(record.pid)
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


_CHILDREN: dict[int, subprocess.Popen] = {}  # leaders started by this process


def _reap_child(pid: int) -> None:
    """Collect the leader's exit status when it is this process's child (no zombie left)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# --- command line -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lakeforge.orchestration.services",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "restart", "status"))
    parser.add_argument("services", nargs="*", metavar="service",
                        help=f"any of {', '.join(SERVICES)} (default: {', '.join(DEFAULT_SERVICES)})")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds for a graceful exit before SIGKILL")
    args = parser.parse_args(argv)
    unknown = [s for s in args.services if s not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s) {', '.join(unknown)}: any of {', '.join(SERVICES)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.services or list(DEFAULT_SERVICES)
    env = airflow_env()
    folder = services_dir(env)
    if args.action == "status":
        for name in names:
            print(json.dumps(status(name, folder)))
        return 0
    if args.action == "stop":
        for name in reversed(names):
            stop(name, folder=folder, grace=args.grace)
        return 0
    for name in names:
        if args.action == "start" and status(name, folder)["state"] == "running":
            print(f"{name}: already running ({status(name, folder)['pid']}); `restart` replaces it")
            continue
        record = start(name, env=env, folder=folder, grace=args.grace)
        print(f"{name}: pid {record.pid}, log {record.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
