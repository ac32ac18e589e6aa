"""The ``sitewatch_watch`` DAG: says when sitewatch itself cannot judge.

Every minute (``SITEWATCH_WATCH_EVERY_SECONDS``) its one task looks at the pipeline from outside the
drain: the drain group's lag and committed offsets, read without joining the group
(``hooks.drain_lag_reader``), and ``SELECT 1`` on alerting's connection to the results database.
``sitewatch.judge.watch`` decides from that look and the looks before whether the drain is stalled
or Kafka or the database is down, and sends one PIPELINE PROBLEM (about the pipeline, not a site) to
every target of the sites file, and one PIPELINE PROBLEM OVER when it is over. What it saw is kept
in the Airflow Variable ``sitewatch_watch_state`` (JSON), in Airflow's own database, so a results
database that is down cannot take it along. See docs/alerts.md, "When sitewatch itself cannot
judge".
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from functools import partial

from airflow.sdk import DAG, Variable, get_current_context, task

from sitewatch.airflow.callbacks import run_url
from sitewatch.airflow.drain_dag import PRIORITY
from sitewatch.airflow.hooks import drain_lag_reader, results_connection
from sitewatch.judge.watch import (
    WatchSettings,
    WatchState,
    decide,
    look,
    pipeline_targets,
    undelivered,
)
from sitewatch.names import (
    DAG_DEFAULTS,
    DAG_TAG,
    POSTGRES_ALERTING_CONN_ID,
    WATCH_DAG_ID,
    WATCH_STATE_VARIABLE,
)

log = logging.getLogger(__name__)

TIMEOUT = timedelta(seconds=50)
"""A look takes at most ``watch.LOOK_SECONDS`` (15 s) and sending ``SEND_TIMEOUT`` per target
and try; past this the run fails and the next run looks again."""


@task(execution_timeout=TIMEOUT)
def watch() -> dict:
    """One look, its decision and the message it calls for; returns what the look found."""
    from sitewatch.airflow.notifiers import send
    from sitewatch.alerting.rules import Kind
    from sitewatch.config.loader import cached_sites

    stall = WatchSettings.from_env().stall  # read at every look: a change applies at the next
    state = _load_state()
    reader = drain_lag_reader()
    try:
        seen = look(reader, partial(results_connection, POSTGRES_ALERTING_CONN_ID))
    finally:
        reader.close()
    state, alert = decide(state, seen, stall)
    Variable.set(WATCH_STATE_VARIABLE, state.to_json())  # recorded before anything is sent
    log.info(
        "watch: kafka=%s database=%s waiting=%s problem_since=%s alert=%s",
        seen.kafka_error or "ok",
        seen.database_error or "ok",
        sum(seen.lag.values()),
        state.problem_since.isoformat(timespec="seconds") if state.problem_since else None,
        alert.kind.value if alert else None,
    )
    if alert is not None:
        context = get_current_context()
        alert = dataclasses.replace(alert, run_url=run_url(context))
        targets = pipeline_targets(cached_sites().sites)
        if not targets:
            log.warning("watch: %s not sent: no enabled site has a notify target", alert.title)
        elif not send(alert, targets, context) and alert.kind is Kind.PIPELINE:
            Variable.set(WATCH_STATE_VARIABLE, undelivered(state).to_json())
            log.warning("watch: no target accepted %s; the next look sends it again", alert.title)
    return {
        "kafka_error": seen.kafka_error,
        "database_error": seen.database_error,
        "lag": sum(seen.lag.values()),
        "alert": alert.kind.value if alert else None,
    }


def _load_state():
    """The state the last look left; a fresh one when there is none or it cannot be read (at
    worst one message more, never a message lost for good)."""
    text = Variable.get(WATCH_STATE_VARIABLE, default=None)
    try:
        return WatchState.from_json(text)
    except ValueError as exc:
        log.warning("watch: Variable %s ignored, starting afresh: %s", WATCH_STATE_VARIABLE, exc)
        return WatchState()


def watch_dag() -> DAG:
    """The DAG; its schedule is ``SITEWATCH_WATCH_EVERY_SECONDS`` as the parsing process has it.
    Raises SettingError for a value of that or ``SITEWATCH_WATCH_STALL_SECONDS`` out of range, so
    a bad value is the DAG file's import error, named in the UI, before any look."""
    with DAG(
        dag_id=WATCH_DAG_ID,
        schedule=WatchSettings.from_env().every,
        tags=[DAG_TAG],
        doc_md=__doc__,
        default_args={
            "owner": "sitewatch",
            # the next run is the retry: a retry would only look later than it
            "retries": 0,
            "priority_weight": PRIORITY,
            "weight_rule": "absolute",
        },
        **DAG_DEFAULTS,
    ) as dag:
        watch()
    return dag
