"""The ``sitewatch_maintenance`` DAG: partitions ahead, hourly rollups, expired data dropped.

Hourly: it creates the daily partitions of ``site_checks`` for today and the next 7 days,
recomputes the hourly rollup of the last 48 hours, drops the raw days older than
``SITEWATCH_RETENTION_DAYS`` (default 90) and deletes rollups older than
``SITEWATCH_ROLLUP_RETENTION_DAYS`` (default 730). Every step is idempotent, so a retry or a
skipped hour is harmless. See docs/retention.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, task

from sitewatch.airflow.drain_dag import create_tables
from sitewatch.airflow.hooks import results_connection
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, MAINTENANCE_DAG_ID


@task
def check_settings() -> dict:
    """Validate the retention variables first, so a typo fails here with its name."""
    from dataclasses import asdict

    from sitewatch.storage.retention import RetentionSettings

    return asdict(RetentionSettings.from_env())


@task
def maintain() -> dict:
    """Run ``retention.maintain``; returns what it created, wrote, dropped and pruned."""
    from dataclasses import asdict

    from sitewatch.storage.retention import RetentionSettings
    from sitewatch.storage.retention import maintain as run

    settings = RetentionSettings.from_env()
    conn = results_connection()
    try:
        return asdict(run(conn, datetime.now(UTC), settings))
    finally:
        conn.close()


def retention_dag() -> DAG:
    with DAG(
        dag_id=MAINTENANCE_DAG_ID,
        schedule="@hourly",
        tags=[DAG_TAG],
        doc_md=__doc__,
        default_args={"owner": "sitewatch", "retries": 3, "retry_delay": timedelta(minutes=1)},
        **DAG_DEFAULTS,
    ) as dag:
        check_settings() >> create_tables() >> maintain()
    return dag
