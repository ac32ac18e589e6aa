"""The one path every verdict takes to the alert state and the message it calls for.

The Airflow callbacks (``sitewatch.airflow.callbacks``: DOWN, STILL DOWN, PIPELINE PROBLEM of a
failed run) and the drain's hooks (``sitewatch.judge.session.Judge``: UP, DEGRADED, the verdicts
across locations) all end in ``judge``, so the holds, the alert kind and its delivery are decided
in one place.

Order of work: the state change is committed first, then the message is sent. A crash between
the two loses that one message, but never sends it twice and never loses the state (so no storm
follows). A DOWN or STILL DOWN message that no target accepted releases its claim, so the site's
next down run sends it again. Nothing here raises: alerting's failure must not change a task's
state or stop the drain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Alert, Event, Kind, Verdict, alert_for
from sitewatch.errors import StorageError
from sitewatch.judge import incidents, status_updates

log = logging.getLogger(__name__)

Send = Callable[[Alert, Sequence, Mapping], int]
"""``send(alert, targets, context)``: deliver ``alert`` to a site's ``notify`` targets; returns
how many accepted it (``sitewatch.airflow.notifiers.send``)."""


def judge(
    conn,
    site,
    event: Event,
    *,
    send: Send,
    run_url: str | None = None,
    context=None,
    key: str | None = None,
    pages: Sequence = (),
    sites: Mapping | None = None,
) -> Kind | None:
    """Apply ``event`` to ``site``'s alert state on ``conn`` (the alerting connection) and send
    the message it calls for with ``send``.

    run_url: the run's log, when known (the drain knows no run: its messages have no link).
    context: the Airflow context handed to the notifiers ({} when there is none).
    key: the alert state's row, when not the site's own (``<site>@<location>``: a location's
    pipeline problem, kept apart from the site's verdict; ``sitewatch.judge.runs``).
    pages: the sites file's status pages; a DOWN sent, or a partial outage, opens an incident
    on those showing the site, its end resolves it (``sitewatch.judge.incidents``), and each
    change goes to the targets with ``status_updates`` of the sites of the incident's
    components (``sitewatch.judge.status_updates``). sites: the sites file's sites by name, for
    those targets (None: only ``site``'s own).
    Returns the kind sent (None: nothing to say, or the state could not be stored). Never raises.
    """
    try:
        context = {} if context is None else context
        # a location's row (key) is no site's outage: no incident
        pages = pages if key is None else ()
        sites = {site.name: site} if sites is None else sites
        return _judge(conn, site, event, send, run_url, context, key or site.name, pages, sites)
    except Exception:
        log.exception("judge: alerting failed site=%s verdict=%s", site.name, event.verdict.value)
        return None


def _judge(
    conn, site, event: Event, send: Send, run_url, context, key: str, pages: Sequence, sites
) -> Kind | None:
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
    # before any message, so a notifier that hangs or fails keeps no incident from the page
    changed = incidents.follow(conn, site, kind, event, pages) if pages else []
    if kind is not None and site.notify:  # else nobody to page, nothing to release
        alert = alert_for(site, kind, previous, new, event, run_url)
        delivered = send(alert, site.notify, context)
        retryable = kind in (Kind.DOWN, Kind.STILL_DOWN)
        if not delivered and retryable and alert_store.release(conn, key, new.last_notified_at):
            log.warning("judge: site=%s %s will be sent again next run", key, kind.value)
    if changed:  # after the alert: the pager first
        status_updates.announce(conn, changed, pages, sites, send, context)
    return kind


def judge_concern(
    conn, key: str, subject: str, concern: str, event: Event, targets: Sequence, send: Send
) -> Kind | None:
    """Apply ``event`` (PIPELINE, or UP: it works again) to the alert state of something that is
    no single site, row ``key``, and send what it calls for to ``targets``: PIPELINE PROBLEM once
    while it lasts, PIPELINE PROBLEM OVER when an UP closes it. subject: the readable name
    (``location west``); concern: the message's ``Alert.concern`` (``location/west``). No holds
    apply: maintenance and mutes are a site's. Returns the kind sent (None: nothing to say, or
    the state could not be stored). Never raises."""
    try:
        previous, new, _ = alert_store.apply(conn, key, event)
    except Exception:
        log.exception("judge: alert state NOT updated for %s", subject)
        return None
    if event.verdict is Verdict.PIPELINE and previous.pipeline_since is None:
        kind, since = Kind.PIPELINE, new.pipeline_since
    elif event.verdict is Verdict.UP and previous.pipeline_since is not None:
        kind, since = Kind.PIPELINE_OVER, previous.pipeline_since
    else:
        return None
    alert = Alert(subject, "", kind, event.at, since, event.error, event.detail, concern=concern)
    try:
        delivered = send(alert, targets, {})
    except Exception:
        log.exception("judge: %s about %s could not be sent", kind.value, subject)
        delivered = 0
    log.info("judge: %s %s delivered=%s", subject, kind.value, delivered)
    return kind
