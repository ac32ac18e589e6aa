"""The web pages over storage: the Sites page, a site's page, the report download and
``/sitewatch/metrics``, one FastAPI app.

``app`` builds the app and its routes, ``metrics_page`` the scrape's auth and figures,
``slo_figures`` the SLO figures the pages show (this layer may import both the dashboard, which
draws them, and the alerting arithmetic that computes them). What only the serving platform
knows (login, permissions, connections, the UI's base path) comes in a ``host.Host``; Airflow's
is ``sitewatch.airflow.web_app``. Nothing here imports Airflow, and no other layer than this and
the Airflow glue imports a web framework.
"""
