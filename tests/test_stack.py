"""`make up` / `make status` / `make down` as a person uses them (``python -m lakeforge.stack``), against
a stack started ONCE for the module in a fresh LAKEFORGE_HOME: PostgreSQL, MLflow with its logins and
Airflow's four services.

- every listening socket of every process the stack started (children included, task processes and
  their Spark JVMs sampled while runs execute) is on loopback;
- the logins are generated, printed once, kept in 0600 files; the historical defaults are refused;
  no service gets another's secrets;
- the days through the scheduler: four days (2013-01-01..04, the fewest that train a real model)
  delivered with the documented command are ingested (ingest_flights, unpaused through the REST API,
  its runs started by the delivery watcher on the triggerer) and transformed (transform_flights);
- a browser (Playwright driving Debian's Chromium) logs in to Airflow with the printed credentials,
  triggers train_delay_model from its form (three training days, one holdout day, LightGBM, one
  search trial; "unpause on trigger" ticked) and watches the run turn Success, task by task; the new
  champion's event runs score_flights; every DAG's last run is green in the DAG list (and in its
  "Last run: Success" filter); the asset graph shows the DAGs and assets, and the model asset's event
  from our run's publish_champion that triggered score_flights; the lake's quality reports; in MLflow
  (viewer login) the experiment in the model-training view, then ``flight_delay`` version 1 with the
  alias ``champion`` and its one-line decision. Screenshots in the test's tmp_path (printed);
- status reports each service (a killed one as down), each DAG's last run, the newest day per layer and
  the champion; down stops everything by PID and keeps the data; a second up resumes it.
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
# The fewest days that train a real model: three training days (the last one scores the search's
# trial) and a holdout day (lakeforge.training.split); 2013-01-05 would be a poor holdout (half the
# training days' delay rate: the calibration guard rejects any model).
DAYS = ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04")
# The trigger form's values: that window, LightGBM (the default family) and one search trial.
TRAIN_FORM = {"end": DAYS[-1], "window_days": 3, "holdout_days": 1, "validation_days": 1, "model_family": "lightgbm",
              "search_budget": 1, "search_parallelism": 1}
DAGS = ("ingest_flights", "score_flights", "train_delay_model", "transform_flights")
# The second pipeline, in the same Airflow (its DAG folder is a bundle of its own) and lake: two
# months delivered, ingested and transformed; its training runs on the features' events and trains
# nothing yet (too few new partitions), which is a green run that says why.
SEATTLE_DAGS = ("ingest_seattle_weather", "score_seattle_weather", "train_seattle_weather", "transform_seattle_weather")
SEATTLE_MONTHS = ("2012-01-01", "2012-02-01")
SCREENSHOTS = ("airflow-train-trigger-form.png", "airflow-train-run.png", "airflow-dags.png", "airflow-asset-graph.png",
               "airflow-ingest-runs.png", "airflow-quality-reports.png", "mlflow-experiment.png", "mlflow-model.png",
               "mlflow-champion-version.png")
RUN_TIMEOUT_S = 300
TRANSFORM_TIMEOUT_S = 420
TRAIN_TIMEOUT_S = 600
SCORE_TIMEOUT_S = 420


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


def dag_runs(s: Stack, dag: str, headers: dict[str, str]) -> list[dict]:
    code, body = request(f"{s.airflow}/api/v2/dags/{dag}/dagRuns?limit=100&order_by=run_after", headers=headers)
    assert code == 200, body
    return body["dag_runs"]


def set_paused(s: Stack, dag: str, paused: bool, headers: dict[str, str]) -> None:
    code, body = request(f"{s.airflow}/api/v2/dags/{dag}", data={"is_paused": paused}, method="PATCH", headers=headers)
    assert code == 200, body


def wait_until(s: Stack, what: str, done, timeout: float = RUN_TIMEOUT_S, every: float = 3):
    """Poll ``done()`` (a truthy value ends the wait), sampling the stack's sockets meanwhile (the
    task processes and their Spark JVMs too, while they run)."""
    deadline = time.monotonic() + timeout
    while True:
        s.sample_sockets()
        result = done()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}:\n{logs(s.home)}"
        time.sleep(every)


def settled(s: Stack, dag: str, headers: dict[str, str]) -> list[dict] | None:
    """The DAG's runs once none is queued or running; a failed one fails the test."""
    runs = dag_runs(s, dag, headers)
    failed = [(r["dag_run_id"], r.get("note")) for r in runs if r["state"] == "failed"]
    assert not failed, f"{dag}: failed runs {failed}:\n{logs(s.home)}"
    return None if any(r["state"] in ("queued", "running") for r in runs) else runs


