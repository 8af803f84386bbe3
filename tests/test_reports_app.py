"""The lake's reports over HTTP (lakeforge.orchestration.reports_app): signed-in users only, read
through the lake, nothing outside a report's own partition reachable. The browser test in
tests/test_stack.py opens the same app in the real api-server."""

import pytest
from fastapi.testclient import TestClient

from lakeforge.lake import source_lake
from lakeforge.orchestration import reports_app
from lakeforge.publish import PartitionFile, publish_partition
from lakeforge.quality.evidence import update_summary

SOURCE = "nycflights"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEFORGE_LAKE_ROOT", f"file://{tmp_path}/lake")
    lake = source_lake(SOURCE)
    record = {"table": "clean/flights", "ds": "2013-01-02", "status": "failed", "failed": ["<b>rows</b> 0 < 900"],
              "warnings": [], "run_id": "scheduled__x", "validated_at": "2026-12-05T00:00:00+00:00", "evidence": "x"}
    publish_partition(lake, "quality/clean/flights", "ds=2013-01-02",
                      [PartitionFile("report.html", b"<html>the clean/flights report</html>")])
    update_summary(lake, [record])
    (tmp_path / "lake" / "secret.txt").write_text("not a report")
    return lake


def client(signed_in: bool) -> TestClient:
    app = reports_app.create_app()
    if signed_in:
        from airflow.api_fastapi.core_api.security import get_user

        app.dependency_overrides[get_user] = lambda: object()
    return TestClient(app)


def test_anonymous_requests_are_refused(lake):
    for path in ("/", f"/quality/{SOURCE}", f"/quality/{SOURCE}/clean/flights/2013-01-02", "/model/flight_delay"):
        assert client(False).get(path).status_code == 401, path


def test_the_summary_links_each_day_to_its_report_escaped(lake):
    c = client(True)
    index = c.get(f"/quality/{SOURCE}")
    assert index.status_code == 200
    assert f"href='/lakeforge/quality/{SOURCE}/clean/flights/2013-01-02'" in index.text
    assert "&lt;b&gt;rows&lt;/b&gt; 0 &lt; 900" in index.text and "<b>rows" not in index.text
    report = c.get(f"/quality/{SOURCE}/clean/flights/2013-01-02")
    assert report.status_code == 200 and "the clean/flights report" in report.text
    assert SOURCE in c.get("/").text


@pytest.mark.parametrize("path", [
    f"/quality/{SOURCE}/clean/flights/2013-01-03",          # not validated
    f"/quality/{SOURCE}/clean/flights/..%2F..%2Fsecret.txt",  # not a day
    f"/quality/{SOURCE}/..%2F../flights/2013-01-02",        # not a table
    "/quality/no_such_source",
    f"/drift/{SOURCE}/2013-01-02",
])
def test_anything_but_a_published_report_is_not_found(lake, path):
    response = client(True).get(path)
    assert response.status_code == 404 and "not a report" not in response.text


def test_the_model_link_goes_to_mlflows_ui_only_where_there_is_one(lake, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    assert client(True).get("/model/flight_delay").status_code == 404
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999/")
    response = client(True).get("/model/flight_delay", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "http://127.0.0.1:5999/#/models/flight_delay"
    assert "(/lakeforge/model/flight_delay)" in reports_app.dag_links(SOURCE, "flight_delay")
