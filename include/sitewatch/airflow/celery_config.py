"""The Celery workers' configuration: Airflow's own, with sitewatch imported before the pool forks.

A check from a location other than the default one is a Celery task, and Airflow runs each task
in a process forked from the worker's pool process, which imports what the task uses: the task
runner, the factory, the probe and the Kafka producer. Airflow itself preloads a few modules for
that (``on_celery_import_modules`` in its Celery executor, on Celery's ``import_modules``
signal); this module adds sitewatch's, the same list the LocalExecutor's forkserver imports
(``sitewatch.airflow.preload``), on the same signal, so every pool process and every task
inherits them. Point Airflow at it with::

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=sitewatch.airflow.celery_config.CELERY_CONFIG

(``scripts/dev.sh`` and docker-compose.yaml set it.) ``CELERY_CONFIG`` is Airflow's default
configuration unchanged; importing this module elsewhere (the scheduler builds the same Celery
app to send tasks) only registers the handler, which Celery calls in workers alone.
"""

from __future__ import annotations

import logging

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

log = logging.getLogger(__name__)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@import_modules.connect
def preload_sitewatch(*args, **kwargs) -> None:
    """Import ``sitewatch.airflow.preload`` in the worker before its pool forks. Never raises: a
    failure is logged and each task imports what it needs, as without this module."""
    try:
        import sitewatch.airflow.preload  # noqa: F401
    except Exception:  # noqa: BLE001 - the tasks import for themselves
        log.exception("celery_config: could not preload sitewatch; each task imports it")