def ingest_delivered(stack: Stack, dag: str, source: str, days, headers: dict[str, str]) -> None:
    """Wait until the runs the delivery watcher started have put every delivered day of ``source``
    in raw and all succeeded, then pause the DAG (no run of it comes after: the status tests read
    its last run)."""
    from lakeforge.sources import get_source

    raw = stack.home / "lake" / source / "raw"
    tables = [t.name for t in get_source(source).daily_tables]

    def ingested():
        runs = dag_runs(stack, dag, headers)
        bad = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not bad, f"{dag} runs failed: {bad}:\n{logs(stack.home)}"
        return (runs and all(r["state"] == "success" for r in runs)
                and all((raw / t / f"ds={d}").is_dir() for t in tables for d in days))

    try:
        wait_until(stack, f"the {dag} runs of {days[0]}..{days[-1]}", ingested)
    finally:
        set_paused(stack, dag, True, headers)


def test_delivered_days_flow_and_the_browser_trains_the_champion(stack, tmp_path):
    t0 = time.monotonic()
    delivered = subprocess.run([str(Path(sys.executable).with_name("lakeforge-simulate")), "--start", DAYS[0],
                                "--end", DAYS[-1]], env=stack.env, capture_output=True, text=True, timeout=120)
    assert delivered.returncode == 0, delivered.stderr
    delivered = subprocess.run([sys.executable, "-m", "lakeforge.pipelines.seattle_weather.simulator", "--start",
                                SEATTLE_MONTHS[0], "--end", SEATTLE_MONTHS[-1]], env=stack.env, capture_output=True,
                               text=True, timeout=120)
    assert delivered.returncode == 0, delivered.stderr
    headers = airflow_headers(stack)
    for dag in ("transform_flights", "ingest_flights", *SEATTLE_DAGS):
        set_paused(stack, dag, False, headers)

    ingest_delivered(stack, "ingest_flights", "nycflights", DAYS, headers)
    for day in DAYS:
        assert (stack.home / "lake" / "nycflights" / "raw" / "flights" / f"ds={day}").is_dir()
    t_ingest = time.monotonic() - t0
    ingest_delivered(stack, "ingest_seattle_weather", "seattle_weather", SEATTLE_MONTHS, headers)

    # transform_flights follows the raw assets: every delivered day gets its features.
    features = stack.home / "lake" / "nycflights" / "features" / "flights"
    wait_until(stack, "the transform runs", lambda: settled(stack, "transform_flights", headers)
               and all((features / f"ds={d}").is_dir() for d in DAYS), timeout=TRANSFORM_TIMEOUT_S)
    t_transform = time.monotonic() - t0
    # Batch scoring follows the champion: unpaused now, its first run is the new champion's.
    set_paused(stack, "score_flights", False, headers)
    wide = [s for s in stack.sockets if not is_loopback(s[0])]
    assert not wide, f"sockets bound beyond loopback while tasks ran: {wide}"

    browse(stack, tmp_path, headers)
    print(f"\ningested in {t_ingest:.0f}s, transformed at +{t_transform:.0f}s, trained, scored and seen in "
          f"the browser at +{time.monotonic() - t0:.0f}s; screenshots in {tmp_path}")


def chromium() -> str:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("Chromium is not installed: run tools/bootstrap-system.sh (Debian's chromium)")


def airflow_login(page, s: Stack, user: str, password: str) -> None:
    page.goto(s.airflow)
    page.wait_for_url("**/auth/login**")
    page.locator("input[name=username], input:not([type=password])").first.fill(user)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{s.airflow}/")  # signed in: back on the home page


def trigger_training(page, s: Stack, shots: Path) -> str:
    """Trigger train_delay_model from its form with a small window and search; the run's id."""
    from playwright.sync_api import expect

    page.goto(f"{s.airflow}/dags/train_delay_model")
    page.get_by_test_id("trigger-dag-button").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Run Parameters")).to_be_visible()
    form.locator("input[name=element_end]").fill(TRAIN_FORM["end"])  # the "Last day" date field
    for label, key in (("Training window (days)", "window_days"), ("Holdout (days)", "holdout_days"),
                       ("Validation (days)", "validation_days"), ("Search budget", "search_budget"),
                       ("Parallel trials", "search_parallelism")):
        form.get_by_label(label).fill(str(TRAIN_FORM[key]))
    expect(form.locator("input[name=element_model_family]")).to_have_value(TRAIN_FORM["model_family"])
    expect(form.get_by_label("Unpause train_delay_model on trigger")).to_be_checked()  # it starts paused
    page.screenshot(path=shots / "airflow-train-trigger-form.png", full_page=True)
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url("**/dags/train_delay_model/runs/manual__*")  # the UI opens the new run
    return page.url.rsplit("/runs/", 1)[1]


