"""Site DAGs, shard 7 of the sites file's (see sites.py)."""

from sitewatch.airflow.factory import site_dags

globals().update(site_dags(shard=7))
