"""Site DAGs for Airflow: one scheduled DAG ``site_<name>`` per entry of the sites file.

The sites file is ``include/sites.yaml`` unless ``SITEWATCH_SITES_FILE`` points elsewhere.
Invalid entries are skipped here and reported by ``sites_config_errors.py``.
"""

from sitewatch.airflow.factory import site_dags

globals().update(site_dags())