def browse(stack: Stack, shots: Path, headers: dict[str, str]) -> None:
    """Log in as a person does, with what up printed; trigger the training from its form and watch
    it; assert on what the pages show."""
    from urllib.parse import unquote

    from playwright.sync_api import expect, sync_playwright

    logins = printed_logins(stack.up_output)
    code, body = request(f"{stack.airflow}/api/v2/dags?limit=100", headers=headers)
    dags = sorted(d["dag_id"] for d in body["dags"])
    assert dags == sorted((*DAGS, *SEATTLE_DAGS)), dags
    mlflow_url = re.search(r"MLflow\s+(\S+)", stack.up_output).group(1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium())
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            airflow_login(page, stack, *logins["airflow"])

            # train_delay_model from its trigger form; the run page turns Success.
            t0 = time.monotonic()
            run_id = unquote(trigger_training(page, stack, shots))
            header = page.get_by_test_id("header-card")
            expect(header.get_by_text(run_id)).to_be_visible()

            def run_ended():
                state = header.get_by_test_id("state-badge").inner_text().strip()
                if state in ("Failed", "Upstream Failed"):
                    page.screenshot(path=shots / "airflow-train-run.png", full_page=True)
                    raise AssertionError(f"train_delay_model {run_id} is {state}:\n{logs(stack.home)}")
                if state != "Success":
                    page.reload()  # the page refreshes itself too; a reload is certain
                    header.get_by_test_id("state-badge").wait_for()
                return state == "Success"

            wait_until(stack, f"train_delay_model {run_id} to succeed in the UI", run_ended,
                       timeout=TRAIN_TIMEOUT_S, every=5)
            trained_s = time.monotonic() - t0
            expect(header.get_by_text("Manual", exact=True)).to_be_visible()
            # The run's note: the window it trained on (the lakeforge_run_notes listener writes it as
            # the run ends, a moment after the state: reloaded until it shows).
            note = page.get_by_text(f"{TRAIN_FORM['model_family']} on {DAYS[0]}..{DAYS[-2]}, holdout "
                                    f"{DAYS[-1]}..{DAYS[-1]}: ")

            def note_shown():
                if note.is_visible():
                    return True
                page.reload()
                header.get_by_test_id("state-badge").wait_for()
                return False

            wait_until(stack, f"the note of {run_id}", note_shown, timeout=60, every=3)
            for task in ("plan_training", "anything_to_train", "train_and_register", "publish_champion"):
                row = page.get_by_role("row").filter(has=page.get_by_role("link", name=task, exact=True))
                expect(row.get_by_test_id("state-badge")).to_have_text("Success")
            page.screenshot(path=shots / "airflow-train-run.png", full_page=True)

            # The champion event schedules score_flights; when every DAG has settled, each one's
            # last run is green in the DAG list.
            wait_until(stack, "score_flights on the new champion", lambda: (
                runs := settled(stack, "score_flights", headers)) and any(r["state"] == "success" for r in runs),
                timeout=SCORE_TIMEOUT_S)
            scored_s = time.monotonic() - t0
            for dag in (*DAGS, *SEATTLE_DAGS):
                wait_until(stack, f"{dag}'s runs to settle", lambda: settled(stack, dag, headers))
            # seattle_weather's months went through its own DAGs into its own namespace of the lake.
            for month in SEATTLE_MONTHS:
                assert (stack.home / "lake" / "seattle_weather" / "features" / "weather" / f"ds={month}").is_dir()
            page.goto(f"{stack.airflow}/dags")
            expect(page.get_by_text(f"{len(dags)} Dags")).to_be_visible()
            for dag in dags:
                latest = page.get_by_test_id("latest-run").filter(has=page.locator(f"a[href^='/dags/{dag}/runs/']"))
                expect(latest.get_by_test_id("state-badge")).to_have_attribute("aria-label", "success")
            page.screenshot(path=shots / "airflow-dags.png", full_page=True)
            page.goto(f"{stack.airflow}/dags?last_dag_run_state=success")  # the list's "Last run: Success" filter
            expect(page.get_by_text(f"{len(dags)} Dags")).to_be_visible()
            for dag in dags:
                expect(page.get_by_role("link", name=dag, exact=True)).to_be_visible()

            # The asset graph, from the model's asset: the DAGs and the assets between them, and
            # the event that the training run emitted, which triggered score_flights.
            page.goto(f"{stack.airflow}/assets")
            page.get_by_role("link", name="models.flight_delay", exact=True).click()
            graph = page.locator(".react-flow")
            for node in (*DAGS, "nycflights.raw.flights", "nycflights.features.flights", "models.flight_delay",
                         "nycflights.predictions.flights"):
                expect(graph.get_by_text(node, exact=True)).to_be_visible()
            event = page.get_by_test_id("card-list")  # the asset's events: ours, from publish_champion
            expect(event.get_by_role("link", name="train_delay_model", exact=True)).to_have_attribute(
                "href", f"/dags/train_delay_model/runs/{run_id}/tasks/publish_champion")
            expect(event.get_by_text("Triggered Dag Run")).to_be_visible()
            expect(event.get_by_role("link", name="score_flights", exact=True)).to_be_visible()
            page.screenshot(path=shots / "airflow-asset-graph.png", full_page=True)

            page.goto(f"{stack.airflow}/dags/ingest_flights/runs")
            row = page.get_by_role("row").filter(has_text=dag_runs(stack, "ingest_flights", headers)[-1]["dag_run_id"])
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
            # The registered model: version 1 carries the champion alias, its description says why.
            mlflow.goto(mlflow_url.split("/#/")[0] + "/#/models/flight_delay")
            expect(mlflow.get_by_role("heading", name="flight_delay")).to_be_visible()
            version = mlflow.get_by_role("row").filter(has=mlflow.get_by_role("link", name="Version 1"))
            expect(version.get_by_text(re.compile(r"^@\s*champion$"))).to_be_visible()
            mlflow.screenshot(path=shots / "mlflow-model.png", full_page=True)
            version.get_by_role("link", name="Version 1").click()
            expect(mlflow.get_by_text(re.compile(r"^@\s*champion$")).first).to_be_visible()
            expect(mlflow.get_by_text(re.compile(r"^Promoted to champion \(first model\): holdout ROC AUC 0\.\d{4} "
                                                 r"vs the trivial baseline"))).to_be_visible()
            mlflow.screenshot(path=shots / "mlflow-champion-version.png", full_page=True)
        finally:
            browser.close()
    code, _ = request(f"{stack.airflow}/lakeforge/quality/nycflights")  # no session: refused
    assert code == 401
    for name in SCREENSHOTS:
        assert (shots / name).stat().st_size > 10_000, name
    print(f"\ntrain_delay_model triggered from the form: Success in the UI after {trained_s:.0f}s, score_flights "
          f"done at +{scored_s:.0f}s, the pages seen at +{time.monotonic() - t0:.0f}s")


