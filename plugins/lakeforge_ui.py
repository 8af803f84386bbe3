"""Airflow plugin: the lake's quality and drift reports in the Airflow UI (``/lakeforge/``).

The app itself is ``lakeforge.orchestration.reports_app``; this file only registers it with the
api-server and adds a menu entry. Signed-in users only (the app checks Airflow's session).
"""

from airflow.plugins_manager import AirflowPlugin

from lakeforge.orchestration.reports_app import MOUNT, create_app


class LakeforgeUi(AirflowPlugin):
    name = "lakeforge_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": MOUNT, "name": "lakeforge reports"}]
    external_views = [{"name": "Quality & drift reports", "href": f"{MOUNT.lstrip('/')}/",
                       "destination": "nav", "category": "browse"}]
