"""Status page incidents that follow the verdicts: a DOWN opens one, recovery resolves it.

``judge`` (``sitewatch.judge.alerts``) calls ``follow`` with the alert kind it decided, so an
incident opens exactly when a DOWN is decided: once per outage, and never for a DOWN that a hold
(maintenance, a mute, a parent down, flapping) kept back, since such a DOWN has no kind. For each
status page with a component the site is (or is in the group of), an incident titled
``<component name> is down`` opens in state investigating, unless one is open on that component
already (a group's second site down opens no second incident). A RECOVERED resolves it once no
site of the component is down any more (a group's incident stays open while one of its sites
is), unless an operator took it over with an update.

A site on a status page is judged whether or not it has ``notify`` targets (``judged``): its
page needs its incidents even when nobody is paged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Kind
from sitewatch.storage import incidents as store

log = logging.getLogger(__name__)

OPENED_BODY = "{component} is down. We are investigating."
"""The first update of an automatic incident (Markdown)."""
RESOLVED_BODY = "It works again."
"""The update that resolves an automatic incident."""


def title(component: str) -> str:
    """An automatic incident's title for the component named ``component``."""
    return f"{component} is down"


def components_of(site: str, pages: Iterable) -> Iterator[tuple[str, object]]:
    """``(page id, Component)`` of every component of ``pages`` (``StatusPage``) that is
    ``site`` or has it in its group."""
    for page in pages:
        for component in page.components:
            if site in component.sites:
                yield page.id, component


def judged(site, pages: Iterable) -> bool:
    """Whether the judge follows ``site``'s verdicts: it has ``notify`` targets, or is on one
    of ``pages`` (whose incidents follow its verdicts)."""
    return bool(site.notify) or next(components_of(site.name, pages), None) is not None


def follow(conn, site: str, kind: Kind | None, at: datetime, pages: Iterable) -> None:
    """Open (DOWN) or resolve (RECOVERED) the incidents of ``site``'s components on ``pages``
    on ``conn``; other kinds change nothing. Never raises: a status page's failure must not
    cost an alert."""
    if kind not in (Kind.DOWN, Kind.RECOVERED):
        return
    try:
        for page, component in components_of(site, pages):
            if kind is Kind.DOWN:
                _open(conn, site, page, component.name, at)
            else:
                _resolve(conn, site, page, component, at)
    except Exception:
        log.exception("incidents: could not follow site=%s kind=%s", site, kind.value)


def _open(conn, site: str, page: str, name: str, at: datetime) -> None:
    body = OPENED_BODY.format(component=name)
    opened = store.open_automatic(conn, page, name, site, title(name), body, at)
    log.info("incidents: site=%s page=%s component=%r opened=%s", site, page, name, opened)


def _resolve(conn, site: str, page: str, component, at: datetime) -> None:
    """Resolve the component's incident unless another of its sites is still down (the alert
    state of ``site`` itself was stored up before this runs)."""
    others = [s for s in component.sites if s != site]
    still_down = alert_store.down(conn, others) if others else []
    if still_down:
        log.info(
            "incidents: site=%s page=%s component=%r stays open: still down %s",
            site,
            page,
            component.name,
            ",".join(still_down),
        )
        return
    resolved = store.resolve_automatic(conn, page, component.name, RESOLVED_BODY, at)
    if resolved:
        log.info("incidents: site=%s page=%s resolved=%s", site, page, resolved)
