"""tools/audit-deps passes only when every pinned package was checked: a vulnerability service that
skipped everything (pip-audit here: "No known vulnerabilities found"), a missing, empty or stale
database, all fail with exit 2, never 0."""

import datetime as dt
import json
import subprocess
import sys
import zipfile

import pytest

from lakeforge.settings import PROJECT_ROOT

TOOL = PROJECT_ROOT / "tools" / "audit-deps"
LOCK = "# generated\nalpha==1.0\n    # via beta\nbeta-pkg==2.1.0\ngamma==0.3\n"


def run(tmp_path, *args):
    req = tmp_path / "requirements.txt"
    if not req.exists():
        req.write_text(LOCK)
    return subprocess.run([sys.executable, str(TOOL), "-r", str(req), *args], capture_output=True, text=True,
                          timeout=120)


def fake_pip_audit(tmp_path, deps) -> str:
    script = tmp_path / "pip-audit"
    script.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({{'dependencies': {deps!r}}}))\n")
    script.chmod(0o755)
    return str(script)


def checked(name, version, vulns=()):
    return {"name": name, "version": version, "vulns": [{"id": v} for v in vulns]}


def skipped(name, version):
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


def test_refuses_to_pass_when_the_service_skipped_every_package(tmp_path):
    """What pip-audit reports on this machine, exit 0 and "No known vulnerabilities found"."""
    deps = [skipped("alpha", "1.0"), skipped("beta-pkg", "2.1.0"), skipped("gamma", "0.3")]
    out = run(tmp_path, "--pip-audit", fake_pip_audit(tmp_path, deps))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "NOT CHECKED: checked 0 of 3" in out.stderr
    assert "pip-audit --strict" in out.stderr  # what to run where the service is reachable


def test_refuses_to_pass_when_some_packages_were_skipped_or_missing(tmp_path):
    deps = [checked("alpha", "1.0"), skipped("beta_pkg", "2.1.0")]  # gamma not reported at all
    out = run(tmp_path, "--pip-audit", fake_pip_audit(tmp_path, deps))
    assert out.returncode == 2 and "checked 1 of 3" in out.stderr


def test_passes_only_when_all_were_checked_and_reports_findings(tmp_path):
    clean = [checked("alpha", "1.0"), checked("Beta.Pkg", "2.1.0"), checked("gamma", "0.3")]
    out = run(tmp_path, "--pip-audit", fake_pip_audit(tmp_path, clean))
    assert out.returncode == 0 and "checked 3 of 3" in out.stdout, out.stderr
    bad = [checked("alpha", "1.0", ["PYSEC-1"]), checked("beta-pkg", "2.1.0"), checked("gamma", "0.3")]
    out = run(tmp_path, "--pip-audit", fake_pip_audit(tmp_path, bad))
    assert out.returncode == 1 and "alpha==1.0: PYSEC-1" in out.stdout


def test_refuses_without_pip_audit_or_with_an_unusable_report(tmp_path):
    out = run(tmp_path, "--pip-audit", str(tmp_path / "no-such-pip-audit"))
    assert out.returncode == 2 and "NOT CHECKED" in out.stderr
    (tmp_path / "report.json").write_text("No known vulnerabilities found\n")
    out = run(tmp_path, "--pip-audit-report", str(tmp_path / "report.json"))
    assert out.returncode == 2 and "unreadable pip-audit report" in out.stderr


def osv_zip(tmp_path, modified: dt.datetime, entries=None):
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = entries if entries is not None else [
        {"id": "PYSEC-A", "modified": stamp, "affected": [{"package": {"ecosystem": "PyPI", "name": "Beta_Pkg"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"fixed": "2.1.1"}]}]}]},
        {"id": "PYSEC-B", "modified": stamp, "affected": [{"package": {"ecosystem": "PyPI", "name": "gamma"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.3"}]}]}]},
        {"id": "GHSA-C", "modified": stamp, "affected": [{"package": {"ecosystem": "PyPI", "name": "alpha"},
         "versions": ["0.9"]}]},
    ]
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as z:
        for e in entries:
            z.writestr(f"{e['id']}.json", json.dumps(e))
    return path


def test_osv_dump_finds_what_is_in_range_and_prints_its_date(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    out = run(tmp_path, "--osv-db", str(osv_zip(tmp_path, now - dt.timedelta(days=1))))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "beta-pkg==2.1.0: PYSEC-A" in out.stdout  # in [2.0, 2.1.1)
    assert "gamma" not in out.stdout.split("OSV database")[1].split("\n", 1)[1]  # fixed in 0.3
    assert f"newest modified {now - dt.timedelta(days=1):%Y-%m-%d}" in out.stdout


@pytest.mark.parametrize("case", ["stale", "empty", "missing", "not-osv"])
def test_osv_dump_refuses_what_cannot_vouch_for_the_lock(tmp_path, case):
    if case == "stale":
        db = osv_zip(tmp_path, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    elif case == "empty":
        db = osv_zip(tmp_path, dt.datetime.now(dt.timezone.utc), entries=[])
    elif case == "missing":
        db = tmp_path / "absent.zip"
    else:
        db = tmp_path / "insecure_full.json"  # e.g. safety-db's 2021 file: not an OSV dump
        db.write_text("{}")
    out = run(tmp_path, "--osv-db", str(db))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "NOT CHECKED" in out.stderr
    if case == "stale":
        assert "30 days old" in out.stderr and "newest modified" in out.stdout


def test_an_unpinned_lock_is_not_checked(tmp_path):
    (tmp_path / "requirements.txt").write_text("alpha>=1.0\n")
    out = run(tmp_path, "--pip-audit", fake_pip_audit(tmp_path, []))
    assert out.returncode == 2 and "not pinned" in out.stderr
