"""Airflow callbacks: what only Airflow knows, a run that failed with no check to judge, handed
to the judge (``sitewatch.judge.alerts.judge``, the one path every verdict takes to an alert).

Every verdict on a site is decided from its stored checks by the drain's judge
(``sitewatch.judge.session.Judge``): DOWN and STILL DOWN from a final down check (``downs``),
RECOVERED and DEGRADED from an up one (``recoveries``), the runs of sites checked from several
locations (``runs``). A down site's task fails with ``SiteDown`` only after its check was
published, so the drain has it, and the callbacks leave it alone. What is left to them is a
PIPELINE PROBLEM, a run sitewatch itself failed (Airflow 3):

- ``on_failure_callback`` of task ``probe`` (a site checked from one location): fires only when
  no retry is left. On the worker it sees ``context["exception"]``: any exception but
  ``SiteDown`` (``DeliveryError``, a timeout) is a pipeline problem. The scheduler also sends it
  to the dag-processor for a task whose worker was lost or that was stuck in the queue; there is
  no exception then, so it is a pipeline problem too.
- ``on_failure_callback`` of the DAG: in the dag-processor, after the run failed. A run failed by
  its task (reason ``task_failure``) is the task callback's or the drain's. A run Airflow timed out
  (``dagrun_timeout``) is a pipeline problem when nothing stored decides it (``_unreported``); any
  other failure of a site checked from one location (its task never ran) is one too.

There is no success callback: a healthy check may end in the triggerer, where task callbacks never
run, and the drain judges the up checks anyway.

What is Airflow's here: the context becomes an ``Event`` with its run's log link, alerting's
connection comes from an Airflow Connection, messages go out through Airflow's notifiers
(``sitewatch.airflow.notifiers.send``), and the drain's messages get their links from ``log_url``.
Nothing here raises: alerting's failure must not change a task's state.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import quote

from sitewatch.alerting.rules import Event, Kind, Verdict
from sitewatch.errors import SiteDown
from sitewatch.names import probe_task_id, site_dag_id

log = logging.getLogger(__name__)


def task_callbacks(site) -> dict:
    """``on_failure_callback`` for task ``probe``; {} without targets, and for a site checked from
    several locations, whose runs the drain judges across them (``sitewatch.judge.runs``)."""
    if not site.notify or site.several_locations:
        return {}

    def on_failure(context) -> None:
        exc = context.get("exception")
        if isinstance(exc, SiteDown):
            return  # published: the drain judges the stored check (``sitewatch.judge.downs``)
        if exc is not None:
            handle(site, Verdict.PIPELINE, context, type(exc).__name__, str(exc))
        else:
            reason = "the task ended without running to completion (worker lost or never started)"
            handle(site, Verdict.PIPELINE, context, "task failed", reason)

    return {"on_failure_callback": on_failure}


def dag_callbacks(site) -> dict:
    """``on_failure_callback`` for the site's DAG; {} without targets. See the module doc."""
    if not site.notify:
        return {}

    def on_run_failure(context) -> None:
        reason = context.get("reason") or "failed"
        if reason == "task_failure":
            return
        if reason == "timed_out":
            _unreported(site, context)
        elif not site.several_locations:
            detail = f"the run failed ({reason}) without a verdict from task probe"
            handle(site, Verdict.PIPELINE, context, "run failed", detail)

    return {"on_failure_callback": on_run_failure}


def _unreported(site, context) -> None:
    """A run Airflow timed out (``dagrun_timeout``, the verdict's deadline) with nothing stored
    that decides it: no final check of a site checked from one location, no check at all from any
    location of one checked from several (the drain decides such a run once its deadline passed,
    counting the silent locations). The drain has nothing to judge, so this is the one place that
    sees it: the workers down, or the scheduler never queued the task. A PIPELINE PROBLEM, once
    while it lasts, like any other. Never raises."""
    several = site.several_locations
    try:
        from sitewatch.airflow.hooks import results_connection
        from sitewatch.names import POSTGRES_ALERTING_CONN_ID
        from sitewatch.storage.verdicts import run_has_checks

        run = context.get("dag_run")
        at = getattr(run, "logical_date", None) or getattr(run, "run_after", None)
        conn = results_connection(POSTGRES_ALERTING_CONN_ID)
        try:
            if at is not None and run_has_checks(conn, site.name, at, final=not several):
                return
        finally:
            conn.close()
    except Exception:
        log.exception("_unreported: could not look up the run site=%s", site.name)
        return
    if several:
        error = "no location reported"
        detail = (
            f"the run timed out with no check stored from any of its locations"
            f" ({', '.join(site.locations)}); are their workers running?"
        )
    else:
        error = "run timed out"
        detail = "the run timed out before its last attempt was stored; are the workers running?"
    handle(site, Verdict.PIPELINE, context, error, detail)


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


def log_url(site, run_id: str, attempt: int) -> str:
    """The log of try ``attempt`` of ``site``'s task ``probe`` in run ``run_id``, as Airflow's
    ``ti.log_url`` spells it, for a message the drain sends (``sitewatch.judge.downs``)."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    task = probe_task_id(site.locations[0], site.locations)
    run = f"{base}/dags/{site_dag_id(site.name)}/runs/{quote(run_id)}"
    return f"{run}/tasks/{task}?try_number={attempt}"
