"""The "Sites" dashboard shown inside the Airflow UI.

``queries`` reads ``site_checks`` (the only SQL of the dashboard), ``status`` turns rows into what a
person reads (up/down/stale, uptimes), ``render`` writes the HTML and the inline SVG chart, and
``web`` is the FastAPI app, behind Airflow's own login, that ``plugins/sitewatch_dashboard.py``
mounts. Only ``web`` imports Airflow.
"""
