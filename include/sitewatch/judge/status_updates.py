"""Status page incident updates sent to the notify targets that ask for them
(``status_updates: true``), through the same notifiers as the alerts.

Every update of an incident is one STATUS UPDATE message (``alerting.rules.StatusNote``): one the
judge writes (opened, grown, shrunk, resolved: ``sitewatch.judge.incidents``) and one an operator
writes from the ``sitewatch_incident`` DAG. It goes to the targets with ``status_updates`` of the
sites shown by the components the incident affects: a target receives an incident if any of its
components is, or groups, a site that names the target. An incident that names no component
reaches nobody.

Sent once per update: the update is claimed in ``site_alert_log`` before it is sent
(``alerting.store.claim``, key ``status/<page>``, id ``<incident>-<n>`` as ``summary.json``
numbers the updates), as the alert path stores its state before it sends. A retry, or a second
process announcing the same update, finds the claim and sends nothing; a crash between claim and
send loses that message rather than sending it twice; a message no target accepted is logged and
not sent again. Nothing here raises: the incident is stored, and the page published, whatever a
notifier does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Alert, Kind, StatusNote
from sitewatch.storage import incidents as store

log = logging.getLogger(__name__)

Send = Callable[[Alert, Sequence, Mapping], int]
"""``send(alert, targets, context)``, as ``sitewatch.judge.alerts.Send``."""


def targets(page, components: Iterable[str], sites: Mapping) -> list:
    """The notify targets with ``status_updates`` of the sites of ``page``'s components named
    ``components``, each once, in page order. sites: the sites file's ``Site``s by name."""
    names = set(components)
    found = (
        target
        for component in page.components
        if component.name in names
        for name in component.sites
        if name in sites
        for target in sites[name].notify
        if target.status_updates
    )
    return list(dict.fromkeys(found))


def note(page, incident) -> Alert:
    """The STATUS UPDATE of ``incident``'s newest update (``storage.incidents.Incident``) on
    ``page`` (``StatusPage``)."""
    update = incident.updates[-1]
    text = StatusNote(
        page.title, incident.title, update.state, update.body, update.author, page.link(incident.id)
    )
    return Alert(
        page.title,
        text.link or "",
        Kind.STATUS_UPDATE,
        update.at,
        since=incident.opened_at,
        concern=f"status/{page.id}/{incident.id}",
        note=text,
    )


def announce(
    conn, incident_ids: Iterable[int], pages: Sequence, sites: Mapping, send: Send, context=None
) -> int:
    """Send the newest update of each incident of ``incident_ids`` to its targets (``targets``)
    once; return how many messages went out (to at least one target). pages: the sites file's
    status pages (an incident of a page no longer there is not announced); context: the
    Airflow context for the notifiers. Never raises."""
    sent = 0
    for incident_id in incident_ids:
        try:
            sent += _announce(conn, incident_id, pages, sites, send, context or {})
        except Exception:
            log.exception("status update: incident=%s NOT announced", incident_id)
    return sent


def _announce(conn, incident_id: int, pages: Sequence, sites: Mapping, send: Send, context) -> int:
    incident = store.incident(conn, incident_id)
    page = next((p for p in pages if incident is not None and p.id == incident.page), None)
    if page is None or not incident.updates:
        return 0
    to = targets(page, incident.components, sites)
    if not to:
        return 0
    number = f"{incident.id}-{len(incident.updates)}"
    at = incident.updates[-1].at
    if not alert_store.claim(conn, f"status/{page.id}", at, Kind.STATUS_UPDATE, number):
        log.info("status update: incident=%s update %s was announced before", incident.id, number)
        return 0
    delivered = send(note(page, incident), to, context)
    log.info(
        "status update: page=%s incident=%s update=%s delivered=%d of %d",
        page.id,
        incident.id,
        number,
        delivered,
        len(to),
    )
    return 1 if delivered else 0
