"""Site DAGs for Airflow: one scheduled DAG ``site_<name>`` per entry of the sites file.

The sites file is ``include/sites.yaml`` unless ``SITEWATCH_SITES_FILE`` points elsewhere.
Invalid entries are skipped here and reported by ``sites_config_errors.py``. The sites are
spread over this file (shard 0) and ``sites_1.py`` to ``sites_7.py``, so that no parse writes
back every site at once (``sitewatch.airflow.factory``).
"""

from sitewatch.airflow.factory import site_dags

globals().update(site_dags(shard=0))
