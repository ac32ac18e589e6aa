"""The ``sitewatch_drain`` DAG: create tables, wait for undrained checks, drain them.

It runs ``@continuous`` with one active run, so it loops: each run migrates the schema (a no-op
once current), defers in the triggerer until the topic holds something the drain has not stored,
then drains in batches until caught up, judging each stored up check on the way (RECOVERED).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import DAG, task

from sitewatch.airflow.hooks import GroupConsumerHook, results_connection
from sitewatch.airflow.sensor import UndrainedMessageSensor
from sitewatch.names import (
    DAG_DEFAULTS,
    DAG_TAG,
    DRAIN_DAG_ID,
    DRAIN_GROUP,
    KAFKA_CONN_ID,
    POSTGRES_DRAIN_CONN_ID,
    topic,
)


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
def drain() -> dict:
    """Store every undrained observation, judge the up ones (RECOVERED and DEGRADED, see
    sitewatch.airflow.recoveries) and the runs of sites checked from several locations
    (sitewatch.airflow.verdicts), and, once caught up, the error budgets' burn rates
    (sitewatch.airflow.burn); returns the counts of what was stored.

    Batch size, poll timeout and the run's time limit are the ``SITEWATCH_DRAIN_*`` settings
    (sitewatch.pipeline.settings); an unusable value raises SettingError naming it.
    """
    from dataclasses import asdict

    from sitewatch.airflow.burn import BurnAlerts
    from sitewatch.airflow.recoveries import Recoveries
    from sitewatch.airflow.verdicts import Verdicts
    from sitewatch.pipeline.drain import drain as drain_topic
    from sitewatch.pipeline.settings import DrainSettings

    settings = DrainSettings.from_env()
    conn = results_connection(POSTGRES_DRAIN_CONN_ID)
    consumer = GroupConsumerHook([topic()], DRAIN_GROUP, KAFKA_CONN_ID).get_consumer()
    recoveries, verdicts, burn = Recoveries(), Verdicts(), BurnAlerts()

    def each(*hooks):
        def call(*args) -> None:
            for hook in hooks:  # one failing must not keep another from its work
                try:
                    hook(*args)
                except Exception:
                    logging.getLogger(__name__).exception("drain: %s failed", hook)

        return call

    try:
        result = drain_topic(
            consumer,
            conn,
            batch_size=settings.batch_size,
            poll_timeout=settings.poll_seconds,
            max_seconds=settings.max_seconds,
            idle_seconds=settings.idle_seconds,
            on_stored=each(recoveries, verdicts),
            on_caught_up=each(verdicts.sweep, burn),
        )
        return asdict(result)
    finally:
        for hook in (recoveries, verdicts, burn):
            hook.close()
        consumer.close()
        conn.close()


def drain_dag() -> DAG:
    with DAG(
        dag_id=DRAIN_DAG_ID,
        schedule="@continuous",
        tags=[DAG_TAG],
        doc_md=__doc__,
        default_args={"owner": "sitewatch", "retries": 3, "retry_delay": timedelta(seconds=10)},
        **DAG_DEFAULTS,
    ) as dag:
        wait = UndrainedMessageSensor(
            task_id="wait_for_checks",
            topics=[topic()],
            kafka_config_id=KAFKA_CONN_ID,
            timeout=timedelta(hours=1),
            soft_fail=True,
        )
        create_tables() >> wait >> drain()
    return dag
