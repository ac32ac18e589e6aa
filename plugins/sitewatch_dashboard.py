"""Airflow plugin: the "Sites" page (sitewatch's dashboard) in the Airflow UI's navigation.

The app lives in ``sitewatch.web.app``, built on Airflow's pieces by ``sitewatch.airflow.web_app``,
and enforces Airflow's login itself (plugin apps are not authenticated by Airflow). The nav entry
shows it in the UI's iframe at ``/plugin/sites``.

Every Airflow process loads this file, each task process included (to look for listeners), but
only the API server serves the app. So the app is built on its first request: importing FastAPI
and building the routes here cost each site check ~0.15 s of CPU for nothing.
"""

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/sitewatch"


class DashboardApp:
    """The ASGI app ``sitewatch.airflow.web_app.create_app()``, created when first called."""

    def __init__(self) -> None:
        self.app = None

    async def __call__(self, scope, receive, send) -> None:
        if self.app is None:
            from sitewatch.airflow.web_app import create_app

            self.app = create_app()
        await self.app(scope, receive, send)


class SitewatchDashboardPlugin(AirflowPlugin):
    name = "sitewatch_dashboard"
    fastapi_apps = [
        {"app": DashboardApp(), "url_prefix": URL_PREFIX, "name": "sitewatch dashboard"}
    ]
    external_views = [
        {
            "name": "Sites",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "sites",
            "nav_top_level": True,
        }
    ]
