"""The "Sites" dashboard shown inside the Airflow UI.

``storage.queries`` reads ``site_checks`` (with ``storage.verdicts``, ``storage.mutes`` and
``storage.slo``), ``status`` turns rows into what a person reads (up/down/partial/stale/
maintenance, uptimes, budgets), ``render`` writes the HTML and the inline SVG chart,
``locations`` the cells and run matrix of a site checked from several locations,
``maintenance`` the maintenance badge and a site's windows, ``budget`` the error budget's cells,
SLO section and chart, ``report`` the monthly SLA report, all on ``html``'s primitives;
``sitewatch.web.app`` is the FastAPI app, behind Airflow's own login, that
``plugins/sitewatch_dashboard.py`` mounts. Nothing here imports Airflow.
"""
