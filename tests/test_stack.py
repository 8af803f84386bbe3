"""`make up` / `make status` / `make down` as a person uses them (``python -m lakeforge.stack``), against
a stack started ONCE for the module in a fresh LAKEFORGE_HOME: PostgreSQL, MLflow with its logins and
Airflow's four services.

- every listening socket of every process the stack started (children included, task processes
  sampled while a run executes) is on loopback;
- the logins are generated, printed once, kept in 0600 files; the historical defaults are refused;
  no service gets another's secrets;
- a day delivered with the documented command is ingested by the scheduler; a browser (Playwright
  driving Debian's Chromium) logs in to Airflow and MLflow with the printed credentials and sees the
  DAGs, the green run and the experiment in the model-training view (screenshots in the test's tmp);
- status reports each service, a killed one as down; down stops everything by PID and keeps the data;
  a second up resumes it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from lakeforge.ports import free_loopback_port

pytestmark = pytest.mark.airflow

STACK = [sys.executable, "-m", "lakeforge.stack"]
DAY = "2013-01-01"
DAGS = ("ingest_flights", "train_delay_model", "transform_flights")
RUN_TIMEOUT_S = 300


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    up_output: str
    up_seconds: float
    ports: dict[str, int]
    seen: dict[int, psutil.Process] = field(default_factory=dict)  # every process of the stack seen so far
    service_of: dict[int, str] = field(default_factory=dict)  # pid -> the service that started it
    sockets: set[tuple[str, int, int, str]] = field(default_factory=set)  # (ip, port, pid, name) listened on

    @property
    def airflow(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow']}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def run(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
        return subprocess.run([*STACK, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def processes(self) -> dict[int, psutil.Process]:
        """The live processes of every recorded service: its session and all their descendants
        (PostgreSQL's backends leave the postmaster's session but stay its children)."""
        from lakeforge.orchestration.services import read_record, session_members

        out: dict[int, psutil.Process] = {}
        for record_file in (self.home / "run").glob("*.json"):
            record = read_record(record_file.stem, self.home / "run")
            if record is None:
                continue
            for member in session_members(record.sid):
                try:
                    for proc in (member, *member.children(recursive=True)):
                        out[proc.pid] = proc
                        self.service_of[proc.pid] = record.name
                except psutil.NoSuchProcess:
                    continue
        self.seen.update(out)
        return out

    def sample_sockets(self) -> set[tuple[str, int, int, str]]:
        """Every listening TCP socket and unconnected bound UDP socket of the stack's processes now."""
        procs = self.processes()
        found = set()
        for c in psutil.net_connections(kind="inet"):
            if c.pid not in procs or not c.laddr:
                continue
            listening = c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr)  # SOCK_DGRAM
            if listening:
                try:
                    name = procs[c.pid].name()
                except psutil.NoSuchProcess:
                    name = "?"
                found.add((c.laddr.ip, c.laddr.port, c.pid, name))
        self.sockets |= found
        return found


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:127.0.0.1 (a JVM's IPv4 socket)
        addr = addr.ipv4_mapped
    return addr.is_loopback


def stack_env(home: Path) -> dict[str, str]:
    """The test session's environment without its Airflow/MLflow settings, pointed at a fresh home
    and free ports."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLFLOW_", "LAKEFORGE_LAKE_ROOT", "LAKEFORGE_LANDING_ROOT"))}
    env["LAKEFORGE_HOME"] = str(home)
    ports = set()
    while len(ports) < 3:
        ports.add(free_loopback_port())
    for var, port in zip(("LAKEFORGE_AIRFLOW_PORT", "LAKEFORGE_MLFLOW_PORT", "LAKEFORGE_POSTGRES_PORT"), sorted(ports)):
        env[var] = str(port)
    return env


def logs(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((home / "run").glob("*.log")))


@pytest.fixture(scope="module")
def stack(session_home):
    home = session_home / "stack"
    env = stack_env(home)
    ports = {"airflow": int(env["LAKEFORGE_AIRFLOW_PORT"]), "mlflow": int(env["LAKEFORGE_MLFLOW_PORT"]),
             "postgres": int(env["LAKEFORGE_POSTGRES_PORT"])}
    t = time.perf_counter()
    done = subprocess.run([*STACK, "up"], env=env, capture_output=True, text=True, timeout=600)
    s = Stack(home, env, done.stdout, time.perf_counter() - t, ports)
    try:
        assert done.returncode == 0, f"up failed:\n{done.stdout}\n{done.stderr}\n{logs(home)}"
        timeline = [line.strip() for line in done.stdout.splitlines() if " at +" in line or "migrated" in line]
        print(f"\nmake up (first start) took {s.up_seconds:.1f}s: {'; '.join(timeline)}")
        s.processes()
        yield s
    finally:
        s.processes()
        subprocess.run([*STACK, "down"], env=env, capture_output=True, text=True, timeout=300)
        left = [p for p in s.seen.values() if alive(p)]
        for proc in left:  # never left running, whatever failed above
            proc.kill()
        assert not left, f"processes left after down: {left}"


# --- helpers over the stack's HTTP APIs ------------------------------------------------------------

def request(url: str, *, data: dict | None = None, method: str | None = None, headers: dict | None = None):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={**({"Content-Type": "application/json"} if body else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def printed_logins(output: str) -> dict[str, tuple[str, str]]:
    airflow = re.search(r"Airflow\s+(http://127\.0\.0\.1:\d+)\s+user (\S+), password (\S+)", output)
    mlflow = re.search(r"user (viewer), password (\S+) \(read-only\)", output)
    assert airflow and mlflow, f"up did not print the logins:\n{output}"
    return {"airflow": (airflow.group(2), airflow.group(3)), "mlflow": (mlflow.group(1), mlflow.group(2))}


def airflow_headers(s: Stack) -> dict[str, str]:
    user, password = printed_logins(s.up_output)["airflow"]
    code, body = request(f"{s.airflow}/auth/token", data={"username": user, "password": password})
    assert code == 201, body
    return {"Authorization": f"Bearer {body['access_token']}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def secret_files(home: Path) -> list[Path]:
    return [*(home / "stack" / "secrets").iterdir(), *(home / "mlflow" / "auth").glob("*.password"),
            home / "mlflow" / "auth" / "basic_auth.ini", home / "mlflow" / "auth" / "flask-secret-key",
            home / "airflow" / "simple_auth_manager_passwords.json.generated", home / "airflow" / ".jwt_secret"]


# --- the tests, in the order a person meets the stack ----------------------------------------------

def test_up_prints_the_urls_and_the_logins_once(stack):
    out = stack.up_output
    assert f"Airflow  {stack.airflow}" in out and f"MLflow   {stack.mlflow}/#/experiments/" in out, out
    logins = printed_logins(out)
    airflow_file = json.loads((stack.home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
    assert logins["airflow"] == ("admin", airflow_file["admin"])
    assert logins["mlflow"][1] == (stack.home / "mlflow" / "auth" / "viewer.password").read_text().strip()
    assert (stack.home / "logs").is_dir() and {p.name for p in (stack.home / "logs").glob("*.log")} >= {
        f"{n}.log" for n in ("postgres", "mlflow", "api-server", "scheduler", "dag-processor", "triggerer")}


def test_every_listening_socket_is_on_loopback(stack):
    found = stack.sample_sockets()
    ports = {port for _, port, _, _ in found}
    assert set(stack.ports.values()) <= ports, f"the services' ports are not all listening: {sorted(found)}"
    wide = [s for s in found if not is_loopback(s[0])]
    assert not wide, f"sockets bound beyond loopback: {wide}"
    assert not ports & {8793, 8794}, f"a task-log server is listening: {sorted(found)}"


def test_secrets_are_owner_only_generated_and_the_defaults_refused(stack):
    files = secret_files(stack.home)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {stat.S_IMODE(path.stat().st_mode):04o}"
    for log in (stack.home / "run").glob("*.log"):
        assert stat.S_IMODE(log.stat().st_mode) == 0o600, log
    # The historical defaults are refused; the printed logins work (so the refusals mean something).
    code, _ = request(f"{stack.airflow}/auth/token", data={"username": "admin", "password": "admin"})
    assert code == 401
    assert airflow_headers(stack)
    probe = f"{stack.mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=flight_delay"
    assert request(probe, headers=basic("admin", "password1234"))[0] == 401
    assert request(probe)[0] == 401
    code, body = request(probe, headers=basic(*printed_logins(stack.up_output)["mlflow"]))
    assert code == 200 and body["experiment"]["tags"] == [
        {"key": "mlflow.experimentKind", "value": "custom_model_development"}], body
    # One role per database; neither reaches the other's.
    from lakeforge.postgres import PostgresCluster

    pg = PostgresCluster(stack.home / "postgres", "", "airflow")
    pg.port = stack.ports["postgres"]
    own = {r: (stack.home / "stack" / "secrets" / f"{r}-db.password").read_text().strip() for r in ("airflow", "mlflow")}
    for role, other in (("airflow", "mlflow"), ("mlflow", "airflow")):
        pg.connect(role, user=role, password=own[role]).close()
        with pytest.raises(Exception, match="permission denied|not have CONNECT"):
            pg.connect(other, user=role, password=own[role]).close()
        with pytest.raises(Exception, match="password authentication failed"):
            pg.connect(role, user=role, password=role).close()

    # No password on a command line or in an environment; each service only its own secrets. (Two
    # keys are read from the environment by design: Airflow's JWT secret by its services, the
    # Flask session key by MLflow's.)
    values = {p.name: p.read_text().strip() for p in files}
    values.update({f"airflow:{u}": pw for u, pw in json.loads(values.pop(
        "simple_auth_manager_passwords.json.generated")).items()})
    allowed = {".jwt_secret": {"api-server", "dag-processor", "scheduler", "triggerer"}, "flask-secret-key": {"mlflow"}}
    for proc in stack.processes().values():
        try:
            env = proc.environ()
            text = " ".join(proc.cmdline()) + "\n" + "\n".join(f"{k}={v}" for k, v in env.items())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        service = stack.service_of[proc.pid]
        leaked = [name for name, value in values.items()
                  if value and value in text and service not in allowed.get(name, ())]
        assert not leaked, f"pid {proc.pid} ({proc.name()}, service {service}) carries {leaked}"
        if env.get("LAKEFORGE_MLFLOW_PASSWORD_FILE"):  # only the scheduler's, and only training's
            assert env["LAKEFORGE_MLFLOW_PASSWORD_FILE"].endswith("/training.password")
            assert env.get("MLFLOW_TRACKING_USERNAME") == "training"
        per_job = {k: v for k, v in env.items() if k.startswith("LAKEFORGE_MLFLOW_PASSWORD_FILE_")}
        if per_job:  # the jobs' accounts: only the scheduler (it runs them), never the admin's
            assert service == "scheduler" and sorted(Path(v).name for v in per_job.values()) == [
                "scoring.password", "training.password"], (service, per_job)
        if env.get("PGPASSFILE"):  # only MLflow's
            assert service == "mlflow", (service, proc.cmdline())


JOB = """
import os
from lakeforge import stack
p = stack.paths()
env = stack.airflow_env(p, stack.ports(p), "scheduler")  # what the scheduler's task processes get
os.environ.clear()
os.environ.update(env)
import mlflow
from lakeforge.training.tracking import setup
setup()
with mlflow.start_run(run_name="stack-credentials-check") as run:
    mlflow.log_metric("reached", 1.0)
print(os.environ["MLFLOW_TRACKING_USERNAME"], run.info.run_id)
"""

# The scoring job's first step (spark_jobs/score_flights.py) in the same scheduler environment.
SCORING_JOB = """
import os
from lakeforge import stack
p = stack.paths()
os.environ.clear()
os.environ.update(stack.airflow_env(p, stack.ports(p), "scheduler"))
from lakeforge.mlflow_auth import use_account
print(use_account("scoring"))
"""


def test_jobs_reach_mlflow_with_their_own_account(stack):
    done = subprocess.run([sys.executable, "-c", JOB], env=stack.env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    user, run_id = done.stdout.split()[-2:]
    assert user == "training"
    code, body = request(f"{stack.mlflow}/api/2.0/mlflow/runs/get?run_id={run_id}",
                         headers=basic(*printed_logins(stack.up_output)["mlflow"]))
    assert code == 200 and body["run"]["data"]["metrics"][0]["key"] == "reached", body
    # The job's account cannot act as an admin (create users).
    training = (stack.home / "mlflow" / "auth" / "training.password").read_text().strip()
    code, _ = request(f"{stack.mlflow}/api/2.0/mlflow/users/create", data={"username": "x", "password": "y" * 12},
                      headers=basic("training", training))
    assert code == 403

    # The scoring job, launched by the same scheduler, acts as scoring: it reads the experiment
    # but cannot write to it.
    done = subprocess.run([sys.executable, "-c", SCORING_JOB], env=stack.env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.split()[-1] == "scoring", done.stdout + done.stderr
    scoring = (stack.home / "mlflow" / "auth" / "scoring.password").read_text().strip()
    code, _ = request(f"{stack.mlflow}/api/2.0/mlflow/runs/get?run_id={run_id}", headers=basic("scoring", scoring))
    assert code == 200
    code, _ = request(f"{stack.mlflow}/api/2.0/mlflow/runs/log-metric",
                      data={"run_id": run_id, "key": "written", "value": 1.0, "timestamp": 0},
                      headers=basic("scoring", scoring))
    assert code == 403


def test_a_delivered_day_is_ingested_and_seen_in_the_browser(stack, tmp_path):
    delivered = subprocess.run([str(Path(sys.executable).with_name("lakeforge-simulate")), "--start", DAY,
                                "--end", DAY], env=stack.env, capture_output=True, text=True, timeout=120)
    assert delivered.returncode == 0, delivered.stderr
    headers = airflow_headers(stack)
    code, body = request(f"{stack.airflow}/api/v2/dags/ingest_flights", data={"is_paused": False}, method="PATCH",
                         headers=headers)
    assert code == 200, body
    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = None
    try:
        while time.monotonic() < deadline:
            stack.sample_sockets()  # task processes too, while they run
            code, body = request(f"{stack.airflow}/api/v2/dags/ingest_flights/dagRuns?limit=20&order_by=logical_date",
                                 headers=headers)
            assert code == 200, body
            runs = {r["logical_date"][:10]: r for r in body["dag_runs"]}
            state = runs.get(DAY, {}).get("state")
            if state in ("success", "failed"):
                break
            time.sleep(2)
    finally:  # no more catch-up runs (the other days were not delivered)
        request(f"{stack.airflow}/api/v2/dags/ingest_flights", data={"is_paused": True}, method="PATCH",
                headers=headers)
    assert state == "success", f"the {DAY} run is {state}:\n{logs(stack.home)}"
    wide = [s for s in stack.sockets if not is_loopback(s[0])]
    assert not wide, f"sockets bound beyond loopback while tasks ran: {wide}"
    assert (stack.home / "lake" / "nycflights" / "raw" / "flights" / f"ds={DAY}").is_dir()

    browse(stack, tmp_path)


def chromium() -> str:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("Chromium is not installed: run tools/bootstrap-system.sh (Debian's chromium)")


def browse(stack: Stack, shots: Path) -> None:
    """Log in as a person does, with what up printed; assert on what the pages show."""
    from playwright.sync_api import expect, sync_playwright

    logins = printed_logins(stack.up_output)
    code, body = request(f"{stack.airflow}/api/v2/dags?limit=100", headers=airflow_headers(stack))
    dags = sorted(d["dag_id"] for d in body["dags"])
    assert set(DAGS) <= set(dags), dags
    mlflow_url = re.search(r"MLflow\s+(\S+)", stack.up_output).group(1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(stack.airflow)
            page.wait_for_url("**/auth/login**")
            page.locator("input[name=username], input:not([type=password])").first.fill(logins["airflow"][0])
            page.locator("input[type=password]").fill(logins["airflow"][1])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{stack.airflow}/")  # signed in: back on the home page
            page.goto(f"{stack.airflow}/dags")
            for dag in dags:
                expect(page.get_by_text(dag, exact=True).first).to_be_visible()
            expect(page.get_by_text(f"{len(dags)} Dags")).to_be_visible()
            page.screenshot(path=shots / "airflow-dags.png", full_page=True)
            page.goto(f"{stack.airflow}/dags/ingest_flights/runs")
            row = page.get_by_role("row").filter(has_text=f"scheduled__{DAY}")
            expect(row.get_by_text("Success", exact=True)).to_be_visible()
            page.screenshot(path=shots / "airflow-ingest-runs.png", full_page=True)
            # The lake's reports, served by the lakeforge_ui plugin to signed-in users (the DAG docs
            # link there): the menu entry's page, then the source's quality summary.
            page.goto(f"{stack.airflow}/lakeforge/")
            page.get_by_role("link", name="quality").first.click()
            expect(page.get_by_role("heading", name="Quality: nycflights")).to_be_visible()
            page.screenshot(path=shots / "airflow-quality-reports.png", full_page=True)

            mlflow = browser.new_context(http_credentials={"username": logins["mlflow"][0],
                                                           "password": logins["mlflow"][1]},
                                         viewport={"width": 1400, "height": 900}).new_page()
            mlflow.set_default_timeout(60_000)
            mlflow.goto(mlflow_url)
            expect(mlflow.get_by_text("flight_delay").first).to_be_visible()
            # The model-training view: the runs table and the registry, not the GenAI overview.
            expect(mlflow.get_by_text("Run Name").first).to_be_visible()
            expect(mlflow.get_by_text("Model registry").first).to_be_visible()
            expect(mlflow.get_by_text("viewer").first).to_be_visible()
            mlflow.screenshot(path=shots / "mlflow-experiment.png", full_page=True)
        finally:
            browser.close()
    code, _ = request(f"{stack.airflow}/lakeforge/quality/nycflights")  # no session: refused
    assert code == 401
    for name in ("airflow-dags.png", "airflow-ingest-runs.png", "mlflow-experiment.png"):
        assert (shots / name).stat().st_size > 10_000, name
    print(f"\nscreenshots in {shots}")


def test_status_reports_each_service_and_a_killed_one(stack):
    done = stack.run("status", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("postgres", "mlflow", "api-server", "dag-processor", "scheduler", "triggerer"):
        assert re.search(rf"^\s+{name}\s+up \(pid \d+\)", done.stdout, re.M), done.stdout
    # The newest run (catch-up made some for days not delivered: they fail or wait).
    code, runs = request(f"{stack.airflow}/api/v2/dags/ingest_flights/dagRuns?limit=1&order_by=-run_after",
                         headers=airflow_headers(stack))
    newest = runs["dag_runs"][0]
    assert re.search(rf"ingest_flights\s+paused\s+{newest['state']}\s+{re.escape(newest['dag_run_id'])}\s+"
                     rf"\(data {newest['logical_date'][:10]}", done.stdout), (newest, done.stdout)
    assert re.search(rf"nycflights/raw/flights\s+{DAY} \(1 days\)", done.stdout), done.stdout
    assert "flight_delay@champion: none yet" in done.stdout, done.stdout
    assert f"{stack.airflow}" in done.stdout and "login: admin" in done.stdout and "login: viewer" in done.stdout

    record = json.loads((stack.home / "run" / "triggerer.json").read_text())
    stack.processes()
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(record["pid"]) and psutil.Process(record["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = stack.run("status", timeout=120)
    assert done.returncode == 1, done.stdout
    assert re.search(r"^\s+triggerer\s+DOWN \(dead", done.stdout, re.M), done.stdout
    assert re.search(r"^\s+scheduler\s+up", done.stdout, re.M), done.stdout

    # up starts what is down (and ends what the killed one left), nothing else.
    before = {n: json.loads((stack.home / "run" / f"{n}.json").read_text())["pid"] for n in ("scheduler", "mlflow")}
    done = stack.run("up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "triggerer" in done.stdout and "scheduler      started" not in done.stdout, done.stdout
    assert before == {n: json.loads((stack.home / "run" / f"{n}.json").read_text())["pid"] for n in before}
    assert not [pw for _, pw in printed_logins(stack.up_output).values() if pw in done.stdout], "logins printed twice"
    stack.processes()


def test_down_stops_everything_by_pid_keeps_the_data_and_up_resumes(stack):
    procs = dict(stack.processes())
    t = time.perf_counter()
    done = stack.run("down", timeout=300)
    down_s = time.perf_counter() - t
    assert done.returncode == 0, done.stdout + done.stderr
    left = [p for p in procs.values() if alive(p)]
    assert not left, f"left running after down: {left}"
    assert not list((stack.home / "run").glob("*.json")), "service records left"
    for port in stack.ports.values():
        assert not [c for c in psutil.net_connections("inet") if c.laddr and c.laddr.port == port
                    and c.status == psutil.CONN_LISTEN]
    assert (stack.home / "postgres" / "data" / "PG_VERSION").exists()
    assert (stack.home / "lake" / "nycflights" / "raw" / "flights" / f"ds={DAY}").is_dir()

    t = time.perf_counter()
    done = stack.run("up")
    up_s = time.perf_counter() - t
    assert done.returncode == 0, done.stdout + done.stderr + logs(stack.home)
    assert "migrated" not in done.stdout  # resumed: the same database
    assert not [pw for _, pw in printed_logins(stack.up_output).values() if pw in done.stdout], "logins printed twice"
    status = stack.run("status", timeout=120)
    assert status.returncode == 0, status.stdout
    # The metadata database kept the run, the lake its day, MLflow its experiment and accounts.
    assert re.search(r"ingest_flights\s+paused\s+\w+\s+scheduled__2013-01-", status.stdout), status.stdout
    assert re.search(rf"nycflights/raw/flights\s+{DAY}", status.stdout), status.stdout
    assert airflow_headers(stack)
    assert stack.sample_sockets() and not [s for s in stack.sockets if not is_loopback(s[0])]
    print(f"\nmake down took {down_s:.1f}s, make up (resume) {up_s:.1f}s; sockets seen: "
          f"{sorted({(ip, port, name) for ip, port, _, name in stack.sockets})}")
