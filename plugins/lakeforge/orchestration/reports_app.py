"""The lake's evidence in the browser: quality and drift reports served by Airflow's api-server.

A quality gate's report lives in the lake (``quality/<table>/ds=.../report.html``), which a
browser cannot open from an Airflow page: ``file://`` links are blocked and ``hdfs://`` is not a
web address. This FastAPI app, mounted by the ``lakeforge_ui`` Airflow plugin at ``/lakeforge``,
reads them through the lake (``pyarrow.fs``, local or HDFS) and serves them to signed-in users
only: every route resolves the Airflow session (the UI's cookie, or a bearer token) as the REST
API does, so the reports are as private as the UI.

    /lakeforge/                                     every pipeline's reports
    /lakeforge/quality/<source>                     the quality_summary view, each day linked
    /lakeforge/quality/<source>/<layer>/<table>/<ds>  one partition's report
    /lakeforge/drift/<source>                       the monitored days, each linked
    /lakeforge/drift/<source>/<ds>                  one day's drift report
    /lakeforge/model/<name>                         the registered model in MLflow's UI (redirect)

DAG docs link here (``dag_links``), and the plugin adds "Quality reports" to the UI's menu.
"""

from __future__ import annotations

import html
import re
from typing import Any

MOUNT = "/lakeforge"
_TABLE = re.compile(r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.passed{background:#e6f4ea}"
          ".warned{background:#fef7e0}.failed{background:#fce8e6}")


def dag_links(source_name: str, model_name: str | None = None) -> str:
    """Markdown for a DAG's ``doc_md``: the source's quality (and drift) reports and, when given,
    the model in MLflow, as links a browser opens from the Airflow UI (same host)."""
    links = [f"[Quality reports]({MOUNT}/quality/{source_name})", f"[Drift reports]({MOUNT}/drift/{source_name})"]
    if model_name:
        links.append(f"[Model `{model_name}` in MLflow]({MOUNT}/model/{model_name})")
    return "**Evidence:** " + " · ".join(links) + " (signed-in users)."


def mlflow_ui_url(model_name: str, tracking_uri: str | None = None) -> str | None:
    """The registered model's page in MLflow's UI, or None where MLflow has no server (SQLite)."""
    from lakeforge.settings import get_settings

    uri = (tracking_uri or get_settings().mlflow_tracking_uri).rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri}/#/models/{model_name}"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def quality_index(summary: dict[str, Any], source_name: str) -> str:
    """The quality_summary view as a page: per table, each day's status and why, linked to its report."""
    esc, parts = html.escape, []
    tables = summary.get("tables", {})
    for table in sorted(tables):
        rows = "".join(
            f"<tr class='{esc(r['status'])}'><td><a href='{MOUNT}/quality/{esc(source_name)}/{esc(table)}/{esc(ds)}'>"
            f"{esc(ds)}</a></td><td>{esc(r['status'])}</td><td>{esc('; '.join(r.get('why') or []))}</td>"
            f"<td>{esc(str(r.get('run_id')))}</td></tr>"
            for ds, r in sorted(tables[table].items(), reverse=True))
        parts.append(f"<h2>{esc(table)}</h2><table><tr><th>day</th><th>status</th><th>why</th><th>run</th></tr>"
                     f"{rows}</table>")
    updated = summary.get("updated_at")
    head = f"<p>Latest verdict per partition{f', updated {esc(updated)}' if updated else ''}.</p>"
    return _page(f"Quality: {source_name}", head + ("".join(parts) or "<p>No validations yet.</p>"))


def drift_index(days: list[str], source_name: str) -> str:
    items = "".join(f"<li><a href='{MOUNT}/drift/{html.escape(source_name)}/{d}'>{d}</a></li>"
                    for d in sorted(days, reverse=True))
    return _page(f"Drift: {source_name}", f"<ul>{items}</ul>" if items else "<p>No monitored days yet.</p>")


def create_app():
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, RedirectResponse

    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="lakeforge reports", dependencies=[Depends(get_user)])

    def lake_of(source_name: str):
        from lakeforge.lake import source_lake
        from lakeforge.sources import get_source

        try:
            get_source(source_name)
        except (LookupError, ImportError, ValueError) as exc:
            raise HTTPException(404, f"no pipeline declares source {source_name!r}") from exc
        return source_lake(source_name)

    def found(data: bytes | None, what: str) -> HTMLResponse:
        if data is None:
            raise HTTPException(404, f"{what}: not in the lake")
        return HTMLResponse(data.decode())

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        from lakeforge.sources import pipeline_folders

        items = "".join(f"<li>{html.escape(n)}: <a href='{MOUNT}/quality/{html.escape(n)}'>quality</a> · "
                        f"<a href='{MOUNT}/drift/{html.escape(n)}'>drift</a></li>" for n in sorted(pipeline_folders()))
        return _page("lakeforge reports", f"<ul>{items}</ul>")

    @app.get("/quality/{source_name}", response_class=HTMLResponse)
    def quality(source_name: str) -> str:
        from lakeforge.quality.evidence import read_summary

        return quality_index(read_summary(lake_of(source_name)), source_name)

    @app.get("/quality/{source_name}/{layer}/{table}/{ds}", response_class=HTMLResponse)
    def quality_report(source_name: str, layer: str, table: str, ds: str) -> HTMLResponse:
        from lakeforge.monitoring.store import read_day_file
        from lakeforge.quality.evidence import QUALITY

        if not _TABLE.match(f"{layer}/{table}") or not _DAY.match(ds):
            raise HTTPException(404, "no such report")
        return found(read_day_file(lake_of(source_name), f"{QUALITY}/{layer}/{table}", ds, "report.html"),
                     f"quality report of {layer}/{table} ds={ds}")

    @app.get("/drift/{source_name}", response_class=HTMLResponse)
    def drift(source_name: str) -> str:
        from lakeforge.monitoring.store import DRIFT, published_days

        return drift_index(published_days(lake_of(source_name), DRIFT), source_name)

    @app.get("/drift/{source_name}/{ds}", response_class=HTMLResponse)
    def drift_report(source_name: str, ds: str) -> HTMLResponse:
        from lakeforge.monitoring.drift import REPORT_HTML
        from lakeforge.monitoring.store import DRIFT, read_day_file

        if not _DAY.match(ds):
            raise HTTPException(404, "no such report")
        return found(read_day_file(lake_of(source_name), DRIFT, ds, REPORT_HTML), f"drift report of {ds}")

    @app.get("/model/{name}")
    def model(name: str) -> RedirectResponse:
        url = mlflow_ui_url(name) if _NAME.match(name) else None
        if url is None:
            raise HTTPException(404, "MLflow has no UI server here (its tracking URI is not http): "
                                     "`make up` starts one; `make status` prints its address")
        return RedirectResponse(url, status_code=307)

    return app
