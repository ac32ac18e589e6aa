"""The ``sitewatch_drain`` DAG: create tables, wait for undrained checks, drain them.

It runs ``@continuous`` with one active run, so it loops: each run migrates the schema (a no-op
once current), defers in the triggerer until the topic holds something the drain has not stored,
then drains in batches, judging each stored up check on the way (RECOVERED). The drain task lasts
the run: between bursts of checks it waits in the triggerer itself (``DrainOperator``), so that
storing never waits for the scheduler to get round to the drain's run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from airflow.sdk import DAG, BaseOperator, task

from sitewatch.airflow.hooks import GroupConsumerHook, results_connection
from sitewatch.airflow.sensor import UndrainedMessageSensor, UndrainedMessageTrigger
from sitewatch.names import (
    DAG_DEFAULTS,
    DAG_TAG,
    DRAIN_DAG_ID,
    DRAIN_GROUP,
    KAFKA_CONN_ID,
    POSTGRES_ALERTING_CONN_ID,
    POSTGRES_DRAIN_CONN_ID,
    topic,
)
from sitewatch.pipeline.settings import DrainSettings

if TYPE_CHECKING:
    from sitewatch.pipeline.drain import DrainResult

log = logging.getLogger(__name__)

PRIORITY = 1000
"""The drain DAG's tasks' ``priority_weight`` (absolute): queued before any site task (1)."""


@task
def create_tables() -> int:
    """Apply pending schema migrations; returns the schema version in force."""
    from sitewatch.storage.schema import migrate

    conn = results_connection()
    try:
        return migrate(conn)
    finally:
        conn.close()


class DrainOperator(BaseOperator):
    """Store every undrained observation and have them judged (``sitewatch.judge.session.Judge``:
    RECOVERED and DEGRADED, the runs of sites checked from several locations, and, once caught
    up, the error budgets' burn rates); wait in the triggerer while the topic is quiet, and go on.

    One drain task lasts the run: it reads until no message came for ``idle_seconds``, then
    defers on ``UndrainedMessageTrigger`` and resumes, in a new process, when a message comes.
    A deferred task that its trigger wakes is queued by the scheduler's critical section (site
    tasks after it: ``priority_weight``), so the drain never waits for its run to be examined,
    which takes minutes when thousands of site runs are due. Past ``max_seconds`` it ends the
    run at the first quiet moment instead, so that the next run applies migrations. On SIGTERM
    it stores and commits the batch in hand, closes its clients and ends.
    Returns the counts of what its run stored. Settings are the ``SITEWATCH_DRAIN_*`` ones
    (sitewatch.pipeline.settings), read at each start; an unusable value raises SettingError
    naming it.
    """

    def execute(self, context) -> dict:
        settings = DrainSettings.from_env()
        return self._drain(time.time() + settings.max_seconds, {})

    def resume(self, context, until: float, totals: dict, event=None) -> dict:
        """Where the trigger's event resumes the drain (``event``: the first undrained message)."""
        return self._drain(until, totals)

    def on_kill(self) -> None:
        stopping = getattr(self, "_stopping", None)
        if stopping is not None:
            stopping.set()

    def _drain(self, until: float, totals: dict) -> dict:
        settings = DrainSettings.from_env()
        self._stopping = threading.Event()
        result = _drain_once(settings, self._stopping.is_set)
        totals = {k: totals.get(k, 0) + v for k, v in asdict(result).items() if k != "ended"}
        if result.ended == "stopped" or time.time() >= until:
            log.info("drain: run ends (%s) %s", result.ended, totals)
            return totals
        self.defer(
            trigger=UndrainedMessageTrigger([topic()], KAFKA_CONN_ID, settings.look_seconds),
            method_name="resume",
            kwargs={"until": until, "totals": totals},
        )


def _drain_once(settings: DrainSettings, stop) -> DrainResult:
    """Drain until quiet (``idle_seconds``) or ``stop()``, with one Judge on alerting's own
    connection as its hooks: two PostgreSQL connections in all."""
    from sitewatch.airflow.callbacks import log_url
    from sitewatch.airflow.notifiers import send
    from sitewatch.judge.session import Judge, Session
    from sitewatch.pipeline.drain import drain as drain_topic

    alerting = partial(results_connection, POSTGRES_ALERTING_CONN_ID)
    judge = Judge(Session(alerting, send, log_url=log_url))  # opens nothing yet
    conn = results_connection(POSTGRES_DRAIN_CONN_ID)
    consumer = GroupConsumerHook([topic()], DRAIN_GROUP, KAFKA_CONN_ID).get_consumer()
    try:
        return drain_topic(
            consumer,
            conn,
            batch_size=settings.batch_size,
            poll_timeout=settings.poll_seconds,
            max_seconds=math.inf,  # the run's end waits for a quiet moment: see DrainOperator
            idle_seconds=settings.idle_seconds,
            on_stored=judge.on_stored,
            on_caught_up=judge.on_caught_up,
            stop=stop,
        )
    finally:
        judge.close()
        consumer.close()
        conn.close()


def drain_dag() -> DAG:
    with DAG(
        dag_id=DRAIN_DAG_ID,
        schedule="@continuous",
        tags=[DAG_TAG],
        doc_md=__doc__,
        default_args={
            "owner": "sitewatch",
            "retries": 3,
            "retry_delay": timedelta(seconds=10),
            "priority_weight": PRIORITY,
            "weight_rule": "absolute",
        },
        **DAG_DEFAULTS,
    ) as dag:
        wait = UndrainedMessageSensor(
            task_id="wait_for_checks",
            topics=[topic()],
            kafka_config_id=KAFKA_CONN_ID,
            timeout=timedelta(hours=1),
            soft_fail=True,
        )
        create_tables() >> wait >> DrainOperator(task_id="drain")
    return dag
