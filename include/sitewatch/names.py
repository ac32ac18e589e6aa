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
"""Airflow connection of type postgres: the results database (``sslmode`` etc. in its extra)."""

TOPIC_ENV = "SITEWATCH_TOPIC"
DEFAULT_TOPIC = "sitewatch.checks"

DRAIN_GROUP = "sitewatch-drain"
"""The consumer group whose committed offsets say what is stored."""
SENSOR_GROUP = "sitewatch-drain-sensor"
"""The sensor's own group id: it reads where the drain stands and never commits."""

SITE_DAG_PREFIX = "site_"
PROBE_TASK_ID = "probe"
DRAIN_DAG_ID = "sitewatch_drain"
MAINTENANCE_DAG_ID = "sitewatch_maintenance"
DAG_TAG = "sitewatch"
DAG_START = datetime(2026, 1, 1, tzinfo=UTC)
"""start_date of every sitewatch DAG; with catchup off it only has to lie in the past."""


def topic() -> str:
    """The topic observations go to: ``$SITEWATCH_TOPIC`` or ``sitewatch.checks``."""
    return os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC


def site_dag_id(site: str) -> str:
    """``site_<name>``: the DAG id of a site."""
    return SITE_DAG_PREFIX + site