def test_status_reports_each_service_and_a_killed_one(stack):
    done = stack.run("status", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("postgres", "mlflow", "api-server", "dag-processor", "scheduler", "triggerer"):
        assert re.search(rf"^\s+{name}\s+up \(pid \d+\)", done.stdout, re.M), done.stdout
    # Each DAG's last run, with its note: the ingest run started by the deliveries names their days,
    # the others green too.
    code, runs = request(f"{stack.airflow}/api/v2/dags/ingest_flights/dagRuns?limit=1&order_by=-run_after",
                         headers=airflow_headers(stack))
    newest = runs["dag_runs"][0]
    assert newest["dag_run_id"].startswith("asset_triggered__") and DAYS[-1] in newest["note"], newest
    assert re.search(rf"ingest_flights\s+paused\s+success\s+{re.escape(newest['dag_run_id'])}\s+"
                     rf"\(ended [^)]+\): ingested .*{DAYS[-1]}", done.stdout), (newest, done.stdout)
    for dag in ("score_flights", "train_delay_model", "transform_flights"):
        assert re.search(rf"^\s+{dag}\s+active\s+success\s", done.stdout, re.M), done.stdout
    for table in ("raw/flights", "features/flights", "predictions/flights"):
        assert re.search(rf"nycflights/{table}\s+{DAYS[-1]} \({len(DAYS)} days\)", done.stdout), done.stdout
    assert re.search(r"flight_delay@champion = version 1 \(run \w+\)", done.stdout), done.stdout
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
    assert (stack.home / "lake" / "nycflights" / "raw" / "flights" / f"ds={DAYS[-1]}").is_dir()

    t = time.perf_counter()
    done = stack.run("up")
    up_s = time.perf_counter() - t
    assert done.returncode == 0, done.stdout + done.stderr + logs(stack.home)
    assert "migrated" not in done.stdout  # resumed: the same database
    assert not [pw for _, pw in printed_logins(stack.up_output).values() if pw in done.stdout], "logins printed twice"
    status = stack.run("status", timeout=120)
    assert status.returncode == 0, status.stdout
    # The metadata database kept the runs, the lake its days, MLflow its accounts and the champion.
    assert re.search(r"ingest_flights\s+paused\s+success\s+asset_triggered__", status.stdout), status.stdout
    assert re.search(rf"nycflights/raw/flights\s+{DAYS[-1]}", status.stdout), status.stdout
    assert "flight_delay@champion = version 1 " in status.stdout, status.stdout
    assert airflow_headers(stack)
    assert stack.sample_sockets() and not [s for s in stack.sockets if not is_loopback(s[0])]
    print(f"\nmake down took {down_s:.1f}s, make up (resume) {up_s:.1f}s; sockets seen: "
          f"{sorted({(ip, port, name) for ip, port, _, name in stack.sockets})}")
