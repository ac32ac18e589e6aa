"""Airflow callbacks that turn a site DAG's failed runs into alerts, and the one path every
verdict takes to an alert (``judge``).

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
(``sitewatch.airflow.verdicts``) and sends what the verdict calls for through ``judge`` below.
Its DAG callback speaks only for a run Airflow timed out with nothing stored from any location,
which the drain never sees (``_unreported``).

There is no success callback. A healthy check may end in the triggerer, where task callbacks never
run, so the UP verdict (RECOVERED) is judged by the drain when it stores the up check
(``sitewatch.airflow.recoveries``): one home for it, whichever process ran the check, and one
query per drained batch instead of a database round trip per healthy check.

Order of work: the state change is committed first, then the message is sent. A crash between
the two loses that one message, but never sends it twice and never loses the state (so no storm
follows). A DOWN or STILL DOWN message that no target accepted releases its claim, so the site's
next down run sends it again. Nothing here raises: alerting's failure must not change a task's
state or stop the drain.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sitewatch.alerting.rules import Event, Kind, Verdict, alert_for
from sitewatch.errors import SiteDown

log = logging.getLogger(__name__)


def task_callbacks(site) -> dict:
    """``on_failure_callback`` for task ``probe``; {} without targets, and for a site checked from
    several locations, whose runs the drain judges across them (``sitewatch.airflow.verdicts``)."""
    if not site.notify or len(site.locations) > 1:
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
    if len(site.locations) > 1:
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
    from sitewatch.errors import StorageError
    from sitewatch.names import POSTGRES_ALERTING_CONN_ID

    try:
        conn = results_connection(POSTGRES_ALERTING_CONN_ID)
    except StorageError as exc:
        log.error("handle: alert state NOT updated site=%s: %s", site.name, exc)
        return None
    try:
        return judge(conn, site, event, _run_url(context), context)
    finally:
        conn.close()


def judge(
    conn, site, event: Event, run_url: str | None = None, context=None, *, key: str | None = None
) -> Kind | None:
    """Apply ``event`` to ``site``'s alert state on ``conn`` (the alerting connection) and send
    the message it calls for: the path of every verdict, the callbacks' and the drain's.

    run_url: the run's log, when known (the drain knows no run: its messages have no link).
    context: the Airflow context handed to the notifiers ({} when there is none).
    key: the alert state's row, when not the site's own (``<site>@<location>``: a location's
    pipeline problem, kept apart from the site's verdict; ``sitewatch.airflow.verdicts``).
    Returns the kind sent (None: nothing to say, or the state could not be stored). Never raises.
    """
    try:
        context = {} if context is None else context
        return _judge(conn, site, event, run_url, context, key or site.name)
    except Exception:
        log.exception("judge: alerting failed site=%s verdict=%s", site.name, event.verdict.value)
        return None


def _judge(conn, site, event: Event, run_url, context, key: str) -> Kind | None:
    from sitewatch.airflow.notifiers import send
    from sitewatch.alerting import store as alert_store
    from sitewatch.errors import StorageError

    try:
        previous, new, kind = alert_store.apply(
            conn,
            key,
            event,
            site.remind_every,
            flapping=site.flapping,
            windows=site.maintenance,
            parents=site.depends_on,
        )
    except StorageError as exc:
        log.error("judge: alert state NOT updated site=%s: %s", key, exc)
        return None
    log.info(
        "judge: site=%s verdict=%s run=%s state=%s->%s alert=%s held=%s",
        key,
        event.verdict.value,
        event.run_id,
        previous.state,
        new.state,
        kind.value if kind else None,
        new.held,
    )
    if kind is None:
        return None
    alert = alert_for(site, kind, previous, new, event, run_url)
    delivered = send(alert, site.notify, context)
    retryable = kind in (Kind.DOWN, Kind.STILL_DOWN)
    if not delivered and retryable and alert_store.release(conn, key, new.last_notified_at):
        log.warning("judge: site=%s %s will be sent again next run", key, kind.value)
    return kind


def _run_url(context) -> str | None:
    ti = context.get("ti")
    try:
        return ti.log_url if ti is not None else None
    except Exception:  # the link is a courtesy; a context without it must not cost the alert
        return None
