"""Site DAGs, shard 3 of the sites file's (see sites.py)."""

from sitewatch.airflow.factory import site_dags

globals().update(site_dags(shard=3))
