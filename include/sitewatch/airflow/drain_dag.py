"""The ``sitewatch_drain`` DAG: create tables, wait for undrained checks, drain them.

It runs ``@continuous`` with one active run, so it loops: each run migrates the schema (a no-op
once current), defers in the triggerer until the topic holds something the drain has not stored,
then drains in batches until caught up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, task

from sitewatch.airflow.hooks import DRAIN_GROUP, KAFKA_CONN_ID, GroupConsumerHook
from sitewatch.airflow.sensor import UndrainedMessageSensor
from sitewatch.pipeline.publish import topic

DRAIN_DAG_ID = "sitewatch_drain"
POSTGRES_CONN_ID = "sitewatch_postgres"


def results_connection():
    """A psycopg connection on ``sitewatch_postgres``; StorageError when it cannot connect."""
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from sitewatch.airflow.connection_errors import explain_postgres
    from sitewatch.errors import StorageError

    hook = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID)
    try:
        return hook.get_conn()
    except psycopg.OperationalError as exc:
        why = explain_postgres(hook.get_connection(POSTGRES_CONN_ID), exc)
        raise StorageError(f"PostgreSQL unreachable on {POSTGRES_CONN_ID}: {why}") from exc


@task
def create_tables() -> int:
    """Apply pending schema migrations; returns the schema version in force."""
    from sitewatch.storage.schema import migrate

    conn = results_connection()
    try:
        return migrate(conn)
    finally:
        conn.close()


@task
def drain(batch_size: int = 5000) -> dict:
    """Store every undrained observation; returns the counts of what was stored."""
    from dataclasses import asdict

    from sitewatch.pipeline.drain import drain as drain_topic

    conn = results_connection()
    consumer = GroupConsumerHook([topic()], DRAIN_GROUP, KAFKA_CONN_ID).get_consumer()
    try:
        return asdict(drain_topic(consumer, conn, batch_size=batch_size))
    finally:
        consumer.close()
        conn.close()


def drain_dag() -> DAG:
    with DAG(
        dag_id=DRAIN_DAG_ID,
        schedule="@continuous",
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,  # storage must run whenever sites do
        tags=["sitewatch"],
        doc_md=__doc__,
        default_args={"owner": "sitewatch", "retries": 3, "retry_delay": timedelta(seconds=10)},
    ) as dag:
        wait = UndrainedMessageSensor(
            task_id="wait_for_checks",
            topics=[topic()],
            kafka_config_id=KAFKA_CONN_ID,
            poll_timeout=1,
            timeout=timedelta(hours=1),
            soft_fail=True,
        )
        create_tables() >> wait >> drain()
    return dag
