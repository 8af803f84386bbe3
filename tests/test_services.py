"""lakeforge.orchestration.services on a stand-in service (no Airflow, ~2 s): a leader that
forks workers which, like LocalExecutor's, survive it and shrug off SIGTERM, one of them
supervising a "task" in its own process group, another with a descendant that left the session.
A restart after SIGKILL of the leader must leave none of them; a record that no longer names the
service's processes must kill nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lakeforge.orchestration import services

FAKE = r'''
import os, signal, subprocess, sys, time
import setproctitle
out, mode = sys.argv[1], sys.argv[2]

def note(role):
    with open(out, "a") as f:
        f.write(f"{role} {os.getpid()}\n")

# Like the scheduler: a SIGTERM handler its forked workers inherit and that does nothing in them.
leader = os.getpid()
def on_term(*_):
    if os.getpid() == leader and mode == "term-exits":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note("leader")
for role in ("worker-busy", "worker-idle", "worker-escaper"):
    if os.fork() == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # As LocalExecutor's workers do; it overwrites the environment that /proc shows.
        setproctitle.setproctitle(f"fake worker -- {role}: <idle> " + "x" * 200)
        note(role)
        if role == "worker-busy" and os.fork() == 0:
            os.setpgid(0, 0)  # Airflow's task process: own group, same session
            note("task")
            time.sleep(3600)
            os._exit(0)
        if role == "worker-escaper":  # a program started in a session of its own: found by its token
            escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                       start_new_session=True)
            with open(out, "a") as f:
                f.write(f"escaped {escaped.pid}\n")
        time.sleep(3600)
        os._exit(0)
time.sleep(3600)
'''


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE)
    folder = tmp_path / "services"
    procs: list[psutil.Process] = []

    def start(mode: str = "term-ignored") -> tuple[services.ServiceRecord, dict[str, int]]:
        out = tmp_path / f"pids-{len(procs)}.txt"
        record = services.start("fake", [sys.executable, str(script), str(out), mode], env=dict(os.environ),
                                folder=folder, grace=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = dict(line.split() for line in out.read_text().splitlines()) if out.exists() else {}
            if len(pids) == 6:
                pids = {role: int(pid) for role, pid in pids.items()}
                procs.extend(psutil.Process(pid) for pid in pids.values())
                return record, pids
            time.sleep(0.05)
        raise AssertionError(f"the fake service did not start: {out.read_text() if out.exists() else ''}")

    yield start, folder
    for proc in procs:  # whatever a failing test left (psutil checks the pid was not reused)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_restart_after_sigkill_of_the_leader_leaves_no_orphan(fake):
    start, folder = fake
    old, pids = start()
    assert os.getsid(pids["task"]) == old.sid and os.getpgid(pids["task"]) != old.sid
    assert os.getsid(pids["escaped"]) != old.sid
    # The token is gone from what /proc shows of the workers: the lock proves they are the service's.
    assert services.TOKEN_VAR not in psutil.Process(pids["worker-idle"]).environ()
    assert services.lock_held(Path(old.lock))

    os.kill(old.pid, signal.SIGKILL)
    services._reap_child(old.pid)
    time.sleep(0.3)
    orphans = sorted(role for role, pid in pids.items() if _alive(pid))
    assert orphans == ["escaped", "task", "worker-busy", "worker-escaper", "worker-idle"]
    for role in ("worker-idle", "task"):  # SIGTERM does not end them
        os.kill(pids[role], signal.SIGTERM)
    time.sleep(0.3)
    assert _alive(pids["worker-idle"])
    assert services.status("fake", folder)["state"] == "dead, left processes"

    new, new_pids = start()  # the restart
    assert new.pid != old.pid and _alive(new.pid)
    assert [role for role, pid in pids.items() if _alive(pid)] == []
    assert services.session_members(old.sid) == []
    assert json.loads((folder / "fake.json").read_text())["pid"] == new.pid

    assert sorted(services.stop("fake", folder=folder, grace=1)) == sorted(new_pids.values())
    assert [role for role, pid in new_pids.items() if _alive(pid)] == []
    assert not (folder / "fake.json").exists() and list(folder.glob("*.lock")) == []
    assert services.status("fake", folder) == {"name": "fake", "state": "not started"}


def test_stop_of_a_live_service_ends_it_gracefully_then_kills_what_is_left(fake):
    start, folder = fake
    record, pids = start("term-exits")
    t0 = time.monotonic()
    ended = services.stop("fake", folder=folder, grace=1)
    assert sorted(ended) == sorted(pids.values())
    assert [role for role, pid in pids.items() if _alive(pid)] == []
    # The leader left on SIGTERM; only the task's wait for its worker ran into the grace period.
    assert time.monotonic() - t0 < 10


def test_a_record_that_names_someone_elses_session_kills_nothing(tmp_path):
    folder = tmp_path / "services"
    folder.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                             env={k: v for k, v in os.environ.items() if k != services.TOKEN_VAR})
    try:
        # A record whose leader died and whose pid now leads an unrelated session (pid reuse).
        lock = folder / "scheduler-deadbeef.lock"
        lock.touch()  # its lock is free: no process of that instance is left
        stale = services.ServiceRecord("scheduler", other.pid, services.start_ticks(other.pid) - 100,
                                       services.boot_id(), "scheduler-deadbeef", lock=str(lock))
        services._write_record(stale, folder)
        with pytest.raises(services.StaleRecord, match="not this service's"):
            services.leftovers(stale)
        assert services.stop("scheduler", folder=folder) == []
        assert other.poll() is None  # untouched
        assert not (folder / "scheduler.json").exists() and not lock.exists()

        # A record from an earlier boot is dropped unread.
        services._write_record(services.ServiceRecord("scheduler", other.pid, 0, "another-boot", "x"), folder)
        assert services.status("scheduler", folder)["state"] == "stale record"
        assert services.stop("scheduler", folder=folder) == [] and other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_airflow_argv_and_cli_validation(tmp_path):
    argv = services.airflow_argv("scheduler", {})
    assert Path(argv[0]).name == "airflow" and argv[1:] == ["scheduler", "--skip-serve-logs"]
    assert services.airflow_argv("api-server", {"AIRFLOW__API__PORT": "9999"})[1:] == ["api-server", "--port", "9999"]
    with pytest.raises(ValueError, match="unknown Airflow service"):
        services.airflow_argv("webserver", {})
    with pytest.raises(SystemExit):
        services.main(["start", "webserver"])
