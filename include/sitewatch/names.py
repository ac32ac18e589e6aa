"""The names people script against, each defined once (README, "User-facing contract").

Airflow connection ids, the Kafka topic and consumer groups, DAG ids and the defaults every
sitewatch DAG shares. Changing one breaks users' deployments and scripts: do it only with a README
note and a migration path. Nothing here imports anything of sitewatch or Airflow, so every layer
may use it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

KAFKA_CONN_ID = "sitewatch_kafka"
"""Airflow connection of type kafka; its extra is the librdkafka configuration."""
POSTGRES_CONN_ID = "sitewatch_postgres"
"""Airflow connection of type postgres: the results database (``sslmode`` etc. in its extra).

Its role owns the tables: the migrations (``create_tables``) and the maintenance DAG use it, and so
does every component whose narrower connection below is not defined. One connection therefore
keeps working alone; docs/docker.md ("Database roles") shows the split."""
POSTGRES_DRAIN_CONN_ID = "sitewatch_postgres_drain"
"""The drain's connection (role ``DRAIN_ROLE``); ``POSTGRES_CONN_ID`` when undefined."""
POSTGRES_ALERTING_CONN_ID = "sitewatch_postgres_alerting"
"""Alerting's connection, for the alert callbacks and the drain's verdicts (role
``ALERTING_ROLE``); ``POSTGRES_CONN_ID`` when undefined."""
POSTGRES_READER_CONN_ID = "sitewatch_postgres_reader"
"""The Sites page's connection (role ``READER_ROLE``); ``POSTGRES_CONN_ID`` when undefined."""

DRAIN_ROLE = "sitewatch_drain"
"""PostgreSQL role that may add checks, rejected messages and day partitions, nothing else."""
ALERTING_ROLE = "sitewatch_alerting"
"""PostgreSQL role that may read and write ``site_alert_state``, read ``site_checks`` and add
``site_verdicts`` (the drain's verdicts across locations), nothing else."""
READER_ROLE = "sitewatch_reader"
"""PostgreSQL role that may read what the Sites page shows (verdicts too), nothing else."""

TOPIC_ENV = "SITEWATCH_TOPIC"
DEFAULT_TOPIC = "sitewatch.checks"

DRAIN_GROUP = "sitewatch-drain"
"""The consumer group whose committed offsets say what is stored."""
SENSOR_GROUP = "sitewatch-drain-sensor"
"""The sensor's own group id: it reads where the drain stands and never commits."""

SITE_DAG_PREFIX = "site_"
PROBE_TASK_ID = "probe"
"""The probe task of a site checked from one location; with several, ``probe.<location>``."""

LOCAL_LOCATION = "local"
"""The location of a site that names none: Airflow's default queue, where the triggerer probes."""
LOCATION_QUEUE_PREFIX = "sitewatch-"
DEFAULT_QUEUE = "default"
"""Airflow's ``[operators] default_queue`` as shipped: where Celery workers of ``local`` listen."""
DRAIN_DAG_ID = "sitewatch_drain"
MAINTENANCE_DAG_ID = "sitewatch_maintenance"
MUTE_DAG_ID = "sitewatch_mute"
"""Manual DAG whose trigger form mutes sites for a while (an ad-hoc maintenance window)."""
UNMUTE_DAG_ID = "sitewatch_unmute"
"""Manual DAG that ends the mutes of some sites, or of all, now."""
WATCH_DAG_ID = "sitewatch_watch"
"""Every minute, says when sitewatch itself cannot judge (PIPELINE PROBLEM about the pipeline)."""
STATUS_PAGE_DAG_ID = "sitewatch_status_page"
"""Every minute, renders the sites file's public status pages and publishes them as files."""
INCIDENT_DAG_ID = "sitewatch_incident"
"""Manual DAG whose trigger form opens or updates an incident on a public status page."""
INCIDENT_UPDATE_DAG_ID = "sitewatch_incident_update"
"""Manual DAG that lists the open incidents in a form (Required Actions) to pick one to update."""
INCIDENTS_ASSET_URI = "sitewatch://status-page/incidents"
"""The Airflow Asset that gets an event whenever a status page incident changed (opened,
updated, resolved); ``STATUS_PAGE_DAG_ID`` runs on it, and a DAG of yours may too."""
WATCH_STATE_VARIABLE = "sitewatch_watch_state"
"""The Airflow Variable (JSON) where ``WATCH_DAG_ID`` keeps what it saw: in Airflow's metadata
database, so a results database that is down cannot take it along."""
DAG_TAG = "sitewatch"
DAG_START = datetime(2026, 1, 1, tzinfo=UTC)
"""start_date of every sitewatch DAG; with catchup off it only has to lie in the past."""
DAG_DEFAULTS = {
    "start_date": DAG_START,
    "catchup": False,
    "max_active_runs": 1,
    # Every sitewatch DAG must run once deployed: a listed site is meant to be checked (its
    # `enabled: false` is the off switch), storage must keep up with the sites, and without the
    # maintenance DAG partitions run out and disks fill up.
    "is_paused_upon_creation": False,
}
"""The ``DAG(...)`` arguments every sitewatch DAG shares."""


def topic() -> str:
    """The topic observations go to: ``$SITEWATCH_TOPIC`` or ``sitewatch.checks``."""
    return os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC


def site_dag_id(site: str) -> str:
    """``site_<name>``: the DAG id of a site."""
    return SITE_DAG_PREFIX + site


def location_queue(location: str) -> str | None:
    """The executor queue of a location's probes: None (the default queue) for ``local``,
    ``sitewatch-<location>`` for any other. Celery workers of a location listen on it."""
    return None if location == LOCAL_LOCATION else LOCATION_QUEUE_PREFIX + location


def probe_task_id(location: str, locations: tuple[str, ...]) -> str:
    """``probe`` for a site with one location, ``probe.<location>`` (task group ``probe``) else."""
    return PROBE_TASK_ID if len(locations) == 1 else f"{PROBE_TASK_ID}.{location}"
