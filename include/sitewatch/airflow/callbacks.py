"""Airflow callbacks that turn a site DAG's failed runs into verdicts for the judge
(``sitewatch.judge.alerts.judge``, the one path every verdict takes to an alert).

Where they run, and why these two (Airflow 3):

- ``on_failure_callback`` of task ``probe``: fires only when no retry is left. On the worker it
  runs before the task's FAILED state reaches the server and sees ``context["exception"]``:
  ``SiteDown`` is a DOWN verdict; any other exception (``DeliveryError``, a timeout) is a pipeline
  problem. The scheduler also sends it to the dag-processor for a task whose worker was lost or
  that was stuck in the queue; there is no exception then, so it is a pipeline problem too.
- ``on_failure_callback`` of the DAG: in the dag-processor, after the run failed. It covers runs
  the task callbacks never saw (the task never started). For a run the task callback already
  judged it changes nothing: the state machine ignores a second event of the same run.

A site checked from several locations has no task callback: one location's failure is not the
site's verdict. The drain judges each of its runs across the locations
(``sitewatch.judge.runs``) and sends what the verdict calls for through the same path.
Its DAG callback speaks only for a run Airflow timed out with nothing stored from any location,
which the drain never sees (``_unreported``).

There is no success callback. A healthy check may end in the triggerer, where task callbacks never
run, so the UP verdict (RECOVERED) is judged by the drain when it stores the up check
(``sitewatch.judge.recoveries``): one home for it, whichever process ran the check, and one
query per drained batch instead of a database round trip per healthy check.

What is Airflow's here: the context becomes an ``Event`` with its run's log link, alerting's
connection comes from an Airflow Connection, and messages go out through Airflow's notifiers
(``sitewatch.airflow.notifiers.send``). Nothing here raises: alerting's failure must not change a
task's state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sitewatch.alerting.rules import Event, Kind, Verdict
from sitewatch.errors import SiteDown

log = logging.getLogger(__name__)


def task_callbacks(site) -> dict:
    """``on_failure_callback`` for task ``probe``; {} without targets, and for a site checked from
    several locations, whose runs the drain judges across them (``sitewatch.judge.runs``)."""
    if not site.notify or site.several_locations:
        return {}

    def on_failure(context) -> None:
        exc = context.get("exception")
        if isinstance(exc, SiteDown):
            obs = exc.observation
            handle(site, Verdict.DOWN, context, obs.error, obs.error_detail)
        elif exc is not None:
            handle(site, Verdict.PIPELINE, context, type(exc).__name__, str(exc))
        else:
            reason = "the task ended without running to completion (worker lost or never started)"
            handle(site, Verdict.PIPELINE, context, "task failed", reason)

    return {"on_failure_callback": on_failure}


def dag_callbacks(site) -> dict:
    """``on_failure_callback`` for the site's DAG; {} without targets. With several locations it
    speaks only for a run no location reported (``_unreported``)."""
    if not site.notify:
        return {}
    if site.several_locations:
        return {"on_failure_callback": lambda context: _unreported(site, context)}

    def on_run_failure(context) -> None:
        reason = context.get("reason") or "failed"
        detail = f"the run failed ({reason}) without a verdict from task probe"
        handle(site, Verdict.PIPELINE, context, "run failed", detail)

    return {"on_failure_callback": on_run_failure}


def _unreported(site, context) -> None:
    """A run of a multi-location site that Airflow timed out (``dagrun_timeout``, the verdict's
    deadline) with no check of any location stored: the drain has nothing to judge, so this is
    the one place that sees it (every location's workers down, or the scheduler never queued
    them). Any other failed run is the drain's to judge: a location's SiteDown fails the run too.
    A PIPELINE PROBLEM, once while it lasts, like any other. Never raises."""
    if context.get("reason") != "timed_out":
        return
    try:
        from sitewatch.airflow.hooks import results_connection
        from sitewatch.names import POSTGRES_ALERTING_CONN_ID
        from sitewatch.storage.verdicts import run_has_checks

        run = context.get("dag_run")
        at = getattr(run, "logical_date", None) or getattr(run, "run_after", None)
        conn = results_connection(POSTGRES_ALERTING_CONN_ID)
        try:
            if at is None or run_has_checks(conn, site.name, at):
                return
        finally:
            conn.close()
    except Exception:
        log.exception("_unreported: could not look up the run site=%s", site.name)
        return
    detail = (
        f"the run timed out with no check stored from any of its locations"
        f" ({', '.join(site.locations)}); are their workers running?"
    )
    handle(site, Verdict.PIPELINE, context, "no location reported", detail)


def handle(site, verdict: Verdict, context, error=None, detail=None) -> Kind | None:
    """Apply one run's verdict to ``site``'s alert state and send the message it calls for.

    Returns the kind sent (None: nothing to say, or the state could not be stored). Never raises.
    """
    try:
        return _handle(site, event_from(context, verdict, error, detail), context)
    except Exception:
        log.exception("handle: alerting failed site=%s verdict=%s", site.name, verdict.value)
        return None


def event_from(context, verdict: Verdict, error=None, detail=None) -> Event:
    """The Event of the run in an Airflow callback context (full or the dag-processor's minimal)."""
    run = context.get("dag_run")
    return Event(
        verdict,
        at=datetime.now(UTC),
        run_id=getattr(run, "run_id", None) or context.get("run_id"),
        run_after=getattr(run, "run_after", None),
        error=error,
        detail=detail,
    )


def _handle(site, event: Event, context) -> Kind | None:
    from sitewatch.airflow.hooks import results_connection
    from sitewatch.airflow.notifiers import send
    from sitewatch.errors import StorageError
    from sitewatch.judge.alerts import judge
    from sitewatch.names import POSTGRES_ALERTING_CONN_ID

    try:
        conn = results_connection(POSTGRES_ALERTING_CONN_ID)
    except StorageError as exc:
        log.error("handle: alert state NOT updated site=%s: %s", site.name, exc)
        return None
    try:
        return judge(conn, site, event, send=send, run_url=run_url(context), context=context)
    finally:
        conn.close()


def run_url(context) -> str | None:
    """The log URL of the task instance of an Airflow ``context``, for an alert's link; None
    when the context has none or cannot give it."""
    ti = context.get("ti")
    try:
        return ti.log_url if ti is not None else None
    except Exception:  # the link is a courtesy; a context without it must not cost the alert
        return None
