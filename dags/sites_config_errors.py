"""Surfaces invalid entries of the sites file as an Airflow import error.

Airflow shows a file's import errors in the UI ("DAG Import Errors") and in ``airflow dags
list-import-errors``. This file raises when the sites file has problems, listing every one as
``file:line: sites[i].field: message``; the valid sites keep their DAGs, which live in
``sites.py``. When the sites file is valid this file defines nothing.
"""

from sitewatch.config.loader import cached_sites
from sitewatch.errors import ConfigError

_issues = cached_sites().issues
if _issues:
    raise ConfigError(_issues)
