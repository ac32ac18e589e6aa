"""Airflow plugin: the "Sites" page (sitewatch's dashboard) in the Airflow UI's navigation.

The app lives in ``sitewatch.dashboard.web`` and enforces Airflow's login itself (plugin apps are
not authenticated by Airflow). The nav entry shows it in the UI's iframe at ``/plugin/sites``.
"""

from airflow.plugins_manager import AirflowPlugin

from sitewatch.dashboard.web import create_app

URL_PREFIX = "/sitewatch"


class SitewatchDashboardPlugin(AirflowPlugin):
    name = "sitewatch_dashboard"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "sitewatch dashboard"}]
    external_views = [
        {
            "name": "Sites",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "sites",
            "nav_top_level": True,
        }
    ]
