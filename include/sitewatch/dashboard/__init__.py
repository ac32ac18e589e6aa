"""The "Sites" dashboard shown inside the Airflow UI.

``storage.queries`` reads ``site_checks`` (the only SQL of the dashboard, with
``storage.verdicts.latest_verdicts``), ``status`` turns rows into what a person reads
(up/down/partial/stale, uptimes), ``render`` writes the HTML and the inline SVG chart,
``locations`` the cells and run matrix of a site checked from several locations, both on
``html``'s primitives; ``sitewatch.airflow.sites_page`` is the FastAPI app, behind Airflow's own
login, that ``plugins/sitewatch_dashboard.py`` mounts. Nothing here imports Airflow.
"""
